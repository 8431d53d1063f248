//! One module per subcommand; this one holds what they share: the resolved settings, output
//! helpers and the connection.

pub mod backup;
pub mod check;
pub mod config;
pub mod daemon;
pub mod drill;
pub mod generate;
pub mod list;
pub mod prune;
pub mod push;
pub mod restore;
pub mod schedule;
pub mod telegram_bot;
pub mod validate;
pub mod verify;

use crate::cli::args::{Cli, Command};
use crate::config::Settings;
use crate::error::Error;
use crate::pg::conninfo::ConnInfo;
use crate::pg::tools::Locator;
use anyhow::Result;
use chrono::{DateTime, Utc};
use std::path::PathBuf;

// The formatting helpers live in a lower layer (modules below `commands` use them too).
pub use crate::runtime::units::{human_bytes, human_duration};

/// What every command needs.
pub struct Ctx {
    pub settings: Settings,
    pub json: bool,
    /// This run's operation: its cancellation, children, temp files and progress.
    pub op: crate::runtime::context::OpContext,
    /// Set once a result went to stdout.
    pub stdout_used: StdoutUsed,
    /// Set by a command that reports what it finished even when a signal stops it.
    pub reports_when_cancelled: ReportsWhenCancelled,
    /// "Now", injectable for tests through `AOS_BACKUP_NOW` (RFC 3339).
    pub now: DateTime<Utc>,
    /// What the command learnt about each database, for the metrics file.
    pub record: crate::cli::metrics::RunRecord,
    /// The off-site uploads started while this run's backup was written.
    pub followers: std::sync::Arc<crate::ops::push::Followers>,
    /// The backups this run made (path and sidecar), for `remote_only`.
    pub made:
        std::sync::Arc<std::sync::Mutex<Vec<(std::path::PathBuf, crate::archive::meta::Meta)>>>,
}

/// How a command that did its work ends the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Exit 0.
    Success,
    /// The command's own exit status, which is not an error (`check`'s Nagios codes).
    Code(i32),
}

impl Finish {
    /// The process exit status.
    #[must_use]
    pub fn code(self) -> i32 {
        match self {
            Finish::Success => crate::exit::ExitCode::Success.code(),
            Finish::Code(c) => c,
        }
    }
}

impl Ctx {
    /// The parsed `DATABASE_URL`, with its password registered for scrubbing.
    pub fn conninfo(&self) -> Result<ConnInfo> {
        let Some(url) = &self.settings.database_url else {
            return Err(Error::usage("DATABASE_URL is not set")
                .hint("export DATABASE_URL=postgresql://user:password@host:5432/dbname, put it in ./.env, or pass --database-url")
                .into());
        };
        let conn = ConnInfo::parse(&url.value).map_err(|e| {
            Error::usage(format!("invalid DATABASE_URL (from {}): {e}", url.source))
                .hint("expected postgresql://user:password@host:port/dbname; percent-encode special characters in the password and the database name (/ is %2F, @ is %40, : is %3A, % is %25)")
        })?;
        if let Some(p) = conn.password() {
            self.op.secrets().register(p);
            if url.source == crate::config::Source::Flag {
                tracing::warn!("--database-url holds a password, which other users can see in `ps`; prefer DATABASE_URL in the environment or .env");
            }
        }
        self.finish_conninfo(&conn)
    }

    /// The connection of a database of the config file's `[[databases]]` list, read, parsed and
    /// resolved as `DATABASE_URL` is, its password registered for scrubbing.
    pub fn database_conninfo(&self, entry: &crate::config::DatabaseEntry) -> Result<ConnInfo> {
        let url = entry.url(&self.settings.env)?;
        let conn = ConnInfo::parse(&url).map_err(|e| {
            Error::usage(format!(
                "invalid URL of database {:?} (from {}): {e}",
                entry.name,
                entry.url_origin()
            ))
            .hint("expected postgresql://user:password@host:port/dbname; percent-encode special characters in the password and the database name")
        })?;
        if let Some(p) = conn.password() {
            self.op.secrets().register(p);
        }
        self.finish_conninfo(&conn)
    }

    /// A parsed connection resolved against the environment (see [`Ctx::resolve`]), the
    /// password it ends up with registered.
    fn finish_conninfo(&self, conn: &ConnInfo) -> Result<ConnInfo> {
        for name in conn.dropped_params() {
            tracing::debug!("ignoring URL parameter {name:?} (not a libpq parameter)");
        }
        let conn = self.resolve(conn)?;
        if let Some(p) = conn.password() {
            self.op.secrets().register(p);
        }
        Ok(conn)
    }

