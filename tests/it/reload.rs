//! Reloading the whole configuration (issue 22): `SIGHUP` and `POST /reload` read `--config`
//! (and `--backends-file`) again; a good file applies whole while requests run, a bad one
//! changes nothing and shows in `/metrics`, and what needs a restart is said, not applied.

use crate::support::files::Dir;
use crate::support::process::{Launch, Running};
use crate::support::*;
use load_balancer::demo::DemoBackend;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a reload may take to show on a busy machine (each wait polls).
const RELOAD_DEADLINE: Duration = Duration::from_secs(10);

/// A config file over `backends` (demo backends), with `strategy` and `backend-timeout`.
fn conf(backends: &[(&DemoBackend, u32)], strategy: &str, timeout: &str) -> String {
    let mut text = format!(
        "# written by the test\nlisten 127.0.0.1:0\nadmin 127.0.0.1:0\nadmin-token {ADMIN_TOKEN}\nquiet\n"
    );
    for (d, weight) in backends {
        text.push_str(&format!("backend {},weight={weight}\n", d.url()));
    }
    text.push_str(&format!("strategy {strategy}\nbackend-timeout {timeout}\n"));
    text
}

fn start(dir: &Dir, text: &str) -> (Running, SocketAddr) {
    dir.write_as("lb.conf", text);
    let path = dir.path("lb.conf");
    let mut lb = Launch::balancer()
        .args(&["--config", path.to_str().unwrap()])
        .patience(RELOAD_DEADLINE)
        .start();
    let admin = lb.admin();
    (lb, admin)
}

/// Waits until `/status.json` contains every one of `needles`.
fn wait_status(admin: SocketAddr, needles: &[String]) -> String {
    let mut last = String::new();
    wait_for(
        RELOAD_DEADLINE,
        &format!("{needles:?} in /status.json"),
        || {
            last = admin_get(admin, "/status.json").1;
            needles.iter().all(|n| last.contains(n.as_str()))
        },
    );
    last
}

#[test]
fn ten_reloads_under_load_change_strategy_timeout_and_list_and_fail_no_request() {
    let demos = demos(3);
    let dir = Dir::new("reload-load");
    let weighted = |list: &[usize]| -> Vec<(&DemoBackend, u32)> {
        list.iter().map(|&i| (&demos[i], 1)).collect()
    };
    let (lb, admin) = start(&dir, &conf(&weighted(&[0, 1]), "round-robin", "30s"));
    let pages: Vec<String> = demos.iter().map(|d| d.page().to_string()).collect();
    let any_page = pages.clone();
    let load = LoadClients::start(
        4,
        |_| format!("http://{}/", lb.addr),
        move |body| any_page.iter().any(|p| p == body),
    );
    // Ten reloads, each changing the strategy, a timeout and the list.
    let steps: [(&[usize], &str, &str); 10] = [
        (&[1, 2], "least-conn", "20s"),
        (&[0, 2], "weighted", "21s"),
        (&[0, 1, 2], "ip-hash", "22s"),
        (&[2], "round-robin", "23s"),
        (&[0, 1], "cookie", "24s"),
        (&[0], "least-conn", "25s"),
        (&[1, 2], "weighted", "26s"),
        (&[0, 2], "ip-hash", "27s"),
        (&[0, 1], "round-robin", "28s"),
        (&[0, 1, 2], "least-conn", "29s"),
    ];
    for (i, (list, strategy, timeout)) in steps.into_iter().enumerate() {
        load.wait_for_more(20, RELOAD_DEADLINE);
        dir.write_as("lb.conf", &conf(&weighted(list), strategy, timeout));
        lb.signal("HUP");
        // In /status.json: the strategy, the timeout as given, and the list.
        let mut needles = vec![
            format!("{{\"strategy\":\"{strategy}\""),
            format!("\"backend-timeout\":[\"{timeout}\"]"),
            format!("\"reloads\":{}", i + 1),
        ];
        needles.extend(
            list.iter()
                .map(|&b| format!("\"url\":\"{}\"", demos[b].url())),
        );
        wait_status(admin, &needles);
        // In the traffic: only the listed backends answer, picked by the new strategy.
        for n in 0..6 {
            let path = format!("/step-{i}-{n}");
            let (status, body) = get(&format!("http://{}{path}", lb.addr));
            assert_eq!(status, 200);
            let who = pages.iter().position(|p| *p == body).unwrap();
            assert!(
                list.contains(&who),
                "step {i}: {who} answered, not in {list:?}"
            );
        }
        // And in the last decisions: every one made by the new strategy.
        let by = format!("\"why\":{{\"strategy\":\"{strategy}\"");
        wait_for(RELOAD_DEADLINE, &format!("decisions by {strategy}"), || {
            let json = admin_get(admin, "/status.json").1;
            let all = json.matches("\"why\":{\"strategy\":").count();
            all > 0 && json.matches(by.as_str()).count() == all
        });
    }
    let served = load.finish();
    assert!(served >= 100, "{served}");
    assert_eq!(metric(admin, "lb_config_last_reload_successful"), 1.0);
    assert_eq!(metric(admin, "lb_config_reload_errors_total"), 0.0);
}

