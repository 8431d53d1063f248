//! `drill`: a backup restored into a scratch database (beside the live one, on another server,
//! or in an ephemeral cluster), its row counts and the user's queries checked, the scratch
//! database removed; RTO and RPO reported, the result written next to the backup and shown by
//! `list`; exit 10 when it did not restore, 11 when a check failed; the live database is never
//! the scratch one; a drill killed half-way leaves nothing the next drill does not remove.

use crate::cmd::{self, Cmd, Output};
use crate::harness::{quote_ident, server, APP_ROLE};
use crate::support::{filled_db, read_json, read_sidecar, tempdir, wait_until, write_json};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `aos-backup` for database `db` (as the app role over TCP), with its backups in `dir`.
fn aos(dir: &Path, db: &str) -> Cmd {
    let pg = server();
    Cmd::new()
        .env("BACKUP_DIR", dir)
        .env("DATABASE_URL", pg.tcp_url(db))
        .env("PG_BIN", &pg.bindir)
}

/// A backup of `db` in `dir`; its path.
/// A backup of `db`, labelled with the database's (unique) name unless `args` name it: drills of
/// parallel tests never share an id, so `scratch_of` sees only this test's scratch databases.
fn backup(dir: &Path, db: &str, args: &[&str]) -> PathBuf {
    let mut cmd = aos(dir, db).arg("backup").args(args);
    if !args.contains(&"--name") {
        cmd = cmd.args(["--name", db]);
    }
    let out = cmd.run();
    out.assert_success();
    PathBuf::from(out.stdout_trimmed())
}

fn drill_json(backup: &Path) -> PathBuf {
    PathBuf::from(format!("{}.drill.json", backup.display()))
}

/// The scratch databases (`aos_drill_…`) on the test server.
fn scratch_databases() -> Vec<String> {
    let out = server().psql(
        "postgres",
        "SELECT datname FROM pg_database WHERE datname LIKE 'aos\\_drill\\_%' ORDER BY 1",
    );
    out.lines().map(str::to_string).collect()
}

/// The scratch databases made for backup `id` (the test server is shared by parallel tests).
fn scratch_of(id: &str) -> Vec<String> {
    let prefix = format!("aos_drill_{}_", id.replace('-', "_"));
    scratch_databases()
        .into_iter()
        .filter(|d| d.starts_with(&prefix))
        .collect()
}

fn id_of(backup: &Path) -> String {
    read_sidecar(backup)["id"].as_str().unwrap().to_string()
}

#[test]
fn a_drill_passes_reports_rto_and_rpo_and_list_shows_it() {
    let db = filled_db("drill_pass");
    let dir = tempdir();
    let first = backup(dir.path(), &db, &[]);
    let second = backup(dir.path(), &db, &["--name", "second"]);
    let out = aos(dir.path(), &db)
        .args(["--json", "drill", "latest"])
        .run();
    out.assert_success();
    let r = out.json();
    assert_eq!(r["outcome"], "passed", "{out}");
    assert!(!out.stderr.contains("--from-database"), "no warning: {out}");
    assert!(r["rto_ms"].as_u64().is_some(), "{out}");
    assert!(r["rpo"]["backup_age_seconds"].as_i64().is_some(), "{out}");
    assert_eq!(r["rpo"]["complete_backups"], 2, "{out}");
    assert_eq!(r["rpo"]["largest_gap"]["to_id"], id_of(&second), "{out}");
    assert_eq!(r["backup"]["id"], id_of(&second));
    assert_eq!(r["scratch"]["kind"], "database");
    assert_eq!(r["scratch"]["removed"], true);
    assert_eq!(r["row_counts"]["recorded"], true);
    assert_eq!(r["row_counts"]["tables"], 3, "{out}");
    assert_eq!(r["row_counts"]["mismatches"], Value::Array(vec![]));
    let name = r["scratch"]["database"].as_str().unwrap();
    assert!(name.starts_with("aos_drill_"), "{name}");
    assert!(!scratch_databases().contains(&name.to_string()));
    let recorded = read_json(&drill_json(&second));
    assert_eq!(recorded["outcome"], "passed");
    assert!(!drill_json(&first).exists());

    let text = aos(dir.path(), &db).args(["drill", &id_of(&first)]).run();
    text.assert_success();
    let said = text.stdout_trimmed();
    assert!(
        said.contains("PASSED") && said.contains("RTO:") && said.contains("RPO:"),
        "{said}"
    );
    assert!(said.contains("3 tables match"), "{said}");

    let list = aos(dir.path(), &db).args(["--json", "list"]).run();
    list.assert_success();
    for e in list.json().as_array().unwrap() {
        assert_eq!(e["drill"]["outcome"], "passed", "{list}");
        assert!(e["drill"]["rto_ms"].as_u64().is_some(), "{list}");
    }
    let table = aos(dir.path(), &db).arg("list").run();
    assert!(table.stdout_trimmed().contains("drill:passed"), "{table}");

    // verify ignores the drill results; prune deletes each with its backup.
    aos(dir.path(), &db)
        .args(["verify", "--all"])
        .run()
        .assert_success();
    aos(dir.path(), &db)
        .args(["prune", "--keep-last", "1"])
        .run()
        .assert_success();
    assert!(!first.exists() && !drill_json(&first).exists());
    assert!(second.exists() && drill_json(&second).exists());
}

