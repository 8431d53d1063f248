//! A small builder that runs the real `aos-backup` binary in a clean environment and captures its
//! exit status and output:
//!
//! ```ignore
//! let out = Cmd::new().args(["backup", "--json"]).env("DATABASE_URL", url).run();
//! out.assert_success();
//! let report = out.json();
//! ```
//!
//! The environment starts empty but for `PATH` (inherited), `HOME` (a fresh empty folder, so no
//! `~/.pgpass` or config of the person running the tests leaks in), `LANG=C.UTF-8` and `TZ=UTC`. The
//! current folder is a fresh temporary folder owned by the `Cmd` ([`Cmd::dir`]); stdin is empty. The
//! child leads its own process group.

// Each test module uses only part of this API.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The default limit of [`Cmd::run`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// One invocation of `aos-backup`; can be run several times (same folders each time).
pub struct Cmd {
    program: PathBuf,
    args: Vec<OsString>,
    env: BTreeMap<OsString, OsString>,
    current_dir: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    dir: TempDir,
    home: TempDir,
}

impl Default for Cmd {
    fn default() -> Self {
        Self::new()
    }
}

impl Cmd {
    /// `aos-backup` with no arguments, a clean environment, a fresh current folder and empty stdin.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("aos-backup-it-cwd.")
            .tempdir()
            .expect("create the command's temporary folder");
        let home = tempfile::Builder::new()
            .prefix("aos-backup-it-home.")
            .tempdir()
            .expect("create the command's temporary HOME");
        let mut env = BTreeMap::new();
        if let Some(path) = std::env::var_os("PATH") {
            env.insert("PATH".into(), path);
        }
        env.insert("HOME".into(), home.path().into());
        env.insert("LANG".into(), "C.UTF-8".into());
        env.insert("TZ".into(), "UTC".into());
        Self {
            program: PathBuf::from(env!("CARGO_BIN_EXE_aos-backup")),
            args: Vec::new(),
            env,
            current_dir: None,
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
            dir,
            home,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .insert(key.as_ref().to_owned(), value.as_ref().to_owned());
        self
    }

