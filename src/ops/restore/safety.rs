//! The safety backup: before a restore replaces a database that holds tables, the target is
//! backed up into the same folder, labelled [`SAFETY_LABEL`], under the restore's own folder
//! lock. If it cannot be made, the restore does not start.

use super::plan::Target;
use crate::error::{Error, Kind};
use crate::ops::backup::BackupOptions;
use crate::ops::Context;
use crate::pg::conninfo::ConnInfo;
use crate::storage::lock::FolderLock;
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;

pub use crate::archive::naming::SAFETY_LABEL;

/// The safety backup a restore took.
#[derive(Debug, Clone, Serialize)]
pub struct SafetyBackup {
    /// Its id (`YYYYMMDD-HHMMSS-pre-restore`): restoring it undoes the restore.
    pub id: String,
    /// Its file.
    pub path: PathBuf,
    /// The database it holds (the restore's target).
    pub database: String,
}

/// Backs the target up with `options` (relabelled, connected to the target, never pruning),
/// under `lock`, the restore's folder lock (none: the backup takes its own). A failure says that
/// the restore did not start; our own disk or permissions are never reported as a damaged
/// backup.
pub(super) async fn take(
    ctx: &Context,
    mut options: BackupOptions,
    conn: &ConnInfo,
    target: &Target,
    lock: Option<&FolderLock>,
) -> Result<SafetyBackup> {
    options.label = Some(SAFETY_LABEL.to_string());
    options.conn = conn.clone();
    options.prune = None;
    options.validate = false;
    tracing::info!(
        "taking a safety backup of database {:?} before it is replaced",
        target.database
    );
    let made = async {
        let plan = crate::ops::backup::plan(ctx, &options)?;
        crate::ops::backup::execute_under(ctx, plan, lock).await
    }
    .await;
    match made {
        Ok(report) => {
            tracing::info!(
                "safety backup {} taken: {}",
                report.meta.id,
                report.path.display()
            );
            Ok(SafetyBackup {
                id: report.meta.id,
                path: report.path,
                database: target.database.clone(),
            })
        }
        Err(e) => Err(failed(e, &target.database)),
    }
}

/// The error of a safety backup that failed: the restore did not start.
fn failed(e: anyhow::Error, database: &str) -> anyhow::Error {
    let summed = Error::from_anyhow(e);
    let kind = match summed.kind {
        // A new dump that came out incomplete is no damage to any backup there was.
        Kind::Integrity => Kind::Failure,
        kind => kind,
    };
    if matches!(kind, Kind::Interrupted | Kind::Terminated) {
        return summed.into();
    }
    let mut err = Error::new(
        kind,
        format!(
            "the safety backup of database {database:?} failed, so the restore did not start and {database:?} is unchanged: {}",
            summed.message
        ),
    );
    let skip = "or restore without a safety backup (--no-safety-backup)";
    err.hint = Some(match summed.hint {
        Some(h) => format!("{h}; {skip}"),
        None => format!("the backup folder must be writable and have room, {skip}"),
    });
    err.into()
}

/// Says, after a failed restore, which safety backup holds the target as it was (the error
/// itself stays what the restore says about the target).
pub(super) fn note_after_failure(safety: Option<&SafetyBackup>) {
    if let Some(s) = safety {
        tracing::warn!(
            "the safety backup {} holds database {:?} as it was before this restore",
            s.id,
            s.database
        );
    }
}
