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
fn backup(dir: &Path, db: &str, args: &[&str]) -> PathBuf {
    let out = aos(dir, db).arg("backup").args(args).run();
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
    let out = aos(dir.path(), &db).args(["--json", "drill", "latest"]).run();
    out.assert_success();
    let r = out.json();
    assert_eq!(r["outcome"], "passed", "{out}");
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
    assert!(said.contains("PASSED") && said.contains("RTO:") && said.contains("RPO:"), "{said}");
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
    aos(dir.path(), &db).args(["verify", "--all"]).run().assert_success();
    aos(dir.path(), &db)
        .args(["prune", "--keep-last", "1"])
        .run()
        .assert_success();
    assert!(!first.exists() && !drill_json(&first).exists());
    assert!(second.exists() && drill_json(&second).exists());
}