/// Runs a drill of `backup_id` and expects exit `code`; its JSON report.
fn drill(dir: &Path, db: &str, args: &[&str], code: i32) -> (Output, Value) {
    let out = aos(dir, db).args(["--json", "drill"]).args(args).run();
    out.assert_code(code);
    let json = out.json();
    (out, json)
}

#[test]
fn row_counts_that_do_not_match_fail_the_drill_with_exit_11() {
    let db = filled_db("drill_rows");
    let dir = tempdir();
    let b = backup(dir.path(), &db, &[]);
    let mut meta = read_sidecar(&b);
    let counts = meta["row_counts"].as_array_mut().unwrap();
    let big = counts.iter_mut().find(|t| t["table"] == "big").unwrap();
    assert_eq!(big["rows"], 20000);
    big["rows"] = 19999.into();
    write_json(&crate::support::sidecar(&b), &meta);
    let (out, r) = drill(dir.path(), &db, &[], 11);
    assert_eq!(r["outcome"], "check-failed", "{out}");
    let m = &r["row_counts"]["mismatches"];
    assert_eq!(m.as_array().unwrap().len(), 1, "{out}");
    assert_eq!(m[0]["table"], "big");
    assert_eq!(m[0]["recorded"], 19999);
    assert_eq!(m[0]["restored"], 20000);
    assert!(out.stderr_trimmed().contains("mismatch"), "{out}");
    assert_eq!(read_json(&drill_json(&b))["outcome"], "check-failed");
    assert!(scratch_of(&id_of(&b)).is_empty());

    // The text names the table; `list` shows the failed drill.
    let text = aos(dir.path(), &db).arg("drill").run();
    text.assert_code(11);
    assert!(
        text.stdout_trimmed()
            .contains("public.big: 19999 rows at backup time, 20000 restored"),
        "{text}"
    );
    let list = aos(dir.path(), &db).arg("list").run();
    assert!(
        list.stdout_trimmed().contains("drill:check-failed"),
        "{list}"
    );
}

#[test]
fn an_older_backup_without_row_counts_says_not_recorded_and_passes() {
    let db = filled_db("drill_norows");
    let dir = tempdir();
    let b = backup(dir.path(), &db, &[]);
    let mut meta = read_sidecar(&b);
    meta.as_object_mut().unwrap().remove("row_counts");
    write_json(&crate::support::sidecar(&b), &meta);
    let (_, r) = drill(dir.path(), &db, &[], 0);
    assert_eq!(r["row_counts"]["recorded"], false);
    let text = aos(dir.path(), &db).arg("drill").run();
    text.assert_success();
    assert!(text.stdout_trimmed().contains("not recorded"), "{text}");
}

