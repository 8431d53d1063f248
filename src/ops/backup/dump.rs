//! The blocking part of a backup, run on its own thread: pg_dump into a `.partial` (a file
//! through the sink, or a folder for the directory format), the completeness check, and the
//! rename to the backup's final name.

use super::BackupPlan;
use crate::archive::crypto::Sealer;
use crate::archive::dumpcheck::{self, StreamCheck, Verdict};
use crate::archive::format::{DumpFormat, EncryptionKind};
use crate::archive::meta::{FileEntry, Meta, TableRows};
use crate::archive::naming;
use crate::archive::sink::{self, Sink, Written};
use crate::error::{Error, Kind};
use crate::pg::tools::{Locator, Tool};
use crate::runtime::context::OpContext;
use crate::runtime::fsutil;
use crate::runtime::process;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// What is known about the completeness of a new backup's archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completeness {
    /// Checked complete; `tables`: its `TABLE` entries, when the format has a table of contents
    /// and the stream check read it.
    Complete {
        /// The archive's `TABLE` entries; `None` when they were not counted.
        tables: Option<u64>,
    },
    /// Could not be checked (why): the backup is kept, but causes no deletion.
    Unchecked(String),
}

/// pg_dump's run: what it is given, and where its archive goes.
pub(super) struct Job {
    pub plan: BackupPlan,
    pub pg_dump: Tool,
    /// The children's environment (the connection's variables).
    pub env: Vec<(String, String)>,
    /// `--dbname`, without the password.
    pub dbname: String,
    pub id: String,
    pub ext: String,
    /// The bytes read from pg_dump so far (the progress).
    pub counter: Arc<AtomicU64>,
    pub locator: Locator,
    pub op: OpContext,
    /// The exported snapshot pg_dump dumps (`--snapshot`), shared with the row counts.
    pub snapshot: Option<String>,
}

/// A published backup, still without its sidecar.
pub(super) struct Outcome {
    pub path: PathBuf,
    pub id: String,
    pub written: Written,
    pub files: Vec<FileEntry>,
    pub encryption: EncryptionKind,
    /// The fingerprints of the recipients it is encrypted to.
    pub recipients: Vec<String>,
    pub checked: Completeness,
    /// The rows of each table, counted on pg_dump's snapshot (set once the dump is done).
    pub row_counts: Option<Vec<TableRows>>,
}

/// What pg_dump left in the `.partial`: its checksum and sizes, a directory's files, the
/// stream check's verdict.
type Dumped = (Written, Vec<FileEntry>, Verdict);

impl Job {
    /// Dumps, checks and publishes; on any failure the `.partial` is removed.
    pub fn run(self, sealer: Option<&Sealer>) -> Result<Outcome> {
        let final_path = self.plan.dir.join(naming::file_name(&self.id, &self.ext));
        let tmp = fsutil::partial_path(&final_path);
        refuse_foreign_partial(&tmp)?;
        self.op.register_temp(&tmp);
        self.dump_check_publish(&tmp, sealer).inspect_err(|_| {
            let _ = fsutil::remove_any(&tmp);
            self.op.unregister_temp(&tmp);
        })
    }

    fn dump_check_publish(&self, tmp: &Path, sealer: Option<&Sealer>) -> Result<Outcome> {
        let (written, files, verdict) = self.dump(tmp, sealer)?;
        let checked = self.completeness(tmp, verdict)?;
        let (path, id) = self.op.commit(|| {
            let (path, id) = self.publish(tmp)?;
            self.op.unregister_temp(tmp);
            // Until its sidecar is written, the backup is not complete: an interruption
            // now must remove it like any temp file.
            self.op.register_temp(&path);
            Ok((path, id))
        })?;
        Ok(Outcome {
            path,
            id,
            written,
            files,
            encryption: sealer.map_or(EncryptionKind::None, Sealer::kind),
            recipients: sealer.map(Sealer::fingerprints).unwrap_or_default(),
            checked,
            row_counts: None,
        })
    }

    fn command(&self, target: Option<&Path>) -> Command {
        let mut cmd = self.pg_dump.command(&self.env);
        cmd.args(self.plan.pg_dump_args(target));
        if let Some(id) = &self.snapshot {
            cmd.arg(format!("--snapshot={id}"));
        }
        if !self.dbname.is_empty() {
            cmd.arg(format!("--dbname={}", self.dbname));
        }
        cmd.stdin(Stdio::null());
        // What pg_dump creates itself (a directory archive's files) is private too.
        fsutil::private_umask(&mut cmd);
        cmd
    }

    /// Runs pg_dump into `tmp` (a file through the pipeline, or a folder for -Fd).
    fn dump(&self, tmp: &Path, sealer: Option<&Sealer>) -> Result<Dumped> {
        if self.plan.format == DumpFormat::Directory {
            return self.dump_directory(tmp);
        }
        let file = fsutil::create_private(tmp)
            .map_err(|e| fsutil::local_io_error("cannot create", tmp, &e))?;
        if let Some(hook) = &self.plan.on_writing {
            (hook.0)(tmp);
        }
        let mut sink = Sink::new(file, self.plan.compression, sealer)?;
        let verdict = self.dump_stream(tmp, &mut sink)?;
        sink.finish()
            .map_err(|e| finish_error(tmp, e))
            .map(|w| (w, Vec::new(), verdict))
    }

