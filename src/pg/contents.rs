//! What a database holds, read through our own connection: its user tables with their exact row
//! counts, its schemas and extensions and its size (for a restore's preview and the checks of a
//! restore aside).

use crate::pg::db::{error_text, Db};
use anyhow::Result;

/// How many tables one counting query covers.
const TABLES_PER_QUERY: usize = 100;

/// Quotes an SQL identifier (a database, schema or table name) for a statement.
#[must_use]
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One user table and its exact row count; `None`: it could not be counted within the lock
/// wait allowed (another session holds a lock that blocks reading it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCount {
    /// The table's schema.
    pub schema: String,
    /// Its name.
    pub table: String,
    /// Its rows now.
    pub rows: Option<u64>,
}

impl Db {
    /// Every table a backup counts the rows of (see `pg::rowcount`: ordinary tables and
    /// partitions in user schemas, not temporary, not an extension's) with its exact row count
    /// now, by schema and name.
    /// With `lock_wait`, a table that stays locked longer is not counted (its `rows` is `None`).
    pub async fn table_rows(
        &self,
        lock_wait: Option<std::time::Duration>,
    ) -> Result<Vec<TableCount>> {
        if let Some(wait) = lock_wait {
            let set = format!("SET lock_timeout = '{}ms'", wait.as_millis().max(1));
            self.client()
                .batch_execute(&set)
                .await
                .map_err(|e| anyhow::anyhow!("setting lock_timeout: {}", error_text(&e)))?;
        }
        let rows = self
            .client()
            .query(crate::pg::rowcount::TABLES_SQL, &[])
            .await
            .map_err(|e| anyhow::anyhow!("listing the tables: {}", error_text(&e)))?;
        let tables: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let mut counted = Vec::with_capacity(tables.len());
        for chunk in tables.chunks(TABLES_PER_QUERY) {
            counted.extend(self.count_or_skip(chunk).await?);
        }
        Ok(counted)
    }

    /// Counts a chunk of tables in one query; when a lock wait ends it, one table at a time,
    /// leaving out those that stay locked.
    async fn count_or_skip(&self, chunk: &[(String, String)]) -> Result<Vec<TableCount>> {
        match self.count_chunk(chunk).await {
            Ok(counts) => Ok(counted(chunk, counts.into_iter().map(Some))),
            Err(e) if is_lock_timeout(&e) => {
                let mut counts = Vec::with_capacity(chunk.len());
                for one in chunk.chunks(1) {
                    counts.push(match self.count_chunk(one).await {
                        Ok(c) => c.first().copied(),
                        Err(e) if is_lock_timeout(&e) => None,
                        Err(e) => return Err(count_error(&e)),
                    });
                }
                Ok(counted(chunk, counts.into_iter()))
            }
            Err(e) => Err(count_error(&e)),
        }
    }

    /// Counts the rows of up to [`TABLES_PER_QUERY`] tables in one query.
    async fn count_chunk(
        &self,
        tables: &[(String, String)],
    ) -> std::result::Result<Vec<u64>, tokio_postgres::Error> {
        crate::pg::rowcount::count_tables(self.client(), tables).await
    }

    /// The user schemas (not `pg_*`, not `information_schema`), by name.
    pub async fn schemas(&self) -> Result<Vec<String>> {
        self.names(
            "SELECT nspname FROM pg_catalog.pg_namespace \
             WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\\_%' ORDER BY 1",
            "listing the schemas",
        )
        .await
    }

    /// The installed extensions, by name.
    pub async fn extensions(&self) -> Result<Vec<String>> {
        self.names(
            "SELECT extname FROM pg_catalog.pg_extension ORDER BY 1",
            "listing the extensions",
        )
        .await
    }

    /// The database's size on disk, in bytes.
    pub async fn database_bytes(&self) -> Result<u64> {
        let row = self
            .client()
            .query_one(
                "SELECT pg_catalog.pg_database_size(pg_catalog.current_database())",
                &[],
            )
            .await
            .map_err(|e| anyhow::anyhow!("reading the database size: {}", error_text(&e)))?;
        let n: i64 = row.get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn names(&self, sql: &str, doing: &str) -> Result<Vec<String>> {
        let rows = self
            .client()
            .query(sql, &[])
            .await
            .map_err(|e| anyhow::anyhow!("{doing}: {}", error_text(&e)))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// The tables with their counts.
fn counted(
    tables: &[(String, String)],
    counts: impl Iterator<Item = Option<u64>>,
) -> Vec<TableCount> {
    tables
        .iter()
        .zip(counts)
        .map(|((schema, table), rows)| TableCount {
            schema: schema.clone(),
            table: table.clone(),
            rows,
        })
        .collect()
}

/// A lock wait that reached `lock_timeout`.
fn is_lock_timeout(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
}

fn count_error(e: &tokio_postgres::Error) -> anyhow::Error {
    anyhow::anyhow!("counting the rows: {}", error_text(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("shop"), "\"shop\"");
        assert_eq!(quote_ident("we\"ird db"), "\"we\"\"ird db\"");
    }
}
