//! A local HTTP server for the notification tests: it records every request and answers as the
//! test scripts it (a status and body, a 429 with `retry_after`, a 5xx, a hang), standing in for
//! the Telegram Bot API, Slack, Discord, ntfy, a webhook and a healthchecks endpoint.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Request {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: body is not JSON ({e}): {}",
                self.method,
                self.path,
                self.text()
            )
        })
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How to answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status and JSON body.
    Status(u16, String),
    /// Say nothing for this long, then close.
    Hang(Duration),
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    script: Vec<(String, VecDeque<Reply>)>,
}

/// The server; it runs until the test process ends.
#[derive(Clone)]
pub struct Catcher {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl Catcher {
    /// Starts a server on a free port of 127.0.0.1.
    pub fn start() -> Catcher {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let catcher = Catcher {
            port,
            state: Arc::default(),
        };
        let c = catcher.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let c = c.clone();
                std::thread::spawn(move || c.serve(stream));
            }
        });
        catcher
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next requests whose path contains `path_part` get `replies`, in order (then 200).
    pub fn script(&self, path_part: &str, replies: Vec<Reply>) {
        let mut s = self.state.lock().unwrap();
        s.script.push((path_part.to_string(), replies.into()));
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests whose path contains `part`.
    pub fn to(&self, part: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.contains(part))
            .collect()
    }

    /// Waits until `n` requests went to a path containing `part`.
    pub fn wait_for(&self, part: &str, n: usize, timeout: Duration) -> Vec<Request> {
        let end = Instant::now() + timeout;
        loop {
            let got = self.to(part);
            if got.len() >= n || Instant::now() > end {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn next_reply(&self, path: &str) -> Reply {
        let mut s = self.state.lock().unwrap();
        for (part, replies) in &mut s.script {
            if path.contains(part.as_str()) {
                if let Some(r) = replies.pop_front() {
                    return r;
                }
            }
        }
        Reply::Status(200, r#"{"ok":true,"result":[]}"#.into())
    }

    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let Some(request) = read_request(&mut reader) else {
            return;
        };
        let path = request.path.clone();
        self.state.lock().unwrap().requests.push(request);
        let mut stream = stream;
        match self.next_reply(&path) {
            Reply::Hang(d) => std::thread::sleep(d),
            Reply::Status(code, body) => {
                if path.contains("/getUpdates") && body.contains("\"result\":[]") {
                    // An empty long poll: answer after a while, as Telegram does.
                    std::thread::sleep(Duration::from_millis(200));
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        }
    }
}

/// A TCP port of 127.0.0.1 that was free a moment ago, for a server of a test to listen on.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A URL where nothing listens, for the rest of the test process: its port is held by a socket
/// that is bound but never listens, so a connection is refused and no server of a parallel test
/// can be given the port (a port freed again could be, and then answered).
pub fn down_url() -> String {
    // SAFETY: plain socket calls on a socket of our own, with a zeroed sockaddr_in of the right
    // size; the descriptor is deliberately never closed.
    let port = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let bound = libc::bind(fd, std::ptr::addr_of!(addr).cast(), len);
        assert!(bound == 0, "bind: {}", std::io::Error::last_os_error());
        let mut len = len;
        let named = libc::getsockname(fd, std::ptr::addr_of_mut!(addr).cast(), &mut len);
        assert!(
            named == 0,
            "getsockname: {}",
            std::io::Error::last_os_error()
        );
        u16::from_be(addr.sin_port)
    };
    format!("http://127.0.0.1:{port}")
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(len) = find("content-length") {
        let mut body = vec![0; len.parse().ok()?];
        reader.read_exact(&mut body).ok()?;
        body
    } else if find("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        read_chunked(reader)?
    } else {
        Vec::new()
    };
    Some(Request {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    })
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        let mut chunk = vec![0; n + 2];
        reader.read_exact(&mut chunk).ok()?;
        if n == 0 {
            return Some(body);
        }
        body.extend_from_slice(&chunk[..n]);
    }
}

/// The parts of a multipart/form-data body: (name, filename, bytes).
pub fn multipart(req: &Request) -> Vec<(String, Option<String>, Vec<u8>)> {
    let ct = req.header("content-type").expect("a content type");
    let boundary = format!("--{}", ct.split("boundary=").nth(1).expect("a boundary"));
    let body = &req.body;
    let mut parts = Vec::new();
    let positions: Vec<usize> = find_all(body, boundary.as_bytes());
    for w in positions.windows(2) {
        let part = &body[w[0] + boundary.len() + 2..w[1] - 2];
        let split = find_all(part, b"\r\n\r\n")[0];
        let head = String::from_utf8_lossy(&part[..split]).into_owned();
        let value = part[split + 4..].to_vec();
        let field = |key: &str| {
            head.split(&format!("{key}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(str::to_string)
        };
        parts.push((field("name").unwrap_or_default(), field("filename"), value));
    }
    parts
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    (0..hay.len().saturating_sub(needle.len() - 1))
        .filter(|&i| &hay[i..i + needle.len()] == needle)
        .collect()
}
