//! Where the children connect, and what reaches the screen: `PG*` variables in `.env` send
//! pg_dump, pg_restore and psql exactly where aos-backup's own connection (and its guards)
//! looked; a password with an unencoded `/` is refused without being shown; a secret file of any
//! kind must be private and ours; names from sidecars cannot forge log lines.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cmd::{Cmd, Output};
use crate::harness::{percent_encode, server, SUPERUSER};
use crate::support::{set_mode as chmod, tempdir};

/// A database with table `fix1_probe` (owned by `app`) holding `ids`.
fn db_with_probe(prefix: &str, ids: &[i32]) -> String {
    let pg = server();
    let db = pg.create_db(prefix);
    let values: Vec<String> = ids.iter().map(|i| format!("({i})")).collect();
    pg.psql(
        &db,
        &format!(
            "SET ROLE app; CREATE TABLE fix1_probe (id int); INSERT INTO fix1_probe VALUES {};",
            values.join(", ")
        ),
    );
    db
}

fn probe(db: &str) -> String {
    server().psql(
        db,
        "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM fix1_probe",
    )
}

/// `host=SOCKET&port=PORT` for a URL's query.
fn socket_query() -> String {
    let pg = server();
    format!(
        "host={}&port={}",
        percent_encode(&pg.socket_dir.to_string_lossy()),
        pg.port
    )
}

fn write_env(cmd: &Cmd, lines: &[String]) {
    fs::write(cmd.dir().join(".env"), format!("{}\n", lines.join("\n"))).unwrap();
}

fn sidecar(file: &Path) -> serde_json::Value {
    let mut name = file.file_name().unwrap().to_os_string();
    name.push(".meta.json");
    serde_json::from_str(&fs::read_to_string(file.with_file_name(name)).unwrap()).unwrap()
}

/// Runs a backup that must succeed; returns the file.
#[track_caller]
fn backed_up(cmd: &Cmd) -> PathBuf {
    let out = cmd.run();
    out.assert_success();
    let path = cmd.dir().join(out.stdout_trimmed());
    assert!(path.exists(), "{path:?}:\n{out}");
    path
}

/// Restores `file` into a fresh database over the socket and returns what `fix1_probe` holds.
#[track_caller]
fn restored_probe(file: &Path) -> String {
    let pg = server();
    let dst = pg.create_db("fix1_check");
    Cmd::new()
        .arg("restore")
        .arg(file)
        .consent_from_database_of(file)
        .env("DATABASE_URL", pg.socket_url(&dst))
        .run()
        .assert_success();
    let got = probe(&dst);
    pg.drop_db(&dst);
    got
}

// ---------------------------------------------------------------------------------------------
// 1. PG* variables in .env reach the children: one resolution of the connection target
// ---------------------------------------------------------------------------------------------

#[test]
fn a_pgdatabase_in_dotenv_is_the_database_pg_dump_dumps_and_the_sidecar_names() {
    let work = tempdir();
    let src = db_with_probe("fix1_envdb", &[1, 2, 3]);
    let cmd = Cmd::new()
        .arg("backup")
        .env("BACKUP_DIR", work.path().join("b"));
    write_env(
        &cmd,
        &[
            format!("DATABASE_URL=postgresql://{SUPERUSER}@/?{}", socket_query()),
            format!("PGDATABASE={src}"),
        ],
    );
    let file = backed_up(&cmd);
    assert_eq!(sidecar(&file)["database"], src.as_str());
    assert_eq!(restored_probe(&file), "1,2,3");
    server().drop_db(&src);
}

