//! Trust on the worst day: a full disk or a folder we may not write is our problem, not a damaged
//! backup nor the database's; a missing or wrong key is not damage; a backup without metadata
//! says so; a `.env` that fails to parse never prints its lines; the lock file is never followed
//! through a link; a directory archive is private; and every secret file must be private.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cmd::{Cmd, Output};
use crate::harness::server;
use crate::support::{
    age_keygen, mode_of, names_if_any as names_in, private, set_mode as chmod, tempdir, Tmpfs,
};
use aos_backup::check::LOCK_FILE;

/// A database owned by `app` with `rows` rows of about 70 bytes each.
fn db_with_rows(prefix: &str, rows: u32) -> String {
    let pg = server();
    let db = pg.create_db(prefix);
    pg.psql(
        &db,
        &format!(
            "SET ROLE app;
             CREATE TABLE t (id int PRIMARY KEY, payload text);
             INSERT INTO t SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, {rows}) g;"
        ),
    );
    db
}

/// `aos-backup backup` of `db` into `backups`.
fn backup(db: &str, backups: &Path) -> Cmd {
    Cmd::new()
        .arg("backup")
        .env("DATABASE_URL", server().tcp_url(db))
        .env("BACKUP_DIR", backups)
}

/// Runs a backup that must succeed; returns the backup's path.
#[track_caller]
fn backed_up(cmd: &Cmd) -> PathBuf {
    let out = cmd.run();
    out.assert_success();
    let path = cmd.dir().join(out.stdout_trimmed());
    assert!(path.exists(), "{path:?}:\n{out}");
    path
}

/// Backups (not the lock file) in `dir`.
fn backups_in(dir: &Path) -> Vec<String> {
    names_in(dir)
        .into_iter()
        .filter(|n| n != LOCK_FILE)
        .collect()
}

#[track_caller]
fn assert_has(out: &Output, needles: &[&str]) {
    let all = format!("{}{}", out.stdout, out.stderr);
    for n in needles {
        assert!(all.contains(n), "{n:?} missing:\n{out}");
    }
}

#[track_caller]
fn assert_lacks(out: &Output, needles: &[&str]) {
    let all = format!("{}{}", out.stdout, out.stderr);
    for n in needles {
        assert!(!all.contains(n), "{n:?} must not appear:\n{out}");
    }
}

/// The `hint:` line of a text-log error.
fn hint(out: &Output) -> String {
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix("hint: "))
        .unwrap_or_default()
        .to_string()
}

/// The short form of a recipient that the sidecar records and messages show.
fn fingerprint(recipient: &str) -> String {
    format!(
        "{}...{}",
        &recipient[..12],
        &recipient[recipient.len() - 8..]
    )
}

// ---------------------------------------------------------------------------------------------
// 6. Our side (disk, permissions) is not damage, nor the database's
// ---------------------------------------------------------------------------------------------

