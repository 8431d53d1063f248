//! Backups of several databases in one run (a whole server, or the config file's list): each
//! database into its own subfolder of the backup folder, by the backup operation, in its own step
//! of the run's context; one failure does not stop the others, a cancellation stops the run. The
//! run returns what became of each database.

use super::backup::{self, AutoPrune, BackupOptions, BackupReport};
use super::Context;
use crate::archive::naming;
use crate::error::{Error, Kind};
use crate::exit::ExitCode;
use crate::pg::conninfo::ConnInfo;
use crate::runtime::context::OpContext;
use anyhow::Result;
use std::path::PathBuf;
use std::time::Duration;

/// How often a running step looks for the run's cancellation.
const CANCEL_POLL: Duration = Duration::from_millis(50);
/// How long a cancelled step may take to say how it ended (its pg_dump is already stopped; only
/// a connection attempt can take longer).
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// One database to back up.
#[derive(Debug)]
pub struct Target {
    /// The name the summary shows; its subfolder is this name escaped by
    /// [`database_folder`](crate::check::naming::database_folder).
    pub name: String,
    /// The backup to make (its connection names the database), or why it cannot be made (a URL
    /// that could not be read): that database then fails, and the others still run.
    pub options: std::result::Result<BackupOptions, Error>,
}

/// What became of one database.
#[derive(Debug)]
pub enum Outcome {
    /// Backed up (its automatic prune may still have failed: see [`DatabaseResult::kind`]).
    Done(Box<BackupReport>),
    /// Failed; the run went on with the next database.
    Failed(Error),
    /// Stopped by the run's cancellation while it ran; nothing partial is left.
    Interrupted(Error),
    /// Not started: the run was cancelled before its turn.
    NotStarted,
}

/// One database's part of the run.
#[derive(Debug)]
pub struct DatabaseResult {
    /// The target's name.
    pub name: String,
    /// Its subfolder (where its backups go); `None` when the name makes no folder.
    pub dir: Option<PathBuf>,
    /// What became of it.
    pub outcome: Outcome,
}

/// What a run over several databases did.
#[derive(Debug)]
pub struct ManyReport {
    /// One result per target, in the targets' order.
    pub results: Vec<DatabaseResult>,
    /// The signal that cancelled the run, if one did.
    pub signal: Option<i32>,
}

impl DatabaseResult {
    /// The kind of this database's failure (its automatic prune's, after a good backup); `None`
    /// when it succeeded or did not start.
    #[must_use]
    pub fn kind(&self) -> Option<Kind> {
        match &self.outcome {
            Outcome::Done(r) => match &r.prune {
                AutoPrune::Failed(e) => {
                    Some(crate::error::find(e).map_or(Kind::Failure, |t| t.kind))
                }
                AutoPrune::Off | AutoPrune::Blocked(_) | AutoPrune::Done(_) => None,
            },
            Outcome::Failed(e) | Outcome::Interrupted(e) => Some(e.kind),
            Outcome::NotStarted => None,
        }
    }

    /// What went wrong, in one line (secrets masked); `None` when nothing did.
    #[must_use]
    pub fn error(&self) -> Option<String> {
        match &self.outcome {
            Outcome::Done(r) => match &r.prune {
                AutoPrune::Failed(e) => Some(format!(
                    "the backup is complete, but the prune after it failed: {}",
                    crate::runtime::redact::scrub(&format!("{e:#}"))
                )),
                _ => None,
            },
            Outcome::Failed(e) | Outcome::Interrupted(e) => Some(e.message.clone()),
            Outcome::NotStarted => Some("the run was stopped before its turn".to_string()),
        }
    }

    /// What to do about the failure, if known.
    #[must_use]
    pub fn hint(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Failed(e) | Outcome::Interrupted(e) => e.hint.as_deref(),
            _ => None,
        }
    }

    /// The new backup, if one was made.
    #[must_use]
    pub fn report(&self) -> Option<&BackupReport> {
        match &self.outcome {
            Outcome::Done(r) => Some(r),
            _ => None,
        }
    }

    /// `done`, `failed`, `interrupted` or `not_started`.
    #[must_use]
    pub fn status(&self) -> &'static str {
        match self.outcome {
            Outcome::Done(_) => "done",
            Outcome::Failed(_) => "failed",
            Outcome::Interrupted(_) => "interrupted",
            Outcome::NotStarted => "not_started",
        }
    }
}

impl ManyReport {
    /// The run's worst result: the cancellation's kind when it was cancelled, else the failure
    /// with the highest exit code; `None` when every database was backed up (and pruned).
    #[must_use]
    pub fn worst(&self) -> Option<Kind> {
        match self.signal {
            Some(libc::SIGTERM) => Some(Kind::Terminated),
            Some(_) => Some(Kind::Interrupted),
            None => self
                .results
                .iter()
                .filter_map(DatabaseResult::kind)
                .max_by_key(|k| k.exit_code().code()),
        }
    }

    /// The run's exit code: the code of [`ManyReport::worst`], 0 when nothing failed.
    #[must_use]
    pub fn exit_code(&self) -> ExitCode {
        self.worst().map_or(ExitCode::Success, Kind::exit_code)
    }

    /// How many databases have each status: done, failed, interrupted, not started.
    #[must_use]
    pub fn counts(&self) -> [usize; 4] {
        let mut c = [0; 4];
        for r in &self.results {
            let i = match r.outcome {
                Outcome::Done(_) => 0,
                Outcome::Failed(_) => 1,
                Outcome::Interrupted(_) => 2,
                Outcome::NotStarted => 3,
            };
            c[i] += 1;
        }
        c
    }
}

