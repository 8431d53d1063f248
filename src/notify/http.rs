//! The one HTTP client of the notifications (rustls, a time limit per request) and what an
//! answer means: success, a 429 with the wait the server asks for, a 5xx worth retrying, or a
//! refusal. Errors never carry a URL (they hold tokens).

use super::retry::Failure;
use std::time::Duration;

/// A client whose every request ends within `timeout`.
///
/// # Errors
/// The TLS setup failed.
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("aos-backup/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", e.without_url()))
}

/// What one request came to: the body of a success, or the failure.
///
/// # Errors
/// No answer (down, timeout), or an answer that is not a success.
pub async fn outcome(sent: Result<reqwest::Response, reqwest::Error>) -> Result<String, Failure> {
    let resp = sent.map_err(|e| Failure::transient(describe(&e)))?;
    let status = resp.status();
    let header_wait = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok());
    let body = resp.text().await.unwrap_or_default();
    if status.is_success() {
        return Ok(body);
    }
    let shown = format!("HTTP {status}: {}", short(&body));
    if status.as_u16() == 429 {
        let mut f = Failure::transient(shown);
        f.retry_after = body_wait(&body).or(header_wait).map(seconds);
        return Err(f);
    }
    if status.is_server_error() || status.as_u16() == 408 {
        return Err(Failure::transient(shown));
    }
    Err(Failure::permanent(shown))
}

/// A request error in words, without its URL.
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "no answer in time (timeout)"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut text = what.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The wait a JSON body asks for: Telegram's `parameters.retry_after`, Discord's `retry_after`.
fn body_wait(body: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["parameters"]["retry_after"]
        .as_f64()
        .or_else(|| v["retry_after"].as_f64())
}

fn seconds(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 3600.0))
}

/// The start of a body, on one line.
fn short(body: &str) -> String {
    let one: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = one.chars().take(200).collect();
    crate::runtime::redact::sanitize(&cut)
}
