//! Graceful stop of the real binary (issue: operations): SIGTERM or SIGINT during a slow
//! request lets it finish with 200, the process prints a summary and exits 0; a second
//! signal exits at once.

#![cfg(unix)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};
use support::*;

/// How long the slow backend takes to answer. Long enough that the signal surely arrives
/// while the request is in flight (the backend reports when it has the request).
const SLOW: Duration = Duration::from_millis(500);

/// The balancer binary, its stdout line by line, and its address. Killed if still running
/// when dropped (a failed test must not leave it behind).
struct Running {
    child: Child,
    lines: Receiver<String>,
    addr: SocketAddr,
    seen: Vec<String>,
}

impl Running {
    fn start(backend: &str, extra: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_load-balancer"))
            .args(["--listen", "127.0.0.1:0", "--backend", backend])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut running = Running {
            child,
            lines,
            addr: "127.0.0.1:0".parse().unwrap(),
            seen: Vec::new(),
        };
        let line = running.line_with("[LoadBalancer] Running at http://");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap();
        running.addr = addr.parse().unwrap();
        running
    }

    /// Waits (up to 5 s) for a stdout line containing `needle`; returns it.
    fn line_with(&mut self, needle: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; got {:?}", self.seen),
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit.
    fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "still running after {limit:?}");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A backend that answers each request after `delay`, telling `arrived` when it has one.
fn slow_backend(delay: Duration) -> (ScriptedBackend, Receiver<()>) {
    let (tx, arrived) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let backend = ScriptedBackend::start(move |mut s| {
        if read_head(&mut s).is_none() {
            return;
        }
        let _ = tx.lock().unwrap().send(());
        thread::sleep(delay);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
    });
    (backend, arrived)
}

fn slow_request_survives(signal: &str) {
    let (backend, arrived) = slow_backend(SLOW);
    let mut lb = Running::start(&backend.url(), &["--admin", "off", "--drain-timeout", "5s"]);
    let addr = lb.addr;
    let client = thread::spawn(move || {
        let mut s = connect(addr);
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: lb\r\n\r\n")
            .unwrap();
        read_response(&mut s)
    });
    arrived
        .recv_timeout(Duration::from_secs(5))
        .expect("the request reached the backend");
    lb.signal(signal);
    lb.line_with("draining");
    // It stops accepting while the slow request is still in flight.
    wait_for(Duration::from_secs(2), "the listener to close", || {
        TcpStream::connect(addr).is_err()
    });
    let (head, body) = client.join().unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(body, b"slow");
    // The last response of a draining balancer closes its connection.
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let status = lb.exit_within(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{signal}");
    let summary = lb.line_with("[LoadBalancer] Stopped:");
    // One request; the connections are the client's and, when a probe above got in before
    // the drain began, that probe's.
    assert!(summary.contains("Stopped: 1 requests on "), "{summary}");
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
    let (backend, arrived) = slow_backend(Duration::from_secs(10));
    let mut lb = Running::start(
        &backend.url(),
        &["--admin", "off", "--drain-timeout", "30s"],
    );
    let addr = lb.addr;
    let client = thread::spawn(move || exchange(addr, b"GET / HTTP/1.1\r\nHost: lb\r\n\r\n"));
    arrived.recv_timeout(Duration::from_secs(5)).unwrap();
    lb.signal("TERM");
    lb.line_with("draining");
    let started = Instant::now();
    lb.signal("TERM");
    let status = lb.exit_within(Duration::from_secs(3));
    assert_eq!(status.code(), Some(128 + 15));
    assert!(started.elapsed() < Duration::from_secs(3));
    // The cut request ends without a response.
    assert_eq!(client.join().unwrap(), "");
}

#[test]
fn the_binary_serves_the_status_page_while_running() {
    let demo = load_balancer::demo::DemoBackend::start(0, "127.0.0.1:0".parse().unwrap()).unwrap();
    let mut lb = Running::start(&demo.url(), &["--admin", "127.0.0.1:0"]);
    assert_eq!(get(&format!("http://{}/", lb.addr)).0, 200);
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
    assert_eq!(lb.exit_within(Duration::from_secs(5)).code(), Some(0));
}
