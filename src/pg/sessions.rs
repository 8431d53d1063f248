//! The other sessions of a restore's target and the limits that keep a restore from waiting on
//! them forever: who is connected (shown before a restore, named when a lock wait gives up), the
//! bounded lock wait (`lock_timeout`, which pg_dump's own `SET lock_timeout = 0` must not undo),
//! and the server-side check that stops our backends when aos-backup is gone.

use std::io::{self, Write};
use std::time::Duration;

/// How often the server checks that a client of ours is still there while it runs a statement or
/// waits for a lock (`client_connection_check_interval`, PostgreSQL 14+).
pub const CHECK_INTERVAL: &str = "1s";

/// The `pg_stat_activity a` rows that are client sessions: a client backend, or, where our role
/// may not see the type (another role's session without `pg_read_all_stats`), a row with a role.
/// Autovacuum workers have none; the server ends them itself when a database is renamed or
/// dropped, and (but for an anti-wraparound vacuum) they cancel themselves when they block a
/// lock, so they are not sessions a user could stop.
macro_rules! client_sessions {
    () => {
        "(a.backend_type = 'client backend' \
          OR (a.backend_type IS NULL AND a.usesysid IS NOT NULL))"
    };
}
pub(crate) use client_sessions;

/// The other client sessions of the current database, with what they are doing and whether they
/// hold a lock on one of its tables (the sessions a restore would wait for). A role without
/// `pg_read_all_stats` sees other roles' sessions without their state or type (NULL).
pub const OTHER_SESSIONS_SQL: &str = concat!(
    "\
SELECT a.pid, coalesce(a.usename, '')::text, coalesce(a.application_name, '')::text, \
       a.state::text, \
       extract(epoch FROM now() - coalesce(a.state_change, a.backend_start))::float8, \
       EXISTS (SELECT 1 FROM pg_catalog.pg_locks l \
               WHERE l.pid = a.pid AND l.granted AND l.locktype = 'relation' \
                 AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())) \
FROM pg_catalog.pg_stat_activity a \
WHERE a.datname = current_database() AND a.pid <> pg_catalog.pg_backend_pid() AND ",
    client_sessions!(),
    " ORDER BY a.pid"
);

/// Another session connected to the target.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The server process id of its backend.
    pub pid: i32,
    /// Its role name (empty when the server does not say).
    pub user: String,
    /// Its `application_name` (empty when unset).
    pub application: String,
    /// `active`, `idle`, `idle in transaction`, ... (`None` when our role may not see it).
    pub state: Option<String>,
    /// How long it has been in that state.
    pub seconds: Option<f64>,
    /// It holds a lock on a table of the database.
    pub holds_locks: bool,
}

impl std::fmt::Display for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Role names may hold control characters (the server cleans only application names).
        write!(
            f,
            "pid {} (user {}, application {:?}, ",
            self.pid,
            crate::runtime::redact::sanitize(&self.user),
            crate::runtime::redact::sanitize(&self.application)
        )?;
        match (&self.state, self.seconds) {
            (Some(state), Some(secs)) => {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let since = Duration::from_secs(secs.max(0.0) as u64);
                write!(
                    f,
                    "{} for {}",
                    crate::runtime::redact::sanitize(state),
                    crate::runtime::units::human_duration(since)
                )?;
            }
            (Some(state), None) => write!(f, "{}", crate::runtime::redact::sanitize(state))?,
            (None, _) => write!(f, "state not visible to this role")?,
        }
        if self.holds_locks {
            write!(f, ", holds table locks")?;
        }
        write!(f, ")")
    }
}

