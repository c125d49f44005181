//! A std-only fuzz test of the response path: a backend answers every request with a seeded
//! mutation of a valid response (bad status lines, Content-Length and Transfer-Encoding
//! games, broken chunks, early closes, floods of 1xx, bytes after the end, bodies on HEAD,
//! 204 and 304 answers, stalls), while keep-alive clients send requests through the balancer.
//!
//! What must hold for every request:
//! - no hang: every response (or the close) comes within a deadline;
//! - the client gets a well-formed response: either the backend's, relayed (whole, or cut
//!   short by a close when the backend broke off mid-body), or the balancer's own 502 or 504;
//!   a response the backend sent well-formed arrives exactly as sent;
//! - no byte of one response reaches another client: each request carries a unique token,
//!   every byte the backend writes for it carries that token, and a client finds no token
//!   but its own in what it reads;
//! - at the end, no panic in the balancer's threads, no client connection open, nothing in
//!   flight, and the balancer still answers.
//!
//! The mutation for a request is a function of the seed and the request's token, so a
//! failure names the seed and the token, the backend's bytes for it and for the request
//! before it on the same backend connection: `FUZZ_SEED` replays it (the interleaving of the
//! clients may differ), `FUZZ_ITERATIONS` runs longer.
//!
//! Bytes past the end of a response go out in the same write as its end. Sent later, while
//! the connection idles in the pool, they are the keep-alive test's case
//! (`bytes_a_backend_sends_after_its_response_never_reach_the_next_client`), not this one's:
//! with many clients at once, a test cannot know they reached the balancer before the next
//! request left for that connection (loopback delivery may wait for the kernel's softirq
//! thread), and after that no proxy can tell them from the answer. A first version tried,
//! holding every other client back meanwhile, and still saw them arrive after the check.

use crate::support::fuzz::{self, Rng};
use crate::support::*;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Default number of requests (spread over [`WORKERS`] client threads).
const ITERATIONS: usize = 1200;
/// Client threads sending at once.
const WORKERS: usize = 4;
/// Longest a client waits for the next byte, or the close, before it calls it a hang.
const DEADLINE: Duration = Duration::from_secs(10);
/// `--backend-timeout` here: what a stalled response waits for before it is cut or a 504.
const BACKEND_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a stalling backend stays silent: longer than [`BACKEND_TIMEOUT`].
const STALL: Duration = Duration::from_millis(2000);

/// The token of request number `i` of worker `w`: `~` and 8 hex digits and `~`.
fn token(w: usize, i: usize) -> String {
    format!("~{:08x}~", (w << 24) | i)
}

/// Every token in `bytes`.
fn tokens_in(bytes: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for i in 0..bytes.len().saturating_sub(9) {
        let candidate = &bytes[i..i + 10];
        if candidate[0] == b'~'
            && candidate[9] == b'~'
            && candidate[1..9].iter().all(u8::is_ascii_hexdigit)
        {
            found.push(String::from_utf8_lossy(candidate).into_owned());
        }
    }
    found
}

/// What the backend does after writing its bytes.
#[derive(Clone, Copy, PartialEq, Debug)]
enum After {
    /// Waits for the next request on the connection.
    Keep,
    /// Closes the connection.
    Close,
    /// Stays silent for [`STALL`], then closes.
    Stall,
}

/// One planned answer of the fuzzing backend.
#[derive(Clone, Debug)]
struct Plan {
    /// What was done, for the failure message.
    what: String,
    bytes: Vec<u8>,
    /// Where the body of the final response begins (after interim responses and the head;
    /// `bytes.len()` when the head is cut short).
    body_at: usize,
    /// Where the bytes after the end of the response begin (`bytes.len()` when none): they
    /// go out in the same write as the end of the response, as a server that sends them
    /// would, so they reach the balancer together with it.
    extra_at: usize,
    after: After,
    /// The status and decoded body the client must get, when the answer is well-formed
    /// (a 504 is accepted too: a loaded machine may stall any backend).
    expect: Option<(u16, Vec<u8>)>,
    /// The request answered before this one on the same backend connection, if any.
    previous: Option<String>,
}

