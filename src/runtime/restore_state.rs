//! How far a restore has gone, kept by the operation that runs it, so that an interruption or a
//! failure says only what is known about the target database.

use crate::error::{Error, Kind};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};

/// What psql prints on stderr (as a server WARNING) right before it sends our COMMIT.
pub const COMMIT_MARK: &str = "aos-backup: sending COMMIT";

/// How far a restore has gone, for an honest message when it is interrupted or fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RestorePhase {
    /// No restore tool has touched the target yet.
    Untouched = 0,
    /// psql runs our transaction; COMMIT was not sent, so ending psql rolls everything back.
    Transaction = 1,
    /// pg_restore --jobs runs: every object commits on its own, the target may be partly changed.
    Parallel = 2,
    /// psql reached our COMMIT (it printed [`COMMIT_MARK`]); the outcome is the server's answer.
    CommitSent = 3,
    /// The server answered the COMMIT with success.
    Committed = 4,
    /// The restore is complete (committed, or every parallel step done); checks on the restored
    /// database may follow.
    Finished = 5,
}

/// One operation's restore: its target, its phase, and what is known of its COMMIT.
#[derive(Debug, Default)]
pub struct RestoreState {
    phase: AtomicU8,
    /// The database the restore writes to; `None` outside a restore.
    target: Mutex<Option<String>>,
    /// Set when the feeder has handed its COMMIT to psql: everything was read and checked, and
    /// psql may send COMMIT at any moment (it prints [`COMMIT_MARK`] first).
    commit_written: AtomicBool,
    /// Whether, after the children were stopped, every stderr reader finished: then the phase
    /// holds everything psql printed, and the absence of [`COMMIT_MARK`] proves that COMMIT was
    /// never sent.
    stderr_drained: AtomicBool,
}

impl RestoreState {
    /// A restore into `db` starts: interruption messages describe the target from now on.
    pub fn begins(&self, db: &str) {
        *self.target.lock().unwrap_or_else(PoisonError::into_inner) = Some(db.to_string());
        self.set_phase(RestorePhase::Untouched);
    }

    /// Records how far the restore has gone.
    pub fn set_phase(&self, phase: RestorePhase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
    }

    /// How far the restore has gone.
    #[must_use]
    pub fn phase(&self) -> RestorePhase {
        match self.phase.load(Ordering::SeqCst) {
            1 => RestorePhase::Transaction,
            2 => RestorePhase::Parallel,
            3 => RestorePhase::CommitSent,
            4 => RestorePhase::Committed,
            5 => RestorePhase::Finished,
            _ => RestorePhase::Untouched,
        }
    }

    /// The feeder hands COMMIT to psql now.
    pub fn set_commit_written(&self) {
        self.commit_written.store(true, Ordering::SeqCst);
    }

    /// Whether the feeder handed COMMIT to psql.
    #[must_use]
    pub fn commit_written(&self) -> bool {
        self.commit_written.load(Ordering::SeqCst)
    }

    /// Records whether every stderr reader finished after the children were stopped.
    pub fn set_stderr_drained(&self, drained: bool) {
        self.stderr_drained.store(drained, Ordering::SeqCst);
    }

    /// psql printed [`COMMIT_MARK`]: it sends COMMIT now.
    pub fn commit_mark_seen(&self) {
        if self.phase() == RestorePhase::Transaction {
            self.set_phase(RestorePhase::CommitSent);
        }
    }

