//! Telling people what happened: the destinations of `BACKUP_NOTIFY` (webhook, Slack, Discord,
//! Telegram, email, ntfy, healthchecks-style pings), the events they are sent, the delivery of a
//! backup file to Telegram and email, and the retries. A failed notification is logged as a
//! warning and never changes the outcome of what it reports.
//!
//! Any front end tells people with one call: build the [`Notifier`] from the settings once, then
//! `notifier.send(&Event::backup_failed(...)).await` (or `Event::drill_failed`,
//! `Event::offsite_missing`...).

mod discord;
mod event;
mod http;
mod ntfy;
mod ping;
pub mod retry;
mod slack;
mod smtp;
pub mod telegram;
mod url;
mod webhook;

pub use event::{decimal_size, Event, EventKind};
pub use url::{parse_list, Destination, On, Target};

use ping::Ping;
use retry::Failure;
use std::path::Path;
use std::time::Duration;

/// What the notifications are configured to do (resolved settings, passed down as values).
#[derive(Debug, Clone)]
pub struct Config {
    /// Where messages go.
    pub destinations: Vec<Destination>,
    /// Which events, for the destinations that do not say (`?on=`).
    pub on: On,
    /// Whether the backup file itself goes to the `telegram://` destinations.
    pub deliver_telegram: bool,
    /// Whether it goes to the `smtp://` destinations.
    pub deliver_email: bool,
    /// How long one request may take.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// The largest email, attachment counted as base64.
    pub email_max_size: u64,
    /// The largest file the Telegram Bot API takes.
    pub telegram_max_size: u64,
    /// The Telegram Bot API's base URL.
    pub telegram_api: String,
}

impl Config {
    /// Every secret the destinations hold.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.destinations
            .iter()
            .flat_map(|d| d.secrets().iter().map(String::as_str))
    }
}

/// Sends events to the configured destinations.
#[derive(Debug, Clone)]
pub struct Notifier {
    config: Config,
    client: Option<reqwest::Client>,
}

impl Notifier {
    /// A notifier for `config` (with no destination, it sends nothing).
    #[must_use]
    pub fn new(config: Config) -> Notifier {
        let client = if config.destinations.is_empty() {
            None
        } else {
            http::client(config.timeout)
                .map_err(|e| tracing::warn!("notifications are off: {e}"))
                .ok()
        };
        Notifier { config, client }
    }

