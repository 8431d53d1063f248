//! The backup catalog against a real PostgreSQL server: the metadata sidecar, `list`, `verify`
//! (one test per way a stored backup can be damaged), `restore` by id, retention (`prune` and the
//! automatic prune after a backup) and configuration (TOML file, `.env`, environment, flags).
//!
//! Running pg_dump is the slow part, so most tests share one [`template`]: a small database and two
//! real backups of it, made once per test process. Tests copy those files into their own folders,
//! and fabricate further backups by copying a real file under a new name with a sidecar whose id,
//! file name and dates are adjusted (its checksum stays valid: the bytes are the same).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tempfile::TempDir;

use crate::cmd::{Cmd, Output};
use crate::harness::{self, server, APP_PASSWORD};
use crate::support::{
    self, assert_contains, at, fabricate, file_name, id_at, read_json, sha256_hex, sidecar,
    tempdir, write_json,
};
use aos_backup::check::LOCK_FILE;

/// "Now" for every command that does not say otherwise (`AOS_BACKUP_NOW`): a Sunday, noon UTC.
const NOW: &str = "2024-03-31T12:00:00Z";
/// The template's first real backup, and its id.
const A_TIME: &str = "2024-03-30T15:00:00Z";
const A_ID: &str = "20240330-150000";
/// The template's second real backup (one more row in `items`), and its id.
const B_TIME: &str = "2024-03-31T03:00:00Z";
const B_ID: &str = "20240331-030000";

/// A small database: three tables (one empty), a few hundred rows, owned by `app`.
const SOURCE_SQL: &str = "\
SET ROLE app;
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(8,2));
INSERT INTO items SELECT g, 'item ' || g, g * 1.25 FROM generate_series(1, 300) g;
CREATE TABLE tags (id serial PRIMARY KEY, item_id int REFERENCES items, tag text);
INSERT INTO tags (item_id, tag) SELECT g, 'tag' || (g % 7) FROM generate_series(1, 120) g;
CREATE TABLE empty_table (x int);";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The shared source database and its two real backups.
struct Template {
    db: String,
    /// `items` has 300 rows in A and 301 in B.
    a: PathBuf,
    b: PathBuf,
    contents_a: String,
    contents_b: String,
}

/// Made on first use: a database filled with [`SOURCE_SQL`], backup A at [`A_TIME`], one more row,
/// backup B at [`B_TIME`] (both over TCP with the password, default settings).
fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let pg = server();
        let db = pg.create_db("catalog_template");
        pg.psql(&db, SOURCE_SQL);
        let dir = crate::support::shared_tempdir("aos-backup-it-catalog.");

        let contents_a = pg.table_contents(&db);
        let a = backup_at(&dir, &db, A_TIME);
        pg.psql(&db, "INSERT INTO items VALUES (301, 'added after A', 1.00)");
        let contents_b = pg.table_contents(&db);
        let b = backup_at(&dir, &db, B_TIME);
        assert_ne!(contents_a, contents_b);
        Template {
            db,
            a,
            b,
            contents_a,
            contents_b,
        }
    })
}

/// Runs a real `backup` of `db` into `dir` "at" `time`; returns the new file.
fn backup_at(dir: &Path, db: &str, time: &str) -> PathBuf {
    let out = aos(dir)
        .env("DATABASE_URL", server().tcp_url(db))
        .env("AOS_BACKUP_NOW", time)
        .arg("backup")
        .run();
    out.assert_success();
    let path = PathBuf::from(out.stdout_trimmed());
    assert!(path.is_file(), "{out}");
    path
}

/// `aos-backup` with `BACKUP_DIR=dir`, the harness's client tools and `AOS_BACKUP_NOW=NOW`.
fn aos(dir: &Path) -> Cmd {
    Cmd::new()
        .env("BACKUP_DIR", dir)
        .env("PG_BIN", &server().bindir)
        .env("AOS_BACKUP_NOW", NOW)
}

/// `aos-backup` run in `cwd`, with the harness's tools, and nothing else configured.
fn aos_in(cwd: &Path) -> Cmd {
    Cmd::new()
        .current_dir(cwd)
        .env("PG_BIN", &server().bindir)
        .env("AOS_BACKUP_NOW", NOW)
}

fn set_mtime(path: &Path, time: &str) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(at(time).into())
        .unwrap();
}

/// Copies a backup and its sidecar into `dir`; returns the copy.
fn copy_backup(src: &Path, dir: &Path) -> PathBuf {
    let dst = dir.join(src.file_name().unwrap());
    fs::copy(src, &dst).unwrap();
    fs::copy(sidecar(src), sidecar(&dst)).unwrap();
    dst
}

/// The names in `dir`, without the lock file.
fn names(dir: &Path) -> BTreeSet<String> {
    support::backup_names(dir).into_iter().collect()
}

/// Names and sizes of everything in `dir` (the lock file left out).
fn snapshot(dir: &Path) -> BTreeMap<String, u64> {
    names(dir)
        .into_iter()
        .map(|n| {
            let len = fs::metadata(dir.join(&n)).unwrap().len();
            (n, len)
        })
        .collect()
}

/// A backup file's name and its sidecar's, for each id.
fn pairs(ids: &[&str]) -> BTreeSet<String> {
    ids.iter()
        .flat_map(|id| [file_name(id), format!("{}.meta.json", file_name(id))])
        .collect()
}

fn flip_middle_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(path, bytes).unwrap();
}

/// The first JSON document on stdout. A command that fails after printing its result with
/// `--json` (verify) prints the error as a second document.
#[track_caller]
fn first_json(out: &Output) -> Value {
    serde_json::Deserializer::from_str(&out.stdout)
        .into_iter::<Value>()
        .next()
        .unwrap_or_else(|| panic!("no JSON on stdout:\n{out}"))
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{out}"))
}

