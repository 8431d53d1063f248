//! The SQL that aos-backup streams into `psql --single-transaction` during a restore, checked and
//! made safe on the way:
//!
//! - pg_restore's `--clean` phase can fail on PostgreSQL's own objects. One example: a partition's
//!   primary key "cannot be dropped" because its partitioned parent's key still needs it. So each
//!   statement of the leading clean phase is wrapped in a `DO` block that skips it if it fails.
//!   That is safe because the later `CREATE` of anything not dropped fails, and the whole
//!   transaction rolls back.
//! - pg_dump and pg_restore put their own `BEGIN;` ... `COMMIT;` around large-object data. Inside
//!   `psql --single-transaction`, that inner `COMMIT` would commit everything before it, and a
//!   later failure would leave a half-restored database. So standalone transaction-control lines
//!   outside COPY data are removed: psql's one transaction, committed at the end of input that
//!   aos-backup controls, is the only one.
//! - A SQL dump written by pg_dump must end with pg_dump's "dump complete" line. Without it, a
//!   file cut short at a statement boundary would commit half a database.

use std::io::{self, Write};

use crate::dumpcheck::{SQL_HEADER, SQL_TRAILER};
/// What the `DO` block says when it skips a statement; [`crate::process::failure`] looks for it.
pub const SKIPPED_MARK: &str = "skipped during clean: ";

/// Where in the script we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The leading run of DROP statements (`--clean`).
    Clean,
    /// Ordinary SQL.
    Sql,
    /// COPY data, up to its `\.` line.
    Copy,
}

/// What to do with one line.
enum Decision {
    Keep,
    Drop,
    Replace(String),
}

/// A line longer than this is passed through unexamined (COPY data rows can be huge; no line
/// we must recognize is this long).
const MAX_PARTIAL: usize = 64 << 10;

/// A writer that transforms the script on its way to psql and remembers its head and tail.
pub struct SqlFeed<W> {
    inner: W,
    /// Check pg_dump's trailer at the end (plain SQL files; pg_restore's own output needs no check).
    check_trailer: bool,
    state: State,
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// The current line was too long to examine and is being passed through.
    passthrough: bool,
    head: Vec<u8>,
    tail: Vec<u8>,
    /// How many clean statements were wrapped.
    pub wrapped: u64,
    /// How many transaction-control lines were removed.
    pub transaction_lines_removed: u64,
}

impl<W: Write> SqlFeed<W> {
    pub fn new(inner: W, check_trailer: bool) -> Self {
        SqlFeed {
            inner,
            check_trailer,
            state: State::Clean,
            partial: Vec::new(),
            passthrough: false,
            head: Vec::new(),
            tail: Vec::new(),
            wrapped: 0,
            transaction_lines_removed: 0,
        }
    }

    /// Call at the end of the input: flushes what is buffered and checks the trailer.
    pub fn finish(&mut self) -> Result<(), String> {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.emit_owned(&line)
                .map_err(|e| format!("writing to psql: {e}"))?;
        }
        self.inner
            .flush()
            .map_err(|e| format!("writing to psql: {e}"))?;
        if !self.check_trailer {
            return Ok(());
        }
        let made_by_pg_dump = self.head.windows(SQL_HEADER.len()).any(|w| w == SQL_HEADER);
        let complete = self
            .tail
            .windows(SQL_TRAILER.len())
            .any(|w| w == SQL_TRAILER);
        if made_by_pg_dump && !complete {
            return Err("the SQL dump is cut short (no \"PostgreSQL database dump complete\" line at its end)".into());
        }
        Ok(())
    }

    fn remember(&mut self, data: &[u8]) {
        if self.head.len() < 256 {
            let take = (256 - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
        }
        if data.len() >= 512 {
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - 512..]);
        } else {
            self.tail.extend_from_slice(data);
            if self.tail.len() > 1024 {
                let cut = self.tail.len() - 512;
                self.tail.drain(..cut);
            }
        }
    }

    /// Decides about one whole line (with its newline, if any), updating the state.
    fn decide(&mut self, line: &[u8]) -> Decision {
        match self.state {
            State::Copy => {
                if line == b"\\.\n" || line == b"\\.\r\n" || line == b"\\." {
                    self.state = State::Sql;
                }
                Decision::Keep
            }
            State::Clean => match classify(line) {
                Line::Neutral => Decision::Keep,
                Line::Drop(stmt) => {
                    self.wrapped += 1;
                    Decision::Replace(wrap(stmt))
                }
                Line::Other => {
                    self.state = State::Sql;
                    self.decide(line)
                }
            },
            State::Sql => {
                if is_transaction_control(line) {
                    self.transaction_lines_removed += 1;
                    Decision::Drop
                } else {
                    if is_copy_from_stdin(line) {
                        self.state = State::Copy;
                    }
                    Decision::Keep
                }
            }
        }
    }

    fn emit_owned(&mut self, line: &[u8]) -> io::Result<()> {
        match self.decide(line) {
            Decision::Keep => self.inner.write_all(line),
            Decision::Drop => Ok(()),
            Decision::Replace(text) => self.inner.write_all(text.as_bytes()),
        }
    }
}

