//! The console: one access-log line per request, and the last routing decisions.
//!
//! The chapter prints `[LoadBalancer] Routing path '/' to http://localhost:8001` for every
//! request. This balancer prints one line per request in a format close to nginx's `combined`
//! log, with the backend and the time taken added:
//!
//! ```text
//! 127.0.0.1 - - [25/Nov/2026:11:30:19 +0000] "GET / HTTP/1.1" 200 51 backend=http://127.0.0.1:8001 time=0.412ms
//! ```
//!
//! client address, time (UTC), request line, status, body bytes sent, the backend that answered
//! (`-` when the balancer answered itself), and the time from the request head to the end of the
//! response. Lines are collected in memory and written every [`FLUSH_INTERVAL`] by one thread,
//! so a busy balancer makes one `write` for many requests, not one per request.

use crate::time;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// How often collected log lines are written to stdout.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// How many routing decisions the status page shows.
pub const RECENT_DECISIONS: usize = 20;
/// Longest request target kept in a log line or decision; longer ones are cut with `...`.
pub const MAX_LOGGED_TARGET: usize = 512;

/// One request, as logged.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    /// The client's address.
    pub client: IpAddr,
    /// When the request head was read.
    pub time: SystemTime,
    /// The method.
    pub method: &'a str,
    /// The request target, as sent.
    pub target: &'a str,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: &'a str,
    /// The status sent to the client.
    pub status: u16,
    /// Body bytes sent to the client.
    pub bytes: u64,
    /// The backend that answered, or `None` for the balancer's own answers.
    pub backend: Option<&'a str>,
    /// Time from the head to the end of the response.
    pub duration: Duration,
}

/// A routing decision, for the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// When the request head was read.
    pub time: SystemTime,
    /// `GET /path`.
    pub request: String,
    /// The backend it went to, or `-`.
    pub backend: String,
    /// The status the client got.
    pub status: u16,
}

/// Collected log lines and recent decisions.
#[derive(Debug)]
pub struct AccessLog {
    quiet: bool,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    pending: String,
    recent: VecDeque<Decision>,
}

impl AccessLog {
    /// A log that prints lines unless `quiet`; decisions are kept either way.
    pub fn new(quiet: bool) -> AccessLog {
        AccessLog {
            quiet,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one request.
    pub fn record(&self, r: &Record<'_>) {
        let target = shorten(r.target);
        let line = (!self.quiet).then(|| format_line(r, &target));
        let decision = Decision {
            time: r.time,
            request: format!("{} {}", r.method, target),
            backend: r.backend.unwrap_or("-").to_string(),
            status: r.status,
        };
        let mut inner = self.lock();
        if let Some(line) = line {
            inner.pending.push_str(&line);
        }
        if inner.recent.len() == RECENT_DECISIONS {
            inner.recent.pop_front();
        }
        inner.recent.push_back(decision);
    }

    /// The last [`RECENT_DECISIONS`] decisions, oldest first.
    pub fn recent(&self) -> Vec<Decision> {
        self.lock().recent.iter().cloned().collect()
    }

    /// Writes the collected lines to stdout.
    pub fn flush(&self) {
        let pending = std::mem::take(&mut self.lock().pending);
        if !pending.is_empty() {
            let mut out = std::io::stdout().lock();
            // Nothing useful can be done if stdout is gone; the balancer keeps serving.
            let _ = out.write_all(pending.as_bytes());
            let _ = out.flush();
        }
    }
}

fn shorten(target: &str) -> std::borrow::Cow<'_, str> {
    if target.len() <= MAX_LOGGED_TARGET {
        return target.into();
    }
    let mut cut = MAX_LOGGED_TARGET;
    while !target.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &target[..cut]).into()
}

/// Formats one access-log line (with its newline).
pub fn format_line(r: &Record<'_>, target: &str) -> String {
    let mut line = String::with_capacity(160);
    let _ = writeln!(
        line,
        "{} - - [{}] \"{} {} {}\" {} {} backend={} time={:.3}ms",
        r.client,
        time::log_time(r.time),
        r.method,
        target.replace('"', "%22"),
        r.version,
        r.status,
        r.bytes,
        r.backend.unwrap_or("-"),
        r.duration.as_secs_f64() * 1000.0
    );
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::UNIX_EPOCH;

    #[test]
    fn line_format() {
        let r = Record {
            client: IpAddr::V4(Ipv4Addr::LOCALHOST),
            time: UNIX_EPOCH + Duration::from_secs(1_795_606_219),
            method: "GET",
            target: "/a\"b",
            version: "HTTP/1.1",
            status: 200,
            bytes: 51,
            backend: Some("http://127.0.0.1:8001"),
            duration: Duration::from_micros(412),
        };
        assert_eq!(
            format_line(&r, r.target),
            "127.0.0.1 - - [25/Nov/2026:11:30:19 +0000] \"GET /a%22b HTTP/1.1\" 200 51 \
             backend=http://127.0.0.1:8001 time=0.412ms\n"
        );
        let log = AccessLog::new(true);
        for _ in 0..RECENT_DECISIONS + 5 {
            log.record(&r);
        }
        assert_eq!(log.recent().len(), RECENT_DECISIONS);
        assert_eq!(log.recent()[0].request, "GET /a\"b");
    }
}
