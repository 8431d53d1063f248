//! Verify: which backups to check ([`plan`]), then each one's checksum against its sidecar and
//! a read-through of its content ([`execute`]), returned as a typed report.

use super::Context;
use crate::archive::crypto::KeySource;
use crate::archive::integrity::{check_globals, check_stored, read_through};
use crate::archive::meta::Meta;
use crate::catalog::{self, Entry, Status};
use crate::error::{Error, Kind};
use crate::pg::tools::Locator;
use crate::runtime::context::OpContext;
use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

/// Which backups to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every backup in the folder; with `database`, only that database's.
    All {
        /// Only this database's backups; `None`: the whole folder.
        database: Option<String>,
    },
    /// One backup: an id, an id prefix, `latest`, or the path of a backup file. `latest` and
    /// prefixes are looked for among `database`'s backups (the whole folder when `None`).
    One {
        /// The id, id prefix, `latest`, or path that names the backup.
        target: String,
        /// The database whose backups `latest` and prefixes are looked for among.
        database: Option<String>,
    },
}

/// What to verify, and with which keys.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Every backup, or one.
    pub selection: Selection,
    /// What opens encrypted backups; without a key their content is not read.
    pub keys: KeySource,
}

/// The backups that [`execute`] verifies, in order.
#[derive(Debug, Clone)]
pub struct VerifyPlan {
    /// The catalog entries chosen (never empty): complete backups, and the orphaned sidecars and
    /// our own sidecar-less files that are to fail.
    pub entries: Vec<Entry>,
    /// The keys that read encrypted backups' content.
    pub keys: KeySource,
}

/// The result of verifying one backup.
#[derive(Debug, Clone)]
pub struct BackupResult {
    /// The backup's id, when it has one.
    pub id: Option<String>,
    /// The database it holds, as its sidecar says; `None` without a readable sidecar.
    pub database: Option<String>,
    /// The backup's file or folder.
    pub path: PathBuf,
    /// Every check passed.
    pub ok: bool,
    /// The checks that passed, in words (`checksum`, then what the read-through did).
    pub checks: Vec<String>,
    /// Why it failed, secrets scrubbed.
    pub error: Option<String>,
    /// The backup could not be read for want of the right key (a usage error, not damage).
    pub key_error: bool,
}

/// What [`execute`] found, one result per planned backup.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// One per backup of the plan, in its order.
    pub results: Vec<BackupResult>,
}

impl VerifyReport {
    /// How many backups failed.
    #[must_use]
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| !r.ok).count()
    }

    /// How many backups failed only for want of the right key.
    #[must_use]
    pub fn key_errors(&self) -> usize {
        self.results.iter().filter(|r| r.key_error).count()
    }

    /// `Ok` when every backup passed; else one error summing the failures up: a usage error
    /// when every failure was a missing or wrong key, an integrity error otherwise.
    pub fn verdict(&self) -> Result<()> {
        let failed = self.failed();
        let total = self.results.len();
        if failed > 0 && self.key_errors() == failed {
            return Err(Error::usage(format!(
                "{failed} of {total} backups could not be read: the key given does not open them (missing, of the wrong kind, or not matching)"
            ))
            .hint("their checksums matched (the files are intact as far as that shows); give the identity (BACKUP_AGE_IDENTITY / --identity) or the passphrase file (BACKUP_PASSPHRASE_FILE / --passphrase-file) each one needs, as its message says")
            .into());
        }
        if failed > 0 {
            return Err(Error::new(
                Kind::Integrity,
                format!("{failed} of {total} backups failed verification"),
            )
            .hint("do not rely on the failed backups; make a new backup and check the storage")
            .into());
        }
        Ok(())
    }
}

/// Chooses the backups to verify; fails when there are none.
pub fn plan(ctx: &Context, options: &VerifyOptions) -> Result<VerifyPlan> {
    let entries = catalog::scan(&ctx.dir)?;
    let targets = match &options.selection {
        Selection::All { database } => all(&entries, database.as_deref()),
        Selection::One { target, database } => {
            vec![one(ctx, &entries, target, database.as_deref())?]
        }
    };
    if targets.is_empty() {
        return Err(Error::usage(format!("no backups to verify in {}", ctx.dir.display())).into());
    }
    Ok(VerifyPlan {
        entries: targets,
        keys: options.keys.clone(),
    })
}

/// Verifies each planned backup, on a blocking thread.
pub async fn execute(ctx: &Context, plan: VerifyPlan) -> Result<VerifyReport> {
    // A loose key file is one problem for every encrypted backup: say it once, with its fix.
    if plan
        .entries
        .iter()
        .any(|t| t.meta.as_ref().is_some_and(Meta::is_encrypted))
    {
        plan.keys.check_private()?;
    }
    let op = ctx.op.clone();
    let locator = ctx.locator.clone();
    let results = tokio::task::spawn_blocking(move || {
        plan.entries
            .iter()
            .map(|e| verify_entry(&op, e, &plan.keys, &locator))
            .collect::<Vec<_>>()
    })
    .await
    .context("the verify thread failed")?;
    Ok(VerifyReport { results })
}

