//! The status page: what each backend is doing, readable at a glance, as HTML and as JSON.
//!
//! The chapter's "Monitoring" is a line per request on the console. The page at `/status` shows
//! the same story live: one row per backend in its colour (UP, DOWN with the reason, or
//! DRAINING), its counters and latency, and the last routing decisions, so that the round
//! robin can be watched while the chapter's `curl` loop runs. `/status.json` carries the same
//! data for scripts. Both are rendered from a [`Status`] snapshot by pure functions.

use crate::backend::Backend;
use crate::backends_file::FileInfo;
use crate::context::Shared;
use crate::http::pages::{PALETTE, escape};
use crate::log::Decision;
use crate::metrics::DURATION_BUCKETS;
use crate::time;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds between two reloads of the HTML page (`<meta http-equiv="refresh">`).
pub const REFRESH_SECS: u32 = 1;

/// Whether a backend takes new requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// In rotation.
    Up,
    /// Out of rotation by its health, for this reason.
    Down(String),
    /// Taken out by the admin API: requests in flight finish, no new ones come.
    Draining,
}

impl State {
    /// `UP`, `DOWN` or `DRAINING`.
    pub fn label(&self) -> &'static str {
        match self {
            State::Up => "UP",
            State::Down(_) => "DOWN",
            State::Draining => "DRAINING",
        }
    }
}

/// One backend, as the status page and the backend API show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Its id in the admin API.
    pub id: usize,
    /// `http://HOST:PORT`.
    pub url: String,
    /// A CSS colour, by id from [`PALETTE`] (so the chapter's Red and Blue stay red and blue).
    pub colour: &'static str,
    /// Up, down or draining.
    pub state: State,
    /// Its weight.
    pub weight: u32,
    /// Requests in flight.
    pub active: usize,
    /// Requests sent to it.
    pub requests: u64,
    /// Connect errors plus failed responses.
    pub errors: u64,
    /// Median request duration in seconds (bucket upper bound), if any request finished.
    pub p50: Option<f64>,
    /// 99th percentile request duration in seconds (bucket upper bound).
    pub p99: Option<f64>,
}

impl Row {
    /// The row for one backend, read from its live counters.
    pub fn of(b: &Backend) -> Row {
        let state = if b.is_draining() {
            State::Draining
        } else if b.health.is_up() {
            State::Up
        } else {
            State::Down(b.health.reason())
        };
        let s = &b.stats;
        Row {
            id: b.id,
            url: b.url.clone(),
            colour: colour(b.id),
            state,
            weight: b.weight(),
            active: b.active(),
            requests: s.requests.load(Ordering::Relaxed),
            errors: s.connect_errors.load(Ordering::Relaxed)
                + s.response_errors.load(Ordering::Relaxed),
            p50: s.duration.quantile(0.5),
            p99: s.duration.quantile(0.99),
        }
    }

    /// The row as a JSON object.
    pub fn json(&self) -> String {
        let mut out = String::with_capacity(256);
        let _ = write!(out, "{{\"id\":{},\"url\":", self.id);
        json_string(&mut out, &self.url);
        out.push_str(",\"state\":");
        json_string(&mut out, self.state.label());
        out.push_str(",\"reason\":");
        match &self.state {
            State::Down(reason) => json_string(&mut out, reason),
            _ => out.push_str("null"),
        }
        let _ = write!(
            out,
            ",\"colour\":\"{}\",\"weight\":{},\"active\":{},\"requests\":{},\"errors\":{},\"p50_seconds\":{},\"p99_seconds\":{}}}",
            self.colour,
            self.weight,
            self.active,
            self.requests,
            self.errors,
            json_number(self.p50),
            json_number(self.p99)
        );
        out
    }
}

/// The colour of backend `id`.
pub fn colour(id: usize) -> &'static str {
    PALETTE[id % PALETTE.len()]
}

/// Everything the status page shows, read at one moment.
#[derive(Debug, Clone)]
pub struct Status {
    /// One row per backend, in rotation order.
    pub backends: Vec<Row>,
    /// The last routing decisions, oldest first.
    pub recent: Vec<Decision>,
    /// Client connections open now.
    pub open: u64,
    /// Client connections accepted since start.
    pub accepted: u64,
    /// Requests answered since start.
    pub requests: u64,
    /// The strategy's name.
    pub strategy: &'static str,
    /// The demo backends of this run, for the drill buttons.
    pub demos: Vec<DemoRow>,
    /// With `--backends-file`: the file, its generation and its last reads.
    pub file: Option<FileInfo>,
}

