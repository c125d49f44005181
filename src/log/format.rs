//! The access log's formats besides the console line (`--access-log-format`): nginx's
//! `combined`, which GoAccess, Grafana Loki's pattern parser and most log tools read as it
//! is, and JSON Lines, for tools that take named fields.
//!
//! `combined` is nginx's predefined format to the byte, then the backend and the timings as
//! an nginx `log_format` adds them (the form of nginx's own example,
//! `rt=$request_time urt="$upstream_response_time"`), then the request id:
//!
//! ```text
//! 127.0.0.1 - - [07/Dec/2026:20:03:15 +0000] "GET /a?b=1 HTTP/1.1" 200 51 "-" "curl/8.5.0" upstream="http://127.0.0.1:8001" rt=0.001 urt=0.001 rid="4f0c9d..."
//! ```
//!
//! Quoted fields are escaped as nginx escapes them: `"`, `\` and bytes outside visible ASCII
//! become `\xHH`. An empty `Referer` or `User-Agent` is `-`, as in nginx.
//!
//! `json` is one object per line:
//!
//! ```text
//! {"time":"2026-12-07T20:03:15.123Z","client":"127.0.0.1","method":"GET","path":"/a?b=1","protocol":"HTTP/1.1","status":200,"bytes":51,"referer":null,"user_agent":"curl/8.5.0","backend":"http://127.0.0.1:8001","upstream_time":0.001,"total_time":0.001,"request_id":"4f0c9d..."}
//! ```
//!
//! `backend` names every backend tried for the request, in order, separated by commas (as
//! nginx's `$upstream_addr`): one for most requests, several after a failover, and the ones
//! tried when the balancer answered `502`, `503` or `504` itself. It is `null` (`-`) when
//! none was tried.

use super::{Record, TextCache, push_number};
use crate::time;
use std::time::Duration;

/// Appends one `combined` line.
pub(super) fn combined(out: &mut String, cache: &mut TextCache, r: &Record<'_>, target: &str) {
    out.push_str(cache.ip(r.client));
    out.push_str(" - - [");
    out.push_str(cache.time(r.time));
    out.push_str("] \"");
    if r.method == "-" {
        out.push('-');
    } else {
        for part in [r.method, " ", target, " ", r.version] {
            push_escaped(out, part);
        }
    }
    out.push_str("\" ");
    push_number(out, u64::from(r.status));
    out.push(' ');
    push_number(out, r.bytes);
    for field in [r.referer, r.user_agent] {
        out.push_str(" \"");
        push_escaped(out, field.filter(|f| !f.is_empty()).unwrap_or("-"));
        out.push('"');
    }
    out.push_str(" upstream=\"");
    push_escaped(out, r.backend.unwrap_or("-"));
    out.push_str("\" rt=");
    push_seconds(out, r.duration);
    out.push_str(" urt=");
    match r.upstream {
        Some(d) => push_seconds(out, d),
        None => out.push('-'),
    }
    out.push_str(" rid=\"");
    push_escaped(out, r.request_id.unwrap_or("-"));
    out.push_str("\"\n");
}

/// Appends one JSON line.
pub(super) fn json(out: &mut String, r: &Record<'_>, target: &str) {
    out.push_str("{\"time\":\"");
    out.push_str(&time::rfc3339_millis(r.time));
    out.push_str("\",\"client\":\"");
    out.push_str(&r.client.to_string());
    out.push('"');
    fn dash(s: &str) -> Option<&str> {
        (s != "-").then_some(s)
    }
    for (name, value) in [
        ("method", dash(r.method)),
        ("path", dash(target)),
        ("protocol", dash(r.version)),
    ] {
        push_json_field(out, name, value);
    }
    out.push_str(",\"status\":");
    push_number(out, u64::from(r.status));
    out.push_str(",\"bytes\":");
    push_number(out, r.bytes);
    for (name, value) in [
        ("referer", r.referer),
        ("user_agent", r.user_agent),
        ("backend", r.backend),
    ] {
        push_json_field(out, name, value);
    }
    out.push_str(",\"upstream_time\":");
    match r.upstream {
        Some(d) => push_seconds(out, d),
        None => out.push_str("null"),
    }
    out.push_str(",\"total_time\":");
    push_seconds(out, r.duration);
    push_json_field(out, "request_id", r.request_id);
    out.push_str("}\n");
}

