//! The one process-wide fact the OS forces on us: a signal handler can only set a flag. The CLI's
//! loop reads it and cancels its operation's [`OpContext`](super::context::OpContext); every
//! context also reads it, so a child that dies of the same Ctrl-C is never taken for a failure.

use std::sync::atomic::{AtomicI32, Ordering};

static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Records SIGINT/SIGTERM the moment they arrive, in the signal handler itself. Only a front end
/// that owns the process (the CLI, a daemon) installs it; a library caller keeps its own signals.
pub fn install_flag() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the action only does an atomic store, which is async-signal-safe.
        let registered = unsafe {
            signal_hook_registry::register(sig, move || {
                let _ = RECEIVED.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
            })
        };
        if let Err(e) = registered {
            tracing::debug!("cannot watch signal {sig}: {e}");
        }
    }
}

/// The first SIGINT or SIGTERM the process received, if any (only once [`install_flag`] ran).
#[must_use]
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}
