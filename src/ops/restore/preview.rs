//! `restore --dry-run`: the restore planned without the folder lock and without naming the
//! target as one being restored, plus what it would change: each table replaced (its exact
//! row count now, and the one recorded at backup time), kept or created, and the schemas and
//! extensions the backup creates. Nothing is changed.

use super::plan::{self, Method, Mode, RestorePlan, ScriptInput};
use super::RestoreOptions;
use crate::archive::format::DumpFormat;
use crate::archive::meta::Meta;
use crate::archive::objects::{self, Objects};
use crate::ops::Context;
use crate::pg::contents::TableCount;
use crate::pg::tools::Tool;
use anyhow::{Context as _, Result};
use serde::Serialize;
use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;

/// How long the preview waits to count a table that another session locked (it is then left
/// uncounted).
const PREVIEW_LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// What a restore would change in its target.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// The target's size on disk now, in bytes.
    pub target_bytes: u64,
    /// Tables in both: replaced by the backup's.
    pub replaced: Vec<TableChange>,
    /// Tables only in the target: the restore leaves them as they are.
    pub kept: Vec<TableChange>,
    /// Tables only in the backup: created.
    pub created: Vec<TableChange>,
    /// Schemas the backup creates that the target lacks.
    pub schemas_created: Vec<String>,
    /// Extensions the backup creates that the target lacks.
    pub extensions_created: Vec<String>,
    /// Where the backup's objects were read: `table of contents` (pg_restore --list) or
    /// `SQL before the data` (a plain dump's head).
    pub objects_from: &'static str,
}

/// One table, in the target now and in the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableChange {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub table: String,
    /// Its exact row count in the target now (none: the target has no such table, or, for a
    /// table it has, another session's lock kept it from being counted).
    pub rows_now: Option<u64>,
    /// Its row count recorded at backup time (none: not in the backup, or the backup recorded
    /// no row counts).
    pub rows_in_backup: Option<u64>,
}

/// Plans the restore as a preview (no lock taken, nothing changed) and adds what it would
/// change ([`RestorePlan::preview`]). The plan returned cannot be carried out.
pub async fn preview(ctx: &Context, opts: &RestoreOptions) -> Result<RestorePlan> {
    let mut plan = plan::plan_as(ctx, opts, Mode::Preview).await?;
    let held = plan
        .held
        .take()
        .context("the preview holds no connection")?;
    let source = Listing {
        format: plan.backup.format,
        method: plan.strategy.method,
        path: plan.backup.path.clone(),
        pg_restore: plan.tools.pg_restore.clone(),
        input: held.input,
        op: ctx.op.clone(),
    };
    let backup_objects = tokio::task::spawn_blocking(move || source.objects())
        .await
        .context("the listing thread failed")??;
    let now = if plan.target.create {
        TargetNow::created()
    } else {
        TargetNow::read(&held.db).await?
    };
    plan.preview = Some(compare(
        &now,
        &backup_objects,
        plan.backup.meta.as_ref(),
        plan.backup.format,
    ));
    Ok(plan)
}

/// What the target holds now.
struct TargetNow {
    tables: Vec<TableCount>,
    schemas: Vec<String>,
    extensions: Vec<String>,
    bytes: u64,
}

impl TargetNow {
    /// What the target holds now.
    async fn read(db: &crate::pg::db::Db) -> Result<TargetNow> {
        Ok(TargetNow {
            tables: db.table_rows(Some(PREVIEW_LOCK_WAIT)).await?,
            schemas: db.schemas().await?,
            extensions: db.extensions().await?,
            bytes: db.database_bytes().await?,
        })
    }

    /// A database `--create` would make: what `CREATE DATABASE` copies from a pristine
    /// `template1`.
    fn created() -> TargetNow {
        TargetNow {
            tables: Vec::new(),
            schemas: vec!["public".to_string()],
            extensions: vec!["plpgsql".to_string()],
            bytes: 0,
        }
    }
}

