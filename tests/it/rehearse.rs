//! Restores you can rehearse, against the real server: `restore --dry-run` (changes nothing,
//! takes no lock, lists each table), the automatic safety backup (and a folder it cannot be
//! written to), `--target-db` (with `--create`, a weird name, a missing database) and `--swap`
//! (success, a failure before the rename, sessions on the target, a role without CREATEDB).

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cmd::{Cmd, Output};
use crate::harness::server;
use crate::support::{filled_db, names_if_any, tempdir, Blocker};

/// `aos-backup` with DATABASE_URL naming `db` (the app role over TCP) and BACKUP_DIR `dir`.
fn aos(db: &str, dir: &Path) -> Cmd {
    Cmd::new()
        .env("DATABASE_URL", server().tcp_url(db))
        .env("BACKUP_DIR", dir)
}

/// Backs `db` up into `dir`; returns the new backup's path.
fn backup(db: &str, dir: &Path, extra: &[&str]) -> PathBuf {
    let out = aos(db, dir).arg("backup").args(extra).run();
    out.assert_success();
    PathBuf::from(out.stdout_trimmed())
}

/// `SELECT` one value in `db`.
fn value(db: &str, sql: &str) -> String {
    server().psql(db, sql).trim().to_string()
}

/// The entry for `schema.table` in one of the preview's table lists.
fn table<'a>(list: &'a Value, schema: &str, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|t| t["schema"] == schema && t["table"] == name)
        .unwrap_or_else(|| panic!("{schema}.{name} not in {list}"))
}

fn dry_run(db: &str, dir: &Path, extra: &[&str]) -> Output {
    aos(db, dir)
        .args(["--json", "restore", "--dry-run", "latest"])
        .args(extra)
        .run()
}

#[test]
fn a_dry_run_changes_nothing_and_shows_each_table() {
    let db = filled_db("rehearse_dry");
    let dir = tempdir();
    let file = backup(&db, dir.path(), &[]);
    server().psql(
        &db,
        "SET ROLE app; INSERT INTO small VALUES (3);
         CREATE SCHEMA extra_schema; CREATE TABLE extra_schema.only_here (x int);
         INSERT INTO extra_schema.only_here VALUES (1), (2);",
    );
    let before = names_if_any(dir.path());
    let out = dry_run(&db, dir.path(), &[]);
    out.assert_success();
    let j = out.json();
    assert_eq!(j["dry_run"], true, "{out}");
    let id = file.file_name().unwrap().to_str().unwrap();
    assert!(id.contains(j["backup"]["id"].as_str().unwrap()), "{out}");
    assert_eq!(j["backup"]["database"], db.as_str());
    assert_eq!(j["backup"]["checksum"]["status"], "verified", "{out}");
    assert_eq!(j["backup"]["format"], "custom");
    assert_eq!(j["backup"]["encryption"], "none");
    assert!(j["backup"]["age_seconds"].as_i64().unwrap() >= 0);
    assert!(j["backup"]["size_bytes"].as_u64().unwrap() > 0);
    assert_eq!(j["target"]["database"], db.as_str());
    assert_eq!(j["target"]["tables"], 4);
    assert!(j["target"]["size_bytes"].as_u64().unwrap() > 0);
    let small = table(&j["plan"]["replaced"], "public", "small");
    assert_eq!(small["rows_now"], 3, "{out}");
    assert_eq!(
        small["rows_in_backup"], 2,
        "the backup recorded its row counts:\n{out}"
    );
    assert_eq!(
        table(&j["plan"]["replaced"], "public", "big")["rows_now"],
        20000
    );
    let kept = table(&j["plan"]["kept"], "extra_schema", "only_here");
    assert_eq!(kept["rows_now"], 2);
    assert_eq!(kept["rows_in_backup"], Value::Null);
    assert_eq!(j["plan"]["created"], serde_json::json!([]));
    assert_eq!(j["safety_backup"], true);
    let question = j["confirmation"]["question"].as_str().unwrap();
    assert!(question.contains("holds 4 tables"), "{out}");
    assert_eq!(j["confirmation"]["given"], false);

    // Nothing changed: the data, the folder.
    assert_eq!(value(&db, "SELECT count(*) FROM small"), "3");
    assert_eq!(
        value(&db, "SELECT count(*) FROM extra_schema.only_here"),
        "2"
    );
    assert_eq!(names_if_any(dir.path()), before, "{out}");

    // The text says the same.
    let out = aos(&db, dir.path())
        .args(["restore", "--dry-run", "latest"])
        .run();
    out.assert_success();
    for needle in [
        "Dry run: nothing was changed",
        "checksum: verified",
        "public.small: rows now 3, in the backup 2",
        "Tables only in the target (they stay)",
        "extra_schema.only_here: rows now 2\n",
        "Confirmation asked",
        "Safety backup: yes",
    ] {
        assert!(out.stdout.contains(needle), "{needle:?}:\n{out}");
    }
}

