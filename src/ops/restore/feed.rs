//! The restore carried out: pg_restore's script (or plain SQL) fed to psql inside one transaction
//! that we open and close, COMMIT written only once everything was read and checked; or
//! pg_restore --jobs in its own watched process group, from the file itself or from an unnamed
//! unpacked copy. The restore phase is set at the instants that decide what an interruption
//! may claim about the target.

use super::plan::{Backup, Method, ScriptInput, Strategy, Target, Tools};
use crate::archive::sink::{pump, PumpError};
use crate::archive::sqlfeed::SqlFeed;
use crate::error::{Error, Kind};
use crate::ops::Context;
use crate::pg::conninfo::ConnInfo;
use crate::pg::sessions::LockTimeoutOverride;
use crate::pg::tools::Tool;
use crate::runtime::process::{self, Running};
use crate::runtime::restore_state::{RestorePhase, COMMIT_MARK};
use crate::runtime::units::human_bytes;
use anyhow::{Context as _, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What every restore does: drop and recreate the archive's objects, owned by the restoring user.
const PG_RESTORE_FLAGS: [&str; 4] = ["--clean", "--if-exists", "--no-owner", "--no-acl"];

/// What a [`RestoreJob`] is made of.
pub(super) struct JobParts<'a> {
    pub(super) ctx: &'a Context,
    pub(super) conn: &'a ConnInfo,
    pub(super) backup: &'a Backup,
    pub(super) target: &'a Target,
    pub(super) strategy: Strategy,
    pub(super) tools: Tools,
    pub(super) lock_timeout: Option<Duration>,
    pub(super) counter: Arc<AtomicU64>,
    pub(super) tool_started: Arc<AtomicBool>,
}

/// One restore, ready to run on a blocking thread.
pub(super) struct RestoreJob {
    pg_restore: Option<Tool>,
    psql: Option<Tool>,
    /// Replaces the script's `SET lock_timeout = 0;` (none: 0, no limit).
    lock_timeout: Option<Duration>,
    env: Vec<(String, String)>,
    dbname_arg: String,
    path: PathBuf,
    method: Method,
    counter: Arc<AtomicU64>,
    expected_dump_bytes: Option<u64>,
    /// Set when the restore tool is started: from then on the target may change.
    tool_started: Arc<AtomicBool>,
    /// Drop the archive's objects first (`--clean`); false into an empty database.
    clean: bool,
    op: crate::runtime::context::OpContext,
}

impl RestoreJob {
    pub(super) fn new(parts: JobParts<'_>) -> RestoreJob {
        let JobParts {
            ctx,
            conn,
            backup,
            target,
            strategy,
            tools,
            lock_timeout,
            counter,
            tool_started,
        } = parts;
        let child_conn = child_connection(ctx, conn, target.server_major, lock_timeout);
        if !strategy.clean {
            tracing::debug!(
                "{:?} holds no objects: restoring without the clean section",
                target.database
            );
        }
        RestoreJob {
            pg_restore: tools.pg_restore,
            psql: tools.psql,
            lock_timeout,
            env: child_conn.child_env(),
            dbname_arg: child_conn.conninfo_without_password(),
            path: backup.path.clone(),
            method: strategy.method,
            counter,
            expected_dump_bytes: backup
                .meta
                .as_ref()
                .map(|m| m.dump_bytes)
                .filter(|n| *n > 0),
            tool_started,
            clean: strategy.clean,
            op: ctx.op.clone(),
        }
    }

    /// Runs the method; `input` is the dump with its layers peeled off.
    pub(super) fn run(self, input: Option<Box<dyn Read + Send>>) -> Result<()> {
        let dump = || input.with_context(|| format!("nothing to read in {}", self.path.display()));
        match self.method {
            Method::PlainSql => self.feed_psql(&mut dump()?, true, true, &mut || Ok(())),
            Method::Parallel { jobs } => {
                let mut cmd = self.pg_restore_parallel(&self.path, jobs)?;
                cmd.stdin(Stdio::null());
                self.run_parallel(&mut cmd)
            }
            Method::UnpackThenParallel { jobs } => self.unpacked(dump()?, jobs),
            Method::Script {
                input: ScriptInput::File,
            } => self.via_script(None),
            Method::Script {
                input: ScriptInput::Stream,
            } => self.via_script(Some(dump()?)),
        }
    }

    fn base(&self) -> Result<Command> {
        let mut cmd = self
            .pg_restore
            .as_ref()
            .context("pg_restore was not found")?
            .command(&self.env);
        cmd.stdout(Stdio::null());
        Ok(cmd)
    }