#[test]
fn a_failing_check_sql_query_fails_the_drill_with_exit_11() {
    let db = filled_db("drill_sql");
    let dir = tempdir();
    let b = backup(dir.path(), &db, &[]);
    let checks = dir.path().join("checks.sql");
    fs::write(
        &checks,
        "-- can the app read its data?\nSELECT count(*) = 2 FROM small;\nSELECT * FROM big WHERE id = 5;\n\
         SELECT * FROM small WHERE a = 99;\nSELECT false;\nSELECT 1 FROM no_such_table;\n",
    )
    .unwrap();
    let (out, r) = drill(
        dir.path(),
        &db,
        &["--check-sql", checks.to_str().unwrap()],
        11,
    );
    let checks = r["checks"].as_array().unwrap();
    let passed: Vec<bool> = checks
        .iter()
        .map(|c| c["passed"].as_bool().unwrap())
        .collect();
    assert_eq!(passed, [true, true, false, false, false], "{out}");
    assert_eq!(checks[2]["result"], "no rows");
    assert_eq!(checks[3]["result"], "false");
    assert!(checks[4]["result"]
        .as_str()
        .unwrap()
        .contains("no_such_table"));
    assert!(scratch_of(&id_of(&b)).is_empty());

    let empty = dir.path().join("empty.sql");
    fs::write(&empty, "-- nothing\n").unwrap();
    let out = aos(dir.path(), &db)
        .args(["drill", "--check-sql", empty.to_str().unwrap()])
        .run();
    out.assert_code(2);
}

#[test]
fn a_backup_that_does_not_restore_fails_the_drill_with_exit_10() {
    let db = filled_db("drill_broken");
    let dir = tempdir();
    let b = backup(
        dir.path(),
        &db,
        &["--format", "plain", "--compression", "none"],
    );
    // Damaged before its checksum was taken: the checksum passes, the restore fails.
    let sql = fs::read_to_string(&b).unwrap();
    let trailer = sql.rfind("-- PostgreSQL database dump complete").unwrap();
    let broken = format!(
        "{}SELECT no_such_function();\n\n{}",
        &sql[..trailer],
        &sql[trailer..]
    );
    fs::write(&b, &broken).unwrap();
    let mut meta = read_sidecar(&b);
    meta["sha256"] = crate::support::sha256_hex(broken.as_bytes()).into();
    meta["size_bytes"] = broken.len().into();
    meta["dump_bytes"] = broken.len().into();
    write_json(&crate::support::sidecar(&b), &meta);
    let (out, r) = drill(dir.path(), &db, &[], 10);
    assert_eq!(r["outcome"], "restore-failed", "{out}");
    assert!(r["rto_ms"].is_null());
    assert!(
        r["restore_error"]
            .as_str()
            .unwrap()
            .contains("no_such_function"),
        "{out}"
    );
    assert_eq!(r["scratch"]["removed"], true);
    assert!(scratch_of(&id_of(&b)).is_empty());
    assert_eq!(read_json(&drill_json(&b))["outcome"], "restore-failed");
}

#[test]
fn a_scratch_url_naming_the_live_database_is_refused() {
    let pg = server();
    let db = filled_db("drill_live");
    let dir = tempdir();
    let b = backup(dir.path(), &db, &[]);
    let out = aos(dir.path(), &db)
        .args(["drill", "--scratch-url", &pg.socket_url(&db)])
        .run();
    out.assert_code(3);
    assert!(out.stderr_trimmed().contains("live database"), "{out}");
    assert!(scratch_of(&id_of(&b)).is_empty());
    assert!(!drill_json(&b).exists());

    // Another database of that server only serves to connect: the scratch database goes there.
    let (out, r) = drill(
        dir.path(),
        &db,
        &["--scratch-url", &pg.socket_url("postgres")],
        0,
    );
    assert!(
        r["scratch"]["host"].as_str().unwrap().contains("socket"),
        "{out}"
    );
}

/// Whether the folder in a scratch host like `/tmp/aos-backup-drill.x (socket, port 5432)` exists.
fn cluster_folder(report: &Value) -> PathBuf {
    let host = report["scratch"]["host"].as_str().unwrap();
    PathBuf::from(host.split(" (").next().unwrap())
}

