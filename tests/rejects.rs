//! Rejecting bad input (issue 3): every request a server could read two ways gets its status
//! and page, and the connection is closed; a backend response with broken framing is a 502.

mod support;
#[path = "support/wire.rs"]
mod wire;

use load_balancer::http::{MAX_HEAD, MAX_HEADERS, MAX_REQUEST_LINE};
use load_balancer::server::Balancer;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use wire::Seen;

/// `--max-body` in these tests.
const MAX_BODY: u64 = 1000;

/// Sends `request` on a new connection; returns the one response that came before the
/// balancer closed, checking that it is a whole, well-framed page and nothing follows it.
fn one_answer(addr: SocketAddr, request: &[u8]) -> String {
    let started = Instant::now();
    let text = exchange(addr, request);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the balancer did not close"
    );
    let (head, body) = text
        .split_once("\r\n\r\n")
        .map(|(h, b)| (format!("{h}\r\n"), b))
        .unwrap_or_else(|| panic!("no response head: {text:?}"));
    let length: usize = wire::field(&head.to_ascii_lowercase(), "content-length")
        .unwrap_or_else(|| panic!("no Content-Length: {head}"))
        .parse()
        .unwrap();
    assert_eq!(
        body.len(),
        length,
        "exactly one response, then the close: {text}"
    );
    assert!(head.contains("Connection: close\r\n"), "{head}");
    assert!(head.contains("Content-Type: text/html"), "{head}");
    text
}

fn recording_backend() -> (ScriptedBackend, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let b = {
        let seen = Arc::clone(&seen);
        ScriptedBackend::start(move |mut s| {
            seen.connections
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            while let Some(message) = wire::read_message(&mut s) {
                seen.record(&message);
                if !wire::ok(&mut s, "ok") {
                    return;
                }
            }
        })
    };
    (b, seen)
}

/// Where a request is refused.
#[derive(Clone, Copy, PartialEq, Debug)]
enum At {
    /// From its head alone: the backend never hears of it.
    Head,
    /// In its body, streamed after the head went to the backend (which then sees the
    /// connection close mid-body and never a whole request).
    Body,
}

macro_rules! rejects {
    ($($name:literal: $request:expr => $status:literal at $at:ident;)*) => {
        vec![$(($name, $request.to_vec(), $status, At::$at)),*]
    };
}

