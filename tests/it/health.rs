//! Active health checks: `--health-check PATH` takes a backend out after `--fall` failed
//! checks and brings it back after `--rise` passed ones, with no client traffic at all.

use crate::support::process::Launch;
use crate::support::*;
use std::io::Write;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
fn a_failing_backend_goes_out_after_fall_checks_and_back_after_rise() {
    let red = demo(0);
    // Blue keeps its port throughout: while off, it hangs up on every request and check.
    let blue = Switchable::start(&load_balancer::demo::page(1));
    let mut c = config(&[red.url(), blue.url()]);
    checked(&mut c);
    let lb = start(c);
    let blue_state = backend(&lb, 1);
    wait_for(Duration::from_secs(10), "first checks on both", || {
        red.requests() >= 1 && blue.served() >= 1
    });
    // Blue fails. No client sends anything, yet Blue goes out after 3 failed checks.
    blue.set_up(false);
    wait_for(Duration::from_secs(10), "Blue to be marked down", || {
        !blue_state.health.is_up()
    });
    assert_eq!(
        blue_state.health.reason(),
        "connection closed before a response, 3 checks failed in a row"
    );
    for _ in 0..4 {
        assert_eq!(get(&format!("http://{}/", lb.addr())).1, red.page());
    }
    // Blue recovers: in again after 2 passed checks, and still without any client request.
    let before = blue.served();
    blue.set_up(true);
    wait_for(Duration::from_secs(10), "Blue to be marked up", || {
        blue_state.health.is_up()
    });
    // Observed within a poll of the change: one passed check is not enough (a third one may
    // have come in between on a busy machine, never fewer than two).
    let passed = blue.served() - before;
    assert!(passed >= 2, "up after {passed} passed check(s)");
    let bodies: Vec<String> = (0..4)
        .map(|_| get(&format!("http://{}/", lb.addr())).1)
        .collect();
    assert_eq!(
        bodies.iter().filter(|b| *b == red.page()).count(),
        2,
        "{bodies:?}"
    );
    assert_eq!(bodies.iter().filter(|b| *b == blue.page()).count(), 2);
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
    let lb = start(c);
    let b = crate::support::backend(&lb, 0);
    // 500 is not healthy.
    wait_for(Duration::from_secs(10), "down on 500", || !b.health.is_up());
    assert_eq!(b.health.reason(), "status 500, 3 checks failed in a row");
    // A redirect is (any 2xx or 3xx passes).
    status.store(302, Ordering::SeqCst);
    wait_for(Duration::from_secs(10), "up on 302", || b.health.is_up());
    let head = heads.lock().unwrap()[0].clone();
    assert_eq!(
        head,
        format!(
            "GET /health HTTP/1.1\r\nHost: {}\r\nUser-Agent: load-balancer-health-check\r\n\
             Connection: close\r\n\r\n",
            backend.addr
        )
    );
}

#[test]
fn probes_name_the_health_host_and_pass_on_the_statuses_listed() {
    // A virtual host: `app.example` gets a redirect to its login page (302) or 401 when
    // `locked`; any other name 404.
    let locked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hosts = Arc::new(Mutex::new(Vec::new()));
    let backend = {
        let (locked, hosts) = (Arc::clone(&locked), Arc::clone(&hosts));
        ScriptedBackend::start(move |mut s| {
            if let Some(head) = read_head(&mut s) {
                let host = fields(&head, "host").join(",");
                let code = match host.as_str() {
                    "app.example" if locked.load(Ordering::SeqCst) => 401,
                    "app.example" => 302,
                    _ => 404,
                };
                hosts.lock().unwrap().push(host);
                let reply = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
                let _ = s.write_all(reply.as_bytes());
            }
        })
    };
    // Without --health-host, the probe names the backend's address: 404, down.
    let mut c = config(&[backend.url()]);
    checked(&mut c);
    let plain = start(c);
    let b = crate::support::backend(&plain, 0);
    wait_for(Duration::from_secs(10), "down on 404", || !b.health.is_up());
    drop(plain);
    // With it, a 302 passes (300-399 is allowed by default), and 401 only when listed.
    let mut c = config(&[backend.url()]);
    checked(&mut c);
    c.health_host = Some("app.example".into());
    c.health_status = load_balancer::http::statuses::StatusSet::parse("200-399,401").unwrap();
    let lb = start(c);
    let b = crate::support::backend(&lb, 0);
    let before = hosts.lock().unwrap().len();
    wait_for(Duration::from_secs(10), "three passed checks", || {
        hosts.lock().unwrap().len() >= before + 3
    });
    assert!(b.health.is_up());
    assert_eq!(hosts.lock().unwrap().last().unwrap(), "app.example");
    locked.store(true, Ordering::SeqCst);
    let before = hosts.lock().unwrap().len();
    wait_for(Duration::from_secs(10), "four checks on 401", || {
        hosts.lock().unwrap().len() >= before + 4
    });
    assert!(b.health.is_up(), "401 is listed: {}", b.health.reason());
    drop(lb);
    let mut c = config(&[backend.url()]);
    checked(&mut c);
    c.health_host = Some("app.example".into());
    let strict = start(c);
    let b = crate::support::backend(&strict, 0);
    wait_for(Duration::from_secs(10), "down on 401", || !b.health.is_up());
    assert_eq!(b.health.reason(), "status 401, 3 checks failed in a row");
}

