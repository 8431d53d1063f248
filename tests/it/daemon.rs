//! The built-in scheduler, `aos-backup daemon`, on the real server, driven by seconds-level
//! schedules and an injected clock (`AOS_BACKUP_NOW`):
//!
//! - it backs up at each slot, and SIGTERM between runs stops it with exit 0;
//! - SIGTERM during a run cancels it: exit 143, no partial file, no pg_dump left;
//! - a slot missed while it was down runs once on start, not once per slot;
//! - a failing run (no server) is logged and the daemon goes on;
//! - a slot that finds the folder lock held is skipped;
//! - a bad schedule is a usage error (exit 2);
//! - each scheduled run is what `aos-backup backup` runs: its hooks around it (a failing `before`
//!   hook cancels the run), the metrics file updated after it (success and failure), and the
//!   config file's `[[databases]]` list backed up into subfolders, one failure not stopping the
//!   others (the run's log line gives the counts and the worst exit code); a listed database
//!   whose URL cannot be read stops the daemon at start;
//! - `schedule --print systemd|cron|daemon` writes ready recipes without secrets.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::cmd::{self, Cmd, Output};
use crate::harness::{self, server, APP_PASSWORD};
use crate::support::{hold_folder_lock, names_if_any, wait_until};

/// The daemon's state file in the backup folder.
const STATE_FILE: &str = ".aos-backup.daemon.json";
/// How long a test waits for something the daemon does within a few slots.
const PATIENCE: Duration = Duration::from_secs(30);

/// A database with one small table.
fn small_db(prefix: &str) -> String {
    let pg = server();
    let db = pg.create_db(prefix);
    pg.psql(
        &db,
        "SET ROLE app; CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g;",
    );
    db
}

/// `aos-backup --log-format json daemon` backing up `url` on `schedule`.
fn daemon(url: &str, schedule: &str) -> Cmd {
    Cmd::new()
        .args(["--log-format", "json", "daemon"])
        .env("DATABASE_URL", url)
        .env("BACKUP_SCHEDULE", schedule)
        .timeout(Duration::from_secs(60))
}

/// A daemon that runs, with its stderr collected as it comes. Its `Cmd` (and so its folders)
/// outlives the process.
struct Running {
    cmd: Cmd,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Running {
    fn start(cmd: Cmd) -> Running {
        let mut child = cmd.spawn();
        let mut stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let reader = thread::spawn(move || {
            use std::io::Read;
            let mut chunk = [0; 4096];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        Running {
            cmd,
            child: Some(child),
            log,
            reader: Some(reader),
        }
    }

    fn child(&self) -> &Child {
        self.child.as_ref().expect("the daemon runs")
    }

    fn backups(&self) -> PathBuf {
        self.cmd.dir().join("backups")
    }

    /// The JSON log lines so far.
    fn lines(&self) -> Vec<Value> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// The log lines whose `outcome` field is `outcome`.
    fn outcomes(&self, outcome: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["outcome"] == outcome)
            .collect()
    }

    #[track_caller]
    fn wait_for(&self, what: &str, mut condition: impl FnMut(&Running) -> bool) {
        wait_until(what, PATIENCE, Some(self.child()), || condition(self));
    }

    fn alive(&self) -> bool {
        crate::support::alive(pid(self.child()))
    }

    /// Sends `sig` to the daemon alone (as systemd's `KillMode=mixed` does), waits for it, and
    /// checks that nothing it started outlived it.
    fn stop(&mut self, sig: libc::c_int) -> Output {
        let child = self.child.take().expect("the daemon runs");
        cmd::signal(&child, sig);
        let pgid = pid(&child);
        let mut out = self.cmd.wait(child);
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the stderr reader");
        }
        out.stderr = self
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let left = group_members(pgid);
        assert!(
            left.is_empty(),
            "processes left in the daemon's group: {left:?}\n{out}"
        );
        out
    }
}

fn pid(child: &Child) -> i32 {
    i32::try_from(child.id()).expect("pid fits i32")
}

/// The live processes of process group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                return false;
            };
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
            // After the name: state, ppid, pgrp.
            fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
                && !matches!(fields.first(), Some(&"Z" | &"X"))
        })
        .collect()
}