#[test]
fn a_bad_file_changes_nothing_and_shows_in_metrics() {
    let demos = demos(2);
    let dir = Dir::new("reload-bad");
    let good = conf(&[(&demos[0], 1)], "round-robin", "30s");
    let (lb, admin) = start(&dir, &good);
    let page = demos[0].page().to_string();
    let load = LoadClients::start(2, |_| format!("http://{}/", lb.addr), move |b| b == page);
    load.wait_for_more(10, RELOAD_DEADLINE);
    // A good line that would change the list, then a broken one: neither applies.
    let bad = format!("{}backend {}\nbackend-timeout soon\n", good, demos[1].url());
    dir.write_as("lb.conf", &bad);
    lb.signal("HUP");
    wait_for(RELOAD_DEADLINE, "the refused reload in /metrics", || {
        metric(admin, "lb_config_reload_errors_total") == 1.0
    });
    assert_eq!(metric(admin, "lb_config_last_reload_successful"), 0.0);
    let json = admin_get(admin, "/status.json").1;
    assert!(
        json.contains("lb.conf:10: backend-timeout soon"),
        "no error in /status.json"
    );
    assert!(!json.contains(&demos[1].url()), "the list changed");
    // The admin API asks for the same reload, and is told why it was refused.
    let (status, _, body) = admin_post(admin, "/reload", "");
    assert_eq!(status, 422);
    assert!(body.contains("backend-timeout soon"), "{body}");
    load.wait_for_more(10, RELOAD_DEADLINE);
    load.finish();
    // Mended, the admin API reloads it and says what changed and what needs a restart.
    let mended = format!(
        "{}backend {}\n",
        good.replace("listen 127.0.0.1:0", "listen 127.0.0.1:1"),
        demos[1].url()
    );
    dir.write_as("lb.conf", &mended);
    let (status, _, body) = admin_post(admin, "/reload", "");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"needs_restart\":[\"listen: 127.0.0.1:0 -> 127.0.0.1:1\"]"),
        "{body}"
    );
    assert!(body.contains(&format!("+ {}", demos[1].url())), "{body}");
    assert_eq!(metric(admin, "lb_config_last_reload_successful"), 1.0);
    assert_eq!(
        get(&format!("http://{}/", lb.addr)).0,
        200,
        "still on its first port"
    );
}

#[test]
fn a_request_in_flight_keeps_its_settings_and_the_next_takes_the_new_ones() {
    // A backend that holds every request until the gate opens.
    let gate = std::sync::Arc::new(Gate::default());
    let held = gated_backend(&gate, "late");
    let dir = Dir::new("reload-timeout");
    let text = |t: &str| {
        format!(
            "listen 127.0.0.1:0\nadmin 127.0.0.1:0\nadmin-token s3cret\nquiet\nbackend {}\nbackend-timeout {t}\n",
            held.url()
        )
    };
    let (lb, admin) = start(&dir, &text("30s"));
    let url = format!("http://{}/", lb.addr);
    let first = std::thread::spawn({
        let url = url.clone();
        move || get(&url)
    });
    wait_for(RELOAD_DEADLINE, "the first request at the backend", || {
        gate.arrived() == 1
    });
    dir.write_as("lb.conf", &text("300ms"));
    // The reload is a change: the admin token guards it as every change.
    assert_eq!(admin_post(admin, "/reload", "").0, 401);
    let (status, body) = reload_with_token(admin, "s3cret");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("backend-timeout: 30s -> 300ms"), "{body}");
    assert!(!body.contains("s3cret"), "{body}");
    // The next request runs under 300ms: 504, while the first is still held.
    let started = Instant::now();
    assert_eq!(get(&url).0, 504);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The first, in flight for longer than 300ms by now, still runs under its 30s.
    gate.open();
    assert_eq!(first.join().unwrap(), (200, "late".to_string()));
}

