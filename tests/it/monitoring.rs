//! Monitoring against a real PostgreSQL server: `check` answers like a Nagios plugin (its own
//! exit codes, a status line with performance data, `--json`) about each database's last
//! backup, and `--metrics-file` leaves a Prometheus textfile after every backup, prune, verify
//! and restore, failed ones included, written atomically and without secrets.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use aos_backup::ops::check::CheckStatus;
use serde_json::json;

use crate::cmd::{Cmd, Output};
use crate::harness::{server, APP_PASSWORD};
use crate::support::{
    assert_contains, at, fabricate, filled_db, mode_of, read_sidecar, sidecar, tempdir, write_json,
};

/// When the first backup of each test is taken.
const T0: &str = "2024-05-01T02:00:00Z";

/// `aos-backup` on the harness's database `db`, with its backups in `dir`, at `now`.
fn aos(dir: &Path, db: &str, now: &str) -> Cmd {
    Cmd::new()
        .env("BACKUP_DIR", dir)
        .env("PG_BIN", &server().bindir)
        .env("DATABASE_URL", server().tcp_url(db))
        .env("AOS_BACKUP_NOW", now)
}

/// A backup of `db` into `dir` taken at `now`; returns its path.
#[track_caller]
fn backup_at(dir: &Path, db: &str, now: &str) -> PathBuf {
    let out = aos(dir, db, now).arg("backup").run();
    out.assert_success();
    PathBuf::from(out.stdout_trimmed())
}

/// `now` plus `hours`, in RFC 3339.
fn later(now: &str, hours: i64) -> String {
    (at(now) + chrono::Duration::hours(hours)).to_rfc3339()
}

/// `check` with `args`, at `now`, for the database DATABASE_URL names.
fn check(dir: &Path, db: &str, now: &str, args: &[&str]) -> Output {
    aos(dir, db, now).arg("check").args(args).run()
}

/// The status line, split into its status word, its text and its performance data.
fn status_line(out: &Output) -> (String, String, String) {
    let first = out.stdout.lines().next().unwrap_or_default();
    let rest = first
        .strip_prefix("AOS-BACKUP ")
        .unwrap_or_else(|| panic!("not a status line:\n{out}"));
    let (status, rest) = rest.split_once(" - ").unwrap();
    let (text, perf) = rest.split_once(" | ").unwrap_or((rest, ""));
    (status.to_string(), text.to_string(), perf.to_string())
}

#[test]
fn check_is_ok_after_a_fresh_backup() {
    let db = filled_db("check_ok");
    let dir = tempdir();
    let backup = backup_at(dir.path(), &db, T0);
    let out = check(dir.path(), &db, &later(T0, 3), &[]);
    out.assert_code(0);
    let (status, text, perf) = status_line(&out);
    assert_eq!(status, "OK", "{out}");
    assert_eq!(text, "1 database, last backup 3h old", "{out}");
    let size = read_sidecar(&backup)["size_bytes"].as_u64().unwrap();
    assert_eq!(
        perf,
        format!("'{db}_age'=10800s;93600;187200;0 '{db}_size'={size}B;;;0"),
        "{out}"
    );
    assert_contains(
        &out,
        &out.stdout,
        &[
            &format!("\n{db}: OK\n"),
            "  OK        age: last complete backup ",
        ],
    );
    // The OK status line is all a monitoring system needs: nothing on stderr.
    assert!(!out.stderr.contains("WARN"), "{out}");
}

#[test]
fn check_warns_then_goes_critical_as_the_last_backup_ages() {
    let db = filled_db("check_age");
    let dir = tempdir();
    backup_at(dir.path(), &db, T0);
    for (hours, code, word) in [
        (25, 0, "OK"),
        (26, 1, "WARNING"),
        (51, 1, "WARNING"),
        (52, 2, "CRITICAL"),
    ] {
        let out = check(dir.path(), &db, &later(T0, hours), &[]);
        out.assert_code(code);
        let (status, text, _) = status_line(&out);
        assert_eq!(status, word, "{hours}h:\n{out}");
        if code > 0 {
            assert!(
                text.starts_with(&format!("{db}: last complete backup ")),
                "{out}"
            );
        }
    }
    let at_53h = later(T0, 53);
    // The thresholds move with the flags, the variable and the config file.
    check(dir.path(), &db, &at_53h, &["--max-age", "2d"]).assert_code(1);
    check(
        dir.path(),
        &db,
        &at_53h,
        &["--max-age", "90m", "--crit-age", "3d"],
    )
    .assert_code(1);
    check(
        dir.path(),
        &db,
        &at_53h,
        &["--max-age", "1d12h", "--crit-age", "53h"],
    )
    .assert_code(2);
    aos(dir.path(), &db, &at_53h)
        .env("BACKUP_CHECK_MAX_AGE", "3d")
        .arg("check")
        .run()
        .assert_code(0);
    let cfg = aos(dir.path(), &db, &at_53h).arg("check");
    fs::write(
        cfg.dir().join("aos-backup.toml"),
        "[check]\nmax_age = \"2d\"\n",
    )
    .unwrap();
    cfg.run().assert_code(1);

    // An older backup does not make the database any fresher; a newer one does.
    let src = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "zst"))
        .unwrap();
    fabricate(&src, dir.path(), "2024-04-01T02:00:00Z", None);
    check(dir.path(), &db, &at_53h, &[]).assert_code(2);
    fabricate(&src, dir.path(), "2024-05-03T06:00:00Z", None);
    let out = check(dir.path(), &db, &at_53h, &[]);
    out.assert_code(0);
    assert_eq!(
        status_line(&out).1,
        "1 database, last backup 60m old",
        "{out}"
    );
}

