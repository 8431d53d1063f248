//! The backup pipeline against a real server: age encryption (recipients, recipients files,
//! passphrases), what fails before the target is touched, the dump formats and compressions,
//! parallel dump and restore, detecting a backup by its content, and what goes to stdout and stderr.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cmd::{Cmd, Output};
use crate::harness::{self, server};
use crate::support::{
    age_keygen, names as entries, private, read_sidecar as meta, sha256_hex, tempdir,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A small database owned by `app`: two tables with a foreign key, serial and identity columns,
/// arrays, dates, non-ASCII text. `bulk` adds ~500 kB of poorly compressible text, so that an
/// encrypted backup spans several age chunks (64 KiB each).
fn source_db(prefix: &str, bulk: bool) -> String {
    let pg = server();
    let db = pg.create_db(prefix);
    pg.psql(&db, SOURCE_SQL);
    if bulk {
        pg.psql(
            &db,
            "SET ROLE app;
             CREATE TABLE bulk (id int PRIMARY KEY, h text NOT NULL);
             INSERT INTO bulk SELECT g, md5(g::text) || md5((g * 7)::text)
               FROM generate_series(1, 8000) g;",
        );
    }
    db
}

const SOURCE_SQL: &str = "
SET client_min_messages = warning;
SET ROLE app;
CREATE TABLE items (
    id serial PRIMARY KEY,
    name text NOT NULL,
    price numeric(10, 2),
    tags text[],
    added date
);
INSERT INTO items (name, price, tags, added)
    SELECT 'item ' || g || ' ünï', g * 1.25, ARRAY['t' || g % 5, 'x'], date '2024-01-01' + g
      FROM generate_series(1, 300) g;
CREATE TABLE notes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item_id int NOT NULL REFERENCES items,
    body text
);
INSERT INTO notes (item_id, body)
    SELECT g % 300 + 1, md5(g::text) || ' 🐘' FROM generate_series(1, 400) g;
";

/// A populated target: a stale copy of the source (same tables, other rows), and its snapshot
/// (contents and schema) for "untouched" checks.
fn stale_target(prefix: &str) -> (String, Snapshot) {
    let pg = server();
    let db = pg.create_db(prefix);
    pg.psql(&db, SOURCE_SQL);
    pg.psql(
        &db,
        "UPDATE items SET name = 'stale ' || id; DELETE FROM notes WHERE id > 100;",
    );
    let snap = Snapshot::of(&db);
    (db, snap)
}

/// Contents and schema of a database.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    contents: String,
    schema: String,
}

impl Snapshot {
    fn of(db: &str) -> Snapshot {
        Snapshot {
            contents: server().table_contents(db),
            schema: server().dump_schema(db),
        }
    }
}

/// Panics unless `db` still has exactly the snapshot `before`.
#[track_caller]
fn assert_untouched(db: &str, before: &Snapshot, out: &Output) {
    let after = Snapshot::of(db);
    assert!(
        after.contents == before.contents,
        "the target's data changed:\n{out}"
    );
    assert!(
        after.schema == before.schema,
        "the target's schema changed:\n{out}"
    );
}

/// Panics unless `target` holds the same data (and schema) as `source`.
#[track_caller]
fn assert_same_db(target: &str, source: &str, out: &Output) {
    let pg = server();
    let (t, s) = (pg.table_contents(target), pg.table_contents(source));
    assert!(
        t == s,
        "restored data differs from the source:\n{out}\n--- target ---\n{}\n--- source ---\n{}",
        head(&t),
        head(&s)
    );
    assert!(
        pg.dump_schema(target) == pg.dump_schema(source),
        "restored schema differs from the source:\n{out}"
    );
}

fn head(s: &str) -> &str {
    &s[..s.char_indices().nth(1500).map_or(s.len(), |(i, _)| i)]
}

/// `aos-backup backup` of `db` (as `app` over TCP) into `dir`.
fn backup_cmd(db: &str, dir: &Path) -> Cmd {
    Cmd::new()
        .arg("backup")
        .env("DATABASE_URL", server().tcp_url(db))
        .env("BACKUP_DIR", dir)
}

/// Runs a backup command, checks it succeeded and printed exactly the new file's path.
#[track_caller]
fn run_backup(cmd: &Cmd) -> (PathBuf, Output) {
    let out = cmd.run();
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout is not one line:\n{out}");
    let path = PathBuf::from(lines[0]);
    assert!(path.exists(), "{} does not exist:\n{out}", path.display());
    (path, out)
}

/// `aos-backup restore --yes FILE` into `db` (as `app` over TCP).
fn restore_cmd(db: &str, file: &Path) -> Cmd {
    Cmd::new()
        .args(["restore", "--yes"])
        .consent_from_database_of(file)
        .arg(file)
        .env("DATABASE_URL", server().tcp_url(db))
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Runs a tool, panics on failure, returns its stdout.
#[track_caller]
fn run_tool(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A PostgreSQL client tool of the test server, in a clean environment.
fn pg_tool(name: &str) -> Command {
    let mut cmd = Command::new(server().bindir.join(name));
    cmd.env_clear()
        .env("PGPASSFILE", "/nonexistent")
        .env("PGCLIENTENCODING", "UTF8");
    cmd
}

/// Bare `pg_dump ARGS` of `db` (superuser over the socket), its output in memory.
fn pg_dump(db: &str, args: &[&str]) -> Vec<u8> {
    run_tool(
        pg_tool("pg_dump")
            .args(args)
            .arg("-d")
            .arg(server().socket_url(db)),
    )
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Where an age file's payload starts: after the header's `--- MAC` line.
fn age_payload_start(bytes: &[u8]) -> usize {
    let mac = bytes
        .windows(4)
        .position(|w| w == b"\n---")
        .expect("an age header")
        + 1;
    mac + bytes[mac..].iter().position(|b| *b == b'\n').unwrap() + 1
}

// ---------------------------------------------------------------------------------------------
// 1. Encryption to recipients
// ---------------------------------------------------------------------------------------------

#[test]
fn recipients_encryption_round_trips_and_opens_with_the_standard_age_cli() {
    let pg = server();
    let work = tempdir();
    let key = age_keygen(work.path(), "id.txt");
    let source = source_db("pipe_rcpt_src", false);
    let backups = work.path().join("backups");

    let (file, _) = run_backup(
        &backup_cmd(&source, &backups)
            .env("BACKUP_ENCRYPTION", "age")
            .env("BACKUP_AGE_RECIPIENTS", &key.recipient),
    );
    assert!(file_name(&file).ends_with(".dump.zst.age"), "{file:?}");
    let bytes = fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    assert!(
        !bytes.windows(5).any(|w| w == b"PGDMP"),
        "the archive is readable in the clear"
    );
    let m = meta(&file);
    assert_eq!(m["encryption"], "age-recipients");
    assert_eq!(m["compression"], "zstd");
    assert_eq!(m["format"], "custom");
    assert_eq!(m["size_bytes"], bytes.len() as u64);
    assert_eq!(m["sha256"], sha256_hex(&bytes));

    // Restore with the identity file.
    let target = pg.create_db("pipe_rcpt_dst");
    let out = restore_cmd(&target, &file)
        .arg("-v")
        .env("BACKUP_AGE_IDENTITY", &key.identity)
        .run();
    out.assert_success();
    assert!(
        out.stderr.contains("inside age+zstd"),
        "layers not reported:\n{out}"
    );
    // -v logs the argv of pg_restore: no key in it, nor anywhere else.
    assert!(out.stderr.contains("spawning"), "{out}");
    assert!(!out.stderr.contains(&key.secret), "{out}");
    assert!(!out.stderr.contains("AGE-SECRET-KEY"), "{out}");
    assert_same_db(&target, &source, &out);

    // By hand, with the standard tools: age -d -i ID FILE | zstd -d | pg_restore --list.
    let zst = work.path().join("by-hand.dump.zst");
    run_tool(
        Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&key.identity)
            .arg("-o")
            .arg(&zst)
            .arg(&file),
    );
    let dump = work.path().join("by-hand.dump");
    run_tool(
        Command::new("zstd")
            .args(["-q", "-d"])
            .arg(&zst)
            .arg("-o")
            .arg(&dump),
    );
    let bare = fs::read(&dump).unwrap();
    assert!(bare.starts_with(b"PGDMP"));
    assert_eq!(
        m["dump_bytes"],
        bare.len() as u64,
        "dump_bytes counts pg_dump's output"
    );
    let list = String::from_utf8(run_tool(pg_tool("pg_restore").arg("--list").arg(&dump))).unwrap();
    for entry in [
        "TABLE public items",
        "TABLE DATA public notes",
        "FK CONSTRAINT public notes",
    ] {
        assert!(
            list.contains(entry),
            "pg_restore --list lacks {entry:?}:\n{list}"
        );
    }

    // Another key cannot open it with the age CLI either.
    let other = age_keygen(work.path(), "other.txt");
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&other.identity)
        .arg(&file)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "age decrypted with the wrong key");

    pg.drop_db(&source);
    pg.drop_db(&target);
}

