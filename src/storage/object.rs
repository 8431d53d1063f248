//! An object store (an S3 bucket or S3-compatible store, an Azure container) as a [`Storage`],
//! through opendal: multipart (or block) uploads that stay invisible until completed, ranged
//! reads in bounded chunks, retries with backoff and a timeout on every transfer step. The trait is synchronous; each call is carried out on this
//! storage's own small runtime, so it works from plain threads and from async tasks alike.

use super::{check_name, Kind, Listed, Lock, Partial, Storage};
use opendal::{EntryMode, Operator, Writer};
use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

/// How many bytes one upload part or one ranged read holds: memory stays bounded by a few of
/// these whatever the backup's size.
pub const CHUNK: usize = 8 * 1024 * 1024;

/// How many parts of one upload may be on their way at once: the next part is read while the
/// last one travels, and memory stays within a few parts.
const UPLOADS: usize = 1;

/// Runs futures to completion for synchronous callers, on a runtime of its own.
#[derive(Debug)]
pub struct Bridge {
    rt: Option<tokio::runtime::Runtime>,
}

impl Bridge {
    /// A runtime with one worker for the store's connections.
    ///
    /// # Errors
    /// The runtime could not be started.
    pub fn new() -> io::Result<Bridge> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("aos-remote")
            .enable_all()
            .build()?;
        Ok(Bridge { rt: Some(rt) })
    }

    /// Waits for `f`. Inside another runtime's task, it is driven from a scoped thread, since a
    /// runtime cannot be entered from within one.
    pub fn wait<F>(&self, f: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        let rt = self
            .rt
            .as_ref()
            .expect("the runtime lives as long as the bridge");
        if tokio::runtime::Handle::try_current().is_err() {
            return rt.block_on(f);
        }
        std::thread::scope(|s| {
            s.spawn(|| rt.block_on(f))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Uploads finished but not yet published, by their partial name.
type Pending = Arc<Mutex<HashMap<String, (String, Writer)>>>;

/// A bucket and prefix of an S3-compatible store.
pub struct ObjectStore {
    op: Operator,
    url: String,
    bridge: Arc<Bridge>,
    pending: Pending,
    /// Whether the store's ETags are MD5s (S3's); else copies are checked by reading back.
    md5_etags: bool,
}

impl std::fmt::Debug for ObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// An opendal error as an I/O error of the matching kind, its text kept.
pub fn io_error(e: opendal::Error) -> io::Error {
    let kind = match e.kind() {
        opendal::ErrorKind::NotFound => io::ErrorKind::NotFound,
        opendal::ErrorKind::PermissionDenied => io::ErrorKind::PermissionDenied,
        opendal::ErrorKind::AlreadyExists | opendal::ErrorKind::ConditionNotMatch => {
            io::ErrorKind::AlreadyExists
        }
        opendal::ErrorKind::Unexpected if e.to_string().contains("timeout") => {
            io::ErrorKind::TimedOut
        }
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, short_message(&e))
}

/// opendal's message without its context list (service, endpoint, path), which repeats what the
/// caller already names.
fn short_message(e: &opendal::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or(&text).trim();
    let cut = first.find(", context:").map_or(first, |i| &first[..i]);
    match e.kind() {
        opendal::ErrorKind::PermissionDenied => format!("access denied ({cut})"),
        _ => cut.to_string(),
    }
}

impl ObjectStore {
    /// The store reached through `op` (its root is the bucket's prefix), shown as `url`.
    pub fn new(op: Operator, url: String, bridge: Arc<Bridge>) -> Self {
        ObjectStore {
            op,
            url,
            bridge,
            pending: Arc::default(),
            md5_etags: true,
        }
    }

    /// Says whether the store's ETags are MD5s of what it holds (see [`Storage::etag`]).
    #[must_use]
    pub fn with_md5_etags(mut self, md5: bool) -> Self {
        self.md5_etags = md5;
        self
    }

    fn entry(&self, item: &opendal::Entry) -> Option<Listed> {
        let name = item.path().trim_start_matches('/');
        let meta = item.metadata();
        let (name, kind) = match meta.mode() {
            EntryMode::DIR => (name.trim_end_matches('/'), Kind::Dir),
            EntryMode::FILE => (name, Kind::File),
            EntryMode::Unknown => (name, Kind::Other),
        };
        (!name.is_empty()).then(|| Listed {
            name: name.to_string(),
            kind,
            size: meta.content_length(),
            modified: meta.last_modified(),
        })
    }

    /// The size of `name`, or `None` when there is no such object.
    ///
    /// # Errors
    /// The store could not be asked.
    pub fn size_of(&self, name: &str) -> io::Result<Option<u64>> {
        check_name(name)?;
        match self.bridge.wait(self.op.stat(name)) {
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }
}

/// A ranged reader: one chunk in memory at a time.
struct ObjectReader {
    op: Operator,
    bridge: Arc<Bridge>,
    name: String,
    offset: u64,
    size: u64,
    chunk: bytes::Bytes,
}

impl Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.chunk.is_empty() && self.offset < self.size {
            let end = (self.offset + CHUNK as u64).min(self.size);
            let (op, name, start) = (self.op.clone(), self.name.clone(), self.offset);
            let buffer = self
                .bridge
                .wait(async move { op.read_with(&name).range(start..end).await })
                .map_err(io_error)?;
            self.chunk = buffer.to_bytes();
            if self.chunk.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} ended early", self.name),
                ));
            }
            self.offset += self.chunk.len() as u64;
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}

