//! The exercises at the end of the guide's steps (`load_balancer::guide`). Each test is
//! ignored, so that `cargo test` stays green, and fails until its exercise is done:
//! `cargo test exercise_chapter_tries_the_next_backend -- --ignored` runs one exercise's
//! tests (a filter matches every test whose name contains it).
//!
//! The exercises on the chapter are done in the learner's copy of it, `src/bin/exercise.rs`
//! (`cp src/bin/chapter.rs src/bin/exercise.rs`, ignored by git), and their tests run that
//! copy, the `exercise` binary; without it they fail and say how to make it. The step tests
//! in `chapter.rs` go on testing the chapter as written, so they stay green however far the
//! learner has got. The exercises on the crate change the crate, and their tests run the
//! crate's `load-balancer`.
//!
//! The copy collects the exercises done so far, so each test passes whichever others are
//! done too. Each one also catches the wrong answer most likely for its exercise. Every
//! time limit here has at least twice the slack of what the exercise asks for: where an
//! exercise asks for a one-second timeout, a test waits up to five seconds (and at least
//! two) for what should happen, and expects nothing of it before half a second.

use crate::support::chapter::*;
use crate::support::process::Running;
use crate::support::{
    Answer, DeadPort, HungBackend, NoResponse, RawConn, Response, SLOW_BODY, TRICKLE, TestBackend,
    connect, get, get_raw, request, wait_for,
};
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The timeouts the exercises ask for: one second.
const ASKED: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// Step 1: a slow client.

/// Sends a request head one header line every [`TRICKLE`], never finishing it, for up to
/// `limit`. Returns the answer that came meanwhile and how long after the first byte it
/// came; `None` if none came (the connection closed without one, or `limit` passed).
fn trickling_client(addr: SocketAddr, limit: Duration) -> Option<(Response, Duration)> {
    let mut stream = connect(addr);
    let started = Instant::now();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: lb\r\n").unwrap();
    // The read timeout paces the lines: each wait for an answer lasts one TRICKLE.
    stream.set_read_timeout(Some(TRICKLE)).unwrap();
    for n in 0.. {
        match stream.peek(&mut [0]) {
            Ok(_) => break, // the first byte of an answer, or the close
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        if started.elapsed() >= limit {
            return None;
        }
        if stream
            .write_all(format!("X-Slow-{n}: z\r\n").as_bytes())
            .is_err()
        {
            break;
        }
    }
    let at = started.elapsed();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    RawConn::wrap(stream)
        .try_response()
        .ok()
        .map(|answer| (answer, at))
}

/// The learner's balancer with neither demo backend started, over two ports that refuse.
fn the_exercise_over_refusing(red: &DeadPort, blue: &DeadPort) -> Running {
    the_exercise(&[
        "--red-down",
        "--red",
        &red.addr().port().to_string(),
        "--blue-down",
        "--blue",
        &blue.addr().port().to_string(),
    ])
}

#[test]
#[ignore = "exercise: chapter.rs answers a slow client with 408"]
fn exercise_chapter_answers_a_slow_client_with_408() {
    let exercise = the_exercise(&[]);
    let (other, quiet) = quiet_client_then_another(exercise.addr, PATIENCE);
    assert_eq!(other.0, 200);
    let quiet = quiet.expect("an answer to the quiet client within 5 s");
    assert_eq!(quiet.status, 408, "{quiet:?}");

    // A client that sends a header line now and then, and never the end of its head, is as
    // slow: the second is for the whole head, not for each read or each line.
    let (answer, at) = trickling_client(exercise.addr, 3 * ASKED).expect(
        "an answer within 3 s to a head sent one line every 200 ms: is the second counted \
         from the start of the head, or again for each read or each line?",
    );
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(at >= ASKED / 2, "a 408 after only {at:?}");
}

// ---------------------------------------------------------------------------------------------
// Step 2: a cap on connections.

/// Opens a connection and, before sending anything, watches for half of [`ASKED`] for an
/// answer: past its cap, the balancer answers `503` at once, without reading a request (and
/// since the test sends none, its close is a clean one, not a reset that can take the answer
/// with it). When nothing comes, the connection was taken: sends a GET, reads the answer.
fn one_more_connection(addr: SocketAddr) -> Response {
    let mut stream = connect(addr);
    stream.set_read_timeout(Some(ASKED / 2)).unwrap();
    match stream.peek(&mut [0]) {
        Ok(_) => {} // an answer, unasked (or the close)
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            stream.write_all(&get_raw("/")).unwrap();
        }
        Err(e) => panic!("read: {e}"),
    }
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    RawConn::wrap(stream).try_response().expect("an answer")
}

