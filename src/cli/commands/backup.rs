//! `aos-backup backup`: pg_dump through the pipeline into a temp file, synced, renamed without
//! overwriting, then the metadata sidecar; then retention when a policy is configured.

use super::Ctx;
use crate::archive::crypto::{self, Sealer};
use crate::archive::dumpcheck::{self, StreamCheck, Verdict};
use crate::archive::format::{Algorithm, Compression, DumpFormat};
use crate::archive::meta::{FileEntry, Meta, META_FORMAT_VERSION};
use crate::archive::naming;
use crate::archive::sink::{self, Sink, Written};
use crate::catalog::retention::Policy;
use crate::cli::args::BackupArgs;
use crate::config::{Recipients, Settings};
use crate::error::Error;
use crate::pg::db::Db;
use crate::pg::tools::Tool;
use crate::runtime::fsutil;
use crate::runtime::process;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::time::Instant;

/// How backups get encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncryptionPlan {
    Recipients(Recipients),
    Passphrase(PathBuf),
}

/// A validated backup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupPlan {
    pub dir: PathBuf,
    pub label: Option<String>,
    pub format: DumpFormat,
    pub compression: Compression,
    pub jobs: Option<u32>,
    pub encryption: Option<EncryptionPlan>,
    /// The retention policy to apply after a successful backup, if any.
    pub prune: Option<Policy>,
}

impl BackupPlan {
    /// Validates the flags over the settings.
    pub fn new(settings: &Settings, args: &BackupArgs) -> Result<BackupPlan> {
        if let Some(l) = &args.name {
            naming::validate_label(l)
                .map_err(|m| Error::usage(m).hint("e.g. --name pre-deploy"))?;
        }
        let format = args.format.unwrap_or(settings.format.value);
        let jobs = args.jobs.or(settings.jobs);
        if jobs == Some(0) {
            return Err(Error::usage("--jobs must be at least 1").into());
        }
        if jobs.is_some_and(|j| j > 1) && format != DumpFormat::Directory {
            return Err(Error::usage(format!(
                "--jobs needs --format directory (the {format} format is written by one process)"
            ))
            .hint("pg_dump can only dump in parallel into a directory: add --format directory")
            .into());
        }
        let algorithm = args
            .compression
            .unwrap_or(settings.compression.value.algorithm);
        let level = match (args.compression_level, args.compression) {
            (Some(l), _) => l,
            // A new algorithm on the command line gets its own default level.
            (None, Some(a)) if a != settings.compression.value.algorithm => a.default_level(),
            (None, _) => settings.compression.value.level,
        };
        let mut compression = Compression { algorithm, level };
        match format {
            // pg_dump compresses each file of a directory archive itself (gzip, on its jobs).
            DumpFormat::Directory => {
                if matches!(algorithm, Algorithm::Zstd | Algorithm::Gzip) {
                    compression = Compression {
                        algorithm: Algorithm::PgDump,
                        level: -1,
                    };
                }
            }
            DumpFormat::Plain if algorithm == Algorithm::PgDump => {
                compression = Compression {
                    algorithm: Algorithm::Gzip,
                    level: Algorithm::Gzip.default_level(),
                };
            }
            _ => {}
        }
        let levels = compression.algorithm.levels();
        if compression.level != -1
            && !levels.contains(&compression.level)
            && compression.algorithm != Algorithm::None
        {
            return Err(Error::usage(format!(
                "compression level {} is out of range for {} ({}-{})",
                compression.level,
                compression.algorithm,
                levels.start(),
                levels.end()
            ))
            .into());
        }
        if compression.algorithm == Algorithm::None {
            compression.level = 0;
        }

        let enc = &settings.encryption;
        let passphrase = args
            .passphrase_file
            .clone()
            .or_else(|| enc.passphrase_file.clone());
        let recipients = args
            .recipients_file
            .clone()
            .map(Recipients::File)
            .or_else(|| enc.recipients.clone());
        let wanted = !args.no_encrypt
            && (args.encrypt
                || enc.enabled
                || args.recipients_file.is_some()
                || args.passphrase_file.is_some());
        let encryption = if wanted {
            Some(match (recipients, passphrase) {
                // age cannot seal one file to a passphrase and to recipients: taking one would
                // silently drop the other.
                (Some(_), Some(_)) => {
                    return Err(Error::usage("both age recipients (BACKUP_AGE_RECIPIENTS, --recipients-file or the config file's recipients) and a passphrase file (BACKUP_PASSPHRASE_FILE, --passphrase-file or the config file's passphrase_file) are set; age cannot encrypt a backup to both, so nothing was written")
                        .hint("keep one of them: unset BACKUP_PASSPHRASE_FILE to encrypt to the recipients (recommended: the backup host then holds no secret), or unset BACKUP_AGE_RECIPIENTS to use the passphrase")
                        .into())
                }
                (Some(r), _) => EncryptionPlan::Recipients(r),
                (None, Some(p)) => EncryptionPlan::Passphrase(p),
                (None, None) => {
                    return Err(Error::usage("encryption is on, but no age recipients or passphrase file are configured")
                        .hint("set BACKUP_AGE_RECIPIENTS to age1... public keys (or a recipients file), or BACKUP_PASSPHRASE_FILE")
                        .into())
                }
            })
        } else {
            None
        };
        if encryption.is_some() && format == DumpFormat::Directory {
            return Err(Error::usage("a directory archive cannot be encrypted")
                .hint("use --format custom (the default) or plain to encrypt")
                .into());
        }
        let prune =
            (!args.no_prune && !settings.retention.is_empty()).then(|| settings.retention.clone());
        Ok(BackupPlan {
            dir: settings.backup_dir.value.clone(),
            label: args.name.clone(),
            format,
            compression,
            jobs,
            encryption,
            prune,
        })
    }

