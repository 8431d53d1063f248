//! `backup --globals`: the roles and tablespaces (`pg_dumpall --globals-only`) stored next to the
//! backup as `<backup file>.globals.sql`, recorded in its sidecar, checked by `verify`, deleted
//! with it by `prune`, shown by `list`; without role passwords unless asked; encrypted like the
//! backup; and a failure leaves no half of a backup set.

use crate::cmd::{Cmd, Output};
use crate::harness::{quote_ident, server};
use crate::support::{
    backup_names, filled_db, mode_of, private, read_sidecar, sha256_hex, tempdir,
};
use std::fs;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A login role with a password, made for one test and dropped after it.
struct Role(String);

impl Role {
    fn new(prefix: &str) -> Role {
        let name = format!("{prefix}_{}", std::process::id());
        server().psql(
            "postgres",
            &format!(
                "CREATE ROLE {} LOGIN PASSWORD 'role-Pw-123'",
                quote_ident(&name)
            ),
        );
        Role(name)
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = server().try_psql(
            "postgres",
            &format!("DROP ROLE IF EXISTS {}", quote_ident(&self.0)),
        );
    }
}

/// `aos-backup` for `url`, with its backups in `dir`.
fn aos(dir: &Path, url: &str) -> Cmd {
    Cmd::new().env("BACKUP_DIR", dir).env("DATABASE_URL", url)
}

/// The new backup's path, from a successful `backup`.
fn made(out: &Output) -> PathBuf {
    out.assert_success();
    PathBuf::from(out.stdout_trimmed())
}

fn globals_of(backup: &Path) -> PathBuf {
    PathBuf::from(format!("{}.globals.sql", backup.display()))
}

#[test]
fn globals_hold_the_roles_without_passwords_and_the_sidecar_records_them() {
    let pg = server();
    let role = Role::new("aos_glob_plain");
    let db = filled_db("globals_plain");
    let dir = tempdir();
    let out = aos(dir.path(), &pg.tcp_url(&db))
        .args(["backup", "--globals"])
        .run();
    let backup = made(&out);
    let globals = globals_of(&backup);
    let text = fs::read_to_string(&globals).unwrap();
    assert!(text.contains(&format!("CREATE ROLE {}", role.0)), "{text}");
    assert!(!text.contains("SCRAM-SHA-256$"), "a password hash: {text}");
    assert_eq!(mode_of(&globals), 0o600);
    let meta = read_sidecar(&backup);
    let g = &meta["globals"];
    assert_eq!(
        g["file"],
        globals.file_name().unwrap().to_string_lossy().as_ref()
    );
    assert_eq!(g["sha256"], sha256_hex(text.as_bytes()));
    assert_eq!(g["size_bytes"], text.len());
    assert_eq!(g["role_passwords"], false);

    let list = aos(dir.path(), &pg.tcp_url(&db)).arg("list").run();
    list.assert_success();
    assert!(list.stdout.contains("complete +globals"), "{list}");
    let json = aos(dir.path(), &pg.tcp_url(&db))
        .args(["list", "--json"])
        .run();
    assert_eq!(json.json()[0]["globals"]["file"], g["file"], "{json}");

    let verify = aos(dir.path(), &pg.tcp_url(&db)).arg("verify").run();
    verify.assert_success();
    assert!(
        verify.stderr.contains("globals checksum") || verify.stdout.contains("globals checksum"),
        "{verify}"
    );
}

#[test]
fn a_backup_without_globals_has_no_script_and_no_field() {
    let pg = server();
    let db = filled_db("globals_none");
    let dir = tempdir();
    let backup = made(&aos(dir.path(), &pg.tcp_url(&db)).arg("backup").run());
    assert!(!globals_of(&backup).exists());
    assert!(read_sidecar(&backup).get("globals").is_none());
    let backup = made(
        &aos(dir.path(), &pg.tcp_url(&db))
            .env("BACKUP_GLOBALS", "true")
            .arg("backup")
            .run(),
    );
    assert!(
        globals_of(&backup).is_file(),
        "BACKUP_GLOBALS=true works too"
    );
}

