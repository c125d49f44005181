//! Failover and passive health: nobody sees a dead backend, nothing is sent twice that must
//! not be, and a backend that failed gets one trial after `--fail-timeout`.

use crate::support::*;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[test]
fn a_backend_failing_under_load_costs_no_client_an_error() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 50; // 400 GETs in all
    // Red and Green are demo backends; Blue can fail without giving up its port (a stopped
    // backend's port could be taken by a parallel test while the balancer still tries it).
    let (red, green) = (demo(0), demo(2));
    let blue = Switchable::start(&load_balancer::demo::page(1));
    let lb = start_over(&[red.url(), blue.url(), green.url()]);
    let url = format!("http://{}/", lb.addr());
    let pages = [red.page(), blue.page(), green.page()].map(str::to_string);
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..THREADS)
        .map(|_| {
            let (url, done, pages) = (url.clone(), Arc::clone(&done), pages.clone());
            std::thread::spawn(move || {
                // One agent per thread: keep-alive connections to the balancer, as browsers do.
                let agent = agent();
                let mut failures = Vec::new();
                for _ in 0..PER_THREAD {
                    match agent.get(&url).call() {
                        Ok(mut r) if r.status() == 200 => {
                            let body = r.body_mut().read_to_string().unwrap_or_default();
                            if !pages.contains(&body) {
                                failures.push(format!("body {body:?}"));
                            }
                        }
                        Ok(r) => failures.push(format!("status {}", r.status())),
                        Err(e) => failures.push(e.to_string()),
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
                failures
            })
        })
        .collect();
    // A quarter of the way in, Blue starts hanging up on every request, also on the
    // connections the balancer keeps in its pool.
    wait_for(Duration::from_secs(20), "100 requests answered", || {
        done.load(Ordering::SeqCst) >= 100
    });
    blue.set_up(false);
    let blue_served = blue.served();
    let failures: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert_eq!(failures, Vec::<String>::new(), "client errors");
    assert!(blue_served > 0, "Blue served before it failed");
    // Every one of the 400 was relayed from some backend as a 2xx, none twice. (The balancer
    // counts a response just after its last byte went out, so the count may trail a moment.)
    let all = backends(&lb);
    let relayed = || -> u64 { all.iter().map(|b| responses(b, 2)).sum() };
    wait_for(Duration::from_secs(10), "400 responses counted", || {
        relayed() >= (THREADS * PER_THREAD) as u64
    });
    assert_eq!(relayed(), (THREADS * PER_THREAD) as u64);
    assert!(!all[1].health.is_up(), "Blue is out of rotation");
    assert!(all[0].health.is_up() && all[2].health.is_up());
}

/// A backend that reads a request (head and body), counts it, and closes without answering.
fn swallowing(received: &Arc<AtomicUsize>) -> ScriptedBackend {
    let received = Arc::clone(received);
    ScriptedBackend::start(move |mut s| {
        if read_message(&mut s).is_some() {
            received.fetch_add(1, Ordering::SeqCst);
        }
        // Dropped: the connection closes with no response.
    })
}

#[test]
fn a_post_whose_backend_dies_gets_502_and_is_not_replayed() {
    let received = Arc::new(AtomicUsize::new(0));
    let (one, two) = (swallowing(&received), swallowing(&received));
    let lb = start_over(&[one.url(), two.url()]);
    let mut c = connect(lb.addr());
    c.write_all(b"POST /order HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nbuy=1&x=2")
        .unwrap();
    let (head, body) = read_response(&mut c);
    assert_page(
        &head,
        &body,
        "502 Bad Gateway",
        "the backend closed the connection without a response",
    );
    assert_eq!(
        received.load(Ordering::SeqCst),
        1,
        "the POST reached one backend, once"
    );
    assert_eq!(attempts_total(&lb), 1);
}

#[test]
fn a_get_whose_backend_dies_after_receiving_it_is_retried_elsewhere() {
    let received = Arc::new(AtomicUsize::new(0));
    let swallow = swallowing(&received);
    let demo = demo(1);
    let lb = start_over(&[swallow.url(), demo.url()]);
    let (status, body) = get(&format!("http://{}/", lb.addr()));
    assert_eq!((status, body.as_str()), (200, demo.page()));
    assert_eq!(received.load(Ordering::SeqCst), 1);
    assert_eq!(demo.requests(), 1);
}

#[test]
fn all_backends_down_are_tried_again_and_503_comes_only_when_none_is_left() {
    let (one, two) = (DeadPort::new(), DeadPort::new());
    let lb = start_over(&[one.url(), two.url()]);
    let ask = || {
        let mut c = connect(lb.addr());
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        read_response(&mut c)
    };
    // The first request finds both dead (each tried once) and gets 502; both are now out.
    let (head, body) = ask();
    assert_page(&head, &body, "502 Bad Gateway", "connection refused");
    let all = backends(&lb);
    assert!(all.iter().all(|b| !b.health.is_up()));
    assert!(all.iter().all(|b| attempts(b) == 1));
    // Passive health never empties the rotation (Envoy's panic mode): with every backend
    // out, the next request tries them all again, each once.
    let (head, body) = ask();
    assert_page(&head, &body, "502 Bad Gateway", "connection refused");
    assert!(all.iter().all(|b| attempts(b) == 2));
    // 503 only when no backend is left to try at all: here, every one draining.
    for b in all.iter() {
        b.set_draining(true);
    }
    let (head, body) = ask();
    assert_page(
        &head,
        &body,
        "503 Service Unavailable",
        "no healthy backend",
    );
    assert_eq!(fields(&head, "retry-after"), ["1"], "{head}");
    assert!(all.iter().all(|b| attempts(b) == 2));
}

/// A backend that answers every request `200 ok` on a kept-alive connection, except
/// `GET /hang`, which it reads, counts in `seen`, and never answers.
fn hangs_on_one_url(seen: Arc<AtomicUsize>) -> ScriptedBackend {
    ScriptedBackend::start(move |mut s| {
        while let Some(head) = read_head(&mut s) {
            if head.starts_with("GET /hang ") {
                seen.fetch_add(1, Ordering::SeqCst);
                // Silent until the balancer gives up and closes (or the read times out).
                let _ = std::io::Read::read(&mut s, &mut [0u8; 1]);
                return;
            }
            if !write_ok(&mut s, "ok") {
                return;
            }
        }
    })
}

#[test]
fn a_url_that_hangs_everywhere_costs_one_timeout_and_takes_nothing_down() {
    const TIMEOUT: Duration = Duration::from_millis(500);
    let seen = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    let hanging = seen.clone().map(hangs_on_one_url);
    let mut c = config(&[hanging[0].url(), hanging[1].url()]);
    c.backend_timeout = TIMEOUT;
    let lb = start(c);
    let url = |path: &str| format!("http://{}{path}", lb.addr());
    let hangs_seen = || -> Vec<usize> { seen.iter().map(|s| s.load(Ordering::SeqCst)).collect() };
    // Round robin: the first /hang goes to one backend, the second to the other, so that at
    // the end both are out by passive health (max-fails 1).
    for round in 1..=2 {
        let started = Instant::now();
        let (status, _) = get(&url("/hang"));
        let took = started.elapsed();
        assert_eq!(status, 504, "round {round}");
        // One --backend-timeout: sent on to the other backend it would be two.
        assert!(
            took >= TIMEOUT.mul_f64(0.9) && took < 2 * TIMEOUT,
            "round {round}: {took:?}"
        );
        assert_eq!(
            hangs_seen().iter().sum::<usize>(),
            round,
            "only one backend saw /hang"
        );
        // Right after, every other URL is answered: not 503, not 504.
        for _ in 0..4 {
            assert_eq!(get(&url("/")), (200, "ok".to_string()), "round {round}");
        }
    }
    assert_eq!(hangs_seen(), [1, 1], "one /hang each");
    // Both timed out once, so both were out; the requests after the second brought the one
    // that answered them back.
    assert!(backends(&lb).iter().any(|b| b.health.is_up()));
}

#[test]
fn passive_mark_down_then_trial_after_fail_timeout() {
    // Long enough that the few requests after a trial surely fit in it, even on a busy
    // machine: the test waits it out twice.
    const FAIL_TIMEOUT: Duration = Duration::from_secs(1);
    let red = demo(0);
    // Blue keeps its port throughout: while off, it reads each request and hangs up.
    let blue_backend = Switchable::start(&load_balancer::demo::page(1));
    blue_backend.set_up(false);
    let mut c = config(&[red.url(), blue_backend.url()]);
    c.max_fails = 2;
    c.fail_timeout = FAIL_TIMEOUT;
    let lb = start(c);
    let url = format!("http://{}/", lb.addr());
    let blue = backend(&lb, 1);
    let red_page = (200, red.page().to_string());
    // Round robin over Red and a failing Blue, max-fails 2:
    //   1: Red   2: Blue fails -> Red (1 fail)   3: Blue fails -> Red (2 fails: Blue out)
    //   4..6: Red, Blue not tried
    for _ in 0..6 {
        assert_eq!(get(&url), red_page);
    }
    assert_eq!(attempts(&blue), 2);
    assert!(!blue.health.is_up());
    assert_eq!(
        blue.health.reason(),
        "the backend closed the connection without a response, 2 failed requests in a row"
    );
    // After fail-timeout, Blue is due one trial. It still fails: the client does not notice,
    // and Blue stays out for another fail-timeout.
    wait_for(Duration::from_secs(10), "Blue due a trial", || {
        blue.is_eligible(Instant::now())
    });
    // The trial comes with the first request or the second, as the rotation stands.
    let mut asked = 0;
    while attempts(&blue) == 2 {
        assert_eq!(get(&url), red_page);
        asked += 1;
        assert!(asked <= 2, "no trial in two requests");
    }
    assert_eq!(attempts(&blue), 3);
    assert!(
        !blue.is_eligible(Instant::now()),
        "out again after the failed trial"
    );
    for _ in 0..3 {
        assert_eq!(get(&url), red_page);
    }
    assert_eq!(attempts(&blue), 3, "exactly one trial");
    // Blue recovers; the next trial succeeds and Blue is in again.
    blue_backend.set_up(true);
    wait_for(Duration::from_secs(10), "Blue due another trial", || {
        blue.is_eligible(Instant::now())
    });
    // Whether the rotation stands at Red or at Blue: R B R B or B R B R, two each.
    let bodies: Vec<String> = (0..4).map(|_| get(&url).1).collect();
    assert!(blue.health.is_up());
    assert_eq!(blue_backend.served(), 2, "{bodies:?}");
    assert_eq!(bodies.iter().filter(|b| *b == red.page()).count(), 2);
}
