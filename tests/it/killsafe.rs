//! A restore on the worst day, against the real server and the real client tools:
//!
//! - SIGKILL of aos-backup at several instants of a serial restore (custom, plain, encrypted):
//!   nothing is committed, no child survives, no backend of the target is left;
//! - SIGKILL during a `--jobs` restore of an encrypted backup: no decrypted file in TMPDIR, ever,
//!   and no pg_restore (nor its workers) survives;
//! - SIGTERM during a `--jobs` restore, and while the COMMIT waits for a (missing) synchronous
//!   standby: the message claims only what is known;
//! - another session's lock: listed before the restore, a bounded wait that names the blocker,
//!   `--terminate-sessions`, and no backend left after a SIGKILL;
//! - Ctrl-D at the confirmation prompt means no.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::cmd::{self, Cmd, Output};
use crate::harness::{self, server};
use crate::support::{self, age_keygen, alive, tempdir as work_dir, wait_until};

/// Rows in each of the two tables of the big source: enough for a restore of a second or more.
const BIG_ROWS: u32 = 300_000;

const BIG_SQL: &str = "
SET client_min_messages = warning;
SET ROLE app;
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, note text);
INSERT INTO items SELECT g, 'item ' || g, md5(g::text) FROM generate_series(1, ROWS) g;
CREATE TABLE events (id bigserial PRIMARY KEY, item_id int NOT NULL REFERENCES items, payload text);
INSERT INTO events (item_id, payload) SELECT (g % ROWS) + 1, md5(g::text || 'x') FROM generate_series(1, ROWS) g;
";

/// The target: the same two tables with other rows, which any partial restore would change.
const TARGET_SQL: &str = "
SET client_min_messages = warning;
SET ROLE app;
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, note text);
INSERT INTO items VALUES (1, 'keep me', 'target row'), (2, 'précieux', NULL);
CREATE TABLE events (id bigserial PRIMARY KEY, item_id int NOT NULL, payload text);
INSERT INTO events (item_id, payload) VALUES (1, 'kept');
";

/// The big source and its three backups, made once.
struct Big {
    identity: PathBuf,
    custom_zst: PathBuf,
    plain_gz: PathBuf,
    custom_age: PathBuf,
}

fn big() -> &'static Big {
    static BIG: OnceLock<Big> = OnceLock::new();
    BIG.get_or_init(|| {
        let pg = server();
        let db = pg.create_db("killsafe_big");
        pg.psql(&db, &BIG_SQL.replace("ROWS", &BIG_ROWS.to_string()));
        let work = support::shared_tempdir("aos-backup-it-killsafe.");
        let support::AgeKey {
            identity,
            recipient,
            ..
        } = age_keygen(&work, "id.txt");
        let backup = |sub: &str, envs: &[(&str, &str)]| {
            let mut cmd = Cmd::new()
                .arg("backup")
                .env("DATABASE_URL", pg.tcp_url(&db))
                .env("BACKUP_DIR", work.join(sub));
            for (k, v) in envs {
                cmd = cmd.env(k, v);
            }
            let out = cmd.run();
            out.assert_success();
            PathBuf::from(out.stdout_trimmed())
        };
        let custom_zst = backup("custom", &[]);
        let plain_gz = backup(
            "plain",
            &[("BACKUP_FORMAT", "plain"), ("BACKUP_COMPRESSION", "gzip")],
        );
        let custom_age = backup(
            "age",
            &[
                ("BACKUP_ENCRYPTION", "age"),
                ("BACKUP_AGE_RECIPIENTS", &recipient),
            ],
        );
        for (p, ext) in [
            (&custom_zst, ".dump.zst"),
            (&plain_gz, ".sql.gz"),
            (&custom_age, ".dump.zst.age"),
        ] {
            assert!(p.to_string_lossy().ends_with(ext), "{}", p.display());
        }
        pg.drop_db(&db);
        Big {
            identity,
            custom_zst,
            plain_gz,
            custom_age,
        }
    })
}

/// A new populated target database.
fn target(prefix: &str) -> String {
    let pg = server();
    let db = pg.create_db(prefix);
    pg.psql(&db, TARGET_SQL);
    db
}

