//! Active health checks: `--health-check PATH` takes a backend out after `--fall` failed
//! checks and brings it back after `--rise` passed ones, with no client traffic at all.

mod support;

use load_balancer::config::{BackendSpec, Config};
use load_balancer::demo::DemoBackend;
use load_balancer::server::Balancer;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use support::*;

const INTERVAL: Duration = Duration::from_millis(100);

/// Active checks every 100 ms, rise 2, fall 3; passive trials far away, so that only the
/// checker can bring a backend back.
fn checked(c: &mut Config) {
    c.health_check = Some("/health".into());
    c.health_interval = INTERVAL;
    c.health_timeout = INTERVAL;
    c.rise = 2;
    c.fall = 3;
    c.fail_timeout = Duration::from_secs(60);
}

#[test]
fn a_stopped_backend_goes_out_after_fall_checks_and_back_after_rise() {
    let mut s = Setup::new(2, checked);
    let blue = Arc::clone(&s.lb.shared().backends.snapshot()[1]);
    wait_for(Duration::from_secs(5), "first checks on both", || {
        s.demos.iter().all(|d| d.requests() >= 1)
    });
    // Blue stops. No client sends anything, yet Blue goes out after 3 refused checks.
    let old = s.demos.remove(1);
    let addr = old.addr();
    old.stop();
    wait_for(Duration::from_secs(5), "Blue to be marked down", || {
        !blue.health.is_up()
    });
    assert_eq!(
        blue.health.reason(),
        "connection refused, 3 checks failed in a row"
    );
    for _ in 0..4 {
        assert_eq!(get(&s.url("/")).1, s.demos[0].page());
    }
    // Blue comes back on the same port: in again after 2 passed checks, within about
    // rise × interval, and still without any client request.
    let revived = DemoBackend::start(1, addr).unwrap();
    let restarted = Instant::now();
    wait_for(Duration::from_secs(5), "Blue to be marked up", || {
        blue.health.is_up()
    });
    let took = restarted.elapsed();
    assert!(revived.requests() >= 2, "two checks passed first");
    assert!(took >= INTERVAL / 2, "one check is not enough: {took:?}");
    assert!(
        took < INTERVAL * 2 * 5,
        "rise × interval, with slack: {took:?}"
    );
    let red = s.demos[0].page().to_string();
    let bodies: Vec<String> = (0..4).map(|_| get(&s.url("/")).1).collect();
    assert_eq!(
        bodies.iter().filter(|b| **b == red).count(),
        2,
        "{bodies:?}"
    );
    assert_eq!(bodies.iter().filter(|b| *b == revived.page()).count(), 2);
}

#[test]
fn checks_send_get_path_with_host_and_close_and_judge_the_status() {
    let status = Arc::new(AtomicU16::new(500));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let backend = {
        let (status, heads) = (Arc::clone(&status), Arc::clone(&heads));
        ScriptedBackend::start(move |mut s| {
            if let Some(head) = read_head(&mut s) {
                heads.lock().unwrap().push(head);
                let code = status.load(Ordering::SeqCst);
                let reply = format!("HTTP/1.1 {code} Whatever\r\nContent-Length: 0\r\n\r\n");
                let _ = s.write_all(reply.as_bytes());
            }
        })
    };
    let mut c = config(&[backend.url()]);
    checked(&mut c);
    let lb = Balancer::start(c).unwrap();
    let b = Arc::clone(&lb.shared().backends.snapshot()[0]);
    // 500 is not healthy.
    wait_for(Duration::from_secs(5), "down on 500", || !b.health.is_up());
    assert_eq!(b.health.reason(), "status 500, 3 checks failed in a row");
    // A redirect is (any 2xx or 3xx passes).
    status.store(302, Ordering::SeqCst);
    wait_for(Duration::from_secs(5), "up on 302", || b.health.is_up());
    let head = heads.lock().unwrap()[0].clone();
    assert!(head.starts_with("GET /health HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nHost: {}\r\n", backend.addr)),
        "{head}"
    );
    assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
}

#[test]
fn a_silent_backend_fails_its_checks_by_timeout() {
    // Accepts, reads the check, never answers (until the test ends).
    let backend = ScriptedBackend::start(|mut s| {
        let _ = read_head(&mut s);
        let _ = read_head(&mut s); // waits for the close
    });
    let mut c = config(&[backend.url()]);
    checked(&mut c);
    let lb = Balancer::start(c).unwrap();
    let b = Arc::clone(&lb.shared().backends.snapshot()[0]);
    wait_for(Duration::from_secs(5), "down on silence", || {
        !b.health.is_up()
    });
    assert_eq!(
        b.health.reason(),
        "no answer within 100ms (--health-timeout), 3 checks failed in a row"
    );
}

#[test]
fn a_backend_added_at_run_time_is_checked_too() {
    let s = Setup::new(1, checked);
    let added =
        s.lb.shared()
            .backends
            .add(&BackendSpec::parse(&dead_addr()).unwrap());
    wait_for(
        Duration::from_secs(5),
        "the added backend to be marked down",
        || !added.health.is_up(),
    );
    assert!(s.lb.shared().backends.snapshot()[0].health.is_up());
}

#[test]
fn shutdown_does_not_wait_for_the_next_check() {
    let s = Setup::new(1, |c| {
        c.health_check = Some("/".into());
        c.health_interval = Duration::from_secs(30);
    });
    wait_for(Duration::from_secs(5), "the first check", || {
        s.demos[0].requests() >= 1
    });
    let started = Instant::now();
    let Setup { lb, demos } = s;
    lb.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown took {:?}",
        started.elapsed()
    );
    drop(demos);
}

#[test]
fn the_console_says_which_backend_went_down_and_why() {
    let dead = dead_addr();
    let mut child = Command::new(env!("CARGO_BIN_EXE_load-balancer"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "off",
            "--backend",
            &dead,
            "--health-check",
            "/health",
            "--health-interval",
            "100ms",
            "--health-timeout",
            "100ms",
            "--fall",
            "2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let expected = format!("[Health] {dead} is DOWN: connection refused, 2 checks failed in a row");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let found = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line == expected => break true,
            Ok(line) => seen.push(line),
            Err(_) => break false,
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    assert!(found, "no {expected:?} in {seen:?}");
}
