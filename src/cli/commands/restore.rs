//! `aos-backup restore`: guards first (production, remote host, a populated target, a damaged
//! file), then pg_restore (or psql for plain SQL) in one transaction, so a restore that fails
//! half-way leaves the target exactly as it was.

use super::Ctx;
use crate::archive::format::DumpFormat;
use crate::archive::layers::{self, Opened};
use crate::archive::meta::Meta;
use crate::archive::sqlfeed::CleanSection;
use crate::catalog;
use crate::cli::args::RestoreArgs;
use crate::error::{Error, Kind};
use crate::pg::db::Db;
use crate::pg::runner::{Local, Runner};
use crate::pg::sessions::Session;
use crate::pg::tools::Tool;
use crate::runtime::process;
use crate::runtime::restore_state::{RestorePhase, COMMIT_MARK};
use anyhow::{Context, Result};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Finds the backup to restore: an existing path, else `latest` or an id in the backup folder
/// (`latest` and id prefixes among the backups of `scope`'s database).
pub fn resolve_target(wanted: &str, dir: &Path, scope: &catalog::Scope<'_>) -> Result<PathBuf> {
    let p = Path::new(wanted);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    let looks_like_path = wanted.contains('/') || crate::archive::naming::looks_like_backup(wanted);
    let entries = catalog::scan(dir)?;
    match catalog::resolve(&entries, wanted, dir, scope) {
        Ok(e) => Ok(e.path.clone()),
        Err(_) if looks_like_path => Err(Error::usage(format!("{wanted}: no such file"))
            .hint("check the path, or give a backup id or `latest` (see `aos-backup list`)")
            .into()),
        Err(e) => Err(e),
    }
}

/// Picks the backup to restore among the target database's backups (or `--from-database`'s) and
/// checks whose it is: a backup of another database than the target needs `--from-database`.
/// Returns its path and how to name it to the user.
fn choose_backup(ctx: &Ctx, args: &RestoreArgs, dir: &Path) -> Result<(PathBuf, String)> {
    let target = ctx.target_database();
    let scope = catalog::Scope {
        database: args.from_database.as_deref().or(target.as_deref()),
        now: ctx.now,
    };
    let path = resolve_target(&args.target, dir, &scope)?;
    // An unreadable sidecar is refused by the checksum step; here it only names nothing.
    let meta = Meta::read(&Meta::path_for(&path)).ok();
    let about = describe_backup(meta.as_ref(), &path, ctx.now);
    if let (Some(meta), Some(target)) = (&meta, &target) {
        check_database(&meta.database, target, args.from_database.as_deref(), &path)?;
    }
    tracing::info!("restoring the {about}");
    Ok((path, about))
}

/// `backup of "shop2" (from db1) taken 2026-11-28 02:15 UTC, 1 day ago`.
fn describe_backup(meta: Option<&Meta>, path: &Path, now: chrono::DateTime<chrono::Utc>) -> String {
    match meta {
        Some(m) => format!(
            "backup of {:?} (from {}) taken {}, {}",
            m.database,
            m.host.escape_debug(),
            m.started_at.format("%Y-%m-%d %H:%M UTC"),
            super::age_phrase(m.started_at, now)
        ),
        None => format!(
            "file {} (no metadata: its database and date are unknown)",
            path.display()
        ),
    }
}