/// Schema plus, for every table, its row count and a digest of its rows.
fn fingerprint(db: &str) -> String {
    let pg = server();
    let data = pg.psql(
        db,
        "SELECT format('SELECT %L || '' '' || count(*) || '' '' || coalesce(md5(string_agg(t::text, '','' ORDER BY t::text)), '''') FROM %I.%I t', \
                schemaname || '.' || tablename, schemaname, tablename) \
           FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1 \\gexec",
    );
    format!("{}\n{data}", pg.dump_schema(db))
}

/// How many client backends are connected to `db` (asked from another database; autovacuum
/// workers come and go on their own).
fn backends(db: &str) -> u32 {
    server()
        .psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = {} \
                 AND backend_type = 'client backend'",
                harness::quote_literal(db)
            ),
        )
        .parse()
        .unwrap()
}

/// Whether a backend of `db` runs a statement that matches `pattern` (ILIKE).
fn running(db: &str, pattern: &str) -> bool {
    server().psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = {} AND state = 'active' AND query ILIKE {}",
            harness::quote_literal(db),
            harness::quote_literal(pattern)
        ),
    ) != "0"
}

/// Parent pid and command name of every process.
fn processes() -> Vec<(i32, i32, String)> {
    let mut all = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().unwrap_or("");
        if matches!(state, "Z" | "X") {
            continue;
        }
        let ppid = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        all.push((pid, ppid, name));
    }
    all
}

/// The live descendants of `root` (children, their workers...), with their names.
fn descendants(root: i32) -> Vec<(i32, String)> {
    let all = processes();
    let mut found: Vec<(i32, String)> = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (pid, ppid, name) in &all {
            if *ppid == p && !found.iter().any(|(f, _)| f == pid) {
                found.push((*pid, name.clone()));
                frontier.push(*pid);
            }
        }
    }
    found
}

/// SIGKILLs the run (aos-backup alone, not its group), then checks that everything it started
/// is gone within a few seconds and that the target has no backend left.
#[track_caller]
fn kill_and_check_nothing_survives(cmd: &Cmd, child: Child, db: &str) -> Output {
    let pid = i32::try_from(child.id()).unwrap();
    let started = descendants(pid);
    cmd::signal(&child, libc::SIGKILL);
    let out = cmd.wait(child);
    assert_eq!(out.signal, Some(libc::SIGKILL), "{out}");
    wait_until(
        &format!("the children of the killed aos-backup are gone: {started:?}"),
        Duration::from_secs(5),
        None,
        || started.iter().all(|(p, _)| !alive(*p)),
    );
    wait_until(
        "no backend of the target remains",
        Duration::from_secs(10),
        None,
        || backends(db) == 0,
    );
    out
}

// ---------------------------------------------------------------------------------------------
// 1. SIGKILL during a serial restore
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum When {
    /// A fixed time after the start (verifying, or starting the tools).
    After(Duration),
    /// While the first table's data is copied in.
    FirstCopy,
    /// A while into the second table's data.
    SecondCopy,
}

