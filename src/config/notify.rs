//! The notification keys (`BACKUP_NOTIFY` and its companions, `[notify]` and `[telegram]` in the
//! config file), resolved into the values the notifier and the Telegram bot are given. The
//! destinations' secrets are registered for masking as soon as they are read.

use super::{layered, Env, Key, Source, Sources};
use crate::error::Error;
use crate::notify::{Config, On};
use anyhow::Result;
use serde::Deserialize;
use std::time::Duration;

/// A list in the config file: one string (split like the variable) or an array.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum FileList {
    One(String),
    Many(Vec<String>),
}

impl FileList {
    fn text(&self) -> String {
        match self {
            FileList::One(s) => s.clone(),
            FileList::Many(v) => v.join(" "),
        }
    }
}

/// A size in the config file: bytes, or text such as `"25MB"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum FileSize {
    Bytes(u64),
    Text(String),
}

/// `[notify]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileNotify {
    urls: Option<FileList>,
    on: Option<String>,
    deliver: Option<FileList>,
    timeout: Option<String>,
    retries: Option<u32>,
    email_max_size: Option<FileSize>,
}

/// `[telegram]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTelegram {
    api_url: Option<String>,
    token: Option<String>,
    owners: Option<FileOwners>,
    max_size: Option<FileSize>,
}

/// The owners in the config file: an array of ids, or text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum FileOwners {
    Ids(Vec<i64>),
    Text(String),
}

impl FileNotify {
    /// Whether the file holds destinations (which hold secrets).
    pub(super) fn holds_secrets(&self, telegram: &FileTelegram) -> bool {
        self.urls.is_some() || telegram.token.is_some()
    }
}

/// The Telegram bot's own settings.
#[derive(Debug, Clone, Default)]
pub struct TelegramSettings {
    /// `BACKUP_TELEGRAM_TOKEN`.
    pub token: Option<String>,
    /// The user ids it obeys.
    pub owners: Vec<i64>,
}

/// Resolves the notification keys; records their sources.
pub(super) fn resolve(
    env: &Env,
    file: &FileNotify,
    tg: &FileTelegram,
    sources: &mut Sources,
) -> Result<(Config, TelegramSettings)> {
    let urls = text(
        env,
        Key::Notify,
        file.urls.as_ref().map(FileList::text),
        sources,
    );
    let destinations = match &urls {
        None => Vec::new(),
        Some(t) => crate::notify::parse_list(t).map_err(|e| {
            usage(Key::Notify, sources, &e, "give URLs such as generic+https://host/path, telegram://TOKEN@telegram?chats=ID or smtp://user:pass@host:587/?from=a@x&to=b@y, separated by spaces or commas (see the README's Notifications section)")
        })?,
    };
    for d in &destinations {
        for s in d.secrets() {
            crate::runtime::redact::register(s);
        }
    }
    let on_text = text(env, Key::NotifyOn, file.on.clone(), sources)
        .unwrap_or_else(|| default(Key::NotifyOn));
    let on = On::parse(&on_text)
        .map_err(|e| usage(Key::NotifyOn, sources, &e, "use failure or always"))?;
    let (deliver_telegram, deliver_email) = deliver(env, file, sources)?;
    let timeout = duration(env, Key::NotifyTimeout, file.timeout.clone(), sources)?;
    let retries = text(
        env,
        Key::NotifyRetries,
        file.retries.map(|r| r.to_string()),
        sources,
    )
    .unwrap_or_else(|| default(Key::NotifyRetries));
    let retries = retries.trim().parse::<u32>().map_err(|_| {
        usage(
            Key::NotifyRetries,
            sources,
            "not a whole number",
            "give a count such as 3 (0: no retry)",
        )
    })?;
    let email_max_size = size(env, Key::EmailMaxSize, file.email_max_size.clone(), sources)?;
    let telegram_max_size = size(env, Key::TelegramMaxSize, tg.max_size.clone(), sources)?;
    let telegram_api = text(env, Key::TelegramApiUrl, tg.api_url.clone(), sources)
        .unwrap_or_else(|| default(Key::TelegramApiUrl));
    url::Url::parse(&telegram_api).map_err(|e| {
        usage(
            Key::TelegramApiUrl,
            sources,
            &e.to_string(),
            "give the Bot API server's base URL, e.g. https://api.telegram.org",
        )
    })?;
    let config = Config {
        destinations,
        on,
        deliver_telegram,
        deliver_email,
        timeout,
        retries,
        email_max_size,
        telegram_max_size,
        telegram_api,
    };
    Ok((config, telegram(env, tg, sources)?))
}

