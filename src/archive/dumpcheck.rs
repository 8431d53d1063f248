//! Whether pg_dump really wrote a whole archive, judged while its output streams by: pg_dump can
//! exit 0 after writing a cut-short archive, and such a backup must never count as complete.
//!
//! - Custom archives (`PGDMP`): the header and the table of contents are parsed, then every data
//!   block is skipped through by its length-prefixed chunks. Complete means: every entry that has
//!   data had its block read to its end marker, and the stream ends right after the last block.
//!   The parser copies nothing but a few bytes per item (lengths, ids, short names); data bytes
//!   are only counted past. Bytes after the last announced data block make it garbled.
//! - Plain SQL: the stream must end with pg_dump's "dump complete" trailer.
//! - Directory archives (checked once pg_dump is done): `toc.dat` must parse to its end, every
//!   data file it names must exist (large objects: every file `blobs*.toc` lists) and be whole,
//!   and no other file may be there. Whole: a gzipped file decompresses to the end of its gzip
//!   stream (this reads every data file once more); a table's COPY data ends with pg_dump's
//!   `\.` line and nothing after it. Large objects have no end marker.
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

/// What a directory archive's data file holds, as its table-of-contents entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFile {
    /// A table's COPY data, which pg_dump ends with its `\.` line.
    Copy,
    /// The list of large-object files (`blobs.toc`).
    Blobs,
    /// Data of another kind of entry: only its presence (and compression) can be checked.
    Other,
}

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
    entry_is_table_data: bool,
    /// Entries whose data has not been seen yet.
    pending: HashSet<i64>,
    /// Custom: the block being read. Directory: data file names.
    block_id: i64,
    blocks: u64,
    pub tables: u64,
    /// Directory format: the files its table of contents names, and what each holds.
    pub files: Vec<(String, DataFile)>,
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
            entry_is_table_data: false,
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
            if self.st == St::BlockType
                && self.expect_format == FORMAT_CUSTOM
                && self.pending.is_empty()
                && self.have == 0
            {
                // Every announced data block was read: pg_dump writes nothing after the last.
                self.stop(Verdict::Incomplete(format!(
                    "it is garbled: bytes follow its end (the last of its {} data block(s) ended at byte {})",
                    self.blocks, self.consumed
                )));
                return;
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
                    self.entry_is_table_data = false;
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
                self.entry_is_table_data = d == b"TABLE DATA";
                self.st = St::Entry(self.next_field(f));
            }
            (Field::Extra, s) => {
                if let S::Kept(name) = s {
                    if !name.is_empty() {
                        let name = String::from_utf8_lossy(name).into_owned();
                        let kind = if self.entry_is_blobs {
                            DataFile::Blobs
                        } else if self.entry_is_table_data {
                            DataFile::Copy
                        } else {
                            DataFile::Other
                        };
                        self.files.push((name, kind));
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
        let mut from = 0;
        if !self.line.is_empty() {
            match memchr::memchr(b'\n', &data[..data.len().min(LINE_MAX)]) {
                Some(nl) => {
                    self.line.extend_from_slice(&data[..nl]);
                    if is_table_line(&self.line) {
                        self.tables += 1;
                    }
                    self.line.clear();
                    from = nl;
                }
                None if self.line.len() + data.len() <= LINE_MAX => {
                    self.line.extend_from_slice(data);
                    if !could_be_name_line(&self.line) {
                        self.line.clear();
                    }
                    return;
                }
                // A line too long to be a header: the rest of the chunk is searched.
                None => self.line.clear(),
            }
        }
        let rest = &data[from..];
        for at in self.finder.find_iter(rest) {
            let line = &rest[at..];
            match memchr::memchr(b'\n', &line[1..line.len().min(LINE_MAX)]) {
                Some(end) if is_table_line(&line[..=end]) => self.tables += 1,
                Some(_) => {}
                None if line.len() <= LINE_MAX => self.line.extend_from_slice(line),
                None => {}
            }
        }
        if self.line.is_empty() {
            // The chunk may end in the first bytes of a header line.
            let start = rest.len().saturating_sub(NAME_LINE.len() - 1);
            if let Some(nl) = memchr::memrchr(b'\n', &rest[start..]) {
                let cut = &rest[start + nl..];
                if could_be_name_line(cut) {
                    self.line.extend_from_slice(cut);
                }
            }
        }
    }

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
    Plain(Box<SqlTail>),
}

impl StreamCheck {
    /// The check for a format written to a pipe (custom or plain), or None.
    #[must_use]
    pub fn for_format(format: crate::archive::format::DumpFormat) -> Option<StreamCheck> {
        use crate::archive::format::DumpFormat;
        match format {
            DumpFormat::Custom => Some(StreamCheck::Custom(Box::new(ArchiveParser::custom()))),
            DumpFormat::Plain => Some(StreamCheck::Plain(Box::default())),
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

/// Checks a directory archive written by pg_dump: `toc.dat` parses to its end; every data file
/// it names exists and is whole (a gzip file decompresses to its end; a table's COPY data ends
/// with pg_dump's `\.` end-of-data line and nothing after it); for large objects, every file
/// their list names exists (and decompresses, when gzipped); and the folder holds no file that
/// none of these name.
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
    let mut named: HashSet<std::ffi::OsString> = HashSet::new();
    named.insert("toc.dat".into());
    let mut unknown = None;
    for (name, kind) in &p.files {
        if name.contains('/') || name.starts_with('.') {
            return Verdict::Unknown(format!("toc.dat names an unexpected file {name:?}"));
        }
        let Some(found) = existing(dir, name) else {
            return Verdict::Incomplete(format!("its data file {name} is missing"));
        };
        named.insert(found.file_name().unwrap_or_default().to_os_string());
        let checked = match kind {
            DataFile::Blobs => check_blob_list(dir, name, &found, &mut named),
            DataFile::Copy => check_data_file(&found, true),
            DataFile::Other => check_data_file(&found, false),
        };
        match checked {
            Verdict::Complete { .. } => {}
            Verdict::Unknown(why) => unknown = unknown.or(Some(why)),
            incomplete @ Verdict::Incomplete(_) => return incomplete,
        }
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) => return Verdict::Incomplete(format!("the folder cannot be read: {e}")),
    };
    let mut extra: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| !named.contains(n))
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    if !extra.is_empty() {
        extra.sort();
        return Verdict::Incomplete(format!(
            "it is garbled: it holds file(s) its table of contents does not name: {}",
            extra.join(", ")
        ));
    }
    match unknown {
        Some(why) => Verdict::Unknown(why),
        None => verdict,
    }
}

/// Checks a large-object list (`blobs.toc`) and the files it names, adding them to `named`.
fn check_blob_list(
    dir: &Path,
    name: &str,
    found: &Path,
    named: &mut HashSet<std::ffi::OsString>,
) -> Verdict {
    let list = match std::fs::read_to_string(found) {
        Ok(t) => t,
        Err(e) => return Verdict::Incomplete(format!("{name} cannot be read: {e}")),
    };
    let mut unknown = None;
    for line in list.lines() {
        let Some((_, file)) = line.split_once(' ') else {
            return Verdict::Incomplete(format!("{name} has a damaged line"));
        };
        let blob = if file.contains('/') {
            None
        } else {
            existing(dir, file)
        };
        let Some(blob) = blob else {
            return Verdict::Incomplete(format!("its large-object file {file} is missing"));
        };
        named.insert(blob.file_name().unwrap_or_default().to_os_string());
        // A large object's bytes have no end marker: only a compressed stream can be checked.
        match check_data_file(&blob, false) {
            Verdict::Complete { .. } => {}
            Verdict::Unknown(why) => unknown = unknown.or(Some(why)),
            incomplete @ Verdict::Incomplete(_) => return incomplete,
        }
    }
    unknown.map_or(Verdict::Complete { tables: None }, Verdict::Unknown)
}

/// pg_dump's last bytes of a table's COPY data (pg_dump.c, `dumpTableData_copy`).
const COPY_END: &[u8] = b"\\.\n\n\n";

/// Checks one data file: a `.gz` one must decompress to the end of a complete gzip stream;
/// with `copy`, its (decompressed) content must end with pg_dump's end-of-data line. Files
/// compressed otherwise (`.lz4`, `.zst`: pg_dump 16 and later) cannot be judged here.
fn check_data_file(path: &Path, copy: bool) -> Verdict {
    use std::io::{Read, Seek, SeekFrom};
    let shown = path.file_name().unwrap_or_default().to_string_lossy();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return Verdict::Incomplete(format!("its data file {shown} cannot be read: {e}")),
    };
    // The last bytes of the content.
    let mut tail: Vec<u8> = Vec::with_capacity(32);
    let read = match ext {
        "gz" => {
            let mut gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0u64;
            loop {
                match gz.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        total += n as u64;
                        keep_tail(&mut tail, &buf[..n]);
                    }
                    Err(e) => {
                        return Verdict::Incomplete(format!(
                            "its data file {shown} is not a complete gzip stream ({e}, after {total} bytes of content): cut short or garbled"
                        ))
                    }
                }
            }
            Ok(())
        }
        "lz4" | "zst" => {
            return Verdict::Unknown(format!("its data file {shown} is compressed with {ext}"))
        }
        _ if !copy => return Verdict::Complete { tables: None },
        _ => (|| {
            let len = file.metadata()?.len();
            let from = len.saturating_sub(COPY_END.len() as u64 + 1);
            file.seek(SeekFrom::Start(from))?;
            file.read_to_end(&mut tail).map(|_| ())
        })(),
    };
    if let Err(e) = read {
        return Verdict::Incomplete(format!("its data file {shown} cannot be read: {e}"));
    }
    if !copy {
        return Verdict::Complete { tables: None };
    }
    let ends = tail.ends_with(COPY_END) && {
        let before = tail.len() - COPY_END.len();
        // The end line starts a line: the file's start (an empty table), or after a row.
        before == 0 || tail[before - 1] == b'\n'
    };
    if ends {
        Verdict::Complete { tables: None }
    } else {
        Verdict::Incomplete(format!(
            "its data file {shown} does not end with pg_dump's end-of-data line (\\.): cut short or garbled"
        ))
    }
}