/// The sessions as one line: `pid 1 (...); pid 2 (...)`.
#[must_use]
pub fn describe(sessions: &[Session]) -> String {
    sessions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The libpq `options` for the sessions of our children: the server stops their backends soon
/// after they die (PostgreSQL 14+), and, for a restore, lock waits end after `lock_timeout`.
#[must_use]
pub fn child_options(major: u32, lock_timeout: Option<Duration>) -> String {
    let mut parts = Vec::new();
    if major >= 14 {
        parts.push(format!(
            "-c client_connection_check_interval={CHECK_INTERVAL}"
        ));
    }
    if let Some(t) = lock_timeout {
        parts.push(format!("-c lock_timeout={}", t.as_millis()));
    }
    parts.join(" ")
}

/// The line that replaces pg_dump's `SET lock_timeout = 0;` in a restore script.
#[must_use]
pub fn lock_timeout_line(limit: Option<Duration>) -> String {
    format!(
        "SET lock_timeout = {};\n",
        limit.map_or(0, |d| d.as_millis())
    )
}

/// A writer that replaces `SET lock_timeout = ...;` in the script's preamble (its leading comments,
/// `SET`s and meta-commands, where pg_dump writes `SET lock_timeout = 0;`) with ours, so that the
/// bounded lock wait survives it. From the first other line on, bytes pass straight through.
pub struct LockTimeoutOverride<W> {
    inner: W,
    line: String,
    partial: Vec<u8>,
    /// The preamble is over.
    done: bool,
    /// How many lines were replaced.
    pub replaced: u64,
}

impl<W: Write> LockTimeoutOverride<W> {
    pub fn new(inner: W, limit: Option<Duration>) -> Self {
        LockTimeoutOverride {
            inner,
            line: lock_timeout_line(limit),
            partial: Vec::new(),
            done: false,
            replaced: 0,
        }
    }

    fn emit_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.done {
            return self.inner.write_all(line);
        }
        let t = line.trim_ascii();
        let is_set = t.len() < 64
            && t.len() > 16
            && t[..16].eq_ignore_ascii_case(b"SET lock_timeout")
            && t.ends_with(b";");
        let preamble = t.is_empty()
            || t.starts_with(b"--")
            || t.starts_with(b"\\")
            || t.starts_with(b"SET ")
            || t.starts_with(b"SELECT pg_catalog.set_config(")
            || t.eq_ignore_ascii_case(b"BEGIN;");
        self.done = !preamble;
        if is_set {
            self.replaced += 1;
            let ours = self.line.clone();
            self.inner.write_all(ours.as_bytes())
        } else {
            self.inner.write_all(line)
        }
    }

    /// Writes what is buffered.
    pub fn finish(&mut self) -> io::Result<()> {
        let rest = std::mem::take(&mut self.partial);
        if !rest.is_empty() {
            self.emit_line(&rest)?;
        }
        self.inner.flush()
    }
}

impl<W: Write> Write for LockTimeoutOverride<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.done && self.partial.is_empty() {
            self.inner.write_all(data)?;
            return Ok(data.len());
        }
        let mut rest = data;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            if self.done && self.partial.is_empty() {
                break;
            }
            let (line, tail) = rest.split_at(i + 1);
            if self.partial.is_empty() {
                self.emit_line(line)?;
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.emit_line(&whole)?;
            }
            rest = tail;
        }
        if self.done || self.partial.len() + rest.len() > 4096 {
            // Past the preamble, or a long line: no SET to find there.
            let head = std::mem::take(&mut self.partial);
            self.inner.write_all(&head)?;
            self.inner.write_all(rest)?;
        } else {
            self.partial.extend_from_slice(rest);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_in_names_cannot_reach_the_terminal() {
        let s = super::Session {
            pid: 7,
            user: "ev\u{1b}]0;pwned\u{7}il\nFAKE: restore complete".into(),
            application: "app\u{1b}[2K".into(),
            state: Some("idle\r".into()),
            seconds: None,
            holds_locks: false,
        };
        let shown = s.to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains("FAKE: restore complete"), "{shown:?}");
    }

    use super::*;

    #[test]
    fn the_preamble_lock_timeout_is_replaced_in_any_chunking() {
        let script = "--\nSET statement_timeout = 0;\nSET lock_timeout = 0;\nSET x = 1;\nCOPY t FROM stdin;\nSET lock_timeout = 0;\n\\.\n";
        for chunk in [1, 2, 5, 13, 1000] {
            let mut w = LockTimeoutOverride::new(Vec::new(), Some(Duration::from_secs(2)));
            for c in script.as_bytes().chunks(chunk) {
                w.write_all(c).unwrap();
            }
            w.finish().unwrap();
            let out = String::from_utf8(w.inner).unwrap();
            assert_eq!(
                out,
                script.replacen("SET lock_timeout = 0;", "SET lock_timeout = 2000;", 1),
                "chunk {chunk}: only the preamble's SET"
            );
            assert_eq!(w.replaced, 1);
        }
    }

    #[test]
    fn options_for_children() {
        assert_eq!(
            child_options(15, Some(Duration::from_secs(3))),
            "-c client_connection_check_interval=1s -c lock_timeout=3000"
        );
        assert_eq!(child_options(13, None), "");
    }
}