/// The complete backups in `dir` (those with a sidecar).
fn complete_backups(dir: &Path) -> Vec<String> {
    names_if_any(dir)
        .into_iter()
        .filter(|n| n.ends_with(".meta.json"))
        .collect()
}

fn assert_no_partial(dir: &Path, out: &Output) {
    let partial: Vec<String> = names_if_any(dir)
        .into_iter()
        .filter(|n| n.ends_with(".partial") || n.ends_with(".tmp"))
        .collect();
    assert!(partial.is_empty(), "left behind: {partial:?}\n{out}");
}

fn read_state(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join(STATE_FILE)).expect("the state file");
    serde_json::from_str(&text).expect("the state file is JSON")
}

#[test]
fn it_backs_up_at_each_slot_and_sigterm_between_runs_exits_0() {
    let pg = server();
    let db = small_db("daemon_slots");
    let mut running = Running::start(
        daemon(&pg.tcp_url(&db), "*/2 * * * * *").env("BACKUP_DRILL_SCHEDULE", "0 4 * * 0"),
    );
    running.wait_for("two scheduled backups are done", |r| {
        r.outcomes("success").len() >= 2
    });
    let backups = running.backups();
    let out = running.stop(libc::SIGTERM);
    out.assert_success();
    assert!(
        out.stderr
            .contains("the daemon stops (no run was in progress)"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("restore drills of the newest backup on the schedule"),
        "the drill note:\n{out}"
    );
    assert!(!out.stderr.contains(APP_PASSWORD), "{out}");
    assert!(complete_backups(&backups).len() >= 2, "{out}");
    assert_no_partial(&backups, &out);
    let done: Vec<Value> = out
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["outcome"] == "success")
        .collect();
    for line in &done {
        assert_eq!(line["job"], "backup", "{line}");
        assert_eq!(line["level"], "INFO", "{line}");
        let file = line["file"].as_str().expect("the file field");
        assert!(Path::new(file).exists(), "{line}");
        assert!(line["size_bytes"].as_u64().unwrap() > 0, "{line}");
        assert!(line["slot"].is_string(), "{line}");
        assert!(line["next_run"].is_string(), "{line}");
    }
    let state = read_state(&backups);
    assert_eq!(state["backup"]["last_outcome"], "success", "{state}");
    // The backups are those `aos-backup backup` makes: `list` shows them complete.
    let list = Cmd::new()
        .args(["list", "--json", "--backup-dir"])
        .arg(&backups)
        .run();
    list.assert_success();
    let entries = list.json();
    assert!(
        entries
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["status"] == "complete" && e["database"] == db.as_str())
            .count()
            >= 2,
        "{list}"
    );
    pg.drop_db(&db);
}

/// Holds an ACCESS EXCLUSIVE lock on `db`'s table `t` until dropped, so that pg_dump waits.
struct TableLock(Child);

impl TableLock {
    fn take(db: &str) -> TableLock {
        let pg = server();
        let child = Command::new(pg.bindir.join("psql"))
            .args(["-X", "-q", "--host"])
            .arg(&pg.socket_dir)
            .args([
                "--port",
                &pg.port.to_string(),
                "--username",
                harness::SUPERUSER,
            ])
            .args(["--dbname", db, "--command"])
            .arg(
                "SET client_connection_check_interval = '100ms'; BEGIN; \
                 LOCK TABLE t IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60);",
            )
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start psql");
        wait_until("the table is locked", PATIENCE, None, || {
            count(
                db,
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
                 WHERE d.datname = $DB AND l.mode = 'AccessExclusiveLock' AND l.granted",
            ) != "0"
        });
        TableLock(child)
    }
}

impl Drop for TableLock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn count(db: &str, sql: &str) -> String {
    server().psql("postgres", &sql.replace("$DB", &harness::quote_literal(db)))
}

