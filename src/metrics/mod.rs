//! Counters: what each backend and the whole balancer have done, kept with atomics so that
//! counting costs the hot path no lock.
//!
//! The chapter's "Monitoring" section is console output only. These counters feed the admin
//! listener's `/metrics` (Prometheus text) and `/status` page. Which counters: those of
//! HAProxy's per-server statistics that a small balancer has (requests, responses by status
//! class, connection errors, retries, bytes, active requests, time per request).

pub mod history;
pub mod process;
pub mod prometheus;

use history::{History, current_second};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds of the request-duration histogram buckets, in seconds (Prometheus'
/// client libraries use about these by default).
pub const DURATION_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Counters for one backend.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Requests sent to the backend (each attempt counts).
    pub requests: AtomicU64,
    /// Responses relayed, by status class: index 0 for 1xx, ..., 4 for 5xx.
    pub responses: [AtomicU64; 5],
    /// Connections that could not be made (refused, unreachable, timed out).
    pub connect_errors: AtomicU64,
    /// Requests that failed after being sent (broken or missing response, timeout).
    pub response_errors: AtomicU64,
    /// Attempts that were repeated elsewhere after failing here.
    pub retries: AtomicU64,
    /// Bytes received from clients and sent to this backend (request bodies).
    pub bytes_in: AtomicU64,
    /// Bytes received from this backend and sent to clients (response bodies).
    pub bytes_out: AtomicU64,
    /// Request durations.
    pub duration: Histogram,
    /// The last minute, second by second, for the status page's charts.
    pub history: History,
}

/// A fixed-bucket histogram of durations, as Prometheus counts them (cumulative on output).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at or under each bound of [`DURATION_BUCKETS`] (not cumulative here).
    pub buckets: [AtomicU64; DURATION_BUCKETS.len()],
    /// Observations over the last bound.
    pub overflow: AtomicU64,
    /// Sum of all observations, in microseconds. (Their number is the sum of the buckets.)
    pub sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        self.observe_in(bucket_index(d), d);
    }

    /// Records one duration whose bucket is already known ([`bucket_index`]).
    fn observe_in(&self, bucket: usize, d: Duration) {
        match self.buckets.get(bucket) {
            Some(b) => b.fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// The duration under which a fraction `q` (0 to 1) of observations fall, estimated as the
    /// upper bound of the bucket where the quantile lands; `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let mut counts = [0; DURATION_BUCKETS.len() + 1];
        for (count, b) in counts.iter_mut().zip(&self.buckets) {
            *count = b.load(Ordering::Relaxed);
        }
        counts[DURATION_BUCKETS.len()] = self.overflow.load(Ordering::Relaxed);
        bucket_quantile(&counts, q)
    }
}

/// The index in [`DURATION_BUCKETS`] of the first bound `d` is under, or the length of
/// [`DURATION_BUCKETS`] when `d` is over all of them.
pub fn bucket_index(d: Duration) -> usize {
    let secs = d.as_secs_f64();
    DURATION_BUCKETS
        .iter()
        .position(|&b| secs <= b)
        .unwrap_or(DURATION_BUCKETS.len())
}

/// The quantile `q` (0 to 1) of observations counted by bucket (`counts[i]` under
/// `DURATION_BUCKETS[i]`, the last entry over all bounds): the upper bound of the bucket
/// where it lands, `INFINITY` in the overflow, `None` without observations.
pub fn bucket_quantile(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (count, bound) in counts.iter().zip(DURATION_BUCKETS) {
        seen += count;
        if seen >= rank {
            return Some(bound);
        }
    }
    Some(f64::INFINITY)
}

impl BackendStats {
    /// Counts a response relayed with this status (one that broke midway: it has no
    /// duration), in the totals and in this second's history.
    pub fn count_response(&self, status: u16) {
        self.count_status(status);
        self.history.answered(current_second(), status);
    }

    /// Counts a response relayed whole with this status, for an attempt that began at
    /// `started`: status class, duration, and both in this second's history. One clock read
    /// serves for the duration and the second.
    pub fn count_timed_response(&self, status: u16, started: Instant) {
        let now = Instant::now();
        let took = now.saturating_duration_since(started);
        let second = history::second(now);
        let bucket = bucket_index(took);
        self.count_status(status);
        self.duration.observe_in(bucket, took);
        self.history.answered(second, status);
        self.history.took(second, bucket);
    }