#[test]
fn recipients_file_with_a_comment_and_two_keys_lets_either_identity_decrypt() {
    let pg = server();
    let work = tempdir();
    let alice = age_keygen(work.path(), "alice.txt");
    let bob = age_keygen(work.path(), "bob.txt");
    let recipients = work.path().join("recipients.txt");
    fs::write(
        &recipients,
        format!(
            "# backup readers\n{}\n\n  # the second one\n{}\n",
            alice.recipient, bob.recipient
        ),
    )
    .unwrap();
    let source = source_db("pipe_rfile_src", false);
    let backups = work.path().join("backups");
    let (file, _) = run_backup(
        &backup_cmd(&source, &backups)
            .env("BACKUP_ENCRYPTION", "age")
            .env("BACKUP_AGE_RECIPIENTS", &recipients),
    );
    assert!(file_name(&file).ends_with(".dump.zst.age"), "{file:?}");
    assert_eq!(meta(&file)["encryption"], "age-recipients");
    // Two recipient stanzas in the header.
    let bytes = fs::read(&file).unwrap();
    let header = &bytes[..age_payload_start(&bytes)];
    let stanzas = String::from_utf8_lossy(header)
        .matches("-> X25519 ")
        .count();
    assert_eq!(stanzas, 2, "{}", String::from_utf8_lossy(header));

    for (who, key) in [("alice", &alice), ("bob", &bob)] {
        let target = pg.create_db(&format!("pipe_rfile_{who}"));
        let out = restore_cmd(&target, &file)
            .env("BACKUP_AGE_IDENTITY", &key.identity)
            .run();
        out.assert_success();
        assert_same_db(&target, &source, &out);
        pg.drop_db(&target);
        // And the age CLI agrees.
        let plain = run_tool(
            Command::new("age")
                .arg("-d")
                .arg("-i")
                .arg(&key.identity)
                .arg(&file),
        );
        assert!(zstd::decode_all(&plain[..]).unwrap().starts_with(b"PGDMP"));
    }

    // Inline, comma-separated keys in BACKUP_AGE_RECIPIENTS: either identity decrypts.
    let (file, _) = run_backup(
        &backup_cmd(&source, &backups)
            .args(["--name", "inline"])
            .env("BACKUP_ENCRYPTION", "age")
            .env(
                "BACKUP_AGE_RECIPIENTS",
                format!("{}, {}", alice.recipient, bob.recipient),
            ),
    );
    for key in [&alice, &bob] {
        let plain = run_tool(
            Command::new("age")
                .arg("-d")
                .arg("-i")
                .arg(&key.identity)
                .arg(&file),
        );
        assert!(zstd::decode_all(&plain[..]).unwrap().starts_with(b"PGDMP"));
    }

    // --recipients-file on the command line does the same.
    let (file, _) = run_backup(
        &backup_cmd(&source, &backups)
            .arg("--recipients-file")
            .arg(&recipients)
            .arg("--name")
            .arg("flag"),
    );
    assert!(file_name(&file).ends_with("-flag.dump.zst.age"), "{file:?}");
    run_tool(
        Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&bob.identity)
            .arg(&file),
    );
    pg.drop_db(&source);
}

#[test]
fn a_recipients_file_with_no_key_or_a_bad_key_is_a_usage_error_before_dumping() {
    let work = tempdir();
    let source = source_db("pipe_rbad_src", false);
    let backups = work.path().join("backups");
    let empty = work.path().join("empty.txt");
    fs::write(&empty, "# nobody\n\n").unwrap();
    let bad = work.path().join("bad.txt");
    fs::write(&bad, "age1notakey\n").unwrap();
    for (file, needle) in [
        (&empty, "no age recipients"),
        (&bad, "invalid age recipient"),
        (
            &work.path().join("missing.txt"),
            "cannot read the age recipients file",
        ),
    ] {
        let out = backup_cmd(&source, &backups)
            .env("BACKUP_ENCRYPTION", "age")
            .env("BACKUP_AGE_RECIPIENTS", file)
            .run();
        out.assert_code(2);
        assert!(out.stderr.contains(needle), "{needle:?}:\n{out}");
        assert!(out.stdout.is_empty(), "{out}");
        assert!(!backups.exists(), "the backup folder was created:\n{out}");
    }
    server().drop_db(&source);
}

