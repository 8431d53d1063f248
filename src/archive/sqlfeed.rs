//! The SQL that aos-backup streams into psql during a restore, inside the one transaction that the
//! feeder opens and commits itself, checked and made safe on the way:
//!
//! - The clean section of a script made by `pg_dump --clean` or `pg_restore --clean` (between the
//!   `SET` preamble and the first entry's `-- Name:` comment) is not only DROPs: pg_dump also turns
//!   views into dummies (`CREATE OR REPLACE VIEW ... AS SELECT NULL::...`), drops constraints and
//!   column defaults with `ALTER ... DROP`, and unlinks large objects. Any of these can fail on a
//!   populated target (a partition's key "cannot be dropped" while its parent's key needs it) or
//!   on objects the target lacks. So each statement of that section runs in a `DO` block that
//!   skips it if it fails; the DROP-like ones that failed are tried again, in order, once the
//!   others have run, and what still fails is named in a warning. That is safe because the later
//!   `CREATE` of anything not dropped fails, and the whole transaction rolls back.
//! - Into an empty target the clean section can be left out ([`SqlFeed::skip_clean`]): then the
//!   restore is exactly a restore without `--clean`.
//! - pg_dump and pg_restore put their own `BEGIN;` ... `COMMIT;` around large-object data. Inside
//!   `psql --single-transaction`, that inner `COMMIT` would commit everything before it, and a
//!   later failure would leave a half-restored database. So transaction-control lines that are
//!   whole top-level statements are removed (the script is lexed throughout: a line in a function
//!   body, a string or a comment is never one, nor is COPY data): psql's one transaction,
//!   committed at the end of input that aos-backup controls, is the only one.
//! - A SQL dump written by pg_dump must end with pg_dump's "dump complete" line. Without it, a
//!   file cut short at a statement boundary would commit half a database.

use std::io::{self, Read, Write};

use crate::archive::dumpcheck::{SQL_HEADER, SQL_TRAILER};
/// What the `DO` block says when it skips a statement; [`crate::runtime::process::failure`] looks for it.
pub const SKIPPED_MARK: &str = "skipped during clean: ";

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
    /// The clean-section statement being collected (it spans lines), and what it is.
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
            lex: Lex::Top,
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
        self.lex = Lex::Top;
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
            State::Copy => {
                if line == b"\\.\n" || line == b"\\.\r\n" || line == b"\\." {
                    self.state = State::Sql;
                }
                Decision::Keep
            }
            State::Clean if !self.stmt.is_empty() => self.continue_statement(line),
            State::Clean => match classify(line, self.from_pg_dump) {
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
            },
            // Only a whole top-level statement: not a line of a function body, a string or a
            // comment. COPY data begins after a top-level `COPY ... FROM stdin;` ([`Self::decide`]).
            State::Sql => {
                if at_start && is_transaction_control(line) {
                    self.transaction_lines_removed += 1;
                    Decision::Drop
                } else {
                    Decision::Keep
                }
            }
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
        self.lex = Lex::Top;
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

    fn emit_owned(&mut self, line: &[u8]) -> io::Result<()> {
        match self.decide(line) {
            Decision::Keep => self.inner.write_all(line),
            Decision::Drop => Ok(()),
            Decision::Replace(text) => self.inner.write_all(&text),
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
                    if self.long_lex {
                        self.stream.feed(&data[pos..]);
                    }
                    self.inner.write_all(&data[pos..])?;
                } else {
                    self.partial.extend_from_slice(&data[pos..]);
                    if self.partial.len() > MAX_PARTIAL {
                        self.pass_long_line()?;
                    }
                }
                return Ok(data.len());
            };
            if self.passthrough {
                // The end of a long line: it stays in the run, lexed if it is SQL (a long COPY
                // header starts COPY data).
                self.passthrough = false;
                if std::mem::take(&mut self.long_lex) {
                    self.stream.feed(&data[pos..=end]);
                    if self.stream.take_copy() && self.state == State::Sql {
                        self.state = State::Copy;
                    }
                }
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
                        self.inner.write_all(&text)?;
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

impl<W: Write> SqlFeed<W> {
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
}

/// What the head of a plain SQL script says about its clean section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanSection {
    /// It drops what it is about to create (made with `pg_dump --clean`).
    Present,
    /// A script made by pg_dump that creates schema objects without dropping them first: it can
    /// fail on any of them that the target already has.
    Missing,
    /// Not a pg_dump script, a data-only dump, or not recognized within the first bytes.
    Unknown,
}

