//! The status page: what each backend is doing, readable at a glance, as HTML and as JSON.
//!
//! The chapter's "Monitoring" is a line per request on the console. The page at `/status` shows
//! the same story live: the last routing decisions as a strip of coloured squares (the round
//! robin, visible), charts of the last minute per backend (requests answered, error rate, p99
//! latency, with the moments a backend went DOWN, came UP or was drained marked on the time
//! axis), one row per backend in its colour (UP, DOWN with the reason, or DRAINING), and the
//! demo backends' drill buttons. `/status.json` carries the same data for scripts, the
//! history of [`crate::metrics::history`] included. Both are rendered from a [`Status`]
//! snapshot by pure functions.
//!
//! The page is whole without JavaScript (the tables and the strip, reloading every
//! [`REFRESH_SECS`] through a `<noscript>` refresh). Its inline script
//! ([`csp::STATUS_SCRIPT`](super::csp::STATUS_SCRIPT)) fetches `/status.json` every
//! [`REFRESH_SECS`] and redraws the page in place, charts included; the page's
//! `Content-Security-Policy` ([`super::csp`]) lets that script and its style run and nothing
//! else.

use super::csp::{STATUS_SCRIPT, STATUS_STYLE};
use super::why::{self, Explained};
use crate::backends::file::FileInfo;
use crate::backends::member::Backend;
use crate::context::Shared;
use crate::http::pages::{PALETTE, escape};
use crate::log::{Decision, RECENT_DECISIONS};
use crate::metrics::DURATION_BUCKETS;
use crate::metrics::history::{self, HISTORY_SECONDS, Series};
use crate::time;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds between two updates of the page: the script's fetch of `/status.json`, or without
/// JavaScript a reload (`<meta http-equiv="refresh">` inside `<noscript>`).
pub const REFRESH_SECS: u32 = 1;
/// Routing decisions listed in the table under the charts, newest first (the strip above
/// shows all [`RECENT_DECISIONS`]).
pub const DECISION_ROWS: usize = 20;
/// Most backend rows on the status page and in `/status.json`; past it the rest are counted
/// in [`Counts`] only (`GET /backends` lists them all). 45,000 rows with their last minute
/// made a 57 MB `/status.json`.
pub const STATUS_ROWS: usize = 200;
/// Side of one square of the routing strip, in pixels.
pub const STRIP_CELL: u32 = 16;
/// Space between two squares of the routing strip, in pixels.
pub const STRIP_GAP: u32 = 3;

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
    /// The last minute, second by second (on the status page; `None` in the backend API).
    pub history: Option<Series>,
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
            history: None,
        }
    }

    /// [`Row::of`] with the backend's history up to second `now` (see [`history::second`]).
    pub fn with_history(b: &Backend, now: u64) -> Row {
        Row {
            history: Some(b.stats.history.series(now).in_unix_time()),
            ..Row::of(b)
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
            ",\"colour\":\"{}\",\"weight\":{},\"active\":{},\"requests\":{},\"errors\":{},\"p50_seconds\":{},\"p99_seconds\":{}",
            self.colour,
            self.weight,
            self.active,
            self.requests,
            self.errors,
            json_seconds(self.p50),
            json_seconds(self.p99)
        );
        if let Some(h) = &self.history {
            out.push_str(",\"history\":");
            history_json(&mut out, h);
        }
        out.push('}');
        out
    }
}

/// A backend's history as JSON: `start_ms` (when the first second began), then one list
/// entry per second: `requests` (responses relayed), `errors` (failed attempts),
/// `responses_5xx`, `p50_seconds`, `p99_seconds` (as [`json_seconds`]), and the state
/// changes in the window as `events`.
fn history_json(out: &mut String, h: &Series) {
    let _ = write!(out, "{{\"start_ms\":{},", h.start_ms);
    for (name, values) in [
        ("requests", &h.answered),
        ("errors", &h.failed),
        ("responses_5xx", &h.server_errors),
    ] {
        let _ = write!(out, "\"{name}\":[");
        for (i, v) in values.iter().enumerate() {
            let _ = write!(out, "{}{v}", if i > 0 { "," } else { "" });
        }
        out.push_str("],");
    }
    for (name, values) in [("p50_seconds", &h.p50), ("p99_seconds", &h.p99)] {
        let _ = write!(out, "\"{name}\":[");
        for (i, v) in values.iter().enumerate() {
            let _ = write!(out, "{}{}", if i > 0 { "," } else { "" }, json_seconds(*v));
        }
        out.push_str("],");
    }
    out.push_str("\"events\":[");
    for (i, e) in h.events.iter().enumerate() {
        let _ = write!(
            out,
            "{}{{\"time_ms\":{},\"state\":\"{}\",\"reason\":",
            if i > 0 { "," } else { "" },
            e.time_ms,
            e.state
        );
        json_string(out, &e.reason);
        out.push('}');
    }
    out.push_str("]}");
}

