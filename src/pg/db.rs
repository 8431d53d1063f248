//! Talking to the server through tokio-postgres (no psql needed): its version, and how many
//! tables the database holds, for the version check, the restore guard and the metadata.

use crate::error::{Error, Kind};
use crate::pg::conninfo::ConnInfo;
use anyhow::Result;
use std::time::Duration;

/// What we learn about the server when we connect.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// e.g. `15.18`.
    pub version: String,
    pub major: u32,
    pub database: String,
}

/// A connection to the database in `DATABASE_URL`.
pub struct Db {
    client: tokio_postgres::Client,
    pub info: ServerInfo,
}

/// Tables (plain, partitioned, foreign, materialized views) in user schemas, not counting
/// those that belong to an extension.
const TABLE_COUNT_SQL: &str = "\
SELECT count(*) FROM pg_catalog.pg_class c \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
WHERE c.relkind IN ('r', 'p', 'f', 'm') \
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' \
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                  WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')";

/// Whether the database holds anything a restore's clean section could drop: any object made
/// after `initdb` (oids from 16384 on; what `CREATE DATABASE` copies from a pristine template is
/// below) outside the system schemas, and any large object, whatever its oid. Conservative: an
/// extension, a function or a type counts as much as a table.
const HOLDS_OBJECTS_SQL: &str = "\
WITH user_ns AS (SELECT oid FROM pg_catalog.pg_namespace \
                 WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\\_%') \
SELECT EXISTS (SELECT 1 FROM user_ns WHERE oid >= 16384) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE oid >= 16384 AND relnamespace IN (SELECT oid FROM user_ns)) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_type WHERE oid >= 16384 AND typnamespace IN (SELECT oid FROM user_ns)) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE oid >= 16384 AND pronamespace IN (SELECT oid FROM user_ns)) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_collation WHERE oid >= 16384 AND collnamespace IN (SELECT oid FROM user_ns)) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_conversion WHERE oid >= 16384 AND connamespace IN (SELECT oid FROM user_ns)) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_operator WHERE oid >= 16384 AND oprnamespace IN (SELECT oid FROM user_ns)) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_opfamily WHERE oid >= 16384 AND opfnamespace IN (SELECT oid FROM user_ns)) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_opclass WHERE oid >= 16384 AND opcnamespace IN (SELECT oid FROM user_ns)) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_statistic_ext WHERE oid >= 16384 AND stxnamespace IN (SELECT oid FROM user_ns)) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_ts_config WHERE oid >= 16384 AND cfgnamespace IN (SELECT oid FROM user_ns)) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_ts_dict WHERE oid >= 16384 AND dictnamespace IN (SELECT oid FROM user_ns)) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_ts_parser WHERE oid >= 16384 AND prsnamespace IN (SELECT oid FROM user_ns)) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_ts_template WHERE oid >= 16384 AND tmplnamespace IN (SELECT oid FROM user_ns)) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE oid >= 16384) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_language WHERE oid >= 16384) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast WHERE oid >= 16384) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_am WHERE oid >= 16384) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_transform WHERE oid >= 16384) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_data_wrapper WHERE oid >= 16384) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_server WHERE oid >= 16384) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger WHERE oid >= 16384) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE oid >= 16384) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_default_acl WHERE oid >= 16384) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata) \
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_subscription WHERE subdbid = \
            (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()))";

/// The databases a backup of the whole server covers: every one that takes connections, is not
/// a template, and that the user may connect to, by name (byte order).
const CONNECTABLE_DATABASES_SQL: &str = "\
SELECT datname FROM pg_catalog.pg_database \
WHERE datallowconn AND NOT datistemplate \
  AND pg_catalog.has_database_privilege(oid, 'CONNECT') \
ORDER BY datname COLLATE \"C\"";