#[test]
fn sigterm_during_a_run_cancels_it_and_exits_143() {
    let pg = server();
    let db = small_db("daemon_cancel");
    let lock = TableLock::take(&db);
    let mut running = Running::start(daemon(&pg.tcp_url(&db), "*/2 * * * * *"));
    running.wait_for("pg_dump waits for the table lock", |_| {
        count(
            &db,
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = $DB AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
        ) != "0"
    });
    let backups = running.backups();
    assert!(
        names_if_any(&backups)
            .iter()
            .any(|n| n.ends_with(".partial")),
        "the run is in progress"
    );
    let out = running.stop(libc::SIGTERM);
    drop(lock);
    out.assert_code(143);
    assert!(
        out.stderr
            .contains("SIGTERM: cancelling the backup in progress, then stopping"),
        "{out}"
    );
    assert!(out.stderr.contains("terminated (SIGTERM)"), "{out}");
    assert_no_partial(&backups, &out);
    assert!(complete_backups(&backups).is_empty(), "{out}");
    // The cancelled slot is not recorded: it runs again when the daemon is back.
    let state = read_state(&backups);
    assert_eq!(state["backup"]["last_outcome"], Value::Null, "{state}");
    pg.drop_db(&db);
}

#[test]
fn a_slot_missed_while_down_runs_once_on_start() {
    let pg = server();
    let db = small_db("daemon_missed");
    let backups = crate::support::tempdir();
    // An injected clock at 12:30 and hourly slots: no slot comes while the test runs.
    let start = || {
        Running::start(
            daemon(&pg.tcp_url(&db), "0 * * * *")
                .env("AOS_BACKUP_NOW", "2030-06-15T12:30:00Z")
                .env("BACKUP_DIR", backups.path()),
        )
    };

    // A first start records that the slots before it predate the daemon: nothing runs.
    let mut running = start();
    running.wait_for("the daemon starts", |r| !r.lines().is_empty());
    thread::sleep(Duration::from_millis(1500));
    let out = running.stop(libc::SIGTERM);
    out.assert_success();
    assert!(complete_backups(backups.path()).is_empty(), "{out}");
    let state = read_state(backups.path());
    assert!(
        state["backup"]["handled_until"]
            .as_str()
            .unwrap()
            .starts_with("2030-06-15T12:30:0"),
        "{state}\n{out}"
    );

    // Down since 09:10: the 10:00, 11:00 and 12:00 slots were missed; one run catches up.
    std::fs::write(
        backups.path().join(STATE_FILE),
        r#"{"backup": {"handled_until": "2030-06-15T09:10:00Z"}}"#,
    )
    .unwrap();
    let mut running = start();
    running.wait_for("the missed slot ran", |r| !r.outcomes("success").is_empty());
    thread::sleep(Duration::from_millis(1500));
    let out = running.stop(libc::SIGTERM);
    out.assert_success();
    let made = complete_backups(backups.path());
    assert_eq!(made.len(), 1, "one run, not three:\n{out}");
    assert!(
        made[0].starts_with("aos-backup-20300615-1230"),
        "named by the injected clock: {made:?}"
    );
    assert!(
        out.stderr.contains("was missed") && out.stderr.contains("once for every slot missed"),
        "{out}"
    );
    let state = read_state(backups.path());
    assert_eq!(
        state["backup"]["last_slot"], "2030-06-15T10:00:00Z",
        "{state}"
    );
    assert_eq!(state["backup"]["last_outcome"], "success", "{state}");
    let done = &running.outcomes("success")[0];
    assert_eq!(done["next_run"], "2030-06-15T13:00:00+00:00", "{done}");
    pg.drop_db(&db);
}

/// A TCP port of 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

#[test]
fn failing_runs_are_logged_and_the_daemon_goes_on() {
    let url = format!(
        "postgresql://app:{}@127.0.0.1:{}/nowhere",
        harness::app_password_encoded(),
        closed_port()
    );
    let mut running = Running::start(daemon(&url, "*/2 * * * * *"));
    running.wait_for("two failed runs", |r| r.outcomes("failed").len() >= 2);
    assert!(running.alive(), "the daemon died");
    let out = running.stop(libc::SIGINT);
    out.assert_success();
    assert!(!out.stderr.contains(APP_PASSWORD), "{out}");
    let lines: Vec<Value> = out
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["outcome"] == "failed")
        .collect();
    assert!(lines.len() >= 2, "{out}");
    for line in &lines {
        assert_eq!(line["level"], "ERROR", "{line}");
        assert_eq!(line["exit_code"], 7, "a connection failure: {line}");
        let message = line["message"].as_str().unwrap();
        assert!(
            message.contains("scheduled backup failed") && message.contains("the daemon goes on"),
            "{line}"
        );
    }
    assert!(out.stderr.contains("SIGINT: the daemon stops"), "{out}");
}

