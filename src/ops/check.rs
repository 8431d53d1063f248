//! Check: whether each database in the backup folder (or in its database subfolders) could be
//! restored from a backup today (its newest trusted backup recent enough, its last backup big
//! enough and not suspect, its last drill not failed), as a list of findings per database with
//! Nagios-style statuses. The operation behind `aos-backup check`.

use super::Context;
use crate::archive::drill::{LastDrill, Outcome as DrillOutcome, Summary as DrillSummary};
use crate::archive::naming;
use crate::catalog::{self, Entry, Status};
use crate::runtime::units::{compact_duration, human_bytes};
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a check ended, in the Nagios plugin convention: the status, and `check`'s exit code.
/// These codes are `check`'s own, apart from the other commands' ([`crate::ExitCode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CheckStatus {
    /// Every database checked is fine.
    Ok = 0,
    /// Something needs a look, not yet an emergency.
    Warning = 1,
    /// A database has no usable recent backup.
    Critical = 2,
    /// The check itself could not run.
    Unknown = 3,
}

impl CheckStatus {
    /// Every status, in the order of their codes.
    pub const ALL: &'static [CheckStatus] = &[
        CheckStatus::Ok,
        CheckStatus::Warning,
        CheckStatus::Critical,
        CheckStatus::Unknown,
    ];

    /// `check`'s exit code for this status.
    #[must_use]
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The word Nagios shows: `OK`, `WARNING`, `CRITICAL`, `UNKNOWN`.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            CheckStatus::Ok => "OK",
            CheckStatus::Warning => "WARNING",
            CheckStatus::Critical => "CRITICAL",
            CheckStatus::Unknown => "UNKNOWN",
        }
    }

    /// What the exit code means, in one line (as in `check --help` and the README).
    #[must_use]
    pub fn meaning(self) -> &'static str {
        match self {
            CheckStatus::Ok => "OK: every database checked has a complete backup younger than --max-age, and its last backup is neither suspect nor below --min-size",
            CheckStatus::Warning => "WARNING: a database's last complete backup is --max-age old or older, or its last backup is suspect, or its last drill restored the backup but failed a check",
            CheckStatus::Critical => "CRITICAL: a database has no complete backup, or its last one is --crit-age old or older (default: twice --max-age), or its last backup is smaller than --min-size, or its last drill could not restore its backup; or the folder holds no backup at all",
            CheckStatus::Unknown => "UNKNOWN: the check could not run (the backup folder cannot be read, a bad option or configuration, an interruption)",
        }
    }

    /// The table of `check --help`: one code a line, wrapped to 80 columns.
    #[must_use]
    pub fn help_table() -> String {
        crate::exit::code_table(Self::ALL.iter().map(|s| (s.code(), s.meaning())))
    }
}

/// What to check, against which thresholds.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Only this database; `None`: every database with complete backups in the folder or its
    /// database subfolders.
    pub database: Option<String>,
    /// A last complete backup this old or older is a warning.
    pub warn_age: Duration,
    /// A last complete backup this old or older is critical.
    pub crit_age: Duration,
    /// A last backup smaller than this many bytes is critical; 0 turns the check off.
    pub min_size: u64,
    /// A most recent drill this old or older, or none, is a warning; `None`: drills' ages are
    /// not checked.
    pub max_drill_age: Option<Duration>,
}

/// What a finding is about. Each is one line of the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Probe {
    /// The age of the newest complete backup that is not suspect.
    Age,
    /// The size of the last complete backup, against the minimum.
    Size,
    /// Whether the last complete backup is suspect (it shrank sharply).
    Suspect,
    /// How the database's most recent drill ended (only when one was recorded).
    Drill,
}

impl Probe {
    /// Its name in the details and in JSON: `age`, `size`, `suspect`, `drill`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Probe::Age => "age",
            Probe::Size => "size",
            Probe::Suspect => "suspect",
            Probe::Drill => "drill",
        }
    }
}