/// Every backup worth verifying, of `database` only when given.
fn all(entries: &[Entry], database: Option<&str>) -> Vec<Entry> {
    entries
        .iter()
        .filter(|e| match (database, e.database()) {
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
}

/// The one backup `wanted` names: an existing path, else an id, prefix or `latest`.
fn one(ctx: &Context, entries: &[Entry], wanted: &str, database: Option<&str>) -> Result<Entry> {
    let p = Path::new(wanted);
    if p.exists() {
        return by_path(p);
    }
    let scope = catalog::Scope {
        database,
        now: ctx.now,
    };
    if let Some(db) = scope.database {
        tracing::debug!("looking for {wanted:?} among the backups of database {db:?}");
    }
    match catalog::resolve(entries, wanted, &ctx.dir, &scope).map_err(for_verify) {
        Ok(e) => Ok(e.clone()),
        // The id of a backup whose file is gone (`list` shows it): that backup fails
        // verification, as with --all or the sidecar's path; it is not an unknown id.
        Err(e) => entries
            .iter()
            .find(|o| o.status == Status::Orphaned && o.id.as_deref() == Some(wanted))
            .cloned()
            .ok_or(e),
    }
}

/// The backup file at `path`, read from its own folder's catalog.
fn by_path(path: &Path) -> Result<Entry> {
    // A bare file name has an empty parent: it is in the current folder.
    let parent = path.parent().filter(|d| !d.as_os_str().is_empty());
    catalog::scan(parent.unwrap_or(Path::new(".")))?
        .into_iter()
        .find(|e| e.path.file_name() == path.file_name())
        .with_context(|| format!("{} is not a backup file", path.display()))
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

/// Verifies one backup; a failure is recorded in its result, never returned.
fn verify_entry(
    op: &OpContext,
    entry: &Entry,
    keys: &KeySource,
    locator: &Locator,
) -> BackupResult {
    let mut checks = Vec::new();
    let outcome = check_entry(op, entry, keys, locator, &mut checks);
    let mut result = BackupResult {
        id: entry.id.clone(),
        database: entry.database().map(str::to_string),
        path: entry.path.clone(),
        ok: outcome.is_ok(),
        checks,
        error: None,
        key_error: false,
    };
    if let Err(e) = outcome {
        // A missing or non-matching key (crypto::key_error) says nothing about the backup.
        // For an encrypted backup whose checksum passed, a usage error can only be that.
        result.key_error = crate::error::find(&e).is_some_and(|t| t.kind == Kind::Usage)
            && entry.meta.as_ref().is_some_and(Meta::is_encrypted);
        result.error = Some(crate::runtime::redact::scrub(&format!("{e:#}")));
    }
    result
}

/// The checksum, then the read-through; each check that passes is added to `checks`.
fn check_entry(
    op: &OpContext,
    entry: &Entry,
    keys: &KeySource,
    locator: &Locator,
    checks: &mut Vec<String>,
) -> Result<()> {
    let meta = verifiable(entry)?;
    check_stored(&entry.path, meta, &AtomicU64::new(0))?;
    checks.push("checksum".into());
    if check_globals(&entry.path, meta)? {
        checks.push("globals checksum".into());
    }
    if meta.is_encrypted() && keys.is_empty() {
        checks.push("content not read: encrypted, and no identity or passphrase given".into());
        return Ok(());
    }
    checks.push(read_through(op, &entry.path, keys, locator)?.to_string());
    Ok(())
}

/// The sidecar of a complete backup; why any other entry cannot be verified.
fn verifiable(entry: &Entry) -> Result<&Meta> {
    let shown = entry.path.display();
    match entry.status {
        Status::Complete => entry.meta.as_ref().context("metadata"),
        Status::Orphaned => Err(
            Error::integrity(format!("{shown}: the backup file is missing"))
                .hint("the backup was deleted or moved; its metadata is left over")
                .into(),
        ),
        Status::Incomplete => Err(Error::integrity(format!(
            "{shown}: a leftover of an interrupted backup"
        ))
        .hint("`aos-backup prune` removes it")
        .into()),
        Status::Unmanaged => match &entry.meta_error {
            Some(e) => Err(Error::integrity(e.clone()).into()),
            None => Err(Error::integrity(format!(
                "{shown}: no metadata ({} is missing), so there is no checksum to verify",
                Meta::path_for(&entry.path).display()
            ))
            .hint("a backup without its sidecar cannot be verified; make a new backup")
            .into()),
        },
    }
}
