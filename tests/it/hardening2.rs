//! Hardening II (issue 24): a log reader that does not read, stray bytes after a bodiless
//! response, the descriptor budget, `Host` values that are not hosts, and smaller holes.

use crate::support::process::Launch;
use crate::support::*;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// A backend that answers the first request on each connection with `first` when it asks for
/// `/first` (else with `200 own`), and every later request on that connection with `later`;
/// the count is of its connections.
fn two_faced_backend(
    first: &'static [u8],
    later: &'static [u8],
) -> (ScriptedBackend, Arc<AtomicUsize>) {
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    let backend = ScriptedBackend::start(move |mut s| {
        counted.fetch_add(1, Ordering::SeqCst);
        let mut served = 0;
        while let Some(head) = read_head(&mut s) {
            let answer = match (served, target_of(&head)) {
                (0, "/first") => first,
                (0, _) => b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nown".as_slice(),
                _ => later,
            };
            if s.write_all(answer).is_err() {
                return;
            }
            served += 1;
        }
    });
    (backend, connections)
}

#[test]
fn a_connection_that_carried_a_bodiless_answer_is_not_pooled() {
    // The backend sends the body of its bodiless answer late: only when the next request
    // arrives on that connection (as a backend that writes head and body in two writes does,
    // 300 ms apart or 30 µs: the peek before reuse saw nothing yet). Before, the next request,
    // an unrelated GET, read it as its own answer.
    let smuggled: &[u8] = b"HTTP/1.1 200 OK\r\nX-Smuggled: yes\r\nContent-Length: 7\r\n\r\nSMUGGLE";
    let cases: [(&str, &[u8]); 3] = [
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n"),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\n\r\n"),
    ];
    for (method, first) in cases {
        let (server, connections) = two_faced_backend(first, smuggled);
        let lb = start_over(&[server.url()]);
        let mut c = RawConn::open(lb.addr());
        c.send(format!("{method} /first HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let (head, _) = c.response_to(method);
        assert_eq!(&head[..12], &String::from_utf8_lossy(first)[..12]);
        let (status, body) = get(&format!("http://{}/next", lb.addr()));
        assert_eq!((status, body.as_str()), (200, "own"), "{method}");
        assert_eq!(connections.load(Ordering::SeqCst), 2, "{method}");
    }
}

#[test]
fn garbage_on_a_reused_connection_is_retried_on_a_fresh_one_and_blames_nobody() {
    // The backend's second answer on a connection is not HTTP (the tail of an earlier
    // response, as a backend that sends a body on a HEAD answer leaves). With --max-fails 1,
    // before, the GET got 502 "malformed status line" and the backend went DOWN.
    let (server, connections) = two_faced_backend(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
        b"SMUGGLE garbage\r\n\r\n",
    );
    let lb = start_over(&[server.url()]);
    let url = format!("http://{}/first", lb.addr());
    assert_eq!(get(&url), (200, "first".to_string()));
    assert_eq!(pooled(&lb, 0), 1);
    // Reuses the pooled connection, gets garbage, and tries once more on a new one.
    let (status, body) = get(&format!("http://{}/again", lb.addr()));
    assert_eq!((status, body.as_str()), (200, "own"));
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    assert!(backend_up(&lb, 0));
    assert_eq!(response_errors(&backend(&lb, 0)), 0);
    // A POST is not sent twice: the garbage is its answer.
    assert_eq!(get(&url).0, 200);
    let answer = agent()
        .post(&format!("http://{}/post", lb.addr()))
        .send("x")
        .unwrap();
    assert_eq!(answer.status().as_u16(), 502);
}

#[test]
fn a_host_that_is_not_a_host_is_refused_and_never_reaches_forwarded() {
    // Before, `Host: x,for=6.6.6.6;by=` reached the backend as
    // `Forwarded: for=127.0.0.1;host="x,for=6.6.6.6;by=";proto=http`: a reader that splits on
    // commas took `for=6.6.6.6` for the client.
    let server = Recorder::fixed(OK);
    let lb = start_over(&[server.url()]);
    for request in [
        "GET / HTTP/1.1\r\nHost: x,for=6.6.6.6;by=\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x;for=6.6.6.6\r\n\r\n",
        "GET http://x,for=6.6.6.6/ HTTP/1.1\r\nHost: y\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x:80x\r\n\r\n",
    ] {
        let answer = exchange(lb.addr(), request.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 400 "), "{request:?}: {answer}");
        assert!(answer.contains("Connection: close"), "{answer}");
    }
    assert_eq!(server.count(), 0);
    for host in ["site.example:8080", "127.0.0.1", "[::1]:9000", "a_b.c"] {
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let answer = exchange(lb.addr(), request.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 200 "), "{host}: {answer}");
        let got = server.last().0.to_ascii_lowercase();
        assert_eq!(fields(&got, "host"), [host.to_ascii_lowercase()], "{got}");
    }
}
