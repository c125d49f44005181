//! The admin listener against a rebinding page, silent sockets and a loop (issue 11, items 4,
//! 5 and 6): every request must name it by an IP address or `localhost`, silent connections
//! do not lock the operator out, and the balancer cannot be made its own backend.

use crate::support::*;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One demo backend behind a balancer with an admin listener.
fn setup() -> Setup {
    Setup::new(1, with_admin)
}

/// The token sent with every request of these tests (a change on TCP needs one; listeners
/// without a token ignore it).
const TOKEN: &str = "t0k";

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
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let (head, body) = c.response();
    (head, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn every_admin_request_must_name_the_listener_by_address_or_localhost() {
    let s = setup();
    let admin = admin_addr(&s.lb);
    let port = admin.port();
    for path in ["/status.json", "/metrics", "/backends"] {
        // A rebinding page's same-origin GET: no Origin, but its own name in Host.
        for host in ["evil.example", &format!("evil.example:{port}")] {
            let (head, body) = request(admin, "GET", path, host, "");
            assert!(head.starts_with("HTTP/1.1 421 "), "{path} {host}: {head}");
            assert!(!body.contains("127.0.0.1:"), "{path} leaked: {body}");
        }
        for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
            let (head, _) = request(admin, "GET", path, &host, "");
            assert!(head.starts_with("HTTP/1.1 200 "), "{path} {host}: {head}");
        }
    }
    // Changes too, and before the backend list is touched.
    let (head, _) = request(admin, "POST", "/backends/0/drain", "evil.example", "");
    assert!(head.starts_with("HTTP/1.1 421 "), "{head}");
    assert!(!backend(&s.lb, 0).is_draining());
}

#[test]
fn the_name_given_with_admin_is_accepted_too() {
    let s = Setup::new(1, |c| {
        with_admin(c);
        c.admin_name = Some("ops.internal".into());
    });
    let admin = admin_addr(&s.lb);
    let (head, _) = request(admin, "GET", "/status.json", "ops.internal:9001", "");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let (head, _) = request(admin, "GET", "/status.json", "evil.example", "");
    assert!(head.starts_with("HTTP/1.1 421 "), "{head}");
}

#[test]
fn the_api_refuses_a_backend_that_is_the_balancer_itself() {
    let s = Setup::new(1, |c| {
        with_admin(c);
        c.admin_token = Some(TOKEN.into());
    });
    let admin = admin_addr(&s.lb);
    let host = admin.to_string();
    let own = format!("url=http://{}", s.addr());
    let (head, body) = request(admin, "POST", "/backends", &host, &own);
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert!(body.contains("own listener"), "{body}");
    assert_eq!(backends(&s.lb).len(), 1, "not added");
    // Another address is still taken.
    let dead = DeadPort::new();
    let other = format!("url={}", dead.url());
    let (head, _) = request(admin, "POST", "/backends", &host, &other);
    assert!(head.starts_with("HTTP/1.1 201 "), "{head}");
}

#[test]
fn silent_sockets_do_not_lock_the_operator_out() {
    let s = setup();
    let admin = admin_addr(&s.lb);
    // More silent connections than the admin listener serves at once
    // (MAX_ADMIN_CONNECTIONS, 32), kept open by this test until its end.
    let silent: Vec<TcpStream> = (0..40).map(|_| connect(admin)).collect();
    let started = Instant::now();
    let mut status = String::new();
    wait_for(
        Duration::from_secs(15),
        "an answer other than 503 from the admin listener",
        || {
            status = request(admin, "GET", "/status.json", &admin.to_string(), "").0;
            !status.starts_with("HTTP/1.1 503 ")
        },
    );
    let waited = started.elapsed();
    assert!(status.starts_with("HTTP/1.1 200 "), "{status}");
    // The silent ones are dropped after ADMIN_FIRST_BYTE (1 s), not after the 5 s request
    // limit and a 2 s lingering close.
    assert!(waited < Duration::from_secs(4), "served after {waited:?}");
    drop(silent);
}
