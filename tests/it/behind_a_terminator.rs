//! Behind a TLS terminator or an L4 balancer: `--trusted-proxy` (the forwarding fields of a
//! trusted peer are believed) and `--proxy-protocol` (each connection opens with a PROXY
//! header naming the client).
//!
//! Every test client connects from 127.0.0.1 (std cannot bind a client socket to another
//! loopback address), so the real client is what the trusted hop's fields or the PROXY
//! header say, and the tests check what the backend, the access log and ip-hash make of it.

use crate::support::process::Launch;
use crate::support::*;
use load_balancer::proxy::trust::Cidr;
use std::io::Write;
use std::time::Duration;

/// A balancer over one recording backend, configured by `tweak`.
fn behind(tweak: impl FnOnce(&mut Config)) -> (Recorder, Balancer) {
    let backend = Recorder::start(|_, _| Reply::ok("ok"));
    let mut c = config(&[backend.url()]);
    tweak(&mut c);
    (backend, start(c))
}

fn trust(c: &mut Config, ranges: &[&str]) {
    c.trusted_proxies = ranges.iter().map(|r| Cidr::parse(r).unwrap()).collect();
}

/// The forwarding fields of a head, one line each, in a fixed order.
fn forwarding(head: &str) -> [String; 5] {
    [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-real-ip",
        "forwarded",
    ]
    .map(|name| fields(head, name).join(" | "))
}

/// Sends one GET with `extra` fields on a connection of its own; returns the forwarding
/// fields the backend saw.
fn seen_for(lb: &Balancer, backend: &Recorder, extra: &str) -> [String; 5] {
    let before = backend.count();
    let answer = exchange(
        lb.addr(),
        format!("GET / HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n{extra}\r\n")
            .as_bytes(),
    );
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(backend.count(), before + 1);
    forwarding(&backend.last().0)
}

const FORGED: &str = "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n\
                      X-Forwarded-Host: evil.example\r\nX-Real-IP: 6.6.6.6\r\n\
                      Forwarded: for=6.6.6.6;proto=https\r\n";

#[test]
fn forged_fields_from_an_untrusted_peer_change_nothing() {
    let plain = [
        "6.6.6.6, 127.0.0.1",
        "http",
        "shop.example",
        "127.0.0.1",
        "for=127.0.0.1;host=\"shop.example\";proto=http",
    ]
    .map(String::from);
    // No --trusted-proxy at all, and one that does not hold the peer.
    for ranges in [&[][..], &["10.0.0.0/8", "::1"]] {
        let (backend, lb) = behind(|c| trust(c, ranges));
        assert_eq!(
            seen_for(&lb, &backend, FORGED),
            plain,
            "trusting {ranges:?}"
        );
    }
}

#[test]
fn a_trusted_terminator_names_the_client_the_scheme_and_the_host() {
    let (backend, lb) = behind(|c| trust(c, &["127.0.0.1/32", "10.0.0.0/8"]));
    let terminator = "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n\
                      X-Forwarded-Host: shop.example:443\r\n";
    assert_eq!(
        seen_for(&lb, &backend, terminator),
        [
            "203.0.113.9, 127.0.0.1",
            "https",
            "shop.example:443",
            "203.0.113.9",
            "for=203.0.113.9;host=\"shop.example:443\";proto=https",
        ]
        .map(String::from)
    );
    // Chains of one, two and three hops (10.x are trusted hops), with the client's own
    // forged entries left of the real client and an untrusted entry between trusted ones.
    for (xff, client) in [
        ("198.51.100.1", "198.51.100.1"),
        ("6.6.6.6, 198.51.100.2, 10.0.0.2", "198.51.100.2"),
        ("6.6.6.6, 198.51.100.3, 10.1.0.1, 10.0.0.2", "198.51.100.3"),
        ("198.51.100.4, 6.6.6.6, 10.0.0.2", "6.6.6.6"),
        ("2001:db8::5, 10.0.0.2", "2001:db8::5"),
        ("unknown, 10.0.0.2", "10.0.0.2"),
    ] {
        let seen = seen_for(&lb, &backend, &format!("X-Forwarded-For: {xff}\r\n"));
        assert_eq!(
            seen[0],
            format!("{xff}, 127.0.0.1"),
            "appended with the peer"
        );
        assert_eq!(seen[1], "http", "no scheme reported: the connection's");
        assert_eq!(seen[3], client, "{xff}");
    }
    // The client's address in Forwarded is bracketed and quoted when it is IPv6.
    let seen = seen_for(
        &lb,
        &backend,
        "Forwarded: for=\"[2001:db8::7]:4711\";proto=https\r\n",
    );
    assert_eq!(seen[1], "https");
    assert_eq!(
        seen[4],
        "for=\"[2001:db8::7]\";host=\"shop.example\";proto=https"
    );
}