impl Db {
    /// Connects, with a timeout, and reads the server version. `lookup` reads the variables
    /// (`PG*`, `PGPASSFILE`) that fill in what `conn` leaves out.
    pub async fn connect(
        conn: &ConnInfo,
        lookup: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<Db> {
        let mut config = conn.tokio_config(lookup);
        if config.get_password().is_none() {
            if let Some(pw) = password_from_file(&config, conn, lookup) {
                crate::runtime::redact::register(&pw);
                config.password(pw);
            }
        }
        let timeout = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(15));
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeout);
        }
        let target = format!(
            "database {:?} at {}",
            conn.effective_dbname(lookup),
            conn.host_display()
        );
        let tls = crate::pg::tls::connector(conn, lookup)?;
        let connected = tokio::time::timeout(timeout + Duration::from_secs(1), config.connect(tls))
            .await
            .map_err(|_| {
                Error::new(
                    Kind::Connection,
                    format!(
                        "cannot connect to {target}: timed out after {}s",
                        timeout.as_secs()
                    ),
                )
                .hint("the server did not answer in time: check host, port and firewalls")
            })?;
        let (client, connection) = connected.map_err(|e| connect_error(&target, &e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(
                    "connection closed: {}",
                    crate::runtime::redact::scrub(&e.to_string())
                );
            }
        });
        let row = client
            .query_one(
                "SELECT current_setting('server_version'), current_setting('server_version_num')::int, current_database()",
                &[],
            )
            .await
            .map_err(|e| anyhow::anyhow!("reading the server version: {}", error_text(&e)))?;
        let full: String = row.get(0);
        let num: i32 = row.get(1);
        let version = full.split_whitespace().next().unwrap_or(&full).to_string();
        let num = u32::try_from(num).unwrap_or(0);
        let major = if num >= 100_000 {
            num / 10_000
        } else {
            num / 100 / 100
        };
        let info = ServerInfo {
            version,
            major,
            database: row.get(2),
        };
        tracing::debug!(server = %info.version, database = %info.database, "connected");
        if info.major >= 14 {
            // Should we die mid-query, the server stops our backend instead of finishing it.
            let set = format!(
                "SET client_connection_check_interval = '{}'",
                crate::pg::sessions::CHECK_INTERVAL
            );
            if let Err(e) = client.batch_execute(&set).await {
                tracing::debug!(
                    "cannot set client_connection_check_interval: {}",
                    error_text(&e)
                );
            }
        }
        Ok(Db { client, info })
    }

    /// The tokio-postgres client under this connection, for the SQL of the layers that reuse it
    /// (row counts, consistency checks).
    #[must_use]
    pub fn client(&self) -> &tokio_postgres::Client {
        &self.client
    }

    /// How many user tables the database holds.
    pub async fn table_count(&self) -> Result<u64> {
        let row = self
            .client
            .query_one(TABLE_COUNT_SQL, &[])
            .await
            .map_err(|e| anyhow::anyhow!("counting tables: {}", error_text(&e)))?;
        let n: i64 = row.get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

impl Db {
    /// The server's databases that a backup of the whole server covers (see
    /// [`CONNECTABLE_DATABASES_SQL`]).
    pub async fn connectable_databases(&self) -> Result<Vec<String>> {
        let rows = self
            .client
            .query(CONNECTABLE_DATABASES_SQL, &[])
            .await
            .map_err(|e| anyhow::anyhow!("listing the databases: {}", error_text(&e)))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

impl Db {
    /// Whether the database holds no objects at all (see [`HOLDS_OBJECTS_SQL`]): then a restore
    /// needs no clean section, which could only fail there.
    pub async fn is_empty(&self) -> Result<bool> {
        let row = self
            .client
            .query_one(HOLDS_OBJECTS_SQL, &[])
            .await
            .map_err(|e| {
                anyhow::anyhow!("looking for objects in the database: {}", error_text(&e))
            })?;
        let holds: bool = row.get(0);
        Ok(!holds)
    }

    /// The other client sessions connected to this database, oldest pid first.
    pub async fn other_sessions(&self) -> Result<Vec<crate::pg::sessions::Session>> {
        let rows = self
            .client
            .query(crate::pg::sessions::OTHER_SESSIONS_SQL, &[])
            .await
            .map_err(|e| anyhow::anyhow!("listing the other sessions: {}", error_text(&e)))?;
        Ok(rows
            .iter()
            .map(|r| crate::pg::sessions::Session {
                pid: r.get(0),
                user: r.get(1),
                application: r.get(2),
                state: r.get(3),
                seconds: r.get(4),
                holds_locks: r.get(5),
            })
            .collect())
    }

    /// The prepared transactions of this database (`PREPARE TRANSACTION`): they hold their locks
    /// with no session at all, until `COMMIT PREPARED` or `ROLLBACK PREPARED`. As `gid (owner)`.
    pub async fn prepared_transactions(&self) -> Result<Vec<String>> {
        let rows = self
            .client
            .query(
                "SELECT gid, owner::text FROM pg_catalog.pg_prepared_xacts \
                 WHERE database = pg_catalog.current_database() ORDER BY prepared",
                &[],
            )
            .await
            .map_err(|e| {
                anyhow::anyhow!("listing the prepared transactions: {}", error_text(&e))
            })?;
        Ok(rows
            .iter()
            .map(|r| {
                let gid: String = r.get(0);
                let owner: String = r.get(1);
                format!(
                    "{:?} (owner {})",
                    crate::runtime::redact::sanitize(&gid),
                    crate::runtime::redact::sanitize(&owner)
                )
            })
            .collect())
    }

    /// Ends a backend (`pg_terminate_backend`); false when the server refused or it was gone.
    pub async fn terminate(&self, pid: i32) -> Result<bool> {
        let row = self
            .client
            .query_one(
                "SELECT coalesce(pg_catalog.pg_terminate_backend($1), false)",
                &[&pid],
            )
            .await
            .map_err(|e| anyhow::anyhow!("ending session {pid}: {}", error_text(&e)))?;
        Ok(row.get(0))
    }
}

/// The password libpq would take from `~/.pgpass` (or `PGPASSFILE`) for this connection.
fn password_from_file(
    config: &tokio_postgres::Config,
    conn: &ConnInfo,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first()? {
        Host::Tcp(h) => h.clone(),
        Host::Unix(p) => p.display().to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let dbname = conn.effective_dbname(lookup);
    let user = conn.effective_user(lookup);
    // The same file the children read: the connection's `passfile` first.
    let lookup = |k: &str| match conn.param("passfile") {
        Some(file) if k == "PGPASSFILE" => Some(file.to_string()),
        _ => lookup(k),
    };
    crate::pg::pgpass::find(
        &lookup,
        &crate::pg::pgpass::Target {
            host: &host,
            port,
            dbname: &dbname,
            user: &user,
        },
    )
}

/// The full text of a tokio-postgres error, including the server's message and causes.
pub(crate) fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    crate::runtime::redact::scrub(&text)
}

fn connect_error(target: &str, e: &tokio_postgres::Error) -> anyhow::Error {
    let text = error_text(e);
    // Whatever went wrong, it went wrong reaching the database.
    let (_, hint) = crate::runtime::process::classify(&text);
    let kind = Kind::Connection;
    let mut err = Error::new(kind, format!("cannot connect to {target}: {text}"));
    err = err
        .hint(hint.unwrap_or_else(|| "check DATABASE_URL and that the server is running".into()));
    err.into()
}