#[test]
fn a_dry_run_takes_no_lock() {
    let db = filled_db("rehearse_nolock");
    let dir = tempdir();
    backup(&db, dir.path(), &[]);
    // Another run holds the folder's lock (as a backup in progress does).
    let lock = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.path().join(".aos-backup.lock"))
        .unwrap();
    // SAFETY: flock on a descriptor we own.
    assert_eq!(
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    let out = dry_run(&db, dir.path(), &[]);
    out.assert_success();
    // A real restore is held back by the same lock.
    let out = aos(&db, dir.path())
        .args(["restore", "--yes", "latest"])
        .run();
    out.assert_code(5);
    drop(lock);
}

#[test]
fn a_dry_run_lists_the_guards_that_would_fire() {
    let source = filled_db("rehearse_guard_src");
    let target = filled_db("rehearse_guard_dst");
    server().psql(&target, "SET ROLE app; CREATE TABLE mine (a int);");
    let dir = tempdir();
    let file = backup(&source, dir.path(), &["--format", "plain"]);
    let _session = Blocker::lock(&target, "mine");
    let out = aos(&target, dir.path())
        .args(["--json", "restore", "--dry-run", "--from-database", &source])
        .arg(&file)
        .run();
    out.assert_success();
    let j = out.json();
    let guards: Vec<&str> = j["guards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["guard"].as_str().unwrap())
        .collect();
    assert!(guards.contains(&"other_database"), "{out}");
    assert!(guards.contains(&"other_sessions"), "{out}");
    assert_eq!(j["backup"]["format"], "plain");
    // The plain dump's head names its tables: the target's own table stays (locked by the other
    // session, it is not counted, and the preview does not wait for it).
    assert_eq!(
        table(&j["plan"]["kept"], "public", "mine")["rows_now"],
        Value::Null
    );
    assert_eq!(
        table(&j["plan"]["replaced"], "public", "big")["rows_now"],
        20000
    );
    assert!(j["target"]["other_sessions"][0]
        .as_str()
        .unwrap()
        .contains("pid"));
}

#[test]
fn a_dry_run_of_a_damaged_backup_says_a_restore_would_refuse_it() {
    let db = filled_db("rehearse_damaged");
    let dir = tempdir();
    let file = backup(&db, dir.path(), &[]);
    let mut bytes = fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&file, bytes).unwrap();
    let out = dry_run(&db, dir.path(), &[]);
    out.assert_code(4);
    let j = out.json();
    assert_eq!(j["backup"]["checksum"]["status"], "failed", "{out}");
    assert!(out.stderr.contains("would be refused"), "{out}");
    assert_eq!(value(&db, "SELECT count(*) FROM big"), "20000");
}

#[test]
fn a_dry_run_names_the_schemas_and_extensions_a_backup_creates() {
    let db = filled_db("rehearse_objects");
    server().psql(
        &db,
        "CREATE EXTENSION IF NOT EXISTS pgcrypto; CREATE SCHEMA app_data AUTHORIZATION app;
         SET ROLE app; CREATE TABLE app_data.t (a int);",
    );
    let dir = tempdir();
    backup(&db, dir.path(), &[]);
    let target = server().create_db("rehearse_objects_dst");
    server().psql(&target, "SET ROLE app; CREATE TABLE keep_me (a int);");
    let out = aos(&target, dir.path())
        .args([
            "--json",
            "restore",
            "--dry-run",
            "--from-database",
            &db,
            "latest",
        ])
        .run();
    out.assert_success();
    let j = out.json();
    assert_eq!(
        j["plan"]["schemas_created"],
        serde_json::json!(["app_data"]),
        "{out}"
    );
    assert_eq!(
        j["plan"]["extensions_created"],
        serde_json::json!(["pgcrypto"]),
        "{out}"
    );
    assert_eq!(
        table(&j["plan"]["created"], "app_data", "t")["rows_now"],
        Value::Null
    );
    assert_eq!(
        value(
            &target,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'app_data'"
        ),
        "0"
    );
}

