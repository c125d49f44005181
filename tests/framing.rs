//! Framing and bodies (issue 3): Content-Length, chunked with trailers and close-delimited
//! messages in both directions, bodiless responses, and a backend that dies mid-body.

mod support;
#[path = "support/wire.rs"]
mod wire;

use load_balancer::server::Balancer;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use wire::Seen;

/// A backend that answers each request with the raw bytes `reply(path)` gives; when it says
/// to close, it closes the connection after writing (that ends a close-delimited body).
fn backend(
    reply: impl Fn(&str) -> (Vec<u8>, bool) + Send + Sync + 'static,
) -> (ScriptedBackend, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let b = {
        let seen = Arc::clone(&seen);
        ScriptedBackend::start(move |mut s: TcpStream| {
            seen.connections
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            while let Some(message) = wire::read_message(&mut s) {
                seen.record(&message);
                let path = message.0.split(' ').nth(1).unwrap_or("").to_string();
                let (bytes, close) = reply(&path);
                if s.write_all(&bytes).is_err() || close {
                    return;
                }
            }
        })
    };
    (b, seen)
}

fn start(backend: &ScriptedBackend) -> Balancer {
    Balancer::start(config(&[backend.url()])).unwrap()
}

fn decode_chunked(mut body: &[u8]) -> (Vec<u8>, String) {
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

#[test]
fn a_content_length_body_streams_both_ways_byte_exact() {
    let s = Setup::new(1, |_| {});
    // 3 MiB up: the demo counts what it got; 3 MiB down from /bytes.
    let size = 3 << 20;
    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut c = RawConn::open(s.addr());
    c.send(format!("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n").as_bytes());
    c.send(&body);
    let (head, echo) = c.response();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(String::from_utf8_lossy(&echo).contains(&format!("Content-Length: {size}\n")));
    let shown = load_balancer::demo::ECHO_MAX_BODY;
    assert!(echo.ends_with(&body[..shown]), "the body arrived in order");

    c.send(format!("GET /bytes/{size} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    let (head, down) = c.response();
    assert!(
        head.contains(&format!("Content-Length: {size}\r\n")),
        "{head}"
    );
    assert_eq!(down.len(), size);
    assert!(
        down.iter()
            .enumerate()
            .all(|(i, &b)| b == b'a' + (i % 65536 % 26) as u8)
    );
}

#[test]
fn a_chunked_request_reaches_the_backend_chunked_with_its_trailers() {
    let (b, seen) = backend(|_| {
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            false,
        )
    });
    let lb = start(&b);
    let mut c = RawConn::open(lb.addr());
    c.send(
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n\
          5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n",
    );
    let (head, body) = c.response();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"ok");
    let (up_head, up_body) = seen.last();
    assert_eq!(wire::fields(&up_head, "transfer-encoding"), ["chunked"]);
    assert_eq!(
        wire::fields(&up_head, "trailer"),
        ["X-Sum"],
        "Trailer is end-to-end"
    );
    let (data, trailers) = decode_chunked(&up_body);
    assert_eq!(data, b"hello world");
    assert_eq!(trailers, "X-Sum: 42\r\n\r\n");
}

const CHUNKED_REPLY: &[u8] =
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n\
    4\r\nWiki\r\n7;x=y\r\npedia i\r\n0\r\nX-Sum: 7\r\n\r\n";

#[test]
fn a_chunked_response_reaches_an_http11_client_chunked_with_its_trailers() {
    let (b, seen) = backend(|_| (CHUNKED_REPLY.to_vec(), false));
    let lb = start(&b);
    let mut c = RawConn::open(lb.addr());
    for _ in 0..2 {
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let (head, body) = c.response();
        assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
        assert!(head.contains("Trailer: X-Sum\r\n"), "{head}");
        let (data, trailers) = decode_chunked(&body);
        assert_eq!(data, b"Wikipedia i");
        assert_eq!(trailers, "X-Sum: 7\r\n\r\n");
    }
    assert_eq!(
        seen.connections(),
        1,
        "a chunked body read to its end keeps the backend connection"
    );
}

#[test]
fn a_chunked_response_reaches_an_http10_client_decoded_and_close_delimited() {
    let (b, _) = backend(|_| (CHUNKED_REPLY.to_vec(), false));
    let lb = start(&b);
    let text = exchange(lb.addr(), b"GET / HTTP/1.0\r\n\r\n");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(!lower.contains("transfer-encoding"), "{head}");
    assert!(lower.contains("connection: close"), "{head}");
    assert_eq!(body, "Wikipedia i");
}

const CLOSE_DELIMITED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end";

#[test]
fn a_close_delimited_response_is_rechunked_for_http11_and_the_client_stays() {
    let (b, seen) = backend(|_| (CLOSE_DELIMITED.to_vec(), true));
    let lb = start(&b);
    let mut c = RawConn::open(lb.addr());
    for _ in 0..2 {
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let (head, body) = c.response();
        assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
        assert_eq!(decode_chunked(&body).0, b"until the end");
    }
    assert_eq!(
        seen.connections(),
        2,
        "a close-delimited connection is never pooled"
    );
}

#[test]
fn a_close_delimited_response_stays_close_delimited_for_http10() {
    let (b, _) = backend(|_| (CLOSE_DELIMITED.to_vec(), true));
    let lb = start(&b);
    let text = exchange(lb.addr(), b"GET / HTTP/1.0\r\n\r\n");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("Connection: close"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert_eq!(body, "until the end");
}

#[test]
fn head_204_and_304_have_no_body_even_with_a_length() {
    let (b, _) = backend(|path| {
        let reply: &[u8] = match path {
            "/204" => b"HTTP/1.1 204 No Content\r\nX-A: 1\r\nContent-Length: 7\r\n\r\n",
            "/304" => b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\nETag: \"e\"\r\n\r\n",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        };
        (reply.to_vec(), false)
    });
    let lb = start(&b);
    let mut c = RawConn::open(lb.addr());
    // All in one write: any stray body byte would corrupt the responses after it.
    c.send(
        b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\nGET /204 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /304 HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let (head, _) = c.response_to("HEAD");
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("Content-Length: 5\r\n"),
        "{head}"
    );
    let (head, _) = c.response();
    assert!(head.starts_with("HTTP/1.1 204"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(!lower.contains("transfer-encoding"), "{head}");
    assert!(!lower.contains("content-length"), "never on a 204: {head}");
    let (head, _) = c.response();
    assert!(
        head.starts_with("HTTP/1.1 304") && head.contains("Content-Length: 99\r\n"),
        "{head}"
    );
    let (head, body) = c.response();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"hello");
}

#[test]
fn interim_1xx_responses_are_dropped() {
    let (b, _) = backend(|_| {
        let reply: &[u8] = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
            HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate";
        (reply.to_vec(), false)
    });
    let lb = start(&b);
    let mut c = RawConn::open(lb.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = c.response();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"late");
}

/// Reads until the balancer closes; fails if that takes longer than `limit`.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let started = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("not closed after {:?}: {e}", started.elapsed()),
        }
    }
}

