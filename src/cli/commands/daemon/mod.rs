//! `aos-backup daemon`: the built-in scheduler. At each slot of the backup schedule it runs what
//! `aos-backup backup` runs ([`crate::cli::runs`]: the hooks around it, DATABASE_URL's database
//! or the config file's list, each backup's automatic prune), updates the metrics file as a
//! `backup` does, then runs the post-run steps. A
//! slot missed while it was down runs once on start; the folder lock keeps runs from overlapping
//! (a slot that finds it held is skipped); a failed run is logged and the daemon goes on; SIGTERM
//! or SIGINT cancels a run safely, then stops the daemon.
//!
//! Exit status: 0 when a signal stops it between runs (or a run it interrupted finished anyway),
//! 143 (SIGTERM) or 130 (SIGINT) when it cancelled a run, 2 when the configuration is unusable at
//! start.

mod drills;
mod state;

use super::Ctx;
use crate::cli::args::BackupArgs;
use crate::cli::metrics::Pending;
use crate::cli::runs::{self, Made};
use crate::cli::Signals;
use crate::config::Schedule;
use crate::error::{Error, Kind};
use crate::ops::backup::{AutoPrune, BackupReport};
use crate::ops::many::ManyReport;
use crate::runtime::context::OpContext;
use crate::runtime::units::{human_bytes, human_duration};
use anyhow::Result;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use state::State;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

/// The longest the daemon sleeps before it reads the clock again (NTP steps, a suspend).
const MAX_NAP: Duration = Duration::from_secs(60);
/// How long a cancelled run gets to stop its children and remove its temp files.
const UNWIND: Duration = Duration::from_secs(10);
/// A run that starts later than this after its slot says it is late.
const LATE_SECS: i64 = 5;

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(ctx: &Ctx, signals: &mut Signals) -> Result<()> {
    if ctx.settings.remote.only && ctx.settings.remote.destinations.is_empty() {
        return Err(
            Error::usage("BACKUP_REMOTE_ONLY is on, but no off-site destination is set")
                .hint("set BACKUP_REMOTE=s3://bucket/prefix, or turn BACKUP_REMOTE_ONLY off")
                .into(),
        );
    }
    let mut daemon = Daemon::start(ctx)?;
    loop {
        let slot = next_slot(&daemon.schedule, daemon.state.backup.handled_until)?;
        if let Some(drill) = daemon.next_drill().filter(|d| *d < slot) {
            if let Some(sig) = wait_until(&daemon.clock, drill, signals).await {
                tracing::info!(
                    "{}: the daemon stops (no run was in progress)",
                    signal_name(sig)
                );
                return Ok(());
            }
            daemon.drill(ctx, drill, signals).await?;
            continue;
        }
        if let Some(sig) = wait_until(&daemon.clock, slot, signals).await {
            tracing::info!(
                "{}: the daemon stops (no run was in progress)",
                signal_name(sig)
            );
            return Ok(());
        }
        if let Some(sig) = daemon.run(ctx, slot, signals).await? {
            tracing::info!(
                "{}: the run in progress finished; the daemon stops",
                signal_name(sig)
            );
            return Ok(());
        }
    }
}

/// The daemon between two runs.
struct Daemon {
    schedule: Schedule,
    /// When to drill the newest backup, if ever.
    drills: Option<Schedule>,
    clock: Clock,
    state: State,
    steps: Vec<Box<dyn AfterRun>>,
}

impl Daemon {
    /// Checks the configuration (a bad URL or a missing key file stops the daemon now, not at
    /// the first slot), reads the state and says when the first run is.
    fn start(ctx: &Ctx) -> Result<Daemon> {
        let schedule = backup_schedule(ctx)?;
        runs::check_backup(ctx, &BackupArgs::default())?;
        let clock = Clock::starting_at(ctx.now);
        let dir = ctx.backup_dir();
        crate::runtime::fsutil::create_private_dir_all(&dir).map_err(|e| {
            crate::runtime::fsutil::local_io_error("cannot create the backup folder", &dir, &e)
        })?;
        let state = State::open(&dir, clock.now());
        announce(ctx, &schedule, &state, &dir)?;
        Ok(Daemon {
            schedule,
            drills: ctx.settings.schedule.drill.clone(),
            clock,
            state,
            steps: after_run_steps(ctx),
        })
    }

