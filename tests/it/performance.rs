//! Behaviour the performance work relies on: connection threads are reused, and a shutdown
//! lets waiting threads go.

use crate::support::*;
use std::time::Duration;

const CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n";

#[test]
fn a_finished_connection_thread_serves_the_next_connection() {
    let s = Setup::new(2, |_| {});
    let pages = s.pages();
    for i in 0..3 {
        let response = exchange(s.addr(), CLOSE);
        let (head, body) = split_answer(&response);
        assert_eq!(status_line(head), "HTTP/1.1 200 OK", "request {i}: {head}");
        assert_eq!(body, pages[i % 2]);
        // The thread that served it waits in `accept` again, beside the one it started when
        // it took the connection: one client's connections, one after the other, never need
        // a third thread.
        wait_for(
            Duration::from_secs(10),
            "the connection thread to wait for the next connection",
            || waiting_threads(&s.lb) == 2,
        );
    }
    assert_eq!(accepted(&s.lb), 3);
    assert_eq!(started_threads(&s.lb), 2);
    let alive = threads_probe(&s.lb);
    let Setup { lb, demos } = s;
    let summary = lb.shutdown();
    assert_eq!(
        (summary.requests, summary.accepted, summary.abandoned),
        (3, 3, 0)
    );
    wait_for(
        Duration::from_secs(10),
        "the connection threads to exit",
        || alive() == 0,
    );
    drop(demos);
}
