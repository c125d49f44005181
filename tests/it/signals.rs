//! Graceful stop of the real binary: SIGTERM or SIGINT during a slow request lets it finish
//! with 200, the process prints a summary and exits 0; a second signal exits at once.

use crate::support::process::{Launch, PROCESS_WAIT};
use crate::support::*;
use std::io::Write;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

fn slow_request_survives(signal: &str) {
    let gate = Arc::new(Gate::default());
    let backend = slow_on_request(&gate);
    let mut lb = Launch::over(&backend.url())
        .args(&["--drain-timeout", "5s"])
        .start();
    let addr = lb.addr;
    // An idle keep-alive client: the drain closes it once the listener is closed, which
    // tells the test that the drain has begun.
    let mut idle = RawConn::open(addr);
    idle.send(b"GET /fast HTTP/1.1\r\nHost: lb\r\n\r\n");
    assert_eq!(idle.response().1, b"/fast");
    let client = thread::spawn(move || {
        let mut s = connect(addr);
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: lb\r\n\r\n")
            .unwrap();
        let answer = read_response(&mut s);
        // The last response of a draining balancer closes its connection.
        assert_eq!(read_until_closed(&mut s), b"", "bytes after the response");
        answer
    });
    wait_for(Duration::from_secs(10), "the slow request held", || {
        gate.arrived() == 1
    });
    lb.signal(signal);
    lb.line_with("draining");
    // The drain has begun while the slow request is still held: the idle client is closed.
    idle.expect_close();
    gate.open();
    let (head, body) = client.join().unwrap();
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    assert_eq!(body, b"/slow");
    assert_eq!(fields(&head, "connection"), ["close"], "{head}");
    let status = lb.exit_within(PROCESS_WAIT);
    assert_eq!(status.code(), Some(0), "{signal}");
    let summary = lb.line_with("[LoadBalancer] Stopped:");
    // Two requests on two connections (the idle client's and the slow one's); nothing cut.
    assert!(
        summary.starts_with("[LoadBalancer] Stopped: 2 requests on 2 connections; drain took ")
            && !summary.contains("cut at --drain-timeout"),
        "{summary}"
    );
}

#[test]
fn sigterm_lets_a_slow_request_finish_and_exits_0() {
    slow_request_survives("TERM");
}

#[test]
fn sigint_lets_a_slow_request_finish_and_exits_0() {
    slow_request_survives("INT");
}

#[test]
fn a_second_signal_exits_at_once() {
    // The backend holds the request until the test has seen the exit.
    let gate = Arc::new(Gate::default());
    let backend = slow_on_request(&gate);
    let mut lb = Launch::over(&backend.url())
        .args(&["--drain-timeout", "60s"])
        .start();
    let addr = lb.addr;
    let client = thread::spawn(move || exchange(addr, b"GET /slow HTTP/1.1\r\nHost: lb\r\n\r\n"));
    wait_for(Duration::from_secs(10), "the slow request held", || {
        gate.arrived() == 1
    });
    lb.signal("TERM");
    lb.line_with("draining");
    lb.signal("TERM");
    let status = lb.exit_within(PROCESS_WAIT);
    assert_eq!(status.code(), Some(128 + 15));
    // It exited while the request was still held (the drain timeout is far off): the cut
    // request ends without a response.
    assert_eq!(client.join().unwrap(), "");
    assert!(
        !lb.has_line("[LoadBalancer] Stopped:"),
        "a summary after the second signal"
    );
    gate.open();
}

#[test]
fn the_binary_serves_the_status_page_while_running() {
    let demo = demo(0);
    let mut lb = Launch::over(&demo.url())
        .args(&["--admin", "127.0.0.1:0"])
        .start();
    assert_eq!(
        get(&format!("http://{}/", lb.addr)),
        (200, demo.page().to_string())
    );
    let url = format!("http://{}/status", lb.admin());
    let line = lb.line_with("[Admin] Status page at http://");
    assert!(line.ends_with(&format!(" at {url}")), "{line}");
    let (status, html) = get(&url);
    assert_eq!(status, 200);
    assert!(html.contains(&demo.url()), "{html}");
    // The access log line for the request, in the documented format.
    let log = lb.line_with("\"GET / HTTP/1.1\" 200 ");
    assert!(
        log.starts_with("127.0.0.1 - - [") && log.contains(&format!("backend={}", demo.url())),
        "{log}"
    );
    lb.signal("TERM");
    assert_eq!(lb.exit_within(PROCESS_WAIT).code(), Some(0));
}

#[test]
fn a_signal_as_soon_as_it_runs_is_a_drain() {
    // The handler is installed before anything listens: a SIGTERM sent the moment the
    // `Running at` line appears drains (exit 0, summary) instead of killing the process.
    // (Seen once under load before: the request of the test above was served while the
    // main thread had not yet installed the handler, and SIGTERM's default action won.)
    for _ in 0..3 {
        let demo = demo(0);
        let mut lb = Launch::over(&demo.url()).start();
        lb.signal("TERM");
        assert_eq!(lb.exit_within(PROCESS_WAIT).code(), Some(0));
        assert!(lb.has_line("[LoadBalancer] SIGTERM: draining"));
        assert!(lb.has_line("[LoadBalancer] Stopped: 0 requests on 0 connections"));
    }
}