/// The colour of backend `id`.
pub fn colour(id: usize) -> &'static str {
    PALETTE[id % PALETTE.len()]
}

/// How many backends there are, by state (all of them, not only the rows shown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// All backends.
    pub total: usize,
    /// In rotation.
    pub up: usize,
    /// Out by their health.
    pub down: usize,
    /// Draining.
    pub draining: usize,
}

/// Everything the status page shows, read at one moment.
#[derive(Debug, Clone)]
pub struct Status {
    /// One row per backend, in rotation order, at most [`STATUS_ROWS`].
    pub backends: Vec<Row>,
    /// All the backends, counted by state.
    pub counts: Counts,
    /// The last routing decisions, oldest first.
    pub recent: Vec<Decision>,
    /// Why each of `recent` went where it went, in words ([`why::explain`]).
    pub why: Vec<Option<Explained>>,
    /// Client connections open now.
    pub open: u64,
    /// Of those, the ones upgraded to a tunnel (`101 Switching Protocols`), or asking a
    /// backend to be (the tunnel's slot of the cap is taken before the request goes out).
    pub tunnels: u64,
    /// Of those, the ones whose request body is being read now (a slow `POST` holds its
    /// thread and a backend connection while it trickles).
    pub bodies: u64,
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
    /// When it was read.
    pub time: SystemTime,
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
    /// [`crate::admin::Drills`]). With `history`, each row carries its last minute, for
    /// [`Status::json`] (the HTML page draws its charts from that JSON, so it needs none).
    pub fn collect(shared: &Shared, demos: Vec<DemoRow>, history: bool) -> Status {
        let stats = &shared.stats;
        let now = history::current_second();
        let row = |b: &Backend| {
            if history {
                Row::with_history(b, now)
            } else {
                Row::of(b)
            }
        };
        let all = shared.backends.snapshot();
        let recent = shared.log.recent();
        let mut counts = Counts {
            total: all.len(),
            ..Counts::default()
        };
        for b in all.iter() {
            if b.is_draining() {
                counts.draining += 1;
            } else if b.health.is_up() {
                counts.up += 1;
            } else {
                counts.down += 1;
            }
        }
        Status {
            backends: all.iter().take(STATUS_ROWS).map(|b| row(b)).collect(),
            counts,
            why: why::explain(&all, &|b| name_of(&demos, b), &recent),
            recent,
            open: stats.open.load(Ordering::Relaxed),
            tunnels: stats.tunnels.load(Ordering::Relaxed),
            bodies: stats.bodies.load(Ordering::Relaxed),
            accepted: stats.accepted.load(Ordering::Relaxed),
            requests: stats.requests.load(Ordering::Relaxed),
            strategy: shared.backends.strategy().name(),
            demos,
            file: shared.file.as_ref().map(|f| f.info()),
            time: SystemTime::now(),
        }
    }

    /// A backend's name on the page: the demo's (`Red`), else `#ID`.
    fn name_of(&self, r: &Row) -> String {
        (self.demos.iter().find(|d| d.url == r.url))
            .map_or_else(|| format!("#{}", r.id), |d| d.name.to_string())
    }

