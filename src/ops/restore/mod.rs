//! Restoring a backup into a database, as an operation: [`plan`] resolves and checks the backup,
//! inspects the target and runs the guards, changing nothing; [`execute`] carries the plan out
//! (psql in one transaction that we open and close, or pg_restore --jobs) and returns a
//! [`RestoreReport`]. Nothing here prints or asks: a confirmation that the plan requires is the
//! caller's to obtain ([`RestorePlan::confirmation_needed`], [`RestorePlan::confirm`]).

mod aftercheck;
mod feed;
mod guards;
mod plan;
mod preview;
mod safety;
mod swap;

pub use guards::{Confirmation, Guard, GuardWarning};
pub use plan::{plan, Backup, Checksum, Method, RestorePlan, ScriptInput, Strategy, Target, Tools};
pub use preview::{preview, Preview, TableChange};
pub use safety::{SafetyBackup, SAFETY_LABEL};
pub use swap::{SwapOptions, SwapPlan, SwapReport};

use crate::archive::crypto::KeySource;
use crate::error::{Error, Kind};
use crate::ops::Context;
use crate::pg::conninfo::ConnInfo;
use crate::pg::consistency::ValidationReport;
use crate::pg::db::Db;
use crate::pg::sessions::Session;
use crate::runtime::restore_state::RestorePhase;
use crate::runtime::units::human_duration;
use anyhow::{Context as _, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to restore where, and what the caller allows: free of the command line.
#[derive(Debug)]
pub struct RestoreOptions {
    /// The backup: a path (file or directory archive), a backup id or a unique prefix of one, or
    /// `latest`.
    pub backup: String,
    /// Restore a backup of this database (not the target's): `latest` and id prefixes look among
    /// its backups, and this is the consent needed to restore it into another database.
    pub from_database: Option<String>,
    /// The target's connection, resolved by the caller (what the URL leaves out filled in from
    /// the environment); or why there is none, which the plan reports once the backup was chosen
    /// and the production guard ran.
    pub target: std::result::Result<ConnInfo, Error>,
    /// Parallel pg_restore jobs (`--jobs`); 1 or none restores in one transaction.
    pub jobs: Option<u32>,
    /// How long a lock wait may last before the restore gives up (none: forever).
    pub lock_timeout: Option<Duration>,
    /// End the other sessions connected to the target first (after the confirmation).
    pub terminate_sessions: bool,
    /// Go on where a guard refuses only what may be meant: production, `--jobs` into a database
    /// with tables, a SQL dump without DROP statements into a database that holds objects.
    pub force: bool,
    /// The confirmation is given in advance (`--yes`).
    pub confirmed: bool,
    /// The variable that says this is production, and its value (`APP_ENV`, `production`).
    pub production_marker: Option<(String, String)>,
    /// The identities or passphrase that open encrypted backups.
    pub keys: KeySource,
    /// Restore into this database of the same server instead of the one the connection names
    /// (`--target-db`); the guards apply to it.
    pub target_db: Option<String>,
    /// Create `target_db` when it does not exist (`--create`).
    pub create: bool,
    /// Restore into a new database next to the target, check it, then swap it in by renaming
    /// (`--swap`); `None`: restore in place.
    pub swap: Option<SwapOptions>,
    /// How to back the target up before it is replaced (the label is set to
    /// [`SAFETY_LABEL`], the connection to the target's); `None`: no safety backup.
    pub safety_backup: Option<crate::ops::backup::BackupOptions>,
    /// Run the consistency checks on the target once it is restored (`--no-validate`: not).
    pub validate: bool,
    /// The target is a throwaway database made for this restore (a drill's scratch database):
    /// restoring another database's backup into it is the point, not worth a warning.
    pub scratch_target: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The backup restored.
    pub path: PathBuf,
    /// The database it was restored into.
    pub database: String,
    /// Its server, as shown to people.
    pub host: String,
    /// How long the restore itself took (after the plan, the confirmation and the ending of
    /// other sessions).
    pub duration: Duration,
    /// How it ran: the method, and whether the archive's objects were dropped first.
    pub strategy: Strategy,
    /// The bytes the progress counted: the dump's when we streamed it, else the SQL psql read,
    /// or the archive unpacked for `--jobs` (0 when pg_restore read the file itself).
    pub bytes: u64,
    /// The backup of the target taken before it was replaced, if one was.
    pub safety_backup: Option<SafetyBackup>,
    /// With `--swap`: the database restored aside and swapped in, and the old one.
    pub swap: Option<SwapReport>,
    /// What the consistency checks found in the restored database; `None` when they were not
    /// asked for or could not run (a warning says why). Findings do not fail the restore.
    pub validation: Option<ValidationReport>,
}

/// Carries out `plan`: ends the other sessions when it says so, then restores (in place, or
/// aside then swapped in with `--swap`). A failure says what is known about the target (rolled
/// back, partly restored, or unknown after COMMIT).
pub async fn execute(ctx: &Context, mut plan: RestorePlan) -> Result<RestoreReport> {
    refuse_unconfirmed(&plan)?;
    let held = plan
        .held
        .take()
        .ok_or_else(|| anyhow::anyhow!("a preview cannot be carried out: plan the restore"))?;
    if plan.swap.is_some() {
        return swap::execute(ctx, plan, held).await;
    }
    let plan::Held {
        conn,
        db,
        safety_backup,
        lock,
        input,
    } = held;
    let target = &plan.target;
    if target.create {
        db.create_database(&target.database).await?;
        tracing::info!("created database {:?}", target.database);
    }
    let safety = match safety_backup {
        Some(options) => Some(safety::take(ctx, options, &conn, target, lock.as_ref()).await?),
        None => None,
    };
    if target.terminate_sessions {
        end_sessions(&db, &target.other_sessions).await;
    }
    let created = target.create.then_some(db);
    let run = Run {
        ctx,
        conn: &conn,
        plan: Planned::of(&plan),
        target,
    };
    let (duration, bytes) = match run.run(input).await {
        Ok(done) => done,
        Err(e) => {
            safety::note_after_failure(safety.as_ref());
            if let Some(db) = created {
                drop_created(&db, &target.database).await;
            }
            return Err(e);
        }
    };
    let validate = plan.validate;
    let mut report = completed(plan, duration, bytes);
    report.safety_backup = safety;
    // A signal that came while the COMMIT waited for its answer ends the run now.
    if validate && ctx.op.cancelled().is_none() {
        report.validation = aftercheck::validate(ctx, &conn, &report.database).await;
    }
    Ok(report)
}

/// One run of the tools: `plan`'s backup into `target` (the plan's, or the database aside).
pub(super) struct Run<'a> {
    pub(super) ctx: &'a Context,
    /// The connection of the database written to.
    pub(super) conn: &'a ConnInfo,
    pub(super) plan: Planned<'a>,
    /// The database written to.
    pub(super) target: &'a Target,
}