#[test]
fn a_suspect_or_small_last_backup_is_reported() {
    let db = filled_db("check_suspect");
    let dir = tempdir();
    let first = backup_at(dir.path(), &db, T0);
    let (id, newer) = fabricate(&first, dir.path(), "2024-05-01T20:00:00Z", None);
    let mut meta = read_sidecar(&newer);
    meta["suspect"] = json!({"reason": "0 tables, the previous backup had 3", "previous_id": "x"});
    write_json(&sidecar(&newer), &meta);

    // Suspect: a warning, and the age is that of the backup before it.
    let out = check(dir.path(), &db, &later(T0, 22), &[]);
    out.assert_code(1);
    let (status, text, perf) = status_line(&out);
    assert_eq!(status, "WARNING", "{out}");
    assert_eq!(
        text,
        format!("{db}: last backup {id} is suspect: 0 tables, the previous backup had 3"),
        "{out}"
    );
    assert!(perf.starts_with(&format!("'{db}_age'=79200s;")), "{out}");
    // ...and once the trusted one is too old, critical.
    check(dir.path(), &db, &later(T0, 60), &[]).assert_code(2);

    // Below the minimum size: critical, with the threshold in the performance data.
    fs::remove_file(sidecar(&newer)).unwrap();
    fs::remove_file(&newer).unwrap();
    let size = read_sidecar(&first)["size_bytes"].as_u64().unwrap();
    let now = later(T0, 1);
    check(dir.path(), &db, &now, &["--min-size", &size.to_string()]).assert_code(0);
    let out = check(dir.path(), &db, &now, &["--min-size", "1GB"]);
    out.assert_code(2);
    let (_, text, perf) = status_line(&out);
    assert!(
        text.contains("below the minimum 953.7 MiB (1000000000 bytes)"),
        "{out}"
    );
    assert!(
        perf.ends_with(&format!("'{db}_size'={size}B;;1000000000:;0")),
        "{out}"
    );
    aos(dir.path(), &db, &now)
        .env("BACKUP_CHECK_MIN_SIZE", "1GiB")
        .arg("check")
        .run()
        .assert_code(2);
}

#[test]
fn no_backup_is_critical_and_an_unreadable_folder_unknown() {
    let db = filled_db("check_none");
    let dir = tempdir();
    // An empty (or missing) folder.
    let out = check(dir.path(), &db, T0, &[]);
    out.assert_code(2);
    assert_eq!(
        status_line(&out).1,
        format!("{db}: no complete backup"),
        "{out}"
    );
    let missing = dir.path().join("nowhere");
    let out = Cmd::new().env("BACKUP_DIR", &missing).arg("check").run();
    out.assert_code(2);
    assert_eq!(
        status_line(&out).1,
        format!(
            "no backups in {} (the folder does not exist)",
            missing.display()
        ),
        "{out}"
    );
    // Another database's backups do not count.
    backup_at(dir.path(), &db, T0);
    let out = check(dir.path(), &db, T0, &["--database", "other"]);
    out.assert_code(2);
    assert_eq!(status_line(&out).1, "other: no complete backup", "{out}");

    // The folder cannot be read: UNKNOWN, with the error on stderr as usual.
    let file = dir.path().join("a-file");
    fs::write(&file, "x").unwrap();
    let out = Cmd::new().env("BACKUP_DIR", &file).arg("check").run();
    out.assert_code(3);
    assert_eq!(status_line(&out).0, "UNKNOWN", "{out}");
    assert!(
        out.stderr.contains("error: reading the backup folder"),
        "{out}"
    );

    // A bad option or setting is UNKNOWN too (exit 2 would read as CRITICAL).
    for (args, env) in [
        (vec!["--max-age", "soon"], None),
        (vec!["--crit-age", "1h"], None),
        (vec!["--min-size", "big"], None),
        (vec!["--no-such-flag"], None),
        (vec![], Some(("BACKUP_CHECK_MAX_AGE", "0"))),
        (vec![], Some(("AOS_BACKUP_NOW", "yesterday"))),
    ] {
        let mut cmd = aos(dir.path(), &db, T0).arg("check").args(&args);
        if let Some((k, v)) = env {
            cmd = cmd.env(k, v);
        }
        let out = cmd.run();
        out.assert_code(3);
        assert_eq!(status_line(&out).0, "UNKNOWN", "{args:?} {env:?}:\n{out}");
    }
}

