//! Framing and bodies: Content-Length, chunked with trailers and close-delimited messages in
//! both directions, bodiless responses, and a backend that dies mid-body.

use crate::support::*;
use std::io::Write;

/// A balancer over `backend` with the test configuration.
fn balancer(backend: &Recorder) -> Balancer {
    start_over(&[backend.url()])
}

#[test]
fn a_content_length_body_streams_both_ways_byte_exact() {
    let s = Setup::new(1, |_| {});
    // 3 MiB up: the demo counts what it got (past its small buffer, in `BULK_IO` reads);
    // 3 MiB down from /bytes.
    let size = 3 << 20;
    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut c = RawConn::open(s.addr());
    c.send(format!("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n").as_bytes());
    c.send(&body);
    let (head, echo) = c.response();
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    assert!(String::from_utf8_lossy(&echo).contains(&format!("Content-Length: {size}\n")));
    let shown = load_balancer::demo::ECHO_MAX_BODY;
    assert!(echo.ends_with(&body[..shown]), "the body arrived in order");

    c.send(format!("GET /bytes/{size} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    let (head, down) = c.response();
    assert_eq!(
        fields(&head, "content-length"),
        [size.to_string()],
        "{head}"
    );
    assert_eq!(down.len(), size);
    // The demo's pattern: a to z, starting again with each write of `BULK_IO` bytes.
    let block = load_balancer::demo::BULK_IO;
    assert!(
        down.iter()
            .enumerate()
            .all(|(i, &b)| b == b'a' + (i % block % 26) as u8)
    );
}

#[test]
fn a_chunked_request_reaches_the_backend_chunked_with_its_trailers() {
    let b = Recorder::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let lb = balancer(&b);
    let mut c = RawConn::open(lb.addr());
    c.send(
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n\
          5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n",
    );
    let (head, body) = c.response();
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    assert_eq!(body, b"ok");
    let (up_head, up_body) = b.last();
    assert_eq!(fields(&up_head, "transfer-encoding"), ["chunked"]);
    assert_eq!(
        fields(&up_head, "trailer"),
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
    let b = Recorder::fixed(CHUNKED_REPLY);
    let lb = balancer(&b);
    let mut c = RawConn::open(lb.addr());
    for _ in 0..2 {
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let (head, body) = c.response();
        assert_eq!(fields(&head, "transfer-encoding"), ["chunked"], "{head}");
        assert_eq!(fields(&head, "trailer"), ["X-Sum"], "{head}");
        let (data, trailers) = decode_chunked(&body);
        assert_eq!(data, b"Wikipedia i");
        assert_eq!(trailers, "X-Sum: 7\r\n\r\n");
    }
    assert_eq!(
        b.connections(),
        1,
        "a chunked body read to its end keeps the backend connection"
    );
}

#[test]
fn a_chunked_response_reaches_an_http10_client_decoded_and_close_delimited() {
    let b = Recorder::fixed(CHUNKED_REPLY);
    let lb = balancer(&b);
    let text = exchange(lb.addr(), b"GET / HTTP/1.0\r\n\r\n");
    let (head, body) = split_answer(&text);
    assert_eq!(status_line(head), "HTTP/1.1 200 OK", "{head}");
    assert!(fields(head, "transfer-encoding").is_empty(), "{head}");
    assert!(fields(head, "content-length").is_empty(), "{head}");
    assert_eq!(fields(head, "connection"), ["close"], "{head}");
    assert_eq!(body, "Wikipedia i");
}

const CLOSE_DELIMITED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end";

#[test]
fn a_close_delimited_response_is_rechunked_for_http11_and_the_client_stays() {
    let b = Recorder::start(|_, _| Reply::then_close(CLOSE_DELIMITED));
    let lb = balancer(&b);
    let mut c = RawConn::open(lb.addr());
    for _ in 0..2 {
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let (head, body) = c.response();
        assert_eq!(fields(&head, "transfer-encoding"), ["chunked"], "{head}");
        assert!(fields(&head, "connection").is_empty(), "{head}");
        assert_eq!(
            decode_chunked(&body),
            (b"until the end".to_vec(), "\r\n".into())
        );
    }
    assert_eq!(accepted(&lb), 1, "the client kept its connection");
    assert_eq!(
        b.connections(),
        2,
        "a close-delimited connection is never pooled"
    );
}

#[test]
fn a_close_delimited_response_stays_close_delimited_for_http10() {
    let b = Recorder::start(|_, _| Reply::then_close(CLOSE_DELIMITED));
    let lb = balancer(&b);
    let text = exchange(lb.addr(), b"GET / HTTP/1.0\r\n\r\n");
    let (head, body) = split_answer(&text);
    assert_eq!(fields(head, "connection"), ["close"], "{head}");
    assert!(fields(head, "transfer-encoding").is_empty(), "{head}");
    assert_eq!(body, "until the end");
}

#[test]
fn head_204_and_304_have_no_body_even_with_a_length() {
    let b = Recorder::start(|(head, _), _| {
        Reply::bytes(match target_of(head) {
            "/204" => b"HTTP/1.1 204 No Content\r\nX-A: 1\r\nContent-Length: 7\r\n\r\n",
            "/304" => b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\nETag: \"e\"\r\n\r\n",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        })
    });
    let lb = balancer(&b);
    let mut c = RawConn::open(lb.addr());
    // All in one write: any stray body byte would corrupt the responses after it.
    c.send(
        b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\nGET /204 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /304 HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let (head, _) = c.response_to("HEAD");
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    assert_eq!(fields(&head, "content-length"), ["5"], "{head}");
    let (head, _) = c.response();
    assert_eq!(status_line(&head), "HTTP/1.1 204 No Content", "{head}");
    assert_eq!(fields(&head, "x-a"), ["1"], "{head}");
    assert!(fields(&head, "transfer-encoding").is_empty(), "{head}");
    assert!(
        fields(&head, "content-length").is_empty(),
        "never on a 204: {head}"
    );
    let (head, _) = c.response();
    assert_eq!(status_line(&head), "HTTP/1.1 304 Not Modified", "{head}");
    assert_eq!(fields(&head, "content-length"), ["99"], "{head}");
    let (head, body) = c.response();
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    assert_eq!(body, b"hello");
}

#[test]
fn interim_1xx_responses_are_dropped() {
    let b = Recorder::fixed(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
            HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate",
    );
    let lb = balancer(&b);
    let mut c = RawConn::open(lb.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    for _ in 0..2 {
        let (head, body) = c.response();
        assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
        assert!(fields(&head, "link").is_empty(), "{head}");
        assert_eq!(body, b"late");
    }
}

#[test]
fn a_backend_dying_mid_body_closes_the_client_connection() {
    let b = Recorder::start(|(head, _), _| {
        Reply::then_close(match target_of(head) {
            "/length" => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
            "/chunked" => {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nab"
            }
            _ => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        })
    });
    // Failures must not take the only backend out of rotation during the test.
    let mut c = config(&[b.url()]);
    c.max_fails = 1000;
    let lb = start(c);
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
        let got = read_until_closed(&mut c);
        let text = String::from_utf8_lossy(&got);
        let (head, body) = split_answer(&text);
        assert_eq!(status_line(head), "HTTP/1.1 200 OK", "{path}: {head}");
        assert_eq!(
            body.as_bytes(),
            want_body,
            "{path}: only what the backend sent"
        );
    }
    assert_eq!(b.count_starting("GET /next "), 0);
    assert_eq!(pooled(&lb, 0), 0);
}