#[test]
fn a_slot_that_finds_the_folder_locked_is_skipped() {
    let pg = server();
    let db = small_db("daemon_locked");
    let cmd = daemon(&pg.tcp_url(&db), "*/2 * * * * *");
    let held = hold_folder_lock(&cmd.dir().join("backups"));
    let mut running = Running::start(cmd);
    running.wait_for("a skipped slot", |r| !r.outcomes("skipped").is_empty());
    assert!(complete_backups(&running.backups()).is_empty());
    let skipped = &running.outcomes("skipped")[0];
    assert_eq!(skipped["level"], "WARN", "{skipped}");
    assert!(
        skipped["message"]
            .as_str()
            .unwrap()
            .contains("holds the lock"),
        "{skipped}"
    );
    // Once the other run is over, the next slot backs up.
    drop(held);
    running.wait_for("a backup after the lock is free", |r| {
        !r.outcomes("success").is_empty()
    });
    let backups = running.backups();
    let out = running.stop(libc::SIGTERM);
    out.assert_success();
    assert_no_partial(&backups, &out);
    pg.drop_db(&db);
}

#[test]
fn bad_or_missing_schedules_are_usage_errors() {
    for (var, value, says) in [
        ("BACKUP_SCHEDULE", "61 * * * *", "BACKUP_SCHEDULE"),
        ("BACKUP_SCHEDULE", "every night", "BACKUP_SCHEDULE"),
        ("BACKUP_SCHEDULE_HOUR", "25", "BACKUP_SCHEDULE_HOUR"),
        ("BACKUP_SCHEDULE_TZ", "Mars/Olympus", "BACKUP_SCHEDULE_TZ"),
        (
            "BACKUP_DRILL_SCHEDULE",
            "0 0 0 * *",
            "BACKUP_DRILL_SCHEDULE",
        ),
    ] {
        let out = Cmd::new()
            .arg("daemon")
            .env("DATABASE_URL", "postgresql://app@127.0.0.1:1/db")
            .env(var, value)
            .run();
        out.assert_code(2);
        assert!(out.stderr.contains(says), "{var}={value}: {out}");
    }
    let out = Cmd::new()
        .arg("daemon")
        .env("DATABASE_URL", "postgresql://app@127.0.0.1:1/db")
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("no backup schedule"), "{out}");
    // Nothing to back up: the daemon says so at once, not at the first slot.
    let out = Cmd::new()
        .arg("daemon")
        .env("BACKUP_SCHEDULE_HOUR", "3")
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("DATABASE_URL is not set"), "{out}");
}

/// A hook script: appends the hook's name, the run's status and its file to the log `$1`.
const HOOK_SCRIPT: &str = r#"printf '%s %s %s\n' "$AOS_BACKUP_HOOK" "${AOS_BACKUP_STATUS--}" "${AOS_BACKUP_FILE--}" >> "$1"
"#;

/// The hook script in `dir`, the command line that runs it, and its log.
fn hook_recorder(dir: &Path) -> (String, PathBuf) {
    let script = dir.join("hook.sh");
    std::fs::write(&script, HOOK_SCRIPT).unwrap();
    let log = dir.join("hooks.log");
    (format!("sh {} {}", script.display(), log.display()), log)
}

/// The hook log's lines, each split on spaces.
fn hook_lines(log: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect()
}