#[test]
fn check_looks_at_every_database_in_the_folder_and_names_the_late_one() {
    let (fresh, late) = (filled_db("check_fresh"), filled_db("check_late"));
    let dir = tempdir();
    backup_at(dir.path(), &late, T0);
    backup_at(dir.path(), &fresh, &later(T0, 27));
    let now = later(T0, 30);
    let out = Cmd::new()
        .env("BACKUP_DIR", dir.path())
        .env("AOS_BACKUP_NOW", &now)
        .arg("check")
        .run();
    out.assert_code(1);
    let (_, text, perf) = status_line(&out);
    assert_eq!(
        text,
        format!(
            "{late}: last complete backup {} is 30h old (warning after 26h)",
            id_of(dir.path(), &late)
        ),
        "{out}"
    );
    assert!(perf.contains(&format!("'{fresh}_age'=10800s")), "{out}");
    assert!(perf.contains(&format!("'{late}_age'=108000s")), "{out}");
    // DATABASE_URL narrows the check to its database; --all-databases widens it again.
    check(dir.path(), &fresh, &now, &[]).assert_code(0);
    check(dir.path(), &fresh, &now, &["--all-databases"]).assert_code(1);
    check(dir.path(), &fresh, &now, &["--database", &late]).assert_code(1);
}

/// The id of `db`'s only backup in `dir`.
fn id_of(dir: &Path, db: &str) -> String {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".meta.json"))
        .map(|p| crate::support::read_json(&p))
        .find(|m| m["database"] == db)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn check_json_has_the_status_the_thresholds_and_each_databases_findings() {
    let db = filled_db("check_json");
    let dir = tempdir();
    let backup = backup_at(dir.path(), &db, T0);
    let out = check(
        dir.path(),
        &db,
        &later(T0, 27),
        &["--json", "--min-size", "1kB"],
    );
    out.assert_code(1);
    let v = out.json();
    let meta = read_sidecar(&backup);
    assert_eq!(v["status"], "WARNING", "{out}");
    assert_eq!(v["exit_code"], 1);
    assert_eq!(
        v["thresholds"],
        json!({"warn_age_seconds": 93600, "crit_age_seconds": 187_200, "min_size_bytes": 1000, "max_drill_age_seconds": null})
    );
    assert_eq!(v["dir"], dir.path().display().to_string());
    let dbs = v["databases"].as_array().unwrap();
    assert_eq!(dbs.len(), 1, "{out}");
    let d = &dbs[0];
    assert_eq!(d["database"], db.as_str());
    assert_eq!(d["status"], "WARNING");
    let last = json!({
        "id": meta["id"],
        "time": meta["started_at"],
        "age_seconds": 27 * 3600,
        "size_bytes": meta["size_bytes"],
        "suspect": null,
    });
    assert_eq!(d["last_backup"], last, "{out}");
    assert_eq!(d["last_trusted_backup"], last, "{out}");
    let findings: Vec<(&str, &str)> = d["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["probe"].as_str().unwrap(), f["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        findings,
        [("age", "WARNING"), ("suspect", "OK"), ("size", "OK")],
        "{out}"
    );
    assert!(d["findings"][0]["message"]
        .as_str()
        .unwrap()
        .contains("27h old"));

    // UNKNOWN in JSON too.
    let out = Cmd::new()
        .env("BACKUP_DIR", dir.path().join(backup.file_name().unwrap()))
        .args(["check", "--json"])
        .run();
    out.assert_code(3);
    let v = out.json();
    assert_eq!(v["status"], "UNKNOWN", "{out}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("reading the backup folder"),
        "{out}"
    );
}

/// `(code, meaning)` for every check status, as the program defines them.
fn check_codes() -> Vec<(String, String)> {
    CheckStatus::ALL
        .iter()
        .map(|s| (s.code().to_string(), s.meaning().to_string()))
        .collect()
}

