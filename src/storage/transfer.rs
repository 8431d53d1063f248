//! Copying one backup from a storage to another: its data objects first, its globals script,
//! each verified (size and SHA-256 against the sidecar), and its sidecar last, as the completion
//! marker. Shared by the upload after a backup, `push`, and the download of a remote backup for
//! verify and restore.
//!
//! How a copy is verified: the SHA-256 and size of the bytes sent must be the sidecar's; then
//! the store must hold those bytes. A store that fingerprints what it keeps (S3's ETag: the MD5
//! of the object, or of its parts' MD5s) proves it when its fingerprint is the one computed
//! from the bytes sent; any other answer (another ETag scheme, encryption by the store, no
//! ETag) falls back to reading the object back and hashing it.

use super::{partial_name, Storage};
use crate::archive::meta::Meta;
use crate::archive::naming::META_SUFFIX;
use md5::Md5;
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};

/// Says whether to stop (a signal): checked between chunks.
pub type Stop<'a> = &'a dyn Fn() -> bool;

/// How much one read moves at a time.
pub(super) const STEP: usize = 1024 * 1024;

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
    to.remove(&format!("{name}{META_SUFFIX}"))?;
    copy_rest(from, to, name, meta, stop, None)
}

/// [`copy_backup`] once its sidecar is known absent at `to`; `first`: the backup's file is
/// already published there (by a [`super::follow::Following`]), and this is what was sent of
/// it. Each object is verified, the sidecar comes last.
///
/// # Errors
/// As [`copy_backup`].
pub(super) fn copy_rest(
    from: &dyn Storage,
    to: &dyn Storage,
    name: &str,
    meta: &Meta,
    stop: Stop<'_>,
    mut first: Option<Sent>,
) -> io::Result<u64> {
    let sidecar = format!("{name}{META_SUFFIX}");
    let mut moved = 0;
    for (object, size, sha) in data_objects(name, meta) {
        let sent = match first.take().filter(|_| object == name) {
            Some(sent) => sent,
            None => copy_object(from, to, &object, stop)?,
        };
        if sent.size != size || sent.sha256 != sha {
            let _ = to.remove(&object);
            return Err(differs(
                &from.location(&object),
                sent.size,
                &sent.sha256,
                size,
                &sha,
            ));
        }
        if !sent.is_held_by(to, &object) {
            check_object(to, &object, size, &sha, stop)?;
        }
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

/// What was sent of one object: its SHA-256 and size, and the fingerprints (ETags) a store
/// that computes them by `part_size` parts would report for exactly these bytes.
#[derive(Debug)]
pub struct Sent {
    /// Lowercase hex.
    pub sha256: String,
    pub size: u64,
    /// The ETags that prove the store holds these bytes: the MD5 of the whole (one request),
    /// and the MD5 of the parts' MD5s with their count (a multipart upload).
    pub etags: Vec<String>,
}

impl Sent {
    /// Whether `storage` says it holds exactly what was sent under `name`: same size, and a
    /// fingerprint computed from these bytes. No (or an unknown) answer is a "no", never an
    /// error: the caller then reads the object back.
    #[must_use]
    pub fn is_held_by(&self, storage: &dyn Storage, name: &str) -> bool {
        match storage.etag(name) {
            Ok(Some((size, etag))) if size == self.size && self.etags.contains(&etag) => {
                tracing::debug!("{}: verified by the store's ETag", storage.location(name));
                true
            }
            Ok(Some((_, etag))) if !self.etags.is_empty() => {
                tracing::debug!(
                    "{}: the store's ETag {etag} is not an MD5 of what was sent; reading it back",
                    storage.location(name)
                );
                false
            }
            _ => false,
        }
    }
}

/// Hashes the bytes of one object as they are sent.
pub(super) struct Hashes {
    sha: Sha256,
    size: u64,
    /// The store's part size, when it fingerprints objects by ETag.
    part_size: Option<usize>,
    whole: Md5,
    part: Md5,
    in_part: usize,
    parts: Vec<[u8; 16]>,
}

impl Hashes {
    pub(super) fn new(part_size: Option<usize>) -> Self {
        Hashes {
            sha: Sha256::new(),
            size: 0,
            part_size,
            whole: Md5::new(),
            part: Md5::new(),
            in_part: 0,
            parts: Vec::new(),
        }
    }

    pub(super) fn update(&mut self, mut data: &[u8]) {
        self.sha.update(data);
        self.size += data.len() as u64;
        let Some(part_size) = self.part_size else {
            return;
        };
        self.whole.update(data);
        while !data.is_empty() {
            let n = data.len().min(part_size - self.in_part);
            self.part.update(&data[..n]);
            self.in_part += n;
            data = &data[n..];
            if self.in_part == part_size {
                self.parts
                    .push(std::mem::take(&mut self.part).finalize().into());
                self.in_part = 0;
            }
        }
    }

    pub(super) fn finish(mut self) -> Sent {
        let mut etags = Vec::new();
        if self.part_size.is_some() {
            if self.in_part > 0 || self.parts.is_empty() {
                self.parts.push(self.part.finalize().into());
            }
            etags.push(format!("{:x}", self.whole.finalize()));
            let mut of_parts = Md5::new();
            for p in &self.parts {
                of_parts.update(p);
            }
            etags.push(format!("{:x}-{}", of_parts.finalize(), self.parts.len()));
        }
        Sent {
            sha256: format!("{:x}", self.sha.finalize()),
            size: self.size,
            etags,
        }
    }
}

/// Copies one object, through a temporary object published when whole, hashing what it sends.
///
/// # Errors
/// A read or write failed, or `stop` said to stop.
pub fn copy_object(
    from: &dyn Storage,
    to: &dyn Storage,
    name: &str,
    stop: Stop<'_>,
) -> io::Result<Sent> {
    to.remove(name)?;
    let _ = to.remove(&partial_name(name));
    let mut reader = from.open(name)?;
    let mut partial = to.create_partial(name)?;
    let mut hashes = Hashes::new(to.etag_part_size());
    let mut buf = vec![0u8; STEP];
    loop {
        if stop() {
            return Err(interrupted());
        }
        let n = read_some(&mut reader, &mut buf)?;
        if n == 0 {
            break;
        }
        hashes.update(&buf[..n]);
        partial.write_all(&buf[..n])?;
    }
    partial.finish()?;
    to.publish(&partial_name(name), name)?;
    Ok(hashes.finish())
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
    Err(differs(
        &storage.location(name),
        got_size,
        &got_sha,
        size,
        sha,
    ))
}

/// The error for bytes that are not what the sidecar describes.
fn differs(location: &str, got_size: u64, got_sha: &str, size: u64, sha: &str) -> io::Error {
    let what = if got_size == size {
        format!("SHA-256 is {got_sha}, the sidecar says {sha}")
    } else {
        format!("{got_size} bytes, the sidecar says {size}")
    };
    io::Error::new(io::ErrorKind::InvalidData, format!("{location}: {what}"))
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

pub(super) fn read_some(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

pub(super) fn interrupted() -> io::Error {
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

    #[test]
    fn what_was_sent_gives_the_etags_of_one_request_and_of_a_multipart_upload() {
        let mut h = Hashes::new(Some(4));
        h.update(b"hel");
        h.update(b"lo world");
        let sent = h.finish();
        let md5 = |b: &[u8]| Md5::digest(b);
        let mut parts = Vec::new();
        for p in [&b"hell"[..], b"o wo", b"rld"] {
            parts.extend_from_slice(&md5(p));
        }
        assert_eq!(
            sent.etags,
            vec![
                format!("{:x}", md5(b"hello world")),
                format!("{:x}-3", md5(&parts))
            ]
        );
        assert_eq!(sent.size, 11);
        assert_eq!(
            sent.sha256,
            hash(&mut &b"hello world"[..], &|| false).unwrap().0
        );
        // A store without fingerprints gets no ETags computed.
        assert!(Hashes::new(None).finish().etags.is_empty());
    }

    /// A local folder that reports ETags, honest (MD5 of what it holds, by parts of 4 bytes)
    /// or of another scheme.
    #[derive(Debug)]
    struct Fingerprinting {
        inner: LocalFolder,
        honest: bool,
    }

    impl Storage for Fingerprinting {
        fn root_location(&self) -> String {
            self.inner.root_location()
        }
        fn location(&self, name: &str) -> String {
            self.inner.location(name)
        }
        fn list(&self) -> io::Result<Vec<crate::storage::Listed>> {
            self.inner.list()
        }
        fn open(&self, name: &str) -> io::Result<Box<dyn Read + Send>> {
            self.inner.open(name)
        }
        fn read_small(&self, name: &str) -> io::Result<Vec<u8>> {
            self.inner.read_small(name)
        }
        fn create_partial(&self, name: &str) -> io::Result<Box<dyn crate::storage::Partial>> {
            self.inner.create_partial(name)
        }
        fn publish(&self, partial: &str, name: &str) -> io::Result<()> {
            self.inner.publish(partial, name)
        }
        fn remove(&self, name: &str) -> io::Result<()> {
            self.inner.remove(name)
        }
        fn free_space(&self) -> io::Result<Option<u64>> {
            Ok(None)
        }
        fn lock(&self, what: &str) -> anyhow::Result<crate::storage::Lock> {
            self.inner.lock(what)
        }
        fn lock_for_reading(&self, what: &str) -> anyhow::Result<Option<crate::storage::Lock>> {
            self.inner.lock_for_reading(what)
        }
        fn etag_part_size(&self) -> Option<usize> {
            Some(4)
        }
        fn etag(&self, name: &str) -> io::Result<Option<(u64, String)>> {
            let held = std::fs::read(self.inner.path(name))?;
            let mut h = Hashes::new(Some(4));
            h.update(&held);
            let tag = if self.honest {
                h.finish().etags[1].clone()
            } else {
                "0123456789abcdef0123456789abcdef".to_string()
            };
            Ok(Some((held.len() as u64, tag)))
        }
    }

    #[test]
    fn a_store_fingerprint_proves_only_the_bytes_that_were_sent() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let from = LocalFolder::new(a.path());
        std::fs::write(from.path("x.dump"), b"hello world").unwrap();
        let honest = Fingerprinting {
            inner: LocalFolder::new(b.path()),
            honest: true,
        };
        let sent = copy_object(&from, &honest, "x.dump", &|| false).unwrap();
        assert!(sent.is_held_by(&honest, "x.dump"));
        // The store holds other bytes (damaged in transit or at rest): not proven.
        std::fs::write(honest.inner.path("x.dump"), b"hello World").unwrap();
        assert!(!sent.is_held_by(&honest, "x.dump"));
        // A store whose ETags are not MD5s proves nothing: the copy is read back instead.
        let other = Fingerprinting {
            inner: LocalFolder::new(b.path()),
            honest: false,
        };
        std::fs::write(other.inner.path("x.dump"), b"hello world").unwrap();
        assert!(!sent.is_held_by(&other, "x.dump"));
        // And a plain folder reports no fingerprint at all.
        assert!(!sent.is_held_by(&LocalFolder::new(b.path()), "x.dump"));
    }
}