#[test]
fn scheduled_runs_run_the_hooks_around_them() {
    let pg = server();
    let db = small_db("daemon_hooks");
    let cmd = daemon(&pg.tcp_url(&db), "*/2 * * * * *");
    let (hook, log) = hook_recorder(cmd.dir());
    let cmd_dir = cmd.dir().to_path_buf();
    let mut running = Running::start(
        cmd.env("BACKUP_HOOK_BEFORE", &hook)
            .env("BACKUP_HOOK_AFTER", &hook)
            .env("BACKUP_HOOK_ON_FAILURE", &hook)
            .env("BACKUP_HOOK_FINALLY", &hook),
    );
    running.wait_for("two scheduled backups are done", |r| {
        r.outcomes("success").len() >= 2
    });
    let files: Vec<String> = running
        .outcomes("success")
        .iter()
        .map(|l| l["file"].as_str().unwrap().to_string())
        .collect();
    let out = running.stop(libc::SIGTERM);
    out.assert_success();
    let lines = hook_lines(&log);
    // The hooks of each run, in order, told its status and file, before the run is logged done.
    for (i, file) in files.iter().enumerate() {
        let run = &lines[3 * i..3 * i + 3];
        assert_eq!(run[0], ["before", "-", "-"], "{lines:?}\n{out}");
        for (line, hook) in run[1..].iter().zip(["after", "finally"]) {
            assert_eq!(line[..2], [hook, "success"], "{lines:?}");
            // The path as `backup` gives it, relative to the daemon's folder.
            assert_eq!(cmd_dir.join(&line[2]), Path::new(file), "{lines:?}");
        }
    }

    // A failing `before` hook cancels the run; the daemon goes on.
    let cmd = daemon(&pg.tcp_url(&db), "*/2 * * * * *");
    let (hook, log) = hook_recorder(cmd.dir());
    let mut running = Running::start(
        cmd.env("BACKUP_HOOK_BEFORE", "exit 3")
            .env("BACKUP_HOOK_ON_FAILURE", &hook),
    );
    running.wait_for("two cancelled runs", |r| r.outcomes("failed").len() >= 2);
    let failed = &running.outcomes("failed")[0];
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("the before hook failed"),
        "{failed}"
    );
    assert_eq!(failed["exit_code"], 1, "{failed}");
    let backups = running.backups();
    let out = running.stop(libc::SIGTERM);
    out.assert_success();
    assert!(complete_backups(&backups).is_empty(), "{out}");
    assert!(
        hook_lines(&log)
            .iter()
            .any(|l| l[..2] == ["on-failure", "failure"]),
        "{:?}",
        hook_lines(&log)
    );
    pg.drop_db(&db);
}

