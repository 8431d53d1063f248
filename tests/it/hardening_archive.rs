//! Attack findings, second batch: directory archives with cut or garbled data files, garbage
//! after a custom archive, the suspect check across formats and compressions, `verify latest`
//! in a shared folder, restore from a read-only folder, leftovers that cannot be removed, and
//! sidecars whose time disagrees with their name.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use crate::cmd::{Cmd, Output};
use crate::harness::server;
use crate::support::filled_db;

fn tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().unwrap()
}

/// `aos-backup` on the harness's database `db`, backing up into `dir` at `now`.
fn aos(dir: &Path, db: &str, now: &str) -> Cmd {
    Cmd::new()
        .env("BACKUP_DIR", dir)
        .env("PG_BIN", &server().bindir)
        .env("DATABASE_URL", server().tcp_url(db))
        .env("AOS_BACKUP_NOW", now)
}

/// Names and sizes of the backups and sidecars in `dir` (files; folders count their files).
fn snapshot(dir: &Path) -> BTreeMap<String, u64> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("aos-backup-"))
        .map(|e| {
            let n = e.file_name().into_string().unwrap();
            let md = e.metadata().unwrap();
            let size = if md.is_dir() {
                fs::read_dir(e.path()).unwrap().count() as u64
            } else {
                md.len()
            };
            (n, size)
        })
        .collect()
}

/// The ids of the complete backups in `dir`, sorted.
fn ids(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = snapshot(dir)
        .keys()
        .filter(|n| n.ends_with(".meta.json"))
        .map(|n| {
            let m: Value = serde_json::from_slice(&fs::read(dir.join(n)).unwrap()).unwrap();
            m["id"].as_str().unwrap().to_string()
        })
        .collect();
    ids.sort();
    ids
}

fn sidecar_path(dir: &Path, id: &str) -> PathBuf {
    let name = snapshot(dir)
        .into_keys()
        .find(|n| n.contains(id) && n.ends_with(".meta.json"))
        .unwrap_or_else(|| panic!("no sidecar for {id}"));
    dir.join(name)
}

#[track_caller]
fn assert_has(out: &Output, text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "expected {needle:?} in:\n{out}");
    }
}

