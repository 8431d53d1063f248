//! The SQL that aos-backup streams into `psql --single-transaction` during a restore, checked and
//! made safe on the way:
//!
//! - pg_restore's `--clean` phase can fail on PostgreSQL's own objects. One example: a partition's
//!   primary key "cannot be dropped" because its partitioned parent's key still needs it. So each
//!   statement of the leading clean phase is wrapped in a `DO` block that skips it if it fails.
//!   That is safe because the later `CREATE` of anything not dropped fails, and the whole
//!   transaction rolls back.
//! - A SQL dump written by pg_dump must end with pg_dump's "dump complete" line. Without it, a
//!   file cut short at a statement boundary would commit half a database.

use std::io::{self, Write};

const SQL_HEADER: &[u8] = b"-- PostgreSQL database dump";
const SQL_TRAILER: &[u8] = b"-- PostgreSQL database dump complete";
/// What the `DO` block says when it skips a statement; [`crate::process::failure`] looks for it.
pub const SKIPPED_MARK: &str = "skipped during clean: ";
/// A first "line" longer than this ends the clean phase (no real drop statement is this long).
const MAX_LINE: usize = 1 << 20;

/// A writer that transforms the clean phase and remembers the head and tail of the stream.
pub struct SqlFeed<W> {
    inner: W,
    /// Check pg_dump's trailer at the end (plain SQL files; pg_restore's own output needs no check).
    check_trailer: bool,
    in_clean_phase: bool,
    line: Vec<u8>,
    head: Vec<u8>,
    tail: Vec<u8>,
    /// How many clean statements were wrapped.
    pub wrapped: u64,
}

impl<W: Write> SqlFeed<W> {
    pub fn new(inner: W, check_trailer: bool) -> Self {
        SqlFeed {
            inner,
            check_trailer,
            in_clean_phase: true,
            line: Vec::new(),
            head: Vec::new(),
            tail: Vec::new(),
            wrapped: 0,
        }
    }

    /// Call at the end of the input: flushes what is buffered and checks the trailer.
    pub fn finish(&mut self) -> Result<(), String> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.emit_line(&line)
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
        self.tail.extend_from_slice(data);
        if self.tail.len() > 1024 {
            let cut = self.tail.len() - 512;
            self.tail.drain(..cut);
        }
    }

    fn emit_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.in_clean_phase {
            match classify(line) {
                Line::Neutral => {}
                Line::Drop(stmt) => {
                    self.wrapped += 1;
                    return self.inner.write_all(wrap(stmt).as_bytes());
                }
                Line::Other => self.in_clean_phase = false,
            }
        }
        self.inner.write_all(line)
    }
}

impl<W: Write> Write for SqlFeed<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.remember(data);
        if !self.in_clean_phase {
            self.inner.write_all(data)?;
            return Ok(data.len());
        }
        let mut rest = data;
        while self.in_clean_phase {
            let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
                self.line.extend_from_slice(rest);
                if self.line.len() > MAX_LINE {
                    self.in_clean_phase = false;
                    let line = std::mem::take(&mut self.line);
                    self.inner.write_all(&line)?;
                }
                return Ok(data.len());
            };
            self.line.extend_from_slice(&rest[..=nl]);
            rest = &rest[nl + 1..];
            let line = std::mem::take(&mut self.line);
            self.emit_line(&line)?;
        }
        self.inner.write_all(rest)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
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
    fn text_without_a_final_newline_is_passed_on_whole() {
        let (out, r, _) = feed("DROP TABLE x;\nSELECT 1", 4, false);
        assert!(r.is_ok());
        assert!(out.ends_with("SELECT 1"), "{out}");
    }
}
