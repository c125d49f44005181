//! The client connection after the balancer's own error answer: kept when it stands at the
//! start of the next request, closed when a body is still unread on it (those bytes are not
//! a request, and must never be read as one); and a failure on this machine (out of file
//! descriptors) is the balancer's `503`, no fault of the backend's.

use crate::support::process::Launch;
use crate::support::*;
use load_balancer::http::MAX_HEAD;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A backend that answers `/ok` with `200 fine`, and hangs up without a byte of answer on
/// any other request once it has read the whole of it. `heads` counts the request heads it
/// has read, as soon as each is read (before its body).
fn dies_unless_ok(heads: &Arc<AtomicUsize>) -> ScriptedBackend {
    let heads = Arc::clone(heads);
    ScriptedBackend::start(move |mut s| {
        while let Some(head) = read_head(&mut s) {
            heads.fetch_add(1, Ordering::SeqCst);
            let lower = head.to_ascii_lowercase();
            let len = header(&lower, "content-length").map_or(0, |v| v.parse().unwrap());
            let mut body = vec![0; len];
            if s.read_exact(&mut body).is_err() || target_of(&head) != "/ok" {
                return;
            }
            if !write_ok(&mut s, "fine") {
                return;
            }
        }
    })
}

/// A request hidden in a body: if the balancer read it as one, the client would get a
/// second answer.
const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