/// A `PG_BIN` whose pg_dump runs `body` (shell; `$real` is the real pg_dump, `$dir` the
/// `--file=` folder of a directory archive) and exits 0.
fn fake_pg_bin(body: &str) -> TempDir {
    let bin = tempdir("aos-backup-it-fix2-bin.");
    let real = &server().bindir;
    for tool in ["pg_restore", "psql"] {
        std::os::unix::fs::symlink(real.join(tool), bin.path().join(tool)).unwrap();
    }
    let script = format!(
        "#!/bin/sh\n\
         real='{real}/pg_dump'\n\
         if [ \"$1\" = --version ]; then exec \"$real\" \"$@\"; fi\n\
         for a in \"$@\"; do case \"$a\" in --file=*) dir=\"${{a#--file=}}\";; esac; done\n\
         {body}\n\
         exit 0\n",
        real = real.display()
    );
    let path = bin.path().join("pg_dump");
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// A pg_dump that runs the real one, then `then` (shell) on what it wrote.
fn pg_dump_then(then: &str) -> TempDir {
    fake_pg_bin(&format!("\"$real\" \"$@\" || exit $?\n{then}"))
}

#[test]
fn a_directory_archive_with_cut_or_garbled_data_files_fails_and_prunes_nothing() {
    let pg = server();
    let db = filled_db("fix2_dir_cut");
    let dir = tempdir("aos-backup-it-fix2.");
    let d = dir.path();
    aos(d, &db, "2024-05-01T00:00:00Z")
        .args(["backup", "--format", "directory"])
        .run()
        .assert_success();
    let before = snapshot(d);
    let each = "for f in \"$dir\"/[0-9]*.dat*; do";
    let cases = [
        (
            format!("{each} s=$(stat -c %s \"$f\"); truncate -s $((s / 2)) \"$f\"; done"),
            "cut short",
        ),
        (format!("{each} printf 'junk' >> \"$f\"; done"), ""),
        (
            "printf '\\\\.\\n\\n\\n' > \"$dir\"/9999.dat".into(),
            "9999.dat",
        ),
    ];
    for compression in ["pg_dump", "none"] {
        for (then, why) in &cases {
            let bin = pg_dump_then(then);
            let out = aos(d, &db, "2024-05-02T00:00:00Z")
                .env("PG_BIN", bin.path())
                .env("BACKUP_KEEP_LAST", "1")
                .args([
                    "backup",
                    "--format",
                    "directory",
                    "--compression",
                    compression,
                ])
                .run();
            out.assert_code(1);
            assert_has(
                &out,
                &out.stderr,
                &[
                    "pg_dump exited 0, but its archive is incomplete",
                    why,
                    "nothing was pruned",
                ],
            );
            assert_eq!(snapshot(d), before, "{then} changed the folder:\n{out}");
        }
    }
    // pg_dump's real output still makes backups, gzipped or not.
    for compression in ["pg_dump", "none"] {
        aos(d, &db, "2024-05-03T00:00:00Z")
            .args([
                "backup",
                "--format",
                "directory",
                "--compression",
                compression,
            ])
            .run()
            .assert_success();
    }
    pg.drop_db(&db);
}

/// Rewrites the sidecar of the directory backup `id` so that its manifest matches the files as
/// they are now (what an older aos-backup recorded for an archive pg_dump had cut short).
fn reseal_directory(dir: &Path, id: &str) {
    let sidecar = sidecar_path(dir, id);
    let mut meta: Value = serde_json::from_slice(&fs::read(&sidecar).unwrap()).unwrap();
    let folder = dir.join(meta["file"].as_str().unwrap());
    let mut files = Vec::new();
    let mut names: Vec<String> = fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut total = 0;
    for name in names {
        let counter = std::sync::atomic::AtomicU64::new(0);
        let (sha256, size) = aos_backup::check::hash_file(&folder.join(&name), &counter).unwrap();
        total += size;
        files.push(aos_backup::types::FileEntry {
            path: name,
            size,
            sha256,
        });
    }
    meta["sha256"] = Value::from(aos_backup::check::manifest_sha256(&files));
    meta["size_bytes"] = Value::from(total);
    meta["files"] = serde_json::to_value(&files).unwrap();
    fs::write(&sidecar, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
}

#[test]
fn verify_catches_a_directory_archive_whose_data_files_were_cut_before_they_were_hashed() {
    let pg = server();
    let db = filled_db("fix2_dir_verify");
    let dir = tempdir("aos-backup-it-fix2.");
    let d = dir.path();
    for (now, compression) in [
        ("2024-05-01T00:00:00Z", "none"),
        ("2024-05-02T00:00:00Z", "pg_dump"),
    ] {
        aos(d, &db, now)
            .args([
                "backup",
                "--format",
                "directory",
                "--compression",
                compression,
            ])
            .run()
            .assert_success();
        let id = &now[..10].replace('-', "");
        aos(d, &db, "2024-05-09T00:00:00Z")
            .args(["verify", &format!("{id}-000000")])
            .run()
            .assert_success();
        // Every data file cut in half; the sidecar made to match, as the old check allowed.
        let folder = d.join(format!("aos-backup-{id}-000000.dir"));
        for e in fs::read_dir(&folder).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with(|c: char| c.is_ascii_digit()) {
                let bytes = fs::read(&p).unwrap();
                fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
            }
        }
        reseal_directory(d, id);
        let out = aos(d, &db, "2024-05-09T00:00:00Z")
            .args(["verify", &format!("{id}-000000")])
            .run();
        out.assert_code(4);
        assert_has(&out, &out.stdout, &["FAIL", "incomplete", ".dat"]);
    }
    pg.drop_db(&db);
}

#[test]
fn garbage_after_a_custom_archive_fails_the_backup_with_every_compression() {
    let pg = server();
    let db = filled_db("fix2_custom_junk");
    let dir = tempdir("aos-backup-it-fix2.");
    let d = dir.path();
    aos(d, &db, "2024-05-01T00:00:00Z")
        .arg("backup")
        .run()
        .assert_success();
    let before = snapshot(d);
    let bin = fake_pg_bin("\"$real\" \"$@\"; printf 'garbage appended'");
    for compression in ["zstd", "gzip", "none", "pg_dump"] {
        let out = aos(d, &db, "2024-05-02T00:00:00Z")
            .env("PG_BIN", bin.path())
            .env("BACKUP_KEEP_LAST", "1")
            .args(["backup", "--compression", compression])
            .run();
        out.assert_code(1);
        assert_has(
            &out,
            &out.stderr,
            &["its archive is incomplete", "garbled", "nothing was pruned"],
        );
        assert_eq!(snapshot(d), before, "{compression}:\n{out}");
    }
    pg.drop_db(&db);
}

#[test]
fn a_dump_of_an_empty_database_in_another_format_or_compression_is_suspect() {
    let pg = server();
    let db = filled_db("fix2_format_switch");
    let empty = pg.create_db("fix2_format_switch_empty");
    // pg_dump of the empty database, whatever the target is.
    let bin = fake_pg_bin(&format!(
        "exec \"$real\" \"$@\" '--dbname={}'",
        pg.tcp_url(&empty)
    ));
    let cases: [(&[&str], &[&str]); 4] = [
        (&[], &["--format", "plain"]),
        (&["--format", "plain"], &[]),
        (&["--compression", "pg_dump"], &["--format", "plain"]),
        (&["--format", "plain"], &["--compression", "pg_dump"]),
    ];
    for (good, bad) in cases {
        let dir = tempdir("aos-backup-it-fix2.");
        let d = dir.path();
        aos(d, &db, "2024-06-01T00:00:00Z")
            .arg("backup")
            .args(good)
            .run()
            .assert_success();
        let out = aos(d, &db, "2024-06-02T00:00:00Z")
            .env("PG_BIN", bin.path())
            .env("BACKUP_KEEP_LAST", "1")
            .args(["backup", "--json"])
            .args(bad)
            .run();
        out.assert_success();
        assert_has(
            &out,
            &out.stderr,
            &[
                "is suspect",
                "tables in the archive fell from 3 to 0",
                "not pruning",
            ],
        );
        assert_eq!(out.json()["archive_tables"], 0, "{out}");
        assert_eq!(
            ids(d),
            ["20240601-000000", "20240602-000000"],
            "{good:?} then {bad:?}:\n{out}"
        );
    }
    pg.drop_db(&db);
    pg.drop_db(&empty);
}

#[test]
fn verify_latest_looks_among_the_target_databases_backups() {
    let pg = server();
    let a = pg.create_db("fix2_verify_a");
    let b = pg.create_db("fix2_verify_b");
    let dir = tempdir("aos-backup-it-fix2.");
    let d = dir.path();
    aos(d, &a, "2024-07-01T00:00:00Z")
        .arg("backup")
        .run()
        .assert_success();
    aos(d, &b, "2024-07-02T00:00:00Z")
        .arg("backup")
        .run()
        .assert_success();
    let verified = |out: &Output| -> String {
        out.assert_success();
        out.json()[0]["file"].as_str().unwrap().to_string()
    };
    // DATABASE_URL names a: a's newest, not the folder's newest (b's).
    let out = aos(d, &a, "2024-07-03T00:00:00Z")
        .args(["verify", "latest", "--json"])
        .run();
    assert!(verified(&out).contains("20240701-000000"), "{out}");
    let out = aos(d, &a, "2024-07-03T00:00:00Z")
        .args(["verify", "--json"])
        .run();
    assert!(verified(&out).contains("20240701-000000"), "{out}");
    // An id prefix too: "2024070" is one backup of a.
    let out = aos(d, &a, "2024-07-03T00:00:00Z")
        .args(["verify", "2024070", "--json"])
        .run();
    assert!(verified(&out).contains("20240701-000000"), "{out}");
    // --database picks another; without any database, the whole folder.
    let out = aos(d, &a, "2024-07-03T00:00:00Z")
        .args(["verify", "latest", "--database", &b, "--json"])
        .run();
    assert!(verified(&out).contains("20240702-000000"), "{out}");
    let out = aos(d, &a, "2024-07-03T00:00:00Z")
        .env_remove("DATABASE_URL")
        .args(["verify", "latest", "--json"])
        .run();
    assert!(verified(&out).contains("20240702-000000"), "{out}");
    // A database without backups: a usage error that says how to reach the others.
    let out = aos(d, &a, "2024-07-03T00:00:00Z")
        .args(["verify", "latest", "--database", "nope"])
        .run();
    out.assert_code(2);
    assert_has(
        &out,
        &out.stderr,
        &["no complete backup of database \"nope\"", "--database NAME"],
    );
    // --all with --database: only that database's backups.
    let out = aos(d, &a, "2024-07-03T00:00:00Z")
        .args(["verify", "--all", "--database", &b, "--json"])
        .run();
    out.assert_success();
    assert_eq!(out.json().as_array().unwrap().len(), 1, "{out}");
    pg.drop_db(&a);
    pg.drop_db(&b);
}

/// A tmpfs mounted on a fresh folder; unmounted when dropped.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn new() -> Tmpfs {
        let dir = tempdir("aos-backup-it-fix2-ro.");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs to make a read-only backup folder: run it as root with mount permitted ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn read_only(&self) {
        let out = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "remount read-only: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn restore_from_a_read_only_backup_folder_works() {
    let pg = server();
    let db = filled_db("fix2_read_only");
    for with_lock_file in [true, false] {
        let fs_ro = Tmpfs::new();
        let d = fs_ro.path();
        aos(d, &db, "2024-08-01T00:00:00Z")
            .arg("backup")
            .run()
            .assert_success();
        let lock = d.join(".aos-backup.lock");
        assert!(lock.exists());
        if !with_lock_file {
            fs::remove_file(&lock).unwrap();
        }
        fs_ro.read_only();
        pg.psql(&db, "SET ROLE app; DELETE FROM small;");
        // A read-only folder cannot take the safety backup a restore over tables makes first
        // (that refusal is tested in rehearse.rs): this restore goes without it.
        let out = aos(d, &db, "2024-08-02T00:00:00Z")
            .args(["restore", "--yes", "--no-safety-backup", "latest"])
            .run();
        out.assert_success();
        assert_eq!(
            pg.psql(&db, "SELECT count(*) FROM small").trim(),
            "2",
            "{out}"
        );
        if with_lock_file {
            // The lock file is locked through a read-only descriptor: nothing to say.
            assert!(!out.stderr.contains("without the folder lock"), "{out}");
        } else {
            assert_has(
                &out,
                &out.stderr,
                &[
                    "not writable",
                    "Read-only file system",
                    "without the folder lock",
                ],
            );
            let notices = out
                .stderr
                .lines()
                .filter(|l| l.contains("without the folder lock"))
                .count();
            assert_eq!(notices, 1, "{out}");
        }
        // list and verify work there too.
        aos(d, &db, "2024-08-02T00:00:00Z")
            .arg("list")
            .run()
            .assert_success();
        aos(d, &db, "2024-08-02T00:00:00Z")
            .arg("verify")
            .run()
            .assert_success();
    }
    pg.drop_db(&db);
}

/// Makes `path` immutable (chattr +i) until the value is dropped.
struct Immutable(PathBuf);

impl Immutable {
    fn new(path: &Path) -> Immutable {
        let out = Command::new("chattr")
            .arg("+i")
            .arg(path)
            .output()
            .expect("run chattr");
        assert!(
            out.status.success(),
            "this test makes a file immutable with chattr +i: run it as root on a file system that supports it ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Immutable(path.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn a_leftover_that_cannot_be_removed_is_a_warning_not_a_failure() {
    let pg = server();
    let db = filled_db("fix2_leftover");
    let dir = tempdir("aos-backup-it-fix2.");
    let d = dir.path();
    aos(d, &db, "2024-09-01T00:00:00Z")
        .arg("backup")
        .run()
        .assert_success();
    let leftover = d.join("aos-backup-20240831-000000.dir.partial");
    fs::create_dir(&leftover).unwrap();
    fs::write(leftover.join("3000.dat"), "x").unwrap();
    let _stuck = Immutable::new(&leftover.join("3000.dat"));
    let removable = d.join("aos-backup-20240830-000000.dump.zst.partial");
    fs::write(&removable, "x").unwrap();
    for day in 2..=3 {
        let out = aos(d, &db, &format!("2024-09-0{day}T00:00:00Z"))
            .env("BACKUP_KEEP_LAST", "2")
            .arg("backup")
            .run();
        out.assert_success();
        assert_has(
            &out,
            &out.stderr,
            &[
                "cannot remove",
                "aos-backup-20240831-000000.dir.partial",
                "Operation not permitted",
            ],
        );
        assert!(!removable.exists(), "the other leftover is removed:\n{out}");
    }
    assert_eq!(ids(d), ["20240902-000000", "20240903-000000"]);
    let out = aos(d, &db, "2024-09-04T00:00:00Z")
        .args(["prune", "--keep-last", "2", "--json"])
        .run();
    out.assert_success();
    assert_has(&out, &out.stderr, &["cannot remove"]);
    let plan = out.json()["plan"].clone();
    let item = plan
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["action"] == "remove")
        .unwrap()
        .clone();
    assert!(item["error"].as_str().is_some(), "{out}");
    pg.drop_db(&db);
}

#[test]
fn a_sidecar_whose_time_disagrees_with_its_name_is_flagged_kept_and_not_latest() {
    let pg = server();
    let db = pg.create_db("fix2_time");
    let dir = tempdir("aos-backup-it-fix2.");
    let d = dir.path();
    for day in ["01", "10", "20"] {
        aos(d, &db, &format!("2026-11-{day}T00:00:00Z"))
            .arg("backup")
            .run()
            .assert_success();
    }
    // The oldest backup's sidecar claims it is the newest.
    let sidecar = sidecar_path(d, "20261101-000000");
    let mut meta: Value = serde_json::from_slice(&fs::read(&sidecar).unwrap()).unwrap();
    meta["started_at"] = Value::from("2026-11-28T00:00:00Z");
    meta["finished_at"] = Value::from("2026-11-28T00:00:01Z");
    fs::write(&sidecar, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
    let now = "2026-11-29T00:00:00Z";

    let out = aos(d, &db, now).arg("list").run();
    out.assert_success();
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("20261101-000000"))
        .unwrap();
    assert!(row.contains("time disagrees with its name"), "{out}");
    assert_has(
        &out,
        &out.stderr,
        &[
            "20261101-000000",
            "2026-11-28 00:00:00 UTC",
            "2026-11-01 00:00:00 UTC",
        ],
    );
    let out = aos(d, &db, now).args(["list", "--json"]).run();
    let json = out.json();
    let flagged: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["time_mismatch"] == true)
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(flagged, ["20261101-000000"], "{out}");

    // `latest` is the real newest.
    let out = aos(d, &db, now).args(["verify", "latest", "--json"]).run();
    out.assert_success();
    assert!(
        out.json()[0]["file"].as_str().unwrap().contains("20261120"),
        "{out}"
    );
    assert_has(&out, &out.stderr, &["passing over 20261101-000000"]);

    // Retention keeps it without letting it take the newest's place.
    let out = aos(d, &db, now).args(["prune", "--keep-last", "1"]).run();
    out.assert_success();
    assert_has(&out, &out.stdout, &["time disagrees with its name"]);
    assert_eq!(ids(d), ["20261101-000000", "20261120-000000"], "{out}");
    pg.drop_db(&db);
}