    /// Loads the keys (before anything else, so a bad key fails early).
    pub fn sealer(&self) -> Result<Option<Sealer>> {
        Ok(match &self.encryption {
            None => None,
            Some(EncryptionPlan::Recipients(r)) => {
                Some(Sealer::Recipients(crypto::load_recipients(r)?))
            }
            Some(EncryptionPlan::Passphrase(p)) => {
                Some(Sealer::Passphrase(crypto::read_passphrase(p)?))
            }
        })
    }

    /// pg_dump's arguments (no connection details: they go through the environment).
    #[must_use]
    pub fn pg_dump_args(&self, target: Option<&Path>) -> Vec<String> {
        let mut a = vec![
            format!("--format={}", self.format),
            "--no-owner".into(),
            "--no-acl".into(),
            "--no-password".into(),
        ];
        match self.format {
            DumpFormat::Plain => {
                a.push("--clean".into());
                a.push("--if-exists".into());
            }
            DumpFormat::Custom | DumpFormat::Directory | DumpFormat::Tar => {
                match self.compression.algorithm {
                    Algorithm::PgDump if self.compression.level >= 0 => {
                        a.push(format!("--compress={}", self.compression.level))
                    }
                    Algorithm::PgDump => {}
                    _ => a.push("--compress=0".into()),
                }
            }
        }
        if let Some(j) = self.jobs.filter(|_| self.format == DumpFormat::Directory) {
            a.push(format!("--jobs={j}"));
        }
        if let Some(t) = target {
            a.push(format!("--file={}", t.display()));
        }
        a
    }
}