/// Asserts that neither stream holds the password, raw or percent-encoded.
#[track_caller]
fn assert_no_password(out: &Output) {
    for secret in [APP_PASSWORD, &harness::app_password_encoded(), "S3cr3t"] {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "the password ({secret}) leaked:\n{out}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Metadata
// ---------------------------------------------------------------------------------------------

#[test]
fn backup_writes_a_complete_private_sidecar_without_the_password() {
    let pg = server();
    let db = pg.create_db("catalog_meta");
    pg.psql(&db, SOURCE_SQL);
    let dir = tempdir();
    let before = Utc::now();
    let out = Cmd::new()
        .env("BACKUP_DIR", dir.path())
        .env("PG_BIN", &pg.bindir)
        .env("DATABASE_URL", pg.tcp_url(&db))
        .args(["backup", "--name", "nightly"])
        .run();
    let after = Utc::now();
    out.assert_success();
    assert_no_password(&out);
    let path = PathBuf::from(out.stdout_trimmed());
    let name = path.file_name().unwrap().to_str().unwrap().to_owned();
    assert_eq!(path.parent().unwrap(), dir.path(), "{out}");
    let meta_path = sidecar(&path);
    assert!(meta_path.is_file(), "no sidecar {}", meta_path.display());

    let raw = fs::read_to_string(&meta_path).unwrap();
    for secret in [APP_PASSWORD, &harness::app_password_encoded(), "S3cr3t"] {
        assert!(
            !raw.contains(secret),
            "the password is in the sidecar:\n{raw}"
        );
    }
    let meta: Value = serde_json::from_str(&raw).unwrap();
    let bytes = fs::read(&path).unwrap();

    assert_eq!(meta["format_version"], 1, "{raw}");
    let id = meta["id"].as_str().unwrap();
    assert_eq!(meta["label"], "nightly");
    assert_eq!(meta["file"], name.as_str());
    assert_eq!(name, format!("aos-backup-{id}.dump.zst"));

    // Times: UTC, within the run, consistent with the duration and the id.
    let started_text = meta["started_at"].as_str().unwrap();
    let finished_text = meta["finished_at"].as_str().unwrap();
    for t in [started_text, finished_text] {
        assert!(t.ends_with('Z') || t.ends_with("+00:00"), "not UTC: {t}");
    }
    let started = at(started_text);
    let finished = at(finished_text);
    let second = chrono::Duration::seconds(1);
    assert!(
        before - second <= started && started <= finished && finished <= after + second,
        "{before} <= {started} <= {finished} <= {after}"
    );
    let duration_ms = meta["duration_ms"].as_i64().unwrap();
    assert!(
        ((finished - started).num_milliseconds() - duration_ms).abs() <= 1,
        "duration_ms {duration_ms} vs {started}..{finished}"
    );
    assert_eq!(
        id,
        format!("{}-nightly", started.format("%Y%m%d-%H%M%S")),
        "{raw}"
    );

    // Where it came from.
    assert_eq!(meta["database"], db.as_str());
    assert!(
        meta["host"].as_str().unwrap().starts_with("127.0.0.1"),
        "{raw}"
    );
    assert_eq!(meta["port"], pg.port);
    let server_version = pg.psql("postgres", "SHOW server_version");
    let server_version = server_version.split_whitespace().next().unwrap();
    assert_eq!(meta["server_version"], server_version, "{raw}");
    let pg_dump_line = std::process::Command::new(pg.bindir.join("pg_dump"))
        .arg("--version")
        .output()
        .unwrap();
    let pg_dump_line = String::from_utf8(pg_dump_line.stdout).unwrap();
    let pg_dump_version = pg_dump_line.split_whitespace().nth(2).unwrap();
    assert_eq!(meta["pg_dump_version"], pg_dump_version, "{raw}");
    assert_eq!(meta["tool_version"], env!("CARGO_PKG_VERSION"));

    // What it is.
    assert_eq!(meta["format"], "custom");
    assert_eq!(meta["compression"], "zstd");
    assert_eq!(meta["encryption"], "none");
    assert_eq!(meta["size_bytes"], bytes.len() as u64);
    assert_eq!(meta["sha256"], sha256_hex(&bytes).as_str());
    assert!(meta["dump_bytes"].as_u64().unwrap() > 0, "{raw}");
    let real_tables = pg.psql(
        &db,
        "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    );
    assert_eq!(real_tables, "3");
    assert_eq!(meta["tables"], 3, "{raw}");

    // Both files are private to the owner.
    for p in [&meta_path, &path] {
        let mode = fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", p.display());
    }
    // Nothing else was left behind.
    assert_eq!(
        names(dir.path()),
        BTreeSet::from([name.clone(), format!("{name}.meta.json")])
    );

    // --json prints the same metadata plus the path.
    let json_out = Cmd::new()
        .env("BACKUP_DIR", dir.path())
        .env("PG_BIN", &pg.bindir)
        .env("DATABASE_URL", pg.tcp_url(&db))
        .env("AOS_BACKUP_NOW", NOW)
        .args(["backup", "--json"])
        .run();
    json_out.assert_success();
    assert_no_password(&json_out);
    let report = json_out.json();
    let new_path = PathBuf::from(report["path"].as_str().unwrap());
    assert_eq!(read_json(&sidecar(&new_path)), {
        let mut r = report.clone();
        r.as_object_mut().unwrap().remove("path");
        r
    });
    assert_eq!(report["id"], "20240331-120000");
    assert_eq!(report["label"], Value::Null);
    pg.drop_db(&db);
}

#[test]
fn two_backups_in_the_same_second_get_distinct_ids() {
    let t = template();
    let dir = tempdir();
    let first = backup_at(dir.path(), &t.db, "2024-04-01T00:00:00Z");
    let second = backup_at(dir.path(), &t.db, "2024-04-01T00:00:00Z");
    assert_eq!(
        first,
        dir.path().join("aos-backup-20240401-000000.dump.zst")
    );
    assert_eq!(
        second,
        dir.path().join("aos-backup-20240401-000000-2.dump.zst")
    );
    assert_eq!(read_json(&sidecar(&first))["id"], "20240401-000000");
    assert_eq!(read_json(&sidecar(&second))["id"], "20240401-000000-2");
    assert_eq!(
        read_json(&sidecar(&second))["file"],
        "aos-backup-20240401-000000-2.dump.zst"
    );
    // Both are addressable by id, and both verify.
    for id in ["20240401-000000", "20240401-000000-2"] {
        let out = aos(dir.path()).args(["verify", id]).run();
        out.assert_success();
        assert_contains(&out, &out.stdout, &[&format!("aos-backup-{id}.dump.zst")]);
    }
}

// ---------------------------------------------------------------------------------------------
// 2. list
// ---------------------------------------------------------------------------------------------

#[test]
fn list_shows_every_status_newest_first_in_text_and_json() {
    let pg = server();
    let t = template();
    let dir = tempdir();
    let d = dir.path();
    let a = copy_backup(&t.a, d);
    let b = copy_backup(&t.b, d);
    let (nightly_id, nightly) = fabricate(&t.a, d, "2024-03-25T12:00:00Z", Some("nightly"));
    // A foreign backup and a pg_dump -Fc archive copied in by hand: unmanaged.
    let foreign = d.join("backup_2024.sql.gz");
    fs::write(&foreign, vec![7u8; 2048]).unwrap();
    set_mtime(&foreign, "2024-03-20T00:00:00Z");
    let manual = d.join("manual.dump");
    let status = std::process::Command::new(pg.bindir.join("pg_dump"))
        .env_clear()
        .env("PGPASSFILE", "/nonexistent")
        .arg("-Fc")
        .arg("-h")
        .arg(&pg.socket_dir)
        .args([
            "-p",
            &pg.port.to_string(),
            "-U",
            harness::SUPERUSER,
            "-d",
            &t.db,
        ])
        .arg("-f")
        .arg(&manual)
        .status()
        .unwrap();
    assert!(status.success());
    set_mtime(&manual, "2024-03-28T00:00:00Z");
    // A leftover of an interrupted run: incomplete.
    let partial = d.join("aos-backup-20240331-110000.dump.zst.partial");
    fs::write(&partial, vec![1u8; 100]).unwrap();
    set_mtime(&partial, "2024-03-31T11:00:00Z");
    // Not backups at all: ignored.
    fs::write(d.join("notes.txt"), "hello").unwrap();
    fs::write(d.join(LOCK_FILE), "").unwrap();

    let out = aos(d).args(["list", "--json"]).run();
    out.assert_success();
    let list = out.json();
    let list = list.as_array().unwrap();
    let files: Vec<&str> = list.iter().map(|e| e["file"].as_str().unwrap()).collect();
    let a_name = a.file_name().unwrap().to_str().unwrap();
    let b_name = b.file_name().unwrap().to_str().unwrap();
    let nightly_name = nightly.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        files,
        [
            "aos-backup-20240331-110000.dump.zst.partial",
            b_name,
            a_name,
            "manual.dump",
            nightly_name,
            "backup_2024.sql.gz",
        ],
        "{out}"
    );
    let statuses: Vec<&str> = list.iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(
        statuses,
        [
            "incomplete",
            "complete",
            "complete",
            "unmanaged",
            "complete",
            "unmanaged"
        ]
    );
    let ids: Vec<Value> = list.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(
        ids,
        [
            Value::from("20240331-110000"),
            B_ID.into(),
            A_ID.into(),
            Value::Null,
            nightly_id.clone().into(),
            Value::Null
        ]
    );
    let times: Vec<&str> = list.iter().map(|e| e["time"].as_str().unwrap()).collect();
    let times: Vec<DateTime<Utc>> = times.iter().map(|t| at(t)).collect();
    assert_eq!(
        times,
        [
            at("2024-03-31T11:00:00Z"),
            at(B_TIME),
            at(A_TIME),
            at("2024-03-28T00:00:00Z"),
            at("2024-03-25T12:00:00Z"),
            at("2024-03-20T00:00:00Z"),
        ]
    );
    let ages: Vec<i64> = list
        .iter()
        .map(|e| e["age_seconds"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ages,
        [
            3600,
            9 * 3600,
            21 * 3600,
            3 * 86400 + 12 * 3600,
            6 * 86400,
            11 * 86400 + 12 * 3600
        ]
    );
    let sizes: Vec<u64> = list
        .iter()
        .map(|e| e["size_bytes"].as_u64().unwrap())
        .collect();
    let len = |p: &Path| fs::metadata(p).unwrap().len();
    assert_eq!(
        sizes,
        [100, len(&b), len(&a), len(&manual), len(&nightly), 2048]
    );
    let labels: Vec<Value> = list.iter().map(|e| e["label"].clone()).collect();
    assert_eq!(labels[4], "nightly");
    assert!(labels
        .iter()
        .enumerate()
        .all(|(i, l)| i == 4 || l.is_null()));
    let databases: Vec<Value> = list.iter().map(|e| e["database"].clone()).collect();
    let db = Value::from(t.db.as_str());
    assert_eq!(
        databases,
        [
            Value::Null,
            db.clone(),
            db.clone(),
            Value::Null,
            db,
            Value::Null
        ]
    );
    assert_eq!(list[1]["format"], "custom");
    assert_eq!(list[1]["compression"], "zstd");
    assert_eq!(list[1]["encryption"], "none");
    assert_eq!(list[1]["path"], b.display().to_string());

    // The same in text: a header, then one row per entry in the same order.
    let out = aos(d).arg("list").run();
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert_contains(
        &out,
        lines[0],
        &[
            "ID",
            "CREATED (UTC)",
            "AGE",
            "SIZE",
            "LABEL",
            "DATABASE",
            "STATUS",
        ],
    );
    let expect: [&[&str]; 6] = [
        &[
            "20240331-110000",
            "2024-03-31 11:00:00",
            " 60m ",
            "100 B",
            "incomplete",
        ],
        &[B_ID, "2024-03-31 03:00:00", " 9h ", &t.db, "complete"],
        &[A_ID, "2024-03-30 15:00:00", " 21h ", &t.db, "complete"],
        &["2024-03-28 00:00:00", " 3d ", "unmanaged"],
        &[
            &nightly_id,
            "2024-03-25 12:00:00",
            " 6d ",
            "nightly",
            &t.db,
            "complete",
        ],
        &["2024-03-20 00:00:00", " 11d ", "2.0 KiB", "unmanaged"],
    ];
    for (line, needles) in lines[1..].iter().zip(expect) {
        assert_contains(&out, line, needles);
    }
    assert!(
        lines[4].starts_with("manual.dump "),
        "a foreign file has no id and is listed by name: {out}"
    );
    assert!(
        lines[6].starts_with("backup_2024.sql.gz "),
        "a foreign file has no id and is listed by name: {out}"
    );
    assert!(!out.stdout.contains("notes.txt") && !out.stdout.contains(LOCK_FILE));
    assert_contains(&out, &out.stderr, &["leftover", "prune"]);
}

#[test]
fn list_of_an_empty_or_missing_folder_succeeds() {
    let dir = tempdir();
    let out = aos(dir.path()).arg("list").run();
    out.assert_success();
    assert_eq!(out.stdout_trimmed(), "", "{out}");
    assert_contains(&out, &out.stderr, &["no backups"]);
    let out = aos(dir.path()).args(["list", "--json"]).run();
    out.assert_success();
    assert_eq!(out.json(), serde_json::json!([]));

    // Nothing to verify is not a pass.
    let out = aos(dir.path()).args(["verify", "--all"]).run();
    out.assert_code(2);
    assert_contains(&out, &out.stderr, &["no backups to verify"]);
    let out = aos(dir.path()).arg("verify").run();
    out.assert_code(2);
    assert_contains(&out, &out.stderr, &["no complete backup"]);

    let missing = dir.path().join("does-not-exist");
    let out = aos(&missing).args(["list", "--json"]).run();
    out.assert_success();
    assert_eq!(out.json(), serde_json::json!([]));
    assert!(!missing.exists(), "list must not create the folder");
}

#[test]
fn list_of_two_thousand_backups_shows_them_all() {
    const N: usize = 2000;
    let t = template();
    let dir = tempdir();
    let template_meta = read_json(&sidecar(&t.a));
    let first = at("2020-01-01T00:00:00Z");
    let mut expected = Vec::with_capacity(N);
    for i in 0..N {
        let time = first + chrono::Duration::hours(i64::try_from(i).unwrap() * 7);
        let id = time.format("%Y%m%d-%H%M%S").to_string();
        let name = file_name(&id);
        let content = format!("backup number {i}\n");
        fs::write(dir.path().join(&name), &content).unwrap();
        let mut meta = template_meta.clone();
        meta["id"] = id.clone().into();
        meta["file"] = name.clone().into();
        meta["started_at"] = time
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            .into();
        meta["finished_at"] = meta["started_at"].clone();
        meta["size_bytes"] = content.len().into();
        meta["sha256"] = sha256_hex(content.as_bytes()).into();
        write_json(&dir.path().join(format!("{name}.meta.json")), &meta);
        expected.push(id);
    }
    expected.reverse(); // newest first

    let out = aos(dir.path()).args(["list", "--json"]).run();
    out.assert_success();
    let list = out.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), N);
    let ids: Vec<&str> = list.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, expected);
    assert!(list.iter().all(|e| e["status"] == "complete"));
    assert!(list.iter().all(|e| e["database"] == t.db.as_str()));

    let out = aos(dir.path()).arg("list").run();
    out.assert_success();
    assert_eq!(out.stdout.lines().count(), N + 1);
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.ends_with(" complete"))
            .count(),
        N
    );
}

