//! Off-site copies against a real S3 server (`s3::S3Server`, signatures checked): the upload
//! after each backup (data first, sidecar last), `push` repairing what is missing, exit code 8
//! when a destination fails, and credentials kept out of every output.

use crate::cmd::Cmd;
use crate::harness::server;
use crate::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
use crate::support::{backup_names, sha256_hex, tempdir};
use std::fs;
use std::path::Path;

const BUCKET: &str = "offsite";

/// A command with the S3 credentials and endpoint in its environment and `BACKUP_REMOTE` set
/// to `s3://offsite/<prefix>`.
fn with_s3(cmd: Cmd, s3: &S3Server, prefix: &str) -> Cmd {
    cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_ENDPOINT_URL", &s3.endpoint)
        .env("BACKUP_REMOTE", format!("s3://{BUCKET}/{prefix}"))
        .env("BACKUP_REMOTE_TIMEOUT", "5s")
}

fn small_db() -> String {
    let db = server().create_db("offsite");
    server().psql(
        &db,
        "SET ROLE app;
         CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 500) g;",
    );
    db
}

/// The keys under `prefix` in the bucket.
fn remote_names(s3: &S3Server, prefix: &str) -> Vec<String> {
    s3.keys(BUCKET)
        .into_iter()
        .filter_map(|k| k.strip_prefix(&format!("{prefix}/")).map(str::to_string))
        .collect()
}

/// The backups (not their sidecars) in the local folder `dir`.
fn local_backups(dir: &Path) -> Vec<String> {
    backup_names(dir)
        .into_iter()
        .filter(|n| !n.ends_with(".meta.json") && !n.contains(".globals."))
        .collect()
}

/// Asserts that every local backup of `dir` is at `prefix` with identical bytes and sidecar.
#[track_caller]
fn assert_mirrored(s3: &S3Server, prefix: &str, dir: &Path) {
    for name in local_backups(dir) {
        let local = dir.join(&name);
        if local.is_dir() {
            for f in fs::read_dir(&local).unwrap().flatten() {
                let rel = format!("{prefix}/{name}/{}", f.file_name().to_string_lossy());
                assert_eq!(
                    sha256_hex(&fs::read(f.path()).unwrap()),
                    sha256_hex(&fs::read(s3.object(BUCKET, &rel)).unwrap()),
                    "{rel}"
                );
            }
        } else {
            let remote = fs::read(s3.object(BUCKET, &format!("{prefix}/{name}")))
                .unwrap_or_else(|e| panic!("{name} is not off-site: {e}"));
            assert_eq!(sha256_hex(&fs::read(&local).unwrap()), sha256_hex(&remote));
        }
        let sidecar = format!("{name}.meta.json");
        assert_eq!(
            fs::read(dir.join(&sidecar)).unwrap(),
            fs::read(s3.object(BUCKET, &format!("{prefix}/{sidecar}"))).unwrap(),
            "{sidecar}"
        );
    }
}

/// `aos-backup ARGS` of `db` into the backup folder `dir`, with `BACKUP_REMOTE` at `prefix`.
fn run_in(dir: &Path, s3: &S3Server, prefix: &str, db: &str, args: &[&str]) -> Cmd {
    with_s3(Cmd::new(), s3, prefix)
        .args(args)
        .env("BACKUP_DIR", dir)
        .env("DATABASE_URL", server().tcp_url(db))
}

#[test]
fn a_backup_is_copied_off_site_and_push_is_idempotent() {
    let s3 = S3Server::start(BUCKET);
    let db = small_db();
    let dir = tempdir();
    let out = run_in(dir.path(), &s3, "prod", &db, &["-vv", "backup"]).run();
    out.assert_success();
    assert_eq!(local_backups(dir.path()).len(), 1);
    assert_mirrored(&s3, "prod", dir.path());
    assert!(out.stderr.contains("unencrypted"), "{out}");
    // One request: the store's ETag is the MD5 of the object.
    assert!(out.stderr.contains("verified by the store's ETag"), "{out}");
    let again = run_in(dir.path(), &s3, "prod", &db, &["push"]).run();
    again.assert_success();
    assert!(
        again.stdout.contains("0 copied, 1 already there"),
        "{again}"
    );
}

