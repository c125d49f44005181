//! Behaviour the performance work relies on: connection threads are reused, and a shutdown
//! lets waiting threads go.

use crate::support::*;
use std::time::Duration;

const CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n";

#[test]
fn a_finished_connection_thread_serves_the_next_connection() {
    // A long accept timeout: the floor's threads, started with the balancer, must not time
    // out (and one leave) while the test counts them.
    let s = Setup::new(2, |c| c.header_timeout = Duration::from_secs(600));
    let pages = s.pages();
    // The floor of spare threads waits from the start, for a burst of new connections.
    let floor = load_balancer::listener::SPARE_MIN;
    assert_eq!(started_threads(&s.lb), floor as u64);
    for i in 0..3 {
        let response = exchange(s.addr(), CLOSE);
        let (head, body) = split_answer(&response);
        assert_eq!(status_line(head), "HTTP/1.1 200 OK", "request {i}: {head}");
        assert_eq!(body, pages[i % 2]);
        // The thread that served it waits in `accept` again, beside the floor (the first
        // connection started one to keep it): one client's connections, one after the
        // other, never need another thread.
        wait_for(
            Duration::from_secs(10),
            "the connection thread to wait for the next connection",
            || waiting_threads(&s.lb) == floor + 1,
        );
    }
    assert_eq!(accepted(&s.lb), 3);
    assert_eq!(started_threads(&s.lb), floor as u64 + 1);
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

#[test]
fn the_floor_of_spare_threads_is_no_higher_than_the_cap() {
    // Four connections at most: four threads wait for them, not the usual floor.
    let s = Setup::new(1, |c| {
        c.max_connections = 4;
        c.header_timeout = Duration::from_secs(600); // no spare leaves while counted
    });
    const { assert!(load_balancer::listener::SPARE_MIN > 4) };
    assert_eq!((started_threads(&s.lb), waiting_threads(&s.lb)), (4, 4));
    let response = exchange(s.addr(), CLOSE);
    assert_eq!(status_line(split_answer(&response).0), "HTTP/1.1 200 OK");
    // The connection took one of the four; one more was started to keep four waiting.
    wait_for(
        Duration::from_secs(10),
        "the connection thread back in accept",
        || waiting_threads(&s.lb) == 5,
    );
    assert_eq!(started_threads(&s.lb), 5);
}
