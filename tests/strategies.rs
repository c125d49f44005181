//! Every `--strategy` through the real balancer: exact sequences, drawn in comments.

mod support;

use load_balancer::config::{BackendSpec, StrategyKind};
use load_balancer::server::Balancer;
use load_balancer::strategy::{self, ip_hash};
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use support::*;

/// Which demo backend (by index) served each of `n` GETs of `/`.
fn served_by(s: &Setup, n: usize) -> Vec<usize> {
    let pages: Vec<String> = s.demos.iter().map(|d| d.page().to_string()).collect();
    (0..n)
        .map(|_| {
            let (status, body) = get(&s.url("/"));
            assert_eq!(status, 200, "{body}");
            pages.iter().position(|p| *p == body).expect("a demo page")
        })
        .collect()
}

#[test]
fn weighted_five_one_one_interleaves() {
    let demos = demos(3);
    let mut c = config(&[]);
    c.strategy = StrategyKind::Weighted;
    for (d, weight) in demos.iter().zip([5, 1, 1]) {
        c.backends
            .push(BackendSpec::parse(&format!("{},weight={weight}", d.url())).unwrap());
    }
    let s = Setup {
        lb: Balancer::start(c).unwrap(),
        demos,
    };
    // a a b a c a a | a a b a c a a
    assert_eq!(
        served_by(&s, 14),
        [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]
    );
    let counts: Vec<u64> = s.demos.iter().map(|d| d.requests()).collect();
    assert_eq!(counts, [10, 2, 2]);
}

/// A backend that holds every response until released, counting the requests it holds.
struct Gate {
    released: Mutex<bool>,
    open: Condvar,
    arrived: AtomicUsize,
}