// ---------------------------------------------------------------------------------------------
// 3. verify
// ---------------------------------------------------------------------------------------------

/// A folder with a copy of the template's backup A; returns the folder and the copy.
fn folder_with_a() -> (TempDir, PathBuf) {
    let dir = tempdir();
    let a = copy_backup(&template().a, dir.path());
    (dir, a)
}

/// Damages backup A in a folder of its own, then checks that `verify A_ID` fails with exit 4 and
/// `fragment` in its report, and so does `verify --all` and `verify --json`.
#[track_caller]
fn assert_verify_fails(damage: impl FnOnce(&Path), fragment: &str) {
    let (dir, a) = folder_with_a();
    damage(&a);
    let out = aos(dir.path()).args(["verify", A_ID]).run();
    out.assert_code(4);
    let fail_line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("FAIL"))
        .unwrap_or_else(|| panic!("no FAIL line:\n{out}"));
    assert_contains(&out, fail_line, &[fragment, &a.display().to_string()]);
    assert_contains(&out, &out.stderr, &["1 of 1 backups failed verification"]);

    let out = aos(dir.path()).args(["verify", "--all", "--json"]).run();
    out.assert_code(4);
    let reports = first_json(&out);
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 1, "{out}");
    assert_eq!(reports[0]["ok"], false);
    assert_contains(&out, reports[0]["error"].as_str().unwrap(), &[fragment]);
}

