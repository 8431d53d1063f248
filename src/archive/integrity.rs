//! Is a stored backup intact? Its checksum against the sidecar, and a read-through of its content
//! (decryption, decompression, pg_restore over every entry): the checks backup, restore and verify
//! share, kept below the commands so that none of them imports another.

use crate::archive::crypto::KeySource;
use crate::archive::dumpcheck::{self, Verdict};
use crate::archive::format::DumpFormat;
use crate::archive::layers;
use crate::archive::meta::{FileEntry, Meta};
use crate::archive::sink;
use crate::error::{Error, Kind};
use crate::pg::tools::Locator;
use crate::runtime::context::OpContext;
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::AtomicU64;

/// Checks a stored backup against its metadata: the file the sidecar names, its size and its
/// SHA-256 (for a directory archive: every file of its manifest).
pub fn check_stored(path: &Path, meta: &Meta, counter: &AtomicU64) -> Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    if meta.file != name {
        return Err(Error::integrity(format!(
            "{}: the metadata describes another file ({})",
            path.display(),
            meta.file
        ))
        .hint("the sidecar was copied or edited; the backup cannot be verified")
        .into());
    }
    if path.is_dir() {
        return check_directory(path, meta, counter);
    }
    let (sha, size) =
        sink::hash_file(path, counter).with_context(|| format!("reading {}", path.display()))?;
    if sha == meta.sha256 && size == meta.size_bytes {
        return Ok(());
    }
    let what = if size == 0 {
        format!(
            "the file is empty; the metadata says {} bytes",
            meta.size_bytes
        )
    } else if size < meta.size_bytes {
        format!(
            "truncated: {size} of {} bytes (checksum mismatch)",
            meta.size_bytes
        )
    } else if size > meta.size_bytes {
        format!(
            "{} bytes more than the metadata says: data appended (checksum mismatch)",
            size - meta.size_bytes
        )
    } else {
        format!(
            "checksum mismatch: SHA-256 is {sha}, the metadata says {} (same size: bytes changed)",
            meta.sha256
        )
    };
    Err(Error::integrity(format!("{}: {what}", path.display()))
        .hint("this backup is damaged; restore another one (see `aos-backup list`)")
        .into())
}

fn check_directory(path: &Path, meta: &Meta, counter: &AtomicU64) -> Result<()> {
    let mut present: Vec<String> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    present.sort();
    let listed: Vec<String> = meta.files.iter().map(|f| f.path.clone()).collect();
    if present != listed {
        let missing: Vec<&String> = listed.iter().filter(|f| !present.contains(f)).collect();
        let extra: Vec<&String> = present.iter().filter(|f| !listed.contains(f)).collect();
        return Err(Error::integrity(format!(
            "{}: files differ from the metadata (missing: {missing:?}, unexpected: {extra:?})",
            path.display()
        ))
        .hint("this backup is damaged; restore another one")
        .into());
    }
    for f in &meta.files {
        let p = path.join(&f.path);
        let (sha, size) =
            sink::hash_file(&p, counter).with_context(|| format!("reading {}", p.display()))?;
        if sha != f.sha256 || size != f.size {
            return Err(Error::integrity(format!(
                "{}: checksum mismatch in {} ({size} bytes, metadata says {})",
                path.display(),
                f.path,
                f.size
            ))
            .hint("this backup is damaged; restore another one")
            .into());
        }
    }
    if manifest_sha256(&meta.files) != meta.sha256 {
        return Err(Error::integrity(format!(
            "{}: the metadata's manifest checksum does not match",
            path.display()
        ))
        .hint("the sidecar was edited; the backup cannot be verified")
        .into());
    }
    Ok(())
}

