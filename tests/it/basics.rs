//! The chapter's demo and the core relay: `cargo run` end to end, round robin, a full relay of
//! methods, statuses and headers, error pages for dead backends, flag errors.

use crate::support::process::{Launch, PROCESS_WAIT, url_in};
use crate::support::*;
use std::io::{ErrorKind, Write};
use std::process::Command;
use std::time::Duration;

#[test]
fn the_default_demo_runs_end_to_end_on_free_ports() {
    // `cargo run` with free ports instead of 9000, 8001 and 8002.
    let mut lb = Launch::demo().start();
    let red = lb.line_with("[Backend] Red Server started at http://");
    let blue = lb.line_with("[Backend] Blue Server started at http://");
    let (red, blue) = (url_in(&red).to_string(), url_in(&blue).to_string());
    assert_ne!(red, blue);
    let running = lb.line_with("[LoadBalancer] Running at http://");
    assert_eq!(
        running,
        format!("[LoadBalancer] Running at http://{} (round-robin)", lb.addr)
    );
    // Each demo backend answers on its own port with its page...
    assert_eq!(get(&format!("{red}/")), (200, load_balancer::demo::page(0)));
    assert_eq!(
        get(&format!("{blue}/")),
        (200, load_balancer::demo::page(1))
    );
    // ...and the balancer alternates between them, Red first.
    let bodies: Vec<String> = (0..4)
        .map(|_| {
            let (status, body) = get(&format!("http://{}/", lb.addr));
            assert_eq!(status, 200);
            body
        })
        .collect();
    let (r, b) = (load_balancer::demo::page(0), load_balancer::demo::page(1));
    assert_eq!(bodies, [r.clone(), b.clone(), r, b]);
    lb.signal("TERM");
    assert_eq!(lb.exit_within(PROCESS_WAIT).code(), Some(0));
    let summary = lb.line_with("[LoadBalancer] Stopped:");
    assert!(
        summary.starts_with("[LoadBalancer] Stopped: 4 requests on "),
        "{summary}"
    );
}

#[test]
fn rotation_over_three_backends_is_exact() {
    let s = Setup::new(3, |_| {});
    let pages = s.pages();
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
        get(&s.url("/")),
        (
            200,
            "<h1 style='color:red;'>Red Server - Server 1</h1>".to_string()
        )
    );
    assert_eq!(
        get(&s.url("/")),
        (
            200,
            "<h1 style='color:blue;'>Blue Server - Server 2</h1>".to_string()
        )
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
    assert!(echo.starts_with("GET /echo HTTP/1.1\n"), "{echo}");
    // A method nobody registered (WebDAV's PROPFIND) is relayed too.
    let mut c = RawConn::open(s.addr());
    c.send(b"PROPFIND /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n<a/>\n");
    let (head, body) = c.response();
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    let body = String::from_utf8(body).unwrap();
    assert!(body.starts_with("PROPFIND /echo HTTP/1.1\n"), "{body}");
    assert!(body.ends_with("\n\n<a/>\n"), "{body}");
}

#[test]
fn statuses_and_custom_headers_are_relayed() {
    let backend = Recorder::start(|(head, _), _| {
        let code = &target_of(head)[1..];
        Reply::bytes(
            format!(
                "HTTP/1.1 {code} Custom Reason\r\nX-Custom: yes\r\nServer: scripted\r\n\
                 Date: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Length: 4\r\n\r\nbody"
            )
            .as_bytes(),
        )
    });
    let lb = start_over(&[backend.url()]);
    for code in ["201", "404", "500"] {
        let mut c = connect(lb.addr());
        c.write_all(format!("GET /{code} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let (head, body) = read_response(&mut c);
        assert_eq!(
            status_line(&head),
            format!("HTTP/1.1 {code} Custom Reason"),
            "{head}"
        );
        assert_eq!(fields(&head, "x-custom"), ["yes"], "{head}");
        assert_eq!(fields(&head, "server"), ["scripted"], "{head}");
        assert_eq!(
            fields(&head, "date"),
            ["Thu, 01 Jan 1970 00:00:00 GMT"],
            "{head}"
        );
        assert_eq!(body, b"body");
    }
}

#[test]
fn dead_backend_gets_a_502_page() {
    let dead = DeadPort::new();
    let lb = start_over(&[dead.url()]);
    let mut c = connect(lb.addr());
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (head, body) = read_response(&mut c);
    assert_page(&head, &body, "502 Bad Gateway", "connection refused");
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
    let mut served = [0; 2];
    for h in handles {
        let (status, body) = h.join().unwrap();
        assert_eq!(status, 200);
        served[s.served(&body)] += 1;
    }
    assert_eq!(served, [25, 25], "round robin splits 50 requests evenly");
}

#[test]
fn an_idle_connection_does_not_delay_another_client() {
    // One client connects and sends half a request, then nothing; the head timeout is far
    // longer than the test, so the other client is served while the first one still waits.
    let s = Setup::new(1, |c| c.header_timeout = Duration::from_secs(60));
    let mut idle = connect(s.addr());
    idle.write_all(b"GET / HTTP/1.1\r\nHost:").unwrap();
    wait_for(Duration::from_secs(10), "the idle client accepted", || {
        open_connections(&s.lb) == 1
    });
    assert_eq!(get(&s.url("/")), (200, s.demos[0].page().to_string()));
    // The first client is still waiting, unanswered: the head timeout has not run out.
    idle.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let still = std::io::Read::read(&mut idle, &mut buf);
    assert_eq!(
        still.map_err(|e| e.kind()),
        Err(ErrorKind::WouldBlock),
        "the idle client was answered or closed"
    );
}

#[test]
fn head_gets_no_body() {
    let s = Setup::new(1, |_| {});
    let mut c = RawConn::open(s.addr());
    c.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = c.response_to("HEAD");
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    assert_eq!(
        fields(&head, "content-length"),
        [s.demos[0].page().len().to_string()],
        "HEAD keeps the length of the GET body: {head}"
    );
    assert!(body.is_empty());
    // The next response on the same connection starts right after the head.
    let (head, body) = c.response();
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
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
        (&["--demo-port", "70000"], "--demo-port"),
    ] {
        let out = Command::new(bin).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error: ") && err.contains(needle) && err.contains("Usage:"),
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
    let dead = DeadPort::new();
    let out = Command::new(env!("CARGO_BIN_EXE_load-balancer"))
        .args([
            "--listen",
            &addr,
            "--backend",
            &dead.url(),
            "--admin",
            "off",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&addr));
}
