//! `aos-backup restore`: guards first (production, remote host, a populated target, a damaged
//! file), then pg_restore (or psql for plain SQL) in one transaction, so a restore that fails
//! half-way leaves the target exactly as it was.

use super::Ctx;
use crate::archive::{self, Opened};
use crate::catalog::{self, Meta};
use crate::cli::RestoreArgs;
use crate::db::Db;
use crate::error::{Error, Kind};
use crate::format::DumpFormat;
use crate::process;
use crate::tools::Tool;
use anyhow::{Context, Result};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Finds the backup to restore: an existing path, else `latest` or an id in the backup folder.
pub fn resolve_target(wanted: &str, dir: &Path) -> Result<PathBuf> {
    let p = Path::new(wanted);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    let looks_like_path = wanted.contains('/') || crate::naming::looks_like_backup(wanted);
    let entries = catalog::scan(dir)?;
    match catalog::resolve(&entries, wanted, dir) {
        Ok(e) => Ok(e.path.clone()),
        Err(_) if looks_like_path => Err(Error::usage(format!("{wanted}: no such file"))
            .hint("check the path, or give a backup id or `latest` (see `aos-backup list`)")
            .into()),
        Err(e) => Err(e),
    }
}

/// Checks the stored bytes against the sidecar (size and SHA-256), if there is one.
pub fn check_against_meta(path: &Path, counter: &AtomicU64) -> Result<Option<Meta>> {
    let meta_path = Meta::path_for(path);
    if !meta_path.exists() {
        return Ok(None);
    }
    let meta = Meta::read(&meta_path)?;
    crate::commands::verify::check_stored(path, &meta, counter)?;
    Ok(Some(meta))
}

/// Runs a restore.
pub async fn run(ctx: &Ctx, args: &RestoreArgs) -> Result<()> {
    let dir = ctx.backup_dir();
    let path = resolve_target(&args.target, &dir)?;
    let _lock = if dir.is_dir() {
        Some(crate::lock::acquire(&dir, "restore")?)
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
    let progress = crate::progress::Progress::new(
        ctx.progress,
        "verifying",
        std::fs::metadata(&path)
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len()),
    );
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
        tracing::debug!(
            "{} has no metadata; restoring without a checksum",
            path.display()
        );
    }
    let opened = archive::open(&path, &keys)?;
    if opened.format == DumpFormat::Plain && args.jobs.is_some_and(|j| j > 1) {
        tracing::warn!("--jobs is ignored for plain SQL (psql runs it as one transaction)");
    }
    let jobs = args
        .jobs
        .filter(|j| *j > 1 && opened.format != DumpFormat::Plain);

    // Guard: the target.
    let db = Db::connect(&conn, &ctx.settings.env).await?;
    let tables = db.table_count().await?;
    let dbname = db.info.database.clone();
    if tables > 0 && jobs.is_some() && !args.force {
        return Err(Error::refused(format!(
            "refusing a parallel restore into {dbname:?}, which holds {tables} tables: --jobs cannot run in one transaction, so a failure would leave it half-restored"
        ))
        .hint("restore without --jobs (one transaction, all or nothing), or add --force to accept the risk")
        .into());
    }
    if tables > 0 && !args.yes {
        confirm(&dbname, &host, tables).await?;
    }
    let tool_name = if opened.format == DumpFormat::Plain {
        "psql"
    } else {
        "pg_restore"
    };
    let tool = ctx.locator().find(tool_name, Some(db.info.major))?;
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
    let total = meta.as_ref().map(|m| m.dump_bytes).filter(|n| *n > 0);
    let progress = crate::progress::Progress::new(ctx.progress, "restoring", total);
    let tool_started = Arc::new(AtomicBool::new(false));
    let job = RestoreJob {
        tool,
        env: conn.child_env(),
        dbname_arg: conn.conninfo_without_password(),
        path: path.clone(),
        jobs,
        counter: progress.counter.clone(),
        expected_dump_bytes: meta.as_ref().map(|m| m.dump_bytes).filter(|n| *n > 0),
        tool_started: tool_started.clone(),
    };
    let result = tokio::task::spawn_blocking(move || job.run(opened))
        .await
        .context("the restore thread failed")?;
    drop(progress);
    if let Err(e) = result {
        let note = if jobs.is_some() && !tool_started.load(Ordering::SeqCst) {
            // Unpacking for --jobs failed (damaged archive, no temp space): pg_restore never ran.
            format!("restore failed before pg_restore started: {dbname:?} was not touched")
        } else if jobs.is_some() {
            format!(
                "restore failed; it ran in parallel (--jobs), so {dbname:?} may be partly restored"
            )
        } else {
            format!("restore failed and was rolled back: {dbname:?} is as it was")
        };
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
            archive::Layer::Age => "age",
            archive::Layer::Zstd => "zstd",
            archive::Layer::Gzip => "gzip",
        })
        .collect();
    format!(", inside {}", names.join("+"))
}