#[test]
fn a_destination_down_keeps_the_local_backup_exits_8_and_push_repairs_it() {
    let mut s3 = S3Server::start(BUCKET);
    let db = small_db();
    let dir = tempdir();
    s3.stop();
    let out = run_in(dir.path(), &s3, "down", &db, &["backup"]).run();
    out.assert_code(8);
    assert!(out.stderr.contains("s3://offsite/down"), "{out}");
    assert_eq!(
        local_backups(dir.path()).len(),
        1,
        "the local backup is kept"
    );
    assert!(
        !out.stdout.trim().is_empty(),
        "the backup's path is printed:\n{out}"
    );
    s3.resume();
    let push = run_in(dir.path(), &s3, "down", &db, &["push"]).run();
    push.assert_success();
    assert!(push.stdout.contains("1 copied"), "{push}");
    assert_mirrored(&s3, "down", dir.path());
    // The next backup copies itself and finds the older one there.
    run_in(dir.path(), &s3, "down", &db, &["backup"])
        .run()
        .assert_success();
    assert_eq!(local_backups(dir.path()).len(), 2);
    assert_mirrored(&s3, "down", dir.path());
}

#[test]
fn wrong_credentials_and_a_missing_bucket_exit_8_without_showing_secrets() {
    let s3 = S3Server::start(BUCKET);
    let db = small_db();
    let dir = tempdir();
    let wrong = "wrongSecretValue/0123456789abcdefXYZ";
    let out = run_in(dir.path(), &s3, "x", &db, &["backup"])
        .env("AWS_SECRET_ACCESS_KEY", wrong)
        .run();
    out.assert_code(8);
    assert!(out.stderr.contains("s3://offsite/x"), "{out}");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(!text.contains(wrong) && !text.contains(ACCESS_KEY), "{out}");
    assert!(remote_names(&s3, "x").is_empty(), "nothing was written");

    let out = run_in(dir.path(), &s3, "x", &db, &["push"])
        .env("BACKUP_REMOTE", "s3://no-such-bucket/x")
        .run();
    out.assert_code(8);
    assert!(out.stderr.contains("s3://no-such-bucket/x"), "{out}");
}

