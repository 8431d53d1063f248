//! After pg_dump: the sidecar (written last, under the commit lock: its presence marks the
//! backup complete), the comparison with the previous backup, and the automatic prune.

use super::dump::{Completeness, Outcome};
use super::prepare::Source;
use super::{AutoPrune, BackupPlan};
use crate::archive::meta::{GlobalsFile, Meta, Suspect, ValidationSummary, META_FORMAT_VERSION};
use crate::ops::prune::{self, Databases};
use crate::ops::Context;
use crate::runtime::units::{count, human_bytes, human_duration};
use crate::storage::lock::FolderLock;
use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Logs `message` as a warning, and keeps it for the report.
pub(super) fn warn(warnings: &mut Vec<String>, message: String) {
    tracing::warn!("{message}");
    warnings.push(message);
}

/// The sidecar of the new backup, judged against the previous one, written next to it.
pub(super) fn record(
    ctx: &Context,
    plan: &BackupPlan,
    source: &Source,
    outcome: &Outcome,
    globals: Option<(PathBuf, GlobalsFile)>,
    elapsed: Duration,
    warnings: &mut Vec<String>,
) -> Result<Meta> {
    let mut meta = sidecar(ctx, plan, source, outcome, elapsed);
    meta.validation = validation_of(ctx, source, warnings);
    meta.suspect = suspect_of(&plan.dir, &meta, plan.suspect_ratio, warnings);
    let (globals_path, globals) = globals.unzip();
    meta.globals = globals;
    write_sidecar(ctx, &meta, &outcome.path, globals_path.as_deref())?;
    Ok(meta)
}

/// What the sidecar says of the new backup.
fn sidecar(
    ctx: &Context,
    plan: &BackupPlan,
    source: &Source,
    outcome: &Outcome,
    elapsed: Duration,
) -> Meta {
    let started_at = ctx.now;
    Meta {
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
        database: source.conn.effective_dbname(&|k| ctx.var(k)),
        host: source.conn.host().unwrap_or("default socket").to_string(),
        port: source.conn.port(),
        server_version: source.server_version.clone(),
        pg_dump_version: source.pg_dump.version.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        format: plan.format.into(),
        compression: plan.compression.algorithm.into(),
        compression_level: plan.compression.level,
        encryption: outcome.encryption.into(),
        size_bytes: outcome.written.stored_bytes,
        dump_bytes: outcome.written.dump_bytes,
        sha256: outcome.written.sha256.clone(),
        tables: source.tables,
        files: outcome.files.clone(),
        archive_tables: match outcome.checked {
            Completeness::Complete { tables } => tables,
            Completeness::Unchecked(_) => None,
        },
        suspect: None,
        recipients: outcome.recipients.clone(),
        globals: None,
        row_counts: outcome.row_counts.clone(),
        validation: None,
    }
}

/// The summary of the checks run before the dump, each finding warned about; the backup went
/// ahead whatever they found.
fn validation_of(
    ctx: &Context,
    source: &Source,
    warnings: &mut Vec<String>,
) -> Option<ValidationSummary> {
    match source.validation.as_ref()? {
        Ok(report) => {
            for line in report.warnings() {
                warn(warnings, format!("validate before the backup: {line}"));
            }
            if !report.is_clean() {
                warn(
                    warnings,
                    format!(
                        "the backup went ahead; the findings of database {:?} are recorded in its sidecar (run `aos-backup validate` for the details)",
                        report.database
                    ),
                );
            }
            Some(report.summary(ctx.now))
        }
        Err(e) => {
            warn(
                warnings,
                format!("validate before the backup could not run: {e}; the backup went ahead"),
            );
            None
        }
    }
}

/// Whether `meta` shrank sharply against the previous trusted backup of its database.
fn suspect_of(dir: &Path, meta: &Meta, ratio: f64, warnings: &mut Vec<String>) -> Option<Suspect> {
    if ratio <= 0.0 {
        return None;
    }
    match crate::archive::suspect::baseline(dir, &meta.database, &meta.id) {
        Ok(Some(previous)) => crate::archive::suspect::judge(meta, &previous, ratio),
        Ok(None) => None,
        Err(e) => {
            warn(
                warnings,
                format!("cannot compare with the previous backup: {e:#}"),
            );
            None
        }
    }
}