/// Runs a backup.
pub async fn run(ctx: &Ctx, args: &BackupArgs) -> Result<()> {
    let plan = BackupPlan::new(&ctx.settings, args)?;
    let conn = ctx.conninfo()?;
    let sealer = plan.sealer()?;
    let recipients = sealer
        .as_ref()
        .map(Sealer::fingerprints)
        .unwrap_or_default();
    fsutil::create_private_dir_all(&plan.dir).map_err(|e| {
        // A file where the folder (or one of its parents) should be: the setting is wrong, and
        // permissions have nothing to do with it.
        if e.kind() == std::io::ErrorKind::AlreadyExists || e.raw_os_error() == Some(libc::ENOTDIR)
        {
            return Error::usage(format!(
                "the backup folder {} is not a folder: a file is in the way ({e})",
                plan.dir.display()
            ))
            .hint("set BACKUP_DIR (or --backup-dir) to a folder, or move that file away");
        }
        Error::new(
            crate::error::Kind::Failure,
            format!(
                "cannot create the backup folder {}: {e}",
                plan.dir.display()
            ),
        )
        .hint(
            "check the permissions of BACKUP_DIR's parent, or set BACKUP_DIR to a writable folder",
        )
    })?;
    let lock = crate::storage::lock::acquire(&plan.dir, "backup")?;

    let db = Db::connect(&conn, &|k| ctx.settings.env.var(k)).await?;
    let tables = db.table_count().await?;
    let pg_dump = ctx.locator().find("pg_dump", Some(db.info.major))?;
    crate::pg::tools::check_not_older(&pg_dump, &db.info.version, db.info.major)?;
    let server_version = db.info.version.clone();
    // pg_dump's backend stops soon after pg_dump dies, even while it waits for a lock.
    let options = crate::pg::sessions::child_options(db.info.major, None);
    let conn = if options.is_empty() {
        conn
    } else {
        conn.with_options(&options, &|k| ctx.settings.env.var(k))
    };
    drop(db);

    let started_at = ctx.now;
    let id = choose_id(
        &plan.dir,
        &naming::make_id(started_at, plan.label.as_deref()),
    )?;
    let ext = naming::extension(plan.format, plan.compression.algorithm, sealer.is_some());
    tracing::info!(
        "backing up database {:?} on {} with {} ({})",
        conn.effective_dbname(&|k| ctx.settings.env.var(k)),
        conn.host_display(),
        pg_dump.version_line,
        super::count(tables, "table")
    );
    let started = Instant::now();
    let progress = ctx.op.progress("dumping", None);
    let job = Job {
        plan: plan.clone(),
        pg_dump: pg_dump.clone(),
        env: conn.child_env(),
        dbname: conn.conninfo_without_password(),
        id: id.clone(),
        ext,
        counter: progress.counter.clone(),
        second_read: second_read_keys(ctx, &plan),
        locator: ctx.locator(),
        op: ctx.op.clone(),
    };
    let outcome = tokio::task::spawn_blocking(move || job.run(sealer.as_ref()))
        .await
        .context("the backup thread failed")??;
    drop(progress);
    let elapsed = started.elapsed();

    let mut meta = Meta {
        format_version: META_FORMAT_VERSION,
        id: outcome.id.clone(),
        label: plan.label.clone(),
        file: outcome
            .path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        started_at,
        finished_at: started_at + chrono::Duration::from_std(elapsed).unwrap_or_default(),
        duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        database: conn.effective_dbname(&|k| ctx.settings.env.var(k)),
        host: conn.host().unwrap_or("default socket").to_string(),
        port: conn.port(),
        server_version,
        pg_dump_version: pg_dump.version.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        format: plan.format.into(),
        compression: plan.compression.algorithm.into(),
        compression_level: plan.compression.level,
        encryption: outcome.encryption.into(),
        size_bytes: outcome.written.stored_bytes,
        dump_bytes: outcome.written.dump_bytes,
        sha256: outcome.written.sha256.clone(),
        tables,
        files: outcome.files.clone(),
        archive_tables: match outcome.checked {
            Checked::Complete { tables } => tables,
            Checked::Unchecked(_) => None,
        },
        suspect: None,
        recipients,
    };
    meta.suspect = suspect_of(&plan.dir, &meta, ctx.settings.suspect_ratio.value);
    // The sidecar is written last: its presence marks the backup complete.
    let meta_path = Meta::path_for(&outcome.path);
    // Under the commit lock: a signal either finds the backup complete or removes it whole.
    let written = ctx.op.commit(|| {
        meta.write(&meta_path)?;
        ctx.op.unregister_temp(&outcome.path);
        Ok(())
    });
    if let Err(e) = written {
        let _ = fsutil::remove_any(&outcome.path);
        ctx.op.unregister_temp(&outcome.path);
        return Err(e.context(format!(
            "writing the metadata of {}",
            outcome.path.display()
        )));
    }

    let ratio = if meta.size_bytes > 0 && meta.dump_bytes > 0 {
        #[allow(clippy::cast_precision_loss)]
        let r = meta.dump_bytes as f64 / meta.size_bytes as f64;
        format!(
            ", {} dumped, ratio {r:.1}x",
            super::human_bytes(meta.dump_bytes)
        )
    } else {
        String::new()
    };
    tracing::info!(
        "backup complete: {} ({}{ratio}, {}) in {}",
        outcome.path.display(),
        super::human_bytes(meta.size_bytes),
        super::count(tables, "table"),
        super::human_duration(elapsed)
    );
    if let Some(s) = &meta.suspect {
        tracing::warn!(
            "backup {} is suspect: {}; it is kept and marked suspect in its metadata",
            meta.id,
            s.reason
        );
    }
    let mut json = serde_json::to_value(&meta).unwrap_or_default();
    json["path"] = serde_json::Value::String(outcome.path.display().to_string());
    ctx.emit(&outcome.path.display().to_string(), &json);

    let blocker = prune_blocker(&meta, &outcome.checked);
    if let (Some(_), Some(why)) = (&plan.prune, &blocker) {
        tracing::warn!("not pruning old backups: {why}");
    }
    if let Some(policy) = plan.prune.as_ref().filter(|_| blocker.is_none()) {
        // Only this database's backups, and never the one just written.
        let which = crate::ops::prune::Databases::One(meta.database.clone());
        let just_made = Some(meta.file.as_str());
        let report =
            crate::ops::prune::apply(&plan.dir, policy, &which, just_made, ctx.now, false, &lock)
                .with_context(|| {
                format!(
                    "the backup {} succeeded, but pruning old backups failed",
                    outcome.path.display()
                )
            })?;
        // stdout carries only the backup's path: the plan is only logged.
        for l in report.lines() {
            tracing::debug!("{l}");
        }
        for s in report.summaries() {
            tracing::info!("{s}");
        }
    }
    drop(lock);
    Ok(())
}

