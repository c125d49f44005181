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
//! client address, time (UTC), request line, status, body bytes sent, the backends tried (the
//! one that answered; those that failed when the balancer answered itself; `-` when none was),
//! and the time from the request head to the end of the response. That is the `console`
//! format; `--access-log-format` also offers nginx's `combined` and JSON Lines ([`mod@format`]).
//! Lines are collected in memory and written every [`FLUSH_INTERVAL`] by one thread ([`Writer`]), so a busy
//! balancer makes one `write` for many requests, not one per request, and a request never
//! waits for stdout. Error lines and notices go the same way through [`crate::console`].

pub mod format;

use crate::backends::strategy::explain::Why;
use crate::config::LogFormat;
use crate::poison::IgnorePoison;

use crate::stop::{Stopper, Woke};
use crate::time;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often collected log lines are written to stdout.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// How many routing decisions are kept for the status page (its strip of squares shows them
/// all, its table the newest few).
pub const RECENT_DECISIONS: usize = 50;
/// Most log text kept waiting for stdout. A pipe nobody reads would otherwise make the
/// balancer's memory grow with every request; past this, lines are counted and dropped.
pub const MAX_PENDING: usize = 1 << 20;
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
    /// The backends tried, in order, separated by commas: the one that answered last; when
    /// the balancer answered itself (`502`, `503`, `504`), those that failed. `None`: none was
    /// tried.
    pub backend: Option<&'a str>,
    /// Time from the head to the end of the response.
    pub duration: Duration,
    /// The `Referer`, for the formats that write it (see [`LogFormat::wants_agent`]).
    pub referer: Option<&'a str>,
    /// The `User-Agent`, likewise.
    pub user_agent: Option<&'a str>,
    /// The request's id (`X-Request-Id`), unless `--request-id off`.
    pub request_id: Option<&'a str>,
    /// Time spent with backends: from the first attempt to the end of the response, or to
    /// the last failure. `None`: none was tried.
    pub upstream: Option<Duration>,
    /// The balancer answered itself (no backend's response was relayed).
    pub local: bool,
    /// Why the request went where it went (`None` for the balancer's own answers).
    pub why: Option<&'a Why>,
    /// That reason in words, for the line (`--explain`); empty: not written.
    pub explained: &'a str,
}

/// A routing decision, for the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// When the request head was read.
    pub time: SystemTime,
    /// The client: the peer, or the client a trusted hop names.
    pub client: IpAddr,
    /// `GET /path`.
    pub request: String,
    /// The backend it went to, or `-`.
    pub backend: String,
    /// The status the client got.
    pub status: u16,
    /// Why it went there, as facts ([`crate::backends::strategy::explain`]).
    pub why: Option<Why>,
}

/// Collected log lines and recent decisions.
#[derive(Debug)]
pub struct AccessLog {
    /// `--quiet`, which a reload may change ([`AccessLog::set_quiet`]).
    quiet: AtomicBool,
    /// `--access-log-format`, which a reload may change ([`AccessLog::set_format`]).
    format: AtomicU8,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    pending: String,
    /// Lines dropped because stdout did not keep up (see [`MAX_PENDING`]).
    dropped: u64,
    recent: VecDeque<Decision>,
}

thread_local! {
    /// Each thread formats its lines here, outside the log's lock, so that the lock is held
    /// only to append finished text: with formatting inside it, a thread preempted while
    /// holding it made the others sleep on it (4 `futex` calls per request at `wrk -c64`
    /// with `Connection: close`). The cache keeps the last client address and second as
    /// text: under load most lines share them, and formatting them anew was a third of the
    /// cost of a line.
    static LINE: RefCell<(String, TextCache)> = RefCell::default();
}

/// One-entry caches of the text of the last client address and the last second logged.
#[derive(Debug, Default)]
struct TextCache {
    ip: Option<(IpAddr, String)>,
    second: Option<(u64, String)>,
}

impl TextCache {
    fn ip(&mut self, ip: IpAddr) -> &str {
        if self.ip.as_ref().is_none_or(|(cached, _)| *cached != ip) {
            self.ip = Some((ip, ip.to_string()));
        }
        self.ip.as_ref().map_or("", |(_, text)| text)
    }

    fn time(&mut self, t: SystemTime) -> &str {
        let second = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if self
            .second
            .as_ref()
            .is_none_or(|(cached, _)| *cached != second)
        {
            self.second = Some((second, time::log_time(t)));
        }
        self.second.as_ref().map_or("", |(_, text)| text)
    }
}