#[test]
fn key_material_is_only_ever_read_from_files() {
    let backup_help = Cmd::new().args(["backup", "--help"]).run();
    backup_help.assert_success();
    let restore_help = Cmd::new().args(["restore", "--help"]).run();
    restore_help.assert_success();
    let verify_help = Cmd::new().args(["verify", "--help"]).run();
    verify_help.assert_success();
    for help in [&backup_help, &restore_help, &verify_help] {
        let text = &help.stdout;
        for flag in [
            "--recipient ",
            "--recipient=",
            "--recipient <",
            "--passphrase ",
            "--passphrase <",
            "--key ",
            "--key <",
            "--identity-key",
        ] {
            assert!(
                !text.contains(flag),
                "a flag takes key material ({flag:?}):\n{text}"
            );
        }
    }
    assert!(
        backup_help.stdout.contains("--recipients-file <FILE>"),
        "{backup_help}"
    );
    assert!(
        backup_help.stdout.contains("--passphrase-file <FILE>"),
        "{backup_help}"
    );
    for help in [&restore_help, &verify_help] {
        assert!(help.stdout.contains("--identity <FILE>"), "{help}");
        assert!(help.stdout.contains("--passphrase-file <FILE>"), "{help}");
    }
    // A key given where a file is expected is read as a (missing) file, never as the key.
    let work = tempdir();
    let key = age_keygen(work.path(), "id.txt");
    let out = Cmd::new()
        .args(["backup", "--recipients-file"])
        .arg(&key.recipient)
        .env("DATABASE_URL", server().tcp_url("postgres"))
        .env("BACKUP_DIR", work.path().join("backups"))
        .run();
    out.assert_code(2);
    assert!(
        out.stderr.contains("cannot read the age recipients file"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Passphrase mode
// ---------------------------------------------------------------------------------------------

#[test]
fn passphrase_round_trip_never_prints_the_passphrase() {
    let pg = server();
    let work = tempdir();
    let passphrase = "Tr0ub4dor&3 horse-battery-staple";
    let pass_file = work.path().join("pass.txt");
    fs::write(&pass_file, format!("{passphrase}\nsecond line ignored\n")).unwrap();
    private(&pass_file);
    let source = source_db("pipe_pass_src", false);
    let backups = work.path().join("backups");

    let (file, out) = run_backup(
        &backup_cmd(&source, &backups)
            .arg("-v")
            .env("BACKUP_ENCRYPTION", "age")
            .env("BACKUP_PASSPHRASE_FILE", &pass_file),
    );
    assert!(file_name(&file).ends_with(".dump.zst.age"), "{file:?}");
    let bytes = fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n-> scrypt "));
    assert_eq!(meta(&file)["encryption"], "age-passphrase");
    let mut outputs = vec![out];

    let target = pg.create_db("pipe_pass_dst");
    let out = restore_cmd(&target, &file)
        .arg("-v")
        .env("BACKUP_PASSPHRASE_FILE", &pass_file)
        .run();
    out.assert_success();
    assert_same_db(&target, &source, &out);
    outputs.push(out);

    let out = Cmd::new()
        .args(["verify", "-v", "--passphrase-file"])
        .arg(&pass_file)
        .arg(&file)
        .env("BACKUP_DIR", &backups)
        .run();
    out.assert_success();
    assert!(
        out.stdout.contains("archive read through by pg_restore"),
        "{out}"
    );
    outputs.push(out);

    // Nor does the JSON report of a backup, even at -vv.
    let out = backup_cmd(&source, &backups)
        .args(["--json", "-vv", "--name", "json"])
        .env("BACKUP_ENCRYPTION", "age")
        .env("BACKUP_PASSPHRASE_FILE", &pass_file)
        .run();
    out.assert_success();
    assert_eq!(out.json()["encryption"], "age-passphrase", "{out}");
    outputs.push(out);

    for out in &outputs {
        for secret in [passphrase, "Tr0ub4dor", "horse-battery-staple"] {
            assert!(
                !out.stdout.contains(secret) && !out.stderr.contains(secret),
                "the passphrase leaked:\n{out}"
            );
        }
    }
    pg.drop_db(&source);
    pg.drop_db(&target);
}

// ---------------------------------------------------------------------------------------------
// 3. Failures before the target is touched
// ---------------------------------------------------------------------------------------------

#[test]
fn encrypted_restore_failures_leave_the_target_untouched() {
    let pg = server();
    let work = tempdir();
    let key = age_keygen(work.path(), "id.txt");
    let stranger = age_keygen(work.path(), "stranger.txt");
    let source = source_db("pipe_encfail_src", true);
    let backups = work.path().join("backups");
    let (file, _) = run_backup(
        &backup_cmd(&source, &backups)
            .env("BACKUP_ENCRYPTION", "age")
            .env("BACKUP_AGE_RECIPIENTS", &key.recipient),
    );
    let bytes = fs::read(&file).unwrap();
    let payload = age_payload_start(&bytes);
    assert!(
        bytes.len() - payload > 3 * 64 * 1024,
        "the payload should span several age chunks: {} bytes",
        bytes.len() - payload
    );
    let (target, before) = stale_target("pipe_encfail_dst");

    // No key at all.
    let out = restore_cmd(&target, &file).run();
    out.assert_code(2);
    assert!(
        out.stderr.contains("encrypted") && out.stderr.contains("no key"),
        "{out}"
    );
    assert!(
        out.stderr.contains("hint:") && out.stderr.contains("BACKUP_AGE_IDENTITY"),
        "{out}"
    );
    assert_untouched(&target, &before, &out);

    // Someone else's identity.
    let out = restore_cmd(&target, &file)
        .env("BACKUP_AGE_IDENTITY", &stranger.identity)
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("does not match"), "{out}");
    assert_untouched(&target, &before, &out);

    // An identity file that is not one.
    let junk = work.path().join("junk.txt");
    fs::write(&junk, "not an identity\n").unwrap();
    private(&junk);
    let out = restore_cmd(&target, &file)
        .env("BACKUP_AGE_IDENTITY", &junk)
        .run();
    out.assert_code(2);
    assert_untouched(&target, &before, &out);

    // Without the sidecar, age itself must notice a truncated file: cut in the middle of the
    // payload (whole chunks decrypt and reach pg_restore first), and cut by a few bytes.
    let loose = work.path().join("loose");
    fs::create_dir(&loose).unwrap();
    for (name, cut) in [
        ("half.dump.zst.age", payload + (bytes.len() - payload) / 2),
        ("short.dump.zst.age", bytes.len() - 7),
    ] {
        let truncated = loose.join(name);
        fs::write(&truncated, &bytes[..cut]).unwrap();
        let out = restore_cmd(&target, &truncated)
            .env("BACKUP_AGE_IDENTITY", &key.identity)
            .run();
        out.assert_code(4);
        assert_untouched(&target, &before, &out);
    }

    // Without the sidecar, age's authentication must notice one altered byte: early in the
    // payload (before pg_restore starts) and late (after it has received most of the archive).
    for (name, at) in [
        ("early.dump.zst.age", payload + 100),
        ("late.dump.zst.age", bytes.len() - 200),
    ] {
        let mut altered = bytes.clone();
        altered[at] ^= 0x01;
        let path = loose.join(name);
        fs::write(&path, &altered).unwrap();
        let out = restore_cmd(&target, &path)
            .env("BACKUP_AGE_IDENTITY", &key.identity)
            .run();
        out.assert_code(4);
        assert_untouched(&target, &before, &out);
    }

    // With the sidecar, the checksum catches it first, even without a key.
    let mut altered = bytes.clone();
    altered[payload + (bytes.len() - payload) / 2] ^= 0x80;
    fs::write(&file, &altered).unwrap();
    for with_key in [false, true] {
        let mut cmd = restore_cmd(&target, &file);
        if with_key {
            cmd = cmd.env("BACKUP_AGE_IDENTITY", &key.identity);
        }
        let out = cmd.run();
        out.assert_code(4);
        assert!(out.stderr.contains("checksum"), "{out}");
        assert!(out.stderr.contains("not touched"), "{out}");
        assert_untouched(&target, &before, &out);
    }
    pg.drop_db(&source);
    pg.drop_db(&target);
}

#[test]
fn a_wrong_or_missing_passphrase_leaves_the_target_untouched() {
    let pg = server();
    let work = tempdir();
    let right = work.path().join("right.txt");
    fs::write(&right, "the right passphrase\n").unwrap();
    private(&right);
    let wrong = work.path().join("wrong.txt");
    fs::write(&wrong, "the wrong passphrase\n").unwrap();
    private(&wrong);
    let source = source_db("pipe_wrongpass_src", false);
    let (file, _) = run_backup(
        &backup_cmd(&source, &work.path().join("backups"))
            .env("BACKUP_ENCRYPTION", "age")
            .env("BACKUP_PASSPHRASE_FILE", &right),
    );
    let (target, before) = stale_target("pipe_wrongpass_dst");

    let out = restore_cmd(&target, &file)
        .env("BACKUP_PASSPHRASE_FILE", &wrong)
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("wrong passphrase"), "{out}");
    assert!(!out.stderr.contains("the wrong passphrase"), "{out}");
    assert_untouched(&target, &before, &out);

    // An identity file is no use for a passphrase backup.
    let key = age_keygen(work.path(), "id.txt");
    let out = restore_cmd(&target, &file)
        .env("BACKUP_AGE_IDENTITY", &key.identity)
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("passphrase"), "{out}");
    assert!(out.stderr.contains("BACKUP_PASSPHRASE_FILE"), "{out}");
    assert_untouched(&target, &before, &out);

    pg.drop_db(&source);
    pg.drop_db(&target);
}

