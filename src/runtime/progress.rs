//! Progress goes through a small trait: the CLI shows bytes and rate on a terminal
//! ([`Terminal`]), and a library caller or a daemon shows nothing ([`Silent`]) or its own thing.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Where an operation's progress goes.
pub trait Progress: Send + Sync {
    /// Starts showing `message` with the byte count in `counter` (out of `total`, when known).
    /// The returned value stops showing it when dropped.
    fn start(
        &self,
        message: &str,
        total: Option<u64>,
        counter: Arc<AtomicU64>,
    ) -> Box<dyn Send + Sync>;
}

/// Shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: Option<u64>, _: Arc<AtomicU64>) -> Box<dyn Send + Sync> {
        Box::new(())
    }
}

/// One piece of work whose bytes are counted in [`Task::counter`] while it lives.
pub struct Task {
    /// Add the bytes moved so far.
    pub counter: Arc<AtomicU64>,
    _shown: Box<dyn Send + Sync>,
}

impl Task {
    /// Starts `message` on `progress`.
    #[must_use]
    pub fn start(progress: &dyn Progress, message: &str, total: Option<u64>) -> Task {
        let counter = Arc::new(AtomicU64::new(0));
        let shown = progress.start(message, total, counter.clone());
        Task {
            counter,
            _shown: shown,
        }
    }

    /// A task that shows nothing (its bytes are still counted).
    #[must_use]
    pub fn hidden() -> Task {
        Task::start(&Silent, "", None)
    }
}

/// The bar on the terminal. There is one terminal per process, so the bar being drawn is
/// process-wide: log lines hide it while they print ([`suspend`]).
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

/// A bar (or a spinner when the total is unknown) on stderr, for a person at a terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminal;

impl Progress for Terminal {
    fn start(
        &self,
        message: &str,
        total: Option<u64>,
        counter: Arc<AtomicU64>,
    ) -> Box<dyn Send + Sync> {
        Box::new(Shown::new(message, total, counter))
    }
}

/// A bar on the terminal and the thread that moves it.
struct Shown {
    bar: ProgressBar,
    ticker: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Shown {
    fn new(message: &str, total: Option<u64>, counter: Arc<AtomicU64>) -> Shown {
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
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (bar.clone(), stop.clone());
        let ticker = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                b.set_position(counter.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Shown {
            bar,
            ticker: Some(ticker),
            stop,
        }
    }
}

impl Drop for Shown {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        self.bar.finish_and_clear();
        *ACTIVE.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}