/// Refuses (exit 3) a backup of another database than the target unless `--from-database` names
/// that database, and any backup whose database is not the one `--from-database` names.
fn check_database(backup_db: &str, target: &str, from: Option<&str>, path: &Path) -> Result<()> {
    match from {
        Some(from) if from != backup_db => Err(Error::refused(format!(
            "refusing to restore: {} is a backup of database {backup_db:?}, not of {from:?} as --from-database says",
            path.display()
        ))
        .hint(format!(
            "check the backup; to restore it into {target:?}, pass --from-database {}", crate::runtime::redact::sanitize(backup_db)
        ))
        .into()),
        None if backup_db != target => Err(Error::refused(format!(
            "refusing to restore: {} is a backup of database {backup_db:?}, and the target is database {target:?}",
            path.display()
        ))
        .hint(format!(
            "to restore {backup_db:?}'s backup into {target:?}, add --from-database {}", crate::runtime::redact::sanitize(backup_db)
        ))
        .into()),
        Some(_) if backup_db != target => {
            tracing::warn!(
                "restoring a backup of database {backup_db:?} into database {target:?} (--from-database)"
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Checks the stored bytes against the sidecar (size and SHA-256), if there is one.
pub fn check_against_meta(path: &Path, counter: &AtomicU64) -> Result<Option<Meta>> {
    let meta_path = Meta::path_for(path);
    if !meta_path.exists() {
        return Ok(None);
    }
    let meta = Meta::read(&meta_path)?;
    crate::archive::integrity::check_stored(path, &meta, counter)?;
    Ok(Some(meta))
}

/// Runs a restore.
pub async fn run(ctx: &Ctx, args: &RestoreArgs) -> Result<()> {
    let dir = ctx.backup_dir();
    let (path, about) = choose_backup(ctx, args, &dir)?;
    let _lock = if dir.is_dir() {
        crate::storage::lock::acquire_for_reading(&dir, "restore")?
    } else {
        None
    };

    // Guard: production.
    if let Some((var, value)) = ctx.settings.env.production_marker() {
        if !args.force {
            return Err(Error::refused(format!(
                "refusing to restore: {var}={value} says this is production"
            ))
            .hint("restoring replaces the data in the database; if you really mean it, add --force")
            .into());
        }
        tracing::warn!("{var}={value}: restoring into production because --force was given");
    }
    let conn = ctx.conninfo()?;
    let keys = ctx.keys(&args.keys);
    let host = conn.host_display();
    if !conn.is_local() {
        tracing::warn!(
            "the target is on a remote host: {host} (database {:?}); make sure this is the server you mean",
            conn.effective_dbname(&|k| ctx.settings.env.var(k))
        );
    }

    // Guard: the file. Checksum first (when we made it), then its content, before the target is touched.
    let progress = if Meta::path_for(&path).exists() {
        ctx.op.progress(
            "verifying",
            std::fs::metadata(&path)
                .ok()
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len()),
        )
    } else {
        crate::runtime::progress::Task::hidden()
    };
    let counter = progress.counter.clone();
    let p2 = path.clone();
    let meta = tokio::task::spawn_blocking(move || check_against_meta(&p2, &counter))
        .await
        .context("the verify thread failed")?
        .map_err(|e| {
            e.context(
                "refusing to restore: the backup failed its checksum; the database was not touched",
            )
        })?;
    drop(progress);
    if meta.is_some() {
        tracing::info!("checksum verified: {}", path.display());
    } else {
        tracing::warn!(
            "{} has no metadata: its checksum cannot be checked; restoring it as it is",
            path.display()
        );
    }
    let mut opened = layers::open(&path, &keys)?;
    let clean_section = peek_clean_section(&mut opened, &path)?;
    if opened.format == DumpFormat::Plain && args.jobs.is_some_and(|j| j > 1) {
        tracing::warn!("--jobs is ignored for plain SQL (psql runs it as one transaction)");
    }
    let jobs = args
        .jobs
        .filter(|j| *j > 1 && opened.format != DumpFormat::Plain);

    // Guard: the target.
    let db = Db::connect(&conn, &|k| ctx.settings.env.var(k)).await?;
    let tables = db.table_count().await?;
    let dbname = db.info.database.clone();
    let empty = db.is_empty().await?;
    refuse_plain_without_clean(clean_section, empty, args.force, &dbname, &path)?;
    ctx.op.restore().begins(&dbname);
    let others = db.other_sessions().await?;
    if !others.is_empty() {
        tracing::warn!(
            "{} connected to database {dbname:?}: {}",
            super::count(others.len() as u64, "other session"),
            crate::pg::sessions::describe(&others)
        );
    }
    let terminate = args.terminate_sessions && !others.is_empty();
    if tables > 0 && jobs.is_some() && !args.force {
        return Err(Error::refused(format!(
            "refusing a parallel restore into {dbname:?}, which holds {tables} tables: --jobs cannot run in one transaction, so a failure would leave it half-restored"
        ))
        .hint("restore without --jobs (one transaction, all or nothing), or add --force to accept the risk")
        .into());
    }
    if (tables > 0 || terminate) && !args.yes {
        confirm(&dbname, &host, tables, &about, &others, terminate).await?;
    }
    if terminate {
        end_sessions(&db, &others).await;
    }
    let lock_timeout = Some(ctx.settings.lock_timeout.value).filter(|d| !d.is_zero());
    let major = db.info.major;
    // Serial restores go through psql (one transaction we control); --jobs uses pg_restore alone.
    let locator = ctx.locator();
    let pg_restore = if opened.format == DumpFormat::Plain {
        None
    } else {
        Some(locator.find("pg_restore", Some(db.info.major))?)
    };
    let psql = if jobs.is_some() && opened.format != DumpFormat::Plain {
        None
    } else {
        Some(locator.find("psql", Some(db.info.major))?)
    };
    drop(db);

    tracing::info!(
        "restoring {} ({} format{}) into database {dbname:?} on {host}{}",
        path.display(),
        opened.format,
        layers_note(&opened),
        if jobs.is_some() {
            ""
        } else {
            " in one transaction"
        }
    );
    let started = Instant::now();
    // A total only where the bytes we count are the dump's: streamed archives and plain SQL.
    let total = meta.as_ref().map(|m| m.dump_bytes).filter(|n| {
        *n > 0 && (!opened.is_bare() || opened.format == DumpFormat::Plain) && jobs.is_none()
    });
    let progress = ctx.op.progress("restoring", total);
    let tool_started = Arc::new(AtomicBool::new(false));
    let child_conn = {
        let options = crate::pg::sessions::child_options(major, lock_timeout);
        if options.is_empty() {
            conn.clone()
        } else {
            conn.with_options(&options, &|k| ctx.settings.env.var(k))
        }
    };
    let job = RestoreJob {
        pg_restore,
        psql,
        lock_timeout,
        env: child_conn.child_env(),
        dbname_arg: child_conn.conninfo_without_password(),
        path: path.clone(),
        jobs,
        counter: progress.counter.clone(),
        expected_dump_bytes: meta.as_ref().map(|m| m.dump_bytes).filter(|n| *n > 0),
        tool_started: tool_started.clone(),
        clean: needs_clean(empty, &dbname),
        op: ctx.op.clone(),
    };
    let result = tokio::task::spawn_blocking(move || job.run(opened))
        .await
        .context("the restore thread failed")?;
    drop(progress);
    if let Err(e) = result {
        let phase = ctx.op.restore().phase();
        let note = if phase == RestorePhase::CommitSent {
            format!("restore failed after its COMMIT was sent, before the server answered: whether {dbname:?} was restored is unknown")
        } else if jobs.is_some() && !tool_started.load(Ordering::SeqCst) {
            // Unpacking for --jobs failed (damaged archive, no temp space): pg_restore never ran.
            format!("restore failed before pg_restore started: {dbname:?} was not touched")
        } else if jobs.is_some() {
            format!(
                "restore failed; it ran in parallel (--jobs), so {dbname:?} may be partly restored"
            )
        } else {
            format!("restore failed and was rolled back: {dbname:?} is as it was")
        };
        if let Some(limit) = lock_timeout.filter(|_| is_lock_timeout(&e)) {
            return Err(lock_wait_error(&conn, &ctx.settings.env, limit, &note).await);
        }
        return Err(e.context(note));
    }
    let elapsed = started.elapsed();
    tracing::info!(
        "restore complete: {} into {dbname:?} in {}",
        path.display(),
        super::human_duration(elapsed)
    );
    ctx.emit(
        "",
        &serde_json::json!({
            "restored": path.display().to_string(),
            "database": dbname,
            "host": host,
            "duration_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            "parallel_jobs": jobs,
        }),
    );
    Ok(())
}

fn layers_note(o: &Opened) -> String {
    if o.layers.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = o
        .layers
        .iter()
        .map(|l| match l {
            layers::Layer::Age => "age",
            layers::Layer::Zstd => "zstd",
            layers::Layer::Gzip => "gzip",
        })
        .collect();
    format!(", inside {}", names.join("+"))
}

/// Asks on the terminal; refuses at once when nobody can answer. Reads one line: only `y` or
/// `yes` goes on; an empty line, anything else, or the end of input (Ctrl-D) is no.
async fn confirm(
    dbname: &str,
    host: &str,
    tables: u64,
    about: &str,
    others: &[Session],
    terminate: bool,
) -> Result<()> {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !interactive {
        let what = if tables > 0 {
            format!("it holds {tables} tables")
        } else {
            format!(
                "--terminate-sessions would end {}",
                super::count(others.len() as u64, "other session")
            )
        };
        return Err(Error::refused(format!(
            "refusing to restore into database {dbname:?} on {host}: {what}, and there is no terminal to confirm"
        ))
        .hint("add --yes to confirm that its objects may be dropped and replaced by the backup's")
        .into());
    }
    let mut prompt = if tables > 0 {
        format!(
            "Database {dbname:?} on {host} holds {tables} tables. Replace its objects with the {about}?"
        )
    } else {
        format!("Restore into database {dbname:?} on {host}?")
    };
    if !others.is_empty() {
        use std::fmt::Write as _;
        let _ = write!(
            prompt,
            "\nOther sessions connected to it{}:",
            if terminate {
                " (--terminate-sessions ends them first)"
            } else {
                " (a restore waits for their table locks)"
            }
        );
        for s in others {
            let _ = write!(prompt, "\n  {s}");
        }
    }
    let answer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        // stderr is not held while waiting for the answer: a signal's message must get through.
        {
            let mut err = std::io::stderr().lock();
            write!(err, "{prompt}\nType y to go on [y/N]: ")?;
            err.flush()?;
        }
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line)? == 0 {
            // End of input (Ctrl-D): no.
            eprintln!();
        }
        Ok(line)
    })
    .await
    .context("the prompt failed")?;
    match answer.map(|a| a.trim().to_ascii_lowercase()) {
        Ok(a) if a == "y" || a == "yes" => Ok(()),
        _ => Err(Error::refused("restore cancelled; nothing was changed").into()),
    }
}

