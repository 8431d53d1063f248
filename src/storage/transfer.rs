//! Copying one backup from a storage to another: its data objects first, its globals script,
//! each verified by reading it back (size and SHA-256 against the sidecar), and its sidecar
//! last, as the completion marker. Shared by the upload after a backup, `push`, and the
//! download of a remote backup for verify and restore.

use super::{partial_name, Storage};
use crate::archive::meta::Meta;
use crate::archive::naming::META_SUFFIX;
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};

/// Says whether to stop (a signal): checked between chunks.
pub type Stop<'a> = &'a dyn Fn() -> bool;

/// How much one read moves at a time.
const STEP: usize = 1024 * 1024;

/// The objects that make up the backup `name` described by `meta`, with the size and SHA-256
/// each must have: the file (or every file of a directory archive), then its globals script.
#[must_use]
pub fn data_objects(name: &str, meta: &Meta) -> Vec<(String, u64, String)> {
    let mut all: Vec<(String, u64, String)> = if meta.files.is_empty() {
        vec![(name.to_string(), meta.size_bytes, meta.sha256.clone())]
    } else {
        meta.files
            .iter()
            .map(|f| (format!("{name}/{}", f.path), f.size, f.sha256.clone()))
            .collect()
    };
    if let Some(g) = &meta.globals {
        all.push((g.file.clone(), g.size_bytes, g.sha256.clone()));
    }
    all
}

/// Copies the complete backup `name` (described by `meta`) from `from` to `to`: data objects,
/// each read back and checked, then the sidecar. Whatever was there under these names without
/// a sidecar (an interrupted copy) is replaced.
///
/// # Errors
/// A read, a write or a check failed, or `stop` said to stop; the sidecar is then not written,
/// so the copy never looks complete.
pub fn copy_backup(
    from: &dyn Storage,
    to: &dyn Storage,
    name: &str,
    meta: &Meta,
    stop: Stop<'_>,
) -> io::Result<u64> {
    let sidecar = format!("{name}{META_SUFFIX}");
    to.remove(&sidecar)?;
    let mut moved = 0;
    for (object, size, sha) in data_objects(name, meta) {
        copy_object(from, to, &object, stop)?;
        check_object(to, &object, size, &sha, stop)?;
        moved += size;
    }
    let text = from.read_small(&sidecar)?;
    put_small(to, &sidecar, &text)?;
    if to.read_small(&sidecar)? != text {
        return Err(io::Error::other(format!(
            "{}: the stored sidecar differs from what was sent",
            to.location(&sidecar)
        )));
    }
    Ok(moved)
}

/// Removes the backup `name` from `storage`: its sidecar first, so that it never looks complete
/// without its data, then its data objects (a directory archive's folder whole).
///
/// # Errors
/// A removal failed.
pub fn remove_backup(storage: &dyn Storage, name: &str, meta: &Meta) -> io::Result<()> {
    storage.remove(&format!("{name}{META_SUFFIX}"))?;
    storage.remove(name)?;
    if let Some(g) = &meta.globals {
        storage.remove(&g.file)?;
    }
    Ok(())
}

/// Copies one object, through a temporary object published when whole.
///
/// # Errors
/// A read or write failed, or `stop` said to stop.
pub fn copy_object(
    from: &dyn Storage,
    to: &dyn Storage,
    name: &str,
    stop: Stop<'_>,
) -> io::Result<()> {
    to.remove(name)?;
    let _ = to.remove(&partial_name(name));
    let mut reader = from.open(name)?;
    let mut partial = to.create_partial(name)?;
    let mut buf = vec![0u8; STEP];
    loop {
        if stop() {
            return Err(interrupted());
        }
        let n = read_some(&mut reader, &mut buf)?;
        if n == 0 {
            break;
        }
        partial.write_all(&buf[..n])?;
    }
    partial.finish()?;
    to.publish(&partial_name(name), name)
}

/// Writes a small object whole.
///
/// # Errors
/// The write failed.
pub fn put_small(to: &dyn Storage, name: &str, bytes: &[u8]) -> io::Result<()> {
    to.remove(name)?;
    let _ = to.remove(&partial_name(name));
    let mut partial = to.create_partial(name)?;
    partial.write_all(bytes)?;
    partial.finish()?;
    to.publish(&partial_name(name), name)
}

/// Reads `name` back from `storage` and checks its size and SHA-256.
///
/// # Errors
/// It could not be read, or differs (an error of kind `InvalidData` saying how).
pub fn check_object(
    storage: &dyn Storage,
    name: &str,
    size: u64,
    sha: &str,
    stop: Stop<'_>,
) -> io::Result<()> {
    let (got_sha, got_size) = hash(&mut storage.open(name)?, stop)?;
    if got_size == size && got_sha == sha {
        return Ok(());
    }
    let what = if got_size == size {
        format!("SHA-256 is {got_sha}, the sidecar says {sha}")
    } else {
        format!("{got_size} bytes, the sidecar says {size}")
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}", storage.location(name)),
    ))
}

/// The SHA-256 (lowercase hex) and length of what `reader` yields.
///
/// # Errors
/// A read failed, or `stop` said to stop.
pub fn hash(reader: &mut dyn Read, stop: Stop<'_>) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; STEP];
    let mut total = 0u64;
    loop {
        if stop() {
            return Err(interrupted());
        }
        let n = read_some(reader, &mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((format!("{:x}", h.finalize()), total))
}

fn read_some(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn interrupted() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "stopped by a signal")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalFolder;

    #[test]
    fn a_copy_is_checked_and_its_sidecar_comes_last() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let (from, to) = (LocalFolder::new(a.path()), LocalFolder::new(b.path()));
        std::fs::write(from.path("x.dump"), b"hello").unwrap();
        let (sha, size) = hash(&mut &b"hello"[..], &|| false).unwrap();
        std::fs::write(from.path("x.dump.meta.json"), b"{}").unwrap();
        copy_object(&from, &to, "x.dump", &|| false).unwrap();
        check_object(&to, "x.dump", size, &sha, &|| false).unwrap();
        std::fs::write(to.path("x.dump"), b"hellO").unwrap();
        let err = check_object(&to, "x.dump", size, &sha, &|| false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let err = copy_object(&from, &to, "x.dump", &|| true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Interrupted);
        assert!(
            !to.path("x.dump").exists(),
            "nothing published when stopped"
        );
    }
}
