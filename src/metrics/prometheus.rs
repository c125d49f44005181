//! The counters as Prometheus text (exposition format 0.0.4), for the admin listener's
//! `/metrics`.
//!
//! The chapter's "Production Considerations" ask for metrics and monitoring; Prometheus'
//! text format is what monitoring systems scrape today, and it is simple enough to write by
//! hand: per metric family a `# HELP` and a `# TYPE` line, then one `name{labels} value` line
//! per sample. Names follow HAProxy's exporter (`haproxy_server_bytes_in_total`, ...) with an
//! `lb_` prefix. Rendering is a pure function of the counters, so it is tested here without
//! sockets.

use super::{BackendStats, DURATION_BUCKETS, ServerStats};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

/// The `Content-Type` of the text exposition format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What `/metrics` shows of one backend.
#[derive(Debug, Clone, Copy)]
pub struct BackendSample<'a> {
    /// The backend's URL, used as the `backend` label.
    pub url: &'a str,
    /// Is it in rotation (health)?
    pub up: bool,
    /// Is it draining (taken out by the admin API)?
    pub draining: bool,
    /// Its weight.
    pub weight: u32,
    /// Requests in flight now.
    pub active: usize,
    /// Its counters.
    pub stats: &'a BackendStats,
}

/// What `/metrics` shows of `--backends-file`. The names follow Prometheus' own for its
/// configuration file (`prometheus_config_last_reload_successful`, ...).
#[derive(Debug, Clone, Copy)]
pub struct FileSample<'a> {
    /// The file, as given.
    pub path: &'a str,
    /// Times the list changed; 1 is the list read at start.
    pub generation: u64,
    /// When the file was last read and taken, in seconds since the Unix epoch.
    pub loaded_unix: f64,
    /// Was the last read taken?
    pub ok: bool,
    /// Reads refused since start.
    pub errors: u64,
    /// The list's hash, the same in every copy serving the same list.
    pub list: u64,
}