/// The blocking part of a backup, run on its own thread.
struct Job {
    plan: BackupPlan,
    pg_dump: Tool,
    env: Vec<(String, String)>,
    dbname: String,
    id: String,
    ext: String,
    counter: std::sync::Arc<AtomicU64>,
    /// The keys to read the finished backup with, when the stream check cannot judge it (None:
    /// it cannot be read back, being encrypted to recipients whose identity is not configured).
    second_read: Option<crate::archive::crypto::KeySource>,
    locator: crate::pg::tools::Locator,
    op: crate::runtime::context::OpContext,
}

struct Outcome {
    path: PathBuf,
    id: String,
    written: Written,
    files: Vec<FileEntry>,
    encryption: crate::archive::format::EncryptionKind,
    checked: Checked,
}

/// What is known about the completeness of a new backup's archive.
#[derive(Debug, Clone)]
enum Checked {
    /// Checked complete; `tables`: its `TABLE` entries, when the format has a table of contents
    /// and the stream check read it.
    Complete { tables: Option<u64> },
    /// Could not be checked (why): the backup is kept, but causes no deletion.
    Unchecked(String),
}

impl Job {
    fn command(&self, target: Option<&Path>) -> Command {
        let mut cmd = self.pg_dump.command(&self.env);
        cmd.args(self.plan.pg_dump_args(target));
        if !self.dbname.is_empty() {
            cmd.arg(format!("--dbname={}", self.dbname));
        }
        cmd.stdin(Stdio::null());
        // What pg_dump creates itself (a directory archive's files) is private too.
        fsutil::private_umask(&mut cmd);
        cmd
    }

