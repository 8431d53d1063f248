//! `telegram://`: the Telegram Bot API at a configurable base URL (`BACKUP_TELEGRAM_API_URL`, for
//! a self-hosted Bot API server or a test server): messages, documents (a backup with its summary
//! as caption) and, for the bot, long-polled updates. 429's `retry_after` is the retry's wait.

use super::http::outcome;
use super::retry::Failure;
use std::path::Path;
use std::time::Duration;

/// Telegram's limit on a caption.
const MAX_CAPTION: usize = 1024;
/// Telegram's limit on a message.
const MAX_TEXT: usize = 4096;

/// A bot: the API's base URL and its token.
#[derive(Clone)]
pub struct Bot {
    client: reqwest::Client,
    api: String,
    token: String,
}

impl std::fmt::Debug for Bot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bot")
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

/// One message a user sent the bot.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The update's id (the next poll starts after it).
    pub update_id: i64,
    /// The sender's user id.
    pub user: i64,
    /// The chat to answer in.
    pub chat: i64,
    /// The text.
    pub text: String,
}

impl Bot {
    /// The bot with `token`, at `api` (`https://api.telegram.org` or another server).
    #[must_use]
    pub fn new(client: reqwest::Client, api: &str, token: &str) -> Bot {
        Bot {
            client,
            api: api.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    fn method(&self, name: &str) -> String {
        format!("{}/bot{}/{name}", self.api, self.token)
    }

    /// Sends `text` to `chat`.
    ///
    /// # Errors
    /// The attempt failed.
    pub async fn send_message(&self, chat: &str, text: &str) -> Result<(), Failure> {
        let text: String = text.chars().take(MAX_TEXT).collect();
        let body = serde_json::json!({ "chat_id": chat, "text": text });
        let sent = self
            .client
            .post(self.method("sendMessage"))
            .json(&body)
            .send()
            .await;
        outcome(sent).await.map(drop)
    }

    /// Sends the file at `path` to `chat` as a document with `caption`; the upload may take
    /// longer than a message (`timeout` plus a second per 256 KiB).
    ///
    /// # Errors
    /// The file cannot be read, or the attempt failed.
    pub async fn send_document(
        &self,
        chat: &str,
        path: &Path,
        caption: &str,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Failure::permanent(format!("cannot read the backup: {e}")))?;
        let len = file.metadata().await.map(|m| m.len()).unwrap_or_default();
        let name = path
            .file_name()
            .map_or_else(|| "backup".into(), |n| n.to_string_lossy().into_owned());
        let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::from(file), len)
            .file_name(name)
            .mime_str("application/octet-stream")
            .map_err(|e| Failure::permanent(e.without_url().to_string()))?;
        let caption: String = caption.chars().take(MAX_CAPTION).collect();
        let form = reqwest::multipart::Form::new()
            .text("chat_id", chat.to_string())
            .text("caption", caption)
            .part("document", part);
        let upload = timeout + Duration::from_secs(len / (256 * 1024));
        let sent = self
            .client
            .post(self.method("sendDocument"))
            .timeout(upload)
            .multipart(form)
            .send()
            .await;
        outcome(sent).await.map(drop)
    }

    /// Waits up to `wait` for the messages after `offset` (long polling).
    ///
    /// # Errors
    /// The poll failed.
    pub async fn updates(&self, offset: i64, wait: Duration) -> Result<Vec<Incoming>, Failure> {
        let body = serde_json::json!({
            "offset": offset,
            "timeout": wait.as_secs(),
            "allowed_updates": ["message"],
        });
        let sent = self
            .client
            .post(self.method("getUpdates"))
            .timeout(wait + Duration::from_secs(15))
            .json(&body)
            .send()
            .await;
        let text = outcome(sent).await?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Failure::transient(format!("getUpdates answered no JSON: {e}")))?;
        Ok(v["result"]
            .as_array()
            .map(|a| a.iter().filter_map(incoming).collect())
            .unwrap_or_default())
    }
}

/// A text message in an update; `None` for anything else (the update is still skipped past).
fn incoming(u: &serde_json::Value) -> Option<Incoming> {
    let update_id = u["update_id"].as_i64()?;
    let m = &u["message"];
    Some(Incoming {
        update_id,
        user: m["from"]["id"].as_i64().unwrap_or_default(),
        chat: m["chat"]["id"].as_i64().unwrap_or_default(),
        text: m["text"].as_str().unwrap_or_default().to_string(),
    })
}