/// `BACKUP_DELIVER`: which destinations get the backup file.
fn deliver(env: &Env, file: &FileNotify, sources: &mut Sources) -> Result<(bool, bool)> {
    let Some(t) = text(
        env,
        Key::Deliver,
        file.deliver.as_ref().map(FileList::text),
        sources,
    ) else {
        return Ok((false, false));
    };
    let (mut telegram, mut email) = (false, false);
    for word in t.split([',', ' ']).map(str::trim).filter(|w| !w.is_empty()) {
        match word.to_ascii_lowercase().as_str() {
            "telegram" => telegram = true,
            "email" | "smtp" => email = true,
            "none" | "off" => {}
            other => {
                return Err(usage(
                    Key::Deliver,
                    sources,
                    &format!("{other:?} is neither telegram nor email"),
                    "use telegram, email or telegram,email",
                )
                .into())
            }
        }
    }
    Ok((telegram, email))
}

/// `BACKUP_TELEGRAM_TOKEN` and `BACKUP_TELEGRAM_OWNERS`.
fn telegram(env: &Env, tg: &FileTelegram, sources: &mut Sources) -> Result<TelegramSettings> {
    let token = text(env, Key::TelegramToken, tg.token.clone(), sources);
    if let Some(t) = &token {
        crate::runtime::redact::register(t);
    }
    let owners_text = match &tg.owners {
        Some(FileOwners::Ids(ids)) => {
            Some(ids.iter().map(i64::to_string).collect::<Vec<_>>().join(","))
        }
        Some(FileOwners::Text(t)) => Some(t.clone()),
        None => None,
    };
    let owners = text(env, Key::TelegramOwners, owners_text, sources)
        .unwrap_or_default()
        .split([',', ' '])
        .filter(|w| !w.trim().is_empty())
        .map(|w| w.trim().parse::<i64>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            usage(
                Key::TelegramOwners,
                sources,
                "not a list of user ids",
                "give numeric Telegram user ids separated by commas, e.g. 123456789,987654321",
            )
        })?;
    Ok(TelegramSettings { token, owners })
}

/// A key's text: its variable, else the config file's; records the source.
fn text(env: &Env, key: Key, in_file: Option<String>, sources: &mut Sources) -> Option<String> {
    let in_file = in_file.filter(|v| !v.trim().is_empty());
    sources.set(key, layered(env, key, in_file.is_some()));
    env.var(key.env()).or(in_file)
}

fn default(key: Key) -> String {
    key.default_text().unwrap_or_default().to_string()
}

fn duration(
    env: &Env,
    key: Key,
    in_file: Option<String>,
    sources: &mut Sources,
) -> Result<Duration> {
    let t = text(env, key, in_file, sources).unwrap_or_else(|| default(key));
    let d = crate::runtime::units::parse_duration(&t)
        .map_err(|e| usage(key, sources, &e, "give a duration like 10s or 1m"))?;
    if d.is_zero() {
        return Err(usage(
            key,
            sources,
            "0 is no time at all",
            "give a duration like 10s or 1m",
        )
        .into());
    }
    Ok(d)
}

fn size(env: &Env, key: Key, in_file: Option<FileSize>, sources: &mut Sources) -> Result<u64> {
    let in_file = in_file.map(|s| match s {
        FileSize::Bytes(n) => n.to_string(),
        FileSize::Text(t) => t,
    });
    let t = text(env, key, in_file, sources).unwrap_or_else(|| default(key));
    Ok(crate::runtime::units::parse_size(&t)
        .map_err(|e| usage(key, sources, &e, "give a size like 25MB, 50MB or 2000MB"))?)
}

/// A usage error naming the variable and where its value came from, never the value.
fn usage(key: Key, sources: &Sources, why: &str, hint: &str) -> Error {
    let source: Source = sources.get(key);
    Error::usage(format!("invalid {} (from {source}): {why}", key.env())).hint(hint.to_string())
}