/// What a [`Run`] takes from the plan (not the plan itself, whose held parts are not `Sync`).
#[derive(Clone, Copy)]
pub(super) struct Planned<'a> {
    backup: &'a Backup,
    strategy: Strategy,
    tools: &'a Tools,
    lock_timeout: Option<Duration>,
    progress_total: Option<u64>,
}

impl<'a> Planned<'a> {
    /// The parts of `plan` a run needs.
    pub(super) fn of(plan: &'a RestorePlan) -> Planned<'a> {
        Planned {
            backup: &plan.backup,
            strategy: plan.strategy,
            tools: &plan.tools,
            lock_timeout: plan.lock_timeout,
            progress_total: plan.progress_total,
        }
    }
}

impl Run<'_> {
    /// Restores, returning how long it took and the bytes counted; a failure says what became
    /// of the database written to.
    pub(super) async fn run(
        &self,
        input: Option<Box<dyn std::io::Read + Send>>,
    ) -> Result<(Duration, u64)> {
        let (ctx, plan) = (self.ctx, self.plan);
        log_start(plan.backup, self.target, plan.strategy);
        let started = Instant::now();
        let progress = ctx.op.progress("restoring", plan.progress_total);
        let tool_started = Arc::new(AtomicBool::new(false));
        let job = feed::RestoreJob::new(feed::JobParts {
            ctx,
            conn: self.conn,
            backup: plan.backup,
            target: self.target,
            strategy: plan.strategy,
            tools: plan.tools.clone(),
            lock_timeout: plan.lock_timeout,
            counter: progress.counter.clone(),
            tool_started: tool_started.clone(),
        });
        let result = tokio::task::spawn_blocking(move || job.run(input))
            .await
            .context("the restore thread failed")?;
        let bytes = progress.counter.load(Ordering::Relaxed);
        drop(progress);
        if let Err(e) = result {
            let failed = Failed {
                ctx,
                conn: self.conn,
                database: &self.target.database,
                strategy: plan.strategy,
                lock_timeout: plan.lock_timeout,
                tool_started: tool_started.load(Ordering::SeqCst),
            };
            return Err(failed.error(e).await);
        }
        Ok((started.elapsed(), bytes))
    }
}

