//! The demo backends: the chapter's "Red Server" and "Blue Server", and more colours.
//!
//! In the chapter these are two `http.server.HTTPServer`s in daemon threads that answer GET
//! with one line of HTML. Here each is a small HTTP/1.1 server on its own listener thread,
//! a thread per connection, speaking keep-alive with `Content-Length`, answering every method.
//! Besides the page they serve:
//!
//! - `/echo`: what the backend received (method, target, headers, body), to see what the
//!   balancer forwards;
//! - `/status/NNN`: the page with status `NNN`, to see what the balancer relays;
//! - `/bytes/N`: `N` bytes, streamed, for bandwidth measurements.

use crate::conn::BufConn;
use crate::http::chunked::{Decoder, Step};
use crate::http::framing::{self, Body};
use crate::http::{Parse, Version, pages, request};
use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Names and CSS colours of the demo backends, in order: the chapter's two first.
pub const COLOURS: [(&str, &str); 8] = [
    ("Red", "red"),
    ("Blue", "blue"),
    ("Green", "green"),
    ("Orange", "orange"),
    ("Purple", "purple"),
    ("Teal", "teal"),
    ("Brown", "brown"),
    ("Pink", "hotpink"),
];

/// Most body bytes `/echo` shows; the rest is read and counted.
pub const ECHO_MAX_BODY: usize = 64 * 1024;
/// Limit on a demo backend's wait for a client (it is a demo, not a target for slowloris).
const DEMO_TIMEOUT: Duration = Duration::from_secs(60);

/// The page of demo backend number `index` (0 is Red, "Server 1").
pub fn page(index: usize) -> String {
    let (name, css) = COLOURS[index % COLOURS.len()];
    format!(
        "<h1 style='color:{css};'>{name} Server - Server {}</h1>",
        index + 1
    )
}

/// A running demo backend. Dropping it stops it.
#[derive(Debug)]
pub struct DemoBackend {
    index: usize,
    addr: SocketAddr,
    shared: Arc<DemoShared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct DemoShared {
    page: String,
    stopping: AtomicBool,
    /// Requests answered, for tests and the console.
    requests: AtomicU64,
    /// Open connections, closed on stop.
    open: Mutex<HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
}

impl DemoBackend {
    /// Starts demo backend number `index` (0: Red, 1: Blue, ...) listening on `addr`
    /// (port 0 picks a free port) and prints the chapter's start-up line.
    ///
    /// # Errors
    /// The address cannot be bound; the message names it.
    pub fn start(index: usize, addr: SocketAddr) -> io::Result<DemoBackend> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(DemoShared {
            page: page(index),
            stopping: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        let accept = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!(
                    "demo-{}",
                    COLOURS[index % COLOURS.len()].0.to_lowercase()
                ))
                .spawn(move || demo_accept(listener, &shared))?
        };
        Ok(DemoBackend {
            index,
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for `--backend`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `Red`, `Blue`, ...
    pub fn name(&self) -> &'static str {
        COLOURS[self.index % COLOURS.len()].0
    }

    /// The HTML page this backend answers with.
    pub fn page(&self) -> &str {
        &self.shared.page
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Stops listening and closes every open connection.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = accept.join();
        }
        for stream in self
            .shared
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for DemoBackend {
    fn drop(&mut self) {
        self.halt();
    }
}

fn demo_accept(listener: TcpListener, shared: &Arc<DemoShared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            shared
                .open
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, clone);
        }
        let worker = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("demo-conn".into())
            .stack_size(crate::server::THREAD_STACK)
            .spawn(move || {
                let _ = demo_serve(stream, &worker);
                worker
                    .open
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            });
        if spawned.is_err() {
            shared
                .open
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        }
    }
}

/// What a demo backend received, kept for `/echo`.
struct Received {
    method: String,
    target: String,
    version: Version,
    headers: Vec<(String, Vec<u8>)>,
    keep_alive: bool,
    body: Body,
}

