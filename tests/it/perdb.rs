//! Trust on the worst day, against a real PostgreSQL server: one backup folder shared by two
//! databases (`latest`, id prefixes, restore consent with `--from-database`, `list --database`,
//! per-database prune), backups dated in the future (retention never deletes the real ones,
//! `latest` skips them, `list` flags them), 0 meaning "off" in the retention settings, and a
//! leftover `.partial` of a killed run in the same second.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::cmd::Cmd;
use crate::harness::server;
use crate::support::{
    self, assert_contains, backup_names as names, file_name, id_at, read_json, sidecar, tempdir,
};

/// "Now" for every command that does not say otherwise: a Sunday, noon UTC.
const NOW: &str = "2024-03-31T12:00:00Z";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A database owned by `app` with one table whose rows say `tag`.
fn db_with(prefix: &str, tag: &str) -> String {
    let pg = server();
    let db = pg.create_db(prefix);
    pg.psql(
        &db,
        &format!(
            "SET ROLE app;\nCREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);\n\
             INSERT INTO items SELECT g, '{tag} ' || g FROM generate_series(1, 20) g;"
        ),
    );
    db
}

/// `aos-backup` with `BACKUP_DIR=dir`, the harness's client tools and `AOS_BACKUP_NOW=NOW`.
fn aos(dir: &Path) -> Cmd {
    Cmd::new()
        .env("BACKUP_DIR", dir)
        .env("PG_BIN", &server().bindir)
        .env("AOS_BACKUP_NOW", NOW)
}

/// `aos` with `DATABASE_URL` pointing at `db` (as `app` over TCP).
fn aos_for(dir: &Path, db: &str) -> Cmd {
    aos(dir).env("DATABASE_URL", server().tcp_url(db))
}

/// A real backup of `db` into `dir` "at" `time`; returns the new file.
fn backup_at(dir: &Path, db: &str, time: &str) -> PathBuf {
    let out = aos_for(dir, db)
        .env("AOS_BACKUP_NOW", time)
        .arg("backup")
        .run();
    out.assert_success();
    let path = PathBuf::from(out.stdout_trimmed());
    assert!(path.is_file(), "{out}");
    path
}

/// A copy of the real backup `src` "made" at `time` (id, file and dates adjusted in its sidecar;
/// the checksum stays valid). Returns the new file.
fn fabricate(src: &Path, dir: &Path, time: &str) -> PathBuf {
    support::fabricate(src, dir, time, None).1
}

/// The backup files (no sidecars) in `dir`, sorted.
fn backups(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.ends_with(".dump.zst"))
        .collect()
}