#[test]
fn least_conn_avoids_the_busy_backend() {
    let gate = Arc::new(Gate {
        released: Mutex::new(false),
        open: Condvar::new(),
        arrived: AtomicUsize::new(0),
    });
    let slow = {
        let gate = Arc::clone(&gate);
        ScriptedBackend::start(move |mut s| {
            while read_head(&mut s).is_some() {
                gate.arrived.fetch_add(1, Ordering::SeqCst);
                let mut released = gate.released.lock().unwrap();
                while !*released {
                    released = gate.open.wait(released).unwrap();
                }
                drop(released);
                let body = "slow";
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if s.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        })
    };
    let demos = demos(2);
    let mut c = config(&[slow.url()]);
    c.backends
        .extend(urls(&demos).iter().map(|u| BackendSpec::parse(u).unwrap()));
    c.strategy = StrategyKind::LeastConn;
    let s = Setup {
        lb: Balancer::start(c).unwrap(),
        demos,
    };
    let url = s.url("/");
    // Backends: S (slow), A, B. All idle, so the first request goes to S (the first in turn)
    // and stays there.
    let held = std::thread::spawn(move || get(&url));
    wait_for(
        Duration::from_secs(5),
        "the slow backend to hold a request",
        || gate.arrived.load(Ordering::SeqCst) == 1,
    );
    // S holds 1:   A B A B   (S is never idle enough)
    let page_of = |body: &str| {
        s.demos
            .iter()
            .position(|d| d.page() == body)
            .map_or("S".to_string(), |i| ["A", "B"][i].to_string())
    };
    let seq: Vec<String> = (0..4).map(|_| page_of(&get(&s.url("/")).1)).collect();
    assert_eq!(seq, ["A", "B", "A", "B"]);
    *gate.released.lock().unwrap() = true;
    gate.open.notify_all();
    assert_eq!(held.join().unwrap(), (200, "slow".to_string()));
    wait_for(
        Duration::from_secs(5),
        "the in-flight count to drop",
        || s.lb.shared().backends.snapshot()[0].active() == 0,
    );
    // All idle again, in turn from after B:   S A B
    let seq: Vec<String> = (0..3).map(|_| page_of(&get(&s.url("/")).1)).collect();
    assert_eq!(seq, ["S", "A", "B"]);
}

#[test]
fn ip_hash_keeps_a_client_on_its_backend_and_moves_it_only_when_it_goes() {
    let mut s = Setup::new(3, |c| c.strategy = StrategyKind::IpHash);
    let backends = s.lb.shared().backends.snapshot();
    let me: IpAddr = "127.0.0.1".parse().unwrap();
    // The winner is the backend with the highest rendezvous score for 127.0.0.1.
    let rank = |exclude: Option<usize>| {
        (0..3)
            .filter(|&i| Some(i) != exclude)
            .max_by(|&x, &y| {
                ip_hash::score(me, &backends[x]).total_cmp(&ip_hash::score(me, &backends[y]))
            })
            .unwrap()
    };
    let first = rank(None);
    // x x x x x x  (x: the top score)
    assert_eq!(served_by(&s, 6), [first; 6]);
    // x stops: every request goes to the second-highest score, y y y y y y, and no client
    // request fails (the first one fails over).
    let second = rank(Some(first));
    let stopped = s.demos.remove(first);
    let pages: Vec<String> = s.demos.iter().map(|d| d.page().to_string()).collect();
    stopped.stop();
    for _ in 0..6 {
        let (status, body) = get(&s.url("/"));
        assert_eq!(status, 200);
        let expected = if second > first { second - 1 } else { second };
        assert_eq!(body, pages[expected]);
    }
}

#[test]
fn cookie_pins_a_client_and_moves_it_with_a_new_cookie_when_its_backend_dies() {
    let mut s = Setup::new(3, |c| c.strategy = StrategyKind::Cookie);
    let pages: Vec<String> = s.demos.iter().map(|d| d.page().to_string()).collect();
    let backends = s.lb.shared().backends.snapshot();
    let tokens: Vec<String> = backends
        .iter()
        .map(|b| strategy::affinity_token(b))
        .collect();
    let token = |i: usize| tokens[i].as_str();
    let addr = s.addr();
    let request = |cookie: Option<&str>| {
        let mut c = connect(addr);
        let cookie = cookie.map_or(String::new(), |t| {
            format!("Cookie: theme=dark; lb_backend={t}\r\n")
        });
        c.write_all(
            format!("GET / HTTP/1.1\r\nHost: x\r\n{cookie}Connection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let (head, body) = read_response(&mut c);
        let set = header(&head.to_ascii_lowercase(), "set-cookie").map(str::to_string);
        let i = pages
            .iter()
            .position(|p| p.as_bytes() == body)
            .expect("a demo page");
        (i, set)
    };
    // No cookie: round robin (A), and a cookie naming A.
    let (i, set) = request(None);
    assert_eq!(i, 0);
    let set = set.expect("a Set-Cookie");
    assert_eq!(
        set,
        format!("lb_backend={}; path=/; httponly; samesite=lax", token(0))
    );
    assert!(
        !set.contains("127.0.0.1"),
        "the cookie does not show the address"
    );
    // With A's cookie: A A A A, and no new cookie.
    for _ in 0..4 {
        assert_eq!(request(Some(token(0))), (0, None));
    }
    // Without: the rotation goes on (B), and with B's cookie: B.
    assert_eq!(request(None).0, 1);
    assert_eq!(request(Some(token(1))), (1, None));
    // A dies: A's cookie gets another backend, with a new cookie for it, and keeps it.
    s.demos.remove(0).stop();
    let (moved, set) = request(Some(token(0)));
    assert_ne!(moved, 0);
    let set = set.expect("a new Set-Cookie");
    assert!(
        set.starts_with(&format!("lb_backend={};", token(moved))),
        "{set}"
    );
    for _ in 0..3 {
        assert_eq!(request(Some(token(moved))), (moved, None));
    }
}

#[test]
fn round_robin_skips_a_dead_backend() {
    let mut s = Setup::new(3, |_| {});
    let pages: Vec<String> = s.demos.iter().map(|d| d.page().to_string()).collect();
    s.demos.remove(1).stop();
    let bodies: Vec<String> = (0..6).map(|_| get(&s.url("/")).1).collect();
    // A  B->C  A  C  A  C   (B refuses the 2nd request, which goes on to C; then B is out)
    let (a, c) = (pages[0].clone(), pages[2].clone());
    assert_eq!(bodies, [a.clone(), c.clone(), a.clone(), c.clone(), a, c]);
    assert!(!s.lb.shared().backends.snapshot()[1].health.is_up());
}