#[test]
fn readme_help_and_man_give_checks_own_exit_codes() {
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("\n### Monitoring: `check` and metrics\n")
        .nth(1)
        .expect("README has the monitoring subsection");
    let section = section.split("\n## ").next().unwrap();
    let section = section.split("\n### ").next().unwrap();
    let rows: Vec<(String, String)> = section
        .lines()
        .skip_while(|l| !l.starts_with("| Code |"))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 2, "a row of two cells: {row:?}");
            (cells[0].to_string(), cells[1].replace('`', ""))
        })
        .collect();
    assert_eq!(rows, check_codes(), "README's table of check's exit codes");

    let out = Cmd::new().args(["check", "--help"]).run();
    out.assert_success();
    let table = out
        .stdout
        .split("\nExit codes (check's own, as Nagios plugins use them):\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no exit codes in check --help:\n{out}"));
    let mut rows: Vec<(String, String)> = Vec::new();
    for line in table.lines().filter(|l| !l.trim().is_empty()) {
        let text = line.trim_start();
        let code: String = text.chars().take_while(char::is_ascii_digit).collect();
        if code.is_empty() {
            let last = rows.last_mut().unwrap();
            last.1 = format!("{} {text}", last.1);
        } else {
            rows.push((code.clone(), text[code.len()..].trim().to_string()));
        }
    }
    assert_eq!(rows, check_codes(), "check --help:\n{out}");

    let man = Cmd::new().arg("man").run();
    man.assert_success();
    let section = man
        .stdout
        .split(".SH \"CHECK EXIT STATUS\"\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no CHECK EXIT STATUS in the man page:\n{man}"));
    let section = section.split("\n.SH ").next().unwrap();
    let rows: Vec<(String, String)> = section
        .split(".TP\n")
        .skip(1)
        .map(|entry| {
            let (code, meaning) = entry.split_once('\n').unwrap();
            let clean = |s: &str| {
                s.replace("\\fB", "")
                    .replace("\\fR", "")
                    .replace("\\-", "-")
                    .replace("\\*(Aq", "'")
            };
            (clean(code), clean(meaning.trim()))
        })
        .collect();
    assert_eq!(rows, check_codes(), "aos-backup man:\n{man}");
}

/// A Prometheus text-format file, checked line by line: every sample's family has `# HELP` and
/// `# TYPE` lines before it, names and label names are well formed, label values are quoted
/// with the format's escapes, and values are numbers. Returns the samples as
/// `name -> labels -> value`.
fn parse_prometheus(text: &str) -> BTreeMap<String, BTreeMap<BTreeMap<String, String>, f64>> {
    fn is_name(s: &str) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    let mut helped = Vec::new();
    let mut typed = Vec::new();
    let mut samples: BTreeMap<String, BTreeMap<BTreeMap<String, String>, f64>> = BTreeMap::new();
    assert!(
        text.ends_with('\n'),
        "the file ends with a line feed:\n{text}"
    );
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(is_name(name) && !help.is_empty(), "{line}");
            helped.push(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(is_name(name) && kind == "gauge", "{line}");
            typed.push(name.to_string());
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let name_end = line.find(['{', ' ']).unwrap();
        let name = &line[..name_end];
        assert!(is_name(name), "{line}");
        assert!(
            helped.last().map(String::as_str) == Some(name),
            "no HELP before {line}"
        );
        assert!(
            typed.last().map(String::as_str) == Some(name),
            "no TYPE before {line}"
        );
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(inner) = rest.strip_prefix('{') {
            let mut s = inner;
            loop {
                if let Some(after) = s.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let (key, after) = s.split_once("=\"").unwrap();
                assert!(is_name(key), "label name {key:?} in {line}");
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next().unwrap() {
                        (i, '"') => break i,
                        (_, '\\') => match chars.next().unwrap().1 {
                            'n' => value.push('\n'),
                            c @ ('\\' | '"') => value.push(c),
                            c => panic!("bad escape \\{c} in {line}"),
                        },
                        (_, c) => value.push(c),
                    }
                };
                labels.insert(key.to_string(), value);
                s = after[end + 1..]
                    .strip_prefix(',')
                    .unwrap_or(&after[end + 1..]);
            }
        }
        let value: f64 = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no value in {line}"))
            .parse()
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        samples
            .entry(name.to_string())
            .or_default()
            .insert(labels, value);
    }
    samples
}

/// The labels `database` (and `operation`, when given).
fn labels(db: &str, operation: Option<&str>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([("database".to_string(), db.to_string())]);
    if let Some(op) = operation {
        l.insert("operation".into(), op.into());
    }
    l
}

/// The metrics file, parsed, after checking that it holds no secret and that no temp file was
/// left next to it.
#[track_caller]
fn metrics(file: &Path) -> BTreeMap<String, BTreeMap<BTreeMap<String, String>, f64>> {
    let text = fs::read_to_string(file).unwrap();
    for secret in [APP_PASSWORD, "S3cr3t", "postgresql://", "127.0.0.1"] {
        assert!(
            !text.contains(secret),
            "{secret:?} in the metrics file:\n{text}"
        );
    }
    let folder: Vec<String> = fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(folder, ["aos.prom"], "only the metrics file in its folder");
    assert_eq!(mode_of(file), 0o644);
    parse_prometheus(&text)
}