/// The id in `restore`'s line `to undo this restore: aos-backup restore ID ...`.
fn undo_args(out: &Output) -> Vec<String> {
    let line = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("to undo this restore: aos-backup "))
        .unwrap_or_else(|| panic!("no undo command:\n{out}"));
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn a_restore_over_tables_takes_a_safety_backup_that_undoes_it() {
    let db = filled_db("rehearse_safety");
    let dir = tempdir();
    backup(&db, dir.path(), &[]);
    server().psql(&db, "SET ROLE app; INSERT INTO small VALUES (42);");
    let out = aos(&db, dir.path())
        .args(["restore", "--yes", "latest"])
        .run();
    out.assert_success();
    assert!(out.stdout.contains("safety backup of"), "{out}");
    assert_eq!(value(&db, "SELECT count(*) FROM small WHERE a = 42"), "0");
    let safety: Vec<String> = names_if_any(dir.path())
        .into_iter()
        .filter(|n| n.contains("-pre-restore.") && !n.ends_with(".meta.json"))
        .collect();
    assert_eq!(safety.len(), 1, "{out}");
    let meta = crate::support::read_sidecar(&dir.path().join(&safety[0]));
    assert_eq!(meta["label"], "pre-restore");
    assert_eq!(meta["database"], db.as_str());

    // The command it printed undoes the restore.
    let undo = undo_args(&out);
    assert_eq!(undo[0], "restore", "{out}");
    let out = aos(&db, dir.path())
        .args(&undo)
        .args(["--yes", "--no-safety-backup"])
        .run();
    out.assert_success();
    assert_eq!(value(&db, "SELECT count(*) FROM small WHERE a = 42"), "1");
    assert!(
        out.stdout.is_empty(),
        "no safety backup was asked for:\n{out}"
    );

    // --json names it too.
    let out = aos(&db, dir.path())
        .args(["--json", "restore", "--yes", "latest"])
        .run();
    out.assert_success();
    let j = out.json();
    // Within the same second as the first safety backup, its id takes a `-2`.
    let id = j["safety_backup"]["id"].as_str().unwrap();
    assert!(
        id.ends_with("-pre-restore") || id.contains("-pre-restore-"),
        "{out}"
    );
    assert!(j["safety_backup"]["undo"]
        .as_str()
        .unwrap()
        .starts_with("aos-backup restore "));
}

#[test]
fn no_safety_backup_when_turned_off_or_when_the_target_is_empty() {
    let db = filled_db("rehearse_nosafety");
    let dir = tempdir();
    backup(&db, dir.path(), &[]);
    let count = || names_if_any(dir.path()).len();
    let before = count();
    let out = aos(&db, dir.path())
        .args(["restore", "--yes", "--no-safety-backup", "latest"])
        .run();
    out.assert_success();
    let out = aos(&db, dir.path())
        .env("BACKUP_SAFETY_BACKUP", "false")
        .args(["restore", "--yes", "latest"])
        .run();
    out.assert_success();
    let empty = server().create_db("rehearse_nosafety_empty");
    let out = aos(&empty, dir.path())
        .args(["restore", "--from-database", &db, "latest"])
        .run();
    out.assert_success();
    assert_eq!(count(), before, "{out}");
    assert!(out.stdout.is_empty(), "{out}");
}

#[test]
fn a_safety_backup_that_cannot_be_written_stops_the_restore() {
    let db = filled_db("rehearse_safety_full");
    let source = tempdir();
    let file = backup(&db, source.path(), &[]);
    server().psql(&db, "SET ROLE app; INSERT INTO small VALUES (42);");
    // The backup folder: a tiny tmpfs, its lock file made, then filled up.
    let work = tempdir();
    let full = work.path().join("full");
    let mounted = crate::support::Tmpfs::mount(&full, "256k").expect(
        "this test fills a 256k tmpfs: run the tests as root where `mount -t tmpfs` is allowed",
    );
    fs::write(mounted.dir.join(".aos-backup.lock"), "").unwrap();
    let filler = vec![0u8; 4096];
    let mut f = fs::File::create(mounted.dir.join("filler")).unwrap();
    while std::io::Write::write_all(&mut f, &filler).is_ok() {}
    drop(f);
    let out = aos(&db, &mounted.dir)
        .args(["restore", "--yes"])
        .arg(&file)
        .run();
    out.assert_code(1);
    assert!(
        out.stderr.contains("the safety backup of database")
            && out.stderr.contains("the restore did not start"),
        "{out}"
    );
    assert!(!out.stderr.to_lowercase().contains("damaged"), "{out}");
    assert_eq!(value(&db, "SELECT count(*) FROM small WHERE a = 42"), "1");
    drop(mounted);
}

