//! Progress on a terminal: bytes and rate while data moves; nothing at all off a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Runs `f` with any progress bar hidden, so log lines don't tear it.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bar = ACTIVE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    match bar {
        Some(b) => b.suspend(f),
        None => f(),
    }
}

/// A byte counter shown as a bar (or spinner when the total is unknown) while it lives.
pub struct Progress {
    pub counter: Arc<AtomicU64>,
    bar: Option<ProgressBar>,
    ticker: Option<std::thread::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Progress {
    /// Shows progress when `enabled` (stderr is a terminal and not quiet).
    #[must_use]
    pub fn new(enabled: bool, message: &str, total: Option<u64>) -> Progress {
        let counter = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if !enabled {
            return Progress {
                counter,
                bar: None,
                ticker: None,
                stop,
            };
        }
        let bar = match total {
            Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr())
                .with_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {elapsed}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_message(message.to_string());
        *ACTIVE.lock().unwrap_or_else(PoisonError::into_inner) = Some(bar.clone());
        let (c, b, s) = (counter.clone(), bar.clone(), stop.clone());
        let ticker = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                b.set_position(c.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Progress {
            counter,
            bar: Some(bar),
            ticker: Some(ticker),
            stop,
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        *ACTIVE.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}