/// Asks on the terminal; refuses at once when nobody can answer.
async fn confirm(dbname: &str, host: &str, tables: u64) -> Result<()> {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !interactive {
        return Err(Error::refused(format!(
            "refusing to restore into database {dbname:?} on {host}: it holds {tables} tables, and there is no terminal to confirm"
        ))
        .hint("add --yes to confirm that its objects may be dropped and replaced by the backup's")
        .into());
    }
    let prompt = format!(
        "Database {dbname:?} on {host} holds {tables} tables. Replace its objects with the backup's?"
    );
    let answer = tokio::task::spawn_blocking(move || {
        dialoguer::Confirm::new()
            .with_prompt(prompt)
            .default(false)
            .interact_on(&dialoguer::console::Term::stderr())
    })
    .await
    .context("the prompt failed")?;
    match answer {
        Ok(true) => Ok(()),
        _ => Err(Error::refused("restore cancelled; nothing was changed").into()),
    }
}

struct RestoreJob {
    tool: Tool,
    env: Vec<(String, String)>,
    dbname_arg: String,
    path: PathBuf,
    jobs: Option<u32>,
    counter: Arc<AtomicU64>,
    expected_dump_bytes: Option<u64>,
    /// Set when the restore tool is started: from then on the target may change.
    tool_started: Arc<AtomicBool>,
}

impl RestoreJob {
    fn base(&self) -> Command {
        let mut cmd = Command::new(&self.tool.path);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdout(Stdio::null());
        cmd
    }

    fn pg_restore(&self, input: Option<&Path>) -> Command {
        let mut cmd = self.base();
        cmd.args([
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-acl",
            "--exit-on-error",
            "--no-password",
        ]);
        match self.jobs {
            Some(j) => cmd.arg(format!("--jobs={j}")),
            None => cmd.arg("--single-transaction"),
        };
        cmd.arg(format!("--dbname={}", self.dbname_arg));
        if let Some(p) = input {
            cmd.arg(p);
        }
        cmd
    }

    fn psql(&self) -> Command {
        let mut cmd = self.base();
        cmd.args([
            "-X",
            "--quiet",
            "--no-password",
            "--single-transaction",
            "-v",
            "ON_ERROR_STOP=1",
        ]);
        cmd.arg(format!("--dbname={}", self.dbname_arg));
        cmd.args(["-f", "-"]);
        cmd
    }

    fn run(self, mut opened: Opened) -> Result<()> {
        let reader = opened.reader.take();
        match (opened.format, reader) {
            (DumpFormat::Directory, _) => self.wait(self.pg_restore(Some(&self.path)), None),
            (DumpFormat::Plain, Some(r)) => self.wait(self.psql(), Some((r, true))),
            // A bare archive: pg_restore reads the file itself (seekable, so --jobs works).
            (_, Some(_)) if opened.is_bare() => self.wait(self.pg_restore(Some(&self.path)), None),
            (_, Some(r)) if self.jobs.is_some() => self.unpacked(r),
            (_, Some(r)) => self.wait(self.pg_restore(None), Some((r, false))),
            (_, None) => anyhow::bail!("nothing to read in {}", self.path.display()),
        }
    }