#[test]
fn retention_spares_safety_backups_for_their_time() {
    use crate::support::fabricate;
    let db = filled_db("rehearse_prune");
    let dir = tempdir();
    let made = backup(&db, dir.path(), &[]);
    let d = dir.path();
    let (young, _) = fabricate(&made, d, "2024-03-28T10:00:00Z", Some("pre-restore"));
    let (old, _) = fabricate(&made, d, "2024-03-10T10:00:00Z", Some("pre-restore"));
    let (plain, _) = fabricate(&made, d, "2024-03-29T10:00:00Z", None);
    let (newest, _) = fabricate(&made, d, "2024-03-31T11:00:00Z", None);
    fs::remove_file(&made).unwrap();
    fs::remove_file(crate::support::sidecar(&made)).unwrap();
    let prune = |extra: &[(&str, &str)]| {
        let mut cmd = Cmd::new()
            .env("BACKUP_DIR", d)
            .env("AOS_BACKUP_NOW", "2024-03-31T12:00:00Z")
            .args([
                "--json",
                "prune",
                "--dry-run",
                "--all-databases",
                "--keep-last",
                "1",
            ]);
        for (k, v) in extra {
            cmd = cmd.env(k, v);
        }
        let out = cmd.run();
        out.assert_success();
        out.json()
    };
    let action = |plan: &Value, id: &str| {
        plan["plan"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .map(|p| {
                (
                    p["action"].as_str().unwrap().to_string(),
                    p["reasons"].clone(),
                )
            })
            .unwrap_or_else(|| panic!("{id} not in {plan}"))
    };
    let plan = prune(&[]);
    assert_eq!(action(&plan, &newest).0, "keep");
    assert_eq!(
        action(&plan, &young),
        ("keep".to_string(), serde_json::json!(["safety-backup"]))
    );
    assert_eq!(action(&plan, &old).0, "delete");
    assert_eq!(action(&plan, &plain).0, "delete");
    // A shorter time spares it no longer.
    let plan = prune(&[("BACKUP_SAFETY_BACKUP_KEEP", "2d")]);
    assert_eq!(action(&plan, &young).0, "delete");
}

/// Creates database `name` (any characters) owned by the app role.
fn create_named_db(name: &str) {
    server().psql(
        "postgres",
        &format!(
            "CREATE DATABASE {} OWNER app",
            crate::harness::quote_ident(name)
        ),
    );
}

#[test]
fn target_db_restores_into_another_database_of_the_server() {
    let source = filled_db("rehearse_tdb_src");
    let dir = tempdir();
    let file = backup(&source, dir.path(), &[]);
    let weird = format!("We\"ird db-Ω {}", std::process::id());
    create_named_db(&weird);
    let out = aos(&source, dir.path())
        .args([
            "restore",
            "--from-database",
            &source,
            "--target-db",
            &weird,
            "latest",
        ])
        .run();
    out.assert_success();
    assert_eq!(value(&weird, "SELECT count(*) FROM big"), "20000");

    // The guards apply to that database: it now holds tables, so a restore asks first.
    server().psql(&weird, "SET ROLE app; INSERT INTO small VALUES (7);");
    let out = aos(&source, dir.path())
        .args([
            "restore",
            "--from-database",
            &source,
            "--target-db",
            &weird,
            "latest",
        ])
        .run();
    out.assert_code(3);
    assert!(out.stderr.contains(&format!("{weird:?}")), "{out}");
    assert_eq!(value(&weird, "SELECT count(*) FROM small WHERE a = 7"), "1");
    // Without --from-database, a backup of another database is refused for it.
    let out = aos(&source, dir.path())
        .args(["restore", "--yes", "--target-db", &weird])
        .arg(&file)
        .run();
    out.assert_code(3);
    assert!(out.stderr.contains("--from-database"), "{out}");
    server().drop_db(&weird);
}

#[test]
fn target_db_that_is_missing_is_refused_unless_created() {
    let source = filled_db("rehearse_tdb_missing");
    let dir = tempdir();
    backup(&source, dir.path(), &[]);
    let name = format!("new 'db' \"{}\"", std::process::id());
    let out = aos(&source, dir.path())
        .args([
            "restore",
            "--from-database",
            &source,
            "--target-db",
            &name,
            "latest",
        ])
        .run();
    out.assert_code(2);
    assert!(
        out.stderr.contains("does not exist") && out.stderr.contains("--create"),
        "{out}"
    );
    let exists = || {
        value(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_database WHERE datname = {}",
                crate::harness::quote_literal(&name)
            ),
        )
    };
    assert_eq!(exists(), "0");

    // A dry run says it would be created, and creates nothing.
    let out = aos(&source, dir.path())
        .args(["--json", "restore", "--dry-run", "--from-database", &source])
        .args(["--target-db", &name, "--create", "latest"])
        .run();
    out.assert_success();
    let j = out.json();
    assert_eq!(j["target"]["create"], true, "{out}");
    assert_eq!(j["plan"]["replaced"], serde_json::json!([]), "{out}");
    assert_eq!(
        table(&j["plan"]["created"], "public", "big")["rows_in_backup"],
        20000
    );
    assert_eq!(exists(), "0");

    let out = aos(&source, dir.path())
        .args([
            "restore",
            "--from-database",
            &source,
            "--target-db",
            &name,
            "--create",
            "latest",
        ])
        .run();
    out.assert_success();
    assert_eq!(exists(), "1", "{out}");
    assert_eq!(value(&name, "SELECT count(*) FROM big"), "20000");
    assert_eq!(
        value(
            "postgres",
            &format!(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = {}",
                crate::harness::quote_literal(&name)
            )
        ),
        "app"
    );
    server().drop_db(&name);
}

