//! Connections: client keep-alive and pipelining, the idle timeout, the upstream pool and its
//! one safe retry, `Expect: 100-continue`, and the connection cap.

use crate::support::*;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

#[test]
fn http11_keeps_the_connection_open_by_default() {
    let s = Setup::new(1, |_| {});
    let mut c = RawConn::open(s.addr());
    for _ in 0..3 {
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let (head, body) = c.response();
        assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
        assert!(fields(&head, "connection").is_empty(), "{head}");
        assert_eq!(body, s.demos[0].page().as_bytes());
    }
    assert_eq!(accepted(&s.lb), 1, "one connection for all three");
    // `Connection: close` is honoured: answered, then closed.
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (head, body) = c.response();
    assert_eq!(fields(&head, "connection"), ["close"], "{head}");
    assert_eq!(body, s.demos[0].page().as_bytes());
    c.expect_close();
}

#[test]
fn http10_keeps_alive_only_when_asked() {
    let s = Setup::new(1, |_| {});
    // Plain HTTP/1.0: one response, then the balancer closes.
    let mut c = RawConn::open(s.addr());
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let (head, body) = c.response();
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    assert_eq!(fields(&head, "connection"), ["close"], "{head}");
    assert_eq!(body, s.demos[0].page().as_bytes());
    c.expect_close();

    // HTTP/1.0 with `Connection: keep-alive`: the answer says so and the connection stays.
    let mut c = RawConn::open(s.addr());
    for _ in 0..2 {
        c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let (head, body) = c.response();
        assert_eq!(fields(&head, "connection"), ["keep-alive"], "{head}");
        assert_eq!(body, s.demos[0].page().as_bytes());
    }
    assert_eq!(accepted(&s.lb), 2);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let backend = Recorder::echo_target();
    let lb = start_over(&[backend.url()]);
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
        assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
        assert_eq!(String::from_utf8(body).unwrap(), want);
    }
    c.expect_close();
    assert_eq!(backend.count(), 6);
    assert_eq!(backend.message(2).1, b"abc");
}

#[test]
fn idle_clients_are_closed_silently_after_the_idle_timeout() {
    const IDLE: Duration = Duration::from_millis(300);
    let s = Setup::new(1, |c| c.idle_timeout = IDLE);
    // After a request: the connection waits for the next one, then closes without a byte.
    let mut c = RawConn::open(s.addr());
    // The clock starts before the request, so before the balancer's idle timer: what it
    // measures can only be longer than the real idle time.
    let sent = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, _) = c.response();
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK");
    c.expect_close();
    let took = sent.elapsed();
    assert!(
        took >= IDLE,
        "closed after {took:?}, before the idle timeout"
    );
    // A connection that never sends anything is closed the same way.
    let mut quiet = RawConn::open(s.addr());
    quiet.expect_close();
    wait_for(Duration::from_secs(10), "both connections gone", || {
        open_connections(&s.lb) == 0
    });
}

