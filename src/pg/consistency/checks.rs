//! The SQL of each check: a catalog query that lists what to look at (names quoted by the server
//! with `format('%I')`), then one query per object that counts what fails and keeps examples.

use super::{Check, CheckKind, Session};
use anyhow::Result;
use tokio_postgres::Row;

/// The user schemas, as a condition on the namespace alias `n`.
const USER_SCHEMA: &str = "n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'";

/// How many characters of a row an example shows.
const ROW_TEXT: usize = 120;

/// Runs every SQL check; returns the database's name with them.
pub(super) async fn run_all(s: &Session<'_>, examples: usize) -> Result<(String, Vec<Check>)> {
    let rows = s
        .catalog("database name", "SELECT current_database()::text")
        .await?;
    let database: String = rows[0].get(0);
    let checks = vec![
        orphans(s, examples).await?,
        not_valid_checks(s, examples).await?,
        invalid_indexes(s, examples).await?,
        unique_duplicates(s, examples).await?,
        sequences_behind(s, examples).await?,
        unpopulated_matviews(s, examples).await?,
    ];
    Ok((database, checks))
}

/// `FROM ONLY` for a plain table (its inheritance children are checked on their own), plain
/// `FROM` for a partitioned one (which holds no rows itself).
fn from(relkind: &str, table: &str) -> String {
    if relkind == "p" {
        table.to_string()
    } else {
        format!("ONLY {table}")
    }
}

/// `(count, examples)` from a `SELECT count, ARRAY(...)` row.
fn counted(row: &Row) -> (u64, Vec<String>) {
    let n: i64 = row.get(0);
    let examples: Vec<Option<String>> = row.get(1);
    (
        u64::try_from(n).unwrap_or(0),
        examples.into_iter().flatten().collect(),
    )
}

/// Runs one object's `sql` (`SELECT count, ARRAY(examples)`); its examples are passed through
/// `describe`. A failure is recorded as an error about `object`.
async fn count_into(
    s: &Session<'_>,
    check: &mut Check,
    limit: usize,
    (object, sql): (&str, String),
    describe: impl Fn(String) -> String,
) {
    check.examined += 1;
    match s.query(&sql).await {
        Ok(rows) => {
            let (n, examples) = counted(&rows[0]);
            check.fail(n, examples.into_iter().map(describe), limit);
        }
        Err(e) => check.errors.push(format!("{object}: {e}")),
    }
}

/// Every foreign key (valid or not), once: partitions' clones are checked through their parent.
const FOREIGN_KEYS_SQL: &str = "\
SELECT format('%I', c.conname), c.confmatchtype::text, \
       format('%I.%I', n.nspname, t.relname), t.relkind::text, \
       format('%I.%I', pn.nspname, p.relname), p.relkind::text, \
       ARRAY(SELECT quote_ident(a.attname) FROM unnest(c.conkey) WITH ORDINALITY k(num, i) \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.num ORDER BY k.i), \
       ARRAY(SELECT quote_ident(a.attname) FROM unnest(c.confkey) WITH ORDINALITY k(num, i) \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.num ORDER BY k.i), \
       ARRAY(SELECT format('OPERATOR(%I.%s)', opn.nspname, o.oprname) \
             FROM unnest(c.conpfeqop) WITH ORDINALITY k(op, i) \
             JOIN pg_catalog.pg_operator o ON o.oid = k.op \
             JOIN pg_catalog.pg_namespace opn ON opn.oid = o.oprnamespace ORDER BY k.i) \
FROM pg_catalog.pg_constraint c \
JOIN pg_catalog.pg_class t ON t.oid = c.conrelid JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace \
JOIN pg_catalog.pg_class p ON p.oid = c.confrelid JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace \
WHERE c.contype = 'f' AND c.conparentid = 0 AND USER_SCHEMA \
ORDER BY n.nspname COLLATE \"C\", t.relname COLLATE \"C\", c.conname COLLATE \"C\"";

/// One foreign key, as [`FOREIGN_KEYS_SQL`] lists it.
struct ForeignKey {
    name: String,
    match_full: bool,
    child: String,
    child_kind: String,
    parent: String,
    parent_kind: String,
    columns: Vec<String>,
    referenced: Vec<String>,
    operators: Vec<String>,
}

impl ForeignKey {
    fn from_row(r: &Row) -> ForeignKey {
        ForeignKey {
            name: r.get(0),
            match_full: r.get::<_, String>(1) == "f",
            child: r.get(2),
            child_kind: r.get(3),
            parent: r.get(4),
            parent_kind: r.get(5),
            columns: r.get(6),
            referenced: r.get(7),
            operators: r.get(8),
        }
    }

