//! `--backends-file` (issue 15): the list follows a file that writers replace by rename,
//! changes are diffs that fail no request, a bad file is kept out, removed backends drain,
//! SIGHUP reads at once, the admin API leaves the list to the file, and two copies with one
//! file agree on affinity (ip-hash and the `lb_backend` cookie). Every wait polls the
//! admin listener for the file's generation or error count, with a deadline.

use crate::support::files::Dir;
use crate::support::process::{Launch, Running};
use crate::support::*;
use load_balancer::backends;
use load_balancer::demo::DemoBackend;
use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a reload may take to show, here on a busy 2-core machine: generous, since
/// every wait polls and returns as soon as the change is seen.
const RELOAD_DEADLINE: Duration = Duration::from_secs(10);
/// The polling interval the tests give the watcher: short, so that 20 reloads take seconds.
const FAST_POLL: &str = "100ms";

/// The file's text for these URLs, with a comment and a blank line as people write them.
fn listing(urls: &[String]) -> String {
    let mut text = String::from("# written by the test\n\n");
    for url in urls {
        text.push_str(url);
        text.push('\n');
    }
    text
}

/// An in-process balancer over `dir`'s file with an admin listener on port 0, as `main`
/// starts one: the file read first, then the balancer.
fn start_in_process(dir: &Dir, tweak: impl FnOnce(&mut Config)) -> Balancer {
    let mut config = config(&[]);
    with_admin(&mut config);
    config.admin_required = true;
    config.backends_file = Some(dir.file());
    config.backends_file_interval = Duration::from_millis(100);
    config.backends = backends::file::load(&dir.file(), &[config.listen]).unwrap();
    tweak(&mut config);
    start(config)
}

/// Waits until `/metrics` shows `name` at `value` or more.
fn wait_metric(admin: SocketAddr, name: &str, value: f64) {
    wait_for(RELOAD_DEADLINE, &format!("{name} >= {value}"), || {
        metric(admin, name) >= value
    });
}