    /// Counts a connection to the backend that could not be made.
    pub fn count_connect_error(&self) {
        inc(&self.connect_errors);
        self.history.failed(current_second());
    }

    /// Counts a request that failed after it was sent (broken or missing response, timeout).
    pub fn count_response_error(&self) {
        inc(&self.response_errors);
        self.history.failed(current_second());
    }

    fn count_status(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters for the whole balancer.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Client connections accepted since start.
    pub accepted: AtomicU64,
    /// Client connections refused with `503`: at the connection cap, or when no thread could
    /// be started to keep accepting.
    pub rejected: AtomicU64,
    /// Client connections open now.
    pub open: AtomicU64,
    /// Upgraded tunnels open now. Each runs a second thread besides its connection's, and
    /// takes a slot of the connection cap for it ([`crate::listener::TunnelSlot`]).
    pub tunnels: AtomicU64,
    /// Requests answered, by a backend or by the balancer itself (one per access-log line).
    pub requests: AtomicU64,
    /// Requests answered by the balancer itself (error pages), by no backend.
    pub local_responses: AtomicU64,
    /// The same, by status ([`ServerStats::count_local`]).
    pub local_by_code: LocalCodes,
    /// Request bodies being read from clients now, streamed to a backend. Each holds its
    /// client's thread and a backend connection for as long as the client keeps sending:
    /// `--client-timeout` limits each read, not the whole body (as nginx's
    /// `client_body_timeout`), so a client trickling a byte at a time holds them long.
    pub bodies: AtomicU64,
}

/// Counts one in `counter` while it lives (a gauge's "now", kept right even on a panic).
pub struct Held<'a>(&'a AtomicU64);

impl<'a> Held<'a> {
    /// Adds one to `counter` until the value is dropped.
    pub fn new(counter: &'a AtomicU64) -> Held<'a> {
        counter.fetch_add(1, Ordering::Relaxed);
        Held(counter)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ServerStats {
    /// Counts an answer the balancer wrote itself, with its status.
    pub fn count_local(&self, status: u16) {
        inc(&self.local_responses);
        if let Some(counter) = self
            .local_by_code
            .0
            .get(usize::from(status.wrapping_sub(400)))
        {
            inc(counter);
        }
    }
}

/// The balancer's own answers by status, one counter for each of `400` to `599`.
#[derive(Debug)]
pub struct LocalCodes(Box<[AtomicU64]>);

impl Default for LocalCodes {
    fn default() -> LocalCodes {
        LocalCodes((400..600).map(|_| AtomicU64::new(0)).collect())
    }
}

impl LocalCodes {
    /// The statuses always shown in `/metrics` (the errors the balancer answers with, as its
    /// design lists them), so a dashboard finds them at zero.
    pub const USUAL: [u16; 10] = [400, 408, 413, 414, 431, 501, 502, 503, 504, 505];

    /// Each status counted at least once, and each of [`LocalCodes::USUAL`], with its count.
    pub fn counts(&self) -> Vec<(u16, u64)> {
        (400u16..600)
            .zip(self.0.iter())
            .map(|(status, c)| (status, c.load(Ordering::Relaxed)))
            .filter(|&(status, n)| n > 0 || Self::USUAL.contains(&status))
            .collect()
    }
}

/// Adds one to a counter.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles() {
        let h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for _ in 0..90 {
            h.observe(Duration::from_micros(300));
        }
        for _ in 0..10 {
            h.observe(Duration::from_millis(40));
        }
        assert_eq!(h.quantile(0.5), Some(0.0005));
        assert_eq!(h.quantile(0.99), Some(0.05));
        h.observe(Duration::from_secs(9));
        assert_eq!(h.quantile(1.0), Some(f64::INFINITY));
    }

    #[test]
    fn status_classes() {
        let s = BackendStats::default();
        s.count_response(204);
        s.count_response(503);
        s.count_response(101);
        assert_eq!(s.responses[1].load(Ordering::Relaxed), 1);
        assert_eq!(s.responses[4].load(Ordering::Relaxed), 1);
        assert_eq!(s.responses[0].load(Ordering::Relaxed), 1);
    }
}
