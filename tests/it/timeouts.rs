//! Timeouts: `--header-timeout` (408, and slowloris does not starve anyone), `--client-timeout`
//! for a stalled body, `--backend-timeout` (504, or a close mid-body), and `--connect-timeout`
//! against a backend whose accept queue is full.
//!
//! Every timeout here is a few hundred milliseconds. A lower bound is measured from a clock
//! started before the balancer's timer can start (before the connection is made), so it
//! cannot come out short; upper bounds are generous, as the suite runs on a busy machine.

use crate::support::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const SHORT: Duration = Duration::from_millis(300);

/// Slack allowed past a timeout before the test calls it missed.
const SLACK: Duration = Duration::from_secs(8);

fn assert_about(took: Duration, timeout: Duration, what: &str) {
    assert!(
        took >= timeout && took < timeout + SLACK,
        "{what} after {took:?}, timeout {timeout:?}"
    );
}

/// Sends `request` on a new connection and reads until the balancer closes it: the answer,
/// and how long that took, timed from before the connect.
fn timed_exchange(addr: SocketAddr, request: &[u8]) -> (String, Duration) {
    let started = Instant::now();
    let text = exchange(addr, request);
    (text, started.elapsed())
}

/// Sends a GET on a new connection and reads one response: its head and body, and how long
/// that took, timed from before the connect.
fn timed_get(addr: SocketAddr) -> (String, Vec<u8>, Duration) {
    let started = Instant::now();
    let mut conn = RawConn::open(addr);
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = conn.response();
    (head, body, started.elapsed())
}

/// Asserts that `text` is the 408 page that gives `reason`, with `Connection: close`.
fn assert_408_and_close(text: &str, reason: &str) {
    let (head, body) = split_answer(text);
    assert_page(head, body.as_bytes(), "408 Request Timeout", reason);
    assert_eq!(fields(head, "connection"), ["close"], "{head}");
}

#[test]
fn a_head_that_takes_too_long_gets_408_and_a_close() {
    let s = Setup::new(1, |c| c.header_timeout = SHORT);
    let (text, took) = timed_exchange(s.addr(), b"GET / HTTP/1.1\r\nHost:");
    assert_408_and_close(&text, "the request head took too long");
    assert_about(took, SHORT, "408");
}

#[test]
fn slowloris_clients_get_408_and_do_not_starve_others() {
    const TRICKLERS: usize = 20;
    const HEADER_TIMEOUT: Duration = Duration::from_secs(4);
    let s = Setup::new(1, |c| c.header_timeout = HEADER_TIMEOUT);
    // Twenty clients trickle a head one byte every 20 ms: each read succeeds, so only a
    // deadline on the whole head (not on each read) stops them.
    let answered = Arc::new(AtomicUsize::new(0));
    let trickling: Vec<_> = (0..TRICKLERS)
        .map(|_| {
            let (addr, answered) = (s.addr(), Arc::clone(&answered));
            thread::spawn(move || {
                let started = Instant::now();
                let mut c = connect(addr);
                c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Padding: ")
                    .unwrap();
                // Write a byte, then listen 20 ms for an answer; until the close.
                c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                let mut answer = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    assert!(
                        started.elapsed() < HEADER_TIMEOUT + SLACK,
                        "a trickler was held: {:?}",
                        String::from_utf8_lossy(&answer)
                    );
                    if answer.is_empty() && c.write_all(b"a").is_err() {
                        break;
                    }
                    match c.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if answer.is_empty() {
                                answered.fetch_add(1, Ordering::SeqCst);
                            }
                            answer.extend_from_slice(&buf[..n]);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                (
                    String::from_utf8_lossy(&answer).into_owned(),
                    started.elapsed(),
                )
            })
        })
        .collect();
    // Once every trickler holds a connection (and so a thread) of the balancer...
    wait_for(Duration::from_secs(10), "the tricklers connected", || {
        open_connections(&s.lb) == TRICKLERS as u64
    });
    // ...other clients are served, while the tricklers are still trickling.
    for _ in 0..5 {
        assert_eq!(get(&s.url("/")), (200, s.demos[0].page().to_string()));
    }
    assert_eq!(
        answered.load(Ordering::SeqCst),
        0,
        "the others were served only after the tricklers were cut off"
    );
    for t in trickling {
        let (text, took) = t.join().unwrap();
        assert_408_and_close(&text, "the request head took too long");
        assert_about(took, HEADER_TIMEOUT, "a trickler's 408");
    }
}

#[test]
fn a_body_that_stalls_gets_408_and_a_close() {
    let s = Setup::new(1, |c| c.client_timeout = SHORT);
    let (text, took) = timed_exchange(
        s.addr(),
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
    );
    assert_408_and_close(&text, "the request body took too long (--client-timeout)");
    assert_about(took, SHORT, "408");
}

/// A backend that reads a request, writes `reply`, and then says nothing more (until the
/// balancer closes the connection).
fn silent_after(reply: &'static [u8]) -> ScriptedBackend {
    ScriptedBackend::start(move |mut s| {
        if read_message(&mut s).is_some() && s.write_all(reply).is_ok() {
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
    let lb = start(c);
    let (head, body, took) = timed_get(lb.addr());
    assert_page(
        &head,
        &body,
        "504 Gateway Timeout",
        "the backend did not answer in time (--backend-timeout)",
    );
    assert_about(took, SHORT, "504");
}

#[test]
fn a_backend_silent_mid_body_gets_the_client_closed() {
    let b = silent_after(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    let mut c = config(&[b.url()]);
    c.backend_timeout = SHORT;
    let lb = start(c);
    let (text, took) = timed_exchange(lb.addr(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = split_answer(&text);
    assert_eq!(status_line(head), "HTTP/1.1 200 OK", "{head}");
    assert_eq!(body, "abc", "only what the backend sent");
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
    let demo = demo(1);

    // With another backend: the request waits the connect timeout, then goes there.
    let mut c = config(&[full_url.clone(), demo.url()]);
    c.connect_timeout = SHORT;
    let lb = start(c);
    let started = Instant::now();
    let (status, body) = get(&format!("http://{}/", lb.addr()));
    let took = started.elapsed();
    assert_eq!((status, body.as_str()), (200, demo.page()));
    assert_about(took, SHORT, "failover");

    // Alone: a 502 page that names the connect timeout.
    let mut c = config(&[full_url]);
    c.connect_timeout = SHORT;
    let lb = start(c);
    let (head, body, took) = timed_get(lb.addr());
    assert_page(
        &head,
        &body,
        "502 Bad Gateway",
        "connect timed out (--connect-timeout)",
    );
    assert_about(took, SHORT, "502");
}