    /// `conn` with what the URL leaves out taken from the environment and `.env`: the one
    /// resolution our connection, the guards, the sidecar and the children all use.
    fn resolve(&self, conn: &ConnInfo) -> Result<ConnInfo> {
        Ok(conn.resolve(&|k| self.settings.env.var(k)).map_err(|e| {
            Error::usage(format!("cannot use the connection settings: {e}"))
                .hint("fix or unset that PG* variable in the environment or ./.env (DATABASE_URL's own parts win over them)")
        })?)
    }

    /// The database `DATABASE_URL` names (else `PGDATABASE`, else the user name, as libpq does),
    /// read without connecting; `None` when `DATABASE_URL` is unset or does not parse (whatever
    /// connects reports that).
    #[must_use]
    pub fn target_database(&self) -> Option<String> {
        let url = self.settings.database_url.as_ref()?;
        let conn = ConnInfo::parse(&url.value).ok()?;
        let conn = conn.resolve(&|k| self.settings.env.var(k)).ok()?;
        conn.dbname().map(str::to_string)
    }

    /// What the operations are given: the folder, the tools, "now", the variables and `op`.
    #[must_use]
    pub fn ops(&self) -> crate::ops::Context {
        let env = self.settings.env.clone();
        crate::ops::Context {
            op: self.op.clone(),
            dir: self.backup_dir(),
            locator: self.locator(),
            now: self.now,
            lookup: std::sync::Arc::new(move |k: &str| env.var(k)),
        }
    }

    /// Where pg_dump and friends are looked for.
    #[must_use]
    pub fn locator(&self) -> Locator {
        let locator = Locator::new(self.settings.pg_bin.as_ref().map(|p| p.value.clone()));
        match &self.settings.docker {
            Some(target) => locator.with_runner(std::sync::Arc::new(
                crate::pg::runner::Docker::new(target.clone()),
            )),
            None => locator,
        }
    }

    #[must_use]
    pub fn backup_dir(&self) -> PathBuf {
        self.settings.backup_dir.value.clone()
    }

    /// The identities/passphrase for reading encrypted backups, flags over settings.
    #[must_use]
    pub fn keys(&self, args: &crate::cli::args::KeyArgs) -> crate::archive::crypto::KeySource {
        crate::archive::crypto::KeySource {
            identity_file: args
                .identity
                .clone()
                .or_else(|| self.settings.encryption.identity_file.clone()),
            passphrase_file: args
                .passphrase_file
                .clone()
                .or_else(|| self.settings.encryption.passphrase_file.clone()),
        }
    }

    /// The same settings and output for another operation (a daemon's run) at `now`.
    #[must_use]
    pub fn for_run(&self, op: crate::runtime::context::OpContext, now: DateTime<Utc>) -> Ctx {
        Ctx {
            settings: self.settings.clone(),
            json: self.json,
            op,
            stdout_used: self.stdout_used.clone(),
            reports_when_cancelled: self.reports_when_cancelled.clone(),
            now,
            record: crate::cli::metrics::RunRecord::default(),
            followers: std::sync::Arc::default(),
            made: std::sync::Arc::default(),
        }
    }

    /// The off-site destination `choice` names: a configured URL (with its options), the first
    /// configured one when empty, or another URL; opened, its credentials registered as secrets.
    ///
    /// # Errors
    /// None configured and none given, or an unusable URL or credentials.
    pub fn remote_storage(&self, choice: &str) -> Result<Box<dyn crate::storage::Storage>> {
        use crate::storage::destination::Destination;
        let configured = &self.settings.remote.destinations;
        let dest = if choice.is_empty() {
            configured.first().cloned().ok_or_else(|| {
                Error::usage("no off-site destination is configured")
                    .hint("set BACKUP_REMOTE=s3://bucket/prefix, or give the URL: --remote URL")
            })?
        } else {
            configured
                .iter()
                .find(|d| d.url.trim_end_matches('/') == choice.trim_end_matches('/'))
                .cloned()
                .unwrap_or_else(|| Destination::from_url(choice))
        };
        crate::ops::push::open(&self.ops(), &dest, None, self.settings.remote.timeout)
    }