#[test]
fn sigkill_during_a_serial_restore_commits_nothing_and_leaves_nothing_running() {
    let pg = server();
    let big = big();
    let cases = [
        ("custom .dump.zst", &big.custom_zst),
        ("plain .sql.gz", &big.plain_gz),
        ("encrypted .dump.zst.age", &big.custom_age),
    ];
    let instants = [
        When::After(Duration::from_millis(300)),
        When::FirstCopy,
        When::SecondCopy,
    ];
    for (what, file) in cases {
        for when in instants {
            let db = target("killsafe_serial");
            let before = fingerprint(&db);
            let cmd = Cmd::new()
                .args(["restore", "--yes"])
                .arg(file)
                .consent_from_database_of(file)
                .env("DATABASE_URL", pg.tcp_url(&db))
                .env("BACKUP_AGE_IDENTITY", &big.identity)
                .timeout(Duration::from_secs(60));
            let child = cmd.spawn();
            match when {
                When::After(d) => thread::sleep(d),
                When::FirstCopy => wait_until(
                    "the first COPY runs",
                    Duration::from_secs(120),
                    None,
                    || running(&db, "COPY public.items%"),
                ),
                When::SecondCopy => {
                    wait_until(
                        "the second COPY runs",
                        Duration::from_secs(120),
                        None,
                        || running(&db, "COPY public.events%"),
                    );
                    thread::sleep(Duration::from_millis(200));
                }
            }
            let out = kill_and_check_nothing_survives(&cmd, child, &db);
            assert_eq!(
                fingerprint(&db),
                before,
                "{what}, killed at {when:?}: the target changed\n{out}"
            );
            pg.drop_db(&db);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 10. SIGKILL during a parallel restore of an encrypted backup
// ---------------------------------------------------------------------------------------------

#[test]
fn sigkill_during_a_parallel_restore_leaves_no_decrypted_file_and_no_pg_restore() {
    let pg = server();
    let big = big();
    let work = work_dir();
    let tmp = work.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let db = target("killsafe_jobs_kill");
    let cmd = Cmd::new()
        .args(["restore", "--yes", "--force", "--jobs", "2"])
        .arg(&big.custom_age)
        .consent_from_database_of(&big.custom_age)
        .env("DATABASE_URL", pg.tcp_url(&db))
        .env("BACKUP_AGE_IDENTITY", &big.identity)
        .env("TMPDIR", &tmp)
        .timeout(Duration::from_secs(60));
    let child = cmd.spawn();
    let named = || fs::read_dir(&tmp).unwrap().count();
    // Unpacking, then pg_restore's workers copying: never a named file.
    wait_until(
        "pg_restore copies data",
        Duration::from_secs(120),
        None,
        || {
            assert_eq!(named(), 0, "a named temp file appeared in TMPDIR");
            running(&db, "COPY %")
        },
    );
    assert_eq!(named(), 0, "a named temp file appeared in TMPDIR");
    let pid = i32::try_from(child.id()).unwrap();
    let workers = descendants(pid)
        .iter()
        .filter(|(_, n)| n == "pg_restore")
        .count();
    assert!(
        workers >= 2,
        "pg_restore and its workers: {:?}",
        descendants(pid)
    );
    let out = kill_and_check_nothing_survives(&cmd, child, &db);
    assert_eq!(named(), 0, "left in TMPDIR\n{out}");
    pg.drop_db(&db);
}

// ---------------------------------------------------------------------------------------------
// 5. Messages after an interruption
// ---------------------------------------------------------------------------------------------

#[test]
fn sigterm_during_a_parallel_restore_says_the_target_may_be_partly_restored() {
    let pg = server();
    let big = big();
    let db = target("killsafe_jobs_term");
    let cmd = Cmd::new()
        .args(["restore", "--yes", "--force", "--jobs", "2"])
        .arg(&big.custom_zst)
        .consent_from_database_of(&big.custom_zst)
        .env("DATABASE_URL", pg.tcp_url(&db))
        .timeout(Duration::from_secs(60));
    let child = cmd.spawn();
    wait_until(
        "pg_restore copies data",
        Duration::from_secs(120),
        None,
        || running(&db, "COPY %"),
    );
    cmd::signal(&child, libc::SIGTERM);
    let out = cmd.wait(child);
    out.assert_code(143);
    assert!(!out.stderr.contains("nothing was kept"), "{out}");
    assert!(out.stderr.contains("may be partly restored"), "{out}");
    assert!(out.stderr.contains("hint: restore again"), "{out}");
    wait_until(
        "no backend of the target remains",
        Duration::from_secs(10),
        None,
        || backends(&db) == 0,
    );
    pg.drop_db(&db);
}

/// Makes every COMMIT in `db` wait for a synchronous standby that never comes, without touching
/// other databases: the server names a standby, the default `synchronous_commit` is `local`
/// (no wait) and only `db` asks for `on`. Undone on drop.
struct CommitsWait<'a> {
    db: &'a str,
}

impl<'a> CommitsWait<'a> {
    fn new(db: &'a str) -> Self {
        let pg = server();
        pg.psql(
            "postgres",
            &format!(
                "ALTER DATABASE {} SET synchronous_commit = on",
                harness::quote_ident(db)
            ),
        );
        pg.psql("postgres", "ALTER SYSTEM SET synchronous_commit = local");
        pg.psql(
            "postgres",
            "ALTER SYSTEM SET synchronous_standby_names = 'aos_backup_missing_standby'",
        );
        pg.psql("postgres", "SELECT pg_reload_conf()");
        CommitsWait { db }
    }

    fn release() {
        let pg = server();
        pg.psql("postgres", "ALTER SYSTEM RESET synchronous_standby_names");
        pg.psql("postgres", "ALTER SYSTEM RESET synchronous_commit");
        pg.psql("postgres", "SELECT pg_reload_conf()");
    }
}

impl Drop for CommitsWait<'_> {
    fn drop(&mut self) {
        Self::release();
        let _ = server().try_psql(
            "postgres",
            &format!(
                "ALTER DATABASE {} RESET synchronous_commit",
                harness::quote_ident(self.db)
            ),
        );
    }
}

/// Whether the restore's COMMIT waits for the standby. Client backends only: an autovacuum
/// worker's ANALYZE of the target also waits (the database's `synchronous_commit = on` reaches
/// it after its own override was decided on the server's `local`).
fn commit_waits(db: &str) -> bool {
    server().psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = {} AND wait_event = 'SyncRep' \
             AND backend_type = 'client backend'",
            harness::quote_literal(db)
        ),
    ) != "0"
}