    /// Whether any destination is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.config.destinations.is_empty()
    }

    /// Sends `event` to each destination that wants it; failures are retried, then logged as
    /// warnings. Never fails.
    pub async fn send(&self, event: &Event) {
        let Some(client) = &self.client else { return };
        for dest in &self.config.destinations {
            if !self.wants(dest, event) {
                continue;
            }
            let result = retry::run(retry::Policy::new(self.config.retries), || {
                self.send_one(client, dest, event)
            })
            .await;
            self.log(dest, event.kind.name(), result);
        }
    }

    /// Pings `/start` on the healthchecks-style destinations.
    pub async fn ping_start(&self) {
        self.ping(Ping::Start, "").await;
    }

    /// Pings the end of a run: success, or `/fail` with the exit code and log tail of `failed`.
    pub async fn ping_end(&self, failed: Option<&Event>) {
        match failed {
            None => self.ping(Ping::Success, "").await,
            Some(e) => self.ping(Ping::Fail, &e.log_tail()).await,
        }
    }

    async fn ping(&self, which: Ping, body: &str) {
        let Some(client) = &self.client else { return };
        for dest in &self.config.destinations {
            if let Target::Ping(url) = &dest.target {
                let result = retry::run(retry::Policy::new(self.config.retries), || {
                    ping::send(client, url, which, body)
                })
                .await;
                self.log(dest, "ping", result);
            }
        }
    }

    /// Logs a notification that failed for good.
    fn log(&self, dest: &Destination, what: &str, result: Result<(), (String, u32)>) {
        if let Err((why, attempts)) = result {
            tracing::warn!(
                "notification ({what}) to {} {} failed after {attempts} attempt(s): {why}; the result of the operation is unchanged",
                dest.kind(),
                dest.masked()
            );
        } else {
            tracing::debug!(
                "notification ({what}) sent to {} {}",
                dest.kind(),
                dest.masked()
            );
        }
    }

    /// Whether `dest` is sent `event`: bad news always, other news with `on=always`, and a new
    /// backup where it is delivered. Pings take no events.
    fn wants(&self, dest: &Destination, event: &Event) -> bool {
        if matches!(dest.target, Target::Ping(_)) {
            return false;
        }
        let on = dest.on.unwrap_or(self.config.on);
        event.kind.is_failure() || on == On::Always || self.delivers(dest, event)
    }

    /// Whether the backup file of `event` goes to `dest`.
    fn delivers(&self, dest: &Destination, event: &Event) -> bool {
        let wanted = match dest.target {
            Target::Telegram { .. } => self.config.deliver_telegram,
            Target::Smtp(_) => self.config.deliver_email,
            _ => false,
        };
        wanted && event.kind == EventKind::BackupSucceeded && event.path.is_some()
    }

    /// One attempt at sending `event` to `dest`.
    async fn send_one(
        &self,
        client: &reqwest::Client,
        dest: &Destination,
        event: &Event,
    ) -> Result<(), Failure> {
        match &dest.target {
            Target::Webhook(url) => webhook::post(client, url, event).await,
            Target::SlackHook(url) => slack::post_hook(client, url, &event.text()).await,
            Target::SlackApi {
                endpoint,
                token,
                channel,
            } => slack::post_api(client, endpoint, token, channel, &event.text()).await,
            Target::Discord(url) => discord::post(client, url, &event.text()).await,
            Target::Ntfy {
                url,
                user,
                password,
            } => {
                let auth = user.as_deref().map(|u| (u, password.as_deref()));
                ntfy::publish(client, url, auth, event).await
            }
            Target::Telegram { token, chats } => {
                self.telegram(client, token, chats, dest, event).await
            }
            Target::Smtp(s) => self.email(s, dest, event).await,
            Target::Ping(_) => Ok(()),
        }
    }

    /// The message (or the backup with the message as caption) to each chat.
    async fn telegram(
        &self,
        client: &reqwest::Client,
        token: &str,
        chats: &[String],
        dest: &Destination,
        event: &Event,
    ) -> Result<(), Failure> {
        if chats.is_empty() {
            return Err(Failure::permanent(
                "telegram:// names no chat (add ?chats=ID)",
            ));
        }
        let bot = telegram::Bot::new(client.clone(), &self.config.telegram_api, token);
        let file = self.deliverable(dest, event, self.config.telegram_max_size, 1.0);
        for chat in chats {
            match &file {
                Deliverable::File(path) => {
                    bot.send_document(chat, path, &event.text(), self.config.timeout)
                        .await?;
                }
                Deliverable::No(note) => {
                    bot.send_message(chat, &with_note(event, note.as_deref()))
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// The email, with the backup attached when it is delivered and fits.
    async fn email(
        &self,
        smtp: &url::Smtp,
        dest: &Destination,
        event: &Event,
    ) -> Result<(), Failure> {
        let file = self.deliverable(dest, event, self.config.email_max_size, BASE64_GROWTH);
        let (subject, attachment, note) = match &file {
            Deliverable::File(path) => {
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| Failure::permanent(format!("cannot read the backup: {e}")))?;
                let name = event.file.clone().unwrap_or_else(|| "backup".into());
                (
                    delivery_subject(event),
                    Some(smtp::File { name, bytes }),
                    None,
                )
            }
            Deliverable::No(note) => (event.subject(), None, note.clone()),
        };
        let body = email_body(event, note.as_deref());
        smtp::send(
            smtp,
            &subject,
            &body,
            attachment.as_ref(),
            self.config.timeout,
        )
        .await
    }

    /// Whether the backup goes with the message to `dest`, or why not (`None`: it is not asked
    /// for). `growth` is the encoding's overhead against the limit.
    fn deliverable(
        &self,
        dest: &Destination,
        event: &Event,
        limit: u64,
        growth: f64,
    ) -> Deliverable {
        if !self.delivers(dest, event) {
            return Deliverable::No(None);
        }
        let Some(path) = event.path.as_deref() else {
            return Deliverable::No(None);
        };
        let Some(size) = file_size(path) else {
            return Deliverable::No(Some(format!(
                "The backup is a folder and cannot be sent as one file; it is at {}",
                path.display()
            )));
        };
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let sent = (size as f64 * growth).ceil() as u64;
        if sent > limit {
            return Deliverable::No(Some(format!(
                "Not sent: the backup is {} ({} to send), over the limit of {}; it is at {}",
                decimal_size(size),
                decimal_size(sent),
                decimal_size(limit),
                path.display()
            )));
        }
        if event.encrypted == Some(false) {
            tracing::warn!(
                "delivering the unencrypted backup {} to {}: anyone who can read that {} can read the data; prefer an encrypted backup (BACKUP_ENCRYPTION=age)",
                path.display(),
                dest.kind(),
                dest.kind()
            );
        }
        Deliverable::File(path.to_path_buf())
    }
}

/// How much base64 (76-character lines, CRLF) makes a file grow in an email.
const BASE64_GROWTH: f64 = 4.0 / 3.0 * 78.0 / 76.0;

/// Whether a backup goes with its message.
enum Deliverable {
    File(std::path::PathBuf),
    /// Not sent; the note says why when delivery was asked for.
    No(Option<String>),
}

/// The size of a regular file (`None` for a folder or what cannot be read).
fn file_size(path: &Path) -> Option<u64> {
    std::fs::metadata(path)
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.len())
}

/// The chat message, with the note on a delivery that did not happen.
fn with_note(event: &Event, note: Option<&str>) -> String {
    match note {
        Some(n) => format!("{}\n{n}", event.text()),
        None => event.text(),
    }
}

/// `DB Backup: {database} - {timestamp}`.
fn delivery_subject(event: &Event) -> String {
    format!(
        "DB Backup: {} - {}",
        event.database.as_deref().unwrap_or("(unknown database)"),
        event.finished_at.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// The email's text: the message, the note, then the metadata one field a line.
fn email_body(event: &Event, note: Option<&str>) -> String {
    let mut lines = vec![with_note(event, note), String::new()];
    let json = event.json();
    for key in [
        "event",
        "status",
        "database",
        "host",
        "backup_id",
        "file",
        "path",
        "size_bytes",
        "tables",
        "duration_seconds",
        "sha256",
        "encrypted",
        "started_at",
        "finished_at",
        "tool_version",
    ] {
        if !json[key].is_null() {
            let v = json[key]
                .as_str()
                .map_or_else(|| json[key].to_string(), str::to_string);
            lines.push(format!("{key}: {v}"));
        }
    }
    lines.join("\n")
}
