//! What happened, said once: an [`Event`] that every destination renders its own way (a short
//! chat message, an email, the webhook's JSON), so that all of them tell the same story.

use crate::archive::meta::Meta;
use crate::error::Error;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A backup was made.
    BackupSucceeded,
    /// A backup failed.
    BackupFailed,
    /// A restore finished.
    RestoreDone,
    /// A restore failed.
    RestoreFailed,
    /// A restore drill passed.
    DrillPassed,
    /// A restore drill failed.
    DrillFailed,
    /// An off-site destination has no verified copy of a backup.
    OffsiteMissing,
    /// A new backup shrank sharply against the previous one.
    SuspectBackup,
    /// Prune deleted backups.
    PruneDeleted,
}

impl EventKind {
    /// The name in the webhook's `event` field.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            EventKind::BackupSucceeded => "backup.succeeded",
            EventKind::BackupFailed => "backup.failed",
            EventKind::RestoreDone => "restore.done",
            EventKind::RestoreFailed => "restore.failed",
            EventKind::DrillPassed => "drill.passed",
            EventKind::DrillFailed => "drill.failed",
            EventKind::OffsiteMissing => "offsite.missing",
            EventKind::SuspectBackup => "backup.suspect",
            EventKind::PruneDeleted => "prune.deleted",
        }
    }

    /// Whether this is bad news (sent with `on=failure`, the default).
    #[must_use]
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            EventKind::BackupFailed
                | EventKind::RestoreFailed
                | EventKind::DrillFailed
                | EventKind::OffsiteMissing
                | EventKind::SuspectBackup
        )
    }

    /// The webhook's `status` field.
    #[must_use]
    pub fn status(self) -> &'static str {
        match self {
            EventKind::SuspectBackup => "warning",
            k if k.is_failure() => "failure",
            _ => "success",
        }
    }

    /// The first line of a chat message.
    #[must_use]
    pub fn title(self) -> &'static str {
        match self {
            EventKind::BackupSucceeded => "Database Backup",
            EventKind::BackupFailed => "Database Backup FAILED",
            EventKind::RestoreDone => "Database Restore",
            EventKind::RestoreFailed => "Database Restore FAILED",
            EventKind::DrillPassed => "Restore Drill passed",
            EventKind::DrillFailed => "Restore Drill FAILED",
            EventKind::OffsiteMissing => "Off-site Copy MISSING",
            EventKind::SuspectBackup => "Suspect Backup",
            EventKind::PruneDeleted => "Backups Pruned",
        }
    }
}

/// One thing to tell people, with what is known about it (unknown fields stay `None`).
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub database: Option<String>,
    /// This machine's name.
    pub host: String,
    pub backup_id: Option<String>,
    /// The backup's file name.
    pub file: Option<String>,
    /// Where the backup is (for "where to find it" when it is not delivered).
    pub path: Option<PathBuf>,
    pub size_bytes: Option<u64>,
    pub tables: Option<u64>,
    pub duration: Option<Duration>,
    pub sha256: Option<String>,
    /// Whether the backup is encrypted.
    pub encrypted: Option<bool>,
    /// The off-site destinations (by name) the event concerns.
    pub destinations: Vec<String>,
    pub error: Option<String>,
    pub hint: Option<String>,
    /// The exit code the operation ends with.
    pub exit_code: Option<i32>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    /// More lines: the pruned backups, the suspect reason, the warnings.
    pub details: Vec<String>,
}

impl Event {
    /// An event of `kind` about `database`, finished now, nothing else known yet.
    #[must_use]
    pub fn new(kind: EventKind, database: Option<&str>) -> Event {
        Event {
            kind,
            database: database.map(crate::runtime::redact::sanitize),
            host: this_host(),
            backup_id: None,
            file: None,
            path: None,
            size_bytes: None,
            tables: None,
            duration: None,
            sha256: None,
            encrypted: None,
            destinations: Vec::new(),
            error: None,
            hint: None,
            exit_code: None,
            started_at: None,
            finished_at: Utc::now(),
            details: Vec::new(),
        }
    }

    /// A backup that was made.
    #[must_use]
    pub fn backup_succeeded(meta: &Meta, path: &Path) -> Event {
        Event::new(EventKind::BackupSucceeded, Some(&meta.database)).with_backup(meta, path)
    }

    /// A backup of `database` (when known) that failed with `error`.
    #[must_use]
    pub fn backup_failed(database: Option<&str>, error: &Error) -> Event {
        Event::new(EventKind::BackupFailed, database).with_error(error)
    }

    /// A restore drill of the backup `meta` that passed.
    #[must_use]
    pub fn drill_passed(meta: &Meta, path: &Path) -> Event {
        Event::new(EventKind::DrillPassed, Some(&meta.database)).with_backup(meta, path)
    }

    /// A restore drill of `database` that failed with `error`.
    #[must_use]
    pub fn drill_failed(database: Option<&str>, error: &Error) -> Event {
        Event::new(EventKind::DrillFailed, database).with_error(error)
    }