fn name_of(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------------------------
// Item 2: backups dated in the future; 0 means "off"
// ---------------------------------------------------------------------------------------------

/// A folder with a real backup of a fresh database at 2024-03-30 15:00 and a copy of it dated
/// next year.
fn folder_with_a_future_backup(prefix: &str) -> (TempDir, String, PathBuf, PathBuf) {
    let db = db_with(prefix, "real");
    let dir = tempdir();
    let real = backup_at(dir.path(), &db, "2024-03-30T15:00:00Z");
    let future = fabricate(&real, dir.path(), "2025-03-31T03:00:00Z");
    (dir, db, real, future)
}

#[test]
fn zero_retention_settings_are_off_and_delete_nothing_even_with_a_future_backup() {
    let (dir, db, real, future) = folder_with_a_future_backup("perdb_zero");
    let d = dir.path();
    for (i, (var, value)) in [
        ("BACKUP_KEEP_LAST", "0"),
        ("BACKUP_RETENTION_DAYS", "0"),
        ("BACKUP_KEEP_DAILY", "0"),
    ]
    .into_iter()
    .enumerate()
    {
        let before = backups(d);
        let time = format!("2024-03-31T12:00:0{i}Z");
        let out = aos_for(d, &db)
            .env("AOS_BACKUP_NOW", &time)
            .env(var, value)
            .arg("backup")
            .run();
        out.assert_success();
        let new = PathBuf::from(out.stdout_trimmed());
        assert!(
            new.is_file(),
            "{var}=0: the backup it printed is gone\n{out}"
        );
        let mut expected = before.clone();
        expected.push(name_of(&new));
        expected.sort();
        assert_eq!(backups(d), expected, "{var}=0 deleted something\n{out}");
    }
    assert!(real.is_file() && future.is_file());

    // The same on the command line: --max-age-days 0 is off, and a policy of only zeros is
    // "nothing to prune" (a usage error), not "delete everything".
    let before = names(d);
    for args in [
        &["prune", "--max-age-days", "0"][..],
        &["prune", "--keep-last", "0", "--keep-daily", "0"],
    ] {
        let out = aos_for(d, &db).args(args).run();
        out.assert_code(2);
        assert_contains(&out, &out.stderr, &["no retention policy", "0", "hint:"]);
        assert_eq!(names(d), before, "{args:?}");
    }
    // A 0 next to a rule that is on: only the rule that is on counts.
    let out = aos_for(d, &db)
        .args([
            "prune",
            "--dry-run",
            "--keep-last",
            "1",
            "--max-age-days",
            "0",
        ])
        .run();
    out.assert_success();
    assert!(out.stdout.lines().any(|l| l.starts_with("delete")), "{out}");
    server().drop_db(&db);
}

#[test]
fn a_future_dated_backup_never_makes_prune_delete_the_newest_real_one() {
    let (dir, db, real, future) = folder_with_a_future_backup("perdb_floor");
    let d = dir.path();
    let older = fabricate(&real, d, "2024-03-20T03:00:00Z");
    // Ten days later, every real backup is older than a day: the newest real one stays anyway
    // (the future-dated one does not count as "the newest"), and the future one is kept.
    let out = aos_for(d, &db)
        .env("AOS_BACKUP_NOW", "2024-04-10T00:00:00Z")
        .args(["prune", "--max-age-days", "1"])
        .run();
    out.assert_success();
    assert_eq!(backups(d), [name_of(&real), name_of(&future)], "{out}");
    assert!(!older.exists());
    let line = |id: &str| {
        out.stdout
            .lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("no plan line for {id}:\n{out}"))
            .to_string()
    };
    assert!(
        line(&id_at("2024-03-30T15:00:00Z")).ends_with("newest backup"),
        "{out}"
    );
    assert!(
        line(&id_at("2025-03-31T03:00:00Z")).ends_with("dated in the future"),
        "{out}"
    );
    server().drop_db(&db);
}

#[test]
fn the_prune_after_a_backup_never_deletes_the_backup_just_written() {
    // A complete backup of the same database dated exactly "now" with a name that sorts after
    // the new one's: keep-daily 1 keeps only one backup of today, and it is not the new one.
    let db = db_with("perdb_protect", "real");
    let dir = tempdir();
    let d = dir.path();
    let first = backup_at(d, &db, "2024-03-30T15:00:00Z");
    let same_second = fabricate(&first, d, NOW);
    let out = aos_for(d, &db)
        .env("BACKUP_KEEP_DAILY", "1")
        .arg("backup")
        .run();
    out.assert_success();
    let new = PathBuf::from(out.stdout_trimmed());
    assert_eq!(
        name_of(&new),
        file_name(&format!("{}-2", id_at(NOW))),
        "{out}"
    );
    assert!(
        new.is_file(),
        "the prune deleted the backup just written:\n{out}"
    );
    assert!(sidecar(&new).is_file());
    assert!(same_second.is_file());
    // The older one of yesterday is the one that went (keep-daily 1 keeps today only).
    assert!(!first.exists(), "{out}");
    aos(d)
        .args(["verify", &format!("{}-2", id_at(NOW))])
        .run()
        .assert_success();
    server().drop_db(&db);
}

