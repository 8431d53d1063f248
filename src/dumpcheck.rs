//! Whether pg_dump really wrote a whole archive, judged while its output streams by: pg_dump can
//! exit 0 after writing a cut-short archive, and such a backup must never count as complete.
//!
//! - Custom archives (`PGDMP`): the header and the table of contents are parsed, then every data
//!   block is skipped through by its length-prefixed chunks. Complete means: every entry that has
//!   data had its block read to its end marker, and the stream ends right after the last block.
//!   The parser copies nothing but a few bytes per item (lengths, ids, short names); data bytes
//!   are only counted past.
//! - Plain SQL: the stream must end with pg_dump's "dump complete" trailer.
//! - Directory archives: `toc.dat` must parse to its end, and every data file it names must
//!   exist (large objects: every file `blobs*.toc` lists). Data files are not decompressed.
//!
//! Archive versions this parser does not know (newer pg_dump releases) give [`Verdict::Unknown`]:
//! the caller then reads the finished archive through pg_restore instead of guessing.
//!
//! Layout, from PostgreSQL's `pg_backup_archiver.c` (`WriteHead`, `WriteToc`) and
//! `pg_backup_custom.c` (`_StartData`, `_EndData`, `_StartLOs`, `_EndLOs`): an int is one sign
//! byte then `intSize` bytes little-endian; a string is an int length (-1 = NULL) then its bytes.

use std::collections::HashSet;
use std::path::Path;

/// The first line of pg_dump's plain SQL output.
pub const SQL_HEADER: &[u8] = b"-- PostgreSQL database dump";
/// The line pg_dump writes at the end of a complete plain SQL dump.
pub const SQL_TRAILER: &[u8] = b"-- PostgreSQL database dump complete";

/// What the check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The archive is whole. `tables`: its `TABLE` entries (None when the format has no table
    /// of contents).
    Complete { tables: Option<u64> },
    /// The archive is cut short or damaged; why, in words.
    Incomplete(String),
    /// This parser cannot judge (an archive version it does not know, or a structure it did not
    /// expect); why, in words.
    Unknown(String),
}

/// The oldest and newest archive versions the parser knows: 1.12 (PostgreSQL 9.0) to 1.16
/// (PostgreSQL 17).
const MIN_VERSION: u32 = version(1, 12, 0);
const MAX_VERSION: u32 = version(1, 16, 255);
const V1_14: u32 = version(1, 14, 0);
const V1_15: u32 = version(1, 15, 0);
const V1_16: u32 = version(1, 16, 0);

const fn version(major: u32, minor: u32, rev: u32) -> u32 {
    (major * 256 + minor) * 256 + rev
}

/// pg_dump's archive format codes (`ArchiveFormat`).
const FORMAT_CUSTOM: u8 = 1;
/// A directory archive's `toc.dat` carries the tar code: pg_dump writes it there, the two
/// formats being compatible (pg_backup_directory.c, `_CloseArchive`).
const FORMAT_TAR: u8 = 3;
/// Data block types.
const BLK_DATA: u8 = 1;
const BLK_BLOBS: u8 = 3;
/// Strings longer than this are skipped, never kept (only short names are looked at).
const KEEP: usize = 64;

/// Where the parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Magic, version, intSize, offSize, format: 11 bytes.
    Head,
    Compression,
    /// The 7 ints of the creation date.
    Date(u8),
    /// Database name, server version, pg_dump version.
    HeadStr(u8),
    TocCount,
    Entry(Field),
    /// Between data blocks: a block type byte, or the end.
    BlockType,
    BlockId(u8),
    /// A chunk length inside a data block (of a table, or of one large object); 0 ends it.
    ChunkLen {
        blob: bool,
    },
    /// A large object's OID inside a blobs block; 0 ends the block.
    BlobOid,
    /// Something went wrong; nothing more is read.
    Stopped,
}

/// The fields of one table-of-contents entry, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    DumpId,
    HadDumper,
    TableOid,
    Oid,
    Tag,
    Desc,
    Section,
    Defn,
    DropStmt,
    CopyStmt,
    Namespace,
    Tablespace,
    TableAm,
    RelKind,
    Owner,
    WithOids,
    Deps,
    /// Custom format: offset flag byte + offSize bytes. Directory format: a file name.
    Extra,
}

/// A string as the parser saw it.
enum S<'a> {
    Null,
    Skipped,
    Kept(&'a [u8]),
}