/// A body that carries `token` throughout: `n` pieces.
fn body_with(token: &str, n: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..n {
        body.extend_from_slice(format!("{token}{i:04} ").as_bytes());
    }
    body
}

/// Chunk-encodes `body` in up to `pieces` chunks, with an extension now and then and
/// trailers carrying the token when asked.
fn chunked(rng: &mut Rng, body: &[u8], token: &str, trailers: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let take = 1 + rng.below(rest.len());
        let ext = if rng.one_in(4) { ";x=y" } else { "" };
        out.extend_from_slice(format!("{take:x}{ext}\r\n").as_bytes());
        out.extend_from_slice(&rest[..take]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[take..];
    }
    out.extend_from_slice(b"0\r\n");
    if trailers {
        out.extend_from_slice(format!("X-Trailer: {token}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Statuses the backend answers with (never 502 or 504: those are the balancer's).
const STATUSES: &[(u16, &str)] = &[
    (200, "OK"),
    (201, "Created"),
    (206, "Partial Content"),
    (301, "Moved Permanently"),
    (404, "Not Found"),
    (418, "I'm a teapot"),
    (500, "Internal Server Error"),
    (503, "Service Unavailable"),
];

/// The seeded plan for the request with `token` and `method`.
fn plan(seed: u64, token: &str, method: &str) -> Plan {
    let mut rng = Rng::keyed(seed, token);
    let head_only = method == "HEAD";
    let (status, reason) = *rng.pick(STATUSES);
    let big = rng.one_in(20);
    let body = body_with(
        token,
        if big {
            4000 + rng.below(8000)
        } else {
            1 + rng.below(40)
        },
    );
    let id = format!("X-Id: {token}\r\n");
    // The valid answer first.
    let (shape, mut bytes, expect_status, expect_body, mut after) = match rng.below(6) {
        0 | 1 => {
            let mut b = format!(
                "HTTP/1.1 {status} {reason}\r\n{id}Content-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            if !head_only {
                b.extend_from_slice(&body);
            }
            ("length", b, status, body.clone(), After::Keep)
        }
        2 | 3 => {
            let trailers = rng.one_in(2);
            let mut b = format!("HTTP/1.1 {status} {reason}\r\n{id}Transfer-Encoding: chunked\r\n")
                .into_bytes();
            if trailers {
                b.extend_from_slice(b"Trailer: X-Trailer\r\n");
            }
            b.extend_from_slice(b"\r\n");
            if !head_only {
                b.extend_from_slice(&chunked(&mut rng, &body, token, trailers));
            }
            ("chunked", b, status, body.clone(), After::Keep)
        }
        4 => {
            let mut b = format!("HTTP/1.1 {status} {reason}\r\n{id}\r\n").into_bytes();
            let after = if head_only {
                After::Keep
            } else {
                b.extend_from_slice(&body);
                After::Close
            };
            ("close-delimited", b, status, body.clone(), after)
        }
        _ => {
            let (code, text) = *rng.pick(&[(204, "No Content"), (304, "Not Modified")]);
            let b = format!("HTTP/1.1 {code} {text}\r\n{id}\r\n").into_bytes();
            ("bodiless", b, code, Vec::new(), After::Keep)
        }
    };
    let expect_body = if head_only { Vec::new() } else { expect_body };
    let mut what = vec![format!("{method} answered {shape} {expect_status}")];
    let mut broken = false;
    // Where the final response starts (after interim ones), and bytes to send after its end.
    let mut start = 0;
    let mut extra = Vec::new();
    let line_end =
        |b: &[u8], from: usize| from + b[from..].windows(2).position(|w| w == b"\r\n").unwrap();
    for _ in 0..rng.below(3) {
        match rng.below(12) {
            0 => {
                // A bad status line.
                let line = *rng.pick(&[
                    "HTTP/1.1 2OO OK",
                    "HTTP/1.1 200",
                    "HTTP/1.1  200 OK",
                    "HTTP/2 200 OK",
                    "ICY 200 OK",
                    "HTTP/1.1 99 Low",
                    "HTTP/1.1 1000 Big",
                    "HTTP/1.1 -200 Minus",
                    "",
                    "\0\0\0",
                ]);
                let end = line_end(&bytes, start);
                bytes.splice(start..end, line.bytes());
                what.push(format!("status line {line:?}"));
                broken = true;
            }
            1 => {
                // Content-Length and Transfer-Encoding games, as a line added to the head.
                let line = *rng.pick(&[
                    "Transfer-Encoding: chunked\r\n",
                    "Transfer-Encoding: gzip\r\n",
                    "Transfer-Encoding: chunked, identity\r\n",
                    "Transfer-Encoding: identity\r\n",
                    "Content-Length: 3\r\n",
                    "Content-Length: 1x\r\n",
                    "Content-Length: -1\r\n",
                    "Content-Length: 18446744073709551616\r\n",
                    "Content-Length: 5, 6\r\n",
                    "Content-Length: 100000\r\n",
                ]);
                let at = line_end(&bytes, start) + 2;
                bytes.splice(at..at, line.bytes());
                what.push(format!("added {:?}", line.trim_end()));
                broken = true;
            }
            2 if shape == "chunked" && !head_only => {
                // A broken first chunk: a bad size, or a size past the data.
                let head_end = start
                    + bytes[start..]
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .unwrap()
                    + 4;
                let size_end = line_end(&bytes, head_end);
                let bad = *rng.pick(&["zz", "-1", "fffffffffffffffffff", "ffff", ""]);
                bytes.splice(head_end..size_end, bad.bytes());
                what.push(format!("first chunk size {bad:?}"));
                broken = true;
            }
            3 | 4 => {
                // An early close, anywhere.
                let at = rng.below(bytes.len());
                bytes.truncate(at);
                after = After::Close;
                what.push(format!("closed after {at} bytes"));
                broken = true;
            }
            5 => {
                // A flood of interim responses first: dropped by the balancer up to
                // MAX_INTERIM, past it the answer is broken (502).
                let n = 1 + rng.below(2 * load_balancer::proxy::attempt::MAX_INTERIM);
                let interim = if rng.one_in(2) {
                    "HTTP/1.1 100 Continue\r\n\r\n".to_string()
                } else {
                    format!("HTTP/1.1 103 Early Hints\r\nLink: </{token}.css>\r\n\r\n")
                };
                let flood = interim.repeat(n).into_bytes();
                start += flood.len();
                bytes.splice(0..0, flood);
                what.push(format!("{n} interim responses first"));
                if n > load_balancer::proxy::attempt::MAX_INTERIM {
                    broken = true;
                }
            }
            6 | 7 if after == After::Keep && !big => {
                // Bytes after the end of the response, on a connection that stays open:
                // another response, or garbage.
                let stray = if rng.one_in(2) {
                    format!("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{token}")
                } else {
                    format!("{token} stray bytes {token}\r\n\r\n")
                };
                extra.extend_from_slice(stray.as_bytes());
                what.push("bytes after the end".to_string());
            }
            8 if after == After::Keep && !big && (shape == "bodiless" || head_only) => {
                // A body on an answer that has none.
                extra.extend_from_slice(&body);
                what.push("a body where none belongs".to_string());
            }
            9 if rng.one_in(32) => {
                // A stall: part of the answer, then silence past --backend-timeout.
                let at = rng.below(bytes.len() + 1);
                bytes.truncate(at);
                after = After::Stall;
                what.push(format!("stalled after {at} bytes"));
                broken = true;
            }
            10 => {
                // A bad field line.
                let line = *rng.pick(&[
                    "X-Bad : value\r\n",
                    "X-Bad\r\n",
                    " folded\r\n",
                    "X-Bad: a\0b\r\n",
                    "X-Bad: a\rb\r\n",
                    ": empty\r\n",
                ]);
                let at = line_end(&bytes, start) + 2;
                bytes.splice(at..at, line.bytes());
                what.push(format!("field line {line:?}"));
                broken = true;
            }
            11 if rng.one_in(8) => {
                // A head too large to be read.
                let at = line_end(&bytes, start) + 2;
                let filler = format!("X-Big: {}\r\n", "b".repeat(load_balancer::http::MAX_HEAD));
                bytes.splice(at..at, filler.into_bytes());
                what.push("a huge head".to_string());
                broken = true;
            }
            _ => {}
        }
        if after != After::Keep {
            break;
        }
    }
    let body_at = bytes[start.min(bytes.len())..]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |p| start + p + 4);
    let extra_at = bytes.len();
    if after == After::Keep {
        bytes.extend_from_slice(&extra);
    }
    Plan {
        what: what.join(", "),
        bytes,
        after,
        body_at,
        extra_at,
        expect: (!broken).then_some((expect_status, expect_body)),
        previous: None,
    }
}

/// The token in a request target `/t/TOKEN`.
fn token_of_target(head: &str) -> Option<String> {
    target_of(head).strip_prefix("/t/").map(str::to_string)
}

/// The fuzzing backend: every request with a token gets its [`plan`]; a request without one
/// gets a plain `200 control`. Every plan is kept for the failure messages.
fn fuzzing_backend(seed: u64, plans: &Arc<Mutex<HashMap<String, Plan>>>) -> ScriptedBackend {
    let plans = Arc::clone(plans);
    ScriptedBackend::start(move |mut s| {
        let mut previous = None;
        while let Some((head, _)) = read_message(&mut s) {
            let Some(token) = token_of_target(&head) else {
                if !write_ok(&mut s, "control") {
                    return;
                }
                continue;
            };
            let method = head.split(' ').next().unwrap_or("").to_string();
            let mut p = plan(seed, &token, &method);
            p.previous = previous.replace(token.clone());
            plans.lock().unwrap().insert(token.clone(), p.clone());
            // In a few writes, so the balancer sees heads and bodies in pieces. The bytes after
            // the end go with the last piece of the response; and when the framing lies, all
            // after the head goes in one piece, so the bytes past what the framing says reach
            // the balancer together with the end it reads (sent later, they would poison the
            // next request on the connection, which no proxy can tell from its answer).
            let mut rng = Rng::keyed(seed.rotate_left(7), &token);
            let split_end = if p.expect.is_some() {
                p.extra_at
            } else {
                p.body_at.min(p.extra_at)
            };
            let mut sent = 0;
            while sent < p.bytes.len() {
                // A piece ends before `split_end`, never on it: what follows goes in one write.
                let left = split_end.saturating_sub(sent);
                let take = if left <= 1 || rng.one_in(2) {
                    p.bytes.len() - sent
                } else {
                    1 + rng.below(left - 1)
                };
                if s.write_all(&p.bytes[sent..sent + take]).is_err() {
                    return;
                }
                sent += take;
            }
            match p.after {
                After::Keep => {}
                After::Close => return,
                After::Stall => {
                    thread::sleep(STALL);
                    return;
                }
            }
        }
    })
}

/// A client connection that reads one response at a time, without panicking.
struct Client {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    pending: Vec<u8>,
    /// Everything read on the current request.
    seen: Vec<u8>,
}

/// How a response ended.
enum Got {
    /// Whole: status, the head, the decoded body, and whether the connection then closes.
    Whole(u16, String, Vec<u8>, bool),
    /// The head and part of a body, then a close.
    Cut(u16, String),
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            stream: None,
            pending: Vec::new(),
            seen: Vec::new(),
        }
    }

    fn stream(&mut self) -> Result<&mut TcpStream, String> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            s.set_write_timeout(Some(DEADLINE)).unwrap();
            self.stream = Some(s);
        }
        Ok(self.stream.as_mut().unwrap())
    }

    /// Reads more: `Ok(false)` on a close, `Err` on a timeout (a hang) or another error.
    fn more(&mut self) -> Result<bool, String> {
        let mut buf = [0u8; 16384];
        let started = Instant::now();
        match self.stream()?.read(&mut buf) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                self.seen.extend_from_slice(&buf[..n]);
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(false),
            Err(e) => Err(format!(
                "no byte and no close after {:?}: {e}",
                started.elapsed()
            )),
        }
    }

    /// Sends a request and reads its response.
    fn ask(&mut self, request: &[u8], head_only: bool) -> Result<Got, String> {
        self.seen.clear();
        if !self.pending.is_empty() {
            return Err(format!(
                "bytes nobody asked for: {:?}",
                String::from_utf8_lossy(&self.pending)
            ));
        }
        self.stream()?
            .write_all(request)
            .map_err(|e| format!("the request could not be sent: {e}"))?;
        let head_end = loop {
            if let Some(p) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            if !self.more()? {
                return Err("closed before a whole response head".into());
            }
        };
        let head = String::from_utf8(self.pending[..head_end].to_vec())
            .map_err(|_| "a head that is not text")?;
        self.pending.drain(..head_end);
        let (status, length, chunked, close) = check_head(&head)?;
        let closed = |got: Got, client: &mut Client| {
            client.stream = None;
            client.pending.clear();
            got
        };
        if head_only || (100..200).contains(&status) || status == 204 || status == 304 {
            if (100..200).contains(&status) {
                return Err("an interim response reached the client".into());
            }
            return Ok(self.finish(status, head, Vec::new(), close));
        }
        if chunked {
            let mut decoder_input_end;
            loop {
                decoder_input_end = chunked_end(&self.pending);
                if decoder_input_end.is_some() {
                    break;
                }
                if !self.more()? {
                    check_chunked_prefix(&self.pending)?;
                    return Ok(closed(Got::Cut(status, head), self));
                }
            }
            let end = decoder_input_end.unwrap();
            let raw: Vec<u8> = self.pending.drain(..end).collect();
            let (data, trailers) = decode_chunked(&raw);
            check_fields(&trailers)?;
            return Ok(self.finish(status, head, data, close));
        }
        if let Some(length) = length {
            while self.pending.len() < length {
                if !self.more()? {
                    return Ok(closed(Got::Cut(status, head), self));
                }
            }
            let body: Vec<u8> = self.pending.drain(..length).collect();
            return Ok(self.finish(status, head, body, close));
        }
        // Delimited by the close.
        while self.more()? {}
        let body = std::mem::take(&mut self.pending);
        Ok(closed(Got::Whole(status, head, body, true), self))
    }

    /// A whole response; with `close`, the connection must then end without another byte
    /// (the caller checks).
    fn finish(&mut self, status: u16, head: String, body: Vec<u8>, close: bool) -> Got {
        Got::Whole(status, head, body, close)
    }

    /// After a response that said `Connection: close`: nothing more, then the close.
    fn expect_close(&mut self, stream: &mut TcpStream) -> Result<(), String> {
        let mut rest = std::mem::take(&mut self.pending);
        try_read_until_closed(stream, &mut rest)?;
        self.seen.extend_from_slice(&rest);
        if rest.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "bytes after a closing response: {:?}",
                String::from_utf8_lossy(&rest)
            ))
        }
    }
}

