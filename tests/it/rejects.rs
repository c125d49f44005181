//! Rejecting bad input: every request a server could read two ways gets its status and page,
//! and the connection is closed; a backend response with broken framing is a 502.

use crate::support::*;
use load_balancer::http::{MAX_HEAD, MAX_HEADERS, MAX_REQUEST_LINE};
use std::net::SocketAddr;
use std::time::Duration;

/// `--max-body` in these tests.
const MAX_BODY: u64 = 1000;

/// Sends `request` on a new connection; returns the one response that came before the
/// balancer closed, checking that it is a whole page with `status` and nothing follows it.
fn one_answer(addr: SocketAddr, request: &[u8], status: u16, name: &str) -> String {
    let text = exchange(addr, request);
    assert_eq!(status_of(&text), status, "{name}: {text}");
    let (head, body) = split_answer(&text);
    let reason = load_balancer::http::pages::reason(status);
    assert_page_framing(head, body.as_bytes(), &format!("{status} {reason}"));
    assert_eq!(fields(head, "connection"), ["close"], "{head}");
    text
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
    let seen = Recorder::start(|_, _| Reply::ok("ok"));
    let mut c = config(&[seen.url()]);
    c.max_body = Some(MAX_BODY);
    let lb = start(c);
    for (name, request, status, at) in cases {
        let (before, connections) = (seen.count(), seen.connections());
        one_answer(lb.addr(), &request, status, name);
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
                Duration::from_secs(10),
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
        let (head, body) = conn.response();
        assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
        assert_eq!(body, b"ok");
    }
    assert_eq!(seen.count(), 4);
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
        let b = Recorder::start(move |_, _| Reply::then_close(&reply));
        let lb = start_over(&[b.url()]);
        let mut c = RawConn::open(lb.addr());
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let (head, body) = c.response();
        assert_eq!(status_of(&head), 502, "{name}: {head}");
        assert_page_framing(&head, &body, "502 Bad Gateway");
        // One backend, tried once.
        assert_eq!(b.count(), 1, "{name}: {:?}", b.heads());
    }
}

#[test]
fn an_unreadable_length_on_an_answer_without_a_body_is_a_502() {
    // To HEAD, and on a 304, Content-Length delimits nothing but is passed on to the client:
    // a value the client could not read is refused like any other (found by the response
    // fuzzer: a HEAD answer with an overflowing length was relayed as it was).
    let cases: &[(&str, &[u8])] = &[
        (
            "HEAD",
            b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n",
        ),
        (
            "HEAD",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 3\r\n\r\n",
        ),
        (
            "GET",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1x\r\n\r\n",
        ),
    ];
    for (method, reply) in cases {
        let reply = reply.to_vec();
        let b = Recorder::start(move |_, _| Reply::bytes(&reply));
        let lb = start_over(&[b.url()]);
        let mut c = RawConn::open(lb.addr());
        c.send(format!("{method} / HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let (head, _) = c.response_to(method);
        assert_eq!(
            status_line(&head),
            "HTTP/1.1 502 Bad Gateway",
            "{method}: {head}"
        );
        // A valid length is passed on as it was.
        let ok = Recorder::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
        let lb = start_over(&[ok.url()]);
        let mut c = RawConn::open(lb.addr());
        c.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
        let (head, _) = c.response_to("HEAD");
        assert_eq!(fields(&head, "content-length"), ["5"], "{head}");
    }
}