/// The databases on the server of `conn` that a backup of the whole server covers: every one
/// that is not a template, takes connections, and that the user may connect to, by name.
pub async fn server_databases(ctx: &Context, conn: &ConnInfo) -> Result<Vec<String>> {
    let lookup = |k: &str| ctx.var(k);
    let db = crate::pg::db::Db::connect(conn, &lookup).await?;
    db.connectable_databases().await
}

/// Backs up each target in turn, into `ctx`'s folder's subfolder for it, each in a fresh step of
/// `ctx`'s [`OpContext`]. A failure is recorded and the run goes on; once `ctx` is cancelled, the
/// running backup stops and the rest do not start.
pub async fn backup_each(ctx: &Context, targets: Vec<Target>) -> ManyReport {
    let total = targets.len();
    let mut results = Vec::with_capacity(total);
    for (i, target) in targets.into_iter().enumerate() {
        let dir = naming::database_folder(&target.name).map(|f| ctx.dir.join(f));
        let outcome = if ctx.op.cancelled().is_some() {
            Outcome::NotStarted
        } else {
            tracing::info!("database {:?} ({} of {total})", target.name, i + 1);
            one(ctx, dir.clone(), target.options, &target.name).await
        };
        results.push(DatabaseResult {
            name: target.name,
            dir,
            outcome,
        });
    }
    ManyReport {
        results,
        signal: ctx.op.cancelled(),
    }
}

/// One database's backup, in its own step.
async fn one(
    ctx: &Context,
    dir: Option<PathBuf>,
    options: std::result::Result<BackupOptions, Error>,
    name: &str,
) -> Outcome {
    let Some(dir) = dir else {
        return Outcome::Failed(Error::usage(format!(
            "database name {name:?} makes no folder name (1 to {} bytes)",
            naming::MAX_DATABASE_NAME
        )));
    };
    let options = match options {
        Ok(o) => o,
        Err(e) => {
            tracing::error!("database {name:?}: {}", e.message);
            return Outcome::Failed(e);
        }
    };
    let step = Context {
        op: ctx.op.child(),
        dir,
        ..ctx.clone()
    };
    let result = run_step(&step, &options).await;
    step.op.cleanup_temps();
    match result {
        Ok(report) => Outcome::Done(Box::new(report)),
        Err(e) => {
            let e = Error::from_anyhow(e);
            if step.op.cancelled().is_some() {
                Outcome::Interrupted(e)
            } else {
                tracing::error!("database {name:?}: {}", e.message);
                Outcome::Failed(e)
            }
        }
    }
}

/// Plans and runs one backup, stopping it when the run is cancelled.
async fn run_step(step: &Context, options: &BackupOptions) -> Result<BackupReport> {
    let plan = backup::plan(step, options)?;
    let execute = backup::execute(step, plan);
    tokio::pin!(execute);
    tokio::select! {
        biased;
        r = &mut execute => r,
        sig = cancellation(&step.op) => {
            // Its children are stopped: it ends at once, unless it is connecting.
            tokio::time::timeout(CANCEL_GRACE, execute)
                .await
                .unwrap_or_else(|_| Err(step.op.interrupted_error(sig).into()))
        }
    }
}

/// Resolves when `op` is cancelled, with the signal.
async fn cancellation(op: &OpContext) -> i32 {
    loop {
        if let Some(sig) = op.cancelled() {
            return sig;
        }
        tokio::time::sleep(CANCEL_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(outcome: Outcome) -> DatabaseResult {
        DatabaseResult {
            name: "x".into(),
            dir: None,
            outcome,
        }
    }

    fn failed(kind: Kind) -> DatabaseResult {
        result(Outcome::Failed(Error::new(kind, "no")))
    }

    #[test]
    fn the_run_ends_with_its_worst_result() {
        let report = |results, signal| ManyReport { results, signal };
        assert_eq!(report(vec![], None).exit_code(), ExitCode::Success);
        let r = report(
            vec![
                failed(Kind::Failure),
                failed(Kind::Connection),
                failed(Kind::Usage),
            ],
            None,
        );
        assert_eq!(r.exit_code(), ExitCode::Connection);
        assert_eq!(r.counts(), [0, 3, 0, 0]);
        let r = report(
            vec![failed(Kind::Connection), result(Outcome::NotStarted)],
            Some(libc::SIGINT),
        );
        assert_eq!(r.exit_code(), ExitCode::Interrupted);
        let r = report(vec![result(Outcome::NotStarted)], Some(libc::SIGTERM));
        assert_eq!(r.exit_code(), ExitCode::Terminated);
    }

    #[tokio::test]
    async fn a_target_that_cannot_run_fails_alone_and_a_cancelled_run_starts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context {
            op: OpContext::default(),
            dir: dir.path().to_path_buf(),
            locator: crate::pg::tools::Locator::new(None),
            now: chrono::Utc::now(),
            lookup: std::sync::Arc::new(|_: &str| None),
        };
        let targets = || {
            vec![
                Target {
                    name: "a".into(),
                    options: Err(Error::usage("the variable A is not set")),
                },
                Target {
                    name: String::new(),
                    options: Err(Error::usage("unused")),
                },
            ]
        };
        let report = backup_each(&ctx, targets()).await;
        assert_eq!(report.counts(), [0, 2, 0, 0]);
        assert_eq!(report.results[0].dir, Some(dir.path().join("a")));
        assert!(report.results[1].error().unwrap().contains("no folder"));
        assert_eq!(report.exit_code(), ExitCode::Usage);
        ctx.op.cancel(libc::SIGINT);
        let report = backup_each(&ctx, targets()).await;
        assert_eq!(report.counts(), [0, 0, 0, 2]);
        assert_eq!(report.exit_code(), ExitCode::Interrupted);
    }
}
