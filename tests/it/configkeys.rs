//! One definition of each configuration key: `aos-backup config` shows every key's value and its
//! source (flag, environment, .env, config file, default), `config --json` gives real JSON types,
//! and the README's Configuration table and the `--help` texts name the same variables and
//! defaults as the program's key table (read through `config --json`).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{json, Value};

use crate::cmd::{Cmd, Output};

const PASSWORD: &str = "S3cr3tConfigKeys";

fn aos_in(cwd: &Path) -> Cmd {
    Cmd::new().current_dir(cwd)
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("aos-backup-it-configkeys.")
        .tempdir()
        .unwrap()
}

/// The `keys` of `config --json`, by name.
fn keys(out: &Output) -> BTreeMap<String, Value> {
    out.json()["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no keys array:\n{out}"))
        .iter()
        .map(|k| (k["key"].as_str().unwrap().to_string(), k.clone()))
        .collect()
}

/// The source column of the text table, by key name.
fn text_sources(out: &Output) -> BTreeMap<String, String> {
    let table = out
        .stdout
        .split_once("\nkey ")
        .unwrap_or_else(|| panic!("no source table:\n{out}"))
        .1;
    table
        .lines()
        .skip(1)
        .map(|l| {
            let (name, rest) = l.split_once("  ").unwrap();
            let rest = rest.trim_start();
            // Sources are one or two words ("config file"); the variable follows after two blanks.
            let source = rest.split("  ").next().unwrap();
            (name.to_string(), source.to_string())
        })
        .collect()
}

