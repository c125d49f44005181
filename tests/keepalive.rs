//! Connections (issue 3): client keep-alive and pipelining, the idle timeout, the upstream
//! pool and its one safe retry, `Expect: 100-continue`, and the connection cap.

mod support;
#[path = "support/wire.rs"]
mod wire;

use load_balancer::server::Balancer;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use support::*;
use wire::Seen;

/// A backend that answers every request on a connection with `200` and the request's path,
/// counting connections and requests.
fn counting_backend() -> (ScriptedBackend, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let backend = {
        let seen = Arc::clone(&seen);
        ScriptedBackend::start(move |mut s| {
            seen.connections.fetch_add(1, Ordering::SeqCst);
            while let Some(message) = wire::read_message(&mut s) {
                seen.record(&message);
                let path = message.0.split(' ').nth(1).unwrap_or("").to_string();
                if !wire::ok(&mut s, &path) {
                    return;
                }
            }
        })
    };
    (backend, seen)
}

#[test]
fn http11_keeps_the_connection_open_by_default() {
    let s = Setup::new(1, |_| {});
    let mut c = RawConn::open(s.addr());
    for _ in 0..3 {
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let (head, body) = c.response();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(!head.to_ascii_lowercase().contains("connection: close"));
        assert_eq!(body, s.demos[0].page().as_bytes());
    }
    // `Connection: close` is honoured: answered, then closed.
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (head, _) = c.response();
    assert!(head.contains("Connection: close\r\n"), "{head}");
    assert!(c.is_closed());
}