#[test]
fn an_ephemeral_cluster_takes_the_drill_and_is_removed() {
    let db = filled_db("drill_ephemeral");
    let dir = tempdir();
    backup(dir.path(), &db, &[]);
    let (out, r) = drill(dir.path(), &db, &["--ephemeral"], 0);
    assert_eq!(r["scratch"]["kind"], "ephemeral", "{out}");
    assert_eq!(r["row_counts"]["mismatches"], Value::Array(vec![]));
    let folder = cluster_folder(&r);
    assert!(folder.starts_with(std::env::temp_dir()), "{out}");
    assert!(!folder.exists(), "{out}");
}

#[test]
fn a_role_that_cannot_create_databases_drills_in_an_ephemeral_cluster() {
    let pg = server();
    let db = filled_db("drill_nocreatedb");
    let dir = tempdir();
    backup(dir.path(), &db, &[]);
    let role = format!("aos_drill_nocreate_{}", std::process::id());
    pg.psql(
        "postgres",
        &format!(
            "CREATE ROLE {} LOGIN NOCREATEDB PASSWORD 'pw-nocreate'",
            quote_ident(&role)
        ),
    );
    let url = format!("postgresql://{role}:pw-nocreate@127.0.0.1:{}/{db}", pg.port);
    let out = aos(dir.path(), &db)
        .env("DATABASE_URL", &url)
        .args(["--json", "drill"])
        .run();
    // Asked to use that role's server anyway, the drill says what the role lacks.
    let on_server = aos(dir.path(), &db)
        .env("PGPASSWORD", "pw-nocreate")
        .args(["drill", "--scratch-url"])
        .arg(format!(
            "postgresql://{role}@127.0.0.1:{}/postgres",
            pg.port
        ))
        .run();
    let _ = pg.try_psql("postgres", &format!("DROP ROLE {}", quote_ident(&role)));
    on_server.assert_code(1);
    assert!(
        on_server.stderr_trimmed().contains("CREATEDB"),
        "{on_server}"
    );
    out.assert_success();
    assert_eq!(out.json()["scratch"]["kind"], "ephemeral", "{out}");
    assert!(out.stderr_trimmed().contains("CREATEDB"), "{out}");
}

#[test]
fn a_drill_killed_during_the_restore_leaves_nothing_the_next_drill_does_not_remove() {
    let pg = server();
    let db = pg.create_db("drill_killed");
    pg.psql(
        &db,
        &format!(
            "SET ROLE {APP_ROLE};
             CREATE TABLE wide (id int, t text);
             INSERT INTO wide SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 400000) g;"
        ),
    );
    let dir = tempdir();
    let b = backup(dir.path(), &db, &[]);
    let id = id_of(&b);
    let cmd = aos(dir.path(), &db).arg("drill");
    let child = cmd.spawn();
    let pid = child.id();
    // Other tests' drills on the shared server may drill a backup with the same id (ids are
    // times to the second): the killed drill's database is the one its owner marker names.
    let marker = |name: &str| {
        pg.psql(
            "postgres",
            &format!(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{name}'"
            ),
        )
    };
    let ours = || {
        scratch_of(&id)
            .into_iter()
            .find(|name| marker(name).contains(&format!(" pid={pid} ")))
    };
    wait_until(
        "the drill created and marked its scratch database",
        Duration::from_secs(60),
        Some(&child),
        || ours().is_some(),
    );
    let name = ours().unwrap();
    assert!(marker(&name).starts_with("aos-backup-owner "));
    cmd::signal(&child, libc::SIGKILL);
    let out = cmd.wait(child);
    assert_eq!(out.signal, Some(libc::SIGKILL), "{out}");

    // The next drill (this one, or another test's on the same server) drops it.
    let next = aos(dir.path(), &db).arg("drill").run();
    next.assert_success();
    assert!(!scratch_of(&id).contains(&name), "{next}");
}