/// `--terminate-sessions`: ends the other sessions (after the confirmation) and waits briefly
/// until they are gone. A session we may not end is reported; the lock wait limit still applies.
async fn end_sessions(db: &Db, others: &[Session]) {
    for s in others {
        match db.terminate(s.pid).await {
            Ok(true) => tracing::info!("ended session {s}"),
            Ok(false) => tracing::warn!(
                "could not end session pid {}: it was gone or the server refused",
                s.pid
            ),
            Err(e) => tracing::warn!("could not end the session: {e:#}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match db.other_sessions().await {
            Ok(now) if now.iter().any(|n| others.iter().any(|o| o.pid == n.pid)) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => break,
        }
    }
}

/// Whether the restore failed because a lock wait reached `lock_timeout`.
fn is_lock_timeout(e: &anyhow::Error) -> bool {
    format!("{e:#}").contains("lock timeout")
}

/// The error for a restore that gave up waiting for a lock: it names the sessions of the target
/// that hold table locks (or, when none is visible any more, every other session).
async fn lock_wait_error(
    conn: &crate::pg::conninfo::ConnInfo,
    env: &crate::config::Env,
    limit: Duration,
    note: &str,
) -> anyhow::Error {
    let (sessions, prepared) = match Db::connect(conn, &|k| env.var(k)).await {
        Ok(db) => (
            db.other_sessions().await.unwrap_or_default(),
            db.prepared_transactions().await.unwrap_or_default(),
        ),
        Err(_) => (Vec::new(), Vec::new()),
    };
    let holders: Vec<Session> = sessions.iter().filter(|s| s.holds_locks).cloned().collect();
    let named = if holders.is_empty() {
        sessions
    } else {
        holders
    };
    if named.is_empty() && !prepared.is_empty() {
        return Error::new(
            Kind::Failure,
            format!(
                "{note}: it waited {} (--lock-timeout) for a lock; no session holds one, but the database has prepared transactions, which keep their locks: {}",
                super::human_duration(limit),
                prepared.join(", ")
            ),
        )
        .hint("a prepared transaction outlives its session (and restarts), so --terminate-sessions cannot end it: finish it with COMMIT PREPARED 'GID' or ROLLBACK PREPARED 'GID' once you know what it is")
        .into();
    }
    let who = if named.is_empty() {
        "a session that has ended since".to_string()
    } else {
        crate::pg::sessions::describe(&named)
    };
    Error::new(
        Kind::Failure,
        format!(
            "{note}: it waited {} (--lock-timeout) for a lock held by another session: {who}",
            super::human_duration(limit)
        ),
    )
    .hint("end that session (its application, or SELECT pg_terminate_backend(PID)), or add --terminate-sessions to end the other sessions first, or allow a longer wait with --lock-timeout")
    .into()
}

/// What every restore does: drop and recreate the archive's objects, owned by the restoring user.
const PG_RESTORE_FLAGS: [&str; 4] = ["--clean", "--if-exists", "--no-owner", "--no-acl"];

/// For a plain SQL dump, reads its head (the reader gives it back) to learn whether it drops
/// what it creates. Other formats always can (pg_restore writes the clean section).
fn peek_clean_section(opened: &mut Opened, path: &Path) -> Result<CleanSection> {
    if opened.format != DumpFormat::Plain {
        return Ok(CleanSection::Present);
    }
    let Some(reader) = opened.reader.take() else {
        return Ok(CleanSection::Unknown);
    };
    let (section, reader) = crate::archive::sqlfeed::peek_clean_section(reader)
        .map_err(|e| unreadable_backup(path, &e))?;
    opened.reader = Some(reader);
    Ok(section)
}

/// The backup's content failed to read: decompression, decryption, a truncated file.
fn unreadable_backup(path: &Path, e: &dyn std::fmt::Display) -> Error {
    Error::integrity(format!("{}: cannot read the backup: {e}", path.display()))
        .hint("the file is damaged or truncated (or was altered); use another backup")
}

/// Guard: a pg_dump script without DROP statements (made without `--clean`) fails on the first
/// object the target already has; into a database that holds objects, it is refused up front.
fn refuse_plain_without_clean(
    section: CleanSection,
    empty: bool,
    force: bool,
    dbname: &str,
    path: &Path,
) -> Result<()> {
    if section != CleanSection::Missing || empty {
        return Ok(());
    }
    if force {
        tracing::warn!(
            "{} drops nothing before creating its objects; trying it on {dbname:?} anyway because of --force",
            path.display()
        );
        return Ok(());
    }
    Err(Error::refused(format!(
        "refusing to restore {} into {dbname:?}: the SQL dump has no DROP statements (it was made without pg_dump --clean), so it restores only into an empty database, and {dbname:?} holds objects",
        path.display()
    ))
    .hint("restore it into a new empty database, or make the dump again with `pg_dump --clean --if-exists`")
    .into())
}

/// Whether the restore drops the archive's objects first: not into an empty database, where the
/// clean section could only fail. Then the restore is exactly one without `--clean`.
fn needs_clean(empty: bool, dbname: &str) -> bool {
    if empty {
        tracing::debug!("{dbname:?} holds no objects: restoring without the clean section");
    }
    !empty
}

struct RestoreJob {
    pg_restore: Option<Tool>,
    psql: Option<Tool>,
    /// Replaces the script's `SET lock_timeout = 0;` (none: 0, no limit).
    lock_timeout: Option<Duration>,
    env: Vec<(String, String)>,
    dbname_arg: String,
    path: PathBuf,
    jobs: Option<u32>,
    counter: Arc<AtomicU64>,
    expected_dump_bytes: Option<u64>,
    /// Set when the restore tool is started: from then on the target may change.
    tool_started: Arc<AtomicBool>,
    /// Drop the archive's objects first (`--clean`); false into an empty database.
    clean: bool,
    op: crate::runtime::context::OpContext,
}

impl RestoreJob {
    fn base(&self) -> Command {
        let mut cmd = match &self.pg_restore {
            Some(tool) => tool.command(&self.env),
            None => Local.command(Path::new("pg_restore"), &self.env),
        };
        cmd.stdout(Stdio::null());
        cmd
    }

    /// [`PG_RESTORE_FLAGS`], without `--clean --if-exists` into an empty database.
    fn restore_flags(&self) -> impl Iterator<Item = &'static str> + '_ {
        PG_RESTORE_FLAGS
            .into_iter()
            .filter(|f| self.clean || !matches!(*f, "--clean" | "--if-exists"))
    }

    /// pg_restore straight into the database, in parallel: only for `--jobs`.
    fn pg_restore_parallel(&self, input: &Path, jobs: u32) -> Command {
        let mut cmd = self.base();
        cmd.args(self.restore_flags());
        cmd.args(["--exit-on-error", "--no-password"]);
        cmd.arg(format!("--jobs={jobs}"));
        cmd.arg(format!("--dbname={}", self.dbname_arg));
        cmd.arg(input);
        cmd
    }

    /// pg_restore as a converter: the archive in, the SQL script out on stdout.
    fn pg_restore_script(&self, input: Option<&Path>) -> Command {
        let mut cmd = self.base();
        cmd.args(self.restore_flags());
        cmd.arg("--file=-");
        if let Some(p) = input {
            cmd.arg(p);
        }
        cmd.stdout(Stdio::piped());
        cmd
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

    fn run(self, mut opened: Opened) -> Result<()> {
        let reader = opened.reader.take();
        let bare_or_dir = opened.format == DumpFormat::Directory || opened.is_bare();
        match (opened.format, reader, self.jobs) {
            (DumpFormat::Plain, Some(mut r), _) => {
                self.feed_psql(&mut r, true, true, &mut || Ok(()))
            }
            (_, _, Some(j)) if bare_or_dir => {
                let mut cmd = self.pg_restore_parallel(&self.path, j);
                cmd.stdin(Stdio::null());
                self.run_parallel(&mut cmd)
            }
            (_, Some(r), Some(j)) => self.unpacked(r, j),
            (_, _, None) if bare_or_dir => self.via_script(None),
            (_, Some(r), None) => self.via_script(Some(r)),
            (_, None, _) => anyhow::bail!("nothing to read in {}", self.path.display()),
        }
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
        let mut cmd = self.psql()?;
        let mut running = process::spawn(&self.op, "psql", &mut cmd)?;
        self.op.restore().set_phase(RestorePhase::Transaction);
        let Some(stdin) = running.child.stdin.take() else {
            running.kill();
            anyhow::bail!("psql has no stdin");
        };
        let mut out = crate::pg::sessions::LockTimeoutOverride::new(stdin, self.lock_timeout);
        if let Err(e) = out.write_all(b"BEGIN;\n") {
            drop(out);
            running.wait()?.check()?;
            anyhow::bail!("psql stopped reading its input: {e}");
        }
        let mut feed =
            crate::archive::sqlfeed::SqlFeed::new(&mut out, check_trailer).skip_clean(!self.clean);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match sql.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    drop(feed);
                    drop(out);
                    running.kill();
                    return Err(unreadable_backup(&self.path, &e).into());
                }
            };
            if let Err(e) = feed.write_all(&buf[..n]) {
                // psql stopped reading: its own error says why.
                drop(feed);
                drop(out);
                running.wait()?.check()?;
                anyhow::bail!("psql stopped reading its input: {e}");
            }
            if count {
                self.counter.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        let verdict = feed
            .finish()
            .map_err(|msg| {
                anyhow::Error::new(
                    Error::integrity(format!("{}: {msg}", self.path.display()))
                        .hint("the dump is incomplete; use another backup"),
                )
            })
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
        // Everything was read and checked. psql prints COMMIT_MARK (a server WARNING, so after
        // every statement before it succeeded) right before it sends COMMIT: from then on the
        // outcome is the server's, and an interruption waits for it.
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
        let path = if input.is_none() {
            Some(self.path.as_path())
        } else {
            None
        };
        let mut cmd = self.pg_restore_script(path);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut producer = process::spawn(&self.op, "pg_restore", &mut cmd)?;
        let stdout = producer.child.stdout.take();
        // Progress counts the archive's bytes when we stream it, else the SQL (no total then).
        let streamed = input.is_some();
        let counter = self.counter.clone();
        let feeder = match (input, producer.child.stdin.take()) {
            (Some(mut r), Some(mut stdin)) => {
                Some(std::thread::spawn(move || -> std::io::Result<()> {
                    let mut buf = vec![0u8; 256 * 1024];
                    loop {
                        let n = match r.read(&mut buf) {
                            Ok(0) => return Ok(()),
                            Ok(n) => n,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            Err(e) => return Err(e),
                        };
                        // pg_restore stopped reading: its exit status tells why.
                        if stdin.write_all(&buf[..n]).is_err() {
                            return Ok(());
                        }
                        counter.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }))
            }
            _ => None,
        };
        let Some(mut stdout) = stdout else {
            producer.kill();
            anyhow::bail!("pg_restore has no stdout");
        };
        let mut producer = Some(producer);
        let mut feeder = feeder;
        let result = self.feed_psql(&mut stdout, false, !streamed, &mut || {
            if let Some(h) = feeder.take() {
                let read = h
                    .join()
                    .map_err(|_| anyhow::anyhow!("the reading thread failed"))?;
                if let Err(e) = read {
                    return Err(unreadable_backup(&self.path, &e).into());
                }
            }
            match producer.take() {
                Some(p) => p.wait()?.check(),
                None => Ok(()),
            }
        });
        if let Some(p) = producer.take() {
            p.kill();
        }
        result
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
        use std::os::unix::process::CommandExt;
        let tmp_dir = std::env::temp_dir();
        if let Some(need) = self.expected_dump_bytes {
            let free = crate::runtime::fsutil::free_space(&tmp_dir).unwrap_or(u64::MAX);
            if free < need + need / 10 {
                return Err(Error::new(
                    Kind::Failure,
                    format!(
                        "not enough space in {} to unpack the archive for --jobs: {} needed, {} free",
                        tmp_dir.display(),
                        super::human_bytes(need),
                        super::human_bytes(free)
                    ),
                )
                .hint("set TMPDIR to a folder with more space, or restore without --jobs (streams, needs no space)")
                .into());
            }
        }
        let mut file = tempfile::tempfile_in(&tmp_dir)
            .map_err(|e| unpack_write_error("cannot create a temp file in", &tmp_dir, &e))?;
        {
            use std::os::unix::fs::PermissionsExt;
            // O_TMPFILE honours only the umask: the decrypted dump is for us alone.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .with_context(|| {
                    format!("making the temp file in {} private", tmp_dir.display())
                })?;
        }
        crate::archive::sink::pump(&mut reader, &mut file, &self.counter).map_err(|e| match e {
            // The archive's content: decompression, decryption, a truncated file.
            crate::archive::sink::PumpError::Read(e) => Error::integrity(format!(
                "{}: cannot read the backup: {e}",
                self.path.display()
            ))
            .hint("the file is damaged or truncated; use another backup"),
            // Our side: the temp file (a full disk, permissions).
            crate::archive::sink::PumpError::Write(e) => {
                unpack_write_error("cannot unpack the archive for --jobs into", &tmp_dir, &e)
            }
        })?;
        file.flush()
            .map_err(|e| unpack_write_error("cannot write a temp file in", &tmp_dir, &e))?;
        let fd = file.as_raw_fd();
        let mut cmd = self.pg_restore_parallel(Path::new(&format!("/dev/fd/{fd}")), jobs);
        cmd.stdin(Stdio::null());
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
        let result = self.run_parallel(&mut cmd);
        drop(file);
        result
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
