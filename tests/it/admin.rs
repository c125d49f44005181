//! The admin listener: `/metrics` counts what happened, `/status` shows every backend, the
//! token guards it, a page of another site cannot change backends, and backends are added,
//! drained and removed under load without a failed request.

use crate::support::*;
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

/// A balancer over `n` demo backends with the admin listener on a free port.
fn admin_setup(n: usize, tweak: impl FnOnce(&mut Config)) -> Setup {
    Setup::new(n, |c| {
        with_admin(c);
        tweak(c);
    })
}

/// The token of the tests that change something: on TCP, a change needs one.
const T: &str = "s3cret";

fn with_token(c: &mut Config) {
    c.admin_token = Some(T.into());
}

fn admin(s: &Setup, path: &str) -> String {
    admin_url(&s.lb, path)
}

/// Status, headers (lowercased names) and body of a response.
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

fn call(method: &str, url: &str, body: &str, token: Option<&str>) -> Answer {
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let mut resp = agent().run(req.body(body.to_string()).unwrap()).unwrap();
    Answer {
        status: resp.status().as_u16(),
        headers: resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
            .collect(),
        body: resp.body_mut().read_to_string().unwrap(),
    }
}

#[test]
fn a_browser_gets_in_with_the_token_as_its_basic_password() {
    use load_balancer::admin::base64;
    let s = admin_setup(1, |c| c.admin_token = Some("s3cret".into()));
    let addr = admin_addr(&s.lb);
    let ask_from = |origin: &str, method: &str, path: &str, authorization: Option<&str>| {
        let mut c = RawConn::open(addr);
        let mut auth = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        if !origin.is_empty() {
            auth.push_str(&format!("Origin: {origin}\r\n"));
        }
        c.send(
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\n\r\n")
                .as_bytes(),
        );
        c.response().0
    };
    let ask = |method: &str, path: &str, authorization: Option<&str>| {
        ask_from("", method, path, authorization)
    };
    // A browser's first request has no credentials: both challenges come back, Basic first
    // (a browser knows no Bearer, and asks its user for a name and a password).
    let head = ask("GET", "/status", None);
    assert_eq!(status_line(&head), "HTTP/1.1 401 Unauthorized", "{head}");
    assert_eq!(
        fields(&head, "www-authenticate"),
        [
            "Basic realm=\"load-balancer admin\", charset=\"UTF-8\"",
            "Bearer realm=\"load-balancer admin\""
        ]
    );
    // With the token as the password (any name), the page and the page's own requests (its
    // data, its buttons) go through: the browser sends the same credentials with each.
    let basic = format!("Basic {}", base64::encode(b"ops:s3cret"));
    for path in ["/status", "/status.json", "/metrics"] {
        let head = ask("GET", path, Some(&basic));
        assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{path}: {head}");
    }
    // The browser sends them with a forged request from another site's page too: its
    // `Origin` gives it away.
    let head = ask_from(
        "http://evil.example",
        "POST",
        "/backends/0/drain",
        Some(&basic),
    );
    assert_eq!(status_line(&head), "HTTP/1.1 403 Forbidden", "{head}");
    assert!(!backend(&s.lb, 0).is_draining());
    let own = format!("http://{addr}");
    let head = ask_from(&own, "POST", "/backends/0/drain", Some(&basic));
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    assert!(backend(&s.lb, 0).is_draining());
    // A wrong password is refused like a wrong token.
    let wrong = format!("Basic {}", base64::encode(b"ops:s3cre"));
    let head = ask("POST", "/backends/0/enable", Some(&wrong));
    assert_eq!(status_line(&head), "HTTP/1.1 401 Unauthorized", "{head}");
    assert!(backend(&s.lb, 0).is_draining());
}

