//! The backup folder as a catalog: the metadata sidecar written last (its presence marks a
//! backup complete), the scan that sorts files into complete, unmanaged and incomplete, and
//! resolving `latest` or an id to a backup.

use crate::error::Error;
use crate::naming::{self, META_SUFFIX, PARTIAL_SUFFIX};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The version of the metadata format.
pub const META_FORMAT_VERSION: u32 = 1;

/// One file of a directory archive, for verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// The sidecar `<backup>.meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub format_version: u32,
    pub id: String,
    pub label: Option<String>,
    /// The backup's file (or folder) name.
    pub file: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub database: String,
    pub host: String,
    pub port: Option<u16>,
    pub server_version: String,
    pub pg_dump_version: String,
    pub tool_version: String,
    /// custom, plain or directory.
    pub format: String,
    /// zstd, gzip, pg_dump or none.
    pub compression: String,
    pub compression_level: i32,
    /// none, age-recipients or age-passphrase.
    pub encryption: String,
    /// Bytes stored on disk (for a directory: the sum of its files).
    pub size_bytes: u64,
    /// Bytes pg_dump produced before compression and encryption (0 for a directory).
    pub dump_bytes: u64,
    /// SHA-256 of the stored bytes (for a directory: of its manifest lines).
    pub sha256: String,
    pub tables: u64,
    /// The files of a directory archive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
    /// For `age-recipients`: the recipients' short fingerprints (`crypto::fingerprint`), so a
    /// key error can say which identity the backup needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
}

impl Meta {
    /// The sidecar path for a backup at `path`.
    #[must_use]
    pub fn path_for(backup: &Path) -> PathBuf {
        let mut name = backup.file_name().unwrap_or_default().to_os_string();
        name.push(META_SUFFIX);
        backup.with_file_name(name)
    }

    /// Reads and parses a sidecar.
    pub fn read(path: &Path) -> Result<Meta> {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&text).map_err(|e| {
            Error::integrity(format!("metadata {} is unreadable: {e}", path.display()))
                .hint("the sidecar was damaged or edited; the backup cannot be verified")
                .into()
        })
    }

    /// Writes the sidecar atomically; it never replaces an existing one.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self).context("encoding metadata")?;
        json.push(b'\n');
        crate::fsutil::write_new_atomic(path, &json)
    }
}

/// What a catalog entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// A backup with its metadata: made by aos-backup and finished.
    Complete,
    /// A backup-looking file without metadata (copied in, or made by another tool).
    Unmanaged,
    /// A leftover of an interrupted run (`*.partial`).
    Incomplete,
    /// Metadata whose backup file is gone.
    #[serde(rename = "orphaned-metadata")]
    Orphaned,
}

impl Status {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Complete => "complete",
            Status::Unmanaged => "unmanaged",
            Status::Incomplete => "incomplete",
            Status::Orphaned => "orphaned-metadata",
        }
    }
}

/// One thing found in the backup folder.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub name: String,
    pub status: Status,
    /// The id (from metadata, else from our file name).
    pub id: Option<String>,
    /// When it was made: metadata start time, else the file's modification time.
    pub time: DateTime<Utc>,
    /// Size on disk (metadata for complete backups, else the file's size).
    pub size: u64,
    pub meta: Option<Meta>,
    /// Why the metadata could not be used, if it exists but is unreadable.
    pub meta_error: Option<String>,
}

fn mtime(md: &std::fs::Metadata) -> DateTime<Utc> {
    md.modified()
        .map_or_else(|_| DateTime::<Utc>::UNIX_EPOCH, DateTime::<Utc>::from)
}

/// Lists the backup folder. A missing folder is an empty catalog.
pub fn scan(dir: &Path) -> Result<Vec<Entry>> {
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e).with_context(|| format!("reading the backup folder {}", dir.display()))
        }
    };
    let mut names = std::collections::BTreeSet::new();
    for item in read {
        let item = item.with_context(|| format!("reading the backup folder {}", dir.display()))?;
        if let Ok(name) = item.file_name().into_string() {
            names.insert(name);
        }
    }
    let mut entries = Vec::new();
    for name in &names {
        let path = dir.join(name);
        if let Some(base) = name.strip_suffix(PARTIAL_SUFFIX) {
            // `x.partial` and `x.meta.json.partial` are leftovers of interrupted runs.
            if naming::looks_like_backup(base.trim_end_matches(META_SUFFIX))
                || base.ends_with(META_SUFFIX)
            {
                let md = std::fs::symlink_metadata(&path).ok();
                entries.push(Entry {
                    path,
                    name: name.clone(),
                    status: Status::Incomplete,
                    id: naming::id_of(base.trim_end_matches(META_SUFFIX)).map(str::to_string),
                    time: md.as_ref().map_or(DateTime::<Utc>::UNIX_EPOCH, mtime),
                    size: md.map_or(0, |m| m.len()),
                    meta: None,
                    meta_error: None,
                });
            }
            continue;
        }
        if let Some(base) = name.strip_suffix(META_SUFFIX) {
            if !names.contains(base) {
                let meta = Meta::read(&path).ok();
                entries.push(Entry {
                    path,
                    name: name.clone(),
                    status: Status::Orphaned,
                    id: meta.as_ref().map(|m| m.id.clone()),
                    time: meta
                        .as_ref()
                        .map_or(DateTime::<Utc>::UNIX_EPOCH, |m| m.started_at),
                    size: 0,
                    meta,
                    meta_error: None,
                });
            }
            continue;
        }
        if !naming::looks_like_backup(name) {
            continue;
        }
        let meta_path = dir.join(format!("{name}{META_SUFFIX}"));
        let (meta, meta_error) = if names.contains(&format!("{name}{META_SUFFIX}")) {
            match Meta::read(&meta_path) {
                Ok(m) => (Some(m), None),
                Err(e) => (None, Some(format!("{e:#}"))),
            }
        } else {
            (None, None)
        };
        let entry = match meta {
            Some(m) => Entry {
                path,
                name: name.clone(),
                status: Status::Complete,
                id: Some(m.id.clone()),
                time: m.started_at,
                size: m.size_bytes,
                meta: Some(m),
                meta_error: None,
            },
            None => {
                let md = std::fs::metadata(&path).ok();
                Entry {
                    path,
                    name: name.clone(),
                    // Unreadable metadata: the backup can't be trusted, but is never deleted.
                    status: Status::Unmanaged,
                    id: naming::id_of(name).map(str::to_string),
                    time: md.as_ref().map_or(DateTime::<Utc>::UNIX_EPOCH, mtime),
                    size: md.map_or(0, |m| m.len()),
                    meta: None,
                    meta_error,
                }
            }
        };
        entries.push(entry);
    }
    // Newest first; ties by name, descending.
    entries.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name)));
    Ok(entries)
}