#[test]
fn a_drill_stopped_by_a_signal_drops_its_scratch_database_itself() {
    let pg = server();
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let db = pg.create_db("drill_signal");
        pg.psql(
            &db,
            &format!(
                "SET ROLE {APP_ROLE};
                 CREATE TABLE wide (id int, t text);
                 INSERT INTO wide SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 400000) g;"
            ),
        );
        let dir = tempdir();
        let b = backup(dir.path(), &db, &[]);
        let id = id_of(&b);
        let cmd = aos(dir.path(), &db).arg("drill");
        let child = cmd.spawn();
        wait_until(
            "the drill created its scratch database",
            Duration::from_secs(60),
            Some(&child),
            || !scratch_of(&id).is_empty(),
        );
        cmd::signal(&child, sig);
        let out = cmd.wait(child);
        out.assert_code(128 + sig);
        assert!(scratch_of(&id).is_empty(), "{out}");
        assert!(!drill_json(&b).exists(), "{out}");
    }
}

/// The ephemeral cluster folder owned by process `pid`, once its server wrote its pid file.
fn cluster_of(pid: u32) -> Option<PathBuf> {
    fs::read_dir(std::env::temp_dir())
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("aos-backup-drill."))
        })
        .find(|p| {
            fs::read_to_string(p.join("owner")).is_ok_and(|o| o.contains(&format!(" pid={pid} ")))
                && p.join("data/postmaster.pid").exists()
        })
}

#[test]
fn a_killed_ephemeral_drill_takes_its_server_along_and_the_next_drill_removes_its_folder() {
    let pg = server();
    let db = pg.create_db("drill_killed_eph");
    pg.psql(
        &db,
        &format!(
            "SET ROLE {APP_ROLE};
             CREATE TABLE wide (id int, t text);
             INSERT INTO wide SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 400000) g;"
        ),
    );
    let dir = tempdir();
    backup(dir.path(), &db, &[]);
    let cmd = aos(dir.path(), &db).args(["drill", "--ephemeral"]);
    let child = cmd.spawn();
    let mut found = None;
    wait_until(
        "the drill started its cluster",
        Duration::from_secs(60),
        Some(&child),
        || {
            found = cluster_of(child.id()).and_then(|folder| {
                let pid_file = fs::read_to_string(folder.join("data/postmaster.pid")).ok()?;
                let pid: i32 = pid_file.lines().next()?.trim().parse().ok()?;
                Some((folder, pid))
            });
            found.is_some()
        },
    );
    let (folder, postmaster) = found.unwrap();
    std::thread::sleep(Duration::from_millis(300));
    cmd::signal(&child, libc::SIGKILL);
    let out = cmd.wait(child);
    assert_eq!(out.signal, Some(libc::SIGKILL), "{out}");
    wait_until(
        "the cluster's server died with the drill",
        Duration::from_secs(20),
        None,
        || !crate::support::alive(postmaster),
    );
    let next = aos(dir.path(), &db).args(["drill", "--ephemeral"]).run();
    next.assert_success();
    assert!(!folder.exists(), "{next}");
}

