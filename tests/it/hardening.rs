//! Hardening (issue 11): what a client or a backend cannot make the balancer do.

use crate::support::*;
use load_balancer::server::Balancer;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// A backend that records every request and answers `200 ok`.
fn recording() -> (ScriptedBackend, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let b = {
        let seen = Arc::clone(&seen);
        ScriptedBackend::start(move |mut s| {
            while let Some(message) = read_message(&mut s) {
                seen.record(&message);
                if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .is_err()
                {
                    return;
                }
            }
        })
    };
    (b, seen)
}

#[test]
fn connection_cannot_strip_host_from_the_forwarded_request() {
    let (backend, seen) = recording();
    let lb = Balancer::start(config(&[backend.url()])).unwrap();
    let mut c = RawConn::open(lb.addr());
    c.send(
        b"GET / HTTP/1.1\r\nHost: site.example\r\nConnection: host, x-gone\r\nX-Gone: 1\r\n\r\n",
    );
    let (head, body) = c.response();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, b"ok");
    let got = seen.last().0.to_ascii_lowercase();
    assert_eq!(fields(&got, "host"), ["site.example"], "{got}");
    assert!(fields(&got, "x-gone").is_empty(), "{got}");
}

#[test]
fn an_absolute_target_with_bytes_a_host_cannot_have_is_refused() {
    let (backend, seen) = recording();
    let lb = Balancer::start(config(&[backend.url()])).unwrap();
    for target in ["http://a\"b<c>/", "http://a{b}/x", "http://u@h/"] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let answer = exchange(lb.addr(), request.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 400 "), "{target}: {answer}");
    }
    assert_eq!(seen.count(), 0, "nothing reached the backend");
}

#[test]
fn request_trailers_lose_framing_and_routing_fields() {
    let (backend, seen) = recording();
    let lb = Balancer::start(config(&[backend.url()])).unwrap();
    let mut c = RawConn::open(lb.addr());
    c.send(
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\nContent-Length: 99\r\nHost: evil\r\nTransfer-Encoding: gzip\r\n\
          X-Checksum: abc\r\nAuthorization: Bearer x\r\n\r\n",
    );
    let (head, body) = c.response();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, b"ok");
    let (got_head, got_body) = seen.last();
    assert!(
        got_head.contains("Transfer-Encoding: chunked\r\n"),
        "{got_head}"
    );
    assert_eq!(
        String::from_utf8_lossy(&got_body),
        "5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n"
    );
}

#[test]
fn a_backend_that_is_the_balancer_itself_is_refused_at_start() {
    for (listen, backend) in [
        ("127.0.0.1:19680", "http://127.0.0.1:19680"),
        ("0.0.0.0:19681", "http://localhost:19681"),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_load-balancer"))
            .args(["--listen", listen, "--backend", backend, "--admin", "off"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // It must exit by itself; one that starts instead is stopped, and the test fails.
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(2),
            "{listen} {backend}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("--backend {backend}: that is this balancer's own")),
            "{stderr}"
        );
    }
}

#[test]
fn a_health_interval_alone_is_accepted() {
    // The default --health-timeout (1s) follows a shorter interval instead of refusing it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_load-balancer"))
        .args(["--listen", "127.0.0.1:0", "--admin", "off", "--quiet"])
        .args(["--backend", "http://127.0.0.1:1", "--health-check", "/"])
        .args(["--health-interval", "500ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(20));
    let _ = child.kill();
    let status = child.wait().unwrap();
    let first = first.unwrap_or_else(|_| panic!("no start-up line; exit {status}"));
    assert!(
        first.starts_with("[LoadBalancer] Running at http://127.0.0.1:"),
        "{first}"
    );
}
