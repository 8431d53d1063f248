//! `hc+https://…`: a healthchecks-style check. A run pings `/start`, then the URL itself when it
//! succeeded, or `/fail` with the exit code and the end of its log.

use super::http::outcome;
use super::retry::Failure;

/// Which ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    Start,
    Success,
    Fail,
}

/// Sends one ping, with `body` (the log tail) as its text.
///
/// # Errors
/// The attempt failed.
pub async fn send(
    client: &reqwest::Client,
    url: &url::Url,
    ping: Ping,
    body: &str,
) -> Result<(), Failure> {
    let mut target = url.clone();
    let suffix = match ping {
        Ping::Start => Some("start"),
        Ping::Success => None,
        Ping::Fail => Some("fail"),
    };
    if let Some(s) = suffix {
        let path = format!("{}/{s}", target.path().trim_end_matches('/'));
        target.set_path(&path);
    }
    outcome(client.post(target).body(body.to_string()).send().await)
        .await
        .map(drop)
}
