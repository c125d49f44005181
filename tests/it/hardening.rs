//! Hardening (issue 11): what a client or a backend cannot make the balancer do: strip
//! `Host`, smuggle framing in trailers, point it at itself, loop through it, send heads it
//! cannot trust, hold it with silence or a flood of `1xx`, outgrow its cap with tunnels, or
//! claim an address it did not come from.

use crate::support::process::Launch;
use crate::support::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// What the recording backends answer to every request.
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

#[test]
fn connection_cannot_strip_host_from_the_forwarded_request() {
    let backend = Recorder::fixed(OK);
    let lb = start_over(&[backend.url()]);
    let mut c = RawConn::open(lb.addr());
    c.send(
        b"GET / HTTP/1.1\r\nHost: site.example\r\nConnection: host, x-gone\r\nX-Gone: 1\r\n\r\n",
    );
    let (head, body) = c.response();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, b"ok");
    let got = backend.last().0.to_ascii_lowercase();
    assert_eq!(fields(&got, "host"), ["site.example"], "{got}");
    assert!(fields(&got, "x-gone").is_empty(), "{got}");
}

#[test]
fn an_absolute_target_with_bytes_a_host_cannot_have_is_refused() {
    let backend = Recorder::fixed(OK);
    let lb = start_over(&[backend.url()]);
    for target in ["http://a\"b<c>/", "http://a{b}/x", "http://u@h/"] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let answer = exchange(lb.addr(), request.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 400 "), "{target}: {answer}");
    }
    assert_eq!(backend.count(), 0, "nothing reached the backend");
}

#[test]
fn request_trailers_lose_framing_and_routing_fields() {
    let backend = Recorder::fixed(OK);
    let lb = start_over(&[backend.url()]);
    let mut c = RawConn::open(lb.addr());
    c.send(
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\nContent-Length: 99\r\nHost: evil\r\nTransfer-Encoding: gzip\r\n\
          X-Checksum: abc\r\nAuthorization: Bearer x\r\n\r\n",
    );
    let (head, body) = c.response();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, b"ok");
    let (got_head, got_body) = backend.last();
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
    // A port nothing can bind (a connection of this test holds it): should the check ever be
    // skipped, the balancer fails to bind (exit 1) instead of taking a port someone else may
    // be using, and the test still fails.
    let held = DeadPort::new();
    let port = held.addr().port();
    for (listen, backend) in [
        (
            format!("127.0.0.1:{port}"),
            format!("http://127.0.0.1:{port}"),
        ),
        (
            format!("0.0.0.0:{port}"),
            format!("http://localhost:{port}"),
        ),
    ] {
        let (listen, backend) = (listen.as_str(), backend.as_str());
        let mut lb = Launch::balancer()
            .args(&["--listen", listen, "--backend", backend, "--admin", "off"])
            .only_stderr()
            .spawn();
        // It must exit by itself; one that starts instead fails the test, and is stopped.
        let status = lb.exit_within(Duration::from_secs(20));
        let refused = lb.has_line(&format!("--backend {backend}: that is this balancer's own"));
        assert_eq!(
            status.code(),
            Some(2),
            "{listen} {backend}: {:?}",
            lb.seen()
        );
        assert!(refused, "{:?}", lb.seen());
    }
}

#[test]
fn a_health_interval_alone_is_accepted() {
    // The default --health-timeout (1s) follows a shorter interval instead of refusing it.
    let dead = DeadPort::new();
    let lb = Launch::over(&dead.url())
        .args(&["--quiet", "--health-check", "/"])
        .args(&["--health-interval", "500ms"])
        .patience(Duration::from_secs(20))
        .start();
    let first = &lb.seen()[0];
    assert!(
        first.starts_with("[LoadBalancer] Running at http://127.0.0.1:"),
        "{first}"
    );
}

