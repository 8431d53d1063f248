//! A backup that pg_dump cut short, or that shrank sharply, must never cause deletions: an
//! incomplete archive fails the backup; a sharp drop against the previous backup of the same
//! database marks the new one suspect, keeps it, lists it, warns, and skips the automatic prune.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;
use tempfile::TempDir;

use crate::cmd::Cmd;
use crate::harness::server;
use crate::support::filled_db;
use crate::support::{assert_contains, read_json, tempdir};

/// `aos-backup` on the harness's database `db`, backing up into `dir` at `now`.
fn aos(dir: &Path, db: &str, now: &str) -> Cmd {
    Cmd::new()
        .env("BACKUP_DIR", dir)
        .env("PG_BIN", &server().bindir)
        .env("DATABASE_URL", server().tcp_url(db))
        .env("AOS_BACKUP_NOW", now)
}

/// Names and sizes of the backups and sidecars in `dir`.
fn snapshot(dir: &Path) -> BTreeMap<String, u64> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("aos-backup-"))
        .map(|e| {
            let n = e.file_name().into_string().unwrap();
            (n, e.metadata().unwrap().len())
        })
        .collect()
}

fn ids(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = snapshot(dir)
        .keys()
        .filter(|n| n.ends_with(".meta.json"))
        .map(|n| read_json(&dir.join(n))["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn sidecar_of(dir: &Path, id: &str) -> Value {
    let name = snapshot(dir)
        .into_keys()
        .find(|n| n.contains(id) && n.ends_with(".meta.json"))
        .unwrap_or_else(|| panic!("no sidecar for {id}"));
    read_json(&dir.join(name))
}

/// A `PG_BIN` whose pg_dump runs the real one, then `filter`s its output (shell, reading
/// stdin) and exits 0; `--file=` (a directory archive) is in `$dir`.
fn cutting_pg_bin(filter: &str) -> TempDir {
    let bin = tempdir();
    let real = &server().bindir;
    for tool in ["pg_restore", "psql"] {
        std::os::unix::fs::symlink(real.join(tool), bin.path().join(tool)).unwrap();
    }
    let script = format!(
        "#!/bin/sh\n\
         if [ \"$1\" = --version ]; then exec '{real}/pg_dump' \"$@\"; fi\n\
         for a in \"$@\"; do case \"$a\" in --file=*) dir=\"${{a#--file=}}\";; esac; done\n\
         '{real}/pg_dump' \"$@\" | {filter}\n\
         exit 0\n",
        real = real.display()
    );
    let path = bin.path().join("pg_dump");
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// The size of the real pg_dump's custom archive of `db`, as aos-backup asks for it.
fn custom_archive_len(db: &str) -> usize {
    let pg = server();
    let out = std::process::Command::new(pg.bindir.join("pg_dump"))
        .args(["--format=custom", "--no-owner", "--no-acl", "--compress=0"])
        .arg(format!("--dbname={}", pg.tcp_url(db)))
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout.len()
}

#[test]
fn a_pg_dump_that_exits_0_with_a_cut_archive_fails_and_prunes_nothing() {
    let pg = server();
    let db = filled_db("shrink_cut");
    let dir = tempdir();
    let d = dir.path();
    for day in 1..=3 {
        aos(d, &db, &format!("2024-05-0{day}T00:00:00Z"))
            .env("BACKUP_KEEP_LAST", "3")
            .arg("backup")
            .run()
            .assert_success();
    }
    let before = snapshot(d);
    assert_eq!(before.len(), 6, "{before:?}");

    let len = custom_archive_len(&db);
    // pg_dump's output cut after 500 bytes (in its table of contents), in the middle of the
    // data of `big`, and one byte short; a plain dump cut in its middle; a directory archive
    // whose data files are gone.
    let cases: Vec<(String, &[&str], &str)> = vec![
        ("head -c 500".into(), &[], "table of contents"),
        (format!("head -c {}", len / 2), &[], "inside the data"),
        (format!("head -c {}", len - 1), &[], "inside the data"),
        (
            format!("head -c {}", len / 2),
            &["--format", "plain"],
            "dump complete",
        ),
        (
            "cat; rm -f \"$dir\"/[0-9]*.dat*".into(),
            &["--format", "directory"],
            "is missing",
        ),
    ];
    for (filter, args, why) in cases {
        let bin = cutting_pg_bin(&filter);
        let out = aos(d, &db, "2024-05-04T00:00:00Z")
            .env("PG_BIN", bin.path())
            .env("BACKUP_KEEP_LAST", "1")
            .arg("backup")
            .args(args)
            .run();
        out.assert_code(1);
        assert_contains(
            &out,
            &out.stderr,
            &[
                "pg_dump exited 0, but its archive is incomplete",
                why,
                "nothing was pruned",
            ],
        );
        assert_eq!(
            snapshot(d),
            before,
            "{filter} {args:?} changed the folder:\n{out}"
        );
        assert!(
            fs::read_dir(d).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("partial")),
            "a temp file is left:\n{out}"
        );
    }
    // The same pg_dump, uncut, still makes a backup (the check passes pg_dump's real output).
    let bin = cutting_pg_bin("cat");
    for args in [&[][..], &["--format", "plain"], &["--format", "directory"]] {
        let out = aos(d, &db, "2024-05-05T00:00:00Z")
            .env("PG_BIN", bin.path())
            .env("BACKUP_KEEP_LAST", "10")
            .args(["backup", "-v", "--json"])
            .args(args)
            .run();
        out.assert_success();
        // Judged by the stream check itself, not by the pg_restore fallback.
        assert_contains(&out, &out.stderr, &["the archive is complete"]);
        assert!(!out.stderr.contains("cannot judge"), "{out}");
        // Every format counts the tables of its archive (plain SQL: by their header comments).
        assert_eq!(out.json()["archive_tables"], Value::from(3), "{out}");
    }
    pg.drop_db(&db);
}

#[test]
fn a_sharp_drop_marks_the_backup_suspect_keeps_it_and_skips_the_prune() {
    let pg = server();
    let db = filled_db("shrink_drop");
    let dir = tempdir();
    let d = dir.path();
    for day in 1..=3 {
        aos(d, &db, &format!("2024-06-0{day}T00:00:00Z"))
            .env("BACKUP_KEEP_LAST", "3")
            .arg("backup")
            .run()
            .assert_success();
    }
    let good = ids(d);
    assert_eq!(good.len(), 3);
    let first = sidecar_of(d, &good[2]);
    assert_eq!(first["archive_tables"], 3, "{first}");
    assert!(first.get("suspect").is_none(), "{first}");

    // Nearly emptied: two tables dropped, the third truncated.
    pg.psql(&db, "DROP TABLE small, other; TRUNCATE big;");
    let out = aos(d, &db, "2024-06-04T00:00:00Z")
        .env("BACKUP_KEEP_LAST", "1")
        .args(["backup", "--json"])
        .run();
    out.assert_success();
    assert_contains(
        &out,
        &out.stderr,
        &[
            "is suspect",
            "tables fell from 3 to 1",
            "not pruning old backups",
        ],
    );
    let report = out.json();
    assert_eq!(report["suspect"]["previous_id"], good[2].as_str(), "{out}");
    let all = ids(d);
    assert_eq!(all.len(), 4, "the prune ran:\n{out}");
    let new = all[3].clone();
    let meta = sidecar_of(d, &new);
    assert_eq!(meta["suspect"]["previous_id"], good[2].as_str(), "{meta}");
    assert!(
        meta["suspect"]["reason"]
            .as_str()
            .unwrap()
            .contains("size fell"),
        "{meta}"
    );

    // `list` marks it, in text and in JSON.
    let list = aos(d, &db, "2024-06-04T00:00:00Z").arg("list").run();
    list.assert_success();
    let row = list.stdout.lines().find(|l| l.starts_with(&new)).unwrap();
    assert!(row.ends_with("complete,suspect"), "{list}");
    assert_eq!(
        list.stdout.matches("complete,suspect").count(),
        1,
        "only one row is suspect:\n{list}"
    );
    let json = aos(d, &db, "2024-06-04T00:00:00Z")
        .args(["list", "--json"])
        .run()
        .json();
    for e in json.as_array().unwrap() {
        let suspect = e["id"] == new.as_str();
        assert_eq!(e["suspect"].is_object(), suspect, "{e}");
        assert_eq!(e["status"], "complete");
    }

    // `latest` passes over it, saying so.
    let verify = aos(d, &db, "2024-06-04T00:00:00Z").arg("verify").run();
    verify.assert_success();
    assert_contains(&verify, &verify.stdout, &[&good[2]]);
    assert_contains(&verify, &verify.stderr, &["passing over", &new]);

    // Still empty the next day: compared with the last trusted backup, still suspect.
    let out = aos(d, &db, "2024-06-05T00:00:00Z")
        .env("BACKUP_KEEP_LAST", "1")
        .arg("backup")
        .run();
    out.assert_success();
    assert_contains(&out, &out.stderr, &["is suspect", &good[2]]);
    assert_eq!(ids(d).len(), 5, "the prune ran:\n{out}");

    // The check turned off (the drop is intended): not suspect, and the prune runs.
    let out = aos(d, &db, "2024-06-06T00:00:00Z")
        .env("BACKUP_KEEP_LAST", "1")
        .env("BACKUP_SUSPECT_RATIO", "0")
        .arg("backup")
        .run();
    out.assert_success();
    assert!(!out.stderr.contains("suspect"), "{out}");
    let left = ids(d);
    assert_eq!(left.len(), 1, "{out}");
    assert!(sidecar_of(d, &left[0]).get("suspect").is_none());
    pg.drop_db(&db);
}

#[test]
fn the_suspect_threshold_is_configurable() {
    let pg = server();
    let db = filled_db("shrink_ratio");
    let dir = tempdir();
    let d = dir.path();
    aos(d, &db, "2024-07-01T00:00:00Z")
        .arg("backup")
        .run()
        .assert_success();
    // A third of `big` deleted: under the default (a drop of more than half) this is fine...
    pg.psql(&db, "DELETE FROM big WHERE id % 3 = 0;");
    let out = aos(d, &db, "2024-07-02T00:00:00Z").arg("backup").run();
    out.assert_success();
    assert!(!out.stderr.contains("suspect"), "{out}");
    // ...but not with a threshold of 0.9, from the config file.
    let cfg = d.join("aos.toml");
    fs::write(&cfg, "[backup]\nsuspect_ratio = 0.9\n").unwrap();
    pg.psql(&db, "DELETE FROM big WHERE id % 3 = 1;");
    let out = aos(d, &db, "2024-07-03T00:00:00Z")
        .args(["--config".as_ref(), cfg.as_os_str(), "backup".as_ref()])
        .run();
    out.assert_success();
    assert_contains(&out, &out.stderr, &["is suspect", "below 90%"]);
    let cfg_out = aos(d, &db, "2024-07-03T00:00:00Z")
        .args(["--config".as_ref(), cfg.as_os_str(), "config".as_ref()])
        .run();
    assert_contains(
        &cfg_out,
        &cfg_out.stdout,
        &["suspect_ratio = 0.9  (config file)"],
    );
    // Out of range: a usage error.
    let out = aos(d, &db, "2024-07-04T00:00:00Z")
        .env("BACKUP_SUSPECT_RATIO", "1.5")
        .arg("backup")
        .run();
    out.assert_code(2);
    assert_contains(&out, &out.stderr, &["BACKUP_SUSPECT_RATIO"]);
    pg.drop_db(&db);
}

/// The real pg_dump's custom archive of `db`, its first data block repeated right after it:
/// block boundaries are found by feeding the archive to the stream check byte by byte.
fn first_block_twice(db: &str) -> Vec<u8> {
    use aos_backup::check::{ArchiveParser, Verdict};
    let pg = server();
    let out = std::process::Command::new(pg.bindir.join("pg_dump"))
        .args(["--format=custom", "--no-owner", "--no-acl", "--compress=0"])
        .arg(format!("--dbname={}", pg.tcp_url(db)))
        .output()
        .unwrap();
    assert!(out.status.success());
    let bytes = out.stdout;
    let mut p = ArchiveParser::custom();
    let (mut toc_end, mut first_end) = (None, None);
    for (i, b) in bytes.iter().enumerate() {
        p.feed(std::slice::from_ref(b));
        if let Verdict::Incomplete(why) = p.finish() {
            if toc_end.is_none() && why.contains("after 0 data block(s)") {
                toc_end = Some(i + 1);
            }
            if why.contains("after 1 data block(s)") {
                first_end = Some(i + 1);
                break;
            }
        }
    }
    let (a, b) = (toc_end.unwrap(), first_end.unwrap());
    let mut odd = bytes[..b].to_vec();
    odd.extend_from_slice(&bytes[a..b]);
    odd.extend_from_slice(&bytes[b..]);
    odd
}

#[test]
fn an_archive_the_stream_check_cannot_judge_is_read_back_or_causes_no_deletion() {
    let pg = server();
    let db = filled_db("shrink_unknown");
    let dir = tempdir();
    let d = dir.path();
    aos(d, &db, "2024-08-01T00:00:00Z")
        .arg("backup")
        .run()
        .assert_success();
    // The first data block twice: not pg_dump's layout, so the stream check cannot judge;
    // pg_restore reads the archive through regardless (it skips blocks it does not look for).
    let odd = tempdir();
    let odd_path = odd.path().join("odd.dump");
    fs::write(&odd_path, first_block_twice(&db)).unwrap();
    let bin = cutting_pg_bin(&format!("cat >/dev/null; cat '{}'", odd_path.display()));
    let out = aos(d, &db, "2024-08-02T00:00:00Z")
        .env("PG_BIN", bin.path())
        .env("BACKUP_KEEP_LAST", "1")
        .args(["backup", "-v"])
        .run();
    out.assert_success();
    assert_contains(
        &out,
        &out.stderr,
        &["cannot judge", "reading it through pg_restore"],
    );
    assert!(!out.stderr.contains("not pruning"), "{out}");
    assert_eq!(ids(d), ["20240802-000000"], "the prune did not run:\n{out}");

    // Encrypted to a recipient whose identity is not configured: it cannot be read back, so
    // it is kept unchecked and deletes nothing.
    let keys = tempdir();
    let identity = keys.path().join("id.txt");
    let made = std::process::Command::new("age-keygen")
        .arg("-o")
        .arg(&identity)
        .output()
        .expect("age-keygen runs (apt-get install -y age)");
    assert!(made.status.success());
    let text = fs::read_to_string(&identity).unwrap();
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .trim()
        .to_owned();
    let out = aos(d, &db, "2024-08-03T00:00:00Z")
        .env("PG_BIN", bin.path())
        .env("BACKUP_KEEP_LAST", "1")
        .env("BACKUP_AGE_RECIPIENTS", &recipient)
        .args(["backup", "--encrypt"])
        .run();
    out.assert_success();
    assert_contains(
        &out,
        &out.stderr,
        &["not pruning old backups", "could not be checked"],
    );
    assert_eq!(ids(d).len(), 2, "{out}");
    // With the identity configured, it is read back, and the prune runs.
    let out = aos(d, &db, "2024-08-04T00:00:00Z")
        .env("PG_BIN", bin.path())
        .env("BACKUP_KEEP_LAST", "1")
        .env("BACKUP_AGE_RECIPIENTS", &recipient)
        .env("BACKUP_AGE_IDENTITY", &identity)
        .args(["backup", "--encrypt"])
        .run();
    out.assert_success();
    assert!(!out.stderr.contains("not pruning"), "{out}");
    assert_eq!(ids(d), ["20240804-000000"], "{out}");
    pg.drop_db(&db);
}