#[test]
fn sigterm_while_the_commit_waits_reports_the_real_outcome_or_that_it_is_unknown() {
    let pg = server();
    let work = work_dir();
    let dump = work.path().join("small.dump");
    let src = pg.create_db("killsafe_commit_src");
    pg.psql(&src, &BIG_SQL.replace("ROWS", "100"));
    let out = Command::new(pg.bindir.join("pg_dump"))
        .args(["-Fc", "--no-owner", "--no-acl", "-f"])
        .arg(&dump)
        .arg("-d")
        .arg(pg.socket_url(&src))
        .output()
        .unwrap();
    assert!(out.status.success());

    // First: one SIGTERM, then the standby "answers": the restore committed, and says so.
    let db = target("killsafe_commit_wait");
    let restored;
    {
        let _wait = CommitsWait::new(&db);
        let cmd = Cmd::new()
            .args(["restore", "--yes"])
            .arg(&dump)
            .consent_from_database_of(&dump)
            .env("DATABASE_URL", pg.tcp_url(&db))
            .timeout(Duration::from_secs(60));
        let child = cmd.spawn();
        wait_until("the COMMIT waits", Duration::from_secs(120), None, || {
            commit_waits(&db)
        });
        cmd::signal(&child, libc::SIGTERM);
        thread::sleep(Duration::from_millis(700));
        assert!(
            alive(i32::try_from(child.id()).unwrap()),
            "aos-backup must wait for the answer to COMMIT"
        );
        CommitsWait::release();
        let out = cmd.wait(child);
        out.assert_code(143);
        assert!(out.stderr.contains("waiting for its answer"), "{out}");
        assert!(out.stderr.contains("COMMIT succeeded"), "{out}");
        assert!(!out.stderr.contains("nothing was kept"), "{out}");
        assert!(!out.stderr.contains("rolled back"), "{out}");
        restored = fingerprint(&db);
    }
    assert_eq!(restored, fingerprint(&src), "the restore landed");
    pg.drop_db(&db);

    // Then: two SIGTERMs while it waits: the outcome is unknown, and the message says so.
    let db = target("killsafe_commit_unknown");
    {
        let _wait = CommitsWait::new(&db);
        let cmd = Cmd::new()
            .args(["restore", "--yes"])
            .arg(&dump)
            .consent_from_database_of(&dump)
            .env("DATABASE_URL", pg.tcp_url(&db))
            .timeout(Duration::from_secs(60));
        let child = cmd.spawn();
        wait_until("the COMMIT waits", Duration::from_secs(120), None, || {
            commit_waits(&db)
        });
        cmd::signal(&child, libc::SIGTERM);
        thread::sleep(Duration::from_millis(300));
        cmd::signal(&child, libc::SIGTERM);
        let out = cmd.wait(child);
        out.assert_code(143);
        assert!(out.stderr.contains("unknown"), "{out}");
        assert!(out.stderr.contains("pg_stat_activity"), "{out}");
        assert!(!out.stderr.contains("nothing was kept"), "{out}");
        assert!(!out.stderr.contains("rolled back"), "{out}");
    }
    wait_until(
        "no backend of the target remains",
        Duration::from_secs(10),
        None,
        || backends(&db) == 0,
    );
    pg.drop_db(&db);
    pg.drop_db(&src);
}