/// The table of contents and data-block parser of custom and directory archives.
pub struct ArchiveParser {
    st: St,
    /// Whether data blocks follow the table of contents (custom) or files hold them (directory).
    expect_format: u8,
    version: u32,
    int_size: usize,
    off_size: usize,
    /// The item being gathered (an int, a fixed header, a short string).
    item: [u8; KEEP],
    have: usize,
    /// Bytes to count past (string contents, data chunks).
    skip: u64,
    /// The length of a string being kept, once its length int was read.
    keep_len: Option<usize>,
    entries_left: i64,
    entries: u64,
    entry_id: i64,
    entry_has_data: bool,
    entry_is_table: bool,
    entry_is_blobs: bool,
    /// Entries whose data has not been seen yet.
    pending: HashSet<i64>,
    /// Custom: the block being read. Directory: data file names.
    block_id: i64,
    blocks: u64,
    pub tables: u64,
    /// Directory format: the files its table of contents names.
    pub files: Vec<(String, bool)>,
    consumed: u64,
    problem: Option<Verdict>,
}

impl ArchiveParser {
    fn new(expect_format: u8) -> ArchiveParser {
        ArchiveParser {
            st: St::Head,
            expect_format,
            version: 0,
            int_size: 4,
            off_size: 8,
            item: [0; KEEP],
            have: 0,
            skip: 0,
            keep_len: None,
            entries_left: 0,
            entries: 0,
            entry_id: 0,
            entry_has_data: false,
            entry_is_table: false,
            entry_is_blobs: false,
            pending: HashSet::new(),
            block_id: 0,
            blocks: 0,
            tables: 0,
            files: Vec::new(),
            consumed: 0,
            problem: None,
        }
    }

    /// A parser of a custom archive streamed by pg_dump.
    #[must_use]
    pub fn custom() -> ArchiveParser {
        ArchiveParser::new(FORMAT_CUSTOM)
    }

    /// A parser of a directory archive's `toc.dat`.
    #[must_use]
    pub fn directory_toc() -> ArchiveParser {
        ArchiveParser::new(FORMAT_TAR)
    }

    fn int_len(&self) -> usize {
        1 + self.int_size
    }

    /// How many bytes the current item takes.
    fn item_len(&self) -> usize {
        if let Some(n) = self.keep_len {
            return n;
        }
        match self.st {
            St::Head => 11,
            St::Compression if self.version >= V1_15 => 1,
            St::BlockType => 1,
            St::Entry(Field::Extra) if self.expect_format == FORMAT_CUSTOM => 1 + self.off_size,
            _ => self.int_len(),
        }
    }

    /// Feeds the next bytes of the stream.
    pub fn feed(&mut self, mut buf: &[u8]) {
        while !buf.is_empty() {
            if self.skip > 0 {
                let k = usize::try_from(self.skip).map_or(buf.len(), |s| s.min(buf.len()));
                self.skip -= k as u64;
                self.consumed += k as u64;
                buf = &buf[k..];
                continue;
            }
            if self.st == St::Stopped {
                return;
            }
            if let St::ChunkLen { .. } = self.st {
                // The hot path: chunk after chunk of table data, read straight from `buf`.
                buf = self.skip_chunks(buf);
                if buf.is_empty() || self.skip > 0 {
                    continue;
                }
            }
            if self.st == St::BlockType && self.expect_format == FORMAT_TAR {
                self.stop(Verdict::Unknown(format!(
                    "toc.dat has {} unexpected byte(s) after its table of contents",
                    buf.len()
                )));
                return;
            }
            let n = self.item_len();
            let k = (n - self.have).min(buf.len());
            self.item[self.have..self.have + k].copy_from_slice(&buf[..k]);
            self.have += k;
            self.consumed += k as u64;
            buf = &buf[k..];
            if self.have == n {
                self.have = 0;
                let item = self.item;
                self.step(&item[..n]);
            }
        }
    }

