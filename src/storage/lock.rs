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
    file: File,
    pub path: PathBuf,
}

impl Drop for FolderLock {
    /// Unlocks explicitly rather than by closing: a child forked by another thread in that
    /// instant holds a copy of the descriptor until it execs, and a close would leave the lock
    /// held by that copy (an engine in a long-running program would see its own lock as busy).
    fn drop(&mut self) {
        // SAFETY: flock on a file descriptor we own.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Takes the lock on `dir` for `what` (backup, prune, restore), or fails naming the holder.
///
/// The lock file is never followed through a symbolic link (a link planted there would make a
/// root run overwrite its target) and is only rewritten when it is a plain file with no other
/// name (a planted hard link is refused too).
pub fn acquire(dir: &Path, what: &str) -> Result<FolderLock> {
    warn_if_loose(dir);
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                return planted(&path, "a symbolic link");
            }
            crate::runtime::fsutil::local_io_error("cannot open the lock file", &path, &e)
        })?;
    check_plain(&file, &path)?;
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err).with_context(|| format!("locking {}", path.display()));
        }
        return Err(held(&mut file, dir, what));
    }
    // Safe to rewrite: a plain file of ours, with this one name, inside the backup folder.
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(
        file,
        "pid {}, {what} since {}",
        std::process::id(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = file.flush();
    Ok(FolderLock { file, path })
}

/// Takes the lock on `dir` for a run that only reads the folder (restore). A folder we cannot
/// write (a read-only mount or snapshot: EROFS; a folder of another user: EACCES) is no reason
/// to refuse: the lock file, when there is one, is locked through a read-only descriptor (flock
/// needs no write access); when there is none, the run goes on without a lock, and says so once.
pub fn acquire_for_reading(dir: &Path, what: &str) -> Result<Option<FolderLock>> {
    let path = dir.join(LOCK_FILE);
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&path);
    let why = match opened {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EROFS | libc::EACCES)) => e,
        // Writable (or another problem, which acquire reports).
        _ => return acquire(dir, what).map(Some),
    };
    let existing = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&path);
    match existing {
        Ok(file) => {
            check_plain(&file, &path)?;
            // SAFETY: flock on a file descriptor we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                tracing::debug!(
                    "the backup folder {} is not writable ({why}); locked {} read-only",
                    dir.display(),
                    path.display()
                );
                return Ok(Some(FolderLock { file, path }));
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut file = file;
                return Err(held(&mut file, dir, what));
            }
            tracing::warn!(
                "the backup folder {} is not writable ({why}), and its lock file cannot be locked ({err}): going on with the {what} without the folder lock{}",
                dir.display(),
                meanwhile(&why)
            );
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(planted(&path, "a symbolic link").into())
        }
        Err(_) => tracing::warn!(
            "the backup folder {} is not writable ({why}): going on with the {what} without the folder lock{}",
            dir.display(),
            meanwhile(&why)
        ),
    }
    Ok(None)
}

/// What going on without the lock means, as far as it is known.
fn meanwhile(why: &std::io::Error) -> &'static str {
    if why.raw_os_error() == Some(libc::EROFS) {
        " (on a read-only file system, nothing can prune the folder meanwhile either)"
    } else {
        " (a run of a user who may write the folder could prune it meanwhile)"
    }
}

/// The error for a lock someone else holds, naming them as the lock file says.
fn held(file: &mut File, dir: &Path, what: &str) -> anyhow::Error {
    let mut holder = String::new();
    let _ = file.read_to_string(&mut holder);
    let holder = holder.trim();
    let who = if holder.is_empty() {
        "another aos-backup run".to_string()
    } else {
        format!("another aos-backup run ({holder})")
    };
    Error::new(Kind::Locked, format!("{who} holds the lock on {}; not starting {what}", dir.display()))
        .hint("wait for it to finish (the lock frees itself when that process exits), or use another BACKUP_DIR")
        .into()
}

/// The lock file must be a plain file with one name; anything else was put there.
fn check_plain(file: &File, path: &Path) -> std::result::Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().map_err(|e| {
        crate::runtime::fsutil::local_io_error("cannot inspect the lock file", path, &e)
    })?;
    if !meta.is_file() {
        return Err(planted(path, "not a plain file"));
    }
    if meta.nlink() != 1 {
        return Err(planted(path, "a hard link to another file"));
    }
    Ok(())
}

fn planted(path: &Path, what: &str) -> Error {
    Error::refused(format!(
        "the lock file {} is {what}; refusing to follow or overwrite it",
        path.display()
    ))
    .hint(format!(
        "someone put it there: check who can write to the backup folder, then remove {} (aos-backup creates it)",
        path.display()
    ))
}

/// Warns when others may write to the backup folder: they could plant files (or links) there,
/// or remove backups.
fn warn_if_loose(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(dir) {
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            tracing::warn!(
                "the backup folder {} is writable by group or others (mode {mode:04o}): they could delete backups or plant files; chmod 700 it",
                dir.display()
            );
        }
    }
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

    #[test]
    fn a_copy_of_the_descriptor_does_not_keep_the_lock_after_drop() {
        // What a child forked by another thread holds until it execs.
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), "restore").unwrap();
        let copy = first.file.try_clone().unwrap();
        drop(first);
        let again = acquire(dir.path(), "restore");
        drop(copy);
        assert!(again.is_ok(), "{:?}", again.err());
    }

    #[test]
    fn a_planted_link_is_refused_and_its_target_kept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let folder = dir.path().join("b");
        std::fs::create_dir(&folder).unwrap();
        std::os::unix::fs::symlink(&target, folder.join(LOCK_FILE)).unwrap();
        let err = acquire(&folder, "backup").unwrap_err();
        assert_eq!(crate::error::find(&err).unwrap().kind, Kind::Refused);
        std::fs::remove_file(folder.join(LOCK_FILE)).unwrap();
        std::fs::hard_link(&target, folder.join(LOCK_FILE)).unwrap();
        let err = acquire(&folder, "backup").unwrap_err();
        assert_eq!(crate::error::find(&err).unwrap().kind, Kind::Refused);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }
}