/// The databases whose name starts with `prefix`.
fn databases_like(prefix: &str) -> Vec<String> {
    let out = value(
        "postgres",
        &format!(
            "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database \
             WHERE left(datname, {}) = {}",
            prefix.chars().count(),
            crate::harness::quote_literal(prefix)
        ),
    );
    out.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Writes row counts into `backup`'s sidecar (as a backup that records them does).
fn record_rows(backup: &Path, rows: &[(&str, u64)]) {
    let path = crate::support::sidecar(backup);
    let mut meta = crate::support::read_json(&path);
    meta["row_counts"] = rows
        .iter()
        .map(|(t, n)| serde_json::json!({"schema": "public", "table": t, "rows": n}))
        .collect();
    crate::support::write_json(&path, &meta);
}

#[test]
fn swap_restores_aside_checks_and_keeps_the_old_database() {
    let db = filled_db("rehearse_swap");
    let dir = tempdir();
    let file = backup(&db, dir.path(), &[]);
    record_rows(&file, &[("big", 20000), ("small", 2), ("other", 1)]);
    server().psql(
        &db,
        "SET ROLE app; INSERT INTO small VALUES (9); CREATE TABLE newer (a int);",
    );
    let out = aos(&db, dir.path())
        .args([
            "--json", "restore", "--yes", "--swap", "--jobs", "2", "latest",
        ])
        .run();
    out.assert_success();
    let j = out.json();
    assert_eq!(j["swap"]["tables_checked"], 3, "{out}");
    assert_eq!(j["swap"]["old_dropped"], false);
    assert_eq!(
        j["safety_backup"],
        Value::Null,
        "the old database is kept instead"
    );
    let old = j["swap"]["old"].as_str().unwrap().to_string();
    assert!(old.starts_with(&format!("{db}__aos_old_")), "{out}");
    // The target is the backup's copy, whole: the table made since is gone from it.
    assert_eq!(value(&db, "SELECT count(*) FROM small"), "2");
    assert_eq!(
        value(&db, "SELECT count(*) FROM pg_class WHERE relname = 'newer'"),
        "0"
    );
    // The old one is kept as it was.
    assert_eq!(value(&old, "SELECT count(*) FROM small"), "3");
    assert_eq!(
        databases_like(&format!("{db}__aos_swap_")),
        Vec::<String>::new()
    );
    // list names it next to the backup that replaced it, and how to drop it.
    let listed = aos(&db, dir.path()).args(["--json", "list"]).run();
    listed.assert_success();
    let entry = &listed.json()[0];
    assert_eq!(entry["swaps"][0]["old"], old.as_str(), "{listed}");
    assert_eq!(entry["swaps"][0]["database"], db.as_str(), "{listed}");
    assert_eq!(entry["swaps"][0]["old_dropped"], false, "{listed}");
    let listed = aos(&db, dir.path()).arg("list").run();
    assert!(
        listed.stdout.contains(&format!("kept:{old}")),
        "the table names the kept database: {listed}"
    );
    assert!(
        listed.stderr.contains(&format!("DROP DATABASE \"{old}\"")),
        "{listed}"
    );

    // The text names it and says how to drop it; --drop-old drops it.
    let out = aos(&db, dir.path())
        .args(["restore", "--yes", "--swap", "--drop-old", "latest"])
        .run();
    out.assert_success();
    assert!(out.stdout.contains("the old database was dropped"), "{out}");
    assert!(out.stdout.contains("safety backup of"), "{out}");
    assert_eq!(
        databases_like(&format!("{db}__aos_old_")),
        vec![old.clone()],
        "{out}"
    );
    // The dropped one is recorded as such, and no longer shown as kept.
    let listed = aos(&db, dir.path()).args(["--json", "list"]).run();
    let swaps = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == file.display().to_string())
        .unwrap()["swaps"]
        .clone();
    assert_eq!(swaps.as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(swaps[1]["old_dropped"], true, "{listed}");
    let listed = aos(&db, dir.path()).arg("list").run();
    assert_eq!(listed.stdout.matches("kept:").count(), 1, "{listed}");
    let out = aos(&db, dir.path())
        .args(["restore", "--yes", "--swap", "latest"])
        .run();
    out.assert_success();
    assert!(
        out.stdout.contains("the old database is kept as") && out.stdout.contains("DROP DATABASE"),
        "{out}"
    );
    // prune deletes the record of the swaps with its backup.
    let record = PathBuf::from(format!("{}.swaps.json", file.display()));
    assert!(record.is_file());
    backup(&db, dir.path(), &[]);
    let pruned = aos(&db, dir.path())
        .args(["prune", "--keep-last", "1"])
        .run();
    pruned.assert_success();
    assert!(!file.exists() && !record.exists(), "{}", record.display());
    // ...and says that the old database the record named stays on the server.
    assert!(
        pruned
            .stderr
            .contains(&format!("kept the old database \"{old}\""))
            && pruned.stderr.contains("stays on the server"),
        "{pruned}"
    );
    for name in databases_like(&format!("{db}__aos_")) {
        server().drop_db(&name);
    }
}

/// Autovacuum visits a freshly restored database within seconds, and a role without
/// `pg_read_all_stats` sees its worker as a session without user, type or state. The server ends
/// autovacuum workers itself for a rename, so a swap must not count them as sessions (a swap right
/// after a restore failed so in CI).
#[test]
fn an_autovacuum_worker_on_the_target_does_not_stop_a_swap() {
    let pg = crate::harness::busy_autovacuum_server();
    let db = pg.create_db("rehearse_swap_autovacuum");
    // Vacuum of this table is throttled to a crawl, so the worker stays on the database.
    pg.psql(
        &db,
        "SET ROLE app;
         CREATE TABLE slow (id int, t text) WITH (
             autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1,
             autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0,
             autovacuum_analyze_threshold = 0, autovacuum_analyze_scale_factor = 0);
         INSERT INTO slow SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;",
    );
    let dir = tempdir();
    let aos = || {
        Cmd::new()
            .env("DATABASE_URL", pg.tcp_url(&db))
            .env("BACKUP_DIR", dir.path())
    };
    aos().arg("backup").run().assert_success();
    pg.psql(&db, "SET ROLE app; DELETE FROM slow WHERE id % 2 = 0;");
    let workers = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = {} \
         AND backend_type = 'autovacuum worker'",
        crate::harness::quote_literal(&db)
    );
    let began = std::time::Instant::now();
    while pg.psql("postgres", &workers).trim() == "0" {
        assert!(
            began.elapsed() < std::time::Duration::from_secs(60),
            "no autovacuum worker came to {db} within a minute (autovacuum_naptime=1)"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = aos()
        .args(["--json", "restore", "--yes", "--swap", "latest"])
        .run();
    out.assert_success();
    let old = out.json()["swap"]["old"].as_str().unwrap().to_string();
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM slow").trim(),
        "20000",
        "{out}"
    );
    for name in [old, db] {
        pg.drop_db(&name);
    }
}

#[test]
fn a_swap_that_fails_before_the_rename_leaves_the_target_as_it_was() {
    let db = filled_db("rehearse_swap_fail");
    let dir = tempdir();
    let file = backup(&db, dir.path(), &[]);
    // A sidecar that disagrees with the dump: the copy restored aside does not match it.
    record_rows(&file, &[("big", 19999), ("small", 2)]);
    server().psql(&db, "SET ROLE app; INSERT INTO small VALUES (9);");
    let out = aos(&db, dir.path())
        .args(["restore", "--yes", "--swap", "latest"])
        .run();
    out.assert_code(1);
    assert!(
        out.stderr
            .contains("public.big: 20000 rows restored, 19999 at backup time")
            && out.stderr.contains("is as it was"),
        "{out}"
    );
    assert_eq!(value(&db, "SELECT count(*) FROM small"), "3");
    assert_eq!(
        databases_like(&format!("{db}__aos_")),
        Vec::<String>::new(),
        "{out}"
    );
}

/// An idle psql session of the app role on a database, open until dropped.
struct AppSession {
    child: std::process::Child,
    _stdin: std::process::ChildStdin,
}

impl AppSession {
    fn open(db: &str) -> AppSession {
        use std::io::{BufRead, BufReader, Write};
        use std::process::{Command, Stdio};
        let mut child = Command::new(server().bindir.join("psql"))
            .args(["-X", "-q", "-At", "-d"])
            .arg(server().tcp_url(db))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start psql");
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "SELECT 'ready';").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        AppSession {
            child,
            _stdin: stdin,
        }
    }
}

