//! Small helpers that several test files need, kept in one place so that every file reads a
//! folder, a sidecar or a checksum the same way: temp folders, folder listings, sidecars,
//! SHA-256, file modes, output assertions, age keys, a tmpfs, process polling. The names the
//! program itself defines (the lock file, the sidecar's path) come from the library.

use crate::cmd::{self, Output};
use aos_backup::check::naming;
use aos_backup::check::LOCK_FILE;
use aos_backup::types::Meta;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// A fresh temporary folder (`aos-backup-it.XXXX`), removed when dropped.
pub fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("aos-backup-it.")
        .tempdir()
        .expect("create a temporary folder")
}

/// A temporary folder for a fixture shared by the tests of this process (held in a `static`,
/// which is never dropped): removed when the process exits.
pub fn shared_tempdir(prefix: &str) -> PathBuf {
    static FOLDERS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    extern "C" fn remove_shared_folders() {
        let folders = FOLDERS.lock().unwrap_or_else(PoisonError::into_inner);
        for folder in folders.iter() {
            let _ = std::fs::remove_dir_all(folder);
        }
    }
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temporary folder")
        .keep();
    let mut folders = FOLDERS.lock().unwrap_or_else(PoisonError::into_inner);
    if folders.is_empty() {
        // SAFETY: registers a plain extern "C" function without arguments that does not unwind.
        unsafe { libc::atexit(remove_shared_folders) };
    }
    folders.push(dir.clone());
    dir
}