    fn run(self, sealer: Option<&Sealer>) -> Result<Outcome> {
        let final_path = self.plan.dir.join(naming::file_name(&self.id, &self.ext));
        let tmp = fsutil::partial_path(&final_path);
        if std::fs::symlink_metadata(&tmp).is_ok() {
            // Not ours (the id was chosen free of leftovers): never write over it or remove it.
            return Err(Error::new(
                crate::error::Kind::Failure,
                format!("{} appeared while the backup started", tmp.display()),
            )
            .hint("another program writes into the backup folder; nothing was changed")
            .into());
        }
        self.op.register_temp(&tmp);
        let result = self.dump(&tmp, sealer);
        let result = result.and_then(|(written, files, verdict)| {
            let checked = self.completeness(&tmp, verdict)?;
            Ok((written, files, checked))
        });
        let result = result.and_then(|(written, files, checked)| {
            self.op
                .commit(|| {
                    let (path, id) = self.publish(&tmp)?;
                    self.op.unregister_temp(&tmp);
                    // Until its sidecar is written, the backup is not complete: an interruption
                    // now must remove it like any temp file.
                    self.op.register_temp(&path);
                    Ok((path, id))
                })
                .map(|(path, id)| (path, id, written, files, checked))
        });
        match result {
            Ok((path, id, written, files, checked)) => Ok(Outcome {
                path,
                id,
                written,
                files,
                checked,
                encryption: sealer
                    .map_or(crate::archive::format::EncryptionKind::None, Sealer::kind),
            }),
            Err(e) => {
                let _ = fsutil::remove_any(&tmp);
                self.op.unregister_temp(&tmp);
                Err(e)
            }
        }
    }

    /// Runs pg_dump into `tmp` (a file through the pipeline, or a folder for -Fd).
    fn dump(
        &self,
        tmp: &Path,
        sealer: Option<&Sealer>,
    ) -> Result<(Written, Vec<FileEntry>, Verdict)> {
        if self.plan.format == DumpFormat::Directory {
            let mut cmd = self.command(Some(tmp));
            cmd.stdout(Stdio::null());
            let running = process::spawn(&self.op, "pg_dump", &mut cmd)?;
            running.wait()?.check()?;
            let verdict = dumpcheck::check_directory(tmp);
            let (written, files) = hash_directory(tmp, &self.counter)?;
            return Ok((written, files, verdict));
        }
        let file = fsutil::create_private(tmp)
            .map_err(|e| fsutil::local_io_error("cannot create", tmp, &e))?;
        let mut sink = Sink::new(file, self.plan.compression, sealer)?;
        let mut cmd = self.command(None);
        cmd.stdout(Stdio::piped());
        let mut running = process::spawn(&self.op, "pg_dump", &mut cmd)?;
        let Some(stdout) = running.child.stdout.take() else {
            running.kill();
            anyhow::bail!("pg_dump has no stdout");
        };
        grow_pipe(&stdout);
        // The raw stream is shown to the completeness check on its way into the pipeline.
        let mut check = StreamCheck::for_format(self.plan.format);
        let pumped = match check.as_mut() {
            Some(check) => {
                let mut tee = dumpcheck::Tee {
                    inner: &mut sink,
                    check,
                };
                // 8 MiB of read-ahead: pg_dump never waits on a chunk being compressed.
                sink::pump_buffered(Box::new(stdout), &mut tee, &self.counter, 8)
            }
            None => sink::pump_buffered(Box::new(stdout), &mut sink, &self.counter, 8),
        };
        if let Err(e) = pumped {
            running.kill();
            return Err(write_error(tmp, &e));
        }
        running.wait()?.check()?;
        let verdict = check.map_or_else(
            || {
                Verdict::Unknown(format!(
                    "no stream check for the {} format",
                    self.plan.format
                ))
            },
            |c| c.finish(),
        );
        sink.finish()
            .map_err(|e| {
                let text = format!("{e:#}");
                match process::classify(&text) {
                    (kind, Some(hint)) => {
                        Error::new(kind, format!("writing {}: {text}", tmp.display()))
                            .hint(hint)
                            .into()
                    }
                    _ => e,
                }
            })
            .map(|w| (w, Vec::new(), verdict))
    }