/// One thing checked about a database, and how it came out.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What was checked.
    pub probe: Probe,
    /// How it came out.
    pub status: CheckStatus,
    /// What was found, in words (database names and reasons sanitized).
    pub message: String,
}

/// A backup as the check sees it.
#[derive(Debug, Clone, Serialize)]
pub struct BackupSeen {
    /// Its id.
    pub id: String,
    /// When it was made (its sidecar's start time).
    pub time: DateTime<Utc>,
    /// Seconds between `time` and "now".
    pub age_seconds: i64,
    /// Bytes stored.
    pub size_bytes: u64,
    /// Why it is suspect, if it is.
    pub suspect: Option<String>,
}

/// One database's findings.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseCheck {
    /// The database, as its backups' sidecars name it.
    pub database: String,
    /// Its newest complete backup (suspect or not); `None`: it has none.
    pub last: Option<BackupSeen>,
    /// Its newest complete backup that is not suspect, which the age is measured on.
    pub last_trusted: Option<BackupSeen>,
    /// What was checked, in order.
    pub findings: Vec<Finding>,
}

impl DatabaseCheck {
    /// The worst status among the findings.
    #[must_use]
    pub fn status(&self) -> CheckStatus {
        self.findings
            .iter()
            .map(|f| f.status)
            .max()
            .unwrap_or(CheckStatus::Ok)
    }
}

/// What [`check`] found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The backup folder.
    pub dir: PathBuf,
    /// Whether the folder exists (a missing one holds no backup).
    pub dir_exists: bool,
    /// "Now", which ages are measured against.
    pub now: DateTime<Utc>,
    /// The options the check ran with.
    pub options: CheckOptions,
    /// One per database checked, sorted by name; empty when the folder holds no complete backup
    /// and no database was named.
    pub databases: Vec<DatabaseCheck>,
}

impl CheckReport {
    /// The worst status among the databases; critical when there is none to check.
    #[must_use]
    pub fn status(&self) -> CheckStatus {
        self.databases
            .iter()
            .map(DatabaseCheck::status)
            .max()
            .unwrap_or(CheckStatus::Critical)
    }
}

/// Checks the backups in the folder and in its database subfolders (where `backup
/// --all-databases` and the config file's list put them), as `list --all-databases` sees them.
///
/// # Errors
/// A folder cannot be read (a missing folder is an empty one: nothing to restore from).
pub fn check(ctx: &Context, options: &CheckOptions) -> Result<CheckReport> {
    let entries = scan_all(&ctx.dir)?;
    let names = match &options.database {
        Some(db) => vec![db.clone()],
        None => catalog::databases(&entries),
    };
    let databases = names
        .into_iter()
        .map(|db| {
            let own = naming::database_folder(&db).map(|f| ctx.dir.join(f));
            let backups: Vec<&Entry> = entries
                .iter()
                .filter(|e| e.status == Status::Complete && belongs_to(e, &db, own.as_deref()))
                .filter(|e| !e.is_future(ctx.now) && e.time_mismatch().is_none())
                // A restore's safety backup does not stand in for the scheduled backups.
                .filter(|e| !e.is_safety_backup())
                .collect();
            // The most recent drill, also when prune has deleted the backup it drilled.
            let kept: Vec<LastDrill> = std::iter::once(ctx.dir.as_path())
                .chain(own.as_deref())
                .filter_map(|folder| crate::archive::drill::read_last(folder, &db))
                .collect();
            check_database(db, &backups, &kept, options, ctx.now)
        })
        .collect();
    Ok(CheckReport {
        dir: ctx.dir.clone(),
        dir_exists: ctx.dir.is_dir(),
        now: ctx.now,
        options: options.clone(),
        databases,
    })
}

/// The entries of `dir` and of each of its database subfolders, newest first.
fn scan_all(dir: &Path) -> Result<Vec<Entry>> {
    let mut entries = catalog::scan(dir)?;
    for folder in catalog::database_folders(dir)? {
        entries.extend(catalog::scan(&dir.join(folder))?);
    }
    entries.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name)));
    Ok(entries)
}

