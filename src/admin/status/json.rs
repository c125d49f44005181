//! The status as JSON: `/status.json` ([`Status::json`]), a backend for the backend API
//! ([`Row::json`]), and [`json_string`], which the admin's error answers and the
//! explanations of [`crate::admin::why`] use too. The model is in `admin/status/mod.rs`, the
//! page in `admin/status/html.rs`; the page's script reads this JSON.

use super::{Row, State, Status};
use crate::metrics::history::{HISTORY_SECONDS, Series};
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

impl Row {
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

impl Status {
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
    use crate::admin::status::sample::{status, with_file};

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
    fn the_backends_file_in_json() {
        assert!(with_file().json().contains(
            "\"backends_file\":{\"path\":\"/etc/lb/<b>.txt\",\"generation\":4,\
             \"loaded_ms\":1795606219042,\"errors\":1,\"list\":\"00000000000000ab\",\
             \"last_error\":\"line 2: \\\"x\\\"\"},\"recent\""
        ));
    }

    #[test]
    fn latencies() {
        assert_eq!(json_seconds(Some(f64::INFINITY)), "\"+Inf\"");
        assert_eq!(json_seconds(None), "null");
        assert_eq!(json_seconds(Some(0.25)), "0.25");
    }
}
