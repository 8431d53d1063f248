//! Scratch databases: throwaway databases that a drill restores into, named so that nobody takes
//! one for a real database (`aos_drill_…`), marked with their owner (`COMMENT ON DATABASE`) so
//! that a later run drops those whose owner was killed, and dropped when done.

use crate::pg::conninfo::ConnInfo;
use crate::pg::db::{error_text, Db};
use crate::runtime::owner::{Liveness, Owner};
use anyhow::Result;

/// Every scratch database's name starts with this.
pub const PREFIX: &str = "aos_drill_";

/// PostgreSQL's longest identifier, in bytes.
const MAX_NAME: usize = 63;

/// A scratch database's name for the backup `backup_id`: `aos_drill_<id>_<random>`, lowercase
/// letters, digits and `_` only, at most 63 bytes.
#[must_use]
pub fn name_for(backup_id: &str) -> String {
    let id: String = backup_id
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '_',
        })
        .collect();
    let random = random_suffix();
    let room = MAX_NAME - PREFIX.len() - 1 - random.len();
    let id: String = id.chars().take(room).collect();
    format!("{PREFIX}{id}_{random}")
}

/// Eight hex digits that differ between runs and between calls.
fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:08x}", h.finish() & 0xffff_ffff)
}

/// An SQL identifier, quoted.
#[must_use]
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Whether `a` and `b` name the same database on the same server: the same database name and
/// port, and the same host (any two ways of reaching this machine count as the same host).
#[must_use]
pub fn same_database(a: &ConnInfo, b: &ConnInfo, env: &dyn Fn(&str) -> Option<String>) -> bool {
    let port = |c: &ConnInfo| {
        c.port()
            .or_else(|| env("PGPORT").and_then(|p| p.parse().ok()))
            .unwrap_or(5432)
    };
    let host = |c: &ConnInfo| {
        if c.is_local() {
            String::new()
        } else {
            c.host().unwrap_or_default().to_ascii_lowercase()
        }
    };
    a.effective_dbname(env) == b.effective_dbname(env) && port(a) == port(b) && host(a) == host(b)
}

/// Whether the connected role may create a database (`CREATEDB`, or a superuser).
pub async fn can_create(db: &Db) -> Result<bool> {
    let row = db
        .client()
        .query_one(
            "SELECT rolcreatedb OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| anyhow::anyhow!("reading the role's privileges: {}", error_text(&e)))?;
    Ok(row.get(0))
}

/// Creates the empty scratch database `name` (from `template0`) and marks it with its owner.
/// Should the marking fail, the database is dropped again.
pub async fn create(db: &Db, name: &str, owner: &Owner) -> Result<()> {
    let create = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(name));
    db.client().batch_execute(&create).await.map_err(|e| {
        crate::error::Error::new(
            crate::error::Kind::Failure,
            format!("creating the scratch database {name:?}: {}", error_text(&e)),
        )
        .hint("the role needs CREATEDB on the scratch server (ALTER ROLE name CREATEDB), or drill in an ephemeral cluster with --ephemeral")
    })?;
    let comment = format!(
        "COMMENT ON DATABASE {} IS {}",
        quote_ident(name),
        quote_literal(&owner.marker())
    );
    if let Err(e) = db.client().batch_execute(&comment).await {
        let _ = drop_database(db, name).await;
        anyhow::bail!("marking the scratch database {name:?}: {}", error_text(&e));
    }
    Ok(())
}

/// Drops our own scratch database `name`: a plain `DROP DATABASE` first (it ends an autovacuum
/// worker itself, which `WITH (FORCE)` may not do for a role that is not a superuser), then,
/// if sessions still hold it, `WITH (FORCE)` (PostgreSQL 13+).
pub async fn drop_database(db: &Db, name: &str) -> Result<()> {
    let plain = drop_unforced(db, name).await;
    if plain.is_ok() || db.info.major < 13 {
        return plain;
    }
    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
    db.client()
        .batch_execute(&sql)
        .await
        .map_err(|e| anyhow::anyhow!("dropping the scratch database {name:?}: {}", error_text(&e)))
}

/// `DROP DATABASE IF EXISTS name` without ending anyone's session: a database still in use (a
/// drill that is running after all) fails to drop and stays.
async fn drop_unforced(db: &Db, name: &str) -> Result<()> {
    let sql = format!("DROP DATABASE IF EXISTS {}", quote_ident(name));
    db.client()
        .batch_execute(&sql)
        .await
        .map_err(|e| anyhow::anyhow!("dropping the scratch database {name:?}: {}", error_text(&e)))
}

/// The scratch databases on the server, with their owner's marker (`None` when unmarked).
pub async fn list(db: &Db) -> Result<Vec<(String, Option<Owner>)>> {
    let rows = db
        .client()
        .query(
            "SELECT datname::text, pg_catalog.shobj_description(oid, 'pg_database') \
             FROM pg_catalog.pg_database WHERE starts_with(datname::text, $1) ORDER BY datname",
            &[&PREFIX],
        )
        .await
        .map_err(|e| anyhow::anyhow!("listing scratch databases: {}", error_text(&e)))?;
    Ok(rows
        .iter()
        .map(|r| {
            let comment: Option<String> = r.get(1);
            (r.get(0), comment.as_deref().and_then(Owner::parse))
        })
        .collect())
}

/// Drops the scratch databases whose owner is gone (killed drills) and returns their names. One
/// that cannot be dropped is named in a warning; unmarked ones are left alone.
pub async fn sweep(db: &Db) -> Result<Vec<String>> {
    let mut dropped = Vec::new();
    for (name, owner) in list(db).await? {
        let Some(owner) = owner else { continue };
        if owner.liveness() == Liveness::Alive || name == db.info.database {
            continue;
        }
        match drop_unforced(db, &name).await {
            Ok(()) => {
                tracing::info!(
                    "dropped the scratch database {name:?} left by a drill that ended without cleaning up ({owner})"
                );
                dropped.push(name);
            }
            Err(e) => tracing::warn!("{e:#}; drop it by hand"),
        }
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_marked_safe_short_and_unique() {
        let a = name_for("20261129-091800-Nightly");
        assert!(a.starts_with("aos_drill_20261129_091800_nightly_"), "{a}");
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        let long = name_for(&"x".repeat(200));
        assert_eq!(long.len(), MAX_NAME);
        assert_ne!(name_for("x"), name_for("x"));
    }

    #[test]
    fn the_same_database_is_found_whichever_way_it_is_named() {
        let env = |_: &str| None;
        let c = |url: &str| ConnInfo::parse(url).unwrap();
        let live = c("postgresql://app:pw@127.0.0.1:5433/shop");
        assert!(same_database(
            &c("postgresql://other@localhost:5433/shop"),
            &live,
            &env
        ));
        assert!(same_database(
            &c("postgresql:///shop?host=/run/postgresql&port=5433"),
            &live,
            &env
        ));
        assert!(!same_database(
            &c("postgresql://app@127.0.0.1:5433/postgres"),
            &live,
            &env
        ));
        assert!(!same_database(
            &c("postgresql://app@127.0.0.1:5432/shop"),
            &live,
            &env
        ));
        assert!(!same_database(
            &c("postgresql://app@db2:5433/shop"),
            &live,
            &env
        ));
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