fn value(
    m: &BTreeMap<String, BTreeMap<BTreeMap<String, String>, f64>>,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Option<f64> {
    m.get(name)?.get(labels).copied()
}

#[test]
fn metrics_file_records_a_backup_then_a_failed_one() {
    let db = filled_db("metrics_backup");
    let dir = tempdir();
    let prom_dir = tempdir();
    let prom = prom_dir.path().join("aos.prom");
    let run = |now: &str, url: String| {
        aos(dir.path(), &db, now)
            .env("DATABASE_URL", url)
            .args(["--metrics-file"])
            .arg(&prom)
            .arg("backup")
            .run()
    };
    let out = run(T0, server().tcp_url(&db));
    out.assert_success();
    let size = read_sidecar(Path::new(out.stdout_trimmed()))["size_bytes"]
        .as_f64()
        .unwrap();
    let t0 = at(T0).timestamp() as f64;
    let m = metrics(&prom);
    let backup = labels(&db, Some("backup"));
    assert_eq!(value(&m, "aos_backup_last_status", &backup), Some(1.0));
    assert_eq!(
        value(&m, "aos_backup_last_attempt_timestamp_seconds", &backup),
        Some(t0)
    );
    let success = value(&m, "aos_backup_last_success_timestamp_seconds", &backup).unwrap();
    let duration = value(&m, "aos_backup_last_duration_seconds", &backup).unwrap();
    assert!(duration > 0.0 && duration < 120.0, "{duration}");
    assert!(
        (success - (t0 + duration)).abs() <= 1.0,
        "{success} {duration}"
    );
    assert_eq!(
        value(&m, "aos_backup_last_size_bytes", &labels(&db, None)),
        Some(size)
    );
    assert!(!m.contains_key("aos_backup_last_verified_timestamp_seconds"));
    assert!(!m.contains_key("aos_backup_last_drilled_timestamp_seconds"));

    // The server is down (a port nobody listens on): the same exit code as without metrics,
    // status 0, a new attempt, and the last success and size kept.
    let t1 = later(T0, 24);
    let bad_url = server()
        .tcp_url(&db)
        .replace(&format!(":{}/", server().port), ":1/");
    let out = run(&t1, bad_url.clone());
    let plain = aos(dir.path(), &db, &t1)
        .env("DATABASE_URL", &bad_url)
        .arg("backup")
        .run();
    assert_eq!(out.code, plain.code, "{out}\n{plain}");
    assert_eq!(out.code, Some(7), "{out}");
    let m = metrics(&prom);
    assert_eq!(value(&m, "aos_backup_last_status", &backup), Some(0.0));
    assert_eq!(
        value(&m, "aos_backup_last_attempt_timestamp_seconds", &backup),
        Some(at(&t1).timestamp() as f64)
    );
    assert_eq!(
        value(&m, "aos_backup_last_success_timestamp_seconds", &backup),
        Some(success)
    );
    assert_eq!(
        value(&m, "aos_backup_last_size_bytes", &labels(&db, None)),
        Some(size)
    );
}

#[test]
fn metrics_file_records_verify_prune_and_restore_per_database() {
    let db = filled_db("metrics_ops");
    let dir = tempdir();
    let prom_dir = tempdir();
    let prom = prom_dir.path().join("aos.prom");
    let cmd = |now: &str| aos(dir.path(), &db, now).env("BACKUP_METRICS_FILE", &prom);
    cmd(T0).arg("backup").run().assert_success();
    let t1 = later(T0, 1);
    cmd(&t1).arg("verify").run().assert_success();
    let t2 = later(T0, 2);
    cmd(&t2)
        .args(["prune", "--keep-last", "5"])
        .run()
        .assert_success();
    // A dry run changes nothing, and is not recorded.
    cmd(&later(T0, 3))
        .args(["prune", "--keep-last", "5", "--dry-run"])
        .run()
        .assert_success();
    let t4 = later(T0, 4);
    cmd(&t4)
        .args(["restore", "latest", "--yes"])
        .run()
        .assert_success();
    let m = metrics(&prom);
    for (op, t) in [
        ("backup", T0),
        ("verify", &t1),
        ("prune", &t2),
        ("restore", &t4),
    ] {
        let l = labels(&db, Some(op));
        assert_eq!(value(&m, "aos_backup_last_status", &l), Some(1.0), "{op}");
        assert_eq!(
            value(&m, "aos_backup_last_attempt_timestamp_seconds", &l),
            Some(at(t).timestamp() as f64),
            "{op}"
        );
    }
    let verified = value(
        &m,
        "aos_backup_last_verified_timestamp_seconds",
        &labels(&db, None),
    );
    assert!(verified.unwrap() >= at(&t1).timestamp() as f64, "{m:?}");

    // A verify that fails (a damaged backup) is recorded as failed, and the last verified time
    // stays.
    let backup = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        // Not the restore's safety backup (`...-pre-restore.dump.zst`).
        .find(|p| {
            p.extension().is_some_and(|e| e == "zst")
                && !p.to_string_lossy().contains("-pre-restore")
        })
        .unwrap();
    let mut bytes = fs::read(&backup).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&backup, bytes).unwrap();
    let out = cmd(&later(T0, 5)).arg("verify").run();
    out.assert_code(4);
    let m = metrics(&prom);
    assert_eq!(
        value(&m, "aos_backup_last_status", &labels(&db, Some("verify"))),
        Some(0.0)
    );
    assert_eq!(
        value(
            &m,
            "aos_backup_last_verified_timestamp_seconds",
            &labels(&db, None)
        ),
        verified
    );
    // `check` and `list` leave the file alone.
    let before = fs::read(&prom).unwrap();
    cmd(&later(T0, 6)).arg("check").run();
    cmd(&later(T0, 6)).arg("list").run().assert_success();
    assert_eq!(fs::read(&prom).unwrap(), before);
}

