//! A real Azure Blob Storage server for the `azblob://` tests: Azurite (npm), started by each
//! test on a free port of 127.0.0.1 over a temporary folder. Every request's SharedKey signature
//! is checked against the emulator's well-known account. The container is created with a signed
//! request of our own (the emulator starts with none).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The emulator's well-known account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Its well-known key (public: Azurite's documentation gives it).
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

const INSTALL_HINT: &str = "The Azure tests need the Azurite emulator (npm); they never skip.\n\
Install it: npm install --prefix ~/.cache/aos-backup-test/npm azurite@3.35.0\n\
(scripts/test.sh does this when it is missing), or set AOS_TEST_AZURITE to azurite-blob's path.";

/// A running Azurite blob service.
pub struct Azurite {
    _root: TempDir,
    /// `http://127.0.0.1:PORT/devstoreaccount1`.
    pub endpoint: String,
    port: u16,
    child: Child,
}

/// `azurite-blob`: `AOS_TEST_AZURITE`, else the test cache, else `PATH`.
fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("AOS_TEST_AZURITE") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let cached = home.join(".cache/aos-backup-test/npm/node_modules/.bin/azurite-blob");
    if cached.is_file() {
        return cached;
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("azurite-blob"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

impl Azurite {
    /// Starts the emulator with the container `container`.
    pub fn start(container: &str) -> Azurite {
        let root = tempfile::Builder::new()
            .prefix("aos-backup-it-azurite.")
            .tempdir()
            .expect("a folder for Azurite");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(binary())
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(root.path())
            .args(["--skipApiVersionCheck", "--silent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start azurite-blob ({e})\n{INSTALL_HINT}"));
        let server = Azurite {
            _root: root,
            endpoint: format!("http://127.0.0.1:{port}/{ACCOUNT}"),
            port,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "Azurite did not start on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        server.create_container(container);
        server
    }

    /// Creates `name` with a request signed by the account's key (SharedKey).
    fn create_container(&self, name: &str) {
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let version = "2021-08-06";
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{ACCOUNT}/{ACCOUNT}/{name}\nrestype:container"
        );
        let key = B64.decode(KEY).expect("the key is base64");
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("a key");
        mac.update(to_sign.as_bytes());
        let signature = B64.encode(mac.finalize().into_bytes());
        let request = format!(
            "PUT /{ACCOUNT}/{name}?restype=container HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nx-ms-date: {date}\r\nx-ms-version: {version}\r\nAuthorization: SharedKey {ACCOUNT}:{signature}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream.write_all(request.as_bytes()).expect("send");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 201"),
            "creating the container: {answer}"
        );
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