#[test]
fn a_future_dated_backup_is_flagged_in_list_and_skipped_by_latest() {
    let pg = server();
    let db = db_with("perdb_latest", "real");
    let dir = tempdir();
    let d = dir.path();
    let real = backup_at(d, &db, "2024-03-30T15:00:00Z");
    let real_contents = pg.table_contents(&db);
    // The future-dated one holds other data, to tell them apart after a restore.
    pg.psql(
        &db,
        "INSERT INTO items VALUES (1000, 'only in the future one')",
    );
    let elsewhere = tempdir();
    let other = backup_at(elsewhere.path(), &db, "2024-03-31T00:00:00Z");
    let future = fabricate(&other, d, "2025-03-31T03:00:00Z");

    let out = aos(d).args(["list"]).run();
    out.assert_success();
    let future_id = id_at("2025-03-31T03:00:00Z");
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&future_id))
        .unwrap_or_else(|| panic!("no row for {future_id}:\n{out}"));
    assert!(row.contains("complete, dated in the future"), "{out}");
    let real_row = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&id_at("2024-03-30T15:00:00Z")))
        .unwrap();
    assert!(!real_row.contains("future"), "{out}");
    assert_contains(
        &out,
        &out.stderr,
        &["dated in the future", &future_id, "clock"],
    );

    let out = aos(d).args(["list", "--json"]).run();
    out.assert_success();
    let list = out.json();
    let by_id = |id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_id(&future_id)["future"], true);
    assert_eq!(by_id(&future_id)["status"], "complete");
    assert_eq!(by_id(&id_at("2024-03-30T15:00:00Z"))["future"], false);

    // `latest` is the newest backup not dated in the future.
    let out = aos_for(d, &db).args(["restore", "--yes", "latest"]).run();
    out.assert_success();
    assert_eq!(pg.table_contents(&db), real_contents, "{out}");
    assert_contains(&out, &out.stderr, &[&real.display().to_string()]);
    let out = aos(d).args(["verify", "latest"]).run();
    out.assert_success();
    assert_contains(&out, &out.stdout, &[&name_of(&real)]);

    // Once only the future-dated one is left, `latest` takes it, saying so.
    fs::remove_file(&real).unwrap();
    fs::remove_file(sidecar(&real)).unwrap();
    let out = aos(d).args(["verify", "latest"]).run();
    out.assert_success();
    assert_contains(&out, &out.stdout, &[&name_of(&future)]);
    assert_contains(
        &out,
        &out.stderr,
        &["dated in the future", "check the clocks"],
    );
    pg.drop_db(&db);
}

// ---------------------------------------------------------------------------------------------
// Item 3: one folder, two databases
// ---------------------------------------------------------------------------------------------

/// Two databases, `shop` and `shop2`, with different rows, and one folder with: shop2's backup at
/// 2024-03-29 10:00, shop's at 2024-03-30 15:00 and 2024-03-31 03:00, shop2's at 2024-03-30
/// 16:00. (So shop2's newest is newer than shop's older one, and a prefix `20240330` matches
/// one backup of each.)
struct TwoDbs {
    dir: TempDir,
    shop: String,
    shop2: String,
    shop_contents: String,
    shop2_contents: String,
    shop_old: PathBuf,
    shop_new: PathBuf,
    shop2_old: PathBuf,
    shop2_new: PathBuf,
}

impl TwoDbs {
    fn new(name: &str) -> TwoDbs {
        let pg = server();
        let shop = db_with(&format!("{name}_shop"), "shop");
        let shop2 = db_with(&format!("{name}_shop2"), "shop2");
        let dir = tempdir();
        let d = dir.path();
        let shop2_old = backup_at(d, &shop2, "2024-03-29T10:00:00Z");
        let shop_old = backup_at(d, &shop, "2024-03-30T15:00:00Z");
        let shop2_new = backup_at(d, &shop2, "2024-03-30T16:00:00Z");
        let shop_new = backup_at(d, &shop, "2024-03-31T03:00:00Z");
        TwoDbs {
            shop_contents: pg.table_contents(&shop),
            shop2_contents: pg.table_contents(&shop2),
            dir,
            shop,
            shop2,
            shop_old,
            shop_new,
            shop2_old,
            shop2_new,
        }
    }