/// How far [`peek_clean_section`] reads at most.
const PEEK_LIMIT: usize = 1 << 20;

/// Reads the head of a plain SQL script, up to its first statement or archive entry, to find
/// out whether it has a clean section. Returns a reader that yields the whole script again,
/// the head included.
pub fn peek_clean_section(
    mut reader: Box<dyn Read + Send>,
) -> io::Result<(CleanSection, Box<dyn Read + Send>)> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    let mut scanned = 0;
    let mut from_pg_dump = false;
    let verdict = 'read: loop {
        // Every whole line not yet looked at.
        while let Some(i) = memchr::memchr(b'\n', &buf[scanned..]) {
            let line = &buf[scanned..=scanned + i];
            scanned += i + 1;
            match classify(line, from_pg_dump) {
                Line::Neutral => from_pg_dump |= line.trim_ascii_end() == SQL_HEADER,
                Line::Clean(_) => break 'read CleanSection::Present,
                Line::Other => break 'read CleanSection::Unknown,
                Line::Entry => {
                    let text = String::from_utf8_lossy(line);
                    match entry_type(&text) {
                        // `-- TOC entry ...`: the entry's name follows.
                        None => {}
                        Some(_) if !from_pg_dump => break 'read CleanSection::Unknown,
                        Some(kind) if is_data_entry(&kind) => break 'read CleanSection::Unknown,
                        Some(_) => break 'read CleanSection::Missing,
                    }
                }
            }
        }
        if buf.len() >= PEEK_LIMIT {
            break CleanSection::Unknown;
        }
        let n = match reader.read(&mut chunk) {
            Ok(0) => break CleanSection::Unknown,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
    };
    Ok((verdict, Box::new(io::Cursor::new(buf).chain(reader))))
}

/// The type an entry header names: `TABLE` of `-- Name: t; Type: TABLE; Schema: ...`,
/// `TABLE DATA` for `-- Data for Name: ...`; `None` for other header lines.
fn entry_type(line: &str) -> Option<String> {
    if line.starts_with("-- Data for Name: ") {
        return Some("TABLE DATA".into());
    }
    if !line.starts_with("-- Name: ") {
        return None;
    }
    let after = line.split_once("; Type: ").map_or("", |(_, rest)| rest);
    Some(after.split(';').next().unwrap_or("").trim().to_string())
}

/// Entries of a data-only dump (`pg_dump --data-only` also writes large objects' and
/// sequences' entries; PostgreSQL 17 names large objects `BLOB METADATA`), which is meant for a
/// target that has the schema.
fn is_data_entry(kind: &str) -> bool {
    matches!(
        kind,
        "TABLE DATA"
            | "BLOB"
            | "BLOBS"
            | "BLOB METADATA"
            | "LARGE OBJECT"
            | "LARGE OBJECTS"
            | "SEQUENCE SET"
    )
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

/// The kinds of statement pg_dump writes into its clean section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CleanKind {
    /// `DROP ...`, `ALTER ... DROP ...`, `SELECT pg_catalog.lo_unlink(...)`: tried again if it
    /// fails, since another drop may first have to happen.
    Drop,
    /// `CREATE OR REPLACE VIEW ... AS SELECT NULL::...`: a view made into a dummy so that what it
    /// depends on can be dropped. Never run twice (that would recreate a view dropped meanwhile).
    DummyView,
}

enum Line {
    /// Comments, blank lines, SET, set_config, psql meta-commands: the clean section goes on.
    Neutral,
    /// The first line of a statement of the clean section.
    Clean(CleanKind),
    /// The comment that heads an archive entry (`-- Name: ...`): the clean section is over.
    Entry,
    /// Anything else ends the clean section.
    Other,
}

/// Classifies a line at the start of a statement in the preamble or clean section.
fn classify(line: &[u8], from_pg_dump: bool) -> Line {
    let Ok(text) = std::str::from_utf8(line) else {
        return Line::Other;
    };
    let t = text.trim_end();
    if is_entry_header(t) {
        return Line::Entry;
    }
    if t.is_empty()
        || t.starts_with("--")
        || t.starts_with('\\')
        || t.starts_with("SET ")
        || t.starts_with("SELECT pg_catalog.set_config(")
    {
        return Line::Neutral;
    }
    if t.starts_with("DROP ")
        || (t.starts_with("ALTER ") && t.contains(" DROP "))
        || t.starts_with("SELECT pg_catalog.lo_unlink(")
    {
        return Line::Clean(CleanKind::Drop);
    }
    // Only pg_dump's scripts are known to hold dummy views in their clean section.
    if from_pg_dump && t.starts_with("CREATE OR REPLACE VIEW ") {
        return Line::Clean(CleanKind::DummyView);
    }
    Line::Other
}