/// Keeps the last few bytes seen in `tail`.
fn keep_tail(tail: &mut Vec<u8>, data: &[u8]) {
    const KEEP_TAIL: usize = 16;
    if data.len() >= KEEP_TAIL {
        tail.clear();
        tail.extend_from_slice(&data[data.len() - KEEP_TAIL..]);
    } else {
        tail.extend_from_slice(data);
        if tail.len() > KEEP_TAIL {
            tail.drain(..tail.len() - KEEP_TAIL);
        }
    }
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
    const OBJECTS: &[u8] = include_bytes!("../../tests/fixtures/dumpcheck/objects.dump");
    const OBJECTS_GZIP: &[u8] = include_bytes!("../../tests/fixtures/dumpcheck/objects-gzip.dump");
    const NO_TABLES: &[u8] = include_bytes!("../../tests/fixtures/dumpcheck/no-tables.dump");
    const EMPTY_TABLE: &[u8] = include_bytes!("../../tests/fixtures/dumpcheck/empty-table.dump");
    const EMPTY_TABLE_SQL: &[u8] = include_bytes!("../../tests/fixtures/dumpcheck/empty-table.sql");

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
    fn trailing_bytes_are_garbled_and_unknown_versions_cannot_be_judged() {
        for bytes in [OBJECTS, OBJECTS_GZIP, NO_TABLES, EMPTY_TABLE] {
            for junk in [
                b"\x01junk".as_slice(),
                b"\x07",
                b"\x03\x00\x01\x00\x00\x00",
                b"\0",
                b"garbage appended\n",
            ] {
                let mut more = bytes.to_vec();
                more.extend_from_slice(junk);
                let v = custom(&more);
                assert!(
                    matches!(&v, Verdict::Incomplete(why) if why.contains("garbled")),
                    "trailing {junk:?}: {v:?}"
                );
                // However the stream is split.
                let mut p = ArchiveParser::custom();
                p.feed(bytes);
                p.feed(junk);
                assert!(matches!(p.finish(), Verdict::Incomplete(_)));
            }
        }
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
        // Every announced block was read: what follows is garbage.
        assert!(matches!(custom(&w.out), Verdict::Incomplete(why) if why.contains("garbled")));
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
        let big: Vec<u8> = std::iter::repeat(b"INSERT 1;\n".as_slice())
            .take(500)
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
        let data = std::fs::read(d.join("3359.dat")).unwrap();
        std::fs::remove_file(d.join("3359.dat")).unwrap();
        assert!(matches!(check_directory(d), Verdict::Incomplete(w) if w.contains("3359.dat")));
        std::fs::write(d.join("3359.dat.gz"), gzip(&data)).unwrap();
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
        std::fs::write(d.join("20.dat.gz"), gzip(b"1\t2\n\\.\n\n\n")).unwrap();
        std::fs::write(d.join("blobs.toc"), b"16400 blob_16400.dat\n").unwrap();
        assert!(
            matches!(check_directory(d), Verdict::Incomplete(why) if why.contains("blob_16400"))
        );
        std::fs::write(d.join("blob_16400.dat.gz"), b"x").unwrap();
        assert!(
            matches!(check_directory(d), Verdict::Incomplete(why) if why.contains("gzip")),
            "a large object's gzip stream is checked"
        );
        std::fs::write(d.join("blob_16400.dat.gz"), gzip(b"")).unwrap();
        assert_eq!(check_directory(d), Verdict::Complete { tables: Some(1) });
        std::fs::write(d.join("toc.dat"), &w.out[..w.out.len() - 3]).unwrap();
        assert!(matches!(check_directory(d), Verdict::Incomplete(_)));
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A copy of the real directory archive fixture, its data files gzipped with `gz`.
    fn fixture_copy(gz: bool) -> tempfile::TempDir {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dumpcheck/objects.dir");
        let dir = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(&fixture).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            if gz && name.ends_with(".dat") && name != "toc.dat" {
                std::fs::write(dir.path().join(format!("{name}.gz")), gzip(&bytes)).unwrap();
            } else {
                std::fs::write(dir.path().join(&name), bytes).unwrap();
            }
        }
        dir
    }

    #[test]
    fn every_cut_or_addition_to_a_table_data_file_is_incomplete() {
        for gz in [false, true] {
            let dir = fixture_copy(gz);
            let d = dir.path();
            assert_eq!(check_directory(d), Verdict::Complete { tables: Some(4) });
            let name = if gz { "3359.dat.gz" } else { "3359.dat" };
            let whole = std::fs::read(d.join(name)).unwrap();
            for cut in 0..whole.len() {
                std::fs::write(d.join(name), &whole[..cut]).unwrap();
                let v = check_directory(d);
                assert!(
                    matches!(&v, Verdict::Incomplete(why) if why.contains("3359.dat")),
                    "gz {gz}, cut at {cut}: {v:?}"
                );
            }
            // Garbage after the data (inside the compressed stream, or after it).
            let plain = std::fs::read(fixture_copy(false).path().join("3359.dat")).unwrap();
            for junk in [b"x".as_slice(), b"\n", b"\\.\n", b"5\tmore\n"] {
                let mut more = plain.clone();
                more.extend_from_slice(junk);
                let bytes = if gz { gzip(&more) } else { more };
                std::fs::write(d.join(name), bytes).unwrap();
                assert!(
                    matches!(check_directory(d), Verdict::Incomplete(_)),
                    "gz {gz}, {junk:?} appended"
                );
            }
            if gz {
                let mut more = whole.clone();
                more.extend_from_slice(b"garbage");
                std::fs::write(d.join(name), more).unwrap();
                assert!(matches!(check_directory(d), Verdict::Incomplete(_)));
            }
            std::fs::write(d.join(name), &whole).unwrap();
            assert_eq!(check_directory(d), Verdict::Complete { tables: Some(4) });
            // A gzipped large object cut short; an uncompressed one cannot be judged by its end.
            let blob = if gz {
                "blob_16426.dat.gz"
            } else {
                "blob_16426.dat"
            };
            let bytes = std::fs::read(d.join(blob)).unwrap();
            std::fs::write(d.join(blob), &bytes[..bytes.len() / 2]).unwrap();
            assert_eq!(
                matches!(check_directory(d), Verdict::Incomplete(_)),
                gz,
                "gz {gz}: a cut large object"
            );
            std::fs::write(d.join(blob), &bytes).unwrap();
            // A file nobody named.
            std::fs::write(d.join("9999.dat"), b"\\.\n\n\n").unwrap();
            let v = check_directory(d);
            assert!(
                matches!(&v, Verdict::Incomplete(why) if why.contains("garbled") && why.contains("9999.dat")),
                "{v:?}"
            );
        }
    }
}
