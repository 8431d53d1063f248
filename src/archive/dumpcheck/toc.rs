//! The reader of a custom archive's header, table of contents and data blocks, and of a
//! directory archive's `toc.dat`.

use std::collections::HashSet;

use super::Verdict;

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
pub(super) const FORMAT_CUSTOM: u8 = 1;
/// A directory archive's `toc.dat` carries the tar code: pg_dump writes it there, the two
/// formats being compatible (pg_backup_directory.c, `_CloseArchive`).
pub(super) const FORMAT_TAR: u8 = 3;
/// Data block types.
pub(super) const BLK_DATA: u8 = 1;
pub(super) const BLK_BLOBS: u8 = 3;
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
    /// The `TABLE` entries of the table of contents read so far.
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
                buf = self.skip_bytes(buf);
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
            if self.st == St::BlockType && self.ends_before(buf.len()) {
                return;
            }
            buf = self.gather(buf);
        }
    }

    /// Counts past the bytes of `buf` that [`Self::skip`] still covers; returns the rest.
    fn skip_bytes<'a>(&mut self, buf: &'a [u8]) -> &'a [u8] {
        let k = usize::try_from(self.skip).map_or(buf.len(), |s| s.min(buf.len()));
        self.skip -= k as u64;
        self.consumed += k as u64;
        &buf[k..]
    }

    /// At a block type, with `rest` more bytes: whether the archive must have ended before them
    /// (then the parser stops, saying why).
    fn ends_before(&mut self, rest: usize) -> bool {
        if self.expect_format == FORMAT_CUSTOM && self.pending.is_empty() && self.have == 0 {
            // Every announced data block was read: pg_dump writes nothing after the last.
            self.stop(Verdict::Incomplete(format!(
                "it is garbled: bytes follow its end (the last of its {} data block(s) ended at byte {})",
                self.blocks, self.consumed
            )));
            return true;
        }
        if self.expect_format == FORMAT_TAR {
            self.stop(Verdict::Unknown(format!(
                "toc.dat has {rest} unexpected byte(s) after its table of contents"
            )));
            return true;
        }
        false
    }

    /// Adds the first bytes of `buf` to the item being gathered, and handles the item once it is
    /// whole; returns the rest of `buf`.
    fn gather<'a>(&mut self, buf: &'a [u8]) -> &'a [u8] {
        let n = self.item_len();
        let k = (n - self.have).min(buf.len());
        self.item[self.have..self.have + k].copy_from_slice(&buf[..k]);
        self.have += k;
        self.consumed += k as u64;
        if self.have == n {
            self.have = 0;
            let item = self.item;
            self.step(&item[..n]);
        }
        &buf[k..]
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
            St::HeadStr(i) => self.head_string(i, b),
            St::TocCount => self.toc_count(b),
            St::Entry(f) => self.field(f, b),
            St::BlockType => self.block_type(b[0]),
            St::BlockId(t) => self.block_id(t, b),
            St::ChunkLen { blob } => self.chunk_len(blob, b),
            St::BlobOid => self.blob_oid(b),
            St::Stopped => {}
        }
    }

    /// One of the header's three strings (database name, server and pg_dump versions).
    fn head_string(&mut self, i: u8, b: &[u8]) {
        self.string(b, false);
        if self.keep_len.is_none() {
            self.st = if i == 2 {
                St::TocCount
            } else {
                St::HeadStr(i + 1)
            };
        }
    }

    fn toc_count(&mut self, b: &[u8]) {
        let n = self.int(b);
        if !(0..=i64::from(i32::MAX)).contains(&n) {
            return self.unexpected(format!("{n} table-of-contents entries"));
        }
        self.entries_left = n;
        self.st = self.after_entry();
    }

    fn block_type(&mut self, t: u8) {
        match t {
            BLK_DATA | BLK_BLOBS => self.st = St::BlockId(t),
            t => self.unexpected(format!("data block type {t}")),
        }
    }

    /// The entry a data block of type `t` belongs to, which must have announced data.
    fn block_id(&mut self, t: u8, b: &[u8]) {
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

    /// A chunk's length: its data is skipped; 0 ends the block (or the large object).
    fn chunk_len(&mut self, blob: bool, b: &[u8]) {
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

    fn blob_oid(&mut self, b: &[u8]) {
        if self.int(b) == 0 {
            self.blocks += 1;
            self.st = St::BlockType;
        } else {
            self.st = St::ChunkLen { blob: true };
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

    /// Handles one field of a table-of-contents entry.
    fn field(&mut self, f: Field, b: &[u8]) {
        if matches!(
            f,
            Field::DumpId | Field::HadDumper | Field::Section | Field::RelKind
        ) {
            return self.int_field(f, b);
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
            (Field::Extra, s) => self.data_file(s),
            _ => self.st = St::Entry(self.next_field(f)),
        }
    }

    fn int_field(&mut self, f: Field, b: &[u8]) {
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
    }

    /// A directory archive entry's data file name (empty: none), the entry's last field.
    fn data_file(&mut self, s: S<'_>) {
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

#[cfg(test)]
mod tests {
    use super::super::test_archive::Writer;
    use super::*;

    // Made by pg_dump 15 (archive version 1.14) from a database with tables (one empty, one
    // partitioned), a view, a sequence and three large objects (one empty); the same with
    // pg_dump's gzip; a database without tables; one with a single empty table.
    const OBJECTS: &[u8] = include_bytes!("../../../tests/fixtures/dumpcheck/objects.dump");
    const OBJECTS_GZIP: &[u8] =
        include_bytes!("../../../tests/fixtures/dumpcheck/objects-gzip.dump");
    const NO_TABLES: &[u8] = include_bytes!("../../../tests/fixtures/dumpcheck/no-tables.dump");
    const EMPTY_TABLE: &[u8] = include_bytes!("../../../tests/fixtures/dumpcheck/empty-table.dump");

    fn custom(bytes: &[u8]) -> Verdict {
        let mut p = ArchiveParser::custom();
        p.feed(bytes);
        p.finish()
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
}