#[test]
fn http10_keeps_alive_only_when_asked() {
    let s = Setup::new(1, |_| {});
    // Plain HTTP/1.0: one response, then the balancer closes.
    let mut c = RawConn::open(s.addr());
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let (head, _) = c.response();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Connection: close\r\n"), "{head}");
    assert!(c.is_closed());

    // HTTP/1.0 with `Connection: keep-alive`: the answer says so and the connection stays.
    let mut c = RawConn::open(s.addr());
    for _ in 0..2 {
        c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let (head, body) = c.response();
        assert!(head.contains("Connection: keep-alive\r\n"), "{head}");
        assert_eq!(body, s.demos[0].page().as_bytes());
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (backend, seen) = counting_backend();
    let lb = Balancer::start(config(&[backend.url()])).unwrap();
    let mut c = RawConn::open(lb.addr());
    // Five requests in one write, one of them with a body, the last one closing.
    let mut burst = Vec::new();
    for i in 1..=4 {
        burst.extend_from_slice(format!("GET /r{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        if i == 2 {
            burst.extend_from_slice(
                b"POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            );
        }
    }
    burst.extend_from_slice(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    c.send(&burst);
    for want in ["/r1", "/r2", "/post", "/r3", "/r4", "/last"] {
        let (head, body) = c.response();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(String::from_utf8(body).unwrap(), want);
    }
    assert!(c.is_closed());
    assert_eq!(seen.count(), 6);
    assert_eq!(seen.messages.lock().unwrap()[2].1, b"abc");
}

#[test]
fn idle_clients_are_closed_silently_after_the_idle_timeout() {
    let s = Setup::new(1, |c| c.idle_timeout = Duration::from_millis(300));
    // After a request: the connection waits for the next one, then closes without a byte.
    let mut c = RawConn::open(s.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, _) = c.response();
    assert!(head.starts_with("HTTP/1.1 200"));
    let answered = Instant::now();
    assert!(
        c.is_closed(),
        "the idle connection got bytes, or stayed open"
    );
    let idle = answered.elapsed();
    assert!(
        idle >= Duration::from_millis(250) && idle < Duration::from_secs(5),
        "closed after {idle:?}"
    );
    // A connection that never sends anything is closed the same way.
    let mut quiet = RawConn::open(s.addr());
    assert!(quiet.is_closed());
}

#[test]
fn sequential_requests_share_one_upstream_connection() {
    let (backend, seen) = counting_backend();
    let lb = Balancer::start(config(&[backend.url()])).unwrap();
    // From one client connection, and from several one after the other.
    let mut c = RawConn::open(lb.addr());
    for i in 0..5 {
        c.send(format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert!(c.response().0.starts_with("HTTP/1.1 200"));
    }
    for i in 0..5 {
        let mut c = RawConn::open(lb.addr());
        c.send(format!("GET /other{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert!(c.response().0.starts_with("HTTP/1.1 200"));
    }
    assert_eq!(seen.count(), 10);
    assert_eq!(
        seen.connections(),
        1,
        "every request after the first reused it"
    );
    assert_eq!(lb.shared().backends.snapshot()[0].pooled_count(), 1);
}

/// A backend that answers the first request on each connection and then closes that
/// connection (as a backend with a short keep-alive timeout does while it is pooled),
/// without saying `Connection: close`. Requests after the first are read and dropped.
fn closes_after_one() -> (ScriptedBackend, Arc<Seen>, Arc<AtomicBool>) {
    let seen = Arc::new(Seen::default());
    let closed = Arc::new(AtomicBool::new(false));
    let backend = {
        let (seen, closed) = (Arc::clone(&seen), Arc::clone(&closed));
        ScriptedBackend::start(move |mut s| {
            seen.connections.fetch_add(1, Ordering::SeqCst);
            if let Some(message) = wire::read_message(&mut s) {
                seen.record(&message);
                wire::ok(&mut s, "first");
            }
            drop(s);
            closed.store(true, Ordering::SeqCst);
        })
    };
    (backend, seen, closed)
}

/// One GET through `lb`, whose backend (from [`closes_after_one`]) then closes the idle
/// connection the balancer pooled; returns the client connection, ready for a second request.
fn pool_a_connection_the_backend_then_closes(lb: &Balancer, closed: &AtomicBool) -> RawConn {
    let mut c = RawConn::open(lb.addr());
    c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(c.response().0.starts_with("HTTP/1.1 200"));
    let pool = Arc::clone(&lb.shared().backends.snapshot()[0]);
    wait_for(
        Duration::from_secs(5),
        "the connection to be pooled",
        || pool.pooled_count() == 1,
    );
    wait_for(Duration::from_secs(5), "the backend to close", || {
        closed.load(Ordering::SeqCst)
    });
    c
}

#[test]
fn a_pooled_connection_closed_by_the_backend_is_retried_once_for_get() {
    let (backend, seen, closed) = closes_after_one();
    let lb = Balancer::start(config(&[backend.url()])).unwrap();
    let mut c = pool_a_connection_the_backend_then_closes(&lb, &closed);
    // The pooled connection is dead; the GET goes out again on a fresh one, unnoticed.
    c.send(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = c.response();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"first");
    assert_eq!(seen.connections(), 2);
    let backend_state = &lb.shared().backends.snapshot()[0];
    assert!(
        backend_state.health.is_up(),
        "a closed idle connection is no failure"
    );
}

#[test]
fn a_post_never_goes_out_on_a_pooled_connection_the_backend_closed() {
    let (backend, seen, closed) = closes_after_one();
    let lb = Balancer::start(config(&[backend.url()])).unwrap();
    let mut c = pool_a_connection_the_backend_then_closes(&lb, &closed);
    // The balancer checks a pooled connection before it trusts it with a POST: it sees the
    // backend's close and opens a fresh connection instead, so the POST is sent once.
    c.send(b"POST /pay HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    let (head, body) = c.response();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"first");
    assert_eq!(seen.connections(), 2);
    assert_eq!(seen.last().1, b"hello");
    assert_eq!(seen.count(), 2);
}

#[test]
fn the_retry_on_a_fresh_connection_happens_once() {
    // A backend that answers only the very first request it ever gets, then reads each
    // request and hangs up without a byte.
    let seen = Arc::new(Seen::default());
    let backend = {
        let seen = Arc::clone(&seen);
        ScriptedBackend::start(move |mut s| {
            while let Some(message) = wire::read_message(&mut s) {
                seen.record(&message);
                if seen.count() > 1 || !wire::ok(&mut s, "first") {
                    return;
                }
            }
        })
    };
    let mut config = config(&[backend.url()]);
    config.max_fails = 1000;
    let lb = Balancer::start(config).unwrap();
    let mut c = RawConn::open(lb.addr());
    c.send(b"GET /warm HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(c.response().0.starts_with("HTTP/1.1 200"));
    c.send(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, _) = c.response();
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    // Once on the pooled connection, once on a fresh one: no more.
    let again = seen
        .heads()
        .iter()
        .filter(|h| h.starts_with("GET /again"))
        .count();
    assert_eq!(again, 2);
}

/// A backend that answers the first request on a connection and dies, without a byte of
/// answer, holding the second one.
fn dies_on_the_second_request() -> (ScriptedBackend, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let backend = {
        let seen = Arc::clone(&seen);
        ScriptedBackend::start(move |mut s| {
            seen.connections.fetch_add(1, Ordering::SeqCst);
            if let Some(message) = wire::read_message(&mut s) {
                seen.record(&message);
                wire::ok(&mut s, "first");
            }
            if let Some(message) = wire::read_message(&mut s) {
                seen.record(&message);
            }
        })
    };
    (backend, seen)
}

#[test]
fn a_get_that_dies_on_a_pooled_connection_is_sent_again_but_a_post_is_not() {
    let (backend, seen) = dies_on_the_second_request();
    let lb = Balancer::start(config(&[backend.url()])).unwrap();
    let sent = |what: &str| seen.heads().iter().filter(|h| h.starts_with(what)).count();

    // GET: the pooled connection dies before any response byte; GET is idempotent, so it is
    // sent once more on a fresh connection, and the client sees a normal answer.
    let mut c = RawConn::open(lb.addr());
    c.send(b"GET /warm HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(c.response().0.starts_with("HTTP/1.1 200"));
    c.send(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = c.response();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"first");
    assert_eq!(sent("GET /again"), 2);
    assert_eq!(seen.connections(), 2);

    // POST in the same situation: the backend may have acted on it, so it is never sent
    // again (RFC 9110 section 9.2.2); the client gets a 502.
    c.send(b"POST /pay HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    let (head, _) = c.response();
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert_eq!(sent("POST /pay"), 1, "{:?}", seen.heads());
    assert_eq!(seen.connections(), 2);
}

#[test]
fn expect_100_continue_gets_an_interim_answer_and_the_body_arrives() {
    let s = Setup::new(1, |_| {});
    let mut c = connect(s.addr());
    c.write_all(
        b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut got = vec![0; interim.len()];
    c.read_exact(&mut got).unwrap();
    assert_eq!(got, interim);
    c.write_all(b"hello world").unwrap();
    let (head, body) = read_response(&mut c);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let echo = String::from_utf8(body).unwrap();
    assert!(echo.ends_with("\n\nhello world"), "{echo}");
    assert!(!echo.to_ascii_lowercase().contains("expect:"), "{echo}");
}

#[test]
fn past_max_connections_a_client_gets_503_and_a_close() {
    let s = Setup::new(1, |c| c.max_connections = 2);
    // Two held connections, each proven accepted and served.
    let mut held: Vec<RawConn> = (0..2).map(|_| RawConn::open(s.addr())).collect();
    for c in &mut held {
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(c.response().0.starts_with("HTTP/1.1 200"));
    }
    let text = exchange(s.addr(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{text}"
    );
    assert!(text.contains("Retry-After: 1\r\n"), "{text}");
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert_eq!(wire::status(&text), 503);
    // The cap is on open connections: when one closes, a new client is served again.
    drop(held.pop());
    wait_for(Duration::from_secs(5), "a free slot", || {
        let text = exchange(
            s.addr(),
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        text.starts_with("HTTP/1.1 200")
    });
}

/// A backend whose first connection answers its first request with `first`, then, once the
/// test says the client has its answer (`planted`'s receiver), writes `stray` on the same
/// connection, as if it belonged to nobody, and then closes it if `close` (else keeps it
/// open). Every other request, on any connection, gets `200` with body `own`.
fn planting_backend(
    first: &'static [u8],
    stray: &'static [u8],
    close: bool,
) -> (ScriptedBackend, mpsc::SyncSender<()>, Arc<AtomicBool>) {
    let (go_tx, go_rx) = mpsc::sync_channel::<()>(1);
    let go_rx = Arc::new(std::sync::Mutex::new(Some(go_rx)));
    let planted = Arc::new(AtomicBool::new(false));
    let backend = {
        let planted = Arc::clone(&planted);
        ScriptedBackend::start(move |mut s| {
            let go = go_rx.lock().unwrap().take();
            while wire::read_message(&mut s).is_some() {
                if let Some(go) = &go
                    && !planted.load(Ordering::SeqCst)
                {
                    if s.write_all(first).is_err() || go.recv().is_err() {
                        return;
                    }
                    let written = s.write_all(stray).is_ok();
                    planted.store(true, Ordering::SeqCst);
                    if close || !written {
                        return;
                    }
                    continue;
                }
                if !wire::ok(&mut s, "own") {
                    return;
                }
            }
        })
    };
    (backend, go_tx, planted)
}

#[test]
fn bytes_a_backend_sends_after_its_response_never_reach_the_next_client() {
    // Issue 11: the tail of one response must not become another client's answer. Each case
    // is a first exchange that ends, then bytes that arrive on the idle pooled connection.
    let planted: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nPLANTED";
    let timeout: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 7\r\n\r\ntimeout";
    let cases: [(&str, &[u8], &[u8], bool); 5] = [
        // A body on a HEAD answer.
        (
            "HEAD",
            b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n",
            planted,
            false,
        ),
        // A body on a 204.
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n", planted, false),
        // A body on a 304.
        ("GET", b"HTTP/1.1 304 Not Modified\r\n\r\n", planted, false),
        // Bytes past the Content-Length.
        (
            "GET",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
            planted,
            false,
        ),
        // An answer nobody asked for, then a close (what servers do when a kept-alive
        // connection idles out).
        (
            "GET",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
            timeout,
            true,
        ),
    ];
    for (method, first, stray, close) in cases {
        let (backend, go, planted_flag) = planting_backend(first, stray, close);
        let lb = Balancer::start(config(&[backend.url()])).unwrap();
        let mut attacker = RawConn::open(lb.addr());
        attacker.send(format!("{method} /plant HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let (head, _) = attacker.response_to(method);
        assert!(!head.starts_with("HTTP/1.1 5"), "{method}: {head}");
        // The balancer has relayed the answer, so the connection is back in its pool.
        wait_for(
            Duration::from_secs(5),
            "the upstream connection pooled",
            || lb.shared().backends.snapshot()[0].pooled_count() == 1,
        );
        go.send(()).unwrap();
        wait_for(Duration::from_secs(5), "the stray bytes written", || {
            planted_flag.load(Ordering::SeqCst)
        });
        let mut victim = RawConn::open(lb.addr());
        victim.send(b"GET /victim HTTP/1.1\r\nHost: x\r\n\r\n");
        let (head, body) = victim.response();
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "{method} {first:?}: {head}"
        );
        assert_eq!(
            String::from_utf8_lossy(&body),
            "own",
            "after {method} answered {:?}",
            String::from_utf8_lossy(first)
        );
    }
}