#[test]
fn the_library_drills_and_reports_a_failed_check_as_a_typed_outcome() {
    use aos_backup::types::DrillOutcome;
    let pg = server();
    let db = filled_db("drill_lib");
    let dir = tempdir();
    let engine = aos_backup::Engine::new(&pg.tcp_url(&db), dir.path())
        .unwrap()
        .with_pg_bin(&pg.bindir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(engine.backup(&engine.backup_options().unwrap()))
        .unwrap();
    let report = rt
        .block_on(engine.drill(&engine.drill_options("latest")))
        .unwrap();
    assert_eq!(report.outcome, DrillOutcome::Passed);
    assert!(report.rto_ms.is_some() && report.error().is_none());
    assert!(report.scratch.removed);

    let checks = dir.path().join("checks.sql");
    fs::write(&checks, "SELECT 1 FROM small WHERE a = 42").unwrap();
    let mut options = engine.drill_options("latest");
    options.check_sql = Some(checks);
    let report = rt.block_on(engine.drill(&options)).unwrap();
    assert_eq!(report.outcome, DrillOutcome::CheckFailed);
    assert_eq!(report.error().unwrap().kind, aos_backup::Kind::DrillCheck);
    assert_eq!(report.mismatches().len(), 1, "{:?}", report.mismatches());
}

#[test]
fn an_ephemeral_drill_without_the_server_programs_says_how_to_get_them() {
    let db = filled_db("drill_nobin");
    let dir = tempdir();
    backup(dir.path(), &db, &[]);
    let empty = tempdir();
    let out = aos(dir.path(), &db)
        .env("PG_BIN", empty.path())
        .args(["drill", "--ephemeral"])
        .run();
    out.assert_code(6);
    assert!(out.stderr_trimmed().contains("initdb"), "{out}");
    assert!(out.stderr_trimmed().contains("PG_BIN"), "{out}");
}

#[test]
fn consistency_problems_carried_by_the_backup_fail_the_drill_with_exit_11() {
    let pg = server();
    let db = pg.create_db("drill_orphans");
    pg.psql(
        &db,
        &format!(
            "SET ROLE {APP_ROLE};
             CREATE TABLE parent (id int PRIMARY KEY); INSERT INTO parent VALUES (1);
             CREATE TABLE child (pid int); INSERT INTO child VALUES (1), (99);
             ALTER TABLE child ADD CONSTRAINT child_parent FOREIGN KEY (pid) REFERENCES parent NOT VALID;"
        ),
    );
    let dir = tempdir();
    backup(dir.path(), &db, &[]);
    let (out, r) = drill(dir.path(), &db, &[], 11);
    assert_eq!(r["row_counts"]["mismatches"], Value::Array(vec![]), "{out}");
    let checks = r["validation"]["checks"].as_array().unwrap();
    let orphans = checks.iter().find(|c| c["check"] == "orphans").unwrap();
    assert_eq!(orphans["failing"], 1, "{out}");
    let text = aos(dir.path(), &db).arg("drill").run();
    text.assert_code(11);
    assert!(text.stdout_trimmed().contains("validate: 1 "), "{text}");
}

#[test]
fn the_daemon_drills_the_newest_backup_on_its_drill_schedule() {
    let db = filled_db("drill_daemon");
    let dir = tempdir();
    let cmd = aos(dir.path(), &db)
        .args(["--log-format", "json", "daemon"])
        .env("BACKUP_SCHEDULE", "*/2 * * * * *")
        .env("BACKUP_DRILL_SCHEDULE", "*/3 * * * * *");
    let child = cmd.spawn();
    let drilled = || {
        fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".drill.json"))
    };
    wait_until(
        "the daemon recorded a drill",
        Duration::from_secs(60),
        Some(&child),
        || drilled().is_some(),
    );
    // Let the drill's log line out, then stop the daemon between runs.
    std::thread::sleep(Duration::from_millis(300));
    cmd::signal(&child, libc::SIGTERM);
    let out = cmd.wait(child);
    assert!(matches!(out.code, Some(0 | 143)), "{out}");
    assert_eq!(read_json(&drilled().unwrap())["outcome"], "passed");
    let passed = out.stderr.lines().any(|l| {
        let v: Value = serde_json::from_str(l).unwrap_or_default();
        v["fields"]["job"] == "drill" && v["fields"]["outcome"] == "passed"
            || v["job"] == "drill" && v["outcome"] == "passed"
    });
    assert!(passed, "{out}");
    let state = read_json(&dir.path().join(".aos-backup.daemon.json"));
    assert!(state["drill"]["last_run"].is_string(), "{state}");
}

