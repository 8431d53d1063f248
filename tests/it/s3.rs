//! A real S3 server for the off-site tests: `s3s-fs` (crates.io), started by each test on a free
//! port of 127.0.0.1 over a temporary folder, with an access key and a secret key so that every
//! request's signature is checked. A bucket is a folder of that root, an object a file in it, so
//! tests can alter or delete what the server holds. Stopped when dropped; a test can stop it and
//! start it again on the same port.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The access key the server accepts.
pub const ACCESS_KEY: &str = "AKIAAOSTEST0000KEY01";
/// The secret key the server accepts; distinctive so tests can look for it in any output.
pub const SECRET_KEY: &str = "aosTestSecret/Key+0123456789abcdefXYZ";

const INSTALL_HINT: &str = "The off-site tests need the S3 server s3s-fs; they never skip.\n\
Install it: cargo install s3s-fs --version 0.14.1 --locked --features binary --root ~/.cache/aos-backup-test\n\
(scripts/test.sh does this when it is missing), or set AOS_TEST_S3S_FS to its path.";

/// A running s3s-fs.
pub struct S3Server {
    /// The folder it serves: one subfolder per bucket.
    pub root: TempDir,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    port: u16,
    child: Option<Child>,
}

/// The s3s-fs binary: `AOS_TEST_S3S_FS`, else the test cache, else `PATH`.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("AOS_TEST_S3S_FS") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let cached = home.join(".cache/aos-backup-test/bin/s3s-fs");
    if cached.is_file() {
        return cached;
    }
    which_on_path("s3s-fs").unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

fn which_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl S3Server {
    /// Starts a server with the bucket `bucket`.
    pub fn start(bucket: &str) -> S3Server {
        let root = tempfile::Builder::new()
            .prefix("aos-backup-it-s3.")
            .tempdir()
            .expect("a folder for the S3 server");
        let port = crate::catcher::free_port();
        let mut server = S3Server {
            root,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            child: None,
        };
        server.bucket(bucket);
        server.resume();
        server
    }

    /// Creates the bucket `name` (a folder of the root).
    pub fn bucket(&self, name: &str) {
        std::fs::create_dir_all(self.root.path().join(name)).expect("create the bucket");
    }

    /// Where the server keeps `key` of `bucket`.
    pub fn object(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.path().join(bucket).join(key)
    }

    /// Every object key under `bucket`/`prefix`, relative to the bucket, sorted.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let base = self.root.path().join(bucket);
        let mut all = Vec::new();
        walk(&base, &base, &mut all);
        all.sort();
        all
    }

    /// Stops the server (the port stays ours to start it again).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `sig` to the server (SIGSTOP freezes it: connections are accepted by the kernel, and
    /// nothing answers; SIGCONT resumes it).
    pub fn signal(&self, sig: libc::c_int) {
        let child = self.child.as_ref().expect("the server runs");
        let pid = libc::pid_t::try_from(child.id()).expect("a pid");
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid, sig);
        }
    }

    /// Starts the server (again) on its port, and waits until it accepts connections.
    pub fn resume(&mut self) {
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start s3s-fs ({e})\n{INSTALL_HINT}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal(libc::SIGCONT);
        }
        self.stop();
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for e in read.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(base, &p, out);
        } else if let Ok(rel) = p.strip_prefix(base) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}
