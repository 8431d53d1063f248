//! An in-memory [`Storage`] for tests: no paths anywhere, so code that works with it depends on
//! the seam alone, as an object store behind the same trait will need.

use super::{check_name, partial_name, Kind, Listed, Lock, Partial, Storage};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, PoisonError};

type Objects = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// Objects by name; `a/b` is the object `b` in the folder `a`.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    objects: Objects,
}

impl Memory {
    /// Stores `bytes` as `name`, replacing it (a test's setup).
    pub(crate) fn put(&self, name: &str, bytes: impl Into<Vec<u8>>) {
        self.objects().insert(name.to_string(), bytes.into());
    }

    /// The names held, folders' objects included.
    pub(crate) fn names(&self) -> Vec<String> {
        self.objects().keys().cloned().collect()
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, name: &str) -> io::Result<Vec<u8>> {
        check_name(name)?;
        self.objects()
            .get(name)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}

/// A temp object filled as it is written.
struct MemoryPartial {
    objects: Objects,
    name: String,
}

impl Write for MemoryPartial {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut objects = self.objects.lock().unwrap_or_else(PoisonError::into_inner);
        objects
            .entry(self.name.clone())
            .or_default()
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Partial for MemoryPartial {
    fn finish(self: Box<Self>) -> io::Result<()> {
        Ok(())
    }
}

impl Storage for Memory {
    fn root_location(&self) -> String {
        "mem:".to_string()
    }

    fn location(&self, name: &str) -> String {
        format!("mem:{name}")
    }

    fn list(&self) -> io::Result<Vec<Listed>> {
        let mut root: BTreeMap<String, Listed> = BTreeMap::new();
        for (name, bytes) in self.objects().iter() {
            let (top, kind) = match name.split_once('/') {
                Some((folder, _)) => (folder, Kind::Dir),
                None => (name.as_str(), Kind::File),
            };
            let item = root.entry(top.to_string()).or_insert(Listed {
                name: top.to_string(),
                kind,
                size: 0,
                modified: None,
            });
            item.size += bytes.len() as u64;
        }
        Ok(root.into_values().collect())
    }

    fn open(&self, name: &str) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(io::Cursor::new(self.get(name)?)))
    }

    fn read_small(&self, name: &str) -> io::Result<Vec<u8>> {
        self.get(name)
    }

    fn create_partial(&self, name: &str) -> io::Result<Box<dyn Partial>> {
        check_name(name)?;
        let name = partial_name(name);
        let mut objects = self.objects();
        if objects.contains_key(&name) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        objects.insert(name.clone(), Vec::new());
        Ok(Box::new(MemoryPartial {
            objects: Arc::clone(&self.objects),
            name,
        }))
    }

    fn publish(&self, partial: &str, name: &str) -> io::Result<()> {
        check_name(partial)?;
        check_name(name)?;
        let mut objects = self.objects();
        if objects.contains_key(name) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        let bytes = objects
            .remove(partial)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        objects.insert(name.to_string(), bytes);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        let inside = format!("{name}/");
        self.objects()
            .retain(|k, _| k != name && !k.starts_with(&inside));
        Ok(())
    }

    fn free_space(&self) -> io::Result<Option<u64>> {
        Ok(None)
    }

    fn lock(&self, _what: &str) -> anyhow::Result<Lock> {
        Ok(Lock::new("in-memory"))
    }

    fn lock_for_reading(&self, what: &str) -> anyhow::Result<Option<Lock>> {
        self.lock(what).map(Some)
    }
}
