//! Which backups to keep: a pure function of (backups, policy, now).