#[test]
fn verify_passes_an_intact_backup_by_id_latest_prefix_and_path() {
    let (dir, a) = folder_with_a();
    let b = copy_backup(&template().b, dir.path());
    for target in [A_ID, "20240330", "latest", a.to_str().unwrap()] {
        let out = aos(dir.path()).args(["verify", target]).run();
        out.assert_success();
        let expected = if target == "latest" { &b } else { &a };
        assert_eq!(
            out.stdout_trimmed(),
            format!(
                "ok    {}  (checksum, archive read through by pg_restore)",
                expected.display()
            ),
            "{out}"
        );
    }
    // No target means latest.
    let out = aos(dir.path()).arg("verify").run();
    out.assert_success();
    assert_contains(&out, &out.stdout, &[&b.display().to_string()]);
    // A bare file name, from inside the backup folder.
    let out = aos(dir.path())
        .current_dir(dir.path())
        .args(["verify", a.file_name().unwrap().to_str().unwrap()])
        .run();
    out.assert_success();
    assert_contains(&out, &out.stdout, &["ok ", A_ID]);
    // JSON.
    let out = aos(dir.path()).args(["verify", B_ID, "--json"]).run();
    out.assert_success();
    let report = out.json();
    assert_eq!(report[0]["ok"], true);
    assert_eq!(report[0]["id"], B_ID);
    assert_eq!(report[0]["error"], Value::Null);
    assert_eq!(report[0]["checks"][0], "checksum");
}

#[test]
fn verify_detects_a_flipped_byte() {
    assert_verify_fails(flip_middle_byte, "checksum mismatch");
    assert_verify_fails(flip_middle_byte, "same size: bytes changed");
}

#[test]
fn verify_detects_a_truncated_file() {
    assert_verify_fails(
        |a| {
            let len = fs::metadata(a).unwrap().len();
            fs::File::options()
                .write(true)
                .open(a)
                .unwrap()
                .set_len(len - 10)
                .unwrap();
        },
        "truncated",
    );
}

#[test]
fn verify_detects_appended_bytes() {
    assert_verify_fails(
        |a| {
            fs::File::options()
                .append(true)
                .open(a)
                .unwrap()
                .write_all(b"trailing garbage")
                .unwrap();
        },
        "16 bytes more than the metadata says: data appended",
    );
}

#[test]
fn verify_detects_an_emptied_file() {
    assert_verify_fails(|a| fs::write(a, b"").unwrap(), "the file is empty");
}

#[test]
fn verify_detects_a_missing_sidecar() {
    assert_verify_fails(|a| fs::remove_file(sidecar(a)).unwrap(), "no metadata");
}

#[test]
fn verify_detects_an_unreadable_sidecar() {
    assert_verify_fails(
        |a| fs::write(sidecar(a), "{\"format_version\": 1, \"id\": ").unwrap(),
        "is unreadable",
    );
}

#[test]
fn verify_detects_a_sidecar_with_another_checksum() {
    assert_verify_fails(
        |a| {
            let mut meta = read_json(&sidecar(a));
            meta["sha256"] = sha256_hex(b"something else").into();
            write_json(&sidecar(a), &meta);
        },
        "checksum mismatch",
    );
}

#[test]
fn verify_detects_a_file_replaced_by_another_backup_of_the_same_database() {
    let b = template().b.clone();
    assert_verify_fails(
        |a| {
            fs::copy(&b, a).unwrap();
        },
        "checksum mismatch",
    );
}

#[test]
fn verify_detects_an_orphaned_sidecar() {
    let (dir, a) = folder_with_a();
    let meta = sidecar(&a);
    fs::remove_file(&a).unwrap();
    let out = aos(dir.path()).args(["verify", "--all"]).run();
    out.assert_code(4);
    assert_contains(
        &out,
        &out.stdout,
        &[
            "FAIL",
            &a.display().to_string(),
            "the backup file is missing",
        ],
    );
    // So does its id, which `list` still shows.
    let out = aos(dir.path()).args(["verify", A_ID]).run();
    out.assert_code(4);
    assert_contains(&out, &out.stdout, &["FAIL", "the backup file is missing"]);
    let listed = aos(dir.path()).args(["list", "--json"]).run();
    assert_eq!(listed.json()[0]["id"], A_ID);
    assert_eq!(listed.json()[0]["status"], "orphaned-metadata");
    // Given as a path, the sidecar fails the same way.
    let out = aos(dir.path())
        .args(["verify", meta.to_str().unwrap()])
        .run();
    out.assert_code(4);
    assert_contains(&out, &out.stdout, &["the backup file is missing"]);
    // Nothing usable is left, so latest finds nothing (a usage error, not a pass).
    let out = aos(dir.path()).args(["verify", "latest"]).run();
    out.assert_code(2);
    assert_contains(&out, &out.stderr, &["no complete backup"]);
}

#[test]
fn verify_all_reports_each_backup_and_fails_for_one_bad_among_good() {
    let t = template();
    let dir = tempdir();
    let d = dir.path();
    let a = copy_backup(&t.a, d);
    let b = copy_backup(&t.b, d);
    let (bad_id, bad) = fabricate(&t.a, d, "2024-03-29T10:00:00Z", None);
    flip_middle_byte(&bad);
    // Skipped by --all: a foreign file and a leftover.
    fs::write(d.join("backup_2024.sql.gz"), "foreign").unwrap();
    fs::write(d.join("aos-backup-20240331-110000.dump.zst.partial"), "x").unwrap();

    let out = aos(d).args(["verify", "--all"]).run();
    out.assert_code(4);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let line_of = |p: &Path| {
        lines
            .iter()
            .find(|l| l.contains(&p.display().to_string()))
            .unwrap_or_else(|| panic!("{} not reported:\n{out}", p.display()))
            .to_string()
    };
    assert!(line_of(&a).starts_with("ok "), "{out}");
    assert!(line_of(&b).starts_with("ok "), "{out}");
    assert!(line_of(&bad).starts_with("FAIL"), "{out}");
    assert_contains(&out, &line_of(&bad), &["checksum mismatch"]);
    assert_contains(&out, &out.stderr, &["1 of 3 backups failed verification"]);

    let out = aos(d).args(["verify", "--all", "--json"]).run();
    out.assert_code(4);
    let reports = first_json(&out);
    let by_id: BTreeMap<&str, bool> = reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        by_id,
        BTreeMap::from([(A_ID, true), (B_ID, true), (bad_id.as_str(), false)])
    );

    // The good ones still verify one by one; the bad one does not.
    aos(d).args(["verify", A_ID]).run().assert_success();
    aos(d).args(["verify", &bad_id]).run().assert_code(4);
}

// ---------------------------------------------------------------------------------------------
// 4. restore by id
// ---------------------------------------------------------------------------------------------

#[test]
fn restore_by_id_latest_prefix_and_file_name() {
    let pg = server();
    let t = template();
    let dir = tempdir();
    copy_backup(&t.a, dir.path());
    copy_backup(&t.b, dir.path());
    let target = pg.create_db("catalog_restore");
    let restore = |what: &str| {
        aos(dir.path())
            .env("DATABASE_URL", pg.tcp_url(&target))
            .args(["restore", what, "--yes", "--from-database", &t.db])
            .run()
    };

    let out = restore(A_ID);
    out.assert_success();
    assert_no_password(&out);
    assert_eq!(pg.table_contents(&target), t.contents_a);

    restore("latest").assert_success();
    assert_eq!(pg.table_contents(&target), t.contents_b);

    restore("20240330-15").assert_success();
    assert_eq!(pg.table_contents(&target), t.contents_a);

    restore(&file_name(B_ID)).assert_success();
    assert_eq!(pg.table_contents(&target), t.contents_b);

    // Ambiguous and unknown ids are usage errors, and nothing is touched.
    let out = restore("202403");
    out.assert_code(2);
    assert_contains(&out, &out.stderr, &["matches 2 backups", A_ID, B_ID]);
    let out = restore("19990101");
    out.assert_code(2);
    assert_contains(&out, &out.stderr, &["19990101", "aos-backup list"]);
    assert_eq!(pg.table_contents(&target), t.contents_b);
    pg.drop_db(&target);
}

