//! The writer between the script and psql: it follows the script line by line, guards or leaves
//! out its clean section, removes its own transaction control, and checks pg_dump's trailer.

use std::io::{self, Write};

use super::clean::{classify, scan, wrap, CleanKind, Lex, Line, Scan, RETRY_BLOCK};
use super::stream::Stream;
use crate::archive::dumpcheck::{SQL_HEADER, SQL_TRAILER};

/// Where in the script we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The preamble and the clean section (`--clean`), up to the first entry.
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
    Replace(Vec<u8>),
}

/// A line longer than this is passed through unexamined (COPY data rows can be huge; no line
/// we must recognize is this long).
const MAX_PARTIAL: usize = 64 << 10;
/// A statement of the clean section longer than this is not guarded but passed on as it is (and
/// ends the clean section); pg_dump's are a few hundred bytes.
const MAX_CLEAN_STATEMENT: usize = 16 << 20;

/// A writer that transforms the script on its way to psql and remembers its head and tail.
pub struct SqlFeed<W> {
    inner: W,
    /// Check pg_dump's trailer at the end (plain SQL files; pg_restore's own output needs no check).
    check_trailer: bool,
    /// Leave the clean section out instead of guarding it (the target is empty).
    skip_clean: bool,
    state: State,
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// The current line was too long to examine and is being passed through.
    passthrough: bool,
    /// The long line being passed through is SQL, lexed on its way.
    long_lex: bool,
    /// The whole script's SQL, lexed (outside COPY data and meta-commands).
    stream: Stream,
    /// The clean-section statement being collected (it spans lines), what it is, and where
    /// [`scan`] is in it.
    stmt: Vec<u8>,
    stmt_kind: CleanKind,
    lex: Lex,
    /// The script says it was made by pg_dump or pg_restore.
    from_pg_dump: bool,
    /// A DROP-like statement was guarded: the retry block must follow the clean section.
    retry_pending: bool,
    head: Vec<u8>,
    tail: Vec<u8>,
    /// How many clean statements were wrapped.
    pub wrapped: u64,
    /// How many clean statements were left out ([`SqlFeed::skip_clean`]).
    pub skipped_clean: u64,
    /// How many transaction-control lines were removed.
    pub transaction_lines_removed: u64,
}

impl<W: Write> SqlFeed<W> {
    /// A feeder of psql's `inner`; `check_trailer`: the script must end with pg_dump's trailer
    /// if it starts like pg_dump's.
    pub fn new(inner: W, check_trailer: bool) -> Self {
        SqlFeed {
            inner,
            check_trailer,
            skip_clean: false,
            state: State::Clean,
            partial: Vec::new(),
            passthrough: false,
            long_lex: false,
            stream: Stream::new(),
            stmt: Vec::new(),
            stmt_kind: CleanKind::Drop,
            lex: Lex::new(),
            from_pg_dump: false,
            retry_pending: false,
            head: Vec::new(),
            tail: Vec::new(),
            wrapped: 0,
            skipped_clean: 0,
            transaction_lines_removed: 0,
        }
    }

    /// Leaves the clean section out instead of guarding it: for a target that holds nothing the
    /// section could drop, where it can only fail (a dummy view of a type that does not exist yet,
    /// `ALTER DOMAIN ... DROP CONSTRAINT` of a missing domain).
    #[must_use]
    pub fn skip_clean(mut self, skip: bool) -> Self {
        self.skip_clean = skip;
        self
    }

    /// Call at the end of the input: flushes what is buffered and checks the trailer.
    pub fn finish(&mut self) -> Result<(), String> {
        let io = |e: io::Error| format!("writing to psql: {e}");
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.emit_owned(&line).map_err(io)?;
        }
        if self.state == State::Clean {
            // The script ended inside its clean section: pass on what is held, then the retry.
            let mut rest = std::mem::take(&mut self.stmt);
            rest.extend_from_slice(&self.end_clean());
            self.inner.write_all(&rest).map_err(io)?;
        }
        self.inner.flush().map_err(io)?;
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

    /// Keeps the script's first bytes and its last ones, for the trailer check.
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

    /// Leaves the clean section: the SQL that must follow it (the retry of failed drops).
    fn end_clean(&mut self) -> Vec<u8> {
        self.state = State::Sql;
        self.lex = Lex::new();
        if std::mem::take(&mut self.retry_pending) {
            RETRY_BLOCK.as_bytes().to_vec()
        } else {
            Vec::new()
        }
    }