/// An upload in progress: the writer gathers [`CHUNK`] bytes a part and sends each part as
/// the next one fills (so memory holds about two parts); nothing is visible under the name
/// until [`Storage::publish`] completes it.
struct ObjectPartial {
    writer: Option<Writer>,
    bridge: Arc<Bridge>,
    partial: String,
    name: String,
    pending: Pending,
}

impl Write for ObjectPartial {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(io::Error::other("the upload was already given up"));
        };
        let part = bytes::Bytes::copy_from_slice(data);
        self.bridge.wait(writer.write(part)).map_err(io_error)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Partial for ObjectPartial {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        let writer = self.writer.take().expect("a partial is finished once");
        let entry = (self.name.clone(), writer);
        self.pending
            .lock()
            .expect("pending uploads")
            .insert(self.partial.clone(), entry);
        Ok(())
    }
}

impl Drop for ObjectPartial {
    fn drop(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            let _ = self.bridge.wait(writer.abort());
        }
    }
}

impl Storage for ObjectStore {
    fn root_location(&self) -> String {
        self.url.clone()
    }

    fn location(&self, name: &str) -> String {
        format!("{}/{name}", self.url.trim_end_matches('/'))
    }

    fn list(&self) -> io::Result<Vec<Listed>> {
        let entries = match self.bridge.wait(self.op.list("/")) {
            Ok(entries) => entries,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(e)),
        };
        let mut all: Vec<Listed> = entries.iter().filter_map(|e| self.entry(e)).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all.dedup_by(|a, b| a.name == b.name);
        Ok(all)
    }

    fn open(&self, name: &str) -> io::Result<Box<dyn Read + Send>> {
        let size = self.size_of(name)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{name}: no such object"))
        })?;
        Ok(Box::new(ObjectReader {
            op: self.op.clone(),
            bridge: Arc::clone(&self.bridge),
            name: name.to_string(),
            offset: 0,
            size,
            chunk: bytes::Bytes::new(),
        }))
    }

    fn read_small(&self, name: &str) -> io::Result<Vec<u8>> {
        check_name(name)?;
        let buffer = self.bridge.wait(self.op.read(name)).map_err(io_error)?;
        Ok(buffer.to_vec())
    }

    fn create_partial(&self, name: &str) -> io::Result<Box<dyn Partial>> {
        check_name(name)?;
        let writer = self
            .bridge
            .wait(async {
                self.op
                    .writer_with(name)
                    .chunk(CHUNK)
                    .concurrent(UPLOADS)
                    .await
            })
            .map_err(io_error)?;
        Ok(Box::new(ObjectPartial {
            writer: Some(writer),
            bridge: Arc::clone(&self.bridge),
            partial: super::partial_name(name),
            name: name.to_string(),
            pending: Arc::clone(&self.pending),
        }))
    }

    fn publish(&self, partial: &str, name: &str) -> io::Result<()> {
        let taken = self
            .pending
            .lock()
            .expect("pending uploads")
            .remove(partial);
        let Some((target, mut writer)) = taken else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{partial}: no finished upload to publish"),
            ));
        };
        if target != name || self.size_of(name)?.is_some() {
            let _ = self.bridge.wait(writer.abort());
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{name} already exists (or the upload was for {target})"),
            ));
        }
        self.bridge.wait(writer.close()).map(drop).map_err(io_error)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        self.bridge.wait(self.op.delete(name)).map_err(io_error)?;
        self.bridge
            .wait(self.op.remove_all(&format!("{name}/")))
            .map_err(io_error)
    }

    fn free_space(&self) -> io::Result<Option<u64>> {
        Ok(None)
    }

    fn etag_part_size(&self) -> Option<usize> {
        self.md5_etags.then_some(CHUNK)
    }

    fn etag(&self, name: &str) -> io::Result<Option<(u64, String)>> {
        check_name(name)?;
        match self.bridge.wait(self.op.stat(name)) {
            Ok(m) => Ok(m
                .etag()
                .map(|e| (m.content_length(), e.trim_matches('"').to_ascii_lowercase()))),
            Err(e) => Err(io_error(e)),
        }
    }

    fn lock(&self, what: &str) -> anyhow::Result<Lock> {
        // An object store has no lock of ours: a run that changes a destination holds the local
        // backup folder's lock, which serialises the runs of this host.
        Ok(Lock::new(format!("{what}: {}", self.url)))
    }

    fn lock_for_reading(&self, what: &str) -> anyhow::Result<Option<Lock>> {
        self.lock(what).map(Some)
    }
}