    /// Skips whole chunks (length int, then data) lying in `buf`; returns the rest. Stops before
    /// an end marker, an odd length or a length cut by the end of `buf` (left to [`Self::step`]),
    /// and after a chunk whose data goes on past `buf` (left to `skip`).
    fn skip_chunks<'a>(&mut self, mut buf: &'a [u8]) -> &'a [u8] {
        let il = self.int_len();
        if self.have != 0 {
            return buf;
        }
        while buf.len() >= il {
            let n = self.int(&buf[..il]);
            if n <= 0 {
                break;
            }
            let n = n.unsigned_abs();
            let rest = buf.len() - il;
            self.consumed += il as u64;
            match usize::try_from(n) {
                Ok(k) if k <= rest => {
                    self.consumed += n;
                    buf = &buf[il + k..];
                }
                _ => {
                    self.skip = n;
                    return &buf[il..];
                }
            }
        }
        buf
    }

    fn stop(&mut self, v: Verdict) {
        if self.problem.is_none() {
            self.problem = Some(v);
        }
        self.st = St::Stopped;
        self.skip = 0;
    }

    fn unexpected(&mut self, what: String) {
        self.stop(Verdict::Unknown(format!(
            "unexpected archive structure at byte {}: {what}",
            self.consumed
        )));
    }

    fn int(&self, b: &[u8]) -> i64 {
        if let [sign, a, b, c, d] = *b {
            let v = i64::from(u32::from_le_bytes([a, b, c, d]));
            return if sign != 0 { -v } else { v };
        }
        let mut v: i64 = 0;
        for (i, byte) in b[1..].iter().enumerate() {
            v |= i64::from(*byte) << (8 * i);
        }
        if b[0] != 0 {
            -v
        } else {
            v
        }
    }

    /// Handles a complete item.
    fn step(&mut self, b: &[u8]) {
        match self.st {
            St::Head => self.head(b),
            St::Compression => self.st = St::Date(0),
            St::Date(i) => {
                self.st = if i == 6 {
                    St::HeadStr(0)
                } else {
                    St::Date(i + 1)
                }
            }
            St::HeadStr(i) => {
                self.string(b, false);
                if self.keep_len.is_none() {
                    self.st = if i == 2 {
                        St::TocCount
                    } else {
                        St::HeadStr(i + 1)
                    };
                }
            }
            St::TocCount => {
                let n = self.int(b);
                if !(0..=i64::from(i32::MAX)).contains(&n) {
                    return self.unexpected(format!("{n} table-of-contents entries"));
                }
                self.entries_left = n;
                self.st = self.after_entry();
            }
            St::Entry(f) => self.field(f, b),
            St::BlockType => match b[0] {
                t @ (BLK_DATA | BLK_BLOBS) => self.st = St::BlockId(t),
                t => self.unexpected(format!("data block type {t}")),
            },
            St::BlockId(t) => {
                let id = self.int(b);
                if !self.pending.remove(&id) {
                    return self.unexpected(format!(
                        "a data block for entry {id}, which has no data pending"
                    ));
                }
                self.block_id = id;
                self.st = if t == BLK_DATA {
                    St::ChunkLen { blob: false }
                } else {
                    St::BlobOid
                };
            }
            St::ChunkLen { blob } => {
                let n = self.int(b);
                if n < 0 {
                    return self.unexpected(format!("a data chunk of {n} bytes"));
                }
                if n > 0 {
                    self.skip = n.unsigned_abs();
                } else if blob {
                    self.st = St::BlobOid;
                } else {
                    self.blocks += 1;
                    self.st = St::BlockType;
                }
            }
            St::BlobOid => {
                if self.int(b) == 0 {
                    self.blocks += 1;
                    self.st = St::BlockType;
                } else {
                    self.st = St::ChunkLen { blob: true };
                }
            }
            St::Stopped => {}
        }
    }

    fn head(&mut self, b: &[u8]) {
        if &b[..5] != b"PGDMP" {
            return self.stop(Verdict::Incomplete(
                "it does not start like a pg_dump archive".into(),
            ));
        }
        self.version = version(u32::from(b[5]), u32::from(b[6]), u32::from(b[7]));
        self.int_size = usize::from(b[8]);
        self.off_size = usize::from(b[9]);
        if !(MIN_VERSION..=MAX_VERSION).contains(&self.version) {
            return self.stop(Verdict::Unknown(format!(
                "archive version {}.{}.{} is not one this check knows (1.12 to 1.16)",
                b[5], b[6], b[7]
            )));
        }
        if !(1..=8).contains(&self.int_size) || !(1..=16).contains(&self.off_size) {
            return self.unexpected(format!(
                "integer size {}, offset size {}",
                self.int_size, self.off_size
            ));
        }
        if b[10] != self.expect_format {
            return self.unexpected(format!("archive format code {}", b[10]));
        }
        self.st = St::Compression;
    }

    /// Reads a string: the first call gets its length, a second one (for a kept string) its
    /// bytes. Leaves `keep_len` set while the bytes are still to come.
    fn string<'a>(&mut self, b: &'a [u8], keep: bool) -> Option<S<'a>> {
        if self.keep_len.take().is_some() {
            return Some(S::Kept(b));
        }
        let n = self.int(b);
        if n < 0 {
            return Some(S::Null);
        }
        let n = n.unsigned_abs();
        if keep && n > 0 && n <= KEEP as u64 {
            self.keep_len = usize::try_from(n).ok();
            return None;
        }
        if keep && n == 0 {
            return Some(S::Kept(&[]));
        }
        self.skip = n;
        Some(S::Skipped)
    }

    fn next_field(&self, f: Field) -> Field {
        match f {
            Field::DumpId => Field::HadDumper,
            Field::HadDumper => Field::TableOid,
            Field::TableOid => Field::Oid,
            Field::Oid => Field::Tag,
            Field::Tag => Field::Desc,
            Field::Desc => Field::Section,
            Field::Section => Field::Defn,
            Field::Defn => Field::DropStmt,
            Field::DropStmt => Field::CopyStmt,
            Field::CopyStmt => Field::Namespace,
            Field::Namespace => Field::Tablespace,
            Field::Tablespace if self.version >= V1_14 => Field::TableAm,
            Field::Tablespace | Field::TableAm if self.version >= V1_16 => Field::RelKind,
            Field::Tablespace | Field::TableAm | Field::RelKind => Field::Owner,
            Field::Owner => Field::WithOids,
            Field::WithOids => Field::Deps,
            Field::Deps => Field::Extra,
            Field::Extra => Field::DumpId,
        }
    }

    fn after_entry(&mut self) -> St {
        if self.entries_left == 0 {
            St::BlockType
        } else {
            self.entries_left -= 1;
            St::Entry(Field::DumpId)
        }
    }

    fn field(&mut self, f: Field, b: &[u8]) {
        let ints = matches!(
            f,
            Field::DumpId | Field::HadDumper | Field::Section | Field::RelKind
        );
        if ints {
            let v = self.int(b);
            match f {
                Field::DumpId => {
                    self.entry_id = v;
                    self.entry_is_table = false;
                    self.entry_is_blobs = false;
                }
                Field::HadDumper => self.entry_has_data = v != 0,
                _ => {}
            }
            self.st = St::Entry(self.next_field(f));
            return;
        }
        if f == Field::Extra && self.expect_format == FORMAT_CUSTOM {
            if !(1..=3).contains(&b[0]) {
                return self.unexpected(format!("data offset flag {}", b[0]));
            }
            self.end_entry();
            return;
        }
        let keep = matches!(f, Field::Desc | Field::Extra);
        let Some(s) = self.string(b, keep) else {
            return;
        };
        match (f, s) {
            (Field::Deps, S::Null) => self.st = St::Entry(Field::Extra),
            (Field::Deps, _) => {}
            (Field::Desc, S::Kept(d)) => {
                self.entry_is_table = d == b"TABLE";
                self.entry_is_blobs = d == b"BLOBS";
                self.st = St::Entry(self.next_field(f));
            }
            (Field::Extra, s) => {
                if let S::Kept(name) = s {
                    if !name.is_empty() {
                        let name = String::from_utf8_lossy(name).into_owned();
                        self.files.push((name, self.entry_is_blobs));
                    }
                } else if matches!(s, S::Skipped) {
                    return self.unexpected("a data file name longer than 64 bytes".into());
                }
                self.end_entry();
            }
            _ => self.st = St::Entry(self.next_field(f)),
        }
    }

    fn end_entry(&mut self) {
        self.entries += 1;
        if self.entry_is_table {
            self.tables += 1;
        }
        if self.entry_has_data && self.expect_format == FORMAT_CUSTOM {
            self.pending.insert(self.entry_id);
        }
        self.st = self.after_entry();
    }

    /// The verdict once the stream has ended.
    #[must_use]
    pub fn finish(&self) -> Verdict {
        if let Some(p) = &self.problem {
            return p.clone();
        }
        let ended_cleanly = self.st == St::BlockType && self.have == 0 && self.skip == 0;
        let why = match self.st {
            _ if ended_cleanly && self.pending.is_empty() => {
                return Verdict::Complete {
                    tables: Some(self.tables),
                }
            }
            _ if ended_cleanly => format!(
                "it ends after {} data block(s); {} more were announced",
                self.blocks,
                self.pending.len()
            ),
            St::Head if self.consumed == 0 => "it is empty".into(),
            St::Head | St::Compression | St::Date(_) | St::HeadStr(_) | St::TocCount => {
                format!("it ends in its header, after {} bytes", self.consumed)
            }
            St::Entry(_) => format!(
                "it ends in its table of contents (entry {} of {})",
                self.entries + 1,
                self.entries + 1 + u64::try_from(self.entries_left).unwrap_or(0)
            ),
            _ => format!(
                "it ends inside the data of entry {} (after {} complete data block(s))",
                self.block_id, self.blocks
            ),
        };
        Verdict::Incomplete(why)
    }
}

