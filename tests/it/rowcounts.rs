//! Row counts at backup time: the sidecar records the exact rows of every table pg_dump dumps,
//! counted on the snapshot pg_dump itself dumps, so rows written while the dump runs are in
//! neither.

use crate::cmd::Cmd;
use crate::harness::server;
use crate::support::{filled_db, read_sidecar, tempdir, wait_until};
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `aos-backup backup --json` of `db` into `dir`.
fn backup(dir: &Path, db: &str) -> Cmd {
    Cmd::new()
        .args(["backup", "--json"])
        .env("BACKUP_DIR", dir)
        .env("PG_BIN", &server().bindir)
        .env("DATABASE_URL", server().tcp_url(db))
}

fn counts(value: &Value) -> Value {
    value["row_counts"].clone()
}

#[test]
fn a_backup_records_the_exact_rows_of_every_dumped_table() {
    let pg = server();
    let db = pg.create_db("rowcounts_exact");
    pg.psql(
        &db,
        r#"SET ROLE app;
         CREATE SCHEMA "Odd ""Schema""";
         CREATE TABLE "Odd ""Schema"""."Mixed Case" (a int);
         INSERT INTO "Odd ""Schema"""."Mixed Case" SELECT generate_series(1, 7);
         CREATE TABLE public.empty (a int);
         CREATE UNLOGGED TABLE public.scratch (a int); INSERT INTO public.scratch VALUES (1), (2);
         CREATE TABLE public.measures (at date, v int) PARTITION BY RANGE (at);
         CREATE TABLE public.measures_2024 PARTITION OF public.measures FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         CREATE TABLE public.measures_2025 PARTITION OF public.measures FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         INSERT INTO public.measures SELECT '2024-03-01'::date + g, g FROM generate_series(1, 5) g;
         INSERT INTO public.measures VALUES ('2025-02-01', 1);
         CREATE MATERIALIZED VIEW public.mv AS SELECT * FROM public.measures;
         CREATE VIEW public.v AS SELECT 1 AS one;"#,
    );
    let dir = tempdir();
    let out = backup(dir.path(), &db).run();
    out.assert_success();
    let expected = json!([
        {"schema": "Odd \"Schema\"", "table": "Mixed Case", "rows": 7},
        {"schema": "public", "table": "empty", "rows": 0},
        {"schema": "public", "table": "measures_2024", "rows": 5},
        {"schema": "public", "table": "measures_2025", "rows": 1},
        {"schema": "public", "table": "scratch", "rows": 2},
    ]);
    assert_eq!(counts(&out.json()), expected, "{out}");
    let path = PathBuf::from(out.json()["path"].as_str().unwrap());
    assert_eq!(counts(&read_sidecar(&path)), expected);

    // pg_dump's parallel workers share the snapshot too.
    let parallel = backup(dir.path(), &db)
        .args(["--format", "directory", "--jobs", "2"])
        .run();
    parallel.assert_success();
    assert_eq!(counts(&parallel.json()), expected, "{parallel}");
    pg.drop_db(&db);
}