    /// Downloads the backup `wanted` of `database` (default: the target's) from the off-site
    /// destination `choice` into a private temporary folder, checked on the way; the restore
    /// and the drill then work on that local copy.
    ///
    /// # Errors
    /// No such destination or backup, or a download that failed or differs from its sidecar.
    pub fn fetch_remote(
        &self,
        choice: &str,
        wanted: &str,
        database: Option<String>,
    ) -> Result<crate::ops::remote::Fetched> {
        let remote = self.remote_storage(choice)?;
        let database = database.or_else(|| self.target_database());
        tokio::task::block_in_place(|| {
            crate::ops::remote::fetch(&self.ops(), &*remote, wanted, database.as_deref())
        })
    }

    /// Prints a result on stdout: `text` normally, `json` with `--json`.
    pub fn emit(&self, text: &str, json: &serde_json::Value) {
        use std::io::Write;
        let out = if self.json {
            serde_json::to_string_pretty(json).unwrap_or_default()
        } else {
            text.to_string()
        };
        if out.is_empty() {
            return;
        }
        self.stdout_used.set();
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{out}");
        let _ = stdout.flush();
    }
}

/// Set once a command has printed its result: an error after that goes to stderr only, so that
/// stdout stays one JSON document with `--json`.
#[derive(Debug, Clone, Default)]
pub struct StdoutUsed(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl StdoutUsed {
    /// Records that stdout carries a result.
    pub fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether stdout carries a result.
    #[must_use]
    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Set by a command that, once a signal cancelled it, still ends by itself and reports what it
/// finished (a run over several databases): the CLI then waits for it, for a bounded time.
#[derive(Debug, Clone, Default)]
pub struct ReportsWhenCancelled(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl ReportsWhenCancelled {
    /// Records that the running command reports after a cancellation.
    pub fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the running command reports after a cancellation.
    #[must_use]
    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Runs the chosen subcommand.
pub async fn dispatch(cli: Cli, ctx: Ctx) -> Result<Finish> {
    let done = match &cli.command {
        Command::Backup(a) => backup::run(&ctx, a).await,
        Command::Restore(a) => restore::run(&ctx, a).await,
        Command::List(a) => list::run(&ctx, a),
        Command::Verify(a) => verify::run(&ctx, a).await,
        Command::Drill(a) => drill::run(&ctx, a).await,
        Command::Validate(a) => validate::run(&ctx, a).await,
        Command::Prune(a) => prune::run(&ctx, a).await,
        Command::Push(a) => push::run(&ctx, a).await,
        Command::Daemon => daemon::run(&ctx, &mut crate::cli::Signals::new()).await,
        Command::TelegramBot => telegram_bot::run(&ctx, &mut crate::cli::Signals::new()).await,
        Command::Schedule(a) => schedule::run(&ctx, a),
        Command::Config => config::run(&ctx),
        Command::Check(a) => return check::run(&ctx, a),
        // `crate::run` prints these before the settings are resolved; this is for other callers.
        Command::Completions(_) | Command::Man => match generate::standalone(&cli.command) {
            Some(0) | None => Ok(()),
            Some(code) => Err(anyhow::anyhow!("cannot write to stdout (exit {code})")),
        },
    };
    done.map(|()| Finish::Success)
}

/// An age like `3h`, `2d`, `45s`.
#[must_use]
pub fn human_age(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds();
    if secs < 0 {
        return "future".into();
    }
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::units::{age_phrase, count};

    #[test]
    fn humanized_numbers() {
        assert_eq!(count(1, "table"), "1 table");
        assert_eq!(count(0, "table"), "0 tables");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(125 * 1024 * 1024), "125.0 MiB");
        assert_eq!(
            human_duration(std::time::Duration::from_millis(3200)),
            "3.2s"
        );
        assert_eq!(human_duration(std::time::Duration::from_secs(125)), "2m05s");
        let now = Utc::now();
        assert_eq!(human_age(now - chrono::Duration::hours(5), now), "5h");
        assert_eq!(human_age(now - chrono::Duration::days(3), now), "3d");
        assert_eq!(
            age_phrase(now - chrono::Duration::days(1), now),
            "1 day ago"
        );
        assert_eq!(
            age_phrase(now - chrono::Duration::hours(9), now),
            "9 hours ago"
        );
        assert_eq!(
            age_phrase(now + chrono::Duration::days(300), now),
            "300 days in the future"
        );
    }
}