/// Checks a response head the balancer sent; returns status, Content-Length, chunked, and
/// whether it says `Connection: close`.
fn check_head(head: &str) -> Result<(u16, Option<usize>, bool, bool), String> {
    let mut lines = head.strip_suffix("\r\n\r\n").unwrap_or(head).split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    if status_line.len() > 12 && status_line.as_bytes()[12] != b' ' {
        return Err(format!("bad status line {status_line:?}"));
    }
    let rest: String = lines.map(|l| format!("{l}\r\n")).collect();
    check_fields(&format!("{rest}\r\n"))?;
    let lengths = fields(&format!("x\r\n{rest}"), "content-length");
    let codings = fields(&format!("x\r\n{rest}"), "transfer-encoding");
    let connection = fields(&format!("x\r\n{rest}"), "connection");
    if lengths.len() > 1 || codings.len() > 1 || (!lengths.is_empty() && !codings.is_empty()) {
        return Err(format!("bad framing in {head:?}"));
    }
    let length = match lengths.first() {
        Some(l) => Some(
            l.parse()
                .map_err(|_| format!("bad Content-Length in {head:?}"))?,
        ),
        None => None,
    };
    let chunked = match codings.first() {
        Some(c) if c == "chunked" => true,
        Some(c) => return Err(format!("Transfer-Encoding {c:?}")),
        None => false,
    };
    let close = connection.iter().any(|c| c.eq_ignore_ascii_case("close"));
    Ok((status, length, chunked, close))
}