#[test]
fn verify_reads_an_encrypted_backup_through_only_with_its_key() {
    let pg = server();
    let work = tempdir();
    let key = age_keygen(work.path(), "id.txt");
    let source = source_db("pipe_verify_enc", false);
    let backups = work.path().join("backups");
    let (file, _) = run_backup(
        &backup_cmd(&source, &backups)
            .env("BACKUP_ENCRYPTION", "age")
            .env("BACKUP_AGE_RECIPIENTS", &key.recipient),
    );
    let verify = || {
        Cmd::new()
            .arg("verify")
            .arg(&file)
            .env("BACKUP_DIR", &backups)
    };

    let out = verify().env("BACKUP_AGE_IDENTITY", &key.identity).run();
    out.assert_success();
    assert!(out.stdout.starts_with("ok "), "{out}");
    assert!(out.stdout.contains("checksum"), "{out}");
    assert!(
        out.stdout.contains("archive read through by pg_restore"),
        "{out}"
    );

    let out = verify().run();
    out.assert_success();
    assert!(out.stdout.contains("checksum"), "{out}");
    assert!(out.stdout.contains("content not read"), "{out}");
    assert!(!out.stdout.contains("read through"), "{out}");

    let out = verify().arg("--json").run();
    out.assert_success();
    let report = out.json();
    assert_eq!(report[0]["ok"], true, "{out}");
    let checks = report[0]["checks"].to_string();
    assert!(checks.contains("content not read"), "{out}");

    // A damaged payload with an intact checksum cannot exist; a damaged file fails the checksum
    // with or without the key.
    let mut bytes = fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    fs::write(&file, &bytes).unwrap();
    for with_key in [false, true] {
        let mut cmd = verify();
        if with_key {
            cmd = cmd.env("BACKUP_AGE_IDENTITY", &key.identity);
        }
        let out = cmd.run();
        out.assert_code(4);
        assert!(out.stdout.contains("checksum mismatch"), "{out}");
    }
    pg.drop_db(&source);
}

// ---------------------------------------------------------------------------------------------
// 4. Formats and compression
// ---------------------------------------------------------------------------------------------

#[test]
fn plain_format_with_zstd_gzip_none_and_age_restores_through_psql() {
    let pg = server();
    let work = tempdir();
    let key = age_keygen(work.path(), "id.txt");
    let source = source_db("pipe_plain_src", false);
    let backups = work.path().join("backups");
    for (args, ext, compression, encrypted) in [
        (&["--format", "plain"][..], ".sql.zst", "zstd", false),
        (
            &["--format", "plain", "--compression", "gzip"][..],
            ".sql.gz",
            "gzip",
            false,
        ),
        (
            &["--format", "plain", "--compression", "none"][..],
            ".sql",
            "none",
            false,
        ),
        (
            &["--format", "plain", "--compression", "gzip"][..],
            ".sql.gz.age",
            "gzip",
            true,
        ),
    ] {
        let mut cmd = backup_cmd(&source, &backups)
            .args(args)
            .arg("--name")
            .arg(format!(
                "{compression}{}",
                if encrypted { "-age" } else { "" }
            ));
        if encrypted {
            cmd = cmd
                .env("BACKUP_ENCRYPTION", "age")
                .env("BACKUP_AGE_RECIPIENTS", &key.recipient);
        }
        let (file, _) = run_backup(&cmd);
        assert!(file_name(&file).ends_with(ext), "{file:?}");
        let m = meta(&file);
        assert_eq!(m["format"], "plain");
        assert_eq!(m["compression"], compression);
        let mut stored = fs::read(&file).unwrap();
        if encrypted {
            assert_eq!(m["encryption"], "age-recipients");
            stored = run_tool(
                Command::new("age")
                    .arg("-d")
                    .arg("-i")
                    .arg(&key.identity)
                    .arg(&file),
            );
        }
        let sql = match compression {
            "zstd" => zstd::decode_all(&stored[..]).unwrap(),
            "gzip" => {
                let mut out = Vec::new();
                std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(&stored[..]),
                    &mut out,
                )
                .unwrap();
                out
            }
            _ => stored.clone(),
        };
        let sql = String::from_utf8(sql).unwrap();
        assert!(sql.starts_with("--\n-- PostgreSQL database dump\n"));
        assert!(sql.contains("-- PostgreSQL database dump complete"));
        assert!(
            sql.contains("DROP TABLE IF EXISTS public.items;"),
            "plain dumps carry --clean --if-exists"
        );
        assert!(
            !sql.contains("OWNER TO"),
            "plain dumps are made with --no-owner"
        );
        assert_eq!(m["dump_bytes"], sql.len() as u64);
        if compression != "none" {
            assert!(stored.len() < sql.len(), "{compression} did not compress");
        }

        let target = pg.create_db("pipe_plain_dst");
        let out = restore_cmd(&target, &file)
            .env("BACKUP_AGE_IDENTITY", &key.identity)
            .run();
        out.assert_success();
        assert!(out.stderr.contains("plain format"), "{out}");
        assert!(out.stderr.contains("in one transaction"), "{out}");
        assert_same_db(&target, &source, &out);
        pg.drop_db(&target);
    }
    pg.drop_db(&source);
}