    /// The next drill slot, when drills are scheduled.
    fn next_drill(&self) -> Option<DateTime<Utc>> {
        self.drills
            .as_ref()
            .and_then(|d| d.next_after(self.state.drill.handled_until))
    }

    /// Runs the drill of `slot` and records it; a signal that cancelled it is the error to exit
    /// with.
    async fn drill(&mut self, ctx: &Ctx, slot: DateTime<Utc>, signals: &mut Signals) -> Result<()> {
        let started = self.clock.now();
        match drills::run(ctx, started, slot, signals).await {
            drills::Ended::Finished(word) => {
                self.state
                    .record_drill(slot, started, self.clock.now(), word);
                Ok(())
            }
            drills::Ended::Cancelled(e) => Err(e.into()),
        }
    }

    /// Runs the slot, records and logs how it ended. Returns the signal that came during a run
    /// that still finished; a run the signal cancelled is the error to exit with.
    async fn run(
        &mut self,
        ctx: &Ctx,
        slot: DateTime<Utc>,
        signals: &mut Signals,
    ) -> Result<Option<i32>> {
        let started = self.clock.now();
        say_if_late(&self.schedule, slot, started);
        let (outcome, stop) = match run_slot(ctx, &self.clock, slot, &self.steps, signals).await {
            Ended::Finished(outcome) => (outcome, None),
            Ended::Stopped(sig, outcome) => (outcome, Some(sig)),
            Ended::Cancelled(e) => return Err(e.into()),
        };
        self.state
            .record(slot, started, self.clock.now(), outcome.word());
        let next = next_slot(&self.schedule, self.state.backup.handled_until)?;
        log_outcome(&self.schedule, slot, &outcome, next);
        Ok(stop)
    }
}

/// The backup schedule, or the usage error that says how to set one.
fn backup_schedule(ctx: &Ctx) -> Result<Schedule> {
    ctx.settings.schedule.backup.clone().ok_or_else(|| {
        Error::usage("no backup schedule: the daemon needs BACKUP_SCHEDULE or BACKUP_SCHEDULE_HOUR")
            .hint("set BACKUP_SCHEDULE to a cron expression (e.g. \"15 2 * * *\" for 02:15 daily) or BACKUP_SCHEDULE_HOUR=3, in the environment, ./.env or [schedule] in the config file")
            .into()
    })
}

/// The first slot of `schedule` after `t`.
fn next_slot(schedule: &Schedule, t: DateTime<Utc>) -> Result<DateTime<Utc>> {
    schedule
        .next_after(t)
        .ok_or_else(|| anyhow::anyhow!("the schedule {schedule} has no slot after {t}"))
}

/// Logs the start: the schedule, the folder, the next slot, and the drills to come.
fn announce(ctx: &Ctx, schedule: &Schedule, state: &State, dir: &std::path::Path) -> Result<()> {
    let next = next_slot(schedule, state.backup.handled_until)?;
    tracing::info!(
        next_run = %next.to_rfc3339(),
        "daemon started (pid {}): backups of {} on the schedule {schedule}; next at {}",
        std::process::id(),
        std::path::absolute(dir).as_deref().unwrap_or(dir).display(),
        shown(next, schedule.timezone())
    );
    if let Some(drill) = &ctx.settings.schedule.drill {
        if let Some(next) = drill.next_after(state.drill.handled_until) {
            drills::announce(drill, next, drill.timezone());
        }
    }
    Ok(())
}

