//! The guide's steps, shown (`load_balancer::guide`). Each `stepN_` test runs one scenario
//! twice: against the chapter's one-file balancer (`src/bin/chapter.rs`), asserting what the
//! step's page says goes wrong there, and against the crate's `load-balancer` binary,
//! asserting that it is fixed. Both run as real processes on ports the system picks, and the
//! tests read the ports from their start-up lines.
//!
//! These tests look at `chapter.rs` as the chapter wrote it, never at the learner's copy: the
//! exercises at the end of each page are in `exercises.rs`.

use crate::support::chapter::*;
use crate::support::process::url_in;
use crate::support::{
    DeadPort, HungBackend, NoResponse, RawConn, TestBackend, connect, get, get_raw, request,
    wait_for,
};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long a test watches for something that should not happen (an answer from the chapter's
/// balancer). Three times the crate's shortened timeouts below, whose answers come well within.
const WATCH: Duration = Duration::from_secs(1);
/// The crate's timeouts in these tests: its defaults (10 s for a request head, 30 s for a
/// silent backend) made short, so that the tests are quick.
const SHORT: &str = "300ms";

/// Requests the crate refuses, with the status it answers.
const MALFORMED: &[(&[u8], u16)] = &[
    (b"GET / HTTP/9.9\r\nHost: lb\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: lb\r\nNo colon here\r\n\r\n", 400),
    (b"GET /a\0b HTTP/1.1\r\nHost: lb\r\n\r\n", 400),
    (
        b"GET / HTTP/1.1\r\nHost: lb\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
];

// ---------------------------------------------------------------------------------------------
// The chapter in one file.

#[test]
fn the_chapter_file_is_small_and_standalone() {
    let source = include_str!("../../src/bin/chapter.rs");
    let code = source
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .count();
    assert!(code <= 200, "{code} lines of code");
    assert!(!source.contains("use load_balancer"));
    assert!(!source.contains("unsafe"));
}

#[test]
fn the_chapter_behaves_as_the_chapter() {
    let mut chapter = the_chapter(&[]);
    let started: Vec<&String> = chapter.seen().iter().take(3).collect();
    for line in &started[..2] {
        assert!(
            line.starts_with("[Backend] Server started at http://localhost:"),
            "{line}"
        );
    }
    assert!(started[2].starts_with("[LoadBalancer] Running at http://localhost:"));
    let red = url_in(started[0]).to_string();
    let blue = url_in(started[1]).to_string();
    assert_eq!(get(&chapter.url("/")), (200, RED.to_string()));
    // The icon is answered by the balancer, and takes no turn.
    let icon = request(chapter.addr, &get_raw("/favicon.ico")).unwrap();
    assert_eq!((icon.status, icon.body.as_str()), (204, ""), "{icon:?}");
    assert_eq!(get(&chapter.url("/page")), (200, BLUE.to_string()));
    assert_eq!(get(&chapter.url("/")), (200, RED.to_string()));
    chapter.line_with(&format!("[LoadBalancer] Routing path '/' to {red}"));
    chapter.line_with(&format!("[LoadBalancer] Routing path '/page' to {blue}"));
    assert!(
        !chapter.seen().iter().any(|l| l.contains("favicon")),
        "{:?}",
        chapter.seen()
    );
}

#[test]
fn step1_a_slow_client() {
    // chapter.rs: a thread each, so the other client is served; the quiet one holds its
    // thread and hears nothing.
    let chapter = the_chapter(&[]);
    let (other, quiet) = quiet_client_then_another(chapter.addr, WATCH);
    assert_eq!(other, (200, RED.to_string()));
    assert_eq!(
        quiet.unwrap_err(),
        NoResponse::Silent,
        "chapter.rs answers a half request with nothing, and keeps the connection"
    );

    // The crate: the same, and the quiet client gets 408 after --header-timeout.
    let lb = the_crate(&["--header-timeout", SHORT]);
    let started = Instant::now();
    let (other, quiet) = quiet_client_then_another(lb.addr, PATIENCE);
    assert_eq!(other, (200, RED.to_string()));
    let quiet = quiet.expect("the crate answers a quiet client");
    assert_eq!(quiet.status, 408, "{quiet:?}");
    assert!(quiet.closes(), "{quiet:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn step2_a_cap_on_connections() {
    // chapter.rs: every connection gets a thread, however many there are.
    let chapter = the_chapter(&[]);
    #[cfg(target_os = "linux")]
    let before = chapter.threads();
    let quiet: Vec<TcpStream> = (0..20).map(|_| connect(chapter.addr)).collect();
    #[cfg(target_os = "linux")]
    chapter.wait_for_threads(before + 20, PATIENCE);
    let answer = request(chapter.addr, &get_raw("/")).unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    drop(quiet);

    // The crate with --max-connections 4: four quiet connections fill it, the fifth is
    // turned away with 503 and Retry-After.
    let lb = the_crate(&["--max-connections", "4"]);
    let (quiet, fifth) = quiet_connections_then_one(lb.addr, 4);
    let fifth = fifth.expect("the crate answers past its cap");
    assert_eq!(fifth.status, 503, "{fifth:?}");
    assert_eq!(fifth.field("retry-after"), Some("1"), "{fifth:?}");
    assert!(fifth.body.contains("--max-connections"), "{fifth:?}");
    // Once one of them leaves, there is room again.
    drop(quiet);
    wait_for(PATIENCE, "room after the quiet clients left", || {
        request(lb.addr, &get_raw("/")).map(|r| r.status) == Ok(200)
    });
}

#[test]
fn step3_keep_alive() {
    // chapter.rs: one answer, then the connection is closed.
    let chapter = the_chapter(&[]);
    let (first, second) = two_requests_on_one_connection(chapter.addr);
    assert_eq!((first.status, first.body.as_str()), (200, RED));
    assert!(first.closes(), "{first:?}");
    assert_eq!(second.unwrap_err(), NoResponse::Closed);

    // The crate: both answered on the one connection, which stays open.
    let lb = the_crate(&[]);
    let (first, second) = two_requests_on_one_connection(lb.addr);
    let second = second.unwrap();
    assert_eq!((first.status, first.body.as_str()), (200, RED));
    assert_eq!((second.status, second.body.as_str()), (200, BLUE));
    assert!(!first.closes() && !second.closes(), "{first:?} {second:?}");
}

#[test]
fn step4_methods_headers_and_bodies() {
    // chapter.rs, with the test's backend in Blue's place (the second turn): the cookie
    // does not reach it, and a POST is not passed on at all.
    let backend = TestBackend::new();
    let port = backend.port();
    let chapter = the_chapter(&["--blue-down", "--blue", &port]);
    assert_eq!(request(chapter.addr, WITH_COOKIE).unwrap().body, RED);
    assert_eq!(request(chapter.addr, WITH_COOKIE).unwrap().body, "done");
    let (head, _) = backend.next_request();
    assert!(head.starts_with("GET /who HTTP/1.0\r\n"), "{head}");
    assert!(!head.contains("Cookie"), "{head}");
    let post = request(chapter.addr, A_POST).unwrap();
    assert_eq!(post.status, 501, "{post:?}");
    assert!(
        backend.requests.try_recv().is_err(),
        "the POST went nowhere"
    );

    // The crate: the headers arrive (with X-Forwarded-For added), and so does the POST, body
    // and all.
    let backend = TestBackend::new();
    let lb = the_crate(&["--backend", &backend.url()]);
    assert_eq!(request(lb.addr, WITH_COOKIE).unwrap().body, "done");
    let (head, _) = backend.next_request();
    assert!(head.starts_with("GET /who HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nCookie: flavour=chocolate\r\n"), "{head}");
    assert!(
        head.contains("\r\nX-Forwarded-For: 127.0.0.1\r\n"),
        "{head}"
    );
    let post = request(lb.addr, A_POST).unwrap();
    assert_eq!((post.status, post.body.as_str()), (200, "done"));
    let (head, body) = backend.next_request();
    assert!(head.starts_with("POST /form HTTP/1.1\r\n"), "{head}");
    assert_eq!(body, b"name=red");
}

#[test]
fn step5_malformed_requests() {
    // chapter.rs looks at the request line's word count and the method, nothing else: all
    // of these reach a backend and come back 200.
    let chapter = the_chapter(&[]);
    for (raw, _) in MALFORMED {
        let answer = request(chapter.addr, raw).unwrap();
        assert_eq!(
            answer.status,
            200,
            "{:?}: {answer:?}",
            String::from_utf8_lossy(raw)
        );
    }
    // What it does catch, the crate catches too.
    assert_eq!(request(chapter.addr, b"HELLO\r\n\r\n").unwrap().status, 400);

    // The crate refuses each with the status RFC 9112 and 9110 name, and closes.
    let lb = the_crate(&[]);
    for (raw, status) in MALFORMED {
        let answer = request(lb.addr, raw).unwrap();
        assert_eq!(
            answer.status,
            *status,
            "{:?}: {answer:?}",
            String::from_utf8_lossy(raw)
        );
        assert!(answer.closes(), "{answer:?}");
    }
    assert_eq!(request(lb.addr, b"HELLO\r\n\r\n").unwrap().status, 400);
}

#[test]
fn step6_a_dead_backend() {
    // chapter.rs with Blue down: every second request gets the 502 page.
    let dead = DeadPort::new();
    let port = dead.addr().port().to_string();
    let chapter = the_chapter(&["--blue-down", "--blue", &port]);
    let answers = four_gets(chapter.addr);
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert_eq!(statuses, [200, 502, 200, 502]);
    assert!(answers[1].1.contains("502 Bad Gateway"), "{answers:?}");
    assert!(answers[1].1.contains("refused"), "{answers:?}");

    // The crate, with the dead backend first and one demo backend: the first request fails
    // over to Red, the dead one is taken out (--max-fails 1), and every request is served.
    let lb = the_crate(&[
        "--backend",
        &format!("http://127.0.0.1:{port}"),
        "--demo",
        "1",
    ]);
    let answers = four_gets(lb.addr);
    assert_eq!(answers, vec![(200, RED.to_string()); 4]);
}

// ---------------------------------------------------------------------------------------------
// Step 7: a hung backend.

#[test]
fn step7_a_hung_backend() {
    // chapter.rs with a hung server in Blue's place: the second request hears nothing (for
    // chapter.rs's TIMEOUT of 10 s; the test watches for one).
    let hung = HungBackend::new();
    let port = hung.port();
    let chapter = the_chapter(&["--blue-down", "--blue", &port]);
    assert_eq!(get(&chapter.url("/")), (200, RED.to_string()));
    let mut c = RawConn::open(chapter.addr);
    c.stream.set_read_timeout(Some(WATCH)).unwrap();
    c.send(&get_raw("/"));
    assert_eq!(
        c.try_response().unwrap_err(),
        NoResponse::Silent,
        "chapter.rs answers nothing, and keeps the connection"
    );

    // The crate, the hung backend first and Red second, --backend-timeout 300ms, and
    // --max-fails high enough that the hung one stays in the rotation: a request sent to the
    // hung backend gets its 504 after one timeout (it may have been acted on, so it is not
    // sent to Red as well), and the next request goes to Red without waiting.
    let url = format!("http://127.0.0.1:{port}");
    let lb = the_crate(&[
        "--backend",
        &url,
        "--demo",
        "1",
        "--backend-timeout",
        SHORT,
        "--max-fails",
        "100",
    ]);
    let started = Instant::now();
    assert_eq!(get(&lb.url("/")).0, 504);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(get(&lb.url("/")), (200, RED.to_string()));
    let post = request(lb.addr, A_POST).unwrap();
    assert_eq!(post.status, 504, "{post:?}");
}

#[cfg(unix)]
#[test]
fn step8_graceful_shutdown() {
    use std::os::unix::process::ExitStatusExt;

    // chapter.rs: a stop signal ends the process at once; the request in flight is cut. The
    // test sends SIGTERM: a test run started in the background by a shell inherits SIGINT
    // ignored, and chapter.rs, which installs no handler, would keep that (the crate's own
    // handler replaces it, so the crate's half of the test can send SIGINT).
    let backend = TestBackend::held();
    let port = backend.port();
    let mut chapter = the_chapter(&["--blue-down", "--blue", &port]);
    assert_eq!(get(&chapter.url("/")).1, RED);
    let client = request_in_flight(chapter.addr, &backend);
    chapter.signal("TERM");
    assert_eq!(
        chapter.exit_within(PATIENCE).signal(),
        Some(15),
        "killed by SIGTERM"
    );
    backend.release();
    assert_eq!(
        client.join().unwrap().unwrap_err(),
        NoResponse::Closed,
        "no answer, the connection closed"
    );

    // The crate: it stops taking connections, lets the request finish, says so, exits 0.
    let backend = TestBackend::held();
    let mut lb = the_crate(&["--backend", &backend.url(), "--drain-timeout", "5s"]);
    let client = request_in_flight(lb.addr, &backend);
    lb.signal("INT");
    lb.line_with("SIGINT: draining");
    backend.release();
    assert_finishes(client);
    assert_eq!(lb.exit_within(PATIENCE).code(), Some(0));
    let summary = lb.line_with("[LoadBalancer] Stopped:");
    assert!(summary.contains("Stopped: 1 requests "), "{summary}");
}
