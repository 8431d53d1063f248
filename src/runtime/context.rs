//! One operation's share of the process: its cancellation, the children and temp files it must
//! clean up, the state of a restore it runs, its secrets, and where its progress goes. Each operation gets its
//! own, so two operations in one process (a daemon's backup and its bot's `/status`) never stop
//! or clean up each other's work.

use super::progress::{Progress, Silent, Task};
use super::redact::Secrets;
use super::restore_state::RestoreState;
use crate::error::Error;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

/// A cheap handle (clone it freely) on one operation's runtime state.
#[derive(Clone)]
pub struct OpContext {
    inner: Arc<Inner>,
}

struct Inner {
    cancelled: AtomicI32,
    children: Mutex<Vec<u32>>,
    temps: Mutex<Vec<PathBuf>>,
    /// Held while a finished backup is made visible, so a cancellation can't remove half of it.
    commit: Mutex<()>,
    /// Threads still reading a child's stderr.
    stderr_readers: AtomicUsize,
    restore: RestoreState,
    secrets: Secrets,
    progress: Arc<dyn Progress>,
    /// The context this one is a step of (see [`OpContext::child`]): its cancellation is ours.
    parent: Option<Arc<Inner>>,
    /// The live steps of this context, cancelled with it.
    steps: Mutex<Vec<Weak<Inner>>>,
    /// The backups this operation (or a step of it) made complete: an interruption keeps them.
    kept: Mutex<Vec<PathBuf>>,
}

impl Default for OpContext {
    fn default() -> Self {
        OpContext::new(Arc::new(Silent))
    }
}

