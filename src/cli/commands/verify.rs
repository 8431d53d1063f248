//! `aos-backup verify`: recompute the checksum against the metadata, then read the whole archive
//! through (decrypting and decompressing, and pg_restore over every data block).

use super::Ctx;
use crate::archive::crypto::KeySource;
use crate::archive::integrity::{check_stored, read_through};
use crate::archive::meta::Meta;
use crate::catalog::{self, Entry, Status};
use crate::cli::args::VerifyArgs;
use crate::error::{Error, Kind};
use crate::pg::tools::Locator;
use crate::runtime::context::OpContext;
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::atomic::AtomicU64;

/// The result of verifying one backup.
#[derive(Debug, serde::Serialize)]
struct Report {
    id: Option<String>,
    file: String,
    ok: bool,
    checks: Vec<String>,
    error: Option<String>,
    /// The backup could not be read for want of the right key (a usage error, not damage).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    key_error: bool,
}

fn verify_entry(op: &OpContext, entry: &Entry, keys: &KeySource, locator: &Locator) -> Report {
    let mut report = Report {
        id: entry.id.clone(),
        file: entry.path.display().to_string(),
        ok: false,
        checks: Vec::new(),
        error: None,
        key_error: false,
    };
    let result = (|| -> Result<()> {
        match entry.status {
            Status::Orphaned => {
                return Err(Error::integrity(format!(
                    "{}: the backup file is missing",
                    entry.path.display()
                ))
                .hint("the backup was deleted or moved; its metadata is left over")
                .into())
            }
            Status::Incomplete => {
                return Err(Error::integrity(format!(
                    "{}: a leftover of an interrupted backup",
                    entry.path.display()
                ))
                .hint("`aos-backup prune` removes it")
                .into())
            }
            Status::Unmanaged => {
                if let Some(e) = &entry.meta_error {
                    return Err(Error::integrity(e.clone()).into());
                }
                return Err(Error::integrity(format!(
                    "{}: no metadata ({} is missing), so there is no checksum to verify",
                    entry.path.display(),
                    Meta::path_for(&entry.path).display()
                ))
                .hint("a backup without its sidecar cannot be verified; make a new backup")
                .into());
            }
            Status::Complete => {}
        }
        let meta = entry.meta.as_ref().context("metadata")?;
        check_stored(&entry.path, meta, &AtomicU64::new(0))?;
        report.checks.push("checksum".into());
        if meta.is_encrypted() && keys.is_empty() {
            report
                .checks
                .push("content not read: encrypted, and no identity or passphrase given".into());
            return Ok(());
        }
        report
            .checks
            .push(read_through(op, &entry.path, keys, locator)?.to_string());
        Ok(())
    })();
    match result {
        Ok(()) => report.ok = true,
        Err(e) => {
            // A missing or non-matching key (crypto::key_error) says nothing about the backup.
            // For an encrypted backup whose checksum passed, a usage error can only be that.
            report.key_error = crate::error::find(&e).is_some_and(|t| t.kind == Kind::Usage)
                && entry.meta.as_ref().is_some_and(Meta::is_encrypted);
            report.error = Some(crate::runtime::redact::scrub(&format!("{e:#}")));
        }
    }
    report
}

/// The catalog's lookup errors, with a hint for verify (theirs speak of restore's flag).
fn for_verify(e: anyhow::Error) -> anyhow::Error {
    match crate::error::find(&e) {
        Some(t) if t.hint.as_deref().is_some_and(|h| h.contains("--from-database")) => {
            Error::new(t.kind, t.message.clone())
                .hint("to verify a backup of another database, add --database NAME (or give its full id); `aos-backup list` shows them all")
                .into()
        }
        _ => e,
    }
}