/// The URLs of the backend list, from `GET /backends`.
fn listed(admin: SocketAddr) -> Vec<String> {
    let (_, json) = admin_get(admin, "/backends");
    json.split("\"url\":\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

#[test]
fn reload_under_load_fails_no_request() {
    const RELOADS: usize = 20;
    const CLIENTS: usize = 3;
    let demos = demos(5);
    let all = urls(&demos);
    // Twenty lists: a backend in or out, one weight changed, and the whole list swapped
    // for one with nothing in common (which drains every backend a request may have seen).
    let lists: Vec<Vec<String>> = (0..RELOADS)
        .map(|i| match i % 4 {
            0 => vec![all[0].clone(), all[1].clone()],
            1 => vec![all[2].clone(), all[3].clone(), all[4].clone()],
            2 => vec![
                all[2].clone(),
                format!("{},weight=3", all[3]),
                all[0].clone(),
            ],
            _ => vec![all[4].clone()],
        })
        .collect();
    let dir = Dir::new("load");
    dir.write(&listing(&[all[1].clone(), all[2].clone()]));
    let lb = start_in_process(&dir, |c| set_strategy(c, "weighted"));
    let admin = admin_addr(&lb);
    // Each client keeps its connections to the balancer alive and reuses them.
    let load = LoadClients::start(
        CLIENTS,
        |n| format!("http://{}/?client={n}", lb.addr()),
        |_| true,
    );
    for (i, list) in lists.iter().enumerate() {
        // Some requests between two reloads, so each list really carries traffic.
        load.wait_for_more(CLIENTS as u64, RELOAD_DEADLINE);
        dir.write(&listing(list));
        wait_metric(admin, "lb_backends_file_generation", (i + 2) as f64);
        let want: Vec<String> = list
            .iter()
            .map(|u| u.split(',').next().unwrap().to_string())
            .collect();
        assert_eq!(listed(admin), want, "reload {}", i + 1);
    }
    // No request failed (`finish` checks; the waits above saw every list carry traffic).
    load.finish();
    assert_eq!(metric(admin, "lb_backends_file_reload_errors_total"), 0.0);
    // Every backend that was listed served requests.
    for d in &demos {
        assert!(d.requests() > 0, "{} served nothing", d.url());
    }
}

#[test]
fn a_bad_file_is_kept_out_and_counted() {
    let demos = demos(2);
    let good = urls(&demos);
    let dir = Dir::new("bad");
    dir.write(&listing(&good));
    let lb = start_in_process(&dir, |_| {});
    let admin = admin_addr(&lb);
    assert_eq!(metric(admin, "lb_backends_file_generation"), 1.0);
    assert_eq!(
        metric(admin, "lb_backends_file_last_reload_successful"),
        1.0
    );
    // Line 3 is wrong; lines 1 and 2 alone would be a valid list, and still none of it counts.
    dir.write(&format!("{}\n# fine so far\nhttp://nowhere\n", good[0]));
    wait_metric(admin, "lb_backends_file_reload_errors_total", 1.0);
    assert_eq!(
        metric(admin, "lb_backends_file_last_reload_successful"),
        0.0
    );
    assert_eq!(metric(admin, "lb_backends_file_generation"), 1.0);
    assert_eq!(listed(admin), good, "the old list stays");
    let (_, status) = admin_get(admin, "/status.json");
    assert!(status.contains("line 3: "), "{status}");
    for _ in 0..4 {
        assert_eq!(get(&format!("http://{}/", lb.addr())).0, 200);
    }
    // A file that goes missing is refused the same way, once.
    std::fs::remove_file(dir.file()).unwrap();
    wait_metric(admin, "lb_backends_file_reload_errors_total", 2.0);
    assert_eq!(listed(admin), good);
    // A good file is taken again.
    dir.write(&listing(&good[1..]));
    wait_metric(admin, "lb_backends_file_generation", 2.0);
    assert_eq!(
        metric(admin, "lb_backends_file_last_reload_successful"),
        1.0
    );
    assert_eq!(listed(admin), good[1..]);
    assert_eq!(metric(admin, "lb_backends_file_reload_errors_total"), 2.0);
    // A weight that round robin would ignore in silence is refused too (issue 22).
    dir.write(&format!("{},weight=3\n{}\n", good[0], good[1]));
    wait_metric(admin, "lb_backends_file_reload_errors_total", 3.0);
    assert_eq!(listed(admin), good[1..]);
    let (_, status) = admin_get(admin, "/status.json");
    assert!(status.contains("round-robin ignores weights"), "{status}");
}

/// What the scripted backend of the drain test reports.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// A request for `/slow` arrived; it is answered when the test says so.
    Slow,
    /// A connection from the balancer closed (after `n` requests on it).
    Closed(usize),
}

#[test]
fn a_removed_backend_drains_its_requests_and_closes_its_idle_connections() {
    let (events, seen) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let events = Mutex::new(events);
    let released = Mutex::new(released);
    // A keep-alive backend: `/slow` waits for the test's word; every connection reports
    // when the balancer closes it.
    let slow = ScriptedBackend::start(move |mut s| {
        let mut served = 0;
        while let Some(head) = read_head(&mut s) {
            if head.starts_with("GET /slow ") {
                let _ = events.lock().unwrap().send(Seen::Slow);
                let _ = released
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(20));
            }
            served += 1;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nscript");
        }
        let _ = events.lock().unwrap().send(Seen::Closed(served));
    });
    let other = demos(1);
    let dir = Dir::new("drain");
    dir.write(&listing(&[slow.url()]));
    let lb = start_in_process(&dir, |_| {});
    let admin = admin_addr(&lb);
    let addr = lb.addr();
    let next = |what: &str| {
        seen.recv_timeout(RELOAD_DEADLINE)
            .unwrap_or_else(|_| panic!("no word from the backend: {what}"))
    };
    // One request in flight on connection A, and a second one that leaves connection B idle
    // in the balancer's pool.
    let in_flight = thread::spawn(move || {
        let mut s = connect(addr);
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: lb\r\n\r\n")
            .unwrap();
        read_response(&mut s)
    });
    assert_eq!(next("the slow request"), Seen::Slow);
    assert_eq!(get(&format!("http://{addr}/fast")), (200, "script".into()));
    // The file no longer lists it.
    dir.write(&listing(&urls(&other)));
    wait_metric(admin, "lb_backends_file_generation", 2.0);
    // The idle connection closes at once, while the request in flight goes on.
    assert_eq!(next("the idle connection closing"), Seen::Closed(1));
    assert!(!in_flight.is_finished(), "the slow request was cut");
    let (status, body) = get(&format!("http://{addr}/"));
    assert_eq!(status, 200);
    assert!(
        body.contains("Red Server"),
        "new requests go to the list: {body}"
    );
    // Its request finishes, and its connection is not pooled again.
    release.send(()).unwrap();
    let (head, body) = in_flight.join().unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(body, b"script");
    assert_eq!(next("the last connection closing"), Seen::Closed(1));
    assert_eq!(listed(admin), urls(&other));
}

