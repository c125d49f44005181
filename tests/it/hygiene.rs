//! Header hygiene: hop-by-hop fields stay on their side of the balancer in both directions,
//! the forwarding fields are added, and an absolute-form target is rewritten to origin-form
//! without choosing where the request goes.

use crate::support::*;

const PLAIN: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Checks that no hop-by-hop field, nor `named` (a field the message's `Connection` named),
/// is in `head`, which reached `whom`.
fn assert_absent(head: &str, named: &str, whom: &str) {
    for gone in [
        "connection",
        named,
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ] {
        assert!(
            fields(head, gone).is_empty(),
            "{gone} reached {whom}: {head}"
        );
    }
}

#[test]
fn hop_by_hop_request_fields_do_not_reach_the_backend() {
    let b = Recorder::fixed(PLAIN);
    let lb = start_over(&[b.url()]);
    let mut c = RawConn::open(lb.addr());
    c.send(
        b"POST /p HTTP/1.1\r\nHost: site\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\n\
          Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
          Upgrade: h2c\r\nTransfer-Encoding: chunked\r\nX-Kept: yes\r\nTrailer: X-T\r\n\r\n\
          3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(c.response().1, b"ok");
    let (head, body) = b.last();
    assert_absent(&head, "x-secret", "the backend");
    // The body is re-framed by the balancer: one Transfer-Encoding, its own.
    assert_eq!(fields(&head, "transfer-encoding"), ["chunked"]);
    assert_eq!(body, b"3\r\nabc\r\n0\r\n\r\n");
    // End-to-end fields pass unchanged, in order.
    assert_eq!(fields(&head, "x-kept"), ["yes"]);
    assert_eq!(fields(&head, "trailer"), ["X-T"]);
    assert!(
        head.starts_with("POST /p HTTP/1.1\r\nHost: site\r\n"),
        "{head}"
    );
}

#[test]
fn hop_by_hop_response_fields_do_not_reach_the_client() {
    let b = Recorder::fixed(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal\r\nX-Internal: secret\r\n\
          Keep-Alive: timeout=5, max=100\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
          Upgrade: h2c\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok",
    );
    let lb = start_over(&[b.url()]);
    let mut c = RawConn::open(lb.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = c.response();
    assert_eq!(body, b"ok");
    assert_absent(&head, "x-internal", "the client");
    assert_eq!(fields(&head, "x-kept"), ["yes"]);
    assert_eq!(fields(&head, "content-length"), ["2"]);
}

#[test]
fn forwarding_fields_are_appended_and_set() {
    let b = Recorder::fixed(PLAIN);
    let lb = start_over(&[b.url()]);
    let mut c = RawConn::open(lb.addr());
    // A client without forwarding fields.
    c.send(b"GET /a HTTP/1.1\r\nHost: shop.example:8080\r\n\r\n");
    assert_eq!(c.response().1, b"ok");
    let (head, _) = b.last();
    assert_eq!(fields(&head, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(fields(&head, "x-forwarded-proto"), ["http"]);
    assert_eq!(fields(&head, "x-forwarded-host"), ["shop.example:8080"]);
    assert_eq!(fields(&head, "via"), [lb.shared().via.as_str()]);

    // A client behind other proxies: the chains grow; Proto and Host are ours, not claimed.
    c.send(
        b"GET /b HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 203.0.113.7\r\n\
          X-Forwarded-For: 198.51.100.1, 10.0.0.1\r\nVia: 1.0 fred\r\n\
          X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n\r\n",
    );
    assert_eq!(c.response().1, b"ok");
    let (head, _) = b.last();
    assert_eq!(
        fields(&head, "x-forwarded-for"),
        ["203.0.113.7, 198.51.100.1, 10.0.0.1, 127.0.0.1"]
    );
    let via = format!("1.0 fred, {}", lb.shared().via);
    assert_eq!(fields(&head, "via"), [via]);
    assert_eq!(fields(&head, "x-forwarded-proto"), ["http"]);
    assert_eq!(fields(&head, "x-forwarded-host"), ["shop.example"]);
}

#[test]
fn an_absolute_target_goes_to_a_configured_backend_in_origin_form() {
    let b = Recorder::fixed(PLAIN);
    let lb = start_over(&[b.url()]);
    // A target naming another server, here one that refuses: the balancer never goes there.
    let elsewhere = DeadPort::new();
    let cases = [
        (
            format!("GET {}/p?q=1 HTTP/1.1", elsewhere.url()),
            "GET /p?q=1 HTTP/1.1",
        ),
        ("GET http://evil.example HTTP/1.1".into(), "GET / HTTP/1.1"),
        (
            "GET HTTP://evil.example?x HTTP/1.1".into(),
            "GET /?x HTTP/1.1",
        ),
    ];
    for (line, want) in &cases {
        let mut c = RawConn::open(lb.addr());
        c.send(format!("{line}\r\nHost: ignored.example\r\n\r\n").as_bytes());
        let (head, body) = c.response();
        assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{line}: {head}");
        assert_eq!(body, b"ok");
        let (up, _) = b.last();
        assert!(up.starts_with(&format!("{want}\r\n")), "{line}: {up}");
        // Host is the target's authority (RFC 9112 section 3.2.2), once.
        let authority = line
            .split('/')
            .nth(2)
            .unwrap()
            .split(['?', ' '])
            .next()
            .unwrap();
        assert_eq!(fields(&up, "host"), [authority], "{up}");
        assert_eq!(fields(&up, "x-forwarded-host"), [authority], "{up}");
    }
    assert_eq!(
        b.count(),
        cases.len(),
        "every request reached the configured backend"
    );
}

#[test]
fn an_upgrade_header_alone_is_not_an_upgrade() {
    // `Upgrade` without `Connection: upgrade` is just a hop-by-hop field: dropped.
    let b = Recorder::fixed(PLAIN);
    let lb = start_over(&[b.url()]);
    let mut c = RawConn::open(lb.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n");
    let (head, body) = c.response();
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    assert_eq!(body, b"ok");
    let (head, _) = b.last();
    assert!(fields(&head, "upgrade").is_empty(), "{head}");
    assert!(fields(&head, "connection").is_empty(), "{head}");
}

#[test]
fn field_names_with_underscores_are_dropped() {
    // As nginx does by default: a CGI-style backend would read X_Forwarded_For as the
    // X-Forwarded-For the balancer sets, so the client could forge it.
    let b = Recorder::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let lb = start_over(&[b.url()]);
    let mut c = RawConn::open(lb.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX_Forwarded_For: 6.6.6.6\r\nX-Kept: yes\r\n\r\n");
    assert_eq!(status_line(&c.response().0), "HTTP/1.1 200 OK");
    let head = &b.heads()[0];
    assert!(
        !head.contains("6.6.6.6") && !head.contains("X_Forwarded_For"),
        "{head}"
    );
    assert_eq!(fields(head, "x-kept"), ["yes"], "{head}");
}
