//! Failover and passive health: nobody sees a dead backend, nothing is sent twice that must
//! not be, and a backend that failed gets one trial after `--fail-timeout`.

mod support;

use load_balancer::demo::DemoBackend;
use load_balancer::server::Balancer;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::*;

#[test]
fn a_backend_stopped_under_load_costs_no_client_an_error() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 50; // 400 GETs in all
    let mut s = Setup::new(3, |_| {});
    let url = s.url("/");
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..THREADS)
        .map(|_| {
            let (url, done) = (url.clone(), Arc::clone(&done));
            std::thread::spawn(move || {
                // One agent per thread: keep-alive connections to the balancer, as browsers do.
                let agent = agent();
                let mut failures = Vec::new();
                for _ in 0..PER_THREAD {
                    match agent.get(&url).call() {
                        Ok(mut r) if r.status() == 200 => {
                            let _ = r.body_mut().read_to_string();
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
    // A quarter of the way in, Blue goes away, connections and all.
    wait_for(Duration::from_secs(20), "100 requests answered", || {
        done.load(Ordering::SeqCst) >= 100
    });
    let blue = s.demos.remove(1);
    let blue_served = blue.requests();
    blue.stop();
    let failures: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert_eq!(failures, Vec::<String>::new(), "client errors");
    assert!(blue_served > 0, "Blue served before it stopped");
    // Every one of the 400 was relayed from some backend as a 2xx, none twice. (The balancer
    // counts a response just after its last byte went out, so the count may trail a moment.)
    let backends = s.lb.shared().backends.snapshot();
    let relayed = || -> u64 {
        backends
            .iter()
            .map(|b| b.stats.responses[1].load(Ordering::Relaxed))
            .sum()
    };
    wait_for(Duration::from_secs(5), "400 responses counted", || {
        relayed() >= (THREADS * PER_THREAD) as u64
    });
    assert_eq!(relayed(), (THREADS * PER_THREAD) as u64);
    assert!(!backends[1].health.is_up(), "Blue is out of rotation");
    assert!(backends[0].health.is_up() && backends[2].health.is_up());
}

/// Two backends that read a request (head and body), count it, and close without answering.
#[test]
fn a_post_whose_backend_dies_gets_502_and_is_not_replayed() {
    let received = Arc::new(AtomicUsize::new(0));
    let swallow = || {
        let received = Arc::clone(&received);
        ScriptedBackend::start(move |mut s| {
            if let Some(head) = read_head(&mut s) {
                let len: usize = header(&head.to_ascii_lowercase(), "content-length")
                    .map_or(0, |v| v.parse().unwrap());
                let mut body = vec![0u8; len];
                let _ = std::io::Read::read_exact(&mut s, &mut body);
                received.fetch_add(1, Ordering::SeqCst);
            }
            // Dropped: the connection closes with no response.
        })
    };
    let (one, two) = (swallow(), swallow());
    let lb = Balancer::start(config(&[one.url(), two.url()])).unwrap();
    let mut c = connect(lb.addr());
    c.write_all(b"POST /order HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nbuy=1&x=2")
        .unwrap();
    let (head, body) = read_response(&mut c);
    assert!(head.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{head}");
    assert!(
        String::from_utf8_lossy(&body).contains("without a response"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        received.load(Ordering::SeqCst),
        1,
        "the POST reached one backend, once"
    );
}

#[test]
fn a_get_whose_backend_dies_after_receiving_it_is_retried_elsewhere() {
    let received = Arc::new(AtomicUsize::new(0));
    let swallow = {
        let received = Arc::clone(&received);
        ScriptedBackend::start(move |mut s| {
            if read_head(&mut s).is_some() {
                received.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let demo = DemoBackend::start(1, "127.0.0.1:0".parse().unwrap()).unwrap();
    let lb = Balancer::start(config(&[swallow.url(), demo.url()])).unwrap();
    let (status, body) = get(&format!("http://{}/", lb.addr()));
    assert_eq!((status, body.as_str()), (200, demo.page()));
    assert_eq!(received.load(Ordering::SeqCst), 1);
    assert_eq!(demo.requests(), 1);
}

#[test]
fn all_backends_down_are_tried_again_and_503_comes_only_when_none_is_left() {
    let lb = Balancer::start(config(&[dead_addr(), dead_addr()])).unwrap();
    let ask = || {
        let mut c = connect(lb.addr());
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        read_response(&mut c)
    };
    let attempts = |n: u64| {
        let backends = lb.shared().backends.snapshot();
        backends
            .iter()
            .all(|b| b.stats.requests.load(Ordering::Relaxed) == n)
    };
    // The first request finds both dead (each tried once) and gets 502; both are now out.
    let (head, _) = ask();
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let backends = lb.shared().backends.snapshot();
    assert!(backends.iter().all(|b| !b.health.is_up()));
    assert!(attempts(1));
    // Passive health never empties the rotation (Envoy's panic mode): with every backend
    // out, the next request tries them all again, each once.
    let (head, _) = ask();
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(attempts(2));
    // 503 only when no backend is left to try at all: here, every one draining.
    for b in backends.iter() {
        b.set_draining(true);
    }
    let (head, body) = ask();
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nRetry-After: "), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("no healthy backend"));
    assert!(attempts(2));
}

/// A backend that answers every request `200 ok` on a kept-alive connection, except
/// `GET /hang`, which it reads, counts in `seen`, and never answers.
fn hangs_on_one_url(seen: Arc<AtomicUsize>) -> ScriptedBackend {
    ScriptedBackend::start(move |mut s| {
        while let Some(head) = read_head(&mut s) {
            if head.starts_with("GET /hang ") {
                seen.fetch_add(1, Ordering::SeqCst);
                // Silent until the balancer gives up and closes (or 10 s pass).
                let _ = std::io::Read::read(&mut s, &mut [0u8; 1]);
                return;
            }
            if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
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
    let lb = Balancer::start(c).unwrap();
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
    let backends = lb.shared().backends.snapshot();
    assert!(backends.iter().any(|b| b.health.is_up()));
}

#[test]
fn passive_mark_down_then_trial_after_fail_timeout() {
    const FAIL_TIMEOUT: Duration = Duration::from_millis(300);
    let red = DemoBackend::start(0, "127.0.0.1:0".parse().unwrap()).unwrap();
    let blue_url = dead_addr();
    let mut c = config(&[red.url(), blue_url.clone()]);
    c.max_fails = 2;
    c.fail_timeout = FAIL_TIMEOUT;
    let lb = Balancer::start(c).unwrap();
    let url = format!("http://{}/", lb.addr());
    let blue = Arc::clone(&lb.shared().backends.snapshot()[1]);
    let attempts_on_blue = || blue.stats.requests.load(Ordering::Relaxed);
    // Round robin over Red and a dead Blue, max-fails 2:
    //   1: Red   2: Blue refused -> Red (1 fail)   3: Blue refused -> Red (2 fails: Blue out)
    //   4..6: Red, Blue not tried
    for _ in 0..6 {
        assert_eq!(get(&url), (200, red.page().to_string()));
    }
    assert_eq!(attempts_on_blue(), 2);
    assert!(!blue.health.is_up());
    assert!(
        blue.health.reason().contains("2 failed requests in a row"),
        "{}",
        blue.health.reason()
    );
    // After fail-timeout, Blue is due one trial. It still refuses: the client does not notice,
    // and Blue stays out for another fail-timeout.
    wait_for(Duration::from_secs(5), "Blue due a trial", || {
        blue.is_eligible(Instant::now())
    });
    for _ in 0..4 {
        assert_eq!(get(&url), (200, red.page().to_string()));
    }
    assert_eq!(attempts_on_blue(), 3, "exactly one trial");
    assert!(!blue.health.is_up());
    // Blue comes back on its old address; the next trial succeeds and Blue is in again.
    let addr = blue_url.trim_start_matches("http://").parse().unwrap();
    let revived = DemoBackend::start(1, addr).unwrap();
    wait_for(Duration::from_secs(5), "Blue due another trial", || {
        blue.is_eligible(Instant::now())
    });
    // Whether the rotation stands at Red or at Blue: R B R B or B R B R, two each.
    let bodies: Vec<String> = (0..4).map(|_| get(&url).1).collect();
    assert!(blue.health.is_up());
    assert_eq!(revived.requests(), 2, "{bodies:?}");
    assert_eq!(bodies.iter().filter(|b| *b == red.page()).count(), 2);
}