#[test]
fn metrics_keep_other_databases_escape_labels_and_never_fail_the_run() {
    let db = filled_db("metrics_keep");
    let dir = tempdir();
    let prom_dir = tempdir();
    let prom = prom_dir.path().join("aos.prom");
    // A file left by earlier runs, with another database whose name needs escaping.
    let odd = "we\"ird\\name\nx";
    fs::write(
        &prom,
        "# HELP aos_backup_last_status 1 when ...\n# TYPE aos_backup_last_status gauge\n\
         aos_backup_last_status{database=\"we\\\"ird\\\\name\\nx\",operation=\"backup\"} 1\n\
         some_other_metric 5\n",
    )
    .unwrap();
    aos(dir.path(), &db, T0)
        .args(["--metrics-file"])
        .arg(&prom)
        .arg("backup")
        .run()
        .assert_success();
    let m = metrics(&prom);
    assert_eq!(
        value(&m, "aos_backup_last_status", &labels(odd, Some("backup"))),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "aos_backup_last_status", &labels(&db, Some("backup"))),
        Some(1.0)
    );
    assert!(!m.contains_key("some_other_metric"), "{m:?}");

    // A metrics file that cannot be written: a warning, and the backup still succeeds.
    let out = aos(dir.path(), &db, &later(T0, 1))
        .env(
            "BACKUP_METRICS_FILE",
            prom_dir.path().join("no/such/folder/aos.prom"),
        )
        .arg("backup")
        .run();
    out.assert_success();
    assert!(
        out.stderr.contains("cannot update the metrics file"),
        "{out}"
    );
}

#[test]
fn check_sees_the_database_subfolders_of_a_many_database_run() {
    let pg = server();
    let (one, two) = (filled_db("check_sub_one"), filled_db("check_sub_two"));
    let work = tempdir();
    let dir = work.path().join("backups");
    let cfg = work.path().join("aos.toml");
    // `one` is listed under its own name, `two` under another: its folder is `blog`.
    fs::write(
        &cfg,
        format!(
            "[[databases]]\nname = \"{one}\"\nurl_env = \"ONE_URL\"\n\n\
             [[databases]]\nname = \"blog\"\nurl_env = \"TWO_URL\"\n"
        ),
    )
    .unwrap();
    let aos = |now: &str| {
        Cmd::new()
            .env("BACKUP_DIR", &dir)
            .env("PG_BIN", &pg.bindir)
            .env("AOS_BACKUP_CONFIG", &cfg)
            .env("ONE_URL", pg.tcp_url(&one))
            .env("TWO_URL", pg.tcp_url(&two))
            .env("AOS_BACKUP_NOW", now)
    };
    aos(T0).arg("backup").run().assert_success();
    assert!(dir.join(&one).is_dir() && dir.join("blog").is_dir());
    let now = later(T0, 3);

    let out = aos(&now).args(["check", "--all-databases"]).run();
    out.assert_code(0);
    let (status, text, _) = status_line(&out);
    assert_eq!(
        (status.as_str(), text.as_str()),
        ("OK", "2 databases, last backups 3h old"),
        "{out}"
    );
    assert_contains(
        &out,
        &out.stdout,
        &[&format!("\n{one}: OK"), &format!("\n{two}: OK")],
    );

    for name in [one.as_str(), two.as_str(), "blog"] {
        let out = aos(&now).args(["check", "--database", name]).run();
        out.assert_code(0);
        let (status, text, _) = status_line(&out);
        assert_eq!(
            (status.as_str(), text.as_str()),
            ("OK", "1 database, last backup 3h old"),
            "{out}"
        );
    }

    // Without either flag, check looks at DATABASE_URL's database, in its subfolder too.
    let out = aos(&now)
        .env("DATABASE_URL", pg.tcp_url(&two))
        .arg("check")
        .run();
    out.assert_code(0);
    assert_contains(&out, &out.stdout, &[&format!("\n{two}: OK")]);
}

/// A config file listing `good` (URL in `$GOOD_URL`) and `gone` (URL in `$GONE_URL`).
fn good_and_gone(dir: &Path) -> PathBuf {
    let cfg = dir.join("aos.toml");
    fs::write(
        &cfg,
        "[[databases]]\nname = \"good\"\nurl_env = \"GOOD_URL\"\n\n\
         [[databases]]\nname = \"gone\"\nurl_env = \"GONE_URL\"\n",
    )
    .unwrap();
    cfg
}

