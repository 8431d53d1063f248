//! Where backups are kept, behind one seam: the [`Storage`] trait names what the catalog, prune
//! and backup need from a place that holds backups, so a local folder today and an object store
//! later are interchangeable. Names are relative to the storage's root, never local paths.

pub mod destination;
pub mod follow;
pub mod local;
pub mod lock;
#[cfg(test)]
pub(crate) mod memory;
pub mod object;
pub mod transfer;

pub use local::LocalFolder;

use chrono::{DateTime, Utc};
use std::fmt::Debug;
use std::io::{self, Read, Write};

/// What a listed name holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A file (an object): a single-file backup, a sidecar, a lock.
    File,
    /// A folder (a prefix): a directory archive.
    Dir,
    /// Anything else, or a name whose kind could not be learned (it vanished, a dangling link).
    Other,
}

/// One name at the root of a storage, with what the listing knows about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The name, relative to the storage's root.
    pub name: String,
    pub kind: Kind,
    /// Its size in bytes (0 when unknown; for a folder, what the storage reports for it).
    pub size: u64,
    /// When it was last modified, when known.
    pub modified: Option<DateTime<Utc>>,
}

/// An object being written under its temporary ("partial") name. It is not a backup until
/// [`Storage::publish`] gives it its final name.
pub trait Partial: Write + Send {
    /// Makes what was written durable (a local file: fsync; an object store: the upload
    /// completed). Call it before publishing.
    fn finish(self: Box<Self>) -> io::Result<()>;
}

/// Held while a run locks a storage: one writer at a time; released when dropped.
#[derive(Debug)]
pub struct Lock {
    _held: Box<dyn Debug + Send + Sync>,
}

impl Lock {
    /// Wraps whatever keeps a storage's lock held (for the local folder: its [`lock::FolderLock`]).
    pub fn new(held: impl Debug + Send + Sync + 'static) -> Self {
        Lock {
            _held: Box::new(held),
        }
    }
}

/// A place where backups are kept. Every name is relative to the storage's root (`a.dump.zst`,
/// or `a.dir/toc.dat` inside a directory archive); a name that would leave the root is refused.
pub trait Storage: Send + Sync + Debug {
    /// The storage's root as people know it (a folder's path, a bucket URL), for messages.
    fn root_location(&self) -> String;

    /// Where `name` is, as people know it, for messages.
    fn location(&self, name: &str) -> String;

    /// The names at the root, with their kind, size and modification time. A root that does not
    /// exist yet lists as empty; names the storage cannot represent as text are left out.
    fn list(&self) -> io::Result<Vec<Listed>>;

    /// Opens `name` for reading from its start.
    fn open(&self, name: &str) -> io::Result<Box<dyn Read + Send>>;

    /// Reads the whole of `name`: for small files such as sidecars.
    fn read_small(&self, name: &str) -> io::Result<Vec<u8>>;

    /// Creates `name`'s temporary object (`<name>.partial`) for writing, readable by the owner
    /// only. It fails if one exists: a temp of another run is never written over.
    fn create_partial(&self, name: &str) -> io::Result<Box<dyn Partial>>;

    /// Gives the finished temporary object `partial` its final `name`, atomically, and makes the
    /// new name durable. Fails with [`io::ErrorKind::AlreadyExists`] instead of replacing an
    /// existing `name`.
    fn publish(&self, partial: &str, name: &str) -> io::Result<()>;

    /// Removes `name`, a file or a whole folder; a missing name is not an error.
    fn remove(&self, name: &str) -> io::Result<()>;

    /// Free bytes available to us, or `None` when the storage has no such limit to report.
    fn free_space(&self) -> io::Result<Option<u64>>;

    /// Takes the storage's exclusive lock for a run that changes it (`what`: backup, prune), or
    /// fails naming the holder.
    fn lock(&self, what: &str) -> anyhow::Result<Lock>;

    /// Takes the lock for a run that only reads (restore, verify); `None` when the storage
    /// cannot be locked by us (a read-only folder without a lock file), which is said once.
    fn lock_for_reading(&self, what: &str) -> anyhow::Result<Option<Lock>>;

    /// The part size by which the store fingerprints a multipart object (an ETag that is the
    /// MD5 of its parts' MD5s), when it reports such fingerprints; `None` when a copy can only
    /// be checked by reading it back.
    fn etag_part_size(&self) -> Option<usize> {
        None
    }

    /// The size and ETag the store reports for `name` (quotes removed), or `None` when it
    /// reports none.
    ///
    /// # Errors
    /// The store could not be asked.
    fn etag(&self, _name: &str) -> io::Result<Option<(u64, String)>> {
        Ok(None)
    }

    /// The local folder behind this storage, for the callers that still need paths (tools that
    /// read a directory archive in place); `None` for any other storage.
    fn as_local(&self) -> Option<&LocalFolder> {
        None
    }
}

/// The name `name` has while it is being written: `<name>.partial`.
#[must_use]
pub fn partial_name(name: &str) -> String {
    format!("{name}{}", crate::archive::naming::PARTIAL_SUFFIX)
}

/// Refuses a name that is empty or would leave the storage's root (`..`, `.`, a leading `/`,
/// empty parts).
pub fn check_name(name: &str) -> io::Result<()> {
    let escapes = name
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..");
    if escapes || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a name inside the backup storage"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_root() {
        for ok in [
            "a.dump.zst",
            "a.dir/toc.dat",
            "x.partial",
            ".aos-backup.lock",
        ] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "/etc/passwd",
            "a//b",
            "a/",
            "a/../b",
            "a\0b",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_partial_name_ends_in_partial() {
        assert_eq!(partial_name("a.dump.zst"), "a.dump.zst.partial");
    }
}
