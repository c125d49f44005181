//! Failure drills on demo backends (issue: stop, hang, slow down and restore a demo backend
//! live, and watch the balancer cope). Each test performs what the README's "Try it" promises.

mod support;

use load_balancer::demo::{Drill, Fleet};
use load_balancer::server::Balancer;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use support::*;

/// A fleet of `n` demo backends on port 0 behind a balancer configured by `tweak`.
fn drill_setup(
    n: usize,
    tweak: impl FnOnce(&mut load_balancer::config::Config),
) -> (Arc<Fleet>, Balancer) {
    let fleet = Arc::new(Fleet::start(n, Ipv4Addr::LOCALHOST.into(), 0).unwrap());
    let urls: Vec<String> = fleet.backends.iter().map(|d| d.url()).collect();
    let mut c = config(&urls);
    tweak(&mut c);
    let lb = Balancer::start_with_drills(c, Arc::clone(&fleet) as _).unwrap();
    (fleet, lb)
}

fn backend_up(lb: &Balancer, url: &str) -> bool {
    lb.shared()
        .backends
        .snapshot()
        .iter()
        .find(|b| b.url == url)
        .unwrap()
        .health
        .is_up()
}

#[test]
fn stop_fails_over_and_marks_down_then_start_brings_it_back() {
    let (fleet, lb) = drill_setup(2, |c| {
        c.health_check = Some("/".into());
        c.health_interval = Duration::from_millis(100);
        c.health_timeout = Duration::from_millis(100);
    });
    let red = fleet.find("red").unwrap();
    let url = format!("http://{}/", lb.addr());
    fleet.command("stop red").unwrap();
    assert_eq!(red.drill(), Drill::Stop);
    // Nobody sees the dead backend: every request is answered by Blue.
    for _ in 0..20 {
        let (status, body) = get(&url);
        assert_eq!(status, 200);
        assert!(body.contains("Blue"), "{body}");
    }
    assert!(!backend_up(&lb, &red.url()), "red is shown DOWN");

    fleet.command("start red").unwrap();
    // Active checks bring it back within rise x interval (plus scheduling slack).
    wait_for(Duration::from_secs(5), "red back in rotation", || {
        backend_up(&lb, &red.url())
    });
    let before = red.requests();
    for _ in 0..4 {
        assert_eq!(get(&url).0, 200);
    }
    assert!(red.requests() > before, "red serves again");
}

#[test]
fn hang_gives_504_to_a_post_and_takes_the_backend_out() {
    let (fleet, lb) = drill_setup(2, |c| c.backend_timeout = Duration::from_millis(300));
    fleet.command("hang red").unwrap();
    // Round robin sends the first request to Red, which never answers. A POST must not be
    // sent twice, so the client gets 504.
    let mut c = RawConn::open(lb.addr());
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
    let (head, _) = c.response();
    assert!(head.starts_with("HTTP/1.1 504"), "{head}");
    let red = fleet.find("red").unwrap();
    assert!(
        !backend_up(&lb, &red.url()),
        "a timeout counts as a failure (max-fails 1)"
    );
    let errors = lb.shared().backends.snapshot()[0]
        .stats
        .response_errors
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        errors, 1,
        "the timeout shows in the errors column and in /metrics"
    );
    // Later requests go to Blue at once.
    for _ in 0..4 {
        let (status, body) = get(&format!("http://{}/", lb.addr()));
        assert_eq!(status, 200);
        assert!(body.contains("Blue"));
    }
    fleet.command("ok red").unwrap();
}

#[test]
fn hang_gives_a_get_its_504_after_one_timeout_and_blue_never_sees_it() {
    const TIMEOUT: Duration = Duration::from_millis(500);
    let (fleet, lb) = drill_setup(2, |c| c.backend_timeout = TIMEOUT);
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
    let (fleet, lb) = drill_setup(2, |_| {});
    fleet.command("error red 500").unwrap();
    let url = format!("http://{}/", lb.addr());
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get(&url).0);
    }
    // Red answers 500, Blue 200, in turn: a 5xx is an answer, not a dead backend
    // (nginx's default proxy_next_upstream does not retry on it either).
    assert_eq!(statuses, [500, 200, 500, 200]);
    assert!(backend_up(&lb, &fleet.find("red").unwrap().url()));
}

#[test]
fn console_commands_are_checked() {
    let (fleet, _lb) = drill_setup(2, |_| {});
    assert!(
        fleet
            .command("stop mauve")
            .unwrap_err()
            .contains("red, blue")
    );
    assert!(
        fleet
            .command("explode red")
            .unwrap_err()
            .contains("unknown drill")
    );
    assert!(
        fleet
            .command("slow red")
            .unwrap_err()
            .contains("milliseconds")
    );
    assert!(
        fleet
            .command("slow red 50")
            .unwrap()
            .contains("answers after 50 ms")
    );
}