/// A POST to `target` whose Content-Length is that of [`SMUGGLED`], followed by `body`.
fn post_with_body(target: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        SMUGGLED.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// Reads the balancer's 502 for a backend that hung up, and checks it keeps the connection.
fn assert_kept_502(c: &mut RawConn, what: &str) {
    let head = assert_502_for_no_answer(c);
    assert!(fields(&head, "connection").is_empty(), "{what}: {head}");
}

/// Sends `GET /ok` on `c` and checks the backend's answer comes back: the connection was
/// kept, and nothing of an earlier request was left on it to be read as a request.
fn assert_next_request_served(c: &mut RawConn, what: &str) {
    c.send(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = c.response();
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{what}: {head}");
    assert_eq!(body, b"fine", "{what}");
}

#[test]
fn an_error_answer_keeps_a_connection_that_is_at_a_request_boundary() {
    let heads = Arc::new(AtomicUsize::new(0));
    let backend = dies_unless_ok(&heads);
    let lb = start_over(&[backend.url()]);
    let mut c = RawConn::open(lb.addr());

    // No body: the 502 leaves the connection at the next request.
    c.send(b"GET /die HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_kept_502(&mut c, "GET");
    assert_next_request_served(&mut c, "after a GET");

    // A body that came whole with the head: it is dropped with the request, not read as the
    // next one.
    c.send(&post_with_body("/die", SMUGGLED));
    assert_kept_502(&mut c, "POST with its body whole");
    assert_next_request_served(&mut c, "after a whole body");

    // A body streamed to the backend to its end before the backend hung up: the POST is
    // not sent again, and the connection is at the next request.
    let before = heads.load(Ordering::SeqCst);
    c.send(b"POST /die HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n");
    wait_for(Duration::from_secs(10), "the head at the backend", || {
        heads.load(Ordering::SeqCst) > before
    });
    c.send(b"hello");
    assert_kept_502(&mut c, "POST with its body streamed");
    assert_next_request_served(&mut c, "after a streamed body");
    assert_eq!(accepted(&lb), 1, "one client connection throughout");
}

#[test]
fn an_error_answer_before_the_body_was_read_closes_the_connection() {
    // The backend refuses connections: the POST fails before a byte of its body was read.
    // The body's bytes are still to come on the client connection, so the 502 says close,
    // and what follows is never read as a request, even when it looks like one.
    let dead = DeadPort::new();
    let lb = start_over(&[dead.url()]);
    let mut c = RawConn::open(lb.addr());
    c.send(&post_with_body("/", b""));
    let (head, body) = c.response();
    assert_page_framing(&head, &body, "502 Bad Gateway");
    assert_eq!(fields(&head, "connection"), ["close"], "{head}");
    // The balancer may already have closed; then this write may fail, which is fine.
    let _ = c.stream.write_all(SMUGGLED);
    c.expect_close();
}

/// The two lowest descriptor numbers free in process `pid`.
fn two_free_descriptors(pid: u32) -> (u64, u64) {
    let open: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let mut free = (0..).filter(|n| !open.contains(n));
    (free.next().unwrap(), free.next().unwrap())
}

/// Sets the open-file limit of process `pid` with util-linux's `prlimit` (`soft:hard`; the
/// hard limit is left as it was, since lowering it could not be undone without privilege).
fn limit_open_files(pid: u32, limit: &str) {
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={limit}")])
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success(), "prlimit --nofile={limit}");
}

#[cfg(target_os = "linux")]
#[test]
fn out_of_file_descriptors_is_a_503_and_no_fault_of_the_backend() {
    let backend = Recorder::echo_target();
    let mut lb = Launch::over(&backend.url())
        .args(&["--max-fails", "1"])
        .and_stderr()
        .start();
    let pid = lb.pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let was: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    let (soft, hard) = (was[0], was[1]);
    // Room for exactly one more descriptor: the client's connection takes it, and the
    // connection to the backend finds none (EMFILE).
    let (_, second) = two_free_descriptors(pid);
    limit_open_files(pid, &format!("{second}:{hard}"));
    let mut c = RawConn::open(lb.addr);
    c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = c.response();
    limit_open_files(pid, &format!("{soft}:{hard}"));
    assert_page(
        &head,
        &body,
        "503 Service Unavailable",
        "the balancer is out of local resources (file descriptors, ports or memory)",
    );
    assert_eq!(backend.count(), 0);
    // With room again, the next request on the same connection goes through.
    c.send(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = c.response();
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    assert_eq!(body, b"/b");
    // With --max-fails 1, one failure charged to the backend would have taken it out.
    lb.signal("TERM");
    lb.exit_within(PROCESS_WAIT_EXIT);
    assert!(lb.has_line("out of local resources"), "{:?}", lb.seen());
    assert!(!lb.has_line("is DOWN"), "{:?}", lb.seen());
}

/// How long the balancer may take to exit after SIGTERM with no request in flight.
const PROCESS_WAIT_EXIT: Duration = Duration::from_secs(10);

#[test]
fn a_client_that_resets_mid_body_gets_no_answer_and_no_timeout_blamed() {
    // A client that went away mid-body is gone (nginx logs 499), not slow: no 408 page is
    // written to it, and nothing is charged to the backend.
    let heads = Arc::new(AtomicUsize::new(0));
    let backend = dies_unless_ok(&heads);
    let lb = start_over(&[backend.url()]);
    let mut c = RawConn::open(lb.addr());
    c.send(b"POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n");
    // The interim answer arrives and is left unread, so closing the socket resets it.
    let mut byte = [0u8; 1];
    assert_eq!(c.stream.peek(&mut byte).unwrap(), 1, "100 Continue");
    drop(c);
    let stats = &lb.shared().stats;
    wait_for(Duration::from_secs(10), "the request logged", || {
        stats.requests.load(Ordering::SeqCst) == 1
    });
    assert_eq!(stats.local_responses.load(Ordering::SeqCst), 0);
    assert_eq!(heads.load(Ordering::SeqCst), 1);
    assert!(backend_up(&lb, 0));
}

#[test]
fn a_backend_that_began_an_answer_is_not_asked_again_elsewhere() {
    // Once a byte of a response came, the backend may have acted on the request: even a
    // GET is not sent to the next backend (retry::Failure::BadResponse). The page says why.
    let huge = format!(
        "HTTP/1.1 200 OK\r\nX-A: {}\r\nContent-Length: 2\r\n\r\nab",
        "h".repeat(MAX_HEAD)
    );
    let closed = "the backend closed the connection without a response";
    let cases = [
        (
            "a head broken off",
            b"HTTP/1.1 200 OK\r\nContent-Le".to_vec(),
            closed,
        ),
        (
            "an interim answer only",
            b"HTTP/1.1 103 Early Hints\r\n\r\n".to_vec(),
            closed,
        ),
        (
            "a head too large",
            huge.into_bytes(),
            "the backend&#39;s response head is too large",
        ),
    ];
    for (what, reply, why) in cases {
        let broken = Recorder::start(move |_, _| Reply::then_close(&reply));
        let other = Recorder::echo_target();
        let lb = start_over(&[broken.url(), other.url()]);
        let mut c = RawConn::open(lb.addr());
        c.send(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
        let (head, body) = c.response();
        assert_page(&head, &body, "502 Bad Gateway", why);
        assert_eq!(other.count(), 0, "{what}: asked elsewhere");
    }
}

#[test]
fn a_backend_that_resets_before_a_byte_of_answer_leaves_a_get_to_the_next() {
    // It reads one byte of the request and closes with the rest unread: a reset, before
    // any byte of a response. A GET goes on to the next backend.
    let resets = ScriptedBackend::start(|mut s| {
        let _ = s.read(&mut [0u8; 1]);
    });
    let other = Recorder::echo_target();
    let lb = start_over(&[resets.url(), other.url()]);
    let mut c = RawConn::open(lb.addr());
    c.send(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = c.response();
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    assert_eq!(body, b"/x");
}

/// How a backend that promised ten bytes stops after three.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// It goes silent, past --backend-timeout.
    Silent,
    /// It closes the connection.
    Closes,
    /// It resets the connection (it closes with bytes of the request still unread).
    Resets,
}

#[test]
fn a_response_cut_short_takes_the_backend_out_for_what_it_did() {
    for (cut, why) in [
        (Cut::Silent, "the backend went silent mid-response"),
        (Cut::Closes, "the response broke off"),
        (Cut::Resets, "the response broke off"),
    ] {
        let backend = ScriptedBackend::start(move |mut s| {
            let read = match cut {
                Cut::Resets => s.read(&mut [0u8; 1]).is_ok_and(|n| n == 1),
                _ => read_head(&mut s).is_some(),
            };
            if read {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
                if let Cut::Silent = cut {
                    let _ = s.read(&mut [0u8; 1]); // until the balancer gives up
                }
            }
        });
        let mut c = config(&[backend.url()]);
        c.backend_timeout = Duration::from_millis(300);
        let lb = start(c);
        let text = exchange(lb.addr(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status_of(&text), 200, "{cut:?}: {text}");
        wait_for(Duration::from_secs(5), why, || !backend_up(&lb, 0));
        let reason = lb_backend_reason(&lb);
        assert!(reason.starts_with(why), "{cut:?}: {reason}");
    }
}

#[test]
fn a_backend_connection_whose_response_broke_off_is_not_used_again() {
    // On its first connection the backend sends three of ten promised bytes and falls
    // silent past --backend-timeout; any request that still arrives on that connection
    // (it would find the seven owed bytes ahead of its own answer) is counted.
    let asked_after_cut = Arc::new(AtomicUsize::new(0));
    let backend = {
        let asked_after_cut = Arc::clone(&asked_after_cut);
        ScriptedBackend::start(move |mut s| {
            while let Some(head) = read_head(&mut s) {
                if target_of(&head) == "/cut" {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
                    if read_head(&mut s).is_some() {
                        asked_after_cut.fetch_add(1, Ordering::SeqCst);
                        let _ = write_ok(&mut s, "late");
                    }
                    return;
                }
                if !write_ok(&mut s, "next") {
                    return;
                }
            }
        })
    };
    let mut c = config(&[backend.url()]);
    c.backend_timeout = Duration::from_millis(300);
    c.max_fails = 100; // the backend stays in rotation: only its connection is in question
    let lb = start(c);
    let text = exchange(lb.addr(), b"GET /cut HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_of(&text), 200, "{text}");
    let text = exchange(
        lb.addr(),
        b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&text), 200, "{text}");
    assert!(text.ends_with("\r\n\r\nnext"), "{text}");
    assert_eq!(
        asked_after_cut.load(Ordering::SeqCst),
        0,
        "the broken connection was pooled"
    );
}

/// Why the balancer's first backend is out of rotation.
fn lb_backend_reason(lb: &Balancer) -> String {
    backend(lb, 0).health.reason()
}

#[test]
fn a_proxy_header_that_trickles_is_closed_at_the_header_timeout_from_accept() {
    // --header-timeout counts from accept, not from the last byte: a peer that sends a
    // piece of its header now and then still has to finish within it. The second piece
    // comes late in the allowance (the client is slow on purpose, this is no wait for the
    // balancer); the connection must close at the deadline, not a whole timeout after it.
    let backend = Recorder::echo_target();
    let lb = Launch::over(&backend.url())
        .args(&["--proxy-protocol", "--header-timeout", "2s"])
        .start();
    let started = std::time::Instant::now();
    let mut c = connect(lb.addr);
    c.write_all(b"PROXY TCP4 ").unwrap();
    std::thread::sleep(Duration::from_millis(1700));
    c.write_all(b"192.0.2.7 ").unwrap();
    assert!(
        read_until_closed(&mut c).is_empty(),
        "closed without a word"
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "closed after {took:?}, deadline 2 s"
    );
    assert_eq!(backend.count(), 0);
}

#[test]
fn a_proxy_header_that_stops_coming_is_closed_and_the_console_says_why() {
    let backend = Recorder::echo_target();
    let mut lb = Launch::over(&backend.url())
        .args(&["--proxy-protocol", "--header-timeout", "300ms"])
        .and_stderr()
        .start();
    let mut c = connect(lb.addr);
    c.write_all(b"PROXY TCP4 192.0.2.7 ").unwrap();
    assert!(
        read_until_closed(&mut c).is_empty(),
        "closed without a word"
    );
    lb.line_with("no whole PROXY header within --header-timeout");
    assert_eq!(backend.count(), 0);
}