#[test]
fn restore_refuses_a_backup_with_a_flipped_byte_and_leaves_the_target_alone() {
    let pg = server();
    let (dir, a) = folder_with_a();
    flip_middle_byte(&a);
    let target = pg.create_db("catalog_restore_bad");
    pg.psql(
        &target,
        "SET ROLE app;\nCREATE TABLE precious (id int PRIMARY KEY, v text);\n\
         INSERT INTO precious SELECT g, 'keep ' || g FROM generate_series(1, 50) g;\n\
         CREATE TABLE items (id int);",
    );
    let before = pg.table_contents(&target);
    let schema = pg.dump_schema(&target);
    let out = aos(dir.path())
        .env("DATABASE_URL", pg.tcp_url(&target))
        .args(["restore", A_ID, "--yes", "--from-database", &template().db])
        .run();
    out.assert_code(4);
    assert_contains(
        &out,
        &out.stderr,
        &["refusing to restore", "checksum mismatch", "not touched"],
    );
    assert_no_password(&out);
    assert_eq!(pg.table_contents(&target), before);
    assert_eq!(pg.dump_schema(&target), schema);

    // Truncated, or with an unreadable sidecar: refused the same way.
    let b = copy_backup(&template().b, dir.path());
    let len = fs::metadata(&b).unwrap().len();
    fs::File::options()
        .write(true)
        .open(&b)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let (c_id, c) = fabricate(&template().a, dir.path(), "2024-03-29T00:00:00Z", None);
    fs::write(sidecar(&c), "{").unwrap();
    for (id, fragment) in [(B_ID, "truncated"), (c_id.as_str(), "unreadable")] {
        let out = aos(dir.path())
            .env("DATABASE_URL", pg.tcp_url(&target))
            .args(["restore", id, "--yes", "--from-database", &template().db])
            .run();
        out.assert_code(4);
        assert_contains(&out, &out.stderr, &["refusing to restore", fragment]);
        assert_eq!(pg.table_contents(&target), before);
    }
    pg.drop_db(&target);
}

// ---------------------------------------------------------------------------------------------
// 5. Retention
// ---------------------------------------------------------------------------------------------

/// Ten backups over eight weeks, oldest first. The last two are the template's real backups; the
/// others are fabricated from A. Weeks are ISO weeks of 2024: 03-25..03-31 is week 13.
const SET: [(&str, &str); 10] = [
    ("b01", "2024-02-05T03:00:00Z"), // Mon, week 6, February
    ("b02", "2024-02-12T03:00:00Z"), // Mon, week 7, February
    ("b03", "2024-03-04T03:00:00Z"), // Mon, week 10
    ("b04", "2024-03-11T03:00:00Z"), // Mon, week 11
    ("b05", "2024-03-18T03:00:00Z"), // Mon, week 12
    ("b06", "2024-03-25T03:00:00Z"), // Mon, week 13
    ("b07", "2024-03-29T03:00:00Z"), // Fri
    ("b08", "2024-03-30T03:00:00Z"), // Sat, early
    ("b09", A_TIME),                 // Sat, later: real backup A
    ("b10", B_TIME),                 // Sun: real backup B, the newest
];

/// The id of a member of [`SET`] by its short name.
fn set_id(short: &str) -> String {
    let (_, time) = SET.iter().find(|(s, _)| *s == short).unwrap();
    id_at(time)
}

fn set_ids(shorts: &[&str]) -> Vec<String> {
    shorts.iter().map(|s| set_id(s)).collect()
}

/// Writes [`SET`] into `dir`.
fn retention_set(dir: &Path) {
    let t = template();
    for (short, time) in &SET[..8] {
        let (id, _) = fabricate(&t.a, dir, time, None);
        assert_eq!(id, set_id(short));
    }
    copy_backup(&t.a, dir);
    copy_backup(&t.b, dir);
    assert_eq!(names(dir).len(), 20);
}

/// Asserts that `dir` holds exactly the pairs of `kept` (short names) plus `extra`.
#[track_caller]
fn assert_kept(dir: &Path, kept: &[&str], extra: &[&str], out: &Output) {
    let ids = set_ids(kept);
    let mut expected = pairs(&ids.iter().map(String::as_str).collect::<Vec<_>>());
    expected.extend(extra.iter().map(|s| (*s).to_string()));
    assert_eq!(names(dir), expected, "kept {kept:?}\n{out}");
}

/// The plan lines of `prune` by id: (action, the line).
fn plan_lines(out: &Output) -> BTreeMap<String, (String, String)> {
    out.stdout
        .lines()
        .filter(|l| l.starts_with("keep") || l.starts_with("delete"))
        .map(|l| {
            let mut words = l.split_whitespace();
            let action = words.next().unwrap().to_string();
            let id = words.next().unwrap().to_string();
            (id, (action, l.to_string()))
        })
        .collect()
}

#[test]
fn prune_dry_run_prints_the_whole_plan_and_deletes_nothing() {
    let dir = tempdir();
    retention_set(dir.path());
    let before = snapshot(dir.path());
    let out = aos(dir.path())
        .args(["prune", "--all-databases", "--dry-run", "--keep-last", "3"])
        .run();
    out.assert_success();
    assert_eq!(snapshot(dir.path()), before, "a dry run deleted something");
    let plan = plan_lines(&out);
    assert_eq!(plan.len(), 10, "{out}");
    for (short, time) in SET {
        let id = set_id(short);
        let (action, line) = &plan[&id];
        let (want_action, reasons) = match short {
            "b10" => ("keep", "newest backup, keep-last"),
            "b09" | "b08" => ("keep", "keep-last"),
            _ => ("delete", "matched no rule"),
        };
        assert_eq!(action, want_action, "{line}");
        assert!(line.ends_with(reasons), "{line}");
        let shown_time = at(time).format("%Y-%m-%d %H:%M:%S").to_string();
        assert!(line.contains(&shown_time), "{line}");
    }
    // Newest first.
    let order: Vec<&str> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    let mut newest_first = set_ids(&SET.map(|(s, _)| s));
    newest_first.reverse();
    assert_eq!(order, newest_first);
    assert_contains(&out, &out.stderr, &["would delete 7 backup(s), kept 3"]);

    let out = aos(dir.path())
        .args([
            "prune",
            "--all-databases",
            "-n",
            "--keep-last",
            "3",
            "--json",
        ])
        .run();
    out.assert_success();
    let plan = out.json();
    assert_eq!(plan["dry_run"], true);
    let plan = plan["plan"].as_array().unwrap();
    assert_eq!(plan.len(), 10);
    assert_eq!(plan[0]["id"], set_id("b10").as_str());
    assert_eq!(plan[0]["action"], "keep");
    assert_eq!(plan[0]["reasons"], serde_json::json!(["newest", "last"]));
    assert_eq!(plan[9]["action"], "delete");
    assert_eq!(plan[9]["reasons"], serde_json::json!(["unmatched"]));
    assert_eq!(snapshot(dir.path()), before, "a dry run deleted something");
}

#[test]
fn prune_keep_last_deletes_exactly_the_older_backups_and_their_sidecars() {
    let dir = tempdir();
    retention_set(dir.path());
    let out = aos(dir.path())
        .args(["prune", "--all-databases", "--keep-last", "3"])
        .run();
    out.assert_success();
    assert_kept(dir.path(), &["b08", "b09", "b10"], &[], &out);
    let plan = plan_lines(&out);
    assert_eq!(plan.values().filter(|(a, _)| a == "delete").count(), 7);
    assert_contains(&out, &out.stderr, &["deleted 7 backup(s), kept 3"]);
    // What is left still verifies, and a second run deletes nothing more.
    aos(dir.path())
        .args(["verify", "--all"])
        .run()
        .assert_success();
    let out = aos(dir.path())
        .args(["prune", "--all-databases", "--keep-last", "3"])
        .run();
    out.assert_success();
    assert_kept(dir.path(), &["b08", "b09", "b10"], &[], &out);
}