// ---------------------------------------------------------------------------------------------
// 9. Another session's lock
// ---------------------------------------------------------------------------------------------

/// A psql session (superuser over the socket) that runs `sql` and stays connected; `pid` is its
/// backend.
struct Session {
    child: Child,
    _stdin: std::process::ChildStdin,
    _stdout: BufReader<std::process::ChildStdout>,
    pid: i32,
}

impl Session {
    fn open(db: &str, sql: &str) -> Session {
        Session::open_as(&server().socket_url(db), sql)
    }

    /// The same, connected with `url`.
    fn open_as(url: &str, sql: &str) -> Session {
        let pg = server();
        let mut child = Command::new(pg.bindir.join("psql"))
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(url)
            .env("PGAPPNAME", "killsafe-blocker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start psql");
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{sql}\nSELECT 'pid=' || pg_backend_pid();").unwrap();
        stdin.flush().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let pid = loop {
            let mut line = String::new();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "psql ended");
            if let Some(pid) = line.trim().strip_prefix("pid=") {
                break pid.parse().expect("the session's backend pid");
            }
        };
        Session {
            child,
            _stdin: stdin,
            _stdout: stdout,
            pid,
        }
    }

    fn connected(&self) -> bool {
        server().psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = {}",
                self.pid
            ),
        ) != "0"
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small custom dump of the two tables (different rows from the target's).
fn small_dump(dir: &Path) -> PathBuf {
    static SRC: OnceLock<String> = OnceLock::new();
    let pg = server();
    let src = SRC.get_or_init(|| {
        let db = pg.create_db("killsafe_small");
        pg.psql(&db, &BIG_SQL.replace("ROWS", "50"));
        db
    });
    let dump = dir.join("small.dump");
    let out = Command::new(pg.bindir.join("pg_dump"))
        .args(["-Fc", "--no-owner", "--no-acl", "-f"])
        .arg(&dump)
        .arg("-d")
        .arg(pg.socket_url(src))
        .output()
        .unwrap();
    assert!(out.status.success());
    dump
}

#[test]
fn a_restore_blocked_by_another_sessions_lock_gives_up_in_time_and_names_it() {
    let pg = server();
    let work = work_dir();
    let dump = small_dump(work.path());
    let db = target("killsafe_lock");
    let before = fingerprint(&db);
    let blocker = Session::open(&db, "BEGIN;\nLOCK TABLE items IN ACCESS SHARE MODE;");
    let started = Instant::now();
    let out = Cmd::new()
        .args(["restore", "--yes", "--lock-timeout", "2s"])
        .arg(&dump)
        .consent_from_database_of(&dump)
        .env("DATABASE_URL", pg.tcp_url(&db))
        .timeout(Duration::from_secs(60))
        .run();
    let took = started.elapsed();
    out.assert_code(1);
    assert!(took < Duration::from_secs(20), "it took {took:?}\n{out}");
    let pid = format!("pid {}", blocker.pid);
    let error = out
        .stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(error.contains(&pid), "the error names the blocker\n{out}");
    assert!(error.contains("killsafe-blocker"), "{out}");
    assert!(error.contains("rolled back"), "{out}");
    assert!(out.stderr.contains("--terminate-sessions"), "{out}");
    // The sessions were listed before the restore began.
    let listed = out
        .stderr
        .lines()
        .position(|l| l.contains("other session") && l.contains(&pid))
        .expect("the other sessions are listed");
    let error_at = out
        .stderr
        .lines()
        .position(|l| l.starts_with("error:"))
        .unwrap();
    assert!(listed < error_at, "{out}");
    drop(blocker);
    assert_eq!(fingerprint(&db), before, "the target changed");
    pg.drop_db(&db);
}

#[test]
fn terminate_sessions_ends_the_blocker_and_the_restore_succeeds() {
    let pg = server();
    let work = work_dir();
    let dump = small_dump(work.path());
    let db = target("killsafe_terminate");
    // The app role may end its own sessions (a superuser's it may not).
    let blocker = Session::open_as(&pg.tcp_url(&db), "BEGIN;\nSELECT count(*) FROM items;");
    let out = Cmd::new()
        .args([
            "restore",
            "--yes",
            "--terminate-sessions",
            "--lock-timeout",
            "20s",
        ])
        .arg(&dump)
        .consent_from_database_of(&dump)
        .env("DATABASE_URL", pg.tcp_url(&db))
        .timeout(Duration::from_secs(60))
        .run();
    out.assert_success();
    assert!(
        out.stderr
            .contains(&format!("ended session pid {}", blocker.pid)),
        "{out}"
    );
    assert!(!blocker.connected());
    assert!(fingerprint(&db).contains("public.items 50 "), "restored");

    // Without a terminal and without --yes, ending sessions is refused like the restore.
    let empty = pg.create_db("killsafe_terminate_empty");
    let other = Session::open(&empty, "SELECT 1;");
    let out = Cmd::new()
        .args(["restore", "--terminate-sessions"])
        .arg(&dump)
        .consent_from_database_of(&dump)
        .env("DATABASE_URL", pg.tcp_url(&empty))
        .run();
    out.assert_code(3);
    assert!(other.connected(), "{out}");
    drop(other);
    pg.drop_db(&db);
    pg.drop_db(&empty);
}

#[test]
fn a_killed_blocked_restore_leaves_no_backend_behind() {
    let pg = server();
    let work = work_dir();
    let dump = small_dump(work.path());
    let db = target("killsafe_lock_kill");
    let before = fingerprint(&db);
    let blocker = Session::open(&db, "BEGIN;\nLOCK TABLE items IN ACCESS SHARE MODE;");
    let cmd = Cmd::new()
        .args(["restore", "--yes"])
        .arg(&dump)
        .consent_from_database_of(&dump)
        .env("DATABASE_URL", pg.tcp_url(&db))
        .timeout(Duration::from_secs(60));
    let child = cmd.spawn();
    let waiting = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = {} AND wait_event_type = 'Lock'",
        harness::quote_literal(&db)
    );
    wait_until(
        "the restore waits for the lock",
        Duration::from_secs(120),
        None,
        || pg.psql("postgres", &waiting) != "0",
    );
    let pid = i32::try_from(child.id()).unwrap();
    let started = descendants(pid);
    cmd::signal(&child, libc::SIGKILL);
    let _ = cmd.wait(child);
    wait_until(
        "the restore's backend is gone",
        Duration::from_secs(5),
        None,
        || backends(&db) == 1,
    );
    assert!(started.iter().all(|(p, _)| !alive(*p)), "{started:?}");
    assert!(blocker.connected());
    drop(blocker);
    assert_eq!(fingerprint(&db), before, "the target changed");
    pg.drop_db(&db);
}