#[test]
fn the_admin_api_leaves_the_list_to_the_file() {
    let demos = demos(2);
    let dir = Dir::new("api");
    dir.write(&listing(&urls(&demos)));
    let lb = start_in_process(&dir, |c| {
        set_strategy(c, "weighted");
        c.admin_token = Some(ADMIN_TOKEN.into());
    });
    let admin = admin_addr(&lb);
    let agent = agent();
    let call = |method: &str, path: &str, body: &str| {
        let url = format!("http://{admin}{path}");
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        let mut r = match method {
            "POST" => agent.post(&url).header("Authorization", &bearer).send(body),
            _ => agent.delete(&url).header("Authorization", &bearer).call(),
        }
        .unwrap();
        let text = r.body_mut().read_to_string().unwrap();
        (r.status().as_u16(), text)
    };
    let (status, page) = call("POST", "/backends", "url=http://127.0.0.1:1");
    assert_eq!(status, 409);
    assert!(page.contains("--backends-file"), "{page}");
    assert!(page.contains("backends.txt"), "{page}");
    assert_eq!(call("POST", "/backends/0/drain", "").0, 200);
    let (status, page) = call("DELETE", "/backends/0", "");
    assert_eq!(status, 409, "even drained and idle");
    assert!(page.contains("--backends-file"), "{page}");
    assert_eq!(call("POST", "/backends/0/enable", "").0, 200);
    assert_eq!(listed(admin), urls(&demos));
    // A drain survives a reload that keeps the backend, and is the only difference.
    assert_eq!(call("POST", "/backends/1/drain", "").0, 200);
    dir.write(&listing(&[
        format!("{},weight=2", demos[1].url()),
        demos[0].url(),
    ]));
    wait_metric(admin, "lb_backends_file_generation", 2.0);
    let (_, one) = admin_get(admin, "/backends/1");
    assert!(one.contains("\"state\":\"DRAINING\""), "{one}");
    assert!(one.contains("\"weight\":2"), "{one}");
    // /status and /status.json name the file.
    let (_, json) = admin_get(admin, "/status.json");
    assert!(json.contains("\"backends_file\":{\"path\":"), "{json}");
    assert!(json.contains("\"generation\":2"), "{json}");
    let (_, html) = admin_get(admin, "/status");
    assert!(
        html.contains("backends.txt &middot; generation 2"),
        "{html}"
    );
}

/// The real binary on a free port, quiet, with `args` after those; its stdout line by line,
/// waited for up to the reload deadline.
fn start_binary(args: &[&str]) -> Running {
    Launch::balancer()
        .args(&["--listen", "127.0.0.1:0", "--quiet"])
        .args(args)
        .patience(RELOAD_DEADLINE)
        .start()
}

#[test]
fn a_backend_removed_while_idle_is_dropped_and_said_so() {
    let demos = demos(2);
    let dir = Dir::new("drop");
    dir.write(&listing(&urls(&demos)));
    let file = dir.file();
    let mut lb = start_binary(&[
        "--admin",
        "off",
        "--backends-file",
        file.to_str().unwrap(),
        "--backends-file-interval",
        "100ms",
    ]);
    dir.write(&listing(&urls(&demos[..1])));
    // No request is in flight at the removed backend: it goes at the watcher's next look.
    let line = lb.line_with("dropped: no request left in flight");
    assert!(line.contains(&demos[1].url()), "{line}");
}

#[cfg(unix)]
#[test]
fn sighup_reads_the_file_at_once() {
    let demos = demos(2);
    let dir = Dir::new("hup");
    dir.write(&listing(&urls(&demos[..1])));
    let file = dir.file();
    // Polled once an hour: only the signal can make this reload happen within the test.
    let mut lb = start_binary(&[
        "--admin",
        "127.0.0.1:0",
        "--backends-file",
        file.to_str().unwrap(),
        "--backends-file-interval",
        "1h",
    ]);
    let admin = lb.admin();
    dir.write(&listing(&urls(&demos)));
    assert_eq!(metric(admin, "lb_backends_file_generation"), 1.0);
    lb.signal("HUP");
    wait_metric(admin, "lb_backends_file_generation", 2.0);
    assert_eq!(listed(admin), urls(&demos));
    lb.line_with("SIGHUP: reading the configuration again");
    lb.line_with(&format!("generation 2: + {}", demos[1].url()));
    // A SIGHUP re-reads even an unchanged file: the list stays, the load time moves on.
    let loaded = "lb_backends_file_last_reload_success_timestamp_seconds";
    let before = metric(admin, loaded);
    lb.signal("HUP");
    wait_for(RELOAD_DEADLINE, "a second read", || {
        metric(admin, loaded) > before
    });
    assert_eq!(metric(admin, "lb_backends_file_generation"), 2.0);
}

