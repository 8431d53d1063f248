//! Running one hook command: `/bin/sh -c COMMAND` in a process group of its own, with the
//! variables it is given and none of the connection's secrets, its output logged (never on
//! stdout), and its whole group stopped after its time limit, when its operation is cancelled,
//! or when we die.

use super::context::OpContext;
use super::process::{describe_status, die_with_us, watch_group};
use super::redact::{sanitize, Secrets};
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a running hook is checked on.
const POLL: Duration = Duration::from_millis(20);
/// How long a stopped hook gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(2);
/// How long the output of a hook that ended is still read (a background child may hold it).
const DRAIN: Duration = Duration::from_secs(2);

/// One hook to run.
#[derive(Debug, Clone)]
pub struct Hook {
    /// Its name in messages and logs (`before`, `after`, `on-failure`, `finally`).
    pub name: &'static str,
    /// The command line given to `/bin/sh -c`.
    pub command: String,
    /// How long it may run; `None`: no limit.
    pub timeout: Option<Duration>,
}

/// Why a hook did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// It could not be started (why).
    Start(String),
    /// It ended with a failure status (described), after printing this last line, if any.
    Failed {
        /// `exit code 3`, `killed by signal 9`.
        status: String,
        /// The last line it printed, secrets masked.
        last_line: Option<String>,
    },
    /// It ran longer than its time limit, and its process group was killed.
    TimedOut(Duration),
    /// Its operation was cancelled by this signal while it ran; it was stopped.
    Interrupted(i32),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Start(why) => write!(f, "cannot start /bin/sh: {why}"),
            Failure::Failed {
                status,
                last_line: Some(line),
            } => write!(f, "{status}: {line}"),
            Failure::Failed { status, .. } => f.write_str(status),
            Failure::TimedOut(limit) => write!(
                f,
                "timed out after {} and was killed",
                super::units::human_duration(*limit)
            ),
            Failure::Interrupted(_) => f.write_str("interrupted"),
        }
    }
}

/// The environment of a hook: the variables `inherited` from us, less those that may hold a
/// connection secret (see [`withheld`]), then `vars`.
#[must_use]
pub fn environment<'a>(
    inherited: impl IntoIterator<Item = (&'a str, &'a str)>,
    secrets: &Secrets,
    vars: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = inherited
        .into_iter()
        .filter(|(k, v)| !withheld(k, v, secrets) && !vars.iter().any(|(n, _)| n == k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.extend(vars.iter().cloned());
    env
}

/// Whether a variable of ours is kept from hooks: `DATABASE_URL`, every `PG*` variable (libpq's
/// connection settings, `PGPASSWORD` among them), and any variable whose value holds a secret
/// the operation knows (the password).
#[must_use]
pub fn withheld(name: &str, value: &str, secrets: &Secrets) -> bool {
    name == "DATABASE_URL"
        || name.starts_with("PG")
        || matches!(
            name,
            "AWS_SECRET_ACCESS_KEY"
                | "AWS_SESSION_TOKEN"
                | "AZURE_STORAGE_KEY"
                | "AZURE_STORAGE_SAS_TOKEN"
                | "AZURE_STORAGE_CONNECTION_STRING"
        )
        || secrets.scrub(value) != value
}

/// Runs `hook` with exactly the variables `env` and waits for it (this blocks: call it from a
/// thread that may wait, which then outlives the hook).
pub fn run(op: &OpContext, hook: &Hook, env: &[(String, String)]) -> Result<(), Failure> {
    let mut cmd = command(hook, env);
    let mut child = start(op, &mut cmd)?;
    let pid = child.id();
    let watch = watch_group(pid)
        .map_err(|e| tracing::debug!("cannot watch the {} hook's process group: {e}", hook.name));
    let output = Output::read(op, hook.name, &mut child);
    let ended = wait(op, &mut child, hook.timeout);
    op.forget_child(pid);
    drop(watch);
    let last_line = output.finish();
    match ended {
        Ended::Exited(status) if status.success() => Ok(()),
        Ended::Exited(status) => Err(Failure::Failed {
            status: describe_status(&status),
            last_line,
        }),
        Ended::TimedOut => Err(Failure::TimedOut(hook.timeout.unwrap_or_default())),
        Ended::Cancelled(sig) => Err(Failure::Interrupted(sig)),
        Ended::Lost(e) => Err(Failure::Start(format!("waiting for it: {e}"))),
    }
}

/// `/bin/sh -c COMMAND`, leading its own process group, killed if the thread that spawns it
/// ends, with no input and its output piped to us.
fn command(hook: &Hook, env: &[(String, String)]) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(&hook.command)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    die_with_us(&mut cmd);
    cmd
}

/// Starts the hook as a child of `op` (nothing starts once `op` is cancelled).
fn start(op: &OpContext, cmd: &mut Command) -> Result<Child, Failure> {
    op.track_child(|| Ok(cmd.spawn()?), Child::id)
        .map_err(|e| match op.cancelled() {
            Some(sig) => Failure::Interrupted(sig),
            None => Failure::Start(e.to_string()),
        })
}

/// How the wait for a hook ended.
enum Ended {
    Exited(ExitStatus),
    TimedOut,
    Cancelled(i32),
    Lost(std::io::Error),
}

/// Waits for the hook to end, stopping it at its deadline or when `op` is cancelled. The leader
/// stays unreaped until then, so that its group can still be signalled.
fn wait(op: &OpContext, child: &mut Child, timeout: Option<Duration>) -> Ended {
    let deadline = timeout.map(|t| Instant::now() + t);
    let Ok(pid) = i32::try_from(child.id()) else {
        return reap(child);
    };
    loop {
        let done = exited(pid);
        if let Some(sig) = op.cancelled() {
            stop(child);
            return Ended::Cancelled(sig);
        }
        if done {
            return reap(child);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            stop(child);
            return Ended::TimedOut;
        }
        std::thread::sleep(POLL);
    }
}

