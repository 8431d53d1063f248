//! The check of a plain SQL dump: pg_dump's trailer at its end, and its `TABLE` entries counted
//! by their header comments.

use super::Verdict;

/// The first line of pg_dump's plain SQL output.
pub const SQL_HEADER: &[u8] = b"-- PostgreSQL database dump";
/// The line pg_dump writes at the end of a complete plain SQL dump.
pub const SQL_TRAILER: &[u8] = b"-- PostgreSQL database dump complete";

/// Keeps the last bytes of a plain SQL stream to look for pg_dump's trailer, and counts its
/// `TABLE` entries by their header comments (`-- Name: t; Type: TABLE; Schema: ...`, at the
/// start of a line), as the custom check counts them in its table of contents.
pub struct SqlTail {
    head: Vec<u8>,
    tail: Vec<u8>,
    /// The start of a header comment line the last chunk ended in (from its `\n`), or a prefix
    /// of one; empty when the last chunk did not end in one.
    line: Vec<u8>,
    tables: u64,
    finder: memchr::memmem::Finder<'static>,
}

const TAIL: usize = 512;
/// What starts the header comment of every object in a plain dump.
const NAME_LINE: &[u8] = b"\n-- Name: ";
/// What follows a table's name in its header comment.
const TABLE_TYPE: &[u8] = b"; Type: TABLE; Schema: ";
/// Header comment lines longer than this are not looked at (a name is at most 63 bytes, 130
/// quoted).
const LINE_MAX: usize = 1024;

impl SqlTail {
    /// A check of a stream not begun yet.
    #[must_use]
    pub fn new() -> SqlTail {
        SqlTail {
            head: Vec::new(),
            tail: Vec::with_capacity(2 * TAIL),
            line: Vec::new(),
            tables: 0,
            finder: memchr::memmem::Finder::new(NAME_LINE),
        }
    }

    /// Counts the `TABLE` header comments in `data`, carrying a line cut by its end over to the
    /// next call. One SIMD search over the data; per object, a look at its header line.
    fn count_tables(&mut self, data: &[u8]) {
        let from = if self.line.is_empty() {
            0
        } else {
            match self.end_carried_line(data) {
                Some(from) => from,
                None => return,
            }
        };
        let rest = &data[from..];
        self.count_whole_lines(rest);
        if self.line.is_empty() {
            self.carry_line_start(rest);
        }
    }

    /// Ends the header line the last chunk was cut in with the first bytes of `data`. Returns
    /// where the search of `data` goes on, or None when all of `data` went into the line.
    fn end_carried_line(&mut self, data: &[u8]) -> Option<usize> {
        match memchr::memchr(b'\n', &data[..data.len().min(LINE_MAX)]) {
            Some(nl) => {
                self.line.extend_from_slice(&data[..nl]);
                if is_table_line(&self.line) {
                    self.tables += 1;
                }
                self.line.clear();
                Some(nl)
            }
            None if self.line.len() + data.len() <= LINE_MAX => {
                self.line.extend_from_slice(data);
                if !could_be_name_line(&self.line) {
                    self.line.clear();
                }
                None
            }
            // A line too long to be a header: the rest of the chunk is searched.
            None => {
                self.line.clear();
                Some(0)
            }
        }
    }

    /// Counts the header lines that start in `rest`; keeps one cut by its end.
    fn count_whole_lines(&mut self, rest: &[u8]) {
        for at in self.finder.find_iter(rest) {
            let line = &rest[at..];
            match memchr::memchr(b'\n', &line[1..line.len().min(LINE_MAX)]) {
                Some(end) if is_table_line(&line[..=end]) => self.tables += 1,
                Some(_) => {}
                None if line.len() <= LINE_MAX => self.line.extend_from_slice(line),
                None => {}
            }
        }
    }

    /// Keeps the end of `rest` if it may be the first bytes of a header line.
    fn carry_line_start(&mut self, rest: &[u8]) {
        let start = rest.len().saturating_sub(NAME_LINE.len() - 1);
        if let Some(nl) = memchr::memrchr(b'\n', &rest[start..]) {
            let cut = &rest[start + nl..];
            if could_be_name_line(cut) {
                self.line.extend_from_slice(cut);
            }
        }
    }

    /// Looks at the next bytes of the stream.
    pub fn feed(&mut self, data: &[u8]) {
        self.count_tables(data);
        if self.head.len() < 64 {
            let take = (64 - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
        }
        if data.len() >= TAIL {
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - TAIL..]);
        } else {
            self.tail.extend_from_slice(data);
            if self.tail.len() > 2 * TAIL {
                self.tail.drain(..self.tail.len() - TAIL);
            }
        }
    }

    /// The verdict once the stream has ended.
    #[must_use]
    pub fn finish(&self) -> Verdict {
        if self.head.is_empty() {
            return Verdict::Incomplete("it is empty".into());
        }
        if sql_complete(&self.tail) {
            Verdict::Complete {
                tables: Some(self.tables),
            }
        } else {
            Verdict::Incomplete(
                "it does not end with pg_dump's \"PostgreSQL database dump complete\" line".into(),
            )
        }
    }
}

impl Default for SqlTail {
    fn default() -> Self {
        SqlTail::new()
    }
}