impl std::fmt::Debug for OpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpContext")
            .field("cancelled", &self.cancelled())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl OpContext {
    /// A fresh context whose progress goes to `progress`.
    #[must_use]
    pub fn new(progress: Arc<dyn Progress>) -> Self {
        OpContext {
            inner: Arc::new(Inner::new(progress, None)),
        }
    }

    /// A fresh context for one step of this operation (one database of a run over several):
    /// its own children, temp files, restore state and secrets, its progress shown where this
    /// one's is. Cancelling this context cancels the step; a step created after that starts
    /// cancelled.
    #[must_use]
    pub fn child(&self) -> OpContext {
        let inner = Arc::new(Inner::new(
            self.inner.progress.clone(),
            Some(self.inner.clone()),
        ));
        let mut steps = lock(&self.inner.steps);
        steps.retain(|w| w.strong_count() > 0);
        steps.push(Arc::downgrade(&inner));
        OpContext { inner }
    }

    /// The signal that cancelled this operation, if any: its own cancellation, the one of the
    /// operation it is a step of, or a SIGINT or SIGTERM the process received (see
    /// `runtime::signal`).
    #[must_use]
    pub fn cancelled(&self) -> Option<i32> {
        self.inner.cancelled()
    }

    /// The error for a cancellation by `sig`, saying what is known: about a restore's target (see
    /// `RestoreState`), or the backups that were already complete and are kept.
    #[must_use]
    pub fn interrupted_error(&self, sig: i32) -> Error {
        let kept = lock(&self.inner.kept).clone();
        self.inner.restore.interrupted_error(sig, &kept)
    }

    /// Records that the backup at `path` is complete (its sidecar written): an interruption from
    /// now on keeps it, and says so. The operation this one is a step of learns it too.
    pub fn record_kept(&self, path: &Path) {
        let mut at = Some(&self.inner);
        while let Some(inner) = at {
            lock(&inner.kept).push(path.to_path_buf());
            at = inner.parent.as_ref();
        }
    }

    /// The secrets this operation learnt, masked in its messages (and in every log line).
    #[must_use]
    pub fn secrets(&self) -> &Secrets {
        &self.inner.secrets
    }

    /// The state of the restore this operation runs.
    #[must_use]
    pub fn restore(&self) -> &RestoreState {
        &self.inner.restore
    }

    /// Starts showing progress for `message`; it stops when the task is dropped.
    #[must_use]
    pub fn progress(&self, message: &str, total: Option<u64>) -> Task {
        Task::start(self.inner.progress.as_ref(), message, total)
    }

    /// Cancels the operation (SIGINT/SIGTERM, or a caller's stop): stops its children and removes
    /// its temp files. A backup being made visible finishes first.
    pub fn cancel(&self, sig: i32) {
        self.inner.cancelled.store(sig, Ordering::SeqCst);
        let steps: Vec<OpContext> = lock(&self.inner.steps)
            .iter()
            .filter_map(Weak::upgrade)
            .map(|inner| OpContext { inner })
            .collect();
        for step in steps {
            step.cancel(sig);
        }
        for pid in lock(&self.inner.children).iter() {
            if let Ok(pid) = i32::try_from(*pid) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        let _guard = lock(&self.inner.commit);
        self.cleanup_temps();
        if self.inner.restore.commit_written() {
            self.await_stderr_readers();
        }
    }

    /// COMMIT was handed to psql: let the stderr readers see the end of the children's output
    /// (bounded); the restore phase then says whether psql got as far as sending COMMIT.
    fn await_stderr_readers(&self) {
        let readers = &self.inner.stderr_readers;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while readers.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.inner
            .restore
            .set_stderr_drained(readers.load(Ordering::SeqCst) == 0);
    }

    /// Registers a temp file or folder to remove if the operation is cancelled or fails.
    pub fn register_temp(&self, path: &Path) {
        lock(&self.inner.temps).push(path.to_path_buf());
    }

    /// Forgets a temp path (it was renamed or removed).
    pub fn unregister_temp(&self, path: &Path) {
        lock(&self.inner.temps).retain(|p| p != path);
    }

    /// Removes this operation's registered temp files (after an error or a cancellation).
    pub fn cleanup_temps(&self) {
        for p in lock(&self.inner.temps).drain(..) {
            let _ = super::fsutil::remove_any(&p);
        }
    }

    /// Runs `f` (making a backup visible) unless the operation was cancelled; a cancellation
    /// waits for it.
    pub fn commit<T>(&self, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        let _guard = lock(&self.inner.commit);
        if let Some(sig) = self.cancelled() {
            return Err(self.interrupted_error(sig).into());
        }
        f()
    }

    /// Registers a child under the children lock unless the operation was cancelled: `cancel`
    /// (which sets the flag, then takes the lock) either finds the child to stop, or `start`
    /// sees the flag and starts nothing.
    pub(crate) fn track_child<C>(
        &self,
        start: impl FnOnce() -> anyhow::Result<C>,
        pid: impl Fn(&C) -> u32,
    ) -> anyhow::Result<C> {
        let mut children = lock(&self.inner.children);
        if let Some(sig) = self.cancelled() {
            return Err(self.interrupted_error(sig).into());
        }
        let child = start()?;
        children.push(pid(&child));
        Ok(child)
    }

    /// Forgets a child that was reaped.
    pub(crate) fn forget_child(&self, pid: u32) {
        lock(&self.inner.children).retain(|p| *p != pid);
    }

    /// Counts a thread that reads a child's stderr; the guard uncounts it.
    pub(crate) fn stderr_reader(&self) -> ReaderGuard {
        self.inner.stderr_readers.fetch_add(1, Ordering::SeqCst);
        ReaderGuard(self.clone())
    }
}

impl Inner {
    fn new(progress: Arc<dyn Progress>, parent: Option<Arc<Inner>>) -> Inner {
        Inner {
            cancelled: AtomicI32::new(0),
            children: Mutex::new(Vec::new()),
            temps: Mutex::new(Vec::new()),
            commit: Mutex::new(()),
            stderr_readers: AtomicUsize::new(0),
            restore: RestoreState::default(),
            secrets: Secrets::new(),
            progress,
            parent,
            steps: Mutex::new(Vec::new()),
            kept: Mutex::new(Vec::new()),
        }
    }

    fn cancelled(&self) -> Option<i32> {
        match self.cancelled.load(Ordering::SeqCst) {
            0 => match &self.parent {
                Some(p) => p.cancelled(),
                None => super::signal::received(),
            },
            s => Some(s),
        }
    }
}

/// Held by a thread that reads a child's stderr.
pub(crate) struct ReaderGuard(OpContext);

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.0.inner.stderr_readers.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_contexts_do_not_clean_up_each_others_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (OpContext::default(), OpContext::default());
        let (fa, fb) = (dir.path().join("a.partial"), dir.path().join("b.partial"));
        std::fs::write(&fa, "a").unwrap();
        std::fs::write(&fb, "b").unwrap();
        a.register_temp(&fa);
        b.register_temp(&fb);
        a.cancel(libc::SIGTERM);
        assert!(
            !fa.exists(),
            "the cancelled operation's temp file is removed"
        );
        assert!(fb.exists(), "the other operation's temp file is untouched");
        assert_eq!(a.cancelled(), Some(libc::SIGTERM));
        assert_eq!(
            b.cancelled(),
            None,
            "cancelling one operation leaves the other running"
        );
        b.cleanup_temps();
        assert!(!fb.exists());
    }

    #[test]
    fn cancelling_an_operation_cancels_its_steps_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let (run, other) = (OpContext::default(), OpContext::default());
        let (done, running) = (run.child(), run.child());
        let f = dir.path().join("step.partial");
        std::fs::write(&f, "x").unwrap();
        running.register_temp(&f);
        let sibling = other.child();
        done.cancel(libc::SIGINT);
        assert_eq!(run.cancelled(), None, "a step's end is not the run's");
        assert_eq!(running.cancelled(), None);
        run.cancel(libc::SIGTERM);
        assert_eq!(running.cancelled(), Some(libc::SIGTERM));
        assert!(!f.exists(), "the running step's temp file is removed");
        assert_eq!(run.child().cancelled(), Some(libc::SIGTERM));
        assert_eq!(sibling.cancelled(), None);
    }

    #[test]
    fn an_interruption_after_a_complete_backup_says_it_is_kept() {
        let ctx = OpContext::default();
        let msg = ctx.interrupted_error(libc::SIGINT).message;
        assert!(msg.ends_with("nothing was kept"), "{msg}");
        let step = ctx.child();
        step.record_kept(Path::new("/b/shop/aos-backup-20250101-000000.dump.zst"));
        for c in [&ctx, &step] {
            let msg = c.interrupted_error(libc::SIGTERM).message;
            assert!(!msg.contains("nothing was kept"), "{msg}");
            assert!(msg.contains("aos-backup-20250101-000000.dump.zst"), "{msg}");
        }
    }

    #[test]
    fn a_cancelled_context_commits_nothing_and_starts_no_child() {
        let ctx = OpContext::default();
        ctx.cancel(libc::SIGINT);
        assert!(ctx.commit(|| Ok(())).is_err());
        assert!(ctx.track_child(|| Ok(1u32), |p| *p).is_err());
    }
}
