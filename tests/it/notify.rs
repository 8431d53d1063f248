//! Notifications and delivery against real servers: a local HTTP server (`catcher`) standing in
//! for a webhook, Slack, Discord, ntfy, the Telegram Bot API and a healthchecks endpoint, and a
//! real SMTP server (aiosmtpd, with STARTTLS on a certificate made here). A failure arrives when
//! the database is down; 429's `retry_after` is waited; a 5xx, a hang or a server that is down
//! ends in a warning and leaves the exit code alone; a backup over the limit is not sent; the
//! message and the attachment arrive byte for byte; no token or password is ever printed.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::catcher::{down_url, multipart, Catcher, Reply};
use crate::cmd::{Cmd, Output};
use crate::harness::server;
use crate::support::tempdir;

const TG_TOKEN: &str = "123456:SecretTelegramToken";
const HOOK_TOKEN: &str = "SecretWebhookToken77";
const DISCORD_TOKEN: &str = "SecretDiscordToken55";
const SLACK_TOKEN: &str = "SecretSlackPart99";
const SMTP_PASSWORD: &str = "SecretSmtpPassw0rd";

/// A database URL where no server listens.
fn down_database() -> String {
    let port = down_url().rsplit(':').next().unwrap().to_string();
    format!("postgresql://app:pw@127.0.0.1:{port}/shop")
}

/// Every kind of HTTP destination, all at `c`.
fn every_destination(c: &Catcher) -> String {
    let base = c.url();
    let host = base.trim_start_matches("http://");
    [
        format!("generic+{base}/hook?token={HOOK_TOKEN}"),
        format!("slack://hook:T1-B2-{SLACK_TOKEN}@webhook?base={base}"),
        format!("discord://{DISCORD_TOKEN}@42?base={base}"),
        format!("ntfy://{host}/backups?scheme=http"),
        format!("telegram://{TG_TOKEN}@telegram?chats=1001,1002"),
        format!("hc+{base}/ping/abc-uuid"),
    ]
    .join(" ")
}

fn backup_cmd(database_url: &str, notify: &str, api: &str) -> Cmd {
    Cmd::new()
        .env("DATABASE_URL", database_url)
        .env("BACKUP_NOTIFY", notify)
        .env("BACKUP_TELEGRAM_API_URL", api)
        .args(["backup"])
}

fn assert_no_secrets(out: &Output) {
    for s in [
        TG_TOKEN,
        "SecretTelegramToken",
        HOOK_TOKEN,
        DISCORD_TOKEN,
        SLACK_TOKEN,
        SMTP_PASSWORD,
    ] {
        assert!(
            !out.stdout.contains(s) && !out.stderr.contains(s),
            "{s} printed:\n{out}"
        );
    }
}

