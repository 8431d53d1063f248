//! `backup --globals`: the server's roles and tablespaces, which pg_dump leaves out, written by
//! `pg_dumpall --globals-only` next to the new backup as `<backup file>.globals.sql` (encrypted
//! like the backup, `.age`), privately and atomically, before the sidecar that records its
//! checksum: the sidecar stays the mark of a complete backup set.

use super::Globals;
use crate::archive::crypto::Sealer;
use crate::archive::format::{Algorithm, Compression};
use crate::archive::meta::GlobalsFile;
use crate::archive::naming;
use crate::archive::sink::{self, Sink};
use crate::pg::tools::Tool;
use crate::runtime::context::OpContext;
use crate::runtime::fsutil;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicU64;

/// pg_dumpall's run for one backup.
pub(super) struct Job {
    pub pg_dumpall: Tool,
    /// The children's environment (the connection's variables).
    pub env: Vec<(String, String)>,
    /// `--dbname`, without the password (pg_dumpall ignores its database name).
    pub dbname: String,
    /// The database pg_dumpall connects to (`--database`): the one being backed up, which the
    /// user may connect to (`postgres` may not exist, or be closed to them).
    pub database: String,
    pub globals: Globals,
    /// The published backup the script goes with.
    pub backup: PathBuf,
    pub op: OpContext,
}

impl Job {
    /// Writes the script next to the backup; it stays registered as a temp file until the
    /// sidecar is written. On failure nothing of it is left.
    pub fn run(self, sealer: Option<&Sealer>) -> Result<(PathBuf, GlobalsFile)> {
        let backup_name = self
            .backup
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        let file = naming::globals_name(&backup_name, sealer.is_some());
        let path = self.backup.with_file_name(&file);
        let tmp = fsutil::partial_path(&path);
        self.op.register_temp(&tmp);
        let written = self
            .write(&tmp, sealer)
            .and_then(|w| self.publish(&tmp, &path).map(|()| w));
        if written.is_err() {
            let _ = fsutil::remove_any(&tmp);
            self.op.unregister_temp(&tmp);
        }
        let w = written?;
        Ok((
            path,
            GlobalsFile {
                file,
                size_bytes: w.stored_bytes,
                sha256: w.sha256,
                role_passwords: self.globals == Globals::WithPasswords,
            },
        ))
    }

    fn command(&self) -> Command {
        let mut cmd = self.pg_dumpall.command(&self.env);
        cmd.args(["--globals-only", "--no-password"]);
        if self.globals != Globals::WithPasswords {
            cmd.arg("--no-role-passwords");
        }
        cmd.arg(format!("--database={}", self.database));
        if !self.dbname.is_empty() {
            cmd.arg(format!("--dbname={}", self.dbname));
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        cmd
    }

    /// pg_dumpall's output through the sink (encrypted like the backup, not compressed).
    fn write(&self, tmp: &Path, sealer: Option<&Sealer>) -> Result<sink::Written> {
        let file = fsutil::create_private(tmp)
            .map_err(|e| fsutil::local_io_error("cannot create", tmp, &e))?;
        let none = Compression {
            algorithm: Algorithm::None,
            level: 0,
        };
        let mut out = Sink::new(file, none, sealer)?;
        let mut cmd = self.command();
        let mut running = self.pg_dumpall.spawn(&self.op, &mut cmd)?;
        let Some(mut stdout) = running.child.stdout.take() else {
            running.kill();
            anyhow::bail!("pg_dumpall has no stdout");
        };
        if let Err(e) = sink::pump(&mut stdout, &mut out, &AtomicU64::new(0)) {
            running.kill();
            return Err(anyhow::Error::new(e).context(format!("writing {}", tmp.display())));
        }
        running.wait()?.check()?;
        out.finish()
            .with_context(|| format!("writing {}", tmp.display()))
    }

    /// Renames the script to its final name, never over a file, unless the run was cancelled.
    fn publish(&self, tmp: &Path, path: &Path) -> Result<()> {
        self.op.commit(|| {
            fsutil::rename_noreplace(tmp, path)
                .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
            self.op.unregister_temp(tmp);
            self.op.register_temp(path);
            let dir = path.parent().unwrap_or(Path::new("."));
            fsutil::sync_dir(dir).context("syncing the backup folder")
        })
    }
}