#[test]
fn metrics_file_records_each_database_of_a_many_database_run() {
    let db = filled_db("metrics_many");
    let missing = format!("metrics_many_missing_{}", std::process::id());
    let (dir, work, prom_dir) = (tempdir(), tempdir(), tempdir());
    let prom = prom_dir.path().join("aos.prom");
    let cfg = good_and_gone(work.path());
    let run = |now: &str| {
        Cmd::new()
            .env("BACKUP_DIR", dir.path())
            .env("PG_BIN", &server().bindir)
            .env("AOS_BACKUP_CONFIG", &cfg)
            .env("GOOD_URL", server().tcp_url(&db))
            .env("GONE_URL", server().tcp_url(&missing))
            .env("AOS_BACKUP_NOW", now)
            .env("BACKUP_METRICS_FILE", &prom)
    };
    let out = run(T0).arg("backup").run();
    assert_ne!(out.code, Some(0), "{out}");
    let m = metrics(&prom);
    let status = |m: &BTreeMap<_, _>, name: &str| {
        value(m, "aos_backup_last_status", &labels(name, Some("backup")))
    };
    assert_eq!(status(&m, "good"), Some(1.0), "{m:?}");
    assert_eq!(status(&m, "gone"), Some(0.0), "{m:?}");
    let size = value(&m, "aos_backup_last_size_bytes", &labels("good", None));
    assert!(size.is_some_and(|s| s > 0.0), "{m:?}");
    assert_eq!(
        value(&m, "aos_backup_last_size_bytes", &labels("gone", None)),
        None
    );

    // With DATABASE_URL set, `--all-configured` still records each listed database, and
    // DATABASE_URL's database gets nothing.
    let t1 = later(T0, 1);
    let out = run(&t1)
        .env("DATABASE_URL", server().tcp_url(&db))
        .args(["backup", "--all-configured"])
        .run();
    assert_ne!(out.code, Some(0), "{out}");
    let m = metrics(&prom);
    assert_eq!(status(&m, "good"), Some(1.0), "{m:?}");
    assert_eq!(status(&m, "gone"), Some(0.0), "{m:?}");
    assert_eq!(status(&m, &db), None, "{m:?}");
    let attempt = |name: &str| {
        value(
            &m,
            "aos_backup_last_attempt_timestamp_seconds",
            &labels(name, Some("backup")),
        )
    };
    assert_eq!(attempt("good"), Some(at(&t1).timestamp() as f64));
    assert_eq!(attempt("gone"), Some(at(&t1).timestamp() as f64));
}

#[test]
fn the_metrics_file_never_replaces_a_file_that_is_not_one() {
    let db = filled_db("metrics_refuse");
    let (dir, other) = (tempdir(), tempdir());
    let backup = backup_at(dir.path(), &db, T0);
    let meta = sidecar(&backup);
    let before = fs::read_to_string(&meta).unwrap();

    // A sidecar (in the backup folder): left as it is, a warning, the backup still made.
    let out = aos(dir.path(), &db, &later(T0, 1))
        .env("BACKUP_METRICS_FILE", &meta)
        .arg("backup")
        .run();
    out.assert_success();
    assert_eq!(fs::read_to_string(&meta).unwrap(), before);
    assert_contains(
        &out,
        &out.stderr,
        &["cannot update the metrics file", "inside the backup folder"],
    );

    // A file of something else (here a `.env`) outside it: left as it is, a warning.
    let env_file = other.path().join("app.env");
    fs::write(&env_file, "SHOP_DATABASE_URL=postgresql://app@db/shop\n").unwrap();
    let out = aos(dir.path(), &db, &later(T0, 2))
        .env("BACKUP_METRICS_FILE", &env_file)
        .arg("backup")
        .run();
    out.assert_success();
    assert_eq!(
        fs::read_to_string(&env_file).unwrap(),
        "SHOP_DATABASE_URL=postgresql://app@db/shop\n"
    );
    assert_contains(&out, &out.stderr, &["not a metrics textfile"]);
}

/// A restore's safety backup is not a scheduled backup: a restore a day after the last backup
/// does not make an overdue backup look fresh.
#[test]
fn a_restores_safety_backup_does_not_stand_in_for_the_scheduled_backup() {
    let db = filled_db("check_safety");
    let dir = tempdir();
    backup_at(dir.path(), &db, T0);
    aos(dir.path(), &db, &later(T0, 30))
        .args(["restore", "--yes", "latest"])
        .run()
        .assert_success();
    assert!(
        crate::support::names_if_any(dir.path())
            .iter()
            .any(|n| n.contains("pre-restore")),
        "the restore took a safety backup"
    );
    let out = check(dir.path(), &db, &later(T0, 31), &[]);
    out.assert_code(1);
    assert_eq!(status_line(&out).0, "WARNING", "{out}");
}