    /// Turns the stream check's verdict into a decision: an incomplete archive fails the backup
    /// (its temp file is then removed); one the check cannot judge is read through pg_restore,
    /// as `verify` does, when it can be read back.
    fn completeness(&self, tmp: &Path, verdict: Verdict) -> Result<Checked> {
        let why = match verdict {
            Verdict::Complete { tables } => {
                tracing::debug!("the archive is complete ({tables:?} tables in its contents)");
                return Ok(Checked::Complete { tables });
            }
            Verdict::Incomplete(why) => return Err(incomplete(&why)),
            Verdict::Unknown(why) => why,
        };
        tracing::debug!(
            "the stream check cannot judge this archive ({why}); reading it through pg_restore"
        );
        let Some(keys) = &self.second_read else {
            return Ok(Checked::Unchecked(format!(
                "{why}, and the backup cannot be read back (encrypted to recipients; no identity configured)"
            )));
        };
        match crate::archive::integrity::read_through(&self.op, tmp, keys, &self.locator) {
            Ok(_) => Ok(Checked::Complete { tables: None }),
            Err(e)
                if crate::error::find(&e)
                    .is_some_and(|t| t.kind == crate::error::Kind::Integrity) =>
            {
                Err(incomplete(&format!(
                    "pg_restore cannot read it through: {e:#}"
                )))
            }
            Err(e) => Ok(Checked::Unchecked(format!(
                "{why}, and reading it back failed: {e:#}"
            ))),
        }
    }

    /// Renames the finished temp file to its final name, never replacing a file: on a clash
    /// (two backups in one second), the id gets a `-2`, `-3`... suffix.
    fn publish(&self, tmp: &Path) -> Result<(PathBuf, String)> {
        for n in 1..100 {
            let id = if n == 1 {
                self.id.clone()
            } else {
                format!("{}-{n}", self.id)
            };
            let path = self.plan.dir.join(naming::file_name(&id, &self.ext));
            // Ids are unique across extensions (a .dump.zst and a .sql.gz made in the same second
            // must not share one), and a sidecar without its file also takes its name.
            if Meta::path_for(&path).exists() || id_taken(&self.plan.dir, &id, tmp)? {
                continue;
            }
            match fsutil::rename_noreplace(tmp, &path) {
                Ok(()) => {
                    fsutil::sync_dir(&self.plan.dir).context("syncing the backup folder")?;
                    return Ok((path, id));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("renaming {} to {}", tmp.display(), path.display())
                    })
                }
            }
        }
        anyhow::bail!("no free file name for backup {}", self.id)
    }
}

/// The id of the new backup: `base`, or `base-2`, `base-3`... when a backup, a sidecar or a
/// leftover `.partial` of an interrupted run already holds it (see [`naming::free_id`]).
fn choose_id(dir: &Path, base: &str) -> Result<String> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    naming::free_id(base, names.iter().map(String::as_str)).ok_or_else(|| {
        Error::new(
            crate::error::Kind::Failure,
            format!("no free file name for backup {base} in {}", dir.display()),
        )
        .hint("remove leftovers with `aos-backup prune`, or wait a second")
        .into()
    })
}

/// The error of an archive that pg_dump cut short while exiting 0.
fn incomplete(why: &str) -> anyhow::Error {
    Error::new(
        crate::error::Kind::Failure,
        format!("pg_dump exited 0, but its archive is incomplete: {why}"),
    )
    .hint("the partial backup was removed and nothing was pruned; run the backup again, and look for what cut pg_dump's output short")
    .into()
}