/// The value of the metrics file's `name{database="db",operation="op"}` (or without an
/// operation).
fn metric(text: &str, name: &str, db: &str, operation: Option<&str>) -> Option<f64> {
    let labels = match operation {
        Some(op) => format!("{{database=\"{db}\",operation=\"{op}\"}}"),
        None => format!("{{database=\"{db}\"}}"),
    };
    let prefix = format!("{name}{labels} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().unwrap())
}

#[test]
fn scheduled_runs_update_the_metrics_file() {
    let pg = server();
    let db = small_db("daemon_metrics");
    let prom_dir = crate::support::tempdir();
    let prom = prom_dir.path().join("aos.prom");
    let mut running =
        Running::start(daemon(&pg.tcp_url(&db), "*/2 * * * * *").env("BACKUP_METRICS_FILE", &prom));
    running.wait_for("a scheduled backup is done", |r| {
        !r.outcomes("success").is_empty()
    });
    let out = running.stop(libc::SIGTERM);
    out.assert_success();
    // Written after the run, before the run is logged done.
    let text = std::fs::read_to_string(&prom).expect("the metrics file");
    assert!(!text.contains(APP_PASSWORD), "{text}");
    let status = metric(&text, "aos_backup_last_status", &db, Some("backup"));
    assert_eq!(status, Some(1.0), "{text}");
    assert!(
        metric(
            &text,
            "aos_backup_last_success_timestamp_seconds",
            &db,
            Some("backup")
        )
        .is_some(),
        "{text}"
    );
    let size = metric(&text, "aos_backup_last_size_bytes", &db, None);
    assert!(size.is_some_and(|s| s > 0.0), "{text}");

    // A failed run is recorded as one: status 0, the last success of the database kept.
    let url = format!(
        "postgresql://app:{}@127.0.0.1:{}/{db}",
        harness::app_password_encoded(),
        closed_port()
    );
    let mut running =
        Running::start(daemon(&url, "*/2 * * * * *").env("BACKUP_METRICS_FILE", &prom));
    running.wait_for("a failed run", |r| !r.outcomes("failed").is_empty());
    let out = running.stop(libc::SIGTERM);
    out.assert_success();
    let text = std::fs::read_to_string(&prom).unwrap();
    let status = metric(&text, "aos_backup_last_status", &db, Some("backup"));
    assert_eq!(status, Some(0.0), "{text}");
    assert!(
        metric(
            &text,
            "aos_backup_last_success_timestamp_seconds",
            &db,
            Some("backup")
        )
        .is_some(),
        "{text}"
    );
    assert!(!text.contains(APP_PASSWORD), "{text}");
    pg.drop_db(&db);
}

/// A daemon with no DATABASE_URL, backing up the databases the config file `cfg` lists, with
/// the variables `vars` (their URLs).
fn configured_daemon(cfg: &Path, vars: &[(&str, &str)]) -> Cmd {
    let mut cmd = Cmd::new()
        .args(["--log-format", "json", "daemon"])
        .env("AOS_BACKUP_CONFIG", cfg)
        .env("BACKUP_SCHEDULE", "*/2 * * * * *")
        .timeout(Duration::from_secs(60));
    for (k, v) in vars {
        cmd = cmd.env(k, v);
    }
    cmd
}

/// A config file listing `first` (URL in `$FIRST_URL`) and `second` (in `$SECOND_URL`).
fn two_databases(dir: &Path) -> PathBuf {
    let cfg = dir.join("aos.toml");
    std::fs::write(
        &cfg,
        "[[databases]]\nname = \"first\"\nurl_env = \"FIRST_URL\"\n\
         [[databases]]\nname = \"second\"\nurl_env = \"SECOND_URL\"\n",
    )
    .unwrap();
    cfg
}

#[test]
fn scheduled_runs_back_up_each_configured_database_into_its_subfolder() {
    let pg = server();
    let (first, second) = (small_db("daemon_many_a"), small_db("daemon_many_b"));
    let work = crate::support::tempdir();
    let cfg = two_databases(work.path());
    let (first_url, second_url) = (pg.tcp_url(&first), pg.tcp_url(&second));
    let mut running = Running::start(configured_daemon(
        &cfg,
        &[("FIRST_URL", &first_url), ("SECOND_URL", &second_url)],
    ));
    running.wait_for("a scheduled run of both databases", |r| {
        !r.outcomes("success").is_empty()
    });
    let done = running.outcomes("success")[0].clone();
    let backups = running.backups();
    let out = running.stop(libc::SIGTERM);
    out.assert_success();
    assert!(!out.stderr.contains(APP_PASSWORD), "{out}");
    assert_eq!(done["databases"], 2, "{done}");
    assert_eq!(done["backed_up"], 2, "{done}");
    assert_eq!(done["exit_code"], 0, "{done}");
    assert!(done["size_bytes"].as_u64().unwrap() > 0, "{done}");
    assert!(
        done["message"]
            .as_str()
            .unwrap()
            .contains("2 of 2 database(s) backed up"),
        "{done}"
    );
    for (folder, db) in [("first", &first), ("second", &second)] {
        let made = complete_backups(&backups.join(folder));
        assert!(!made.is_empty(), "{folder}:\n{out}");
        let sidecar = crate::support::read_json(&backups.join(folder).join(&made[0]));
        assert_eq!(sidecar["database"], db.as_str(), "{sidecar}");
    }
    assert!(
        complete_backups(&backups).is_empty(),
        "nothing at the top:\n{out}"
    );
    assert_eq!(read_state(&backups)["backup"]["last_outcome"], "success");

    // The second server is down: the first is still backed up; the run fails with its code.
    let down = format!(
        "postgresql://app:{}@127.0.0.1:{}/{second}",
        harness::app_password_encoded(),
        closed_port()
    );
    let mut running = Running::start(configured_daemon(
        &cfg,
        &[("FIRST_URL", &first_url), ("SECOND_URL", &down)],
    ));
    running.wait_for("a run that failed for one database", |r| {
        !r.outcomes("failed").is_empty()
    });
    let failed = running.outcomes("failed")[0].clone();
    let backups = running.backups();
    let out = running.stop(libc::SIGTERM);
    out.assert_success();
    assert_eq!(failed["level"], "ERROR", "{failed}");
    assert_eq!(failed["databases"], 2, "{failed}");
    assert_eq!(failed["backed_up"], 1, "{failed}");
    assert_eq!(failed["exit_code"], 7, "a connection failure: {failed}");
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.contains("1 of 2 database(s) backed up, 1 failed")
            && message.contains("needs a look: second")
            && message.contains("the daemon goes on"),
        "{failed}"
    );
    assert!(
        !complete_backups(&backups.join("first")).is_empty(),
        "{out}"
    );
    assert!(
        complete_backups(&backups.join("second")).is_empty(),
        "{out}"
    );
    assert!(!out.stderr.contains(APP_PASSWORD), "{out}");
    pg.drop_db(&first);
    pg.drop_db(&second);
}