#[test]
fn without_database_url_the_daemon_drills_each_configured_database_in_its_folder() {
    let pg = server();
    let (shop, blog) = (
        filled_db("drill_daemon_shop"),
        filled_db("drill_daemon_blog"),
    );
    let work = tempdir();
    let dir = work.path().join("backups");
    let cfg = work.path().join("aos.toml");
    fs::write(
        &cfg,
        "[[databases]]\nname = \"shop\"\nurl_env = \"SHOP_URL\"\n\n\
         [[databases]]\nname = \"blog\"\nurl_env = \"BLOG_URL\"\n\n\
         [[databases]]\nname = \"gone\"\nurl_env = \"GONE_URL\"\n",
    )
    .unwrap();
    // `gone` does not exist: its backups and drills fail alone.
    let cmd = Cmd::new()
        .env("BACKUP_DIR", &dir)
        .env("AOS_BACKUP_CONFIG", &cfg)
        .env("SHOP_URL", pg.tcp_url(&shop))
        .env("BLOG_URL", pg.tcp_url(&blog))
        .env("GONE_URL", pg.tcp_url("drill_daemon_no_such_database"))
        .env("BACKUP_METRICS_FILE", work.path().join("aos.prom"))
        .env("PG_BIN", &pg.bindir)
        .args(["--log-format", "json", "daemon"])
        .env("BACKUP_SCHEDULE", "*/2 * * * * *")
        .env("BACKUP_DRILL_SCHEDULE", "*/3 * * * * *");
    let child = cmd.spawn();
    let drilled = |folder: &str| {
        fs::read_dir(dir.join(folder))
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".drill.json"))
    };
    wait_until(
        "the daemon recorded a drill in each database's folder",
        Duration::from_secs(90),
        Some(&child),
        || {
            drilled("shop").is_some()
                && drilled("blog").is_some()
                && fs::read_to_string(work.path().join("aos.prom")).is_ok_and(|p| {
                    p.contains("{database=\"blog\",operation=\"drill\"} 1")
                        && p.contains("{database=\"shop\",operation=\"drill\"} 1")
                })
        },
    );
    std::thread::sleep(Duration::from_millis(300));
    cmd::signal(&child, libc::SIGTERM);
    let out = cmd.wait(child);
    assert!(matches!(out.code, Some(0 | 143)), "{out}");
    for (folder, db) in [("shop", &shop), ("blog", &blog)] {
        let record = read_json(&drilled(folder).unwrap());
        assert_eq!(record["outcome"], "passed", "{folder}: {record}");
        assert_eq!(record["backup"]["database"], db.as_str(), "{record}");
        let logged = out.stderr.lines().any(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_default();
            v["job"] == "drill" && v["outcome"] == "passed" && v["database"] == folder
        });
        assert!(logged, "no passed drill of {folder} in the log:\n{out}");
    }
    let failed = out.stderr.lines().any(|l| {
        let v: Value = serde_json::from_str(l).unwrap_or_default();
        v["job"] == "drill" && v["database"] == "gone" && v["outcome"] == "failed"
    });
    assert!(failed, "no failed drill of gone in the log:\n{out}");
    let state = read_json(&dir.join(".aos-backup.daemon.json"));
    assert_eq!(state["drill"]["last_outcome"], "failed", "{state}");
    // The metrics file has each database's drill, under the list's names.
    let prom = fs::read_to_string(work.path().join("aos.prom")).unwrap();
    for (db, status) in [("shop", 1), ("blog", 1), ("gone", 0)] {
        let line =
            format!("aos_backup_last_status{{database=\"{db}\",operation=\"drill\"}} {status}\n");
        assert!(prom.contains(&line), "{line:?} not in\n{prom}");
    }
    assert!(
        prom.contains("aos_backup_last_drilled_timestamp_seconds{database=\"shop\"}"),
        "{prom}"
    );

    // A drill by hand of a backup in shop's subfolder is recorded under the list's name too,
    // not under the server's name for the database.
    let shop_backup = drilled("shop")
        .unwrap()
        .to_string_lossy()
        .trim_end_matches(".drill.json")
        .to_string();
    let hand = work.path().join("hand.prom");
    let out = Cmd::new()
        .env("BACKUP_DIR", &dir)
        .env("AOS_BACKUP_CONFIG", &cfg)
        .env("SHOP_URL", pg.tcp_url(&shop))
        .env("BLOG_URL", pg.tcp_url(&blog))
        .env("GONE_URL", pg.tcp_url("drill_daemon_no_such_database"))
        .env("PG_BIN", &pg.bindir)
        .arg("--metrics-file")
        .arg(&hand)
        .args([
            "drill",
            &shop_backup,
            "--scratch-url",
            &pg.tcp_url("postgres"),
        ])
        .run();
    out.assert_success();
    let prom = fs::read_to_string(&hand).unwrap();
    assert!(
        prom.contains("aos_backup_last_status{database=\"shop\",operation=\"drill\"} 1"),
        "{prom}\n{out}"
    );
    assert!(!prom.contains(shop.as_str()), "{prom}");
}
