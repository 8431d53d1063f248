//! Presets, against a real PostgreSQL server: `BACKUP_PRESET` (or `preset` in the config file)
//! gives seed 003's defaults, `config` names the values that came from the preset, explicit
//! settings win over it, the production preset refuses an unencrypted backup, and the dev
//! preset's prune keeps the last 3 backups.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::cmd::{Cmd, Output};
use crate::harness::server;
use crate::support::{self, age_keygen, names_if_any, tempdir};

/// `aos-backup` in `cwd` with `BACKUP_DIR=dir` and the harness's client tools.
fn aos(cwd: &Path, dir: &Path) -> Cmd {
    Cmd::new()
        .current_dir(cwd)
        .env("BACKUP_DIR", dir)
        .env("PG_BIN", &server().bindir)
}

/// Each key of `config --json`: (source, value).
fn sources(out: &Output) -> BTreeMap<String, (String, Value)> {
    out.json()["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no keys:\n{out}"))
        .iter()
        .map(|k| {
            (
                k["key"].as_str().unwrap().to_string(),
                (
                    k["source"].as_str().unwrap().to_string(),
                    k["value"].clone(),
                ),
            )
        })
        .collect()
}

fn small_db(prefix: &str) -> String {
    let pg = server();
    let db = pg.create_db(prefix);
    pg.psql(
        &db,
        "SET ROLE app; CREATE TABLE t (a int); INSERT INTO t VALUES (1);",
    );
    db
}

fn backups(dir: &Path) -> Vec<String> {
    names_if_any(dir)
        .into_iter()
        .filter(|n| n.starts_with("aos-backup-") && !n.ends_with(".meta.json"))
        .collect()
}

#[test]
fn config_names_the_values_that_came_from_the_preset() {
    let tmp = tempdir();
    let out = aos(tmp.path(), &tmp.path().join("b"))
        .env("BACKUP_PRESET", "production")
        .env("BACKUP_KEEP_WEEKLY", "2")
        .env("BACKUP_DRILL_EVERY", "2w")
        .args(["config", "--json"])
        .run();
    out.assert_success();
    let s = sources(&out);
    let want: [(&str, &str, Value); 10] = [
        ("preset", "environment", json!("production")),
        ("retention.max_age_days", "preset production", json!(30)),
        ("retention.keep_weekly", "environment", json!(2)),
        ("retention.keep_monthly", "preset production", json!(12)),
        ("retention.keep_last", "default", Value::Null),
        ("retention.keep_daily", "default", Value::Null),
        ("encryption", "preset production", json!(true)),
        ("verify_every", "preset production", json!(86400)),
        ("drill_every", "environment", json!(14 * 86400)),
        ("hooks.timeout", "default", json!(300)),
    ];
    for (key, source, value) in want {
        assert_eq!(s[key], (source.to_string(), value), "{key}:\n{out}");
    }

    let out = aos(tmp.path(), &tmp.path().join("b"))
        .env("BACKUP_PRESET", "production")
        .arg("config")
        .run();
    out.assert_success();
    for line in [
        "preset = production  (environment)",
        "verify_every = 1d  (preset production)",
        "drill_every = 7d  (preset production)",
        "retention.max_age_days = 30",
    ] {
        assert!(out.stdout.lines().any(|l| l == line), "{line:?}:\n{out}");
    }
    assert!(
        out.stdout.lines().any(|l| l
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
            == [
                "retention.keep_monthly",
                "preset production",
                "BACKUP_KEEP_MONTHLY",
                "retention.keep_monthly"
            ]),
        "{out}"
    );
    assert!(
        out.stdout.contains("config file > preset > default"),
        "{out}"
    );
}

