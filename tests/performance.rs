//! Behaviour the performance work relies on: connection threads are reused, and a shutdown
//! lets parked threads go.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::{Setup, exchange, wait_for};

const CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n";

#[test]
fn a_finished_connection_thread_serves_the_next_connection() {
    let setup = Setup::new(2, |_| {});
    let shared = Arc::clone(setup.lb.shared());
    let spares = setup.lb.spares().expect("running");
    for i in 0..3 {
        let response = exchange(setup.addr(), CLOSE);
        assert!(
            response.starts_with("HTTP/1.1 200 OK\r\n"),
            "request {i}: {response}"
        );
        // The thread that served it parks, and the next connection goes to it: never more
        // than one parked thread for one client at a time.
        wait_for(
            Duration::from_secs(5),
            "the connection thread to park",
            || spares.parked() == 1,
        );
    }
    assert_eq!(shared.stats.accepted.load(Ordering::Relaxed), 3);
    setup.lb.shutdown();
    wait_for(Duration::from_secs(5), "parked threads to exit", || {
        spares.parked() == 0
    });
}
