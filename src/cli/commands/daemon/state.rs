//! What the daemon remembers across restarts, so that a slot missed while it was down runs once
//! on start: `.aos-backup.daemon.json` in the backup folder (the backup job's state, and the
//! drill job's), replaced atomically after each run.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The state file's name inside the backup folder.
pub const STATE_FILE: &str = ".aos-backup.daemon.json";

/// The state of one of the daemon's jobs (backups, drills).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobState {
    /// Every slot up to this time was run, skipped, or came before the daemon's first start.
    pub handled_until: DateTime<Utc>,
    /// The slot the last run was for (the first missed one when it caught up).
    pub last_slot: Option<DateTime<Utc>>,
    /// When the last run started.
    pub last_run: Option<DateTime<Utc>>,
    /// How it ended: `success`, `failed` or `skipped`.
    pub last_outcome: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    backup: Option<JobState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drill: Option<JobState>,
}

/// The state file of one backup folder.
#[derive(Debug)]
pub struct State {
    path: PathBuf,
    /// The backup job's state.
    pub backup: JobState,
    /// The drill job's state.
    pub drill: JobState,
}

impl JobState {
    /// A job whose slots before `now` count as handled.
    fn fresh(now: DateTime<Utc>) -> JobState {
        JobState {
            handled_until: now,
            last_slot: None,
            last_run: None,
            last_outcome: None,
        }
    }

    /// The state after a run for `slot`, started at `started`, that ended as `outcome` at
    /// `ended`: the slots that passed meanwhile are handled too (runs never queue up).
    fn after(
        slot: DateTime<Utc>,
        started: DateTime<Utc>,
        ended: DateTime<Utc>,
        outcome: &str,
    ) -> JobState {
        JobState {
            handled_until: ended.max(slot),
            last_slot: Some(slot),
            last_run: Some(started),
            last_outcome: Some(outcome.to_string()),
        }
    }
}

impl State {
    /// Reads the state in `dir`. Without one (a first start, or a file that cannot be read,
    /// which is said), the slots before `now` count as handled, and that is written down, so
    /// that a slot missed before the first run is caught up after a restart.
    pub fn open(dir: &Path, now: DateTime<Utc>) -> State {
        let path = dir.join(STATE_FILE);
        let file = read(&path);
        let known = file.backup.is_some() && file.drill.is_some();
        let state = State {
            path,
            backup: file.backup.unwrap_or_else(|| JobState::fresh(now)),
            drill: file.drill.unwrap_or_else(|| JobState::fresh(now)),
        };
        if !known {
            state.save();
        }
        state
    }

    /// Records a run for `slot`, started at `started`, that ended as `outcome` at `ended`: the
    /// slots that passed meanwhile are handled too (runs never queue up), and saves.
    pub fn record(
        &mut self,
        slot: DateTime<Utc>,
        started: DateTime<Utc>,
        ended: DateTime<Utc>,
        outcome: &str,
    ) {
        self.backup = JobState::after(slot, started, ended, outcome);
        self.save();
    }

    /// Records a drill, as [`State::record`] does a backup.
    pub fn record_drill(
        &mut self,
        slot: DateTime<Utc>,
        started: DateTime<Utc>,
        ended: DateTime<Utc>,
        outcome: &str,
    ) {
        self.drill = JobState::after(slot, started, ended, outcome);
        self.save();
    }

    /// Writes the state; a failure is logged (the daemon goes on: at worst a slot runs again
    /// after a restart).
    fn save(&self) {
        if let Err(e) = write(&self.path, &self.backup, &self.drill) {
            tracing::warn!(
                "cannot record the daemon's state in {}: {e:#}; after a restart, a slot may run again",
                self.path.display()
            );
        }
    }
}

/// The jobs' states in `path`; none when there is none or it cannot be used (said).
fn read(path: &Path) -> File {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return File::default(),
        Err(e) => {
            tracing::warn!(
                "cannot read the daemon's state {}: {e}; starting afresh",
                path.display()
            );
            return File::default();
        }
    };
    match serde_json::from_slice::<File>(&text) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(
                "the daemon's state {} is damaged ({e}); starting afresh",
                path.display()
            );
            File::default()
        }
    }
}

/// Replaces `path` atomically with the state (private: it names the folder's database).
fn write(path: &Path, backup: &JobState, drill: &JobState) -> Result<()> {
    let file = File {
        backup: Some(backup.clone()),
        drill: Some(drill.clone()),
    };
    let text = serde_json::to_vec_pretty(&file)?;
    crate::runtime::fsutil::replace_atomic(path, &text, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_first_start_is_recorded_and_a_run_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path(), at("2026-01-01T10:00:00Z"));
        assert_eq!(state.backup.handled_until, at("2026-01-01T10:00:00Z"));
        let mut state = State::open(dir.path(), at("2026-01-05T10:00:00Z"));
        assert_eq!(
            state.backup.handled_until,
            at("2026-01-01T10:00:00Z"),
            "read back, not reset"
        );
        state.record(
            at("2026-01-02T03:00:00Z"),
            at("2026-01-05T10:00:00Z"),
            at("2026-01-05T10:00:05Z"),
            "success",
        );
        let state = State::open(dir.path(), at("2026-01-06T00:00:00Z"));
        assert_eq!(state.backup.handled_until, at("2026-01-05T10:00:05Z"));
        assert_eq!(state.backup.last_outcome.as_deref(), Some("success"));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [STATE_FILE], "no temp file left");
    }

    #[test]
    fn the_drill_job_is_remembered_beside_the_backup_job() {
        let dir = tempfile::tempdir().unwrap();
        let old = serde_json::json!({"backup": {"handled_until": "2026-01-01T10:00:00Z",
            "last_slot": null, "last_run": null, "last_outcome": null}});
        std::fs::write(dir.path().join(STATE_FILE), old.to_string()).unwrap();
        let mut state = State::open(dir.path(), at("2026-01-03T00:00:00Z"));
        assert_eq!(state.backup.handled_until, at("2026-01-01T10:00:00Z"));
        assert_eq!(state.drill.handled_until, at("2026-01-03T00:00:00Z"));
        state.record_drill(
            at("2026-01-04T04:00:00Z"),
            at("2026-01-04T04:00:00Z"),
            at("2026-01-04T04:01:00Z"),
            "passed",
        );
        let state = State::open(dir.path(), at("2026-01-05T00:00:00Z"));
        assert_eq!(state.drill.handled_until, at("2026-01-04T04:01:00Z"));
        assert_eq!(state.drill.last_outcome.as_deref(), Some("passed"));
        assert_eq!(state.backup.handled_until, at("2026-01-01T10:00:00Z"));
    }

    #[test]
    fn a_damaged_state_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "{not json").unwrap();
        let state = State::open(dir.path(), at("2026-01-01T10:00:00Z"));
        assert_eq!(state.backup.handled_until, at("2026-01-01T10:00:00Z"));
    }
}
