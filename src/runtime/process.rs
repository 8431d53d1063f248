//! Running pg_dump, pg_restore and psql as children of one operation: they die with us (and
//! what they started elsewhere is stopped, see [`spawn_stoppable`]), their stderr tail is kept for
//! messages, and a failed child becomes a typed error.

use super::context::OpContext;
use super::restore_state::COMMIT_MARK;
use crate::error::{Error, Kind};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, ExitStatus};
use std::thread::JoinHandle;

/// A running child with its stderr collected in the background.
pub struct Running {
    pub name: String,
    pub child: Child,
    stderr: Option<JoinHandle<Vec<String>>>,
    ctx: OpContext,
    /// Stops what the child started elsewhere, unless the child ends by itself.
    stopper: Option<Stopper>,
}

/// Keeps this many of the last stderr lines for error messages.
const TAIL_LINES: usize = 30;

/// Spawns `cmd` (stderr must be piped) as a child of the operation `ctx`, which stops it if the
/// operation is cancelled.
pub fn spawn(ctx: &OpContext, name: &str, cmd: &mut Command) -> anyhow::Result<Running> {
    cmd.stderr(std::process::Stdio::piped());
    // No tool reads it, and it may hold the password: it stays in our own environment.
    cmd.env_remove("DATABASE_URL");
    tracing::debug!(program = %cmd.get_program().to_string_lossy(),
        args = ?cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>(), "spawning");
    die_with_us(cmd);
    let mut child = ctx.track_child(
        || {
            cmd.spawn().map_err(|e| {
                Error::new(Kind::Tools, format!("cannot start {name}: {e}"))
                    .hint("check PG_BIN / PATH: the PostgreSQL client tools must be installed and executable")
                    .into()
            })
        },
        Child::id,
    )?;
    let stderr = child.stderr.take().map(|s| {
        let (name, ctx) = (name.to_string(), ctx.clone());
        let reader = ctx.stderr_reader();
        std::thread::spawn(move || {
            let tail = collect_tail(&ctx, &name, s);
            drop(reader);
            tail
        })
    });
    Ok(Running {
        name: name.to_string(),
        child,
        stderr,
        ctx: ctx.clone(),
        stopper: None,
    })
}

/// [`spawn`] for a child that starts a process we cannot signal (`docker exec` starts the tool in
/// a container and forwards no signal to it): `stop`, when given, is the command that stops that
/// process. It runs unless the child exits with success: when the child fails, is stopped (a
/// cancellation, [`Running::kill`]) or is killed with us, even by SIGKILL, since a watcher outside
/// our process runs it.
pub fn spawn_stoppable(
    ctx: &OpContext,
    name: &str,
    cmd: &mut Command,
    stop: Option<Vec<OsString>>,
) -> anyhow::Result<Running> {
    let mut stopper = stop.map(|argv| Stopper::start(name, &argv)).transpose()?;
    match spawn(ctx, name, cmd) {
        Ok(mut running) => {
            running.stopper = stopper;
            Ok(running)
        }
        Err(e) => {
            if let Some(s) = stopper.as_mut() {
                s.disarm();
            }
            Err(e)
        }
    }
}

/// Runs a stop command unless told that the child ended by itself. A tiny `sh` in its own process
/// group, deaf to INT, HUP and TERM, waits for a line on a pipe that only we hold: a line means
/// "ended by itself"; the end of the pipe (dropped without it, or we died) means "run it".
struct Stopper {
    sh: Option<Child>,
    pipe: Option<ChildStdin>,
}

/// How long dropping a [`Stopper`] waits for its stop command to finish.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Stopper {
    fn start(name: &str, argv: &[OsString]) -> anyhow::Result<Stopper> {
        use std::os::unix::process::CommandExt;
        let mut sh = Command::new("/bin/sh");
        sh.args([
            "-c",
            "trap '' INT HUP TERM; read -r _ || exec \"$@\"",
            "aos-backup-stop-watch",
        ])
        .args(argv)
        .env_remove("DATABASE_URL")
        .env_remove("PGPASSWORD")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0);
        let mut child = sh.spawn().map_err(|e| {
            Error::new(
                Kind::Tools,
                format!("cannot start /bin/sh to watch {name}: {e}"),
            )
        })?;
        let pipe = child.stdin.take();
        Ok(Stopper {
            sh: Some(child),
            pipe,
        })
    }

    /// The child ended by itself: nothing to stop.
    fn disarm(&mut self) {
        use std::io::Write;
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(b"done\n");
        }
    }
}