/// One demo backend on the status page, with its drill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoRow {
    /// `Red`, `Blue`, ...
    pub name: &'static str,
    /// Its CSS colour.
    pub colour: &'static str,
    /// `http://127.0.0.1:8001`.
    pub url: String,
    /// What its drill does now.
    pub drill: String,
}

/// The drill buttons next to each demo backend: label and the path after `/demo/{name}/`.
pub const DRILL_BUTTONS: [(&str, &str); 6] = [
    ("stop", "stop"),
    ("start", "start"),
    ("hang", "hang"),
    ("slow 500 ms", "slow/500"),
    ("error 500", "error/500"),
    ("ok", "ok"),
];

impl Status {
    /// Reads the balancer's state now; `demos` are the drill rows (see
    /// [`crate::admin::Drills`]).
    pub fn collect(shared: &Shared, demos: Vec<DemoRow>) -> Status {
        let stats = &shared.stats;
        Status {
            backends: shared
                .backends
                .snapshot()
                .iter()
                .map(|b| Row::of(b))
                .collect(),
            recent: shared.log.recent(),
            open: stats.open.load(Ordering::Relaxed),
            accepted: stats.accepted.load(Ordering::Relaxed),
            requests: stats.requests.load(Ordering::Relaxed),
            strategy: shared.config.strategy.name(),
            demos,
            file: shared.file.as_ref().map(|f| f.info()),
        }
    }

    /// The colour of the backend with this URL, grey when it is gone (or was none: `-`).
    fn colour_of(&self, url: &str) -> &'static str {
        self.backends
            .iter()
            .find(|r| r.url == url)
            .map_or("gray", |r| r.colour)
    }

    /// The HTML page: a table of backends and the recent decisions, newest first.
    pub fn html(&self) -> String {
        let mut out = String::with_capacity(8192);
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
             <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
             <title>load-balancer status</title>\n<style>\
             body{{font-family:sans-serif;margin:2em}}\
             table{{border-collapse:collapse}}\
             td,th{{padding:.3em .8em;text-align:right;border-bottom:1px solid #ddd;white-space:nowrap}}\
             td:first-child,th:first-child,td.l{{text-align:left}}\
             .UP{{color:green;font-weight:bold}}.DOWN{{color:#c00;font-weight:bold}}\
             .DRAINING{{color:#b60;font-weight:bold}}\
             </style></head><body>\n<h1>load-balancer</h1>\n\
             <p>{} &middot; {} requests &middot; {} connections open, {} accepted</p>\n\
             <table>\n<tr><th>backend</th><th>id</th><th class=\"l\">state</th><th>weight</th><th>active</th>\
             <th>requests</th><th>errors</th><th>p50</th><th>p99</th></tr>\n",
            self.strategy, self.requests, self.open, self.accepted
        );
        for r in &self.backends {
            let reason = match &r.state {
                State::Down(why) => format!(" ({})", escape(why)),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "<tr><td style=\"color:{c};font-weight:bold\">&#9632; {url}</td><td>{id}</td>\
                 <td class=\"l\"><span class=\"{s}\">{s}</span>{reason}</td><td>{w}</td>\
                 <td>{a}</td><td>{n}</td><td>{e}</td><td>{p50}</td><td>{p99}</td></tr>",
                c = r.colour,
                url = escape(&r.url),
                id = r.id,
                s = r.state.label(),
                w = r.weight,
                a = r.active,
                n = r.requests,
                e = r.errors,
                p50 = latency(r.p50),
                p99 = latency(r.p99),
            );
        }
        out.push_str("</table>\n");
        self.file_html(&mut out);
        if !self.demos.is_empty() {
            out.push_str("<h2>Demo backends: failure drills</h2>\n<table>\n");
            for d in &self.demos {
                let _ = write!(
                    out,
                    "<tr><td style=\"color:{};font-weight:bold\">&#9632; {} Server</td><td class=\"l\">{}</td>\
                     <td class=\"l\">{}</td><td class=\"l\">",
                    d.colour,
                    d.name,
                    escape(&d.url),
                    escape(&d.drill)
                );
                for (label, path) in DRILL_BUTTONS {
                    let _ = write!(
                        out,
                        "<form method=\"post\" action=\"/demo/{}/{path}\" style=\"display:inline\">\
                         <input type=\"hidden\" name=\"then\" value=\"status\"><button>{label}</button></form> ",
                        d.name.to_lowercase()
                    );
                }
                out.push_str("</td></tr>\n");
            }
            out.push_str("</table>\n");
        }
        out.push_str("<h2>Last routing decisions</h2>\n<table>\n");
        out.push_str(
            "<tr><th>time (UTC)</th><th>request</th><th>backend</th><th>status</th></tr>\n",
        );
        for d in self.recent.iter().rev() {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"l\">{}</td>\
                 <td class=\"l\" style=\"color:{};font-weight:bold\">&#9632; {}</td><td>{}</td></tr>",
                clock(d.time),
                escape(&d.request),
                self.colour_of(&d.backend),
                escape(&d.backend),
                d.status
            );
        }
        out.push_str(
            "</table>\n<p><a href=\"/status.json\">status.json</a> &middot; \
                      <a href=\"/metrics\">metrics</a></p>\n</body></html>\n",
        );
        out
    }

    /// The same data as JSON.
    pub fn json(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("{\"strategy\":");
        json_string(&mut out, self.strategy);
        let _ = write!(
            out,
            ",\"requests\":{},\"connections_open\":{},\"connections_accepted\":{},\"backends\":[",
            self.requests, self.open, self.accepted
        );
        for (i, r) in self.backends.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&r.json());
        }
        out.push_str("],\"demos\":[");
        for (i, d) in self.demos.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"name\":");
            json_string(&mut out, d.name);
            out.push_str(",\"url\":");
            json_string(&mut out, &d.url);
            out.push_str(",\"drill\":");
            json_string(&mut out, &d.drill);
            out.push('}');
        }
        out.push_str("],\"backends_file\":");
        self.file_json(&mut out);
        out.push_str(",\"recent\":[");
        for (i, d) in self.recent.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let millis = d
                .time
                .duration_since(UNIX_EPOCH)
                .map_or(0, |t| t.as_millis());
            let _ = write!(out, "{{\"time_ms\":{millis},\"request\":");
            json_string(&mut out, &d.request);
            out.push_str(",\"backend\":");
            json_string(&mut out, &d.backend);
            let _ = write!(out, ",\"status\":{}}}", d.status);
        }
        out.push_str("]}");
        out
    }
}