/// The comment lines pg_dump puts at the top of each archive entry (plain format and
/// pg_restore's script): `-- Name: x; Type: TABLE; ...`, `-- Data for Name: ...`, and with
/// `--verbose` `-- TOC entry 215 (class 1259 OID 16390)` first.
fn is_entry_header(line: &str) -> bool {
    line.starts_with("-- Name: ")
        || line.starts_with("-- Data for Name: ")
        || line.starts_with("-- TOC entry ")
}

/// Where the lexer is, between lines of one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lex {
    Top,
    /// In a '...' string; `true` for an E'...' string (backslash escapes).
    Single(bool),
    Double,
    /// In a dollar-quoted string, with its tag (`$tag$`).
    Dollar(String),
    /// In a /* ... */ comment, nested this deep.
    Block(u32),
}

/// What one line did to the statement.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// The statement goes on in the next line.
    Open,
    /// The line ends the statement with its one `;`.
    Complete,
    /// A `;` in the middle of the line: more than one statement, not pg_dump's.
    Broken,
}

/// Follows quotes, dollar quotes and comments through one line of a statement.
fn scan(lex: &mut Lex, line: &str) -> Scan {
    let b = line.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match lex {
            Lex::Top => match c {
                b'\'' => {
                    let escapes = i > 0
                        && (b[i - 1] == b'E' || b[i - 1] == b'e')
                        && (i < 2 || !ident(b[i - 2]));
                    *lex = Lex::Single(escapes);
                }
                b'"' => *lex = Lex::Double,
                b'-' if b.get(i + 1) == Some(&b'-') => return Scan::Open,
                b'/' if b.get(i + 1) == Some(&b'*') => {
                    *lex = Lex::Block(1);
                    i += 1;
                }
                b'$' if i == 0 || !ident(b[i - 1]) => {
                    let tag_len = b[i + 1..]
                        .iter()
                        .take_while(|&&x| ident(x) && x != b'$')
                        .count();
                    let first_ok = tag_len == 0 || !b[i + 1].is_ascii_digit();
                    if first_ok && b.get(i + 1 + tag_len) == Some(&b'$') {
                        *lex = Lex::Dollar(line[i..i + tag_len + 2].to_string());
                        i += tag_len + 1;
                    }
                }
                b';' => {
                    return if line[i + 1..].trim().is_empty() {
                        Scan::Complete
                    } else {
                        Scan::Broken
                    };
                }
                _ => {}
            },
            Lex::Single(escapes) => {
                if c == b'\\' && *escapes {
                    i += 1;
                } else if c == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 1;
                    } else {
                        *lex = Lex::Top;
                    }
                }
            }
            Lex::Double => {
                if c == b'"' {
                    if b.get(i + 1) == Some(&b'"') {
                        i += 1;
                    } else {
                        *lex = Lex::Top;
                    }
                }
            }
            Lex::Dollar(tag) => {
                if c == b'$' && b[i..].starts_with(tag.as_bytes()) {
                    i += tag.len() - 1;
                    *lex = Lex::Top;
                }
            }
            Lex::Block(depth) => {
                if c == b'*' && b.get(i + 1) == Some(&b'/') {
                    *depth -= 1;
                    i += 1;
                    if *depth == 0 {
                        *lex = Lex::Top;
                    }
                } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
                    *depth += 1;
                    i += 1;
                }
            }
        }
        i += 1;
    }
    Scan::Open
}

/// Where [`Stream`] is inside the SQL, between two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Top,
    /// After a `-` at top level: a `--` comment if another follows.
    Dash,
    /// After a `/` at top level: a `/*` comment if a `*` follows.
    Slash,
    /// In a `--` comment, up to the end of the line.
    LineComment,
    /// In a `/* ... */` comment ([`Stream::depth`] deep), after a `*`, after a `/`.
    Block,
    BlockStar,
    BlockSlash,
    /// In a '...' string ([`Stream::escapes`] for E'...'), after a backslash in an E'...'
    /// string, after a quote that ends it unless another follows.
    Single,
    SingleEscape,
    SingleEnd,
    /// In a "..." identifier, after a quote that ends it unless another follows.
    Double,
    DoubleEnd,
    /// After a `$` that may open a dollar quote: its tag is being read.
    DollarTag,
    /// In a dollar-quoted string whose closing tag is [`Stream::tag`].
    Dollar,
}

