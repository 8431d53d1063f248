//! The daemon's drill job: at each slot of the drill schedule (`BACKUP_DRILL_SCHEDULE`) it drills
//! the newest backup as `aos-backup drill latest` does (a scratch database beside DATABASE_URL's,
//! or an ephemeral cluster), records the result next to the backup, and logs the RTO, the RPO and
//! the outcome. A failed drill is logged and the daemon goes on; a signal cancels it (its scratch
//! database is dropped), then stops the daemon.

use super::{shown, signal_name, Ctx, UNWIND};
use crate::cli::Signals;
use crate::error::Error;
use crate::ops::drill::{self, DrillOptions, DrillReport, ScratchChoice};
use crate::runtime::context::OpContext;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// How a scheduled drill ended.
pub(super) enum Ended {
    /// It ran (passed or failed) or could not run; the word for the state file.
    Finished(&'static str),
    /// A signal cancelled it: the error to exit with.
    Cancelled(Error),
}

/// Runs the drill of `slot` in a fresh operation, watching for signals, and logs its outcome.
pub(super) async fn run(
    ctx: &Ctx,
    now: DateTime<Utc>,
    slot: DateTime<Utc>,
    signals: &mut Signals,
) -> Ended {
    let op = OpContext::new(std::sync::Arc::new(crate::runtime::progress::Silent));
    let run_ctx = ctx.for_run(op, now);
    let work = drill_latest(&run_ctx);
    tokio::pin!(work);
    let sig = tokio::select! {
        result = &mut work => return Ended::Finished(log(slot, result)),
        sig = signals.next() => sig,
    };
    tracing::warn!(
        "{}: cancelling the drill in progress (its scratch database is dropped), then stopping",
        signal_name(sig)
    );
    run_ctx.op.cancel(sig);
    tokio::select! {
        _ = tokio::time::timeout(UNWIND, &mut work) => {}
        _ = signals.next() => {}
    }
    run_ctx.op.cleanup_temps();
    Ended::Cancelled(run_ctx.op.interrupted_error(sig))
}

/// The drill of the newest backup, with the settings' connection and keys.
async fn drill_latest(ctx: &Ctx) -> anyhow::Result<DrillReport> {
    let live = match ctx.settings.database_url {
        Some(_) => Some(ctx.conninfo()?),
        None => None,
    };
    let options = DrillOptions {
        backup: "latest".into(),
        database: None,
        live,
        scratch: ScratchChoice::Auto,
        check_sql: None,
        deep: false,
        keys: crate::archive::crypto::KeySource {
            identity_file: ctx.settings.encryption.identity_file.clone(),
            passphrase_file: ctx.settings.encryption.passphrase_file.clone(),
        },
    };
    let ops = ctx.ops();
    let plan = drill::plan(&ops, &options).await?;
    let result = drill::execute(&ops, plan).await;
    ops.op.cleanup_temps();
    crate::cli::notify::drill_ended(ctx, &result).await;
    result
}

/// Logs how the drill of `slot` ended; returns the word for the state file.
fn log(slot: DateTime<Utc>, result: anyhow::Result<DrillReport>) -> &'static str {
    let slot_text = slot.to_rfc3339();
    match result {
        Ok(report) => match report.error() {
            None => {
                tracing::info!(
                    job = "drill",
                    slot = %slot_text,
                    outcome = "passed",
                    backup = %report.backup.id,
                    rto_ms = report.rto_ms,
                    backup_age_seconds = report.rpo.backup_age_seconds,
                    largest_gap_seconds = report.rpo.largest_gap.as_ref().map(|g| g.seconds),
                    "scheduled drill passed: backup {} restored in {} ms (RTO)",
                    report.backup.id,
                    report.rto_ms.unwrap_or(0)
                );
                "passed"
            }
            Some(e) => {
                tracing::error!(
                    job = "drill",
                    slot = %slot_text,
                    outcome = report.outcome.as_str(),
                    backup = %report.backup.id,
                    exit_code = e.kind.exit_code().code(),
                    "scheduled drill failed: {}: {}; the daemon goes on",
                    e.message,
                    report.mismatches().join("; ")
                );
                report.outcome.as_str()
            }
        },
        Err(e) => {
            let e = Error::from_anyhow(e);
            tracing::error!(
                job = "drill",
                slot = %slot_text,
                outcome = "failed",
                exit_code = e.kind.exit_code().code(),
                hint = e.hint.as_deref().unwrap_or(""),
                "scheduled drill could not run: {}; the daemon goes on",
                e.message
            );
            "failed"
        }
    }
}

/// Says at start when the next drill is.
pub(super) fn announce(schedule: &crate::config::Schedule, next: DateTime<Utc>, tz: Tz) {
    tracing::info!(
        next_drill = %next.to_rfc3339(),
        "restore drills of the newest backup on the schedule {schedule}; next at {}",
        shown(next, tz)
    );
}