impl Drop for Stopper {
    fn drop(&mut self) {
        // Unless disarmed, the end of the pipe runs the stop command.
        drop(self.pipe.take());
        let Some(mut sh) = self.sh.take() else { return };
        let deadline = std::time::Instant::now() + STOP_WAIT;
        while std::time::Instant::now() < deadline {
            if !matches!(sh.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        tracing::warn!("the command that stops the tool in its container is still running after {}s; left to finish on its own", STOP_WAIT.as_secs());
    }
}

/// Makes the child die with us, however we end (SIGKILL, OOM, panic): the kernel sends it SIGKILL
/// when the thread that spawned it exits (`PR_SET_PDEATHSIG`). Every spawn site waits for its
/// child in the thread that spawned it, so that thread outlives the child. A psql whose input
/// ends without our COMMIT rolls back; a pg_restore killed mid-way leaves what --jobs committed.
pub(crate) fn die_with_us(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the pid is read before the fork.
    let parent = unsafe { libc::getpid() };
    // SAFETY: prctl, getppid and _exit are async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // We may have died between fork and prctl: then nobody is left to send the signal.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Kills a child's whole process group (its forked workers, which `PR_SET_PDEATHSIG` does not
/// reach) when we end without saying goodbye. A tiny `sh` waits for a line on a pipe that only we
/// hold: a newline means "done"; the end of the pipe (we died) means `kill -9 -PGID`.
pub struct GroupWatch {
    sh: Option<Child>,
    pipe: Option<ChildStdin>,
}

/// Spawns `cmd` as the leader of its own process group, watched by a [`GroupWatch`]. For tools
/// that fork workers with their own connections (`pg_restore --jobs`).
pub fn spawn_group(
    ctx: &OpContext,
    name: &str,
    cmd: &mut Command,
) -> anyhow::Result<(Running, GroupWatch)> {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let running = spawn(ctx, name, cmd)?;
    match watch_group(running.child.id()) {
        Ok(watch) => Ok((running, watch)),
        Err(e) => {
            running.kill();
            Err(anyhow::anyhow!("cannot start /bin/sh to watch {name}: {e}"))
        }
    }
}

/// Watches the process group `pgid` (a child that leads its own group): the group is killed if
/// we end before the watch is dropped.
pub(crate) fn watch_group(pgid: u32) -> std::io::Result<GroupWatch> {
    use std::os::unix::process::CommandExt;
    let mut sh = Command::new("/bin/sh");
    sh.args([
        "-c",
        "trap '' INT HUP TERM; read -r _ || kill -9 -\"$1\"",
        "aos-backup-watch",
        &pgid.to_string(),
    ])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .process_group(0);
    let mut child = sh.spawn()?;
    let pipe = child.stdin.take();
    Ok(GroupWatch {
        sh: Some(child),
        pipe,
    })
}

impl Drop for GroupWatch {
    fn drop(&mut self) {
        use std::io::Write;
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(b"done\n");
        }
        if let Some(mut sh) = self.sh.take() {
            let _ = sh.wait();
        }
    }
}

fn collect_tail(ctx: &OpContext, name: &str, stream: impl Read) -> Vec<String> {
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    for line in BufReader::new(stream).split(b'\n') {
        let Ok(line) = line else { break };
        let line = String::from_utf8_lossy(&line).trim_end().to_string();
        if line.is_empty() {
            continue;
        }
        if line.contains(COMMIT_MARK) {
            // Everything before succeeded; psql sends COMMIT now.
            ctx.restore().commit_mark_seen();
            tracing::debug!("{name}: the restore's COMMIT is being sent");
            continue;
        }
        tracing::debug!("{name}: {}", ctx.secrets().scrub(&line));
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    tail.into()
}

/// How a child ended.
pub struct Finished {
    pub name: String,
    pub status: ExitStatus,
    pub stderr: Vec<String>,
    ctx: OpContext,
}

impl Running {
    /// Waits for the child and its stderr.
    pub fn wait(mut self) -> anyhow::Result<Finished> {
        let status = self.child.wait();
        self.ctx.forget_child(self.child.id());
        if let Some(mut stopper) = self.stopper.take() {
            if status.as_ref().is_ok_and(ExitStatus::success) {
                stopper.disarm();
            }
        }
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let status = status.map_err(|e| anyhow::anyhow!("waiting for {}: {e}", self.name))?;
        Ok(Finished {
            name: self.name.clone(),
            status,
            stderr,
            ctx: self.ctx.clone(),
        })
    }

    /// Stops the child (SIGTERM, then SIGKILL) and reaps it.
    pub fn kill(mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.wait();
    }
}

impl Finished {
    /// Ok when the child succeeded, else a typed error built from its stderr.
    pub fn check(&self) -> anyhow::Result<()> {
        use std::os::unix::process::ExitStatusExt;
        if self.status.success() {
            return Ok(());
        }
        if let Some(sig) = self.ctx.cancelled() {
            return Err(self.ctx.interrupted_error(sig).into());
        }
        // Ctrl-C (or a SIGTERM to the whole process group, as systemd sends) reaches the child
        // and us at once, and the child's death may be seen before our own handler has run.
        if let Some(sig) = self
            .status
            .signal()
            .filter(|s| matches!(*s, libc::SIGINT | libc::SIGTERM))
        {
            return Err(self.ctx.interrupted_error(sig).into());
        }
        Err(failure(&self.name, &self.status, &self.stderr, &self.ctx).into())
    }
}

/// Describes an exit status: `exit code 1` or `killed by signal 9`.
#[must_use]
pub fn describe_status(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown status".to_string(),
    }
}

/// A one-line error for a failed child, with a hint for the typical causes.
#[must_use]
pub fn failure(name: &str, status: &ExitStatus, stderr: &[String], ctx: &OpContext) -> Error {
    let important = stderr
        .iter()
        .rev()
        .find(|l| l.contains("error") || l.contains("FATAL") || l.contains("ERROR"))
        .or_else(|| stderr.last())
        .map(|l| ctx.secrets().scrub(l));
    let mut what = important.unwrap_or_else(|| "no error message".to_string());
    // A restore's clean step skips what it cannot drop; when the restore then fails, that is
    // usually the real reason (a view of the target depends on a table, another role owns it).
    if let Some(skipped) = stderr.iter().find_map(|l| {
        l.split_once(crate::archive::sqlfeed::SKIPPED_MARK)
            .map(|(_, why)| why)
    }) {
        what = format!(
            "{what} (earlier, the clean step could not drop an object: {})",
            ctx.secrets().scrub(skipped)
        );
    }
    let (kind, hint) = classify(&stderr.join("\n"));
    // The message shows one line of the tool's stderr; -v logs every line.
    let hint = hint.unwrap_or_else(|| format!("run again with -v to see all of {name}'s messages"));
    Error::new(
        kind,
        format!("{name} failed ({}): {what}", describe_status(status)),
    )
    .hint(hint)
}

/// Recognizes the typical failures (seed 000's list) in a tool's or library's message.
#[must_use]
pub fn classify(text: &str) -> (Kind, Option<String>) {
    let t = text.to_ascii_lowercase();
    if let Some(found) = classify_docker(&t) {
        return found;
    }
    let conn = Kind::Connection;
    if t.contains("certificate")
        || t.contains("tls handshake")
        || t.contains("ssl") && t.contains("not support")
    {
        (conn, Some("TLS failed: check sslmode and sslrootcert in DATABASE_URL (verify-full needs the CA that signed the server's certificate, and a host name the certificate names)".into()))
    } else if t.contains("password authentication failed") || t.contains("no password supplied") {
        (conn, Some("check the user and password in DATABASE_URL (percent-encode special characters: @ is %40)".into()))
    } else if t.contains("database") && t.contains("does not exist") {
        (
            conn,
            Some(
                "create the database first (createdb NAME) or fix its name in DATABASE_URL".into(),
            ),
        )
    } else if t.contains("role") && t.contains("does not exist") {
        (
            conn,
            Some("fix the user name in DATABASE_URL, or create the role".into()),
        )
    } else if t.contains("no pg_hba.conf entry") {
        (conn, Some("the server does not accept this host/user/database: add a pg_hba.conf entry or check sslmode".into()))
    } else if t.contains("connection refused")
        || t.contains("could not connect")
        || t.contains("no such file or directory") && t.contains("socket")
    {
        (
            conn,
            Some("is PostgreSQL running? check the host and port in DATABASE_URL".into()),
        )
    } else if t.contains("could not translate host name") || t.contains("name or service not known")
    {
        (
            conn,
            Some("the host name in DATABASE_URL does not resolve: check it".into()),
        )
    } else if t.contains("timeout expired") || t.contains("timed out") {
        (
            conn,
            Some("the server did not answer in time: check host, port and firewalls".into()),
        )
    } else if t.contains("server version mismatch") {
        (
            Kind::Tools,
            Some("use pg_dump of the server's major version or newer (set PG_BIN)".into()),
        )
    } else if t.contains("unsupported version") && t.contains("file header") {
        (Kind::Tools, Some("the archive was made by a newer pg_dump: use a pg_restore at least as new (set PG_BIN)".into()))
    } else if t.contains("no space left on device") {
        (Kind::Failure, Some("the disk is full: free space in the backup folder (or prune old backups) and retry".into()))
    } else if t.contains("permission denied")
        && (t.contains("could not create") || t.contains("could not open output file"))
    {
        // pg_dump writing its output (a directory archive) into a folder it may not write.
        (Kind::Failure, Some("the tool may not write its output there: check the backup folder's owner and permissions (this is not about the database)".into()))
    } else if t.contains("permission denied") && t.contains("pg_authid") {
        (Kind::Failure, Some("reading the roles' passwords needs a superuser: back up as one, or use --globals (which leaves the passwords out)".into()))
    } else if t.contains("permission denied") {
        (Kind::Failure, Some("the database user lacks privileges: use a role that owns (or can read) every object, e.g. the database owner".into()))
    } else if t.contains("must be owner of") {
        (Kind::Failure, Some("objects in the target are owned by another role: restore as that role or as a superuser".into()))
    } else {
        (Kind::Failure, None)
    }
}

/// docker's and Compose's own failures (docker-exec mode), in lowercase `t`: the container is
/// missing or stopped (the database cannot be reached: [`Kind::Connection`]), or docker itself
/// cannot work ([`Kind::Tools`]).
fn classify_docker(t: &str) -> Option<(Kind, Option<String>)> {
    let (kind, hint) = if t.contains("no such container") {
        (Kind::Connection, "no container has that name: check BACKUP_DOCKER_CONTAINER (`docker ps` lists the running containers)")
    } else if t.contains("no such service") {
        (Kind::Connection, "the Compose project has no such service: check BACKUP_DOCKER_COMPOSE_SERVICE, and BACKUP_DOCKER_COMPOSE_FILE or the folder aos-backup runs in (`docker compose ps` lists the services)")
    } else if t.contains("is not running")
        && (t.contains("error response from daemon") || t.contains("service"))
    {
        (Kind::Connection, "start the database's container (`docker start NAME`, or `docker compose up -d SERVICE`), then run again")
    } else if t.contains("cannot connect to the docker daemon")
        || t.contains("permission denied while trying to connect to the docker daemon")
    {
        (Kind::Tools, "docker cannot reach its daemon: is it running, and may this user use it (the docker group)?")
    } else if t.contains("executable file not found") || t.contains("oci runtime exec failed") {
        (Kind::Tools, "the container has no such PostgreSQL client program on its PATH: use the database's own container (its image has pg_dump, pg_restore and psql), or set PG_BIN to their folder inside the container")
    } else {
        return None;
    };
    Some((kind, Some(hint.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typical_failures_are_classified() {
        let cases = [
            (
                "FATAL:  password authentication failed for user \"app\"",
                Kind::Connection,
                "password",
            ),
            (
                "FATAL:  database \"nope\" does not exist",
                Kind::Connection,
                "createdb",
            ),
            (
                "connection to server at \"127.0.0.1\", port 1 failed: Connection refused",
                Kind::Connection,
                "running",
            ),
            (
                "pg_dump: error: query failed: ERROR:  permission denied for table t",
                Kind::Failure,
                "privileges",
            ),
            (
                "pg_dump: error: could not write: No space left on device",
                Kind::Failure,
                "disk is full",
            ),
            (
                "aborting because of server version mismatch",
                Kind::Tools,
                "pg_dump",
            ),
        ];
        for (text, kind, hint) in cases {
            let (k, h) = classify(text);
            assert_eq!(k, kind, "{text}");
            assert!(h.unwrap().contains(hint), "{text}");
        }
        assert_eq!(classify("something odd"), (Kind::Failure, None));
        for (text, kind, hint) in [
            (
                "Error response from daemon: No such container: hyper-db",
                Kind::Connection,
                "BACKUP_DOCKER_CONTAINER",
            ),
            (
                "Error response from daemon: container 4f2a9c1e is not running",
                Kind::Connection,
                "docker start",
            ),
            (
                "service \"db\" is not running",
                Kind::Connection,
                "docker compose up",
            ),
            (
                "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
                Kind::Tools,
                "daemon",
            ),
        ] {
            let (k, h) = classify(text);
            assert_eq!(k, kind, "{text}");
            assert!(h.unwrap().contains(hint), "{text}");
        }
    }

    #[test]
    fn failure_message_is_one_line_with_the_error_line() {
        let status = Command::new("sh").args(["-c", "exit 1"]).status().unwrap();
        let e = failure(
            "pg_dump",
            &status,
            &["pg_dump: last".into(), "pg_dump: error: boom".into()],
            &OpContext::default(),
        );
        assert_eq!(
            e.message,
            "pg_dump failed (exit code 1): pg_dump: error: boom"
        );
        assert!(!e.message.contains('\n'));
        assert!(
            e.hint.unwrap().contains("-v"),
            "an unknown failure still gets a hint"
        );
    }

    #[test]
    fn stderr_tail_is_collected() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo one >&2; echo two >&2; exit 3"]);
        let f = spawn(&OpContext::default(), "sh", &mut cmd)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(f.stderr, vec!["one".to_string(), "two".to_string()]);
        assert_eq!(f.status.code(), Some(3));
        assert!(f.check().is_err());
    }

    #[test]
    fn a_child_killed_by_sigint_or_sigterm_is_an_interruption() {
        use std::os::unix::process::CommandExt;
        for (sig, kind) in [("INT", Kind::Interrupted), ("TERM", Kind::Terminated)] {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", &format!("kill -{sig} $$")]);
            // SAFETY: signal() is async-signal-safe. (A shell started in the background ignores
            // SIGINT, and so would its children.)
            unsafe {
                cmd.pre_exec(|| {
                    libc::signal(libc::SIGINT, libc::SIG_DFL);
                    libc::signal(libc::SIGTERM, libc::SIG_DFL);
                    Ok(())
                });
            }
            let err = spawn(&OpContext::default(), "sh", &mut cmd)
                .unwrap()
                .wait()
                .unwrap()
                .check()
                .unwrap_err();
            assert_eq!(crate::error::find(&err).unwrap().kind, kind, "SIG{sig}");
        }
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "kill -KILL $$"]);
        let err = spawn(&OpContext::default(), "sh", &mut cmd)
            .unwrap()
            .wait()
            .unwrap()
            .check()
            .unwrap_err();
        assert_eq!(crate::error::find(&err).unwrap().kind, Kind::Failure);
    }
}