/// Sleeps until `slot` in naps of at most [`MAX_NAP`], reading the clock after each. Returns the
/// signal that came first, if one did.
async fn wait_until(clock: &Clock, slot: DateTime<Utc>, signals: &mut Signals) -> Option<i32> {
    loop {
        // A signal that came before the watch started is only in the flag.
        if let Some(sig) = crate::runtime::signal::received() {
            return Some(sig);
        }
        let left = (slot - clock.now()).to_std().unwrap_or_default();
        if left.is_zero() {
            return None;
        }
        tokio::select! {
            () = tokio::time::sleep(left.min(MAX_NAP)) => {}
            sig = signals.next() => return Some(sig),
        }
    }
}

/// Says when a run starts well after its slot: the daemon was down, or the machine asleep.
fn say_if_late(schedule: &Schedule, slot: DateTime<Utc>, now: DateTime<Utc>) {
    let late = now - slot;
    if late.num_seconds() > LATE_SECS {
        tracing::info!(
            slot = %slot.to_rfc3339(),
            "the backup slot of {} was missed (the daemon was down or the machine asleep): running it now, {} late, once for every slot missed",
            shown(slot, schedule.timezone()),
            human_duration(late.to_std().unwrap_or_default())
        );
    }
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// The backup was made (and pruned, when a policy is configured).
    Done {
        /// The new backup.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// How long the dump took.
        elapsed: Duration,
    },
    /// Several databases (the config file's list), each into its subfolder.
    Many {
        /// How many databases the run covered.
        databases: usize,
        /// How many of them were backed up.
        backed_up: usize,
        /// The size of the new backups.
        bytes: u64,
        /// The summary's counts (`2 of 3 database(s) backed up, 1 failed`).
        counts: String,
        /// The worst result, when one database failed (or the run was stopped).
        error: Option<Error>,
    },
    /// Another run held the folder lock: this slot is skipped.
    Skipped(Error),
    /// The run failed.
    Failed(Error),
}

impl Outcome {
    /// What the run's result means for the daemon.
    fn of(result: Result<Made>) -> Outcome {
        match result {
            Ok(Made::One(report)) => Outcome::of_one(*report),
            Ok(Made::Many(report)) => Outcome::of_many(report),
            Err(e) => {
                let e = Error::from_anyhow(e);
                if e.kind == Kind::Locked {
                    Outcome::Skipped(e)
                } else {
                    Outcome::Failed(e)
                }
            }
        }
    }

    /// One database's backup, failed when the prune after it failed.
    fn of_one(report: BackupReport) -> Outcome {
        let BackupReport {
            path,
            meta,
            elapsed,
            prune,
            ..
        } = report;
        if let AutoPrune::Failed(e) = prune {
            let why = format!(
                "the backup {} is complete and kept, but the prune after it failed",
                path.display()
            );
            return Outcome::Failed(Error::from_anyhow(e.context(why)));
        }
        Outcome::Done {
            // The daemon's logs outlive its working folder's context.
            path: std::path::absolute(&path).unwrap_or(path),
            bytes: meta.size_bytes,
            elapsed,
        }
    }

    /// Several databases' backups: the counts, and the worst result.
    fn of_many(report: ManyReport) -> Outcome {
        let made = report.results.iter().filter_map(|r| r.report());
        let (backed_up, bytes) = made.fold((0, 0), |(n, b), r| (n + 1, b + r.meta.size_bytes));
        Outcome::Many {
            databases: report.results.len(),
            backed_up,
            bytes,
            counts: runs::counts_text(&report),
            error: Made::Many(report)
                .into_result()
                .err()
                .map(Error::from_anyhow),
        }
    }

    /// Whether the run backed up everything it was to.
    fn succeeded(&self) -> bool {
        matches!(
            self,
            Outcome::Done { .. } | Outcome::Many { error: None, .. }
        )
    }