#[test]
#[ignore = "exercise: chapter.rs gets --max-connections"]
fn exercise_chapter_caps_connections() {
    let exercise = the_exercise(&["--max-connections", "2"]);
    let quiet: Vec<TcpStream> = (0..2).map(|_| connect(exercise.addr)).collect();
    for _ in 0..2 {
        let past = one_more_connection(exercise.addr);
        assert_eq!(past.status, 503, "past the cap: {past:?}");
    }
    // The quiet clients leave without sending a request, and the two turned away never had
    // a thread: each of these ways out gives its place back.
    drop(quiet);
    wait_for(
        PATIENCE,
        "room again once the quiet clients left (is every connection counted down, \
         whichever way it ends, and one turned away never counted?)",
        || one_more_connection(exercise.addr).status == 200,
    );
}

// ---------------------------------------------------------------------------------------------
// Step 3: keep-alive (the crate).

#[test]
#[ignore = "exercise: --max-requests per keep-alive connection"]
fn exercise_max_requests_per_connection() {
    let lb = the_crate(&["--max-requests", "2"]);
    let mut c = RawConn::open(lb.addr);
    c.send(&get_raw("/"));
    let first = c.try_response().unwrap();
    assert!(!first.closes(), "{first:?}");
    c.send(&get_raw("/"));
    let second = c.try_response().unwrap();
    assert_eq!(second.status, 200, "{second:?}");
    assert!(
        second.closes(),
        "the last allowed request says so: {second:?}"
    );
    assert_eq!(
        c.try_response().unwrap_err(),
        NoResponse::Closed,
        "then the connection closes"
    );
    // The count is each connection's own: a new connection starts from nought.
    let (first, second) = two_requests_on_one_connection(lb.addr);
    assert!(
        !first.closes(),
        "a new connection's first answer: {first:?}"
    );
    assert!(second.unwrap().closes(), "and its second");
}

// ---------------------------------------------------------------------------------------------
// Step 4: methods, headers and bodies.

#[test]
#[ignore = "exercise: chapter.rs tells the backend who the client is"]
fn exercise_chapter_sends_x_forwarded_for() {
    let backend = TestBackend::new();
    let exercise = the_exercise(&["--blue-down", "--blue", &backend.port()]);
    assert_eq!(get(&exercise.url("/")).1, RED);
    assert_eq!(get(&exercise.url("/")).1, "done");
    let (head, _) = backend.next_request();
    assert!(
        head.contains("\r\nX-Forwarded-For: 127.0.0.1\r\n"),
        "the client's address, without its port, among the header lines: {head}"
    );
}

#[test]
#[ignore = "exercise: chapter.rs passes on a POST and its body"]
fn exercise_chapter_relays_a_post_body() {
    let backend = TestBackend::new();
    let exercise = the_exercise(&["--blue-down", "--blue", &backend.port()]);
    assert_eq!(get(&exercise.url("/")).1, RED);
    let post = request(exercise.addr, A_POST).expect(
        "an answer to the POST within 5 s (the body was sent with the head: is it read \
         through the BufReader that read the head?)",
    );
    assert_eq!((post.status, post.body.as_str()), (200, "done"));
    let (head, body) = backend.next_request();
    assert!(head.starts_with("POST /form "), "{head}");
    assert_eq!(body, b"name=red", "the body, framed by its Content-Length");
}

// ---------------------------------------------------------------------------------------------
// Step 5: malformed requests.