    /// The colour of the backend with this URL, grey when it is gone (or was none: `-`).
    fn colour_of(&self, url: &str) -> &'static str {
        self.backends
            .iter()
            .find(|r| r.url == url)
            .map_or("gray", |r| r.colour)
    }

    /// The HTML page: the routing strip, room for the charts, the backends, the drills and
    /// the recent decisions, newest first; then the script that keeps it all live.
    pub fn html(&self) -> String {
        let mut out = String::with_capacity(16 * 1024 + STATUS_SCRIPT.len());
        let first = DURATION_BUCKETS[0];
        let last = DURATION_BUCKETS[DURATION_BUCKETS.len() - 1];
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
             <noscript><meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\"></noscript>\n\
             <title>load-balancer status</title>\n<style>{STATUS_STYLE}</style></head>\n\
             <body data-refresh=\"{REFRESH_SECS}\" data-first-bucket=\"{first}\" data-last-bucket=\"{last}\">\n\
             <h1>load-balancer</h1>\n\
             <p id=\"summary\">{} &middot; {} requests &middot; {} connections open ({} tunnels, {} sending a body), {} accepted</p>\n\
             <p id=\"note\" class=\"note\"></p>\n\
             <h2>Routing: the last {RECENT_DECISIONS} decisions, oldest first</h2>\n",
            escape(self.strategy),
            self.requests,
            self.open,
            self.tunnels,
            self.bodies,
            self.accepted
        );
        self.strip(&mut out);
        let _ = write!(
            out,
            "<h2>The last minute</h2>\n<div id=\"charts\"><noscript><p class=\"muted\">The charts \
             need JavaScript; without it this page reloads every {REFRESH_SECS} s.</p></noscript></div>\n\
             <p id=\"legend\" class=\"legend\"></p>\n\
             <h2>Backends</h2>\n<table id=\"backends\">\n<thead><tr><th>backend</th><th>id</th>\
             <th class=\"l\">state</th><th>weight</th><th>active</th><th>requests</th><th>errors</th>\
             <th>p50</th><th>p99</th></tr></thead>\n<tbody>\n"
        );
        self.backend_rows(&mut out);
        self.file_html(&mut out);
        self.demo_table(&mut out);
        if !self.demos.is_empty() {
            let rows: Vec<_> = (self.backends.iter())
                .map(|r| (r.id, self.name_of(r), r.weight))
                .collect();
            why::controls_html(self.strategy, &rows, &mut out);
        }
        self.decision_table(&mut out);
        let _ = write!(
            out,
            "</tbody></table>\n<p><a href=\"/status.json\">status.json</a> &middot; \
             <a href=\"/metrics\">metrics</a></p>\n<script>{STATUS_SCRIPT}</script>\n</body></html>\n"
        );
        out
    }

    /// The backends table's rows, one per backend.
    fn backend_rows(&self, out: &mut String) {
        for r in &self.backends {
            let reason = match &r.state {
                State::Down(why) => format!(" ({})", escape(why)),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "<tr><td class=\"name\">{sq}{url}</td><td>{id}</td>\
                 <td class=\"l\"><span class=\"{s}\">{s}</span>{reason}</td><td>{w}</td>\
                 <td>{a}</td><td>{n}</td><td>{e}</td><td>{p50}</td><td>{p99}</td></tr>",
                sq = square(r.colour),
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
        out.push_str("</tbody></table>\n");
        let c = &self.counts;
        if c.total > self.backends.len() {
            let _ = writeln!(
                out,
                "<p>The first {} of {} backends ({} up, {} down, {} draining); \
                 <a href=\"/backends\">/backends</a> lists them all.</p>",
                self.backends.len(),
                c.total,
                c.up,
                c.down,
                c.draining
            );
        }
    }

    /// The demo backends with their drill and its buttons (nothing without demo backends).
    fn demo_table(&self, out: &mut String) {
        if self.demos.is_empty() {
            return;
        }
        out.push_str("<h2>Demo backends: failure drills</h2>\n<table id=\"demos\"><tbody>\n");
        for d in &self.demos {
            let _ = write!(
                out,
                "<tr><td class=\"name\">{}{} Server</td><td class=\"l\">{}</td>\
                 <td class=\"l drill\">{}</td><td class=\"l\">",
                square(d.colour),
                escape(d.name),
                escape(&d.url),
                escape(&d.drill)
            );
            for (label, path) in DRILL_BUTTONS {
                let _ = write!(
                    out,
                    "<form method=\"post\" action=\"/demo/{}/{path}\">\
                     <input type=\"hidden\" name=\"then\" value=\"status\"><button>{label}</button></form>",
                    escape(&d.name.to_lowercase())
                );
            }
            out.push_str("</td></tr>\n");
        }
        out.push_str("</tbody></table>\n");
    }

    /// The newest routing decisions as a table, newest first.
    fn decision_table(&self, out: &mut String) {
        let _ = write!(
            out,
            "<h2>Last routing decisions</h2>\n<table id=\"recent\" data-rows=\"{DECISION_ROWS}\">\n\
             <thead><tr><th>time (UTC)</th><th class=\"l\">client</th><th class=\"l\">request</th><th class=\"l\">backend</th>\
             <th>status</th><th class=\"l\">why</th></tr></thead>\n<tbody>\n"
        );
        let whys = self
            .why
            .iter()
            .rev()
            .map(Some)
            .chain(std::iter::repeat(None));
        for (d, why) in self.recent.iter().rev().take(DECISION_ROWS).zip(whys) {
            let why = why.and_then(Option::as_ref).map(Explained::text);
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td>\
                 <td class=\"l name\">{}{}</td><td>{}</td><td class=\"l why\">{}</td></tr>",
                clock(d.time),
                d.client,
                escape(&d.request),
                square(self.colour_of(&d.backend)),
                escape(&d.backend),
                d.status,
                escape(why.as_deref().unwrap_or(""))
            );
        }
    }

    /// The routing strip: one square per recent decision in the colour of the backend that
    /// took it (grey for the balancer's own answers), a white cross on a `5xx`, empty
    /// outlines for the decisions not made yet. The script redraws it the same way.
    fn strip(&self, out: &mut String) {
        let slots = RECENT_DECISIONS as u32;
        let step = STRIP_CELL + STRIP_GAP;
        let _ = write!(
            out,
            "<div id=\"strip\" data-cell=\"{STRIP_CELL}\" data-gap=\"{STRIP_GAP}\" data-slots=\"{slots}\">\
             <svg width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"the last routing decisions, oldest first\">",
            slots * step,
            STRIP_CELL + 2
        );
        let shown = &self.recent[self.recent.len().saturating_sub(RECENT_DECISIONS)..];
        let empty = RECENT_DECISIONS - shown.len();
        for i in 0..RECENT_DECISIONS {
            let x = i as u32 * step + 1;
            let Some(d) = i.checked_sub(empty).and_then(|k| shown.get(k)) else {
                let _ = write!(
                    out,
                    "<rect x=\"{x}\" y=\"1\" width=\"{STRIP_CELL}\" height=\"{STRIP_CELL}\" rx=\"2\" \
                     fill=\"none\" stroke=\"#ddd\"/>"
                );
                continue;
            };
            let _ = write!(
                out,
                "<rect x=\"{x}\" y=\"1\" width=\"{STRIP_CELL}\" height=\"{STRIP_CELL}\" rx=\"2\" \
                 fill=\"{}\"><title>{}  {}  &#8594; {}  {}</title></rect>",
                escape(self.colour_of(&d.backend)),
                clock(d.time),
                escape(&d.request),
                escape(&d.backend),
                d.status
            );
            if d.status >= 500 {
                let (m, y) = (STRIP_CELL / 4, 1);
                let (a, b) = (x + m, x + STRIP_CELL - m);
                let (top, bottom) = (y + m, y + STRIP_CELL - m);
                let _ = write!(
                    out,
                    "<path d=\"M{a} {top}L{b} {bottom}M{b} {top}L{a} {bottom}\" stroke=\"white\" \
                     stroke-width=\"2\"/>"
                );
            }
        }
        out.push_str("</svg></div>\n");
    }

    /// The same data as JSON.
    pub fn json(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("{\"strategy\":");
        json_string(&mut out, self.strategy);
        let _ = write!(
            out,
            ",\"requests\":{},\"connections_open\":{},\"tunnels_open\":{},\"request_bodies_open\":{},\"connections_accepted\":{},\
             \"time_ms\":{},\"history_seconds\":{HISTORY_SECONDS},\"backends_total\":{},\
             \"backends_up\":{},\"backends_down\":{},\"backends_draining\":{},\"backends\":[",
            self.requests,
            self.open,
            self.tunnels,
            self.bodies,
            self.accepted,
            unix_millis(self.time),
            self.counts.total,
            self.counts.up,
            self.counts.down,
            self.counts.draining,
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
            out.push_str(",\"colour\":");
            json_string(&mut out, d.colour);
            out.push_str(",\"drill\":");
            json_string(&mut out, &d.drill);
            out.push('}');
        }
        out.push_str("],\"backends_file\":");
        self.file_json(&mut out);
        self.recent_json(&mut out);
        out.push('}');
        out
    }

    /// `,"recent":[...]`: the decisions, oldest first, each with its `why` (or `null`).
    fn recent_json(&self, out: &mut String) {
        out.push_str(",\"recent\":[");
        for (i, d) in self.recent.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let (time, client) = (unix_millis(d.time), d.client);
            let _ = write!(
                out,
                "{{\"time_ms\":{time},\"client\":\"{client}\",\"request\":"
            );
            json_string(out, &d.request);
            out.push_str(",\"backend\":");
            json_string(out, &d.backend);
            let _ = write!(out, ",\"status\":{},\"why\":", d.status);
            match self.why.get(i).and_then(Option::as_ref) {
                Some(why) => why.json(out, json_string),
                None => out.push_str("null"),
            }
            out.push('}');
        }
        out.push(']');
    }
}