/// The script's SQL lexed as psql does, across lines and across writes, so that a line is
/// judged by where it stands: at the start of a top-level statement, or inside a string, a
/// dollar-quoted body, a comment, a statement. It also tells when a top-level
/// `COPY ... FROM stdin;` ends, after which COPY data follows. No allocation per byte; quoted
/// text and comments are skipped with memchr.
struct Stream {
    tok: Tok,
    depth: u32,
    escapes: bool,
    /// The dollar quote's tag, both `$` included, and how much of it the body has matched.
    tag: Vec<u8>,
    matched: usize,
    /// The last two top-level bytes of the statement (0: none or a token boundary).
    prev: u8,
    prev2: u8,
    /// Something other than white space and comments was seen since the last top-level `;`.
    in_stmt: bool,
    /// The statement's first top-level bytes, and its last ones (a ring; quoted text and
    /// comments stand as one byte).
    head: [u8; 5],
    head_len: usize,
    tail: [u8; 16],
    tail_pushed: usize,
    /// A top-level `COPY ... FROM stdin;` ended in the current line.
    copy_ended: bool,
    /// psql's own rule for SQL-standard function bodies (`BEGIN ATOMIC ... END`): in a statement
    /// that starts `CREATE [OR REPLACE] FUNCTION|PROCEDURE`, `BEGIN` (and `CASE` inside it) opens
    /// a block that `END` closes, and a `;` ends the statement only outside blocks and
    /// parentheses. The word being read (lower case, cut at 9 bytes), the statement's word count,
    /// the first letters of its first words, and the depths.
    word: [u8; 9],
    word_len: usize,
    in_word: bool,
    words: u32,
    first_letters: [u8; 4],
    parens: u32,
    blocks: u32,
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

impl Stream {
    fn new() -> Self {
        Stream {
            tok: Tok::Top,
            depth: 0,
            escapes: false,
            tag: Vec::new(),
            matched: 0,
            prev: 0,
            prev2: 0,
            in_stmt: false,
            head: [0; 5],
            head_len: 0,
            tail: [0; 16],
            tail_pushed: 0,
            copy_ended: false,
            word: [0; 9],
            word_len: 0,
            in_word: false,
            words: 0,
            first_letters: [0; 4],
            parens: 0,
            blocks: 0,
        }
    }

    /// Follows the words of a top-level statement (see the `word` field): psql's lexer rule.
    fn word_byte(&mut self, c: u8) {
        let cont = c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
        if self.in_word && cont {
            if self.word_len < self.word.len() {
                self.word[self.word_len] = c.to_ascii_lowercase();
            }
            self.word_len += 1;
            return;
        }
        if self.in_word {
            self.end_word();
        }
        if (c.is_ascii_alphabetic() || c == b'_' || c >= 0x80) && !is_ident(self.prev) {
            self.in_word = true;
            self.word[0] = c.to_ascii_lowercase();
            self.word_len = 1;
        }
    }

    fn end_word(&mut self) {
        self.in_word = false;
        let word = &self.word[..self.word_len.min(self.word.len())];
        let word = if self.word_len > self.word.len() {
            &[][..]
        } else {
            word
        };
        let n = self.words as usize;
        if n < self.first_letters.len()
            && matches!(
                word,
                b"create" | b"function" | b"procedure" | b"or" | b"replace"
            )
        {
            self.first_letters[n] = word[0];
        }
        self.words += 1;
        let f = self.first_letters;
        let creates_routine = f[0] == b'c'
            && (f[1] == b'f'
                || f[1] == b'p'
                || (f[1] == b'o' && f[2] == b'r' && matches!(f[3], b'f' | b'p')));
        if creates_routine && self.parens == 0 {
            match word {
                b"begin" => self.blocks += 1,
                b"case" if self.blocks >= 1 => self.blocks += 1,
                b"end" if self.blocks > 0 => self.blocks -= 1,
                _ => {}
            }
        }
    }

    /// At the start of a top-level statement (only white space and comments since the last one).
    fn at_start(&self) -> bool {
        self.tok == Tok::Top && !self.in_stmt
    }