#[test]
#[ignore = "exercise: chapter.rs checks the HTTP version"]
fn exercise_chapter_checks_the_version() {
    let exercise = the_exercise(&[]);
    for (raw, status) in [
        (&b"GET / HTTP/9.9\r\nHost: lb\r\n\r\n"[..], 505),
        (b"GET / HTTP/2.0\r\nHost: lb\r\n\r\n", 505),
        (b"GET / banana\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: lb\r\n\r\n", 200),
        (b"GET / HTTP/1.0\r\n\r\n", 200),
    ] {
        let answer = request(exercise.addr, raw).unwrap();
        let line = String::from_utf8_lossy(raw);
        assert_eq!(answer.status, status, "{line:?}: {answer:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Step 6: a dead backend.

#[test]
#[ignore = "exercise: chapter.rs tries the next backend"]
fn exercise_chapter_tries_the_next_backend() {
    let dead = DeadPort::new();
    let port = dead.addr().port().to_string();
    let exercise = the_exercise(&["--blue-down", "--blue", &port]);
    assert_eq!(four_gets(exercise.addr), vec![(200, RED.to_string()); 4]);
}

#[test]
#[ignore = "exercise: chapter.rs tries the next backend"]
fn exercise_chapter_tries_the_next_backend_only_when_refused() {
    // Red is the test's backend, Blue one that reads the request and closes without a word.
    let red = TestBackend::new();
    let blue = TestBackend::replying(Answer::Nothing);
    let exercise = the_exercise(&[
        "--red-down",
        "--red",
        &red.port(),
        "--blue-down",
        "--blue",
        &blue.port(),
    ]);
    assert_eq!(get(&exercise.url("/")).1, "done");
    red.next_request();
    let answer = request(exercise.addr, &get_raw("/sent")).unwrap();
    assert_eq!(
        answer.status, 502,
        "a request sent to a backend that then broke off may have been acted on, so it is \
         not sent anywhere else: {answer:?}"
    );
    assert!(answer.body.contains("502 Bad Gateway"), "{answer:?}");
    blue.next_request();
    assert!(red.requests.try_recv().is_err(), "Red got it as well");
}

#[test]
#[ignore = "exercise: chapter.rs tries the next backend"]
fn exercise_chapter_tries_the_next_backend_and_502_when_none_answers() {
    let (red, blue) = (DeadPort::new(), DeadPort::new());
    let exercise = the_exercise_over_refusing(&red, &blue);
    for _ in 0..2 {
        let answer = request(exercise.addr, &get_raw("/"))
            .expect("an answer within 5 s when both backends refuse (after the last one, the 502)");
        assert_eq!(answer.status, 502, "{answer:?}");
        assert!(answer.body.contains("502 Bad Gateway"), "{answer:?}");
        assert!(answer.body.contains("refused"), "{answer:?}");
    }
}

#[test]
#[ignore = "exercise: chapter.rs tries the next backend"]
fn exercise_chapter_tries_the_next_backend_without_making_clients_wait_in_turn() {
    // Red answers slowly (a byte every 200 ms, until released), Blue at once.
    let red = TestBackend::held_with(Answer::Slowly);
    let blue = TestBackend::new();
    let exercise = the_exercise(&[
        "--red-down",
        "--red",
        &red.port(),
        "--blue-down",
        "--blue",
        &blue.port(),
    ]);
    let slow = request_in_flight(exercise.addr, &red);
    let other = request(exercise.addr, &get_raw("/")).expect(
        "the second client is answered while the first waits on Red (is the lock on the \
         round robin held while a backend is asked?)",
    );
    assert_eq!((other.status, other.body.as_str()), (200, "done"));
    assert!(!slow.is_finished(), "Red's client is still being answered");
    red.release();
    let slow = slow.join().unwrap().expect("Red's answer");
    assert_eq!((slow.status, slow.body.as_str()), (200, SLOW_BODY));
}

#[test]
#[ignore = "exercise: name the backend on the 502 page"]
fn exercise_502_page_names_the_backend() {
    let dead = DeadPort::new();
    let url = dead.url();
    let lb = the_crate(&["--backend", &url]);
    let (status, page) = get(&lb.url("/"));
    assert_eq!(status, 502);
    assert!(page.contains(&url), "the page names {url}: {page}");

    // The other way to a 502: a POST sent to a backend that closes without answering is
    // not sent anywhere else (it may have been acted on), so its 502 comes at once.
    let broken = TestBackend::replying(Answer::Nothing);
    let url = broken.url();
    let lb = the_crate(&["--backend", &url]);
    let answer = request(lb.addr, A_POST).unwrap();
    assert_eq!(answer.status, 502, "{answer:?}");
    assert!(
        answer.body.contains(&url),
        "this 502 names {url} too: {answer:?}"
    );
}

/// The backends a balancer over three demo backends with `--strategy random` picks for 60
/// requests, in order, as the colours of their pages.
fn sixty_random_picks() -> Vec<&'static str> {
    let lb = the_crate(&["--strategy", "random", "--demo", "3"]);
    let colour = |page: &str| {
        ["red", "blue", "green"]
            .into_iter()
            .find(|c| page.contains(&format!("color:{c};")))
            .unwrap_or_else(|| panic!("not a demo page: {page}"))
    };
    (0..60).map(|_| colour(&get(&lb.url("/")).1)).collect()
}

#[test]
#[ignore = "exercise: a random strategy"]
fn exercise_random_strategy() {
    let picks = sixty_random_picks();
    for colour in ["red", "blue", "green"] {
        let seen = picks.iter().filter(|p| **p == colour).count();
        assert!(seen > 0, "{colour} never chosen in 60 requests");
    }
    let in_turn = picks.windows(4).all(|w| w[0] == w[3] && w[0] != w[1]);
    assert!(
        !in_turn,
        "60 requests in strict rotation: that is round robin"
    );
    // Random numbers from fixed keys (`DefaultHasher::new()`) look random, but are the same
    // at every start.
    assert_ne!(
        picks,
        sixty_random_picks(),
        "a second balancer picked the very same 60 backends in the same order"
    );
}

// ---------------------------------------------------------------------------------------------
// Step 7: a hung backend.

#[test]
#[ignore = "exercise: chapter.rs answers 504 when a backend is silent"]
fn exercise_chapter_answers_504_for_a_silent_backend() {
    let hung = HungBackend::new();
    let exercise = the_exercise(&["--blue-down", "--blue", &hung.port()]);
    assert_eq!(get(&exercise.url("/")).0, 200);
    let started = Instant::now();
    let answer = request(exercise.addr, &get_raw("/")).expect("an answer within 5 s");
    assert_eq!(answer.status, 504, "{answer:?}");
    assert!(answer.body.contains("504 Gateway Timeout"), "{answer:?}");
    let waited = started.elapsed();
    assert!(waited >= ASKED / 2, "a 504 after only {waited:?}");
}

#[test]
#[ignore = "exercise: chapter.rs answers 504 when a backend is silent"]
fn exercise_chapter_answers_504_for_a_silent_backend_and_still_502_for_a_refusal() {
    // Both backends refuse (so that the answer is the same whether or not step 6's exercise
    // is done): a refusal is not a timeout.
    let (red, blue) = (DeadPort::new(), DeadPort::new());
    let exercise = the_exercise_over_refusing(&red, &blue);
    let answer = request(exercise.addr, &get_raw("/")).unwrap();
    assert_eq!(answer.status, 502, "a refused connection: {answer:?}");
    assert!(answer.body.contains("refused"), "{answer:?}");
}

// ---------------------------------------------------------------------------------------------
// Step 8: graceful shutdown.

#[cfg(unix)]
#[test]
#[ignore = "exercise: /healthz on the admin listener"]
fn exercise_admin_healthz() {
    let backend = TestBackend::held();
    let mut lb = the_crate(&[
        "--backend",
        &backend.url(),
        "--admin",
        "127.0.0.1:0",
        "--drain-timeout",
        "5s",
    ]);
    let admin = lb.admin();
    assert_eq!(
        get(&format!("http://{admin}/healthz")),
        (200, "ok\n".to_string())
    );
    // While draining, the balancer tells whoever sends it traffic to stop: the admin has to
    // be told of the drain.
    let client = request_in_flight(lb.addr, &backend);
    lb.signal("TERM");
    lb.line_with("draining");
    assert_eq!(get(&format!("http://{admin}/healthz")).0, 503);
    backend.release();
    assert_finishes(client);
}