impl Status {
    /// The line under the backends that says where the list comes from.
    fn file_html(&self, out: &mut String) {
        let Some(f) = &self.file else { return };
        let _ = write!(
            out,
            "<p>Backends from <code>{}</code> &middot; generation {} &middot; last read taken at \
             {} UTC &middot; list {:016x} &middot; {} refused reads",
            escape(&f.path),
            f.generation,
            clock(f.loaded),
            f.list,
            f.errors
        );
        if let Some(why) = &f.last_error {
            let _ = write!(
                out,
                " &middot; <span class=\"DOWN\">last read refused</span>: {}",
                escape(why)
            );
        }
        out.push_str("</p>\n");
    }

    /// `backends_file` in the JSON: `null`, or the file's state.
    fn file_json(&self, out: &mut String) {
        let Some(f) = &self.file else {
            out.push_str("null");
            return;
        };
        let millis = f
            .loaded
            .duration_since(UNIX_EPOCH)
            .map_or(0, |t| t.as_millis());
        out.push_str("{\"path\":");
        json_string(out, &f.path);
        let _ = write!(
            out,
            ",\"generation\":{},\"loaded_ms\":{millis},\"errors\":{},\"list\":\"{:016x}\",\"last_error\":",
            f.generation, f.errors, f.list
        );
        match &f.last_error {
            Some(why) => json_string(out, why),
            None => out.push_str("null"),
        }
        out.push('}');
    }
}

/// `12:04:05.123` (UTC).
fn clock(t: SystemTime) -> String {
    let c = time::civil(t);
    let millis = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis());
    format!("{:02}:{:02}:{:02}.{millis:03}", c.hour, c.minute, c.second)
}

/// A bucket bound as a latency: `≤ 2.5 ms`; `-` without requests.
fn latency(seconds: Option<f64>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) if s.is_infinite() => {
            let last = DURATION_BUCKETS[DURATION_BUCKETS.len() - 1];
            format!("&gt; {last} s")
        }
        // Rounded to microseconds: 0.0025 * 1000 is not exactly 2.5 in binary floating point.
        Some(s) if s < 1.0 => format!("&le; {} ms", (s * 1e6).round() / 1e3),
        Some(s) => format!("&le; {s} s"),
    }
}

/// A JSON number, or `null` for none (JSON has no infinity: the overflow bucket is `null` too).
fn json_number(n: Option<f64>) -> String {
    match n {
        Some(n) if n.is_finite() => n.to_string(),
        _ => "null".into(),
    }
}