    fn target(&self) -> Option<String> {
        self.target
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// True while a restore's COMMIT waits for the server's answer: a first signal then waits for
    /// that answer instead of abandoning it.
    #[must_use]
    pub fn commit_pending(&self) -> bool {
        self.target().is_some() && self.phase() == RestorePhase::CommitSent
    }

    /// Whether COMMIT was handed to psql but psql's word that it sends it has not been read
    /// (yet): psql may still be running the last statements, or its stderr may not have been read.
    #[must_use]
    pub fn commit_handed_over(&self) -> bool {
        self.target().is_some()
            && self.phase() == RestorePhase::Transaction
            && self.commit_written()
    }

    /// Whether the outcome of the restore's transaction is not known: COMMIT was sent, or it was
    /// handed to psql and we could not read all that psql printed.
    fn commit_outcome_unknown(&self) -> bool {
        match self.phase() {
            RestorePhase::CommitSent => true,
            RestorePhase::Transaction => {
                self.commit_written() && !self.stderr_drained.load(Ordering::SeqCst)
            }
            _ => false,
        }
    }

    /// The error for an interruption by `sig`. During a restore it says what is known about the
    /// target at that moment; otherwise which complete backups (`kept`) stay, or that nothing was
    /// kept.
    #[must_use]
    pub fn interrupted_error(&self, sig: i32, kept: &[std::path::PathBuf]) -> Error {
        let (kind, what) = if sig == libc::SIGTERM {
            (Kind::Terminated, "terminated (SIGTERM)")
        } else {
            (Kind::Interrupted, "interrupted (Ctrl-C)")
        };
        let Some(db) = self.target() else {
            return match kept {
                [] => Error::new(kind, format!("{what}; nothing was kept")),
                [one] => Error::new(
                    kind,
                    format!(
                        "{what} after the backup {} was complete; it is kept",
                        one.display()
                    ),
                ),
                many => Error::new(
                    kind,
                    format!(
                        "{what} after {} backups were complete ({}); they are kept",
                        many.len(),
                        many.iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            };
        };
        let unknown = self.commit_outcome_unknown();
        match self.phase() {
            RestorePhase::Untouched => Error::new(
                kind,
                format!("{what} before the restore changed anything: database {db:?} is as it was"),
            ),
            RestorePhase::Transaction if unknown => Error::new(
                kind,
                format!(
                    "{what} after the restore's COMMIT was handed to psql: whether database {db:?} was restored is unknown"
                ),
            )
            .hint(unknown_outcome_hint(&db)),
            RestorePhase::Transaction => Error::new(
                kind,
                format!(
                    "{what}; the restore's transaction was never committed, so the server rolls it back: database {db:?} is as it was"
                ),
            ),
            RestorePhase::Parallel => Error::new(
                kind,
                format!(
                    "{what} during a parallel restore (--jobs): database {db:?} may be partly restored"
                ),
            )
            .hint(
                "restore again and let it finish (without --jobs it runs in one transaction: all or nothing), or drop and recreate the database and restore into it",
            ),
            RestorePhase::CommitSent => Error::new(
                kind,
                format!(
                    "{what} after the restore's COMMIT was sent and before the server answered: whether database {db:?} was restored is unknown"
                ),
            )
            .hint(unknown_outcome_hint(&db)),
            RestorePhase::Committed => Error::new(
                kind,
                format!(
                    "{what} while the server committed the restore; it answered that the COMMIT succeeded: database {db:?} is restored"
                ),
            ),
            RestorePhase::Finished => Error::new(
                kind,
                format!(
                    "{what} after the restore was complete, during the checks that follow it: database {db:?} is restored"
                ),
            )
            .hint("run `aos-backup validate` on it for the consistency checks that were cut short"),
        }
    }
}

/// How to find out whether a COMMIT whose answer we did not see went through.
fn unknown_outcome_hint(db: &str) -> String {
    format!(
        "the server completes or rolls back that COMMIT on its own: wait until `SELECT pid, state, wait_event FROM pg_stat_activity WHERE datname = '{}'` shows no session of the restore, then look at the tables (or restore again)",
        db.replace('\'', "''")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_restore_an_interruption_kept_nothing() {
        let s = RestoreState::default();
        assert!(s
            .interrupted_error(libc::SIGINT, &[])
            .message
            .contains("nothing was kept"));
        assert_eq!(
            s.interrupted_error(libc::SIGTERM, &[]).kind,
            Kind::Terminated
        );
    }

    #[test]
    fn the_message_follows_the_phase() {
        let s = RestoreState::default();
        s.begins("shop");
        assert!(s
            .interrupted_error(libc::SIGINT, &[])
            .message
            .contains("as it was"));
        s.set_phase(RestorePhase::Transaction);
        assert!(s
            .interrupted_error(libc::SIGINT, &[])
            .message
            .contains("rolls it back"));
        s.set_commit_written();
        assert!(s.commit_handed_over());
        assert!(s
            .interrupted_error(libc::SIGINT, &[])
            .message
            .contains("unknown"));
        s.commit_mark_seen();
        assert!(s.commit_pending());
        s.set_phase(RestorePhase::Committed);
        assert!(s
            .interrupted_error(libc::SIGINT, &[])
            .message
            .contains("is restored"));
        s.set_phase(RestorePhase::Finished);
        let after = s.interrupted_error(libc::SIGINT, &[]);
        assert!(after
            .message
            .contains("during the checks that follow it: database \"shop\" is restored"));
    }
}
