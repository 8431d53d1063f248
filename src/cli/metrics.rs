//! The metrics file from the front end's side: each command notes what its report says about
//! each database ([`RunRecord`]); when the run has ended, in success or failure, [`Pending`]
//! turns the notes, the run's start and duration and its outcome into observations for
//! [`crate::ops::metrics`]. Writing the file can only log a warning: it never changes how the run
//! ends.

use crate::cli::args::Command;
use crate::cli::commands::Ctx;
use crate::ops::backup::{AutoPrune, BackupReport};
use crate::ops::many::{ManyReport, Outcome};
use crate::ops::metrics::{Observation, Operation};
use crate::ops::prune::Report as PruneReport;
use crate::ops::restore::RestoreReport;
use crate::ops::verify::VerifyReport;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// What this run's command learnt, per database and operation: whether it succeeded, and the
/// size of a backup it made. Shared between the command (through [`Ctx`]) and the front end.
#[derive(Debug, Clone, Default)]
pub struct RunRecord(Arc<Mutex<BTreeMap<(String, Operation), Note>>>);

#[derive(Debug, Clone, Copy)]
struct Note {
    ok: bool,
    size_bytes: Option<u64>,
}

impl RunRecord {
    /// A backup was made: its database and size, and the prune that followed it.
    pub fn backup(&self, report: &BackupReport) {
        let db = &report.meta.database;
        self.note(db, Operation::Backup, true, Some(report.meta.size_bytes));
        match &report.prune {
            AutoPrune::Done(prune) => self.prune(prune),
            AutoPrune::Failed(_) => self.note(db, Operation::Prune, false, None),
            AutoPrune::Off | AutoPrune::Blocked(_) => {}
        }
    }

    /// A backup of several databases: each under its name in the run (the summary's), backed
    /// up with its size and the prune that followed, or failed. A database the run was stopped
    /// before is not recorded: nothing was attempted.
    pub fn many(&self, report: &ManyReport) {
        for r in &report.results {
            let db = &r.name;
            match &r.outcome {
                Outcome::Done(made) => {
                    self.note(db, Operation::Backup, true, Some(made.meta.size_bytes));
                    match &made.prune {
                        AutoPrune::Done(p) if !p.dry_run => {
                            self.note(db, Operation::Prune, true, None);
                        }
                        AutoPrune::Failed(_) => self.note(db, Operation::Prune, false, None),
                        AutoPrune::Done(_) | AutoPrune::Off | AutoPrune::Blocked(_) => {}
                    }
                }
                Outcome::Failed(_) | Outcome::Interrupted(_) => {
                    self.note(db, Operation::Backup, false, None);
                }
                Outcome::NotStarted => {}
            }
        }
    }

    /// A verify ran: each database whose backups were read passed if every one of them did.
    /// Files without a sidecar belong to no database and count for none.
    pub fn verify(&self, report: &VerifyReport) {
        let mut passed: BTreeMap<&str, bool> = BTreeMap::new();
        for r in &report.results {
            if let Some(db) = &r.database {
                *passed.entry(db).or_insert(true) &= r.ok;
            }
        }
        for (db, ok) in passed {
            self.note(db, Operation::Verify, ok, None);
        }
    }

    /// A prune applied the policy to these databases (a dry run changes nothing and is not
    /// recorded).
    pub fn prune(&self, report: &PruneReport) {
        if report.dry_run {
            return;
        }
        for db in &report.databases {
            self.note(db, Operation::Prune, true, None);
        }
    }

    /// A restore into this database succeeded.
    pub fn restore(&self, report: &RestoreReport) {
        self.note(&report.database, Operation::Restore, true, None);
    }

    /// A drill of a backup of `database` ran to its end: it passed or it did not.
    pub fn drill(&self, database: &str, passed: bool) {
        self.note(database, Operation::Drill, passed, None);
    }

    fn note(&self, database: &str, operation: Operation, ok: bool, size_bytes: Option<u64>) {
        let mut notes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let note = notes
            .entry((database.to_string(), operation))
            .or_insert(Note { ok, size_bytes });
        note.ok &= ok;
        note.size_bytes = size_bytes.or(note.size_bytes);
    }

