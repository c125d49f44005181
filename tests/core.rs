//! The chapter's demo and the core relay (issue: `cargo run`, round robin, full relay, error pages).

mod support;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

#[test]
fn rotation_over_three_backends_is_exact() {
    let s = Setup::new(3, |_| {});
    let pages: Vec<String> = s.demos.iter().map(|d| d.page().to_string()).collect();
    // A B C A B C
    for round in 0..2 {
        for (i, page) in pages.iter().enumerate() {
            let (status, body) = get(&s.url("/"));
            assert_eq!(status, 200);
            assert_eq!(&body, page, "round {round}, position {i}");
        }
    }
}

#[test]
fn chapter_pages_are_exact() {
    let s = Setup::new(2, |_| {});
    assert_eq!(
        get(&s.url("/")).1,
        "<h1 style='color:red;'>Red Server - Server 1</h1>"
    );
    assert_eq!(
        get(&s.url("/")).1,
        "<h1 style='color:blue;'>Blue Server - Server 2</h1>"
    );
}

#[test]
fn every_method_with_a_body_reaches_the_backend() {
    let s = Setup::new(1, |_| {});
    let agent = agent();
    for method in ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let body = format!("payload for {method}");
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(s.url("/echo?x=1"))
            .body(body.clone())
            .unwrap();
        let mut resp = agent.run(req).unwrap();
        assert_eq!(resp.status(), 200, "{method}");
        let echo = resp.body_mut().read_to_string().unwrap();
        assert!(
            echo.starts_with(&format!("{method} /echo?x=1 HTTP/1.1\n")),
            "{echo}"
        );
        assert!(echo.ends_with(&format!("\n\n{body}")), "{method}: {echo}");
        assert!(echo.contains("X-Forwarded-For: 127.0.0.1\n"), "{echo}");
        let via = format!("Via: {}\n", s.lb.shared().via);
        assert!(echo.contains(&via), "{echo}");
    }
    let (status, echo) = get(&s.url("/echo"));
    assert_eq!(status, 200);
    assert!(echo.starts_with("GET /echo HTTP/1.1\n"));
    // A method nobody registered (WebDAV's PROPFIND) is relayed too.
    let mut c = RawConn::open(s.addr());
    c.send(b"PROPFIND /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n<a/>\n");
    let (head, body) = c.response();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        String::from_utf8(body)
            .unwrap()
            .starts_with("PROPFIND /echo HTTP/1.1\n")
    );
}

#[test]
fn statuses_and_custom_headers_are_relayed() {
    let backend = ScriptedBackend::start(|mut s| {
        while let Some(head) = read_head(&mut s) {
            let code = &head[5..8];
            let reply = format!(
                "HTTP/1.1 {code} Custom Reason\r\nX-Custom: yes\r\nServer: scripted\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Length: 4\r\n\r\nbody"
            );
            if s.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    });
    let lb = load_balancer::server::Balancer::start(config(&[backend.url()])).unwrap();
    for code in ["201", "404", "500"] {
        let mut c = connect(lb.addr());
        c.write_all(format!("GET /{code} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let (head, body) = read_response(&mut c);
        assert!(
            head.starts_with(&format!("HTTP/1.1 {code} Custom Reason\r\n")),
            "{head}"
        );
        assert!(head.contains("X-Custom: yes\r\n"), "{head}");
        assert_eq!(
            head.matches("Server:").count(),
            1,
            "no duplicated Server: {head}"
        );
        assert_eq!(
            head.matches("Date:").count(),
            1,
            "no duplicated Date: {head}"
        );
        assert_eq!(body, b"body");
    }
}

#[test]
fn dead_backend_gets_a_502_page() {
    let lb = load_balancer::server::Balancer::start(config(&[dead_addr()])).unwrap();
    let mut c = connect(lb.addr());
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (head, body) = read_response(&mut c);
    assert!(head.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{head}");
    assert!(head.contains("Content-Type: text/html"), "{head}");
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.contains("502 Bad Gateway") && body.contains("connection refused"),
        "{body}"
    );
}

#[test]
fn fifty_parallel_clients_are_all_answered() {
    let s = Setup::new(2, |_| {});
    let url = s.url("/");
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || get(&url))
        })
        .collect();
    let mut red = 0;
    for h in handles {
        let (status, body) = h.join().unwrap();
        assert_eq!(status, 200);
        red += usize::from(body.contains("Red"));
    }
    assert_eq!(red, 25, "round robin splits 50 requests evenly");
}

#[test]
fn an_idle_connection_does_not_delay_another_client() {
    let s = Setup::new(1, |_| {});
    // One client connects and sends half a request, then nothing.
    let mut idle = connect(s.addr());
    idle.write_all(b"GET / HTTP/1.1\r\nHost:").unwrap();
    let started = Instant::now();
    let (status, _) = get(&s.url("/"));
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the second client waited for the first"
    );
}

#[test]
fn head_gets_no_body() {
    let s = Setup::new(1, |_| {});
    let mut c = RawConn::open(s.addr());
    c.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = c.response_to("HEAD");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Length: 49"),
        "HEAD keeps the length of the GET body: {head}"
    );
    assert!(body.is_empty());
    // The next response on the same connection starts right after the head.
    let (head, body) = c.response();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(body, s.demos[0].page().as_bytes());
}

#[test]
fn flag_errors_exit_2_and_name_the_flag() {
    let bin = env!("CARGO_BIN_EXE_load-balancer");
    for (args, needle) in [
        (&["--bogus"][..], "--bogus"),
        (&["--listen"], "--listen"),
        (&["--backend", "ftp://x:1"], "--backend"),
        (&["--connect-timeout", "soon"], "--connect-timeout"),
    ] {
        let out = Command::new(bin).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle) && err.contains("Usage:"),
            "{args:?}: {err}"
        );
    }
    let out = Command::new(bin).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--backend"));
}

#[test]
fn port_in_use_exits_1_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_load-balancer"))
        .args([
            "--listen",
            &addr,
            "--backend",
            "http://127.0.0.1:1",
            "--admin",
            "off",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&addr));
}
