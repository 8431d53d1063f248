//! The checks a drill runs in the database it restored into: the row counts compared with those
//! the backup recorded, and the user's own queries (`--check-sql`), each of which must return
//! `true` or at least one row.

use crate::archive::meta::TableRows;
use crate::pg::db::{error_text, Db};
use serde::Serialize;
use std::collections::BTreeMap;

/// A table whose rows differ between the backup's record and the restored database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowMismatch {
    /// The table's schema.
    pub schema: String,
    /// The table's name.
    pub table: String,
    /// The rows the backup recorded (none: the table is not in its record).
    pub recorded: Option<u64>,
    /// The rows restored (none: the table is not in the restored database).
    pub restored: Option<u64>,
}

impl std::fmt::Display for RowMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = crate::runtime::redact::sanitize(&format!("{}.{}", self.schema, self.table));
        match (self.recorded, self.restored) {
            (Some(r), Some(n)) => write!(f, "{name}: {r} rows at backup time, {n} restored"),
            (Some(r), None) => write!(f, "{name}: {r} rows at backup time, table not restored"),
            (None, Some(n)) => write!(f, "{name}: not in the backup's row counts, {n} restored"),
            (None, None) => write!(f, "{name}"),
        }
    }
}

/// A table's rows: recorded, restored.
type Pair = (Option<u64>, Option<u64>);

/// The tables whose counts differ, in (schema, table) order.
#[must_use]
pub fn compare_rows(recorded: &[TableRows], restored: &[TableRows]) -> Vec<RowMismatch> {
    let mut both: BTreeMap<(&str, &str), Pair> = BTreeMap::new();
    for t in recorded {
        both.entry((&t.schema, &t.table)).or_default().0 = Some(t.rows);
    }
    for t in restored {
        both.entry((&t.schema, &t.table)).or_default().1 = Some(t.rows);
    }
    both.into_iter()
        .filter(|(_, (r, n))| r != n)
        .map(|((schema, table), (recorded, restored))| RowMismatch {
            schema: schema.to_string(),
            table: table.to_string(),
            recorded,
            restored,
        })
        .collect()
}

/// One `--check-sql` query and its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueryCheck {
    /// The statement as written (without its `;`).
    pub statement: String,
    /// It returned `true`, or at least one row that is not a lone `false` or NULL.
    pub passed: bool,
    /// What it returned, or its error.
    pub result: String,
}

/// Runs each statement in turn and judges what it returned.
pub async fn run_queries(db: &Db, statements: &[String]) -> Vec<QueryCheck> {
    let mut out = Vec::with_capacity(statements.len());
    for statement in statements {
        let (passed, result) = match db.client().query(statement.as_str(), &[]).await {
            Ok(rows) => judge(&rows),
            Err(e) => (false, format!("failed: {}", error_text(&e))),
        };
        out.push(QueryCheck {
            statement: statement.clone(),
            passed,
            result,
        });
    }
    out
}

/// A query passes when it returns rows, unless it returns one boolean that is not `true`.
fn judge(rows: &[tokio_postgres::Row]) -> (bool, String) {
    let lone_bool = match rows {
        [row]
            if row.len() == 1 && *row.columns()[0].type_() == tokio_postgres::types::Type::BOOL =>
        {
            Some(row.get::<_, Option<bool>>(0))
        }
        _ => None,
    };
    verdict(rows.len(), lone_bool)
}

fn verdict(rows: usize, lone_bool: Option<Option<bool>>) -> (bool, String) {
    match (rows, lone_bool) {
        (_, Some(Some(true))) => (true, "true".into()),
        (_, Some(Some(false))) => (false, "false".into()),
        (_, Some(None)) => (false, "NULL".into()),
        (0, None) => (false, "no rows".into()),
        (1, None) => (true, "1 row".into()),
        (n, None) => (true, format!("{n} rows")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(table: &str, rows: u64) -> TableRows {
        TableRows {
            schema: "public".into(),
            table: table.into(),
            rows,
        }
    }

    #[test]
    fn counts_are_compared_table_by_table() {
        let recorded = [t("a", 1), t("b", 2), t("gone", 3)];
        let restored = [t("a", 1), t("b", 5), t("new", 0)];
        let m = compare_rows(&recorded, &restored);
        let shown: Vec<String> = m.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "public.b: 2 rows at backup time, 5 restored",
                "public.gone: 3 rows at backup time, table not restored",
                "public.new: not in the backup's row counts, 0 restored",
            ]
        );
        assert!(compare_rows(&recorded[..1], &restored[..1]).is_empty());
    }

    #[test]
    fn a_query_passes_with_true_or_rows() {
        assert_eq!(verdict(1, Some(Some(true))), (true, "true".into()));
        assert!(!verdict(1, Some(Some(false))).0);
        assert!(!verdict(1, Some(None)).0);
        assert!(!verdict(0, None).0);
        assert_eq!(verdict(3, None), (true, "3 rows".into()));
    }
}
