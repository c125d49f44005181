//! `--config PATH` and `--check` (issue 22): a file of flags without their dashes, the
//! command line over it, errors that name the file, the line and the flag, and the foot-guns
//! that exit 2 instead of doing something unasked (a weight ignored in silence, `--listen`
//! falling back to the demo pages).

use crate::support::files::Dir;
use crate::support::process::Launch;
use crate::support::*;
use std::collections::BTreeMap;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_load-balancer");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_config_file_with_three_backends_a_strategy_and_health_checks_starts() {
    let demos = demos(3);
    let dir = Dir::new("conf-start");
    let mut conf = String::from("# three backends\nlisten 127.0.0.1:0\nadmin off\n");
    for (i, url) in urls(&demos).iter().enumerate() {
        conf.push_str(&format!("backend {url},weight={}   # {i}\n", i + 1));
    }
    conf.push_str("strategy weighted\nhealth-check /\nhealth-interval 200ms\nquiet\n");
    dir.write_as("lb.conf", &conf);
    let path = dir.path("lb.conf");
    let lb = Launch::balancer()
        .args(&["--config", path.to_str().unwrap()])
        .start();
    let running = lb.seen().last().unwrap();
    assert!(running.ends_with("(weighted)"), "{running}");
    // Weights 1, 2, 3 over 60 requests: 10, 20, 30.
    let mut count = BTreeMap::new();
    for _ in 0..60 {
        let (status, body) = get(&format!("http://{}/", lb.addr));
        assert_eq!(status, 200);
        *count.entry(body).or_insert(0) += 1;
    }
    let mut shares: Vec<i32> = count.values().copied().collect();
    shares.sort();
    assert_eq!(shares, [10, 20, 30], "{count:?}");
}

#[test]
fn check_prints_every_setting_with_its_source_and_exits_0() {
    let dir = Dir::new("conf-check");
    dir.write_as(
        "lb.conf",
        "listen 127.0.0.1:22999\nbackend http://127.0.0.1:1\nbackend http://127.0.0.1:2\nstrategy least-conn\nconnect-timeout 5s\n",
    );
    let path = dir.path("lb.conf");
    let conf = path.to_str().unwrap();
    // The command line wins over the file, and nothing is bound (port 22999 stays free).
    let out = run(&["--config", conf, "--check", "--connect-timeout", "3s"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    for (name, value, source) in [
        ("listen", "127.0.0.1:22999", format!("file {conf}:1")),
        ("backend", "http://127.0.0.1:2", format!("file {conf}:3")),
        ("strategy", "least-conn", format!("file {conf}:4")),
        ("connect-timeout", "3s", "flag".into()),
        ("backend-timeout", "30s", "default".into()),
        ("config", conf, "flag".into()),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")) && l.contains(value))
            .unwrap_or_else(|| panic!("no {name} {value} in\n{stdout}"));
        assert!(line.ends_with(&source), "{line:?} is not from {source}");
    }
    assert!(stdout.ends_with("configuration OK\n"), "{stdout}");
}

#[test]
fn a_broken_line_names_the_file_the_line_and_the_flag_and_exits_2() {
    let dir = Dir::new("conf-broken");
    let bad_lines = [
        (
            "backend http://127.0.0.1:1\nconnect-timeout soon\n",
            ":2: connect-timeout soon",
        ),
        (
            "backend http://127.0.0.1:1\n\n# x\nlisen 127.0.0.1:1\n",
            ":4: lisen: unknown setting",
        ),
        ("quiet please\n", ":1: quiet: takes no value"),
        (
            "backend http://127.0.0.1:1,weight=2\n",
            "--strategy round-robin ignores weights",
        ),
    ];
    for (conf, needle) in bad_lines {
        dir.write_as("lb.conf", conf);
        let path = dir.path("lb.conf");
        for extra in [&["--check"][..], &[]] {
            let mut args = vec!["--config", path.to_str().unwrap(), "--admin", "off"];
            args.extend(extra);
            let out = run(&args);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{conf:?} {extra:?}: {err}");
            assert!(
                err.starts_with("error: ") && err.contains(needle),
                "{conf:?}: {err}"
            );
        }
    }
    // A config file listing backends and a backends file: one list would silently lose.
    dir.write("http://127.0.0.1:1\n");
    dir.write_as("lb.conf", "backend http://127.0.0.1:2\n");
    let out = run(&[
        "--config",
        dir.path("lb.conf").to_str().unwrap(),
        "--backends-file",
        dir.file().to_str().unwrap(),
        "--check",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(
        "lb.conf:1: backend: a config file that lists backends cannot be used with --backends-file"
    ));
}

#[test]
fn listen_without_a_backend_source_exits_2_naming_the_sources() {
    let out = run(&["--listen", "127.0.0.1:0", "--admin", "off"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    for flag in ["--backend", "--backends-file", "--demo N", "--config"] {
        assert!(err.contains(flag), "{flag}: {err}");
    }
    // With --demo it is the demo, asked for; `--strategy cookie` alone is `cargo run`'s demo.
    let ok = run(&["--listen", "127.0.0.1:0", "--demo", "2", "--check"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let ok = run(&["--strategy", "cookie", "--check"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
}

#[test]
fn a_weight_is_never_ignored_in_silence() {
    let weighted = "http://127.0.0.1:1,weight=3";
    for strategy in ["round-robin", "cookie"] {
        let out = run(&["--strategy", strategy, "--backend", weighted, "--check"]);
        assert_eq!(out.status.code(), Some(2), "{strategy}");
        let err = text(&out.stderr);
        assert!(
            err.contains("ignores weights") && err.contains("weight=3"),
            "{err}"
        );
    }
    // A backends file is held to the same rule.
    let dir = Dir::new("conf-weight");
    dir.write(&format!("{weighted}\nhttp://127.0.0.1:2\n"));
    let file = dir.file();
    let out = run(&["--backends-file", file.to_str().unwrap(), "--check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("ignores weights"));
    for strategy in ["weighted", "least-conn", "ip-hash"] {
        let out = run(&["--strategy", strategy, "--backend", weighted, "--check"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{strategy}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_weight_set_live_under_round_robin_is_said_to_be_ignored() {
    let (_fleet, lb) = fleet_setup(2, with_admin);
    let admin = admin_addr(&lb);
    let (status, _, body) = admin_post(admin, "/backends/0/weight", "weight=3");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"note\":\"round-robin ignores weights"),
        "{body}"
    );
    let (_, _, body) = admin_post(admin, "/strategy", "name=weighted");
    assert!(!body.contains("note"), "{body}");
    let (_, _, body) = admin_post(admin, "/strategy", "name=cookie");
    assert!(body.contains("\"note\":\"cookie ignores weights"), "{body}");
}
