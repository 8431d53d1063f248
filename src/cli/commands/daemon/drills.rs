//! The daemon's drill job: at each slot of the drill schedule (`BACKUP_DRILL_SCHEDULE`) it drills
//! the newest backup as `aos-backup drill latest` does (a scratch database beside DATABASE_URL's,
//! or an ephemeral cluster); without DATABASE_URL, the newest backup of each database of the
//! config file's list (in its subfolder, its scratch database beside that database). It records
//! each result next to its backup and logs the RTO, the RPO and the outcome. A failed drill is
//! logged and the daemon goes on; a signal cancels it (its scratch database is dropped), then
//! stops the daemon.

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
    let metrics = crate::cli::metrics::Pending::scheduled_drill(&run_ctx, drilled(&run_ctx));
    let work = drill_each(&run_ctx);
    tokio::pin!(work);
    let sig = tokio::select! {
        results = &mut work => {
            let words: Vec<&'static str> = results
                .into_iter()
                .map(|(database, result)| {
                    // Without DATABASE_URL or a list, the backup's own database.
                    let named = database
                        .clone()
                        .or_else(|| result.as_ref().ok().map(|r| r.backup.database.clone()));
                    if let Some(db) = &named {
                        let passed = matches!(&result, Ok(r) if r.error().is_none());
                        run_ctx.record.drill(db, passed);
                    }
                    log(slot, database.as_deref(), result)
                })
                .collect();
            let word = worst(&words);
            if let Some(m) = metrics {
                m.finish(word == "passed");
            }
            return Ended::Finished(word);
        }
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
    // A slot cut short is a failed one, as a scheduled backup cut short is.
    if let Some(m) = metrics {
        m.finish(false);
    }
    Ended::Cancelled(run_ctx.op.interrupted_error(sig))
}

/// The word for the state file of a slot whose drills ended with `words`: `passed` when each
/// passed, else the first other word.
fn worst(words: &[&'static str]) -> &'static str {
    words
        .iter()
        .copied()
        .find(|w| *w != "passed")
        .unwrap_or("passed")
}

/// Whether a slot drills each database of the config file's list (there is one, and no
/// DATABASE_URL), as the daemon's backups cover them.
fn each_configured(ctx: &Ctx) -> bool {
    ctx.settings.database_url.is_none() && !ctx.settings.databases.is_empty()
}

/// The databases a slot drills, by the names the metrics file records them under: DATABASE_URL's,
/// else the config file's list.
fn drilled(ctx: &Ctx) -> Vec<String> {
    if !each_configured(ctx) {
        return ctx.target_database().into_iter().collect();
    }
    ctx.settings
        .databases
        .iter()
        .map(|e| e.name.clone())
        .collect()
}

/// The drills of one slot, each with the database it is for (when known), one after the other;
/// a signal stops them.
async fn drill_each(ctx: &Ctx) -> Vec<(Option<String>, anyhow::Result<DrillReport>)> {
    if !each_configured(ctx) {
        let live = match ctx.settings.database_url {
            Some(_) => ctx.conninfo().map(Some),
            None => Ok(None),
        };
        let result = match live {
            Ok(live) => drill_latest(ctx, ctx.ops(), live).await,
            Err(e) => Err(e),
        };
        return vec![(ctx.target_database(), result)];
    }
    let mut results = Vec::new();
    for entry in &ctx.settings.databases {
        if ctx.op.cancelled().is_some() {
            break;
        }
        let result = match configured(ctx, entry) {
            Ok((ops, live)) => drill_latest(ctx, ops, Some(live)).await,
            Err(e) => Err(e),
        };
        results.push((Some(entry.name.clone()), result));
    }
    results
}

/// The operation context of a configured database (its subfolder) and its connection.
fn configured(
    ctx: &Ctx,
    entry: &crate::config::DatabaseEntry,
) -> anyhow::Result<(crate::ops::Context, crate::pg::conninfo::ConnInfo)> {
    let live = ctx.database_conninfo(entry)?;
    let folder = crate::archive::naming::database_folder(&entry.name).ok_or_else(|| {
        Error::usage(format!(
            "database {:?} of the config file has no backup folder name",
            entry.name
        ))
    })?;
    let ops = ctx.ops();
    let ops = crate::ops::Context {
        dir: ops.dir.join(folder),
        ..ops
    };
    Ok((ops, live))
}

/// The drill of the newest backup in `ops`'s folder, scratch beside `live`, with the settings'
/// keys.
async fn drill_latest(
    ctx: &Ctx,
    ops: crate::ops::Context,
    live: Option<crate::pg::conninfo::ConnInfo>,
) -> anyhow::Result<DrillReport> {
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
    let plan = drill::plan(&ops, &options).await?;
    let result = drill::execute(&ops, plan).await;
    ops.op.cleanup_temps();
    crate::cli::notify::drill_ended(ctx, &result).await;
    result
}

/// Logs how the drill of `slot` (of `database`, when known) ended; returns the word for the
/// state file.
fn log(
    slot: DateTime<Utc>,
    database: Option<&str>,
    result: anyhow::Result<DrillReport>,
) -> &'static str {
    let slot_text = slot.to_rfc3339();
    let of = database
        .map(|d| format!(" of {:?}", crate::runtime::redact::sanitize(d)))
        .unwrap_or_default();
    let database = database.unwrap_or_default();
    match result {
        Ok(report) => match report.error() {
            None => {
                tracing::info!(
                    job = "drill",
                    slot = %slot_text,
                    database,
                    outcome = "passed",
                    backup = %report.backup.id,
                    rto_ms = report.rto_ms,
                    backup_age_seconds = report.rpo.backup_age_seconds,
                    largest_gap_seconds = report.rpo.largest_gap.as_ref().map(|g| g.seconds),
                    "scheduled drill{of} passed: backup {} restored in {} ms (RTO)",
                    report.backup.id,
                    report.rto_ms.unwrap_or(0)
                );
                "passed"
            }
            Some(e) => {
                tracing::error!(
                    job = "drill",
                    slot = %slot_text,
                    database,
                    outcome = report.outcome.as_str(),
                    backup = %report.backup.id,
                    exit_code = e.kind.exit_code().code(),
                    "scheduled drill{of} failed: {}: {}; the daemon goes on",
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
                database,
                outcome = "failed",
                exit_code = e.kind.exit_code().code(),
                hint = e.hint.as_deref().unwrap_or(""),
                "scheduled drill{of} could not run: {}; the daemon goes on",
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
