//! Exact row counts of the tables whose rows pg_dump dumps: on a snapshot exported for pg_dump
//! (so that the counts match the dump), or now in a live database (to compare with a backup's).

use crate::archive::meta::TableRows;
use crate::pg::db::{error_text, Db};
use anyhow::{Context as _, Result};
use tokio_postgres::Client;

/// The tables pg_dump dumps the rows of: ordinary tables and partitions (relkind `r`) in user
/// schemas, not those of an extension; each with its name quoted for SQL, in (schema, name)
/// byte order.
pub(crate) const TABLES_SQL: &str = "\
SELECT n.nspname::text, c.relname::text \
FROM pg_catalog.pg_class c \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
WHERE c.relkind = 'r' AND c.relpersistence <> 't' \
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' \
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                  WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') \
ORDER BY n.nspname COLLATE \"C\", c.relname COLLATE \"C\"";

/// How many tables one counting statement covers (`UNION ALL` of their counts: one round trip).
const TABLES_PER_STATEMENT: usize = 200;

/// A snapshot exported for pg_dump (`pg_dump --snapshot=ID`): valid until [`release`]d or
/// dropped, as its transaction stays open on its own connection.
///
/// [`release`]: ExportedSnapshot::release
pub struct ExportedSnapshot {
    db: Db,
    id: String,
}

impl ExportedSnapshot {
    /// Opens a read-only REPEATABLE READ transaction on `db` and exports its snapshot.
    ///
    /// # Errors
    /// The server refuses (a standby, or a session that cannot export), or the connection fails.
    pub async fn export(db: Db) -> Result<ExportedSnapshot> {
        let row = async {
            db.client()
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?;
            db.client()
                .query_one("SELECT pg_catalog.pg_export_snapshot()", &[])
                .await
        }
        .await
        .map_err(|e| anyhow::anyhow!("exporting a snapshot: {}", error_text(&e)))?;
        Ok(ExportedSnapshot { id: row.get(0), db })
    }

    /// The snapshot's identifier, for `pg_dump --snapshot` and [`count_rows_at`].
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Ends the snapshot's transaction (dropping the value also does, with the connection).
    pub async fn release(self) {
        if let Err(e) = self.db.client().batch_execute("ROLLBACK").await {
            tracing::debug!("ending the exported snapshot: {}", error_text(&e));
        }
    }
}

/// The exact row count of every table pg_dump dumps the rows of, now: counted in one
/// read-only REPEATABLE READ transaction, so the counts are of one moment. `client` must not
/// be inside a transaction.
///
/// # Errors
/// A query fails (a table we may not read, a policy that hides rows, the connection).
#[allow(dead_code)] // for the restore preview and the drill, which compare them with a backup's
pub async fn count_rows(client: &Client) -> Result<Vec<TableRows>> {
    in_transaction(client, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await
}

/// As [`count_rows`], on the exported snapshot `snapshot_id` (see [`ExportedSnapshot`]): the
/// counts of exactly the rows a pg_dump given that snapshot dumps.
///
/// # Errors
/// As [`count_rows`], or the snapshot is gone (its transaction ended).
pub async fn count_rows_at(client: &Client, snapshot_id: &str) -> Result<Vec<TableRows>> {
    let begin = format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT {}",
        quote_literal(snapshot_id)
    );
    in_transaction(client, &begin).await
}

/// Runs `begin`, counts, and ends the transaction (rolled back: it changed nothing).
async fn in_transaction(client: &Client, begin: &str) -> Result<Vec<TableRows>> {
    client
        .batch_execute(begin)
        .await
        .map_err(|e| anyhow::anyhow!("starting the row count: {}", error_text(&e)))?;
    let counted = count_in_transaction(client).await;
    let ended = client.batch_execute("ROLLBACK").await;
    let counted = counted?;
    ended.map_err(|e| anyhow::anyhow!("ending the row count: {}", error_text(&e)))?;
    Ok(counted)
}

/// Lists the tables, then counts them a batch per statement. Row security is off, as in
/// pg_dump: a policy that would hide rows makes the count fail rather than be wrong.
async fn count_in_transaction(client: &Client) -> Result<Vec<TableRows>> {
    client
        .batch_execute("SET LOCAL row_security = off")
        .await
        .map_err(|e| anyhow::anyhow!("turning row security off: {}", error_text(&e)))?;
    let tables = client
        .query(TABLES_SQL, &[])
        .await
        .map_err(|e| anyhow::anyhow!("listing the tables: {}", error_text(&e)))?;
    let tables: Vec<(String, String)> = tables.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut counted = Vec::with_capacity(tables.len());
    for batch in tables.chunks(TABLES_PER_STATEMENT) {
        let rows = count_batch(client, batch).await?;
        counted.extend(
            batch
                .iter()
                .zip(rows)
                .map(|((schema, table), rows)| TableRows {
                    schema: schema.clone(),
                    table: table.clone(),
                    rows,
                }),
        );
    }
    Ok(counted)
}

/// The counts of `batch` (schema, name), in its order.
async fn count_batch(client: &Client, batch: &[(String, String)]) -> Result<Vec<u64>> {
    count_tables(client, batch)
        .await
        .map_err(|e| anyhow::anyhow!("counting rows: {}", error_text(&e)))
        .with_context(|| {
            let (schema, table) = &batch[0];
            format!(
                "in {} tables from {}",
                batch.len(),
                qualified(schema, table)
            )
        })
}

/// The exact row counts of `tables` (schema, name), in their order, in one statement (also
/// the restore preview's, which counts outside any snapshot and skips locked tables).
///
/// # Errors
/// The statement failed (a lock wait that ran out among them).
pub(crate) async fn count_tables(
    client: &Client,
    tables: &[(String, String)],
) -> std::result::Result<Vec<u64>, tokio_postgres::Error> {
    let quoted: Vec<String> = tables.iter().map(|(s, t)| qualified(s, t)).collect();
    let rows = client
        .query(&batch_sql(quoted.iter().map(String::as_str)), &[])
        .await?;
    let mut counts = vec![0; tables.len()];
    for r in rows {
        let (i, n): (i32, i64) = (r.get(0), r.get(1));
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| counts.get_mut(i)) {
            *slot = u64::try_from(n).unwrap_or(0);
        }
    }
    Ok(counts)
}

/// `SELECT 0, count(*) FROM a UNION ALL SELECT 1, count(*) FROM b ...` over quoted names.
fn batch_sql<'a>(quoted: impl Iterator<Item = &'a str>) -> String {
    quoted
        .enumerate()
        .map(|(i, q)| format!("SELECT {i}::int4, count(*) FROM {q}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// `schema.table`, each quoted.
fn qualified(schema: &str, table: &str) -> String {
    format!(
        "{}.{}",
        crate::pg::contents::quote_ident(schema),
        crate::pg::contents::quote_ident(table)
    )
}

/// `text` as an SQL string literal.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_statement_counts_a_batch_in_order() {
        assert_eq!(
            batch_sql([r#""a"."T""#, r#"public."x""y""#].into_iter()),
            r#"SELECT 0::int4, count(*) FROM "a"."T" UNION ALL SELECT 1::int4, count(*) FROM public."x""y""#
        );
    }

    #[test]
    fn literals_double_their_quotes() {
        assert_eq!(quote_literal("00000003-1"), "'00000003-1'");
        assert_eq!(quote_literal("a'b"), "'a''b'");
    }
}
