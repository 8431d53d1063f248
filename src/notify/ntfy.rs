//! `ntfy://host/topic`: the chat message published to an ntfy topic, its title and priority in
//! the headers.

use super::event::Event;
use super::http::outcome;
use super::retry::Failure;

/// Publishes the event's message.
///
/// # Errors
/// The attempt failed.
pub async fn publish(
    client: &reqwest::Client,
    url: &url::Url,
    auth: Option<(&str, Option<&str>)>,
    event: &Event,
) -> Result<(), Failure> {
    let (priority, tags) = if event.kind.is_failure() {
        ("high", "warning")
    } else {
        ("default", "white_check_mark")
    };
    let mut req = client
        .post(url.clone())
        .header("Title", event.kind.title())
        .header("Priority", priority)
        .header("Tags", tags)
        .body(event.text());
    if let Some((user, password)) = auth {
        req = req.basic_auth(user, password);
    }
    outcome(req.send().await).await.map(drop)
}
