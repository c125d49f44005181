//! The access log in the formats tools read (issue 23): nginx's `combined` and JSON Lines,
//! the backends tried named when the balancer answers itself, and the request id that
//! follows a request through the backend, the response and the log.

use crate::support::process::Launch;
use crate::support::*;

/// One request with these extra header lines; the response head.
fn ask(addr: std::net::SocketAddr, target: &str, extra: &str) -> String {
    let mut c = RawConn::open(addr);
    c.send(
        format!("GET {target} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n").as_bytes(),
    );
    c.response().0
}

/// The value of `"name":"..."` in a JSON line written by the balancer (no escapes in it).
fn json_text<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("\"{name}\":\""))? + name.len() + 4;
    line[start..].split('"').next()
}

/// nginx's combined format, field by field, as its usual pattern reads it:
/// `^(\S+) \S+ \S+ \[([^\]]+)\] "([^"]*)" (\d{3}) (\d+|-) "([^"]*)" "([^"]*)"`; returns the
/// fields and what follows them.
fn combined_fields(line: &str) -> (Vec<String>, String) {
    let (client, rest) = line.split_once(' ').unwrap();
    let (_ident, rest) = rest.split_once(' ').unwrap();
    let (_user, rest) = rest.split_once(' ').unwrap();
    let rest = rest.strip_prefix('[').unwrap();
    let (time, rest) = rest.split_once("] \"").unwrap();
    let (request, rest) = rest.split_once("\" ").unwrap();
    let (status, rest) = rest.split_once(' ').unwrap();
    let (bytes, rest) = rest.split_once(" \"").unwrap();
    let (referer, rest) = rest.split_once("\" \"").unwrap();
    let (agent, rest) = rest.split_once('"').unwrap();
    assert!(!client.contains(' ') && time.len() == 26, "{line}");
    assert!(
        status.len() == 3 && status.bytes().all(|b| b.is_ascii_digit()),
        "{line}"
    );
    assert!(
        bytes == "-" || bytes.bytes().all(|b| b.is_ascii_digit()),
        "{line}"
    );
    let fields = [client, time, request, status, bytes, referer, agent];
    (fields.map(str::to_string).to_vec(), rest.to_string())
}

#[test]
fn json_lines_carry_every_field_and_the_request_id_goes_round() {
    let backend = Recorder::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let mut lb = Launch::over(&backend.url())
        .args(&["--access-log-format", "json"])
        .start();
    let head = ask(
        lb.addr,
        "/a?b=1",
        "Referer: http://ref.example/\r\nUser-Agent: test \"agent\"\r\n",
    );
    assert_eq!(status_of(&head), 200, "{head}");
    let id = fields(&head, "x-request-id");
    assert_eq!(id.len(), 1, "{head}");
    assert_eq!(id[0].len(), 32, "a new id: {head}");
    let sent = backend.seen.last().0;
    assert!(
        sent.contains(&format!("X-Request-Id: {}\r\n", id[0])),
        "{sent}"
    );
    let line = lb.line_with("\"request_id\"");
    assert!(
        line.starts_with("{\"time\":\"20") && line.ends_with('}'),
        "{line}"
    );
    assert_eq!(
        json_text(&line, "request_id"),
        Some(id[0].as_str()),
        "{line}"
    );
    for (name, value) in [
        ("client", "127.0.0.1"),
        ("method", "GET"),
        ("path", "/a?b=1"),
        ("protocol", "HTTP/1.1"),
        ("referer", "http://ref.example/"),
        ("backend", backend.url().as_str()),
    ] {
        assert_eq!(json_text(&line, name), Some(value), "{name} in {line}");
    }
    assert!(
        line.contains("\"user_agent\":\"test \\\"agent\\\"\""),
        "{line}"
    );
    assert!(line.contains("\"status\":200,\"bytes\":2,"), "{line}");
    assert!(
        line.contains("\"upstream_time\":0.") && line.contains("\"total_time\":0."),
        "{line}"
    );
    let time = json_text(&line, "time").unwrap();
    assert!(
        time.len() == 24 && time.ends_with('Z') && &time[10..11] == "T",
        "{time}"
    );
}

