//! The features working together: a drill and a missing off-site copy are told to the
//! notification destinations, and the Telegram bot's `/status` reports the last drill.

use std::time::Duration;

use crate::catcher::{Catcher, Reply};
use crate::cmd::{signal, Cmd};
use crate::harness::server;
use crate::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
use crate::support::{filled_db, read_sidecar, tempdir, write_json};

const HOOK_TOKEN: &str = "SecretWiringToken31";

fn aos(dir: &std::path::Path, db: &str, c: &Catcher) -> Cmd {
    let pg = server();
    Cmd::new()
        .env("BACKUP_DIR", dir)
        .env("DATABASE_URL", pg.tcp_url(db))
        .env("PG_BIN", &pg.bindir)
        .env(
            "BACKUP_NOTIFY",
            format!("generic+{}/hook?token={HOOK_TOKEN}&on=always", c.url()),
        )
}

#[test]
fn a_passed_and_a_failed_drill_are_notified_with_rto_and_the_mismatch() {
    let db = filled_db("wiring_drill");
    let dir = tempdir();
    let c = Catcher::start();
    let out = aos(dir.path(), &db, &c).arg("backup").run();
    out.assert_success();
    let backup = std::path::PathBuf::from(out.stdout_trimmed());
    let out = aos(dir.path(), &db, &c).args(["drill", "latest"]).run();
    out.assert_success();
    let hooks = c.wait_for("/hook", 2, Duration::from_secs(10));
    let passed = hooks
        .iter()
        .map(|r| r.json())
        .find(|j| j["event"] == "drill.passed");
    let passed = passed.unwrap_or_else(|| panic!("no drill.passed event:\n{out}"));
    assert_eq!(passed["database"], db.as_str(), "{passed}");
    assert_eq!(passed["backup_id"], read_sidecar(&backup)["id"], "{passed}");
    assert!(passed.to_string().contains("RTO: "), "{passed}");
    assert!(!out.stderr.contains(HOOK_TOKEN), "{out}");

    let mut meta = read_sidecar(&backup);
    let big = meta["row_counts"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|t| t["table"] == "big")
        .unwrap();
    big["rows"] = 1.into();
    write_json(&crate::support::sidecar(&backup), &meta);
    aos(dir.path(), &db, &c)
        .args(["drill", "latest"])
        .run()
        .assert_code(11);
    let hooks = c.wait_for("/hook", 3, Duration::from_secs(10));
    let failed = hooks
        .iter()
        .map(|r| r.json())
        .find(|j| j["event"] == "drill.failed")
        .expect("a drill.failed event");
    assert_eq!(failed["status"], "failure", "{failed}");
    assert!(failed.to_string().contains("public.big"), "{failed}");
}

#[test]
fn a_missing_off_site_copy_is_notified_naming_the_destination() {
    let mut s3 = S3Server::start("wiring");
    s3.stop();
    let db = server().create_db("wiring_offsite");
    let dir = tempdir();
    let c = Catcher::start();
    let out = aos(dir.path(), &db, &c)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_ENDPOINT_URL", &s3.endpoint)
        .env("BACKUP_REMOTE", "s3://wiring/notified")
        .env("BACKUP_REMOTE_TIMEOUT", "3s")
        .arg("backup")
        .run();
    out.assert_code(8);
    let hooks = c.wait_for("/hook", 2, Duration::from_secs(10));
    let events: Vec<serde_json::Value> = hooks.iter().map(|r| r.json()).collect();
    let made = events
        .iter()
        .find(|j| j["event"] == "backup.succeeded")
        .expect("backup.succeeded");
    assert_eq!(made["destinations"][0], "s3://wiring/notified", "{made}");
    let missing = events
        .iter()
        .find(|j| j["event"] == "offsite.missing")
        .unwrap_or_else(|| panic!("no offsite.missing event: {events:?}"));
    assert_eq!(
        missing["destinations"][0], "s3://wiring/notified",
        "{missing}"
    );
    assert!(
        missing["error"]
            .as_str()
            .unwrap()
            .contains("off-site copy missing"),
        "{missing}"
    );
    assert!(
        !out.stderr.contains(SECRET_KEY) && !out.stderr.contains(HOOK_TOKEN),
        "{out}"
    );
}

#[test]
fn the_bots_status_reports_the_last_drill() {
    let db = filled_db("wiring_bot");
    let dir = tempdir();
    let quiet = Catcher::start();
    aos(dir.path(), &db, &quiet)
        .arg("backup")
        .run()
        .assert_success();
    aos(dir.path(), &db, &quiet)
        .args(["drill", "latest"])
        .run()
        .assert_success();
    // The record next to the backup goes (as when prune deletes the backup): the folder still
    // keeps the database's most recent drill.
    let records: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".dump.zst.drill.json"))
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    std::fs::remove_file(&records[0]).unwrap();
    let c = Catcher::start();
    c.script(
        "/getUpdates",
        vec![Reply::Status(
            200,
            r#"{"ok":true,"result":[{"update_id":1,"message":{"message_id":1,"from":{"id":77},"chat":{"id":77},"text":"/status"}}]}"#.into(),
        )],
    );
    let cmd = Cmd::new()
        .env("BACKUP_DIR", dir.path())
        .env("DATABASE_URL", server().tcp_url(&db))
        .env("BACKUP_TELEGRAM_TOKEN", "777:SecretBot")
        .env("BACKUP_TELEGRAM_OWNERS", "77")
        .env("BACKUP_TELEGRAM_API_URL", c.url())
        .arg("telegram-bot");
    let child = cmd.spawn();
    let sent = c.wait_for("/sendMessage", 1, Duration::from_secs(30));
    signal(&child, libc::SIGTERM);
    cmd.wait(child).assert_success();
    let text = sent[0].json()["text"].as_str().unwrap().to_string();
    assert!(text.contains("Last drill: passed"), "{text}");
}