/// Runs verify.
pub async fn run(ctx: &Ctx, args: &VerifyArgs) -> Result<()> {
    let dir = ctx.backup_dir();
    let keys = ctx.keys(&args.keys);
    let locator = ctx.locator();
    let entries = catalog::scan(&dir)?;
    // `latest` and id prefixes look among one database's backups, as restore does: --database,
    // else DATABASE_URL's; without either, the whole folder.
    let database = args.database.clone().or_else(|| ctx.target_database());
    let targets: Vec<Entry> = if args.all {
        entries
            .iter()
            .filter(|e| match (&args.database, e.database()) {
                (Some(wanted), Some(db)) => wanted == db,
                (Some(_), None) => false,
                (None, _) => true,
            })
            .filter(|e| match e.status {
                Status::Complete | Status::Orphaned => true,
                // Our own files without a sidecar are suspicious; foreign ones are just skipped.
                Status::Unmanaged => e.id.is_some() || e.meta_error.is_some(),
                Status::Incomplete => false,
            })
            .cloned()
            .collect()
    } else {
        let wanted = args.target.clone().unwrap_or_else(|| "latest".into());
        let p = Path::new(&wanted);
        if p.exists() {
            // A bare file name has an empty parent: it is in the current folder.
            let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
            let single = catalog::scan(parent.unwrap_or(Path::new(".")))?
                .into_iter()
                .find(|e| e.path.file_name() == p.file_name());
            vec![single.with_context(|| format!("{wanted} is not a backup file"))?]
        } else {
            let scope = catalog::Scope {
                database: database.as_deref(),
                now: ctx.now,
            };
            if let Some(db) = scope.database {
                tracing::debug!("looking for {wanted:?} among the backups of database {db:?}");
            }
            match catalog::resolve(&entries, &wanted, &dir, &scope).map_err(for_verify) {
                Ok(e) => vec![e.clone()],
                // The id of a backup whose file is gone (`list` shows it): that backup fails
                // verification, as with --all or the sidecar's path; it is not an unknown id.
                Err(e) => vec![entries
                    .iter()
                    .find(|o| o.status == Status::Orphaned && o.id.as_deref() == Some(&*wanted))
                    .cloned()
                    .ok_or(e)?],
            }
        }
    };
    if targets.is_empty() {
        return Err(Error::usage(format!("no backups to verify in {}", dir.display())).into());
    }
    // A loose key file is one problem for every encrypted backup: say it once, with its fix.
    if targets
        .iter()
        .any(|t| t.meta.as_ref().is_some_and(Meta::is_encrypted))
    {
        keys.check_private()?;
    }
    let op = ctx.op.clone();
    let reports = tokio::task::spawn_blocking(move || {
        targets
            .iter()
            .map(|e| verify_entry(&op, e, &keys, &locator))
            .collect::<Vec<_>>()
    })
    .await
    .context("the verify thread failed")?;
    let failed = reports.iter().filter(|r| !r.ok).count();
    let text = reports
        .iter()
        .map(|r| match &r.error {
            None => format!("ok    {}  ({})", r.file, r.checks.join(", ")),
            Some(e) => format!("FAIL  {e}"),
        })
        .collect::<Vec<_>>()
        .join("\n");
    ctx.emit(&text, &serde_json::to_value(&reports).unwrap_or_default());
    let key_errors = reports.iter().filter(|r| r.key_error).count();
    if failed > 0 && key_errors == failed {
        return Err(Error::usage(format!(
            "{failed} of {} backups could not be read: the key given does not open them (missing, of the wrong kind, or not matching)",
            reports.len()
        ))
        .hint("their checksums matched (the files are intact as far as that shows); give the identity (BACKUP_AGE_IDENTITY / --identity) or the passphrase file (BACKUP_PASSPHRASE_FILE / --passphrase-file) each one needs, as its message says")
        .into());
    }
    if failed > 0 {
        return Err(Error::new(
            Kind::Integrity,
            format!("{failed} of {} backups failed verification", reports.len()),
        )
        .hint("do not rely on the failed backups; make a new backup and check the storage")
        .into());
    }
    tracing::info!("{} backup(s) verified", reports.len());
    Ok(())
}