    /// The backup's facts from its sidecar.
    #[must_use]
    pub fn with_backup(mut self, meta: &Meta, path: &Path) -> Event {
        self.backup_id = Some(meta.id.clone());
        self.file = Some(meta.file.clone());
        self.path = Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
        self.size_bytes = Some(meta.size_bytes);
        self.tables = Some(meta.tables);
        self.duration = Some(Duration::from_millis(meta.duration_ms));
        self.sha256 = Some(meta.sha256.clone());
        self.encrypted = Some(meta.is_encrypted());
        self.started_at = Some(meta.started_at);
        self.finished_at = meta.finished_at;
        self
    }

    /// What failed, the hint and the exit code, secrets masked.
    #[must_use]
    pub fn with_error(mut self, error: &Error) -> Event {
        let scrub = crate::runtime::redact::scrub;
        self.error = Some(scrub(&error.message));
        self.hint = error.hint.as_deref().map(scrub);
        self.exit_code = Some(error.kind.exit_code().code());
        self
    }

    /// Adds a line of detail.
    #[must_use]
    pub fn detail(mut self, line: impl Into<String>) -> Event {
        self.details
            .push(crate::runtime::redact::scrub(&line.into()));
        self
    }

    /// The short chat message (seed 002's summary): a title, then one fact a line.
    #[must_use]
    pub fn text(&self) -> String {
        let mut lines = vec![self.kind.title().to_string()];
        let mut add = |label: &str, value: Option<String>| {
            if let Some(v) = value {
                lines.push(format!("{label}: {v}"));
            }
        };
        add("App", self.database.clone());
        if self.kind.is_failure() {
            add("Host", Some(self.host.clone()));
        }
        add("Size", self.size_bytes.map(decimal_size));
        add("Tables", self.tables.map(|t| t.to_string()));
        add(
            "Time",
            self.duration.map(crate::runtime::units::human_duration),
        );
        add("Error", self.error.clone());
        add("Hint", self.hint.clone());
        add(
            "Exit code",
            self.exit_code.filter(|c| *c != 0).map(|c| c.to_string()),
        );
        if !self.destinations.is_empty() {
            add("Destinations", Some(self.destinations.join(", ")));
        }
        lines.extend(self.details.iter().cloned());
        lines.join("\n")
    }

    /// The one-line subject of an email.
    #[must_use]
    pub fn subject(&self) -> String {
        let db = self.database.as_deref().unwrap_or("(unknown database)");
        format!("{}: {db} on {}", self.kind.title(), self.host)
    }

    /// The webhook's JSON.
    #[must_use]
    pub fn json(&self) -> Value {
        json!({
            "event": self.kind.name(),
            "status": self.kind.status(),
            "database": self.database,
            "host": self.host,
            "backup_id": self.backup_id,
            "file": self.file,
            "path": self.path.as_ref().map(|p| p.display().to_string()),
            "size_bytes": self.size_bytes,
            "size": self.size_bytes.map(decimal_size),
            "tables": self.tables,
            "duration_seconds": self.duration.map(|d| d.as_secs_f64()),
            "sha256": self.sha256,
            "encrypted": self.encrypted,
            "destinations": self.destinations,
            "error": self.error,
            "hint": self.hint,
            "exit_code": self.exit_code,
            "started_at": self.started_at.map(|t| t.to_rfc3339()),
            "finished_at": self.finished_at.to_rfc3339(),
            "details": self.details,
            "message": self.text(),
            "tool": "aos-backup",
            "tool_version": env!("CARGO_PKG_VERSION"),
        })
    }

    /// The lines a healthchecks-style failure ping carries: the exit code, then the error and
    /// hint (the end of what the run logged about its failure).
    #[must_use]
    pub fn log_tail(&self) -> String {
        let mut lines = vec![format!("exit code {}", self.exit_code.unwrap_or(1))];
        lines.extend(self.error.iter().map(|e| format!("error: {e}")));
        lines.extend(self.hint.iter().map(|h| format!("hint: {h}")));
        lines.extend(self.details.iter().cloned());
        lines.join("\n")
    }
}

/// A size as seed 002 shows it: `2.34 MB` (powers of 1000).
#[must_use]
pub fn decimal_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    #[allow(clippy::cast_precision_loss)]
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

/// This machine's host name (`unknown` when it cannot be read).
fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_text_is_seed_002s_summary() {
        let mut e = Event::new(EventKind::BackupSucceeded, Some("tarot"));
        e.size_bytes = Some(2_340_000);
        e.tables = Some(24);
        e.duration = Some(Duration::from_millis(3200));
        assert_eq!(
            e.text(),
            "Database Backup\nApp: tarot\nSize: 2.34 MB\nTables: 24\nTime: 3.2s"
        );
        let f = Event::backup_failed(
            Some("tarot"),
            &Error::new(crate::error::Kind::Connection, "cannot connect").hint("start it"),
        );
        let text = f.text();
        assert!(
            text.starts_with("Database Backup FAILED\nApp: tarot\nHost: "),
            "{text}"
        );
        assert!(
            text.contains("Error: cannot connect\nHint: start it\nExit code: 7"),
            "{text}"
        );
        assert_eq!(f.json()["status"], "failure");
        assert_eq!(f.json()["exit_code"], 7);
        assert_eq!(decimal_size(512), "512 B");
    }
}