#[test]
fn config_shows_every_keys_source_from_each_layer() {
    let project = tempdir();
    let p = project.path();
    let cfg = p.join("custom.toml");
    fs::write(
        &cfg,
        format!(
            "database_url = \"postgresql://app:{PASSWORD}@127.0.0.1:1/db\"\n\
             [backup]\njobs = 3\ncompression_level = 7\n\
             [encryption]\nidentity_file = \"/keys/id.txt\"\n\
             [retention]\nkeep_last = 4\nkeep_weekly = 2\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&cfg, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(
        p.join(".env"),
        "BACKUP_KEEP_DAILY=5\nBACKUP_ENCRYPTION=age\nBACKUP_KEEP_WEEKLY=6\n",
    )
    .unwrap();
    let cmd = || {
        aos_in(p)
            .env("BACKUP_KEEP_DAILY", "8")
            .env("BACKUP_PASSPHRASE_FILE", "/keys/pass")
            .env("BACKUP_LOCK_TIMEOUT", "2m")
            .env("BACKUP_AGE_RECIPIENTS", "age1aaa,age1bbb")
            .args(["--pg-bin", "/opt/pg/bin", "--config"])
            .arg(&cfg)
    };
    let expected: BTreeMap<&str, (&str, Value)> = [
        ("config_file", ("flag", json!(cfg.display().to_string()))),
        (
            "database_url",
            (
                "config file",
                json!("postgresql://app:********@127.0.0.1:1/db"),
            ),
        ),
        ("backup_dir", ("default", json!("backups"))),
        ("pg_bin", ("flag", json!("/opt/pg/bin"))),
        ("format", ("default", json!("custom"))),
        ("compression", ("default", json!("zstd"))),
        ("compression_level", ("config file", json!(7))),
        ("jobs", ("config file", json!(3))),
        ("encryption", (".env", json!(true))),
        (
            "age_recipients",
            ("environment", json!(["age1aaa", "age1bbb"])),
        ),
        ("age_identity", ("config file", json!("/keys/id.txt"))),
        ("passphrase_file", ("environment", json!("/keys/pass"))),
        ("suspect_ratio", ("default", json!(0.5))),
        ("restore.lock_timeout", ("environment", json!(120))),
        ("restore.safety_backup", ("default", json!(true))),
        ("restore.safety_backup_keep", ("default", json!(604800))),
        ("retention.keep_last", ("config file", json!(4))),
        ("retention.keep_daily", ("environment", json!(8))),
        ("retention.keep_weekly", (".env", json!(6))),
        ("retention.keep_monthly", ("default", Value::Null)),
        ("retention.keep_yearly", ("default", Value::Null)),
        ("retention.max_age_days", ("default", Value::Null)),
        ("schedule.backup", ("default", Value::Null)),
        ("schedule.hour", ("default", Value::Null)),
        ("schedule.timezone", ("default", json!("UTC"))),
        ("schedule.drill", ("default", Value::Null)),
        ("preset", ("default", Value::Null)),
        ("verify_every", ("default", Value::Null)),
        ("drill_every", ("default", Value::Null)),
        ("hooks.before", ("default", Value::Null)),
        ("hooks.after", ("default", Value::Null)),
        ("hooks.on_failure", ("default", Value::Null)),
        ("hooks.finally", ("default", Value::Null)),
        ("hooks.timeout", ("default", json!(300))),
        ("check.max_age", ("default", json!(93600))),
        ("check.min_size", ("default", json!(0))),
        ("check.max_drill_age", ("default", json!(0))),
        ("metrics_file", ("default", Value::Null)),
        ("docker.container", ("default", Value::Null)),
        ("docker.compose_service", ("default", Value::Null)),
        ("docker.compose_file", ("default", Value::Null)),
        ("globals", ("default", json!(false))),
        ("validate", ("default", json!(false))),
        ("row_counts", ("default", json!(true))),
        ("notify.urls", ("default", Value::Null)),
        ("notify.on", ("default", json!("failure"))),
        ("notify.deliver", ("default", Value::Null)),
        ("notify.timeout", ("default", json!(10))),
        ("notify.retries", ("default", json!(3))),
        ("notify.email_max_size", ("default", json!(25_000_000))),
        ("telegram.max_size", ("default", json!(50_000_000))),
        (
            "telegram.api_url",
            ("default", json!("https://api.telegram.org")),
        ),
        ("telegram.token", ("default", Value::Null)),
        ("telegram.owners", ("default", Value::Null)),
        ("remote", ("default", json!([]))),
        ("remote_timeout", ("default", json!(60))),
        ("remote_require_encryption", ("default", json!(false))),
        ("remote_only", ("default", json!(false))),
    ]
    .into_iter()
    .collect();

    let out = cmd().args(["config", "--json"]).run();
    out.assert_success();
    assert!(!out.stdout.contains(PASSWORD), "{out}");
    let by_name = keys(&out);
    let top = out.json();
    assert_eq!(
        by_name.keys().map(String::as_str).collect::<Vec<_>>(),
        expected.keys().copied().collect::<Vec<_>>(),
        "{out}"
    );
    for (name, (source, value)) in &expected {
        let k = &by_name[*name];
        assert_eq!(k["source"], *source, "{name}: {out}");
        assert_eq!(k["value"], *value, "{name}: {out}");
        assert_eq!(top[*name], *value, "{name} at the top level: {out}");
        assert!(k["env"].as_str().is_some_and(|e| !e.is_empty()), "{name}");
    }
    assert_eq!(by_name["retention.keep_daily"]["env"], "BACKUP_KEEP_DAILY");
    assert_eq!(by_name["format"]["toml"], json!(["backup.format"]));
    assert_eq!(by_name["backup_dir"]["default"], "./backups");
    assert_eq!(top["production"], false);
    assert_eq!(top["production_marker"], Value::Null);

    let out = cmd().arg("config").run();
    out.assert_success();
    assert!(!out.stdout.contains(PASSWORD), "{out}");
    let sources = text_sources(&out);
    assert_eq!(
        sources,
        expected
            .iter()
            .map(|(k, (s, _))| ((*k).to_string(), (*s).to_string()))
            .collect::<BTreeMap<_, _>>(),
        "{out}"
    );
    // The lines of earlier versions stay as they were.
    for line in [
        "retention.keep_last = 4",
        "retention.keep_monthly = -",
        "pg_bin = /opt/pg/bin  (flag)",
        "backup_dir = backups  (default)",
        "jobs = 3",
        "age_recipients = 2 key(s)",
        "restore.lock_timeout = 2m00s  (environment)",
    ] {
        assert!(out.stdout.lines().any(|l| l == line), "{line:?} in:\n{out}");
    }
    // The table names each key's variable and config file key.
    assert!(
        out.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [
                    "retention.keep_daily",
                    "environment",
                    "BACKUP_KEEP_DAILY",
                    "retention.keep_daily"
                ]),
        "{out}"
    );

    // A flag beats the environment; DATABASE_URL from the environment beats the file.
    let out = cmd()
        .env(
            "DATABASE_URL",
            format!("postgresql://app:{PASSWORD}@db.example:5433/x"),
        )
        .env("BACKUP_DIR", "from-env")
        .args(["--backup-dir", "from-flag", "config", "--json"])
        .run();
    out.assert_success();
    assert!(!out.stdout.contains(PASSWORD), "{out}");
    let k = keys(&out);
    assert_eq!(k["backup_dir"]["source"], "flag");
    assert_eq!(k["backup_dir"]["value"], "from-flag");
    assert_eq!(k["database_url"]["source"], "environment");
}

