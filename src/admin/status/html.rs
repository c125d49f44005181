//! The status page as HTML: [`Status::html`] writes the routing strip, the tables of
//! backends, demo drills and recent decisions, and the lab's controls, from the model in
//! `admin/status/mod.rs`. The page's script (`admin/status.js`) draws the charts and keeps the
//! page live from the JSON that `admin/status/json.rs` writes.

use super::{Row, State, Status};
use crate::admin::csp::{STATUS_SCRIPT, STATUS_STYLE};
use crate::admin::why::{self, Explained};
use crate::http::pages::escape;
use crate::log::RECENT_DECISIONS;
use crate::metrics::DURATION_BUCKETS;
use crate::time;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds between two updates of the page: the script's fetch of `/status.json`, or without
/// JavaScript a reload (`<meta http-equiv="refresh">` inside `<noscript>`).
pub const REFRESH_SECS: u32 = 1;
/// Routing decisions listed in the table under the charts, newest first (the strip above
/// shows all [`RECENT_DECISIONS`]).
pub const DECISION_ROWS: usize = 20;
/// Side of one square of the routing strip, in pixels.
pub const STRIP_CELL: u32 = 16;
/// Space between two squares of the routing strip, in pixels.
pub const STRIP_GAP: u32 = 3;

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

/// A small square in `colour`, before a backend's name. SVG, so the colour is an attribute
/// the page's `Content-Security-Policy` allows (a `style` attribute would be blocked).
fn square(colour: &str) -> String {
    format!(
        "<svg class=\"sq\" viewBox=\"0 0 10 10\" aria-hidden=\"true\">\
         <rect width=\"10\" height=\"10\" fill=\"{}\"/></svg>",
        escape(colour)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::status::sample::{decision, status, with_file};

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
    fn the_backends_file_in_html() {
        let html = with_file().html();
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
    }
}