impl Status {
    /// The line under the backends table that says where the list comes from (the page's
    /// script writes the same words from `/status.json`).
    fn file_html(&self, out: &mut String) {
        let Some(f) = &self.file else { return };
        let _ = write!(
            out,
            "<p id=\"file\">Backends from {} &middot; generation {} &middot; last read taken at \
             {} UTC &middot; list {:016x} &middot; {} refused reads",
            escape(&f.path),
            f.generation,
            clock(f.loaded),
            f.list,
            f.errors
        );
        if let Some(why) = &f.last_error {
            let _ = write!(out, " &middot; last read refused: {}", escape(why));
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

/// A backend's name in the explanations: the demo's (`Red`), else its URL.
fn name_of(demos: &[DemoRow], b: &Backend) -> String {
    (demos.iter().find(|d| d.url == b.url)).map_or_else(|| b.url.clone(), |d| d.name.to_string())
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

/// Milliseconds since the Unix epoch (0 before it).
fn unix_millis(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// A latency in seconds for JSON: a number, `null` for none, and the string `"+Inf"` (as
/// Prometheus names that bucket) past the last bucket, since JSON has no infinity.
fn json_seconds(n: Option<f64>) -> String {
    match n {
        Some(n) if n.is_finite() => n.to_string(),
        Some(_) => "\"+Inf\"".into(),
        None => "null".into(),
    }
}

/// A small square in `colour`, before a backend's name. SVG, so the colour is an attribute
/// the page's `Content-Security-Policy` allows (a `style` attribute would be blocked).
fn square(colour: &str) -> String {
    format!(
        "<svg class=\"sq\" viewBox=\"0 0 10 10\" aria-hidden=\"true\">\
         <rect width=\"10\" height=\"10\" fill=\"{}\"/></svg>",
        escape(colour)
    )
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
    use crate::metrics::history::Event;
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
            history: None,
        }
    }

    /// Three seconds of history (the page has 60; the JSON writer takes any length).
    fn series() -> Series {
        Series {
            start_ms: 1_795_606_217_000,
            answered: vec![4, 0, 2],
            failed: vec![0, 1, 0],
            server_errors: vec![1, 0, 0],
            p50: vec![Some(0.001), None, Some(0.5)],
            p99: vec![Some(0.0025), None, Some(f64::INFINITY)],
            events: vec![Event {
                time_ms: 1_795_606_218_250,
                state: "DOWN",
                reason: "connection \"refused\"".into(),
            }],
        }
    }

    fn decision(millis: u64, request: &str, backend: &str, status: u16) -> Decision {
        Decision {
            time: UNIX_EPOCH + Duration::from_millis(millis),
            client: std::net::Ipv4Addr::LOCALHOST.into(),
            request: request.into(),
            backend: backend.into(),
            status,
            why: None,
        }
    }

    fn status() -> Status {
        Status {
            backends: vec![
                Row {
                    history: Some(series()),
                    ..row(0, State::Up)
                },
                row(1, State::Down("connection refused <x>".into())),
                row(2, State::Draining),
            ],
            why: vec![Some(Explained {
                strategy: "round-robin",
                reason: "round robin: next after Green".into(),
                skipped: vec![(0, "Red".into(), "DOWN", "Red: DOWN, refused".into())],
                more: 0,
                panic: false,
            })],
            counts: Counts {
                total: 3,
                up: 1,
                down: 1,
                draining: 1,
            },
            recent: vec![decision(
                1_795_606_219_042,
                "GET /a\"<b>",
                "http://127.0.0.1:8002",
                200,
            )],
            open: 3,
            tunnels: 1,
            bodies: 1,
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
            time: UNIX_EPOCH + Duration::from_millis(1_795_606_219_500),
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
             \"tunnels_open\":1,\"request_bodies_open\":1,\"connections_accepted\":7,\"time_ms\":1795606219500,\"history_seconds\":60,\
             \"backends_total\":3,\"backends_up\":1,\"backends_down\":1,\"backends_draining\":1,\
             \"backends\":[\
             {\"id\":0,\"url\":\"http://127.0.0.1:8001\",\"state\":\"UP\",\"reason\":null,\
             \"colour\":\"red\",\"weight\":1,\"active\":2,\"requests\":10,\"errors\":1,\
             \"p50_seconds\":0.0005,\"p99_seconds\":null,\
             \"history\":{\"start_ms\":1795606217000,\"requests\":[4,0,2],\"errors\":[0,1,0],\
             \"responses_5xx\":[1,0,0],\"p50_seconds\":[0.001,null,0.5],\
             \"p99_seconds\":[0.0025,null,\"+Inf\"],\
             \"events\":[{\"time_ms\":1795606218250,\"state\":\"DOWN\",\
             \"reason\":\"connection \\\"refused\\\"\"}]}},\
             {\"id\":1,\"url\":\"http://127.0.0.1:8002\",\"state\":\"DOWN\",\
             \"reason\":\"connection refused <x>\",\"colour\":\"blue\",\"weight\":1,\"active\":2,\
             \"requests\":10,\"errors\":1,\"p50_seconds\":0.0005,\"p99_seconds\":null},\
             {\"id\":2,\"url\":\"http://127.0.0.1:8003\",\"state\":\"DRAINING\",\"reason\":null,\
             \"colour\":\"green\",\"weight\":1,\"active\":2,\"requests\":10,\"errors\":1,\
             \"p50_seconds\":0.0005,\"p99_seconds\":null}],\
             \"demos\":[{\"name\":\"Red\",\"url\":\"http://127.0.0.1:8001\",\"colour\":\"red\",\
             \"drill\":\"ok: answering normally\"}],\"backends_file\":null,\
             \"recent\":[{\"time_ms\":1795606219042,\"client\":\"127.0.0.1\",\"request\":\"GET /a\\\"<b>\",\
             \"backend\":\"http://127.0.0.1:8002\",\"status\":200,\"why\":{\"strategy\":\"round-robin\",\
             \"reason\":\"round robin: next after Green\",\"panic\":false,\"skipped\":[{\"id\":0,\
             \"name\":\"Red\",\"state\":\"DOWN\",\"reason\":\"Red: DOWN, refused\"}],\"more_skipped\":0,\
             \"text\":\"round robin: next after Green; skipped Red: DOWN, refused\"}}]}"
        );
    }

    #[test]
    fn html_page() {
        let html = status().html();
        // Without JavaScript it reloads; with it, the script takes over.
        assert!(html.contains("<noscript><meta http-equiv=\"refresh\" content=\"1\"></noscript>"));
        assert_eq!(html.matches("http-equiv").count(), 1);
        assert!(html.contains(&format!("<script>{STATUS_SCRIPT}</script>")));
        assert!(html.contains(&format!("<style>{STATUS_STYLE}</style>")));
        // No style attribute anywhere: the policy would block it.
        assert!(!html.contains(" style="), "{html}");
        let red = "<td class=\"name\"><svg class=\"sq\" viewBox=\"0 0 10 10\" aria-hidden=\"true\">\
                   <rect width=\"10\" height=\"10\" fill=\"red\"/></svg>http://127.0.0.1:8001</td>";
        assert!(html.contains(red), "{html}");
        assert!(html.contains(">DOWN</span> (connection refused &lt;x&gt;)"));
        assert!(html.contains(">DRAINING</span>"));
        assert!(
            html.contains("action=\"/demo/red/slow/500\""),
            "drill buttons: {html}"
        );
        assert!(html.contains("<td class=\"l drill\">ok: answering normally</td>"));
        assert!(html.contains("&le; 0.5 ms"));
        // The decision: escaped, in the colour of the backend that took it, with its time.
        assert!(html.contains(
            "<td>11:30:19.042</td><td class=\"l\">127.0.0.1</td>\
             <td class=\"l\">GET /a&quot;&lt;b&gt;</td>"
        ));
        assert!(html.contains("fill=\"blue\"/></svg>http://127.0.0.1:8002</td><td>200</td>"));
        // Why, in its column.
        assert!(html.contains(
            "<td class=\"l why\">round robin: next after Green; skipped Red: DOWN, refused</td>"
        ));
        // The demo's lab controls: the strategy (the current one selected) and each weight.
        assert!(html.contains("<form method=\"post\" action=\"/strategy\">"));
        assert!(html.contains("<option selected>round-robin</option><option>weighted</option>"));
        assert!(html.contains("action=\"/backends/0/weight\"><label>Red weight"));
        assert!(html.contains("action=\"/backends/2/weight\"><label>#2 weight"));
    }

    #[test]
    fn routing_strip() {
        let mut s = status();
        let urls = ["http://127.0.0.1:8001", "http://127.0.0.1:8002", "-"];
        s.recent = (0..RECENT_DECISIONS as u64 + 3)
            .map(|i| {
                let status = if i % 3 == 2 { 503 } else { 200 };
                decision(i, "GET /", urls[i as usize % 3], status)
            })
            .collect();
        let mut strip = String::new();
        s.strip(&mut strip);
        // The newest RECENT_DECISIONS, oldest first: red, blue, grey (the balancer's own 503,
        // crossed), red, ...; the 3 oldest decisions are left out.
        let fills: Vec<&str> = strip
            .split("fill=\"")
            .skip(1)
            .map(|f| &f[..f.find('"').unwrap()])
            .collect();
        assert_eq!(fills.len(), RECENT_DECISIONS);
        assert_eq!(fills[..4], ["red", "blue", "gray", "red"]);
        assert_eq!(
            strip.matches("stroke=\"white\"").count(),
            RECENT_DECISIONS / 3
        );
        assert!(
            strip
                .contains("<title>00:00:00.003  GET /  &#8594; http://127.0.0.1:8001  200</title>")
        );
        // With fewer decisions, empty outlines first, so the newest stays at the right.
        s.recent.truncate(2);
        let mut strip = String::new();
        s.strip(&mut strip);
        assert_eq!(strip.matches("fill=\"none\"").count(), RECENT_DECISIONS - 2);
        assert!(strip.rfind("fill=\"none\"") < strip.find("fill=\"red\""));
    }

    #[test]
    fn the_table_shows_the_newest_decisions() {
        let mut s = status();
        s.recent = (0..RECENT_DECISIONS as u64)
            .map(|i| decision(i * 1000, &format!("GET /{i}"), "-", 200))
            .collect();
        let html = s.html();
        let table = &html[html.find("id=\"recent\"").unwrap()..];
        assert_eq!(table.matches("<tr><td>").count(), DECISION_ROWS);
        let newest = table.find("GET /49<").unwrap();
        let older = table
            .find(&format!("GET /{}<", RECENT_DECISIONS - DECISION_ROWS))
            .unwrap();
        assert!(newest < older);
        assert!(!table.contains(&format!("GET /{}<", RECENT_DECISIONS - DECISION_ROWS - 1)));
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
        assert!(
            html.contains(
                "<p id=\"file\">Backends from /etc/lb/&lt;b&gt;.txt &middot; generation 4"
            )
        );
        assert!(html.contains("11:30:19.042 UTC"));
        assert!(html.contains("last read refused: line 2: &quot;x&quot;</p>"));
    }

    #[test]
    fn latencies() {
        assert_eq!(latency(None), "-");
        assert_eq!(latency(Some(0.025)), "&le; 25 ms");
        assert_eq!(latency(Some(0.0025)), "&le; 2.5 ms");
        assert_eq!(latency(Some(5.0)), "&le; 5 s");
        assert_eq!(latency(Some(f64::INFINITY)), "&gt; 5 s");
        assert_eq!(json_seconds(Some(f64::INFINITY)), "\"+Inf\"");
        assert_eq!(json_seconds(None), "null");
        assert_eq!(json_seconds(Some(0.25)), "0.25");
    }
}