    /// pg_dump writes the folder `tmp` itself; its files are then hashed.
    fn dump_directory(&self, tmp: &Path) -> Result<Dumped> {
        let mut cmd = self.command(Some(tmp));
        cmd.stdout(Stdio::null());
        let running = self.pg_dump.spawn(&self.op, &mut cmd)?;
        running.wait()?.check()?;
        let verdict = dumpcheck::check_directory(tmp);
        let (written, files) = hash_directory(tmp, &self.counter)?;
        Ok((written, files, verdict))
    }

    /// pg_dump's stdout pumped into `sink`, shown to the stream check on its way.
    fn dump_stream(&self, tmp: &Path, sink: &mut Sink) -> Result<Verdict> {
        let mut cmd = self.command(None);
        cmd.stdout(Stdio::piped());
        let mut running = self.pg_dump.spawn(&self.op, &mut cmd)?;
        let Some(stdout) = running.child.stdout.take() else {
            running.kill();
            anyhow::bail!("pg_dump has no stdout");
        };
        grow_pipe(&stdout);
        let mut check = StreamCheck::for_format(self.plan.format);
        let pumped = match check.as_mut() {
            Some(check) => {
                let mut tee = dumpcheck::Tee { inner: sink, check };
                // 8 MiB of read-ahead: pg_dump never waits on a chunk being compressed.
                sink::pump_buffered(Box::new(stdout), &mut tee, &self.counter, 8)
            }
            None => sink::pump_buffered(Box::new(stdout), sink, &self.counter, 8),
        };
        if let Err(e) = pumped {
            running.kill();
            return Err(write_error(tmp, &e));
        }
        running.wait()?.check()?;
        Ok(check.map_or_else(
            || {
                Verdict::Unknown(format!(
                    "no stream check for the {} format",
                    self.plan.format
                ))
            },
            |c| c.finish(),
        ))
    }

    /// Turns the stream check's verdict into a decision: an incomplete archive fails the backup
    /// (its temp file is then removed); one the check cannot judge is read through pg_restore,
    /// as `verify` does, when it can be read back.
    fn completeness(&self, tmp: &Path, verdict: Verdict) -> Result<Completeness> {
        let why = match verdict {
            Verdict::Complete { tables } => {
                tracing::debug!("the archive is complete ({tables:?} tables in its contents)");
                return Ok(Completeness::Complete { tables });
            }
            Verdict::Incomplete(why) => return Err(incomplete(&why)),
            Verdict::Unknown(why) => why,
        };
        tracing::debug!(
            "the stream check cannot judge this archive ({why}); reading it through pg_restore"
        );
        let Some(keys) = &self.plan.second_read else {
            return Ok(Completeness::Unchecked(format!(
                "{why}, and the backup cannot be read back (encrypted to recipients; no identity configured)"
            )));
        };
        match crate::archive::integrity::read_through(&self.op, tmp, keys, &self.locator) {
            Ok(_) => Ok(Completeness::Complete { tables: None }),
            Err(e) if crate::error::find(&e).is_some_and(|t| t.kind == Kind::Integrity) => Err(
                incomplete(&format!("pg_restore cannot read it through: {e:#}")),
            ),
            Err(e) => Ok(Completeness::Unchecked(format!(
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

/// A `.partial` that is not ours (the id was chosen free of leftovers): never written over or
/// removed.
fn refuse_foreign_partial(tmp: &Path) -> Result<()> {
    if std::fs::symlink_metadata(tmp).is_ok() {
        return Err(Error::new(
            Kind::Failure,
            format!("{} appeared while the backup started", tmp.display()),
        )
        .hint("another program writes into the backup folder; nothing was changed")
        .into());
    }
    Ok(())
}

/// The error of an archive that pg_dump cut short while exiting 0.
fn incomplete(why: &str) -> anyhow::Error {
    Error::new(
        Kind::Failure,
        format!("pg_dump exited 0, but its archive is incomplete: {why}"),
    )
    .hint("the partial backup was removed and nothing was pruned; run the backup again, and look for what cut pg_dump's output short")
    .into()
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
        sink::PumpError::Read(io) => {
            Error::new(Kind::Failure, format!("reading pg_dump's output: {io}")).into()
        }
    }
}

/// A failure to finish the sink (flush, sync), with a hint when its cause is a known one.
fn finish_error(tmp: &Path, e: anyhow::Error) -> anyhow::Error {
    let text = format!("{e:#}");
    match process::classify(&text) {
        (kind, Some(hint)) => Error::new(kind, format!("writing {}: {text}", tmp.display()))
            .hint(hint)
            .into(),
        _ => e,
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
        let entry = hash_file(&dir.join(&name), name, counter)?;
        total += entry.size;
        files.push(entry);
    }
    fsutil::make_private(dir).with_context(|| format!("making {} private", dir.display()))?;
    fsutil::sync_dir(dir).with_context(|| format!("syncing {}", dir.display()))?;
    Ok((
        Written {
            sha256: crate::archive::integrity::manifest_sha256(&files),
            stored_bytes: total,
            dump_bytes: 0,
        },
        files,
    ))
}

/// One file of a directory archive, made private, hashed and synced.
fn hash_file(p: &Path, name: String, counter: &AtomicU64) -> Result<FileEntry> {
    fsutil::make_private(p).with_context(|| format!("making {} private", p.display()))?;
    let (sha256, size) =
        sink::hash_file(p, counter).with_context(|| format!("reading {}", p.display()))?;
    std::fs::File::open(p)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", p.display()))?;
    Ok(FileEntry {
        path: name,
        size,
        sha256,
    })
}