#[test]
fn a_full_temp_disk_while_unpacking_for_jobs_is_a_disk_problem_not_a_damaged_backup() {
    let pg = server();
    let work = tempdir();
    // About 2 MB of dump: far more than the 256 kB temp disk.
    let source = db_with_rows("secrets_enospc_src", 30_000);
    let file = backed_up(&backup(&source, &work.path().join("backups")));
    // Without its sidecar, the size is unknown and the space check cannot refuse early: the
    // disk fills while unpacking.
    let loose = work.path().join(file.file_name().unwrap());
    fs::copy(&file, &loose).unwrap();
    let tmp = work.path().join("tmp");
    let mounted = Tmpfs::mount(&tmp, "256k").expect(
        "this test fills a 256k tmpfs: run the tests as root where `mount -t tmpfs` is allowed",
    );
    let target = pg.create_db("secrets_enospc_dst");
    let cmd = Cmd::new()
        .args(["restore", "--yes", "--jobs", "2"])
        .arg(&loose)
        .env("DATABASE_URL", pg.tcp_url(&target))
        .env("TMPDIR", &tmp);
    let out = cmd.run();
    out.assert_code(1);
    assert_has(&out, &["No space left on device", "not touched"]);
    let h = hint(&out);
    assert!(
        h.contains("disk") && h.contains("TMPDIR") && h.contains("backup itself is fine"),
        "{out}"
    );
    assert_lacks(&out, &["damaged", "another backup", "truncated"]);
    assert!(names_in(&tmp).is_empty(), "the temp file is left:\n{out}");
    assert_eq!(
        pg.psql(
            &target,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "0"
    );
    drop(cmd);
    drop(mounted);
    pg.drop_db(&source);
    pg.drop_db(&target);
}

/// Runs aos-backup as root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, so that mode bits
/// apply to it as to any other user (root ignores them otherwise).
fn run_without_dac_override(args: &[&str], env: &[(&str, &Path)], url: &str) -> Output {
    let cwd = tempdir();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aos-backup"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", cwd.path())
        .env("LANG", "C.UTF-8")
        .env("DATABASE_URL", url)
        .current_dir(cwd.path())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: prctl is async-signal-safe; it only changes this child's bounding set.
    unsafe {
        cmd.pre_exec(|| {
            // CAP_DAC_OVERRIDE (1) and CAP_DAC_READ_SEARCH (2), from linux/capability.h.
            for cap in [1, 2] {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run aos-backup");
    Output {
        command: format!("aos-backup {}", args.join(" ")),
        code: out.status.code(),
        signal: None,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_backup_folder_we_may_not_write_is_a_folder_problem_not_the_database_users() {
    let pg = server();
    let db = db_with_rows("secrets_eacces", 10);
    let work = tempdir();
    let backups = work.path().join("backups");
    fs::create_dir(&backups).unwrap();
    chmod(&backups, 0o500);
    let out = run_without_dac_override(&["backup"], &[("BACKUP_DIR", &backups)], &pg.tcp_url(&db));
    chmod(&backups, 0o700);
    assert!(
        !(out.stderr.contains("Operation not permitted") && out.code.is_none()),
        "this test drops CAP_DAC_OVERRIDE to make a folder unwritable: run it as root\n{out}"
    );
    out.assert_code(1);
    assert_has(&out, &["Permission denied", &backups.display().to_string()]);
    let h = hint(&out);
    assert!(
        h.contains("permissions") && h.contains("ls -ld") && h.contains("not about the database"),
        "{out}"
    );
    assert_lacks(&out, &["lacks privileges", "database owner"]);
    assert!(backups_in(&backups).is_empty(), "{out}");
    pg.drop_db(&db);
}

// ---------------------------------------------------------------------------------------------
// 7. A key problem is not damage
// ---------------------------------------------------------------------------------------------

#[test]
fn a_recipients_backup_read_with_a_passphrase_or_the_wrong_identity_is_a_key_error() {
    let pg = server();
    let work = tempdir();
    let key = age_keygen(work.path(), "id.txt");
    let stranger = age_keygen(work.path(), "stranger.txt");
    let pass = work.path().join("pass.txt");
    fs::write(&pass, "a passphrase\n").unwrap();
    private(&pass);
    let source = db_with_rows("secrets_keys_src", 50);
    let backups = work.path().join("backups");
    let file = backed_up(
        &backup(&source, &backups)
            .env("BACKUP_ENCRYPTION", "age")
            .env("BACKUP_AGE_RECIPIENTS", &key.recipient),
    );
    // The sidecar records who can open it (short fingerprints).
    let meta_path = PathBuf::from(format!("{}.meta.json", file.display()));
    let meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&meta_path).unwrap()).unwrap();
    let fp = fingerprint(&key.recipient);
    assert_eq!(meta["recipients"], serde_json::json!([fp]));

    let verify = || {
        Cmd::new()
            .arg("verify")
            .arg(&file)
            .env("BACKUP_DIR", &backups)
    };
    // Only a passphrase (cron with the wrong setting): not an integrity failure.
    let out = verify().env("BACKUP_PASSPHRASE_FILE", &pass).run();
    out.assert_code(2);
    assert_has(
        &out,
        &[
            "needs the age identity for recipient",
            &fp,
            "a passphrase was given",
        ],
    );
    assert_lacks(&out, &["do not rely", "damaged", "failed verification"]);
    // The same for restore.
    let target = pg.create_db("secrets_keys_dst");
    let restore = |var: &str, value: &Path| {
        Cmd::new()
            .args(["restore", "--yes"])
            .arg(&file)
            .consent_from_database_of(&file)
            .env("DATABASE_URL", pg.tcp_url(&target))
            .env(var, value)
            .run()
    };
    let out = restore("BACKUP_PASSPHRASE_FILE", &pass);
    out.assert_code(2);
    assert_has(&out, &["needs the age identity for recipient", &fp]);

    // Someone else's identity: a key error that names both keys.
    let out = verify()
        .env("BACKUP_AGE_IDENTITY", &stranger.identity)
        .run();
    out.assert_code(2);
    assert_has(
        &out,
        &["does not match", &fingerprint(&stranger.recipient), &fp],
    );
    assert_lacks(&out, &["do not rely", "damaged"]);
    let out = restore("BACKUP_AGE_IDENTITY", &stranger.identity);
    out.assert_code(2);
    assert_has(&out, &["does not match", &fp]);

    // The right one still works.
    verify()
        .env("BACKUP_AGE_IDENTITY", &key.identity)
        .run()
        .assert_success();
    pg.drop_db(&source);
    pg.drop_db(&target);
}

#[test]
fn a_passphrase_backup_read_with_an_identity_says_it_needs_the_passphrase() {
    let work = tempdir();
    let key = age_keygen(work.path(), "id.txt");
    let pass = work.path().join("pass.txt");
    fs::write(&pass, "correct horse\n").unwrap();
    private(&pass);
    let source = db_with_rows("secrets_pass_src", 20);
    let backups = work.path().join("backups");
    let file = backed_up(
        &backup(&source, &backups)
            .env("BACKUP_ENCRYPTION", "age")
            .env("BACKUP_PASSPHRASE_FILE", &pass),
    );
    let out = Cmd::new()
        .arg("verify")
        .arg(&file)
        .env("BACKUP_DIR", &backups)
        .env("BACKUP_AGE_IDENTITY", &key.identity)
        .run();
    out.assert_code(2);
    assert_has(&out, &["needs the passphrase", "an age identity was given"]);
    assert_lacks(&out, &["do not rely", "damaged"]);
    server().drop_db(&source);
}

#[test]
fn recipients_and_a_passphrase_together_are_refused_before_anything_is_written() {
    let work = tempdir();
    let key = age_keygen(work.path(), "id.txt");
    let pass = work.path().join("pass.txt");
    fs::write(&pass, "a passphrase\n").unwrap();
    private(&pass);
    let source = db_with_rows("secrets_both", 5);
    let backups = work.path().join("backups");
    for cmd in [
        backup(&source, &backups)
            .env("BACKUP_ENCRYPTION", "age")
            .env("BACKUP_AGE_RECIPIENTS", &key.recipient)
            .env("BACKUP_PASSPHRASE_FILE", &pass),
        backup(&source, &backups)
            .env("BACKUP_AGE_RECIPIENTS", &key.recipient)
            .arg("--passphrase-file")
            .arg(&pass),
    ] {
        let out = cmd.run();
        out.assert_code(2);
        assert_has(
            &out,
            &["BACKUP_AGE_RECIPIENTS", "BACKUP_PASSPHRASE_FILE", "both"],
        );
        assert!(backups_in(&backups).is_empty(), "{out}");
    }
    server().drop_db(&source);
}

// ---------------------------------------------------------------------------------------------
// 8. A backup without metadata says so
// ---------------------------------------------------------------------------------------------

#[test]
fn restoring_a_file_without_metadata_warns_that_its_checksum_cannot_be_checked() {
    let pg = server();
    let work = tempdir();
    let source = db_with_rows("secrets_nometa_src", 20);
    let file = backed_up(&backup(&source, &work.path().join("backups")));
    let loose = work.path().join("copied.dump.zst");
    fs::copy(&file, &loose).unwrap();
    let target = pg.create_db("secrets_nometa_dst");
    let out = Cmd::new()
        .args(["restore", "--yes"])
        .arg(&loose)
        .env("DATABASE_URL", pg.tcp_url(&target))
        .run();
    out.assert_success();
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("has no metadata"))
        .unwrap_or_else(|| panic!("no warning:\n{out}"));
    assert!(line.contains("WARN"), "{out}");
    assert!(
        line.contains(&format!(
            "{} has no metadata: its checksum cannot be checked; restoring it as it is",
            loose.display()
        )),
        "{out}"
    );
    // With its sidecar, no such warning.
    let out = Cmd::new()
        .args(["restore", "--yes"])
        .arg(&file)
        .consent_from_database_of(&file)
        .env("DATABASE_URL", pg.tcp_url(&target))
        .run();
    out.assert_success();
    assert_lacks(&out, &["has no metadata"]);
    pg.drop_db(&source);
    pg.drop_db(&target);
}

// ---------------------------------------------------------------------------------------------
// 13. A .env that fails to parse never prints its lines
// ---------------------------------------------------------------------------------------------

/// A distinctive password, in the .env's DATABASE_URL and in the bad lines.
const DOTENV_SECRET: &str = "Zebra42Quux";

#[test]
fn a_dotenv_that_fails_to_parse_names_the_line_never_the_value() {
    let bad_lines = [
        // An unclosed quote.
        (format!("DB_PASSWORD=\"{DOTENV_SECRET}"), "quote"),
        // An apostrophe inside single quotes.
        (format!("DB_PASSWORD='{DOTENV_SECRET}'s'"), "single quote"),
        // An unquoted space.
        (format!("DB_PASSWORD={DOTENV_SECRET} and more"), "space"),
    ];
    for (bad, what) in bad_lines {
        let cmd = Cmd::new();
        fs::write(
            cmd.dir().join(".env"),
            format!(
                "# settings\nDATABASE_URL=postgresql://app:{DOTENV_SECRET}@127.0.0.1:5432/db\n{bad}\nBACKUP_DIR=b\n"
            ),
        )
        .unwrap();
        for extra in [&[][..], &["--log-format", "json"], &["--json"]] {
            let out = Cmd::new()
                .current_dir(cmd.dir())
                .args(extra)
                .arg("list")
                .run();
            out.assert_code(2);
            assert_lacks(&out, &[DOTENV_SECRET, "Zebra", "and more"]);
            assert_has(&out, &[".env", "line 3", "DB_PASSWORD", what]);
            if extra == ["--json"] {
                let v = out.json();
                assert_eq!(v["exit_code"], 2, "{out}");
                assert!(v["error"].as_str().unwrap().contains("line 3"), "{out}");
            }
        }
    }
}

#[test]
fn an_unquoted_dollar_in_a_dotenv_value_is_warned_about_without_the_value() {
    let cmd = Cmd::new();
    fs::write(
        cmd.dir().join(".env"),
        "BACKUP_DIR=b\n# the password below loses its tail\nDB_PASSWORD=Zebra$Quux\nQUOTED='Zebra$Quux'\n",
    )
    .unwrap();
    let out = Cmd::new().current_dir(cmd.dir()).arg("list").run();
    out.assert_success();
    let warning = out
        .stderr
        .lines()
        .find(|l| l.contains("DB_PASSWORD"))
        .unwrap_or_else(|| panic!("no warning:\n{out}"));
    assert!(
        warning.contains("WARN") && warning.contains("line 3") && warning.contains("single quotes"),
        "{out}"
    );
    assert!(warning.contains(".env"), "{out}");
    assert_lacks(&out, &["Zebra", "Quux", "QUOTED"]);
}

// ---------------------------------------------------------------------------------------------
// 14. The lock file is never followed
// ---------------------------------------------------------------------------------------------

#[test]
fn a_link_planted_as_the_lock_file_is_refused_and_its_target_untouched() {
    let work = tempdir();
    let source = db_with_rows("secrets_lock", 5);
    let precious = work.path().join("precious");
    fs::write(&precious, "precious data\n").unwrap();
    for kind in ["symlink", "hard link"] {
        let backups = work
            .path()
            .join(format!("backups-{}", kind.replace(' ', "-")));
        fs::create_dir(&backups).unwrap();
        chmod(&backups, 0o700);
        let lock = backups.join(".aos-backup.lock");
        if kind == "symlink" {
            std::os::unix::fs::symlink(&precious, &lock).unwrap();
        } else {
            fs::hard_link(&precious, &lock).unwrap();
        }
        let out = backup(&source, &backups).run();
        out.assert_code(3);
        assert_has(&out, &[".aos-backup.lock", "refusing"]);
        assert_has(
            &out,
            &[if kind == "symlink" {
                "symbolic link"
            } else {
                "hard link"
            }],
        );
        assert_eq!(fs::read_to_string(&precious).unwrap(), "precious data\n");
        assert_eq!(backups_in(&backups), Vec::<String>::new(), "{out}");
    }
    server().drop_db(&source);
}

#[test]
fn a_backup_folder_others_may_write_is_warned_about() {
    let work = tempdir();
    let source = db_with_rows("secrets_loose_dir", 5);
    let backups = work.path().join("backups");
    fs::create_dir(&backups).unwrap();
    chmod(&backups, 0o777);
    let out = backup(&source, &backups).run();
    out.assert_success();
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains("writable by group or others")),
        "{out}"
    );
    chmod(&backups, 0o700);
    let out = backup(&source, &backups).args(["--name", "again"]).run();
    out.assert_success();
    assert_lacks(&out, &["writable by group or others"]);
    server().drop_db(&source);
}

// ---------------------------------------------------------------------------------------------
// 15. A directory archive is private
// ---------------------------------------------------------------------------------------------

#[test]
fn every_file_and_folder_of_a_directory_backup_is_private() {
    let work = tempdir();
    let source = db_with_rows("secrets_dir_modes", 500);
    let backups = work.path().join("backups");
    let dir = backed_up(&backup(&source, &backups).args(["--format", "directory", "--jobs", "2"]));
    assert!(dir.is_dir());
    assert_eq!(mode_of(&dir), 0o700, "{dir:?}");
    let mut seen = 0;
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                assert_eq!(mode_of(&p), 0o700, "{p:?}");
                stack.push(p);
            } else {
                assert_eq!(mode_of(&p), 0o600, "{p:?} is {:o}", mode_of(&p));
                seen += 1;
            }
        }
    }
    assert!(seen >= 2, "toc.dat and a data file at least");
    for name in backups_in(&backups) {
        let p = backups.join(&name);
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode_of(&p), want, "{p:?}");
    }
    server().drop_db(&source);
}