    /// Removes an environment variable (including `PATH`, `HOME`, `LANG` or `TZ`).
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.remove(key.as_ref());
        self
    }

    /// Adds `--from-database DB` when `backup` has a sidecar naming database DB: the consent
    /// `restore` needs to restore one database's backup into another (the tests mostly restore
    /// into a fresh database with another name). No sidecar: nothing is added.
    pub fn consent_from_database_of(self, backup: &Path) -> Self {
        let mut name = backup.file_name().unwrap_or_default().to_os_string();
        name.push(".meta.json");
        let Ok(text) = std::fs::read_to_string(backup.with_file_name(name)) else {
            return self;
        };
        let meta: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        match meta["database"].as_str() {
            Some(db) => self.args(["--from-database", db]),
            None => self,
        }
    }

    /// Runs in `dir` instead of [`Cmd::dir`].
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Feeds `bytes` on stdin, then closes it.
    pub fn stdin_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// How long [`Cmd::run`] waits before it kills the process group and panics (default 120 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The temporary folder owned by this `Cmd`, the default current folder; removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The temporary folder given as `HOME`; removed on drop.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The command line, for messages.
    pub fn command_line(&self) -> String {
        std::iter::once(self.program.as_os_str())
            .chain(self.args.iter().map(OsString::as_os_str))
            .map(|part| format!("{:?}", part.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs to completion and returns its status and output. Panics if it cannot start, or if it runs
    /// longer than the timeout (after killing its process group), showing what it printed.
    #[track_caller]
    pub fn run(&self) -> Output {
        let child = self.spawn();
        self.wait(child)
    }

    /// Starts the process with stdout and stderr piped, for tests that signal it while it runs; finish
    /// with [`Cmd::wait`]. The child leads its own process group: [`signal_group`] reaches it and its
    /// children like Ctrl-C at a terminal. Keep the `Cmd` alive while the child runs (it owns the
    /// folders).
    #[track_caller]
    pub fn spawn(&self) -> Child {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(&self.env)
            .current_dir(self.current_dir.as_deref().unwrap_or(self.dir.path()))
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.command_line()));
        if let (Some(bytes), Some(mut stdin)) = (self.stdin.clone(), child.stdin.take()) {
            thread::spawn(move || {
                // The child may exit without reading everything; that is its business.
                let _ = stdin.write_all(&bytes);
            });
        }
        child
    }

    /// Waits for a child from [`Cmd::spawn`] under this `Cmd`'s timeout and collects its output, up to
    /// the end of both streams. On timeout (also when the process exited but something it started keeps
    /// its stdout or stderr open) kills the process group and panics, showing what it printed.
    #[track_caller]
    pub fn wait(&self, mut child: Child) -> Output {
        let deadline = Instant::now() + self.timeout;
        let stdout = Stream::read(child.stdout.take());
        let stderr = Stream::read(child.stderr.take());
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let kill_group = || {
            // SAFETY: sending a signal has no memory-safety preconditions. The group is the child's
            // own (it leads it), and the child is not reaped before `rx` reports.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        };
        let mut timed_out = false;
        let status = rx.recv_timeout(remaining(deadline)).unwrap_or_else(|_| {
            timed_out = true;
            kill_group();
            rx.recv().expect("the waiting thread reports")
        });
        let status = status.unwrap_or_else(|e| panic!("waiting for {}: {e}", self.command_line()));
        let open = !(stdout.finish(deadline) && stderr.finish(deadline));
        if open {
            kill_group();
            let grace = Instant::now() + Duration::from_secs(2);
            let _ = stdout.finish(grace) && stderr.finish(grace);
        }
        let output = Output {
            command: self.command_line(),
            code: status.code(),
            signal: status.signal(),
            stdout: stdout.text(),
            stderr: stderr.text(),
        };
        assert!(
            !timed_out,
            "timed out after {:?}, killed:\n{output}",
            self.timeout
        );
        assert!(
            !open,
            "the process exited, but its stdout or stderr stayed open past the {:?} timeout \
             (something it started outlived it):\n{output}",
            self.timeout
        );
        output
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// A child's output stream, read to its end by a thread; the text so far stays readable.
struct Stream {
    bytes: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
    finished: std::cell::Cell<bool>,
}

impl Stream {
    fn read(source: Option<impl Read + Send + 'static>) -> Self {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        if let Some(mut source) = source {
            let sink = Arc::clone(&bytes);
            thread::spawn(move || {
                let mut chunk = [0; 8192];
                loop {
                    match source.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => sink
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                let _ = tx.send(());
            });
        }
        // Without a source, `tx` is dropped: `finish` sees a disconnected channel, i.e. done.
        Self {
            bytes,
            done,
            finished: std::cell::Cell::new(false),
        }
    }

    /// Whether the stream reached its end by `deadline`.
    fn finish(&self, deadline: Instant) -> bool {
        if !self.finished.get() {
            let end = self.done.recv_timeout(remaining(deadline));
            self.finished
                .set(!matches!(end, Err(mpsc::RecvTimeoutError::Timeout)));
        }
        self.finished.get()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
    }
}

/// Sends `signal` (such as `libc::SIGINT`) to the child only.
pub fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: sending a signal has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

/// Sends `signal` to the child's process group (the child and everything it started), as a terminal
/// does on Ctrl-C.
pub fn signal_group(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: as in `signal`.
    let rc = unsafe { libc::kill(-pid, signal) };
    assert_eq!(
        rc,
        0,
        "kill(-{pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

/// What a finished `aos-backup` did.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    /// The exit code; `None` when a signal ended the process.
    pub code: Option<i32>,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    /// Stdout, lossily decoded as UTF-8.
    pub stdout: String,
    /// Stderr, lossily decoded as UTF-8.
    pub stderr: String,
}

impl Output {
    /// Panics, showing both streams, unless the exit code is `expected`.
    #[track_caller]
    pub fn assert_code(&self, expected: i32) -> &Self {
        assert!(
            self.code == Some(expected),
            "expected exit code {expected}:\n{self}"
        );
        self
    }

    /// Panics, showing both streams, unless the exit code is 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        self.assert_code(0)
    }

    /// Stdout without surrounding whitespace.
    pub fn stdout_trimmed(&self) -> &str {
        self.stdout.trim()
    }

    /// Stderr without surrounding whitespace.
    pub fn stderr_trimmed(&self) -> &str {
        self.stderr.trim()
    }

    /// Stdout parsed as JSON; panics, showing both streams, when it is not.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.command)?;
        match (self.code, self.signal) {
            (Some(code), _) => writeln!(f, "exit code: {code}")?,
            (None, Some(signal)) => writeln!(f, "killed by signal {signal}")?,
            (None, None) => writeln!(f, "no exit status")?,
        }
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}