/// `,"name":"value"` (escaped), or `,"name":null`.
fn push_json_field(out: &mut String, name: &str, value: Option<&str>) {
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":");
    match value {
        Some(v) => {
            out.push('"');
            for c in v.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                        out.push_str(&format!("\\u{:04x}", u32::from(c)));
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        None => out.push_str("null"),
    }
}

/// Seconds with three decimals, as nginx writes `$request_time`: `0.012`.
fn push_seconds(out: &mut String, d: Duration) {
    super::push_thousandths(out, (d.as_micros() + 500) / 1000);
}

/// nginx's default escaping of a quoted log field: `"`, `\`, and every byte that is not
/// visible ASCII or a space as `\xHH`.
fn push_escaped(out: &mut String, s: &str) {
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.push_str(&format!("\\x{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::UNIX_EPOCH;

    fn record() -> Record<'static> {
        Record {
            client: IpAddr::V4(Ipv4Addr::LOCALHOST),
            time: UNIX_EPOCH + Duration::from_millis(1_796_673_795_123),
            method: "GET",
            target: "/a?b=1",
            version: "HTTP/1.1",
            status: 200,
            bytes: 51,
            backend: Some("http://127.0.0.1:8001"),
            duration: Duration::from_micros(1_499),
            referer: None,
            user_agent: Some("curl/8.5.0"),
            request_id: Some("4f0c9d"),
            upstream: Some(Duration::from_micros(900)),
            local: false,
            why: None,
            explained: "",
        }
    }

    #[test]
    fn combined_is_nginxs_then_the_extras() {
        let mut out = String::new();
        combined(&mut out, &mut TextCache::default(), &record(), "/a?b=1");
        assert_eq!(
            out,
            "127.0.0.1 - - [07/Dec/2026:20:03:15 +0000] \"GET /a?b=1 HTTP/1.1\" 200 51 \"-\" \
             \"curl/8.5.0\" upstream=\"http://127.0.0.1:8001\" rt=0.001 urt=0.001 rid=\"4f0c9d\"\n"
        );
        let odd = Record {
            user_agent: Some("a \"quoted\" \\ agent\u{1}é"),
            method: "-",
            backend: None,
            upstream: None,
            request_id: None,
            ..record()
        };
        out.clear();
        combined(&mut out, &mut TextCache::default(), &odd, "-");
        assert!(
            out.contains(
                "\"-\" 200 51 \"-\" \"a \\x22quoted\\x22 \\x5C agent\\x01\\xC3\\xA9\" \
                 upstream=\"-\" rt=0.001 urt=- rid=\"-\"\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn json_lines_name_every_field() {
        let mut out = String::new();
        json(&mut out, &record(), "/a?b=1");
        assert_eq!(
            out,
            "{\"time\":\"2026-12-07T20:03:15.123Z\",\"client\":\"127.0.0.1\",\"method\":\"GET\",\
             \"path\":\"/a?b=1\",\"protocol\":\"HTTP/1.1\",\"status\":200,\"bytes\":51,\
             \"referer\":null,\"user_agent\":\"curl/8.5.0\",\"backend\":\"http://127.0.0.1:8001\",\
             \"upstream_time\":0.001,\"total_time\":0.001,\"request_id\":\"4f0c9d\"}\n"
        );
        let odd = Record {
            user_agent: Some("q\"b\\c\u{1}é"),
            method: "-",
            version: "-",
            upstream: None,
            ..record()
        };
        out.clear();
        json(&mut out, &odd, "-");
        assert!(
            out.contains("\"method\":null,\"path\":null,\"protocol\":null"),
            "{out}"
        );
        assert!(
            out.contains("\"user_agent\":\"q\\\"b\\\\c\\u0001é\""),
            "{out}"
        );
        assert!(out.contains("\"upstream_time\":null"), "{out}");
    }
}
