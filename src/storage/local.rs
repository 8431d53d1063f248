//! The backup folder on a local (or mounted) file system as a [`Storage`]: private files, renames
//! that never replace, fsync of files and of the folder, and the `flock` folder lock. The
//! helpers that return paths live here only, for the callers that still work with paths.

use super::{check_name, lock, Kind, Listed, Lock, Partial, Storage};
use crate::runtime::fsutil;
use chrono::{DateTime, Utc};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// A folder on a local file system that holds backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFolder {
    dir: PathBuf,
}

impl LocalFolder {
    /// The folder at `dir` (it need not exist yet: it then lists as empty).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalFolder { dir: dir.into() }
    }

    /// The folder's path.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The local path of `name`.
    #[must_use]
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The local path of `name`'s temporary object (`<name>.partial`).
    #[must_use]
    pub fn partial_path(&self, name: &str) -> PathBuf {
        self.dir.join(super::partial_name(name))
    }

    /// The local path of `name`, once the name is known to stay inside the folder.
    fn checked(&self, name: &str) -> io::Result<PathBuf> {
        check_name(name)?;
        Ok(self.path(name))
    }
}

/// What a listing says of `path`: the kind, size and time of what the name leads to (a link is
/// followed); a name that cannot be inspected is listed with nothing known.
fn listed(name: String, path: &Path) -> Listed {
    match std::fs::metadata(path) {
        Ok(md) => Listed {
            name,
            kind: if md.is_dir() {
                Kind::Dir
            } else if md.is_file() {
                Kind::File
            } else {
                Kind::Other
            },
            size: md.len(),
            modified: md.modified().ok().map(DateTime::<Utc>::from),
        },
        Err(_) => Listed {
            name,
            kind: Kind::Other,
            size: 0,
            modified: None,
        },
    }
}

/// A temp file being written in the folder; removed when given up (dropped unfinished).
struct LocalPartial {
    file: File,
    path: PathBuf,
    finished: bool,
}

impl Drop for LocalPartial {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Write for LocalPartial {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Partial for LocalPartial {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.file.sync_all()?;
        self.finished = true;
        Ok(())
    }
}

impl Storage for LocalFolder {
    fn root_location(&self) -> String {
        self.dir.display().to_string()
    }

    fn location(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn list(&self) -> io::Result<Vec<Listed>> {
        let read = match std::fs::read_dir(&self.dir) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut all = Vec::new();
        for item in read {
            let item = item?;
            if let Ok(name) = item.file_name().into_string() {
                all.push(listed(name, &item.path()));
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    fn open(&self, name: &str) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(File::open(self.checked(name)?)?))
    }

    fn read_small(&self, name: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.checked(name)?)
    }

    fn create_partial(&self, name: &str) -> io::Result<Box<dyn Partial>> {
        check_name(name)?;
        let path = self.partial_path(name);
        if name.contains('/') {
            if let Some(parent) = path.parent() {
                fsutil::create_private_dir_all(parent)?;
            }
        }
        let file = fsutil::create_private(&path)?;
        Ok(Box::new(LocalPartial {
            file,
            path,
            finished: false,
        }))
    }

    fn publish(&self, partial: &str, name: &str) -> io::Result<()> {
        fsutil::rename_noreplace(&self.checked(partial)?, &self.checked(name)?)?;
        fsutil::sync_dir(&self.dir)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fsutil::remove_any(&self.checked(name)?)
    }

    fn free_space(&self) -> io::Result<Option<u64>> {
        fsutil::free_space(&self.dir).map(Some)
    }

    fn lock(&self, what: &str) -> anyhow::Result<Lock> {
        lock::acquire(&self.dir, what).map(Lock::new)
    }

    fn lock_for_reading(&self, what: &str) -> anyhow::Result<Option<Lock>> {
        Ok(lock::acquire_for_reading(&self.dir, what)?.map(Lock::new))
    }

    fn as_local(&self) -> Option<&LocalFolder> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::partial_name;

    fn names(folder: &LocalFolder) -> Vec<String> {
        folder.list().unwrap().into_iter().map(|l| l.name).collect()
    }

    fn write_partial(folder: &LocalFolder, name: &str, bytes: &[u8]) {
        let mut w = folder.create_partial(name).unwrap();
        w.write_all(bytes).unwrap();
        w.finish().unwrap();
    }

    #[test]
    fn publish_never_replaces_an_existing_name() {
        let dir = tempfile::tempdir().unwrap();
        let folder = LocalFolder::new(dir.path());
        std::fs::write(folder.path("a.dump"), "old").unwrap();
        write_partial(&folder, "a.dump", b"new");
        let err = folder
            .publish(&partial_name("a.dump"), "a.dump")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(folder.read_small("a.dump").unwrap(), b"old");
        assert_eq!(folder.read_small("a.dump.partial").unwrap(), b"new");
        // Under a free name, it is published.
        folder.publish("a.dump.partial", "b.dump").unwrap();
        assert_eq!(names(&folder), ["a.dump", "b.dump"]);
    }

    #[test]
    fn a_temp_is_invisible_under_its_final_name_until_published() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let folder = LocalFolder::new(dir.path());
        write_partial(&folder, "x.dump.zst", b"abc");
        assert_eq!(names(&folder), ["x.dump.zst.partial"]);
        let mode = std::fs::metadata(folder.partial_path("x.dump.zst"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            folder.create_partial("x.dump.zst").is_err(),
            "a temp is never written over"
        );
        folder.publish("x.dump.zst.partial", "x.dump.zst").unwrap();
        let listed = folder.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "x.dump.zst");
        assert_eq!((listed[0].kind, listed[0].size), (Kind::File, 3));
        assert!(listed[0].modified.is_some());
        let mut text = String::new();
        folder
            .open("x.dump.zst")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "abc");
    }

    #[test]
    fn remove_takes_a_whole_folder_and_a_missing_name_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let folder = LocalFolder::new(dir.path());
        std::fs::create_dir_all(folder.path("a.dir/sub")).unwrap();
        std::fs::write(folder.path("a.dir/toc.dat"), "t").unwrap();
        std::fs::write(folder.path("a.dir/sub/1.dat"), "1").unwrap();
        std::fs::write(folder.path("keep"), "k").unwrap();
        assert_eq!(folder.list().unwrap()[0].kind, Kind::Dir);
        assert_eq!(folder.read_small("a.dir/toc.dat").unwrap(), b"t");
        folder.remove("a.dir").unwrap();
        assert_eq!(names(&folder), ["keep"]);
        folder.remove("a.dir").unwrap();
    }

    #[test]
    fn a_missing_folder_lists_empty_and_names_cannot_leave_it() {
        let dir = tempfile::tempdir().unwrap();
        let folder = LocalFolder::new(dir.path().join("inner"));
        assert!(folder.list().unwrap().is_empty());
        std::fs::write(dir.path().join("outside"), "x").unwrap();
        for name in ["../outside", "/etc/hostname", ""] {
            assert!(folder.read_small(name).is_err(), "{name}");
            assert!(folder.remove(name).is_err(), "{name}");
        }
        assert!(dir.path().join("outside").exists());
    }

    #[test]
    fn the_writer_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let folder = LocalFolder::new(dir.path());
        let held = folder.lock("backup").unwrap();
        assert!(folder.lock("prune").is_err());
        drop(held);
        assert!(folder.lock("prune").is_ok());
    }
}