#[test]
fn explicit_settings_in_the_file_or_environment_win_over_the_preset() {
    let tmp = tempdir();
    fs::write(
        tmp.path().join("aos-backup.toml"),
        "preset = \"dev\"\n[retention]\nkeep_daily = 5\n",
    )
    .unwrap();
    let out = aos(tmp.path(), &tmp.path().join("b"))
        .args(["config", "--json"])
        .run();
    out.assert_success();
    let s = sources(&out);
    assert_eq!(s["preset"], ("config file".into(), json!("dev")));
    assert_eq!(s["retention.keep_last"], ("preset dev".into(), json!(3)));
    assert_eq!(s["retention.keep_daily"], ("config file".into(), json!(5)));
    assert_eq!(s["encryption"], ("default".into(), json!(false)));
    assert_eq!(s["verify_every"], ("default".into(), Value::Null));

    // The environment's preset beats the file's; 0 turns a preset's rule off.
    let out = aos(tmp.path(), &tmp.path().join("b"))
        .env("BACKUP_PRESET", "staging")
        .env("BACKUP_KEEP_DAILY", "0")
        .env("BACKUP_VERIFY_EVERY", "0")
        .args(["config", "--json"])
        .run();
    out.assert_success();
    let s = sources(&out);
    assert_eq!(s["preset"], ("environment".into(), json!("staging")));
    assert_eq!(s["retention.keep_daily"], ("environment".into(), json!(0)));
    assert_eq!(s["retention.keep_last"], ("default".into(), Value::Null));
    assert_eq!(s["verify_every"], ("environment".into(), json!(0)));

    let out = aos(tmp.path(), &tmp.path().join("b"))
        .env("BACKUP_PRESET", "qa")
        .arg("config")
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("BACKUP_PRESET"), "{out}");
    assert!(out.stderr.contains("dev, staging or production"), "{out}");
}

#[test]
fn the_production_preset_refuses_a_backup_without_encryption() {
    let tmp = tempdir();
    let dir = tmp.path().join("b");
    let db = small_db("preset_prod");
    let cmd = || {
        aos(tmp.path(), &dir)
            .env("DATABASE_URL", server().tcp_url(&db))
            .env("BACKUP_PRESET", "production")
    };
    let out = cmd().arg("backup").run();
    out.assert_code(2);
    assert!(
        out.stderr.contains("error: the production preset (from environment) requires encrypted backups, and no age recipients or passphrase file is configured"),
        "{out}"
    );
    assert!(
        out.stderr.contains("hint: set BACKUP_AGE_RECIPIENTS"),
        "{out}"
    );
    assert!(backups(&dir).is_empty(), "{out}");

    let out = cmd().env("BACKUP_ENCRYPTION", "none").arg("backup").run();
    out.assert_code(2);
    assert!(
        out.stderr
            .contains("BACKUP_ENCRYPTION=none (from environment)"),
        "{out}"
    );
    let key = age_keygen(tmp.path(), "key.txt");
    let out = cmd()
        .env("BACKUP_AGE_RECIPIENTS", &key.recipient)
        .args(["backup", "--no-encrypt"])
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("--no-encrypt"), "{out}");
    assert!(backups(&dir).is_empty(), "{out}");

    // With a recipient, the backup is encrypted without being asked to.
    let out = cmd()
        .env("BACKUP_AGE_RECIPIENTS", &key.recipient)
        .arg("backup")
        .run();
    out.assert_success();
    let path = PathBuf::from(out.stdout_trimmed());
    assert!(path.to_string_lossy().ends_with(".age"), "{out}");
    assert_eq!(
        support::read_sidecar(&path)["encryption"],
        "age-recipients",
        "{out}"
    );
}

#[test]
fn the_dev_preset_keeps_the_last_three_backups() {
    let tmp = tempdir();
    let dir = tmp.path().join("b");
    let db = small_db("preset_dev");
    let cmd = || {
        aos(tmp.path(), &dir)
            .env("DATABASE_URL", server().tcp_url(&db))
            .env("BACKUP_PRESET", "dev")
    };
    let out = cmd()
        .env("AOS_BACKUP_NOW", "2024-03-31T12:00:00Z")
        .arg("backup")
        .run();
    out.assert_success();
    let first = PathBuf::from(out.stdout_trimmed());
    for day in 1..=4 {
        support::fabricate(&first, &dir, &format!("2024-03-2{day}T12:00:00Z"), None);
    }
    assert_eq!(backups(&dir).len(), 5);
    let out = cmd()
        .env("AOS_BACKUP_NOW", "2024-03-31T13:00:00Z")
        .args(["prune", "--dry-run"])
        .run();
    out.assert_success();
    assert_eq!(backups(&dir).len(), 5, "a dry run deletes nothing: {out}");
    let out = cmd()
        .env("AOS_BACKUP_NOW", "2024-03-31T13:00:00Z")
        .arg("prune")
        .run();
    out.assert_success();
    let kept = backups(&dir);
    assert_eq!(kept.len(), 3, "{kept:?}\n{out}");
    assert!(kept.iter().any(|n| first.ends_with(n)), "{kept:?}");

    // A backup under the dev preset prunes to three by itself.
    let out = cmd()
        .env("AOS_BACKUP_NOW", "2024-04-01T12:00:00Z")
        .arg("backup")
        .run();
    out.assert_success();
    assert_eq!(backups(&dir).len(), 3, "{out}");
}