/// Whether `line` (from its `\n`) is a table's header comment.
fn is_table_line(line: &[u8]) -> bool {
    line.starts_with(NAME_LINE)
        && memchr::memmem::find(&line[NAME_LINE.len()..], TABLE_TYPE).is_some()
}

/// Whether `cut` (from a `\n`, to the end of a chunk) may be the start of a header comment.
fn could_be_name_line(cut: &[u8]) -> bool {
    let n = cut.len().min(NAME_LINE.len());
    cut[..n] == NAME_LINE[..n]
}

/// Whether a plain dump's last bytes are pg_dump's trailer: the "dump complete" comment at the
/// start of a line, followed only by comment dashes, blank lines and `\unrestrict` lines.
#[must_use]
pub(crate) fn sql_complete(tail: &[u8]) -> bool {
    let Some(at) = memchr::memmem::rfind(tail, SQL_TRAILER) else {
        return false;
    };
    if at > 0 && tail[at - 1] != b'\n' {
        return false;
    }
    let rest = &tail[at + SQL_TRAILER.len()..];
    rest.split(|&c| c == b'\n').all(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line.is_empty() || line == b"--" || line.starts_with(b"\\unrestrict ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_TABLE_SQL: &[u8] =
        include_bytes!("../../../tests/fixtures/dumpcheck/empty-table.sql");

    fn sql(bytes: &[u8]) -> Verdict {
        let mut t = SqlTail::new();
        t.feed(bytes);
        t.finish()
    }

    #[test]
    fn a_sql_dump_is_complete_only_with_its_trailer() {
        assert_eq!(sql(EMPTY_TABLE_SQL), Verdict::Complete { tables: Some(1) });
        let at = memchr::memmem::find(EMPTY_TABLE_SQL, SQL_TRAILER).unwrap();
        for cut in 0..at + SQL_TRAILER.len() {
            assert!(
                matches!(sql(&EMPTY_TABLE_SQL[..cut]), Verdict::Incomplete(_)),
                "cut at {cut}"
            );
        }
        let restricted =
            b"--\n-- PostgreSQL database dump\n--\n\n\\restrict k\nSET x = 1;\n\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict k\n\n";
        assert_eq!(sql(restricted), Verdict::Complete { tables: Some(0) });
        let in_data = b"COPY t (a) FROM stdin;\nx -- PostgreSQL database dump complete\n";
        assert!(matches!(sql(in_data), Verdict::Incomplete(_)));
        let more = b"-- PostgreSQL database dump complete\n--\nCREATE TABLE late (a int);\n";
        assert!(matches!(sql(more), Verdict::Incomplete(_)));
        // Fed in small pieces, the tail is the same.
        let mut t = SqlTail::new();
        let big: Vec<u8> = std::iter::repeat_n(b"INSERT 1;\n".as_slice(), 500)
            .flatten()
            .copied()
            .chain(EMPTY_TABLE_SQL.iter().copied())
            .collect();
        for c in big.chunks(7) {
            t.feed(c);
        }
        assert_eq!(t.finish(), Verdict::Complete { tables: Some(1) });
    }

    #[test]
    fn a_sql_dump_counts_its_table_headers_however_it_is_split() {
        let mut dump = b"--\n-- PostgreSQL database dump\n--\n".to_vec();
        for t in ["a", "\"Quoted; Type: TABLE; Name\"", "c"] {
            dump.extend_from_slice(
                format!("\n--\n-- Name: {t}; Type: TABLE; Schema: public; Owner: -\n--\n\nCREATE TABLE {t} (x text);\n").as_bytes(),
            );
        }
        // Not tables: other types, data headers, a row that only looks like a header.
        dump.extend_from_slice(b"\n-- Name: s; Type: SEQUENCE; Schema: public; Owner: -\n");
        dump.extend_from_slice(b"\n-- Name: p; Type: TABLE ATTACH; Schema: public; Owner: -\n");
        dump.extend_from_slice(
            b"\n-- Data for Name: a; Type: TABLE DATA; Schema: public; Owner: -\n",
        );
        dump.extend_from_slice(
            b"COPY a (x) FROM stdin;\nx -- Name: b; Type: TABLE; Schema: public\n\\.\n",
        );
        dump.extend_from_slice(&[b'y'; 3000]);
        dump.extend_from_slice(b"\n-- Name: last; Type: TABLE; Schema: public; Owner: -\n");
        dump.extend_from_slice(b"\n--\n-- PostgreSQL database dump complete\n--\n\n");
        assert_eq!(sql(&dump), Verdict::Complete { tables: Some(4) });
        for size in [1, 2, 3, 5, 9, 10, 11, 17, 64, 1000, 4096] {
            let mut t = SqlTail::new();
            for c in dump.chunks(size) {
                t.feed(c);
            }
            assert_eq!(
                t.finish(),
                Verdict::Complete { tables: Some(4) },
                "chunks of {size}"
            );
        }
        // Every split point of two chunks.
        for at in 0..dump.len() {
            let mut t = SqlTail::new();
            t.feed(&dump[..at]);
            t.feed(&dump[at..]);
            assert_eq!(
                t.finish(),
                Verdict::Complete { tables: Some(4) },
                "split at {at}"
            );
        }
    }
}