    /// Whether a top-level `COPY ... FROM stdin;` ended since the last call.
    fn take_copy(&mut self) -> bool {
        std::mem::take(&mut self.copy_ended)
    }

    fn feed(&mut self, b: &[u8]) {
        let mut i = 0;
        while i < b.len() {
            let rest = &b[i..];
            let skip = match self.tok {
                Tok::Dollar if self.matched == 0 => memchr::memchr(b'$', rest),
                Tok::Single if self.escapes => memchr::memchr2(b'\'', b'\\', rest),
                Tok::Single => memchr::memchr(b'\'', rest),
                Tok::Double => memchr::memchr(b'"', rest),
                Tok::LineComment => memchr::memchr(b'\n', rest),
                Tok::Block => memchr::memchr2(b'*', b'/', rest),
                _ => Some(0),
            };
            let Some(n) = skip else { return };
            i += n;
            self.step(b[i]);
            i += 1;
        }
    }

    /// A byte of the statement's top-level text.
    fn push(&mut self, c: u8) {
        if !c.is_ascii_whitespace() {
            self.in_stmt = true;
        }
        if !self.in_stmt {
            return;
        }
        if self.head_len < self.head.len() {
            self.head[self.head_len] = c;
            self.head_len += 1;
        }
        self.tail[self.tail_pushed % self.tail.len()] = c;
        self.tail_pushed += 1;
        self.prev2 = self.prev;
        self.prev = c;
    }

    /// A comment or the end of a quoted token: a boundary in the statement's text.
    fn boundary(&mut self, c: u8) {
        if self.in_stmt {
            self.tail[self.tail_pushed % self.tail.len()] = c;
            self.tail_pushed += 1;
        }
        self.prev2 = self.prev;
        self.prev = 0;
    }

    fn step(&mut self, c: u8) {
        loop {
            match self.tok {
                Tok::Top => self.top(c),
                Tok::Dash | Tok::Slash => {
                    let first = if self.tok == Tok::Dash { b'-' } else { b'/' };
                    self.tok = Tok::Top;
                    if first == b'-' && c == b'-' {
                        self.tok = Tok::LineComment;
                        self.boundary(b' ');
                    } else if first == b'/' && c == b'*' {
                        self.tok = Tok::Block;
                        self.depth = 1;
                        self.boundary(b' ');
                    } else {
                        self.push(first);
                        continue;
                    }
                }
                Tok::LineComment => {
                    if c == b'\n' {
                        self.tok = Tok::Top;
                    }
                }
                Tok::Block => match c {
                    b'*' => self.tok = Tok::BlockStar,
                    b'/' => self.tok = Tok::BlockSlash,
                    _ => {}
                },
                Tok::BlockStar => {
                    self.tok = Tok::Block;
                    if c == b'/' {
                        self.depth -= 1;
                        if self.depth == 0 {
                            self.tok = Tok::Top;
                        }
                    } else {
                        continue;
                    }
                }
                Tok::BlockSlash => {
                    self.tok = Tok::Block;
                    if c == b'*' {
                        self.depth += 1;
                    } else {
                        continue;
                    }
                }
                Tok::Single => match c {
                    b'\\' if self.escapes => self.tok = Tok::SingleEscape,
                    b'\'' => self.tok = Tok::SingleEnd,
                    _ => {}
                },
                Tok::SingleEscape => self.tok = Tok::Single,
                Tok::SingleEnd => {
                    if c == b'\'' {
                        self.tok = Tok::Single;
                    } else {
                        self.tok = Tok::Top;
                        self.boundary(b'\'');
                        continue;
                    }
                }
                Tok::Double => {
                    if c == b'"' {
                        self.tok = Tok::DoubleEnd;
                    }
                }
                Tok::DoubleEnd => {
                    if c == b'"' {
                        self.tok = Tok::Double;
                    } else {
                        self.tok = Tok::Top;
                        self.boundary(b'"');
                        continue;
                    }
                }
                Tok::DollarTag => {
                    if c == b'$' {
                        self.tag.push(c);
                        self.tok = Tok::Dollar;
                        self.matched = 0;
                    } else if is_ident(c) && !(self.tag.len() == 1 && c.is_ascii_digit()) {
                        self.tag.push(c);
                        self.push(c);
                    } else {
                        self.tok = Tok::Top;
                        continue;
                    }
                }
                Tok::Dollar => {
                    if c == self.tag[self.matched] {
                        self.matched += 1;
                        if self.matched == self.tag.len() {
                            self.tok = Tok::Top;
                            self.boundary(b'$');
                        }
                    } else {
                        self.matched = usize::from(c == b'$');
                    }
                }
            }
            return;
        }
    }