#[cfg(unix)]
#[test]
fn sighup_without_a_file_does_not_stop_the_balancer() {
    let demo = demos(1);
    let mut lb = start_binary(&["--admin", "off", "--backend", &demo[0].url()]);
    lb.signal("HUP");
    lb.line_with("[Reload] SIGHUP: no change");
    assert_eq!(get(&format!("http://{}/", lb.addr)).0, 200);
    assert!(lb.is_running(), "still running");
}

#[test]
fn a_bad_file_at_start_exits_2_naming_the_line() {
    let dir = Dir::new("start");
    dir.write("http://127.0.0.1:8001\n\nhttp://127.0.0.1:8002,weight=zero\n");
    let out = Command::new(env!("CARGO_BIN_EXE_load-balancer"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "off",
            "--backends-file",
        ])
        .arg(dir.file())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("backends.txt: line 3: "), "{err}");
    assert!(err.contains("weight"), "{err}");
}

/// Two copies of the balancer over one file, the second started with another list (so its
/// backends got their ids in another order) and brought to the file by SIGHUP-less polling.
fn two_copies(dir: &Dir, all: &[String], strategy: &str) -> (Running, Running) {
    let file = dir.file();
    let args = |file: &Path| {
        vec![
            "--admin".to_string(),
            "127.0.0.1:0".into(),
            "--strategy".into(),
            strategy.into(),
            "--backends-file-interval".into(),
            FAST_POLL.into(),
            "--backends-file".into(),
            file.to_str().unwrap().to_string(),
        ]
    };
    let mut reversed: Vec<String> = all.to_vec();
    reversed.reverse();
    dir.write(&listing(&reversed));
    let mut second = start_binary(&args(&file).iter().map(String::as_str).collect::<Vec<_>>());
    dir.write(&listing(all));
    wait_metric(second.admin(), "lb_backends_file_generation", 2.0);
    let first = start_binary(&args(&file).iter().map(String::as_str).collect::<Vec<_>>());
    (first, second)
}

/// Which demo backend answered, by its page.
fn server_of(body: &str, demos: &[DemoBackend]) -> usize {
    demos
        .iter()
        .position(|d| body.contains(d.page()))
        .unwrap_or_else(|| panic!("no demo backend's page: {body}"))
}

/// The backend that `lb` picks for this test's client address (127.0.0.1).
fn pick(lb: &Running, demos: &[DemoBackend]) -> usize {
    let (status, body) = get(&format!("http://{}/", lb.addr));
    assert_eq!(status, 200);
    server_of(&body, demos)
}

#[test]
fn two_copies_agree_under_ip_hash() {
    let demos = demos(6);
    let all = urls(&demos);
    let dir = Dir::new("iphash");
    let (mut first, mut second) = two_copies(&dir, &all, "ip-hash");
    let admins = [first.admin(), second.admin()];
    // One client address, but several lists: each list is a new draw of the hash, so copies
    // that agreed by chance would not agree on all of them.
    let subsets: [&[usize]; 5] = [
        &[0, 1, 2, 3, 4, 5],
        &[1, 3, 5],
        &[0, 2, 4, 5],
        &[5, 4, 0],
        &[2, 3],
    ];
    for (n, subset) in subsets.iter().enumerate() {
        let list: Vec<String> = subset.iter().map(|&i| all[i].clone()).collect();
        if n > 0 {
            dir.write(&listing(&list));
            wait_metric(admins[0], "lb_backends_file_generation", (n + 1) as f64);
            wait_metric(admins[1], "lb_backends_file_generation", (n + 2) as f64);
        }
        let a = pick(&first, &demos);
        assert!(subset.contains(&a));
        for _ in 0..3 {
            assert_eq!(pick(&first, &demos), a, "ip-hash is stable in one copy");
            assert_eq!(pick(&second, &demos), a, "list {n}: the copies disagree");
        }
    }
    // And both say they serve the same list.
    let hash = |admin: SocketAddr| {
        let (_, text) = admin_get(admin, "/metrics");
        text.lines()
            .find(|l| l.starts_with("lb_backends_file_info{"))
            .map(String::from)
            .unwrap()
    };
    assert_eq!(hash(admins[0]), hash(admins[1]));
}

