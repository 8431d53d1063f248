//! `aos-backup telegram-bot` against a local stand-in for the Telegram Bot API: a stranger's
//! `/backup` is refused and logged with their user id, an owner's `/backup` gets the file with
//! its summary, `/status` and `/list` answer, a failing poll backs off without ending the loop,
//! SIGTERM stops it cleanly, and the token is never printed.

use std::time::Duration;

use crate::catcher::{multipart, Catcher, Reply};
use crate::cmd::{signal, Cmd};
use crate::harness::server;

const TOKEN: &str = "654321:SecretBotToken";
const OWNER: i64 = 4242;
const STRANGER: i64 = 666;

fn update(id: i64, user: i64, text: &str) -> String {
    format!(
        r#"{{"update_id":{id},"message":{{"message_id":{id},"from":{{"id":{user}}},"chat":{{"id":{user}}},"text":"{text}"}}}}"#
    )
}

fn updates(list: &[String]) -> Reply {
    Reply::Status(
        200,
        format!(r#"{{"ok":true,"result":[{}]}}"#, list.join(",")),
    )
}

#[test]
fn owners_get_backups_and_strangers_are_refused() {
    let db = server().create_db("tgbot");
    server().psql(
        &db,
        "SET ROLE app; CREATE TABLE t (id int); INSERT INTO t VALUES (1);",
    );
    let c = Catcher::start();
    c.script(
        "/getUpdates",
        vec![
            Reply::Status(502, r#"{"ok":false}"#.into()),
            updates(&[update(1, STRANGER, "/backup")]),
            updates(&[update(2, OWNER, "/backup")]),
            updates(&[update(3, OWNER, "/status"), update(4, OWNER, "/list")]),
        ],
    );
    let cmd = Cmd::new()
        .env("DATABASE_URL", server().tcp_url(&db))
        .env("BACKUP_TELEGRAM_TOKEN", TOKEN)
        .env("BACKUP_TELEGRAM_OWNERS", OWNER.to_string())
        .env("BACKUP_TELEGRAM_API_URL", c.url())
        .arg("telegram-bot");
    let child = cmd.spawn();
    let sent = c.wait_for("/sendMessage", 3, Duration::from_secs(30));
    let docs = c.wait_for("/sendDocument", 1, Duration::from_secs(5));
    signal(&child, libc::SIGTERM);
    let out = cmd.wait(child);
    out.assert_success();
    assert!(
        !out.stderr.contains(TOKEN) && !out.stdout.contains(TOKEN),
        "{out}"
    );
    assert!(
        out.stderr
            .contains(&format!("refused \"/backup\" from user id {STRANGER}")),
        "{out}"
    );
    assert!(out.stderr.contains("polling failed"), "{out}");

    let texts: Vec<(String, String)> = sent
        .iter()
        .map(|r| {
            let j = r.json();
            (
                j["chat_id"].as_str().unwrap().to_string(),
                j["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(texts[0].0, STRANGER.to_string());
    assert!(texts[0].1.contains("only the owners"), "{texts:?}");
    assert!(
        texts[1].1.starts_with("Last backup\nApp: ") && texts[1].1.contains("Age: "),
        "{texts:?}"
    );
    assert!(
        texts[2].1.starts_with("Recent backups (1 in all)"),
        "{texts:?}"
    );

    assert_eq!(docs.len(), 1, "{out}");
    let parts = multipart(&docs[0]);
    let caption = parts.iter().find(|p| p.0 == "caption").unwrap();
    assert!(String::from_utf8_lossy(&caption.2).starts_with(&format!("Database Backup\nApp: {db}")));
    let chat = parts.iter().find(|p| p.0 == "chat_id").unwrap();
    assert_eq!(chat.2, OWNER.to_string().as_bytes());
    let backups: Vec<String> = crate::support::backup_names(&cmd.dir().join("backups"))
        .into_iter()
        .filter(|n| !n.ends_with(".meta.json"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let document = parts.iter().find(|p| p.0 == "document").unwrap();
    assert_eq!(
        document.2,
        std::fs::read(cmd.dir().join("backups").join(&backups[0])).unwrap()
    );
}

#[test]
fn the_bot_refuses_to_start_without_owners_or_a_token() {
    let out = Cmd::new()
        .env("BACKUP_TELEGRAM_TOKEN", TOKEN)
        .arg("telegram-bot")
        .run();
    out.assert_code(2);
    assert!(
        out.stderr.contains("BACKUP_TELEGRAM_OWNERS") && !out.stderr.contains(TOKEN),
        "{out}"
    );
    let out = Cmd::new()
        .env("BACKUP_TELEGRAM_OWNERS", "1")
        .arg("telegram-bot")
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("BACKUP_TELEGRAM_TOKEN"), "{out}");
}

#[test]
fn sigterm_during_a_backup_cancels_it_answers_and_stops() {
    let db = server().create_db("tgbot_term");
    server().psql(&db, "SET ROLE app; CREATE TABLE t (id int);");
    let blocker = crate::support::Blocker::lock(&db, "t");
    let c = Catcher::start();
    c.script("/getUpdates", vec![updates(&[update(1, OWNER, "/backup")])]);
    let cmd = Cmd::new()
        .env("DATABASE_URL", server().tcp_url(&db))
        .env("BACKUP_TELEGRAM_TOKEN", TOKEN)
        .env("BACKUP_TELEGRAM_OWNERS", OWNER.to_string())
        .env("BACKUP_TELEGRAM_API_URL", c.url())
        .arg("telegram-bot");
    let child = cmd.spawn();
    // The backup waits for the table lock: the bot is busy with it.
    let dir = cmd.dir().join("backups");
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while !crate::support::names_if_any(&dir)
        .iter()
        .any(|n| n.contains("partial"))
        && std::time::Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&child, libc::SIGTERM);
    let out = cmd.wait(child);
    drop(blocker);
    out.assert_success();
    let sent = c.wait_for("/sendMessage", 1, Duration::from_secs(5));
    assert_eq!(sent.len(), 1, "{out}");
    let text = sent[0].json()["text"].as_str().unwrap().to_string();
    assert!(text.starts_with("The backup failed.\nError: "), "{text}");
    assert!(c.to("/sendDocument").is_empty());
    let left: Vec<String> = crate::support::names_if_any(&dir)
        .into_iter()
        .filter(|n| n.starts_with("aos-backup-") || n.contains("partial"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}\n{out}");
}

#[test]
fn backup_says_why_not_when_locked_or_too_large() {
    let db = server().create_db("tgbot_why");
    server().psql(
        &db,
        "SET ROLE app; CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g;",
    );
    let c = Catcher::start();
    c.script("/getUpdates", vec![updates(&[update(1, OWNER, "/backup")])]);
    let cmd = Cmd::new()
        .env("DATABASE_URL", server().tcp_url(&db))
        .env("BACKUP_TELEGRAM_TOKEN", TOKEN)
        .env("BACKUP_TELEGRAM_OWNERS", format!("1, {OWNER}"))
        .env("BACKUP_TELEGRAM_API_URL", c.url())
        .env("BACKUP_TELEGRAM_MAX_SIZE", "10")
        .arg("telegram-bot");
    let lock = crate::support::hold_folder_lock(&cmd.dir().join("backups"));
    let child = cmd.spawn();
    let first = c.wait_for("/sendMessage", 1, Duration::from_secs(20));
    drop(lock);
    c.script(
        "/getUpdates",
        vec![updates(&[update(2, OWNER, "/backup@my_backup_bot")])],
    );
    let sent = c.wait_for("/sendMessage", 2, Duration::from_secs(20));
    signal(&child, libc::SIGTERM);
    let out = cmd.wait(child);
    out.assert_success();
    assert_eq!(first.len(), 1, "{out}");
    let texts: Vec<String> = sent
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_string())
        .collect();
    assert!(
        texts[0].starts_with("Another backup is running"),
        "{texts:?}"
    );
    assert!(
        texts[1].starts_with("Database Backup\nApp: ")
            && texts[1].contains("Not sent: the backup is ")
            && texts[1].contains("over the limit of 10 B; it is at /"),
        "{texts:?}"
    );
    assert!(c.to("/sendDocument").is_empty());
}
