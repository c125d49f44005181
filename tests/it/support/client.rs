//! The client's side of the wire.
//!
//! One rule for "the balancer closed the connection": a read returns `Ok(0)` (the FIN) or
//! fails with a reset. A read that times out means the connection is still open, and fails
//! the test: a close check must be able to fail. Every helper here that waits for a close
//! goes through [`try_read_until_closed`].

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Read and write timeout of test client sockets: how long a test waits for a byte, or
/// for a close, before it fails. A few seconds: ample for a balancer and backends on this
/// machine, and short enough that a wrong answer (no answer at all) fails a test quickly
/// instead of holding the suite (cargo-mutants times a broken suite out).
pub const CLIENT_WAIT: Duration = Duration::from_secs(5);

/// A ureq agent that returns 4xx/5xx responses instead of errors, and gives up on a
/// request after [`CLIENT_WAIT`].
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(CLIENT_WAIT))
        .build()
        .into()
}

/// GETs `url`; returns status and body.
pub fn get(url: &str) -> (u16, String) {
    let mut resp = agent()
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}

/// Clients that send GETs without a pause until they are stopped, each with an agent of its
/// own (so each keeps its connections to the balancer alive and reuses them), counting the
/// answers that were as expected and keeping what went wrong otherwise.
pub struct LoadClients {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    clients: Vec<JoinHandle<()>>,
}

impl LoadClients {
    /// Starts `n` clients; client `i` GETs `url(i)`. An answer is served when its status is
    /// 200 and `good` accepts its body; any other status, a body `good` refuses, or an error
    /// is a failure.
    pub fn start(
        n: usize,
        url: impl Fn(usize) -> String,
        good: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> LoadClients {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let good = Arc::new(good);
        let clients = (0..n)
            .map(|i| {
                let (stop, served, failures, good) = (
                    Arc::clone(&stop),
                    Arc::clone(&served),
                    Arc::clone(&failures),
                    Arc::clone(&good),
                );
                let url = url(i);
                thread::spawn(move || {
                    let agent = agent();
                    while !stop.load(Ordering::SeqCst) {
                        let failure = match agent.get(&url).call() {
                            Ok(mut r) => {
                                let status = r.status().as_u16();
                                match r.body_mut().read_to_string() {
                                    Ok(body) if status == 200 && good(&body) => None,
                                    Ok(body) => Some(format!("{status}: {body}")),
                                    Err(e) => Some(format!("{status}, body: {e}")),
                                }
                            }
                            Err(e) => Some(e.to_string()),
                        };
                        match failure {
                            None => {
                                served.fetch_add(1, Ordering::SeqCst);
                            }
                            Some(f) => failures.lock().unwrap().push(f),
                        }
                    }
                })
            })
            .collect();
        LoadClients {
            stop,
            served,
            failures,
            clients,
        }
    }

    /// Answers served so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }

    /// Waits until `n` more answers than now are served; panics after `limit`.
    pub fn wait_for_more(&self, n: u64, limit: Duration) {
        let target = self.served() + n;
        super::wait_for(limit, &format!("{n} more answers"), || {
            self.served() >= target
        });
    }

    /// Stops the clients and waits for them; panics if a request failed. Returns how many
    /// answers were served.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.clients.drain(..) {
            c.join().unwrap();
        }
        let failures = self.failures.lock().unwrap();
        assert!(
            failures.is_empty(),
            "{} failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        self.served()
    }
}

impl Drop for LoadClients {
    /// Stops the clients of a test that failed before [`LoadClients::finish`].
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Connects to `addr` with [`CLIENT_WAIT`] timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(CLIENT_WAIT)).unwrap();
    s.set_write_timeout(Some(CLIENT_WAIT)).unwrap();
    s
}

/// Does this read error mean the peer closed the connection (a reset)?
fn is_reset(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::ConnectionReset
}

/// Does this read error mean the read timeout passed (the connection is still open)?
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Reads until the peer closes (`Ok(0)` or a reset), appending to `out`; `Err` if a read
/// times out (the connection is still open) or fails otherwise. Uses the socket's read
/// timeout.
pub fn try_read_until_closed(s: &mut TcpStream, out: &mut Vec<u8>) -> Result<(), String> {
    let started = Instant::now();
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if is_reset(&e) => return Ok(()),
            Err(e) => {
                return Err(format!(
                    "not closed after {:?} ({e}); got {:?}",
                    started.elapsed(),
                    String::from_utf8_lossy(out)
                ));
            }
        }
    }
}

/// Reads until the peer closes; panics if it does not within the socket's read timeout.
pub fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    try_read_until_closed(s, &mut out).unwrap_or_else(|e| panic!("{e}"));
    out
}

/// Sends `request` on a new connection and reads until the balancer closes it (panics if it
/// does not); the answer, lossily as text.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = connect(addr);
    s.write_all(request).unwrap();
    String::from_utf8_lossy(&read_until_closed(&mut s)).into_owned()
}

