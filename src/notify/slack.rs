//! `slack://`: the chat message through an incoming webhook, or chat.postMessage with a bot token.

use super::http::outcome;
use super::retry::Failure;

/// Posts `text` to an incoming webhook.
///
/// # Errors
/// The attempt failed.
pub async fn post_hook(
    client: &reqwest::Client,
    url: &url::Url,
    text: &str,
) -> Result<(), Failure> {
    let body = serde_json::json!({ "text": text });
    outcome(client.post(url.clone()).json(&body).send().await)
        .await
        .map(drop)
}

/// Posts `text` to `channel` with a bot token; Slack's `"ok": false` is a refusal.
///
/// # Errors
/// The attempt failed, or Slack refused the message.
pub async fn post_api(
    client: &reqwest::Client,
    endpoint: &url::Url,
    token: &str,
    channel: &str,
    text: &str,
) -> Result<(), Failure> {
    let body = serde_json::json!({ "channel": channel, "text": text });
    let answer = outcome(
        client
            .post(endpoint.clone())
            .bearer_auth(token)
            .json(&body)
            .send()
            .await,
    )
    .await?;
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
    if v["ok"] == serde_json::Value::Bool(false) {
        return Err(Failure::permanent(format!(
            "Slack refused the message: {}",
            v["error"].as_str().unwrap_or("no reason given")
        )));
    }
    Ok(())
}