/// The `(probe, status)` pairs of the first database of a `check --json`.
fn probes(out: &Output) -> Vec<(String, String)> {
    out.json()["databases"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["probe"].as_str().unwrap().to_string(),
                f["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn check_reports_the_last_drill_passed_failed_or_unrestorable() {
    let db = filled_db("check_drill");
    let dir = tempdir();
    let backup = backup_at(dir.path(), &db, T0);
    let now = later(T0, 1);
    let drill_finding = |code: i32| {
        let out = check(dir.path(), &db, &now, &["--json"]);
        out.assert_code(code);
        let found = probes(&out);
        assert_eq!(found.len(), 3, "{out}");
        assert_eq!(found[2].0, "drill", "{out}");
        (found[2].1.clone(), out)
    };

    // Never drilled: no drill finding, unless drills are required to be recent.
    let out = check(dir.path(), &db, &now, &["--json"]);
    out.assert_code(0);
    assert!(probes(&out).iter().all(|(p, _)| p != "drill"), "{out}");
    let out = check(dir.path(), &db, &now, &["--max-drill-age", "35d"]);
    out.assert_code(1);
    assert!(
        out.stdout
            .contains("WARNING   drill: no drill recorded (warning after 35d)"),
        "{out}"
    );
    let out = aos(dir.path(), &db, &now)
        .env("BACKUP_CHECK_MAX_DRILL_AGE", "35d")
        .arg("check")
        .run();
    out.assert_code(1);
    assert!(out.stdout.contains("no drill recorded"), "{out}");
    let out = check(dir.path(), &db, &now, &["--max-drill-age", "soon"]);
    out.assert_code(3);
    assert!(out.stderr.contains("invalid --max-drill-age"), "{out}");

    // A drill that passed.
    aos(dir.path(), &db, &now)
        .arg("drill")
        .run()
        .assert_success();
    let (status, out) = drill_finding(0);
    assert_eq!(status, "OK", "{out}");
    assert!(out.stdout.contains("passed (RTO "), "{out}");
    check(dir.path(), &db, &now, &["--max-drill-age", "35d"]).assert_code(0);

    // One whose row counts do not match the backup's: a warning.
    let meta_path = sidecar(&backup);
    let mut meta = read_sidecar(&backup);
    meta["row_counts"][0]["rows"] = json!(123_456_789);
    write_json(&meta_path, &meta);
    aos(dir.path(), &db, &now)
        .arg("drill")
        .run()
        .assert_code(11);
    let (status, out) = drill_finding(1);
    assert_eq!(status, "WARNING", "{out}");

    // One that could not restore the backup: critical.
    let record = PathBuf::from(format!("{}.drill.json", backup.display()));
    let mut drilled = crate::support::read_json(&record);
    drilled["outcome"] = json!("restore-failed");
    drilled["drilled_at"] = json!((at(&now) + chrono::Duration::minutes(1)).to_rfc3339());
    write_json(&record, &drilled);
    let (status, out) = drill_finding(2);
    assert_eq!(status, "CRITICAL", "{out}");
    let text = check(dir.path(), &db, &now, &[]);
    assert!(text.stdout.contains("could not restore it"), "{text}");

    // Once prune has deleted the drilled backup, its folder still knows the database's most
    // recent real drill (the one that failed a check).
    let newer = later(T0, 2);
    backup_at(dir.path(), &db, &newer);
    aos(dir.path(), &db, &newer)
        .args(["prune", "--keep-last", "1"])
        .run()
        .assert_success();
    assert!(!record.exists() && !backup.exists());
    let out = check(
        dir.path(),
        &db,
        &newer,
        &["--json", "--max-drill-age", "35d"],
    );
    out.assert_code(1);
    assert_eq!(
        probes(&out)[2],
        ("drill".to_string(), "WARNING".to_string()),
        "{out}"
    );
    assert!(out.stdout.contains("failed a check"), "{out}");
}

#[test]
fn metrics_file_records_a_passed_drill_then_a_failed_one() {
    let db = filled_db("metrics_drill");
    let dir = tempdir();
    let prom_dir = tempdir();
    let prom = prom_dir.path().join("aos.prom");
    let backup = backup_at(dir.path(), &db, T0);
    let now = later(T0, 1);
    let drill = || {
        aos(dir.path(), &db, &now)
            .args(["--metrics-file"])
            .arg(&prom)
            .arg("drill")
            .run()
    };
    drill().assert_success();
    let m = metrics(&prom);
    let drilled = labels(&db, Some("drill"));
    assert_eq!(value(&m, "aos_backup_last_status", &drilled), Some(1.0));
    let passed_at = value(
        &m,
        "aos_backup_last_drilled_timestamp_seconds",
        &labels(&db, None),
    )
    .expect("a passed drill sets the drilled time");
    assert!(passed_at >= at(&now).timestamp() as f64, "{passed_at}");

    // Row counts that no longer match: the drill fails (exit 11), status 0, the time of the
    // last passed drill kept.
    let mut meta = read_sidecar(&backup);
    meta["row_counts"][0]["rows"] = json!(123_456_789);
    write_json(&sidecar(&backup), &meta);
    drill().assert_code(11);
    let m = metrics(&prom);
    assert_eq!(value(&m, "aos_backup_last_status", &drilled), Some(0.0));
    assert_eq!(
        value(
            &m,
            "aos_backup_last_drilled_timestamp_seconds",
            &labels(&db, None)
        ),
        Some(passed_at)
    );
}