/// Checks field lines (each `name: value` and CRLF, then a blank line).
fn check_fields(section: &str) -> Result<(), String> {
    let body = section
        .strip_suffix("\r\n")
        .ok_or_else(|| format!("a field section without its end: {section:?}"))?;
    for line in body.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(": ")
            .ok_or_else(|| format!("bad field line {line:?}"))?;
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) || value.contains(['\r', '\n', '\0']) {
            return Err(format!("bad field line {line:?}"));
        }
    }
    Ok(())
}

/// Checks that a chunked body cut short is well-formed as far as it goes.
fn check_chunked_prefix(mut data: &[u8]) -> Result<(), String> {
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return Ok(());
        };
        let line = std::str::from_utf8(&data[..line_end]).map_err(|_| "a chunk line")?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or(""), 16)
            .map_err(|_| format!("bad chunk size line {line:?}"))?;
        data = &data[line_end + 2..];
        if data.len() < size + 2 {
            return Ok(());
        }
        if &data[size..size + 2] != b"\r\n" {
            return Err("a chunk without its CRLF".into());
        }
        data = &data[size + 2..];
    }
}

/// What one worker saw: outcomes by kind.
#[derive(Default)]
struct Tally {
    relayed: usize,
    cut: usize,
    pages: HashMap<u16, usize>,
}

