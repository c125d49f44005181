//! Every `--strategy` through the real balancer: exact sequences, drawn in comments.

use crate::support::*;
use load_balancer::demo::page;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Which demo backend (by index) served each of `n` GETs of `/`.
fn served_by(s: &Setup, n: usize) -> Vec<usize> {
    (0..n)
        .map(|_| {
            let (status, body) = get(&s.url("/"));
            assert_eq!(status, 200, "{body}");
            s.served(&body)
        })
        .collect()
}

#[test]
fn weighted_five_one_one_interleaves() {
    let demos = demos(3);
    let mut c = config(&[]);
    set_strategy(&mut c, "weighted");
    for (d, weight) in demos.iter().zip([5, 1, 1]) {
        c.backends
            .push(spec(&format!("{},weight={weight}", d.url())));
    }
    let s = Setup {
        lb: start(c),
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

#[test]
fn least_conn_avoids_the_busy_backend() {
    // Backends: S (slow: holds every request until released), A, B.
    let gate = Arc::new(Gate::default());
    let slow = gated_backend(&gate, "slow");
    let demos = demos(2);
    let mut c = config(&[slow.url()]);
    c.backends.extend(urls(&demos).iter().map(|u| spec(u)));
    set_strategy(&mut c, "least-conn");
    let s = Setup {
        lb: start(c),
        demos,
    };
    let url = s.url("/");
    // All idle, so the first request goes to S (the first in turn) and stays there.
    let held = std::thread::spawn(move || get(&url));
    wait_for(
        Duration::from_secs(10),
        "the slow backend to hold a request",
        || gate.arrived() == 1,
    );
    // S holds 1:   A B A B   (S is never idle enough)
    let name = |body: &str| match s.demos.iter().position(|d| d.page() == body) {
        Some(i) => ["A", "B"][i],
        None => "S",
    };
    let seq: Vec<&str> = (0..4).map(|_| name(&get(&s.url("/")).1)).collect();
    assert_eq!(seq, ["A", "B", "A", "B"]);
    gate.open();
    assert_eq!(held.join().unwrap(), (200, "slow".to_string()));
    wait_for(
        Duration::from_secs(10),
        "the in-flight count to drop",
        || backend(&s.lb, 0).active() == 0,
    );
    // All idle again, in turn from after B:   S A B
    let seq: Vec<&str> = (0..3).map(|_| name(&get(&s.url("/")).1)).collect();
    assert_eq!(seq, ["S", "A", "B"]);
}

#[test]
fn least_conn_counts_in_flight_requests_relative_to_weight() {
    // A (weight 2) and B (weight 1) hold every request until their gate opens, so each new
    // request sees all the earlier ones in flight. The lowest active/weight wins; a tie goes
    // to the first in the scan, which starts after the last pick.
    let (gate_a, gate_b) = (Arc::new(Gate::default()), Arc::new(Gate::default()));
    let (a, b) = (gated_backend(&gate_a, "A"), gated_backend(&gate_b, "B"));
    let mut c = config(&[]);
    c.backends = vec![
        spec(&format!("{},weight=2", a.url())),
        spec(&format!("{},weight=1", b.url())),
    ];
    set_strategy(&mut c, "least-conn");
    let lb = start(c);
    let url = format!("http://{}/", lb.addr());
    //  n  in flight before (A/2, B/1)   pick
    //  1  0/2  0/1   tie, scan A B      A
    //  2  1/2  0/1   B lower            B
    //  3  1/2  1/1   A lower            A
    //  4  2/2  1/1   tie, scan B A      B
    //  5  2/2  2/1   A lower            A
    //  6  3/2  2/1   A lower            A
    //  7  4/2  2/1   tie, scan B A      B
    //  8  4/2  3/1   A lower            A
    //  9  5/2  3/1   A lower            A
    let mut held = Vec::new();
    let mut seq = Vec::new();
    for n in 1..=9 {
        let before = (gate_a.arrived(), gate_b.arrived());
        let url = url.clone();
        held.push(std::thread::spawn(move || get(&url)));
        wait_for(Duration::from_secs(10), "the request held", || {
            gate_a.arrived() + gate_b.arrived() == n
        });
        seq.push(if gate_a.arrived() > before.0 {
            "A"
        } else {
            "B"
        });
    }
    assert_eq!(seq, ["A", "B", "A", "B", "A", "A", "B", "A", "A"]);
    // B finishes its three; A still holds six (6/2 = 3 each): B takes every new request.
    gate_b.open();
    wait_for(Duration::from_secs(10), "B idle", || {
        backend(&lb, 1).active() == 0
    });
    for _ in 0..3 {
        assert_eq!(get(&url), (200, "B".to_string()));
    }
    gate_a.open();
    let bodies: Vec<String> = held.into_iter().map(|h| h.join().unwrap().1).collect();
    assert_eq!(bodies, ["A", "B", "A", "B", "A", "A", "B", "A", "A"]);
}

/// GETs `/` from the balancer at `lb_port` over IPv4 (the client is 127.0.0.1) or IPv6
/// (the client is ::1); returns the body.
fn get_as(ipv6: bool, lb_port: u16) -> String {
    let host = if ipv6 { "[::1]" } else { "127.0.0.1" };
    let (status, body) = get(&format!("http://{host}:{lb_port}/"));
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn ip_hash_keeps_each_client_on_its_backend_and_moves_only_the_clients_of_one_that_goes() {
    // The URLs are what the rendezvous hash scores, so the backends get fixed ones (as a host
    // name resolved at start-up would give), reached on the ports the kernel picked. The
    // scores, highest first, for the two addresses a test on one machine can connect from:
    //
    //              red.internal  blue.internal  green.internal
    //  127.0.0.1       2nd           1st            3rd
    //  ::1             1st           2nd            3rd
    //
    // (A balancer on [::] sees an IPv4 client as ::ffff:127.0.0.1: the same client.)
    let names = [
        "http://red.internal:8001",
        "http://blue.internal:8002",
        "http://green.internal:8003",
    ];
    let backends: Vec<Switchable> = (0..3).map(|i| Switchable::start(&page(i))).collect();
    let mut c = config(&[]);
    c.listen = "[::]:0".parse().unwrap();
    set_strategy(&mut c, "ip-hash");
    for (name, b) in names.iter().zip(&backends) {
        let addr: SocketAddr = b.url().trim_start_matches("http://").parse().unwrap();
        c.backends.push(named_spec(name, addr, 1));
    }
    let lb = start(c);
    let port = lb.addr().port();
    let (red, blue) = (page(0), page(1));
    for _ in 0..4 {
        assert_eq!(get_as(false, port), blue);
        assert_eq!(get_as(true, port), red);
    }
    assert_eq!(backends[2].served(), 0, "green is nobody's first choice");
    // Blue goes: its client moves to its second choice, red; ::1 stays where it was. No
    // client request fails (the first one to blue fails over).
    backends[1].set_up(false);
    for _ in 0..4 {
        assert_eq!(get_as(false, port), red);
        assert_eq!(get_as(true, port), red);
    }
    assert!(!backend_up(&lb, 1));
    // Red goes too: green, the third choice of both, is the one left.
    backends[0].set_up(false);
    for _ in 0..2 {
        assert_eq!(get_as(false, port), page(2));
        assert_eq!(get_as(true, port), page(2));
    }
}

#[test]
fn cookie_pins_a_client_and_moves_it_with_a_new_cookie_when_its_backend_dies() {
    let backends: Vec<Switchable> = (0..3).map(|i| Switchable::start(&page(i))).collect();
    let urls: Vec<String> = backends.iter().map(Switchable::url).collect();
    let mut c = config(&urls);
    set_strategy(&mut c, "cookie");
    let lb = start(c);
    let token = |i: usize| {
        format!(
            "{:016x}",
            load_balancer::backends::strategy::hash64(urls[i].as_bytes())
        )
    };
    let addr = lb.addr();
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
        let set = fields(&head, "set-cookie").pop();
        let i = (0..3)
            .find(|&i| page(i).as_bytes() == body)
            .expect("a backend's page");
        (i, set)
    };
    // No cookie: round robin (A), and a cookie naming A.
    let (i, set) = request(None);
    assert_eq!(i, 0);
    let set = set.expect("a Set-Cookie");
    assert_eq!(
        set,
        format!("lb_backend={}; Path=/; HttpOnly; SameSite=Lax", token(0))
    );
    // With A's cookie: A A A A, and no new cookie.
    for _ in 0..4 {
        assert_eq!(request(Some(&token(0))), (0, None));
    }
    // Without: the rotation goes on (B), and with B's cookie: B.
    assert_eq!(request(None).0, 1);
    assert_eq!(request(Some(&token(1))), (1, None));
    // A dies: A's cookie gets another backend, with a new cookie for it, and keeps it.
    backends[0].set_up(false);
    let (moved, set) = request(Some(&token(0)));
    assert_ne!(moved, 0);
    let set = set.expect("a new Set-Cookie");
    assert!(
        set.starts_with(&format!("lb_backend={};", token(moved))),
        "{set}"
    );
    for _ in 0..3 {
        assert_eq!(request(Some(&token(moved))), (moved, None));
    }
}

#[test]
fn with_a_secret_file_the_cookie_cannot_be_matched_to_its_url_but_copies_agree() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("lb-cookie-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cookie.key");
    std::fs::write(&file, "0123456789abcdef-shared-by-copies\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let secret = load_balancer::secret::read_cookie_secret(&file).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let backend = demo(0);
    let cookie_of = |secret: Option<&load_balancer::secret::Secret>| {
        let mut c = config(&[backend.url()]);
        set_strategy(&mut c, "cookie");
        c.cookie_secret = secret.cloned();
        let lb = start(c);
        let head = exchange(
            lb.addr(),
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        let set = fields(split_answer(&head).0, "set-cookie")
            .pop()
            .expect("a Set-Cookie");
        let value = set.strip_prefix("lb_backend=").unwrap();
        value[..16].to_string()
    };
    // What an attacker does: hash every candidate URL on this host and look the value up.
    let port = backend.addr().port();
    let candidates = |token: &str| {
        (port.saturating_sub(500)..=port.saturating_add(500))
            .filter(|p| {
                let url = format!("http://127.0.0.1:{p}");
                format!(
                    "{:016x}",
                    load_balancer::backends::strategy::hash64(url.as_bytes())
                ) == token
            })
            .count()
    };
    // Without the file: the unkeyed hash, which gives the address away.
    let plain = cookie_of(None);
    assert_eq!(
        candidates(&plain),
        1,
        "the old cookie is matched by trying ports"
    );
    // With it: no candidate matches, and two copies sharing the file agree.
    let keyed = cookie_of(Some(&secret));
    assert_eq!(candidates(&keyed), 0, "{keyed}");
    assert_ne!(keyed, plain);
    assert_eq!(
        cookie_of(Some(&secret)),
        keyed,
        "another copy, the same file"
    );
    let mac = load_balancer::digest::hmac_sha256(secret.bytes(), backend.url().as_bytes());
    let expected: String = mac[..8].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(keyed, expected, "HMAC-SHA-256 of the URL, cut to 64 bits");
}

#[test]
fn round_robin_skips_a_dead_backend() {
    let (a, dead, c) = (demo(0), DeadPort::new(), demo(2));
    let lb = start_over(&[a.url(), dead.url(), c.url()]);
    let bodies: Vec<String> = (0..6)
        .map(|_| get(&format!("http://{}/", lb.addr())).1)
        .collect();
    // A  B->C  A  C  A  C   (B refuses the 2nd request, which goes on to C; then B is out)
    let (a, c) = (a.page().to_string(), c.page().to_string());
    assert_eq!(bodies, [a.clone(), c.clone(), a.clone(), c.clone(), a, c]);
    assert!(!backend_up(&lb, 1));
}
