//! The drain at shutdown: idle keep-alive clients are closed at once, requests in flight
//! finish, and `--drain-timeout` bounds the wait: what is still running then is cut, and
//! counted in the summary. Then no connection thread is left.

use crate::support::*;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn a_drain_closes_idle_clients_at_once_and_lets_busy_ones_finish() {
    let gate = Arc::new(Gate::default());
    let backend = slow_on_request(&gate);
    let mut c = config(&[backend.url()]);
    // Far longer than the test: the drain can only end because the request finished.
    c.drain_timeout = Duration::from_secs(60);
    let lb = start(c);
    let addr = lb.addr();
    // An idle keep-alive client: one exchange, then nothing.
    let mut idle = RawConn::open(addr);
    idle.send(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(idle.response().1, b"/fast");
    // A busy client, its request held by the backend.
    let mut busy = RawConn::open(addr);
    busy.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    wait_for(Duration::from_secs(10), "the slow request held", || {
        gate.arrived() == 1
    });
    let alive = threads_probe(&lb);
    let stopping = thread::spawn(move || lb.shutdown());
    // The idle client is closed while the busy one is still waiting for its answer.
    idle.expect_close();
    assert!(!stopping.is_finished(), "the drain did not wait");
    gate.open();
    let (head, body) = busy.response();
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    assert_eq!(body, b"/slow");
    assert_eq!(fields(&head, "connection"), ["close"], "{head}");
    busy.expect_close();
    let summary = stopping.join().unwrap();
    assert_eq!(
        (summary.requests, summary.accepted, summary.abandoned),
        (2, 2, 0)
    );
    // The shutdown lets every connection thread go, those that served and those that
    // waited in `accept` for the next connection.
    wait_for(
        Duration::from_secs(10),
        "the connection threads to exit",
        || alive() == 0,
    );
}

#[test]
fn an_idle_balancer_stops_without_waiting_out_the_wake_limit() {
    // Its threads waiting in `accept` are woken one connection each; once none waits, the
    // stop goes on at once (WAKE_LIMIT only bounds a wake-up that does not work).
    let s = Setup::new(2, |_| {});
    assert_eq!(get(&s.url("/")).0, 200);
    let started = Instant::now();
    drop(s);
    let took = started.elapsed();
    assert!(took < load_balancer::listener::WAKE_LIMIT, "{took:?}");
}

#[test]
fn a_drain_timeout_that_runs_out_counts_what_it_leaves() {
    const DRAIN: Duration = Duration::from_millis(300);
    let gate = Arc::new(Gate::default());
    let backend = slow_on_request(&gate);
    let mut c = config(&[backend.url()]);
    c.drain_timeout = DRAIN;
    let lb = start(c);
    let mut busy = RawConn::open(lb.addr());
    busy.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    wait_for(Duration::from_secs(10), "the slow request held", || {
        gate.arrived() == 1
    });
    let started = Instant::now();
    let summary = lb.shutdown();
    assert!(summary.drain >= DRAIN, "{summary:?}");
    assert!(started.elapsed() >= DRAIN);
    assert_eq!((summary.requests, summary.abandoned), (0, 1), "{summary:?}");
    // In process, the request goes on (the binary's exit is what cuts it: see below).
    gate.open();
    let (head, _) = busy.response();
    assert_eq!(fields(&head, "connection"), ["close"], "{head}");
}

#[cfg(unix)]
#[test]
fn the_binary_cuts_what_is_left_at_the_drain_timeout_and_says_so() {
    use crate::support::process::{Launch, PROCESS_WAIT};
    use std::io::Write;
    let gate = Arc::new(Gate::default());
    let backend = slow_on_request(&gate);
    let mut lb = Launch::over(&backend.url())
        .args(&["--drain-timeout", "300ms"])
        .start();
    let mut busy = connect(lb.addr);
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    wait_for(Duration::from_secs(10), "the slow request held", || {
        gate.arrived() == 1
    });
    let started = Instant::now();
    lb.signal("TERM");
    assert_eq!(lb.exit_within(PROCESS_WAIT).code(), Some(0));
    assert!(started.elapsed() >= Duration::from_millis(300));
    let summary = lb.line_with("[LoadBalancer] Stopped:");
    assert!(
        summary.starts_with("[LoadBalancer] Stopped: 0 requests on 1 connections; drain took ")
            && summary.ends_with(", 1 connections cut at --drain-timeout"),
        "{summary}"
    );
    // The client's connection ended with the process, without a response.
    assert_eq!(read_until_closed(&mut busy), b"");
    gate.open();
}
