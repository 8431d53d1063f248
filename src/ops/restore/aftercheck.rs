//! The consistency checks after a restore: the restore did what was asked, so what they find is
//! a loud warning in the report, never a failure.

use crate::ops::Context;
use crate::pg::conninfo::ConnInfo;
use crate::pg::consistency::{self, ValidationReport};
use crate::runtime::restore_state::RestorePhase;

/// Runs the checks on the restored `database`; `None` (with a warning) when they cannot run.
pub(super) async fn validate(
    ctx: &Context,
    conn: &ConnInfo,
    database: &str,
) -> Option<ValidationReport> {
    ctx.op.restore().set_phase(RestorePhase::Finished);
    tracing::info!("validating the restored database {database:?}");
    let checked = async {
        let db = ctx.connect(conn).await?;
        consistency::validate(db.client(), &consistency::Options::default()).await
    }
    .await;
    match checked {
        Ok(report) => {
            warn_findings(&report);
            Some(report)
        }
        Err(e) => {
            tracing::warn!(
                "validate after the restore could not run: {e:#}; the restore itself is complete"
            );
            None
        }
    }
}

fn warn_findings(report: &ValidationReport) {
    for line in report.warnings() {
        tracing::warn!("validate after the restore: {line}");
    }
    if report.is_clean() {
        tracing::info!("the restored database passed validate's checks");
    } else {
        tracing::warn!(
            "the restore is complete, but database {:?} has consistency problems ({}); they came with the backup: run `aos-backup validate` for the details",
            report.database,
            report.headline()
        );
    }
}