#[test]
fn a_failure_reaches_every_destination_when_the_database_is_down() {
    let c = Catcher::start();
    let out = backup_cmd(&down_database(), &every_destination(&c), &c.url()).run();
    out.assert_code(7);
    assert_no_secrets(&out);

    let hook = &c.to("/hook")[0];
    assert_eq!(hook.method, "POST");
    let j = hook.json();
    assert_eq!(j["event"], "backup.failed", "{j}");
    assert_eq!(j["status"], "failure");
    assert_eq!(j["database"], "shop");
    assert_eq!(j["exit_code"], 7);
    assert!(j["error"].as_str().unwrap().contains("127.0.0.1"), "{j}");
    assert!(j["hint"].is_string(), "{j}");
    assert!(j["tool_version"].is_string() && j["finished_at"].is_string() && j["host"].is_string());
    assert!(
        !hook.text().contains(":pw@"),
        "the database password leaked: {}",
        hook.text()
    );

    let slack = &c.to(&format!("/services/T1/B2/{SLACK_TOKEN}"))[0];
    assert!(slack.json()["text"]
        .as_str()
        .unwrap()
        .starts_with("Database Backup FAILED\nApp: shop"));
    let discord = &c.to(&format!("/api/webhooks/42/{DISCORD_TOKEN}"))[0];
    assert!(discord.json()["content"]
        .as_str()
        .unwrap()
        .contains("Error: "));
    let ntfy = &c.to("/backups")[0];
    assert_eq!(ntfy.header("Title"), Some("Database Backup FAILED"));
    assert_eq!(ntfy.header("Priority"), Some("high"));
    let tg = c.to(&format!("/bot{TG_TOKEN}/sendMessage"));
    let chats: Vec<String> = tg
        .iter()
        .map(|r| r.json()["chat_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(chats, ["1001", "1002"]);
    assert!(
        tg[0].json()["text"].as_str().unwrap().contains("Hint: "),
        "{}",
        tg[0].text()
    );

    let pings: Vec<String> = c
        .to("/ping/abc-uuid")
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(pings, ["/ping/abc-uuid/start", "/ping/abc-uuid/fail"]);
    let fail = &c.to("/ping/abc-uuid/fail")[0];
    assert!(
        fail.text().starts_with("exit code 7\nerror: "),
        "{}",
        fail.text()
    );
}

#[test]
fn a_backup_that_succeeds_is_sent_with_on_always_and_pings_success() {
    let db = server().create_db("notify_ok");
    server().psql(
        &db,
        "SET ROLE app; CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);",
    );
    let c = Catcher::start();
    let notify = format!(
        "generic+{0}/quiet generic+{0}/loud?on=always telegram://{TG_TOKEN}@telegram?chats=7&on=always hc+{0}/ping/ok",
        c.url()
    );
    let cmd = backup_cmd(&server().tcp_url(&db), &notify, &c.url());
    let out = cmd.run();
    out.assert_success();
    assert_no_secrets(&out);
    let path = PathBuf::from(out.stdout_trimmed());
    let backup = cmd.dir().join(&path);
    let sidecar = crate::support::read_sidecar(&backup);

    assert!(c.to("/quiet").is_empty(), "on=failure got a success");
    let j = c.to("/loud")[0].json();
    assert_eq!(j["event"], "backup.succeeded");
    assert_eq!(j["status"], "success");
    assert_eq!(j["database"], db.as_str());
    assert_eq!(j["backup_id"], sidecar["id"]);
    assert_eq!(j["file"], sidecar["file"]);
    assert_eq!(j["size_bytes"], sidecar["size_bytes"]);
    assert_eq!(j["sha256"], sidecar["sha256"]);
    assert_eq!(j["tables"], 1);
    assert!(j["duration_seconds"].is_number() && j["started_at"].is_string());
    let text = c.to("/sendMessage")[0].json()["text"]
        .as_str()
        .unwrap()
        .to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Database Backup");
    assert_eq!(lines[1], format!("App: {db}"));
    assert!(
        lines[2].starts_with("Size: ") && lines[3] == "Tables: 1" && lines[4].starts_with("Time: "),
        "{text}"
    );
    let pings: Vec<String> = c.to("/ping/ok").iter().map(|r| r.path.clone()).collect();
    assert_eq!(pings, ["/ping/ok/start", "/ping/ok"]);
}

#[test]
fn telegrams_retry_after_is_waited_before_the_retry() {
    let c = Catcher::start();
    c.script(
        "/sendMessage",
        vec![Reply::Status(
            429,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 2","parameters":{"retry_after":2}}"#.into(),
        )],
    );
    let notify = format!("telegram://{TG_TOKEN}@telegram?chats=5");
    let out = backup_cmd(&down_database(), &notify, &c.url()).run();
    out.assert_code(7);
    let sent = c.to("/sendMessage");
    assert_eq!(sent.len(), 2, "{out}");
    let waited = sent[1].at - sent[0].at;
    assert!(
        waited >= Duration::from_millis(1900),
        "retried after {waited:?}"
    );
    assert!(!out.stderr.contains("warning: notification"), "{out}");
}

#[test]
fn server_errors_are_retried_then_a_warning_and_the_exit_code_is_the_backups() {
    let c = Catcher::start();
    let five = || Reply::Status(503, r#"{"error":"busy"}"#.into());
    c.script("/hook", vec![five(), five(), five(), five()]);
    let out = backup_cmd(
        &down_database(),
        &format!("generic+{}/hook", c.url()),
        &c.url(),
    )
    .env("BACKUP_NOTIFY_RETRIES", "2")
    .run();
    out.assert_code(7);
    assert_eq!(c.to("/hook").len(), 3);
    assert!(
        out.stderr.contains("failed after 3 attempt(s): HTTP 503"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("the result of the operation is unchanged"),
        "{out}"
    );

    // A backup that succeeds stays a success when its notification cannot be sent.
    let db = server().create_db("notify_down");
    let out = backup_cmd(
        &server().tcp_url(&db),
        &format!("generic+{}/x", down_url()),
        &c.url(),
    )
    .env("BACKUP_NOTIFY_ON", "always")
    .env("BACKUP_NOTIFY_RETRIES", "1")
    .run();
    out.assert_success();
    assert!(out.stderr.contains("cannot connect"), "{out}");
}

#[test]
fn an_endpoint_that_hangs_times_out() {
    let c = Catcher::start();
    c.script("/slow", vec![Reply::Hang(Duration::from_secs(8))]);
    let start = Instant::now();
    let out = backup_cmd(
        &down_database(),
        &format!("generic+{}/slow", c.url()),
        &c.url(),
    )
    .env("BACKUP_NOTIFY_TIMEOUT", "1s")
    .env("BACKUP_NOTIFY_RETRIES", "0")
    .run();
    out.assert_code(7);
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "took {:?}",
        start.elapsed()
    );
    assert!(out.stderr.contains("timeout"), "{out}");
}

#[test]
fn the_backup_is_delivered_to_telegram_or_said_to_be_too_large() {
    let db = server().create_db("notify_deliver");
    server().psql(
        &db,
        "SET ROLE app; CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g;",
    );
    let c = Catcher::start();
    let notify = format!("telegram://{TG_TOKEN}@telegram?chats=9");
    let cmd =
        backup_cmd(&server().tcp_url(&db), &notify, &c.url()).env("BACKUP_DELIVER", "telegram");
    let out = cmd.run();
    out.assert_success();
    assert!(
        out.stderr.contains("delivering the unencrypted backup"),
        "{out}"
    );
    let backup = cmd.dir().join(out.stdout_trimmed());
    let doc = &c.to(&format!("/bot{TG_TOKEN}/sendDocument"))[0];
    let parts = multipart(doc);
    let field = |n: &str| {
        parts
            .iter()
            .find(|p| p.0 == n)
            .unwrap_or_else(|| panic!("no {n}"))
    };
    assert_eq!(field("chat_id").2, b"9");
    assert!(String::from_utf8_lossy(&field("caption").2).starts_with("Database Backup\nApp: "));
    let document = field("document");
    assert_eq!(document.1.as_deref(), backup.file_name().unwrap().to_str());
    assert_eq!(
        document.2,
        fs::read(&backup).unwrap(),
        "the document differs from the backup"
    );

    let out = backup_cmd(&server().tcp_url(&db), &notify, &c.url())
        .env("BACKUP_DELIVER", "telegram")
        .env("BACKUP_TELEGRAM_MAX_SIZE", "100")
        .run();
    out.assert_success();
    assert_eq!(c.to("/sendDocument").len(), 1);
    let text = c.to("/sendMessage")[0].json()["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains("Not sent: the backup is ")
            && text.contains("over the limit of 100 B; it is at /"),
        "{text}"
    );
}

#[test]
fn config_shows_destinations_masked_and_refuses_bad_ones_without_echoing_them() {
    let c = Catcher::start();
    let out = Cmd::new()
        .env("BACKUP_NOTIFY", every_destination(&c))
        .env("BACKUP_TELEGRAM_TOKEN", TG_TOKEN)
        .args(["config", "--json"])
        .run();
    out.assert_success();
    assert_no_secrets(&out);
    let urls = out.json()["notify.urls"].clone();
    assert_eq!(urls.as_array().unwrap().len(), 6, "{urls}");
    assert!(
        urls[4]
            .as_str()
            .unwrap()
            .starts_with("telegram://telegram/"),
        "{urls}"
    );
    assert_eq!(out.json()["telegram.token"], "********");
    let out = Cmd::new()
        .env(
            "BACKUP_NOTIFY",
            format!("telegram://{TG_TOKEN}@telegram gopher://{HOOK_TOKEN}@x"),
        )
        .args(["config"])
        .run();
    out.assert_code(2);
    assert!(
        out.stderr.contains("BACKUP_NOTIFY") && out.stderr.contains("destination 2"),
        "{out}"
    );
    assert_no_secrets(&out);

    // In the config file, the destinations make it a secret file, and they are read from it.
    let cmd = Cmd::new().args(["config", "--json"]);
    let cfg = cmd.dir().join("aos-backup.toml");
    fs::write(
        &cfg,
        format!("[notify]\nurls = [\"discord://{DISCORD_TOKEN}@42\"]\non = \"always\"\n[telegram]\nowners = [1, 2]\n"),
    )
    .unwrap();
    crate::support::set_mode(&cfg, 0o644);
    let out = cmd.run();
    out.assert_code(2);
    assert!(
        out.stderr.contains("notification destinations hold tokens"),
        "{out}"
    );
    crate::support::set_mode(&cfg, 0o600);
    let out = cmd.run();
    out.assert_success();
    assert_no_secrets(&out);
    assert_eq!(out.json()["notify.urls"][0], "discord://42/********");
    assert_eq!(out.json()["notify.on"], "always");
    assert_eq!(out.json()["telegram.owners"], serde_json::json!([1, 2]));
}

/// A real SMTP server (aiosmtpd) that saves each message as `N.eml` and each attachment as
/// `N.NAME`, optionally with STARTTLS required.
struct Smtp {
    child: Child,
    port: u16,
    dir: PathBuf,
}

const SMTP_SERVER: &str = r#"
import sys, ssl, os, email
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
out, port = sys.argv[1], int(sys.argv[2])
cert = sys.argv[3] if len(sys.argv) > 3 else None
class Saver:
    async def handle_DATA(self, server, session, envelope):
        n = len([f for f in os.listdir(out) if f.endswith('.eml')])
        for part in email.message_from_bytes(envelope.content).walk():
            name = part.get_filename()
            if name:
                open(os.path.join(out, f'{n}.{name}'), 'wb').write(part.get_payload(decode=True))
        tmp = os.path.join(out, f'{n}.tmp')
        open(tmp, 'wb').write(envelope.content)
        os.rename(tmp, os.path.join(out, f'{n}.eml'))
        return '250 OK'
def accept(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=auth_data.password == b'SecretSmtpPassw0rd')
kw = dict(authenticator=accept, auth_require_tls=True)
if cert:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, sys.argv[4])
    if len(sys.argv) > 5 and sys.argv[5] == 'implicit':
        kw.update(ssl_context=ctx, auth_require_tls=False)
    else:
        kw.update(tls_context=ctx, require_starttls=True)
c = Controller(Saver(), hostname='127.0.0.1', port=port, **kw)
c.start()
print('ready', flush=True)
sys.stdin.read()
c.stop()
"#;

impl Smtp {
    fn start(dir: &Path, tls: Option<(&Path, &Path)>) -> Smtp {
        Smtp::start_as(dir, tls, "starttls")
    }

    /// `mode`: `starttls`, or `implicit` (TLS from the first byte, as `smtps://`).
    fn start_as(dir: &Path, tls: Option<(&Path, &Path)>, mode: &str) -> Smtp {
        let python = ["/usr/bin/python3", "python3"]
            .into_iter()
            .find(|p| {
                Command::new(p)
                    .args(["-c", "import aiosmtpd"])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .expect("aiosmtpd is missing: apt-get install python3-aiosmtpd (or pip install aiosmtpd); scripts/test.sh installs it");
        let port = crate::catcher::free_port();
        let mail = dir.join(format!("mail-{port}"));
        fs::create_dir_all(&mail).unwrap();
        let script = dir.join("smtp.py");
        fs::write(&script, SMTP_SERVER).unwrap();
        let mut cmd = Command::new(python);
        cmd.arg(&script).arg(&mail).arg(port.to_string());
        if let Some((cert, key)) = tls {
            cmd.arg(cert).arg(key).arg(mode);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "aiosmtpd did not start");
        Smtp {
            child,
            port,
            dir: mail,
        }
    }

    /// The messages saved so far, in order.
    fn messages(&self) -> Vec<String> {
        (0..)
            .map(|n| self.dir.join(format!("{n}.eml")))
            .take_while(|p| p.exists())
            .map(|p| {
                fs::read_to_string(p)
                    .unwrap()
                    .replace("=\r\n", "")
                    .replace("=3D", "=")
            })
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a certificate for 127.0.0.1 that it signed: (ca, cert, key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is missing: apt-get install openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=aos-backup test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// A backup of a new database, delivered by email through `url`: the output, the backup's file
/// name and bytes, the database.
fn email_backup(url: &str, extra: &[(&str, &str)]) -> (Output, String, Vec<u8>, String) {
    let db = server().create_db("notify_mail");
    server().psql(
        &db,
        "SET ROLE app; CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 500) g;",
    );
    let mut cmd = Cmd::new()
        .env("DATABASE_URL", server().tcp_url(&db))
        .env("BACKUP_NOTIFY", url)
        .env("BACKUP_DELIVER", "email")
        .arg("backup");
    for (k, v) in extra {
        cmd = cmd.env(k, v);
    }
    let out = cmd.run();
    let backup = cmd.dir().join(out.stdout_trimmed());
    let name = backup.file_name().unwrap().to_string_lossy().into_owned();
    let bytes = fs::read(&backup).unwrap_or_default();
    (out, name, bytes, db)
}

#[test]
fn email_arrives_with_the_backup_attached_byte_for_byte_over_starttls() {
    let dir = tempdir();
    let (ca, cert, key) = certificates(dir.path());
    let smtp = Smtp::start(dir.path(), Some((&cert, &key)));
    let url = format!(
        "smtp://ops:{SMTP_PASSWORD}@127.0.0.1:{}/?from=backup@example.com&to=a@example.com,b@example.com&cafile={}",
        smtp.port,
        ca.display()
    );
    let (out, name, bytes, db) = email_backup(&url, &[]);
    out.assert_success();
    assert_no_secrets(&out);
    let mail = smtp.messages();
    assert_eq!(mail.len(), 1, "{out}");
    assert!(
        mail[0].contains(&format!("Subject: DB Backup: {db} - ")),
        "{}",
        mail[0]
    );
    assert!(
        mail[0].contains("To: a@example.com, b@example.com"),
        "{}",
        mail[0]
    );
    assert!(mail[0].contains("sha256: "), "{}", mail[0]);
    let attached = fs::read(smtp.dir.join(format!("0.{name}"))).expect("the attachment");
    assert_eq!(attached, bytes, "the attachment differs from the backup");

    // Without the CA, the certificate is not trusted: a warning, and the backup still succeeds.
    let url = url.split("&cafile").next().unwrap().to_string();
    let (out, ..) = email_backup(&url, &[("BACKUP_NOTIFY_RETRIES", "0")]);
    out.assert_success();
    assert!(
        out.stderr.contains("to email") && out.stderr.contains("UnknownIssuer"),
        "{out}"
    );
    assert_eq!(smtp.messages().len(), 1);
    // SSL_CERT_FILE is the other way to trust it.
    let (out, ..) = email_backup(&url, &[("SSL_CERT_FILE", ca.to_str().unwrap())]);
    out.assert_success();
    assert_eq!(smtp.messages().len(), 2, "{out}");
}

#[test]
fn email_through_a_plain_relay_and_over_the_size_limit() {
    let dir = tempdir();
    let smtp = Smtp::start(dir.path(), None);
    let url = format!(
        "smtp://127.0.0.1:{}/?from=backup@example.com&to=ops@example.com&encryption=none",
        smtp.port
    );
    let (out, name, bytes, _) = email_backup(&url, &[]);
    out.assert_success();
    assert_eq!(fs::read(smtp.dir.join(format!("0.{name}"))).unwrap(), bytes);

    let (out, name, _, _) = email_backup(&url, &[("BACKUP_EMAIL_MAX_SIZE", "1KB")]);
    out.assert_success();
    let mail = smtp.messages();
    assert_eq!(mail.len(), 2);
    assert!(
        mail[1].contains("Not sent: the backup is")
            && mail[1].contains("over the limit of 1.00 KB"),
        "{}",
        mail[1]
    );
    assert!(mail[1].contains(&name), "{}", mail[1]);
    assert!(!smtp.dir.join(format!("1.{name}")).exists());
}

#[test]
fn prune_suspect_and_restore_events_go_where_they_are_wanted() {
    let db = server().create_db("notify_events");
    server().psql(
        &db,
        "SET ROLE app; CREATE TABLE a AS SELECT g FROM generate_series(1, 2000) g; CREATE TABLE b (x int);",
    );
    let dir = tempdir();
    let c = Catcher::start();
    let notify = format!("generic+{0}/all?on=always generic+{0}/bad", c.url());
    let aos = |now: &str| {
        Cmd::new()
            .env("BACKUP_DIR", dir.path())
            .env("DATABASE_URL", server().tcp_url(&db))
            .env("AOS_BACKUP_NOW", now)
            .env("BACKUP_NOTIFY", &notify)
    };
    aos("2024-06-01T00:00:00Z")
        .arg("backup")
        .run()
        .assert_success();
    let out = aos("2024-06-02T00:00:00Z")
        .env("BACKUP_KEEP_LAST", "1")
        .arg("backup")
        .run();
    out.assert_success();
    let events =
        |part: &str| -> Vec<serde_json::Value> { c.to(part).iter().map(|r| r.json()).collect() };
    let all = events("/all");
    let kinds: Vec<&str> = all.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["backup.succeeded", "backup.succeeded", "prune.deleted"],
        "{out}"
    );
    let first_id = all[0]["backup_id"].as_str().unwrap();
    assert!(
        all[2]["details"].to_string().contains(first_id),
        "{}",
        all[2]
    );
    assert!(events("/bad").is_empty());

    server().psql(&db, "DROP TABLE a, b;");
    let out = aos("2024-06-03T00:00:00Z").arg("backup").run();
    out.assert_success();
    let bad = events("/bad");
    assert_eq!(bad.len(), 1, "{out}");
    assert_eq!(bad[0]["event"], "backup.suspect");
    assert_eq!(bad[0]["status"], "warning");
    assert!(bad[0]["message"]
        .as_str()
        .unwrap()
        .starts_with("Suspect Backup\nApp: "));

    let good = dir.path().join(all[1]["file"].as_str().unwrap());
    let out = aos("2024-06-03T01:00:00Z")
        .args(["restore", "--yes"])
        .consent_from_database_of(&good)
        .arg(&good)
        .run();
    out.assert_success();
    let last = events("/all").pop().unwrap();
    assert_eq!(last["event"], "restore.done", "{out}");
    assert_eq!(last["database"], db.as_str());

    let out = aos("2024-06-03T02:00:00Z")
        .env("DATABASE_URL", down_database())
        .args(["restore", "--yes", "--from-database", &db])
        .arg(&good)
        .run();
    out.assert_code(7);
    let bad = events("/bad").pop().unwrap();
    assert_eq!(bad["event"], "restore.failed", "{out}");
    assert_eq!(bad["exit_code"], 7);

    let out = aos("2024-06-04T00:00:00Z")
        .args(["prune", "--keep-last", "1"])
        .run();
    out.assert_success();
    let last = events("/all").pop().unwrap();
    assert_eq!(last["event"], "prune.deleted", "{out}");
    assert!(last["details"]
        .to_string()
        .contains(all[1]["backup_id"].as_str().unwrap()));
}

#[test]
fn hooks_and_the_backup_folder_never_see_the_destinations_secrets() {
    let db = server().create_db("notify_hooks");
    let c = Catcher::start();
    let cmd = backup_cmd(&server().tcp_url(&db), &every_destination(&c), &c.url())
        .env("BACKUP_TELEGRAM_TOKEN", TG_TOKEN)
        .env("BACKUP_HOOK_AFTER", "env > hook.env");
    let out = cmd.run();
    out.assert_success();
    assert_no_secrets(&out);
    let env = fs::read_to_string(cmd.dir().join("hook.env")).unwrap();
    let mut written = env.clone();
    for entry in fs::read_dir(cmd.dir().join("backups")).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".meta.json") {
            written.push_str(&fs::read_to_string(path).unwrap());
        }
    }
    for s in [TG_TOKEN, HOOK_TOKEN, DISCORD_TOKEN, SLACK_TOKEN] {
        assert!(!written.contains(s), "{s} handed to a hook or a sidecar");
    }
    assert!(!env.contains("BACKUP_NOTIFY=") && !env.contains("BACKUP_TELEGRAM_TOKEN="));
}

#[test]
fn the_daemons_failed_runs_are_sent_too() {
    let c = Catcher::start();
    let cmd = Cmd::new()
        .env("DATABASE_URL", down_database())
        .env("BACKUP_SCHEDULE", "*/1 * * * * *")
        .env("BACKUP_NOTIFY", format!("generic+{}/hook", c.url()))
        .arg("daemon");
    let child = cmd.spawn();
    let got = c.wait_for("/hook", 1, Duration::from_secs(20));
    crate::cmd::signal(&child, libc::SIGTERM);
    let out = cmd.wait(child);
    assert!(!got.is_empty(), "nothing sent:\n{out}");
    let j = got[0].json();
    assert_eq!(j["event"], "backup.failed", "{j}");
    assert_eq!(j["exit_code"], 7, "{j}");
}

#[test]
fn slacks_bot_token_form_posts_to_the_channel() {
    let c = Catcher::start();
    let url = format!(
        "slack://xoxb:1234-5678-{SLACK_TOKEN}@C0ALERTS?base={}",
        c.url()
    );
    let out = backup_cmd(&down_database(), &url, &c.url()).run();
    out.assert_code(7);
    assert_no_secrets(&out);
    let post = &c.to("/api/chat.postMessage")[0];
    assert_eq!(
        post.header("authorization"),
        Some(format!("Bearer xoxb-1234-5678-{SLACK_TOKEN}").as_str())
    );
    assert_eq!(post.json()["channel"], "C0ALERTS");
    assert!(post.json()["text"]
        .as_str()
        .unwrap()
        .starts_with("Database Backup FAILED"));
}

#[test]
fn smtps_is_tls_from_the_first_byte() {
    let dir = tempdir();
    let (ca, cert, key) = certificates(dir.path());
    let smtp = Smtp::start_as(dir.path(), Some((&cert, &key)), "implicit");
    let url = format!(
        "smtps://ops:{SMTP_PASSWORD}@127.0.0.1:{}/?from=backup@example.com&to=ops@example.com&cafile={}",
        smtp.port,
        ca.display()
    );
    let out = Cmd::new()
        .env("DATABASE_URL", down_database())
        .env("BACKUP_NOTIFY", &url)
        .arg("backup")
        .run();
    out.assert_code(7);
    assert_no_secrets(&out);
    let mail = smtp.messages();
    assert_eq!(mail.len(), 1, "{out}");
    assert!(
        mail[0].contains("Subject: Database Backup FAILED: shop on "),
        "{}",
        mail[0]
    );
    assert!(mail[0].contains("Exit code: 7"), "{}", mail[0]);
}

#[test]
fn a_backup_cut_short_by_ctrl_c_is_sent_as_failed_and_its_ping_ends_with_fail() {
    let db = server().create_db("notify_int");
    server().psql(&db, "SET ROLE app; CREATE TABLE t (id int);");
    let c = Catcher::start();
    // A pg_dump that hangs: the signal comes while the backup runs.
    let bin = crate::core::fake_pg_bin(&[(
        "pg_dump",
        "#!/bin/sh\n[ \"$1\" = --version ] && exec @REAL@/pg_dump \"$@\"\nexec sleep 30\n",
    )]);
    let notify = format!("generic+{0}/hook hc+{0}/ping/7d1e0c2a-9f4b", c.url());
    let cmd = backup_cmd(&server().tcp_url(&db), &notify, &c.url()).env("PG_BIN", bin.path());
    let child = cmd.spawn();
    crate::support::wait_until(
        "the start ping",
        Duration::from_secs(30),
        Some(&child),
        || !c.to("/ping/7d1e0c2a-9f4b/start").is_empty(),
    );
    std::thread::sleep(Duration::from_millis(500));
    crate::cmd::signal(&child, libc::SIGINT);
    let out = cmd.wait(child);
    out.assert_code(130);
    let hooks = c.to("/hook");
    assert_eq!(hooks.len(), 1, "{out}");
    let j = hooks[0].json();
    assert_eq!(j["event"], "backup.failed", "{out}");
    assert!(
        j["error"].as_str().unwrap().contains("interrupted"),
        "{j}\n{out}"
    );
    let pings: Vec<String> = c
        .to("/ping/7d1e0c2a-9f4b")
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        pings,
        ["/ping/7d1e0c2a-9f4b/start", "/ping/7d1e0c2a-9f4b/fail"],
        "{out}"
    );
}

#[test]
fn each_database_of_a_many_database_run_gets_its_own_event() {
    let db = server().create_db("notify_many");
    server().psql(&db, "SET ROLE app; CREATE TABLE t (id int);");
    let c = Catcher::start();
    let work = tempdir();
    let cfg = work.path().join("aos.toml");
    fs::write(
        &cfg,
        "[[databases]]\nname = \"shop\"\nurl_env = \"SHOP_URL\"\n\n\
         [[databases]]\nname = \"blog\"\nurl_env = \"BLOG_URL\"\n",
    )
    .unwrap();
    let out = Cmd::new()
        .env_remove("DATABASE_URL")
        .env("AOS_BACKUP_CONFIG", &cfg)
        .env("SHOP_URL", server().tcp_url(&db))
        .env("BLOG_URL", down_database())
        .env(
            "BACKUP_NOTIFY",
            format!("generic+{}/hook?on=always", c.url()),
        )
        .args(["backup"])
        .run();
    assert_ne!(out.code, Some(0), "one database failed: {out}");
    let events: Vec<(String, String)> = c
        .to("/hook")
        .iter()
        .map(|r| {
            let j = r.json();
            (
                j["event"].as_str().unwrap().to_string(),
                j["database"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("backup.succeeded".to_string(), db.clone()),
            ("backup.failed".to_string(), "blog".to_string()),
        ],
        "{out}"
    );
}
