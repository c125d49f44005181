//! The admin listener against a rebinding page, silent sockets and a loop (issue 11, items 4,
//! 5 and 6): every request must name it by an IP address or `localhost`, silent connections
//! do not lock the operator out, and the balancer cannot be made its own backend.

use crate::support::*;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn with_admin() -> Setup {
    Setup::new(1, |c| c.admin = Some("127.0.0.1:0".parse().unwrap()))
}

fn admin(s: &Setup) -> SocketAddr {
    s.lb.admin_addr().unwrap()
}

/// One admin request with the given `Host`; returns the head and the body as text.
fn request(
    admin: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    body: &str,
) -> (String, String) {
    let mut c = RawConn::open(admin);
    c.send(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let (head, body) = c.response();
    (head, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn every_admin_request_must_name_the_listener_by_address_or_localhost() {
    let s = with_admin();
    let port = admin(&s).port();
    for path in ["/status.json", "/metrics", "/backends"] {
        // A rebinding page's same-origin GET: no Origin, but its own name in Host.
        for host in ["evil.example", &format!("evil.example:{port}")] {
            let (head, body) = request(admin(&s), "GET", path, host, "");
            assert!(head.starts_with("HTTP/1.1 421 "), "{path} {host}: {head}");
            assert!(!body.contains("127.0.0.1:"), "{path} leaked: {body}");
        }
        for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
            let (head, _) = request(admin(&s), "GET", path, &host, "");
            assert!(head.starts_with("HTTP/1.1 200 "), "{path} {host}: {head}");
        }
    }
    // Changes too, and before the backend list is touched.
    let (head, _) = request(admin(&s), "POST", "/backends/0/drain", "evil.example", "");
    assert!(head.starts_with("HTTP/1.1 421 "), "{head}");
    assert!(!s.lb.shared().backends.snapshot()[0].is_draining());
}

#[test]
fn the_name_given_with_admin_is_accepted_too() {
    let s = Setup::new(1, |c| {
        c.admin = Some("127.0.0.1:0".parse().unwrap());
        c.admin_name = Some("ops.internal".into());
    });
    let (head, _) = request(admin(&s), "GET", "/status.json", "ops.internal:9001", "");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let (head, _) = request(admin(&s), "GET", "/status.json", "evil.example", "");
    assert!(head.starts_with("HTTP/1.1 421 "), "{head}");
}

#[test]
fn the_api_refuses_a_backend_that_is_the_balancer_itself() {
    let s = with_admin();
    let host = admin(&s).to_string();
    let own = format!("url=http://{}", s.addr());
    let (head, body) = request(admin(&s), "POST", "/backends", &host, &own);
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert!(body.contains("own listener"), "{body}");
    assert_eq!(s.lb.shared().backends.snapshot().len(), 1, "not added");
    // Another address is still taken.
    let dead = DeadPort::new();
    let other = format!("url={}", dead.url());
    let (head, _) = request(admin(&s), "POST", "/backends", &host, &other);
    assert!(head.starts_with("HTTP/1.1 201 "), "{head}");
}

#[test]
fn silent_sockets_do_not_lock_the_operator_out() {
    let s = with_admin();
    // More silent connections than the admin listener serves at once
    // (MAX_ADMIN_CONNECTIONS, 32), kept open by this test until its end.
    let silent: Vec<TcpStream> = (0..40).map(|_| connect(admin(&s))).collect();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(15);
    let status = loop {
        let (head, _) = request(admin(&s), "GET", "/status.json", &admin(&s).to_string(), "");
        if !head.starts_with("HTTP/1.1 503 ") || Instant::now() > deadline {
            break head;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let waited = started.elapsed();
    assert!(status.starts_with("HTTP/1.1 200 "), "{status}");
    // The silent ones are dropped after ADMIN_FIRST_BYTE (1 s), not after the 5 s request
    // limit and a 2 s lingering close.
    assert!(waited < Duration::from_secs(4), "served after {waited:?}");
    drop(silent);
}