    /// The rows of the child whose key finds no parent row: under MATCH SIMPLE a key with a NULL
    /// is not checked; under MATCH FULL a key that is partly NULL fails.
    fn orphans_sql(&self, limit: usize) -> String {
        let col = |c: &String| format!("c.{c}");
        let all = |op: &str, test: &str| {
            self.columns
                .iter()
                .map(|c| format!("{} IS {test}", col(c)))
                .collect::<Vec<_>>()
                .join(op)
        };
        let matches = self
            .referenced
            .iter()
            .zip(&self.columns)
            .zip(&self.operators)
            .map(|((p, c), op)| format!("p.{p} {op} c.{c}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let missing = format!(
            "NOT EXISTS (SELECT 1 FROM {} p WHERE {matches})",
            from(&self.parent_kind, &self.parent)
        );
        let condition = if self.match_full {
            format!(
                "NOT ({}) AND (NOT ({}) OR {missing})",
                all(" AND ", "NULL"),
                all(" AND ", "NOT NULL")
            )
        } else {
            format!("{} AND {missing}", all(" AND ", "NOT NULL"))
        };
        let key = self.columns.iter().map(col).collect::<Vec<_>>().join(", ");
        format!(
            "WITH bad AS (SELECT ROW({key})::text AS k FROM {} c WHERE {condition}) \
             SELECT (SELECT count(*) FROM bad), ARRAY(SELECT k FROM bad LIMIT {limit})",
            from(&self.child_kind, &self.child)
        )
    }
}

async fn orphans(s: &Session<'_>, limit: usize) -> Result<Check> {
    let mut check = Check::new(CheckKind::Orphans);
    let keys = s
        .catalog(
            "foreign keys",
            &FOREIGN_KEYS_SQL.replace("USER_SCHEMA", USER_SCHEMA),
        )
        .await?;
    for fk in keys.iter().map(ForeignKey::from_row) {
        let object = format!("foreign key {} on {}", fk.name, fk.child);
        let describe = |k: String| {
            format!(
                "{}({}) = {k} has no row in {}({}) [{}]",
                fk.child,
                fk.columns.join(", "),
                fk.parent,
                fk.referenced.join(", "),
                fk.name
            )
        };
        count_into(
            s,
            &mut check,
            limit,
            (&object, fk.orphans_sql(limit)),
            describe,
        )
        .await;
    }
    Ok(check)
}

/// CHECK constraints added `NOT VALID` on plain tables (a partitioned table's are on each
/// partition too).
const NOT_VALID_CHECKS_SQL: &str = "\
SELECT format('%I', c.conname), format('%I.%I', n.nspname, t.relname), \
       pg_catalog.pg_get_expr(c.conbin, c.conrelid) \
FROM pg_catalog.pg_constraint c \
JOIN pg_catalog.pg_class t ON t.oid = c.conrelid JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace \
WHERE c.contype = 'c' AND NOT c.convalidated AND t.relkind = 'r' AND USER_SCHEMA \
ORDER BY n.nspname COLLATE \"C\", t.relname COLLATE \"C\", c.conname COLLATE \"C\"";

async fn not_valid_checks(s: &Session<'_>, limit: usize) -> Result<Check> {
    let mut check = Check::new(CheckKind::NotValidChecks);
    let constraints = s
        .catalog(
            "NOT VALID check constraints",
            &NOT_VALID_CHECKS_SQL.replace("USER_SCHEMA", USER_SCHEMA),
        )
        .await?;
    for r in &constraints {
        let (name, table, expr): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let sql = format!(
            "WITH bad AS (SELECT left(ROW(x.*)::text, {ROW_TEXT}) AS r FROM ONLY {table} x \
             WHERE ({expr}) IS FALSE) \
             SELECT (SELECT count(*) FROM bad), ARRAY(SELECT r FROM bad LIMIT {limit})"
        );
        let object = format!("check constraint {name} on {table}");
        let describe = |row: String| format!("{table} row {row} violates {name}: CHECK {expr}");
        count_into(s, &mut check, limit, (&object, sql), describe).await;
    }
    Ok(check)
}

/// Indexes marked invalid, with their table and whether they are unique.
const INVALID_INDEXES_SQL: &str = "\
SELECT format('%I.%I', n.nspname, ic.relname), format('%I.%I', tn.nspname, t.relname), i.indisunique \
FROM pg_catalog.pg_index i \
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid JOIN pg_catalog.pg_namespace n ON n.oid = ic.relnamespace \
JOIN pg_catalog.pg_class t ON t.oid = i.indrelid JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace \
WHERE NOT i.indisvalid AND USER_SCHEMA \
ORDER BY n.nspname COLLATE \"C\", ic.relname COLLATE \"C\"";

async fn invalid_indexes(s: &Session<'_>, limit: usize) -> Result<Check> {
    let mut check = Check::new(CheckKind::InvalidIndexes);
    let indexes = s
        .catalog(
            "indexes",
            &INVALID_INDEXES_SQL.replace("USER_SCHEMA", USER_SCHEMA),
        )
        .await?;
    check.examined = u64::try_from(indexes.len()).unwrap_or(0);
    let examples = indexes.iter().map(|r| {
        let (index, table, unique): (String, String, bool) = (r.get(0), r.get(1), r.get(2));
        let kind = if unique { "unique index" } else { "index" };
        format!("{kind} {index} on {table} is invalid (REINDEX INDEX {index}, or drop it)")
    });
    check.fail(check.examined, examples.collect::<Vec<_>>(), limit);
    Ok(check)
}

/// Unique indexes that are not valid: their key (columns or expressions), predicate, and
/// whether NULLs count as equal (`NULLS NOT DISTINCT`, PostgreSQL 15+).
const INVALID_UNIQUE_SQL: &str = "\
SELECT format('%I.%I', n.nspname, ic.relname), format('%I.%I', tn.nspname, t.relname), t.relkind::text, \
       ARRAY(SELECT pg_catalog.pg_get_indexdef(i.indexrelid, k, true) \
             FROM generate_series(1, i.indnkeyatts) k ORDER BY k), \
       pg_catalog.pg_get_expr(i.indpred, i.indrelid), \
       coalesce((pg_catalog.to_jsonb(i) ->> 'indnullsnotdistinct')::bool, false) \
FROM pg_catalog.pg_index i \
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid JOIN pg_catalog.pg_namespace n ON n.oid = ic.relnamespace \
JOIN pg_catalog.pg_class t ON t.oid = i.indrelid JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace \
WHERE i.indisunique AND NOT i.indisvalid AND USER_SCHEMA \
ORDER BY n.nspname COLLATE \"C\", ic.relname COLLATE \"C\"";

/// The rows whose key appears more than once where the index applies, as `ROW(key)` groups.
fn duplicates_sql(r: &Row, limit: usize) -> String {
    let (table, kind): (String, String) = (r.get(1), r.get(2));
    let keys: Vec<String> = r.get(3);
    let predicate: Option<String> = r.get(4);
    let nulls_equal: bool = r.get(5);
    let mut conditions: Vec<String> = predicate.into_iter().map(|p| format!("({p})")).collect();
    if !nulls_equal {
        conditions.extend(keys.iter().map(|k| format!("({k}) IS NOT NULL")));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let key = keys.join(", ");
    format!(
        "WITH dup AS (SELECT ROW({key})::text AS k, count(*) AS n FROM {} {filter} \
         GROUP BY {key} HAVING count(*) > 1) \
         SELECT (SELECT coalesce(sum(n), 0)::int8 FROM dup), \
                ARRAY(SELECT k || ' ' || n || ' times' FROM dup ORDER BY n DESC, k LIMIT {limit})",
        from(&kind, &table)
    )
}

async fn unique_duplicates(s: &Session<'_>, limit: usize) -> Result<Check> {
    let mut check = Check::new(CheckKind::UniqueDuplicates);
    let indexes = s
        .catalog(
            "invalid unique indexes",
            &INVALID_UNIQUE_SQL.replace("USER_SCHEMA", USER_SCHEMA),
        )
        .await?;
    for r in &indexes {
        let (index, table): (String, String) = (r.get(0), r.get(1));
        let object = format!("unique index {index} on {table}");
        let describe = |k: String| format!("{table} key {k} (unique index {index})");
        count_into(
            s,
            &mut check,
            limit,
            (&object, duplicates_sql(r, limit)),
            describe,
        )
        .await;
    }
    Ok(check)
}

/// Each sequence with a numeric column it feeds: owned by it (serial, `OWNED BY`, identity) or
/// named by its default (`nextval`), with the sequence's increment.
const FED_COLUMNS_SQL: &str = "\
WITH fed AS ( \
  SELECT d.objid AS seq, d.refobjid AS rel, d.refobjsubid::int2 AS col \
  FROM pg_catalog.pg_depend d \
  WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass \
    AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i') \
  UNION \
  SELECT d.refobjid, ad.adrelid, ad.adnum \
  FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_attrdef ad ON ad.oid = d.objid \
  WHERE d.classid = 'pg_catalog.pg_attrdef'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass) \
SELECT format('%I.%I', sn.nspname, s.relname), format('%I.%I', n.nspname, t.relname), t.relkind::text, \
       quote_ident(a.attname), q.seqincrement \
FROM fed \
JOIN pg_catalog.pg_class s ON s.oid = fed.seq AND s.relkind = 'S' \
JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace \
JOIN pg_catalog.pg_sequence q ON q.seqrelid = s.oid \
JOIN pg_catalog.pg_class t ON t.oid = fed.rel AND t.relkind IN ('r', 'p') \
JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace \
JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = fed.col AND NOT a.attisdropped \
WHERE USER_SCHEMA AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'numeric'::regtype) \
ORDER BY 1, 2, 4";

/// Whether the sequence's next value is within the column's data (at or below its largest
/// value, or at or above its smallest for a descending sequence): one row `(behind, next, edge)`.
fn sequence_sql(r: &Row) -> String {
    let (seq, table, kind, column): (String, String, String, String) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    let increment: i64 = r.get(4);
    let (edge, reaches) = if increment > 0 {
        ("max", ">=")
    } else {
        ("min", "<=")
    };
    format!(
        "SELECT coalesce(v.edge {reaches} v.next, false), v.next::text, v.edge::text FROM ( \
           SELECT (SELECT {edge}(x.{column}) FROM {} x)::numeric AS edge, \
                  CASE WHEN s.is_called THEN s.last_value::numeric + {increment} \
                       ELSE s.last_value::numeric END AS next \
           FROM {seq} s) v",
        from(&kind, &table)
    )
}

async fn sequences_behind(s: &Session<'_>, limit: usize) -> Result<Check> {
    let mut check = Check::new(CheckKind::SequencesBehind);
    let fed = s
        .catalog(
            "sequences",
            &FED_COLUMNS_SQL.replace("USER_SCHEMA", USER_SCHEMA),
        )
        .await?;
    let mut seen: Vec<String> = Vec::new();
    let mut behind: Vec<String> = Vec::new();
    for r in &fed {
        let (seq, table, column): (String, String, String) = (r.get(0), r.get(1), r.get(3));
        if !seen.contains(&seq) {
            seen.push(seq.clone());
        }
        let object = format!("sequence {seq} feeding {table}.{column}");
        match s.query(&sequence_sql(r)).await {
            Ok(rows) if rows[0].get::<_, bool>(0) && !behind.contains(&seq) => {
                let (next, edge): (String, String) = (rows[0].get(1), rows[0].get(2));
                behind.push(seq.clone());
                check.fail(
                    1,
                    [format!(
                        "{seq} would give {next} next, but {table}.{column} already holds {edge} \
                         (SELECT setval('{}', {edge}))",
                        seq.replace('\'', "''")
                    )],
                    limit,
                );
            }
            Ok(_) => {}
            Err(e) => check.errors.push(format!("{object}: {e}")),
        }
    }
    check.examined = u64::try_from(seen.len()).unwrap_or(0);
    Ok(check)
}

/// Materialized views never populated, and how many there are in all.
const MATVIEWS_SQL: &str = "\
SELECT format('%I.%I', n.nspname, c.relname), c.relispopulated \
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
WHERE c.relkind = 'm' AND USER_SCHEMA \
ORDER BY n.nspname COLLATE \"C\", c.relname COLLATE \"C\"";

async fn unpopulated_matviews(s: &Session<'_>, limit: usize) -> Result<Check> {
    let mut check = Check::new(CheckKind::UnpopulatedMatviews);
    let views = s
        .catalog(
            "materialized views",
            &MATVIEWS_SQL.replace("USER_SCHEMA", USER_SCHEMA),
        )
        .await?;
    check.examined = u64::try_from(views.len()).unwrap_or(0);
    let empty: Vec<String> = views
        .iter()
        .filter(|r| !r.get::<_, bool>(1))
        .map(|r| r.get(0))
        .collect();
    let n = u64::try_from(empty.len()).unwrap_or(0);
    let examples = empty
        .iter()
        .map(|v| format!("{v} is not populated (REFRESH MATERIALIZED VIEW {v})"));
    check.fail(n, examples.collect::<Vec<_>>(), limit);
    Ok(check)
}