    /// [`PG_RESTORE_FLAGS`], without `--clean --if-exists` into an empty database.
    fn restore_flags(&self) -> impl Iterator<Item = &'static str> + '_ {
        PG_RESTORE_FLAGS
            .into_iter()
            .filter(|f| self.clean || !matches!(*f, "--clean" | "--if-exists"))
    }

    /// pg_restore straight into the database, in parallel: only for `--jobs`.
    fn pg_restore_parallel(&self, input: &Path, jobs: u32) -> Result<Command> {
        let mut cmd = self.base()?;
        cmd.args(self.restore_flags());
        cmd.args(["--exit-on-error", "--no-password"]);
        cmd.arg(format!("--jobs={jobs}"));
        cmd.arg(format!("--dbname={}", self.dbname_arg));
        cmd.arg(input);
        Ok(cmd)
    }

    /// pg_restore as a converter: the archive in, the SQL script out on stdout.
    fn pg_restore_script(&self, input: Option<&Path>) -> Result<Command> {
        let mut cmd = self.base()?;
        cmd.args(self.restore_flags());
        cmd.arg("--file=-");
        if let Some(p) = input {
            cmd.arg(p);
        }
        cmd.stdout(Stdio::piped());
        Ok(cmd)
    }

    fn psql(&self) -> Result<Command> {
        let mut cmd = self
            .psql
            .as_ref()
            .context("psql was not found")?
            .command(&self.env);
        cmd.stdout(Stdio::null()).stdin(Stdio::piped());
        // Not --single-transaction, which commits at the end of input, however early it comes:
        // the feeder writes BEGIN and COMMIT itself.
        cmd.args(["-X", "--quiet", "--no-password", "-v", "ON_ERROR_STOP=1"]);
        cmd.arg(format!("--dbname={}", self.dbname_arg));
        cmd.args(["-f", "-"]);
        Ok(cmd)
    }

    /// Streams SQL into psql inside one transaction that we open and close: `BEGIN` first, and
    /// `COMMIT` only when the SQL was read whole and `before_commit` agrees. Input that ends without
    /// our COMMIT (we failed, were killed, or psql was stopped) is rolled back by the server.
    fn feed_psql(
        &self,
        sql: &mut dyn Read,
        check_trailer: bool,
        count: bool,
        before_commit: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        let (running, mut out) = self.begin_transaction()?;
        let mut feed = SqlFeed::new(&mut out, check_trailer).skip_clean(!self.clean);
        let uncounted = AtomicU64::new(0);
        let counter = if count { &*self.counter } else { &uncounted };
        if let Err(e) = pump(sql, &mut feed, counter) {
            drop(feed);
            drop(out);
            return Err(match e {
                PumpError::Read(e) => {
                    running.kill();
                    unreadable_backup(&self.path, &e).into()
                }
                // psql stopped reading: its own error says why.
                PumpError::Write(e) => psql_stopped(running, &e),
            });
        }
        let verdict = feed
            .finish()
            .map_err(|msg| incomplete_dump(&self.path, &msg))
            .and_then(|()| before_commit());
        let wrapped = feed.wrapped;
        drop(feed);
        if let Err(e) = verdict {
            drop(out);
            running.kill();
            return Err(e);
        }
        tracing::debug!(
            "{wrapped} clean statement(s) guarded; {} lock_timeout setting(s) replaced",
            out.replaced
        );
        self.commit(running, out)
    }

    /// Starts psql and opens our transaction in it.
    fn begin_transaction(&self) -> Result<(Running, LockTimeoutOverride<ChildStdin>)> {
        let mut cmd = self.psql()?;
        let psql = self.psql.as_ref().context("psql was not found")?;
        let mut running = psql.spawn(&self.op, &mut cmd)?;
        self.op.restore().set_phase(RestorePhase::Transaction);
        let Some(stdin) = running.child.stdin.take() else {
            running.kill();
            anyhow::bail!("psql has no stdin");
        };
        let mut out = LockTimeoutOverride::new(stdin, self.lock_timeout);
        if let Err(e) = out.write_all(b"BEGIN;\n") {
            drop(out);
            return Err(psql_stopped(running, &e));
        }
        Ok((running, out))
    }