#[test]
fn credentials_never_appear_in_output_and_a_credentials_file_works() {
    let s3 = S3Server::start(BUCKET);
    let db = small_db();
    let dir = tempdir();
    let conf = tempdir();
    let creds = conf.path().join("s3.credentials");
    fs::write(
        &creds,
        format!(
            "[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&creds, fs::Permissions::from_mode(0o600)).unwrap();
    let toml = conf.path().join("aos-backup.toml");
    fs::write(
        &toml,
        format!(
            "[[remote]]\nurl = \"s3://{BUCKET}/file\"\nendpoint = \"{}\"\ncredentials_file = \"{}\"\n",
            s3.endpoint,
            creds.display()
        ),
    )
    .unwrap();
    let cmd = |args: &[&str]| {
        Cmd::new()
            .args(args)
            .env("AOS_BACKUP_CONFIG", &toml)
            .env("BACKUP_DIR", dir.path())
            .env("DATABASE_URL", server().tcp_url(&db))
    };
    let backup = cmd(&["-vv", "backup"]).env("AOS_BACKUP_LOG", "trace").run();
    backup.assert_success();
    assert_mirrored(&s3, "file", dir.path());
    let config = cmd(&["config"]).run();
    config.assert_success();
    assert!(config.stdout.contains("s3://offsite/file"), "{config}");
    for out in [&backup, &config, &cmd(&["push", "--json"]).run()] {
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(
            !text.contains(SECRET_KEY) && !text.contains(ACCESS_KEY),
            "a credential was shown:\n{out}"
        );
    }
    // A credentials file others can read is refused.
    fs::set_permissions(&creds, fs::Permissions::from_mode(0o644)).unwrap();
    let loose = cmd(&["push"]).run();
    assert_ne!(loose.code, Some(0), "{loose}");
    assert!(loose.stderr.contains("s3.credentials"), "{loose}");
}

#[test]
fn encryption_can_be_required_off_site() {
    let s3 = S3Server::start(BUCKET);
    let db = small_db();
    let dir = tempdir();
    let out = run_in(dir.path(), &s3, "enc", &db, &["backup"])
        .env("BACKUP_REMOTE_REQUIRE_ENCRYPTION", "true")
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("remote_require_encryption"), "{out}");
    assert!(
        local_backups(dir.path()).is_empty(),
        "refused before dumping"
    );
}

#[test]
fn list_and_verify_read_the_destination_and_catch_damage() {
    let s3 = S3Server::start(BUCKET);
    let db = small_db();
    let dir = tempdir();
    let keys = tempdir();
    let key = crate::support::age_keygen(keys.path(), "id.txt");
    // An encrypted custom-format backup, and an unencrypted directory archive.
    run_in(dir.path(), &s3, "cat", &db, &["backup", "--name", "enc"])
        .env("BACKUP_ENCRYPTION", "age")
        .env("BACKUP_AGE_RECIPIENTS", &key.recipient)
        .run()
        .assert_success();
    run_in(
        dir.path(),
        &s3,
        "cat",
        &db,
        &["backup", "--format", "directory", "--name", "dir"],
    )
    .run()
    .assert_success();
    let verify = |dir: &Path| {
        run_in(dir, &s3, "cat", &db, &["verify", "--remote"])
            .env("BACKUP_AGE_IDENTITY", &key.identity)
            .run()
    };
    // The destination's own listing: nothing local is read.
    let empty = tempdir();
    let list = run_in(
        empty.path(),
        &s3,
        "cat",
        &db,
        &["--json", "list", "--remote"],
    )
    .run();
    list.assert_success();
    assert_eq!(list.json().as_array().unwrap().len(), 2, "{list}");
    let ok = verify(empty.path());
    ok.assert_success();
    assert_eq!(
        ok.stdout.lines().filter(|l| l.starts_with("ok")).count(),
        2,
        "{ok}"
    );

    // One byte changed at the destination: verify --remote fails with exit 4.
    let file = remote_names(&s3, "cat")
        .into_iter()
        .find(|n| n.ends_with(".dump.zst.age"))
        .expect("the custom-format backup is off-site");
    let path = s3.object(BUCKET, &format!("cat/{file}"));
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&path, bytes).unwrap();
    let bad = verify(empty.path());
    bad.assert_code(4);
    assert!(
        bad.stdout.contains("FAIL") && bad.stdout.contains(&file),
        "{bad}"
    );
    // Deleted at the destination: caught too; push repairs it from the local copy.
    fs::remove_file(&path).unwrap();
    verify(empty.path()).assert_code(4);
    fs::remove_file(s3.object(BUCKET, &format!("cat/{file}.meta.json"))).unwrap();
    run_in(dir.path(), &s3, "cat", &db, &["push"])
        .run()
        .assert_success();
    verify(empty.path()).assert_success();
}

