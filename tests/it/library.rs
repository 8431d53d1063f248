//! The library API (`aos_backup::Engine`) against a real server: what the command line does,
//! without it, with typed reports and errors; and `examples/library.rs` run as a user would.

use crate::harness::{self, server};
use crate::support::tempdir;
use aos_backup::ops::list::ListOptions;
use aos_backup::ops::verify::{Selection, VerifyOptions};
use aos_backup::{Engine, Kind};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn an_engine_backs_up_lists_and_verifies_with_typed_reports() {
    let pg = server();
    let db = pg.create_db("lib");
    pg.psql(
        &db,
        "SET ROLE app; CREATE TABLE t (i int); INSERT INTO t SELECT generate_series(1, 500);",
    );
    let dir = tempdir();
    let engine = Engine::new(&pg.tcp_url(&db), dir.path())
        .unwrap()
        .with_pg_bin(harness::pg_bin());
    let rt = runtime();
    let report = rt
        .block_on(engine.backup(&engine.backup_options().unwrap()))
        .unwrap();
    assert!(report.path.starts_with(dir.path()) && report.path.exists());
    assert_eq!(report.meta.database, db);
    assert!(report.meta.size_bytes > 0);

    let list = engine
        .list(&ListOptions {
            database: Some(db.clone()),
        })
        .unwrap();
    assert_eq!(list.entries.len(), 1);
    assert_eq!(list.entries[0].path, report.path);

    let verified = rt
        .block_on(engine.verify(&VerifyOptions {
            selection: Selection::One {
                target: "latest".into(),
                database: Some(db.clone()),
            },
            keys: Default::default(),
        }))
        .unwrap();
    assert_eq!(verified.results.len(), 1);
    assert!(verified.results[0].ok, "{:?}", verified.results[0]);
}

#[test]
fn library_errors_carry_a_kind_a_hint_and_their_cause() {
    let dir = tempdir();
    let bad = Engine::new("postgresql://u@h/db?sslmode=sometimes", dir.path()).unwrap_err();
    assert_eq!(bad.kind, Kind::Usage, "{bad}");
    assert_eq!(bad.exit_code().code(), 2);

    // Nothing listens on port 1: a connection error, with a hint and the chain kept.
    let engine = Engine::new("postgresql://u:Secret-Pw-42@127.0.0.1:1/db", dir.path())
        .unwrap()
        .with_pg_bin(harness::pg_bin());
    let err = runtime()
        .block_on(engine.backup(&engine.backup_options().unwrap()))
        .unwrap_err();
    assert_eq!(err.kind, Kind::Connection, "{err}");
    assert!(err.hint.is_some(), "{err}");
    assert!(std::error::Error::source(&err).is_some());
    assert!(!err.message.contains("Secret-Pw-42"), "{err}");
    assert!(
        crate::support::names_if_any(dir.path()).is_empty()
            || crate::support::backup_names(dir.path()).is_empty(),
        "a failed backup leaves no backup"
    );

    let no_conn = Engine::for_folder(dir.path());
    assert_eq!(no_conn.backup_options().unwrap_err().kind, Kind::Usage);
}

#[test]
fn the_library_example_backs_up_lists_and_verifies() {
    let pg = server();
    let db = pg.create_db("libex");
    pg.psql(
        &db,
        "SET ROLE app; CREATE TABLE t (i int); INSERT INTO t VALUES (1);",
    );
    let dir = tempdir();
    let folder = dir.path().join("backups");
    let out = std::process::Command::new(env!("CARGO"))
        .args(["run", "--quiet", "--example", "library", "--"])
        .arg(&folder)
        .env("DATABASE_URL", pg.tcp_url(&db))
        .env("PG_BIN", harness::pg_bin())
        .env(
            "PATH",
            format!(
                "{}:{}",
                harness::pg_bin().display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with(&format!("backed up {db} into ")),
        "{stdout}"
    );
    assert!(lines[1].starts_with("1 backup(s)"), "{stdout}");
    assert!(lines[2].contains(": ok ("), "{stdout}");
}

#[test]
fn an_engine_plans_a_restore_then_restores_only_when_confirmed() {
    let pg = server();
    let db = pg.create_db("libsrc");
    pg.psql(
        &db,
        "SET ROLE app; CREATE TABLE t (i int); INSERT INTO t SELECT generate_series(1, 50);",
    );
    let dir = tempdir();
    let source = Engine::new(&pg.tcp_url(&db), dir.path())
        .unwrap()
        .with_pg_bin(harness::pg_bin());
    let rt = runtime();
    let backup = rt
        .block_on(source.backup(&source.backup_options().unwrap()))
        .unwrap();
    // Change the source, then restore its backup over it: the plan asks for a confirmation.
    pg.psql(&db, "SET ROLE app; INSERT INTO t VALUES (999);");
    let options = source.restore_options("latest").unwrap();
    let plan = rt.block_on(source.plan_restore(&options)).unwrap();
    assert_eq!(plan.target.database, db);
    assert!(plan.confirmation_needed().is_some(), "{plan:?}");
    // A plan holds the folder's lock and its connection until it is executed or dropped.
    drop(plan);

    let refused = rt
        .block_on(source.restore(&options, |_| false))
        .unwrap_err();
    assert_eq!(refused.kind, Kind::Refused, "{refused}");
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM t").trim(),
        "51",
        "nothing changed"
    );

    let report = rt.block_on(source.restore(&options, |_| true)).unwrap();
    assert_eq!(report.database, db);
    assert_eq!(report.path, backup.path);
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM t").trim(),
        "50",
        "restored"
    );
}