    fn d(&self) -> &Path {
        self.dir.path()
    }

    /// Changes shop's rows so that a restore shows.
    fn scribble_on_shop(&self) {
        server().psql(&self.shop, "DELETE FROM items WHERE id > 5");
    }
}

impl Drop for TwoDbs {
    fn drop(&mut self) {
        server().drop_db(&self.shop);
        server().drop_db(&self.shop2);
    }
}

#[test]
fn latest_and_id_prefixes_are_the_target_databases() {
    let pg = server();
    let t = TwoDbs::new("perdb_latest2");
    // The newest backup in the folder is shop's; make shop2's newest newer still.
    let newest_shop2 = backup_at(t.d(), &t.shop2, "2024-03-31T06:00:00Z");
    t.scribble_on_shop();
    let out = aos_for(t.d(), &t.shop)
        .args(["restore", "--yes", "latest"])
        .run();
    out.assert_success();
    assert_eq!(pg.table_contents(&t.shop), t.shop_contents, "{out}");
    assert_contains(
        &out,
        &out.stderr,
        &[
            &t.shop_new.display().to_string(),
            &format!("backup of {:?}", t.shop),
            "taken 2024-03-31 03:00 UTC, 9 hours ago",
        ],
    );

    // A prefix matching one backup of each database is shop's for shop...
    t.scribble_on_shop();
    let out = aos_for(t.d(), &t.shop)
        .args(["restore", "--yes", "20240330"])
        .run();
    out.assert_success();
    assert_contains(&out, &out.stderr, &[&t.shop_old.display().to_string()]);
    assert_eq!(pg.table_contents(&t.shop), t.shop_contents);
    // ...ambiguous without a database (verify looks at the whole folder)...
    let out = aos(t.d()).args(["verify", "20240330"]).run();
    out.assert_code(2);
    assert_contains(&out, &out.stderr, &["matches 2 backups"]);
    // ...and a prefix that matches only the other database's backups says so.
    let out = aos_for(t.d(), &t.shop)
        .args(["restore", "--yes", "20240329"])
        .run();
    out.assert_code(2);
    assert_contains(
        &out,
        &out.stderr,
        &["other databases", &t.shop2, "--from-database"],
    );
    assert_eq!(pg.table_contents(&t.shop), t.shop_contents);
    // With --from-database, latest and prefixes look among shop2's backups.
    let out = aos_for(t.d(), &t.shop)
        .args(["restore", "--yes", "--from-database", &t.shop2, "latest"])
        .run();
    out.assert_success();
    assert_contains(&out, &out.stderr, &[&newest_shop2.display().to_string()]);
    assert_eq!(pg.table_contents(&t.shop), t.shop2_contents);
    let out = aos_for(t.d(), &t.shop)
        .args(["restore", "--yes", "--from-database", &t.shop2, "20240330"])
        .run();
    out.assert_success();
    assert_contains(&out, &out.stderr, &[&t.shop2_new.display().to_string()]);

    // A database without backups: `latest` names the ones there are.
    let empty = pg.create_db("perdb_nobackups");
    let out = aos_for(t.d(), &empty)
        .args(["restore", "--yes", "latest"])
        .run();
    out.assert_code(2);
    assert_contains(
        &out,
        &out.stderr,
        &[
            "no complete backup of database",
            &empty,
            &t.shop2,
            "--from-database",
        ],
    );
    pg.drop_db(&empty);
}