#[test]
fn a_plain_dump_restores_over_a_populated_database_and_a_failure_rolls_back() {
    let pg = server();
    let work = tempdir();
    let source = source_db("pipe_plain_over_src", false);
    let (file, _) =
        run_backup(&backup_cmd(&source, &work.path().join("backups")).args(["--format", "plain"]));

    // Over a stale copy: the DROP ... IF EXISTS statements make room.
    let (target, before) = stale_target("pipe_plain_over_dst");
    assert_ne!(before.contents, pg.table_contents(&source));
    let out = restore_cmd(&target, &file).run();
    out.assert_success();
    assert_same_db(&target, &source, &out);

    // One transaction: the clean step drops notes_pkey, then cannot drop table items (a view
    // that only the target has depends on it), so creating items fails; notes_pkey must be back.
    let sql = String::from_utf8(zstd::decode_all(&fs::read(&file).unwrap()[..]).unwrap()).unwrap();
    let first = sql
        .find("DROP CONSTRAINT IF EXISTS notes_pkey")
        .expect("the dump drops notes_pkey");
    let failing = sql
        .find("DROP TABLE IF EXISTS public.items")
        .expect("the dump drops items");
    assert!(first < failing, "the test relies on pg_dump's drop order");
    let locked = pg.create_db("pipe_plain_rollback");
    pg.psql(
        &locked,
        "SET ROLE app;
         CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'kept');
         CREATE VIEW item_names AS SELECT name FROM items;
         CREATE TABLE notes (id bigint PRIMARY KEY, body text); INSERT INTO notes VALUES (7, 'app note');",
    );
    let before = Snapshot::of(&locked);
    assert!(before.schema.contains("notes_pkey"));
    let out = restore_cmd(&locked, &file).run();
    out.assert_code(1);
    assert!(out.stderr.contains("depend"), "{out}");
    assert!(out.stderr.contains("rolled back"), "{out}");
    assert_untouched(&locked, &before, &out);

    for db in [&source, &target, &locked] {
        pg.drop_db(db);
    }
}

#[test]
fn directory_format_dumps_in_parallel_lists_its_files_and_verify_catches_a_changed_file() {
    let pg = server();
    let work = tempdir();
    let source = source_db("pipe_dir_src", false);
    let backups = work.path().join("backups");
    let (dir, out) = run_backup(&backup_cmd(&source, &backups).args([
        "--format",
        "directory",
        "--jobs",
        "2",
        "-v",
    ]));
    assert!(file_name(&dir).ends_with(".dir"), "{dir:?}");
    assert!(dir.is_dir() && dir.join("toc.dat").is_file(), "{out}");
    assert!(
        out.stderr.contains("--jobs=2"),
        "pg_dump did not get --jobs:\n{out}"
    );
    let m = meta(&dir);
    assert_eq!(m["format"], "directory");
    assert_eq!(m["compression"], "pg_dump");
    let listed: Vec<String> = m["files"]
        .as_array()
        .expect("a file list")
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, entries(&dir));
    assert!(listed.len() >= 3, "{listed:?}");
    let total: u64 = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["size"].as_u64().unwrap())
        .sum();
    assert_eq!(m["size_bytes"], total);
    // Every listed checksum is the file's.
    for f in m["files"].as_array().unwrap() {
        let bytes = fs::read(dir.join(f["path"].as_str().unwrap())).unwrap();
        assert_eq!(f["size"], bytes.len() as u64);
        assert_eq!(f["sha256"].as_str().unwrap().len(), 64);
    }

    // The same from the environment.
    let (from_env, out) = run_backup(
        &backup_cmd(&source, &backups)
            .args(["-v", "--name", "env"])
            .env("BACKUP_FORMAT", "directory")
            .env("BACKUP_JOBS", "2"),
    );
    assert!(file_name(&from_env).ends_with("-env.dir"), "{out}");
    assert!(out.stderr.contains("--jobs=2"), "{out}");

    let verify = || {
        Cmd::new()
            .arg("verify")
            .arg(&dir)
            .env("BACKUP_DIR", &backups)
    };
    let out = verify().run();
    out.assert_success();
    assert!(
        out.stdout.contains("archive read through by pg_restore"),
        "{out}"
    );

    // It restores, in parallel, into an empty database.
    let target = pg.create_db("pipe_dir_dst");
    let out = restore_cmd(&target, &dir).args(["--jobs", "2"]).run();
    out.assert_success();
    assert!(!out.stderr.contains("in one transaction"), "{out}");
    assert_same_db(&target, &source, &out);

    // One byte changed in one data file.
    let data = listed
        .iter()
        .find(|n| n.starts_with(|c: char| c.is_ascii_digit()))
        .expect("a data file");
    let path = dir.join(data);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let out = verify().run();
    out.assert_code(4);
    assert!(
        out.stdout.contains(&format!("checksum mismatch in {data}")),
        "{out}"
    );

    // A file added to the folder.
    bytes[last] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    verify().run().assert_success();
    fs::write(dir.join("extra.dat"), b"x").unwrap();
    let out = verify().run();
    out.assert_code(4);
    assert!(out.stdout.contains("extra.dat"), "{out}");

    pg.drop_db(&source);
    pg.drop_db(&target);
}