#[test]
fn ip_hash_spreads_clients_by_the_address_a_trusted_hop_names() {
    let setup = Setup::new(3, |c| {
        set_strategy(c, "ip-hash");
        trust(c, &["127.0.0.1"]);
    });
    let agent = agent();
    let served = |client: &str| {
        let response = agent
            .get(&setup.url("/"))
            .header("X-Forwarded-For", client)
            .call()
            .unwrap();
        setup.served(&response.into_body().read_to_string().unwrap())
    };
    let mut used = [false; 3];
    for n in 1..=30 {
        let client = format!("198.51.100.{n}");
        let first = served(&client);
        assert_eq!(served(&client), first, "{client} moved");
        used[first] = true;
    }
    assert_eq!(
        used, [true; 3],
        "30 clients, all on the backends they hash to"
    );
    // Untrusted, the same fields pick nothing: every request is the peer's.
    let setup = Setup::new(3, |c| set_strategy(c, "ip-hash"));
    let picks: std::collections::BTreeSet<_> = (1..=10)
        .map(|n| {
            let response = agent
                .get(&setup.url("/"))
                .header("X-Forwarded-For", &format!("198.51.100.{n}"))
                .call()
                .unwrap();
            setup.served(&response.into_body().read_to_string().unwrap())
        })
        .collect();
    assert_eq!(
        picks.len(),
        1,
        "spoofed addresses moved an untrusted client"
    );
}

#[test]
fn the_access_log_names_the_client_a_trusted_hop_names() {
    let backend = Recorder::start(|_, _| Reply::ok("ok"));
    let mut lb = Launch::over(&backend.url())
        .args(&["--trusted-proxy", "127.0.0.1/32"])
        .start();
    let request = "GET /logged HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                   X-Forwarded-For: 6.6.6.6, 203.0.113.9\r\nX-Forwarded-Proto: https\r\n\r\n";
    assert_eq!(status_of(&exchange(lb.addr, request.as_bytes())), 200);
    let line = lb.line_with("\"GET /logged HTTP/1.1\"");
    assert!(line.starts_with("203.0.113.9 - - ["), "{line}");
    // A forged field from an untrusted peer is not logged.
    let mut lb = Launch::over(&backend.url()).start();
    let request = "GET /forged HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                   X-Forwarded-For: 6.6.6.6\r\n\r\n";
    assert_eq!(status_of(&exchange(lb.addr, request.as_bytes())), 200);
    let line = lb.line_with("\"GET /forged HTTP/1.1\"");
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
}

#[test]
fn the_status_page_shows_the_client_a_trusted_hop_names() {
    let backend = Recorder::start(|_, _| Reply::ok("ok"));
    let mut c = config(&[backend.url()]);
    with_admin(&mut c);
    trust(&mut c, &["127.0.0.1"]);
    let lb = start(c);
    let request = "GET /seen HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                   X-Forwarded-For: 203.0.113.9\r\n\r\n";
    assert_eq!(status_of(&exchange(lb.addr(), request.as_bytes())), 200);
    let (status, json) = get(&admin_url(&lb, "/status.json"));
    assert_eq!(status, 200);
    assert!(
        json.contains("\"client\":\"203.0.113.9\",\"request\":\"GET /seen\""),
        "{json}"
    );
    let (_, html) = get(&admin_url(&lb, "/status"));
    assert!(html.contains("<td class=\"l\">203.0.113.9</td>"), "{html}");
}