#[test]
fn pghost_pgport_and_pguser_in_dotenv_reach_pg_dump() {
    let work = tempdir();
    let pg = server();
    let src = db_with_probe("fix1_envhost", &[4, 5]);
    // The URL names only the database: host, port and user come from .env. Without them, libpq
    // would use its default socket, port 5432 and the OS user.
    let cmd = Cmd::new()
        .arg("backup")
        .env("BACKUP_DIR", work.path().join("b"));
    write_env(
        &cmd,
        &[
            format!("DATABASE_URL=postgresql:///{}", percent_encode(&src)),
            format!("PGHOST={}", pg.socket_dir.display()),
            format!("PGPORT={}", pg.port),
            "PGUSER=app".to_string(),
        ],
    );
    let file = backed_up(&cmd);
    let meta = sidecar(&file);
    assert_eq!(meta["database"], src.as_str());
    assert_eq!(meta["host"], pg.socket_dir.to_string_lossy().as_ref());
    assert_eq!(meta["port"], pg.port);
    assert_eq!(restored_probe(&file), "4,5");

    // PGUSER alone (host, port and database in the URL): pg_dump connects as that user too.
    let cmd = Cmd::new()
        .arg("backup")
        .env("BACKUP_DIR", work.path().join("b"))
        .env("AOS_BACKUP_NOW", "2030-01-01T00:00:00Z");
    write_env(
        &cmd,
        &[
            format!(
                "DATABASE_URL=postgresql:///{}?{}",
                percent_encode(&src),
                socket_query()
            ),
            "PGUSER=app".to_string(),
        ],
    );
    let file = backed_up(&cmd);
    assert_eq!(restored_probe(&file), "4,5");
    pg.drop_db(&src);
}

#[test]
fn a_restore_goes_into_the_database_the_guards_checked_when_pgdatabase_is_in_dotenv() {
    let work = tempdir();
    let pg = server();
    let src = db_with_probe("fix1_rsrc", &[1, 2, 3]);
    let backups = work.path().join("b");
    let file = backed_up(
        &Cmd::new()
            .arg("backup")
            .env("DATABASE_URL", pg.socket_url(&src))
            .env("BACKUP_DIR", &backups),
    );
    // A populated target, named only by PGDATABASE in .env; the URL names no database, so a child
    // that missed .env would go to database "postgres".
    let target = db_with_probe("fix1_rdst", &[99]);
    let cmd = Cmd::new()
        .args(["restore", "--yes", "--from-database", &src])
        .arg(&file)
        .env("BACKUP_DIR", &backups);
    write_env(
        &cmd,
        &[
            format!("DATABASE_URL=postgresql://{SUPERUSER}@/?{}", socket_query()),
            format!("PGDATABASE={target}"),
        ],
    );
    let out = cmd.run();
    out.assert_success();
    assert!(out.stderr.contains(&target), "{out}");
    assert_eq!(probe(&target), "1,2,3", "{out}");
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT to_regclass('public.fix1_probe') IS NULL"
        ),
        "t",
        "the restore went into database postgres:\n{out}"
    );
    pg.drop_db(&src);
    pg.drop_db(&target);
}

// ---------------------------------------------------------------------------------------------
// 2. A password with an unencoded '/' is refused, never shown
// ---------------------------------------------------------------------------------------------

const SLASH_URLS: &[&str] = &[
    "postgresql://postgres:/Pw9secret@localhost/shop",
    "postgresql://postgres:5432/Pw9secret@localhost/shop",
];

#[track_caller]
fn assert_hidden(out: &Output) {
    for needle in ["Pw9secret", "localhost/shop"] {
        assert!(
            !out.stdout.contains(needle) && !out.stderr.contains(needle),
            "{needle:?} must not appear:\n{out}"
        );
    }
}

#[test]
fn a_url_with_an_unencoded_slash_in_the_password_is_a_usage_error_that_never_shows_it() {
    for url in SLASH_URLS {
        for flags in [&[][..], &["--log-format", "json"], &["--json"]] {
            let out = Cmd::new()
                .args(flags)
                .arg("backup")
                .env("DATABASE_URL", url)
                .run();
            out.assert_code(2);
            assert_hidden(&out);
            assert!(out.stderr.contains("unencoded"), "{out}");
            assert!(out.stderr.contains("%2F"), "{out}");
        }
        // From .env, and in `config`.
        let cmd = Cmd::new().arg("config");
        write_env(&cmd, &[format!("DATABASE_URL={url}")]);
        let out = cmd.run();
        assert_hidden(&out);
        assert!(out.stdout.contains("invalid"), "{out}");
        let out = Cmd::new()
            .current_dir(cmd.dir())
            .args(["--json", "config"])
            .run();
        assert_hidden(&out);
        let out = Cmd::new()
            .current_dir(cmd.dir())
            .args(["--log-format", "json", "restore", "latest"])
            .run();
        out.assert_code(2);
        assert_hidden(&out);
    }
}