/// Appends `s` as a JSON string (RFC 8259 section 7): quotes, backslash and control
/// characters are escaped; everything else passes as UTF-8.
pub fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn row(id: usize, state: State) -> Row {
        Row {
            id,
            url: format!("http://127.0.0.1:800{}", id + 1),
            colour: colour(id),
            state,
            weight: 1,
            active: 2,
            requests: 10,
            errors: 1,
            p50: Some(0.0005),
            p99: None,
        }
    }

    fn status() -> Status {
        Status {
            backends: vec![
                row(0, State::Up),
                row(1, State::Down("connection refused <x>".into())),
                row(2, State::Draining),
            ],
            recent: vec![Decision {
                time: UNIX_EPOCH + Duration::from_millis(1_795_606_219_042),
                request: "GET /a\"<b>".into(),
                backend: "http://127.0.0.1:8002".into(),
                status: 200,
            }],
            open: 3,
            accepted: 7,
            requests: 30,
            strategy: "round-robin",
            demos: vec![DemoRow {
                name: "Red",
                colour: "red",
                url: "http://127.0.0.1:8001".into(),
                drill: "ok: answering normally".into(),
            }],
            file: None,
        }
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        json_string(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }

    #[test]
    fn json_document() {
        let json = status().json();
        assert_eq!(
            json,
            "{\"strategy\":\"round-robin\",\"requests\":30,\"connections_open\":3,\
             \"connections_accepted\":7,\"backends\":[\
             {\"id\":0,\"url\":\"http://127.0.0.1:8001\",\"state\":\"UP\",\"reason\":null,\
             \"colour\":\"red\",\"weight\":1,\"active\":2,\"requests\":10,\"errors\":1,\
             \"p50_seconds\":0.0005,\"p99_seconds\":null},\
             {\"id\":1,\"url\":\"http://127.0.0.1:8002\",\"state\":\"DOWN\",\
             \"reason\":\"connection refused <x>\",\"colour\":\"blue\",\"weight\":1,\"active\":2,\
             \"requests\":10,\"errors\":1,\"p50_seconds\":0.0005,\"p99_seconds\":null},\
             {\"id\":2,\"url\":\"http://127.0.0.1:8003\",\"state\":\"DRAINING\",\"reason\":null,\
             \"colour\":\"green\",\"weight\":1,\"active\":2,\"requests\":10,\"errors\":1,\
             \"p50_seconds\":0.0005,\"p99_seconds\":null}],\
             \"demos\":[{\"name\":\"Red\",\"url\":\"http://127.0.0.1:8001\",\
             \"drill\":\"ok: answering normally\"}],\"backends_file\":null,\
             \"recent\":[{\"time_ms\":1795606219042,\"request\":\"GET /a\\\"<b>\",\
             \"backend\":\"http://127.0.0.1:8002\",\"status\":200}]}"
        );
    }

    #[test]
    fn html_page() {
        let html = status().html();
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"1\">"));
        assert!(html.contains("color:red;font-weight:bold\">&#9632; http://127.0.0.1:8001<"));
        assert!(html.contains(">DOWN</span> (connection refused &lt;x&gt;)"));
        assert!(html.contains(">DRAINING</span>"));
        assert!(
            html.contains("action=\"/demo/red/slow/500\""),
            "drill buttons: {html}"
        );
        assert!(html.contains("&le; 0.5 ms"));
        // The decision: escaped, in the colour of the backend that took it, with its time.
        assert!(html.contains("<td>11:30:19.042</td><td class=\"l\">GET /a&quot;&lt;b&gt;</td>"));
        assert!(html.contains("color:blue;font-weight:bold\">&#9632; http://127.0.0.1:8002<"));
    }

    #[test]
    fn the_backends_file_in_json_and_html() {
        let mut s = status();
        s.file = Some(FileInfo {
            path: "/etc/lb/<b>.txt".into(),
            generation: 4,
            loaded: UNIX_EPOCH + Duration::from_millis(1_795_606_219_042),
            errors: 1,
            last_error: Some("line 2: \"x\"".into()),
            list: 0xab,
        });
        assert!(s.json().contains(
            "\"backends_file\":{\"path\":\"/etc/lb/<b>.txt\",\"generation\":4,\
             \"loaded_ms\":1795606219042,\"errors\":1,\"list\":\"00000000000000ab\",\
             \"last_error\":\"line 2: \\\"x\\\"\"},\"recent\""
        ));
        let html = s.html();
        assert!(html.contains("<code>/etc/lb/&lt;b&gt;.txt</code> &middot; generation 4"));
        assert!(html.contains("11:30:19.042 UTC"));
        assert!(html.contains("refused</span>: line 2: &quot;x&quot;"));
    }

    #[test]
    fn latencies() {
        assert_eq!(latency(None), "-");
        assert_eq!(latency(Some(0.025)), "&le; 25 ms");
        assert_eq!(latency(Some(0.0025)), "&le; 2.5 ms");
        assert_eq!(latency(Some(5.0)), "&le; 5 s");
        assert_eq!(latency(Some(f64::INFINITY)), "&gt; 5 s");
    }
}