/// `POST /reload` with the admin token as a bearer token: status and body.
fn reload_with_token(admin: SocketAddr, token: &str) -> (u16, String) {
    let mut c = RawConn::open(admin);
    c.send(
        format!(
            "POST /reload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    );
    let (head, body) = c.response();
    (
        status_of(&head),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[test]
fn health_checks_start_and_change_with_a_reload_and_the_backend_stays_the_same() {
    let backend = Recorder::echo_target();
    let dir = Dir::new("reload-health");
    let base = format!(
        "listen 127.0.0.1:0\nadmin 127.0.0.1:0\nadmin-token {ADMIN_TOKEN}\nquiet\nbackend {}\n",
        backend.url()
    );
    let (lb, admin) = start(&dir, &base);
    assert_eq!(
        get(&format!("http://{}/first", lb.addr)),
        (200, "/first".into())
    );
    assert_eq!(backend.count_starting("GET /probe"), 0, "no checks yet");
    let checks = |path: &str| format!("{base}health-check {path}\nhealth-interval 100ms\n");
    dir.write_as("lb.conf", &checks("/probe"));
    let (status, _, body) = admin_post(admin, "/reload", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("health-check: default -> /probe"), "{body}");
    wait_for(RELOAD_DEADLINE, "checks of /probe", || {
        backend.count_starting("GET /probe") >= 2
    });
    // New parameters restart the checker: the new path is checked.
    dir.write_as("lb.conf", &checks("/probe2"));
    assert_eq!(admin_post(admin, "/reload", "").0, 200);
    wait_for(RELOAD_DEADLINE, "checks of /probe2", || {
        backend.count_starting("GET /probe2") >= 2
    });
    // The backend is the one it was: same id, its counter kept the first request.
    let (_, one) = admin_get(admin, "/backends/0");
    assert!(
        one.contains(&format!("\"url\":\"{}\"", backend.url())),
        "{one}"
    );
    assert!(one.contains("\"requests\":1"), "{one}");
}

#[test]
fn a_configuration_built_in_code_keeps_its_settings_on_reload() {
    let demos = demos(2);
    let mut c = config(&urls(&demos));
    with_admin(&mut c);
    c.admin_token = Some(ADMIN_TOKEN.into());
    set_strategy(&mut c, "least-conn");
    let lb = crate::support::start(c);
    let (status, _, body) = admin_post(admin_addr(&lb), "/reload", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"changed\":[]"), "{body}");
    assert_eq!(lb.shared().backends.strategy().name(), "least-conn");
    assert_eq!(backends(&lb).len(), 2);
}

#[test]
fn a_reload_never_makes_the_balancer_its_own_backend() {
    // The file's own `listen` is `:0`, so the file alone cannot tell that a backend is this
    // balancer: the reload checks the addresses really bound, the admin's too.
    let demos = demos(1);
    let dir = Dir::new("reload-own");
    let good = conf(&[(&demos[0], 1)], "round-robin", "30s");
    let (lb, admin) = start(&dir, &good);
    for own in [lb.addr, admin] {
        dir.write_as("lb.conf", &format!("{good}backend http://{own}\n"));
        let (status, _, body) = admin_post(admin, "/reload", "");
        assert_eq!(status, 422, "{own}: {body}");
        assert!(body.contains("own listener"), "{body}");
    }
    assert_eq!(metric(admin, "lb_config_reload_errors_total"), 2.0);
    assert_eq!(
        get(&format!("http://{}/", lb.addr)),
        (200, demos[0].page().to_string())
    );
}

#[test]
fn a_reload_brings_new_passive_health_limits_to_the_backends() {
    let demos = demos(1);
    let dir = Dir::new("reload-policy");
    let text = |fails: u32| {
        format!(
            "listen 127.0.0.1:0\nadmin 127.0.0.1:0\nadmin-token {ADMIN_TOKEN}\nquiet\n\
             backend {}\nmax-fails {fails}\nfail-timeout 7s\n",
            demos[0].url()
        )
    };
    dir.write_as("lb.conf", &text(2));
    let path = dir.path("lb.conf");
    let args = ["--config".to_string(), path.to_str().unwrap().to_string()];
    let load_balancer::config::Command::Run(c) = load_balancer::config::parse_args(args).unwrap()
    else {
        panic!("not a run")
    };
    let lb = crate::support::start(*c);
    assert_eq!(lb.shared().backends.policy().max_fails, 2);
    dir.write_as("lb.conf", &text(5));
    let (status, _, body) = admin_post(admin_addr(&lb), "/reload", "");
    assert_eq!(status, 200, "{body}");
    let policy = lb.shared().backends.policy();
    assert_eq!(
        (policy.max_fails, policy.fail_timeout),
        (5, Duration::from_secs(7))
    );
}
