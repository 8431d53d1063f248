//! The safety guards, interrupts and locking, against the real PostgreSQL server:
//!
//! - the production guard (`NODE_ENV`, `APP_ENV`, `RAILS_ENV`, `ENVIRONMENT`, also from `./.env`);
//! - the warning about a remote host;
//! - the confirmation of a restore into a populated database, without a terminal (refused at once)
//!   and on a real pseudo-terminal (answered `n` and `y`);
//! - damaged, foreign and truncated backups: refused or rolled back, the target's data never lost;
//! - SIGTERM, Ctrl-C and SIGKILL during a backup or a restore: nothing half-written left behind,
//!   no pg_dump left running, the target as it was;
//! - the lock on the backup folder, a stale lock file, and the leftovers of a killed run.
//!
//! Faults (a pg_dump or pg_restore that hangs or crashes) come from small shell scripts in a temp
//! folder passed as `PG_BIN`; they answer `--version` with the real tool's version and `exec` the
//! real binaries otherwise. Everything else is the real server and the real client tools.

use std::ffi::{CStr, OsStr};
use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::cmd::{self, Cmd, Output};
use crate::harness::{self, server};
use crate::support::{alive, names_if_any as names, tempdir as work_dir, wait_until};

/// How long a refusal (guard, lock) may take: it must not wait for anything.
const AT_ONCE: Duration = Duration::from_secs(8);
/// How long an interrupted run may take to exit after the signal.
const SIGNAL_EXIT: Duration = Duration::from_secs(5);
/// Timeout of the runs that are signalled: a run that ignores the signal fails the test in time.
const SIGNALLED_RUN_TIMEOUT: Duration = Duration::from_secs(40);

const PRODUCTION_VARS: [&str; 4] = ["NODE_ENV", "APP_ENV", "RAILS_ENV", "ENVIRONMENT"];

/// The database that backups are made of: ~6,000 rows of poorly compressible text, so that a cut
/// at 60% lands in the middle of the data. Made once, never changed.
const SOURCE_SQL: &str = r"
SET client_min_messages = warning;
SET ROLE app;
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, note text);
INSERT INTO items SELECT g, 'item ' || g, repeat(md5(g::text), 3) FROM generate_series(1, 3000) g;
CREATE TABLE events (id bigserial PRIMARY KEY, item_id int NOT NULL REFERENCES items, payload jsonb);
INSERT INTO events (item_id, payload)
SELECT (g % 3000) + 1, jsonb_build_object('n', g, 'h', md5(g::text || 'x'))
  FROM generate_series(1, 3000) g;
";

/// A populated target: the backup's two tables with other rows, which a restore (complete or
/// partial) would replace. (A complete restore leaves it equal to the source.)
const TARGET_SQL: &str = r#"
SET client_min_messages = warning;
SET ROLE app;
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, note text);
INSERT INTO items VALUES (1, 'keep me', 'target row'), (2, 'précieux ✓', NULL);
CREATE TABLE events (id bigserial PRIMARY KEY, item_id int NOT NULL, payload jsonb);
INSERT INTO events (item_id, payload) VALUES (1, '{"kept": true}');
"#;
const TARGET_TABLES: u32 = 2;

struct Source {
    db: String,
    contents: String,
}

/// The source database, made on first use and shared (read-only) by the tests.
fn source() -> &'static Source {
    static SOURCE: OnceLock<Source> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let pg = server();
        let db = pg.create_db("guards_source");
        pg.psql(&db, SOURCE_SQL);
        let contents = pg.table_contents(&db);
        assert!(
            contents.contains("table public.items (3000 rows)"),
            "{}",
            &contents[..contents.len().min(500)]
        );
        Source { db, contents }
    })
}

/// A new populated target database and its contents.
fn populated_target(prefix: &str) -> (String, String) {
    let pg = server();
    let db = pg.create_db(prefix);
    pg.psql(&db, TARGET_SQL);
    let contents = pg.table_contents(&db);
    assert!(contents.contains("keep me"), "{contents}");
    assert_ne!(contents, source().contents);
    (db, contents)
}

/// Runs the real `pg_dump` of the test server on `db` (as the superuser, over the socket) into
/// `out`.
fn pg_dump(db: &str, args: &[&str], out: &Path) {
    let mut all: Vec<&str> = args.to_vec();
    let out = out.to_str().expect("a UTF-8 path");
    all.extend(["--file", out]);
    crate::support::pg_tool("pg_dump", &all, db);
}

/// A bare custom-format archive of the source, as `pg_dump -Fc` writes it.
fn source_custom_dump(dir: &Path) -> PathBuf {
    let file = dir.join("source.dump");
    pg_dump(&source().db, &["-Fc", "--no-owner", "--no-acl"], &file);
    file
}

/// `aos-backup backup` of the source into `backup_dir` with the real tools; returns the new file.
fn aos_backup(backup_dir: &Path, extra: &[&str]) -> PathBuf {
    let out = Cmd::new()
        .arg("backup")
        .args(extra)
        .env("DATABASE_URL", server().tcp_url(&source().db))
        .env("BACKUP_DIR", backup_dir)
        .run();
    out.assert_success();
    let path = PathBuf::from(out.stdout_trimmed());
    assert!(path.is_file(), "backup printed {path:?}:\n{out}");
    path
}

/// `aos-backup restore --yes FILE` into `db` (as the app role over TCP), plus `extra` arguments.
fn restore_yes(db: &str, file: &Path, extra: &[&str]) -> Output {
    Cmd::new()
        .args(["restore", "--yes"])
        .args(extra)
        .consent_from_database_of(file)
        .arg(file)
        .env("DATABASE_URL", server().tcp_url(db))
        .run()
}