/// A tiny parser of the Prometheus text format: `name{label="value",...} number` lines into
/// a map from `name{labels}` (labels as written, unescaped) to the value. Checks on the way
/// that every sample's family was announced with `# HELP` and `# TYPE`.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    let mut helped = Vec::new();
    let mut typed = Vec::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.push(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap().to_string();
            let kind = parts.next().unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.push(name);
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let name_end = line.find(['{', ' ']).unwrap();
        let name = &line[..name_end];
        let mut key = name.to_string();
        let mut rest = &line[name_end..];
        if let Some(labels) = rest.strip_prefix('{') {
            // label="value" pairs, values with \\ \" \n escapes.
            let mut chars = labels.char_indices();
            key.push('{');
            let end = loop {
                let (i, c) = chars.next().expect("unterminated labels");
                match c {
                    '}' => break i,
                    '"' => loop {
                        let (_, c) = chars.next().expect("unterminated value");
                        match c {
                            '\\' => match chars.next().unwrap().1 {
                                'n' => key.push('\n'),
                                e => key.push(e),
                            },
                            '"' => break,
                            c => key.push(c),
                        }
                    },
                    c => key.push(c),
                }
            };
            key.push('}');
            rest = &labels[end + 1..];
        }
        let value: f64 = rest.trim().replace("+Inf", "inf").parse().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| typed.iter().any(|t| t == f))
            })
            .unwrap_or(name);
        assert!(
            typed.iter().any(|t| t == family) && helped.iter().any(|h| h == family),
            "{name} has no HELP/TYPE"
        );
        // A family's samples come together, right after its TYPE (Prometheus's parser
        // rejects a family that is split).
        assert_eq!(typed.last().map(String::as_str), Some(family), "{line}");
        samples.insert(key, value);
    }
    samples
}

fn metrics(s: &Setup) -> HashMap<String, f64> {
    let reply = call("GET", &admin(s, "/metrics"), "", None);
    assert_eq!(reply.status, 200);
    assert!(
        reply.headers["content-type"].starts_with("text/plain; version=0.0.4"),
        "{:?}",
        reply.headers
    );
    parse_exposition(&reply.body)
}

fn sample(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no sample {key}; have {:?}", m.keys()))
}