#[test]
fn prune_applies_age_and_calendar_rules() {
    let cases: [(&[&str], &[&str]); 6] = [
        (
            &["--max-age-days", "7"],
            &["b06", "b07", "b08", "b09", "b10"],
        ),
        (&["--keep-daily", "3"], &["b07", "b09", "b10"]),
        (&["--keep-weekly", "2"], &["b05", "b10"]),
        (&["--keep-monthly", "2"], &["b02", "b10"]),
        (&["--keep-monthly", "5"], &["b02", "b10"]),
        (
            &[
                "--keep-daily",
                "2",
                "--keep-weekly",
                "3",
                "--keep-monthly",
                "2",
            ],
            &["b02", "b04", "b05", "b09", "b10"],
        ),
    ];
    for (args, kept) in cases {
        let dir = tempdir();
        retention_set(dir.path());
        let out = aos(dir.path())
            .args(["prune", "--all-databases"])
            .args(args)
            .run();
        out.assert_success();
        assert_kept(dir.path(), kept, &[], &out);
        let plan = plan_lines(&out);
        assert_eq!(plan.len(), 10, "{out}");
        for (short, _) in SET {
            let keep = kept.contains(&short);
            assert_eq!(plan[&set_id(short)].0, if keep { "keep" } else { "delete" });
        }
    }

    // Seen from before the three newest were made: those are kept as dated in the future, and
    // keep-last counts from the first one that is not.
    let dir = tempdir();
    retention_set(dir.path());
    let out = aos(dir.path())
        .env("AOS_BACKUP_NOW", "2024-03-30T00:00:00Z")
        .args(["prune", "--all-databases", "--keep-last", "2"])
        .run();
    out.assert_success();
    assert_kept(dir.path(), &["b06", "b07", "b08", "b09", "b10"], &[], &out);
    let plan = plan_lines(&out);
    assert!(
        plan[&set_id("b10")].1.ends_with("  dated in the future"),
        "{out}"
    );
    assert!(
        plan[&set_id("b08")].1.ends_with("  dated in the future"),
        "{out}"
    );
    // The newest backup is the newest one not dated in the future.
    assert!(
        plan[&set_id("b07")]
            .1
            .ends_with("  newest backup, keep-last"),
        "{out}"
    );

    // The reasons of the combined policy.
    let dir = tempdir();
    retention_set(dir.path());
    let out = aos(dir.path())
        .args([
            "prune",
            "--all-databases",
            "-n",
            "--keep-daily",
            "2",
            "--keep-weekly",
            "3",
            "--keep-monthly",
            "2",
        ])
        .run();
    out.assert_success();
    let plan = plan_lines(&out);
    for (short, reasons) in [
        ("b10", "newest backup, daily, weekly, monthly"),
        ("b09", "daily"),
        ("b05", "weekly"),
        ("b04", "weekly"),
        ("b02", "monthly"),
        ("b08", "matched no rule"),
    ] {
        let line = &plan[&set_id(short)].1;
        assert!(line.ends_with(&format!("  {reasons}")), "{short}: {line}");
    }
}

#[test]
fn prune_never_deletes_the_newest_backup() {
    let dir = tempdir();
    retention_set(dir.path());
    let out = aos(dir.path())
        .env("AOS_BACKUP_NOW", "2024-06-01T00:00:00Z")
        .args(["prune", "--all-databases", "--max-age-days", "1"])
        .run();
    out.assert_success();
    assert_kept(dir.path(), &["b10"], &[], &out);
    let plan = plan_lines(&out);
    assert_eq!(plan[&set_id("b10")].0, "keep");
    assert!(plan[&set_id("b10")].1.ends_with("newest backup"), "{out}");
    // Over and over: the one that is left stays.
    let out = aos(dir.path())
        .env("AOS_BACKUP_NOW", "2030-01-01T00:00:00Z")
        .args([
            "prune",
            "--all-databases",
            "--max-age-days",
            "1",
            "--keep-last",
            "1",
        ])
        .run();
    out.assert_success();
    assert_kept(dir.path(), &["b10"], &[], &out);
}

#[test]
fn prune_leaves_unmanaged_files_alone_and_removes_leftovers() {
    let t = template();
    let dir = tempdir();
    let d = dir.path();
    retention_set(d);
    // Unmanaged: a foreign backup, a pg_dump file copied in, our name without a sidecar, and a
    // backup whose sidecar is unreadable. All older than everything else.
    let old = "2023-01-01T00:00:00Z";
    fs::write(d.join("backup_2024.sql.gz"), "foreign").unwrap();
    fs::copy(&t.a, d.join("manual.dump")).unwrap();
    fs::copy(&t.a, d.join(file_name("20230101-000000"))).unwrap();
    let (_, unreadable) = fabricate(&t.a, d, "2023-01-02T00:00:00Z", None);
    fs::write(sidecar(&unreadable), "not json").unwrap();
    for n in [
        "backup_2024.sql.gz".to_string(),
        "manual.dump".into(),
        file_name("20230101-000000"),
        file_name("20230102-000000"),
    ] {
        set_mtime(&d.join(n), old);
    }
    // Leftovers: an interrupted backup, an interrupted sidecar, and a sidecar without its file.
    fs::write(d.join("aos-backup-20240331-110000.dump.zst.partial"), "x").unwrap();
    fs::write(
        d.join("aos-backup-20240331-110000.dump.zst.meta.json.partial"),
        "{",
    )
    .unwrap();
    let (_, orphan) = fabricate(&t.a, d, "2024-01-15T00:00:00Z", None);
    fs::remove_file(&orphan).unwrap();

    let unmanaged = [
        "backup_2024.sql.gz",
        "manual.dump",
        "aos-backup-20230101-000000.dump.zst",
        "aos-backup-20230102-000000.dump.zst",
        "aos-backup-20230102-000000.dump.zst.meta.json",
    ];
    let out = aos(d)
        .args(["prune", "--all-databases", "--keep-last", "1"])
        .run();
    out.assert_success();
    assert_kept(d, &["b10"], &unmanaged, &out);
    assert_contains(
        &out,
        &out.stdout,
        &[
            "remove  aos-backup-20240331-110000.dump.zst.partial  (leftover of an interrupted run)",
            "remove  aos-backup-20240331-110000.dump.zst.meta.json.partial  (leftover of an interrupted run)",
            "remove  aos-backup-20240115-000000.dump.zst.meta.json  (metadata without its backup)",
        ],
    );
    assert_contains(&out, &out.stderr, &["4 unmanaged file(s) untouched"]);
    // The unmanaged files are byte for byte what they were.
    assert_eq!(
        fs::read(d.join("manual.dump")).unwrap(),
        fs::read(&t.a).unwrap()
    );
    assert_eq!(fs::read(sidecar(&unreadable)).unwrap(), b"not json");
}

#[test]
fn prune_without_a_policy_is_a_usage_error() {
    let dir = tempdir();
    retention_set(dir.path());
    let before = snapshot(dir.path());
    let out = aos(dir.path()).args(["prune", "--all-databases"]).run();
    out.assert_code(2);
    assert_contains(
        &out,
        &out.stderr,
        &[
            "no retention policy",
            "hint:",
            "--keep-last",
            "BACKUP_KEEP_LAST",
        ],
    );
    assert_eq!(snapshot(dir.path()), before);
    // A folder that does not exist is a usage error too, and is not created.
    let missing = dir.path().join("nope");
    let out = aos(&missing)
        .args(["prune", "--all-databases", "--keep-last", "1"])
        .run();
    out.assert_code(2);
    assert!(!missing.exists());
}