impl<W: Write> Write for SqlFeed<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.remember(data);
        // Bytes from `start` on are not written yet; kept lines are written in long runs.
        let mut start = 0;
        let mut pos = 0;
        while pos < data.len() {
            let Some(end) = memchr::memchr(b'\n', &data[pos..]).map(|i| pos + i) else {
                // The last line goes on in the next chunk.
                self.inner.write_all(&data[start..pos])?;
                if self.passthrough {
                    self.inner.write_all(&data[pos..])?;
                } else {
                    self.partial.extend_from_slice(&data[pos..]);
                    if self.partial.len() > MAX_PARTIAL {
                        let long = std::mem::take(&mut self.partial);
                        self.inner.write_all(&long)?;
                        self.passthrough = true;
                    }
                }
                return Ok(data.len());
            };
            if self.passthrough {
                // The end of a long line: it stays in the run, unexamined.
                self.passthrough = false;
            } else if !self.partial.is_empty() {
                // A line that began in an earlier chunk (so `start == pos` here).
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&data[pos..=end]);
                self.inner.write_all(&data[start..pos])?;
                self.emit_owned(&line)?;
                start = end + 1;
            } else {
                match self.decide(&data[pos..=end]) {
                    Decision::Keep => {}
                    Decision::Drop => {
                        self.inner.write_all(&data[start..pos])?;
                        start = end + 1;
                    }
                    Decision::Replace(text) => {
                        self.inner.write_all(&data[start..pos])?;
                        self.inner.write_all(text.as_bytes())?;
                        start = end + 1;
                    }
                }
            }
            pos = end + 1;
        }
        self.inner.write_all(&data[start..])?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `BEGIN;`, `COMMIT;` and their spellings, alone on a line.
fn is_transaction_control(line: &[u8]) -> bool {
    let t = line.trim_ascii();
    t.len() <= 20
        && [
            "BEGIN;",
            "BEGIN TRANSACTION;",
            "BEGIN WORK;",
            "START TRANSACTION;",
            "COMMIT;",
            "COMMIT TRANSACTION;",
            "COMMIT WORK;",
            "END;",
            "END TRANSACTION;",
            "END WORK;",
        ]
        .iter()
        .any(|k| t.eq_ignore_ascii_case(k.as_bytes()))
}

/// `COPY ... FROM stdin;`: COPY data follows, up to a `\.` line.
fn is_copy_from_stdin(line: &[u8]) -> bool {
    let t = line.trim_ascii();
    t.len() > 16
        && t[..5].eq_ignore_ascii_case(b"COPY ")
        && t[t.len() - 11..].eq_ignore_ascii_case(b"FROM stdin;")
}

enum Line<'a> {
    /// Comments, blank lines, SET, set_config, psql meta-commands: the clean phase goes on.
    Neutral,
    /// A one-line statement of the clean phase (without its `;` and newline).
    Drop(&'a str),
    /// Anything else ends the clean phase.
    Other,
}

fn classify(line: &[u8]) -> Line<'_> {
    let Ok(text) = std::str::from_utf8(line) else {
        return Line::Other;
    };
    let t = text.trim_end();
    if t.is_empty()
        || t.starts_with("--")
        || t.starts_with('\\')
        || t.starts_with("SET ")
        || t.starts_with("SELECT pg_catalog.set_config(")
    {
        return Line::Neutral;
    }
    let is_drop = t.starts_with("DROP ")
        || (t.starts_with("ALTER ") && t.contains(" DROP "))
        || t.starts_with("SELECT pg_catalog.lo_unlink(");
    match t.strip_suffix(';') {
        Some(stmt) if is_drop && !stmt.contains("$aos_") && !stmt.contains(';') => Line::Drop(stmt),
        _ => Line::Other,
    }
}