/// The keys that can read a new backup back, or None when none can (encrypted to recipients,
/// with no identity configured).
fn second_read_keys(ctx: &Ctx, plan: &BackupPlan) -> Option<crate::archive::crypto::KeySource> {
    let enc = &ctx.settings.encryption;
    let keys = crate::archive::crypto::KeySource {
        identity_file: enc.identity_file.clone(),
        passphrase_file: enc.passphrase_file.clone(),
    };
    match plan.encryption {
        Some(EncryptionPlan::Recipients(_)) if keys.identity_file.is_none() => None,
        _ => Some(keys),
    }
}

/// Whether `meta` shrank sharply against the previous trusted backup of its database.
fn suspect_of(dir: &Path, meta: &Meta, ratio: f64) -> Option<crate::archive::meta::Suspect> {
    if ratio <= 0.0 {
        return None;
    }
    match crate::archive::suspect::baseline(dir, &meta.database, &meta.id) {
        Ok(Some(previous)) => crate::archive::suspect::judge(meta, &previous, ratio),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("cannot compare with the previous backup: {e:#}");
            None
        }
    }
}

/// Why the automatic prune must not run after this backup, if it must not.
fn prune_blocker(meta: &Meta, checked: &Checked) -> Option<String> {
    if meta.suspect.is_some() {
        return Some(format!(
            "backup {} is suspect (run `aos-backup prune` by hand if the drop is intended)",
            meta.id
        ));
    }
    if let Checked::Unchecked(why) = checked {
        return Some(format!(
            "the completeness of backup {} could not be checked ({why})",
            meta.id
        ));
    }
    None
}