#[test]
fn a_configured_database_whose_url_cannot_be_read_stops_the_daemon_at_start() {
    let work = crate::support::tempdir();
    let cfg = two_databases(work.path());
    let out = configured_daemon(&cfg, &[("FIRST_URL", "postgresql://app@127.0.0.1:1/a")]).run();
    out.assert_code(2);
    assert_eq!(
        out.stderr.matches("is not set").count(),
        1,
        "said once: {out}"
    );
    assert!(
        out.stderr.contains("SECOND_URL") && out.stderr.contains("database \\\"second\\\""),
        "{out}"
    );
}

/// `schedule --print KIND` in a folder whose `.env` holds the URL (with its password).
fn print(kind: &str, env: &[(&str, &str)]) -> (Cmd, Output) {
    let mut cmd = Cmd::new().args(["schedule", "--print", kind]);
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    std::fs::write(
        cmd.dir().join(".env"),
        format!("DATABASE_URL=postgresql://app:{APP_PASSWORD}@db.example:5432/shop\n"),
    )
    .unwrap();
    let out = cmd.run();
    (cmd, out)
}

#[test]
fn schedule_print_writes_a_systemd_timer_a_crontab_line_or_a_daemon_service() {
    let bin = env!("CARGO_BIN_EXE_aos-backup");
    let (cmd, out) = print(
        "systemd",
        &[
            ("BACKUP_SCHEDULE_HOUR", "3"),
            ("BACKUP_SCHEDULE_TZ", "Europe/Berlin"),
            ("BACKUP_KEEP_DAILY", "7"),
        ],
    );
    out.assert_success();
    let dir = cmd.dir().display().to_string();
    for line in [
        "[Timer]".to_string(),
        "OnCalendar=*-*-* 03:00:00 Europe/Berlin".to_string(),
        "Persistent=true".to_string(),
        "Type=oneshot".to_string(),
        format!("WorkingDirectory={dir}"),
        format!("ExecStart={bin} --log-format json backup"),
        "WantedBy=timers.target".to_string(),
    ] {
        assert!(out.stdout.lines().any(|l| l == line), "{line:?} in:\n{out}");
    }
    assert!(!out.stdout.contains(APP_PASSWORD), "{out}");
    assert!(out.stdout.contains(&format!("{dir}/.env")), "{out}");
    assert!(
        out.stdout
            .contains("not seen by the scheduler: BACKUP_KEEP_DAILY"),
        "{out}"
    );

    let (cmd, out) = print("cron", &[("BACKUP_SCHEDULE", "15 2 * * 1-5")]);
    out.assert_success();
    let dir = cmd.dir().display().to_string();
    assert!(out.stdout.lines().any(|l| l == "CRON_TZ=UTC"), "{out}");
    let want = format!("15 2 * * 1-5 cd {dir} && {bin} --log-format json backup");
    assert!(out.stdout.lines().any(|l| l == want), "{want:?} in:\n{out}");
    assert!(!out.stdout.contains(APP_PASSWORD), "{out}");

    // Seconds: no crontab line; systemd takes them.
    let (_, out) = print("cron", &[("BACKUP_SCHEDULE", "*/30 * * * * *")]);
    out.assert_code(2);
    assert!(out.stderr.contains("seconds"), "{out}");
    let (_, out) = print("systemd", &[("BACKUP_SCHEDULE", "*/30 * * * * *")]);
    out.assert_success();
    assert!(
        out.stdout.contains("OnCalendar=*-*-* *:*:00/30 UTC"),
        "{out}"
    );

    // No calendar form: the daemon's service instead, and a warning that says why.
    let (_, out) = print(
        "systemd",
        &[
            ("BACKUP_SCHEDULE", "0 0 1 * 1"),
            ("BACKUP_SCHEDULE_TZ", "UTC"),
        ],
    );
    out.assert_success();
    assert!(out.stderr.contains("no systemd calendar form"), "{out}");
    for line in [
        "Type=simple".to_string(),
        format!("ExecStart={bin} --log-format json daemon"),
        "Environment=\"BACKUP_SCHEDULE=0 0 1 * 1\"".to_string(),
        "SuccessExitStatus=143".to_string(),
        "KillMode=mixed".to_string(),
    ] {
        assert!(out.stdout.lines().any(|l| l == line), "{line:?} in:\n{out}");
    }

    let (_, out) = print("daemon", &[("BACKUP_SCHEDULE_HOUR", "4")]);
    out.assert_success();
    assert!(
        out.stdout.contains("Environment=BACKUP_SCHEDULE_HOUR=4"),
        "{out}"
    );
    let json = Cmd::new()
        .args(["--json", "schedule", "--print", "systemd"])
        .env("BACKUP_SCHEDULE_HOUR", "4")
        .run();
    json.assert_success();
    let v = json.json();
    assert_eq!(v["schedule"], "0 4 * * *", "{json}");
    assert!(v["files"]["aos-backup.timer"]
        .as_str()
        .unwrap()
        .contains("OnCalendar=*-*-* 04:00:00 UTC"));

    let out = Cmd::new().args(["schedule", "--print", "cron"]).run();
    out.assert_code(2);
    assert!(out.stderr.contains("no backup schedule"), "{out}");
}

