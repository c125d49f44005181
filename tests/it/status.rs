//! The live status page (issue 16): `/status.json` carries each backend's last minute, second
//! by second, as the requests sent through the balancer made it; a drill shows there at once;
//! the page is served with a `Content-Security-Policy` whose hashes match its own inline
//! script and style, and with `nosniff`.

use crate::support::*;
use load_balancer::admin::csp::hash_source;
use std::collections::HashMap;
use std::net::SocketAddr;

/// Status, headers (lowercased names) and body of an admin answer.
fn fetch(method: &str, addr: SocketAddr, path: &str) -> (u16, HashMap<String, String>, String) {
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("Authorization", "Bearer t0k")
        .body(String::new())
        .unwrap();
    let mut resp = agent().run(req).unwrap();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
        .collect();
    let status = resp.status().as_u16();
    (status, headers, resp.body_mut().read_to_string().unwrap())
}

fn status_json(lb: &Balancer) -> String {
    let (status, headers, body) = fetch("GET", admin_addr(lb), "/status.json");
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    body
}

/// The object of the backend with this URL in `/status.json`'s `backends` (up to the next
/// backend's `"id"`).
fn backend<'j>(json: &'j str, url: &str) -> &'j str {
    let from = json
        .find(&format!("\"url\":\"{url}\""))
        .unwrap_or_else(|| panic!("no backend {url} in {json}"));
    let rest = &json[from..];
    let end = rest.find("{\"id\":").unwrap_or(rest.len());
    &rest[..end]
}

/// One list of a backend's history, its entries as written.
fn list(backend: &str, key: &str) -> Vec<String> {
    let history = &backend[backend.find("\"history\":{").expect("a history")..];
    let from = history
        .find(&format!("\"{key}\":["))
        .unwrap_or_else(|| panic!("no {key} in {history}"))
        + key.len()
        + 4;
    let end = from + history[from..].find(']').unwrap();
    history[from..end].split(',').map(String::from).collect()
}

fn sum(backend: &str, key: &str) -> u64 {
    list(backend, key)
        .iter()
        .map(|n| n.parse::<u64>().unwrap())
        .sum()
}

/// The `events` list of a backend's history, as written.
fn events(backend: &str) -> &str {
    let from = backend.find("\"events\":[").expect("events") + 10;
    &backend[from..from + backend[from..].find("]}").unwrap()]
}