impl Drop for AppSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_swap_needs_the_target_free_of_other_sessions() {
    let db = filled_db("rehearse_swap_sessions");
    let dir = tempdir();
    backup(&db, dir.path(), &[]);
    server().psql(&db, "SET ROLE app; INSERT INTO small VALUES (9);");
    let session = AppSession::open(&db);
    let out = aos(&db, dir.path())
        .args(["restore", "--yes", "--swap", "latest"])
        .run();
    out.assert_code(3);
    assert!(
        out.stderr.contains("needs no other session")
            && out.stderr.contains("--terminate-sessions"),
        "{out}"
    );
    assert_eq!(
        databases_like(&format!("{db}__aos_")),
        Vec::<String>::new(),
        "{out}"
    );
    assert_eq!(value(&db, "SELECT count(*) FROM small"), "3");

    let out = aos(&db, dir.path())
        .args([
            "--json",
            "restore",
            "--yes",
            "--swap",
            "--terminate-sessions",
            "latest",
        ])
        .run();
    out.assert_success();
    assert_eq!(out.json()["swap"]["sessions_ended"], 1, "{out}");
    assert_eq!(value(&db, "SELECT count(*) FROM small"), "2");
    drop(session);
    for name in databases_like(&format!("{db}__aos_")) {
        server().drop_db(&name);
    }
}