// ---------------------------------------------------------------------------------------------
// 12. Ctrl-D at the prompt
// ---------------------------------------------------------------------------------------------

#[test]
fn ctrl_d_at_the_confirmation_prompt_means_no() {
    let pg = server();
    let work = work_dir();
    let dump = small_dump(work.path());
    let db = target("killsafe_ctrl_d");
    let before = fingerprint(&db);
    let other = Session::open(&db, "SELECT 1;");
    let envs = [("DATABASE_URL", pg.tcp_url(&db))];
    let args = [std::ffi::OsStr::new("restore"), dump.as_os_str()];
    let started = Instant::now();
    let run = crate::guards::run_on_pty(&args, &envs, "Replace its objects", b"\x04");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{}",
        run.output
    );
    assert_eq!(run.code, Some(3), "{}", run.output);
    assert!(run.output.contains("cancelled"), "{}", run.output);
    // The question shows the other sessions.
    let shown = run.output.lines().any(|l| {
        l.trim_start().starts_with(&format!("pid {} (", other.pid))
            && l.contains("killsafe-blocker")
    });
    assert!(shown, "{}", run.output);
    // An empty line is no too.
    let run = crate::guards::run_on_pty(&args, &envs, "Replace its objects", b"\n");
    assert_eq!(run.code, Some(3), "{}", run.output);
    assert_eq!(fingerprint(&db), before);
    drop(other);
    pg.drop_db(&db);
}