    /// One word for logs and the state file.
    fn word(&self) -> &'static str {
        match self {
            Outcome::Done { .. } | Outcome::Many { error: None, .. } => "success",
            Outcome::Skipped(_) => "skipped",
            Outcome::Failed(_) | Outcome::Many { .. } => "failed",
        }
    }
}

/// A step after each run's backup and prune: the off-site upload and the notifications plug in
/// here when they exist. It sees every outcome (a failed run too, to notify it); its own failure
/// is logged and fails nothing else.
pub trait AfterRun {
    /// Its name in the logs.
    fn name(&self) -> &'static str;
    /// Runs the step after a run that ended as `outcome`.
    fn run<'a>(
        &'a self,
        ctx: &'a Ctx,
        outcome: &'a Outcome,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + 'a>>;
}

/// The post-run steps the settings ask for, in order: the off-site copies when destinations
/// are set.
fn after_run_steps(ctx: &Ctx) -> Vec<Box<dyn AfterRun>> {
    let mut steps: Vec<Box<dyn AfterRun>> = Vec::new();
    if !ctx.settings.remote.destinations.is_empty() {
        steps.push(Box::new(Offsite));
    }
    steps
}

/// Copies what the destinations lack after each run (a failed run's earlier backups too).
struct Offsite;

impl AfterRun for Offsite {
    fn name(&self) -> &'static str {
        "off-site copy"
    }

    fn run<'a>(
        &'a self,
        ctx: &'a Ctx,
        _outcome: &'a Outcome,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + 'a>> {
        Box::pin(async move {
            runs::offsite(ctx).await?;
            if ctx.settings.remote.only {
                runs::drop_local_copies(ctx)?;
            }
            Ok(())
        })
    }
}

/// How [`run_slot`] ended.
enum Ended {
    /// The run and its steps finished.
    Finished(Outcome),
    /// A signal came during the run, which still finished with a backup.
    Stopped(i32, Outcome),
    /// A signal cancelled the run: the error to exit with.
    Cancelled(Error),
}

impl Ended {
    /// Whether the run backed up everything it was to (for the metrics file).
    fn succeeded(&self) -> bool {
        match self {
            Ended::Finished(outcome) => outcome.succeeded(),
            Ended::Stopped(..) => true,
            Ended::Cancelled(_) => false,
        }
    }
}

/// Runs the backup of `slot` in a fresh operation that records what it learns on its own, then
/// the post-run steps; once it ended, the metrics file is updated as after a `backup`.
async fn run_slot(
    ctx: &Ctx,
    clock: &Clock,
    slot: DateTime<Utc>,
    steps: &[Box<dyn AfterRun>],
    signals: &mut Signals,
) -> Ended {
    let op = OpContext::new(std::sync::Arc::new(crate::runtime::progress::Silent));
    let run_ctx = ctx.for_run(op, clock.now());
    let metrics = Pending::scheduled_backup(&run_ctx);
    tracing::debug!(slot = %slot.to_rfc3339(), "starting the scheduled backup");
    let ended = run_watched(&run_ctx, steps, signals).await;
    if let Some(m) = metrics {
        m.finish(ended.succeeded());
    }
    ended
}

/// Runs the backup (as `aos-backup backup` does), then the post-run steps. A signal cancels the
/// run's operation (its children stop, its temp files go; a backup being published finishes
/// first).
async fn run_watched(run_ctx: &Ctx, steps: &[Box<dyn AfterRun>], signals: &mut Signals) -> Ended {
    let op = &run_ctx.op;
    let work = async {
        let made = runs::backup(run_ctx, &BackupArgs::default(), &|_| {}).await;
        let outcome = Outcome::of(made);
        for step in steps {
            if let Err(e) = step.run(run_ctx, &outcome).await {
                let e = Error::from_anyhow(e);
                tracing::warn!("the post-run step {} failed: {}", step.name(), e.message);
            }
        }
        outcome
    };
    tokio::pin!(work);
    let sig = tokio::select! {
        outcome = &mut work => return Ended::Finished(outcome),
        sig = signals.next() => sig,
    };
    tracing::warn!(
        "{}: cancelling the backup in progress, then stopping",
        signal_name(sig)
    );
    op.cancel(sig);
    let finished = tokio::select! {
        r = tokio::time::timeout(UNWIND, &mut work) => r.ok(),
        _ = signals.next() => None,
    };
    op.cleanup_temps();
    match finished {
        Some(outcome) if outcome.succeeded() => Ended::Stopped(sig, outcome),
        _ => Ended::Cancelled(op.interrupted_error(sig)),
    }
}