    /// Runs `cmd`, feeding it `input` when given. A read error (damaged, truncated or altered
    /// data) stops the child before it sees the end of its input, so it can never commit.
    fn wait(&self, mut cmd: Command, input: Option<(Box<dyn Read + Send>, bool)>) -> Result<()> {
        let name = self.tool.name;
        self.tool_started.store(true, Ordering::SeqCst);
        let Some((mut reader, is_sql)) = input else {
            cmd.stdin(Stdio::null());
            return process::spawn(name, &mut cmd)?.wait()?.check();
        };
        cmd.stdin(Stdio::piped());
        let mut running = process::spawn(name, &mut cmd)?;
        let Some(stdin) = running.child.stdin.take() else {
            running.kill();
            anyhow::bail!("{name} has no stdin");
        };
        let mut sink = TrailerCheck::new(stdin, is_sql);
        match crate::pipeline::pump(&mut reader, &mut sink, &self.counter) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                // The child stopped reading: its own error says why.
                drop(sink);
                let finished = running.wait()?;
                finished.check()?;
                anyhow::bail!("{name} stopped reading its input");
            }
            Err(e) => {
                running.kill();
                return Err(Error::integrity(format!(
                    "{}: cannot read the backup: {e}",
                    self.path.display()
                ))
                .hint("the file is damaged or truncated (or was altered); use another backup")
                .into());
            }
        }
        if let Err(msg) = sink.verdict() {
            running.kill();
            return Err(Error::integrity(format!("{}: {msg}", self.path.display()))
                .hint("the SQL dump is incomplete; use another backup")
                .into());
        }
        drop(sink);
        running.wait()?.check()
    }

    /// Unpacks a compressed or encrypted archive into a temp file, so that pg_restore can seek
    /// in it for --jobs; the file is removed afterwards.
    fn unpacked(&self, mut reader: Box<dyn Read + Send>) -> Result<()> {
        let tmp_dir = std::env::temp_dir();
        if let Some(need) = self.expected_dump_bytes {
            let free = crate::fsutil::free_space(&tmp_dir).unwrap_or(u64::MAX);
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
        let tmp = tempfile::Builder::new()
            .prefix("aos-backup-restore-")
            .suffix(".dump")
            .tempfile_in(&tmp_dir)
            .with_context(|| format!("creating a temp file in {}", tmp_dir.display()))?;
        process::register_temp(tmp.path());
        let result = (|| {
            let mut file = tmp.as_file();
            crate::pipeline::pump(&mut reader, &mut file, &self.counter).map_err(|e| {
                Error::integrity(format!(
                    "{}: cannot read the backup: {e}",
                    self.path.display()
                ))
                .hint("the file is damaged or truncated; use another backup")
            })?;
            file.flush()?;
            self.wait(self.pg_restore(Some(tmp.path())), None)
        })();
        process::unregister_temp(tmp.path());
        drop(tmp);
        result
    }
}

/// Passes bytes through, and for SQL made by pg_dump checks that it ends with pg_dump's
/// "dump complete" line: a plain dump cut short would otherwise commit half a database.
struct TrailerCheck<W> {
    inner: W,
    is_sql: bool,
    head: Vec<u8>,
    tail: Vec<u8>,
}

const SQL_HEADER: &[u8] = b"-- PostgreSQL database dump";
const SQL_TRAILER: &[u8] = b"-- PostgreSQL database dump complete";

impl<W: Write> TrailerCheck<W> {
    fn new(inner: W, is_sql: bool) -> Self {
        TrailerCheck {
            inner,
            is_sql,
            head: Vec::new(),
            tail: Vec::new(),
        }
    }

    fn verdict(&self) -> std::result::Result<(), String> {
        if !self.is_sql {
            return Ok(());
        }
        let made_by_pg_dump = self.head.windows(SQL_HEADER.len()).any(|w| w == SQL_HEADER);
        let complete = self
            .tail
            .windows(SQL_TRAILER.len())
            .any(|w| w == SQL_TRAILER);
        if made_by_pg_dump && !complete {
            return Err("the SQL dump is cut short (no \"PostgreSQL database dump complete\" line at its end)".into());
        }
        Ok(())
    }
}

impl<W: Write> Write for TrailerCheck<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if self.is_sql {
            if self.head.len() < 256 {
                let take = (256 - self.head.len()).min(n);
                self.head.extend_from_slice(&buf[..take]);
            }
            self.tail.extend_from_slice(&buf[..n]);
            if self.tail.len() > 512 {
                let cut = self.tail.len() - 256;
                self.tail.drain(..cut);
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_check_catches_a_cut_pg_dump_sql() {
        let full = b"--\n-- PostgreSQL database dump\n--\nCREATE TABLE t();\n--\n-- PostgreSQL database dump complete\n--\n";
        let mut ok = TrailerCheck::new(Vec::new(), true);
        for chunk in full.chunks(7) {
            ok.write_all(chunk).unwrap();
        }
        assert!(ok.verdict().is_ok());
        assert_eq!(ok.inner, full.to_vec());
        let mut cut = TrailerCheck::new(Vec::new(), true);
        cut.write_all(&full[..50]).unwrap();
        assert!(cut.verdict().is_err());
        let mut handmade = TrailerCheck::new(Vec::new(), true);
        handmade.write_all(b"CREATE TABLE t();").unwrap();
        assert!(
            handmade.verdict().is_ok(),
            "SQL not made by pg_dump has no trailer to check"
        );
    }
}
