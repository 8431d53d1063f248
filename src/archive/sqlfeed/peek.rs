//! A look at the head of a plain SQL script before it is fed: does it have a clean section?

use std::io::{self, Read};

use super::clean::{classify, Line};
use crate::archive::dumpcheck::SQL_HEADER;

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
            if let Some(verdict) = head_line(line, &mut from_pg_dump) {
                break 'read verdict;
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

/// What a line of the head tells, if it tells anything; notes whether the script says it was
/// made by pg_dump.
fn head_line(line: &[u8], from_pg_dump: &mut bool) -> Option<CleanSection> {
    match classify(line, *from_pg_dump) {
        Line::Neutral => {
            *from_pg_dump |= line.trim_ascii_end() == SQL_HEADER;
            None
        }
        Line::Clean(_) => Some(CleanSection::Present),
        Line::Other => Some(CleanSection::Unknown),
        Line::Entry => match entry_type(&String::from_utf8_lossy(line)) {
            // `-- TOC entry ...`: the entry's name follows.
            None => None,
            Some(_) if !*from_pg_dump => Some(CleanSection::Unknown),
            Some(kind) if is_data_entry(&kind) => Some(CleanSection::Unknown),
            Some(_) => Some(CleanSection::Missing),
        },
    }
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

#[cfg(test)]
mod tests {
    use super::super::samples::CLEAN_SCRIPT;
    use super::*;

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
}