#[test]
fn restoring_another_databases_backup_takes_from_database() {
    let pg = server();
    let t = TwoDbs::new("perdb_consent");
    t.scribble_on_shop();
    let before = pg.table_contents(&t.shop);
    let shop2_id = id_at("2024-03-30T16:00:00Z");
    // By full id and by path: refused, exit 3, with the flag in the hint; shop is untouched.
    for what in [shop2_id.clone(), t.shop2_new.display().to_string()] {
        let out = aos_for(t.d(), &t.shop)
            .args(["restore", "--yes", &what])
            .run();
        out.assert_code(3);
        assert_contains(
            &out,
            &out.stderr,
            &[
                "refusing to restore",
                &format!("backup of database {:?}", t.shop2),
                &format!("the target is database {:?}", t.shop),
                &format!("hint: to restore {:?}'s backup into {:?}", t.shop2, t.shop),
                &format!("--from-database {}", t.shop2),
            ],
        );
        assert_eq!(pg.table_contents(&t.shop), before, "{what}");
    }
    // --from-database naming a third database: refused too.
    let out = aos_for(t.d(), &t.shop)
        .args([
            "restore",
            "--yes",
            "--from-database",
            "elsewhere",
            &shop2_id,
        ])
        .run();
    out.assert_code(3);
    assert_contains(&out, &out.stderr, &["not of \"elsewhere\""]);
    assert_eq!(pg.table_contents(&t.shop), before);

    // With the consent: restored, and the log names the backup's database, time and age.
    let out = aos_for(t.d(), &t.shop)
        .args(["restore", "--yes", "--from-database", &t.shop2, &shop2_id])
        .run();
    out.assert_success();
    assert_eq!(pg.table_contents(&t.shop), t.shop2_contents);
    assert_contains(
        &out,
        &out.stderr,
        &[
            &format!("backup of {:?}", t.shop2),
            "taken 2024-03-30 16:00 UTC, 20 hours ago",
            &format!("into database {:?}", t.shop),
        ],
    );
    // Its own backup needs no flag.
    let out = aos_for(t.d(), &t.shop)
        .args(["restore", "--yes", &t.shop_old.display().to_string()])
        .run();
    out.assert_success();
    assert_eq!(pg.table_contents(&t.shop), t.shop_contents);
}

#[test]
fn list_shows_every_database_and_filters_by_one() {
    let t = TwoDbs::new("perdb_list");
    let out = aos_for(t.d(), &t.shop).args(["list", "--json"]).run();
    out.assert_success();
    let all = out.json();
    assert_eq!(all.as_array().unwrap().len(), 4, "{out}");
    let out = aos(t.d()).arg("list").run();
    out.assert_success();
    assert_eq!(out.stdout.lines().count(), 5, "{out}");
    assert_contains(&out, &out.stdout, &[&t.shop, &t.shop2, "DATABASE"]);
    assert_contains(&out, &out.stderr, &["backups of 2 databases", "--database"]);

    let out = aos(t.d())
        .args(["list", "--json", "--database", &t.shop2])
        .run();
    out.assert_success();
    let ids: Vec<String> = out
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["database"], t.shop2.as_str());
            assert!(e["host"].is_string());
            e["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        ids,
        [id_at("2024-03-30T16:00:00Z"), id_at("2024-03-29T10:00:00Z")]
    );
    let out = aos(t.d()).args(["list", "--database", &t.shop]).run();
    out.assert_success();
    assert_eq!(out.stdout.lines().count(), 3, "{out}");
    assert!(!out.stdout.contains(&t.shop2), "{out}");
    let out = aos(t.d()).args(["list", "--database", "nobody"]).run();
    out.assert_success();
    assert_eq!(out.stdout_trimmed(), "");
    assert_contains(
        &out,
        &out.stderr,
        &["no backups of database \"nobody\"", &t.shop2],
    );
}