/// Asks for a 1 MiB pipe from pg_dump (the default is 64 KiB): fewer wake-ups for both sides.
fn grow_pipe(pipe: &std::process::ChildStdout) {
    use std::os::unix::io::AsRawFd;
    let size: libc::c_int = 1 << 20;
    // SAFETY: fcntl on a pipe descriptor we own; a failure only leaves the default size.
    let rc = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
    if rc < 0 {
        tracing::debug!(
            "cannot grow the pipe from pg_dump: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Whether a backup (of any extension) already has `id` in `dir`; `tmp` itself doesn't count.
fn id_taken(dir: &Path, id: &str, tmp: &Path) -> Result<bool> {
    let tmp_name = tmp.file_name();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = entry?.file_name();
        if Some(name.as_os_str()) == tmp_name {
            continue;
        }
        let name = name.to_string_lossy();
        let base = name.strip_suffix(naming::META_SUFFIX).unwrap_or(&name);
        if naming::id_of(base) == Some(id) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn write_error(tmp: &Path, e: &sink::PumpError) -> anyhow::Error {
    match e {
        // Our side: the backup folder's disk or permissions.
        sink::PumpError::Write(io) => fsutil::local_io_error("writing", tmp, io).into(),
        sink::PumpError::Read(io) => Error::new(
            crate::error::Kind::Failure,
            format!("reading pg_dump's output: {io}"),
        )
        .into(),
    }
}

/// Hashes every file of a directory archive (sorted), fsyncs them, and returns the manifest.
fn hash_directory(dir: &Path, counter: &AtomicU64) -> Result<(Written, Vec<FileEntry>)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut files = Vec::new();
    let mut total = 0;
    for name in names {
        let p = dir.join(&name);
        fsutil::make_private(&p).with_context(|| format!("making {} private", p.display()))?;
        let (sha256, size) =
            sink::hash_file(&p, counter).with_context(|| format!("reading {}", p.display()))?;
        std::fs::File::open(&p)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", p.display()))?;
        total += size;
        files.push(FileEntry {
            path: name,
            size,
            sha256,
        });
    }
    fsutil::make_private(dir).with_context(|| format!("making {} private", dir.display()))?;
    fsutil::sync_dir(dir).with_context(|| format!("syncing {}", dir.display()))?;
    Ok((
        Written {
            sha256: manifest_sha256(&files),
            stored_bytes: total,
            dump_bytes: 0,
        },
        files,
    ))
}

// Kept reachable here for callers that knew it as a backup detail.
pub use crate::archive::integrity::manifest_sha256;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::{Cli, Command as Sub};
    use crate::config::Env;
    use clap::Parser;

    fn plan(args: &[&str], env: &[(&str, &str)]) -> Result<BackupPlan> {
        let mut full = vec!["aos-backup", "backup"];
        full.extend_from_slice(args);
        let cli = Cli::try_parse_from(full).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::resolve(&cli.overrides(), Env::from_pairs(env), dir.path())?;
        let Sub::Backup(a) = &cli.command else {
            unreachable!()
        };
        BackupPlan::new(&settings, a)
    }

    fn usage_message(r: Result<BackupPlan>) -> String {
        let err = r.unwrap_err();
        let e = crate::error::find(&err).expect("typed");
        assert_eq!(e.kind, crate::error::Kind::Usage);
        e.message.clone()
    }

    #[test]
    fn default_plan_is_custom_zstd_unencrypted() {
        let p = plan(&[], &[]).unwrap();
        assert_eq!(p.format, DumpFormat::Custom);
        assert_eq!(
            p.compression,
            Compression {
                algorithm: Algorithm::Zstd,
                level: 1
            }
        );
        assert!(p.encryption.is_none() && p.prune.is_none());
        let args = p.pg_dump_args(None);
        assert!(args.contains(&"--compress=0".to_string()), "{args:?}");
        assert!(args.contains(&"--no-owner".to_string()) && args.contains(&"--no-acl".to_string()));
    }

    #[test]
    fn pg_dump_compression_keeps_pg_dumps_default() {
        let p = plan(&["--compression", "pg_dump"], &[]).unwrap();
        assert!(!p
            .pg_dump_args(None)
            .iter()
            .any(|a| a.starts_with("--compress")));
        let p = plan(&["--compression", "gzip", "--compression-level", "9"], &[]).unwrap();
        assert_eq!(p.compression.level, 9);
    }

    #[test]
    fn invalid_combinations_are_usage_errors() {
        assert!(usage_message(plan(&["--jobs", "4"], &[])).contains("--format directory"));
        assert!(usage_message(plan(&["--name", "a/b"], &[])).contains("label"));
        assert!(usage_message(plan(&["--compression-level", "42"], &[])).contains("out of range"));
        assert!(usage_message(plan(&["--encrypt"], &[])).contains("no age recipients"));
        assert!(usage_message(plan(
            &["--format", "directory", "--encrypt"],
            &[("BACKUP_AGE_RECIPIENTS", "age1x")]
        ))
        .contains("directory"));
    }

    #[test]
    fn directory_format_uses_pg_dumps_compression_and_jobs() {
        let p = plan(&["--format", "directory", "--jobs", "2"], &[]).unwrap();
        assert_eq!(p.compression.algorithm, Algorithm::PgDump);
        let args = p.pg_dump_args(Some(Path::new("/x")));
        assert!(args.contains(&"--jobs=2".to_string()) && args.contains(&"--file=/x".to_string()));
    }

    #[test]
    fn encryption_and_retention_come_from_the_environment() {
        let p = plan(
            &[],
            &[
                ("BACKUP_ENCRYPTION", "age"),
                ("BACKUP_AGE_RECIPIENTS", "age1abc"),
                ("BACKUP_KEEP_LAST", "3"),
            ],
        )
        .unwrap();
        assert_eq!(
            p.encryption,
            Some(EncryptionPlan::Recipients(Recipients::Keys(vec![
                "age1abc".into()
            ])))
        );
        assert_eq!(p.prune.unwrap().keep_last, Some(3));
        let p = plan(
            &["--no-encrypt", "--no-prune"],
            &[("BACKUP_ENCRYPTION", "age"), ("BACKUP_KEEP_LAST", "3")],
        )
        .unwrap();
        assert!(p.encryption.is_none() && p.prune.is_none());
    }
}