#[test]
fn seeded_broken_responses_never_panic_hang_or_leak_into_another_response() {
    let panics_before = fuzz::balancer_panics();
    let seed = fuzz::seed(0xB4D_5EED);
    let iterations = fuzz::iterations(ITERATIONS);
    eprintln!(
        "fuzz (responses): seed {seed:#x} (replay: FUZZ_SEED={seed:#x}), {iterations} requests"
    );
    let plans = Arc::new(Mutex::new(HashMap::new()));
    let backend = fuzzing_backend(seed, &plans);
    let mut c = config(&[backend.url()]);
    c.backend_timeout = BACKEND_TIMEOUT;
    // Failures (there are many) must not take the only backend out of rotation.
    c.max_fails = u32::MAX;
    let lb = start(c);
    let addr = lb.addr();
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let plans = Arc::clone(&plans);
            thread::spawn(move || {
                let mut rng = Rng(seed ^ (w as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let mut client = Client::new(addr);
                let mut tally = Tally::default();
                for i in 0..iterations / WORKERS {
                    let token = token(w, i);
                    let (method, version) = match rng.below(20) {
                        0..=2 => ("HEAD", "1.1"),
                        3..=4 => ("POST", "1.1"),
                        5 => ("GET", "1.0"),
                        _ => ("GET", "1.1"),
                    };
                    let mut request = format!("{method} /t/{token} HTTP/{version}\r\nHost: x\r\n");
                    if method == "POST" {
                        request.push_str("Content-Length: 4\r\n\r\nbody");
                    } else {
                        request.push_str("\r\n");
                    }
                    let result = client.ask(request.as_bytes(), method == "HEAD");
                    let fail = |why: &str, client: &Client| -> ! {
                        let plans = plans.lock().unwrap();
                        let describe = |token: &str| {
                            plans.get(token).map_or("(never asked)".to_string(), |p| {
                                format!(
                                    "{}: {:?}",
                                    p.what,
                                    String::from_utf8_lossy(&p.bytes[..p.bytes.len().min(600)])
                                )
                            })
                        };
                        let previous = plans.get(&token).and_then(|p| p.previous.clone());
                        panic!(
                            "seed {seed:#x} (FUZZ_SEED={seed:#x}), worker {w}, request {i}, \
                             token {token}: {why}\n  request: {request:?}\n  backend: {}\n  \
                             before it on that backend connection: {}\n  client got: {:?}",
                            describe(&token),
                            previous.map_or("nothing".to_string(), |t| format!(
                                "{t}, {}",
                                describe(&t)
                            )),
                            String::from_utf8_lossy(&client.seen[..client.seen.len().min(600)])
                        )
                    };
                    // No token but this request's in anything the client read.
                    if let Some(other) = tokens_in(&client.seen).into_iter().find(|t| *t != token) {
                        let theirs = plans
                            .lock()
                            .unwrap()
                            .get(&other)
                            .map_or("(never asked)".to_string(), |p| {
                                format!("{}: {:?}", p.what, String::from_utf8_lossy(&p.bytes))
                            });
                        fail(
                            &format!("the bytes of {other}'s response, which was {theirs}"),
                            &client,
                        );
                    }
                    let got = match result {
                        Ok(got) => got,
                        Err(why) => fail(&why, &client),
                    };
                    let plan = plans.lock().unwrap().get(&token).cloned();
                    match got {
                        Got::Whole(status, head, body, close) => {
                            if status == 502 || status == 504 {
                                let page = fields(&head, "content-type")
                                    == ["text/html; charset=utf-8"]
                                    && (method == "HEAD" || body.starts_with(b"<!DOCTYPE html>"));
                                if !page {
                                    fail("a 502/504 that is not the balancer's page", &client);
                                }
                                if status == 502
                                    && plan.as_ref().is_some_and(|p| p.expect.is_some())
                                {
                                    fail("a 502 for a well-formed response", &client);
                                }
                                *tally.pages.entry(status).or_default() += 1;
                            } else {
                                let Some(plan) = &plan else {
                                    fail("a relayed response the backend never sent", &client)
                                };
                                if let Some((want_status, want_body)) = &plan.expect
                                    && (status != *want_status || body != *want_body)
                                {
                                    fail("not the response the backend sent", &client);
                                }
                                if fields(&head, "x-id") != [token.clone()] {
                                    fail("not this request's response head", &client);
                                }
                                tally.relayed += 1;
                            }
                            if close
                                && let Some(mut s) = client.stream.take()
                                && let Err(why) = client.expect_close(&mut s)
                            {
                                fail(&why, &client);
                            }
                            if version == "1.0" && client.stream.is_some() {
                                fail("an HTTP/1.0 connection kept without being asked", &client);
                            }
                        }
                        Got::Cut(status, head) => {
                            if plan.as_ref().is_none_or(|p| p.expect.is_some()) {
                                fail("a well-formed response was cut short", &client);
                            }
                            if status == 502
                                || status == 504
                                || fields(&head, "x-id") != [token.clone()]
                            {
                                fail("a cut response that is not this request's", &client);
                            }
                            tally.cut += 1;
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for w in workers {
        let t = w.join().unwrap();
        total.relayed += t.relayed;
        total.cut += t.cut;
        for (s, n) in t.pages {
            *total.pages.entry(s).or_default() += n;
        }
    }
    eprintln!(
        "fuzz (responses): {iterations} requests in {:?}: {} relayed, {} cut short, pages {:?}",
        started.elapsed(),
        total.relayed,
        total.cut,
        total.pages
    );
    // The mutations exercised both sides.
    assert!(total.relayed > iterations / 4, "few relayed");
    assert!(
        total.pages.get(&502).copied().unwrap_or(0) > iterations / 20,
        "few 502s"
    );
    // Still answering; nothing left open or in flight; no panic anywhere.
    assert_eq!(
        get(&format!("http://{addr}/control")),
        (200, "control".to_string())
    );
    wait_idle(&lb);
    assert_eq!(
        fuzz::balancer_panics(),
        panics_before,
        "a thread of the balancer panicked"
    );
}