/// Whether `e` is a backup of `database`: its sidecar names it, or it lies in the database's
/// own subfolder `own` (the config file's list names that folder, whatever the server calls the
/// database).
fn belongs_to(e: &Entry, database: &str, own: Option<&Path>) -> bool {
    e.database() == Some(database) || (own.is_some() && e.path.parent() == own)
}

/// The findings for one database, from its complete backups (newest first, trusted dates only)
/// and the most recent drills its folders keep.
fn check_database(
    database: String,
    backups: &[&Entry],
    kept: &[LastDrill],
    options: &CheckOptions,
    now: DateTime<Utc>,
) -> DatabaseCheck {
    let last = backups.first().map(|e| seen(e, now));
    let last_trusted = backups
        .iter()
        .find(|e| suspect_reason(e).is_none())
        .map(|e| seen(e, now));
    let mut findings = vec![age_finding(last.as_ref(), last_trusted.as_ref(), options)];
    if let Some(last) = &last {
        findings.push(suspect_finding(last));
        if options.min_size > 0 {
            findings.push(size_finding(last, options.min_size));
        }
    }
    let drills = backups
        .iter()
        .filter_map(|e| {
            let summary = crate::archive::drill::read_summary(&e.path)?;
            Some((e.id.clone().unwrap_or_else(|| e.name.clone()), summary))
        })
        .chain(kept.iter().map(|k| (k.backup.clone(), k.summary.clone())));
    match (
        drills.max_by_key(|(_, d)| d.drilled_at),
        options.max_drill_age,
    ) {
        (Some((id, drill)), max_age) => findings.push(drill_finding(&id, &drill, now, max_age)),
        (None, Some(max_age)) => findings.push(Finding {
            probe: Probe::Drill,
            status: CheckStatus::Warning,
            message: format!(
                "no drill recorded (warning after {})",
                compact_duration(max_age.as_secs())
            ),
        }),
        (None, None) => {}
    }
    DatabaseCheck {
        database,
        last,
        last_trusted,
        findings,
    }
}

fn suspect_reason(e: &Entry) -> Option<String> {
    e.meta.as_ref()?.suspect.as_ref().map(|s| s.reason.clone())
}

fn seen(e: &Entry, now: DateTime<Utc>) -> BackupSeen {
    BackupSeen {
        id: e.id.clone().unwrap_or_else(|| e.name.clone()),
        time: e.time,
        age_seconds: (now - e.time).num_seconds(),
        size_bytes: e.size,
        suspect: suspect_reason(e).map(|r| crate::runtime::redact::sanitize(&r)),
    }
}

/// The age of the newest trusted backup against the thresholds.
fn age_finding(
    last: Option<&BackupSeen>,
    trusted: Option<&BackupSeen>,
    options: &CheckOptions,
) -> Finding {
    let finding = |status, message| Finding {
        probe: Probe::Age,
        status,
        message,
    };
    let Some(t) = trusted else {
        let message = match last {
            Some(_) => "no complete backup that is not suspect".to_string(),
            None => "no complete backup".to_string(),
        };
        return finding(CheckStatus::Critical, message);
    };
    let age = u64::try_from(t.age_seconds).unwrap_or(0);
    let (warn, crit) = (options.warn_age.as_secs(), options.crit_age.as_secs());
    let (status, limit) = if age >= crit {
        (
            CheckStatus::Critical,
            format!("critical after {}", compact_duration(crit)),
        )
    } else if age >= warn {
        (
            CheckStatus::Warning,
            format!("warning after {}", compact_duration(warn)),
        )
    } else {
        (
            CheckStatus::Ok,
            format!("warning after {}", compact_duration(warn)),
        )
    };
    finding(
        status,
        format!(
            "last complete backup {} is {} old ({limit})",
            t.id,
            compact_duration(age)
        ),
    )
}