    /// Decides about one whole line (with its newline, if any), updating the state. Outside COPY
    /// data, every line but a meta-command goes through the lexer, whatever becomes of it.
    fn decide(&mut self, line: &[u8]) -> Decision {
        let at_start = self.stream.at_start();
        let lexed = self.state != State::Copy && !(at_start && is_meta_command(line));
        if lexed {
            self.stream.feed(line);
        }
        let decision = self.decide_line(line, at_start);
        if lexed && self.stream.take_copy() && self.state == State::Sql {
            self.state = State::Copy;
        }
        decision
    }

    /// [`Self::decide`] once the line is lexed; `at_start`: the line begins a top-level statement.
    fn decide_line(&mut self, line: &[u8], at_start: bool) -> Decision {
        match self.state {
            State::Copy => self.copy_line(line),
            State::Clean if !self.stmt.is_empty() => self.continue_statement(line),
            State::Clean => self.clean_line(line, at_start),
            State::Sql => self.sql_line(line, at_start),
        }
    }

    /// A line of COPY data, or its end.
    fn copy_line(&mut self, line: &[u8]) -> Decision {
        if line == b"\\.\n" || line == b"\\.\r\n" || line == b"\\." {
            self.state = State::Sql;
        }
        Decision::Keep
    }

    /// A line that starts a statement in the preamble or the clean section.
    fn clean_line(&mut self, line: &[u8], at_start: bool) -> Decision {
        match classify(line, self.from_pg_dump) {
            Line::Neutral => {
                if line.trim_ascii_end() == SQL_HEADER {
                    self.from_pg_dump = true;
                }
                Decision::Keep
            }
            Line::Clean(kind) => {
                self.stmt_kind = kind;
                self.continue_statement(line)
            }
            Line::Entry | Line::Other => {
                let mut out = self.end_clean();
                match self.decide_line(line, at_start) {
                    Decision::Keep => out.extend_from_slice(line),
                    Decision::Drop => {}
                    Decision::Replace(text) => out.extend_from_slice(&text),
                }
                Decision::Replace(out)
            }
        }
    }

    /// A line of ordinary SQL: removed only if it is a whole top-level transaction-control
    /// statement, not a line of a function body, a string or a comment. COPY data begins after a
    /// top-level `COPY ... FROM stdin;` ([`Self::decide`]).
    fn sql_line(&mut self, line: &[u8], at_start: bool) -> Decision {
        if at_start && is_transaction_control(line) {
            self.transaction_lines_removed += 1;
            Decision::Drop
        } else {
            Decision::Keep
        }
    }

    /// Adds a line to the clean statement being collected; when it ends, guards (or skips) it.
    fn continue_statement(&mut self, line: &[u8]) -> Decision {
        self.stmt.extend_from_slice(line);
        let text = std::str::from_utf8(line).ok();
        let ends = text.map(|t| scan(&mut self.lex, t));
        let complete = match ends {
            // Not UTF-8, or a statement that is not alone: no longer pg_dump's clean section.
            None | Some(Scan::Broken) => None,
            Some(Scan::Open) if self.stmt.len() > MAX_CLEAN_STATEMENT => None,
            Some(Scan::Open) => return Decision::Drop,
            Some(Scan::Complete) => Some(std::mem::take(&mut self.stmt)),
        };
        let Some(stmt) = complete else {
            // Passed on as it is, and the clean section is over.
            let mut out = std::mem::take(&mut self.stmt);
            out.extend_from_slice(&self.end_clean());
            return Decision::Replace(out);
        };
        self.lex = Lex::new();
        self.guard(stmt)
    }

    /// A whole clean statement, guarded, or left out ([`Self::skip_clean`]).
    fn guard(&mut self, stmt: Vec<u8>) -> Decision {
        if self.skip_clean {
            self.skipped_clean += 1;
            return Decision::Drop;
        }
        let text = String::from_utf8_lossy(&stmt);
        let body = text.trim_end().trim_end_matches(';').trim_end();
        if body.contains("$aos_") {
            // Cannot be quoted safely; unguarded, it still rolls back everything if it fails.
            let mut out = stmt;
            out.extend_from_slice(&self.end_clean());
            return Decision::Replace(out);
        }
        self.wrapped += 1;
        if self.stmt_kind == CleanKind::Drop {
            self.retry_pending = true;
        }
        Decision::Replace(wrap(body, self.stmt_kind).into_bytes())
    }

    /// Writes a whole line held in a buffer of its own, as [`Self::decide`] decides.
    fn emit_owned(&mut self, line: &[u8]) -> io::Result<()> {
        match self.decide(line) {
            Decision::Keep => self.inner.write_all(line),
            Decision::Drop => Ok(()),
            Decision::Replace(text) => self.inner.write_all(&text),
        }
    }