/// Writes the first `percent`% of `src` to `dst`.
fn cut(src: &Path, dst: &Path, percent: usize) {
    let bytes = fs::read(src).expect("read the file to cut");
    let keep = bytes.len() * percent / 100;
    assert!(keep > 0 && keep < bytes.len());
    fs::write(dst, &bytes[..keep]).expect("write the cut file");
}

/// A `PG_BIN` folder: the named tools are fault scripts, the others `exec` the real binaries.
///
/// A fault script answers `--version` like the real tool (aos-backup checks it), then writes its
/// pid to `<tool>.pid` in the folder (atomically) and runs its body. Sleepers it leaves behind are
/// killed on drop, by pid.
struct FakeBin {
    dir: TempDir,
}

/// pg_dump that writes some bytes, then hangs; `exec` makes the sleeper the pid in the pid file.
const HANGING: &str =
    "printf 'PGDMP these bytes never become a whole archive %0200d' 0\nexec sleep 60";
/// pg_dump that writes some bytes, then dies of SIGKILL mid-stream.
const CRASHING: &str = "printf 'PGDMP half an archive %0200d' 0\nkill -9 $$\nsleep 5";
/// pg_dump that writes some bytes, then dies of SIGTERM.
const SELF_TERMINATING: &str = "printf 'PGDMP half an archive %0200d' 0\nkill -TERM $$\nsleep 5";
/// A tool that does nothing but hang.
const SLEEPING: &str = "exec sleep 60";

