//! The backup's row counts: a snapshot exported before pg_dump starts and handed to it, and the
//! tables counted on that same snapshot while pg_dump runs, so the sidecar records exactly the
//! rows the dump holds. Counting never fails the backup: without a snapshot, no counts.

use super::BackupPlan;
use crate::archive::meta::TableRows;
use crate::ops::Context;
use crate::pg::rowcount::{self, ExportedSnapshot};
use anyhow::Result;
use tokio::task::JoinHandle;

/// The counting that runs beside pg_dump, and the snapshot they share (kept open until the
/// dump ends, so pg_dump can import it whenever it starts).
pub(super) struct Counting {
    snapshot: ExportedSnapshot,
    task: JoinHandle<Result<Vec<TableRows>>>,
}

impl Counting {
    /// Exports a snapshot on a connection of our own and starts counting on it; `None` (with a
    /// warning) when the server cannot export one.
    pub(super) async fn start(
        ctx: &Context,
        plan: &BackupPlan,
        warnings: &mut Vec<String>,
    ) -> Option<Counting> {
        let exported = async { ExportedSnapshot::export(ctx.connect(&plan.conn).await?).await };
        let snapshot = match exported.await {
            Ok(s) => s,
            Err(e) => {
                super::finish::warn(warnings, format!("the backup records no row counts: {e:#}"));
                return None;
            }
        };
        let id = snapshot.id().to_string();
        let (ctx, conn) = (ctx.clone(), plan.conn.clone());
        let task = tokio::spawn(async move {
            let db = ctx.connect(&conn).await?;
            rowcount::count_rows_at(db.client(), &id).await
        });
        Some(Counting { snapshot, task })
    }

    /// The snapshot pg_dump is given (`--snapshot`).
    pub(super) fn snapshot_id(&self) -> String {
        self.snapshot.id().to_string()
    }

    /// The counts, once the dump is done; `None` (with a warning) when counting failed.
    pub(super) async fn finish(self, warnings: &mut Vec<String>) -> Option<Vec<TableRows>> {
        let counted = self.task.await;
        self.snapshot.release().await;
        match counted {
            Ok(Ok(rows)) => Some(rows),
            Ok(Err(e)) => {
                super::finish::warn(warnings, format!("the backup records no row counts: {e:#}"));
                None
            }
            Err(e) => {
                super::finish::warn(
                    warnings,
                    format!("the backup records no row counts: the counting task failed: {e}"),
                );
                None
            }
        }
    }

    /// Stops counting (the dump failed): its connection closes, and the server ends its query.
    pub(super) fn abandon(self) {
        self.task.abort();
    }
}

/// Whether pg_dump failed because it could not import the snapshot it was given.
pub(super) fn snapshot_refused(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("pg_dump") && text.contains("snapshot")
}