/// A `PG_BIN` whose pg_dump records its arguments in `args`, creates `started`, waits for `go`
/// to exist, then runs the real pg_dump.
fn held_pg_bin(bin: &Path, state: &Path) {
    let real = &server().bindir;
    for tool in ["pg_restore", "psql"] {
        std::os::unix::fs::symlink(real.join(tool), bin.join(tool)).unwrap();
    }
    let script = format!(
        "#!/bin/sh\n\
         if [ \"$1\" = --version ]; then exec '{real}/pg_dump' \"$@\"; fi\n\
         echo \"$@\" > '{state}/args'\n\
         touch '{state}/started'\n\
         while [ ! -e '{state}/go' ]; do sleep 0.05; done\n\
         exec '{real}/pg_dump' \"$@\"\n",
        real = real.display(),
        state = state.display()
    );
    let path = bin.join("pg_dump");
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn rows_written_while_the_dump_starts_are_neither_dumped_nor_counted() {
    let pg = server();
    let db = filled_db("rowcounts_snapshot");
    let (dir, bin, state) = (tempdir(), tempdir(), tempdir());
    held_pg_bin(bin.path(), state.path());
    let cmd = backup(dir.path(), &db).env("PG_BIN", bin.path());
    let child = cmd.spawn();
    wait_until(
        "pg_dump starts",
        Duration::from_secs(60),
        Some(&child),
        || state.path().join("started").exists(),
    );
    pg.psql(
        &db,
        "INSERT INTO big SELECT g, 'late' FROM generate_series(20001, 20500) g;
         DELETE FROM small;",
    );
    fs::write(state.path().join("go"), "").unwrap();
    let out = cmd.wait(child);
    out.assert_success();
    let args = fs::read_to_string(state.path().join("args")).unwrap();
    assert!(args.contains("--snapshot="), "{args}");
    let expected = json!([
        {"schema": "public", "table": "big", "rows": 20000},
        {"schema": "public", "table": "other", "rows": 1},
        {"schema": "public", "table": "small", "rows": 2},
    ]);
    assert_eq!(counts(&out.json()), expected, "{out}");

    let path = PathBuf::from(out.json()["path"].as_str().unwrap());
    let restored = pg.create_db("rowcounts_snapshot_restored");
    Cmd::new()
        .args(["restore", "--yes"])
        .consent_from_database_of(&path)
        .arg(&path)
        .env("BACKUP_DIR", dir.path())
        .env("PG_BIN", &pg.bindir)
        .env("DATABASE_URL", pg.tcp_url(&restored))
        .run()
        .assert_success();
    assert_eq!(
        pg.psql(
            &restored,
            "SELECT (SELECT count(*) FROM big) || ' ' || (SELECT count(*) FROM small)"
        ),
        "20000 2",
        "the dump holds the rows of the counted snapshot"
    );
    pg.drop_db(&db);
    pg.drop_db(&restored);
}

#[test]
fn a_server_that_exports_no_snapshot_still_backs_up_without_row_counts() {
    let pg = server();
    let db = filled_db("rowcounts_noexport");
    pg.psql(
        &db,
        "REVOKE EXECUTE ON FUNCTION pg_catalog.pg_export_snapshot() FROM PUBLIC",
    );
    let dir = tempdir();
    let out = backup(dir.path(), &db).run();
    out.assert_success();
    assert!(out.json().get("row_counts").is_none(), "{out}");
    assert!(
        out.stderr.contains("records no row counts") && out.stderr.contains("pg_export_snapshot"),
        "{out}"
    );
    let path = PathBuf::from(out.json()["path"].as_str().unwrap());
    assert!(read_sidecar(&path).get("row_counts").is_none());
    pg.drop_db(&db);
}

#[test]
fn a_pg_dump_that_cannot_import_the_snapshot_dumps_again_without_it() {
    let pg = server();
    let db = filled_db("rowcounts_elsewhere");
    let elsewhere = filled_db("rowcounts_elsewhere_other");
    // A pg_dump that reaches another database than our own connection (as a container's may).
    let bin = tempdir();
    let real = &pg.bindir;
    let script = format!(
        "#!/bin/sh\nexec '{}/pg_dump' \"$@\" '--dbname={}'\n",
        real.display(),
        pg.tcp_url(&elsewhere)
    );
    fs::write(bin.path().join("pg_dump"), script).unwrap();
    fs::set_permissions(
        bin.path().join("pg_dump"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    for tool in ["pg_restore", "psql"] {
        std::os::unix::fs::symlink(real.join(tool), bin.path().join(tool)).unwrap();
    }
    let dir = tempdir();
    let out = backup(dir.path(), &db).env("PG_BIN", bin.path()).run();
    out.assert_success();
    assert!(out.json().get("row_counts").is_none(), "{out}");
    assert!(
        out.stderr.contains("pg_dump could not use the snapshot")
            && out.stderr.contains("records no row counts"),
        "{out}"
    );
    pg.drop_db(&db);
    pg.drop_db(&elsewhere);
}

#[test]
fn row_counts_can_be_turned_off_and_a_drill_then_says_not_recorded() {
    let db = filled_db("rowcounts_off");
    let dir = tempdir();
    let out = backup(dir.path(), &db)
        .env("BACKUP_ROW_COUNTS", "false")
        .run();
    out.assert_success();
    let path = PathBuf::from(out.json()["path"].as_str().unwrap());
    assert_eq!(counts(&read_sidecar(&path)), Value::Null, "{out}");
    assert!(!out.stderr.contains("row counts"), "{out}");
    let drill = Cmd::new()
        .args(["--json", "drill", "latest"])
        .env("BACKUP_DIR", dir.path())
        .env("PG_BIN", &server().bindir)
        .env("DATABASE_URL", server().tcp_url(&db))
        .run();
    drill.assert_success();
    assert_eq!(drill.json()["row_counts"]["recorded"], false, "{drill}");
    let bad = backup(dir.path(), &db)
        .env("BACKUP_ROW_COUNTS", "maybe")
        .run();
    bad.assert_code(2);
    assert!(bad.stderr.contains("BACKUP_ROW_COUNTS"), "{bad}");
}