#[test]
fn metrics_match_the_requests_made() {
    let s = admin_setup(2, |_| {});
    let (red, blue) = (s.demos[0].url(), s.demos[1].url());
    let mut bytes = [0u64; 2];
    // Round robin: Red, Blue, Red, Blue, Red, Blue, then Red gets a 404 and Blue a POST.
    for i in 0..6 {
        let (status, body) = get(&s.url("/"));
        assert_eq!(status, 200);
        bytes[i % 2] += body.len() as u64;
    }
    let (status, body) = get(&s.url("/status/404"));
    assert_eq!(status, 404);
    bytes[0] += body.len() as u64;
    let mut resp = agent().post(&s.url("/echo")).send("hello").unwrap();
    assert_eq!(resp.status(), 200);
    bytes[1] += resp.body_mut().read_to_string().unwrap().len() as u64;

    let m = metrics(&s);
    for (url, requests, ok, client_errors, sent, received) in [
        (&red, 4.0, 3.0, 1.0, bytes[0], 0.0),
        (&blue, 4.0, 4.0, 0.0, bytes[1], 5.0),
    ] {
        let b = format!("backend={url}");
        assert_eq!(
            sample(&m, &format!("lb_backend_requests_total{{{b}}}")),
            requests
        );
        let code = |c| format!("lb_backend_responses_total{{{b},code={c}}}");
        assert_eq!(sample(&m, &code("2xx")), ok);
        assert_eq!(sample(&m, &code("4xx")), client_errors);
        assert_eq!(sample(&m, &code("5xx")), 0.0);
        assert_eq!(
            sample(&m, &format!("lb_backend_bytes_out_total{{{b}}}")),
            sent as f64
        );
        assert_eq!(
            sample(&m, &format!("lb_backend_bytes_in_total{{{b}}}")),
            received
        );
        assert_eq!(sample(&m, &format!("lb_backend_up{{{b}}}")), 1.0);
        assert_eq!(
            sample(&m, &format!("lb_backend_active_requests{{{b}}}")),
            0.0
        );
        assert_eq!(
            sample(&m, &format!("lb_backend_connect_errors_total{{{b}}}")),
            0.0
        );
        // The histogram: cumulative buckets, +Inf equal to the count, one per request.
        let h = "lb_backend_request_duration_seconds";
        let count = sample(&m, &format!("{h}_count{{{b}}}"));
        assert_eq!(count, requests);
        assert_eq!(sample(&m, &format!("{h}_bucket{{{b},le=+Inf}}")), count);
        let mut previous = 0.0;
        for le in load_balancer::metrics::DURATION_BUCKETS {
            let v = sample(&m, &format!("{h}_bucket{{{b},le={le}}}"));
            assert!(v >= previous, "buckets must be cumulative");
            previous = v;
        }
        let sum = sample(&m, &format!("{h}_sum{{{b}}}"));
        assert!(sum > 0.0 && sum < 10.0, "{sum}");
    }
    assert_eq!(sample(&m, "lb_client_connections_accepted_total"), 8.0);
    assert_eq!(sample(&m, "lb_requests_total"), 8.0);
    assert_eq!(sample(&m, "lb_client_connections_rejected_total"), 0.0);
    assert_eq!(sample(&m, "lb_local_responses_total{code=502}"), 0.0);
    // The standard process metrics and the build, read from /proc/self.
    assert!(sample(&m, "process_resident_memory_bytes") > 0.0);
    assert!(sample(&m, "process_open_fds") >= 3.0);
    assert!(sample(&m, "process_max_fds") >= sample(&m, "process_open_fds"));
    assert!(sample(&m, "process_cpu_seconds_total") >= 0.0);
    assert!(sample(&m, "process_virtual_memory_bytes") > 0.0);
    assert!(sample(&m, "process_start_time_seconds") > 1.7e9);
    let version = format!("lb_build_info{{version={}}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(sample(&m, &version), 1.0);
    // The clients are gone; their connection threads end and the gauge comes back to 0.
    wait_for(Duration::from_secs(10), "open connections to drop", || {
        sample(&metrics(&s), "lb_client_connections_open") == 0.0
    });
}

#[test]
fn a_dead_backend_shows_in_metrics_and_status() {
    let demo = demo(0);
    let dead_port = DeadPort::new();
    let dead = dead_port.url();
    let mut c = config(&[demo.url(), dead.clone()]);
    with_admin(&mut c);
    let s = Setup {
        lb: start(c),
        demos: vec![demo],
    };
    // The first request goes to the demo, the second to the dead one and is retried.
    for _ in 0..2 {
        assert_eq!(get(&s.url("/")).0, 200);
    }
    let m = metrics(&s);
    let b = format!("backend={dead}");
    assert_eq!(
        sample(&m, &format!("lb_backend_connect_errors_total{{{b}}}")),
        1.0
    );
    assert_eq!(sample(&m, &format!("lb_backend_retries_total{{{b}}}")), 1.0);
    assert_eq!(sample(&m, &format!("lb_backend_up{{{b}}}")), 0.0);
    let live = format!("backend={}", s.demos[0].url());
    assert_eq!(
        sample(&m, &format!("lb_backend_requests_total{{{live}}}")),
        2.0
    );

    let html = call("GET", &admin(&s, "/status"), "", None).body;
    assert!(
        html.contains(">DOWN</span> (connection refused, 1 failed request in a row)"),
        "{html}"
    );
    let json = call("GET", &admin(&s, "/status.json"), "", None).body;
    assert!(
        json.contains(&format!(
            "\"url\":\"{dead}\",\"state\":\"DOWN\",\"reason\":\"connection refused, "
        )),
        "{json}"
    );
}

#[test]
fn status_pages_show_every_backend_and_the_rotation() {
    let s = admin_setup(3, |_| {});
    // One keep-alive connection: its thread records each request's decision before it reads
    // the next request, so the decisions are recorded in the order the requests were sent.
    // (Over three connections a later request's thread could record first.)
    let mut c = RawConn::open(s.addr());
    for _ in 0..3 {
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status_of(&c.response().0), 200);
    }
    let page = call("GET", &admin(&s, "/status"), "", None);
    assert_eq!(page.status, 200);
    assert!(page.headers["content-type"].starts_with("text/html"));
    let html = page.body;
    // Reloads itself only without JavaScript; with it, the page's script updates in place.
    assert!(html.contains("<noscript><meta http-equiv=\"refresh\" content=\"1\"></noscript>"));
    for (i, d) in s.demos.iter().enumerate() {
        let colour = load_balancer::demo::COLOURS[i].1;
        // A row with a square in the backend's colour, and its request in the routing
        // decisions; and a square of that colour in the routing strip.
        let cell = format!("fill=\"{colour}\"/></svg>{}</td>", d.url());
        assert_eq!(html.matches(&cell).count(), 2, "{cell} in {html}");
        let square = format!("fill=\"{colour}\"><title>");
        assert_eq!(html.matches(&square).count(), 1, "{square} in {html}");
    }
    assert_eq!(html.matches(">UP</span>").count(), 3);

    let json = call("GET", &admin(&s, "/status.json"), "", None);
    assert_eq!(json.headers["content-type"], "application/json");
    for d in &s.demos {
        let row = format!("\"url\":\"{}\",\"state\":\"UP\"", d.url());
        assert!(json.body.contains(&row), "{row} in {}", json.body);
    }
    assert_eq!(json.body.matches("\"requests\":1,").count(), 3);
    // The decisions in order: the round robin, visible.
    let order: Vec<usize> = s
        .demos
        .iter()
        .map(|d| {
            json.body
                .find(&format!("\"backend\":\"{}\"", d.url()))
                .unwrap()
        })
        .collect();
    assert!(order[0] < order[1] && order[1] < order[2], "{}", json.body);

    // The balanced port does not serve the admin paths: /metrics goes to a backend.
    let (_, body) = get(&s.url("/metrics"));
    assert!(!body.contains("lb_backend_requests_total"), "{body}");
}