/// Checks the globals script stored with the backup at `path` (when its sidecar records one):
/// present, of the size and SHA-256 the sidecar says. Returns whether there was one.
pub fn check_globals(path: &Path, meta: &Meta) -> Result<bool> {
    let Some(g) = &meta.globals else {
        return Ok(false);
    };
    let backup = path.file_name().unwrap_or_default().to_string_lossy();
    if crate::archive::naming::globals_owner(&g.file) != Some(backup.as_ref()) {
        return Err(Error::integrity(format!(
            "{}: the metadata names {:?} as its globals script, which is not this backup's",
            path.display(),
            g.file
        ))
        .hint("the sidecar was edited; the backup cannot be verified")
        .into());
    }
    let file = path.with_file_name(&g.file);
    let (sha, size) = match sink::hash_file(&file, &AtomicU64::new(0)) {
        Ok(found) => found,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::integrity(
            format!(
                "{}: its globals script {} is missing",
                path.display(),
                g.file
            ),
        )
        .hint("the roles and tablespaces of this backup are lost; make a new backup with --globals")
        .into()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    if sha == g.sha256 && size == g.size_bytes {
        return Ok(true);
    }
    Err(Error::integrity(format!(
        "{}: checksum mismatch ({size} bytes, SHA-256 {sha}; the metadata says {} bytes, {})",
        file.display(),
        g.size_bytes,
        g.sha256
    ))
    .hint("the globals script was changed or damaged: do not apply it; make a new backup with --globals")
    .into())
}

/// Reads the archive through: decryption and decompression check their own integrity, and
/// pg_restore converts every entry (data blocks included) to SQL that goes nowhere.
pub fn read_through(
    ctx: &OpContext,
    path: &Path,
    keys: &KeySource,
    locator: &Locator,
) -> Result<&'static str> {
    let mut opened = layers::open(path, keys)?;
    let counter = AtomicU64::new(0);
    match opened.format {
        DumpFormat::Plain => {
            let mut r = opened.reader.take().context("no reader")?;
            std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| damaged(path, &e))?;
            Ok("SQL read through")
        }
        format => {
            if format == DumpFormat::Directory && locator.container().is_some() {
                directory_whole(path)?;
                return Ok("files checked; not read by pg_restore, which runs in a container that cannot see a directory archive");
            }
            let tool = locator.find("pg_restore", None)?;
            let mut cmd = tool.command(&[]);
            cmd.args(["--file=/dev/null"]).stdout(Stdio::null());
            let reader = opened.reader.take();
            if format == DumpFormat::Directory {
                // pg_restore reads a table's data file cut short without complaint.
                directory_whole(path)?;
            }
            // A container's pg_restore cannot open our files: it reads the archive on stdin.
            let by_path = locator.container().is_none()
                && (format == DumpFormat::Directory || opened.is_bare());
            if by_path {
                cmd.arg(path).stdin(Stdio::null());
                tool.spawn(ctx, &mut cmd)?
                    .wait()?
                    .check()
                    .map_err(|e| integrity_from(path, &e))?;
            } else {
                let mut r = reader.context("no reader")?;
                cmd.stdin(Stdio::piped());
                let mut running = tool.spawn(ctx, &mut cmd)?;
                let mut stdin = running.child.stdin.take().context("no stdin")?;
                let copied = sink::pump(&mut r, &mut stdin, &counter);
                drop(stdin);
                match copied {
                    // The archive's content did not read (decryption, decompression).
                    Err(sink::PumpError::Read(e)) => {
                        running.kill();
                        return Err(damaged(path, &e));
                    }
                    // pg_restore stopped reading: its exit status says why.
                    _ => running
                        .wait()?
                        .check()
                        .map_err(|e| integrity_from(path, &e))?,
                }
            }
            Ok("archive read through by pg_restore")
        }
    }
}

/// A directory archive's files must be whole (see [`dumpcheck::check_directory`]): pg_restore
/// does not notice a table's data file cut short.
fn directory_whole(path: &Path) -> Result<()> {
    match dumpcheck::check_directory(path) {
        Verdict::Incomplete(why) => Err(Error::integrity(format!(
            "{}: the archive is incomplete: {why}",
            path.display()
        ))
        .hint("the backup is damaged (pg_dump wrote it cut short, or it was changed since); restore another one")
        .into()),
        Verdict::Unknown(why) => {
            tracing::debug!("{}: {why}; left to pg_restore", path.display());
            Ok(())
        }
        Verdict::Complete { .. } => Ok(()),
    }
}

fn damaged(path: &Path, e: &std::io::Error) -> anyhow::Error {
    Error::integrity(format!(
        "{}: cannot read the backup through: {e}",
        path.display()
    ))
    .hint("the file is damaged or truncated; restore another one")
    .into()
}

fn integrity_from(path: &Path, e: &anyhow::Error) -> anyhow::Error {
    match crate::error::find(e) {
        Some(t) if t.kind == Kind::Tools => anyhow::anyhow!("{e:#}"),
        _ => Error::integrity(format!(
            "{}: the archive does not read through: {e:#}",
            path.display()
        ))
        .hint("the backup is damaged; restore another one")
        .into(),
    }
}

/// The SHA-256 of a directory archive: of its manifest lines `sha256  size  name`.
#[must_use]
pub fn manifest_sha256(files: &[FileEntry]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for f in files {
        h.update(format!("{}  {}  {}\n", f.sha256, f.size, f.path).as_bytes());
    }
    sink::hex(&h.finalize())
}
