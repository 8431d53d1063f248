//! Uploading a backup while pg_dump still writes it: a thread follows the growing local
//! `.partial` file into the destination's own temporary object, so that when the backup is
//! complete only its last part, the check and the sidecar remain. Nothing is visible at the
//! destination until [`Following::complete`] has the whole file and it is exactly what the
//! sidecar describes; any doubt (the file was rewritten, a read or a part failed) gives up the
//! upload, and the caller copies the backup the ordinary way.

use super::transfer::{self, read_some, Hashes, Sent, Stop, STEP};
use super::{partial_name, Partial, Storage};
use crate::archive::meta::Meta;
use crate::archive::naming::META_SUFFIX;
use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the follower waits for pg_dump to write more before it looks again.
const POLL: Duration = Duration::from_millis(25);

/// What the follower thread hands back: the upload, not yet published, and what went into it.
type Followed = io::Result<(Box<dyn Partial>, Sent)>;

/// One backup file being uploaded as it is written. Dropping it gives the upload up.
pub struct Following {
    storage: Arc<dyn Storage>,
    name: String,
    /// Set when the file is complete: the thread reads to its end and stops.
    done: Arc<AtomicBool>,
    /// Set to give up.
    quit: Arc<AtomicBool>,
    thread: Option<JoinHandle<Followed>>,
}

impl std::fmt::Debug for Following {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Following")
            .field("to", &self.storage.location(&self.name))
            .finish_non_exhaustive()
    }
}

impl Following {
    /// Starts uploading `file` (open on the growing `.partial`) as `name` into `storage`.
    /// `cancelled` is asked between reads (a signal stops the upload).
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start(
        storage: Arc<dyn Storage>,
        file: File,
        name: &str,
        cancelled: Box<dyn Fn() -> bool + Send>,
    ) -> io::Result<Following> {
        let done = Arc::new(AtomicBool::new(false));
        let quit = Arc::new(AtomicBool::new(false));
        let thread = {
            let (storage, name) = (Arc::clone(&storage), name.to_string());
            let (done, quit) = (Arc::clone(&done), Arc::clone(&quit));
            std::thread::Builder::new()
                .name("aos-follow".into())
                .spawn(move || {
                    let stop = || quit.load(Ordering::Relaxed) || cancelled();
                    follow(&*storage, file, &name, &done, &stop)
                })?
        };
        Ok(Following {
            storage,
            name: name.to_string(),
            done,
            quit,
            thread: Some(thread),
        })
    }

    /// The backup file's name at the destination.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The local file is complete and `meta` describes it: uploads what remains, publishes the
    /// object when its size and SHA-256 are the sidecar's, then finishes the copy as
    /// [`transfer::copy_backup`] does (the check, the globals script, the sidecar last).
    /// Returns the bytes moved.
    ///
    /// # Errors
    /// The upload failed or was stopped, or the file sent is not the one `meta` describes (it
    /// was rewritten meanwhile); the upload is then given up and nothing looks complete.
    pub fn complete(mut self, from: &dyn Storage, meta: &Meta, stop: Stop<'_>) -> io::Result<u64> {
        self.done.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("a following is completed once");
        let (partial, sent) = thread
            .join()
            .map_err(|_| io::Error::other("the upload thread failed"))??;
        let wanted = transfer::data_objects(&self.name, meta);
        let Some((_, size, sha)) = wanted.first() else {
            return Err(io::Error::other("the sidecar names no file"));
        };
        if sent.size != *size || sent.sha256 != *sha {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the file sent during the dump ({} bytes) is not the finished backup ({size} bytes, as its sidecar says)",
                    sent.size
                ),
            ));
        }
        let to = &*self.storage;
        to.remove(&format!("{}{META_SUFFIX}", self.name))?;
        to.remove(&self.name)?;
        partial.finish()?;
        to.publish(&partial_name(&self.name), &self.name)?;
        transfer::copy_rest(from, to, &self.name, meta, stop, Some(sent))
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // The upload it hands back is dropped here, which aborts it.
            let _ = thread.join();
        }
    }
}