/// The script's last statements still run in psql after the whole backup was read and COMMIT was
/// handed over. A signal then stops psql, and the message is exact: psql's stderr, read to its
/// end, shows that COMMIT was never sent, so the transaction rolled back (not "unknown").
#[test]
fn a_signal_after_commit_was_handed_to_psql_but_not_sent_reports_the_rollback() {
    let pg = server();
    let work = work_dir();
    // Hand-written SQL (no pg_dump header, so no trailer is required) whose tail is slow.
    let sql = work.path().join("tail.sql");
    fs::write(
        &sql,
        "CREATE TABLE handed (a int);\nINSERT INTO handed VALUES (1);\nSELECT pg_sleep(20);\n",
    )
    .unwrap();
    let db = pg.create_db("killsafe_handed_stop");
    let cmd = Cmd::new()
        .args(["restore", "--yes"])
        .arg(&sql)
        .env("DATABASE_URL", pg.tcp_url(&db))
        .timeout(Duration::from_secs(60));
    let child = cmd.spawn();
    wait_until(
        "the slow tail runs",
        Duration::from_secs(120),
        Some(&child),
        || running(&db, "SELECT pg_sleep%"),
    );
    let started = Instant::now();
    cmd::signal(&child, libc::SIGTERM);
    let out = cmd.wait(child);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a signal before COMMIT was sent does not wait for the tail:\n{out}"
    );
    out.assert_code(143);
    let error = out
        .stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(error.contains("rolls it back"), "{out}");
    assert!(!error.contains("unknown"), "{out}");
    wait_until(
        "no backend of the target remains",
        Duration::from_secs(10),
        None,
        || backends(&db) == 0,
    );
    assert_eq!(
        pg.psql(
            &db,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'handed'"
        ),
        "0",
        "nothing was committed:\n{out}"
    );
}

/// A signal while the question waits for an answer ends aos-backup at once, with its message
/// (the prompt's thread must not hold stderr while it reads the answer).
#[test]
fn a_signal_at_the_confirmation_prompt_ends_the_restore_at_once() {
    let pg = server();
    let work = work_dir();
    let dump = small_dump(work.path());
    let db = target("killsafe_prompt_signal");
    let before = fingerprint(&db);
    let envs = [("DATABASE_URL", pg.tcp_url(&db))];
    let args = [std::ffi::OsStr::new("restore"), dump.as_os_str()];
    let started = Instant::now();
    let run = crate::guards::run_on_pty(&args, &envs, "Replace its objects", b"");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{}",
        run.output
    );
    assert_eq!(run.code, Some(143), "{}", run.output);
    assert!(run.output.contains("is as it was"), "{}", run.output);
    assert_eq!(fingerprint(&db), before);
    pg.drop_db(&db);
}

/// A prepared transaction holds its locks with no session behind it: the lock-wait error says
/// so, and does not send the user to --terminate-sessions, which cannot end it.
#[test]
fn a_prepared_transaction_holding_a_lock_is_named_as_such() {
    let pg = server();
    let work = work_dir();
    let dump = small_dump(work.path());
    let db = target("killsafe_prepared");
    let before = fingerprint(&db);
    pg.psql(
        &db,
        "BEGIN; LOCK TABLE items IN ACCESS SHARE MODE; PREPARE TRANSACTION 'aos_it_prepared';",
    );
    let out = Cmd::new()
        .args([
            "restore",
            "--yes",
            "--terminate-sessions",
            "--lock-timeout",
            "1s",
        ])
        .arg(&dump)
        .consent_from_database_of(&dump)
        .env("DATABASE_URL", pg.tcp_url(&db))
        .timeout(Duration::from_secs(60))
        .run();
    pg.psql(&db, "ROLLBACK PREPARED 'aos_it_prepared';");
    out.assert_code(1);
    let error = out
        .stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(error.contains("prepared transaction"), "{out}");
    assert!(error.contains("aos_it_prepared"), "{out}");
    assert!(out.stderr.contains("ROLLBACK PREPARED"), "{out}");
    assert!(!error.contains("has ended since"), "{out}");
    assert_eq!(fingerprint(&db), before, "the target changed");
    pg.drop_db(&db);
}