#[test]
fn sequential_requests_share_one_upstream_connection() {
    let backend = Recorder::echo_target();
    let lb = start_over(&[backend.url()]);
    // From one client connection, and from several one after the other.
    let mut c = RawConn::open(lb.addr());
    for i in 0..5 {
        c.send(format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert_eq!(c.response().1, format!("/{i}").as_bytes());
    }
    // The balancer returns the upstream connection to its pool just after the response went
    // out: before each new client, wait for it, so the client can find it there.
    let back_in_the_pool = || {
        wait_for(
            Duration::from_secs(10),
            "the connection back in the pool",
            || pooled(&lb, 0) == 1,
        )
    };
    for i in 0..5 {
        back_in_the_pool();
        let mut c = RawConn::open(lb.addr());
        c.send(format!("GET /other{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert_eq!(c.response().1, format!("/other{i}").as_bytes());
    }
    back_in_the_pool();
    assert_eq!(backend.count(), 10);
    assert_eq!(
        backend.connections(),
        1,
        "every request after the first reused it"
    );
}

/// A backend that answers the first request on each connection and then closes that
/// connection (as a backend with a short keep-alive timeout does while it is pooled),
/// without saying `Connection: close`; `closed` is set once it has closed one.
fn closes_after_one() -> (ScriptedBackend, Arc<Seen>, Arc<AtomicBool>) {
    let seen = Arc::new(Seen::default());
    let closed = Arc::new(AtomicBool::new(false));
    let backend = {
        let (seen, closed) = (Arc::clone(&seen), Arc::clone(&closed));
        ScriptedBackend::start(move |mut s| {
            seen.connected();
            if let Some(message) = read_message(&mut s) {
                seen.record(&message);
                write_ok(&mut s, "first");
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
    assert_eq!(c.response().1, b"first");
    wait_for(
        Duration::from_secs(10),
        "the connection to be pooled",
        || pooled(lb, 0) == 1,
    );
    wait_for(Duration::from_secs(10), "the backend to close", || {
        closed.load(Ordering::SeqCst)
    });
    c
}

/// Reads the next response on `c`: the backend's answer to a first request, `200` and `first`.
fn assert_first_answer(c: &mut RawConn) {
    let (head, body) = c.response();
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    assert_eq!(body, b"first");
}

#[test]
fn a_pooled_connection_closed_by_the_backend_is_retried_once_for_get() {
    let (backend, seen, closed) = closes_after_one();
    let lb = start_over(&[backend.url()]);
    let mut c = pool_a_connection_the_backend_then_closes(&lb, &closed);
    // The pooled connection is dead; the GET goes out again on a fresh one, unnoticed.
    c.send(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_first_answer(&mut c);
    assert_eq!(seen.connections(), 2);
    assert_eq!(seen.count_starting("GET /b "), 1);
    assert!(backend_up(&lb, 0), "a closed idle connection is no failure");
}

#[test]
fn a_post_never_goes_out_on_a_pooled_connection_the_backend_closed() {
    let (backend, seen, closed) = closes_after_one();
    let lb = start_over(&[backend.url()]);
    let mut c = pool_a_connection_the_backend_then_closes(&lb, &closed);
    // The balancer checks a pooled connection before it trusts it with a POST: it sees the
    // backend's close and opens a fresh connection instead, so the POST is sent once.
    c.send(b"POST /pay HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    assert_first_answer(&mut c);
    assert_eq!(seen.connections(), 2);
    assert_eq!(seen.last().1, b"hello");
    assert_eq!(seen.count(), 2);
}

#[test]
fn the_retry_on_a_fresh_connection_happens_once() {
    // A backend that answers only the very first request it ever gets, then reads each
    // request and hangs up without a byte.
    let answered = Arc::new(AtomicBool::new(false));
    let backend = {
        let answered = Arc::clone(&answered);
        Recorder::start(move |_, _| {
            if answered.swap(true, Ordering::SeqCst) {
                Reply::then_close(b"")
            } else {
                Reply::ok("first")
            }
        })
    };
    let mut config = config(&[backend.url()]);
    config.max_fails = 1000;
    let lb = start(config);
    let mut c = RawConn::open(lb.addr());
    c.send(b"GET /warm HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().1, b"first");
    c.send(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_502_for_no_answer(&mut c);
    // Once on the pooled connection, once on a fresh one: no more.
    assert_eq!(backend.count_starting("GET /again "), 2);
}

/// A backend that answers the first request on each connection and dies on the second one,
/// without a byte of answer.
fn dies_on_the_second_request() -> Recorder {
    Recorder::start(|_, nth| {
        if nth == 0 {
            Reply::ok("first")
        } else {
            Reply::then_close(b"")
        }
    })
}

#[test]
fn a_get_that_dies_on_a_pooled_connection_is_sent_again_but_a_post_is_not() {
    let backend = dies_on_the_second_request();
    let lb = start_over(&[backend.url()]);

    // GET: the pooled connection dies before any response byte; GET is idempotent, so it is
    // sent once more on a fresh connection, and the client sees a normal answer.
    let mut c = RawConn::open(lb.addr());
    c.send(b"GET /warm HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().1, b"first");
    wait_for(Duration::from_secs(10), "the connection pooled", || {
        pooled(&lb, 0) == 1
    });
    c.send(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_first_answer(&mut c);
    assert_eq!(backend.count_starting("GET /again "), 2);
    assert_eq!(backend.connections(), 2);

    // POST in the same situation: the backend may have acted on it, so it is never sent
    // again (RFC 9110 section 9.2.2); the client gets a 502.
    wait_for(Duration::from_secs(10), "the connection pooled", || {
        pooled(&lb, 0) == 1
    });
    c.send(b"POST /pay HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    assert_502_for_no_answer(&mut c);
    assert_eq!(
        backend.count_starting("POST /pay "),
        1,
        "{:?}",
        backend.heads()
    );
    assert_eq!(backend.connections(), 2);
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
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    let echo = String::from_utf8(body).unwrap();
    assert!(echo.starts_with("PUT /echo HTTP/1.1\n"), "{echo}");
    assert!(echo.ends_with("\n\nhello world"), "{echo}");
    assert!(!echo.to_ascii_lowercase().contains("expect:"), "{echo}");
}

#[test]
fn after_a_streamed_body_the_idle_wait_is_the_idle_timeout_not_the_client_timeout() {
    // The body is read with --client-timeout (30 s here) as the socket's read timeout; the
    // wait for the next request must set --idle-timeout again, though it is the shorter.
    let s = Setup::new(1, |c| {
        c.idle_timeout = Duration::from_millis(300);
        c.client_timeout = Duration::from_secs(30);
    });
    let mut c = connect(s.addr());
    // Expect: 100-continue holds the body back, so it is streamed after the head.
    c.write_all(
        b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut interim = [0; b"HTTP/1.1 100 Continue\r\n\r\n".len()];
    c.read_exact(&mut interim).unwrap();
    c.write_all(b"hi").unwrap();
    let (head, _) = read_response(&mut c);
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    // Closed within CLIENT_WAIT (5 s), the read timeout: long before the client timeout.
    let read = c.read(&mut [0; 1]);
    assert!(matches!(read, Ok(0)), "{read:?}");
}

#[test]
fn past_max_connections_a_client_gets_503_and_a_close() {
    let s = Setup::new(1, |c| c.max_connections = 2);
    // Two held connections, each proven accepted and served.
    let mut held: Vec<RawConn> = (0..2).map(|_| RawConn::open(s.addr())).collect();
    for c in &mut held {
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(c.response().1, s.demos[0].page().as_bytes());
    }
    let text = exchange(s.addr(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = split_answer(&text);
    assert_page(
        head,
        body.as_bytes(),
        "503 Service Unavailable",
        "too many connections (--max-connections)",
    );
    assert_eq!(fields(head, "retry-after"), ["1"], "{head}");
    assert_eq!(fields(head, "connection"), ["close"], "{head}");
    // The cap is on open connections: when one closes, a new client is served again.
    drop(held.pop());
    wait_for(Duration::from_secs(10), "a free slot", || {
        open_connections(&s.lb) == 1
    });
    let text = exchange(
        s.addr(),
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(split_answer(&text).1, s.demos[0].page());
}

/// A backend whose first connection answers its first request with `first`, then, once the
/// test says the client has its answer (`go`), writes `stray` on the same connection, as if
/// it belonged to nobody, and then closes it if `close` (else keeps it open). Every other
/// request, on any connection, gets `200` with body `own`.
fn planting_backend(
    first: &'static [u8],
    stray: &'static [u8],
    close: bool,
) -> (ScriptedBackend, mpsc::SyncSender<()>, Arc<AtomicBool>) {
    let (go_tx, go_rx) = mpsc::sync_channel::<()>(1);
    let go_rx = Arc::new(Mutex::new(Some(go_rx)));
    let planted = Arc::new(AtomicBool::new(false));
    let backend = {
        let planted = Arc::clone(&planted);
        ScriptedBackend::start(move |mut s| {
            let go = go_rx.lock().unwrap().take();
            while read_message(&mut s).is_some() {
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
                if !write_ok(&mut s, "own") {
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
        let lb = start_over(&[backend.url()]);
        let mut attacker = RawConn::open(lb.addr());
        attacker.send(format!("{method} /plant HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let (head, _) = attacker.response_to(method);
        assert_eq!(
            &head[..12],
            &String::from_utf8_lossy(first)[..12],
            "{method}: {head}"
        );
        // The balancer has relayed the answer, so the connection is back in its pool; one
        // that carried an answer without a body (HEAD, 204, 304) is not pooled at all.
        let bodiless =
            method == "HEAD" || first[9..].starts_with(b"204") || first[9..].starts_with(b"304");
        if bodiless {
            assert_eq!(pooled(&lb, 0), 0, "{method} {first:?}");
        } else {
            wait_for(
                Duration::from_secs(10),
                "the upstream connection pooled",
                || pooled(&lb, 0) == 1,
            );
        }
        go.send(()).unwrap();
        wait_for(Duration::from_secs(10), "the stray bytes written", || {
            planted_flag.load(Ordering::SeqCst)
        });
        let mut victim = RawConn::open(lb.addr());
        victim.send(b"GET /victim HTTP/1.1\r\nHost: x\r\n\r\n");
        let (head, body) = victim.response();
        assert_eq!(
            status_line(&head),
            "HTTP/1.1 200 OK",
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
