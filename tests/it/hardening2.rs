//! Hardening II (issue 24): a log reader that does not read, stray bytes after a bodiless
//! response, the descriptor budget, `Host` values that are not hosts, and smaller holes.

use crate::support::process::Launch;
use crate::support::*;
use std::io::{Read, Write};
use std::time::Duration;

/// What the recording backends answer to every request.
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Sends one bad request on a new connection and reads the first bytes of the answer.
fn one_bad_request(addr: std::net::SocketAddr) -> String {
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = s.write_all(b"BAD\r\n\r\n");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn a_stderr_nobody_reads_does_not_take_the_connection_slots() {
    let backend = Recorder::fixed(OK);
    let mut lb = Launch::over(&backend.url())
        .stderr_stuck()
        .args(&["--max-connections", "8", "--admin", "127.0.0.1:0"])
        .start();
    let admin = lb.admin();
    // Each bad request writes an error line of about 60 bytes: 8,000 of them are far more
    // than the 64 KiB a pipe holds and the 256 KiB queued. Before, the threads that logged them blocked in the
    // write (holding their slots) and every later client got 503.
    let mut refused = 0;
    for _ in 0..8000 {
        if one_bad_request(lb.addr).starts_with("HTTP/1.1 503") {
            refused += 1;
        }
    }
    assert_eq!(refused, 0, "bad requests refused at the cap");
    let (status, body) = get(&format!("http://{}/", lb.addr));
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (_, metrics) = get(&format!("http://{admin}/metrics"));
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lb_log_lines_dropped_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no lb_log_lines_dropped_total in {metrics}"));
    assert!(dropped > 0, "{dropped}");
}