    /// Everything was read and checked. psql prints [`COMMIT_MARK`] (a server WARNING, so after
    /// every statement before it succeeded) right before it sends COMMIT: from then on the
    /// outcome is the server's, and an interruption waits for it.
    fn commit(&self, running: Running, mut out: LockTimeoutOverride<ChildStdin>) -> Result<()> {
        let commit = format!(
            "SET client_min_messages = warning;\n\
             DO $aos_commit$BEGIN RAISE WARNING '{}'; END$aos_commit$;\n\
             COMMIT;\n",
            COMMIT_MARK
        );
        self.op.restore().set_commit_written();
        let sent = out.write_all(commit.as_bytes()).and_then(|()| out.finish());
        drop(out);
        let finished = running.wait()?;
        if finished.status.success() {
            self.op.restore().set_phase(RestorePhase::Committed);
        } else if self.op.restore().phase() == RestorePhase::CommitSent
            && finished.status.code() == Some(3)
        {
            // The server answered the COMMIT with an error: it rolled back.
            self.op.restore().set_phase(RestorePhase::Transaction);
        }
        finished.check()?;
        sent.map_err(|e| anyhow::anyhow!("psql stopped reading its input: {e}"))
    }

    /// pg_restore turns the archive (a path, or a stream on its stdin) into SQL for psql.
    fn via_script(&self, input: Option<Box<dyn Read + Send>>) -> Result<()> {
        let path = input.is_none().then_some(self.path.as_path());
        let mut cmd = self.pg_restore_script(path)?;
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let pg_restore = self
            .pg_restore
            .as_ref()
            .context("pg_restore was not found")?;
        let mut producer = pg_restore.spawn(&self.op, &mut cmd)?;
        let stdout = producer.child.stdout.take();
        // Progress counts the archive's bytes when we stream it, else the SQL (no total then).
        let streamed = input.is_some();
        let mut feeder = match (input, producer.child.stdin.take()) {
            (Some(r), Some(stdin)) => Some(self.stream_into(r, stdin)),
            _ => None,
        };
        let Some(mut stdout) = stdout else {
            producer.kill();
            anyhow::bail!("pg_restore has no stdout");
        };
        let mut producer = Some(producer);
        let result = self.feed_psql(&mut stdout, false, !streamed, &mut || {
            producer_finished(&self.path, &mut feeder, &mut producer)
        });
        if let Some(p) = producer.take() {
            p.kill();
        }
        result
    }

    /// A thread that streams the archive into pg_restore's stdin, counting its bytes. It ends
    /// with a read error (the backup's), or quietly when pg_restore stops reading (its exit
    /// status tells why).
    fn stream_into(
        &self,
        mut archive: Box<dyn Read + Send>,
        mut stdin: ChildStdin,
    ) -> JoinHandle<std::io::Result<()>> {
        let counter = self.counter.clone();
        std::thread::spawn(move || match pump(&mut archive, &mut stdin, &counter) {
            Ok(_) | Err(PumpError::Write(_)) => Ok(()),
            Err(PumpError::Read(e)) => Err(e),
        })
    }

    /// pg_restore --jobs, in its own process group so that its workers die with us too.
    fn run_parallel(&self, cmd: &mut Command) -> Result<()> {
        self.tool_started.store(true, Ordering::SeqCst);
        let (running, watch) = process::spawn_group(&self.op, "pg_restore", cmd)?;
        self.op.restore().set_phase(RestorePhase::Parallel);
        let finished = running.wait();
        drop(watch);
        finished?.check()
    }

    /// Unpacks a compressed or encrypted archive into a temp file, so that pg_restore can seek
    /// in it for --jobs. The file has no name (unlinked, `O_TMPFILE` where the file system
    /// allows): the decrypted dump disappears with the last process holding it, however we end.
    /// pg_restore and its workers open it as `/dev/fd/N`.
    fn unpacked(&self, mut reader: Box<dyn Read + Send>, jobs: u32) -> Result<()> {
        use std::os::fd::AsRawFd;
        let tmp_dir = std::env::temp_dir();
        self.check_unpack_space(&tmp_dir)?;
        let mut file = private_tempfile(&tmp_dir)?;
        self.unpack_into(&mut reader, &mut file, &tmp_dir)?;
        let fd = file.as_raw_fd();
        let mut cmd = self.pg_restore_parallel(Path::new(&format!("/dev/fd/{fd}")), jobs)?;
        cmd.stdin(Stdio::null());
        inherit_fd(&mut cmd, fd);
        let result = self.run_parallel(&mut cmd);
        drop(file);
        result
    }

    /// Refuses to unpack into a folder without room for the dump (and a tenth more).
    fn check_unpack_space(&self, tmp_dir: &Path) -> Result<()> {
        let Some(need) = self.expected_dump_bytes else {
            return Ok(());
        };
        let free = crate::runtime::fsutil::free_space(tmp_dir).unwrap_or(u64::MAX);
        if free >= need + need / 10 {
            return Ok(());
        }
        Err(Error::new(
            Kind::Failure,
            format!(
                "not enough space in {} to unpack the archive for --jobs: {} needed, {} free",
                tmp_dir.display(),
                human_bytes(need),
                human_bytes(free)
            ),
        )
        .hint("set TMPDIR to a folder with more space, or restore without --jobs (streams, needs no space)")
        .into())
    }