#[test]
fn prune_and_backup_refuse_a_locked_folder() {
    let dir = tempdir();
    retention_set(dir.path());
    let before = snapshot(dir.path());
    let lock = fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join(LOCK_FILE))
        .unwrap();
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, 0);
    (&lock).write_all(b"pid 1, test holder").unwrap();

    let out = aos(dir.path())
        .args(["prune", "--all-databases", "--keep-last", "1"])
        .run();
    out.assert_code(5);
    assert_contains(&out, &out.stderr, &["holds the lock", "test holder"]);
    let out = aos(dir.path())
        .env("DATABASE_URL", server().tcp_url(&template().db))
        .env("AOS_BACKUP_NOW", "2024-04-01T00:00:00Z")
        .arg("backup")
        .run();
    out.assert_code(5);
    assert_eq!(snapshot(dir.path()), before);
    let target = server().create_db("catalog_locked");
    let out = aos(dir.path())
        .env("DATABASE_URL", server().tcp_url(&target))
        .args([
            "restore",
            "latest",
            "--yes",
            "--from-database",
            &template().db,
        ])
        .run();
    out.assert_code(5);
    assert_eq!(server().table_contents(&target), "");
    server().drop_db(&target);

    drop(lock);
    let out = aos(dir.path())
        .args(["prune", "--all-databases", "--keep-last", "1"])
        .run();
    out.assert_success();
    assert_kept(dir.path(), &["b10"], &[], &out);
}

#[test]
fn backup_prunes_automatically_after_it_succeeds() {
    let t = template();
    let dir = tempdir();
    let d = dir.path();
    retention_set(d);
    fs::write(d.join("backup_2024.sql.gz"), "foreign").unwrap();
    set_mtime(&d.join("backup_2024.sql.gz"), "2023-01-01T00:00:00Z");
    let partial = "aos-backup-20240331-110000.dump.zst.partial";
    fs::write(d.join(partial), "x").unwrap();
    let backup = |time: &str, extra: &[&str]| {
        aos(d)
            .env("DATABASE_URL", server().tcp_url(&t.db))
            .env("BACKUP_KEEP_LAST", "2")
            .env("AOS_BACKUP_NOW", time)
            .arg("backup")
            .args(extra)
            .run()
    };

    // --no-prune: the backup is added, nothing goes.
    let before = names(d);
    let out = backup("2024-04-01T00:00:00Z", &["--no-prune"]);
    out.assert_success();
    let first = "aos-backup-20240401-000000.dump.zst";
    let mut expected = before.clone();
    expected.extend(pairs(&["20240401-000000"]));
    assert_eq!(names(d), expected, "{out}");

    // A plain backup with BACKUP_KEEP_LAST=2: the two newest stay.
    let out = backup("2024-04-02T00:00:00Z", &[]);
    out.assert_success();
    let second = d.join("aos-backup-20240402-000000.dump.zst");
    // Stdout carries only the new backup's path, not the prune plan.
    assert_eq!(out.stdout_trimmed(), second.display().to_string(), "{out}");
    let mut expected = pairs(&["20240401-000000", "20240402-000000"]);
    expected.insert("backup_2024.sql.gz".into());
    assert_eq!(names(d), expected, "{out}");
    assert!(!d.join(partial).exists());
    assert!(d.join(first).is_file());
    aos(d).args(["verify", "--all"]).run().assert_success();
}

#[test]
fn a_failed_backup_prunes_nothing() {
    let pg = server();
    let t = template();
    let dir = tempdir();
    let d = dir.path();
    retention_set(d);
    fs::write(d.join("backup_2024.sql.gz"), "foreign").unwrap();
    fs::write(d.join("aos-backup-20240331-110000.dump.zst.partial"), "x").unwrap();
    let before = snapshot(d);

    // A pg_dump that knows its version but fails to dump.
    let bin = tempdir();
    let fake = bin.path().join("pg_dump");
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ \"$1\" = \"--version\" ]; then echo 'pg_dump (PostgreSQL) {}.0'; exit 0; fi\n\
             echo 'pg_dump: error: simulated failure' >&2\nexit 1\n",
            pg.major
        ),
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();

    let out = aos(d)
        .env("PG_BIN", bin.path())
        .env("DATABASE_URL", pg.tcp_url(&t.db))
        .env("BACKUP_KEEP_LAST", "2")
        .env("AOS_BACKUP_NOW", "2024-04-01T00:00:00Z")
        .arg("backup")
        .run();
    out.assert_code(1);
    assert_contains(&out, &out.stderr, &["pg_dump failed", "simulated failure"]);
    assert_no_password(&out);
    assert_eq!(snapshot(d), before, "a failed backup changed the folder");
}

// ---------------------------------------------------------------------------------------------
// 6. Configuration
// ---------------------------------------------------------------------------------------------

/// The line `key = ...` of `aos-backup config`.
#[track_caller]
fn config_line<'a>(out: &'a Output, key: &str) -> &'a str {
    out.stdout
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
}

#[test]
fn config_file_in_the_current_folder_takes_effect() {
    let t = template();
    let project = tempdir();
    let p = project.path();
    fs::write(
        p.join("aos-backup.toml"),
        "backup_dir = \"store\"\n\n[retention]\nkeep_last = 2\n\n[backup]\ncompression = \"gzip\"\n",
    )
    .unwrap();
    let store = p.join("store");
    fs::create_dir(&store).unwrap();
    copy_backup(&t.a, &store);
    copy_backup(&t.b, &store);

    let out = aos_in(p)
        .env("DATABASE_URL", server().tcp_url(&t.db))
        .env("AOS_BACKUP_NOW", "2024-04-01T00:00:00Z")
        .arg("backup")
        .run();
    out.assert_success();
    let new = "aos-backup-20240401-000000.dump.gz";
    assert_eq!(out.stdout_trimmed(), format!("store/{new}"), "{out}");
    let meta = read_json(&store.join(format!("{new}.meta.json")));
    assert_eq!(meta["compression"], "gzip");
    let bytes = fs::read(store.join(new)).unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "not gzip");
    assert_eq!(meta["sha256"], sha256_hex(&bytes).as_str());
    // keep_last = 2 from the file: the new backup and B stay, A went.
    let mut expected = pairs(&[B_ID]);
    expected.extend([new.to_string(), format!("{new}.meta.json")]);
    assert_eq!(names(&store), expected, "{out}");
    // The gzip backup reads through.
    let out = aos_in(p)
        .env("AOS_BACKUP_NOW", "2024-04-01T00:00:00Z")
        .args(["verify", "latest"])
        .run();
    out.assert_success();
    assert_contains(&out, &out.stdout, &[new]);

    let out = aos_in(p).arg("config").run();
    out.assert_success();
    assert_eq!(
        config_line(&out, "config_file"),
        format!("config_file = {}", p.join("aos-backup.toml").display())
    );
    assert_eq!(
        config_line(&out, "backup_dir"),
        "backup_dir = store  (config file)"
    );
    assert_eq!(
        config_line(&out, "compression"),
        "compression = gzip  (config file)"
    );
    assert_eq!(
        config_line(&out, "retention.keep_last"),
        "retention.keep_last = 2"
    );
    assert_eq!(
        config_line(&out, "retention.max_age_days"),
        "retention.max_age_days = -"
    );
    assert_eq!(
        config_line(&out, "database_url"),
        "database_url = (not set)"
    );
}