/// Writes the sidecar under the commit lock: a signal either finds the backup (and its globals
/// script) complete or removes it whole; on failure the backup is removed.
fn write_sidecar(ctx: &Context, meta: &Meta, path: &Path, globals: Option<&Path>) -> Result<()> {
    let meta_path = Meta::path_for(path);
    let parts = || std::iter::once(path).chain(globals);
    let written = ctx.op.commit(|| {
        meta.write(&meta_path)?;
        parts().for_each(|p| ctx.op.unregister_temp(p));
        Ok(())
    });
    if let Err(e) = written {
        for p in parts() {
            let _ = crate::runtime::fsutil::remove_any(p);
            ctx.op.unregister_temp(p);
        }
        return Err(e.context(format!("writing the metadata of {}", path.display())));
    }
    ctx.op.record_kept(path);
    Ok(())
}

/// Logs the finished backup, and warns when it is suspect.
pub(super) fn log_complete(
    meta: &Meta,
    path: &Path,
    elapsed: Duration,
    warnings: &mut Vec<String>,
) {
    let ratio = if meta.size_bytes > 0 && meta.dump_bytes > 0 {
        #[allow(clippy::cast_precision_loss)]
        let r = meta.dump_bytes as f64 / meta.size_bytes as f64;
        format!(", {} dumped, ratio {r:.1}x", human_bytes(meta.dump_bytes))
    } else {
        String::new()
    };
    tracing::info!(
        file = %path.display(),
        bytes = meta.size_bytes,
        database = %meta.database,
        tables = meta.tables,
        duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "backup complete: {} ({}{ratio}, {}) in {}",
        path.display(),
        human_bytes(meta.size_bytes),
        count(meta.tables, "table"),
        human_duration(elapsed)
    );
    if let Some(s) = &meta.suspect {
        warn(
            warnings,
            format!(
                "backup {} is suspect: {}; it is kept and marked suspect in its metadata",
                meta.id, s.reason
            ),
        );
    }
}

/// Applies the plan's retention policy to this database's backups, unless there is none or the
/// new backup must not cause deletions (suspect, or its completeness unchecked).
pub(super) fn auto_prune(
    ctx: &Context,
    plan: &BackupPlan,
    meta: &Meta,
    outcome: &Outcome,
    lock: &FolderLock,
    warnings: &mut Vec<String>,
) -> AutoPrune {
    let Some(policy) = &plan.prune else {
        return AutoPrune::Off;
    };
    if let Some(why) = prune_blocker(meta, &outcome.checked) {
        warn(warnings, format!("not pruning old backups: {why}"));
        return AutoPrune::Blocked(why);
    }
    // Only this database's backups, and never the one just written.
    let which = Databases::One(meta.database.clone());
    let just_made = Some(meta.file.as_str());
    let applied = prune::apply(&plan.dir, policy, &which, just_made, ctx.now, false, lock)
        .with_context(|| {
            format!(
                "the backup {} succeeded, but pruning old backups failed",
                outcome.path.display()
            )
        });
    match applied {
        Ok(report) => {
            // The caller shows the backup, not the plan: the plan is only logged.
            for l in report.lines() {
                tracing::debug!("{l}");
            }
            for s in report.summaries() {
                tracing::info!("{s}");
            }
            AutoPrune::Done(report)
        }
        Err(e) => AutoPrune::Failed(e),
    }
}

/// Why the automatic prune must not run after this backup, if it must not.
fn prune_blocker(meta: &Meta, checked: &Completeness) -> Option<String> {
    if meta.suspect.is_some() {
        return Some(format!(
            "backup {} is suspect (run `aos-backup prune` by hand if the drop is intended)",
            meta.id
        ));
    }
    if let Completeness::Unchecked(why) = checked {
        return Some(format!(
            "the completeness of backup {} could not be checked ({why})",
            meta.id
        ));
    }
    None
}
