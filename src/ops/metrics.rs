//! The Prometheus textfile (for node_exporter's textfile collector): what a run learnt about each
//! database, merged into the values the previous runs left in the file, and written atomically.
//! The file is its own state: each run reads it back and changes only what it knows.

use crate::runtime::units::compact_duration;
use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The operation a run carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// `backup`.
    Backup,
    /// `prune`, or the prune after a backup.
    Prune,
    /// `verify`.
    Verify,
    /// `restore`.
    Restore,
    /// `drill`, or the daemon's scheduled drill.
    Drill,
}

impl Operation {
    /// Its `operation` label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Backup => "backup",
            Operation::Prune => "prune",
            Operation::Verify => "verify",
            Operation::Restore => "restore",
            Operation::Drill => "drill",
        }
    }
}

/// What one run learnt about one database.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The database (the label `database`).
    pub database: String,
    /// What the run did to it.
    pub operation: Operation,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// How long the run took.
    pub duration: Duration,
    /// Whether it succeeded for this database.
    pub ok: bool,
    /// For a backup that was made: its size on disk.
    pub size_bytes: Option<u64>,
}

/// One metric family: its name and `# HELP` text.
struct Family {
    name: &'static str,
    help: &'static str,
}

const LAST_SUCCESS: Family = Family {
    name: "aos_backup_last_success_timestamp_seconds",
    help: "When the last successful run of this operation on this database ended (Unix time).",
};
const LAST_ATTEMPT: Family = Family {
    name: "aos_backup_last_attempt_timestamp_seconds",
    help: "When the last run of this operation on this database started (Unix time).",
};
const LAST_DURATION: Family = Family {
    name: "aos_backup_last_duration_seconds",
    help: "How long the last run of this operation on this database took.",
};
const LAST_STATUS: Family = Family {
    name: "aos_backup_last_status",
    help: "1 when the last run of this operation on this database succeeded, 0 when it failed.",
};
const LAST_SIZE: Family = Family {
    name: "aos_backup_last_size_bytes",
    help: "Size on disk of the last backup made of this database.",
};
const LAST_VERIFIED: Family = Family {
    name: "aos_backup_last_verified_timestamp_seconds",
    help: "When a verify of this database's backups last passed (Unix time).",
};
const LAST_DRILLED: Family = Family {
    name: "aos_backup_last_drilled_timestamp_seconds",
    help: "When a restore drill of this database last passed (Unix time).",
};

/// Every family, in the order the file lists them. A family without samples is left out.
const FAMILIES: [Family; 7] = [
    LAST_SUCCESS,
    LAST_ATTEMPT,
    LAST_DURATION,
    LAST_STATUS,
    LAST_SIZE,
    LAST_VERIFIED,
    LAST_DRILLED,
];

/// A sample's labels, as `(name, value)` pairs in order.
type Labels = Vec<(String, String)>;

/// The samples of the file: family name, then labels, to value.
type Samples = BTreeMap<String, BTreeMap<Labels, f64>>;

/// Merges `observations` into the textfile at `path` (created when missing) and replaces it
/// atomically: a temp file in the same folder, renamed over it. Runs that update the same file
/// at once take turns on a lock of its folder. A file that is not a metrics textfile, or one in
/// the backup folder `backup_dir` (or below it), is never replaced.
///
/// # Errors
/// The path is in the backup folder, the file is something else than a metrics textfile, or
/// the folder does not exist or cannot be written.
pub fn record(path: &Path, backup_dir: &Path, observations: &[Observation]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    refuse_inside(dir, backup_dir)?;
    let _turn = FolderTurn::take(dir);
    let mut samples = read(path)?;
    for o in observations {
        apply(&mut samples, o);
    }
    // Mode 0644: the file holds no secret, and the collector may run as another user.
    crate::runtime::fsutil::replace_atomic(path, render(&samples).as_bytes(), 0o644)
}

/// Refuses a metrics file in the backup folder `backup_dir` or one of its subfolders, where it
/// could replace a backup's file (a sidecar, the lock file).
fn refuse_inside(dir: &Path, backup_dir: &Path) -> Result<()> {
    let (Ok(dir), Ok(backups)) = (dir.canonicalize(), backup_dir.canonicalize()) else {
        return Ok(());
    };
    if dir.starts_with(&backups) {
        anyhow::bail!(
            "it is inside the backup folder {}, where it could replace a backup's file; nothing was written (choose a path outside it)",
            backups.display()
        );
    }
    Ok(())
}