    /// The start of a line whose end is in a later chunk: held, or passed through once it is
    /// too long to hold.
    fn line_goes_on(&mut self, start: &[u8]) -> io::Result<()> {
        if self.passthrough {
            if self.long_lex {
                self.stream.feed(start);
            }
            return self.inner.write_all(start);
        }
        self.partial.extend_from_slice(start);
        if self.partial.len() > MAX_PARTIAL {
            self.pass_long_line()?;
        }
        Ok(())
    }

    /// The line being collected is too long to hold: from now on it is passed through, and lexed
    /// on its way unless it is COPY data or a meta-command. In
    /// the clean section, a line that long is not pg_dump's: the section ends before it (what it
    /// holds is passed on first), unless it continues a clean statement, which keeps collecting.
    fn pass_long_line(&mut self) -> io::Result<()> {
        if self.state == State::Clean {
            if !self.stmt.is_empty() && self.stmt.len() + self.partial.len() <= MAX_CLEAN_STATEMENT
            {
                return Ok(());
            }
            let mut out = std::mem::take(&mut self.stmt);
            out.extend_from_slice(&self.end_clean());
            self.inner.write_all(&out)?;
        }
        let long = std::mem::take(&mut self.partial);
        self.long_lex =
            self.state != State::Copy && !(self.stream.at_start() && is_meta_command(&long));
        if self.long_lex {
            self.stream.feed(&long);
        }
        self.inner.write_all(&long)?;
        self.passthrough = true;
        Ok(())
    }