fn suspect_finding(last: &BackupSeen) -> Finding {
    let (status, message) = match &last.suspect {
        Some(reason) => (
            CheckStatus::Warning,
            format!("last backup {} is suspect: {reason}", last.id),
        ),
        None => (
            CheckStatus::Ok,
            format!("last backup {} is not suspect", last.id),
        ),
    };
    Finding {
        probe: Probe::Suspect,
        status,
        message,
    }
}

/// How the database's most recent drill (of backup `id`) ended: a backup that did not restore is
/// critical, a restore that failed a check is a warning, and so is a drill `max_age` old or
/// older.
fn drill_finding(
    id: &str,
    drill: &DrillSummary,
    now: DateTime<Utc>,
    max_age: Option<Duration>,
) -> Finding {
    // A few minutes ahead is clock noise between hosts; more is a clock to look at.
    let future = drill.drilled_at > now + chrono::Duration::minutes(5);
    let age = u64::try_from((now - drill.drilled_at).num_seconds()).unwrap_or(0);
    let ago = compact_duration(age);
    let (status, how) = match drill.outcome {
        DrillOutcome::Passed => (
            CheckStatus::Ok,
            match drill.rto_ms {
                Some(ms) => format!(
                    "passed (RTO {})",
                    crate::runtime::units::human_duration(Duration::from_millis(ms))
                ),
                None => "passed".to_string(),
            },
        ),
        DrillOutcome::CheckFailed => (
            CheckStatus::Warning,
            "restored it but failed a check (row counts, validate or --check-sql)".to_string(),
        ),
        DrillOutcome::RestoreFailed => (CheckStatus::Critical, "could not restore it".to_string()),
    };
    let mut message = format!("last drill, {ago} ago, of backup {id}: {how}");
    let mut status = status;
    if future {
        status = status.max(CheckStatus::Warning);
        message = format!(
            "last drill, dated {} (in the future: check the clocks), of backup {id}: {how}",
            drill.drilled_at.format("%Y-%m-%d %H:%M UTC")
        );
    } else if let Some(max) = max_age {
        let limit = compact_duration(max.as_secs());
        if age >= max.as_secs() {
            status = status.max(CheckStatus::Warning);
            message.push_str(&format!("; older than {limit}"));
        } else {
            message.push_str(&format!(" (warning after {limit})"));
        }
    }
    Finding {
        probe: Probe::Drill,
        status,
        message,
    }
}