#[test]
fn bad_requests_get_their_status_and_a_close() {
    let long_line = format!(
        "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(MAX_REQUEST_LINE)
    );
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(MAX_HEAD)
    );
    let many_fields = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..MAX_HEADERS)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect::<String>()
    );
    let big_chunked = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        MAX_BODY + 1,
        "c".repeat(MAX_BODY as usize + 1)
    );
    // Eleven chunks of 100 bytes: each is small, the sum is over the limit.
    let big_in_pieces = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
        format!("64\r\n{}\r\n", "d".repeat(100)).repeat(11)
    );
    let cases = rejects! {
        // Framing: RFC 9112 section 6.3.
        "CL and TE": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" => 400 at Head;
        "TE and CL": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" => 400 at Head;
        "differing CLs": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!" => 400 at Head;
        "differing CL list": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!" => 400 at Head;
        "CL with a sign": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello" => 400 at Head;
        "CL in hex": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello" => 400 at Head;
        "CL with a space": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 0\r\n\r\nhello" => 400 at Head;
        "negative CL": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n" => 400 at Head;
        "overflowing CL": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n" => 400 at Head;
        "empty CL": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n" => 400 at Head;
        "TE not chunked": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nxx" => 400 at Head;
        "TE chunked not last": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n" => 400 at Head;
        "TE split, chunked not last": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" => 400 at Head;
        "TE chunked twice": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n" => 400 at Head;
        "TE look-alike": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" => 400 at Head;
        "TE in HTTP/1.0": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" => 400 at Head;
        "unknown coding": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" => 501 at Head;
        // Chunk sizes: RFC 9112 section 7.1.
        "chunk size not hex": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n" => 400 at Body;
        "negative chunk size": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n" => 400 at Body;
        "overflowing chunk size": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n" => 400 at Body;
        "chunk without CRLF": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n" => 400 at Body;
        "chunk size with LF only": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n" => 400 at Body;
        // Field syntax: RFC 9112 section 5.
        "space before colon": b"GET / HTTP/1.1\r\nHost : x\r\n\r\n" => 400 at Head;
        "tab before colon": b"GET / HTTP/1.1\r\nHost: x\r\nX-A\t: b\r\n\r\n" => 400 at Head;
        "obs-fold": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n  folded\r\n\r\n" => 400 at Head;
        "NUL in a value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n" => 400 at Head;
        "CR in a value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n" => 400 at Head;
        "LF in a value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\nb\r\n\r\n" => 400 at Head;
        "field without colon": b"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n" => 400 at Head;
        // The request line: RFC 9112 section 3.
        "bad method token": b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n" => 400 at Head;
        "method with a NUL": b"GE\0T / HTTP/1.1\r\nHost: x\r\n\r\n" => 400 at Head;
        "two spaces": b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n" => 400 at Head;
        "space in target": b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n" => 400 at Head;
        "lower-case version": b"GET / http/1.1\r\nHost: x\r\n\r\n" => 400 at Head;
        "missing Host": b"GET / HTTP/1.1\r\n\r\n" => 400 at Head;
        "duplicate Host": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" => 400 at Head;
        "bad Host": b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n" => 400 at Head;
        "asterisk with GET": b"GET * HTTP/1.1\r\nHost: x\r\n\r\n" => 400 at Head;
        "other expectation": b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx" => 417 at Head;
        // Sizes.
        "request line too long": long_line.as_bytes() => 414 at Head;
        "header section too large": big_head.as_bytes() => 431 at Head;
        "too many fields": many_fields.as_bytes() => 431 at Head;
        "CL over --max-body": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n" => 413 at Head;
        "chunk over --max-body": big_chunked.as_bytes() => 413 at Body;
        "chunks over --max-body": big_in_pieces.as_bytes() => 413 at Body;
        // Versions: RFC 9110 section 15.6.6.
        "HTTP/2.0": b"GET / HTTP/2.0\r\nHost: x\r\n\r\n" => 505 at Head;
        "HTTP/3": b"GET / HTTP/3\r\nHost: x\r\n\r\n" => 505 at Head;
        "h2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" => 505 at Head;
        "HTTP/0.9": b"GET / HTTP/0.9\r\n\r\n" => 505 at Head;
    };
    let (b, seen) = recording_backend();
    let mut c = config(&[b.url()]);
    c.max_body = Some(MAX_BODY);
    let lb = Balancer::start(c).unwrap();
    for (name, request, status, at) in cases {
        let (before, connections) = (seen.count(), seen.connections());
        let text = one_answer(lb.addr(), &request);
        assert_eq!(wire::status(&text), status, "{name}: {text}");
        // Whatever was refused, the backend never got a whole request out of it; a head
        // refused as a head did not even cause a connection.
        assert_eq!(seen.count(), before, "{name} reached the backend");
        match at {
            At::Head => assert_eq!(
                seen.connections(),
                connections,
                "{name}: a backend was asked"
            ),
            At::Body => wait_for(
                Duration::from_secs(5),
                "the backend to see the head",
                || seen.connections() == connections + 1,
            ),
        }
    }
    // The balancer is still fine, and the limits are not off by one: exactly at them, served.
    let at_limits = [
        format!(
            "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(MAX_REQUEST_LINE - "GET / HTTP/1.1".len())
        ),
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
            (1..MAX_HEADERS)
                .map(|i| format!("X-{i}: v\r\n"))
                .collect::<String>()
        ),
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY}\r\n\r\n{}",
            "e".repeat(MAX_BODY as usize)
        ),
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{MAX_BODY:x}\r\n{}\r\n0\r\n\r\n",
            "e".repeat(MAX_BODY as usize)
        ),
    ];
    for request in at_limits {
        let mut conn = RawConn::open(lb.addr());
        conn.send(request.as_bytes());
        let (head, _) = conn.response();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
}

#[test]
fn broken_backend_responses_are_a_502() {
    let too_many = format!(
        "HTTP/1.1 200 OK\r\n{}Content-Length: 2\r\n\r\nab",
        "X-A: b\r\n".repeat(MAX_HEADERS + 1)
    );
    let huge = format!(
        "HTTP/1.1 200 OK\r\nX-A: {}\r\nContent-Length: 2\r\n\r\nab",
        "h".repeat(MAX_HEAD)
    );
    let replies: &[(&str, &[u8])] = &[
        ("CL and TE", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("differing CLs", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"),
        ("bad CL", b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nab"),
        ("unknown coding", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nab"),
        ("bad status", b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nab"),
        ("not HTTP", b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
        ("space before colon", b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nab"),
        ("obs-fold", b"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 2\r\n\r\nab"),
        ("NUL in a value", b"HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\nab"),
        ("unasked 101", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
        ("closed without an answer", b""),
        ("too many fields", too_many.as_bytes()),
        ("head too large", huge.as_bytes()),
    ];
    for (name, reply) in replies {
        let reply = reply.to_vec();
        let b = ScriptedBackend::start(move |mut s| {
            if wire::read_message(&mut s).is_some() {
                let _ = s.write_all(&reply);
            }
        });
        let lb = Balancer::start(config(&[b.url()])).unwrap();
        let mut c = RawConn::open(lb.addr());
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let (head, body) = c.response();
        assert!(
            head.starts_with("HTTP/1.1 502 Bad Gateway\r\n"),
            "{name}: {head}"
        );
        assert!(
            String::from_utf8_lossy(&body).contains("502 Bad Gateway"),
            "{name}"
        );
    }
}