/// The report of a restore that succeeded.
pub(super) fn completed(plan: RestorePlan, duration: Duration, bytes: u64) -> RestoreReport {
    let RestorePlan {
        backup,
        target,
        strategy,
        ..
    } = plan;
    tracing::info!(
        file = %backup.path.display(),
        database = %target.database,
        duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        "restore complete: {} into {:?} in {}",
        backup.path.display(),
        target.database,
        human_duration(duration)
    );
    RestoreReport {
        path: backup.path,
        database: target.database,
        host: target.host,
        duration,
        strategy,
        bytes,
        safety_backup: None,
        swap: None,
        validation: None,
    }
}

/// Drops the database this restore created (`--create`) after the restore into it failed.
async fn drop_created(db: &Db, database: &str) {
    match db.drop_database(database, false).await {
        Ok(()) => tracing::info!("dropped database {database:?}, which this restore had created"),
        Err(e) => tracing::warn!(
            "could not drop database {database:?}, which this restore had created: {e:#}"
        ),
    }
}

/// A plan whose confirmation was neither given in advance nor obtained is not carried out.
fn refuse_unconfirmed(plan: &RestorePlan) -> Result<()> {
    match plan.confirmation_needed() {
        None => Ok(()),
        Some(c) => Err(Error::refused(format!(
            "refusing to restore into database {:?} on {}: {}, and the restore was not confirmed",
            plan.target.database, plan.target.host, c.reason
        ))
        .into()),
    }
}

/// `restoring FILE (custom format, inside zstd) into database "shop" on HOST in one transaction`.
fn log_start(backup: &Backup, target: &Target, strategy: Strategy) {
    tracing::info!(
        "restoring {} ({} format{}) into database {:?} on {}{}",
        backup.path.display(),
        backup.format,
        backup.layers_note(),
        target.database,
        target.host,
        if strategy.method.jobs().is_some() {
            ""
        } else {
            " in one transaction"
        }
    );
}

/// `--terminate-sessions`: ends the other sessions (after the confirmation) and waits briefly
/// until they are gone. A session we may not end is reported; the lock wait limit still applies.
async fn end_sessions(db: &Db, others: &[Session]) {
    for s in others {
        match db.terminate(s.pid).await {
            Ok(true) => tracing::info!("ended session {s}"),
            Ok(false) => tracing::warn!(
                "could not end session pid {}: it was gone or the server refused",
                s.pid
            ),
            Err(e) => tracing::warn!("could not end the session: {e:#}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match db.other_sessions().await {
            Ok(now) if now.iter().any(|n| others.iter().any(|o| o.pid == n.pid)) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => break,
        }
    }
}

/// A restore that failed, and what is known about its target.
struct Failed<'a> {
    ctx: &'a Context,
    conn: &'a ConnInfo,
    database: &'a str,
    strategy: Strategy,
    lock_timeout: Option<Duration>,
    /// pg_restore --jobs was started (the target may have changed).
    tool_started: bool,
}