/// Keeps the last bytes of a plain SQL stream to look for pg_dump's trailer.
pub struct SqlTail {
    head: Vec<u8>,
    tail: Vec<u8>,
}

const TAIL: usize = 512;

impl SqlTail {
    #[must_use]
    pub fn new() -> SqlTail {
        SqlTail {
            head: Vec::new(),
            tail: Vec::with_capacity(2 * TAIL),
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
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

    #[must_use]
    pub fn finish(&self) -> Verdict {
        if self.head.is_empty() {
            return Verdict::Incomplete("it is empty".into());
        }
        if sql_complete(&self.tail) {
            Verdict::Complete { tables: None }
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

/// Whether a plain dump's last bytes are pg_dump's trailer: the "dump complete" comment at the
/// start of a line, followed only by comment dashes, blank lines and `\unrestrict` lines.
#[must_use]
pub fn sql_complete(tail: &[u8]) -> bool {
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

/// Checks pg_dump's output as it streams by, for the formats written to a pipe.
pub enum StreamCheck {
    Custom(Box<ArchiveParser>),
    Plain(SqlTail),
}

impl StreamCheck {
    /// The check for a format written to a pipe (custom or plain), or None.
    #[must_use]
    pub fn for_format(format: crate::format::DumpFormat) -> Option<StreamCheck> {
        use crate::format::DumpFormat;
        match format {
            DumpFormat::Custom => Some(StreamCheck::Custom(Box::new(ArchiveParser::custom()))),
            DumpFormat::Plain => Some(StreamCheck::Plain(SqlTail::new())),
            DumpFormat::Directory | DumpFormat::Tar => None,
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        match self {
            StreamCheck::Custom(p) => p.feed(data),
            StreamCheck::Plain(t) => t.feed(data),
        }
    }

    #[must_use]
    pub fn finish(&self) -> Verdict {
        match self {
            StreamCheck::Custom(p) => p.finish(),
            StreamCheck::Plain(t) => t.finish(),
        }
    }
}

/// A writer that shows every byte to a [`StreamCheck`] on its way to `inner`.
pub struct Tee<'a, W> {
    pub inner: W,
    pub check: &'a mut StreamCheck,
}

impl<W: std::io::Write> std::io::Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.check.feed(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Checks a directory archive written by pg_dump: `toc.dat` parses to its end and every data
/// file it names exists (compressed or not); for large objects, every file their list names.
#[must_use]
pub fn check_directory(dir: &Path) -> Verdict {
    let toc = match std::fs::read(dir.join("toc.dat")) {
        Ok(b) => b,
        Err(e) => return Verdict::Incomplete(format!("its toc.dat cannot be read: {e}")),
    };
    let mut p = ArchiveParser::directory_toc();
    p.feed(&toc);
    let verdict = p.finish();
    if !matches!(verdict, Verdict::Complete { .. }) {
        return verdict;
    }
    for (name, is_blobs) in &p.files {
        if name.contains('/') || name.starts_with('.') {
            return Verdict::Unknown(format!("toc.dat names an unexpected file {name:?}"));
        }
        let Some(found) = existing(dir, name) else {
            return Verdict::Incomplete(format!("its data file {name} is missing"));
        };
        if *is_blobs {
            let list = match std::fs::read_to_string(&found) {
                Ok(t) => t,
                Err(e) => return Verdict::Incomplete(format!("{name} cannot be read: {e}")),
            };
            for line in list.lines() {
                let Some((_, file)) = line.split_once(' ') else {
                    return Verdict::Incomplete(format!("{name} has a damaged line"));
                };
                if file.contains('/') || existing(dir, file).is_none() {
                    return Verdict::Incomplete(format!("its large-object file {file} is missing"));
                }
            }
        }
    }
    verdict
}

/// The data file `name`, with whichever compression suffix pg_dump gave it.
fn existing(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    ["", ".gz", ".lz4", ".zst"]
        .iter()
        .map(|s| dir.join(format!("{name}{s}")))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made by pg_dump 15 (archive version 1.14) from a database with tables (one empty, one
    // partitioned), a view, a sequence and three large objects (one empty); the same with
    // pg_dump's gzip; a database without tables; one with a single empty table.
    const OBJECTS: &[u8] = include_bytes!("../tests/fixtures/dumpcheck/objects.dump");
    const OBJECTS_GZIP: &[u8] = include_bytes!("../tests/fixtures/dumpcheck/objects-gzip.dump");
    const NO_TABLES: &[u8] = include_bytes!("../tests/fixtures/dumpcheck/no-tables.dump");
    const EMPTY_TABLE: &[u8] = include_bytes!("../tests/fixtures/dumpcheck/empty-table.dump");
    const EMPTY_TABLE_SQL: &[u8] = include_bytes!("../tests/fixtures/dumpcheck/empty-table.sql");

    fn custom(bytes: &[u8]) -> Verdict {
        let mut p = ArchiveParser::custom();
        p.feed(bytes);
        p.finish()
    }

    fn sql(bytes: &[u8]) -> Verdict {
        let mut t = SqlTail::new();
        t.feed(bytes);
        t.finish()
    }

    #[test]
    fn real_archives_are_complete_with_their_table_counts() {
        for (bytes, tables) in [
            (OBJECTS, 4),
            (OBJECTS_GZIP, 4),
            (NO_TABLES, 0),
            (EMPTY_TABLE, 1),
        ] {
            assert_eq!(
                custom(bytes),
                Verdict::Complete {
                    tables: Some(tables)
                }
            );
        }
    }

    #[test]
    fn every_cut_of_a_real_archive_is_incomplete() {
        for bytes in [OBJECTS, OBJECTS_GZIP, NO_TABLES, EMPTY_TABLE] {
            for cut in 0..bytes.len() {
                let v = custom(&bytes[..cut]);
                assert!(
                    matches!(v, Verdict::Incomplete(_)),
                    "cut at {cut} of {}: {v:?}",
                    bytes.len()
                );
            }
        }
    }

    #[test]
    fn the_verdict_does_not_depend_on_how_the_stream_is_split() {
        for size in [1, 2, 3, 5, 7, 64, 4096] {
            let mut p = ArchiveParser::custom();
            for chunk in OBJECTS.chunks(size) {
                p.feed(chunk);
            }
            assert_eq!(p.finish(), Verdict::Complete { tables: Some(4) });
            let mut p = ArchiveParser::custom();
            for chunk in OBJECTS[..OBJECTS.len() - 3].chunks(size) {
                p.feed(chunk);
            }
            assert!(matches!(p.finish(), Verdict::Incomplete(_)));
        }
    }

    #[test]
    fn the_reason_says_where_the_archive_ends() {
        let Verdict::Incomplete(why) = custom(&OBJECTS[..500]) else {
            panic!()
        };
        assert!(why.contains("table of contents"), "{why}");
        let Verdict::Incomplete(why) = custom(&OBJECTS[..OBJECTS.len() - 100]) else {
            panic!()
        };
        assert!(why.contains("inside the data"), "{why}");
        assert_eq!(
            custom(b""),
            Verdict::Incomplete("it is empty".into()),
            "an empty stream"
        );
        assert!(matches!(
            custom(b"hello, not an archive"),
            Verdict::Incomplete(_)
        ));
    }

    #[test]
    fn trailing_bytes_or_unknown_versions_cannot_be_judged() {
        for junk in [b"\x01junk".as_slice(), b"\x07", b"\x03\x00\x01\x00\x00\x00"] {
            let mut more = OBJECTS.to_vec();
            more.extend_from_slice(junk);
            assert!(
                !matches!(custom(&more), Verdict::Complete { .. }),
                "trailing {junk:?}"
            );
        }
        let mut more = OBJECTS.to_vec();
        more.push(7);
        assert!(
            matches!(custom(&more), Verdict::Unknown(_)),
            "a block type 7"
        );
        let mut newer = OBJECTS.to_vec();
        newer[6] = 17;
        let v = custom(&newer);
        assert!(
            matches!(&v, Verdict::Unknown(why) if why.contains("1.17.0")),
            "{v:?}"
        );
        let mut older = OBJECTS.to_vec();
        older[6] = 11;
        assert!(matches!(custom(&older), Verdict::Unknown(_)));
    }

    /// Writes archives the way pg_dump's `WriteHead`/`WriteToc`/`_StartData`/`_EndData` do, for
    /// the archive versions no installed pg_dump writes.
    struct Writer {
        out: Vec<u8>,
        minor: u8,
    }

    impl Writer {
        fn int(&mut self, v: i64) {
            self.out.push(u8::from(v < 0));
            let a = u32::try_from(v.unsigned_abs()).unwrap();
            self.out.extend_from_slice(&a.to_le_bytes());
        }
        fn str(&mut self, s: Option<&str>) {
            match s {
                None => self.int(-1),
                Some(s) => {
                    self.int(i64::try_from(s.len()).unwrap());
                    self.out.extend_from_slice(s.as_bytes());
                }
            }
        }
        /// Entries: (dump id, desc, has data).
        fn archive(minor: u8, entries: &[(i64, &str, bool)]) -> Vec<u8> {
            let mut w = Writer {
                out: b"PGDMP".to_vec(),
                minor,
            };
            w.out.extend_from_slice(&[1, minor, 0, 4, 8, FORMAT_CUSTOM]);
            if w.minor >= 15 {
                w.out.push(0);
            } else {
                w.int(0);
            }
            for v in [0, 1, 2, 3, 4, 124, 0] {
                w.int(v);
            }
            for s in ["db", "17.0", "17.0"] {
                w.str(Some(s));
            }
            w.int(i64::try_from(entries.len()).unwrap());
            for &(id, desc, data) in entries {
                w.int(id);
                w.int(i64::from(data));
                w.str(Some("1259"));
                w.str(Some("16384"));
                w.str(Some("t"));
                w.str(Some(desc));
                w.int(2);
                w.str(Some("CREATE TABLE t (a int);\n"));
                w.str(Some(""));
                w.str(None);
                w.str(Some("public"));
                w.str(Some(""));
                if w.minor >= 14 {
                    w.str(Some("heap"));
                }
                if w.minor >= 16 {
                    w.int(i64::from(b'r'));
                }
                w.str(Some("owner"));
                w.str(Some("false"));
                w.str(Some("1"));
                w.str(Some("2"));
                w.str(None);
                w.out.push(if data { 1 } else { 3 });
                w.out.extend_from_slice(&[0; 8]);
            }
            for &(id, desc, data) in entries.iter().filter(|e| e.2) {
                let _ = data;
                if desc == "BLOBS" {
                    w.out.push(BLK_BLOBS);
                    w.int(id);
                    for oid in [16400, 16401] {
                        w.int(oid);
                        w.int(2);
                        w.out.extend_from_slice(b"xy");
                        w.int(0);
                    }
                    w.int(0);
                } else {
                    w.out.push(BLK_DATA);
                    w.int(id);
                    w.int(4);
                    w.out.extend_from_slice(b"1\t2\n");
                    w.int(0);
                }
            }
            w.out
        }
    }

    #[test]
    fn every_known_archive_version_parses_and_every_cut_is_incomplete() {
        let entries = [
            (1, "ENCODING", false),
            (10, "TABLE", false),
            (11, "TABLE", false),
            (20, "TABLE DATA", true),
            (30, "BLOBS", true),
            (21, "TABLE DATA", true),
        ];
        for minor in 12..=16 {
            let bytes = Writer::archive(minor, &entries);
            assert_eq!(
                custom(&bytes),
                Verdict::Complete { tables: Some(2) },
                "1.{minor}"
            );
            for cut in 0..bytes.len() {
                assert!(
                    matches!(custom(&bytes[..cut]), Verdict::Incomplete(_)),
                    "1.{minor} cut at {cut}"
                );
            }
        }
        // A data block for an entry that announced none is not pg_dump's output.
        let mut bad = Writer::archive(16, &entries[..2]);
        bad.push(BLK_DATA);
        let mut w = Writer {
            out: bad,
            minor: 16,
        };
        w.int(10);
        w.int(0);
        assert!(matches!(custom(&w.out), Verdict::Unknown(_)));
    }

    #[test]
    fn a_sql_dump_is_complete_only_with_its_trailer() {
        assert_eq!(sql(EMPTY_TABLE_SQL), Verdict::Complete { tables: None });
        let at = memchr::memmem::find(EMPTY_TABLE_SQL, SQL_TRAILER).unwrap();
        for cut in 0..at + SQL_TRAILER.len() {
            assert!(
                matches!(sql(&EMPTY_TABLE_SQL[..cut]), Verdict::Incomplete(_)),
                "cut at {cut}"
            );
        }
        let restricted =
            b"--\n-- PostgreSQL database dump\n--\n\n\\restrict k\nSET x = 1;\n\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict k\n\n";
        assert_eq!(sql(restricted), Verdict::Complete { tables: None });
        let in_data = b"COPY t (a) FROM stdin;\nx -- PostgreSQL database dump complete\n";
        assert!(matches!(sql(in_data), Verdict::Incomplete(_)));
        let more = b"-- PostgreSQL database dump complete\n--\nCREATE TABLE late (a int);\n";
        assert!(matches!(sql(more), Verdict::Incomplete(_)));
        // Fed in small pieces, the tail is the same.
        let mut t = SqlTail::new();
        let big: Vec<u8> = std::iter::repeat(b"INSERT 1;\n".as_slice())
            .take(500)
            .flatten()
            .copied()
            .chain(EMPTY_TABLE_SQL.iter().copied())
            .collect();
        for c in big.chunks(7) {
            t.feed(c);
        }
        assert_eq!(t.finish(), Verdict::Complete { tables: None });
    }

    #[test]
    fn a_real_directory_archive_is_complete_until_a_file_goes() {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dumpcheck/objects.dir");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for e in std::fs::read_dir(&fixture).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
        }
        assert_eq!(check_directory(d), Verdict::Complete { tables: Some(4) });
        let toc = std::fs::read(d.join("toc.dat")).unwrap();
        for cut in 0..toc.len() {
            std::fs::write(d.join("toc.dat"), &toc[..cut]).unwrap();
            assert!(
                matches!(check_directory(d), Verdict::Incomplete(_)),
                "toc.dat cut at {cut}"
            );
        }
        std::fs::write(d.join("toc.dat"), &toc).unwrap();
        // Compressed data files count too.
        let gz = std::fs::read(d.join("3359.dat")).unwrap();
        std::fs::remove_file(d.join("3359.dat")).unwrap();
        assert!(matches!(check_directory(d), Verdict::Incomplete(w) if w.contains("3359.dat")));
        std::fs::write(d.join("3359.dat.gz"), gz).unwrap();
        assert_eq!(check_directory(d), Verdict::Complete { tables: Some(4) });
        std::fs::remove_file(d.join("blob_16427.dat")).unwrap();
        assert!(
            matches!(check_directory(d), Verdict::Incomplete(w) if w.contains("blob_16427.dat"))
        );
    }

    #[test]
    fn a_directory_archive_needs_its_toc_and_data_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // toc.dat of a directory archive: the custom header with format 5 and file names.
        let mut w = Writer {
            out: b"PGDMP".to_vec(),
            minor: 14,
        };
        w.out.extend_from_slice(&[1, 14, 0, 4, 8, FORMAT_TAR]);
        w.int(-1);
        for v in [0, 1, 2, 3, 4, 124, 0] {
            w.int(v);
        }
        for s in ["db", "15.0", "15.0"] {
            w.str(Some(s));
        }
        w.int(3);
        for (id, desc, file) in [
            (10, "TABLE", ""),
            (20, "TABLE DATA", "20.dat"),
            (30, "BLOBS", "blobs.toc"),
        ] {
            w.int(id);
            w.int(i64::from(!file.is_empty()));
            for s in ["0", "0", "t", desc] {
                w.str(Some(s));
            }
            w.int(2);
            for s in ["", "", "", "public", "", "heap", "o", "false"] {
                w.str(Some(s));
            }
            w.str(None);
            w.str(Some(file));
        }
        std::fs::write(d.join("toc.dat"), &w.out).unwrap();
        assert!(matches!(check_directory(d), Verdict::Incomplete(why) if why.contains("20.dat")));
        std::fs::write(d.join("20.dat.gz"), b"x").unwrap();
        std::fs::write(d.join("blobs.toc"), b"16400 blob_16400.dat\n").unwrap();
        assert!(
            matches!(check_directory(d), Verdict::Incomplete(why) if why.contains("blob_16400"))
        );
        std::fs::write(d.join("blob_16400.dat.gz"), b"x").unwrap();
        assert_eq!(check_directory(d), Verdict::Complete { tables: Some(1) });
        std::fs::write(d.join("toc.dat"), &w.out[..w.out.len() - 3]).unwrap();
        assert!(matches!(check_directory(d), Verdict::Incomplete(_)));
    }
}