    fn take(&self) -> BTreeMap<(String, Operation), Note> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A run whose outcome goes to the metrics file once it ends.
#[derive(Debug)]
pub struct Pending {
    path: PathBuf,
    /// The backup folder, which the metrics file must stay out of.
    backup_dir: PathBuf,
    operation: Operation,
    /// The databases the run was for, as far as the command line and settings say: a run that
    /// fails before its report is recorded against them.
    fallback: Vec<String>,
    started_at: DateTime<Utc>,
    clock: Instant,
    record: RunRecord,
}

impl Pending {
    /// Starts timing `command`; `None` when no metrics file is set or the command is not a
    /// backup, prune (other than a dry run), verify, restore or drill.
    #[must_use]
    pub fn start(command: &Command, ctx: &Ctx) -> Option<Pending> {
        let (operation, fallback) = match command {
            Command::Backup(a) => (Operation::Backup, crate::cli::runs::databases_named(ctx, a)),
            Command::Restore(_) => (
                Operation::Restore,
                ctx.target_database().into_iter().collect(),
            ),
            Command::Drill(a) => (
                Operation::Drill,
                a.database
                    .clone()
                    .or_else(|| ctx.target_database())
                    .into_iter()
                    .collect(),
            ),
            Command::Verify(a) => (
                Operation::Verify,
                a.database
                    .clone()
                    .or_else(|| ctx.target_database())
                    .into_iter()
                    .collect(),
            ),
            Command::Prune(a) if !a.dry_run => (
                Operation::Prune,
                match (&a.database, a.all_databases) {
                    (Some(db), _) => Some(db.clone()),
                    (None, true) => None,
                    (None, false) => ctx.target_database(),
                }
                .into_iter()
                .collect(),
            ),
            _ => return None,
        };
        Pending::new(ctx, operation, fallback)
    }

    /// Starts timing one scheduled backup of the daemon, whose `ctx` is the run's own (with its
    /// own [`RunRecord`] and "now"); `None` when no metrics file is set.
    #[must_use]
    pub fn scheduled_backup(ctx: &Ctx) -> Option<Pending> {
        let databases =
            crate::cli::runs::databases_named(ctx, &crate::cli::args::BackupArgs::default());
        Pending::new(ctx, Operation::Backup, databases)
    }

    /// Starts timing the drills of one slot of the daemon, whose `ctx` is the slot's own;
    /// `databases` are the ones it drills. `None` when no metrics file is set.
    #[must_use]
    pub fn scheduled_drill(ctx: &Ctx, databases: Vec<String>) -> Option<Pending> {
        Pending::new(ctx, Operation::Drill, databases)
    }

    fn new(ctx: &Ctx, operation: Operation, fallback: Vec<String>) -> Option<Pending> {
        Some(Pending {
            path: ctx.settings.metrics_file.as_ref()?.value.clone(),
            backup_dir: ctx.backup_dir(),
            operation,
            fallback,
            started_at: ctx.now,
            clock: Instant::now(),
            record: ctx.record.clone(),
        })
    }

    /// Writes what the run learnt, `ok` being how the whole run ended; a failure to write is a
    /// warning.
    pub fn finish(self, ok: bool) {
        let observations = self.observations(ok);
        if observations.is_empty() {
            tracing::debug!(
                "metrics: this {} run names no database; {} is left as it was",
                self.operation.as_str(),
                self.path.display()
            );
            return;
        }
        if let Err(e) = crate::ops::metrics::record(&self.path, &self.backup_dir, &observations) {
            let e = crate::error::Error::from_anyhow(e);
            tracing::warn!(
                "cannot update the metrics file {}: {}",
                self.path.display(),
                e.message
            );
        }
    }

    /// The notes, plus the run's own database when no note covers the run's operation.
    fn observations(&self, ok: bool) -> Vec<Observation> {
        let notes = self.record.take();
        let duration = self.clock.elapsed();
        let mut observations: Vec<Observation> = notes
            .into_iter()
            .map(|((database, operation), note)| Observation {
                database,
                operation,
                started_at: self.started_at,
                duration,
                ok: note.ok,
                size_bytes: note.size_bytes,
            })
            .collect();
        if observations.iter().any(|o| o.operation == self.operation) {
            return observations;
        }
        for db in &self.fallback {
            observations.push(Observation {
                database: db.clone(),
                operation: self.operation,
                started_at: self.started_at,
                duration,
                ok,
                size_bytes: None,
            });
        }
        observations
    }
}
