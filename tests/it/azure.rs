//! Off-site copies to Azure Blob Storage (`azblob://`, the `azblob` feature) against a real
//! emulator (`azurite::Azurite`, SharedKey signatures checked): a backup goes up and comes back
//! through list, verify and restore; a wrong key exits 8 and is never shown.

use crate::azurite::{Azurite, ACCOUNT, KEY};
use crate::cmd::Cmd;
use crate::harness::server;
use crate::support::tempdir;
use std::path::Path;

const CONTAINER: &str = "backups";

/// `aos-backup ARGS` of `db` into the backup folder `dir`, copying to `azblob://backups/prod`.
fn run_in(dir: &Path, az: &Azurite, db: &str, args: &[&str]) -> Cmd {
    Cmd::new()
        .args(args)
        .env("BACKUP_DIR", dir)
        .env("DATABASE_URL", server().tcp_url(db))
        .env("BACKUP_REMOTE", format!("azblob://{CONTAINER}/prod"))
        .env("BACKUP_REMOTE_TIMEOUT", "10s")
        .env("AZURE_STORAGE_ACCOUNT", ACCOUNT)
        .env("AZURE_STORAGE_KEY", KEY)
        .env("AZURE_STORAGE_ENDPOINT", &az.endpoint)
}

fn small_db() -> String {
    let db = server().create_db("azure");
    server().psql(
        &db,
        "SET ROLE app;
         CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 500) g;",
    );
    db
}

#[test]
fn a_backup_goes_to_azure_blob_storage_and_comes_back() {
    let az = Azurite::start(CONTAINER);
    let db = small_db();
    let expected = server().table_contents(&db);
    let dir = tempdir();
    let out = run_in(dir.path(), &az, &db, &["-vv", "backup"]).run();
    out.assert_success();
    // Azure's ETags are not MD5s: the copy was read back, not taken on the store's word.
    assert!(
        !out.stderr.contains("verified by the store's ETag"),
        "{out}"
    );
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(!text.contains(KEY), "the key is never shown: {out}");

    let empty = tempdir();
    let list = run_in(empty.path(), &az, &db, &["--json", "list", "--remote"]).run();
    list.assert_success();
    let complete = crate::support::complete_backups(&list);
    assert_eq!(complete, 1, "{list}");
    run_in(empty.path(), &az, &db, &["verify", "--remote"])
        .run()
        .assert_success();
    // A second push copies nothing.
    let again = run_in(dir.path(), &az, &db, &["push"]).run();
    again.assert_success();
    assert!(
        again.stdout.contains("0 copied, 1 already there"),
        "{again}"
    );

    let target = server().create_db("azure_rt");
    let restore = run_in(
        empty.path(),
        &az,
        &target,
        &["restore", "--yes", "--remote"],
    )
    .args(["latest", "--from-database", &db])
    .run();
    restore.assert_success();
    assert_eq!(server().table_contents(&target), expected);
}

#[test]
fn a_wrong_azure_key_exits_8_keeps_the_backup_and_is_never_shown() {
    let az = Azurite::start(CONTAINER);
    let db = small_db();
    let dir = tempdir();
    let wrong = "d3JvbmdLZXlWYWx1ZUZvckF6dXJlMDEyMzQ1Njc4OWFiY2RlZg==";
    let out = run_in(dir.path(), &az, &db, &["backup"])
        .env("AZURE_STORAGE_KEY", wrong)
        .run();
    out.assert_code(8);
    assert!(out.stderr.contains("azblob://backups/prod"), "{out}");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(!text.contains(wrong) && !text.contains(KEY), "{out}");
    assert!(
        Path::new(out.stdout_trimmed()).is_file(),
        "the local backup is kept: {out}"
    );
    let list = run_in(dir.path(), &az, &db, &["--json", "list", "--remote"]).run();
    list.assert_success();
    assert_eq!(list.json().as_array().unwrap().len(), 0, "{list}");
}
