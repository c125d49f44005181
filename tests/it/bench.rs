//! The built-in benchmark runs end to end: its in-process balancer serves the load without
//! errors, and it prints the figures the README explains.

use std::process::Command;

/// Runs the bench binary with `args`; checks it succeeded and returns what it printed.
fn run_bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(args)
        .output()
        .expect("the bench binary starts");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn bench_binary_runs_in_process_and_reports() {
    let stdout = run_bench(&["--connections", "4", "--seconds", "500ms"]);
    let lines: Vec<&str> = stdout.lines().collect();
    let balancer = lines
        .iter()
        .find(|l| l.starts_with("balancer"))
        .unwrap_or_else(|| panic!("no balancer line in {stdout}"));
    let direct = lines
        .iter()
        .find(|l| l.starts_with("direct"))
        .unwrap_or_else(|| panic!("no direct line in {stdout}"));
    for line in [balancer, direct] {
        assert!(line.ends_with("errors 0"), "{line}");
        let rate: f64 = line
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .find(|w| w[1] == "req/s")
            .and_then(|w| w[0].parse().ok())
            .unwrap_or_else(|| panic!("no req/s figure in {line}"));
        assert!(rate > 0.0, "{line}");
    }
    assert!(stdout.contains("ratio balancer/direct: "), "{stdout}");
}

#[test]
fn bench_streams_a_body_both_ways_through_the_balancer() {
    let stdout = run_bench(&["--download", "4m", "--upload", "4m"]);
    assert!(
        stdout.contains("ratio download balancer/direct: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("ratio upload balancer/direct: "),
        "{stdout}"
    );
}

#[test]
fn bench_repeats_transfers_and_reports_the_median_ratio() {
    let stdout = run_bench(&["--download", "2m", "--upload", "2m", "--repeat", "3"]);
    for what in ["download", "upload"] {
        let ratios: Vec<f64> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("ratio {what} balancer/direct: ")))
            .map(|r| r.parse().unwrap())
            .collect();
        assert_eq!(ratios.len(), 3, "{stdout}");
        let median = stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("median ratio {what} balancer/direct: ")))
            .unwrap_or_else(|| panic!("no median for {what}: {stdout}"));
        // The median of three is the middle one, as printed (two decimals).
        let mut sorted = ratios.clone();
        sorted.sort_by(f64::total_cmp);
        let expected = format!(
            "{:.2} (of 3: {:.2} to {:.2})",
            sorted[1], sorted[0], sorted[2]
        );
        assert_eq!(median, expected, "{stdout}");
    }
}

#[test]
fn bench_refuses_a_repeat_of_zero_or_without_a_transfer() {
    for args in [&["--upload", "1m", "--repeat", "0"][..], &["--repeat", "3"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_bench"))
            .args(args)
            .output()
            .expect("the bench binary starts");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        // The first line names the flag (the usage text that follows names every flag).
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or("");
        assert!(first.starts_with("bench: --repeat"), "{args:?}: {stderr}");
    }
}

#[test]
fn bench_rejects_unknown_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("--bogus")
        .output()
        .expect("the bench binary starts");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown flag \"--bogus\""));
}

#[test]
fn bench_peers_without_nginx_or_haproxy_says_how_to_install_them_and_measures_the_balancer() {
    // An empty PATH hides nginx and HAProxy even where they are installed.
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--peers", "--connections", "2", "--seconds", "1"])
        .env("PATH", "")
        .output()
        .expect("the bench binary starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for peer in ["nginx", "haproxy"] {
        let missing = format!(
            "peers: {peer} not found in PATH; to compare with it: apt-get install -y nginx haproxy"
        );
        assert!(stdout.contains(&missing), "{stdout}");
    }
    // proxy, req/s, p50 ms, p99 ms, errors, cpu us/req
    let row: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with("balancer "))
        .unwrap_or_else(|| panic!("no balancer row in {stdout}"))
        .split_whitespace()
        .collect();
    assert_eq!(row.len(), 6, "{stdout}");
    assert!(row[1].parse::<f64>().unwrap() > 0.0, "{stdout}");
    assert_eq!(row[4], "0", "errors: {stdout}");
    assert!(row[5].parse::<f64>().is_ok(), "{stdout}");
    // Nothing to compare with, so no ratio.
    assert!(!stdout.contains("ratio"), "{stdout}");
}

#[test]
fn bench_peers_refuses_a_target() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--peers", "--target", "http://127.0.0.1:9/"])
        .output()
        .expect("the bench binary starts");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("bench: --peers"), "{stderr}");
}