/// One admin request from a local script (`Host` is the admin address).
fn admin_post(admin: SocketAddr, path: &str, body: &str) -> String {
    let mut c = RawConn::open(admin);
    c.send(
        format!(
            "POST {path} HTTP/1.1\r\nHost: {admin}\r\nAuthorization: Bearer t0k\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    c.response().0
}

#[test]
fn a_request_carrying_this_balancers_via_entry_gets_508_and_goes_nowhere() {
    let backend = Recorder::fixed(OK);
    let lb = start_over(&[backend.url()]);
    let ours = lb.shared().via.clone();
    assert!(ours.starts_with("1.1 load-balancer-"), "{ours}");
    assert_eq!(ours.len(), "1.1 load-balancer-".len() + 8, "{ours}");
    let request = format!("GET / HTTP/1.1\r\nHost: x\r\nVia: 1.0 fred, {ours} (proxy)\r\n\r\n");
    let answer = exchange(lb.addr(), request.as_bytes());
    assert!(
        answer.starts_with("HTTP/1.1 508 Loop Detected\r\n"),
        "{answer}"
    );
    assert_eq!(backend.count(), 0, "the looping request was forwarded");
    // The product name alone, or another balancer's entry, is no loop.
    let mut c = RawConn::open(lb.addr());
    c.send(
        b"GET / HTTP/1.1\r\nHost: x\r\nVia: 1.1 load-balancer, 1.1 load-balancer-00000000\r\n\r\n",
    );
    assert!(c.response().0.starts_with("HTTP/1.1 200 "));
    let (head, _) = backend.last();
    assert_eq!(
        fields(&head, "via"),
        [format!(
            "1.1 load-balancer, 1.1 load-balancer-00000000, {ours}"
        )]
    );
}

#[test]
fn a_loop_made_at_run_time_through_another_balancer_ends_in_508() {
    // A balances over B; B starts with a demo backend: a chain of two, not a loop.
    let demo = demos(1);
    let b = start({
        let mut c = config(&urls(&demo));
        with_admin(&mut c);
        c.admin_token = Some("t0k".into());
        c.max_connections = 16;
        c
    });
    let a = start({
        let mut c = config(&[format!("http://{}", b.addr())]);
        c.max_connections = 16;
        c
    });
    let (status, echo) = get(&format!("http://{}/echo", a.addr()));
    assert_eq!(status, 200, "{echo}");
    let (via_a, via_b) = (&a.shared().via, &b.shared().via);
    assert_ne!(via_a, via_b, "two balancers need two names");
    assert!(echo.contains(&format!("Via: {via_a}, {via_b}\n")), "{echo}");

    // Now B's only backend in rotation is A: every request A sends to B comes back.
    let add = admin_post(
        admin_addr(&b),
        "/backends",
        &format!("url=http://{}", a.addr()),
    );
    assert!(add.starts_with("HTTP/1.1 201 "), "{add}");
    let drain = admin_post(admin_addr(&b), "/backends/0/drain", "");
    assert!(drain.starts_with("HTTP/1.1 200 "), "{drain}");
    let (status, page) = get(&format!("http://{}/echo", a.addr()));
    assert_eq!(status, 508, "{page}");
    assert!(
        page.contains("already passed through this balancer"),
        "{page}"
    );
    // A saw it twice (from the client, then back from B), and B sent it on once. A accepted
    // three connections in all: one for each of the client's two GETs, and B's.
    assert_eq!(attempts(&backend(&b, 1)), 1);
    assert_eq!(accepted(&a), 3);
}

/// A backend whose answer to `HEAD /NAME` (or `GET /304-NAME`) carries the `Content-Length`
/// the path names.
fn lengths_backend() -> ScriptedBackend {
    ScriptedBackend::start(|mut s| {
        while let Some((head, _)) = read_message(&mut s) {
            let path = head.split(' ').nth(1).unwrap_or("/").to_string();
            let (status, name) = match path.strip_prefix("/304-") {
                Some(name) => ("304 Not Modified", name.to_string()),
                None => ("200 OK", path[1..].to_string()),
            };
            let value = match name.as_str() {
                "abc" => "abc",
                "list" => "5, 7",
                "twice" => "5, 5",
                "two-fields" => "5\r\nContent-Length: 7",
                _ => "5",
            };
            let reply =
                format!("HTTP/1.1 {status}\r\nContent-Length: {value}\r\nX-Name: {name}\r\n\r\n");
            if s.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    })
}

/// `METHOD PATH` on a new connection to `lb`: the answer's head.
fn head_of_answer(lb: &Balancer, method: &str, path: &str) -> String {
    let mut conn = RawConn::open(lb.addr());
    conn.send(format!("{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    conn.response_to(method).0
}

#[test]
fn head_and_304_content_lengths_are_checked_like_any_other() {
    let b = lengths_backend();
    let mut c = config(&[b.url()]);
    c.max_fails = u32::MAX; // the bad answers must not take the only backend out
    let lb = start(c);
    for (method, path) in [
        ("HEAD", "/abc"),
        ("HEAD", "/list"),
        ("HEAD", "/two-fields"),
        ("GET", "/304-abc"),
        ("GET", "/304-list"),
    ] {
        let head = head_of_answer(&lb, method, path);
        assert!(head.starts_with("HTTP/1.1 502 "), "{method} {path}: {head}");
    }
    for (method, path, status) in [
        ("HEAD", "/twice", 200),
        ("HEAD", "/five", 200),
        ("GET", "/304-twice", 304),
    ] {
        let head = head_of_answer(&lb, method, path);
        assert_eq!(status_of(&head), status, "{method} {path}: {head}");
        assert_eq!(
            fields(&head, "content-length"),
            ["5"],
            "{method} {path}: {head}"
        );
    }
}

#[test]
fn a_silent_connection_is_closed_at_the_header_timeout_not_the_idle_one() {
    let s = Setup::new(1, |c| {
        c.header_timeout = Duration::from_millis(500);
        c.idle_timeout = Duration::from_secs(60);
    });
    let mut quiet = RawConn::open(s.addr());
    let opened = Instant::now();
    quiet.expect_close();
    let held = opened.elapsed();
    assert!(
        held >= Duration::from_millis(450) && held < Duration::from_secs(5),
        "a silent connection was held {held:?}"
    );
}

#[test]
fn a_kept_alive_connection_still_waits_the_idle_timeout_between_requests() {
    let s = Setup::new(1, |c| {
        c.header_timeout = Duration::from_millis(300);
        c.idle_timeout = Duration::from_millis(1500);
    });
    let mut c = RawConn::open(s.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(c.response().0.starts_with("HTTP/1.1 200 "));
    let answered = Instant::now();
    c.expect_close();
    let idle = answered.elapsed();
    assert!(idle >= Duration::from_millis(1400), "closed after {idle:?}");
}

/// A backend that answers with `interim` `103 Early Hints` (endless with `None`), then `200`.
fn hinting_backend(interim: Option<usize>) -> ScriptedBackend {
    ScriptedBackend::start(move |mut s| {
        if read_message(&mut s).is_none() {
            return;
        }
        let hint = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n";
        let mut sent = 0;
        while interim.is_none_or(|n| sent < n) {
            if s.write_all(hint).is_err() {
                return;
            }
            sent += 1;
        }
        let _ = write_ok(&mut s, "final");
    })
}

#[test]
fn a_backend_flooding_interim_responses_gets_502() {
    let flood = hinting_backend(None);
    let lb = start_over(&[flood.url()]);
    let started = Instant::now();
    let (status, body) = get(&format!("http://{}/", lb.addr()));
    assert_eq!(status, 502, "{body}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // 32 interim responses (MAX_INTERIM) are still a normal exchange.
    let hints = hinting_backend(Some(32));
    let lb = start_over(&[hints.url()]);
    assert_eq!(
        get(&format!("http://{}/", lb.addr())),
        (200, "final".into())
    );
}

/// A backend that switches protocols when asked, then echoes until the client side closes.
fn upgrading_backend() -> ScriptedBackend {
    ScriptedBackend::start(|mut s| {
        if read_message(&mut s).is_none() {
            return;
        }
        let _ = s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n",
        );
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = s.read(&mut buf) {
            if s.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    })
}

/// Asks for an upgrade on a new connection; returns the connection and the status answered.
fn upgrade(addr: SocketAddr) -> (TcpStream, u16) {
    let mut c = connect(addr);
    c.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && c.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    let status = status_of(&String::from_utf8_lossy(&head));
    (c, status)
}

#[test]
fn a_tunnels_second_thread_takes_a_slot_of_the_connection_cap() {
    let b = upgrading_backend();
    let lb = start({
        let mut c = config(&[b.url()]);
        c.max_connections = 3;
        c
    });
    // The first tunnel: its connection and its second thread, two of three slots.
    let (mut first, status) = upgrade(lb.addr());
    assert_eq!(status, 101);
    first.write_all(b"ping").unwrap();
    let mut pong = [0u8; 4];
    first.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"ping");
    // A second connection fits, but not its tunnel's second thread.
    let (_second, status) = upgrade(lb.addr());
    assert_eq!(status, 503, "a tunnel past --max-connections");
    // Once the first tunnel ends, its slots come back.
    drop(first);
    wait_for(
        Duration::from_secs(10),
        "the tunnel's slots to come back",
        || upgrade(lb.addr()).1 == 101,
    );
}

#[test]
fn an_open_tunnel_leaves_one_slot_fewer_for_new_connections() {
    let b = upgrading_backend();
    let lb = start({
        let mut c = config(&[b.url()]);
        c.max_connections = 2;
        c
    });
    // The tunnel: its connection and its second thread, both slots.
    let (mut tunnel, status) = upgrade(lb.addr());
    assert_eq!(status, 101);
    tunnel.write_all(b"ping").unwrap();
    let mut pong = [0u8; 4];
    tunnel.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"ping");
    // A plain connection finds the cap full at accept.
    let answer = exchange(lb.addr(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("--max-connections"), "{answer}");
}

#[test]
fn a_client_cannot_claim_x_real_ip_or_forwarded() {
    let backend = Recorder::fixed(OK);
    let lb = start_over(&[backend.url()]);
    let mut c = RawConn::open(lb.addr());
    c.send(
        b"GET / HTTP/1.1\r\nHost: shop.example:8080\r\nX-Real-IP: 203.0.113.66\r\n\
          Forwarded: for=203.0.113.66;proto=https\r\nX-Forwarded-For: 203.0.113.66\r\n\r\n",
    );
    assert!(c.response().0.starts_with("HTTP/1.1 200 "));
    let (head, _) = backend.last();
    assert_eq!(fields(&head, "x-real-ip"), ["127.0.0.1"], "{head}");
    assert_eq!(
        fields(&head, "forwarded"),
        ["for=127.0.0.1;host=\"shop.example:8080\";proto=http"],
        "{head}"
    );
    // X-Forwarded-For keeps the client's claim in front: only its last entry is ours.
    assert_eq!(
        fields(&head, "x-forwarded-for"),
        ["203.0.113.66, 127.0.0.1"]
    );
}
