//! `generic+https://`: the event as JSON, POSTed to the URL.

use super::event::Event;
use super::http::outcome;
use super::retry::Failure;

/// Posts the event's JSON.
///
/// # Errors
/// The attempt failed.
pub async fn post(client: &reqwest::Client, url: &url::Url, event: &Event) -> Result<(), Failure> {
    outcome(client.post(url.clone()).json(&event.json()).send().await)
        .await
        .map(drop)
}
