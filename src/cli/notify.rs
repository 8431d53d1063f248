//! What the command line's operations tell people: the events of a backup run (made, failed,
//! suspect, pruned, with the healthchecks pings around it), of a restore and of a prune, built
//! from their reports and sent through [`crate::notify::Notifier`]. Sending never fails the
//! operation, nor changes its exit code.

use crate::cli::commands::Ctx;
use crate::cli::runs::Made;
use crate::error::Error;
use crate::notify::{Event, EventKind, Notifier};
use crate::ops::backup::{AutoPrune, BackupReport};
use anyhow::Result;
use std::time::Instant;

/// The notifier of `ctx`'s settings, its destinations' secrets registered with the operation
/// (so that no hook is handed them either).
#[must_use]
pub fn notifier(ctx: &Ctx) -> Notifier {
    for s in ctx.settings.notify.secrets() {
        ctx.op.secrets().register(s);
    }
    if let Some(token) = &ctx.settings.telegram.token {
        ctx.op.secrets().register(token);
    }
    warn_undeliverable(&ctx.settings.notify);
    Notifier::new(ctx.settings.notify.clone())
}

/// Warns when `BACKUP_DELIVER` names a destination kind that `BACKUP_NOTIFY` lacks.
fn warn_undeliverable(config: &crate::notify::Config) {
    let has = |kind: &str| config.destinations.iter().any(|d| d.kind() == kind);
    for (wanted, kind, scheme) in [
        (config.deliver_telegram, "telegram", "telegram://"),
        (config.deliver_email, "email", "smtp://"),
    ] {
        if wanted && !has(kind) {
            tracing::warn!("BACKUP_DELIVER asks for {kind}, but BACKUP_NOTIFY has no {scheme} destination: the backup is not delivered there");
        }
    }
}

/// Tells the healthchecks-style destinations that a backup run starts.
pub async fn backup_started(notifier: &Notifier) {
    notifier.ping_start().await;
}

/// Sends the events of a backup run that started at `started` and ended as `result`, then the
/// ping of its end.
pub async fn backup_ended(ctx: &Ctx, notifier: &Notifier, started: Instant, result: &Result<Made>) {
    if notifier.is_empty() {
        return;
    }
    let events = match result {
        Ok(Made::One(report)) => one_backup(report),
        Ok(Made::Many(many)) => many
            .results
            .iter()
            .flat_map(|r| match r.report() {
                Some(report) => one_backup(report),
                None => r.error().map_or_else(Vec::new, |message| {
                    let mut e = Event::new(EventKind::BackupFailed, Some(&r.name));
                    e.error = Some(message);
                    e.hint = r.hint().map(str::to_string);
                    e.exit_code = r.kind().map(|k| k.exit_code().code());
                    vec![e]
                }),
            })
            .collect(),
        Err(e) => {
            // A run a signal cut short says so, whatever its last step made of it.
            let failure = match ctx.op.cancelled() {
                Some(sig) => ctx.op.interrupted_error(sig),
                None => summed(e),
            };
            vec![Event::backup_failed(
                ctx.target_database().as_deref(),
                &failure,
            )]
        }
    };
    let destinations: Vec<String> = ctx
        .settings
        .remote
        .destinations
        .iter()
        .map(|d| d.url.clone())
        .collect();
    let events: Vec<Event> = events
        .into_iter()
        .map(|mut e| {
            if e.kind == EventKind::BackupSucceeded {
                e.destinations.clone_from(&destinations);
            }
            timed(e, started)
        })
        .collect();
    for event in &events {
        notifier.send(event).await;
    }
    let failed = events.iter().find(|e| e.kind == EventKind::BackupFailed);
    notifier.ping_end(failed).await;
}

/// A failure's start and duration (the run's), which no sidecar gives.
fn timed(mut event: Event, started: Instant) -> Event {
    if event.started_at.is_none() {
        let took = started.elapsed();
        event.started_at = chrono::Duration::from_std(took)
            .ok()
            .map(|d| event.finished_at - d);
        event.duration = Some(took);
    }
    event
}

/// The events of one database's backup: made (or failed in its prune), suspect, pruned.
fn one_backup(report: &BackupReport) -> Vec<Event> {
    let meta = &report.meta;
    let mut events = Vec::new();
    match &report.prune {
        AutoPrune::Failed(e) => {
            let mut failed = Event::backup_failed(Some(&meta.database), &summed(e))
                .with_backup(meta, &report.path);
            failed.error = failed.error.map(|m| {
                format!(
                    "the backup {} is complete and kept, but the prune after it failed: {m}",
                    meta.id
                )
            });
            events.push(failed);
        }
        AutoPrune::Done(p) => {
            events.push(Event::backup_succeeded(meta, &report.path));
            events.extend(pruned(p));
        }
        AutoPrune::Off | AutoPrune::Blocked(_) => {
            events.push(Event::backup_succeeded(meta, &report.path));
        }
    }
    if let Some(s) = &meta.suspect {
        events.push(
            Event::new(EventKind::SuspectBackup, Some(&meta.database))
                .with_backup(meta, &report.path)
                .detail(format!("{} (against {})", s.reason, s.previous_id)),
        );
    }
    events
}