impl FakeBin {
    fn new(fakes: &[(&str, &str)]) -> FakeBin {
        let pg = server();
        let dir = tempfile::Builder::new()
            .prefix("aos-backup-it-fakebin.")
            .tempdir()
            .expect("create the fake PG_BIN");
        for tool in ["pg_dump", "pg_restore", "psql"] {
            let real = pg.bindir.join(tool);
            let real = real.display();
            let script = match fakes.iter().find(|(name, _)| *name == tool) {
                Some((_, body)) => {
                    let pid_file = dir.path().join(format!("{tool}.pid"));
                    let pid_file = pid_file.display();
                    format!(
                        "#!/bin/sh\n\
                         if [ \"$1\" = --version ]; then exec '{real}' --version; fi\n\
                         echo $$ > '{pid_file}.tmp' && mv '{pid_file}.tmp' '{pid_file}'\n\
                         {body}\n"
                    )
                }
                None => format!("#!/bin/sh\nexec '{real}' \"$@\"\n"),
            };
            let path = dir.path().join(tool);
            fs::write(&path, script).expect("write a fake tool");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        FakeBin { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The pid the fault script of `tool` wrote, if it ran.
    fn pid(&self, tool: &str) -> Option<i32> {
        fs::read_to_string(self.dir.path().join(format!("{tool}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Waits until the fault script of `tool` has run its body up to `exec sleep`; returns its pid.
    #[track_caller]
    fn wait_sleeping(&self, tool: &str, child: &Child) -> i32 {
        let pid = self.wait_started(tool, child);
        wait_until(
            &format!("the fake {tool} sleeps"),
            Duration::from_secs(30),
            Some(child),
            || fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0")),
        );
        pid
    }

    /// Waits until the fault script of `tool` has started; returns its pid.
    #[track_caller]
    fn wait_started(&self, tool: &str, child: &Child) -> i32 {
        wait_until(
            &format!("the fake {tool} starts"),
            Duration::from_secs(30),
            Some(child),
            || self.pid(tool).is_some(),
        );
        self.pid(tool).expect("pid file")
    }
}

impl Drop for FakeBin {
    fn drop(&mut self) {
        for tool in ["pg_dump", "pg_restore", "psql"] {
            let Some(pid) = self.pid(tool) else { continue };
            let is_our_sleeper =
                fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0"));
            if alive(pid) && is_our_sleeper {
                // SAFETY: kill has no memory-safety preconditions; the pid is our fake's sleeper.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Production guard
// ---------------------------------------------------------------------------------------------

#[test]
fn production_guard_refuses_restore_unless_forced() {
    let pg = server();
    let work = work_dir();
    let dump = source_custom_dump(work.path());
    for var in PRODUCTION_VARS {
        let (target, before) = populated_target("guards_prod");
        let out = Cmd::new()
            .args(["restore", "--yes"])
            .arg(&dump)
            .env("DATABASE_URL", pg.tcp_url(&target))
            .env(var, "production")
            .run();
        out.assert_code(3);
        assert!(
            out.stderr.contains(&format!("{var}=production")) && out.stderr.contains("--force"),
            "the refusal must name {var} and --force:\n{out}"
        );
        assert_eq!(
            pg.table_contents(&target),
            before,
            "{var}=production: the refused restore changed the target"
        );

        let out = Cmd::new()
            .args(["restore", "--yes", "--force"])
            .arg(&dump)
            .env("DATABASE_URL", pg.tcp_url(&target))
            .env(var, "production")
            .run();
        out.assert_success();
        assert!(
            out.stderr.contains(var),
            "--force must still log {var}:\n{out}"
        );
        assert_eq!(
            pg.table_contents(&target),
            source().contents,
            "{var} with --force"
        );
        pg.drop_db(&target);
    }
}

#[test]
fn production_guard_holds_when_the_marker_comes_from_dotenv() {
    let pg = server();
    let work = work_dir();
    let dump = source_custom_dump(work.path());
    let (target, before) = populated_target("guards_prod_dotenv");
    let cmd = Cmd::new()
        .args(["restore", "--yes"])
        .arg(&dump)
        .env("DATABASE_URL", pg.tcp_url(&target));
    fs::write(
        cmd.dir().join(".env"),
        "# deployed settings\nNODE_ENV=production\n",
    )
    .unwrap();
    let out = cmd.run();
    out.assert_code(3);
    assert!(
        out.stderr.contains("NODE_ENV=production") && out.stderr.contains("--force"),
        "{out}"
    );
    assert_eq!(pg.table_contents(&target), before);
    pg.drop_db(&target);
}

// ---------------------------------------------------------------------------------------------
// 2. Remote host warning
// ---------------------------------------------------------------------------------------------

#[test]
fn remote_host_is_warned_about_and_local_ones_are_not() {
    let pg = server();
    let work = work_dir();
    let dump = source_custom_dump(work.path());

    let out = Cmd::new()
        .args(["restore", "--yes"])
        .arg(&dump)
        .env("DATABASE_URL", "postgresql://app:pw@db.invalid:5432/x")
        .run();
    out.assert_code(7);
    let warning = out
        .stderr
        .lines()
        .find(|l| l.contains("remote host"))
        .unwrap_or_else(|| panic!("no remote-host warning:\n{out}"));
    assert!(
        warning.contains("db.invalid:5432"),
        "the warning must name the host:\n{out}"
    );
    assert!(warning.to_lowercase().contains("warn"), "{warning}");

    // Local servers: the socket, 127.0.0.1, localhost and ::1. The database does not exist (or
    // nothing listens), so each fails to connect: after the point where the warning would be.
    let missing = "guards_no_such_database";
    for url in [
        pg.socket_url(missing),
        pg.tcp_url(missing),
        format!(
            "postgresql://app:{}@localhost:{}/{missing}",
            harness::app_password_encoded(),
            pg.port
        ),
        "postgresql://app:pw@[::1]:1/x".to_string(),
    ] {
        let out = Cmd::new()
            .args(["restore", "--yes"])
            .arg(&dump)
            .env("DATABASE_URL", &url)
            .run();
        out.assert_code(7);
        assert!(
            !out.stderr.contains("remote host"),
            "{url} is local:\n{out}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Populated target: --yes, no terminal, a real terminal
// ---------------------------------------------------------------------------------------------

#[test]
fn populated_target_without_yes_or_terminal_is_refused_at_once() {
    let pg = server();
    let work = work_dir();
    let dump = source_custom_dump(work.path());
    let (target, before) = populated_target("guards_confirm");

    let started = Instant::now();
    let out = Cmd::new()
        .arg("restore")
        .arg(&dump)
        .env("DATABASE_URL", pg.tcp_url(&target))
        .timeout(Duration::from_secs(60))
        .run();
    let took = started.elapsed();
    out.assert_code(3);
    assert!(took < AT_ONCE, "the refusal took {took:?}:\n{out}");
    for needle in [
        "--yes".to_string(),
        target.clone(),
        format!("{TARGET_TABLES} tables"),
    ] {
        assert!(
            out.stderr.contains(&needle),
            "the refusal lacks {needle:?}:\n{out}"
        );
    }
    assert_eq!(pg.table_contents(&target), before);

    // An empty database needs no confirmation.
    let empty = pg.create_db("guards_empty");
    let out = Cmd::new()
        .arg("restore")
        .arg(&dump)
        .env("DATABASE_URL", pg.tcp_url(&empty))
        .run();
    out.assert_success();
    assert_eq!(pg.table_contents(&empty), source().contents);
    pg.drop_db(&target);
    pg.drop_db(&empty);
}

/// What a run on a pseudo-terminal printed, and how it ended.
pub(crate) struct PtyRun {
    pub(crate) code: Option<i32>,
    pub(crate) output: String,
}

/// Runs `aos-backup ARGS` with a new pseudo-terminal as its controlling terminal, stdin, stdout
/// and stderr (like a person at a terminal), waits for `prompt` to appear, types `answer` (an
/// empty `answer` sends SIGTERM instead), and collects everything until the process exits.
pub(crate) fn run_on_pty(
    args: &[&OsStr],
    envs: &[(&str, String)],
    prompt: &str,
    answer: &[u8],
) -> PtyRun {
    // The master, close-on-exec (`std` always asks for it) so no child inherits it.
    let master = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/ptmx")
        .expect("open /dev/ptmx");
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: the fd is a valid pty master; `name` is a writable buffer of the given length.
    let slave_name = unsafe {
        assert_eq!(libc::grantpt(master.as_raw_fd()), 0, "grantpt");
        assert_eq!(libc::unlockpt(master.as_raw_fd()), 0, "unlockpt");
        assert_eq!(
            libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()),
            0,
            "ptsname_r"
        );
        CStr::from_ptr(name.as_ptr())
    };
    let slave_path = PathBuf::from(slave_name.to_string_lossy().into_owned());
    let slave = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&slave_path)
        .unwrap_or_else(|e| panic!("open {}: {e}", slave_path.display()));
    let size = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
    unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &size) };

    let home = work_dir();
    let cwd = work_dir();
    let mut command = Command::new(env!("CARGO_BIN_EXE_aos-backup"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("LANG", "C.UTF-8")
        .env("TZ", "UTC")
        .env("TERM", "xterm")
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd.path())
        .stdin(Stdio::from(slave.try_clone().expect("dup the pty")))
        .stdout(Stdio::from(slave.try_clone().expect("dup the pty")))
        .stderr(Stdio::from(slave));
    // SAFETY: setsid and ioctl are async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("start aos-backup on a pty");
    // Close our copies of the slave: the master then reads EIO once the child is gone.
    drop(command);

    let output = Arc::new(Mutex::new(Vec::new()));
    let mut reader = master.try_clone().expect("dup the master");
    let sink = Arc::clone(&output);
    let reading = thread::spawn(move || {
        let mut chunk = [0; 4096];
        // EIO (every slave closed) ends the stream.
        while let Ok(n @ 1..) = reader.read(&mut chunk) {
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(&chunk[..n]);
        }
    });
    let text = |output: &Mutex<Vec<u8>>| {
        String::from_utf8_lossy(&output.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    };
    let kill = |child: &mut Child| {
        let _ = child.kill();
        let _ = child.wait();
    };

    let deadline = Instant::now() + Duration::from_secs(60);
    while !text(&output).contains(prompt) {
        if Instant::now() >= deadline || matches!(child.try_wait(), Ok(Some(_))) {
            kill(&mut child);
            panic!("no prompt {prompt:?} on the terminal:\n{}", text(&output));
        }
        thread::sleep(Duration::from_millis(25));
    }
    if answer.is_empty() {
        // No answer: a SIGTERM while the question waits (as a service manager would send).
        let pid = i32::try_from(child.id()).expect("a pid");
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    } else {
        let mut writer = master;
        writer.write_all(answer).expect("type the answer");
    }
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for aos-backup") {
            break status;
        }
        if Instant::now() >= deadline {
            kill(&mut child);
            panic!(
                "aos-backup did not finish after the answer:\n{}",
                text(&output)
            );
        }
        thread::sleep(Duration::from_millis(25));
    };
    let _ = reading.join();
    PtyRun {
        code: status.code().or_else(|| status.signal().map(|s| 128 + s)),
        output: text(&output),
    }
}

#[test]
fn populated_target_asks_on_a_terminal() {
    let pg = server();
    let work = work_dir();
    let dump = source_custom_dump(work.path());
    let (target, before) = populated_target("guards_tty");
    let envs = [("DATABASE_URL", pg.tcp_url(&target))];
    let args = [OsStr::new("restore"), dump.as_os_str()];
    let prompt = "Replace its objects";

    let run = run_on_pty(&args, &envs, prompt, b"n\n");
    assert_eq!(run.code, Some(3), "answered n:\n{}", run.output);
    assert!(
        run.output
            .contains(&format!("holds {TARGET_TABLES} tables")),
        "the question must say what is at stake:\n{}",
        run.output
    );
    assert!(run.output.contains("cancelled"), "{}", run.output);
    assert_eq!(
        pg.table_contents(&target),
        before,
        "answered n, yet the target changed"
    );

    let run = run_on_pty(&args, &envs, prompt, b"y\n");
    assert_eq!(run.code, Some(0), "answered y:\n{}", run.output);
    assert_eq!(pg.table_contents(&target), source().contents);
    pg.drop_db(&target);
}

// ---------------------------------------------------------------------------------------------
// 4. Bad and truncated files: nothing lost
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_files_are_refused_before_the_target_is_touched() {
    let pg = server();
    let work = work_dir();
    let (target, before) = populated_target("guards_bad_files");

    let missing = work.path().join("missing.dump");
    let empty = work.path().join("empty.dump");
    fs::write(&empty, b"").unwrap();
    let text = work.path().join("notes.sql");
    fs::write(&text, "Shopping list:\n- milk\n- eggs\n").unwrap();
    let binary = work.path().join("random.dump");
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut bytes: Vec<u8> = (0..65_536)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[3]
        })
        .collect();
    // Never a magic number by chance (gzip, zstd, age, PGDMP all start otherwise).
    bytes[0] = 0;
    fs::write(&binary, &bytes).unwrap();
    let folder = work.path().join("not-an-archive.dir");
    fs::create_dir(&folder).unwrap();
    fs::write(folder.join("readme.txt"), "not a dump\n").unwrap();

    for (file, needle) in [
        (&missing, "no such file"),
        (&empty, "empty"),
        (&text, "not a PostgreSQL backup"),
        (&binary, "not a PostgreSQL backup"),
        (&folder, "no toc.dat"),
    ] {
        let out = restore_yes(&target, file, &[]);
        out.assert_code(2);
        assert!(
            out.stderr.contains(needle),
            "{}: expected {needle:?}:\n{out}",
            file.display()
        );
        assert_eq!(
            pg.table_contents(&target),
            before,
            "{} changed the target",
            file.display()
        );
    }
    pg.drop_db(&target);
}

#[test]
fn truncated_custom_dump_fails_in_pg_restore_and_rolls_back() {
    let pg = server();
    let work = work_dir();
    let dump = source_custom_dump(work.path());
    let truncated = work.path().join("truncated.dump");
    cut(&dump, &truncated, 60);
    let (target, before) = populated_target("guards_cut_custom");

    let out = restore_yes(&target, &truncated, &[]);
    out.assert_code(1);
    assert!(
        out.stderr.contains("pg_restore"),
        "pg_restore must be what failed:\n{out}"
    );
    assert!(out.stderr.contains("rolled back"), "{out}");
    assert_eq!(
        pg.table_contents(&target),
        before,
        "a truncated archive changed the target"
    );
    pg.drop_db(&target);
}

#[test]
fn truncated_zstd_backup_fails_with_or_without_its_metadata() {
    let pg = server();
    let work = work_dir();
    let backup = aos_backup(&work.path().join("backups"), &[]);
    assert!(
        backup.to_string_lossy().ends_with(".dump.zst"),
        "{}",
        backup.display()
    );
    let meta_path = PathBuf::from(format!("{}.meta.json", backup.display()));
    let meta = fs::read(&meta_path).expect("the backup has its metadata");
    fs::remove_file(&meta_path).unwrap();
    let whole = work.path().join("whole.dump.zst");
    fs::rename(&backup, &whole).unwrap();
    cut(&whole, &backup, 60);
    let (target, before) = populated_target("guards_cut_zstd");

    // Without the sidecar no checksum catches it: the stream itself must.
    let out = restore_yes(&target, &backup, &[]);
    assert!(out.code.is_some_and(|c| c != 0), "{out}");
    assert_eq!(
        pg.table_contents(&target),
        before,
        "without metadata:\n{out}"
    );

    // With the sidecar, the checksum refuses it before the database is touched.
    fs::write(&meta_path, meta).unwrap();
    let out = restore_yes(&target, &backup, &[]);
    out.assert_code(4);
    assert!(
        out.stderr.contains("checksum") && out.stderr.contains("not touched"),
        "{out}"
    );
    assert_eq!(pg.table_contents(&target), before, "with metadata");
    pg.drop_db(&target);
}

#[test]
fn plain_sql_cut_at_a_statement_boundary_is_caught_by_its_missing_trailer() {
    let pg = server();
    let work = work_dir();
    let full = work.path().join("full.sql");
    pg_dump(
        &source().db,
        &["-Fp", "--clean", "--if-exists", "--no-owner", "--no-acl"],
        &full,
    );
    let sql = fs::read_to_string(&full).unwrap();
    // Cut right after the first COPY's data: every DROP and CREATE and one table's rows are in,
    // each statement whole. psql would run it all and commit without complaint.
    let end_of_copy = sql.find("\n\\.\n").expect("the dump has COPY data") + "\n\\.\n".len();
    let part = &sql[..end_of_copy];
    assert!(
        part.contains("DROP TABLE IF EXISTS public.items;"),
        "{part:.2000}"
    );
    assert!(part.contains("COPY public."), "{part:.2000}");
    assert!(!part.contains("dump complete"));
    let truncated = work.path().join("truncated.sql");
    fs::write(&truncated, part).unwrap();

    // The control: psql alone commits the cut dump and loses the target's data.
    let (control, control_before) = populated_target("guards_cut_sql_control");
    let status = Command::new(pg.bindir.join("psql"))
        .args([
            "-X",
            "-q",
            "--single-transaction",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
        ])
        .arg(&truncated)
        .arg(format!("--dbname={}", pg.tcp_url(&control)))
        .env_clear()
        .env("PGPASSFILE", "/nonexistent")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the control psql run failed");
    assert_ne!(pg.table_contents(&control), control_before);
    pg.drop_db(&control);

    let (target, before) = populated_target("guards_cut_sql");
    let out = restore_yes(&target, &truncated, &[]);
    out.assert_code(4);
    assert!(out.stderr.contains("cut short"), "{out}");
    assert_eq!(
        pg.table_contents(&target),
        before,
        "the cut SQL was committed"
    );
    pg.drop_db(&target);
}

#[test]
fn truncated_sql_gz_fails_and_rolls_back() {
    let pg = server();
    let work = work_dir();
    let backup = aos_backup(
        &work.path().join("backups"),
        &["--format", "plain", "--compression", "gzip"],
    );
    assert!(
        backup.to_string_lossy().ends_with(".sql.gz"),
        "{}",
        backup.display()
    );
    fs::remove_file(format!("{}.meta.json", backup.display())).unwrap();
    let whole = work.path().join("whole.sql.gz");
    fs::rename(&backup, &whole).unwrap();
    cut(&whole, &backup, 60);
    let (target, before) = populated_target("guards_cut_gz");

    let out = restore_yes(&target, &backup, &[]);
    assert!(out.code.is_some_and(|c| c != 0), "{out}");
    assert_eq!(
        pg.table_contents(&target),
        before,
        "a truncated .sql.gz changed the target:\n{out}"
    );
    pg.drop_db(&target);
}

// ---------------------------------------------------------------------------------------------
// 5. Interrupts
// ---------------------------------------------------------------------------------------------

/// Starts `backup` of the source (plus `extra` arguments) with the fake `pg_dump`, waits until it
/// runs and a `.partial` is in the backup folder, sends `sig` (to aos-backup alone, or to its
/// process group like Ctrl-C at a terminal), and checks that it exits with `code` at once,
/// leaving nothing but the lock file, and no pg_dump running.
fn interrupt_backup(
    fake_pg_dump: &str,
    extra: &[&str],
    sig: libc::c_int,
    to_group: bool,
    code: i32,
) {
    let pg = server();
    let fake = FakeBin::new(&[("pg_dump", fake_pg_dump)]);
    let cmd = Cmd::new()
        .arg("backup")
        .args(extra)
        .env("DATABASE_URL", pg.tcp_url(&source().db))
        .env("PG_BIN", fake.path())
        .timeout(SIGNALLED_RUN_TIMEOUT);
    let backups = cmd.dir().join("backups");
    let child = cmd.spawn();
    let pg_dump_pid = fake.wait_sleeping("pg_dump", &child);
    wait_until(
        "a .partial appears",
        Duration::from_secs(30),
        Some(&child),
        || names(&backups).iter().any(|n| n.ends_with(".partial")),
    );
    assert!(alive(pg_dump_pid));

    let sent = Instant::now();
    if to_group {
        cmd::signal_group(&child, sig);
    } else {
        cmd::signal(&child, sig);
    }
    let out = cmd.wait(child);
    let took = sent.elapsed();
    out.assert_code(code);
    assert!(took < SIGNAL_EXIT, "exiting took {took:?}:\n{out}");
    assert!(out.stderr.contains("nothing was kept"), "{out}");
    assert_eq!(names(&backups), [".aos-backup.lock"], "left behind:\n{out}");
    assert!(
        out.stdout.is_empty(),
        "no backup path may be printed:\n{out}"
    );
    wait_until(
        "the fake pg_dump is gone",
        Duration::from_secs(3),
        None,
        || !alive(pg_dump_pid),
    );
}

#[test]
fn sigterm_during_backup_stops_pg_dump_and_leaves_nothing() {
    interrupt_backup(HANGING, &[], libc::SIGTERM, false, 143);
}

#[test]
fn ctrl_c_during_backup_leaves_nothing() {
    interrupt_backup(HANGING, &[], libc::SIGINT, true, 130);
}

#[test]
fn sigterm_during_a_directory_backup_removes_the_partial_folder() {
    // pg_dump -Fd writes the folder itself: the fake makes it, with a file inside, and hangs.
    let hanging_dir =
        "for a in \"$@\"; do case \"$a\" in --file=*) out=\"${a#--file=}\";; esac; done\n\
                       mkdir \"$out\" && printf 'partial' > \"$out/toc.dat\"\n\
                       exec sleep 60";
    interrupt_backup(
        hanging_dir,
        &["--format", "directory"],
        libc::SIGTERM,
        false,
        143,
    );
}

#[test]
fn pg_dump_killed_by_the_groups_sigterm_first_still_counts_as_terminated() {
    // `systemctl stop` (or `kill -TERM -PGID`) signals aos-backup and pg_dump together, and
    // pg_dump's death can be seen before aos-backup's own handler runs. Here pg_dump gets the
    // SIGTERM alone, which makes that order certain: the run must still end as terminated, not
    // as a pg_dump failure.
    let pg = server();
    let fake = FakeBin::new(&[("pg_dump", SELF_TERMINATING)]);
    let cmd = Cmd::new()
        .arg("backup")
        .env("DATABASE_URL", pg.tcp_url(&source().db))
        .env("PG_BIN", fake.path());
    let out = cmd.run();
    assert!(
        fake.pid("pg_dump").is_some(),
        "the fake pg_dump did not run:\n{out}"
    );
    out.assert_code(143);
    assert!(out.stderr.contains("nothing was kept"), "{out}");
    assert_eq!(
        names(&cmd.dir().join("backups")),
        [".aos-backup.lock"],
        "{out}"
    );
}

#[test]
fn ctrl_c_during_a_real_pg_dump_leaves_nothing() {
    // The real pg_dump catches SIGINT: it cancels its query and exits 1 ("terminated by user").
    // It is made to wait on a lock, so that it is mid-dump when Ctrl-C comes.
    let pg = server();
    let db = pg.create_db("guards_blocked");
    pg.psql(
        &db,
        "SET ROLE app; CREATE TABLE t (id int); INSERT INTO t VALUES (1);",
    );
    let mut locker = Command::new(pg.bindir.join("psql"))
        .args(["-X", "-q", "--host"])
        .arg(&pg.socket_dir)
        .args([
            "--port",
            &pg.port.to_string(),
            "--username",
            harness::SUPERUSER,
        ])
        .args(["--dbname", &db, "--command"])
        .arg(
            "SET client_connection_check_interval = '100ms'; BEGIN; \
             LOCK TABLE t IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60);",
        )
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start psql");
    let count = |sql: &str| {
        pg.psql(
            "postgres",
            &sql.replace("$DB", &harness::quote_literal(&db)),
        )
    };
    wait_until("the table is locked", Duration::from_secs(30), None, || {
        count(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
             WHERE d.datname = $DB AND l.mode = 'AccessExclusiveLock' AND l.granted",
        ) != "0"
    });
    let cmd = Cmd::new()
        .arg("backup")
        .env("DATABASE_URL", pg.tcp_url(&db))
        .timeout(SIGNALLED_RUN_TIMEOUT);
    let backups = cmd.dir().join("backups");
    let child = cmd.spawn();
    wait_until(
        "pg_dump waits for the lock",
        Duration::from_secs(30),
        Some(&child),
        || {
            count(
                "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = $DB AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
            ) != "0"
        },
    );
    assert!(names(&backups).iter().any(|n| n.ends_with(".partial")));
    let sent = Instant::now();
    cmd::signal_group(&child, libc::SIGINT);
    let out = cmd.wait(child);
    let took = sent.elapsed();
    let _ = locker.kill();
    let _ = locker.wait();
    out.assert_code(130);
    assert!(took < SIGNAL_EXIT, "exiting took {took:?}:\n{out}");
    assert_eq!(names(&backups), [".aos-backup.lock"], "left behind:\n{out}");
    pg.drop_db(&db);
}

#[test]
fn pg_dump_killed_mid_stream_leaves_no_backup() {
    let pg = server();
    let fake = FakeBin::new(&[("pg_dump", CRASHING)]);
    let cmd = Cmd::new()
        .arg("backup")
        .env("DATABASE_URL", pg.tcp_url(&source().db))
        .env("PG_BIN", fake.path());
    let out = cmd.run();
    out.assert_code(1);
    assert!(
        fake.pid("pg_dump").is_some(),
        "the fake pg_dump did not run:\n{out}"
    );
    assert!(
        out.stderr.contains("pg_dump failed") && out.stderr.contains("signal 9"),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
    assert_eq!(
        names(&cmd.dir().join("backups")),
        [".aos-backup.lock"],
        "{out}"
    );
}

#[test]
fn sigterm_during_restore_rolls_back() {
    // A real psql, a real transaction: the restore drops a table and deletes rows, then waits on
    // the server. The backend notices its client is gone within 100 ms (PostgreSQL 14+).
    let pg = server();
    let work = work_dir();
    let slow = work.path().join("slow.sql");
    fs::write(
        &slow,
        "SET client_connection_check_interval = '100ms';\n\
         DROP TABLE events;\n\
         DELETE FROM items;\n\
         SELECT pg_sleep(30);\n",
    )
    .unwrap();
    let (target, before) = populated_target("guards_restore_term");
    let cmd = Cmd::new()
        .args(["restore", "--yes"])
        .arg(&slow)
        .env("DATABASE_URL", pg.tcp_url(&target))
        .timeout(SIGNALLED_RUN_TIMEOUT);
    let child = cmd.spawn();
    // In the transaction, past the DROP: its backend sleeps holding an exclusive lock.
    let in_flight = format!(
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid \
         WHERE a.datname = {} AND a.query LIKE '%pg_sleep%' AND a.state = 'active' \
           AND l.mode = 'AccessExclusiveLock' AND l.granted AND a.pid <> pg_backend_pid()",
        harness::quote_literal(&target)
    );
    wait_until(
        "the restore is mid-transaction",
        Duration::from_secs(30),
        Some(&child),
        || pg.psql("postgres", &in_flight) != "0",
    );

    let sent = Instant::now();
    cmd::signal(&child, libc::SIGTERM);
    let out = cmd.wait(child);
    let took = sent.elapsed();
    out.assert_code(143);
    assert!(took < SIGNAL_EXIT, "exiting took {took:?}:\n{out}");
    wait_until(
        "the restore's backend is gone",
        Duration::from_secs(10),
        None,
        || pg.psql("postgres", &in_flight) == "0",
    );
    assert_eq!(
        pg.table_contents(&target),
        before,
        "the interrupted restore changed the target"
    );
    pg.drop_db(&target);
}

#[test]
fn sigterm_while_pg_restore_runs_stops_it() {
    let pg = server();
    let work = work_dir();
    let dump = source_custom_dump(work.path());
    let fake = FakeBin::new(&[("pg_restore", SLEEPING)]);
    let (target, before) = populated_target("guards_restore_fake");
    let cmd = Cmd::new()
        .args(["restore", "--yes"])
        .arg(&dump)
        .env("DATABASE_URL", pg.tcp_url(&target))
        .env("PG_BIN", fake.path())
        .timeout(SIGNALLED_RUN_TIMEOUT);
    let child = cmd.spawn();
    let pid = fake.wait_sleeping("pg_restore", &child);
    let sent = Instant::now();
    cmd::signal(&child, libc::SIGTERM);
    let out = cmd.wait(child);
    out.assert_code(143);
    assert!(sent.elapsed() < SIGNAL_EXIT, "{out}");
    wait_until(
        "the fake pg_restore is gone",
        Duration::from_secs(3),
        None,
        || !alive(pid),
    );
    assert_eq!(pg.table_contents(&target), before);
    pg.drop_db(&target);
}

#[test]
fn sigterm_during_a_parallel_restore_removes_the_unpacked_archive() {
    // --jobs needs a seekable file: a .dump.zst is unpacked into TMPDIR first.
    let pg = server();
    let work = work_dir();
    let backup = aos_backup(&work.path().join("backups"), &[]);
    let tmp = work.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let fake = FakeBin::new(&[("pg_restore", SLEEPING)]);
    let (target, before) = populated_target("guards_restore_jobs");
    let cmd = Cmd::new()
        .args(["restore", "--yes", "--force", "--jobs", "2"])
        .consent_from_database_of(&backup)
        .arg(&backup)
        .env("DATABASE_URL", pg.tcp_url(&target))
        .env("PG_BIN", fake.path())
        .env("TMPDIR", &tmp)
        .timeout(SIGNALLED_RUN_TIMEOUT);
    let child = cmd.spawn();
    let pid = fake.wait_sleeping("pg_restore", &child);
    // The unpacked archive has no name: pg_restore reads it as /dev/fd/N.
    assert!(
        names(&tmp).is_empty(),
        "named temp files: {:?}",
        names(&tmp)
    );
    cmd::signal(&child, libc::SIGTERM);
    let out = cmd.wait(child);
    out.assert_code(143);
    assert!(
        names(&tmp).is_empty(),
        "left in TMPDIR: {:?}\n{out}",
        names(&tmp)
    );
    wait_until(
        "the fake pg_restore is gone",
        Duration::from_secs(3),
        None,
        || !alive(pid),
    );
    assert_eq!(pg.table_contents(&target), before);
    pg.drop_db(&target);
}

// ---------------------------------------------------------------------------------------------
// 6. Locking
// ---------------------------------------------------------------------------------------------

#[test]
fn a_running_backup_locks_the_folder_against_backup_prune_and_restore() {
    let pg = server();
    let work = work_dir();
    let backups = work.path().join("backups");
    let dump = source_custom_dump(work.path());
    let (target, before) = populated_target("guards_lock");
    let fake = FakeBin::new(&[("pg_dump", HANGING)]);
    let first_cmd = Cmd::new()
        .arg("backup")
        .env("DATABASE_URL", pg.tcp_url(&source().db))
        .env("BACKUP_DIR", &backups)
        .env("PG_BIN", fake.path())
        .timeout(SIGNALLED_RUN_TIMEOUT);
    let first = first_cmd.spawn();
    fake.wait_sleeping("pg_dump", &first);
    let holder = format!("pid {}", first.id());
    let lock_file = backups.join(".aos-backup.lock");
    assert!(
        fs::read_to_string(&lock_file).unwrap().starts_with(&holder),
        "{holder} must be in the lock file"
    );

    let others: [(&str, Vec<&OsStr>, &str); 3] = [
        ("backup", vec![OsStr::new("backup")], source().db.as_str()),
        (
            "prune",
            ["prune", "--keep-last", "1"].map(OsStr::new).to_vec(),
            source().db.as_str(),
        ),
        (
            "restore",
            vec![OsStr::new("restore"), OsStr::new("--yes"), dump.as_os_str()],
            target.as_str(),
        ),
    ];
    for (what, args, db) in others {
        let started = Instant::now();
        let out = Cmd::new()
            .args(args)
            .env("DATABASE_URL", pg.tcp_url(db))
            .env("BACKUP_DIR", &backups)
            .timeout(Duration::from_secs(60))
            .run();
        let took = started.elapsed();
        if out.code != Some(5) {
            cmd::signal_group(&first, libc::SIGKILL);
        }
        out.assert_code(5);
        assert!(took < AT_ONCE, "{what} took {took:?} to refuse:\n{out}");
        assert!(
            out.stderr.contains(&holder),
            "{what} must name the holder ({holder}):\n{out}"
        );
    }
    assert_eq!(pg.table_contents(&target), before);
    assert!(
        names(&backups).iter().any(|n| n.ends_with(".partial")),
        "the refused runs must not touch the running backup's file"
    );

    cmd::signal(&first, libc::SIGTERM);
    first_cmd.wait(first).assert_code(143);

    // The lock frees itself with its holder: the next backup runs.
    let next = aos_backup(&backups, &[]);
    assert!(next.starts_with(&backups));
    pg.drop_db(&target);
}

#[test]
fn a_stale_lock_file_does_not_block() {
    let pg = server();
    let work = work_dir();
    let backups = work.path().join("backups");
    fs::create_dir(&backups).unwrap();
    let lock_file = backups.join(".aos-backup.lock");
    // Left by a process that died: the text stays, the flock went with it.
    fs::write(
        &lock_file,
        "pid 4194301, backup since 2020-01-01 00:00:00 UTC",
    )
    .unwrap();

    let cmd = Cmd::new()
        .arg("backup")
        .env("DATABASE_URL", pg.tcp_url(&source().db))
        .env("BACKUP_DIR", &backups);
    let child = cmd.spawn();
    let pid = child.id();
    let out = cmd.wait(child);
    out.assert_success();
    assert!(Path::new(out.stdout_trimmed()).is_file(), "{out}");
    let text = fs::read_to_string(&lock_file).unwrap();
    assert!(
        text.starts_with(&format!("pid {pid}, backup since ")),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Leftovers of a killed run
// ---------------------------------------------------------------------------------------------

#[test]
fn leftovers_of_a_killed_backup_are_listed_and_pruned_and_foreign_files_kept() {
    let pg = server();
    let work = work_dir();
    let backups = work.path().join("backups");
    let complete = aos_backup(&backups, &[]);
    let complete_name = complete.file_name().unwrap().to_string_lossy().into_owned();
    let foreign = backups.join("backup_2024.sql.gz");
    let foreign_bytes = b"\x1f\x8b a backup someone copied in by hand".to_vec();
    fs::write(&foreign, &foreign_bytes).unwrap();

    let fake = FakeBin::new(&[("pg_dump", HANGING)]);
    let cmd = Cmd::new()
        .arg("backup")
        .env("DATABASE_URL", pg.tcp_url(&source().db))
        .env("BACKUP_DIR", &backups)
        .env("PG_BIN", fake.path())
        .timeout(SIGNALLED_RUN_TIMEOUT);
    let child = cmd.spawn();
    let pg_dump_pid = fake.wait_sleeping("pg_dump", &child);
    wait_until(
        "a .partial file appears",
        Duration::from_secs(30),
        Some(&child),
        || names(&backups).iter().any(|n| n.ends_with(".partial")),
    );
    cmd::signal(&child, libc::SIGKILL);
    let out = cmd.wait(child);
    assert_eq!(out.signal, Some(libc::SIGKILL), "{out}");
    let partial = names(&backups)
        .into_iter()
        .find(|n| n.ends_with(".partial"))
        .expect("a SIGKILLed backup leaves its .partial");

    // Its pg_dump dies with it (PR_SET_PDEATHSIG).
    wait_until(
        "the pg_dump of the killed backup is gone",
        Duration::from_secs(3),
        None,
        || !alive(pg_dump_pid),
    );

    let list = |json: bool| {
        let mut args = vec!["list"];
        if json {
            args.insert(0, "--json");
        }
        let out = Cmd::new().args(args).env("BACKUP_DIR", &backups).run();
        out.assert_success();
        out
    };
    let out = list(false);
    let line = out
        .stdout
        .lines()
        .find(|l| l.trim_end().ends_with("incomplete"))
        .unwrap_or_else(|| panic!("list shows no incomplete entry:\n{out}"));
    assert!(line.starts_with("20"), "the leftover's id is shown: {line}");
    let json = list(true).json();
    let status_of = |file: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|e| e["file"] == file)
            .map(|e| e["status"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(
        status_of(&partial).as_deref(),
        Some("incomplete"),
        "{json:#}"
    );
    assert_eq!(
        status_of(&complete_name).as_deref(),
        Some("complete"),
        "{json:#}"
    );
    assert_eq!(
        status_of("backup_2024.sql.gz").as_deref(),
        Some("unmanaged"),
        "{json:#}"
    );

    let out = Cmd::new()
        .args(["prune", "--keep-last", "5", "--all-databases"])
        .env("BACKUP_DIR", &backups)
        .run();
    out.assert_success();
    assert!(
        out.stdout.contains(&partial),
        "prune must report the leftover:\n{out}"
    );
    let left = names(&backups);
    assert!(!left.iter().any(|n| n.ends_with(".partial")), "{left:?}");
    assert_eq!(
        left,
        [
            ".aos-backup.lock".to_string(),
            complete_name.clone(),
            format!("{complete_name}.meta.json"),
            "backup_2024.sql.gz".to_string(),
        ]
    );
    assert_eq!(fs::read(&foreign).unwrap(), foreign_bytes);
    drop(fake);
}