#[test]
fn a_swap_without_createdb_is_refused_before_anything_changes() {
    let db = filled_db("rehearse_swap_priv");
    let dir = tempdir();
    backup(&db, dir.path(), &[]);
    let role = format!("nocreatedb_{}", std::process::id());
    server().psql(
        "postgres",
        &format!(
            "CREATE ROLE {role} LOGIN NOCREATEDB; ALTER DATABASE {} OWNER TO {role};",
            crate::harness::quote_ident(&db)
        ),
    );
    let url = server()
        .socket_url(&db)
        .replacen("postgres@", &format!("{role}@"), 1);
    let out = Cmd::new()
        .env("DATABASE_URL", url)
        .env("BACKUP_DIR", dir.path())
        .args([
            "restore",
            "--yes",
            "--swap",
            "--from-database",
            &db,
            "latest",
        ])
        .run();
    out.assert_code(3);
    assert!(
        out.stderr.contains("needs the CREATEDB privilege")
            && out
                .stderr
                .contains(&format!("role \"{role}\" lacks the CREATEDB privilege")),
        "{out}"
    );
    assert_eq!(databases_like(&format!("{db}__aos_")), Vec::<String>::new());
    server().psql(
        "postgres",
        &format!(
            "ALTER DATABASE {} OWNER TO app",
            crate::harness::quote_ident(&db)
        ),
    );
}

#[test]
fn a_swap_whose_copy_fails_validate_is_not_swapped_in_unless_forced() {
    let db = filled_db("rehearse_swap_validate");
    // A NOT VALID check that a row violates: the dump carries both, and validate finds it.
    server().psql(
        &db,
        "SET ROLE app; ALTER TABLE small ADD CONSTRAINT small_a_below_2 CHECK (a < 2) NOT VALID;",
    );
    let dir = tempdir();
    backup(&db, dir.path(), &[]);
    server().psql(&db, "SET ROLE app; INSERT INTO other VALUES ('since');");
    let out = aos(&db, dir.path())
        .args(["restore", "--yes", "--swap", "latest"])
        .run();
    out.assert_code(9);
    assert!(
        out.stderr.contains("not swapped in") && out.stderr.contains("is as it was"),
        "{out}"
    );
    assert_eq!(value(&db, "SELECT count(*) FROM other"), "2");
    assert_eq!(
        databases_like(&format!("{db}__aos_")),
        Vec::<String>::new(),
        "{out}"
    );

    let out = aos(&db, dir.path())
        .args(["--json", "restore", "--yes", "--swap", "--force", "latest"])
        .run();
    out.assert_success();
    assert_eq!(out.json()["validation"]["clean"], false, "{out}");
    assert_eq!(value(&db, "SELECT count(*) FROM other"), "1");
    for name in databases_like(&format!("{db}__aos_")) {
        server().drop_db(&name);
    }
}