fn reap(child: &mut Child) -> Ended {
    match child.wait() {
        Ok(status) => Ended::Exited(status),
        Err(e) => Ended::Lost(e),
    }
}

/// Stops the hook's whole process group: SIGTERM, then SIGKILL after [`GRACE`]; then reaps the
/// leader. The leader is reaped last so that its process group id cannot be reused meanwhile.
fn stop(child: &mut Child) {
    let Ok(pgid) = i32::try_from(child.id()) else {
        return;
    };
    signal_group(pgid, libc::SIGTERM);
    let grace = Instant::now() + GRACE;
    while Instant::now() < grace && !exited(pgid) {
        std::thread::sleep(POLL);
    }
    signal_group(pgid, libc::SIGKILL);
    let _ = child.wait();
}

fn signal_group(pgid: i32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Whether the child `pid` has exited, leaving it unreaped.
fn exited(pid: i32) -> bool {
    // SAFETY: siginfo_t is plain data that waitid fills in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let Ok(id) = libc::id_t::try_from(pid) else {
        return true;
    };
    // SAFETY: `info` is a valid siginfo_t; WNOWAIT leaves the child waitable.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            id,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: waitid filled `info` in (si_pid stays 0 when the child still runs).
    r != 0 || unsafe { info.si_pid() } != 0
}

/// The hook's stdout and stderr, logged line by line as they come, the last line of each kept.
struct Output {
    readers: Vec<JoinHandle<()>>,
    /// The last line of stdout, then of stderr.
    last: [Arc<Mutex<Option<String>>>; 2],
}

impl Output {
    fn read(op: &OpContext, name: &'static str, child: &mut Child) -> Output {
        let last: [Arc<Mutex<Option<String>>>; 2] = Default::default();
        let streams: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ];
        let readers = streams
            .into_iter()
            .zip(&last)
            .filter_map(|(stream, last)| {
                let (stream, op, last) = (stream?, op.clone(), last.clone());
                Some(std::thread::spawn(move || {
                    log_lines(&op, name, stream, &last);
                }))
            })
            .collect();
        Output { readers, last }
    }

    /// The last line of stderr, else of stdout, once the readers are done (or [`DRAIN`] has
    /// passed).
    fn finish(self) -> Option<String> {
        let until = Instant::now() + DRAIN;
        while Instant::now() < until && !self.readers.iter().all(JoinHandle::is_finished) {
            std::thread::sleep(POLL);
        }
        let [stdout, stderr] = self
            .last
            .map(|l| l.lock().unwrap_or_else(PoisonError::into_inner).clone());
        stderr.or(stdout)
    }
}

fn log_lines(op: &OpContext, name: &str, stream: impl Read, last: &Mutex<Option<String>>) {
    for line in BufReader::new(stream).split(b'\n') {
        let Ok(line) = line else { break };
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let shown = op.secrets().scrub(&sanitize(line));
        tracing::info!("{name} hook: {shown}");
        *last.lock().unwrap_or_else(PoisonError::into_inner) = Some(shown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(command: &str, timeout: Option<Duration>) -> Hook {
        Hook {
            name: "test",
            command: command.to_string(),
            timeout,
        }
    }

    fn path() -> Vec<(String, String)> {
        vec![("PATH".into(), "/usr/bin:/bin".into())]
    }

    #[test]
    fn secrets_are_withheld_and_the_rest_inherited() {
        let secrets = Secrets::new();
        secrets.register("hunter22");
        let env = environment(
            [
                ("DATABASE_URL", "postgresql://u@h/d"),
                ("PGPASSWORD", "x"),
                ("PGHOST", "db"),
                ("APP_DB_PASS", "hunter22"),
                ("HOME", "/root"),
                ("AOS_BACKUP_FILE", "stale"),
            ],
            &secrets,
            &[("AOS_BACKUP_FILE".into(), "new".into())],
        );
        assert_eq!(
            env,
            vec![
                ("HOME".to_string(), "/root".to_string()),
                ("AOS_BACKUP_FILE".to_string(), "new".to_string()),
            ]
        );
    }

    #[test]
    fn a_failing_hook_says_how_and_its_last_line() {
        let op = OpContext::default();
        assert_eq!(run(&op, &hook("echo hello", None), &path()), Ok(()));
        let err = run(&op, &hook("echo one; echo two >&2; exit 3", None), &path()).unwrap_err();
        assert_eq!(
            err,
            Failure::Failed {
                status: "exit code 3".into(),
                last_line: Some("two".into())
            }
        );
    }

    #[test]
    fn a_hook_past_its_time_is_killed_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let command = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let started = Instant::now();
        let err = run(
            &OpContext::default(),
            &hook(&command, Some(Duration::from_millis(300))),
            &path(),
        )
        .unwrap_err();
        assert_eq!(err, Failure::TimedOut(Duration::from_millis(300)));
        assert!(started.elapsed() < Duration::from_secs(10));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.trim_start().chars().next());
        assert!(
            matches!(state, None | Some('Z' | 'X')),
            "the hook's background child was killed too: {stat}"
        );
    }

    #[test]
    fn a_cancelled_operation_stops_its_hook() {
        let op = OpContext::default();
        let op2 = op.clone();
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            op2.cancel(libc::SIGTERM);
        });
        let err = run(&op, &hook("sleep 30", None), &path()).unwrap_err();
        canceller.join().unwrap();
        assert_eq!(err, Failure::Interrupted(libc::SIGTERM));
    }
}