/// Asks the real binary, logging JSON, for `path` from `backend`; returns the answer's head
/// and body and its log line.
fn logged(backend: &Recorder, path: &str) -> (String, Vec<u8>, String) {
    let mut lb = Launch::over(&backend.url())
        .args(&["--access-log-format", "json"])
        .start();
    let mut c = RawConn::open(lb.addr);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
    let (head, body) = c.response();
    (head, body, lb.line_with(path))
}

#[test]
fn a_long_body_is_counted_to_its_last_byte() {
    // 300 000 bytes, sent with the head in one write: the balancer's first read takes the
    // head and the body's start, and the rest streams after them. All of it is counted.
    let mut response = b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n".to_vec();
    response.resize(response.len() + 300_000, b'x');
    let (head, body, line) = logged(&Recorder::fixed(response.leak()), "/long");
    assert_eq!((status_of(&head), body.len()), (200, 300_000), "{head}");
    assert!(line.contains("\"status\":200,\"bytes\":300000,"), "{line}");
}

#[test]
fn a_body_that_ends_with_the_close_is_counted_too() {
    // No length: the body is read until the backend closes, and relayed chunked.
    let mut response = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
    response.resize(response.len() + 100_000, b'y');
    let backend = Recorder::start(move |_, _| Reply::then_close(&response));
    let (head, body, line) = logged(&backend, "/until-close");
    assert_eq!(status_of(&head), 200, "{head}");
    assert_eq!(decode_chunked(&body).0.len(), 100_000, "{head}");
    assert!(line.contains("\"status\":200,\"bytes\":100000,"), "{line}");
}

#[test]
fn a_sane_client_id_is_kept_and_any_other_replaced() {
    let backend = Recorder::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let s = Setup::new(0, |c| c.backends = vec![spec(&backend.url())]);
    let head = ask(s.addr(), "/", "X-Request-Id: trace-42\r\n");
    assert_eq!(fields(&head, "x-request-id"), ["trace-42"]);
    let sent = backend.seen.last().0;
    assert_eq!(sent.matches("X-Request-Id").count(), 1, "{sent}");
    assert!(sent.contains("X-Request-Id: trace-42\r\n"), "{sent}");
    let long = "x".repeat(200);
    for bad in ["two words", long.as_str()] {
        let head = ask(s.addr(), "/", &format!("X-Request-Id: {bad}\r\n"));
        let id = fields(&head, "x-request-id");
        assert_eq!(id[0].len(), 32, "{bad:?} replaced: {head}");
        let sent = backend.seen.last().0;
        assert_eq!(
            sent.to_ascii_lowercase().matches("x-request-id").count(),
            1,
            "{sent}"
        );
        assert!(!sent.contains(bad), "{sent}");
    }
    // Two ids: neither is trusted.
    let head = ask(s.addr(), "/", "X-Request-Id: a\r\nX-Request-Id: b\r\n");
    assert_eq!(fields(&head, "x-request-id")[0].len(), 32, "{head}");
    // Off: nothing added either way.
    let off = Setup::new(0, |c| {
        c.backends = vec![spec(&backend.url())];
        c.request_id = false;
    });
    let head = ask(off.addr(), "/", "");
    assert!(fields(&head, "x-request-id").is_empty(), "{head}");
    assert!(!backend.seen.last().0.contains("X-Request-Id"));
}

#[test]
fn combined_lines_read_as_nginxs_and_own_errors_name_the_backends_tried() {
    let dead = DeadPort::new();
    let mut lb = Launch::over(&dead.url())
        .args(&["--access-log-format", "combined"])
        .start();
    let head = ask(lb.addr, "/x", "User-Agent: curl/8\r\n");
    assert_eq!(status_of(&head), 502, "{head}");
    let id = fields(&head, "x-request-id");
    assert_eq!(
        id.len(),
        1,
        "the balancer's own page carries the id too: {head}"
    );
    let line = lb.line_with("\"GET /x HTTP/1.1\"");
    let (f, rest) = combined_fields(&line);
    assert_eq!(f[0], "127.0.0.1");
    assert_eq!(
        f[2..],
        ["GET /x HTTP/1.1", "502", &f[4], "-", "curl/8"],
        "{line}"
    );
    assert!(
        rest.starts_with(&format!(" upstream=\"{}\" rt=", dead.url())),
        "the backend tried is named: {line}"
    );
    assert!(rest.ends_with(&format!(" rid=\"{}\"", id[0])), "{line}");
}