    fn top(&mut self, c: u8) {
        self.word_byte(c);
        match c {
            b'-' => self.tok = Tok::Dash,
            b'/' => self.tok = Tok::Slash,
            b'\'' => {
                self.escapes = matches!(self.prev, b'E' | b'e') && !is_ident(self.prev2);
                self.push(c);
                self.tok = Tok::Single;
            }
            b'"' => {
                self.push(c);
                self.tok = Tok::Double;
            }
            b'$' if !is_ident(self.prev) => {
                self.push(c);
                self.tag.clear();
                self.tag.push(c);
                self.tok = Tok::DollarTag;
            }
            b'(' => {
                self.parens += 1;
                self.push(c);
            }
            b')' => {
                self.parens = self.parens.saturating_sub(1);
                self.push(c);
            }
            // Inside a `BEGIN ATOMIC` body or parentheses, psql does not end the statement.
            b';' if self.parens > 0 || self.blocks > 0 => self.push(c),
            b';' => {
                self.copy_ended |= self.is_copy_from_stdin();
                self.in_stmt = false;
                self.head_len = 0;
                self.tail_pushed = 0;
                self.prev = 0;
                self.prev2 = 0;
                self.words = 0;
                self.first_letters = [0; 4];
            }
            _ => self.push(c),
        }
    }

    /// The statement that a top-level `;` ends is `COPY ... FROM stdin`.
    fn is_copy_from_stdin(&self) -> bool {
        let head = &self.head[..self.head_len];
        if head.len() < 5
            || !head[..4].eq_ignore_ascii_case(b"COPY")
            || !head[4].is_ascii_whitespace()
        {
            return false;
        }
        let n = self.tail_pushed.min(self.tail.len());
        let mut tail = [0u8; 16];
        for (k, slot) in tail[..n].iter_mut().enumerate() {
            *slot = self.tail[(self.tail_pushed - n + k) % self.tail.len()];
        }
        let t = tail[..n].trim_ascii_end();
        let Some(t) = strip_suffix_ci(t, b"stdin") else {
            return false;
        };
        let before = t.trim_ascii_end();
        if before.len() == t.len() {
            return false;
        }
        let Some(t) = strip_suffix_ci(before, b"from") else {
            return false;
        };
        !matches!(t.last(), Some(&c) if is_ident(c))
    }
}

fn strip_suffix_ci<'a>(t: &'a [u8], suffix: &[u8]) -> Option<&'a [u8]> {
    let cut = t.len().checked_sub(suffix.len())?;
    t[cut..].eq_ignore_ascii_case(suffix).then_some(&t[..cut])
}

/// A psql meta-command (`\restrict KEY`, `\connect db`): a backslash at the start of a line
/// that begins a statement.
fn is_meta_command(line: &[u8]) -> bool {
    line.trim_ascii_start().first() == Some(&b'\\')
}

/// Errors that mean the object to drop is not there: nothing is left to drop, so they are
/// neither tried again nor reported.
const NOTHING_THERE: &str =
    "undefined_object OR undefined_table OR undefined_function OR invalid_schema_name";

/// Errors that a guarded statement must not swallow: the restore's lock_timeout
/// (`lock_not_available`, 55P03) and statement_timeout or a cancel (`query_canceled`, 57014). Each
/// guarded statement would otherwise wait the whole limit in turn.
const PASS_ON: &str = "lock_not_available OR query_canceled";

/// The custom setting that collects the clean statements that failed, as a JSON array of
/// `[statement, error]`, for [`RETRY_BLOCK`].
const FAILED_SETTING: &str = "aos_backup.clean_failed";

fn wrap(stmt: &str, kind: CleanKind) -> String {
    match kind {
        CleanKind::Drop => format!(
            "DO $aos_clean$DECLARE s text := $aos_stmt${stmt}$aos_stmt$; BEGIN EXECUTE s; \
             EXCEPTION WHEN {PASS_ON} THEN RAISE; WHEN {NOTHING_THERE} THEN NULL; WHEN OTHERS THEN \
             PERFORM pg_catalog.set_config('{FAILED_SETTING}', \
             (coalesce(nullif(pg_catalog.current_setting('{FAILED_SETTING}', true), ''), '[]')::jsonb \
             || jsonb_build_array(jsonb_build_array(s, SQLERRM)))::text, false); END$aos_clean$;\n"
        ),
        CleanKind::DummyView => format!(
            "DO $aos_clean$BEGIN EXECUTE $aos_stmt${stmt}$aos_stmt$; \
             EXCEPTION WHEN {PASS_ON} THEN RAISE; WHEN OTHERS THEN RAISE NOTICE 'aos-backup: no dummy view: %', SQLERRM; END$aos_clean$;\n"
        ),
    }
}