#[test]
fn the_token_is_required_when_set() {
    let s = admin_setup(1, |c| c.admin_token = Some("s3cret".into()));
    for path in ["/metrics", "/status", "/status.json", "/backends"] {
        for token in [None, Some("wrong"), Some("s3cre"), Some("s3cretX")] {
            let reply = call("GET", &admin(&s, path), "", token);
            assert_eq!(reply.status, 401, "{path} with {token:?}");
            assert!(
                reply.headers.contains_key("www-authenticate"),
                "{:?}",
                reply.headers
            );
        }
        assert_eq!(
            call("GET", &admin(&s, path), "", Some("s3cret")).status,
            200
        );
    }
    // An unauthorised change changes nothing.
    let extra = demo(1);
    let body = format!("url={}", extra.url());
    assert_eq!(
        call("POST", &admin(&s, "/backends"), &body, None).status,
        401
    );
    assert_eq!(
        call("POST", &admin(&s, "/backends/0/drain"), "", None).status,
        401
    );
    assert_eq!(backends(&s.lb).len(), 1);
    assert!(!backend(&s.lb, 0).is_draining());
    assert_eq!(
        call("POST", &admin(&s, "/backends"), &body, Some("s3cret")).status,
        201
    );
}

#[test]
fn api_answers_mistakes_clearly() {
    let s = admin_setup(1, with_token);
    let url = s.demos[0].url();
    let a = |path: &str| admin(&s, path);
    assert_eq!(call("GET", &a("/nope"), "", Some(T)).status, 404);
    for (method, path) in [
        ("GET", "/backends/99"),
        ("POST", "/backends/99/drain"),
        ("POST", "/backends/99/enable"),
        ("DELETE", "/backends/99"),
        ("DELETE", "/backends/abc"),
    ] {
        assert_eq!(
            call(method, &a(path), "", Some(T)).status,
            404,
            "{method} {path}"
        );
    }
    let wrong = call("PUT", &a("/metrics"), "", Some(T));
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.headers["allow"], "GET, HEAD");
    assert_eq!(
        call("GET", &a("/backends/0/drain"), "", Some(T)).status,
        405
    );
    // Bad bodies: 400 with the reason on the page.
    for (body, why) in [
        ("", "url="),
        ("url=https://127.0.0.1:1", "https"),
        ("url=http://127.0.0.1:1&weight=0", "weight"),
        ("colour=red", "unknown field"),
    ] {
        let reply = call("POST", &a("/backends"), body, Some(T));
        assert_eq!(reply.status, 400, "{body}");
        assert!(reply.body.contains(why), "{body}: {}", reply.body);
    }
    // The same address twice: 409, pointing at the existing one.
    let dup = call("POST", &a("/backends"), &url, Some(T));
    assert_eq!(dup.status, 409);
    assert_eq!(dup.headers["location"], "/backends/0");
    // Removal needs a drain first (HAProxy's del server needs maintenance mode).
    assert_eq!(call("DELETE", &a("/backends/0"), "", Some(T)).status, 409);
    assert_eq!(backends(&s.lb).len(), 1);
    // A chunked body is refused with 411, a huge one with 413, without reading it.
    let admin_addr = admin_addr(&s.lb);
    let chunked = exchange(
        admin_addr,
        b"POST /backends HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer s3cret\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert!(chunked.starts_with("HTTP/1.1 411 "), "{chunked}");
    let huge = exchange(
        admin_addr,
        b"POST /backends HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer s3cret\r\nContent-Length: 100000\r\n\r\nurl=",
    );
    assert!(huge.starts_with("HTTP/1.1 413 "), "{huge}");
    let garbage = exchange(admin_addr, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n");
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    // HEAD: the head only.
    let head = exchange(
        admin_addr,
        b"HEAD /status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer s3cret\r\n\r\n",
    );
    assert!(
        head.starts_with("HTTP/1.1 200 ") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
}

#[test]
fn a_taken_admin_port_fails_start_up() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = DeadPort::new();
    let mut c = config(&[dead.url()]);
    c.admin = Some(taken.local_addr().unwrap());
    c.admin_required = true; // as with --admin ADDR on the command line
    let err = try_start(c).unwrap_err();
    assert!(err.to_string().contains("--admin"), "{err}");
}

/// Eight clients run without pause while a backend is added, one drained and removed, and
/// another drained and enabled again: no request fails, and a drained backend gets nothing.
#[test]
fn add_drain_remove_under_load_loses_no_request() {
    let s = admin_setup(2, with_token);
    let extra = demo(2);
    let pages: Vec<String> = s
        .demos
        .iter()
        .chain([&extra])
        .map(|d| d.page().to_string())
        .collect();
    let load = LoadClients::start(
        8,
        |_| s.url("/"),
        move |body| pages.iter().any(|p| p == body),
    );
    let more = |n: u64| load.wait_for_more(n, Duration::from_secs(10));
    let idle = |id: usize| {
        // Requests that picked the backend before the drain finish; then none is in flight.
        wait_for(
            Duration::from_secs(10),
            "in-flight requests to finish",
            || {
                call("GET", &admin(&s, &format!("/backends/{id}")), "", Some(T))
                    .body
                    .contains("\"active\":0,")
            },
        );
    };
    more(50);

    // Add: the new backend starts taking requests.
    let added = call(
        "POST",
        &admin(&s, "/backends"),
        &format!("url={}&weight=2", extra.url()),
        Some(T),
    );
    assert_eq!(added.status, 201, "{}", added.body);
    assert!(added.body.starts_with("{\"id\":2,"), "{}", added.body);
    assert_eq!(added.headers["location"], "/backends/2");
    wait_for(
        Duration::from_secs(10),
        "the new backend to get requests",
        || extra.requests() > 0,
    );

    // Drain Red: once its last request is done, it gets no other.
    let drained = call("POST", &admin(&s, "/backends/0/drain"), "", Some(T));
    assert_eq!(drained.status, 200);
    assert!(
        drained.body.contains("\"state\":\"DRAINING\""),
        "{}",
        drained.body
    );
    idle(0);
    let red = s.demos[0].requests();
    more(300);
    assert_eq!(
        s.demos[0].requests(),
        red,
        "a drained backend got a request"
    );

    // Remove Red.
    let removed = call("DELETE", &admin(&s, "/backends/0"), "", Some(T));
    assert_eq!(removed.status, 200, "{}", removed.body);
    let list = call("GET", &admin(&s, "/backends"), "", Some(T)).body;
    assert!(!list.contains(&s.demos[0].url()), "{list}");
    assert_eq!(list.matches("\"id\":").count(), 2, "{list}");
    assert_eq!(
        call("GET", &admin(&s, "/backends/0"), "", Some(T)).status,
        404
    );

    // Drain Blue, then enable it: it comes back.
    assert_eq!(
        call("POST", &admin(&s, "/backends/1/drain"), "", Some(T)).status,
        200
    );
    idle(1);
    let blue = s.demos[1].requests();
    more(100);
    assert_eq!(s.demos[1].requests(), blue);
    let enabled = call("POST", &admin(&s, "/backends/1/enable"), "", Some(T));
    assert!(
        enabled.body.contains("\"state\":\"UP\""),
        "{}",
        enabled.body
    );
    wait_for(
        Duration::from_secs(10),
        "the enabled backend to get requests",
        || s.demos[1].requests() > blue,
    );
    more(50);
    assert!(load.finish() >= 550);
}

#[test]
fn exposition_parser_reads_escapes() {
    // The test's own parser must not pass what it should refuse.
    let m = parse_exposition(
        "# HELP x_total h\n# TYPE x_total counter\nx_total{backend=\"a\\\"b\\\\c\\nd\"} 3\n",
    );
    assert_eq!(m["x_total{backend=a\"b\\c\nd}"], 3.0);
    let unannounced = std::panic::catch_unwind(|| parse_exposition("y 1\n"));
    assert!(unannounced.is_err());
}

#[test]
fn refused_connections_and_local_answers_are_counted() {
    let s = admin_setup(1, |c| c.max_connections = 1);
    // One client holds the only slot; the next connection is refused with a 503.
    let mut held = RawConn::open(s.addr());
    held.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(held.response().1, s.demos[0].page().as_bytes());
    let refused = exchange(s.addr(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_line(&refused), "HTTP/1.1 503 Service Unavailable");
    // On the held connection, a request the balancer answers itself: a 400.
    held.send(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n");
    let (head, _) = held.response();
    assert_eq!(status_line(&head), "HTTP/1.1 400 Bad Request");
    held.expect_close();
    let m = metrics(&s);
    assert_eq!(sample(&m, "lb_client_connections_rejected_total"), 1.0);
    assert_eq!(sample(&m, "lb_local_responses_total{code=400}"), 1.0);
    assert_eq!(sample(&m, "lb_local_responses_total{code=503}"), 0.0);
    assert_eq!(sample(&m, "lb_client_connections_accepted_total"), 2.0);
    assert_eq!(sample(&m, "lb_requests_total"), 2.0);
    let b = format!("backend={}", s.demos[0].url());
    assert_eq!(
        sample(&m, &format!("lb_backend_requests_total{{{b}}}")),
        1.0
    );
}

/// POSTs to the admin listener with `extra` header lines; returns the response head and
/// body.
fn post(s: &Setup, path: &str, extra: &str) -> (String, String) {
    let addr = admin_addr(&s.lb);
    let mut c = RawConn::open(addr);
    c.send(
        format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {T}\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    );
    let (head, body) = c.response();
    (head, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn a_post_from_another_sites_page_is_refused() {
    let s = admin_setup(2, with_token);
    let (head, body) = post(&s, "/backends/0/drain", "Origin: http://evil.example\r\n");
    assert_eq!(status_of(&head), 403, "{head}");
    // The API's errors are JSON, as its answers are.
    assert_eq!(
        fields(&head, "content-type"),
        ["application/json"],
        "{head}"
    );
    assert!(body.starts_with("{\"status\":403,\"error\":\""), "{body}");
    assert!(!backend(&s.lb, 0).is_draining());
    // The status page's own buttons (same origin) and clients without Origin still work.
    let same = format!("Origin: http://{}\r\n", admin_addr(&s.lb));
    let (head, body) = post(&s, "/backends/0/drain", &same);
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    assert!(body.contains("\"state\":\"DRAINING\""), "{body}");
    assert!(backend(&s.lb, 0).is_draining());
    let (head, body) = post(&s, "/backends/0/enable", "");
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK", "{head}");
    assert!(body.contains("\"state\":\"UP\""), "{body}");
    assert!(!backend(&s.lb, 0).is_draining());
    // And a cross-site page cannot enable what was drained either.
    post(&s, "/backends/1/drain", "");
    let (head, _) = post(&s, "/backends/1/enable", "Origin: http://evil.example\r\n");
    assert_eq!(status_of(&head), 403, "{head}");
    assert!(backend(&s.lb, 1).is_draining());
}

#[test]
fn a_taken_default_admin_port_is_skipped_but_an_asked_for_one_is_an_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let demo = demo(0);
    let mut c = config(&[demo.url()]);
    c.admin = Some(taken.local_addr().unwrap());
    // The default address, taken by another balancer: start without the admin listener.
    let lb = start(c.clone());
    assert_eq!(lb.admin_addr(), None);
    assert_eq!(
        get(&format!("http://{}/", lb.addr())),
        (200, demo.page().to_string())
    );
    drop(lb);
    // Asked for with --admin: start-up fails, naming the address.
    c.admin_required = true;
    let err = try_start(c).unwrap_err();
    assert!(
        err.to_string()
            .contains(&taken.local_addr().unwrap().to_string()),
        "{err}"
    );
}

#[test]
fn an_admin_connection_closes_after_its_answer() {
    let s = admin_setup(1, |_| {});
    let addr = admin_addr(&s.lb);
    // `Connection: close`: the answer, then the close.
    let mut c = connect(addr);
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let text = String::from_utf8_lossy(&read_until_closed(&mut c)).into_owned();
    let (head, body) = split_answer(&text);
    assert_eq!(status_line(head), "HTTP/1.1 200 OK", "{head}");
    assert_eq!(fields(head, "content-length"), [body.len().to_string()]);
    assert!(body.contains("lb_requests_total 0\n"), "{body}");
}