#[test]
fn with_passwords_the_hashes_are_kept_and_a_non_superuser_fails_leaving_nothing() {
    let pg = server();
    let role = Role::new("aos_glob_pw");
    let db = filled_db("globals_pw");
    let dir = tempdir();
    let out = aos(dir.path(), &pg.socket_url(&db))
        .args(["backup", "--globals-with-passwords"])
        .run();
    let backup = made(&out);
    let text = fs::read_to_string(globals_of(&backup)).unwrap();
    assert!(
        text.contains(&role.0) && text.contains("SCRAM-SHA-256$"),
        "{text}"
    );
    assert_eq!(read_sidecar(&backup)["globals"]["role_passwords"], true);
    assert!(
        out.stderr.contains("password hashes are stored in clear"),
        "an unencrypted backup with role passwords is warned about: {out}"
    );

    // The app role cannot read pg_authid: the whole backup fails, and nothing of it remains.
    let other = tempdir();
    let out = aos(other.path(), &pg.tcp_url(&db))
        .args(["backup", "--globals-with-passwords"])
        .run();
    out.assert_code(1);
    assert!(out.stderr.contains("pg_dumpall"), "{out}");
    assert!(out.stderr.contains("needs a superuser"), "{out}");
    assert!(backup_names(other.path()).is_empty(), "{out}");
}

#[test]
fn verify_catches_an_altered_or_missing_globals_script() {
    let pg = server();
    let db = filled_db("globals_verify");
    let dir = tempdir();
    let backup = made(
        &aos(dir.path(), &pg.tcp_url(&db))
            .args(["backup", "--globals"])
            .run(),
    );
    let globals = globals_of(&backup);
    let mut text = fs::read_to_string(&globals).unwrap();
    text.push_str("ALTER ROLE postgres NOSUPERUSER;\n");
    fs::write(&globals, &text).unwrap();
    let out = aos(dir.path(), &pg.tcp_url(&db)).arg("verify").run();
    out.assert_code(4);
    assert!(out.stdout.contains("FAIL"), "{out}");
    assert!(out.stdout.contains("globals.sql"), "{out}");
    assert!(out.stdout.contains("checksum mismatch"), "{out}");

    fs::remove_file(&globals).unwrap();
    let out = aos(dir.path(), &pg.tcp_url(&db)).arg("verify").run();
    out.assert_code(4);
    assert!(out.stdout.contains("is missing"), "{out}");
}

#[test]
fn prune_deletes_the_globals_script_with_its_backup() {
    let pg = server();
    let db = filled_db("globals_prune");
    let dir = tempdir();
    let at = |day: &str| {
        aos(dir.path(), &pg.tcp_url(&db))
            .env("AOS_BACKUP_NOW", format!("2024-01-{day}T00:00:00Z"))
            .args(["backup", "--globals"])
    };
    let old = made(&at("01").run());
    let new = made(&at("02").run());
    assert!(globals_of(&old).is_file() && globals_of(&new).is_file());
    let out = aos(dir.path(), &pg.tcp_url(&db))
        .env("AOS_BACKUP_NOW", "2024-01-03T00:00:00Z")
        .args(["prune", "--keep-last", "1"])
        .run();
    out.assert_success();
    let left = backup_names(dir.path());
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        left,
        vec![
            name(&new),
            name(&globals_of(&new)),
            format!("{}.meta.json", name(&new)),
        ],
        "{out}"
    );

    // A script whose backup is gone is a leftover, which prune removes.
    fs::remove_file(&new).unwrap();
    fs::remove_file(format!("{}.meta.json", new.display())).unwrap();
    let out = aos(dir.path(), &pg.tcp_url(&db))
        .args(["prune", "--keep-last", "1"])
        .run();
    out.assert_success();
    assert!(backup_names(dir.path()).is_empty(), "{out}");
}

#[test]
fn an_encrypted_backups_globals_are_encrypted_too() {
    let pg = server();
    let role = Role::new("aos_glob_enc");
    let db = filled_db("globals_enc");
    let dir = tempdir();
    let keys: TempDir = tempdir();
    let pass = keys.path().join("pass");
    fs::write(&pass, "a long passphrase for the test\n").unwrap();
    private(&pass);
    let backup = made(
        &aos(dir.path(), &pg.tcp_url(&db))
            .env("BACKUP_PASSPHRASE_FILE", &pass)
            .args(["backup", "--encrypt", "--globals"])
            .run(),
    );
    let sealed = PathBuf::from(format!("{}.globals.sql.age", backup.display()));
    let bytes = fs::read(&sealed).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1"), "not age");
    assert!(!String::from_utf8_lossy(&bytes).contains(&role.0));
    assert_eq!(
        read_sidecar(&backup)["globals"]["sha256"],
        sha256_hex(&bytes)
    );
    let out = aos(dir.path(), &pg.tcp_url(&db))
        .env("BACKUP_PASSPHRASE_FILE", &pass)
        .arg("verify")
        .run();
    out.assert_success();
}
