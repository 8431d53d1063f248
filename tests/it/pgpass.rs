//! `~/.pgpass`: aos-backup's own connection finds the password where pg_dump does, so a cron
//! setup that keeps it there (and not in DATABASE_URL) works.

use crate::cmd::Cmd;
use crate::harness::{self, server};
use std::os::unix::fs::PermissionsExt;

fn url_without_password(db: &str) -> String {
    format!(
        "postgresql://{}@127.0.0.1:{}/{db}",
        harness::APP_ROLE,
        server().port
    )
}

fn write_pgpass(cmd: &Cmd, mode: u32) {
    // ':' and '\' are escaped in the password field, as libpq reads it.
    let escaped = harness::APP_PASSWORD
        .replace('\\', "\\\\")
        .replace(':', "\\:");
    let file = cmd.home().join(".pgpass");
    std::fs::write(
        &file,
        format!(
            "# test\nother:1:*:*:wrong\n127.0.0.1:{}:*:{}:{escaped}\n",
            server().port,
            harness::APP_ROLE
        ),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_password_kept_only_in_pgpass_is_found_for_backup_and_restore() {
    let pg = server();
    let db = pg.create_db("pgpass");
    pg.psql(
        &db,
        "SET ROLE app; CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 50) g;",
    );
    let backup = Cmd::new()
        .env("DATABASE_URL", url_without_password(&db))
        .args(["backup"]);
    write_pgpass(&backup, 0o600);
    let out = backup.run();
    out.assert_success();
    assert!(!out.stderr.contains(harness::APP_PASSWORD));
    let file = backup.dir().join(out.stdout_trimmed());
    let restore = Cmd::new()
        .env("DATABASE_URL", url_without_password(&db))
        .args(["restore", "--yes", &file.display().to_string()]);
    write_pgpass(&restore, 0o600);
    restore.run().assert_success();
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM t"), "50");
}

#[test]
fn without_pgpass_or_with_a_readable_one_the_login_fails_clearly() {
    let pg = server();
    let db = pg.create_db("pgpass_missing");
    let none = Cmd::new()
        .env("DATABASE_URL", url_without_password(&db))
        .args(["backup"])
        .run();
    none.assert_code(7);
    assert!(none.stderr.contains("password"), "{none}");

    // libpq ignores a password file that others can read, and so do we (with a warning).
    let open = Cmd::new()
        .env("DATABASE_URL", url_without_password(&db))
        .args(["backup"]);
    write_pgpass(&open, 0o644);
    let out = open.run();
    out.assert_code(7);
    assert!(out.stderr.contains("chmod 600"), "{out}");
}
