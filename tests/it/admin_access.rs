//! Who may change what on the admin listener (issue 23): on TCP, a change needs the token,
//! except the demo's drills; a Unix socket of mode 0600 is its owner's; the token comes from a
//! file that only its owner can read, never from the command line; the API's errors are JSON;
//! query strings never reach the status page.

use crate::support::process::Launch;
use crate::support::*;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A scratch directory of this test process, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("lb-access-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One request over TCP to the admin listener: the head and the body.
fn tcp(s: &Setup, method: &str, path: &str, extra: &str, body: &str) -> (String, String) {
    let addr = admin_addr(&s.lb);
    let mut c = RawConn::open(addr);
    c.send(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let (head, body) = c.response();
    (head, String::from_utf8_lossy(&body).into_owned())
}

/// One request over the Unix socket at `path`, as `curl --unix-socket` sends it: the whole
/// answer as text.
fn unix(path: &Path, method: &str, target: &str, body: &str) -> String {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn without_a_token_a_tcp_admin_only_reads() {
    let s = Setup::new(1, with_admin);
    let dead = DeadPort::new();
    for (method, path, body) in [
        ("POST", "/backends", format!("url={}", dead.url())),
        ("POST", "/backends/0/drain", String::new()),
        ("POST", "/backends/0/enable", String::new()),
        ("DELETE", "/backends/0", String::new()),
    ] {
        let (head, text) = tcp(&s, method, path, "", &body);
        assert_eq!(status_of(&head), 403, "{method} {path}: {head}");
        // The API's errors are JSON, and say what to do.
        assert_eq!(fields(&head, "content-type"), ["application/json"]);
        assert!(text.starts_with("{\"status\":403,\"error\":\""), "{text}");
        assert!(text.contains("--admin-token-file"), "{text}");
    }
    assert_eq!(backends(&s.lb).len(), 1, "nothing added");
    assert!(!backend(&s.lb, 0).is_draining());
    for path in ["/status", "/status.json", "/metrics", "/backends"] {
        let (head, _) = tcp(&s, "GET", path, "", "");
        assert_eq!(status_of(&head), 200, "{path}: {head}");
    }
    // JSON when asked for JSON, a page otherwise.
    let (head, _) = tcp(&s, "GET", "/nope", "Accept: application/json\r\n", "");
    assert_eq!(
        fields(&head, "content-type"),
        ["application/json"],
        "{head}"
    );
    let (head, _) = tcp(&s, "GET", "/nope", "", "");
    assert_eq!(fields(&head, "content-type"), ["text/html; charset=utf-8"]);
}

#[test]
fn the_demos_drills_work_without_a_token_but_nothing_else_does() {
    let (fleet, lb) = fleet_setup(1, with_admin);
    let s = Setup {
        lb,
        demos: Vec::new(),
    };
    let (head, _) = tcp(&s, "POST", "/demo/red/stop", "", "then=status");
    assert_eq!(status_of(&head), 303, "{head}");
    assert_eq!(fleet.backends[0].drill(), load_balancer::demo::Drill::Stop);
    let (head, _) = tcp(&s, "POST", "/demo/red/start", "", "");
    assert_eq!(status_of(&head), 200, "{head}");
    // The backend list stays closed.
    let (head, _) = tcp(&s, "POST", "/backends/0/drain", "", "");
    assert_eq!(status_of(&head), 403, "{head}");
    assert!(!backend(&s.lb, 0).is_draining());
}

#[test]
fn the_unix_socket_is_its_owners_and_is_removed_at_the_end() {
    let dir = Scratch::new("unix");
    let path = dir.0.join("admin.sock");
    // What a killed balancer leaves behind: a socket nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let s = Setup::new(1, |c| c.admin_unix = Some(path.clone()));
    assert_eq!(s.lb.admin_socket(), Some(path.as_path()));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // `curl --unix-socket PATH http://x/metrics`: any Host, no token.
    let metrics = unix(&path, "GET", "/metrics", "");
    assert!(metrics.starts_with("HTTP/1.1 200 "), "{metrics}");
    assert!(metrics.contains("lb_requests_total"), "{metrics}");
    let dead = DeadPort::new();
    let added = unix(&path, "POST", "/backends", &format!("url={}", dead.url()));
    assert!(added.starts_with("HTTP/1.1 201 "), "{added}");
    assert_eq!(backends(&s.lb).len(), 2);
    drop(s);
    assert!(
        !path.exists(),
        "the socket is removed when the balancer stops"
    );
    // Anything but a socket at the path is refused, and left alone.
    std::fs::write(&path, "notes").unwrap();
    let mut c = config(&[]);
    c.admin_unix = Some(path.clone());
    let err = try_start(c).unwrap_err().to_string();
    assert!(
        err.contains("not a socket") && err.contains("--admin unix:"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "notes");
}

#[test]
fn the_token_comes_from_a_private_file_and_never_shows_in_ps() {
    let dir = Scratch::new("token");
    let file = dir.0.join("token");
    std::fs::write(&file, "Zs9-secret-q7\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file_arg = file.to_str().unwrap();
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_load-balancer"))
        .args(["--admin-token-file", file_arg, "--admin", "off"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("--admin-token-file") && said.contains("chmod 600"),
        "{said}"
    );

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let backend = Recorder::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let mut lb = Launch::over(&backend.url())
        .args(&["--admin", "127.0.0.1:0", "--admin-token-file", file_arg])
        .start();
    let admin = lb.admin();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", lb.pid())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("Zs9-secret-q7"));
    let ask = |auth: &str| {
        exchange(
            admin,
            format!("GET /backends HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n").as_bytes(),
        )
    };
    assert_eq!(status_of(&ask("")), 401);
    assert_eq!(
        status_of(&ask("Authorization: Bearer Zs9-secret-q7\r\n")),
        200
    );
}

#[test]
fn query_strings_never_reach_the_status_page() {
    let s = Setup::new(1, with_admin);
    let (status, _) = get(&s.url("/reset?token=SECRET123"));
    assert_eq!(status, 200);
    for path in ["/status.json", "/status"] {
        let (head, body) = tcp(&s, "GET", path, "", "");
        assert_eq!(status_of(&head), 200);
        assert!(body.contains("GET /reset"), "{path}: the request is shown");
        assert!(!body.contains("SECRET123"), "{path}: {body}");
    }
}