/// A scheduled run of the config file's list updates the metrics file per database: the one
/// that failed gets status 0, the one backed up status 1 and its size.
#[test]
fn scheduled_runs_of_configured_databases_update_the_metrics_file_per_database() {
    let pg = server();
    let first = small_db("daemon_many_metrics");
    let work = crate::support::tempdir();
    let cfg = two_databases(work.path());
    let prom = work.path().join("aos.prom");
    let down = format!(
        "postgresql://app:{}@127.0.0.1:{}/{first}",
        harness::app_password_encoded(),
        closed_port()
    );
    let mut running = Running::start(
        configured_daemon(
            &cfg,
            &[("FIRST_URL", &pg.tcp_url(&first)), ("SECOND_URL", &down)],
        )
        .env("BACKUP_METRICS_FILE", &prom),
    );
    running.wait_for("a run that failed for one database", |r| {
        !r.outcomes("failed").is_empty()
    });
    let out = running.stop(libc::SIGTERM);
    out.assert_success();
    let text = std::fs::read_to_string(&prom).expect("the metrics file");
    assert!(!text.contains(APP_PASSWORD), "{text}");
    let status = |db: &str| metric(&text, "aos_backup_last_status", db, Some("backup"));
    assert_eq!(status("first"), Some(1.0), "{text}");
    assert_eq!(status("second"), Some(0.0), "{text}");
    let size = metric(&text, "aos_backup_last_size_bytes", "first", None);
    assert!(size.is_some_and(|s| s > 0.0), "{text}");
    assert_eq!(
        metric(&text, "aos_backup_last_size_bytes", "second", None),
        None
    );
    pg.drop_db(&first);
}
