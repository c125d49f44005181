//! Upgrade and CONNECT: when the backend answers `101 Switching Protocols`, bytes flow both
//! ways until a side closes; `CONNECT` is refused, the balancer is no tunnel to an address of
//! the client's choosing.

use crate::support::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The 101 the WebSocket-ish backend answers with, and the greeting in the same write.
const SWITCH: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
      Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nhi!";

/// A WebSocket-ish backend: it switches protocols when asked to (greeting with `hi!` in the
/// same write as its 101), then sends back every byte upper-cased until the client side
/// closes. Without an `Upgrade` in the request it answers a plain 200.
fn upgrading_backend() -> (ScriptedBackend, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let b = {
        let seen = Arc::clone(&seen);
        ScriptedBackend::start(move |mut s: TcpStream| {
            while let Some(message) = read_message(&mut s) {
                let upgrade = !fields(&message.0, "upgrade").is_empty();
                seen.record(&message);
                if !upgrade {
                    if !write_ok(&mut s, "plain") {
                        return;
                    }
                    continue;
                }
                let _ = s.write_all(SWITCH);
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

/// Reads a response head byte by byte, so nothing after it is consumed.
fn read_head_only(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Checks the 101 the client got from the upgrading backend, relayed.
fn assert_switched(head: &str) {
    assert_eq!(
        status_line(head),
        "HTTP/1.1 101 Switching Protocols",
        "{head}"
    );
    assert_eq!(fields(head, "upgrade"), ["websocket"], "{head}");
    assert_eq!(fields(head, "connection"), ["upgrade"], "{head}");
    assert_eq!(
        fields(head, "sec-websocket-accept"),
        ["s3pPLMBiTxaQ9kYGzzhZRbK+xOo="],
        "{head}"
    );
}

#[test]
fn a_101_turns_the_connection_into_a_two_way_pipe() {
    let (b, seen) = upgrading_backend();
    let lb = start_over(&[b.url()]);
    let mut c = connect(lb.addr());
    // Bytes of the new protocol may follow the request head in the same write.
    c.write_all(
        b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nearly",
    )
    .unwrap();
    assert_switched(&read_head_only(&mut c));
    // The backend was asked to upgrade, with the fields it needs.
    let (up, _) = seen.last();
    assert!(up.starts_with("GET /chat HTTP/1.1\r\n"), "{up}");
    assert_eq!(fields(&up, "upgrade"), ["websocket"], "{up}");
    assert_eq!(fields(&up, "connection"), ["upgrade"], "{up}");
    assert_eq!(
        fields(&up, "sec-websocket-key"),
        ["dGhlIHNhbXBsZSBub25jZQ=="],
        "{up}"
    );

    assert_eq!(read_exactly(&mut c, 3), "hi!");
    assert_eq!(read_exactly(&mut c, 5), "EARLY");
    for word in ["ping", "a longer message of the new protocol"] {
        c.write_all(word.as_bytes()).unwrap();
        assert_eq!(read_exactly(&mut c, word.len()), word.to_ascii_uppercase());
    }
    // The client closes its side; the backend sees the end and closes; so does the tunnel.
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_until_closed(&mut c), b"");
}

#[test]
fn a_declined_upgrade_is_an_ordinary_exchange() {
    // The backend does not switch: the answer is relayed and the connection stays HTTP.
    let b = Recorder::start(|_, _| Reply::ok("no switch"));
    let lb = start_over(&[b.url()]);
    let mut c = RawConn::open(lb.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    let (head, body) = c.response();
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    assert_eq!(body, b"no switch");
    c.send(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().1, b"no switch");
    // Both requests came on one connection, the second without any upgrade field.
    assert_eq!(b.connections(), 1);
    let second = b.last().0;
    assert!(second.starts_with("GET /second "), "{second}");
    assert!(fields(&second, "upgrade").is_empty(), "{second}");
}

#[test]
fn connect_is_refused_with_405_and_a_close() {
    let (b, seen) = upgrading_backend();
    let lb = start_over(&[b.url()]);
    for request in [
        &b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"[..],
        // Even pointed at the configured backend itself.
        format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", b.addr).as_bytes(),
    ] {
        let text = exchange(lb.addr(), request);
        let (head, body) = split_answer(&text);
        assert_page(
            head,
            body.as_bytes(),
            "405 Method Not Allowed",
            "CONNECT is not allowed: this is not a forward proxy",
        );
        assert_eq!(
            fields(head, "allow"),
            ["GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE"],
            "{head}"
        );
        assert_eq!(fields(head, "connection"), ["close"], "{head}");
    }
    assert_eq!(seen.count(), 0);
}

#[test]
fn a_tunnel_busy_in_one_direction_outlives_the_idle_timeout() {
    // A server-push backend: after the 101 it sends a byte every 50 ms for a while, and the
    // client never says anything. The tunnel closes only when both sides are quiet.
    let b = ScriptedBackend::start(|mut s| {
        if read_message(&mut s).is_none() {
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
    const IDLE: Duration = Duration::from_millis(700);
    let mut c = config(&[b.url()]);
    c.idle_timeout = IDLE;
    let lb = start(c);
    let started = Instant::now();
    let mut conn = connect(lb.addr());
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: push\r\n\r\n")
        .unwrap();
    let text = String::from_utf8(read_until_closed(&mut conn)).unwrap();
    let (head, pushed) = split_answer(&text);
    assert_eq!(
        status_line(head),
        "HTTP/1.1 101 Switching Protocols",
        "{head}"
    );
    assert_eq!(pushed, "x".repeat(20), "the push stream was cut");
    // 20 pushes 50 ms apart, then the idle timeout: never sooner.
    assert!(started.elapsed() >= Duration::from_millis(1000) + IDLE);
}

#[test]
fn a_request_with_a_body_is_never_upgraded() {
    // Bytes after an upgrade request's head belong to the new protocol; a request that also
    // has a body would have them sent twice (as body, then as tunnel bytes). It is relayed as
    // plain HTTP instead: the Upgrade field does not reach the backend.
    let (b, seen) = upgrading_backend();
    let lb = start_over(&[b.url()]);
    let mut c = RawConn::open(lb.addr());
    c.send(
        b"POST /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\
          Content-Length: 5\r\n\r\nhello",
    );
    let (head, body) = c.response();
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    assert_eq!(body, b"plain");
    let (sent, sent_body) = seen.last();
    assert!(fields(&sent, "upgrade").is_empty(), "{sent}");
    assert_eq!(sent_body, b"hello");
    assert_eq!(seen.count(), 1);
}

#[test]
fn an_upgrade_with_an_empty_content_length_is_still_an_upgrade() {
    let (b, seen) = upgrading_backend();
    let lb = start_over(&[b.url()]);
    let mut c = connect(lb.addr());
    c.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    assert_switched(&read_head_only(&mut c));
    assert_eq!(fields(&seen.last().0, "upgrade"), ["websocket"]);
    // And it is a tunnel: the greeting, then bytes both ways.
    assert_eq!(read_exactly(&mut c, 3), "hi!");
    c.write_all(b"echo").unwrap();
    assert_eq!(read_exactly(&mut c, 4), "ECHO");
}

#[test]
fn an_open_tunnel_is_counted_on_metrics_and_status() {
    let (b, _) = upgrading_backend();
    let mut c = config(&[b.url()]);
    with_admin(&mut c);
    let lb = start(c);
    // The gauge on /metrics and the field of /status.json, read together.
    let counts = || {
        let (_, metrics) = get(&admin_url(&lb, "/metrics"));
        let gauge = metrics
            .lines()
            .find_map(|l| l.strip_prefix("lb_client_tunnels_open "))
            .map(str::to_string);
        let (_, status) = get(&admin_url(&lb, "/status.json"));
        let field = status
            .split_once("\"tunnels_open\":")
            .and_then(|(_, rest)| rest.split(',').next())
            .map(str::to_string);
        (gauge, field)
    };
    let both = |n: &str| (Some(n.to_string()), Some(n.to_string()));
    assert_eq!(counts(), both("0"));
    let mut tunnel = connect(lb.addr());
    tunnel
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .unwrap();
    assert_switched(&read_head_only(&mut tunnel));
    assert_eq!(read_exactly(&mut tunnel, 3), "hi!");
    wait_for(Duration::from_secs(10), "the tunnel to be counted", || {
        counts() == both("1")
    });
    drop(tunnel);
    wait_for(
        Duration::from_secs(10),
        "the closed tunnel to be let go",
        || counts() == both("0"),
    );
}