/// The samples of the file at `path` that belong to our families; none when it does not exist.
/// A file that is not a metrics textfile of ours is refused rather than replaced.
fn read(path: &Path) -> Result<Samples> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Samples::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if !is_our_textfile(&text) {
        anyhow::bail!(
            "it is not a metrics textfile of aos-backup (a line is neither a comment nor a metric, or none of its metrics is aos_backup_*); it was left as it was (point the metrics file at a path of its own)"
        );
    }
    let mut samples = Samples::new();
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        match parse_sample(line) {
            Some((name, labels, value)) if FAMILIES.iter().any(|f| f.name == name) => {
                samples.entry(name).or_default().insert(labels, value);
            }
            Some(_) => {}
            None => tracing::debug!("{}: dropping a line that does not parse", path.display()),
        }
    }
    Ok(samples)
}

/// Whether `text` may be replaced by our textfile: empty, or only comments and sample lines of
/// which at least one is ours when there are any.
fn is_our_textfile(text: &str) -> bool {
    let mut names = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with('#') {
            continue;
        }
        match parse_sample(line) {
            Some((name, _, _)) if is_metric_name(&name) => names.push(name),
            _ => return false,
        }
    }
    names.is_empty() || names.iter().any(|n| n.starts_with("aos_backup_"))
}

/// A Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// What `o` changes: the attempt, duration and status always; the success time, the size and
/// the verified or drilled time when they apply.
fn apply(samples: &mut Samples, o: &Observation) {
    let by_operation = vec![
        ("database".to_string(), o.database.clone()),
        ("operation".to_string(), o.operation.as_str().to_string()),
    ];
    let by_database = vec![("database".to_string(), o.database.clone())];
    let started = seconds(o.started_at);
    let ended = started + o.duration.as_secs_f64();
    let mut set = |family: &Family, labels: &Labels, value: f64| {
        samples
            .entry(family.name.to_string())
            .or_default()
            .insert(labels.clone(), value);
    };
    set(&LAST_ATTEMPT, &by_operation, started);
    set(&LAST_DURATION, &by_operation, millis(o.duration));
    set(&LAST_STATUS, &by_operation, if o.ok { 1.0 } else { 0.0 });
    if o.ok {
        set(&LAST_SUCCESS, &by_operation, ended.round());
        match o.operation {
            Operation::Verify => set(&LAST_VERIFIED, &by_database, ended.round()),
            Operation::Drill => set(&LAST_DRILLED, &by_database, ended.round()),
            Operation::Backup | Operation::Prune | Operation::Restore => {}
        }
    }
    if let (Some(size), Operation::Backup) = (o.size_bytes, o.operation) {
        #[allow(clippy::cast_precision_loss)]
        set(&LAST_SIZE, &by_database, size as f64);
    }
}

#[allow(clippy::cast_precision_loss)]
fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp() as f64
}

/// A duration in seconds, to the millisecond.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// The text exposition format: each family with samples, its `# HELP` and `# TYPE` lines first.
fn render(samples: &Samples) -> String {
    let mut out = String::new();
    for family in &FAMILIES {
        let Some(values) = samples.get(family.name).filter(|v| !v.is_empty()) else {
            continue;
        };
        out.push_str(&format!("# HELP {} {}\n", family.name, family.help));
        out.push_str(&format!("# TYPE {} gauge\n", family.name));
        for (labels, value) in values {
            out.push_str(&format!("{}{} {value}\n", family.name, label_text(labels)));
        }
    }
    out
}

fn label_text(labels: &Labels) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

/// A label value escaped as the format wants: backslash, double quote and line feed.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// One sample line: `name{label="value",...} value [timestamp]`.
fn parse_sample(line: &str) -> Option<(String, Labels, f64)> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Labels::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

/// The labels after a `{`, and the text after the closing `}`.
fn parse_labels(mut s: &str) -> Option<(Labels, &str)> {
    let mut labels = Labels::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_string(), value));
        s = &after[end + 1..];
    }
}

/// An exclusive `flock` on the metrics file's folder, so that two runs do not each write back
/// what they read and lose the other's values. Waited for up to 5 seconds; without it (it cannot
/// be taken, or it took too long) the file is still written.
/// The lock lasts as long as the folder stays open.
struct FolderTurn {
    _folder: Option<std::fs::File>,
}