#[test]
fn prune_applies_retention_to_one_database_at_a_time() {
    let t = TwoDbs::new("perdb_prune");
    let d = t.d();
    // Without a database: a usage error naming the ways to give one; nothing deleted.
    let before = names(d);
    let out = aos(d).args(["prune", "--keep-last", "1"]).run();
    out.assert_code(2);
    assert_contains(
        &out,
        &out.stderr,
        &["DATABASE_URL", "--database NAME", "--all-databases"],
    );
    assert_eq!(names(d), before);

    // --dry-run names the database on every line.
    let out = aos(d)
        .args([
            "prune",
            "--dry-run",
            "--keep-last",
            "1",
            "--database",
            &t.shop2,
        ])
        .run();
    out.assert_success();
    let plan: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("keep") || l.starts_with("delete"))
        .collect();
    assert_eq!(plan.len(), 2, "{out}");
    assert!(
        plan.iter().all(|l| l.contains(&format!("  {}  ", t.shop2))),
        "{out}"
    );
    assert!(plan[1].starts_with("delete"), "{out}");
    let out = aos(d)
        .args([
            "prune",
            "-n",
            "--json",
            "--keep-last",
            "1",
            "--database",
            &t.shop2,
        ])
        .run();
    assert!(out.json()["plan"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["database"] == t.shop2.as_str()));
    assert_eq!(names(d), before);

    // DATABASE_URL's database: shop keeps its newest; shop2's backups are not counted or touched.
    let out = aos_for(d, &t.shop)
        .args(["prune", "--keep-last", "1"])
        .run();
    out.assert_success();
    assert!(!t.shop_old.exists(), "{out}");
    assert!(
        t.shop_new.is_file() && t.shop2_old.is_file() && t.shop2_new.is_file(),
        "{out}"
    );
    assert_contains(
        &out,
        &out.stderr,
        &[&format!(
            "database {:?}: deleted 1 backup(s), kept 1",
            t.shop
        )],
    );

    // The automatic prune after a backup: only the backed-up database's backups.
    let out = aos_for(d, &t.shop)
        .env("BACKUP_KEEP_LAST", "1")
        .env("AOS_BACKUP_NOW", "2024-03-31T13:00:00Z")
        .arg("backup")
        .run();
    out.assert_success();
    let newest_shop = PathBuf::from(out.stdout_trimmed());
    assert!(!t.shop_new.exists(), "{out}");
    assert!(t.shop2_old.is_file() && t.shop2_new.is_file(), "{out}");

    // --all-databases: each database's newest stays.
    let out = aos(d)
        .args(["prune", "--all-databases", "--keep-last", "1"])
        .run();
    out.assert_success();
    assert_eq!(
        backups(d),
        [name_of(&t.shop2_new), name_of(&newest_shop)],
        "{out}"
    );
    assert_contains(&out, &out.stderr, &[&t.shop, &t.shop2]);
    // --database and --all-databases together make no sense.
    let out = aos(d)
        .args([
            "prune",
            "--all-databases",
            "--database",
            &t.shop,
            "--keep-last",
            "1",
        ])
        .run();
    out.assert_code(2);
}

// ---------------------------------------------------------------------------------------------
// Item 11: a leftover `.partial` in the same second
// ---------------------------------------------------------------------------------------------

#[test]
fn a_leftover_partial_of_the_same_second_is_skipped_and_left_alone() {
    let db = db_with("perdb_partial", "p");
    let dir = tempdir();
    let d = dir.path();
    let planted = d.join(format!("{}.partial", file_name(&id_at(NOW))));
    fs::write(&planted, "what a killed run left").unwrap();
    // No retention policy: no prune runs (a prune, run under the lock, removes such leftovers,
    // as documented).
    let out = aos_for(d, &db).arg("backup").run();
    out.assert_success();
    let new = PathBuf::from(out.stdout_trimmed());
    assert_eq!(
        name_of(&new),
        file_name(&format!("{}-2", id_at(NOW))),
        "{out}"
    );
    assert!(new.is_file() && sidecar(&new).is_file());
    assert_eq!(fs::read(&planted).unwrap(), b"what a killed run left");
    let meta = read_json(&sidecar(&new));
    assert_eq!(meta["id"], format!("{}-2", id_at(NOW)).as_str());

    // A leftover sidecar partial takes its name as well; the next free one is -3.
    fs::write(
        d.join(format!(
            "{}.meta.json.partial",
            file_name(&format!("{}-3", id_at(NOW)))
        )),
        "{",
    )
    .unwrap();
    let out = aos_for(d, &db).arg("backup").run();
    out.assert_success();
    assert_eq!(
        name_of(Path::new(out.stdout_trimmed())),
        file_name(&format!("{}-4", id_at(NOW))),
        "{out}"
    );
    assert!(planted.is_file());
    server().drop_db(&db);
}
