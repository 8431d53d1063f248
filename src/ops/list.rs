//! List: what the backup folder holds (or one database's part of it), newest first, with each
//! entry's status and what makes it doubtful (dated in the future, a time that disagrees with
//! its name, a sharp shrink), as a typed report.

use super::Context;
use crate::archive::drill::Summary as DrillSummary;
use crate::archive::format::{Algorithm, DumpFormat, EncryptionKind};
use crate::archive::meta::{GlobalsFile, Recorded, Suspect};
use crate::archive::swaps::SwapRecord;
use crate::catalog::{self, Entry, Status};
use anyhow::Result;
use chrono::{DateTime, Utc};
use std::path::PathBuf;

/// Which entries to list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Only the backups of this database (files without metadata belong to none, so a filter
    /// leaves them out); `None`: everything in the folder.
    pub database: Option<String>,
}

/// One thing in the backup folder.
#[derive(Debug, Clone)]
pub struct ListEntry {
    /// The id (from metadata, else from our file name).
    pub id: Option<String>,
    /// The file name in the folder.
    pub file: String,
    /// Its full path in the backup folder.
    pub path: PathBuf,
    /// When it was made: the metadata's start time, else the file's modification time.
    pub time: DateTime<Utc>,
    /// Bytes on disk: the metadata's size for a complete backup, else the file's (0 for an
    /// orphaned sidecar).
    pub size: u64,
    /// Complete, unmanaged, incomplete or orphaned metadata.
    pub status: Status,
    /// The backup's `--name` label; `None` without one or without readable metadata.
    pub label: Option<String>,
    /// The database it holds; `None` without readable metadata (the same for the fields below).
    pub database: Option<String>,
    /// The host it was taken from, as its metadata records it.
    pub host: Option<String>,
    /// pg_dump's format, as its metadata records it.
    pub format: Option<Recorded<DumpFormat>>,
    /// The compression, as its metadata records it.
    pub compression: Option<Recorded<Algorithm>>,
    /// The encryption, as its metadata records it.
    pub encryption: Option<Recorded<EncryptionKind>>,
    /// Dated after "now" (clock skew, or a file from another host).
    pub future: bool,
    /// For a complete backup whose sidecar's time disagrees with its name: the time its name says.
    pub name_time: Option<DateTime<Utc>>,
    /// Why the backup is suspect (it shrank sharply against the one before it).
    pub suspect: Option<Suspect>,
    /// The roles and tablespaces stored with it (`backup --globals`), as its metadata records them.
    pub globals: Option<GlobalsFile>,
    /// Its last drill (`aos-backup drill`): when, and how it ended.
    pub drill: Option<DrillSummary>,
    /// The swaps it was restored by (`restore --swap`), oldest first, with the old databases
    /// they kept.
    pub swaps: Vec<SwapRecord>,
}

impl ListEntry {
    /// The old databases its swaps kept (not dropped at the swap), as the swaps recorded them.
    pub fn kept_databases(&self) -> impl Iterator<Item = &SwapRecord> {
        self.swaps.iter().filter(|s| !s.old_dropped)
    }
}

impl ListEntry {
    /// The id, else the file name: how the entry is named to a person.
    #[must_use]
    pub fn name(&self) -> &str {
        self.id.as_deref().unwrap_or(&self.file)
    }
}

/// What [`list`] found.
#[derive(Debug, Clone)]
pub struct ListReport {
    /// The backup folder.
    pub dir: PathBuf,
    /// "Now", which ages and the future flag are measured against.
    pub now: DateTime<Utc>,
    /// The database filter that was applied.
    pub database: Option<String>,
    /// Every database with backups in the folder, filter or not.
    pub databases: Vec<String>,
    /// The entries, newest first.
    pub entries: Vec<ListEntry>,
}

impl ListReport {
    /// How many entries are leftovers of interrupted runs.
    #[must_use]
    pub fn incomplete(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.status == Status::Incomplete)
            .count()
    }
}

/// Lists the backup folder.
pub fn list(ctx: &Context, options: &ListOptions) -> Result<ListReport> {
    let folder = crate::storage::LocalFolder::new(&ctx.dir);
    list_in(&folder, ctx.dir.clone(), ctx.now, options)
}

/// Lists the backups in `storage` (an off-site destination: from its own listing and
/// sidecars), shown as `dir`.
pub fn list_in(
    storage: &dyn crate::storage::Storage,
    dir: std::path::PathBuf,
    now: DateTime<Utc>,
    options: &ListOptions,
) -> Result<ListReport> {
    let mut entries = catalog::scan_in(storage)?;
    let databases = catalog::databases(&entries);
    if let Some(db) = &options.database {
        entries.retain(|e| e.database() == Some(db.as_str()));
    }
    Ok(ListReport {
        dir,
        now,
        database: options.database.clone(),
        databases,
        entries: entries.iter().map(|e| list_entry(e, now)).collect(),
    })
}

/// One folder's part of [`list_all`].
#[derive(Debug, Clone)]
pub struct FolderListing {
    /// The database subfolder's name; `None` for the backup folder itself.
    pub folder: Option<String>,
    /// What it holds.
    pub report: ListReport,
}

/// Lists the backup folder, then each of its database subfolders (the folders named by
/// [`database_folder`](crate::check::naming::database_folder), in name order; links are not
/// followed).
pub fn list_all(ctx: &Context, options: &ListOptions) -> Result<Vec<FolderListing>> {
    let mut out = vec![FolderListing {
        folder: None,
        report: list(ctx, options)?,
    }];
    for folder in catalog::database_folders(&ctx.dir)? {
        let sub = Context {
            dir: ctx.dir.join(&folder),
            ..ctx.clone()
        };
        out.push(FolderListing {
            folder: Some(folder),
            report: list(&sub, options)?,
        });
    }
    Ok(out)
}

fn list_entry(e: &Entry, now: DateTime<Utc>) -> ListEntry {
    let meta = e.meta.as_ref();
    ListEntry {
        id: e.id.clone(),
        file: e.name.clone(),
        path: e.path.clone(),
        time: e.time,
        size: e.size,
        status: e.status,
        label: meta.and_then(|m| m.label.clone()),
        database: meta.map(|m| m.database.clone()),
        host: meta.map(|m| m.host.clone()),
        format: meta.map(|m| m.format.clone()),
        compression: meta.map(|m| m.compression.clone()),
        encryption: meta.map(|m| m.encryption.clone()),
        future: e.is_future(now),
        name_time: e.time_mismatch(),
        suspect: meta.and_then(|m| m.suspect.clone()),
        globals: meta.and_then(|m| m.globals.clone()),
        drill: (e.status == Status::Complete)
            .then(|| crate::archive::drill::read_summary(&e.path))
            .flatten(),
        swaps: if e.status == Status::Complete {
            crate::archive::swaps::read(&e.path)
        } else {
            Vec::new()
        },
    }
}
