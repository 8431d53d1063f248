//! Many databases in one run, against real PostgreSQL servers:
//!
//! - `backup --all-databases` on a server of its own (no other test adds databases there), as a
//!   role that may connect to some databases only: each database it may connect to goes into its
//!   own subfolder (a name with `/` and `.` escaped), templates and the others are left out, one
//!   database that cannot be dumped fails alone, the exit code and the summary say so, `--json`
//!   gives one result per database, `list --all-databases` shows the subfolders;
//! - the config file's `[[databases]]` list: URLs from a variable and from a private file (a file
//!   others can read is refused, for that database only), each database's own retention, the
//!   rule between DATABASE_URL and the list, no password in any output;
//! - a password written in the list, and the reserved `destinations`, are refused;
//! - SIGTERM to aos-backup alone stops the running dump and starts no other database.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::cmd::{self, Cmd, Output};
use crate::harness::{self, own_server, percent_encode, quote_ident, server, PgServer};
use crate::support::{self, assert_contains, backup_names, read_sidecar, tempdir};

/// The role that backs up the whole own server: it may connect to some databases only.
const ROLE: &str = "many_backup";
const ROLE_PASSWORD: &str = "M4ny-Pa55:w@rd";

/// A database name that must be escaped to make a folder.
const WEIRD: &str = "we/ird..name";
const WEIRD_FOLDER: &str = "we%2Fird%2E%2Ename";

/// The own server, with `shop` and [`WEIRD`] (readable by [`ROLE`]), `blog_fail` (a table
/// [`ROLE`] may not read) and `hidden` (no CONNECT for [`ROLE`]); `postgres` is closed to it too.
fn own() -> &'static PgServer {
    static READY: OnceLock<()> = OnceLock::new();
    let s = own_server();
    READY.get_or_init(|| {
        s.psql(
            "postgres",
            &format!(
                "CREATE ROLE {ROLE} LOGIN PASSWORD {};\nREVOKE CONNECT ON DATABASE postgres FROM PUBLIC;",
                harness::quote_literal(ROLE_PASSWORD)
            ),
        );
        for db in ["shop", WEIRD, "blog_fail", "hidden"] {
            s.psql(
                "postgres",
                &format!("CREATE DATABASE {} OWNER app", quote_ident(db)),
            );
            s.psql(
                db,
                &format!(
                    "SET ROLE app;\nCREATE TABLE items (id int PRIMARY KEY, name text);\n\
                     INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 50) g;\n\
                     GRANT SELECT ON items TO {ROLE};"
                ),
            );
        }
        s.psql(
            "blog_fail",
            "SET ROLE app;\nCREATE TABLE secret (a int);",
        );
        s.psql("postgres", "REVOKE CONNECT ON DATABASE hidden FROM PUBLIC;");
    });
    s
}

/// [`ROLE`]'s URL to `db` on the own server, over TCP with its password.
fn role_url(db: &str) -> String {
    format!(
        "postgresql://{ROLE}:{}@127.0.0.1:{}/{}",
        percent_encode(ROLE_PASSWORD),
        own().port,
        percent_encode(db)
    )
}

/// `aos-backup` with `BACKUP_DIR=dir` and the harness's client tools.
fn aos(dir: &Path) -> Cmd {
    Cmd::new()
        .env("BACKUP_DIR", dir)
        .env("PG_BIN", &server().bindir)
}

/// Neither stream holds `password`, plain or percent-encoded.
#[track_caller]
fn assert_no_password(out: &Output, password: &str) {
    for p in [password.to_string(), percent_encode(password)] {
        assert!(
            !out.stdout.contains(&p) && !out.stderr.contains(&p),
            "the password is shown:\n{out}"
        );
    }
}

/// The backups (not sidecars) in `dir`.
fn dumps(dir: &Path) -> Vec<String> {
    backup_names(dir)
        .into_iter()
        .filter(|n| !n.ends_with(".meta.json"))
        .collect()
}