/// Runs after the clean section: tries the failed drops again, in their order, as long as each
/// round drops something more; warns about each that still fails.
const RETRY_BLOCK: &str = "DO $aos_retry$
DECLARE
    failed jsonb := coalesce(nullif(pg_catalog.current_setting('aos_backup.clean_failed', true), ''), '[]')::jsonb;
    still jsonb;
    item jsonb;
    progress boolean := true;
BEGIN
    WHILE progress AND jsonb_array_length(failed) > 0 LOOP
        progress := false;
        still := '[]';
        FOR item IN SELECT value FROM jsonb_array_elements(failed) LOOP
            BEGIN
                EXECUTE item->>0;
                progress := true;
            EXCEPTION WHEN lock_not_available OR query_canceled THEN
                RAISE;
            WHEN undefined_object OR undefined_table OR undefined_function OR invalid_schema_name THEN
                progress := true;
            WHEN OTHERS THEN
                still := still || jsonb_build_array(jsonb_build_array(item->>0, SQLERRM));
            END;
        END LOOP;
        failed := still;
    END LOOP;
    FOR item IN SELECT value FROM jsonb_array_elements(failed) LOOP
        RAISE WARNING 'aos-backup: skipped during clean: %', item->>1;
    END LOOP;
    PERFORM pg_catalog.set_config('aos_backup.clean_failed', '', false);
END$aos_retry$;
";

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
            assert!(out.contains("DO $aos_clean$DECLARE s text := $aos_stmt$ALTER TABLE IF EXISTS ONLY public.p1 DROP CONSTRAINT IF EXISTS p1_pkey$aos_stmt$; BEGIN EXECUTE s;"));
            assert!(out.contains("s text := $aos_stmt$DROP TABLE IF EXISTS public.p$aos_stmt$"));
            // After the first CREATE, nothing is touched, not even an ALTER ... DROP.
            assert!(out.contains("\nALTER TABLE public.p DROP COLUMN x;\n"));
            assert!(out.contains("\\restrict abc\n") && out.ends_with("dump complete\n--\n"));
        }
    }

    /// pg_restore's clean section as PostgreSQL 15 writes it (abridged): no comments in it, a
    /// dummy view over several lines, statements of every kind, odd quoted names.
    const CLEAN_SCRIPT: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict k\n\n\
