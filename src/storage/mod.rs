//! Where backups are kept, and the lock that lets one writer at a time change a folder.

pub mod lock;