#[test]
fn parallel_dump_needs_the_directory_format_and_a_directory_cannot_be_encrypted() {
    let work = tempdir();
    let backups = work.path().join("backups");
    let url = server().tcp_url("postgres");
    for (args, env, needle) in [
        (&["--jobs", "2"][..], None, "--format directory"),
        (
            &["--jobs", "2", "--format", "custom"][..],
            None,
            "--format directory",
        ),
        (
            &["--jobs", "2", "--format", "plain"][..],
            None,
            "--format directory",
        ),
        (&[][..], Some(("BACKUP_JOBS", "2")), "--format directory"),
        (
            &["--format", "directory", "--encrypt"][..],
            Some(("BACKUP_AGE_RECIPIENTS", "age1x")),
            "directory archive cannot be encrypted",
        ),
    ] {
        let mut cmd = Cmd::new()
            .arg("backup")
            .args(args)
            .env("DATABASE_URL", &url)
            .env("BACKUP_DIR", &backups);
        if let Some((k, v)) = env {
            cmd = cmd.env(k, v);
        }
        let out = cmd.run();
        out.assert_code(2);
        assert!(out.stderr.contains(needle), "{needle:?}:\n{out}");
        assert!(!backups.exists(), "{out}");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Content detection
// ---------------------------------------------------------------------------------------------

#[test]
fn hand_made_misnamed_files_are_recognized_by_their_content() {
    let pg = server();
    let work = tempdir();
    let source = source_db("pipe_sniff_src", false);
    let custom = pg_dump(&source, &["-Fc"]);
    assert!(custom.starts_with(b"PGDMP"));
    let plain = pg_dump(&source, &[]);
    let tar = pg_dump(&source, &["-Ft"]);
    let cases = [
        (
            "x.backup",
            zstd::encode_all(&custom[..], 3).unwrap(),
            "custom format, inside zstd",
        ),
        ("x.dump", gzip(&plain), "plain format, inside gzip"),
        ("x.sql", custom.clone(), "(custom format)"),
        (
            "x.sql.gz",
            zstd::encode_all(&plain[..], 3).unwrap(),
            "plain format, inside zstd",
        ),
        ("t.dump", tar.clone(), "(tar format)"),
        ("t.sql", gzip(&tar), "tar format, inside gzip"),
    ];
    for (name, bytes, detected) in cases {
        let file = work.path().join(name);
        fs::write(&file, bytes).unwrap();
        let target = pg.create_db("pipe_sniff_dst");
        let out = restore_cmd(&target, &file).run();
        out.assert_success();
        assert!(
            out.stderr.contains(detected),
            "{name}: {detected:?}:\n{out}"
        );
        assert_same_db(&target, &source, &out);
        pg.drop_db(&target);
    }
    pg.drop_db(&source);
}

#[test]
fn files_encrypted_by_hand_with_the_age_cli_restore_armored_or_not() {
    let pg = server();
    let work = tempdir();
    let key = age_keygen(work.path(), "id.txt");
    let source = source_db("pipe_agecli_src", false);
    let custom = pg_dump(&source, &["-Fc"]);
    let plain = pg_dump(&source, &[]);
    let tar = pg_dump(&source, &["-Ft"]);
    let cases = [
        (
            "x.backup",
            zstd::encode_all(&custom[..], 3).unwrap(),
            false,
            "custom format, inside age+zstd",
        ),
        (
            "x.dump",
            gzip(&plain),
            true,
            "plain format, inside age+gzip",
        ),
        ("y.dump", custom.clone(), true, "custom format, inside age"),
        ("t.tar", tar.clone(), false, "tar format, inside age"),
    ];
    for (name, bytes, armor, detected) in cases {
        let clear = work.path().join(format!("{name}.clear"));
        fs::write(&clear, bytes).unwrap();
        let file = work.path().join(name);
        let mut age = Command::new("age");
        if armor {
            age.arg("--armor");
        }
        run_tool(
            age.arg("-r")
                .arg(&key.recipient)
                .arg("-o")
                .arg(&file)
                .arg(&clear),
        );
        let head = fs::read(&file).unwrap();
        assert_eq!(
            head.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"),
            armor
        );

        let target = pg.create_db("pipe_agecli_dst");
        let out = restore_cmd(&target, &file)
            .env("BACKUP_AGE_IDENTITY", &key.identity)
            .run();
        out.assert_success();
        assert!(
            out.stderr.contains(detected),
            "{name}: {detected:?}:\n{out}"
        );
        assert_same_db(&target, &source, &out);
        pg.drop_db(&target);
    }
    pg.drop_db(&source);
}

#[test]
fn a_compressed_file_that_is_not_a_dump_is_refused_before_the_target_is_touched() {
    let pg = server();
    let work = tempdir();
    let (target, before) = stale_target("pipe_notdump");
    let junk: Vec<u8> = (0u32..4000)
        .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    for (name, bytes) in [
        ("junk.dump.zst", zstd::encode_all(&junk[..], 3).unwrap()),
        ("junk.sql.gz", gzip(&junk)),
        (
            "words.dump.zst",
            zstd::encode_all(&b"hello, these are just words\n"[..], 3).unwrap(),
        ),
    ] {
        let file = work.path().join(name);
        fs::write(&file, bytes).unwrap();
        let out = restore_cmd(&target, &file).run();
        out.assert_code(2);
        assert!(
            out.stderr.contains("not a PostgreSQL backup"),
            "{name}:\n{out}"
        );
        assert_untouched(&target, &before, &out);
    }
    pg.drop_db(&target);
}

// ---------------------------------------------------------------------------------------------
// 6. Parallel restore
// ---------------------------------------------------------------------------------------------

#[test]
fn parallel_restore_of_a_compressed_archive_unpacks_to_tmpdir_and_cleans_up() {
    let pg = server();
    let work = tempdir();
    let source = pg.create_db("pipe_par_rich_src");
    pg.psql(&source, harness::rich_schema_sql());
    let (file, _) = run_backup(&backup_cmd(&source, &work.path().join("backups")));
    assert!(file_name(&file).ends_with(".dump.zst"), "{file:?}");

    let tmp = work.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let target = pg.create_db("pipe_par_rich_dst");
    // An empty target needs no --yes.
    let out = Cmd::new()
        .args(["restore", "--json", "--jobs", "2"])
        .consent_from_database_of(&file)
        .arg(&file)
        .env("DATABASE_URL", pg.tcp_url(&target))
        .env("TMPDIR", &tmp)
        .timeout(std::time::Duration::from_secs(300))
        .run();
    out.assert_success();
    assert_eq!(out.json()["parallel_jobs"], 2, "{out}");
    assert!(!out.stderr.contains("in one transaction"), "{out}");
    assert_same_db(&target, &source, &out);
    assert_eq!(
        entries(&tmp),
        Vec::<String>::new(),
        "temp files left behind"
    );

    pg.drop_db(&source);
    pg.drop_db(&target);
}

#[test]
fn parallel_restore_into_a_populated_database_needs_force() {
    let pg = server();
    let work = tempdir();
    let source = source_db("pipe_par_src", true);
    let (file, _) = run_backup(&backup_cmd(&source, &work.path().join("backups")));
    let tmp = work.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let (target, before) = stale_target("pipe_par_dst");

    let out = restore_cmd(&target, &file)
        .args(["--jobs", "2"])
        .env("TMPDIR", &tmp)
        .run();
    out.assert_code(3);
    assert!(out.stderr.contains("one transaction"), "{out}");
    assert!(out.stderr.contains("--force"), "{out}");
    assert_untouched(&target, &before, &out);

    // The unpacked copy goes to TMPDIR: an unusable one fails before pg_restore starts.
    let out = restore_cmd(&target, &file)
        .args(["--jobs", "2", "--force"])
        .env("TMPDIR", work.path().join("no-such-folder"))
        .run();
    out.assert_code(1);
    assert!(out.stderr.contains("no-such-folder"), "{out}");
    assert!(out.stderr.contains("not touched"), "{out}");
    assert!(!out.stderr.contains("partly restored"), "{out}");
    assert_untouched(&target, &before, &out);

    let out = restore_cmd(&target, &file)
        .args(["--jobs", "2", "--force"])
        .env("TMPDIR", &tmp)
        .run();
    out.assert_success();
    assert_same_db(&target, &source, &out);
    assert_eq!(
        entries(&tmp),
        Vec::<String>::new(),
        "temp files left behind"
    );

    // A damaged archive fails while it is unpacked, before pg_restore starts, and the temp file
    // goes too. (Cut at 2/3: the first zstd blocks decode, so the damage shows during the unpack.)
    let bytes = fs::read(&file).unwrap();
    let cut = work.path().join("cut.dump.zst");
    fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let (stale, before) = stale_target("pipe_par_cut");
    let out = restore_cmd(&stale, &cut)
        .args(["--jobs", "2", "--force"])
        .env("TMPDIR", &tmp)
        .run();
    out.assert_code(4);
    assert!(out.stderr.contains("cannot read the backup"), "{out}");
    assert!(out.stderr.contains("not touched"), "{out}");
    assert!(!out.stderr.contains("partly restored"), "{out}");
    assert_untouched(&stale, &before, &out);
    assert_eq!(
        entries(&tmp),
        Vec::<String>::new(),
        "temp files left behind:\n{out}"
    );

    pg.drop_db(&stale);
    pg.drop_db(&source);
    pg.drop_db(&target);
}

#[test]
fn parallel_restore_of_a_bare_archive_reads_it_in_place() {
    let pg = server();
    let work = tempdir();
    let source = source_db("pipe_bare_src", false);
    let backups = work.path().join("backups");
    for (compression, needle) in [("pg_dump", "pg_dump"), ("none", "none")] {
        let (file, _) = run_backup(&backup_cmd(&source, &backups).args([
            "--compression",
            compression,
            "--name",
            compression,
        ]));
        assert!(
            file_name(&file).ends_with(&format!("-{compression}.dump")),
            "{file:?}"
        );
        assert!(fs::read(&file).unwrap().starts_with(b"PGDMP"));
        assert_eq!(meta(&file)["compression"], needle);
        // No unpacking: an unusable TMPDIR does not matter.
        let target = pg.create_db("pipe_bare_dst");
        let out = restore_cmd(&target, &file)
            .args(["--jobs", "2", "-v"])
            .env("TMPDIR", work.path().join("no-such-folder"))
            .run();
        out.assert_success();
        assert!(
            out.stderr.contains("--jobs=2"),
            "pg_restore did not get --jobs:\n{out}"
        );
        assert!(out.stderr.contains(&file.display().to_string()), "{out}");
        assert_same_db(&target, &source, &out);
        pg.drop_db(&target);
    }
    pg.drop_db(&source);
}

#[test]
fn parallel_restore_of_an_encrypted_archive_unpacks_a_private_copy_and_removes_it() {
    use std::os::unix::fs::PermissionsExt;
    let pg = server();
    let work = tempdir();
    let key = age_keygen(work.path(), "id.txt");
    let source = source_db("pipe_par_enc_src", false);
    let (file, _) = run_backup(
        &backup_cmd(&source, &work.path().join("backups"))
            .env("BACKUP_ENCRYPTION", "age")
            .env("BACKUP_AGE_RECIPIENTS", &key.recipient),
    );
    // PG_BIN holds a pg_restore that notes what it was given, then runs the real one.
    let bin = work.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let log = work.path().join("pg_restore.log");
    let wrapper = bin.join("pg_restore");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n\
             for a in \"$@\"; do\n\
               case \"$a\" in -*) ;; *) echo \"$a $(stat -L -c %a \"$a\") $(head -c 5 \"$a\")\" >> '{}' ;; esac\n\
             done\n\
             exec '{}' \"$@\"\n",
            log.display(),
            pg.bindir.join("pg_restore").display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let tmp = work.path().join("tmp");
    fs::create_dir(&tmp).unwrap();

    let target = pg.create_db("pipe_par_enc_dst");
    let out = restore_cmd(&target, &file)
        .args(["--jobs", "2"])
        .env("BACKUP_AGE_IDENTITY", &key.identity)
        .env("PG_BIN", &bin)
        .env("TMPDIR", &tmp)
        .run();
    out.assert_success();
    assert_same_db(&target, &source, &out);
    let seen =
        fs::read_to_string(&log).unwrap_or_else(|_| panic!("the wrapper did not run:\n{out}"));
    // The copy has no name in TMPDIR: pg_restore reads it through an inherited descriptor.
    let line = seen
        .lines()
        .find(|l| l.starts_with("/dev/fd/"))
        .unwrap_or_else(|| panic!("pg_restore did not get a temp file: {seen}\n{out}"));
    let mut parts = line.split(' ');
    parts.next();
    assert_eq!(
        parts.next(),
        Some("600"),
        "the decrypted copy is not private: {line}"
    );
    assert_eq!(parts.next(), Some("PGDMP"), "not the bare archive: {line}");
    assert_eq!(
        entries(&tmp),
        Vec::<String>::new(),
        "the decrypted copy was left behind"
    );
    pg.drop_db(&source);
    pg.drop_db(&target);
}

#[test]
fn damaged_compressed_files_without_a_sidecar_are_caught_before_pg_restore_runs_in_parallel() {
    let pg = server();
    let work = tempdir();
    let source = source_db("pipe_damaged_src", true);
    let backups = work.path().join("backups");
    let (zst, _) = run_backup(&backup_cmd(&source, &backups).arg("--name").arg("z"));
    let (gz, _) =
        run_backup(&backup_cmd(&source, &backups).args(["--compression", "gzip", "--name", "g"]));
    let tmp = work.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let loose = work.path().join("loose");
    fs::create_dir(&loose).unwrap();
    let (target, before) = stale_target("pipe_damaged_dst");
    for (kind, file) in [("zst", &zst), ("gz", &gz)] {
        let bytes = fs::read(file).unwrap();
        let mut flipped = bytes.clone();
        flipped[bytes.len() * 3 / 5] ^= 0x04;
        for (what, damaged) in [
            ("half", bytes[..bytes.len() / 2].to_vec()),
            ("no-end", bytes[..bytes.len() - 4].to_vec()),
            ("flipped", flipped),
        ] {
            let path = loose.join(format!("{what}.dump.{kind}"));
            fs::write(&path, &damaged).unwrap();
            // Streamed into pg_restore in one transaction: rolled back.
            let out = restore_cmd(&target, &path).run();
            assert_ne!(out.code, Some(0), "{out}");
            assert_untouched(&target, &before, &out);
            // Unpacked for --jobs: the damage shows before pg_restore starts.
            let out = restore_cmd(&target, &path)
                .args(["--jobs", "2", "--force"])
                .env("TMPDIR", &tmp)
                .run();
            out.assert_code(4);
            assert!(out.stderr.contains("not touched"), "{out}");
            assert_untouched(&target, &before, &out);
            assert_eq!(entries(&tmp), Vec::<String>::new(), "{out}");
        }
    }
    pg.drop_db(&source);
    pg.drop_db(&target);
}

// ---------------------------------------------------------------------------------------------
// 7. Progress and streams
// ---------------------------------------------------------------------------------------------

#[track_caller]
fn assert_clean_stderr(out: &Output) {
    assert!(
        !out.stderr.contains('\r'),
        "carriage return on stderr:\n{out:?}"
    );
    assert!(
        !out.stderr.contains('\u{1b}'),
        "ANSI escape on stderr:\n{out:?}"
    );
}

#[test]
fn off_a_terminal_stderr_has_plain_lines_and_stdout_only_the_result() {
    let pg = server();
    let work = tempdir();
    let source = source_db("pipe_streams_src", true);
    let backups = work.path().join("backups");
    // TERM says colours would work; stderr being a pipe is what counts.
    let (file, out) = run_backup(&backup_cmd(&source, &backups).env("TERM", "xterm-256color"));
    assert_clean_stderr(&out);
    assert_eq!(out.stdout, format!("{}\n", file.display()));

    // The last line: size, ratio and duration.
    let last = out
        .stderr
        .lines()
        .rfind(|l| l.contains("backup complete"))
        .unwrap_or_else(|| panic!("no completion line:\n{out}"));
    let m = meta(&file);
    let ratio: f64 = last
        .split("ratio ")
        .nth(1)
        .and_then(|r| r.split('x').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no ratio in {last:?}"));
    #[allow(clippy::cast_precision_loss)]
    let expected =
        m["dump_bytes"].as_u64().unwrap() as f64 / m["size_bytes"].as_u64().unwrap() as f64;
    assert!(
        (ratio - expected).abs() < 0.051,
        "{last:?}: expected ratio {expected:.2}"
    );
    assert!(ratio > 1.0, "{last:?}");
    assert!(last.contains("KiB"), "no size in {last:?}");
    let duration = last.rsplit(" in ").next().unwrap();
    assert!(
        duration.ends_with('s') && duration[..duration.len() - 1].parse::<f64>().is_ok(),
        "no duration at the end of {last:?}"
    );

    // Restore and verify: the same.
    let target = pg.create_db("pipe_streams_dst");
    let out = restore_cmd(&target, &file)
        .env("TERM", "xterm-256color")
        .run();
    out.assert_success();
    assert_clean_stderr(&out);
    assert_eq!(out.stdout, "", "{out}");
    let out = Cmd::new()
        .arg("verify")
        .arg(&file)
        .env("BACKUP_DIR", &backups)
        .env("TERM", "xterm-256color")
        .run();
    out.assert_success();
    assert_clean_stderr(&out);
    assert_eq!(out.stdout.lines().count(), 1, "{out}");

    // A failure is plain too.
    let out = restore_cmd(&target, &work.path().join("missing.dump"))
        .env("TERM", "xterm")
        .run();
    out.assert_code(2);
    assert_clean_stderr(&out);
    assert_eq!(out.stdout, "", "{out}");

    pg.drop_db(&source);
    pg.drop_db(&target);
}

#[test]
fn json_output_reports_the_pipeline() {
    let pg = server();
    let work = tempdir();
    let key = age_keygen(work.path(), "id.txt");
    let source = source_db("pipe_json_src", false);
    let backups = work.path().join("backups");

    let out = backup_cmd(&source, &backups).arg("--json").run();
    out.assert_success();
    assert_clean_stderr(&out);
    let report = out.json();
    let path = PathBuf::from(report["path"].as_str().expect("a path"));
    assert!(path.is_file(), "{out}");
    assert_eq!(report["compression"], "zstd");
    assert_eq!(report["compression_level"], 1);
    assert_eq!(report["encryption"], "none");
    assert_eq!(report["format"], "custom");
    let size = report["size_bytes"].as_u64().unwrap();
    let dumped = report["dump_bytes"].as_u64().unwrap();
    assert_eq!(size, fs::metadata(&path).unwrap().len());
    assert!(0 < size && size < dumped, "{out}");
    assert_eq!(report, {
        let mut m = meta(&path);
        m["path"] = report["path"].clone();
        m
    });

    let out = backup_cmd(&source, &backups)
        .args(["--json", "--compression", "gzip", "--name", "enc"])
        .env("BACKUP_ENCRYPTION", "age")
        .env("BACKUP_AGE_RECIPIENTS", &key.recipient)
        .run();
    out.assert_success();
    let report = out.json();
    assert_eq!(report["compression"], "gzip");
    assert_eq!(report["compression_level"], 6);
    assert_eq!(report["encryption"], "age-recipients");
    assert!(
        report["path"]
            .as_str()
            .unwrap()
            .ends_with("-enc.dump.gz.age"),
        "{out}"
    );
    assert!(report["size_bytes"].as_u64().unwrap() < report["dump_bytes"].as_u64().unwrap());

    // --no-encrypt wins over the environment.
    let out = backup_cmd(&source, &backups)
        .args(["--json", "--no-encrypt", "--name", "clear"])
        .env("BACKUP_ENCRYPTION", "age")
        .env("BACKUP_AGE_RECIPIENTS", &key.recipient)
        .run();
    out.assert_success();
    assert_eq!(out.json()["encryption"], "none");
    assert!(
        out.json()["path"]
            .as_str()
            .unwrap()
            .ends_with("-clear.dump.zst"),
        "{out}"
    );

    // A failure is JSON on stdout too, with its exit code.
    let out = backup_cmd(&source, &backups)
        .arg("--json")
        .env("BACKUP_COMPRESSION", "gzip")
        .env("BACKUP_COMPRESSION_LEVEL", "42")
        .run();
    out.assert_code(2);
    let report = out.json();
    assert_eq!(report["ok"], false);
    assert_eq!(report["exit_code"], 2);
    assert!(
        report["error"].as_str().unwrap().contains("out of range"),
        "{out}"
    );
    pg.drop_db(&source);
}

// ---------------------------------------------------------------------------------------------
// 8. Compression levels
// ---------------------------------------------------------------------------------------------

#[test]
fn compression_levels_are_applied_and_checked() {
    let pg = server();
    let work = tempdir();
    let source = source_db("pipe_levels_src", true);
    let backups = work.path().join("backups");

    let (fast, _) = run_backup(&backup_cmd(&source, &backups).arg("--name").arg("fast"));
    let (best, _) = run_backup(
        &backup_cmd(&source, &backups)
            .arg("--name")
            .arg("best")
            .env("BACKUP_COMPRESSION", "zstd")
            .env("BACKUP_COMPRESSION_LEVEL", "19"),
    );
    let (fast_meta, best_meta) = (meta(&fast), meta(&best));
    assert_eq!(fast_meta["compression_level"], 1);
    assert_eq!(best_meta["compression"], "zstd");
    assert_eq!(best_meta["compression_level"], 19);
    assert_eq!(best_meta["dump_bytes"], fast_meta["dump_bytes"]);
    assert!(
        best_meta["size_bytes"].as_u64() < fast_meta["size_bytes"].as_u64(),
        "level 19 is not smaller than level 1"
    );
    let target = pg.create_db("pipe_levels_dst");
    let out = restore_cmd(&target, &best).run();
    out.assert_success();
    assert_same_db(&target, &source, &out);

    let before = entries(&backups);
    for (env, needle) in [
        (
            &[
                ("BACKUP_COMPRESSION", "gzip"),
                ("BACKUP_COMPRESSION_LEVEL", "42"),
            ][..],
            "out of range",
        ),
        (
            &[
                ("BACKUP_COMPRESSION", "zstd"),
                ("BACKUP_COMPRESSION_LEVEL", "20"),
            ][..],
            "out of range",
        ),
        (
            &[("BACKUP_COMPRESSION_LEVEL", "fast")][..],
            "BACKUP_COMPRESSION_LEVEL",
        ),
        (&[("BACKUP_COMPRESSION", "lz4")][..], "BACKUP_COMPRESSION"),
    ] {
        let mut cmd = backup_cmd(&source, &backups);
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        let out = cmd.run();
        out.assert_code(2);
        assert!(out.stderr.contains(needle), "{needle:?}:\n{out}");
        assert_eq!(out.stdout, "", "{out}");
        assert_eq!(entries(&backups), before, "something was written:\n{out}");
    }
    // A flag's level wins over the environment's.
    let (file, _) = run_backup(
        &backup_cmd(&source, &backups)
            .args(["--compression-level", "9", "--name", "flag"])
            .env("BACKUP_COMPRESSION", "gzip")
            .env("BACKUP_COMPRESSION_LEVEL", "42"),
    );
    assert_eq!(meta(&file)["compression"], "gzip");
    assert_eq!(meta(&file)["compression_level"], 9);

    pg.drop_db(&source);
    pg.drop_db(&target);
}