#[test]
fn environment_beats_dotenv_beats_the_file_and_flags_beat_them_all() {
    let t = template();
    let project = tempdir();
    let p = project.path();
    fs::write(
        p.join("aos-backup.toml"),
        "backup_dir = \"from-file\"\n[retention]\nkeep_last = 5\n[backup]\ncompression = \"gzip\"\n",
    )
    .unwrap();
    // Each folder holds a different number of backups, so `list` shows which one was used.
    for (folder, count) in [
        ("from-file", 1),
        ("from-dotenv", 2),
        ("from-env", 10),
        ("from-flag", 3),
    ] {
        let d = p.join(folder);
        fs::create_dir(&d).unwrap();
        if count == 10 {
            retention_set(&d);
        } else {
            for i in 0..count {
                fabricate(&t.a, &d, &format!("2024-03-0{}T00:00:00Z", i + 1), None);
            }
        }
    }
    let count = |cmd: Cmd| {
        let out = cmd.args(["list", "--json"]).run();
        out.assert_success();
        out.json().as_array().unwrap().len()
    };
    let kept = |out: &Output| {
        out.assert_success();
        plan_lines(out)
            .values()
            .filter(|(a, _)| a == "keep")
            .count()
    };

    // The file alone.
    assert_eq!(count(aos_in(p)), 1);
    let out = aos_in(p).arg("config").run();
    assert_eq!(
        config_line(&out, "backup_dir"),
        "backup_dir = from-file  (config file)"
    );
    assert_eq!(
        config_line(&out, "retention.keep_last"),
        "retention.keep_last = 5"
    );

    // .env beats the file.
    fs::write(
        p.join(".env"),
        "BACKUP_DIR=from-dotenv\nBACKUP_KEEP_LAST=1\n",
    )
    .unwrap();
    assert_eq!(count(aos_in(p)), 2);
    let out = aos_in(p).arg("config").run();
    assert_eq!(
        config_line(&out, "backup_dir"),
        "backup_dir = from-dotenv  (.env)"
    );
    assert_eq!(
        config_line(&out, "retention.keep_last"),
        "retention.keep_last = 1"
    );

    // The environment beats .env and the file.
    let env = || {
        aos_in(p)
            .env("BACKUP_DIR", "from-env")
            .env("BACKUP_KEEP_LAST", "2")
            .env("BACKUP_COMPRESSION", "zstd")
    };
    assert_eq!(count(env()), 10);
    let out = env().arg("config").run();
    assert_eq!(
        config_line(&out, "backup_dir"),
        "backup_dir = from-env  (environment)"
    );
    assert_eq!(
        config_line(&out, "compression"),
        "compression = zstd  (environment)"
    );
    assert_eq!(
        config_line(&out, "retention.keep_last"),
        "retention.keep_last = 2"
    );
    assert_eq!(
        kept(&env().args(["prune", "--all-databases", "--dry-run"]).run()),
        2
    );

    // Flags beat everything.
    assert_eq!(count(env().args(["--backup-dir", "from-flag"])), 3);
    let out = env().args(["--backup-dir", "from-flag", "config"]).run();
    assert_eq!(
        config_line(&out, "backup_dir"),
        "backup_dir = from-flag  (flag)"
    );
    assert_eq!(
        kept(
            &env()
                .args(["prune", "--all-databases", "--dry-run", "--keep-last", "4"])
                .run()
        ),
        4
    );
    // A flag adds to the policy from the environment, it does not replace it.
    let out = env()
        .args([
            "prune",
            "--all-databases",
            "--dry-run",
            "--max-age-days",
            "1",
        ])
        .run();
    let plan = plan_lines(&out);
    assert_eq!(kept(&out), 2, "{out}");
    assert!(
        plan[B_ID]
            .1
            .ends_with("newest backup, keep-last, within max age"),
        "{out}"
    );
    // Nothing was deleted by the dry runs.
    assert_eq!(names(&p.join("from-env")).len(), 20);
}

#[test]
fn unknown_keys_in_the_config_file_are_usage_errors_naming_the_file() {
    let project = tempdir();
    let p = project.path();
    let file = p.join("aos-backup.toml");
    for (text, key) in [
        ("bakup_dir = \"x\"\n", "bakup_dir"),
        ("[backup]\ncompresion = \"gzip\"\n", "compresion"),
        ("[retention]\nkeep_lats = 3\n", "keep_lats"),
        ("[retension]\nkeep_last = 3\n", "retension"),
    ] {
        fs::write(&file, text).unwrap();
        for args in [
            &["list"][..],
            &["config"],
            &["prune", "--all-databases", "--keep-last", "1"],
        ] {
            let out = aos_in(p).args(args).run();
            out.assert_code(2);
            assert_contains(&out, &out.stderr, &[&file.display().to_string(), key]);
        }
    }
    // Named with --config, from anywhere.
    let elsewhere = tempdir();
    let explicit = elsewhere.path().join("custom.toml");
    fs::write(&explicit, "[retention]\nkeep_lats = 3\n").unwrap();
    let out = aos_in(p).arg("--config").arg(&explicit).arg("list").run();
    out.assert_code(2);
    assert_contains(
        &out,
        &out.stderr,
        &[&explicit.display().to_string(), "keep_lats"],
    );
}

#[test]
fn config_shows_the_database_url_with_the_password_masked() {
    let pg = server();
    let project = tempdir();
    let p = project.path();
    let url = pg.tcp_url("somedb");
    let masked = format!("postgresql://app:********@127.0.0.1:{}/somedb", pg.port);

    let out = aos_in(p).env("DATABASE_URL", &url).arg("config").run();
    out.assert_success();
    assert_no_password(&out);
    assert_eq!(
        config_line(&out, "database_url"),
        format!("database_url = {masked}  (environment)")
    );
    let out = aos_in(p)
        .env("DATABASE_URL", &url)
        .args(["config", "--json"])
        .run();
    out.assert_success();
    assert_no_password(&out);
    assert_eq!(out.json()["database_url"], masked.as_str());

    // From the file, and from the flag (which also warns about `ps`).
    fs::write(
        p.join("aos-backup.toml"),
        format!("database_url = \"{url}\"\n"),
    )
    .unwrap();
    // It holds a password: it must be private, as .pgpass must.
    fs::set_permissions(p.join("aos-backup.toml"), fs::Permissions::from_mode(0o600)).unwrap();
    let out = aos_in(p).arg("config").run();
    out.assert_success();
    assert_no_password(&out);
    assert_eq!(
        config_line(&out, "database_url"),
        format!("database_url = {masked}  (config file)")
    );
    let out = aos_in(p).args(["--database-url", &url, "config"]).run();
    out.assert_success();
    assert_no_password(&out);
    assert_eq!(
        config_line(&out, "database_url"),
        format!("database_url = {masked}  (flag)")
    );
}

#[test]
fn an_invalid_number_in_the_environment_is_a_usage_error_naming_the_variable() {
    let t = template();
    let dir = tempdir();
    let backups = dir.path().join("backups");
    for args in [
        &["config"][..],
        &["list"],
        &["prune", "--all-databases", "--keep-last", "1"],
        &["backup"],
    ] {
        let out = aos(&backups)
            .env("DATABASE_URL", server().tcp_url(&t.db))
            .env("BACKUP_RETENTION_DAYS", "abc")
            .args(args)
            .run();
        out.assert_code(2);
        assert_contains(&out, &out.stderr, &["BACKUP_RETENTION_DAYS", "abc"]);
        assert_no_password(&out);
    }
    assert!(!backups.exists(), "nothing may be created on a usage error");
    let out = aos(&backups)
        .env("BACKUP_KEEP_LAST", "-3")
        .arg("config")
        .run();
    out.assert_code(2);
    assert_contains(&out, &out.stderr, &["BACKUP_KEEP_LAST"]);
}