#[test]
fn all_databases_backs_up_each_database_it_may_connect_to_into_its_subfolder() {
    own();
    let work = tempdir();
    let dir = work.path().join("backups");
    let out = aos(&dir)
        .env("DATABASE_URL", role_url("shop"))
        .args(["backup", "--all-databases"])
        .run();
    // blog_fail's dump fails (permission denied): exit 1, the others are made.
    out.assert_code(1);
    assert_no_password(&out, ROLE_PASSWORD);
    let paths: Vec<PathBuf> = out.stdout.lines().map(PathBuf::from).collect();
    assert_eq!(paths.len(), 2, "{out}");
    assert_eq!(paths[0].parent(), Some(dir.join("shop").as_path()), "{out}");
    assert_eq!(
        paths[1].parent(),
        Some(dir.join(WEIRD_FOLDER).as_path()),
        "{out}"
    );
    assert_eq!(read_sidecar(&paths[0])["database"], "shop");
    assert_eq!(read_sidecar(&paths[1])["database"], WEIRD);
    assert_contains(
        &out,
        &out.stderr,
        &[
            "blog_fail",
            "permission denied",
            "summary: 2 of 3 database(s) backed up, 1 failed",
        ],
    );
    // No template, no database the role may not connect to.
    let mut folders = support::names(&dir);
    folders.sort();
    assert_eq!(folders, ["blog_fail", "shop", WEIRD_FOLDER], "{out}");
    assert!(dumps(&dir.join("blog_fail")).is_empty(), "{out}");

    let out = aos(&dir)
        .env("DATABASE_URL", role_url("shop"))
        .args(["--json", "backup", "--all-databases", "--name", "again"])
        .run();
    out.assert_code(1);
    let results = out.json();
    let results = results.as_array().unwrap();
    let by = |name: &str| {
        results
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no result for {name}:\n{out}"))
    };
    assert_eq!(results.len(), 3, "{out}");
    let failed = by("blog_fail");
    assert_eq!(failed["ok"], false);
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["exit_code"], 1);
    assert!(failed["path"].is_null());
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("permission denied"),
        "{out}"
    );
    for name in ["shop", WEIRD] {
        let r = by(name);
        assert_eq!(r["ok"], true, "{out}");
        assert_eq!(r["exit_code"], 0);
        assert!(Path::new(r["path"].as_str().unwrap()).is_file(), "{out}");
    }
    assert_eq!(dumps(&dir.join("shop")).len(), 2);

    let out = aos(&dir).args(["list", "--all-databases"]).run();
    out.assert_success();
    assert_contains(
        &out,
        &out.stdout,
        &["shop/", &format!("{WEIRD_FOLDER}/"), WEIRD],
    );
    let out = aos(&dir).args(["--json", "list", "--all-databases"]).run();
    out.assert_success();
    let entries = out.json();
    let folders: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["folder"].as_str().unwrap())
        .collect();
    assert_eq!(
        folders,
        ["shop", "shop", WEIRD_FOLDER, WEIRD_FOLDER],
        "{out}"
    );
}

#[test]
fn all_databases_needs_a_database_it_may_connect_to_and_a_server() {
    let s = own();
    let work = tempdir();
    let out = aos(work.path()).args(["backup", "--all-databases"]).run();
    out.assert_code(2);
    assert_contains(&out, &out.stderr, &["DATABASE_URL is not set"]);
    let closed = format!(
        "postgresql://{ROLE}:{}@127.0.0.1:{}/hidden",
        percent_encode(ROLE_PASSWORD),
        s.port
    );
    let out = aos(work.path())
        .env("DATABASE_URL", closed)
        .args(["backup", "--all-databases"])
        .run();
    out.assert_code(7);
    assert_no_password(&out, ROLE_PASSWORD);
    assert!(support::names_if_any(work.path()).is_empty(), "{out}");
}

/// A database of the shared server owned by `app`, with one table.
fn db_with(prefix: &str) -> String {
    let pg = server();
    let db = pg.create_db(prefix);
    pg.psql(
        &db,
        "SET ROLE app;\nCREATE TABLE items (id int PRIMARY KEY, name text);\n\
         INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 50) g;",
    );
    db
}