fn number(json: &str, key: &str) -> u64 {
    let from = json.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
    let digits: String = json[from..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

#[test]
fn the_history_counts_the_requests_sent() {
    let demos = demos(2);
    let dead_port = DeadPort::new();
    let dead = dead_port.url();
    let mut urls = urls(&demos);
    urls.push(dead.clone());
    let mut c = config(&urls);
    with_admin(&mut c);
    let lb = start(c);
    for _ in 0..7 {
        assert_eq!(get(&format!("http://{}/", lb.addr())).0, 200);
    }
    assert_eq!(get(&format!("http://{}/status/503", lb.addr())).0, 503);

    let json = status_json(&lb);
    let now = number(&json, "time_ms");
    let mut answered = 0;
    for d in &demos {
        let b = backend(&json, &d.url());
        let start = number(b, "start_ms");
        assert!(start <= now && now < start + 60_000, "{start} {now}");
        // Every second of the last minute, and what the backend itself counted in them.
        assert_eq!(list(b, "requests").len(), 60, "{b}");
        assert_eq!(sum(b, "requests"), d.requests(), "{b}");
        assert_eq!(sum(b, "errors"), 0);
        // Seconds with answers have a p99 (a bucket bound in seconds), the others none.
        let counts = list(b, "requests");
        for (n, p99) in counts.iter().zip(list(b, "p99_seconds")) {
            assert_eq!(n == "0", p99 == "null", "{b}");
        }
        assert_eq!(events(b), "", "{b}");
        answered += sum(b, "requests");
    }
    assert_eq!(answered, 8);
    // The one 503 answer, counted as such by whichever backend gave it.
    let server_errors: u64 = demos
        .iter()
        .map(|d| sum(backend(&json, &d.url()), "responses_5xx"))
        .sum();
    assert_eq!(server_errors, 1);
    // The dead backend: one refused connection (the request went on to the next backend),
    // no answers, and the moment it went DOWN.
    let b = backend(&json, &dead);
    assert_eq!((sum(b, "requests"), sum(b, "errors")), (0, 1), "{b}");
    assert!(
        events(b).contains("\"state\":\"DOWN\",\"reason\":\"connection refused"),
        "{b}"
    );
    assert!(list(b, "p50_seconds").iter().all(|p| p == "null"));
}

#[test]
fn a_drill_shows_in_the_history_at_once() {
    // The demo backends belong to the balancer, so the admin's drill buttons reach them.
    let (fleet, lb) = fleet_setup(2, |c| {
        with_admin(c);
        // Draining needs the token on TCP (drills are open in a demo without one).
        c.admin_token = Some("t0k".into());
    });
    let (red, blue) = (fleet.backends[0].url(), fleet.backends[1].url());
    let admin = admin_addr(&lb);
    let send = |n| {
        for _ in 0..n {
            assert_eq!(get(&format!("http://{}/", lb.addr())).0, 200);
        }
    };
    send(4);
    let (status, _, said) = fetch("POST", admin, "/demo/red/stop");
    assert_eq!(status, 200, "{said}");
    send(4);
    // No waiting: the next read of /status.json (the page makes one every second) shows it.
    let json = status_json(&lb);
    let r = backend(&json, &red);
    assert_eq!((sum(r, "requests"), sum(r, "errors")), (2, 1), "{r}");
    assert!(events(r).contains("\"state\":\"DOWN\""), "{r}");
    let b = backend(&json, &blue);
    assert_eq!((sum(b, "requests"), sum(b, "errors")), (6, 0), "{b}");
    // The strip's last four decisions: all Blue.
    let recent = &json[json.find("\"recent\":[").unwrap()..];
    let last: Vec<&str> = recent.rsplit("\"backend\":\"").take(4).collect();
    assert!(last.iter().all(|d| d.starts_with(&blue)), "{recent}");

    // Draining and enabling are marked too.
    for action in ["drain", "enable"] {
        let (status, _, _) = fetch("POST", admin, &format!("/backends/1/{action}"));
        assert_eq!(status, 200);
    }
    let json = status_json(&lb);
    let marks = events(backend(&json, &blue));
    let drained = marks.find("\"state\":\"DRAINING\"").expect(marks);
    let enabled = marks.find("\"state\":\"ENABLED\"").expect(marks);
    assert!(drained < enabled, "{marks}");
}

/// The text of the only `<tag>` element in `html`.
fn only_element<'h>(html: &'h str, tag: &str) -> &'h str {
    let open = format!("<{tag}>");
    assert_eq!(html.matches(&format!("<{tag}")).count(), 1, "one <{tag}>");
    let from = html.find(&open).unwrap() + open.len();
    &html[from..from + html[from..].find(&format!("</{tag}>")).unwrap()]
}

#[test]
fn the_page_allows_its_own_script_and_style_and_nothing_else() {
    let demo = demo(0);
    let mut c = config(&[demo.url()]);
    with_admin(&mut c);
    let lb = start(c);
    let admin = admin_addr(&lb);
    let (status, headers, html) = fetch("GET", admin, "/status");
    assert_eq!(status, 200);
    let policy = &headers["content-security-policy"];
    // The hashes in the policy are those of the script and the style the page carries.
    let script = only_element(&html, "script");
    let style = only_element(&html, "style");
    assert!(script.contains("fetch(\"/status.json\""), "{script}");
    assert_eq!(
        policy,
        &format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
             form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            hash_source(script),
            hash_source(style)
        )
    );
    assert!(
        !html.contains(" style="),
        "a style attribute would be blocked"
    );

    // nosniff on every admin answer: the page, the JSON, the metrics, an error page.
    for path in ["/status", "/status.json", "/metrics", "/backends", "/nope"] {
        let (_, headers, _) = fetch("GET", admin, path);
        assert_eq!(
            headers.get("x-content-type-options").map(String::as_str),
            Some("nosniff"),
            "{path}"
        );
    }
    // The JSON needs no policy of its own; only the page runs anything.
    let (_, headers, _) = fetch("GET", admin, "/status.json");
    assert!(!headers.contains_key("content-security-policy"));
}
