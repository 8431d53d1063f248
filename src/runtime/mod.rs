//! What every operation needs from the OS: children that die with us, temp files, signals,
//! secrets kept out of output, logging, progress and local file-system rules.

pub mod context;
pub mod fsutil;
pub mod hooks;
pub mod logging;
pub mod owner;
pub mod process;
pub mod progress;
pub mod redact;
pub mod restore_state;
pub mod schedule;
pub mod shell;
pub mod signal;
pub mod units;