// ---------------------------------------------------------------------------------------------
// 16. One rule for every secret file
// ---------------------------------------------------------------------------------------------

#[track_caller]
fn assert_refused_secret(out: &Output, file: &Path, mode: &str) {
    out.assert_code(2);
    assert_has(out, &[&file.display().to_string(), mode]);
    assert!(
        hint(out).contains(&format!("chmod 600 {}", file.display())),
        "{out}"
    );
}

#[test]
fn a_passphrase_file_others_can_read_is_refused() {
    let work = tempdir();
    let source = db_with_rows("secrets_loose_pass", 5);
    let pass = work.path().join("pass.txt");
    fs::write(&pass, "a passphrase\n").unwrap();
    let backups = work.path().join("backups");
    for mode in [0o644, 0o640, 0o604, 0o620] {
        chmod(&pass, mode);
        let out = backup(&source, &backups)
            .env("BACKUP_ENCRYPTION", "age")
            .env("BACKUP_PASSPHRASE_FILE", &pass)
            .run();
        assert_refused_secret(&out, &pass, &format!("{mode:04o}"));
        assert!(backups_in(&backups).is_empty(), "{out}");
    }
    // Private, it is used; and a backup made with it is read only with a private one.
    chmod(&pass, 0o600);
    let file = backed_up(
        &backup(&source, &backups)
            .env("BACKUP_ENCRYPTION", "age")
            .env("BACKUP_PASSPHRASE_FILE", &pass),
    );
    chmod(&pass, 0o644);
    let out = Cmd::new()
        .args(["verify", "--passphrase-file"])
        .arg(&pass)
        .arg(&file)
        .env("BACKUP_DIR", &backups)
        .run();
    assert_refused_secret(&out, &pass, "0644");
    server().drop_db(&source);
}