impl FolderTurn {
    const WAIT: Duration = Duration::from_secs(5);

    fn take(dir: &Path) -> FolderTurn {
        use std::os::unix::io::AsRawFd;
        let Ok(folder) = std::fs::File::open(dir) else {
            return FolderTurn { _folder: None };
        };
        let deadline = std::time::Instant::now() + Self::WAIT;
        loop {
            // SAFETY: flock on a file descriptor we own.
            let rc = unsafe { libc::flock(folder.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return FolderTurn {
                    _folder: Some(folder),
                };
            }
            if std::time::Instant::now() >= deadline {
                tracing::debug!(
                    "the metrics folder {} stayed locked for {}; writing anyway",
                    dir.display(),
                    compact_duration(Self::WAIT.as_secs())
                );
                return FolderTurn { _folder: None };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation(db: &str, operation: Operation, ok: bool) -> Observation {
        Observation {
            database: db.to_string(),
            operation,
            started_at: DateTime::parse_from_rfc3339("2024-05-01T02:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            duration: Duration::from_millis(2500),
            ok,
            size_bytes: Some(4096),
        }
    }

    #[test]
    fn label_values_round_trip_through_escaping() {
        let odd = "we\"ird\\db\nname, {x=\"y\"}";
        let labels = vec![("database".to_string(), odd.to_string())];
        let line = format!("m{} 1.5", label_text(&labels));
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(parse_sample(&line), Some(("m".into(), labels, 1.5)));
        assert_eq!(parse_sample("m 3"), Some(("m".into(), vec![], 3.0)));
        assert_eq!(parse_sample("m{a=\"b\"}"), None);
    }

    #[test]
    fn only_a_metrics_textfile_may_be_replaced() {
        assert!(is_our_textfile(""));
        assert!(is_our_textfile("# HELP x\n\n"));
        assert!(is_our_textfile(
            "# TYPE aos_backup_last_status gauge\naos_backup_last_status{database=\"a\"} 1\nother 5\n"
        ));
        assert!(!is_our_textfile("other_tool_metric 5\n"));
        assert!(!is_our_textfile("DATABASE_URL=postgresql://a@b/c\n"));
        assert!(!is_our_textfile("{\n  \"database\": \"shop\"\n}\n"));
        assert!(!is_our_textfile("aos_backup_last_status 1\nrm -rf /\n"));
    }

    #[test]
    fn a_file_in_the_backup_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("shop");
        std::fs::create_dir(&inside).unwrap();
        let o = [observation("shop", Operation::Backup, true)];
        let err = record(&inside.join("aos.prom"), dir.path(), &o).unwrap_err();
        assert!(
            err.to_string().contains("inside the backup folder"),
            "{err}"
        );
        assert!(!inside.join("aos.prom").exists());
    }

    #[test]
    fn each_run_changes_only_what_it_knows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aos.prom");
        let backups = dir.path().join("backups");
        record(
            &path,
            &backups,
            &[observation("shop", Operation::Backup, true)],
        )
        .unwrap();
        let mut failed = observation("shop", Operation::Backup, false);
        failed.size_bytes = None;
        failed.started_at += chrono::Duration::hours(24);
        record(
            &path,
            &backups,
            &[failed, observation("shop", Operation::Verify, true)],
        )
        .unwrap();
        let samples = read(&path).unwrap();
        let get = |family: &Family, labels: &[(&str, &str)]| {
            let labels: Labels = labels
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect();
            samples[family.name][&labels]
        };
        let backup = [("database", "shop"), ("operation", "backup")];
        assert_eq!(get(&LAST_STATUS, &backup), 0.0);
        assert_eq!(get(&LAST_SUCCESS, &backup), 1_714_528_803.0);
        assert_eq!(get(&LAST_ATTEMPT, &backup), 1_714_528_800.0 + 86400.0);
        assert_eq!(get(&LAST_DURATION, &backup), 2.5);
        assert_eq!(get(&LAST_SIZE, &[("database", "shop")]), 4096.0);
        assert_eq!(
            get(&LAST_VERIFIED, &[("database", "shop")]),
            1_714_528_803.0
        );
        assert!(!samples.contains_key(LAST_DRILLED.name));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(
            "# HELP aos_backup_last_success_timestamp_seconds When the last successful run"
        ));
        assert!(text.contains("# TYPE aos_backup_last_status gauge\n"));
    }
}