/// A config file listing `shop` (URL in `$SHOP_URL`, keep the last backup only) and `blog` (URL
/// in the file `url_file`), under a global policy that keeps five.
fn two_database_config(work: &Path, url_file: &Path) -> PathBuf {
    let cfg = work.join("aos-many.toml");
    fs::write(
        &cfg,
        format!(
            "[retention]\nkeep_last = 5\n\n\
             [[databases]]\nname = \"shop\"\nurl_env = \"SHOP_URL\"\nretention = {{ keep_last = 1 }}\n\n\
             [[databases]]\nname = \"blog\"\nurl_file = \"{}\"\n",
            url_file.display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn configured_databases_get_their_url_from_a_variable_or_a_private_file_and_their_own_retention() {
    let pg = server();
    let (shop, blog) = (db_with("many_shop"), db_with("many_blog"));
    let work = tempdir();
    let dir = work.path().join("backups");
    let url_file = work.path().join("blog.url");
    fs::write(&url_file, format!("{}\n", pg.tcp_url(&blog))).unwrap();
    support::set_mode(&url_file, 0o600);
    let cfg = two_database_config(work.path(), &url_file);
    let run = |time: &str, args: &[&str]| {
        let out = aos(&dir)
            .env("AOS_BACKUP_CONFIG", &cfg)
            .env("SHOP_URL", pg.tcp_url(&shop))
            .env("AOS_BACKUP_NOW", time)
            .args(args)
            .run();
        assert_no_password(&out, harness::APP_PASSWORD);
        out
    };

    // Without DATABASE_URL, `backup` backs up the list, each into its folder.
    for time in ["2024-05-01T10:00:00Z", "2024-05-02T10:00:00Z"] {
        let out = run(time, &["backup"]);
        out.assert_success();
        let paths: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(paths.len(), 2, "{out}");
        assert!(
            paths[0].starts_with(&dir.join("shop").display().to_string()),
            "{out}"
        );
        assert!(
            paths[1].starts_with(&dir.join("blog").display().to_string()),
            "{out}"
        );
    }
    assert_eq!(dumps(&dir.join("shop")).len(), 1, "shop keeps its last one");
    assert_eq!(
        dumps(&dir.join("blog")).len(),
        2,
        "blog follows the global policy"
    );
    let blog_dump = dir.join("blog").join(&dumps(&dir.join("blog"))[0]);
    assert_eq!(read_sidecar(&blog_dump)["database"], blog.as_str());

    let out = run("2024-05-02T11:00:00Z", &["--json", "config"]);
    out.assert_success();
    let listed = &out.json()["databases"];
    assert_eq!(listed[0]["name"], "shop");
    assert_eq!(listed[0]["url_from"], "$SHOP_URL");
    assert_eq!(listed[0]["retention"]["keep_last"], 1);
    assert_eq!(
        listed[1]["url_from"],
        format!("file {}", url_file.display())
    );
    assert!(listed[1]["url"].is_null());

    // A URL file others can read is refused, for its database only.
    support::set_mode(&url_file, 0o644);
    let out = run("2024-05-03T10:00:00Z", &["backup"]);
    out.assert_code(2);
    assert_eq!(out.stdout.lines().count(), 1, "{out}");
    assert_contains(
        &out,
        &out.stderr,
        &[
            "blog",
            "chmod 600",
            "1 of 2 database(s) backed up, 1 failed",
        ],
    );
    support::set_mode(&url_file, 0o600);

    // DATABASE_URL set: its database alone, in the folder itself, unless --all-configured.
    let out = run("2024-05-04T10:00:00Z", &["backup"]);
    out.assert_success();
    let out = aos(&dir)
        .env("DATABASE_URL", pg.tcp_url(&shop))
        .env("AOS_BACKUP_CONFIG", &cfg)
        .args(["backup", "--no-prune"])
        .run();
    out.assert_success();
    assert_eq!(
        Path::new(out.stdout_trimmed()).parent(),
        Some(dir.as_path())
    );
    assert_contains(&out, &out.stderr, &["--all-configured"]);
    let out = aos(&dir)
        .env("DATABASE_URL", pg.tcp_url(&shop))
        .env("AOS_BACKUP_CONFIG", &cfg)
        .env("SHOP_URL", pg.tcp_url(&shop))
        .args(["backup", "--all-configured"])
        .run();
    out.assert_success();
    assert_eq!(out.stdout.lines().count(), 2, "{out}");

    // A variable that is not set fails its database only.
    let out = aos(&dir)
        .env("AOS_BACKUP_CONFIG", &cfg)
        .args(["backup"])
        .run();
    out.assert_code(2);
    assert_contains(&out, &out.stderr, &["SHOP_URL", "is not set"]);
    assert_eq!(out.stdout.lines().count(), 1, "{out}");
}

#[test]
fn a_password_in_the_list_and_reserved_keys_are_refused() {
    let work = tempdir();
    let cfg = work.path().join("aos.toml");
    let cases = [
        (
            "[[databases]]\nname = \"a\"\nurl = \"postgresql://u:Hunter2-secret@h/a\"\n",
            "holds a password",
        ),
        (
            "[[databases]]\nname = \"a\"\nurl_env = \"A\"\ndestinations = [\"s3://b\"]\n",
            "reserved",
        ),
        (
            "[[databases]]\nname = \"a\"\nurl_env = \"A\"\n[[databases]]\nname = \"a\"\nurl_env = \"B\"\n",
            "twice",
        ),
    ];
    for (text, needle) in cases {
        fs::write(&cfg, text).unwrap();
        support::set_mode(&cfg, 0o600);
        let out = aos(work.path())
            .env("AOS_BACKUP_CONFIG", &cfg)
            .arg("backup")
            .run();
        out.assert_code(2);
        assert_contains(&out, &out.stderr, &[needle]);
        assert_no_password(&out, "Hunter2-secret");
    }
    let out = aos(work.path()).args(["backup", "--all-configured"]).run();
    out.assert_code(2);
    assert_contains(&out, &out.stderr, &["no [[databases]]"]);
}

/// Backends of `db` waiting for a lock.
fn waiting(db: &str) -> u32 {
    server()
        .psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = {} AND wait_event_type = 'Lock'",
                harness::quote_literal(db)
            ),
        )
        .parse()
        .unwrap()
}

#[test]
fn sigterm_stops_the_running_dump_and_starts_no_other_database() {
    let pg = server();
    let (first, second) = (db_with("many_first"), db_with("many_second"));
    let work = tempdir();
    let dir = work.path().join("backups");
    let cfg = work.path().join("aos.toml");
    fs::write(
        &cfg,
        "[[databases]]\nname = \"first\"\nurl_env = \"FIRST_URL\"\n\
         [[databases]]\nname = \"second\"\nurl_env = \"SECOND_URL\"\n",
    )
    .unwrap();
    let blocker = crate::support::Blocker::lock(&first, "items");
    let cmd = aos(&dir)
        .env("AOS_BACKUP_CONFIG", &cfg)
        .env("FIRST_URL", pg.tcp_url(&first))
        .env("SECOND_URL", pg.tcp_url(&second))
        .args(["backup", "--all-configured"]);
    let child = cmd.spawn();
    support::wait_until(
        "pg_dump waits for the lock",
        Duration::from_secs(30),
        Some(&child),
        || waiting(&first) > 0,
    );
    // aos-backup alone, as systemd's stop does: its pg_dump must be stopped by it.
    cmd::signal(&child, libc::SIGTERM);
    let out = cmd.wait(child);
    out.assert_code(143);
    assert!(out.stdout_trimmed().is_empty(), "{out}");
    assert_contains(
        &out,
        &out.stderr,
        &[
            "interrupted  first",
            "not started  second",
            "0 of 2 database(s) backed up, 1 interrupted, 1 not started",
        ],
    );
    support::wait_until(
        "the dump's backend is gone",
        Duration::from_secs(10),
        None,
        || waiting(&first) == 0,
    );
    drop(blocker);
    assert!(backup_names(&dir.join("first")).is_empty(), "{out}");
    assert!(!dir.join("second").exists(), "{out}");
}