    /// Copies the dump into the temp file: a read error is the backup's, a write error ours.
    fn unpack_into(
        &self,
        reader: &mut Box<dyn Read + Send>,
        file: &mut std::fs::File,
        tmp_dir: &Path,
    ) -> Result<()> {
        pump(reader, file, &self.counter).map_err(|e| match e {
            // The archive's content: decompression, decryption, a truncated file.
            PumpError::Read(e) => Error::integrity(format!(
                "{}: cannot read the backup: {e}",
                self.path.display()
            ))
            .hint("the file is damaged or truncated; use another backup"),
            // Our side: the temp file (a full disk, permissions).
            PumpError::Write(e) => {
                unpack_write_error("cannot unpack the archive for --jobs into", tmp_dir, &e)
            }
        })?;
        file.flush()
            .map_err(|e| unpack_write_error("cannot write a temp file in", tmp_dir, &e))?;
        Ok(())
    }
}

/// The connection the tools get: ours, with the session options (lock wait limit, client
/// connection checks) that the server's version allows.
fn child_connection(
    ctx: &Context,
    conn: &ConnInfo,
    major: u32,
    lock_timeout: Option<Duration>,
) -> ConnInfo {
    let options = crate::pg::sessions::child_options(major, lock_timeout);
    if options.is_empty() {
        conn.clone()
    } else {
        conn.with_options(&options, &|k| ctx.var(k))
    }
}

/// pg_restore's side of a script restore is done: the archive was read whole (when we streamed
/// it), and pg_restore succeeded.
fn producer_finished(
    path: &Path,
    feeder: &mut Option<JoinHandle<std::io::Result<()>>>,
    producer: &mut Option<Running>,
) -> Result<()> {
    if let Some(h) = feeder.take() {
        let read = h
            .join()
            .map_err(|_| anyhow::anyhow!("the reading thread failed"))?;
        if let Err(e) = read {
            return Err(unreadable_backup(path, &e).into());
        }
    }
    match producer.take() {
        Some(p) => p.wait()?.check(),
        None => Ok(()),
    }
}

/// psql stopped reading its input: its own error says why, else this one.
fn psql_stopped(running: Running, e: &std::io::Error) -> anyhow::Error {
    match running.wait().and_then(|finished| finished.check()) {
        Err(err) => err,
        Ok(()) => anyhow::anyhow!("psql stopped reading its input: {e}"),
    }
}

/// The SQL ended where the dump does not: its trailer is missing.
fn incomplete_dump(path: &Path, msg: &str) -> anyhow::Error {
    anyhow::Error::new(
        Error::integrity(format!("{}: {msg}", path.display()))
            .hint("the dump is incomplete; use another backup"),
    )
}

/// The backup's content failed to read: decompression, decryption, a truncated file.
pub(super) fn unreadable_backup(path: &Path, e: &dyn std::fmt::Display) -> Error {
    Error::integrity(format!("{}: cannot read the backup: {e}", path.display()))
        .hint("the file is damaged or truncated (or was altered); use another backup")
}

/// An unnamed temp file in `tmp_dir` that only we may read.
fn private_tempfile(tmp_dir: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::PermissionsExt;
    let file = tempfile::tempfile_in(tmp_dir)
        .map_err(|e| unpack_write_error("cannot create a temp file in", tmp_dir, &e))?;
    // O_TMPFILE honours only the umask: the decrypted dump is for us alone.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making the temp file in {} private", tmp_dir.display()))?;
    Ok(file)
}

/// Lets the child inherit `fd` (the parent keeps it open until the child ends).
fn inherit_fd(cmd: &mut Command, fd: std::os::fd::RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: fcntl is async-signal-safe; the fd stays open in the parent until the child ends.
    unsafe {
        cmd.pre_exec(move || {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A failure writing the temp copy that --jobs needs: our disk, not the backup (exit 1).
fn unpack_write_error(doing: &str, path: &Path, e: &std::io::Error) -> Error {
    let err = crate::runtime::fsutil::local_io_error(doing, path, e);
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => err.hint(format!(
            "the disk holding the temp folder ({}) is full; the backup itself is fine: set TMPDIR to a folder with more space, or restore without --jobs (streams, needs no space)",
            std::env::temp_dir().display()
        )),
        _ => err,
    }
}