#[test]
fn bad_trusted_proxy_flags_are_named() {
    for (value, why) in [
        ("10.0.0.1/8", "written 10.0.0.0/8"),
        ("localhost", "not an IPv4 or IPv6 address"),
        ("::/129", "from 0 to 128"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_load-balancer"))
            .args(["--trusted-proxy", value])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{value}: {stderr}");
        assert!(
            stderr.contains(&format!("--trusted-proxy {value}: ")),
            "{stderr}"
        );
        assert!(stderr.contains(why), "{value}: {stderr}");
    }
}

// --- the PROXY protocol -------------------------------------------------------------------

/// A v2 header: PROXY over TCP/IPv4 from `src` (a.b.c.d, port) to 127.0.0.1:443, with the
/// SSL TLV (client flag set) when `ssl`.
fn v2_ipv4(src: [u8; 4], port: u16, ssl: bool) -> Vec<u8> {
    let mut body = src.to_vec();
    body.extend_from_slice(&[127, 0, 0, 1]);
    body.extend_from_slice(&port.to_be_bytes());
    body.extend_from_slice(&443u16.to_be_bytes());
    if ssl {
        body.extend_from_slice(&[0x20, 0x00, 0x05, 0x01, 0, 0, 0, 0]);
    }
    v2(0x21, 0x11, &body)
}

fn v2(ver_cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[ver_cmd, family]);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n";

/// Sends `bytes` in `pieces` writes of about equal size, then reads until the close.
fn send_in_pieces(lb: &Balancer, bytes: &[u8], pieces: usize) -> String {
    let mut s = connect(lb.addr());
    for piece in bytes.chunks(bytes.len().div_ceil(pieces)) {
        s.write_all(piece).unwrap();
        s.flush().unwrap();
    }
    String::from_utf8_lossy(&read_until_closed(&mut s)).into_owned()
}

#[test]
fn a_proxy_header_names_the_client_of_every_request_on_its_connection() {
    let (backend, lb) = behind(|c| c.proxy_protocol = true);
    let ipv6_v1 = b"PROXY TCP6 2001:db8::9 ::1 40000 443\r\n".to_vec();
    let local = v2(0x20, 0x11, &[1; 12]);
    let unspec = v2(0x21, 0x00, &[]);
    for (name, header, client, proto) in [
        (
            "v1",
            b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 443\r\n".to_vec(),
            "203.0.113.9",
            "http",
        ),
        ("v1 ipv6", ipv6_v1, "2001:db8::9", "http"),
        (
            "v1 unknown",
            b"PROXY UNKNOWN\r\n".to_vec(),
            "127.0.0.1",
            "http",
        ),
        (
            "v2",
            v2_ipv4([203, 0, 113, 10], 40000, false),
            "203.0.113.10",
            "http",
        ),
        (
            "v2 ssl",
            v2_ipv4([203, 0, 113, 11], 40000, true),
            "203.0.113.11",
            "https",
        ),
        ("v2 local", local, "127.0.0.1", "http"),
        ("v2 unspec", unspec, "127.0.0.1", "http"),
    ] {
        // Header and request in one write, in three, and byte by byte.
        let whole = [&header[..], GET].concat();
        for pieces in [1, 3, whole.len()] {
            let answer = send_in_pieces(&lb, &whole, pieces);
            assert_eq!(status_of(&answer), 200, "{name} in {pieces}: {answer}");
            let seen = forwarding(&backend.last().0);
            assert_eq!(
                seen[0], client,
                "{name} in {pieces}: appended to X-Forwarded-For"
            );
            assert_eq!(seen[1], proto, "{name} in {pieces}");
            assert_eq!(seen[3], client, "{name} in {pieces}");
        }
    }
    // Requests pipelined right behind the header, in its write: both are the client's.
    let mut conn = RawConn::open(lb.addr());
    let keep = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n";
    conn.send(&[&v2_ipv4([198, 51, 100, 7], 1234, true)[..], keep].concat());
    for _ in 0..2 {
        assert_eq!(status_of(&conn.response().0), 200);
    }
    let heads = backend.heads();
    for head in &heads[heads.len() - 2..] {
        assert_eq!(fields(head, "x-real-ip"), ["198.51.100.7"], "{head}");
        assert_eq!(fields(head, "x-forwarded-proto"), ["https"], "{head}");
    }
}

#[test]
fn without_a_valid_proxy_header_nothing_is_forwarded() {
    let (backend, lb) = behind(|c| {
        c.proxy_protocol = true;
        c.header_timeout = Duration::from_millis(500);
    });
    for (name, bytes) in [
        ("plain http", GET.to_vec()),
        (
            "forged fields",
            [b"GET / HTTP/1.1\r\nHost: x\r\n", FORGED.as_bytes(), b"\r\n"].concat(),
        ),
        (
            "bad v1",
            [&b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"[..], GET].concat(),
        ),
        (
            "bad v2 version",
            [&v2(0x11, 0x11, &[0; 12])[..], GET].concat(),
        ),
        (
            "v2 too long",
            [&b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff"[..], GET].concat(),
        ),
        ("cut short", b"PROXY TCP4 1.2.3.4 5.6".to_vec()),
    ] {
        // Closed without an answer (a cut-short header after --header-timeout).
        let mut s = connect(lb.addr());
        s.write_all(&bytes).unwrap();
        let mut answer = Vec::new();
        try_read_until_closed(&mut s, &mut answer).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            answer.is_empty(),
            "{name}: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert_eq!(
        backend.count(),
        0,
        "a request without a PROXY header was forwarded"
    );
    assert_eq!(attempts_total(&lb), 0);
}

#[test]
fn with_trusted_proxies_only_they_may_send_a_proxy_header() {
    let header = [&b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 443\r\n"[..], GET].concat();
    // The test's peer, 127.0.0.1, is not in 10.0.0.0/8: closed unread.
    let (backend, lb) = behind(|c| {
        c.proxy_protocol = true;
        trust(c, &["10.0.0.0/8"]);
    });
    let mut s = connect(lb.addr());
    s.write_all(&header).unwrap();
    assert!(read_until_closed(&mut s).is_empty());
    assert_eq!(backend.count(), 0);
    // In the range: believed. The client it names is not trusted, so that client's own
    // X-Forwarded-For is not.
    let (backend, lb) = behind(|c| {
        c.proxy_protocol = true;
        trust(c, &["127.0.0.1"]);
    });
    let forged = [
        &b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 443\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n",
        FORGED.as_bytes(),
        b"\r\n",
    ]
    .concat();
    assert_eq!(status_of(&send_in_pieces(&lb, &forged, 1)), 200);
    let seen = forwarding(&backend.last().0);
    assert_eq!(seen[0], "6.6.6.6, 203.0.113.9");
    assert_eq!(&seen[1..4], ["http", "shop.example", "203.0.113.9"]);
}

#[test]
fn ip_hash_spreads_clients_by_their_proxy_header() {
    let setup = Setup::new(3, |c| {
        set_strategy(c, "ip-hash");
        c.proxy_protocol = true;
    });
    let served = |client: u8| {
        let header = format!("PROXY TCP4 198.51.100.{client} 127.0.0.1 5000 80\r\n");
        let answer = send_in_pieces(&setup.lb, &[header.as_bytes(), GET].concat(), 1);
        setup.served(split_answer(&answer).1)
    };
    let mut used = [false; 3];
    for n in 1..=30 {
        let first = served(n);
        assert_eq!(served(n), first, "client {n} moved");
        used[first] = true;
    }
    assert_eq!(used, [true; 3]);
}
