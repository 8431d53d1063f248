//! The backup's row counts: a snapshot exported before pg_dump starts and handed to it, and the
//! tables counted on that same snapshot while pg_dump writes, so the sidecar records exactly the
//! rows the dump holds. Counting never fails the backup: without a snapshot, no counts.

use super::BackupPlan;
use crate::archive::meta::TableRows;
use crate::ops::Context;
use crate::pg::rowcount::{self, ExportedSnapshot};
use anyhow::Result;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often the counting looks whether pg_dump has written anything yet.
const WRITE_POLL: Duration = Duration::from_millis(10);

/// The counting that runs beside pg_dump, and the snapshot they share (kept open until the
/// dump ends, so pg_dump can import it whenever it starts).
pub(super) struct Counting {
    snapshot: ExportedSnapshot,
    task: JoinHandle<Result<Vec<TableRows>>>,
    /// Set when the dump is over: the counting starts then at the latest.
    dumped: Arc<AtomicBool>,
}

impl Counting {
    /// Exports a snapshot on a connection of our own, and counts on it once pg_dump has written
    /// something (`written` above 0: pg_dump writes only after it has locked every table, so
    /// the counts never queue for a lock ahead of it); `None` (with a warning) when the server
    /// cannot export a snapshot.
    pub(super) async fn start(
        ctx: &Context,
        plan: &BackupPlan,
        written: Arc<AtomicU64>,
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
        let dumped = Arc::new(AtomicBool::new(false));
        let over = dumped.clone();
        let task = tokio::spawn(async move {
            while written.load(Ordering::Relaxed) == 0 && !over.load(Ordering::SeqCst) {
                tokio::time::sleep(WRITE_POLL).await;
            }
            let db = ctx.connect(&conn).await?;
            rowcount::count_rows_at(db.client(), &id).await
        });
        Some(Counting {
            snapshot,
            task,
            dumped,
        })
    }

    /// The snapshot pg_dump is given (`--snapshot`).
    pub(super) fn snapshot_id(&self) -> String {
        self.snapshot.id().to_string()
    }

    /// The counts, once the dump is done; `None` (with a warning) when counting failed.
    pub(super) async fn finish(self, warnings: &mut Vec<String>) -> Option<Vec<TableRows>> {
        self.dumped.store(true, Ordering::SeqCst);
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

/// What the server answers when a snapshot cannot be imported (from `SET TRANSACTION SNAPSHOT`).
const REFUSED_SNAPSHOT: [&str; 4] = [
    "cannot import a snapshot from a different database",
    "invalid snapshot identifier",
    "could not import the requested snapshot",
    "does not exist",
];

/// Whether pg_dump failed because it could not import the snapshot it was given.
pub(super) fn snapshot_refused(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("snapshot") && REFUSED_SNAPSHOT.iter().any(|m| text.contains(m))
}