#[test]
fn a_silent_backend_fails_its_checks_by_timeout() {
    // Accepts, reads the check, never answers (until the balancer closes).
    let backend = ScriptedBackend::start(|mut s| {
        let _ = read_head(&mut s);
        let _ = read_head(&mut s); // waits for the close
    });
    let mut c = config(&[backend.url()]);
    checked(&mut c);
    let lb = start(c);
    let b = crate::support::backend(&lb, 0);
    wait_for(Duration::from_secs(10), "down on silence", || {
        !b.health.is_up()
    });
    assert_eq!(
        b.health.reason(),
        "no answer within 100ms (--health-timeout), 3 checks failed in a row"
    );
}

#[test]
fn a_backend_that_resets_the_check_is_down_for_that_reason_not_for_silence() {
    // Closing a socket with unread bytes in it sends a reset instead of a FIN: the checker's
    // read fails at once, and that failure is named as such, not as a timeout.
    let backend = ScriptedBackend::start(|s| {
        s.set_read_timeout(Some(BACKEND_WAIT)).unwrap();
        let _ = s.peek(&mut [0; 1]); // the check has arrived, unread
    });
    let mut c = config(&[backend.url()]);
    checked(&mut c);
    c.health_timeout = Duration::from_secs(5);
    let lb = start(c);
    let b = crate::support::backend(&lb, 0);
    wait_for(Duration::from_secs(20), "down on resets", || {
        !b.health.is_up()
    });
    let reason = b.health.reason();
    assert!(
        reason.starts_with("reading the answer failed: ") && !reason.contains("no answer"),
        "{reason}"
    );
}

#[test]
fn checks_come_once_per_interval_not_back_to_back() {
    let probes = Arc::new(AtomicU16::new(0));
    let backend = {
        let probes = Arc::clone(&probes);
        ScriptedBackend::start(move |mut s| {
            if read_head(&mut s).is_some() {
                probes.fetch_add(1, Ordering::SeqCst);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
        })
    };
    let mut c = config(&[backend.url()]);
    checked(&mut c);
    let started = Instant::now();
    let _lb = start(c);
    wait_for(Duration::from_secs(10), "three checks", || {
        probes.load(Ordering::SeqCst) >= 3
    });
    // A round starts every INTERVAL (the first at once): by now at most this many can
    // have started, whatever the machine's load (a slow machine only makes fewer).
    let rounds = started.elapsed().as_millis() / INTERVAL.as_millis() + 1;
    let seen = u128::from(probes.load(Ordering::SeqCst));
    assert!(seen <= rounds + 1, "{seen} checks in {rounds} intervals");
}

#[test]
fn a_backend_added_at_run_time_is_checked_too() {
    let s = Setup::new(1, checked);
    let dead = DeadPort::new();
    let added = add_backend(&s.lb, &dead.url());
    wait_for(
        Duration::from_secs(10),
        "the added backend to be marked down",
        || !added.health.is_up(),
    );
    assert_eq!(
        added.health.reason(),
        "connection refused, 3 checks failed in a row"
    );
    assert!(backend_up(&s.lb, 0));
}

#[test]
fn shutdown_does_not_wait_for_the_next_check() {
    let s = Setup::new(1, |c| {
        c.health_check = Some("/".into());
        c.health_interval = Duration::from_secs(30);
    });
    wait_for(Duration::from_secs(10), "the first check", || {
        s.demos[0].requests() >= 1
    });
    let started = Instant::now();
    let Setup { lb, demos } = s;
    lb.shutdown();
    // The next check is 30 s away: a shutdown that waited for it would take that long.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );
    drop(demos);
}

#[test]
fn the_console_says_which_backend_went_down_and_why() {
    let dead = DeadPort::new();
    // Its stderr is read too: the health reports go there.
    let mut lb = Launch::over(&dead.url())
        .args(&[
            "--health-check",
            "/health",
            "--health-interval",
            "100ms",
            "--health-timeout",
            "100ms",
            "--fall",
            "2",
        ])
        .and_stderr()
        .start();
    let expected = format!(
        "[Health] {} is DOWN: connection refused, 2 checks failed in a row",
        dead.url()
    );
    assert_eq!(lb.line_with(&expected), expected);
}
