//! Timeouts (issue 3): `--header-timeout` (408, and slowloris does not starve anyone),
//! `--client-timeout` for a stalled body, `--backend-timeout` (504, or a close mid-body), and
//! `--connect-timeout` against a backend whose accept queue is full.
//!
//! Every timeout here is set to a few hundred milliseconds; the assertions allow generous
//! upper bounds because the suite runs on a busy machine.

mod support;
#[path = "support/wire.rs"]
mod wire;

use load_balancer::server::Balancer;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};
use support::*;

const SHORT: Duration = Duration::from_millis(300);

/// Reads until the balancer closes; returns what came and how long it took.
fn until_close(s: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let text = read_to_close(s);
    (text, started.elapsed())
}

fn assert_about(took: Duration, timeout: Duration, what: &str) {
    assert!(
        took >= timeout - Duration::from_millis(50) && took < timeout + Duration::from_secs(4),
        "{what} after {took:?}, timeout {timeout:?}"
    );
}

#[test]
fn a_head_that_takes_too_long_gets_408_and_a_close() {
    let s = Setup::new(1, |c| c.header_timeout = SHORT);
    let mut c = connect(s.addr());
    c.write_all(b"GET / HTTP/1.1\r\nHost:").unwrap();
    let (text, took) = until_close(&mut c);
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{text}"
    );
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert_about(took, SHORT, "408");
}

#[test]
fn slowloris_clients_get_408_and_do_not_starve_others() {
    // The header timeout is long next to the bound on the other clients' wait, so a
    // client that waited for the tricklers to be cut off would fail the bound.
    let s = Setup::new(1, |c| c.header_timeout = Duration::from_millis(1500));
    // Twenty clients trickle a head one byte every 20 ms: each read succeeds, so only a
    // deadline on the whole head (not on each read) stops them.
    let trickling: Vec<_> = (0..20)
        .map(|_| {
            let addr = s.addr();
            thread::spawn(move || {
                let mut c = connect(addr);
                let started = Instant::now();
                c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Padding: ")
                    .unwrap();
                // Write a byte, then listen 20 ms for an answer; until there is one.
                c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                let mut answer = Vec::new();
                let mut buf = [0u8; 4096];
                while started.elapsed() < Duration::from_secs(8) {
                    if answer.is_empty() && c.write_all(b"a").is_err() {
                        break;
                    }
                    match c.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => answer.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => break,
                    }
                }
                (
                    String::from_utf8_lossy(&answer).into_owned(),
                    started.elapsed(),
                )
            })
        })
        .collect();
    // Meanwhile, other clients are served at once.
    for _ in 0..5 {
        let started = Instant::now();
        let (status, _) = get(&s.url("/"));
        assert_eq!(status, 200);
        assert!(
            started.elapsed() < Duration::from_millis(750),
            "{:?}",
            started.elapsed()
        );
    }
    for t in trickling {
        let (text, took) = t.join().unwrap();
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(
            took < Duration::from_secs(5),
            "a trickler was held {took:?}"
        );
    }
}

#[test]
fn a_body_that_stalls_gets_408_and_a_close() {
    let s = Setup::new(1, |c| c.client_timeout = SHORT);
    let mut c = connect(s.addr());
    c.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    let (text, took) = until_close(&mut c);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert_about(took, SHORT, "408");
}

/// A backend that reads a request, writes `reply`, and then says nothing more (until the
/// balancer closes the connection).
fn silent_after(reply: &'static [u8]) -> ScriptedBackend {
    ScriptedBackend::start(move |mut s| {
        if wire::read_message(&mut s).is_some() && s.write_all(reply).is_ok() {
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        }
    })
}

#[test]
fn a_backend_that_never_answers_gets_504() {
    let b = silent_after(b"");
    let mut c = config(&[b.url()]);
    c.backend_timeout = SHORT;
    let lb = Balancer::start(c).unwrap();
    let started = Instant::now();
    let mut conn = RawConn::open(lb.addr());
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = conn.response();
    assert!(
        head.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"),
        "{head}"
    );
    assert!(String::from_utf8_lossy(&body).contains("--backend-timeout"));
    assert_about(started.elapsed(), SHORT, "504");
}

#[test]
fn a_backend_silent_mid_body_gets_the_client_closed() {
    let b = silent_after(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    let mut c = config(&[b.url()]);
    c.backend_timeout = SHORT;
    let lb = Balancer::start(c).unwrap();
    let mut conn = connect(lb.addr());
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (text, took) = until_close(&mut conn);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.ends_with("\r\n\r\nabc"),
        "only what the backend sent: {text}"
    );
    assert_about(took, SHORT, "close");
}

/// A listener that never accepts, with its accept queue filled: the kernel then drops new
/// SYNs, so a connect neither succeeds nor is refused, just as with an unreachable host,
/// without leaving this machine. Returns the listener and the connections that fill it.
fn full_listener() -> (TcpListener, Vec<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut filling = Vec::new();
    // std listens with a backlog of 128; stop at the first connect that hangs.
    while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
        filling.push(s);
        assert!(filling.len() < 5000, "the accept queue never filled up");
    }
    (listener, filling)
}

#[test]
fn a_backend_that_cannot_be_reached_in_time_is_skipped_then_502() {
    let (full, _filling) = full_listener();
    let full_url = format!("http://{}", full.local_addr().unwrap());
    let demo = demos(1);

    // With another backend: the request waits the connect timeout, then goes there.
    let mut c = config(&[full_url.clone(), demo[0].url()]);
    c.connect_timeout = SHORT;
    let lb = Balancer::start(c).unwrap();
    let started = Instant::now();
    let (status, body) = get(&format!("http://{}/", lb.addr()));
    assert_eq!(status, 200);
    assert_eq!(body, demo[0].page());
    assert_about(started.elapsed(), SHORT, "failover");

    // Alone: a 502 page that names the connect timeout.
    let mut c = config(&[full_url]);
    c.connect_timeout = SHORT;
    let lb = Balancer::start(c).unwrap();
    let started = Instant::now();
    let mut conn = RawConn::open(lb.addr());
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = conn.response();
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(
        String::from_utf8_lossy(&body).contains("--connect-timeout"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_about(started.elapsed(), SHORT, "502");
}
