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

mod directory;
mod plain;
mod stream;
#[cfg(test)]
mod test_archive;
mod toc;

pub use directory::check_directory;
pub use plain::{SqlTail, SQL_HEADER, SQL_TRAILER};
pub use stream::{StreamCheck, Tee};
pub use toc::{ArchiveParser, DataFile};

/// What the check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The archive is whole.
    Complete {
        /// Its `TABLE` entries (None when the format has no table of contents).
        tables: Option<u64>,
    },
    /// The archive is cut short or damaged; why, in words.
    Incomplete(String),
    /// This parser cannot judge (an archive version it does not know, or a structure it did not
    /// expect); why, in words.
    Unknown(String),
}