#[test]
fn two_copies_honour_each_others_cookie() {
    let demos = demos(4);
    let all = urls(&demos);
    let dir = Dir::new("cookie");
    let (first, second) = two_copies(&dir, &all, "cookie");
    let agent = agent();
    // Cookies from the first copy: round robin gives one for each backend.
    let mut cookies = Vec::new();
    for _ in 0..all.len() {
        let mut r = agent
            .get(&format!("http://{}/", first.addr))
            .call()
            .unwrap();
        let set = r.headers().get("set-cookie").unwrap().to_str().unwrap();
        let cookie = set.split(';').next().unwrap().to_string();
        let body = r.body_mut().read_to_string().unwrap();
        cookies.push((cookie, server_of(&body, &demos)));
    }
    let mut backends: Vec<usize> = cookies.iter().map(|(_, b)| *b).collect();
    backends.sort_unstable();
    assert_eq!(backends, [0, 1, 2, 3], "{cookies:?}");
    // The second copy sends each cookie to the same backend, and sees no need for a new one.
    for (cookie, backend) in &cookies {
        for _ in 0..2 {
            let mut r = agent
                .get(&format!("http://{}/", second.addr))
                .header("Cookie", cookie)
                .call()
                .unwrap();
            assert!(r.headers().get("set-cookie").is_none(), "{cookie}");
            let body = r.body_mut().read_to_string().unwrap();
            assert_eq!(server_of(&body, &demos), *backend, "{cookie}");
        }
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_fifo_at_the_path_is_refused_and_never_blocks_the_watcher() {
    // Before, the watcher blocked in `open` on the FIFO, waiting for a writer, and SIGTERM
    // never finished its drain (it waits for the watcher).
    let demos = demos(1);
    let dir = Dir::new("fifo");
    dir.write(&listing(&urls(&demos)));
    let file = dir.file();
    let mut lb = Launch::balancer()
        .args(&["--listen", "127.0.0.1:0", "--quiet", "--admin", "off"])
        .args(&["--backends-file", file.to_str().unwrap()])
        .args(&["--backends-file-interval", FAST_POLL])
        .and_stderr()
        .patience(RELOAD_DEADLINE)
        .start();
    let fifo = dir.path("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::rename(&fifo, &file).unwrap();
    let refused = lb.line_with("not a regular file");
    assert!(refused.contains("the backend list stays"), "{refused}");
    let (status, _) = get(&format!("http://{}/", lb.addr));
    assert_eq!(status, 200);
    lb.signal("TERM");
    assert!(lb.exit_within(Duration::from_secs(10)).success());
}

#[test]
fn a_file_of_20000_backends_loads_at_once_and_the_status_stays_small() {
    // Before, the duplicate check compared each line with all before it (45,535 lines took
    // 12.3 s), every backend allocated its minute of history at once (about 8 KB each), and
    // `/status.json` carried every backend with its history (57 MB).
    let dir = Dir::new("large");
    let mut text = String::new();
    for i in 0..20_000 {
        let _ = writeln!(
            text,
            "http://127.0.{}.{}:{}",
            i / 5000,
            1 + i % 250,
            1000 + i
        );
    }
    dir.write(&text);
    let started = Instant::now();
    let specs = backends::file::load(&dir.file(), &["127.0.0.1:1".parse().unwrap()]).unwrap();
    let took = started.elapsed();
    assert_eq!(specs.len(), 20_000);
    assert!(took < Duration::from_secs(1), "20,000 lines took {took:?}");
    let lb = start_in_process(&dir, |_| {});
    let (status, json) = admin_get(admin_addr(&lb), "/status.json");
    assert_eq!(status, 200);
    assert!(
        json.contains("\"backends_total\":20000,\"backends_up\":20000"),
        "{}",
        &json[..300]
    );
    assert_eq!(json.matches("\"url\":").count(), 200);
    assert!(json.len() < 2_000_000, "{} bytes", json.len());
}

#[test]
fn a_file_that_names_the_admin_listener_is_refused() {
    // The admin listener as a backend would hand the admin API to every client of the
    // balanced port; the file may not name it, as it may not name --listen.
    let demos = demos(1);
    let good = urls(&demos);
    let dir = Dir::new("own-admin");
    dir.write(&listing(&good));
    let lb = start_in_process(&dir, |_| {});
    let admin = admin_addr(&lb);
    dir.write(&format!("{}\nhttp://{admin}\n", good[0]));
    wait_metric(admin, "lb_backends_file_reload_errors_total", 1.0);
    assert_eq!(listed(admin), good, "the old list stays");
    let (_, status) = admin_get(admin, "/status.json");
    assert!(status.contains("own listening address"), "{status}");
}