impl Failed<'_> {
    /// The error to report: the failure with what became of the target, or, for a lock wait
    /// that reached its limit, who held the lock.
    async fn error(&self, e: anyhow::Error) -> anyhow::Error {
        let note = self.note();
        match self.lock_timeout.filter(|_| is_lock_timeout(&e)) {
            Some(limit) => self.lock_wait_error(limit, &note).await,
            None => e.context(note),
        }
    }

    /// What became of the target.
    fn note(&self) -> String {
        let db = self.database;
        let parallel = self.strategy.method.jobs().is_some();
        if self.ctx.op.restore().phase() == RestorePhase::CommitSent {
            format!("restore failed after its COMMIT was sent, before the server answered: whether {db:?} was restored is unknown")
        } else if parallel && !self.tool_started {
            // Unpacking for --jobs failed (damaged archive, no temp space): pg_restore never ran.
            format!("restore failed before pg_restore started: {db:?} was not touched")
        } else if parallel {
            format!("restore failed; it ran in parallel (--jobs), so {db:?} may be partly restored")
        } else {
            format!("restore failed and was rolled back: {db:?} is as it was")
        }
    }

    /// The error for a restore that gave up waiting for a lock: it names the sessions of the
    /// target that hold table locks (or, when none is visible any more, every other session).
    async fn lock_wait_error(&self, limit: Duration, note: &str) -> anyhow::Error {
        let (sessions, prepared) = match Db::connect(self.conn, &|k| self.ctx.var(k)).await {
            Ok(db) => (
                db.other_sessions().await.unwrap_or_default(),
                db.prepared_transactions().await.unwrap_or_default(),
            ),
            Err(_) => (Vec::new(), Vec::new()),
        };
        let holders: Vec<Session> = sessions.iter().filter(|s| s.holds_locks).cloned().collect();
        let named = if holders.is_empty() {
            sessions
        } else {
            holders
        };
        if named.is_empty() && !prepared.is_empty() {
            return prepared_transactions_error(limit, note, &prepared);
        }
        let who = if named.is_empty() {
            "a session that has ended since".to_string()
        } else {
            crate::pg::sessions::describe(&named)
        };
        Error::new(
            Kind::Failure,
            format!(
                "{note}: it waited {} (--lock-timeout) for a lock held by another session: {who}",
                human_duration(limit)
            ),
        )
        .hint("end that session (its application, or SELECT pg_terminate_backend(PID)), or add --terminate-sessions to end the other sessions first, or allow a longer wait with --lock-timeout")
        .into()
    }
}

/// No session holds a lock, but prepared transactions (which keep theirs) do.
fn prepared_transactions_error(limit: Duration, note: &str, prepared: &[String]) -> anyhow::Error {
    Error::new(
        Kind::Failure,
        format!(
            "{note}: it waited {} (--lock-timeout) for a lock; no session holds one, but the database has prepared transactions, which keep their locks: {}",
            human_duration(limit),
            prepared.join(", ")
        ),
    )
    .hint("a prepared transaction outlives its session (and restarts), so --terminate-sessions cannot end it: finish it with COMMIT PREPARED 'GID' or ROLLBACK PREPARED 'GID' once you know what it is")
    .into()
}

/// Whether the restore failed because a lock wait reached `lock_timeout`.
fn is_lock_timeout(e: &anyhow::Error) -> bool {
    format!("{e:#}").contains("lock timeout")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daemon runs operations on tokio tasks: both halves must be `Send`.
    #[allow(dead_code)]
    fn plan_and_execute_are_send(ctx: &Context, opts: &RestoreOptions, plan: RestorePlan) {
        fn send<T: Send>(_: T) {}
        send(super::plan(ctx, opts));
        send(execute(ctx, plan));
    }
}