/// One event per database whose backups a prune deleted, naming them.
#[must_use]
pub fn pruned(report: &crate::ops::prune::Report) -> Vec<Event> {
    if report.dry_run {
        return Vec::new();
    }
    report
        .outcomes
        .iter()
        .filter(|o| o.deleted > 0)
        .map(|o| {
            let mut e = Event::new(EventKind::PruneDeleted, Some(&o.database))
                .detail(format!("Deleted: {}", o.deleted));
            for p in o.planned.iter().filter(|p| !p.decision.keep) {
                e = e.detail(format!("- {}", p.id.as_deref().unwrap_or(&p.file)));
            }
            e
        })
        .collect()
}

/// Sends what a prune deleted.
pub async fn prune_ended(ctx: &Ctx, report: &crate::ops::prune::Report) {
    let notifier = notifier(ctx);
    for event in pruned(report) {
        notifier.send(&event).await;
    }
}

/// Whether `result` is a refusal before anything was done (bad usage, a guard): not worth a
/// notification.
pub fn nothing_was_done<T>(result: &Result<T>) -> bool {
    result
        .as_ref()
        .err()
        .and_then(crate::error::find)
        .is_some_and(|e| {
            matches!(
                e.kind,
                crate::error::Kind::Usage | crate::error::Kind::Refused
            )
        })
}

/// Sends how a restore of `database` ended.
pub async fn restore_ended(ctx: &Ctx, database: Option<&str>, result: &Result<()>) {
    let notifier = notifier(ctx);
    if notifier.is_empty() {
        return;
    }
    let event = match result {
        Ok(()) => Event::new(EventKind::RestoreDone, database),
        Err(e) => Event::new(EventKind::RestoreFailed, database).with_error(&summed(e)),
    };
    notifier.send(&event).await;
}

/// A chain of causes summed up as the command line reports it: its typed error's kind and hint,
/// the whole chain as the message.
fn summed(e: &anyhow::Error) -> Error {
    let message = format!("{e:#}");
    let (kind, hint) = crate::error::find(e).map_or((crate::error::Kind::Failure, None), |t| {
        (t.kind, t.hint.clone())
    });
    let mut out = Error::new(kind, message.replace('\n', " "));
    out.hint = hint.or_else(|| crate::runtime::process::classify(&message).1);
    out
}

/// Tells of a drill: passed (with its RTO and RPO), failed (with what did not match), or not run.
pub async fn drill_ended(ctx: &Ctx, result: &Result<crate::ops::drill::DrillReport>) {
    let notifier = notifier(ctx);
    if notifier.is_empty() {
        return;
    }
    let event = match result {
        Ok(report) => drill_event(report),
        Err(e) => Event::drill_failed(None, &summed(e)),
    };
    notifier.send(&event).await;
}

/// The event of a drill that ran: its backup's facts, RTO and RPO, and each mismatch.
fn drill_event(report: &crate::ops::drill::DrillReport) -> Event {
    use crate::runtime::units::human_duration;
    let b = &report.backup;
    let meta = crate::archive::meta::Meta::read(&crate::archive::meta::Meta::path_for(&b.path));
    let mut event = match (report.error(), meta) {
        (None, Ok(meta)) => Event::drill_passed(&meta, &b.path),
        (None, Err(_)) => Event::new(EventKind::DrillPassed, Some(&b.database)),
        (Some(e), Ok(meta)) => {
            Event::drill_failed(Some(&b.database), &e).with_backup(&meta, &b.path)
        }
        (Some(e), Err(_)) => Event::drill_failed(Some(&b.database), &e),
    };
    if let Some(ms) = report.rto_ms {
        event = event.detail(format!(
            "RTO: {}",
            human_duration(std::time::Duration::from_millis(ms))
        ));
    }
    let age = u64::try_from(report.rpo.backup_age_seconds).unwrap_or(0);
    event = event.detail(format!(
        "RPO: backup age {}",
        human_duration(std::time::Duration::from_secs(age))
    ));
    for m in report.mismatches() {
        event = event.detail(m);
    }
    event
}

/// Tells that off-site destinations miss backups after a push: which ones, and why.
pub async fn offsite_ended(
    ctx: &Ctx,
    report: &crate::ops::push::PushReport,
    error: &anyhow::Error,
) {
    let notifier = notifier(ctx);
    if notifier.is_empty() {
        return;
    }
    let mut event = Event::new(EventKind::OffsiteMissing, ctx.target_database().as_deref())
        .with_error(&summed(error));
    event.destinations = report
        .results
        .iter()
        .filter(|r| r.error.is_some())
        .map(|r| r.url.clone())
        .collect();
    notifier.send(&event).await;
}
