//! Which schemas, extensions and tables a backup creates, read cheaply for a restore's preview:
//! from `pg_restore --list` (custom and directory archives), or from a plain SQL dump's
//! statements before its first data (pg_dump writes every table definition before any COPY).

use std::io::BufRead;

/// How much of a plain SQL dump is read at most, looking for its first data.
const PLAIN_HEAD_LIMIT: u64 = 64 * 1024 * 1024;

/// The objects a backup creates.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Objects {
    /// Its schemas, in the order it lists them.
    pub schemas: Vec<String>,
    /// Its extensions.
    pub extensions: Vec<String>,
    /// Its tables, as (schema, name).
    pub tables: Vec<(String, String)>,
}

/// The objects in `pg_restore --list` output: lines `ID; TABLEOID OID DESC SCHEMA NAME OWNER`.
/// A name with a space in it is read as far as the listing allows (the owner is its last word).
#[must_use]
pub fn from_listing(listing: &str) -> Objects {
    let mut objects = Objects::default();
    for line in listing.lines().filter(|l| !l.starts_with(';')) {
        let Some(entry) = entry_text(line) else {
            continue;
        };
        if let Some(rest) = entry.strip_prefix("SCHEMA - ") {
            objects.schemas.push(without_owner(rest));
        } else if let Some(rest) = entry.strip_prefix("EXTENSION - ") {
            objects.extensions.push(rest.trim_end().to_string());
        } else if let Some(rest) = entry
            .strip_prefix("TABLE ")
            .filter(|r| !r.starts_with("DATA "))
        {
            if let Some((schema, rest)) = rest.split_once(' ') {
                objects
                    .tables
                    .push((schema.to_string(), without_owner(rest)));
            }
        }
    }
    objects
}

/// The part of a listing line after `ID; TABLEOID OID `.
fn entry_text(line: &str) -> Option<&str> {
    let (id, rest) = line.split_once("; ")?;
    id.trim().parse::<u64>().ok()?;
    let mut rest = rest;
    for _ in 0..2 {
        let (number, after) = rest.split_once(' ')?;
        number.parse::<u64>().ok()?;
        rest = after;
    }
    Some(rest)
}

/// `name owner` without its owner (the last word; empty when the entry has none).
fn without_owner(rest: &str) -> String {
    match rest.rsplit_once(' ') {
        Some((name, _owner)) => name.to_string(),
        None => rest.to_string(),
    }
}

/// The objects a plain SQL dump creates before its first `COPY` (or its end, or
/// [`PLAIN_HEAD_LIMIT`] bytes): `CREATE SCHEMA`, `CREATE EXTENSION`, `CREATE TABLE`.
///
/// # Errors
/// The dump cannot be read.
pub fn from_plain_sql(sql: &mut dyn std::io::Read) -> std::io::Result<Objects> {
    let mut objects = Objects::default();
    let mut reader = std::io::BufReader::new(std::io::Read::take(sql, PLAIN_HEAD_LIMIT));
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        if text.starts_with("COPY ") {
            break;
        }
        plain_statement(&text, &mut objects);
    }
    Ok(objects)
}

/// Adds what one line of pg_dump's SQL creates.
fn plain_statement(line: &str, objects: &mut Objects) {
    if let Some(rest) = line.strip_prefix("CREATE SCHEMA ") {
        if let Some((name, _)) = identifier(rest) {
            objects.schemas.push(name);
        }
    } else if let Some(rest) = line.strip_prefix("CREATE EXTENSION ") {
        let rest = rest.strip_prefix("IF NOT EXISTS ").unwrap_or(rest);
        if let Some((name, _)) = identifier(rest) {
            objects.extensions.push(name);
        }
    } else if let Some(rest) = line.strip_prefix("CREATE TABLE ") {
        let Some((schema, rest)) = identifier(rest) else {
            return;
        };
        if let Some((table, _)) = rest.strip_prefix('.').and_then(identifier) {
            objects.tables.push((schema, table));
        }
    }
}

/// One SQL identifier at the start of `s` (quoted, or a plain word), and what follows it.
fn identifier(s: &str) -> Option<(String, &str)> {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            if c != '"' {
                name.push(c);
            } else if quoted[i + 1..].starts_with('"') {
                name.push('"');
                chars.next();
            } else {
                return Some((name, &quoted[i + 1..]));
            }
        }
        return None;
    }
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .unwrap_or(s.len());
    (end > 0).then(|| (s[..end].to_string(), &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_names_schemas_extensions_and_tables() {
        let listing = ";\n; Archive created at 2026-11-29 09:00:00 UTC\n;\n\
            6; 2615 16385 SCHEMA - app app\n\
            2; 3079 16386 EXTENSION - pgcrypto \n\
            3453; 0 0 COMMENT - EXTENSION pgcrypto \n\
            215; 1259 16424 TABLE public orders app\n\
            216; 1259 16430 TABLE app my table app\n\
            3460; 0 16424 TABLE DATA public orders app\n\
            ;217; 1259 16440 TABLE public skipped app\n";
        let o = from_listing(listing);
        assert_eq!(o.schemas, ["app"]);
        assert_eq!(o.extensions, ["pgcrypto"]);
        assert_eq!(
            o.tables,
            [
                ("public".to_string(), "orders".to_string()),
                ("app".to_string(), "my table".to_string())
            ]
        );
    }

    #[test]
    fn plain_sql_is_read_up_to_its_first_data() {
        let sql = "SET x = 1;\nCREATE SCHEMA \"My \"\"S\"\"\";\n\
            CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public;\n\
            CREATE TABLE public.orders (\n    id integer\n);\n\
            CREATE TABLE \"My \"\"S\"\"\".\"T 1\" (a int);\n\
            COPY public.orders (id) FROM stdin;\nCREATE TABLE public.after (a int);\n";
        let o = from_plain_sql(&mut sql.as_bytes()).unwrap();
        assert_eq!(o.schemas, ["My \"S\""]);
        assert_eq!(o.extensions, ["pgcrypto"]);
        assert_eq!(
            o.tables,
            [
                ("public".to_string(), "orders".to_string()),
                ("My \"S\"".to_string(), "T 1".to_string())
            ]
        );
    }
}
