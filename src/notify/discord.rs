//! `discord://TOKEN@ID`: the chat message through a Discord webhook.

use super::http::outcome;
use super::retry::Failure;

/// Discord's limit on a message's length.
const MAX_CHARS: usize = 2000;

/// Posts `text`.
///
/// # Errors
/// The attempt failed.
pub async fn post(client: &reqwest::Client, url: &url::Url, text: &str) -> Result<(), Failure> {
    let content: String = text.chars().take(MAX_CHARS).collect();
    let body = serde_json::json!({ "content": content, "username": "aos-backup" });
    outcome(client.post(url.clone()).json(&body).send().await)
        .await
        .map(drop)
}