#[test]
fn a_config_file_holding_such_a_url_must_be_private() {
    for url in SLASH_URLS {
        let cmd = Cmd::new().arg("list");
        let toml = cmd.dir().join("aos-backup.toml");
        fs::write(
            &toml,
            format!("backup_dir = \"b\"\ndatabase_url = \"{url}\"\n"),
        )
        .unwrap();
        chmod(&toml, 0o644);
        let out = cmd.run();
        out.assert_code(2);
        assert!(out.stderr.contains("0644"), "{out}");
        assert_hidden(&out);
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Secret files: every kind of file, and only ours (or root's)
// ---------------------------------------------------------------------------------------------

#[test]
fn a_world_writable_fifo_is_refused_as_a_passphrase_file() {
    let work = tempdir();
    let fifo = work.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
    chmod(&fifo, 0o666);
    // The attacker's writer: blocks until someone opens the FIFO for reading.
    let writer_path = fifo.clone();
    let writer = std::thread::spawn(move || {
        if let Ok(mut f) = fs::OpenOptions::new().write(true).open(&writer_path) {
            let _ = f.write_all(b"attacker pass\n");
        }
    });
    let pg = server();
    let src = db_with_probe("fix1_fifo", &[1]);
    let backups = work.path().join("b");
    let out = Cmd::new()
        .args(["backup", "--encrypt", "--passphrase-file"])
        .arg(&fifo)
        .env("DATABASE_URL", pg.socket_url(&src))
        .env("BACKUP_DIR", &backups)
        .timeout(std::time::Duration::from_secs(30))
        .run();
    // Unblock the writer if nobody read.
    let _ = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo);
    writer.join().unwrap();
    out.assert_code(2);
    assert!(out.stderr.contains("0666"), "{out}");
    assert!(
        out.stderr
            .contains(&format!("chmod 600 {}", fifo.display())),
        "{out}"
    );
    assert!(fs::read_dir(&backups).map_or(true, |d| d
        .filter_map(Result::ok)
        .all(|e| e.file_name() == ".aos-backup.lock")));
    pg.drop_db(&src);
}

#[test]
fn a_process_substitution_passphrase_is_accepted() {
    let work = tempdir();
    let pg = server();
    let src = db_with_probe("fix1_procsub", &[7]);
    let backups = work.path().join("b");
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#""$AOS" backup --encrypt --passphrase-file <(printf 'procsub pass\n')"#)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", work.path())
        .env("AOS", env!("CARGO_BIN_EXE_aos-backup"))
        .env("DATABASE_URL", pg.socket_url(&src))
        .env("BACKUP_DIR", &backups)
        .current_dir(work.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = work.path().join(stdout.trim());
    // It was read: the same passphrase from a private file opens the backup.
    let pass = work.path().join("pass");
    fs::write(&pass, "procsub pass\n").unwrap();
    chmod(&pass, 0o600);
    Cmd::new()
        .args(["verify", "--passphrase-file"])
        .arg(&pass)
        .arg(&file)
        .env("BACKUP_DIR", &backups)
        .run()
        .assert_success();
    pg.drop_db(&src);
}

/// The uid of the `postgres` OS user (the test server runs as it).
fn postgres_uid() -> u32 {
    let out = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn a_private_secret_file_owned_by_another_user_is_refused() {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let other = postgres_uid();
    assert_ne!(
        me, other,
        "the tests need another user than the one running them"
    );
    let work = tempdir();
    let pass = work.path().join("pass");
    fs::write(&pass, "their pass\n").unwrap();
    chmod(&pass, 0o600);
    std::os::unix::fs::chown(&pass, Some(other), None).unwrap();
    let pg = server();
    let src = db_with_probe("fix1_owner", &[1]);
    let out = Cmd::new()
        .args(["backup", "--encrypt", "--passphrase-file"])
        .arg(&pass)
        .env("DATABASE_URL", pg.socket_url(&src))
        .env("BACKUP_DIR", work.path().join("b"))
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("belongs to another user"), "{out}");
    assert!(out.stderr.contains(&format!("uid {other}")), "{out}");
    // Ours again: accepted.
    std::os::unix::fs::chown(&pass, Some(me), None).unwrap();
    Cmd::new()
        .args(["backup", "--encrypt", "--passphrase-file"])
        .arg(&pass)
        .env("DATABASE_URL", pg.socket_url(&src))
        .env("BACKUP_DIR", work.path().join("b"))
        .run()
        .assert_success();
    pg.drop_db(&src);
}

// ---------------------------------------------------------------------------------------------
// 4. Names from sidecars cannot forge log lines
// ---------------------------------------------------------------------------------------------

const EVIL_DB: &str = "shop\u{1b}[31mRED\nINFO fake line";

#[track_caller]
fn assert_no_forged_lines(out: &Output) {
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains('\u{1b}'), "raw escape:\n{out:?}");
        assert!(
            !text.lines().any(|l| l.starts_with("INFO fake line")),
            "forged line:\n{out}"
        );
    }
}

#[test]
fn a_sidecar_database_name_cannot_forge_log_lines() {
    let work = tempdir();
    let pg = server();
    let src = db_with_probe("fix1_evil", &[1]);
    let backups = work.path().join("b");
    let make = |now: &str| {
        backed_up(
            &Cmd::new()
                .arg("backup")
                .env("DATABASE_URL", pg.socket_url(&src))
                .env("BACKUP_DIR", &backups)
                .env("AOS_BACKUP_NOW", now),
        )
    };
    make("2030-01-01T00:00:00Z");
    let evil = make("2030-01-02T00:00:00Z");
    let mut name = evil.file_name().unwrap().to_os_string();
    name.push(".meta.json");
    let meta_path = evil.with_file_name(name);
    let mut meta = sidecar(&evil);
    meta["database"] = EVIL_DB.into();
    fs::write(&meta_path, serde_json::to_string_pretty(&meta).unwrap()).unwrap();
    let id = meta["id"].as_str().unwrap().to_string();

    let run = |args: &[&str]| {
        Cmd::new()
            .args(args)
            .env("BACKUP_DIR", &backups)
            .env("AOS_BACKUP_NOW", "2030-01-03T00:00:00Z")
            .run()
    };
    let out = run(&["list"]);
    out.assert_success();
    assert!(out.stderr.contains("backups of 2 databases"), "{out}");
    assert_no_forged_lines(&out);
    let out = run(&["list", "--database", "nothere"]);
    assert!(out.stderr.contains("it holds backups of"), "{out}");
    assert_no_forged_lines(&out);
    let out = run(&["prune", "--all-databases", "--keep-last", "1", "--dry-run"]);
    out.assert_success();
    assert_no_forged_lines(&out);

    // restore: the backup's database is not the target's; the refusal and its hint stay clean.
    let restore = |wanted: &str| {
        Cmd::new()
            .args(["restore", wanted])
            .env("BACKUP_DIR", &backups)
            .env("DATABASE_URL", pg.socket_url(&src))
            .env("AOS_BACKUP_NOW", "2030-01-03T00:00:00Z")
            .run()
    };
    let out = restore(&id);
    out.assert_code(3);
    assert_no_forged_lines(&out);
    let out = restore(&id[..id.len() - 2]);
    assert_no_forged_lines(&out);
    // `latest` of a database without backups names the others.
    let out = Cmd::new()
        .args(["restore", "latest"])
        .env("BACKUP_DIR", &backups)
        .env("DATABASE_URL", pg.socket_url("fix1_none"))
        .run();
    assert!(out.stderr.contains("holds backups of"), "{out}");
    assert_no_forged_lines(&out);
    pg.drop_db(&src);
}

/// A connection service (pg_service.conf) would send pg_dump where aos-backup's own checks cannot
/// follow: it is refused with a clear error, from the URL and from PGSERVICE alike, before
/// anything is written.
#[test]
fn a_connection_service_is_refused_before_anything_is_done() {
    let pg = server();
    let svc = tempdir();
    let file = svc.path().join("pg_service.conf");
    fs::write(
        &file,
        format!(
            "[mysvc]\nhost={}\nport={}\ndbname=postgres\nuser={SUPERUSER}\n",
            pg.socket_dir.display(),
            pg.port
        ),
    )
    .unwrap();
    let by_url = Cmd::new()
        .arg("backup")
        .env("DATABASE_URL", "postgresql://?service=mysvc")
        .env("PGSERVICEFILE", &file);
    let by_env = Cmd::new()
        .arg("backup")
        .env("DATABASE_URL", "postgresql:///postgres")
        .env("PGSERVICEFILE", &file);
    write_env(&by_env, &["PGSERVICE=mysvc".to_string()]);
    for cmd in [by_url, by_env] {
        let out = cmd.run();
        out.assert_code(2);
        assert!(out.stderr.contains("service"), "{out}");
        assert!(out.stderr.contains("DATABASE_URL"), "{out}");
        assert!(
            !cmd.dir().join("backups").exists(),
            "nothing is written:\n{out}"
        );
    }
}
