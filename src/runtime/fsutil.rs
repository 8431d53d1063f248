//! Atomic files: private creation, fsync of files and folders, and renames that never overwrite.

use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Creates a new file readable by the owner only; fails if it exists.
pub fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Creates a folder (and parents) readable by the owner only, if missing.
pub fn create_private_dir_all(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Flushes a folder's entries (a rename or a new file in it) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// Renames `from` to `to`, failing with `AlreadyExists` instead of replacing `to`.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let c_from = std::ffi::CString::new(from.as_os_str().as_bytes())?;
    let c_to = std::ffi::CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            c_from.as_ptr(),
            libc::AT_FDCWD,
            c_to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // Filesystems without RENAME_NOREPLACE: a hard link is just as exclusive for files.
        Some(libc::EINVAL | libc::ENOSYS) if from.is_file() => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        Some(libc::EINVAL | libc::ENOSYS) => {
            if to.exists() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            std::fs::rename(from, to)
        }
        _ => Err(err),
    }
}

/// Writes `bytes` to `path` atomically: a private temp file, fsync, no-replace rename, folder fsync.
pub fn write_new_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = partial_path(path);
    // Only a temp file this call created is ever removed: an existing one is not ours.
    let mut created = false;
    let result = (|| -> Result<()> {
        let mut f = create_private(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        created = true;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        rename_noreplace(&tmp, path).with_context(|| format!("creating {}", path.display()))?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
            .with_context(|| format!("syncing the folder of {}", path.display()))
    })();
    if result.is_err() && created {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Replaces `path` with `bytes` atomically (a reader sees the old file or the new one, never a
/// part), with permissions `mode`: a hidden temp file `.<name>.tmp` beside it, fsync, rename over
/// the old one, folder fsync. A temp file of that name left by a writer that was killed is
/// replaced; the caller makes sure that writers of one `path` take turns.
pub fn replace_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".tmp");
    let tmp = dir.join(name);
    let _ = std::fs::remove_file(&tmp);
    let result = (|| -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .and_then(|()| f.write_all(bytes))
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
        sync_dir(dir).with_context(|| format!("syncing the folder of {}", path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The name a file has while it is being written: `<name>.partial`.
#[must_use]
pub fn partial_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(crate::archive::naming::PARTIAL_SUFFIX);
    path.with_file_name(name)
}

/// Removes a file or a folder tree; a missing one is not an error.
pub fn remove_any(path: &Path) -> io::Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Free bytes available to us on the filesystem holding `path`.
pub fn free_space(path: &Path) -> io::Result<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: statvfs is plain old data; zeroed is a valid initial value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The mode of a secret file that grants group or others any access (libpq's rule for
/// `.pgpass`), or `None` when it is private. Every kind of file is judged: a named pipe or a
/// terminal others may write to could hand us their secret. The anonymous pipe behind
/// `/dev/fd/63` (from `<(...)`) is mode 0600, so it passes.
#[must_use]
pub fn loose_secret_mode(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then_some(mode)
}

/// The owner of a secret file when it is neither us nor root (libpq's rule for `sslkey`):
/// whoever owns a file can change it, and so choose the key we read.
#[must_use]
pub fn foreign_secret_owner(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let owner = meta.uid();
    (owner != me && owner != 0).then_some(owner)
}

/// Refuses a secret file (passphrase file, age identity, a config file holding a password) that
/// group or others may access (whatever its kind: a FIFO or a terminal too), or that another user
/// than us or root owns: one rule for every secret we read, libpq's rules for `.pgpass` and
/// `sslkey`. A missing or unreadable file is left to the caller's own read, which names it.
pub fn check_secret_file(path: &Path, what: &str) -> std::result::Result<(), crate::error::Error> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    if let Some(owner) = foreign_secret_owner(&meta) {
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        return Err(crate::error::Error::usage(format!(
            "the {what} {} belongs to another user (uid {owner}); refusing to use a secret file someone else can change",
            path.display()
        ))
        .hint(format!(
            "use a copy owned by the user running aos-backup (uid {me}) with chmod 600, as libpq requires for ssl keys"
        )));
    }
    match loose_secret_mode(&meta) {
        None => Ok(()),
        Some(mode) => Err(crate::error::Error::usage(format!(
            "the {what} {} is accessible to group or others (mode {mode:04o}); refusing to use a secret file others can read",
            path.display()
        ))
        .hint(format!(
            "chmod 600 {} (secret files must be private to their owner, as libpq requires for .pgpass)",
            path.display()
        ))),
    }
}

/// The hint for an I/O error on one of our own files or folders (the backup folder, a temp
/// file, the lock file), when the error says what is wrong with the disk or the path: a full
/// disk, missing permissions, a read-only filesystem. `None` for anything else.
#[must_use]
pub fn local_io_hint(e: &io::Error, path: Option<&Path>) -> Option<String> {
    let dir = path.map(|p| {
        if p.is_dir() {
            p
        } else {
            p.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
        }
    });
    let place = dir.map_or_else(
        || "the folder named above".to_string(),
        |d| d.display().to_string(),
    );
    match e.raw_os_error()? {
        libc::ENOSPC | libc::EDQUOT => Some(format!(
            "the disk is full (or a quota is reached) under {place}: free space there (prune old backups, or point TMPDIR/BACKUP_DIR at a bigger disk) and retry"
        )),
        libc::EACCES | libc::EPERM => {
            // SAFETY: geteuid has no preconditions.
            let uid = unsafe { libc::geteuid() };
            let check = dir.map_or_else(String::new, |d| format!(" (ls -ld {})", d.display()));
            Some(format!(
                "the user running aos-backup (uid {uid}) is not allowed to write to (or read) {place}: check the folder's owner and permissions{check}; this is not about the database"
            ))
        }
        libc::EROFS => Some(format!(
            "{place} is on a read-only filesystem: use a writable folder"
        )),
        _ => None,
    }
}

/// A failure on one of our own files or folders: exit 1 (it says nothing about the backup's
/// content), the path in the message, and a hint about the disk or the path when one fits.
#[must_use]
pub fn local_io_error(doing: &str, path: &Path, e: &io::Error) -> crate::error::Error {
    let err = crate::error::Error::new(
        crate::error::Kind::Failure,
        format!("{doing} {}: {e}", path.display()),
    );
    match local_io_hint(e, Some(path)) {
        Some(h) => err.hint(h),
        None => err,
    }
}

/// Takes group and other access away from `path` (`0600` for a file, `0700` for a folder) if
/// it has any: the check behind [`private_umask`], for files a child created.
pub fn make_private(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 || meta.file_type().is_symlink() {
        return Ok(());
    }
    let private = if meta.is_dir() { 0o700 } else { 0o600 };
    tracing::debug!(
        "{} had mode {mode:04o}; making it {private:04o}",
        path.display()
    );
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(private))
}

/// Makes a child create its files for its owner only (umask 077), so what pg_dump writes
/// (a directory archive's files) is private like everything else we write.
pub fn private_umask(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: umask is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o077);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_atomic_replaces_with_its_mode_and_clears_a_killed_writers_temp_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "old").unwrap();
        // What a writer killed between create and rename leaves.
        std::fs::write(dir.path().join(".state.json.tmp"), "half").unwrap();
        replace_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"], "no temp file is left");
        replace_atomic(&path, b"public", 0o644).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn rename_noreplace_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, "new").unwrap();
        std::fs::write(&b, "old").unwrap();
        let err = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "old");
        assert!(a.exists());
    }

    #[test]
    fn private_files_are_owner_only_and_exclusive() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        create_private(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(create_private(&p).is_err());
    }

    #[test]
    fn a_child_with_the_private_umask_creates_private_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "mkdir d && echo x > d/f"])
            .current_dir(dir.path());
        private_umask(&mut cmd);
        assert!(cmd.status().unwrap().success());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("d")), 0o700);
        assert_eq!(mode(&dir.path().join("d/f")), 0o600);
    }

    #[test]
    fn a_secret_file_others_can_access_is_refused_naming_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        std::fs::write(&p, "x").unwrap();
        for (mode, ok) in [
            (0o600, true),
            (0o400, true),
            (0o644, false),
            (0o610, false),
            (0o602, false),
        ] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let r = check_secret_file(&p, "passphrase file");
            assert_eq!(r.is_ok(), ok, "{mode:o}");
            if let Err(e) = r {
                assert_eq!(e.kind, crate::error::Kind::Usage);
                assert!(e.message.contains(&format!("{mode:04o}")), "{}", e.message);
                assert!(e.hint.unwrap().contains("chmod 600"));
            }
        }
        // A missing file is left to the reader, which names it.
        assert!(check_secret_file(&dir.path().join("missing"), "x").is_ok());
    }

    #[test]
    fn write_new_atomic_leaves_no_partial_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        write_new_atomic(&p, b"one").unwrap();
        assert!(write_new_atomic(&p, b"two").is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        assert!(!partial_path(&p).exists());
        // Someone else's temp file is neither overwritten nor removed.
        let q = dir.path().join("q.json");
        std::fs::write(partial_path(&q), "theirs").unwrap();
        assert!(write_new_atomic(&q, b"mine").is_err());
        assert_eq!(std::fs::read(partial_path(&q)).unwrap(), b"theirs");
    }
}