#[test]
fn the_library_previews_a_restore_as_a_typed_plan() {
    let db = filled_db("rehearse_library");
    let dir = tempdir();
    backup(&db, dir.path(), &[]);
    server().psql(&db, "SET ROLE app; INSERT INTO small VALUES (5);");
    let engine = aos_backup::Engine::new(&server().tcp_url(&db), dir.path())
        .unwrap()
        .with_pg_bin(crate::harness::pg_bin());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let options = engine.restore_options("latest").unwrap();
    let plan = rt.block_on(engine.preview_restore(&options)).unwrap();
    assert_eq!(
        plan.backup.checksum,
        aos_backup::ops::restore::Checksum::Verified
    );
    assert!(plan.safety_backup);
    let preview = plan.preview.as_ref().expect("a preview");
    let small = preview
        .replaced
        .iter()
        .find(|t| t.table == "small")
        .unwrap();
    assert_eq!((small.rows_now, small.rows_in_backup), (Some(3), Some(2)));
    assert_eq!(value(&db, "SELECT count(*) FROM small"), "3");
}

/// A safety backup newer than every regular backup does not push the regular one out of
/// `--keep-last 1`: the backup just restored from survives the prune, and `latest` stays it.
#[test]
fn a_safety_backup_never_takes_the_newest_regular_backups_place() {
    let db = filled_db("rehearse_newest");
    let dir = tempdir();
    let regular = backup(&db, dir.path(), &[]);
    let out = aos(&db, dir.path())
        .args(["restore", "--yes", "latest"])
        .run();
    out.assert_success();
    let prune = aos(&db, dir.path())
        .args(["--json", "prune", "--keep-last", "1"])
        .run();
    prune.assert_success();
    assert!(regular.exists(), "the regular backup was pruned:\n{prune}");
    let safety: Vec<String> = names_if_any(dir.path())
        .into_iter()
        .filter(|n| n.contains("pre-restore") && !n.ends_with(".meta.json"))
        .collect();
    assert_eq!(
        safety.len(),
        1,
        "the young safety backup is kept: {safety:?}"
    );
    let dry = dry_run(&db, dir.path(), &[]);
    assert!(
        dry.stdout
            .contains(regular.file_name().unwrap().to_str().unwrap()),
        "latest is the regular backup:\n{dry}"
    );
}

#[test]
fn target_db_refuses_templates_and_impossible_names() {
    let db = filled_db("rehearse_tmpl");
    let dir = tempdir();
    backup(&db, dir.path(), &[]);
    for (name, code) in [("template1", 3), ("template0", 3), ("", 2)] {
        let out = aos(&db, dir.path())
            .args([
                "restore",
                "--yes",
                "--no-safety-backup",
                "--target-db",
                name,
                "latest",
            ])
            .args(["--from-database", &db])
            .run();
        out.assert_code(code);
        assert!(out.stderr.contains("hint:"), "{out}");
    }
    let long = "x".repeat(64);
    let out = aos(&db, dir.path())
        .args([
            "restore",
            "--yes",
            "--from-database",
            &db,
            "--target-db",
            &long,
            "--create",
            "latest",
        ])
        .run();
    out.assert_code(2);
    assert_eq!(
        value(
            "template1",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "0",
        "template1 gained nothing"
    );
}

#[test]
fn two_swaps_in_the_same_second_keep_both_old_databases() {
    let db = filled_db("rehearse_swap2");
    let dir = tempdir();
    backup(&db, dir.path(), &[]);
    let now = "2026-11-29T10:15:00Z";
    let mut olds = Vec::new();
    for _ in 0..2 {
        let out = aos(&db, dir.path())
            .env("AOS_BACKUP_NOW", now)
            .args([
                "--json",
                "restore",
                "--yes",
                "--swap",
                "--no-safety-backup",
                "latest",
            ])
            .run();
        out.assert_success();
        olds.push(out.json()["swap"]["old"].as_str().unwrap().to_string());
    }
    assert_eq!(
        olds,
        [
            format!("{db}__aos_old_20261129101500"),
            format!("{db}__aos_old_20261129101500_2")
        ]
    );
    assert_eq!(databases_like(&format!("{db}__aos_old_")), olds);
    assert_eq!(value(&db, "SELECT count(*) FROM small"), "2");
}