fn demo_serve(stream: TcpStream, shared: &DemoShared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(DEMO_TIMEOUT))?;
    stream.set_write_timeout(Some(DEMO_TIMEOUT))?;
    let mut conn = BufConn::new(stream, 8 * 1024, 64 * 1024);
    loop {
        let received = loop {
            match request::parse(conn.data()) {
                Ok(Parse::Complete { head, len }) => {
                    let body = framing::request_body(&head);
                    let received = body.map(|body| Received {
                        method: head.method.to_string(),
                        target: head.target.to_string(),
                        version: head.version,
                        headers: head
                            .headers
                            .iter()
                            .map(|h| (h.name.to_string(), h.value.to_vec()))
                            .collect(),
                        keep_alive: head.keep_alive(),
                        body,
                    });
                    conn.consume(len);
                    break received;
                }
                Ok(Parse::Partial) => {
                    if conn.fill()? == 0 {
                        return Ok(());
                    }
                }
                Err(e) => break Err(e),
            }
        };
        let received = match received {
            Ok(r) => r,
            Err(e) => {
                conn.write_all(&pages::error_response(e.status, e.why, true, false))?;
                return Ok(());
            }
        };
        let body = read_body(&mut conn, received.body)?;
        shared.requests.fetch_add(1, Ordering::Relaxed);
        respond(&mut conn, &received, &body, &shared.page)?;
        if !received.keep_alive {
            return Ok(());
        }
    }
}

/// Reads a request body, keeping the first [`ECHO_MAX_BODY`] bytes.
fn read_body(conn: &mut BufConn, body: Body) -> io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let mut keep = |data: &[u8]| {
        let room = ECHO_MAX_BODY.saturating_sub(kept.len());
        kept.extend_from_slice(&data[..data.len().min(room)]);
    };
    match body {
        Body::Empty | Body::UntilClose => {}
        Body::Length(mut left) => {
            while left > 0 {
                if conn.data().is_empty() && conn.fill()? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                let take = left.min(conn.data().len() as u64) as usize;
                keep(&conn.data()[..take]);
                conn.consume(take);
                left -= take as u64;
            }
        }
        Body::Chunked => {
            let mut decoder = Decoder::new();
            loop {
                match decoder
                    .decode(conn.data())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
                {
                    Step::Data { start, end } => {
                        keep(&conn.data()[start..end]);
                        conn.consume(end);
                    }
                    Step::NeedMore => {
                        conn.consume(conn.data().len());
                        if conn.fill()? == 0 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                    Step::Done { used } => {
                        conn.consume(used);
                        break;
                    }
                }
            }
        }
    }
    Ok(kept)
}

fn respond(conn: &mut BufConn, r: &Received, body: &[u8], page: &str) -> io::Result<()> {
    let path = r.target.split('?').next().unwrap_or("");
    let (status, content_type, content): (u16, &str, Vec<u8>) = if path == "/echo" {
        (200, "text/plain; charset=utf-8", echo(r, body))
    } else if let Some(n) = path
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        return stream_bytes(conn, r, n);
    } else if let Some(code) = path
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
    {
        let code = if (200..600).contains(&code) {
            code
        } else {
            400
        };
        (code, "text/html", page.as_bytes().to_vec())
    } else {
        (200, "text/html", page.as_bytes().to_vec())
    };
    let reason = if status == 200 {
        "OK"
    } else {
        pages::reason(status)
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nServer: demo\r\n",
        content.len()
    );
    if !r.keep_alive {
        out.push_str("Connection: close\r\n");
    } else if r.version == Version::Http10 {
        out.push_str("Connection: keep-alive\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if r.method != "HEAD" && status != 204 && status != 304 {
        out.extend_from_slice(&content);
    }
    conn.write_all(&out)
}

/// The `/echo` page: request line, fields, blank line, body.
fn echo(r: &Received, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{} {} {}\n", r.method, r.target, r.version.as_str()).into_bytes();
    for (name, value) in &r.headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// `/bytes/N`: `N` bytes of a repeating pattern, in 64 KiB writes.
fn stream_bytes(conn: &mut BufConn, r: &Received, n: u64) -> io::Result<()> {
    let close = if r.keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\nServer: demo\r\n{close}\r\n"
    );
    conn.write_all(head.as_bytes())?;
    if r.method == "HEAD" {
        return Ok(());
    }
    let block: Vec<u8> = (0..64 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let mut left = n;
    while left > 0 {
        let take = left.min(block.len() as u64) as usize;
        conn.write_all(&block[..take])?;
        left -= take as u64;
    }
    Ok(())
}