/// The backup and the target side by side.
fn compare(now: &TargetNow, backup: &Objects, meta: Option<&Meta>, format: DumpFormat) -> Preview {
    let recorded = |schema: &str, table: &str| {
        meta.and_then(|m| m.row_counts.as_ref())
            .and_then(|rows| rows.iter().find(|r| r.schema == schema && r.table == table))
            .map(|r| r.rows)
    };
    let in_backup = |t: &TableCount| {
        backup
            .tables
            .iter()
            .any(|(s, n)| *s == t.schema && *n == t.table)
    };
    let (replaced, kept): (Vec<&TableCount>, Vec<&TableCount>) =
        now.tables.iter().partition(|t| in_backup(t));
    let change = |t: &&TableCount| TableChange {
        schema: t.schema.clone(),
        table: t.table.clone(),
        rows_now: t.rows,
        rows_in_backup: recorded(&t.schema, &t.table),
    };
    let created = backup
        .tables
        .iter()
        .filter(|(s, n)| !now.tables.iter().any(|t| t.schema == *s && t.table == *n))
        .map(|(s, n)| TableChange {
            schema: s.clone(),
            table: n.clone(),
            rows_now: None,
            rows_in_backup: recorded(s, n),
        })
        .collect();
    Preview {
        target_bytes: now.bytes,
        replaced: replaced.iter().map(change).collect(),
        kept: kept
            .iter()
            .map(|t| TableChange {
                rows_in_backup: None,
                ..change(t)
            })
            .collect(),
        created,
        schemas_created: missing(&backup.schemas, &now.schemas),
        extensions_created: missing(&backup.extensions, &now.extensions),
        objects_from: if format == DumpFormat::Plain {
            "SQL before the data"
        } else {
            "table of contents"
        },
    }
}

/// The names in `wanted` that `present` lacks, each once.
fn missing(wanted: &[String], present: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in wanted {
        if !present.contains(w) && !out.contains(w) {
            out.push(w.clone());
        }
    }
    out
}

/// Where the backup's objects are read from.
struct Listing {
    format: DumpFormat,
    method: Method,
    path: PathBuf,
    pg_restore: Option<Tool>,
    input: Option<Box<dyn Read + Send>>,
    op: crate::runtime::context::OpContext,
}

impl Listing {
    /// The backup's objects: a plain dump's head, or pg_restore's listing of an archive.
    fn objects(mut self) -> Result<Objects> {
        if self.format == DumpFormat::Plain {
            let mut input = self.input.take().context("nothing to read in the backup")?;
            return objects::from_plain_sql(&mut input)
                .map_err(|e| super::feed::unreadable_backup(&self.path, &e).into());
        }
        let from_file = matches!(
            self.method,
            Method::Parallel { .. }
                | Method::Script {
                    input: ScriptInput::File
                }
        );
        let input = if from_file { None } else { self.input.take() };
        let listing = self.pg_restore_list(input)?;
        Ok(objects::from_listing(&listing))
    }

    /// `pg_restore --list` of the file, or of the archive streamed on its stdin (it reads the
    /// table of contents, at the start, and stops).
    fn pg_restore_list(&self, input: Option<Box<dyn Read + Send>>) -> Result<String> {
        let tool = self
            .pg_restore
            .as_ref()
            .context("pg_restore was not found")?;
        let mut cmd = tool.command(&[]);
        cmd.arg("--list");
        if input.is_none() {
            cmd.arg(&self.path);
        }
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped());
        let mut running = tool.spawn(&self.op, &mut cmd)?;
        let feeder = match (input, running.child.stdin.take()) {
            (Some(mut archive), Some(mut stdin)) => Some(std::thread::spawn(move || {
                // pg_restore stops reading after the table of contents: a broken pipe is its end.
                let _ = std::io::copy(&mut archive, &mut stdin);
            })),
            _ => None,
        };
        let mut listing = String::new();
        if let Some(mut out) = running.child.stdout.take() {
            out.read_to_string(&mut listing)
                .context("reading pg_restore's listing")?;
        }
        let finished = running.wait()?;
        if let Some(f) = feeder {
            let _ = f.join();
        }
        finished.check()?;
        Ok(listing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(schema: &str, table: &str, rows: u64) -> TableCount {
        TableCount {
            schema: schema.into(),
            table: table.into(),
            rows: Some(rows),
        }
    }

    #[test]
    fn tables_are_replaced_kept_or_created() {
        let now = TargetNow {
            tables: vec![rows("public", "a", 5), rows("public", "extra", 2)],
            schemas: vec!["public".into()],
            extensions: vec!["plpgsql".into()],
            bytes: 1,
        };
        let backup = Objects {
            schemas: vec!["app".into(), "public".into()],
            extensions: vec!["pgcrypto".into(), "pgcrypto".into()],
            tables: vec![("public".into(), "a".into()), ("app".into(), "b".into())],
        };
        let p = compare(&now, &backup, None, DumpFormat::Custom);
        assert_eq!(p.replaced.len(), 1);
        assert_eq!(p.replaced[0].rows_now, Some(5));
        assert_eq!(p.replaced[0].rows_in_backup, None);
        assert_eq!(p.kept[0].table, "extra");
        assert_eq!(p.created[0].table, "b");
        assert_eq!(p.schemas_created, ["app"]);
        assert_eq!(p.extensions_created, ["pgcrypto"]);
    }
}
