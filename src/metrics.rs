//! Counters: what each backend and the whole balancer have done, kept with atomics so that
//! counting costs the hot path no lock.
//!
//! The chapter's "Monitoring" section is console output only. These counters feed the admin
//! listener's `/metrics` (Prometheus text) and `/status` page. Which counters: those of
//! HAProxy's per-server statistics that a small balancer has (requests, responses by status
//! class, connection errors, retries, bytes, active requests, time per request).

pub mod prometheus;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
}

/// A fixed-bucket histogram of durations, as Prometheus counts them (cumulative on output).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at or under each bound of [`DURATION_BUCKETS`] (not cumulative here).
    pub buckets: [AtomicU64; DURATION_BUCKETS.len()],
    /// Observations over the last bound.
    pub overflow: AtomicU64,
    /// Sum of all observations, in microseconds.
    pub sum_micros: AtomicU64,
    /// Number of observations.
    pub count: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        match DURATION_BUCKETS.iter().position(|&b| secs <= b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The duration under which a fraction `q` (0 to 1) of observations fall, estimated as the
    /// upper bound of the bucket where the quantile lands; `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            return None;
        }
        let rank = (q * count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(DURATION_BUCKETS[i]);
            }
        }
        Some(f64::INFINITY)
    }
}

impl BackendStats {
    /// Counts a response relayed with this status.
    pub fn count_response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters for the whole balancer.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Client connections accepted since start.
    pub accepted: AtomicU64,
    /// Client connections refused with `503` at the connection cap.
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