#[test]
fn prune_applies_retention_at_the_destination_by_itself() {
    let s3 = S3Server::start(BUCKET);
    let (a, b) = (small_db(), small_db());
    let dir = tempdir();
    let mut made = Vec::new();
    for day in ["01", "02", "03"] {
        let out = run_in(dir.path(), &s3, "ret", &a, &["backup"])
            .env("AOS_BACKUP_NOW", format!("2024-03-{day}T03:00:00Z"))
            .run();
        out.assert_success();
        made.push(out.stdout_trimmed().to_string());
    }
    run_in(dir.path(), &s3, "ret", &b, &["backup"])
        .env("AOS_BACKUP_NOW", "2024-03-01T04:00:00Z")
        .run()
        .assert_success();
    let (_, future) = crate::support::fabricate(
        Path::new(&made[2]),
        dir.path(),
        "2030-01-01T00:00:00Z",
        None,
    );
    run_in(dir.path(), &s3, "ret", &a, &["push"])
        .run()
        .assert_success();
    let before = remote_names(&s3, "ret");
    assert_eq!(before.len(), 10, "{before:?}");

    // Gone locally: nothing is deleted remotely because of that.
    fs::remove_dir_all(dir.path()).unwrap();
    let empty = tempdir();
    run_in(empty.path(), &s3, "ret", &a, &["push"])
        .run()
        .assert_success();
    assert_eq!(remote_names(&s3, "ret"), before);

    let out = run_in(
        empty.path(),
        &s3,
        "ret",
        &a,
        &["prune", "--remote", "--keep-last", "1"],
    )
    .env("AOS_BACKUP_NOW", "2024-03-04T00:00:00Z")
    .run();
    out.assert_success();
    let after = remote_names(&s3, "ret");
    let name = |p: &str| {
        Path::new(p)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let (old1, old2, newest) = (name(&made[0]), name(&made[1]), name(&made[2]));
    for gone in [&old1, &old2] {
        assert!(
            !after.iter().any(|n| n.starts_with(gone.as_str())),
            "{gone} kept: {after:?}\n{out}"
        );
    }
    assert!(
        after.contains(&newest) && after.contains(&format!("{newest}.meta.json")),
        "{after:?}"
    );
    assert!(
        after.contains(&name(&future.to_string_lossy())),
        "the future-dated backup is kept: {after:?}"
    );
    assert_eq!(
        after.len(),
        6,
        "the other database's backup is untouched: {after:?}"
    );
}

#[test]
fn every_format_round_trips_through_the_bucket_encrypted_and_not() {
    let s3 = S3Server::start(BUCKET);
    let db = small_db();
    let keys = tempdir();
    let key = crate::support::age_keygen(keys.path(), "id.txt");
    let expected = server().table_contents(&db);
    let cases: [(&str, &[&str], bool); 5] = [
        ("custom", &["--format", "custom"], false),
        ("custom-age", &["--format", "custom"], true),
        ("plain", &["--format", "plain"], false),
        ("plain-age", &["--format", "plain"], true),
        ("directory", &["--format", "directory"], false),
    ];
    for (label, args, encrypted) in cases {
        let dir = tempdir();
        let mut cmd = run_in(dir.path(), &s3, "rt", &db, &["backup", "--name", label]).args(args);
        if encrypted {
            cmd = cmd
                .env("BACKUP_ENCRYPTION", "age")
                .env("BACKUP_AGE_RECIPIENTS", &key.recipient);
        }
        let out = cmd.run();
        out.assert_success();
        assert_mirrored(&s3, "rt", dir.path());
        let id =
            crate::support::read_json(&crate::support::sidecar(Path::new(out.stdout_trimmed())))
                ["id"]
                .as_str()
                .unwrap()
                .to_string();
        drop(dir);
        // Nothing local is left: the restore reads the bucket.
        let target = server().create_db("offsite_rt");
        let empty = tempdir();
        let tmp = tempdir();
        let restore = run_in(
            empty.path(),
            &s3,
            "rt",
            &target,
            &["restore", "--yes", "--remote"],
        )
        .args([&id, "--from-database", &db])
        .env("BACKUP_AGE_IDENTITY", &key.identity)
        .env("TMPDIR", tmp.path())
        .run();
        restore.assert_success();
        assert_eq!(server().table_contents(&target), expected, "{label}");
        assert!(
            crate::support::names(tmp.path()).is_empty(),
            "the downloaded copy is removed"
        );
    }
}

/// Whether the local folder `dir` holds a complete backup (a sidecar).
fn has_local_sidecar(dir: &Path) -> bool {
    crate::support::names_if_any(dir)
        .iter()
        .any(|n| n.ends_with(".meta.json"))
}

#[test]
fn a_server_that_stops_answering_fails_the_upload_in_bounded_time() {
    let s3 = S3Server::start(BUCKET);
    let db = small_db();
    let dir = tempdir();
    s3.signal(libc::SIGSTOP);
    let started = std::time::Instant::now();
    let out = run_in(dir.path(), &s3, "stall", &db, &["backup"])
        .env("BACKUP_REMOTE_TIMEOUT", "1s")
        .run();
    s3.signal(libc::SIGCONT);
    out.assert_code(8);
    assert!(out.stderr.contains("s3://offsite/stall"), "{out}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{out}"
    );
    assert_eq!(
        local_backups(dir.path()).len(),
        1,
        "the local backup is kept"
    );
    assert!(
        !remote_names(&s3, "stall")
            .iter()
            .any(|n| n.ends_with(".meta.json")),
        "no complete-looking backup remotely"
    );
    run_in(dir.path(), &s3, "stall", &db, &["push"])
        .run()
        .assert_success();
    assert_mirrored(&s3, "stall", dir.path());
}

/// Starts a backup while the server is frozen, waits until its local copy is complete (the
/// upload is then under way), sends `sig` to it, lets the server go on, and returns the output.
fn interrupted_upload(s3: &S3Server, dir: &Path, db: &str, prefix: &str, sig: libc::c_int) {
    s3.signal(libc::SIGSTOP);
    let cmd = run_in(dir, s3, prefix, db, &["backup"]).env("BACKUP_REMOTE_TIMEOUT", "3s");
    let child = cmd.spawn();
    crate::support::wait_until(
        "the local backup is complete",
        std::time::Duration::from_secs(30),
        Some(&child),
        || has_local_sidecar(dir),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    crate::cmd::signal(&child, sig);
    s3.signal(libc::SIGCONT);
    let out = cmd.wait(child);
    assert_ne!(out.code, Some(0), "{out}");
    assert_eq!(
        local_backups(dir).len(),
        1,
        "the local backup is kept:\n{out}"
    );
    assert!(
        !remote_names(s3, prefix)
            .iter()
            .any(|n| n.ends_with(".meta.json")),
        "no complete-looking backup remotely: {:?}\n{out}",
        remote_names(s3, prefix)
    );
    let list = run_in(dir, s3, prefix, db, &["--json", "list", "--remote"]).run();
    list.assert_success();
    let complete = crate::support::complete_backups(&list);
    assert_eq!(complete, 0, "{list}");
}

#[test]
fn an_upload_interrupted_by_sigint_or_sigkill_never_looks_complete_and_push_repairs_it() {
    let s3 = S3Server::start(BUCKET);
    let db = small_db();
    for (prefix, sig) in [("int", libc::SIGINT), ("kill", libc::SIGKILL)] {
        let dir = tempdir();
        interrupted_upload(&s3, dir.path(), &db, prefix, sig);
        run_in(dir.path(), &s3, prefix, &db, &["push"])
            .run()
            .assert_success();
        assert_mirrored(&s3, prefix, dir.path());
    }
}

#[test]
fn two_destinations_each_get_every_backup() {
    let s3 = S3Server::start(BUCKET);
    let db = small_db();
    let dir = tempdir();
    let nas = tempdir();
    let both = format!("s3://{BUCKET}/two, file://{}", nas.path().display());
    run_in(dir.path(), &s3, "two", &db, &["backup"])
        .env("BACKUP_REMOTE", &both)
        .run()
        .assert_success();
    assert_mirrored(&s3, "two", dir.path());
    let mut local = backup_names(dir.path());
    local.retain(|n| !n.starts_with('.'));
    let mut there = crate::support::names(nas.path());
    there.retain(|n| !n.starts_with('.'));
    assert_eq!(there, local, "the file:// destination holds the same files");
    // One destination down: the other still gets the next backup; exit 8 names the failed one.
    let out = run_in(dir.path(), &s3, "two", &db, &["backup"])
        .env(
            "BACKUP_REMOTE",
            format!("s3://no-such-bucket/x, file://{}", nas.path().display()),
        )
        .run();
    out.assert_code(8);
    assert!(out.stderr.contains("s3://no-such-bucket/x"), "{out}");
    assert_eq!(
        crate::support::names(nas.path())
            .iter()
            .filter(|n| n.ends_with(".meta.json"))
            .count(),
        2
    );
}

#[test]
fn remote_only_keeps_no_local_copy_once_every_destination_has_it() {
    let mut s3 = S3Server::start(BUCKET);
    let db = small_db();
    let dir = tempdir();
    let out = run_in(dir.path(), &s3, "only", &db, &["backup", "--remote-only"]).run();
    out.assert_success();
    assert!(local_backups(dir.path()).is_empty(), "{out}");
    let remote = remote_names(&s3, "only");
    assert_eq!(remote.len(), 2, "{remote:?}");
    let file = remote.iter().find(|n| !n.ends_with(".meta.json")).unwrap();
    let meta: serde_json::Value = serde_json::from_slice(
        &fs::read(s3.object(BUCKET, &format!("only/{file}.meta.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        meta["sha256"],
        sha256_hex(&fs::read(s3.object(BUCKET, &format!("only/{file}"))).unwrap())
    );
    // A destination down: the local copy is kept, exit 8.
    s3.stop();
    let out = run_in(dir.path(), &s3, "only", &db, &["backup", "--remote-only"]).run();
    out.assert_code(8);
    assert_eq!(local_backups(dir.path()).len(), 1, "{out}");
    // Without a destination, refused before dumping.
    let out = Cmd::new()
        .args(["backup", "--remote-only"])
        .env("BACKUP_DIR", dir.path())
        .env("DATABASE_URL", server().tcp_url(&db))
        .run();
    out.assert_code(2);
}

#[test]
fn a_backup_bigger_than_one_part_goes_up_in_several_parts_and_back() {
    let s3 = S3Server::start(BUCKET);
    let db = server().create_db("offsite_big");
    server().psql(
        &db,
        "SET ROLE app;
         CREATE TABLE big (id int, v text);
         INSERT INTO big SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 300000) g;",
    );
    let dir = tempdir();
    let out = run_in(
        dir.path(),
        &s3,
        "big",
        &db,
        &["-vv", "backup", "--compression", "none"],
    )
    .run();
    out.assert_success();
    let size = fs::metadata(out.stdout_trimmed()).unwrap().len();
    assert!(size > 17 * 1024 * 1024, "more than two 8 MiB parts: {size}");
    assert_mirrored(&s3, "big", dir.path());
    // The file went up while pg_dump wrote it, and the store's multipart ETag (MD5 of the
    // parts' MD5s) proved the upload: no read-back.
    assert!(
        out.stderr.contains("uploaded while it was written"),
        "{out}"
    );
    assert!(out.stderr.contains("verified by the store's ETag"), "{out}");
    assert!(!out.stderr.contains("reading it back"), "{out}");
    let empty = tempdir();
    run_in(empty.path(), &s3, "big", &db, &["verify", "--remote"])
        .run()
        .assert_success();
}

#[test]
fn each_daemon_run_copies_its_backup_off_site() {
    let s3 = S3Server::start(BUCKET);
    let db = small_db();
    let dir = tempdir();
    let cmd = run_in(dir.path(), &s3, "daemon", &db, &["daemon"])
        .env("BACKUP_SCHEDULE", "*/2 * * * * *")
        .timeout(std::time::Duration::from_secs(60));
    let child = cmd.spawn();
    crate::support::wait_until(
        "a scheduled backup is off-site",
        std::time::Duration::from_secs(40),
        Some(&child),
        || {
            remote_names(&s3, "daemon")
                .iter()
                .any(|n| n.ends_with(".meta.json"))
        },
    );
    crate::cmd::signal(&child, libc::SIGTERM);
    let out = cmd.wait(child);
    out.assert_success();
    let sidecars = remote_names(&s3, "daemon")
        .into_iter()
        .filter(|n| n.ends_with(".meta.json"))
        .count();
    assert!(sidecars >= 1, "{out}");
    assert!(!out.stderr.contains(SECRET_KEY), "{out}");
}

#[test]
fn a_remote_backup_can_be_drilled_and_its_record_lands_next_to_the_local_copy() {
    let s3 = S3Server::start(BUCKET);
    let db = small_db();
    let dir = tempdir();
    let pg_bin = server().bindir.clone();
    run_in(dir.path(), &s3, "drill", &db, &["backup"])
        .run()
        .assert_success();
    let drill = run_in(
        dir.path(),
        &s3,
        "drill",
        &db,
        &["--json", "drill", "--remote", "latest"],
    )
    .env("PG_BIN", &pg_bin)
    .run();
    drill.assert_success();
    assert_eq!(drill.json()["outcome"], "passed", "{drill}");
    assert_eq!(drill.json()["row_counts"]["recorded"], true, "{drill}");
    let list = run_in(dir.path(), &s3, "drill", &db, &["list"]).run();
    assert!(list.stdout.contains("drill:passed"), "{list}");

    // With no local copy, the drill still runs from the bucket alone.
    let empty = tempdir();
    let alone = run_in(
        empty.path(),
        &s3,
        "drill",
        &db,
        &["drill", "--remote", "latest"],
    )
    .env("PG_BIN", &pg_bin)
    .run();
    alone.assert_success();
    assert!(!alone.stderr.contains(SECRET_KEY), "{alone}");
}

#[test]
fn a_destination_that_is_the_backup_folder_is_refused_before_anything_is_dumped() {
    let db = small_db();
    let dir = tempdir();
    let inside = dir.path().join("copies");
    for url in [
        format!("file://{}", dir.path().display()),
        format!("file://{}/", dir.path().display()),
        format!("file://{}", inside.display()),
    ] {
        let out = Cmd::new()
            .env("BACKUP_DIR", dir.path())
            .env("DATABASE_URL", server().tcp_url(&db))
            .env("BACKUP_REMOTE", &url)
            .args(["backup", "--remote-only"])
            .run();
        out.assert_code(2);
        assert!(out.stderr.contains("backup folder"), "{out}");
        assert!(local_backups(dir.path()).is_empty(), "{out}");
    }
}

#[test]
fn credentials_put_in_a_destination_url_are_never_echoed() {
    let out = Cmd::new()
        .env("BACKUP_REMOTE", "s3://AKIAEXAMPLE:VerySecretKey42@bucket/p")
        .arg("config")
        .run();
    out.assert_code(2);
    assert!(!out.stderr.contains("VerySecretKey42"), "{out}");
    assert!(!out.stdout.contains("VerySecretKey42"), "{out}");
    let out = Cmd::new()
        .env("BACKUP_REMOTE", "s3://bucket/p?x=1")
        .arg("config")
        .run();
    out.assert_code(2);
}

/// Parts of the uploads the S3 server holds, not yet completed or aborted.
fn upload_parts(s3: &S3Server) -> Vec<String> {
    fs::read_dir(s3.root.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".upload_id-"))
        .collect()
}

/// A backup whose file has started going up (a part is at the server) and then ends by
/// `how`: its pg_dump fails, or the run gets SIGINT. Nothing may be left at the destination.
fn cut_while_going_up(how: &str) {
    let s3 = S3Server::start(BUCKET);
    let db = server().create_db("offsite_cut");
    server().psql(
        &db,
        "SET ROLE app;
         CREATE TABLE big (id int, v text);
         INSERT INTO big SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 500000) g;",
    );
    // pg_dump writes 27 MB (three 8 MiB parts and more: the first goes up meanwhile), waits,
    // fails.
    let bin = crate::core::fake_pg_bin(&[(
        "pg_dump",
        "#!/bin/sh\n[ \"$1\" = --version ] && exec @REAL@/pg_dump \"$@\"\n@REAL@/pg_dump \"$@\" | head -c 27000000\nsleep 4\nexit 1\n",
    )]);
    let dir = tempdir();
    let cmd = run_in(
        dir.path(),
        &s3,
        "cut",
        &db,
        &["-vv", "backup", "--compression", "none"],
    )
    .env("PG_BIN", bin.path());
    let child = cmd.spawn();
    crate::support::wait_until(
        "a part goes up while pg_dump runs",
        std::time::Duration::from_secs(30),
        Some(&child),
        || !upload_parts(&s3).is_empty(),
    );
    if how == "sigint" {
        crate::cmd::signal(&child, libc::SIGINT);
    }
    let out = cmd.wait(child);
    let code = if how == "sigint" { Some(130) } else { Some(1) };
    assert_eq!(out.code, code, "{out}");
    assert!(local_backups(dir.path()).is_empty(), "{out}");
    assert_eq!(remote_names(&s3, "cut"), Vec::<String>::new(), "{out}");
    assert_eq!(
        upload_parts(&s3),
        Vec::<String>::new(),
        "the upload started during the dump was aborted:\n{out}"
    );
}

#[test]
fn a_dump_that_fails_while_its_file_goes_up_leaves_nothing_at_the_destination() {
    cut_while_going_up("fails");
}

#[test]
fn ctrl_c_while_the_file_goes_up_leaves_nothing_at_the_destination() {
    cut_while_going_up("sigint");
}

/// An owner marker (as `runtime::owner` writes it) of a process of this machine that is gone.
fn dead_owner_marker() -> String {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let read = |p: &str| fs::read_to_string(p).unwrap().trim().to_string();
    format!(
        "aos-backup-owner host={} boot={} pid={pid} start=1",
        read("/proc/sys/kernel/hostname"),
        read("/proc/sys/kernel/random/boot_id")
    )
}

#[test]
fn a_download_left_by_a_killed_run_is_removed_by_the_next_one() {
    let s3 = S3Server::start(BUCKET);
    let db = small_db();
    let dir = tempdir();
    run_in(dir.path(), &s3, "sweep", &db, &["backup"])
        .run()
        .assert_success();
    let tmp = tempdir();
    let killed = tmp.path().join("aos-backup-remote.killed");
    fs::create_dir(&killed).unwrap();
    fs::write(killed.join("aos-backup-20240101-000000.dump.zst"), b"data").unwrap();
    fs::write(killed.join("owner"), dead_owner_marker()).unwrap();
    // Another run's download, just started (not yet marked): left alone.
    let running = tmp.path().join("aos-backup-remote.running");
    fs::create_dir(&running).unwrap();
    let out = run_in(dir.path(), &s3, "sweep", &db, &["verify", "--remote"])
        .env("TMPDIR", tmp.path())
        .run();
    out.assert_success();
    assert!(!killed.exists(), "{out}");
    assert!(
        out.stderr.contains("left by a run that was killed"),
        "{out}"
    );
    assert_eq!(
        crate::support::names(tmp.path()),
        vec!["aos-backup-remote.running".to_string()],
        "the run's own download is gone too:\n{out}"
    );
}

#[test]
fn remote_only_as_a_setting_serves_backup_and_the_daemon() {
    let s3 = S3Server::start(BUCKET);
    let db = small_db();
    let dir = tempdir();
    let out = run_in(dir.path(), &s3, "ro", &db, &["backup"])
        .env("BACKUP_REMOTE_ONLY", "true")
        .run();
    out.assert_success();
    assert!(local_backups(dir.path()).is_empty(), "{out}");
    assert_eq!(
        remote_names(&s3, "ro")
            .iter()
            .filter(|n| n.ends_with(".meta.json"))
            .count(),
        1,
        "{out}"
    );

    // The daemon: each run's backup ends up at the destination only.
    let cmd = run_in(dir.path(), &s3, "ro-daemon", &db, &["daemon"])
        .env("BACKUP_REMOTE_ONLY", "true")
        .env("BACKUP_SCHEDULE", "*/2 * * * * *")
        .timeout(std::time::Duration::from_secs(60));
    let child = cmd.spawn();
    crate::support::wait_until(
        "a scheduled backup is off-site and not kept locally",
        std::time::Duration::from_secs(40),
        Some(&child),
        || {
            remote_names(&s3, "ro-daemon")
                .iter()
                .any(|n| n.ends_with(".meta.json"))
                && !has_local_sidecar(dir.path())
        },
    );
    crate::cmd::signal(&child, libc::SIGTERM);
    let out = cmd.wait(child);
    out.assert_success();
    assert!(!has_local_sidecar(dir.path()), "{out}");

    // Without a destination, the setting is refused before anything runs.
    let out = Cmd::new()
        .args(["daemon"])
        .env("BACKUP_DIR", dir.path())
        .env("DATABASE_URL", server().tcp_url(&db))
        .env("BACKUP_REMOTE_ONLY", "true")
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("BACKUP_REMOTE_ONLY"), "{out}");
}

#[test]
fn a_swap_from_the_bucket_is_recorded_next_to_the_local_copy_for_list() {
    let s3 = S3Server::start(BUCKET);
    let db = small_db();
    let dir = tempdir();
    run_in(dir.path(), &s3, "swap", &db, &["backup"])
        .run()
        .assert_success();
    let out = run_in(
        dir.path(),
        &s3,
        "swap",
        &db,
        &["--json", "restore", "--yes", "--swap", "--remote", "latest"],
    )
    .run();
    out.assert_success();
    let old = out.json()["swap"]["old"].as_str().unwrap().to_string();
    let list = run_in(dir.path(), &s3, "swap", &db, &["list"]).run();
    list.assert_success();
    assert!(list.stdout.contains(&format!("kept:{old}")), "{list}");
    server().drop_db(&old);
}
