//! Helpers shared by the integration tests: start demo backends and a balancer on port 0,
//! talk to them with ureq or raw sockets, and wait for conditions without sleeping blindly.

#![allow(dead_code)]

use load_balancer::config::{BackendSpec, Config};
use load_balancer::demo::DemoBackend;
use load_balancer::server::Balancer;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A configuration for tests: port 0, no admin listener, quiet, the given backends.
pub fn config(urls: &[String]) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin: None,
        quiet: true,
        backends: urls
            .iter()
            .map(|u| BackendSpec::parse(u).unwrap())
            .collect(),
        ..Config::default()
    }
}

/// `n` demo backends on port 0 (Red, Blue, Green, ...).
pub fn demos(n: usize) -> Vec<DemoBackend> {
    (0..n)
        .map(|i| DemoBackend::start(i, "127.0.0.1:0".parse().unwrap()).unwrap())
        .collect()
}

/// URLs of demo backends.
pub fn urls(demos: &[DemoBackend]) -> Vec<String> {
    demos.iter().map(|d| d.url()).collect()
}

/// Demo backends and a balancer over them; both stop when dropped.
pub struct Setup {
    pub lb: Balancer,
    pub demos: Vec<DemoBackend>,
}

impl Setup {
    /// `n` demo backends behind a balancer with the default test configuration, changed by `tweak`.
    pub fn new(n: usize, tweak: impl FnOnce(&mut Config)) -> Setup {
        let demos = demos(n);
        let mut c = config(&urls(&demos));
        tweak(&mut c);
        let lb = Balancer::start(c).unwrap();
        Setup { lb, demos }
    }

    /// `http://127.0.0.1:PORT` of the balancer, plus `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.lb.addr(), path)
    }

    pub fn addr(&self) -> SocketAddr {
        self.lb.addr()
    }
}

/// A ureq agent that returns 4xx/5xx responses instead of errors, without a connection pool
/// surprise: every call opens what it needs.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// GETs `url`; returns status and body.
pub fn get(url: &str) -> (u16, String) {
    let mut resp = agent().get(url).call().unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}

/// Connects to `addr` with 10 s timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends `request` on a new connection and reads until the balancer closes it.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = connect(addr);
    s.write_all(request).unwrap();
    read_to_close(&mut s)
}

/// Reads until the peer closes (or 10 s of silence), lossily as text.
pub fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A raw client connection that keeps bytes read past one response for the next one.
pub struct RawConn {
    pub stream: TcpStream,
    pending: Vec<u8>,
}

impl RawConn {
    pub fn open(addr: SocketAddr) -> RawConn {
        RawConn {
            stream: connect(addr),
            pending: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn more(&mut self) -> bool {
        let mut buf = [0u8; 16384];
        match self.stream.read(&mut buf) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                true
            }
        }
    }

    /// Reads one response to a request that was not HEAD. See [`RawConn::response_to`].
    pub fn response(&mut self) -> (String, Vec<u8>) {
        self.response_to("GET")
    }

    /// Reads exactly one response (head, then a Content-Length or chunked body) to a request
    /// with `method`; returns the head (status line and fields, blank line included) and the
    /// body as received (still chunk-encoded when chunked). Panics if the connection closes first.
    pub fn response_to(&mut self, method: &str) -> (String, Vec<u8>) {
        let head_end = loop {
            if let Some(p) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            assert!(
                self.more(),
                "closed before a response head; got {:?}",
                String::from_utf8_lossy(&self.pending)
            );
        };
        let head = String::from_utf8_lossy(&self.pending[..head_end]).into_owned();
        self.pending.drain(..head_end);
        let lower = head.to_ascii_lowercase();
        let status: u16 = head[9..12].parse().unwrap();
        let no_body =
            method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304;
        let body_len = if no_body {
            0
        } else if let Some(len) = header(&lower, "content-length") {
            len.parse().unwrap()
        } else if header(&lower, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                if let Some(p) = find_chunked_end(&self.pending) {
                    break p;
                }
                assert!(self.more(), "closed mid-body");
            }
        } else {
            // Delimited by close.
            while self.more() {}
            self.pending.len()
        };
        while self.pending.len() < body_len {
            assert!(self.more(), "closed mid-body");
        }
        let body = self.pending.drain(..body_len).collect();
        (head, body)
    }

    /// Reads until the peer closes; returns what came.
    pub fn rest(&mut self) -> String {
        while self.more() {}
        String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned()
    }

    /// Did the peer close (EOF without further bytes) within the read timeout?
    pub fn is_closed(&mut self) -> bool {
        !self.more() && self.pending.is_empty()
    }
}

/// Where a chunked body (without trailers or with) ends in `data`, if it has.
fn find_chunked_end(data: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let line_end = pos + data[pos..].windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[pos..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        pos = line_end + 2;
        if size == 0 {
            // Trailers until an empty line.
            loop {
                let end = pos + data[pos..].windows(2).position(|w| w == b"\r\n")?;
                let empty = end == pos;
                pos = end + 2;
                if empty {
                    return Some(pos);
                }
            }
        }
        if data.len() < pos + size + 2 {
            return None;
        }
        pos += size + 2;
    }
}

/// Reads exactly one response to a non-HEAD request from a plain stream (bytes after it
/// are lost: use [`RawConn`] to read several).
pub fn read_response(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut conn = RawConn {
        stream: s.try_clone().unwrap(),
        pending: Vec::new(),
    };
    conn.response()
}

/// The value of the first field `name` (lowercase) in a lowercased head.
pub fn header<'a>(lower_head: &'a str, name: &str) -> Option<&'a str> {
    lower_head.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// Polls `check` every 10 ms until it is true; panics after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A scripted backend: for every connection it accepts, runs `handle` on its own thread.
pub struct ScriptedBackend {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl ScriptedBackend {
    pub fn start(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> ScriptedBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(handle);
        let accept = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let handle = Arc::clone(&handle);
                    thread::spawn(move || handle(stream));
                }
            })
        };
        ScriptedBackend {
            addr,
            stop,
            accept: Some(accept),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ScriptedBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

/// Reads one request head (up to the blank line) from a raw backend connection.
pub fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut data = Vec::new();
    let mut byte = [0u8; 1];
    while !data.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => data.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&data).into_owned())
}

/// An address nothing listens on (bound, then released).
pub fn dead_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}