#[test]
fn a_backend_dying_mid_body_closes_the_client_connection() {
    let (b, seen) = backend(|path| {
        let reply: &[u8] = match path {
            "/length" => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
            "/chunked" => {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nab"
            }
            _ => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        };
        (reply.to_vec(), true)
    });
    // Failures must not take the only backend out of rotation during the test.
    let mut c = config(&[b.url()]);
    c.max_fails = 1000;
    let lb = Balancer::start(c).unwrap();
    for (path, want_body) in [
        ("/length", &b"only ten b"[..]),
        // Re-chunked as it streams: the data so far, never the last chunk.
        ("/chunked", b"5\r\nhello\r\n2\r\nab\r\n"),
        ("/broken-chunk", b"5\r\nhello\r\n"),
    ] {
        let mut c = connect(lb.addr());
        // A second request is already waiting: it must not be answered on this connection.
        c.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        let got = read_until_closed(&mut c, Duration::from_secs(5));
        let text = String::from_utf8_lossy(&got);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{path}: {text:?}"));
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        assert_eq!(
            body.as_bytes(),
            want_body,
            "{path}: only what the backend sent"
        );
    }
    assert!(!seen.heads().iter().any(|h| h.starts_with("GET /next")));
    assert_eq!(lb.shared().backends.snapshot()[0].pooled_count(), 0);
}