#[test]
fn slow_backend_loses_traffic_under_least_conn() {
    let (fleet, lb) = drill_setup(3, |c| {
        c.strategy = load_balancer::config::StrategyKind::LeastConn
    });
    fleet.command("slow red 200").unwrap();
    let url = format!("http://{}/", lb.addr());
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || (0..8).all(|_| get(&url).0 == 200))
        })
        .collect();
    for c in clients {
        assert!(c.join().unwrap(), "every request answered");
    }
    let [red, blue, green] = [0, 1, 2].map(|i| fleet.backends[i].requests());
    // 48 requests; round robin would give Red 16. Least-conn sends new requests elsewhere
    // while Red holds one in flight.
    assert!(
        red * 2 < blue && red * 2 < green,
        "red {red}, blue {blue}, green {green}"
    );
}

/// POSTs to the admin listener; returns status, Location and body.
fn admin_post(lb: &Balancer, path: &str, body: &str) -> (u16, Option<String>, String) {
    let mut c = RawConn::open(lb.admin_addr().unwrap());
    c.send(
        format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let (head, body) = c.response();
    let lower = head.to_ascii_lowercase();
    let location = header(&lower, "location").map(str::to_string);
    (
        head[9..12].parse().unwrap(),
        location,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[test]
fn drills_through_the_admin_listener_and_the_status_page() {
    let (fleet, lb) = drill_setup(2, |c| c.admin = Some("127.0.0.1:0".parse().unwrap()));
    let admin = lb.admin_addr().unwrap();
    let (status, page) = get(&format!("http://{admin}/status"));
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
    let (status, _, line) = admin_post(&lb, "/demo/red/stop", "");
    assert_eq!(status, 200);
    assert!(
        line.contains("Red Server") && line.contains("stopped"),
        "{line}"
    );
    assert_eq!(fleet.find("red").unwrap().drill(), Drill::Stop);
    for _ in 0..6 {
        assert_eq!(
            get(&format!("http://{}/", lb.addr())).0,
            200,
            "no client request fails"
        );
    }
    let (_, json) = get(&format!("http://{admin}/status.json"));
    assert!(
        json.contains("\"url\":\"http://127.0.0.1:") && json.contains("\"state\":\"DOWN\""),
        "{json}"
    );
    let (status, location, _) = admin_post(&lb, "/demo/red/start", "then=status");
    assert_eq!((status, location.as_deref()), (303, Some("/status")));
    assert_eq!(fleet.find("red").unwrap().drill(), Drill::Ok);
    let (status, _, _) = admin_post(&lb, "/demo/red/slow/25", "");
    assert_eq!(status, 200);
    assert_eq!(
        fleet.find("red").unwrap().drill(),
        Drill::Slow(Duration::from_millis(25))
    );
    assert_eq!(admin_post(&lb, "/demo/mauve/stop", "").0, 404);
    assert_eq!(admin_post(&lb, "/demo/red/explode", "").0, 400);
    assert_eq!(admin_post(&lb, "/demo/red/error/200", "").0, 400);
}

#[test]
fn no_demo_routes_without_demo_backends() {
    let s = Setup::new(1, |c| c.admin = Some("127.0.0.1:0".parse().unwrap()));
    assert_eq!(admin_post(&s.lb, "/demo/red/stop", "").0, 404);
}

#[test]
fn start_after_stop_under_traffic_listens_again_at_once() {
    // The balancer drops its pooled connections to a backend that went down, and the demo
    // backend binds its port again at once (std sets SO_REUSEADDR on listeners).
    let (fleet, lb) = drill_setup(2, |_| {});
    let url = format!("http://{}/", lb.addr());
    let red = fleet.find("red").unwrap();
    let pooled = || lb.shared().backends.snapshot()[0].pooled_count();
    // Parallel clients leave several idle connections to Red in the balancer's pool, when
    // two of their requests to Red overlap. A loaded machine can run them one after the
    // other, so the burst is repeated until they did.
    wait_for(
        Duration::from_secs(5),
        "several pooled connections to red",
        || {
            let clients: Vec<_> = (0..8)
                .map(|_| {
                    let url = url.clone();
                    std::thread::spawn(move || (0..5).all(|_| get(&url).0 == 200))
                })
                .collect();
            for c in clients {
                assert!(c.join().unwrap());
            }
            pooled() > 1
        },
    );
    fleet.command("stop red").unwrap();
    for _ in 0..4 {
        assert_eq!(get(&url).0, 200, "no client request fails");
    }
    assert!(!backend_up(&lb, &red.url()));
    assert_eq!(
        pooled(),
        0,
        "the balancer closed its idle connections to red"
    );
    fleet.command("start red").unwrap();
    wait_for(Duration::from_secs(3), "red listening again", || {
        std::net::TcpStream::connect(red.addr()).is_ok()
    });
}
