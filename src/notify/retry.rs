//! How a notification is retried: a few attempts with a doubling backoff, waiting what the
//! server asks for (`retry_after`, `Retry-After`) instead when it says so, and giving up at once
//! on an answer that retrying cannot change.

use std::future::Future;
use std::time::Duration;

/// The retry policy of one destination's message.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Attempts after the first.
    pub retries: u32,
    /// The wait before the first retry; each next one doubles.
    pub first_backoff: Duration,
    /// The longest wait, whatever the server asks for.
    pub max_wait: Duration,
}

impl Policy {
    /// `retries` retries, from one second, waiting two minutes at most.
    #[must_use]
    pub fn new(retries: u32) -> Policy {
        Policy {
            retries,
            first_backoff: Duration::from_secs(1),
            max_wait: Duration::from_secs(120),
        }
    }
}

/// Why one attempt failed.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What went wrong, secrets masked.
    pub message: String,
    /// How long the server asked us to wait.
    pub retry_after: Option<Duration>,
    /// Retrying cannot help (a 4xx other than 429, a bad setting).
    pub permanent: bool,
}

impl Failure {
    /// A failure worth retrying.
    #[must_use]
    pub fn transient(message: impl Into<String>) -> Failure {
        Failure {
            message: crate::runtime::redact::scrub(&message.into()),
            retry_after: None,
            permanent: false,
        }
    }

    /// A failure retrying cannot change.
    #[must_use]
    pub fn permanent(message: impl Into<String>) -> Failure {
        Failure {
            permanent: true,
            ..Failure::transient(message)
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the retries are spent. Returns the last
/// failure's message and the number of attempts made.
///
/// # Errors
/// The last failure.
pub async fn run<F, Fut>(policy: Policy, mut attempt: F) -> Result<(), (String, u32)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let mut backoff = policy.first_backoff;
    let mut made = 0;
    loop {
        made += 1;
        let failure = match attempt().await {
            Ok(()) => return Ok(()),
            Err(f) => f,
        };
        if failure.permanent || made > policy.retries {
            return Err((failure.message, made));
        }
        let wait = failure.retry_after.unwrap_or(backoff).min(policy.max_wait);
        tracing::debug!(
            "notification attempt {made} failed ({}); retrying in {}",
            failure.message,
            crate::runtime::units::human_duration(wait)
        );
        tokio::time::sleep(wait).await;
        backoff = backoff.saturating_mul(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn retries_then_gives_up_and_stops_on_permanent_failures() {
        let calls = AtomicU32::new(0);
        let quick = |retries| Policy {
            first_backoff: Duration::from_millis(1),
            ..Policy::new(retries)
        };
        let r = run(quick(2), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Failure::transient("503"))
        })
        .await;
        assert_eq!(r, Err(("503".to_string(), 3)));
        let calls = AtomicU32::new(0);
        let r = run(quick(5), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Failure::permanent("404"))
        })
        .await;
        assert_eq!(r, Err(("404".to_string(), 1)));
    }
}
