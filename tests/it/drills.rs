//! Failure drills on demo backends: stop, hang, slow down and restore a demo backend live,
//! and watch the balancer cope. Each test performs what the README's "Try it" promises, and
//! checks what a client sees, not only the state the drill says it is in.
//!
//! `stop` closes the demo backend's listener and `start` binds the same port again: that is
//! the drill. These are the only tests that give up a port and use it again; everywhere
//! else a failing backend keeps its port ([`Switchable`]) or never had a listener
//! ([`DeadPort`]).

use crate::support::*;
use load_balancer::demo::{DemoBackend, Drill, Fleet};
use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn red(fleet: &Fleet) -> &DemoBackend {
    fleet.find("red").unwrap()
}

/// Does the demo backend refuse connections (its drill is `stop`)?
fn refuses(d: &DemoBackend) -> bool {
    TcpStream::connect(d.addr()).is_err_and(|e| e.kind() == ErrorKind::ConnectionRefused)
}

/// GETs `/` from the demo backend directly; the status and body.
fn direct(d: &DemoBackend) -> (u16, String) {
    get(&format!("{}/", d.url()))
}

#[test]
fn stop_fails_over_and_marks_down_then_start_brings_it_back() {
    let (fleet, lb) = fleet_setup(2, |c| {
        c.health_check = Some("/".into());
        c.health_interval = Duration::from_millis(100);
        c.health_timeout = Duration::from_millis(100);
    });
    let url = format!("http://{}/", lb.addr());
    let blue_page = fleet.backends[1].page().to_string();
    fleet.command("stop red").unwrap();
    assert!(
        refuses(red(&fleet)),
        "a stopped demo backend refuses connections"
    );
    // Nobody sees the dead backend: every request is answered by Blue.
    for _ in 0..20 {
        assert_eq!(get(&url), (200, blue_page.clone()));
    }
    assert!(!backend_up(&lb, 0), "red is shown DOWN");

    // Red listens again on its port (the drill re-binds it: that is what it demonstrates).
    fleet.command("start red").unwrap();
    assert_eq!(direct(red(&fleet)), (200, red(&fleet).page().to_string()));
    // Active checks bring it back within rise x interval (plus scheduling slack).
    wait_for(Duration::from_secs(10), "red back in rotation", || {
        backend_up(&lb, 0)
    });
    let before = red(&fleet).requests();
    for _ in 0..4 {
        assert_eq!(get(&url).0, 200);
    }
    assert!(red(&fleet).requests() > before, "red serves again");
}

#[test]
fn hang_gives_504_to_a_post_and_takes_the_backend_out() {
    let (fleet, lb) = fleet_setup(2, |c| c.backend_timeout = Duration::from_millis(300));
    fleet.command("hang red").unwrap();
    // Round robin sends the first request to Red, which never answers. A POST must not be
    // sent twice, so the client gets 504.
    let mut c = RawConn::open(lb.addr());
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
    let (head, body) = c.response();
    assert_page(
        &head,
        &body,
        "504 Gateway Timeout",
        "the backend did not answer in time (--backend-timeout)",
    );
    assert!(
        !backend_up(&lb, 0),
        "a timeout counts as a failure (max-fails 1)"
    );
    assert_eq!(
        response_errors(&backend(&lb, 0)),
        1,
        "the timeout shows in the errors column and in /metrics"
    );
    // Later requests go to Blue at once.
    let blue = fleet.backends[1].page().to_string();
    for _ in 0..4 {
        assert_eq!(get(&format!("http://{}/", lb.addr())), (200, blue.clone()));
    }
    fleet.command("ok red").unwrap();
}