/// Lower-case hex SHA-256, as the sidecar records it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The names of everything in `dir`, sorted; panics when `dir` cannot be read.
pub fn names(dir: &Path) -> Vec<String> {
    list(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// [`names`], but none when `dir` cannot be read (it was never created, say).
pub fn names_if_any(dir: &Path) -> Vec<String> {
    list(dir).unwrap_or_default()
}

fn list(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = fs::read_dir(dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<Vec<String>>>()?;
    names.sort();
    Ok(names)
}

/// [`names`] without the folder's lock file: the backups, sidecars and leftovers.
pub fn backup_names(dir: &Path) -> Vec<String> {
    names(dir).into_iter().filter(|n| n != LOCK_FILE).collect()
}

/// The sidecar path of the backup at `backup` (`<backup>.meta.json`).
pub fn sidecar(backup: &Path) -> PathBuf {
    Meta::path_for(backup)
}

/// A JSON file, parsed; panics with the path and the text when it is not JSON.
pub fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

pub fn write_json(path: &Path, value: &Value) {
    fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

/// The sidecar of the backup at `backup`, as JSON (not through the library's own parser, so that
/// tests see what is on disk).
pub fn read_sidecar(backup: &Path) -> Value {
    read_json(&sidecar(backup))
}

/// An RFC 3339 time.
pub fn at(time: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(time)
        .unwrap_or_else(|e| panic!("{time}: {e}"))
        .with_timezone(&Utc)
}

/// The id of a backup made at `time` (no label).
pub fn id_at(time: &str) -> String {
    naming::make_id(at(time), None)
}

/// The file name of a backup in the default format (custom, zstd) with id `id`.
pub fn file_name(id: &str) -> String {
    naming::file_name(id, ".dump.zst")
}

/// A backup "made" at `time`: the bytes of `src` under a new name, with `src`'s sidecar adjusted
/// (id, label, file, started_at, finished_at). Returns the id and the new file.
pub fn fabricate(src: &Path, dir: &Path, time: &str, label: Option<&str>) -> (String, PathBuf) {
    let id = match label {
        Some(l) => format!("{}-{l}", id_at(time)),
        None => id_at(time),
    };
    let dst = dir.join(file_name(&id));
    fs::copy(src, &dst).unwrap();
    let mut meta = read_json(&sidecar(src));
    meta["id"] = id.clone().into();
    meta["label"] = label.map_or(Value::Null, Value::from);
    meta["file"] = file_name(&id).into();
    meta["started_at"] = time.into();
    meta["finished_at"] = (at(time) + chrono::Duration::seconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        .into();
    write_json(&sidecar(&dst), &meta);
    (id, dst)
}

pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Makes a secret file private (0600): aos-backup refuses one that others can read.
pub fn private(path: &Path) {
    set_mode(path, 0o600);
}

/// The permission bits of `path` (not following a link).
pub fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Asserts that `text` (taken from `out`) holds every needle.
#[track_caller]
pub fn assert_contains(out: &Output, text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "expected {needle:?} in:\n{out}");
    }
}

/// An age key pair made by `age-keygen -o FILE` (which writes it 0600).
pub struct AgeKey {
    pub identity: PathBuf,
    pub recipient: String,
    /// The `AGE-SECRET-KEY-...` line.
    pub secret: String,
}

pub fn age_keygen(dir: &Path, name: &str) -> AgeKey {
    let identity = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&identity)
        .output()
        .expect("age-keygen runs (apt-get install -y age)");
    assert!(
        out.status.success(),
        "age-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(&identity).unwrap();
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("a public key line")
        .trim()
        .to_owned();
    let secret = text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .expect("a secret key line")
        .to_owned();
    assert!(recipient.starts_with("age1"), "{recipient}");
    AgeKey {
        identity,
        recipient,
        secret,
    }
}

/// A small tmpfs, to fill a disk on purpose; unmounted when dropped.
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (such as `256k`) on `dir` (created), or `None` when this is not
    /// allowed here (not root, no mount in the sandbox).
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Tmpfs {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Whether process `pid` is alive (a zombie is not).
pub fn alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

/// Polls `condition` every 20 ms until it holds; on timeout kills `child`'s process group (if
/// given) and panics.
#[track_caller]
pub fn wait_until(
    what: &str,
    timeout: Duration,
    child: Option<&Child>,
    mut condition: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() >= deadline {
            if let Some(child) = child {
                cmd::signal_group(child, libc::SIGKILL);
            }
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a client tool of the test server as the superuser over the socket; panics on failure.
pub fn pg_tool(tool: &str, args: &[&str], db: &str) -> Vec<u8> {
    let pg = crate::harness::server();
    let output = Command::new(pg.bindir.join(tool))
        .args(args)
        .arg("--host")
        .arg(&pg.socket_dir)
        .args(["--port", &pg.port.to_string()])
        .args(["--username", crate::harness::SUPERUSER, "--dbname", db])
        .env_clear()
        .env("PGPASSFILE", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .expect("run a PostgreSQL tool");
    assert!(
        output.status.success(),
        "{tool} {args:?} on {db} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A database with three tables of data: `big` (20 000 rows), `small`, `other`.
pub fn filled_db(prefix: &str) -> String {
    let pg = crate::harness::server();
    let db = pg.create_db(prefix);
    pg.psql(
        &db,
        "SET ROLE app;
         CREATE TABLE big (id int PRIMARY KEY, t text);
         INSERT INTO big SELECT g, 'row number ' || g FROM generate_series(1, 20000) g;
         CREATE TABLE small (a int); INSERT INTO small VALUES (1), (2);
         CREATE TABLE other (b text); INSERT INTO other VALUES ('x');",
    );
    db
}

/// A superuser session that holds an ACCESS EXCLUSIVE lock on `db`'s table `table` until
/// dropped (psql keeps the transaction open while its stdin is).
pub struct Blocker {
    child: std::process::Child,
    _stdin: std::process::ChildStdin,
}

impl Blocker {
    pub fn lock(db: &str, table: &str) -> Blocker {
        use std::io::{BufRead, BufReader, Write};
        use std::process::{Command, Stdio};
        let pg = crate::harness::server();
        let mut child = Command::new(pg.bindir.join("psql"))
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(pg.socket_url(db))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start psql");
        let mut stdin = child.stdin.take().unwrap();
        writeln!(
            stdin,
            "BEGIN;\nLOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;\nSELECT 'locked';"
        )
        .unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        Blocker {
            child,
            _stdin: stdin,
        }
    }
}

impl Drop for Blocker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Holds the backup folder's lock as another aos-backup run would (an `flock` on its lock file).
pub fn hold_folder_lock(dir: &Path) -> std::fs::File {
    std::fs::create_dir_all(dir).unwrap();
    use std::os::unix::io::AsRawFd;
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
        .unwrap();
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    file
}

/// How many entries of a `--json list` output are complete backups.
pub fn complete_backups(list: &crate::cmd::Output) -> usize {
    list.json()
        .as_array()
        .expect("list --json is an array")
        .iter()
        .filter(|e| e["status"] == "complete")
        .count()
}