impl AccessLog {
    /// A log that prints lines in `format` unless `quiet`; decisions are kept either way.
    pub fn new(quiet: bool, format: LogFormat) -> AccessLog {
        AccessLog {
            quiet: AtomicBool::new(quiet),
            format: AtomicU8::new(format as u8),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Turns the per-request lines off (`--quiet`) or on, from the next request.
    pub fn set_quiet(&self, quiet: bool) {
        self.quiet.store(quiet, Ordering::Relaxed);
    }

    /// Writes the lines of the next requests in `format`.
    pub fn set_format(&self, format: LogFormat) {
        self.format.store(format as u8, Ordering::Relaxed);
    }

    /// The format lines are written in now.
    pub fn format(&self) -> LogFormat {
        let n = self.format.load(Ordering::Relaxed) as usize;
        LogFormat::ALL[n % LogFormat::ALL.len()].0
    }

    /// Records one request. The line is formatted into a buffer of this thread's before
    /// the lock is taken, and the oldest decision's strings are reused, so a request costs no
    /// allocation here and holds the lock only to copy text.
    pub fn record(&self, r: &Record<'_>) {
        let target = shorten(r.target);
        if self.quiet.load(Ordering::Relaxed) {
            self.decide(r, &target);
        } else {
            LINE.with_borrow_mut(|(line, cache)| {
                line.clear();
                match self.format() {
                    LogFormat::Console => write_line(line, cache, r, &target),
                    LogFormat::Combined => format::combined(line, cache, r, &target),
                    LogFormat::Json => format::json(line, r, &target),
                }
                self.decide(r, &target).append(line);
            });
        }
    }

    /// Notes the decision among the recent ones; returns the locked log for the line.
    fn decide(&self, r: &Record<'_>, target: &str) -> Locked<'_> {
        let mut inner = self.inner.lock().ignore_poison();
        let mut decision = if inner.recent.len() == RECENT_DECISIONS {
            inner.recent.pop_front()
        } else {
            None
        }
        .unwrap_or_else(|| Decision {
            time: r.time,
            client: r.client,
            request: String::new(),
            backend: String::new(),
            status: r.status,
            why: None,
        });
        decision.time = r.time;
        decision.client = r.client;
        decision.status = r.status;
        decision.why = r.why.copied();
        decision.request.clear();
        decision.request.push_str(r.method);
        decision.request.push(' ');
        // Without the query: it may hold a secret (`?token=...`), and the status page
        // shows decisions to anyone who may read it.
        decision
            .request
            .push_str(target.split('?').next().unwrap_or(target));
        decision.backend.clear();
        // The backend that answered (the last one tried), or `-` when the balancer did.
        let last = r
            .backend
            .filter(|_| !r.local)
            .and_then(|l| l.rsplit(',').next());
        decision.backend.push_str(last.unwrap_or("-"));
        inner.recent.push_back(decision);
        Locked(inner)
    }

    /// The last [`RECENT_DECISIONS`] decisions, oldest first.
    pub fn recent(&self) -> Vec<Decision> {
        self.inner
            .lock()
            .ignore_poison()
            .recent
            .iter()
            .cloned()
            .collect()
    }

    /// Writes the collected lines to stdout.
    pub fn flush(&self) {
        let (mut pending, dropped) = {
            let mut inner = self.inner.lock().ignore_poison();
            (
                std::mem::take(&mut inner.pending),
                std::mem::take(&mut inner.dropped),
            )
        };
        if dropped > 0 {
            pending.push_str(&format!(
                "[LoadBalancer] {dropped} log lines dropped: stdout is not keeping up\n"
            ));
        }
        if !pending.is_empty() {
            let mut out = std::io::stdout().lock();
            // Nothing useful can be done if stdout is gone; the balancer keeps serving.
            let _ = out.write_all(pending.as_bytes());
            let _ = out.flush();
        }
    }
}

/// The access log's writer: a thread that writes what the connection threads collected
/// every [`FLUSH_INTERVAL`], and once more when it is stopped. [`Writer::stop`] (or dropping
/// it) stops it at once and joins it ([`crate::stop`]).
#[derive(Debug)]
pub struct Writer {
    thread: Stopper,
}

impl Writer {
    /// Starts writing the log that `log` finds in `owner`. The balancer's log is a field of its
    /// [`Shared`](crate::context::Shared), not an `Arc` of its own (a request reaches it with
    /// no pointer more to follow), so the thread holds the owner.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start<T>(owner: Arc<T>, log: fn(&T) -> &AccessLog) -> io::Result<Writer>
    where
        T: Send + Sync + 'static,
    {
        let thread = Stopper::spawn("log", move |sleeper| {
            let log = log(&owner);
            loop {
                let woke = sleeper.sleep(FLUSH_INTERVAL);
                log.flush();
                if woke == Woke::Stop {
                    return;
                }
            }
        })?;
        Ok(Writer { thread })
    }

    /// Stops the thread, after its last write, and waits for it.
    pub fn stop(self) {
        self.thread.stop();
    }
}

/// The log, locked.
struct Locked<'a>(std::sync::MutexGuard<'a, Inner>);

impl Locked<'_> {
    /// Appends a finished line, or counts it dropped when stdout does not keep up.
    fn append(mut self, line: &str) {
        if self.0.pending.len() < MAX_PENDING {
            self.0.pending.push_str(line);
        } else {
            self.0.dropped += 1;
            crate::console::count_dropped(1);
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
    write_line(&mut line, &mut TextCache::default(), r, target);
    line
}

/// Appends one access-log line to `out`. Plain pushes rather than `write!`: this runs for
/// every request, and the formatting machinery cost more than the proxying around it.
fn write_line(out: &mut String, cache: &mut TextCache, r: &Record<'_>, target: &str) {
    out.push_str(cache.ip(r.client));
    out.push_str(" - - [");
    out.push_str(cache.time(r.time));
    out.push_str("] \"");
    out.push_str(r.method);
    out.push(' ');
    // A quote inside the target would end the quoted field early: escape it as in a URL.
    for (i, part) in target.split('"').enumerate() {
        if i > 0 {
            out.push_str("%22");
        }
        out.push_str(part);
    }
    out.push(' ');
    out.push_str(r.version);
    out.push_str("\" ");
    push_number(out, u64::from(r.status));
    out.push(' ');
    push_number(out, r.bytes);
    out.push_str(" backend=");
    out.push_str(r.backend.unwrap_or("-"));
    // Milliseconds with three decimals, rounded to the microsecond.
    out.push_str(" time=");
    push_thousandths(out, (r.duration.as_nanos() + 500) / 1000);
    out.push_str("ms");
    if !r.explained.is_empty() {
        out.push_str(" why=\"");
        out.extend(r.explained.chars().map(|c| if c == '"' { '\'' } else { c }));
        out.push('"');
    }
    out.push('\n');
}

/// Appends the decimal digits of `n`.
fn push_number(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

/// `n` thousandths as a decimal with three places: `12345` is `12.345`.
fn push_thousandths(out: &mut String, n: u128) {
    push_number(out, u64::try_from(n / 1000).unwrap_or(u64::MAX));
    out.push('.');
    let frac = (n % 1000) as u64;
    if frac < 100 {
        out.push('0');
    }
    if frac < 10 {
        out.push('0');
    }
    push_number(out, frac);
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
            referer: None,
            user_agent: None,
            request_id: None,
            upstream: None,
            local: false,
            why: None,
            explained: "",
        };
        assert_eq!(
            format_line(&r, r.target),
            "127.0.0.1 - - [25/Nov/2026:11:30:19 +0000] \"GET /a%22b HTTP/1.1\" 200 51 \
             backend=http://127.0.0.1:8001 time=0.412ms\n"
        );
        // With --explain, the reason ends the line.
        let explained = Record {
            explained: "round robin: next after \"x\"",
            ..r.clone()
        };
        assert!(
            format_line(&explained, r.target)
                .ends_with("time=0.412ms why=\"round robin: next after 'x'\"\n")
        );
        // Durations keep three decimals, zeros included; the caches follow changes of address
        // and second.
        let mut out = String::new();
        let mut cache = TextCache::default();
        for (micros, secs, ip) in [
            (5, 0, [127, 0, 0, 1]),
            (12_040, 0, [10, 0, 0, 2]),
            (1_000, 61, [10, 0, 0, 2]),
        ] {
            let r = Record {
                client: IpAddr::from(ip),
                time: UNIX_EPOCH + Duration::from_secs(secs),
                duration: Duration::from_micros(micros),
                ..r.clone()
            };
            write_line(&mut out, &mut cache, &r, "/");
        }
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("127.0.0.1 - - [01/Jan/1970:00:00:00 +0000]"));
        assert!(lines[0].ends_with(" time=0.005ms"), "{}", lines[0]);
        assert!(lines[1].starts_with("10.0.0.2 - - [01/Jan/1970:00:00:00 +0000]"));
        assert!(lines[1].ends_with(" time=12.040ms"), "{}", lines[1]);
        assert!(lines[2].starts_with("10.0.0.2 - - [01/Jan/1970:00:01:01 +0000]"));
        assert!(lines[2].ends_with(" time=1.000ms"), "{}", lines[2]);

        let log = AccessLog::new(true, LogFormat::Console);
        for _ in 0..RECENT_DECISIONS + 5 {
            log.record(&r);
        }
        assert_eq!(log.recent().len(), RECENT_DECISIONS);
        assert_eq!(log.recent()[0].request, "GET /a\"b");
    }
}