/// Finds a backup by `latest`, an id, a unique id prefix, or a file name in the folder.
pub fn resolve<'a>(entries: &'a [Entry], wanted: &str, dir: &Path) -> Result<&'a Entry> {
    let usable = |e: &&Entry| matches!(e.status, Status::Complete | Status::Unmanaged);
    if wanted == "latest" {
        return entries
            .iter()
            .find(|e| e.status == Status::Complete)
            .ok_or_else(|| {
                Error::usage(format!("no complete backup in {}", dir.display()))
                    .hint("make one with `aos-backup backup`, or give a file path")
                    .into()
            });
    }
    if let Some(e) = entries
        .iter()
        .filter(usable)
        .find(|e| e.id.as_deref() == Some(wanted) || e.name == wanted)
    {
        return Ok(e);
    }
    let matches: Vec<&Entry> = entries
        .iter()
        .filter(usable)
        .filter(|e| e.id.as_deref().is_some_and(|id| id.starts_with(wanted)))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::usage(format!(
            "{wanted:?} is neither a file nor a backup id in {}",
            dir.display()
        ))
        .hint("see `aos-backup list` for ids, or give a path to a backup file")
        .into()),
        many => Err(Error::usage(format!(
            "{wanted:?} matches {} backups ({})",
            many.len(),
            many.iter()
                .filter_map(|e| e.id.clone())
                .take(5)
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .hint("give more of the id")
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn meta(id: &str, file: &str, secs: i64) -> Meta {
        let t = Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap();
        Meta {
            format_version: META_FORMAT_VERSION,
            id: id.into(),
            label: None,
            file: file.into(),
            started_at: t,
            finished_at: t,
            duration_ms: 0,
            database: "db".into(),
            host: "localhost".into(),
            port: Some(5432),
            server_version: "15.1".into(),
            pg_dump_version: "15.1".into(),
            tool_version: "0".into(),
            format: "custom".into(),
            compression: "zstd".into(),
            compression_level: 1,
            encryption: "none".into(),
            size_bytes: 3,
            dump_bytes: 3,
            sha256: String::new(),
            tables: 1,
            files: vec![],
            recipients: vec![],
        }
    }

    #[test]
    fn scan_sorts_files_into_statuses_and_resolves_ids() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (id, secs) in [("20240101-000000", 0), ("20240102-000000", 10)] {
            let name = format!("aos-backup-{id}.dump.zst");
            std::fs::write(d.join(&name), "abc").unwrap();
            meta(id, &name, secs)
                .write(&Meta::path_for(&d.join(&name)))
                .unwrap();
        }
        std::fs::write(d.join("backup_2024.sql.gz"), "x").unwrap();
        std::fs::write(d.join("aos-backup-20240103-000000.dump.zst.partial"), "x").unwrap();
        std::fs::write(
            d.join("aos-backup-20231231-000000.dump.meta.json"),
            serde_json::to_vec(&meta("20231231-000000", "gone", -5)).unwrap(),
        )
        .unwrap();
        std::fs::write(d.join("notes.txt"), "x").unwrap();
        let entries = scan(d).unwrap();
        let by = |s: Status| entries.iter().filter(|e| e.status == s).count();
        assert_eq!(by(Status::Complete), 2);
        assert_eq!(by(Status::Unmanaged), 1);
        assert_eq!(by(Status::Incomplete), 1);
        assert_eq!(by(Status::Orphaned), 1);
        assert_eq!(entries.len(), 5);
        assert_eq!(
            resolve(&entries, "latest", d).unwrap().id.as_deref(),
            Some("20240102-000000")
        );
        assert_eq!(
            resolve(&entries, "20240101", d).unwrap().id.as_deref(),
            Some("20240101-000000")
        );
        assert!(resolve(&entries, "2024010", d).is_err(), "ambiguous prefix");
        assert!(resolve(&entries, "nope", d).is_err());
    }

    #[test]
    fn json_status_is_the_text_status() {
        for s in [
            Status::Complete,
            Status::Unmanaged,
            Status::Incomplete,
            Status::Orphaned,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn missing_folder_is_empty() {
        assert!(scan(Path::new("/nonexistent/aos-backup-test"))
            .unwrap()
            .is_empty());
    }
}