/// Which kind of family a metric is (the `# TYPE` line).
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A value of one backend's sample.
type BackendValue = fn(&BackendSample<'_>) -> u64;

/// The families with one sample per backend: name, help, type, value.
const PER_BACKEND: [(&str, &str, Kind, BackendValue); 10] = [
    (
        "lb_backend_requests_total",
        "Requests sent to the backend (each attempt counts).",
        Kind::Counter,
        |b| b.stats.requests.load(Ordering::Relaxed),
    ),
    (
        "lb_backend_connect_errors_total",
        "Connections to the backend that could not be made.",
        Kind::Counter,
        |b| b.stats.connect_errors.load(Ordering::Relaxed),
    ),
    (
        "lb_backend_response_errors_total",
        "Requests that failed after being sent (timeout, broken or missing response).",
        Kind::Counter,
        |b| b.stats.response_errors.load(Ordering::Relaxed),
    ),
    (
        "lb_backend_retries_total",
        "Attempts repeated on another backend after failing on this one.",
        Kind::Counter,
        |b| b.stats.retries.load(Ordering::Relaxed),
    ),
    (
        "lb_backend_bytes_in_total",
        "Request body bytes sent to the backend.",
        Kind::Counter,
        |b| b.stats.bytes_in.load(Ordering::Relaxed),
    ),
    (
        "lb_backend_bytes_out_total",
        "Response body bytes relayed from the backend to clients.",
        Kind::Counter,
        |b| b.stats.bytes_out.load(Ordering::Relaxed),
    ),
    (
        "lb_backend_active_requests",
        "Requests in flight on the backend now.",
        Kind::Gauge,
        |b| b.active as u64,
    ),
    (
        "lb_backend_up",
        "1 if the backend is in rotation by its health, 0 if it is down.",
        Kind::Gauge,
        |b| u64::from(b.up),
    ),
    (
        "lb_backend_draining",
        "1 if the backend is draining (no new requests), else 0.",
        Kind::Gauge,
        |b| u64::from(b.draining),
    ),
    (
        "lb_backend_weight",
        "The backend's weight.",
        Kind::Gauge,
        |b| u64::from(b.weight),
    ),
];

/// A balancer-wide value.
type BalancerValue = fn(&ServerStats) -> u64;

/// The balancer-wide families: name, help, type, value.
const BALANCER: [(&str, &str, Kind, BalancerValue); 7] = [
    (
        "lb_client_connections_open",
        "Client connections open now.",
        Kind::Gauge,
        |s| s.open.load(Ordering::Relaxed),
    ),
    (
        "lb_client_tunnels_open",
        "Client connections upgraded to a tunnel (101 Switching Protocols), or asking a backend to be, open now; each takes a second slot of --max-connections.",
        Kind::Gauge,
        |s| s.tunnels.load(Ordering::Relaxed),
    ),
    (
        "lb_client_connections_accepted_total",
        "Client connections accepted since start.",
        Kind::Counter,
        |s| s.accepted.load(Ordering::Relaxed),
    ),
    (
        "lb_client_connections_rejected_total",
        "Client connections refused with 503: at --max-connections, or when no thread could start.",
        Kind::Counter,
        |s| s.rejected.load(Ordering::Relaxed),
    ),
    (
        "lb_requests_total",
        "Requests answered, by a backend or by the balancer itself.",
        Kind::Counter,
        |s| s.requests.load(Ordering::Relaxed),
    ),
    (
        "lb_request_bodies_open",
        "Request bodies being read from clients now, streamed to a backend (--client-timeout limits each read, not the whole body).",
        Kind::Gauge,
        |s| s.bodies.load(Ordering::Relaxed),
    ),
    (
        "lb_log_lines_dropped_total",
        "Log lines (access log, errors, notices) dropped because stdout or stderr did not keep up.",
        Kind::Counter,
        |_| crate::console::dropped(),
    ),
];

/// Renders every metric: one family per counter, one sample per backend, then the
/// balancer-wide counters. Families appear even without backends, so a dashboard finds them.
pub fn render(backends: &[BackendSample<'_>], server: &ServerStats) -> String {
    let mut out = String::with_capacity(2048 + backends.len() * 2048);
    for (name, help, kind, value) in PER_BACKEND {
        family(&mut out, name, help, kind);
        for b in backends {
            let _ = writeln!(out, "{name}{{backend=\"{}\"}} {}", label(b.url), value(b));
        }
    }
    responses(&mut out, backends);
    durations(&mut out, backends);
    for (name, help, kind, value) in BALANCER {
        family(&mut out, name, help, kind);
        let _ = writeln!(out, "{name} {}", value(server));
    }
    let name = "lb_local_responses_total";
    let help = "Requests the balancer answered itself with an error page, by status.";
    family(&mut out, name, help, Kind::Counter);
    for (code, n) in server.local_by_code.counts() {
        let _ = writeln!(out, "{name}{{code=\"{code}\"}} {n}");
    }
    let name = "lb_build_info";
    let help = "The balancer's version; the value is always 1.";
    family(&mut out, name, help, Kind::Gauge);
    let _ = writeln!(
        out,
        "{name}{{version=\"{}\"}} 1",
        label(env!("CARGO_PKG_VERSION"))
    );
    out
}

/// Appends the `lb_backends_file_*` families.
pub fn render_file(out: &mut String, file: &FileSample<'_>) {
    let families: [(&str, &str, Kind, String); 4] = [
        (
            "lb_backends_file_generation",
            "Times the backend list changed from --backends-file (1: the list read at start).",
            Kind::Gauge,
            file.generation.to_string(),
        ),
        (
            "lb_backends_file_last_reload_success_timestamp_seconds",
            "When --backends-file was last read and taken.",
            Kind::Gauge,
            format!("{:.3}", file.loaded_unix),
        ),
        (
            "lb_backends_file_last_reload_successful",
            "1 if the last read of --backends-file was taken, 0 if it was refused.",
            Kind::Gauge,
            u64::from(file.ok).to_string(),
        ),
        (
            "lb_backends_file_reload_errors_total",
            "Reads of --backends-file refused (bad line, unreadable); the list stayed.",
            Kind::Counter,
            file.errors.to_string(),
        ),
    ];
    for (name, help, kind, value) in families {
        family(out, name, help, kind);
        let _ = writeln!(out, "{name} {value}");
    }
    let name = "lb_backends_file_info";
    family(
        out,
        name,
        "The backends file, and a hash of the list in force (equal in copies serving the same list).",
        Kind::Gauge,
    );
    let _ = writeln!(
        out,
        "{name}{{path=\"{}\",list=\"{:016x}\"}} 1",
        label(file.path),
        file.list
    );
}

fn load(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// `lb_backend_responses_total`, by status class.
fn responses(out: &mut String, backends: &[BackendSample<'_>]) {
    let name = "lb_backend_responses_total";
    let help = "Responses relayed, by status class.";
    family(out, name, help, Kind::Counter);
    for b in backends {
        for (i, count) in b.stats.responses.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}{{backend=\"{}\",code=\"{}xx\"}} {}",
                label(b.url),
                i + 1,
                load(count)
            );
        }
    }
}

/// `lb_backend_request_duration_seconds`, a histogram per backend.
fn durations(out: &mut String, backends: &[BackendSample<'_>]) {
    let name = "lb_backend_request_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from the request head to the end of the response.\n# TYPE {name} histogram"
    );
    for b in backends {
        let url = label(b.url);
        let h = &b.stats.duration;
        // The buckets are read once and `_count` derived from them, so that `+Inf` and
        // `_count` agree even while requests are counted concurrently.
        let mut cumulative = 0;
        for (bound, count) in DURATION_BUCKETS.iter().zip(&h.buckets) {
            cumulative += load(count);
            let _ = writeln!(
                out,
                "{name}_bucket{{backend=\"{url}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += load(&h.overflow);
        let _ = writeln!(
            out,
            "{name}_bucket{{backend=\"{url}\",le=\"+Inf\"}} {cumulative}"
        );
        let sum = load(&h.sum_micros) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{backend=\"{url}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{backend=\"{url}\"}} {cumulative}");
    }
}

fn family(out: &mut String, name: &str, help: &str, kind: Kind) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {}", kind.as_str());
}

/// Escapes a label value: backslash, double quote and line feed get a backslash (the format's
/// only escapes inside quotes).
pub fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::inc;
    use std::time::Duration;

    fn sample<'a>(url: &'a str, stats: &'a BackendStats) -> BackendSample<'a> {
        BackendSample {
            url,
            up: true,
            draining: false,
            weight: 2,
            active: 3,
            stats,
        }
    }

    #[test]
    fn counters_and_histogram() {
        let stats = BackendStats::default();
        for _ in 0..4 {
            inc(&stats.requests);
        }
        stats.count_response(200);
        stats.count_response(503);
        stats.bytes_in.fetch_add(10, Ordering::Relaxed);
        stats.duration.observe(Duration::from_micros(300)); // le 0.0005
        stats.duration.observe(Duration::from_millis(30)); // le 0.05
        stats.duration.observe(Duration::from_secs(7)); // over the last bound
        let server = ServerStats::default();
        inc(&server.accepted);
        let text = render(&[sample("http://127.0.0.1:8001", &stats)], &server);
        let lines: Vec<&str> = text.lines().collect();
        for expected in [
            "# TYPE lb_backend_requests_total counter",
            "lb_backend_requests_total{backend=\"http://127.0.0.1:8001\"} 4",
            "lb_backend_responses_total{backend=\"http://127.0.0.1:8001\",code=\"2xx\"} 1",
            "lb_backend_responses_total{backend=\"http://127.0.0.1:8001\",code=\"5xx\"} 1",
            "lb_backend_responses_total{backend=\"http://127.0.0.1:8001\",code=\"4xx\"} 0",
            "lb_backend_bytes_in_total{backend=\"http://127.0.0.1:8001\"} 10",
            "lb_backend_active_requests{backend=\"http://127.0.0.1:8001\"} 3",
            "lb_backend_up{backend=\"http://127.0.0.1:8001\"} 1",
            "lb_backend_weight{backend=\"http://127.0.0.1:8001\"} 2",
            "# TYPE lb_backend_request_duration_seconds histogram",
            "lb_backend_request_duration_seconds_bucket{backend=\"http://127.0.0.1:8001\",le=\"0.0005\"} 1",
            "lb_backend_request_duration_seconds_bucket{backend=\"http://127.0.0.1:8001\",le=\"0.025\"} 1",
            "lb_backend_request_duration_seconds_bucket{backend=\"http://127.0.0.1:8001\",le=\"0.05\"} 2",
            "lb_backend_request_duration_seconds_bucket{backend=\"http://127.0.0.1:8001\",le=\"5\"} 2",
            "lb_backend_request_duration_seconds_bucket{backend=\"http://127.0.0.1:8001\",le=\"+Inf\"} 3",
            "lb_backend_request_duration_seconds_sum{backend=\"http://127.0.0.1:8001\"} 7.0303",
            "lb_backend_request_duration_seconds_count{backend=\"http://127.0.0.1:8001\"} 3",
            "# TYPE lb_client_connections_accepted_total counter",
            "lb_client_connections_accepted_total 1",
            "lb_client_connections_open 0",
        ] {
            assert!(lines.contains(&expected), "missing {expected:?} in\n{text}");
        }
        // Every sample belongs to a family announced with HELP and TYPE before it.
        let mut announced = Vec::new();
        for line in &lines {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                announced.push(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(
                    announced.iter().any(|f| name == f
                        || name
                            .strip_prefix(f.as_str())
                            .is_some_and(|s| { ["_bucket", "_sum", "_count"].contains(&s) })),
                    "{line} has no TYPE"
                );
            }
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn the_backends_file() {
        let mut out = String::new();
        let file = FileSample {
            path: "/etc/lb/backends.txt",
            generation: 3,
            loaded_unix: 1_764_000_000.25,
            ok: false,
            errors: 2,
            list: 0xab,
        };
        render_file(&mut out, &file);
        for expected in [
            "# TYPE lb_backends_file_generation gauge",
            "lb_backends_file_generation 3",
            "lb_backends_file_last_reload_success_timestamp_seconds 1764000000.250",
            "lb_backends_file_last_reload_successful 0",
            "# TYPE lb_backends_file_reload_errors_total counter",
            "lb_backends_file_reload_errors_total 2",
            "lb_backends_file_info{path=\"/etc/lb/backends.txt\",list=\"00000000000000ab\"} 1",
        ] {
            assert!(out.lines().any(|l| l == expected), "{expected:?} in\n{out}");
        }
    }

    #[test]
    fn families_without_backends() {
        let text = render(&[], &ServerStats::default());
        assert!(text.contains("# HELP lb_backend_up "));
        assert!(!text.contains("backend=\""));
        assert!(text.contains("\nlb_requests_total 0\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(label("http://h:1"), "http://h:1");
    }

    /// The rules of the text format that Prometheus's own parser enforces, checked line by
    /// line: what `prometheus_client.parser.text_string_to_metric_families` was run against by
    /// hand (see the operations guide), kept here so that `cargo test` needs no Python.
    fn check_exposition(text: &str) -> Result<(), String> {
        let name_ok = |n: &str, colon: bool| {
            let mut chars = n.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
        };
        let mut families: Vec<(String, String)> = Vec::new(); // (name, type), in order
        let mut helped = Vec::new();
        let mut series = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or("");
                if helped.contains(&name.to_string()) || !name_ok(name, true) {
                    return Err(format!("HELP again or bad name: {line}"));
                }
                helped.push(name.to_string());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').ok_or(line)?;
                if families.iter().any(|(f, _)| f == name)
                    || !["counter", "gauge", "histogram"].contains(&kind)
                    || (kind == "counter" && !name.ends_with("_total"))
                    || helped.last().is_none_or(|h| h != name)
                {
                    return Err(format!(
                        "bad TYPE (twice, unknown, or not after HELP): {line}"
                    ));
                }
                families.push((name.to_string(), kind.to_string()));
                continue;
            }
            let (sample, value) = line.rsplit_once(' ').ok_or(line)?;
            if !["+Inf", "-Inf", "NaN"].contains(&value) && value.parse::<f64>().is_err() {
                return Err(format!("bad value: {line}"));
            }
            let (name, labels) = match sample.split_once('{') {
                Some((n, l)) => (n, l.strip_suffix('}').ok_or(line)?),
                None => (sample, ""),
            };
            // The sample must belong to the family announced last (families are contiguous).
            let (family, kind) = families.last().ok_or(line)?;
            let suffix = name.strip_prefix(family.as_str()).ok_or(line)?;
            let allowed: &[&str] = match kind.as_str() {
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            if !allowed.contains(&suffix) || !name_ok(name, true) {
                return Err(format!("{name} outside its family {family}: {line}"));
            }
            let mut rest = labels;
            while !rest.is_empty() {
                let (label, after) = rest.split_once("=\"").ok_or(line)?;
                if !name_ok(label, false) {
                    return Err(format!("bad label name: {line}"));
                }
                let mut end = None;
                let mut escaped = false;
                for (i, c) in after.char_indices() {
                    match (escaped, c) {
                        (true, '\\' | '"' | 'n') => escaped = false,
                        (true, _) => return Err(format!("bad escape: {line}")),
                        (false, '\\') => escaped = true,
                        (false, '"') => {
                            end = Some(i);
                            break;
                        }
                        (false, '\n') => return Err(format!("raw newline: {line}")),
                        _ => {}
                    }
                }
                let end = end.ok_or(line)?;
                rest = after[end + 1..]
                    .strip_prefix(',')
                    .unwrap_or(&after[end + 1..]);
            }
            if !series.insert(sample.to_string()) {
                return Err(format!("duplicate series: {line}"));
            }
        }
        Ok(())
    }

    #[test]
    fn the_whole_text_keeps_the_formats_rules() {
        let stats = BackendStats::default();
        stats.count_response(200);
        let server = ServerStats::default();
        server.count_local(502);
        server.count_local(508);
        let backends = [
            sample("http://127.0.0.1:8001", &stats),
            sample("http://a\"b\\c:1", &stats),
        ];
        let mut text = render(&backends, &server);
        let file = FileSample {
            path: "/etc/lb/back\"ends.txt",
            generation: 1,
            loaded_unix: 1.5,
            ok: true,
            errors: 0,
            list: 1,
        };
        render_file(&mut text, &file);
        crate::metrics::process::ProcessSample::read().render(&mut text);
        check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        for expected in [
            "lb_local_responses_total{code=\"502\"} 1",
            "lb_local_responses_total{code=\"503\"} 0",
            "lb_local_responses_total{code=\"508\"} 1",
            &format!(
                "lb_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            assert!(text.lines().any(|l| l == expected), "{expected} in\n{text}");
        }
        for family in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(text.contains(&format!("\n{family} ")), "{family}");
        }
        // The checker itself catches what it is there for.
        for bad in [
            "lb_x_total 1\n",
            "# HELP a x\n# TYPE a counter\na 1\n",
            "# HELP a_total x\n# TYPE a_total counter\na_total 1\n# HELP b x\n# TYPE b gauge\nb 1\na_total 2\n",
            "# HELP g x\n# TYPE g gauge\ng{l=\"a\\q\"} 1\n",
            "# HELP g x\n# TYPE g gauge\ng 1\ng 2\n",
            "# HELP g x\n# TYPE g gauge\ng one\n",
        ] {
            assert!(check_exposition(bad).is_err(), "{bad}");
        }
    }
}
