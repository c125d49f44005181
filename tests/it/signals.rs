//! Graceful stop of the real binary: SIGTERM or SIGINT during a slow request lets it finish
//! with 200, the process prints a summary and exits 0; a second signal exits at once.

use crate::support::process::{Launch, PROCESS_WAIT, Running};
use crate::support::*;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How long the slow backend takes to answer. Long enough that the signal surely arrives
/// while the request is in flight (the backend reports when it has the request).
const SLOW: Duration = Duration::from_millis(500);

/// A backend that answers each request after `delay`, telling `arrived` when it has one and
/// setting `answered` when it wrote its answer.
fn slow_backend(delay: Duration) -> (ScriptedBackend, Receiver<()>, Arc<AtomicBool>) {
    let (tx, arrived) = mpsc::channel();
    let tx = Mutex::new(tx);
    let answered = Arc::new(AtomicBool::new(false));
    let backend = {
        let answered = Arc::clone(&answered);
        ScriptedBackend::start(move |mut s| {
            if read_head(&mut s).is_none() {
                return;
            }
            let _ = tx.lock().unwrap().send(());
            thread::sleep(delay);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
            answered.store(true, Ordering::SeqCst);
        })
    };
    (backend, arrived, answered)
}

fn slow_request_survives(signal: &str) {
    let (backend, arrived, _) = slow_backend(SLOW);
    let mut lb = Launch::over(&backend.url())
        .args(&["--drain-timeout", "5s"])
        .start();
    let addr = lb.addr;
    let client = thread::spawn(move || {
        let mut s = connect(addr);
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: lb\r\n\r\n")
            .unwrap();
        let answer = read_response(&mut s);
        // The last response of a draining balancer closes its connection.
        assert_eq!(read_until_closed(&mut s), b"", "bytes after the response");
        answer
    });
    arrived
        .recv_timeout(PROCESS_WAIT)
        .expect("the request reached the backend");
    lb.signal(signal);
    lb.line_with("draining");
    // It stops accepting while the slow request is still in flight.
    wait_for(Duration::from_secs(10), "the listener to close", || {
        TcpStream::connect(addr).is_err()
    });
    let (head, body) = client.join().unwrap();
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    assert_eq!(body, b"slow");
    assert_eq!(fields(&head, "connection"), ["close"], "{head}");
    let status = lb.exit_within(PROCESS_WAIT);
    assert_eq!(status.code(), Some(0), "{signal}");
    let summary = lb.line_with("[LoadBalancer] Stopped:");
    // One request; the connections are the client's and, when a probe above got in before
    // the drain began, that probe's. Nothing was cut.
    assert!(summary.contains("Stopped: 1 requests on "), "{summary}");
    assert!(!summary.contains("cut at --drain-timeout"), "{summary}");
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
    // The backend holds the request far longer than the test waits.
    let (backend, arrived, answered) = slow_backend(Duration::from_secs(30));
    let mut lb = Launch::over(&backend.url())
        .args(&["--drain-timeout", "60s"])
        .start();
    let addr = lb.addr;
    let client = thread::spawn(move || exchange(addr, b"GET / HTTP/1.1\r\nHost: lb\r\n\r\n"));
    arrived.recv_timeout(PROCESS_WAIT).unwrap();
    lb.signal("TERM");
    lb.line_with("draining");
    lb.signal("TERM");
    let status = lb.exit_within(PROCESS_WAIT);
    assert_eq!(status.code(), Some(128 + 15));
    // It exited while the request was still in flight: neither the backend's answer nor the
    // drain timeout came first.
    assert!(
        !answered.load(Ordering::SeqCst),
        "the backend answered before the exit"
    );
    // The cut request ends without a response.
    assert_eq!(client.join().unwrap(), "");
    assert!(
        !lb.has_line("[LoadBalancer] Stopped:"),
        "a summary after the second signal"
    );
}

#[test]
fn the_binary_serves_the_status_page_while_running() {
    let demo = demo(0);
    let mut lb = Running::start(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        &demo.url(),
        "--admin",
        "127.0.0.1:0",
    ]);
    assert_eq!(
        get(&format!("http://{}/", lb.addr)),
        (200, demo.page().to_string())
    );
    let line = lb.line_with("[Admin] Status page at http://");
    let url = line.split("at ").nth(1).unwrap().to_string();
    assert!(url.ends_with("/status"), "{line}");
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