SET client_min_messages = warning;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n\
DROP POLICY IF EXISTS p ON public.base;\n\
CREATE OR REPLACE VIEW public.by_key AS\nSELECT\n    NULL::integer AS key,\n    NULL::public.dom_nv AS d;\n\
ALTER DOMAIN public.dom_nv DROP CONSTRAINT IF EXISTS dom_nv_ck;\n\
SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata WHERE oid = '16411';\n\
DROP TABLE IF EXISTS hr.\"line\nbreak; \"\"x\"\"\";\n\
DROP TABLE IF EXISTS public.base;\n\
--\n-- Name: base; Type: TABLE; Schema: public; Owner: -\n--\n\n\
CREATE TABLE public.base (\n    key integer\n);\n\
DROP TABLE later;\n\
CREATE OR REPLACE VIEW public.v AS SELECT 1;\n\
\\unrestrict k\n--\n-- PostgreSQL database dump complete\n--\n";

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
    fn statement_ends_follow_quotes_dollar_quotes_and_comments() {
        let cases: [(&[&str], Scan); 8] = [
            (&["DROP TABLE x;"], Scan::Complete),
            (&["DROP TABLE \"a;b\";  "], Scan::Complete),
            (&["DROP TABLE \"a", "b;\";"], Scan::Complete),
            (&["SELECT 'it''s;' ;"], Scan::Complete),
            (&["SELECT E'\\';' ;"], Scan::Complete),
            (&["SELECT $f$;$f$, $1;"], Scan::Complete),
            (&["SELECT /* ; /* ; */ ; */ 1 -- ;", ";"], Scan::Complete),
            (&["DROP TABLE a; DROP TABLE b;"], Scan::Broken),
        ];
        for (lines, want) in cases {
            let mut lex = Lex::Top;
            let mut got = Scan::Open;
            for l in lines {
                got = scan(&mut lex, l);
            }
            assert_eq!(got, want, "{lines:?}");
        }
    }

    fn peek(script: &str) -> CleanSection {
        let reader: Box<dyn Read + Send> = Box::new(io::Cursor::new(script.as_bytes().to_vec()));
        let (section, mut again) = peek_clean_section(reader).unwrap();
        let mut all = String::new();
        again.read_to_string(&mut all).unwrap();
        assert_eq!(all, script, "the head is given back");
        section
    }

    #[test]
    fn the_head_of_a_plain_dump_tells_whether_it_drops_what_it_creates() {
        let head = "--\n-- PostgreSQL database dump\n--\n\n\\restrict k\n\nSET x = 1;\n\
SELECT pg_catalog.set_config('search_path', '', false);\n\n";
        assert_eq!(peek(CLEAN_SCRIPT), CleanSection::Present);
        let create = format!(
            "{head}--\n-- Name: s; Type: SCHEMA; Schema: -; Owner: -\n--\n\nCREATE SCHEMA s;\n"
        );
        assert_eq!(peek(&create), CleanSection::Missing);
        let verbose = format!("{head}--\n-- TOC entry 5 (class 2615 OID 16385)\n-- Name: s; Type: SCHEMA; Schema: -; Owner: x\n--\n\nCREATE SCHEMA s;\n");
        assert_eq!(peek(&verbose), CleanSection::Missing);
        // Data-only dumps are meant for a database that has the schema.
        for entry in [
            "-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: -",
            "-- Name: 16411; Type: BLOB; Schema: -; Owner: -",
            "-- Name: s; Type: SEQUENCE SET; Schema: public; Owner: -",
        ] {
            assert_eq!(
                peek(&format!("{head}--\n{entry}\n--\n\nSELECT 1;\n")),
                CleanSection::Unknown
            );
        }
        // Not made by pg_dump: nothing is known.
        assert_eq!(
            peek("-- Name: x; Type: TABLE\nCREATE TABLE x();\n"),
            CleanSection::Unknown
        );
        assert_eq!(peek("CREATE TABLE x();\n"), CleanSection::Unknown);
        assert_eq!(peek(head), CleanSection::Unknown);
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
    fn the_lexer_finds_copy_from_stdin_statements_and_their_ends() {
        for (sql, copy) in [
            ("COPY t FROM stdin;", true),
            ("copy \"t\" (a, b) from STDIN ;", true),
            ("COPY t FROM stdin /* c */;", true),
            ("COPY t FROM 'stdin';", false),
            ("COPY t TO stdout;", false),
            ("SELECT 1 FROM stdin;", false),
            ("COPY t FROMstdin;", false),
            ("-- COPY t FROM stdin;\n", false),
            ("COPY t FROM $$stdin$$;", false),
        ] {
            let mut s = Stream::new();
            s.feed(sql.as_bytes());
            assert_eq!(s.take_copy(), copy, "{sql}");
        }
        let mut s = Stream::new();
        for part in [
            "SELECT $a$ ; $",
            "a$, E'\\'; ' /* /* */ ;",
            " */ -",
            "- ;\n",
        ] {
            s.feed(part.as_bytes());
            assert!(!s.at_start(), "{part}");
        }
        s.feed(b";");
        assert!(s.at_start());
    }

    #[test]
    fn guards_let_lock_timeouts_and_cancels_through() {
        for text in [
            wrap("DROP TABLE x", CleanKind::Drop),
            wrap("CREATE OR REPLACE VIEW v AS SELECT 1", CleanKind::DummyView),
            RETRY_BLOCK.to_string(),
        ] {
            let pass = text
                .find("WHEN lock_not_available OR query_canceled THEN")
                .unwrap_or_else(|| panic!("{text}"));
            let raise = text[pass..].find("RAISE;").unwrap();
            assert!(raise < text[pass..].find("WHEN OTHERS").unwrap(), "{text}");
        }
    }

    #[test]
    fn text_without_a_final_newline_is_passed_on_whole() {
        let (out, r, _) = feed("DROP TABLE x;\nSELECT 1", 4, false);
        assert!(r.is_ok());
        assert!(out.ends_with("SELECT 1"), "{out}");
    }
}