    /// The end of a long line being passed through: it stays in the run, lexed if it is SQL (a
    /// long COPY header starts COPY data).
    fn end_long_line(&mut self, end: &[u8]) {
        self.passthrough = false;
        if std::mem::take(&mut self.long_lex) {
            self.stream.feed(end);
            if self.stream.take_copy() && self.state == State::Sql {
                self.state = State::Copy;
            }
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
                self.line_goes_on(&data[pos..])?;
                return Ok(data.len());
            };
            if self.passthrough {
                self.end_long_line(&data[pos..=end]);
            } else if !self.partial.is_empty() {
                // A line that began in an earlier chunk (so `start == pos` here).
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&data[pos..=end]);
                self.inner.write_all(&data[start..pos])?;
                self.emit_owned(&line)?;
                start = end + 1;
            } else {
                let decision = self.decide(&data[pos..=end]);
                if !matches!(decision, Decision::Keep) {
                    self.inner.write_all(&data[start..pos])?;
                    if let Decision::Replace(text) = decision {
                        self.inner.write_all(&text)?;
                    }
                    start = end + 1;
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

/// A psql meta-command (`\restrict KEY`, `\connect db`): a backslash at the start of a line
/// that begins a statement.
fn is_meta_command(line: &[u8]) -> bool {
    line.trim_ascii_start().first() == Some(&b'\\')
}

#[cfg(test)]
mod tests {
    use super::super::clean::{FAILED_SETTING, SKIPPED_MARK};
    use super::super::samples::{CLEAN_SCRIPT, SCRIPT};
    use super::*;

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
            assert!(out.contains("DO $aos_clean$DECLARE s text := $aos_stmt$ALTER TABLE IF EXISTS ONLY public.p1 DROP CONSTRAINT IF EXISTS p1_pkey$aos_stmt$; BEGIN EXECUTE s;"));
            assert!(out.contains("s text := $aos_stmt$DROP TABLE IF EXISTS public.p$aos_stmt$"));
            // After the first CREATE, nothing is touched, not even an ALTER ... DROP.
            assert!(out.contains("\nALTER TABLE public.p DROP COLUMN x;\n"));
            assert!(out.contains("\\restrict abc\n") && out.ends_with("dump complete\n--\n"));
        }
    }

    #[test]
    fn every_statement_up_to_the_first_entry_is_guarded_and_failed_drops_are_retried() {
        for chunk in [1, 5, 64, 100_000] {
            let (out, r, wrapped) = feed(CLEAN_SCRIPT, chunk, true);
            assert!(r.is_ok(), "{r:?}");
            assert_eq!(wrapped, 6, "chunk {chunk}:\n{out}");
            assert!(out.contains(
                "EXECUTE $aos_stmt$CREATE OR REPLACE VIEW public.by_key AS\nSELECT\n    NULL::integer AS key,\n    NULL::public.dom_nv AS d$aos_stmt$; EXCEPTION"
            ), "{out}");
            assert!(out.contains("$aos_stmt$ALTER DOMAIN public.dom_nv DROP CONSTRAINT IF EXISTS dom_nv_ck$aos_stmt$"));
            assert!(out.contains("$aos_stmt$SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata WHERE oid = '16411'$aos_stmt$"));
            assert!(out.contains(
                "$aos_stmt$DROP TABLE IF EXISTS hr.\"line\nbreak; \"\"x\"\"\"$aos_stmt$"
            ));
            // The retry runs once, after the clean section and before the first entry.
            assert_eq!(out.matches("DO $aos_retry$").count(), 1);
            let retry = out.find("DO $aos_retry$").unwrap();
            assert!(retry > out.find("DROP TABLE IF EXISTS public.base").unwrap());
            assert!(retry < out.find("-- Name: base").unwrap());
            assert!(RETRY_BLOCK.contains(SKIPPED_MARK));
            // After the first entry nothing is touched.
            assert!(
                out.contains("\nDROP TABLE later;\nCREATE OR REPLACE VIEW public.v AS SELECT 1;\n")
            );
            // The dummy view is never in the retry list.
            let dummy = out
                .split("CREATE OR REPLACE VIEW public.by_key")
                .nth(1)
                .unwrap();
            let dummy = &dummy[..dummy.find("END$aos_clean$;").unwrap()];
            assert!(!dummy.contains(FAILED_SETTING), "{dummy}");
        }
    }

    #[test]
    fn into_an_empty_database_the_clean_section_is_left_out() {
        for chunk in [1, 7, 100_000] {
            let mut f = SqlFeed::new(Vec::new(), true).skip_clean(true);
            for c in CLEAN_SCRIPT.as_bytes().chunks(chunk) {
                f.write_all(c).unwrap();
            }
            assert!(f.finish().is_ok());
            let out = String::from_utf8(f.inner.clone()).unwrap();
            assert_eq!(f.skipped_clean, 6);
            assert_eq!(f.wrapped, 0);
            assert!(!out.contains("aos_"), "{out}");
            assert!(!out.contains("IF EXISTS"), "{out}");
            assert!(out.contains(
                "SELECT pg_catalog.set_config('search_path', '', false);\n\n--\n-- Name: base"
            ));
            assert!(out.contains("\nDROP TABLE later;\n"));
        }
    }

    #[test]
    fn a_handmade_script_keeps_its_own_create_or_replace_view_and_odd_statements() {
        let script = "CREATE OR REPLACE VIEW v AS SELECT 1;\nDROP TABLE x;\n";
        let (out, _, wrapped) = feed(script, 3, false);
        assert_eq!((out.as_str(), wrapped), (script, 0));
        // Two statements on a line, or one that never ends: passed on as they are.
        for script in [
            "DROP TABLE a; DROP TABLE b;\nCREATE TABLE c();\n",
            "DROP TABLE a\n",
            "DROP FUNCTION f$aos_x$;\n",
        ] {
            let (out, r, wrapped) = feed(script, 2, false);
            assert!(r.is_ok());
            assert_eq!((out.as_str(), wrapped), (script, 0), "{script:?}");
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

    /// The repro, with pg_dump's own transaction around large-object data, and more
    /// places where a line that looks like transaction control is not a statement.
    const BODIES: &str = "SET standard_conforming_strings = on;\n\\restrict k\n\
CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$\nBEGIN\n  RETURN 42;\nEND;\n$$;\n\
CREATE PROCEDURE p() LANGUAGE plpgsql AS $$\nBEGIN\n  COMMIT;\nEND;\n$$;\n\
COMMENT ON FUNCTION f() IS 'a\nCOMMIT;\nb';\n\
CREATE FUNCTION g() RETURNS text LANGUAGE plpgsql AS $body$\nBEGIN\n  RETURN $$x$$ || E'\\';\n';\n\
END;\n$body$;\n\
/* a comment\n/* nested\nCOMMIT;\n*/\nEND;\n*/\n\
CREATE TABLE \"odd\nBEGIN;\n\" (x int DEFAULT 1\n-- ;\n);\n\
BEGIN;\n\nSELECT pg_catalog.lo_open('16385', 131072);\nSELECT pg_catalog.lowrite(0, '\\x41');\n\
SELECT pg_catalog.lo_close(0);\n\nCOMMIT;\n\\unrestrict k\n";

    /// `script` fed in chunks of every size in `sizes` must come out as itself without the
    /// lines `removed`, each given as `(before, line)`: the line that follows `before`, a
    /// top-level transaction-control statement.
    fn assert_only_removed(
        script: &str,
        removed: &[(&str, &str)],
        sizes: impl Iterator<Item = usize>,
    ) {
        let mut want = script.to_string();
        for (before, line) in removed {
            let whole = format!("{before}{line}");
            assert_eq!(want.matches(&whole).count(), 1, "{whole:?}");
            want = want.replace(&whole, before);
        }
        for chunk in sizes {
            let mut f = SqlFeed::new(Vec::new(), false);
            for c in script.as_bytes().chunks(chunk) {
                f.write_all(c).unwrap();
            }
            f.finish().unwrap();
            let out = String::from_utf8(f.inner.clone()).unwrap();
            assert_eq!(out, want, "chunk {chunk}");
            assert_eq!(
                f.transaction_lines_removed,
                removed.len() as u64,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn transaction_control_inside_bodies_strings_and_comments_is_kept() {
        assert_only_removed(
            BODIES,
            &[
                ("1\n-- ;\n);\n", "BEGIN;\n"),
                ("lo_close(0);\n\n", "COMMIT;\n"),
            ],
            1..=BODIES.len(),
        );
    }

    #[test]
    fn sql_standard_function_bodies_keep_their_end() {
        // pg_dump writes BEGIN ATOMIC bodies over several lines; psql keeps the statement open
        // until the END that closes the body, and so must the feeder.
        let script = "CREATE FUNCTION public.a1(a integer) RETURNS integer\n    LANGUAGE sql\n    \
BEGIN ATOMIC\n SELECT (a + 1);\n SELECT CASE WHEN (a > 0) THEN 1 ELSE 2 END;\nEND;\n\
CREATE OR REPLACE PROCEDURE public.p2()\n    LANGUAGE sql\n    BEGIN ATOMIC\n SELECT 7;\nEND;\n\
CREATE TABLE public.t (\"begin\" integer, x integer DEFAULT (1));\n\
BEGIN;\nSELECT pg_catalog.lo_open('16385', 131072);\nCOMMIT;\n\
SELECT CASE WHEN true THEN 1 END;\nEND;\n";
        let want = script
            .replace("\nBEGIN;\nSELECT pg_catalog", "\nSELECT pg_catalog")
            .replace("131072);\nCOMMIT;\n", "131072);\n");
        let want = want.strip_suffix("END;\n").unwrap();
        for chunk in 1..=script.len() {
            let (out, r, _) = feed(script, chunk, false);
            assert!(r.is_ok());
            assert_eq!(out, want, "chunk {chunk}");
        }
    }

    #[test]
    fn copy_from_stdin_inside_a_function_body_does_not_start_copy_data() {
        let script = "CREATE FUNCTION load() RETURNS void LANGUAGE plpgsql AS $f$\nBEGIN\n\
COPY staging FROM stdin;\nEND;\n$f$;\n\
COMMENT ON TABLE t IS '\nCOPY t FROM stdin;\n';\n\
BEGIN;\nSELECT pg_catalog.lo_open('16385', 131072);\nCOMMIT;\n\
COPY public.t (x) FROM stdin;\nCOMMIT;\n\\.\nEND;\n";
        let want = script
            .replace("\nBEGIN;\nSELECT", "\nSELECT")
            .replace("\nCOMMIT;\nCOPY", "\nCOPY");
        let want = want.strip_suffix("END;\n").unwrap();
        for chunk in 1..=script.len() {
            let (out, r, _) = feed(script, chunk, false);
            assert!(r.is_ok());
            assert_eq!(out, want, "chunk {chunk}");
        }
    }

    #[test]
    fn a_copy_header_longer_than_a_held_line_still_starts_copy_data() {
        let columns: Vec<String> = (0..1590)
            .map(|i| format!("\"column_{i:04}_{}\"", "x".repeat(40)))
            .collect();
        let header = format!("COPY public.wide ({}) FROM stdin;\n", columns.join(", "));
        assert!(header.len() > MAX_PARTIAL);
        let script = format!(
            "CREATE TABLE wide ();\n{header}COMMIT;\nBEGIN;\n\\.\nBEGIN;\nSELECT 1;\nCOMMIT;\n"
        );
        let want = format!("CREATE TABLE wide ();\n{header}COMMIT;\nBEGIN;\n\\.\nSELECT 1;\n");
        for chunk in [1, 7, 4096, 65_536, 70_000, 1 << 20] {
            let (out, r, _) = feed(&script, chunk, false);
            assert!(r.is_ok());
            assert!(out == want, "chunk {chunk}: {}", &out[out.len() - 60..]);
        }
    }

    #[test]
    fn text_without_a_final_newline_is_passed_on_whole() {
        let (out, r, _) = feed("DROP TABLE x;\nSELECT 1", 4, false);
        assert!(r.is_ok());
        assert!(out.ends_with("SELECT 1"), "{out}");
    }
}
