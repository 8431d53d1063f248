//! Restores of SQL that looks like transaction control or COPY without being it: a PL/pgSQL
//! function whose body ends with `END;` on its own line, a procedure that runs `COMMIT;`, a
//! comment holding a `COMMIT;` line, a function body with `COPY ... FROM stdin;`, next to a
//! large object (whose data pg_dump wraps in its own `BEGIN;` ... `COMMIT;`). aos-backup must
//! restore them exactly as bare `pg_restore` does, from its own backup and from a plain
//! `pg_dump | gzip` file.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::cmd::Cmd;
use crate::harness::server;
use crate::support::pg_tool;
use crate::support::tempdir;

const SCHEMA: &str = "SET client_min_messages = warning;
CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  RETURN 42;
END;
$$;
CREATE PROCEDURE p() LANGUAGE plpgsql AS $$
BEGIN
  COMMIT;
END;
$$;
COMMENT ON FUNCTION f() IS 'a
COMMIT;
b';
CREATE TABLE staging (x text);
CREATE FUNCTION load() RETURNS void LANGUAGE plpgsql AS $body$
BEGIN
  EXECUTE $q$
COPY staging FROM stdin;
$q$;
END;
$body$;
SELECT lo_from_bytea(0, 'large object bytes');
CREATE TABLE t (x text DEFAULT 'one
END;
two');
INSERT INTO t VALUES ('COMMIT;'), (E'a\\nCOMMIT;\\nb');
CREATE FUNCTION atomic(a int) RETURNS int LANGUAGE sql
BEGIN ATOMIC
  SELECT a + 1;
  SELECT CASE WHEN a > 0 THEN a + 2 ELSE 0 END;
END;
";

/// The schema, every row and large object, and what `f()` returns.
fn snapshot(db: &str) -> (String, String, String) {
    let pg = server();
    let f = pg.psql(db, "SELECT f() || ' ' || atomic(1)");
    (pg.dump_schema(db), pg.table_contents(db), f)
}

/// `aos-backup restore --yes FILE --from-database SRC` into a new database: its snapshot.
fn restored(file: &Path, source: &str) -> (String, String, String) {
    let pg = server();
    let target = pg.create_db("sqllex_target");
    let out = Cmd::new()
        .args(["restore", "--yes", "--from-database", source])
        .arg(file)
        .env("DATABASE_URL", pg.socket_url(&target))
        .run();
    out.assert_success();
    let snap = snapshot(&target);
    pg.drop_db(&target);
    snap
}

#[test]
fn function_bodies_comments_and_large_objects_restore_as_pg_restore_restores_them() {
    let pg = server();
    let work = tempdir();
    let source = pg.create_db("sqllex_src");
    pg.psql(&source, SCHEMA);

    // The reference: bare pg_restore of a custom archive into an empty database.
    let custom = work.path().join("source.dump");
    fs::write(&custom, pg_tool("pg_dump", &["-Fc"], &source)).unwrap();
    let reference_db = pg.create_db("sqllex_ref");
    pg_tool("pg_restore", &[&custom.to_string_lossy()], &reference_db);
    let expected = snapshot(&reference_db);
    pg.drop_db(&reference_db);
    assert_eq!(expected.2.trim(), "42 3", "{expected:?}");
    assert!(expected.0.contains("\nEND;\n$$;"), "{}", expected.0);
    assert!(expected.0.contains("\n  COMMIT;\n"), "{}", expected.0);

    // aos-backup's own backup of the database.
    let backup = Cmd::new()
        .arg("backup")
        .env("DATABASE_URL", pg.socket_url(&source));
    let out = backup.run();
    out.assert_success();
    let file = backup.dir().join(out.stdout_trimmed());
    assert_eq!(
        restored(&file, &source),
        expected,
        "from aos-backup's backup"
    );

    // A plain `pg_dump | gzip` file.
    let plain = work.path().join("source.sql.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&pg_tool("pg_dump", &[], &source)).unwrap();
    fs::write(&plain, gz.finish().unwrap()).unwrap();
    assert_eq!(restored(&plain, &source), expected, "from a plain SQL dump");

    pg.drop_db(&source);
}