#[test]
fn an_identity_file_others_can_read_is_refused_and_a_recipients_file_is_not() {
    let work = tempdir();
    let key = age_keygen(work.path(), "id.txt");
    let recipients = work.path().join("recipients.txt");
    fs::write(&recipients, format!("{}\n", key.recipient)).unwrap();
    chmod(&recipients, 0o644);
    let source = db_with_rows("secrets_loose_id", 5);
    let backups = work.path().join("backups");
    // Public keys are not secret: a readable recipients file is fine.
    let file = backed_up(
        &backup(&source, &backups)
            .env("BACKUP_ENCRYPTION", "age")
            .env("BACKUP_AGE_RECIPIENTS", &recipients),
    );
    chmod(&key.identity, 0o640);
    let out = Cmd::new()
        .arg("verify")
        .arg(&file)
        .env("BACKUP_DIR", &backups)
        .env("BACKUP_AGE_IDENTITY", &key.identity)
        .run();
    assert_refused_secret(&out, &key.identity, "0640");
    let target = server().create_db("secrets_loose_id_dst");
    let out = Cmd::new()
        .args(["restore", "--yes"])
        .arg(&file)
        .consent_from_database_of(&file)
        .env("DATABASE_URL", server().tcp_url(&target))
        .env("BACKUP_AGE_IDENTITY", &key.identity)
        .run();
    assert_refused_secret(&out, &key.identity, "0640");
    chmod(&key.identity, 0o600);
    Cmd::new()
        .arg("verify")
        .arg(&file)
        .env("BACKUP_DIR", &backups)
        .env("BACKUP_AGE_IDENTITY", &key.identity)
        .run()
        .assert_success();
    server().drop_db(&source);
    server().drop_db(&target);
}

#[test]
fn a_config_file_holding_a_password_must_be_private() {
    let cmd = Cmd::new();
    let toml = cmd.dir().join("aos-backup.toml");
    // No password in it: its mode does not matter.
    fs::write(&toml, "backup_dir = \"b\"\n[retention]\nkeep_last = 2\n").unwrap();
    chmod(&toml, 0o644);
    Cmd::new()
        .current_dir(cmd.dir())
        .arg("list")
        .run()
        .assert_success();
    // A password in database_url: it is a secret file.
    fs::write(
        &toml,
        format!("backup_dir = \"b\"\ndatabase_url = \"postgresql://app:{DOTENV_SECRET}@127.0.0.1/db\"\n"),
    )
    .unwrap();
    for mode in [0o644, 0o640] {
        chmod(&toml, mode);
        let out = Cmd::new().current_dir(cmd.dir()).arg("list").run();
        assert_refused_secret(&out, &toml, &format!("{mode:04o}"));
        assert_lacks(&out, &[DOTENV_SECRET]);
    }
    chmod(&toml, 0o600);
    Cmd::new()
        .current_dir(cmd.dir())
        .arg("list")
        .run()
        .assert_success();
}