#[test]
fn hang_gives_a_get_its_504_after_one_timeout_and_blue_never_sees_it() {
    const TIMEOUT: Duration = Duration::from_millis(500);
    let (fleet, lb) = fleet_setup(2, |c| c.backend_timeout = TIMEOUT);
    fleet.command("hang red").unwrap();
    let blue = fleet.find("blue").unwrap();
    let started = std::time::Instant::now();
    let (status, _) = get(&format!("http://{}/", lb.addr()));
    let took = started.elapsed();
    // Round robin sends it to Red, which never answers. A request that timed out after it
    // was sent is not sent again elsewhere, GET or not (HAProxy's and Envoy's default): one
    // --backend-timeout, then 504. Sent on to Blue, it would have cost a second one.
    assert_eq!(status, 504);
    assert!(
        took >= TIMEOUT.mul_f64(0.9) && took < 2 * TIMEOUT,
        "{took:?}: one --backend-timeout"
    );
    assert_eq!(blue.requests(), 0, "Blue never saw it");
    let (status, body) = get(&format!("http://{}/", lb.addr()));
    assert_eq!(status, 200);
    assert!(body.contains("Blue"));
}

#[test]
fn error_status_is_relayed_and_is_not_a_failure() {
    let (fleet, lb) = fleet_setup(2, |_| {});
    fleet.command("error red 500").unwrap();
    let url = format!("http://{}/", lb.addr());
    let statuses: Vec<u16> = (0..4).map(|_| get(&url).0).collect();
    // Red answers 500, Blue 200, in turn: a 5xx is an answer, not a dead backend
    // (nginx's default proxy_next_upstream does not retry on it either).
    assert_eq!(statuses, [500, 200, 500, 200]);
    assert!(backend_up(&lb, 0));
    assert_eq!(responses(&backend(&lb, 0), 5), 2);
}

#[test]
fn console_commands_are_checked_and_act() {
    let (fleet, _lb) = fleet_setup(2, |_| {});
    let err = fleet.command("stop mauve").unwrap_err();
    assert!(err.contains("red, blue"), "{err}");
    let err = fleet.command("explode red").unwrap_err();
    assert!(err.contains("unknown drill"), "{err}");
    let err = fleet.command("slow red").unwrap_err();
    assert!(err.contains("milliseconds"), "{err}");
    // A refused command changed nothing: Red still answers.
    assert_eq!(direct(red(&fleet)), (200, red(&fleet).page().to_string()));
    let done = fleet.command("slow red 50").unwrap();
    assert_eq!(
        done,
        format!(
            "[Drill] Red Server ({}) is slow: answers after 50 ms",
            red(&fleet).url()
        )
    );
    // And it is slow: a clock started before the request cannot beat the delay.
    let started = Instant::now();
    assert_eq!(direct(red(&fleet)).0, 200);
    assert!(started.elapsed() >= Duration::from_millis(50));
    let done = fleet.command("error blue 503").unwrap();
    assert!(
        done.ends_with("is failing: answers every request with 503"),
        "{done}"
    );
    assert_eq!(direct(&fleet.backends[1]).0, 503);
}

/// `clients` clients at once, each sending `each` GETs to `url` one after the other; asserts
/// that every request was answered with 200.
fn burst(url: &str, clients: usize, each: usize) {
    let clients: Vec<_> = (0..clients)
        .map(|_| {
            let url = url.to_string();
            std::thread::spawn(move || (0..each).all(|_| get(&url).0 == 200))
        })
        .collect();
    for c in clients {
        assert!(c.join().unwrap(), "every request answered");
    }
}

#[test]
fn slow_backend_loses_traffic_under_least_conn() {
    let (fleet, lb) = fleet_setup(3, |c| set_strategy(c, "least-conn"));
    fleet.command("slow red 200").unwrap();
    let url = format!("http://{}/", lb.addr());
    burst(&url, 6, 8);
    let [red, blue, green] = [0, 1, 2].map(|i| fleet.backends[i].requests());
    assert_eq!(red + blue + green, 48);
    // 48 requests; round robin would give Red 16. Least-conn sends new requests elsewhere
    // while Red holds one in flight.
    assert!(
        red * 2 < blue && red * 2 < green,
        "red {red}, blue {blue}, green {green}"
    );
}