fn size_finding(last: &BackupSeen, min_size: u64) -> Finding {
    let status = if last.size_bytes < min_size {
        CheckStatus::Critical
    } else {
        CheckStatus::Ok
    };
    let relation = if status == CheckStatus::Ok {
        "at least"
    } else {
        "below"
    };
    Finding {
        probe: Probe::Size,
        status,
        message: format!(
            "last backup {} is {} ({} bytes), {relation} the minimum {} ({min_size} bytes)",
            last.id,
            human_bytes(last.size_bytes),
            last.size_bytes,
            human_bytes(min_size)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> CheckOptions {
        CheckOptions {
            database: None,
            warn_age: Duration::from_secs(26 * 3600),
            crit_age: Duration::from_secs(52 * 3600),
            min_size: 0,
            max_drill_age: None,
        }
    }

    fn backup(hours: i64, size: u64, suspect: bool) -> BackupSeen {
        BackupSeen {
            id: format!("b{hours}"),
            time: Utc::now(),
            age_seconds: hours * 3600,
            size_bytes: size,
            suspect: suspect.then(|| "it shrank".to_string()),
        }
    }

    #[test]
    fn age_is_ok_then_warning_then_critical() {
        for (hours, want) in [
            (3, CheckStatus::Ok),
            (25, CheckStatus::Ok),
            (26, CheckStatus::Warning),
            (51, CheckStatus::Warning),
            (52, CheckStatus::Critical),
        ] {
            let b = backup(hours, 10, false);
            let f = age_finding(Some(&b), Some(&b), &options());
            assert_eq!(f.status, want, "{hours}h: {}", f.message);
        }
        let f = age_finding(None, None, &options());
        assert_eq!(
            (f.status, f.message.as_str()),
            (CheckStatus::Critical, "no complete backup")
        );
        let b = backup(1, 10, true);
        assert_eq!(
            age_finding(Some(&b), None, &options()).status,
            CheckStatus::Critical
        );
    }

    #[test]
    fn size_and_suspect_findings() {
        assert_eq!(
            size_finding(&backup(1, 999, false), 1000).status,
            CheckStatus::Critical
        );
        assert_eq!(
            size_finding(&backup(1, 1000, false), 1000).status,
            CheckStatus::Ok
        );
        assert_eq!(
            suspect_finding(&backup(1, 1, true)).status,
            CheckStatus::Warning
        );
        assert_eq!(
            suspect_finding(&backup(1, 1, false)).status,
            CheckStatus::Ok
        );
    }

    #[test]
    fn a_drill_that_did_not_restore_is_critical_and_a_failed_check_a_warning() {
        let now = Utc::now();
        let drill = |outcome| DrillSummary {
            drilled_at: now - chrono::Duration::hours(3),
            outcome,
            rto_ms: Some(90_000),
        };
        let hours = |h: u64| Some(Duration::from_secs(h * 3600));
        let f = drill_finding("b1", &drill(DrillOutcome::Passed), now, None);
        assert_eq!(f.status, CheckStatus::Ok);
        assert_eq!(
            f.message,
            "last drill, 3h ago, of backup b1: passed (RTO 1m30s)"
        );
        assert_eq!(
            drill_finding("b1", &drill(DrillOutcome::CheckFailed), now, None).status,
            CheckStatus::Warning
        );
        assert_eq!(
            drill_finding("b1", &drill(DrillOutcome::RestoreFailed), now, None).status,
            CheckStatus::Critical
        );
        // Dated in the future: a warning, whatever its age limit.
        let ahead = DrillSummary {
            drilled_at: now + chrono::Duration::hours(1),
            outcome: DrillOutcome::Passed,
            rto_ms: None,
        };
        let f = drill_finding("b1", &ahead, now, hours(1));
        assert_eq!(f.status, CheckStatus::Warning);
        assert!(f.message.contains("in the future"), "{}", f.message);
        // With a maximum age: a passed drill that old is a warning, a failed one stays as bad.
        let f = drill_finding("b1", &drill(DrillOutcome::Passed), now, hours(4));
        assert_eq!(f.status, CheckStatus::Ok, "{}", f.message);
        let f = drill_finding("b1", &drill(DrillOutcome::Passed), now, hours(3));
        assert_eq!(f.status, CheckStatus::Warning);
        assert!(f.message.ends_with("; older than 3h"), "{}", f.message);
        assert_eq!(
            drill_finding("b1", &drill(DrillOutcome::RestoreFailed), now, hours(1)).status,
            CheckStatus::Critical
        );
    }

    #[test]
    fn the_worst_status_wins_and_nothing_to_check_is_critical() {
        let report = |databases| CheckReport {
            dir: PathBuf::from("/b"),
            dir_exists: true,
            now: Utc::now(),
            options: options(),
            databases,
        };
        assert_eq!(report(vec![]).status(), CheckStatus::Critical);
        let db = |status| DatabaseCheck {
            database: "d".into(),
            last: None,
            last_trusted: None,
            findings: vec![Finding {
                probe: Probe::Age,
                status,
                message: String::new(),
            }],
        };
        assert_eq!(
            report(vec![db(CheckStatus::Ok), db(CheckStatus::Warning)]).status(),
            CheckStatus::Warning
        );
        let codes: Vec<i32> = CheckStatus::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3]);
    }
}