/// Logs how the run of `slot` ended, and when the next one is.
fn log_outcome(schedule: &Schedule, slot: DateTime<Utc>, outcome: &Outcome, next: DateTime<Utc>) {
    let tz = schedule.timezone();
    let (slot_text, next_text) = (slot.to_rfc3339(), next.to_rfc3339());
    match outcome {
        Outcome::Done {
            path,
            bytes,
            elapsed,
        } => tracing::info!(
            job = "backup",
            slot = %slot_text,
            outcome = "success",
            file = %path.display(),
            size_bytes = bytes,
            duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            next_run = %next_text,
            "scheduled backup done: {} ({}, {}); next at {}",
            path.display(),
            human_bytes(*bytes),
            human_duration(*elapsed),
            shown(next, tz)
        ),
        Outcome::Many {
            databases,
            backed_up,
            bytes,
            counts,
            error: None,
        } => tracing::info!(
            job = "backup",
            slot = %slot_text,
            outcome = "success",
            databases,
            backed_up,
            size_bytes = bytes,
            exit_code = 0,
            next_run = %next_text,
            "scheduled backup done: {counts} ({}); next at {}",
            human_bytes(*bytes),
            shown(next, tz)
        ),
        Outcome::Many {
            databases,
            backed_up,
            error: Some(e),
            ..
        } => tracing::error!(
            job = "backup",
            slot = %slot_text,
            outcome = "failed",
            databases,
            backed_up,
            exit_code = e.kind.exit_code().code(),
            hint = e.hint.as_deref().unwrap_or(""),
            next_run = %next_text,
            "scheduled backup failed: {}; the daemon goes on, next at {}",
            e.message,
            shown(next, tz)
        ),
        Outcome::Skipped(e) => tracing::warn!(
            job = "backup",
            slot = %slot_text,
            outcome = "skipped",
            next_run = %next_text,
            "skipped the backup slot of {}: {}; next at {}",
            shown(slot, tz),
            e.message,
            shown(next, tz)
        ),
        Outcome::Failed(e) => tracing::error!(
            job = "backup",
            slot = %slot_text,
            outcome = "failed",
            exit_code = e.kind.exit_code().code(),
            hint = e.hint.as_deref().unwrap_or(""),
            next_run = %next_text,
            "scheduled backup failed: {}; the daemon goes on, next at {}",
            e.message,
            shown(next, tz)
        ),
    }
}

/// `t` in the schedule's time zone, to the second (`2026-03-01T03:00:00+01:00`).
fn shown(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn signal_name(sig: i32) -> &'static str {
    if sig == libc::SIGTERM {
        "SIGTERM"
    } else {
        "SIGINT"
    }
}

/// The daemon's "now": the wall clock, read afresh each time (NTP steps and suspends count),
/// shifted to `AOS_BACKUP_NOW` when one was given (tests).
struct Clock {
    offset: chrono::Duration,
}

impl Clock {
    /// A clock that reads `now` at this moment. Without `AOS_BACKUP_NOW`, `now` was read a moment
    /// ago: an offset under a second is that moment, not an injected time.
    fn starting_at(now: DateTime<Utc>) -> Clock {
        let offset = now - Utc::now();
        Clock {
            offset: if offset.num_seconds() == 0 {
                chrono::Duration::zero()
            } else {
                offset
            },
        }
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }
}