/// Why no response came.
#[derive(Debug, PartialEq)]
pub enum NoResponse {
    /// The peer closed the connection (the FIN, a reset, or a write that found it gone)
    /// before a byte of a response.
    Closed,
    /// The connection is still open, and no byte came within the read timeout.
    Silent,
}

/// What one read on a client connection came to.
enum Io {
    Data,
    Closed,
    Silent,
}

/// A response as read off the wire, by [`RawConn::try_response`].
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Status line and header fields, up to and with the empty line.
    pub head: String,
    /// The body as received, lossily as text.
    pub body: String,
}

impl Response {
    /// The value of the first header field `name` (any case), if present.
    pub fn field(&self, name: &str) -> Option<&str> {
        field_values(&self.head, name).next()
    }

    /// Does it say `Connection: close`?
    pub fn closes(&self) -> bool {
        self.field("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Sends `raw` on a new connection and reads one response; `Err` if none came (see
/// [`RawConn::try_response`]), or if the peer closed before `raw` was all sent.
pub fn request(addr: SocketAddr, raw: &[u8]) -> Result<Response, NoResponse> {
    let mut c = RawConn::open(addr);
    c.try_send(raw)?;
    c.try_response()
}

/// A GET for `path` with HTTP/1.1 and a Host field, as raw bytes.
pub fn get_raw(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: lb\r\n\r\n").into_bytes()
}

/// A raw client connection that keeps bytes read past one response for the next one.
pub struct RawConn {
    pub stream: TcpStream,
    pending: Vec<u8>,
}

impl RawConn {
    pub fn open(addr: SocketAddr) -> RawConn {
        RawConn::wrap(connect(addr))
    }

    pub fn wrap(stream: TcpStream) -> RawConn {
        RawConn {
            stream,
            pending: Vec::new(),
        }
    }

    /// Sends `bytes`; panics if the peer has closed the connection.
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes)
            .unwrap_or_else(|_| panic!("the peer closed the connection before it was sent"));
    }

    /// Sends `bytes`; `Err(Closed)` if the peer has closed the connection already (the write
    /// found it gone). Panics on another error.
    pub fn try_send(&mut self, bytes: &[u8]) -> Result<(), NoResponse> {
        match self.stream.write_all(bytes) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::BrokenPipe
                        | ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                ) =>
            {
                Err(NoResponse::Closed)
            }
            Err(e) => panic!("write: {e}"),
        }
    }

    /// Reads more into `pending`: data, the close, or silence for the socket's read timeout.
    /// Panics on any other error.
    fn read_some(&mut self) -> Io {
        let mut buf = [0u8; 16384];
        match self.stream.read(&mut buf) {
            Ok(0) => Io::Closed,
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                Io::Data
            }
            Err(e) if is_reset(&e) => Io::Closed,
            Err(e) if is_timeout(&e) => Io::Silent,
            Err(e) => panic!(
                "read: {e}; have {:?}",
                String::from_utf8_lossy(&self.pending)
            ),
        }
    }

    /// Reads more; `false` when the peer closed. Panics on a timeout or another error.
    fn more(&mut self) -> bool {
        match self.read_some() {
            Io::Data => true,
            Io::Closed => false,
            Io::Silent => panic!(
                "no byte and no close within the read timeout; have {:?}",
                String::from_utf8_lossy(&self.pending)
            ),
        }
    }

    /// Reads one response to a request that was not HEAD. See [`RawConn::response_to`].
    pub fn response(&mut self) -> (String, Vec<u8>) {
        self.response_to("GET")
    }

    /// Reads exactly one response (head, then a Content-Length, chunked or close-delimited
    /// body) to a request with `method`; returns the head (status line and fields, blank line
    /// included) and the body as received (still chunk-encoded when chunked). Panics if the
    /// connection closes first.
    pub fn response_to(&mut self, method: &str) -> (String, Vec<u8>) {
        let head = self
            .head()
            .unwrap_or_else(|why| panic!("no response head: {why:?}"));
        let body = self.body(&head, method);
        (head, body)
    }

    /// Reads one response to a request that was not HEAD, as [`RawConn::response`] does, or
    /// says why none came: the peer closed the connection ([`NoResponse::Closed`]), or the
    /// read timeout passed ([`NoResponse::Silent`]), before a byte of it. Panics on half a
    /// response (closed or silent after its first byte).
    pub fn try_response(&mut self) -> Result<Response, NoResponse> {
        let head = self.head()?;
        let body = self.body(&head, "GET");
        Ok(Response {
            status: status_of(&head),
            head,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// Reads up to the end of a response head and takes it (blank line included); `Err` if
    /// not a byte of it came. Panics on half a head.
    fn head(&mut self) -> Result<String, NoResponse> {
        let head_end = loop {
            if let Some(p) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match self.read_some() {
                Io::Data => {}
                Io::Closed if self.pending.is_empty() => return Err(NoResponse::Closed),
                Io::Silent if self.pending.is_empty() => return Err(NoResponse::Silent),
                Io::Closed | Io::Silent => panic!(
                    "half a response head: {:?}",
                    String::from_utf8_lossy(&self.pending)
                ),
            }
        };
        let head = String::from_utf8_lossy(&self.pending[..head_end]).into_owned();
        self.pending.drain(..head_end);
        Ok(head)
    }

    /// Reads and takes the body of the response with `head` to a request with `method`.
    fn body(&mut self, head: &str, method: &str) -> Vec<u8> {
        let lower = head.to_ascii_lowercase();
        let status = status_of(head);
        let no_body =
            method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304;
        let body_len = if no_body {
            0
        } else if let Some(len) = header(&lower, "content-length") {
            len.parse().unwrap()
        } else if header(&lower, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                if let Some(p) = chunked_end(&self.pending) {
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
        self.pending.drain(..body_len).collect()
    }

    /// Reads until the peer closes (panics if it does not); returns what came.
    pub fn rest(&mut self) -> String {
        while self.more() {}
        String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned()
    }

    /// Panics unless the peer closes without sending another byte.
    pub fn expect_close(&mut self) {
        let rest = self.rest();
        assert!(rest.is_empty(), "bytes before the close: {rest:?}");
    }
}

/// Where a chunked body (with or without trailers) ends in `data`, if it has.
pub fn chunked_end(data: &[u8]) -> Option<usize> {
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

/// Decodes a whole chunked body; returns the data and the trailer section (with its final
/// blank line). Panics on bad chunk framing.
pub fn decode_chunked(mut body: &[u8]) -> (Vec<u8>, String) {
    let mut data = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let line = std::str::from_utf8(&body[..line_end]).unwrap();
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
        body = &body[line_end + 2..];
        if size == 0 {
            return (data, String::from_utf8_lossy(body).into_owned());
        }
        data.extend_from_slice(&body[..size]);
        assert_eq!(&body[size..size + 2], b"\r\n");
        body = &body[size + 2..];
    }
}

/// Reads exactly one response to a non-HEAD request from a plain stream (bytes after it are
/// lost: use [`RawConn`] to read several).
pub fn read_response(s: &mut TcpStream) -> (String, Vec<u8>) {
    RawConn::wrap(s.try_clone().unwrap()).response()
}

/// Splits a whole answer read until the close into head (blank line included) and body.
pub fn split_answer(text: &str) -> (&str, &str) {
    let end = text
        .find("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {text:?}"));
    (&text[..end + 4], &text[end + 4..])
}

/// The value of the first field `name` (lowercase) in a lowercased head.
pub fn header<'a>(lower_head: &'a str, name: &str) -> Option<&'a str> {
    lower_head.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// Every value of field `name` (any case) in a head, in order.
pub fn fields(head: &str, name: &str) -> Vec<String> {
    field_values(head, name).map(str::to_string).collect()
}

/// The values of field `name` (any case) in a head, in order, trimmed.
fn field_values<'a>(head: &'a str, name: &str) -> impl Iterator<Item = &'a str> {
    head.lines().skip(1).filter_map(move |l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The status code of a response (`HTTP/1.1 200 OK...`).
pub fn status_of(response: &str) -> u16 {
    response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {response:?}"))
}

/// The status line of a response, without its CRLF.
pub fn status_line(response: &str) -> &str {
    response.split("\r\n").next().unwrap_or("")
}

/// Reads the next response on `c`: the balancer's 502 page for a backend that closed the
/// connection without a byte of answer; returns its head.
pub fn assert_502_for_no_answer(c: &mut RawConn) -> String {
    let (head, body) = c.response();
    assert_page(
        &head,
        &body,
        "502 Bad Gateway",
        "the backend closed the connection without a response",
    );
    head
}

/// Checks that `head` and `body` are one of the balancer's own pages: the exact status line,
/// HTML, a Content-Length that is the body's, and `why` on the page.
pub fn assert_page(head: &str, body: &[u8], status: &str, why: &str) {
    assert_page_framing(head, body, status);
    let body = String::from_utf8_lossy(body);
    assert!(body.contains(&format!("<p>{why}</p>")), "{why:?} in {body}");
}

/// Checks that `head` and `body` are one of the balancer's own pages with `status`
/// (`502 Bad Gateway`), whatever it says.
pub fn assert_page_framing(head: &str, body: &[u8], status: &str) {
    assert_eq!(status_line(head), format!("HTTP/1.1 {status}"), "{head}");
    assert_eq!(
        fields(head, "content-type"),
        ["text/html; charset=utf-8"],
        "{head}"
    );
    assert_eq!(
        fields(head, "content-length"),
        [body.len().to_string()],
        "{head}"
    );
    let body = String::from_utf8_lossy(body);
    assert!(body.contains(&format!("<title>{status}</title>")), "{body}");
}