/// The thread's work: reads `file` as it grows into a new upload of `name`, until `done` is
/// set and the end is reached, or `stop` says to stop.
fn follow(
    to: &dyn Storage,
    mut file: File,
    name: &str,
    done: &AtomicBool,
    stop: Stop<'_>,
) -> Followed {
    let _ = to.remove(&partial_name(name));
    let mut partial = to.create_partial(name)?;
    let mut hashes = Hashes::new(to.etag_part_size());
    let mut buf = vec![0u8; STEP];
    loop {
        if stop() {
            return Err(transfer::interrupted());
        }
        // Read `done` before reading the file: once set, every byte is already there.
        let finished = done.load(Ordering::Acquire);
        let n = read_some(&mut file, &mut buf)?;
        if n > 0 {
            hashes.update(&buf[..n]);
            partial.write_all(&buf[..n])?;
        } else if finished {
            return Ok((partial, hashes.finish()));
        } else {
            std::thread::sleep(POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalFolder;

    #[test]
    fn a_file_followed_while_it_grows_is_sent_whole_and_published_by_nobody_else() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let path = a.path().join("x.dump.partial");
        let mut growing = File::create(&path).unwrap();
        let to = LocalFolder::new(b.path());
        let done = AtomicBool::new(false);
        let reader = File::open(&path).unwrap();
        let (partial, sent) = std::thread::scope(|s| {
            let t = s.spawn(|| follow(&to, reader, "x.dump", &done, &|| false));
            growing.write_all(b"hello ").unwrap();
            std::thread::sleep(POLL * 3);
            growing.write_all(b"world").unwrap();
            done.store(true, Ordering::Release);
            t.join().unwrap().unwrap()
        });
        assert_eq!(sent.size, 11);
        assert_eq!(
            sent.sha256,
            transfer::hash(&mut &b"hello world"[..], &|| false)
                .unwrap()
                .0
        );
        assert!(
            !b.path().join("x.dump").exists(),
            "only completion publishes"
        );
        partial.finish().unwrap();
        assert_eq!(
            std::fs::read(b.path().join("x.dump.partial")).unwrap(),
            b"hello world"
        );
    }

    #[test]
    fn a_dropped_following_leaves_nothing_behind() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let path = a.path().join("x.dump.partial");
        std::fs::write(&path, b"half").unwrap();
        let to: Arc<dyn Storage> = Arc::new(LocalFolder::new(b.path()));
        let f =
            Following::start(to, File::open(&path).unwrap(), "x.dump", Box::new(|| false)).unwrap();
        std::thread::sleep(POLL * 2);
        drop(f);
        let left: Vec<_> = std::fs::read_dir(b.path()).unwrap().flatten().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    /// Follows `a/x.dump.partial` into `b` while `data` is written, then publishes it locally
    /// as the backup does; returns the following, not yet completed.
    fn followed(a: &std::path::Path, b: &std::path::Path, data: &[u8]) -> Following {
        let path = a.join("x.dump.partial");
        let mut growing = File::create(&path).unwrap();
        let to: Arc<dyn Storage> = Arc::new(LocalFolder::new(b));
        let f =
            Following::start(to, File::open(&path).unwrap(), "x.dump", Box::new(|| false)).unwrap();
        for piece in data.chunks(3) {
            growing.write_all(piece).unwrap();
            std::thread::sleep(POLL / 2);
        }
        std::fs::rename(&path, a.join("x.dump")).unwrap();
        f
    }

    #[test]
    fn a_completed_following_is_the_backup_with_its_sidecar_last() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let f = followed(a.path(), b.path(), b"hello world");
        let sha = transfer::hash(&mut &b"hello world"[..], &|| false)
            .unwrap()
            .0;
        let meta = Meta::for_test("x.dump", 11, &sha);
        std::fs::write(a.path().join("x.dump.meta.json"), b"{\"sidecar\":1}").unwrap();
        let moved = f
            .complete(&LocalFolder::new(a.path()), &meta, &|| false)
            .unwrap();
        assert_eq!(moved, 11);
        assert_eq!(
            std::fs::read(b.path().join("x.dump")).unwrap(),
            b"hello world"
        );
        assert_eq!(
            std::fs::read(b.path().join("x.dump.meta.json")).unwrap(),
            b"{\"sidecar\":1}"
        );
    }

    #[test]
    fn a_following_of_other_bytes_than_the_sidecar_says_is_given_up() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let f = followed(a.path(), b.path(), b"hello world");
        // The dump was started again meanwhile: the finished file is not what was sent.
        let sha = transfer::hash(&mut &b"hello World"[..], &|| false)
            .unwrap()
            .0;
        let meta = Meta::for_test("x.dump", 11, &sha);
        std::fs::write(a.path().join("x.dump.meta.json"), b"{}").unwrap();
        let err = f
            .complete(&LocalFolder::new(a.path()), &meta, &|| false)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        let left: Vec<_> = std::fs::read_dir(b.path()).unwrap().flatten().collect();
        assert!(left.is_empty(), "nothing published, nothing left: {left:?}");
    }
}
