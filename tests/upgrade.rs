//! Upgrade and CONNECT (issue 3): when the backend answers `101 Switching Protocols`, bytes
//! flow both ways until a side closes; `CONNECT` is refused, the balancer is no tunnel to an
//! address of the client's choosing.

mod support;
#[path = "support/wire.rs"]
mod wire;

use load_balancer::server::Balancer;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use wire::Seen;

/// A WebSocket-ish backend: it switches protocols when asked to (greeting with `hi!` in the
/// same write as its 101), then sends back every byte upper-cased until the client side
/// closes. Without an `Upgrade` in the request it answers a plain 200.
fn upgrading_backend() -> (ScriptedBackend, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let b = {
        let seen = Arc::clone(&seen);
        ScriptedBackend::start(move |mut s: TcpStream| {
            while let Some(message) = wire::read_message(&mut s) {
                seen.record(&message);
                if wire::fields(&message.0, "upgrade").is_empty() {
                    if !wire::ok(&mut s, "plain") {
                        return;
                    }
                    continue;
                }
                let _ = s.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                      Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nhi!",
                );
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return, // dropping `s` closes our side too
                        Ok(n) => {
                            if s.write_all(&buf[..n].to_ascii_uppercase()).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        })
    };
    (b, seen)
}

fn read_exactly(s: &mut TcpStream, n: usize) -> String {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).unwrap();
    String::from_utf8(buf).unwrap()
}

#[test]
fn a_101_turns_the_connection_into_a_two_way_pipe() {
    let (b, seen) = upgrading_backend();
    let lb = Balancer::start(config(&[b.url()])).unwrap();
    let mut c = connect(lb.addr());
    // Bytes of the new protocol may follow the request head in the same write.
    c.write_all(
        b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nearly",
    )
    .unwrap();
    // The 101 head, read byte by byte so nothing after it is lost.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert_eq!(wire::fields(&head, "upgrade"), ["websocket"]);
    assert_eq!(wire::fields(&head, "connection"), ["upgrade"]);
    assert_eq!(wire::fields(&head, "sec-websocket-accept").len(), 1);
    // The backend was asked to upgrade, with the fields it needs.
    let (up, _) = seen.last();
    assert_eq!(wire::fields(&up, "upgrade"), ["websocket"], "{up}");
    assert_eq!(wire::fields(&up, "connection"), ["upgrade"], "{up}");
    assert_eq!(wire::fields(&up, "sec-websocket-key").len(), 1, "{up}");

    assert_eq!(read_exactly(&mut c, 3), "hi!");
    assert_eq!(read_exactly(&mut c, 5), "EARLY");
    for word in ["ping", "a longer message of the new protocol"] {
        c.write_all(word.as_bytes()).unwrap();
        assert_eq!(read_exactly(&mut c, word.len()), word.to_ascii_uppercase());
    }
    // The client closes its side; the backend sees the end and closes; so does the tunnel.
    c.shutdown(Shutdown::Write).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn a_declined_upgrade_is_an_ordinary_exchange() {
    // The backend does not switch: the answer is relayed and the connection stays HTTP.
    let b = ScriptedBackend::start(|mut s| {
        while wire::read_message(&mut s).is_some() {
            if !wire::ok(&mut s, "no switch") {
                return;
            }
        }
    });
    let lb = Balancer::start(config(&[b.url()])).unwrap();
    let mut c = RawConn::open(lb.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    let (head, body) = c.response();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"no switch");
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().1, b"no switch");
}

#[test]
fn connect_is_refused_with_405_and_a_close() {
    let (b, seen) = upgrading_backend();
    let lb = Balancer::start(config(&[b.url()])).unwrap();
    for request in [
        &b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"[..],
        // Even pointed at the configured backend itself.
        format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", b.addr).as_bytes(),
    ] {
        let text = exchange(lb.addr(), request);
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("Allow: GET"), "{text}");
        assert!(!text.contains("CONNECT,"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
    }
    assert_eq!(seen.count(), 0);
}

#[test]
fn a_tunnel_busy_in_one_direction_outlives_the_idle_timeout() {
    // A server-push backend: after the 101 it sends a byte every 50 ms for a while, and the
    // client never says anything. The tunnel closes only when both sides are quiet.
    let b = ScriptedBackend::start(|mut s| {
        if wire::read_message(&mut s).is_none() {
            return;
        }
        let _ = s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: push\r\nConnection: upgrade\r\n\r\n",
        );
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(50));
            if s.write_all(b"x").is_err() {
                return;
            }
        }
        // Then silence, with the connection open: the idle timeout ends the tunnel.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    // The push lasts 1 s in all, longer than the idle timeout, with gaps far below it (so a
    // busy test machine does not cut a gap into a timeout).
    let mut c = config(&[b.url()]);
    c.idle_timeout = Duration::from_millis(700);
    let lb = Balancer::start(c).unwrap();
    let mut conn = connect(lb.addr());
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: push\r\n\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    let text = read_to_close(&mut conn);
    let (head, pushed) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(pushed, "x".repeat(20), "the push stream was cut");
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[test]
fn a_request_with_a_body_is_never_upgraded() {
    // Bytes after an upgrade request's head belong to the new protocol; a request that also
    // has a body would have them sent twice (as body, then as tunnel bytes). It is relayed as
    // plain HTTP instead: the Upgrade field does not reach the backend.
    let (b, seen) = upgrading_backend();
    let lb = Balancer::start(config(&[b.url()])).unwrap();
    let mut c = RawConn::open(lb.addr());
    c.send(
        b"POST /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\
          Content-Length: 5\r\n\r\nhello",
    );
    let (head, body) = c.response();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"plain");
    let (sent, sent_body) = seen.last();
    assert!(wire::fields(&sent, "upgrade").is_empty(), "{sent}");
    assert_eq!(sent_body, b"hello");
    assert_eq!(seen.count(), 1);
}

#[test]
fn an_upgrade_with_an_empty_content_length_is_still_an_upgrade() {
    let (b, _seen) = upgrading_backend();
    let lb = Balancer::start(config(&[b.url()])).unwrap();
    let mut c = connect(lb.addr());
    c.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    let head = read_exactly(&mut c, "HTTP/1.1 101".len());
    assert_eq!(head, "HTTP/1.1 101");
}