#[test]
fn config_without_any_setting_shows_defaults_and_nulls() {
    let project = tempdir();
    let out = aos_in(project.path()).args(["config", "--json"]).run();
    out.assert_success();
    let top = out.json();
    for (name, k) in keys(&out) {
        assert_eq!(k["source"], "default", "{name}: {out}");
        assert_eq!(top[&name], k["value"], "{name}");
    }
    assert_eq!(top["config_file"], Value::Null);
    assert_eq!(top["database_url"], Value::Null);
    assert_eq!(top["pg_bin"], Value::Null);
    assert_eq!(top["jobs"], Value::Null);
    assert_eq!(top["encryption"], false);
    assert_eq!(top["compression_level"], 1);
    assert_eq!(top["restore.lock_timeout"], 30);
    assert_eq!(top["retention.keep_last"], Value::Null);

    // A recipients file is a path, not an array; a production marker is named.
    let out = aos_in(project.path())
        .env("BACKUP_AGE_RECIPIENTS", "/etc/recipients.txt")
        .env("APP_ENV", "production")
        .args(["config", "--json"])
        .run();
    out.assert_success();
    let top = out.json();
    assert_eq!(top["age_recipients"], "/etc/recipients.txt");
    assert_eq!(top["production"], true);
    assert_eq!(top["production_marker"], "APP_ENV=production");
}

#[test]
fn an_invalid_value_is_still_a_usage_error_naming_its_variable() {
    let project = tempdir();
    for (var, value) in [
        ("BACKUP_JOBS", "many"),
        ("BACKUP_FORMAT", "xml"),
        ("BACKUP_LOCK_TIMEOUT", "soon"),
        ("BACKUP_SUSPECT_RATIO", "2"),
    ] {
        let out = aos_in(project.path()).env(var, value).arg("config").run();
        out.assert_code(2);
        assert!(out.stderr.contains(var), "{var}: {out}");
        assert!(out.stdout.is_empty(), "{out}");
    }
}

/// The rows of the README's Configuration table: (variables in the first column, default cell).
fn readme_rows() -> Vec<(Vec<String>, String)> {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let section = readme
        .split_once("\n## Configuration\n")
        .expect("README has a Configuration section")
        .1;
    let table = section
        .split_once("| Variable |")
        .expect("the Configuration section has a table")
        .1;
    table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").collect();
            let vars = cells[0]
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect();
            (vars, cells.last().unwrap().to_string())
        })
        .collect()
}

#[test]
fn the_readme_configuration_table_matches_the_keys() {
    let project = tempdir();
    let out = aos_in(project.path()).args(["config", "--json"]).run();
    out.assert_success();
    let keys = keys(&out);
    let rows = readme_rows();
    let documented: Vec<&String> = rows.iter().flat_map(|(v, _)| v).collect();
    for (name, k) in &keys {
        let env = k["env"].as_str().unwrap();
        let (_, default) = rows
            .iter()
            .find(|(vars, _)| vars.iter().any(|v| v == env))
            .unwrap_or_else(|| panic!("{env} ({name}) is not in README's Configuration table"));
        if let Some(d) = k["default"].as_str() {
            assert!(
                default.contains(&format!("`{d}`")),
                "README gives {env}'s default as {default:?}, the program as `{d}`"
            );
        }
    }
    for var in documented {
        if var.starts_with("BACKUP_") || var.starts_with("AOS_BACKUP_CONFIG") {
            assert!(
                keys.values().any(|k| k["env"] == var.as_str()),
                "README documents {var}, which is no configuration key"
            );
        }
    }
}

#[test]
fn the_help_names_each_keys_variable() {
    let project = tempdir();
    let out = aos_in(project.path()).args(["config", "--json"]).run();
    out.assert_success();
    for (name, k) in keys(&out) {
        let env = k["env"].as_str().unwrap();
        for flag in k["flags"].as_array().unwrap() {
            let flag = flag.as_str().unwrap();
            let mut args: Vec<&str> = flag.split_whitespace().collect();
            let long = args.pop().unwrap();
            args.push("--help");
            let out = aos_in(project.path()).args(&args).run();
            out.assert_success();
            // Help lines may wrap: compare with the blanks collapsed.
            let help = out.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                help.contains(long),
                "{flag} ({name}) missing from help:\n{out}"
            );
            assert!(
                help.contains(&format!("[env: {env}]")) || help.contains(&format!("[env: {env}=")),
                "{flag}'s help does not name {env}:\n{out}"
            );
        }
    }
}