#[test]
fn drills_through_the_admin_listener_and_the_status_page() {
    let (fleet, lb) = fleet_setup(2, with_admin);
    let (status, page) = get(&admin_url(&lb, "/status"));
    assert_eq!(status, 200);
    for name in ["red", "blue"] {
        for drill in ["stop", "start", "hang", "slow/500", "error/500", "ok"] {
            assert!(
                page.contains(&format!("action=\"/demo/{name}/{drill}\"")),
                "button {name} {drill}"
            );
        }
    }
    // The API answers with the console line; the page's buttons are sent back to the page.
    let (status, _, line) = admin_post(admin_addr(&lb), "/demo/red/stop", "");
    assert_eq!(status, 200);
    assert_eq!(
        line.trim_end(),
        format!(
            "[Drill] Red Server ({}) is stopped: connections are refused",
            red(&fleet).url()
        )
    );
    assert!(refuses(red(&fleet)));
    for _ in 0..6 {
        assert_eq!(
            get(&format!("http://{}/", lb.addr())),
            (200, fleet.backends[1].page().to_string()),
            "no client request fails"
        );
    }
    let (_, json) = get(&admin_url(&lb, "/status.json"));
    assert!(
        json.contains(&format!(
            "\"url\":\"{}\",\"state\":\"DOWN\"",
            red(&fleet).url()
        )),
        "{json}"
    );
    let (status, location, _) = admin_post(admin_addr(&lb), "/demo/red/start", "then=status");
    assert_eq!((status, location.as_deref()), (303, Some("/status")));
    assert_eq!(direct(red(&fleet)), (200, red(&fleet).page().to_string()));
    let (status, _, _) = admin_post(admin_addr(&lb), "/demo/red/slow/25", "");
    assert_eq!(status, 200);
    assert_eq!(red(&fleet).drill(), Drill::Slow(Duration::from_millis(25)));
    let started = Instant::now();
    assert_eq!(direct(red(&fleet)).0, 200);
    assert!(started.elapsed() >= Duration::from_millis(25));
    assert_eq!(admin_post(admin_addr(&lb), "/demo/mauve/stop", "").0, 404);
    assert_eq!(admin_post(admin_addr(&lb), "/demo/red/explode", "").0, 400);
    assert_eq!(
        admin_post(admin_addr(&lb), "/demo/red/error/200", "").0,
        400
    );
    // The refused ones changed nothing.
    assert_eq!(red(&fleet).drill(), Drill::Slow(Duration::from_millis(25)));
}

#[test]
fn no_demo_routes_without_demo_backends() {
    let s = Setup::new(1, with_admin);
    let (status, _, body) = admin_post(admin_addr(&s.lb), "/demo/red/stop", "");
    assert_eq!(status, 404, "{body}");
    assert_eq!(direct(&s.demos[0]), (200, s.demos[0].page().to_string()));
}

#[test]
fn start_after_stop_under_traffic_listens_again_at_once() {
    // The balancer drops its pooled connections to a backend that went down, and the demo
    // backend binds its port again at once (std sets SO_REUSEADDR on listeners).
    let (fleet, lb) = fleet_setup(2, |_| {});
    let url = format!("http://{}/", lb.addr());
    // Parallel clients leave several idle connections to Red in the balancer's pool, when
    // two of their requests to Red overlap. A loaded machine can run them one after the
    // other, so the burst is repeated until they did.
    wait_for(
        Duration::from_secs(10),
        "several pooled connections to red",
        || {
            burst(&url, 8, 5);
            pooled(&lb, 0) > 1
        },
    );
    fleet.command("stop red").unwrap();
    for _ in 0..4 {
        assert_eq!(get(&url).0, 200, "no client request fails");
    }
    assert!(!backend_up(&lb, 0));
    assert_eq!(
        pooled(&lb, 0),
        0,
        "the balancer closed its idle connections to red"
    );
    fleet.command("start red").unwrap();
    assert_eq!(direct(red(&fleet)), (200, red(&fleet).page().to_string()));
}
