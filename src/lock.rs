//! An exclusive lock on the backup folder, so overlapping runs (cron) fail at once instead of
//! racing. It is an `flock` on `.aos-backup.lock`: the kernel drops it when the holder dies, so
//! a stale lock never blocks.

use crate::error::{Error, Kind};
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file's name inside the backup folder.
pub const LOCK_FILE: &str = ".aos-backup.lock";

/// Held while the value lives.
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
    pub path: PathBuf,
}

/// Takes the lock on `dir` for `what` (backup, prune, restore), or fails naming the holder.
pub fn acquire(dir: &Path, what: &str) -> Result<FolderLock> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err).with_context(|| format!("locking {}", path.display()));
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let who = if holder.is_empty() {
            "another aos-backup run".to_string()
        } else {
            format!("another aos-backup run ({holder})")
        };
        return Err(Error::new(Kind::Locked, format!("{who} holds the lock on {}; not starting {what}", dir.display()))
            .hint("wait for it to finish (the lock frees itself when that process exits), or use another BACKUP_DIR")
            .into());
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(
        file,
        "pid {}, {what} since {}",
        std::process::id(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = file.flush();
    Ok(FolderLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_naming_the_holder_and_frees_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), "backup").unwrap();
        let err = acquire(dir.path(), "prune").unwrap_err();
        let e = crate::error::find(&err).unwrap();
        assert_eq!(e.kind, Kind::Locked);
        assert!(
            e.message.contains(&format!("pid {}", std::process::id())),
            "{}",
            e.message
        );
        drop(first);
        assert!(acquire(dir.path(), "prune").is_ok());
    }
}
