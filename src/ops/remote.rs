//! A destination's own catalog: what `list --remote` shows (read from its listing and
//! sidecars, no local state) and `verify --remote` (each backup read back through the same
//! checks as a local one, in a private temporary folder removed afterwards).

use super::verify::{self, BackupResult, Selection, VerifyOptions, VerifyReport};
use super::Context;
use crate::archive::crypto::KeySource;
use crate::catalog::{self, Entry, Status};
use crate::error::Error;
use crate::runtime::owner;
use crate::storage::{transfer, LocalFolder, Storage};
use anyhow::Result;

/// The complete backups at `remote` (of `database` when given), newest first.
///
/// # Errors
/// The destination could not be listed.
pub fn catalog(remote: &dyn Storage, database: Option<&str>) -> Result<Vec<Entry>> {
    let mut entries = catalog::scan_in(remote)?;
    if let Some(db) = database {
        entries.retain(|e| e.database() == Some(db));
    }
    Ok(entries)
}

/// Verifies every complete backup at `remote` (of `database` when given): each is copied into
/// a private temporary folder, every object checked against the sidecar on the way (size and
/// SHA-256), then read through as `verify` does locally. The copy holds the bytes as stored
/// (encrypted when the backup is) and is removed after each backup.
///
/// # Errors
/// The destination could not be listed, or holds no backup.
pub async fn verify(
    ctx: &Context,
    remote: &dyn Storage,
    database: Option<&str>,
    keys: &KeySource,
) -> Result<VerifyReport> {
    let entries: Vec<Entry> = catalog(remote, database)?
        .into_iter()
        .filter(|e| matches!(e.status, Status::Complete | Status::Orphaned))
        .collect();
    if entries.is_empty() {
        return Err(Error::usage(format!(
            "no backups to verify at {}",
            remote.root_location()
        ))
        .into());
    }
    let mut results = Vec::new();
    for entry in &entries {
        results.push(verify_one(ctx, remote, entry, keys).await?);
    }
    Ok(VerifyReport { results })
}

async fn verify_one(
    ctx: &Context,
    remote: &dyn Storage,
    entry: &Entry,
    keys: &KeySource,
) -> Result<BackupResult> {
    let temp = download_folder()?;
    ctx.op.register_temp(temp.path());
    let local = LocalFolder::new(temp.path());
    let stop = || ctx.op.cancelled().is_some();
    let fetched = match (&entry.meta, entry.status) {
        (Some(meta), Status::Complete) => {
            transfer::copy_backup(remote, &local, &entry.name, meta, &stop)
        }
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the sidecar is there, the backup it describes is gone",
        )),
    };
    let result = match fetched {
        Err(e) => BackupResult {
            id: entry.id.clone(),
            database: entry.database().map(str::to_string),
            path: entry.path.clone(),
            ok: false,
            checks: Vec::new(),
            error: Some(format!("{}: {e}", remote.location(&entry.name))),
            key_error: false,
        },
        Ok(_) => {
            let sub = Context {
                dir: temp.path().to_path_buf(),
                ..ctx.clone()
            };
            let options = VerifyOptions {
                selection: Selection::All { database: None },
                keys: keys.clone(),
            };
            let plan = verify::plan(&sub, &options)?;
            let mut report = verify::execute(&sub, plan).await?;
            let mut one = report.results.remove(0);
            one.path = entry.path.clone();
            one.checks
                .insert(0, "downloaded and checked against the sidecar".into());
            one
        }
    };
    ctx.op.unregister_temp(temp.path());
    Ok(result)
}

/// A backup downloaded from a destination into a private temporary folder, removed when this
/// is dropped (and by the operation's cleanup on a signal). It holds the bytes as stored:
/// encrypted when the backup is.
#[derive(Debug)]
pub struct Fetched {
    /// The local copy of the backup (file or directory archive), its sidecar beside it.
    pub path: std::path::PathBuf,
    _temp: tempfile::TempDir,
}

/// Downloads the backup `wanted` (`latest`, an id, a prefix or a file name, among the backups of
/// `database` when given) from `remote`, every object checked against its sidecar on the way.
///
/// # Errors
/// No such backup there, or the download failed or differs from its sidecar (an integrity
/// error).
pub fn fetch(
    ctx: &Context,
    remote: &dyn Storage,
    wanted: &str,
    database: Option<&str>,
) -> Result<Fetched> {
    let entries = catalog::scan_in(remote)?;
    let scope = catalog::Scope {
        database,
        now: ctx.now,
    };
    let shown = std::path::PathBuf::from(remote.root_location());
    let entry = catalog::resolve(&entries, wanted, &shown, &scope)?;
    let meta = entry.meta.as_ref().ok_or_else(|| {
        Error::usage(format!(
            "{} has no sidecar: it is not a complete backup",
            entry.name
        ))
    })?;
    let temp = download_folder()?;
    ctx.op.register_temp(temp.path());
    let local = LocalFolder::new(temp.path());
    let stop = || ctx.op.cancelled().is_some();
    tracing::info!(
        "downloading {} into {}",
        remote.location(&entry.name),
        temp.path().display()
    );
    transfer::copy_backup(remote, &local, &entry.name, meta, &stop).map_err(|e| {
        if let Some(sig) = ctx.op.cancelled() {
            // A signal cut the download short: nothing is known of the copy at the destination.
            return ctx.op.interrupted_error(sig);
        }
        Error::integrity(format!("{}: {e}", remote.location(&entry.name)))
            .hint("the copy at this destination cannot be used; try another destination or the local backup")
    })?;
    Ok(Fetched {
        path: local.path(&entry.name),
        _temp: temp,
    })
}

/// A private temp folder for a download, naming this process as its owner; the folders of
/// downloads whose run was killed are removed first.
fn download_folder() -> std::io::Result<tempfile::TempDir> {
    const PREFIX: &str = "aos-backup-remote.";
    owner::sweep_temp(PREFIX, "the download of a remote backup");
    owner::owned_temp_dir(PREFIX)
}