fn wrap(stmt: &str) -> String {
    format!(
        "DO $aos_clean$BEGIN EXECUTE $aos_stmt${stmt}$aos_stmt$; \
         EXCEPTION WHEN OTHERS THEN RAISE WARNING 'aos-backup: skipped during clean: %', SQLERRM; END$aos_clean$;\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\nSET client_min_messages = warning;\n\
SELECT pg_catalog.set_config('search_path', '', false);\n\
ALTER TABLE IF EXISTS ONLY public.p1 DROP CONSTRAINT IF EXISTS p1_pkey;\n\
DROP TABLE IF EXISTS public.p;\nSET default_tablespace = '';\n\nCREATE TABLE public.p (\n    id integer\n);\n\
ALTER TABLE public.p DROP COLUMN x;\n\\unrestrict abc\n--\n-- PostgreSQL database dump complete\n--\n";

    fn feed(script: &str, chunk: usize, check: bool) -> (String, Result<(), String>, u64) {
        let mut f = SqlFeed::new(Vec::new(), check);
        for c in script.as_bytes().chunks(chunk) {
            f.write_all(c).unwrap();
        }
        let r = f.finish();
        (String::from_utf8(f.inner.clone()).unwrap(), r, f.wrapped)
    }

    #[test]
    fn clean_phase_statements_are_wrapped_and_the_rest_passes_through() {
        for chunk in [1, 7, 64, 100_000] {
            let (out, r, wrapped) = feed(SCRIPT, chunk, true);
            assert!(r.is_ok(), "{r:?}");
            assert_eq!(wrapped, 2, "chunk {chunk}");
            assert!(out.contains("DO $aos_clean$BEGIN EXECUTE $aos_stmt$ALTER TABLE IF EXISTS ONLY public.p1 DROP CONSTRAINT IF EXISTS p1_pkey$aos_stmt$;"));
            assert!(out.contains("EXECUTE $aos_stmt$DROP TABLE IF EXISTS public.p$aos_stmt$"));
            // After the first CREATE, nothing is touched, not even an ALTER ... DROP.
            assert!(out.contains("\nALTER TABLE public.p DROP COLUMN x;\n"));
            assert!(out.contains("\\restrict abc\n") && out.ends_with("dump complete\n--\n"));
        }
    }

    #[test]
    fn a_pg_dump_script_cut_short_is_caught_and_handmade_sql_is_not() {
        let cut = &SCRIPT[..SCRIPT.find("\\unrestrict").unwrap()];
        assert!(feed(cut, 10, true).1.is_err());
        assert!(
            feed(cut, 10, false).1.is_ok(),
            "pg_restore's own output is checked by its exit status"
        );
        assert!(feed("CREATE TABLE t();\n", 3, true).1.is_ok());
    }

    #[test]
    fn inner_begin_and_commit_are_removed_but_not_inside_copy_data() {
        let script =
            "CREATE TABLE t (x text);\nCOPY public.t (x) FROM stdin;\nCOMMIT;\nBEGIN;\n\\.\n\
BEGIN;\n\nSELECT pg_catalog.lo_open('1', 131072);\nCOMMIT;\ncommit;\nCREATE INDEX i ON t (x);\n";
        for chunk in [1, 3, 16, 1000] {
            let (out, r, _) = feed(script, chunk, false);
            assert!(r.is_ok());
            assert_eq!(
                out,
                "CREATE TABLE t (x text);\nCOPY public.t (x) FROM stdin;\nCOMMIT;\nBEGIN;\n\\.\n\
\nSELECT pg_catalog.lo_open('1', 131072);\nCREATE INDEX i ON t (x);\n",
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn very_long_lines_pass_through_whole() {
        let long = "x".repeat(200_000);
        let script =
            format!("CREATE TABLE t (x text);\nCOPY t (x) FROM stdin;\n{long}\n\\.\nCOMMIT;\n");
        for chunk in [4096, 70_000, 1 << 20] {
            let (out, r, _) = feed(&script, chunk, false);
            assert!(r.is_ok());
            assert_eq!(
                out,
                format!("CREATE TABLE t (x text);\nCOPY t (x) FROM stdin;\n{long}\n\\.\n")
            );
        }
    }

    #[test]
    fn text_without_a_final_newline_is_passed_on_whole() {
        let (out, r, _) = feed("DROP TABLE x;\nSELECT 1", 4, false);
        assert!(r.is_ok());
        assert!(out.ends_with("SELECT 1"), "{out}");
    }
}
