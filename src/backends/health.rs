//! Is a backend up? Passive checks (real requests failing) and active checks (probing a path).
//!
//! The chapter lists health checks under "Production Considerations": its balancer keeps
//! sending every second request to a dead server. Here a backend leaves the rotation after
//! `--max-fails` consecutive failures (nginx's `max_fails`, default 1) for `--fail-timeout`
//! (default 10 s), then gets a single trial request; success brings it back. With
//! `--health-check PATH`, a checker thread ([`super::checker`]) also probes every backend
//! each `--health-interval`: `--fall` failed probes in a row take it out, `--rise` passed ones
//! bring it back (HAProxy's `inter 2s rise 2 fall 3`). Every change of state is printed, with
//! the reason.

use crate::console;
use crate::poison::IgnorePoison;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When passive checks take a backend out, and for how long (nginx's `max_fails` and
/// `fail_timeout`, from `--max-fails` and `--fail-timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Consecutive failed requests that take a backend out.
    pub max_fails: u32,
    /// How long it stays out before one trial request.
    pub fail_timeout: Duration,
}

/// Health of one backend.
#[derive(Debug)]
pub struct Health {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    up: bool,
    /// Consecutive failed requests (passive).
    fails: u32,
    /// While down: when the next trial request may go.
    retry_at: Option<Instant>,
    /// Consecutive passed active checks.
    checks_passed: u32,
    /// Consecutive failed active checks.
    checks_failed: u32,
    /// Why the backend is down (for the status page).
    reason: String,
    /// Active checks took it out: only checks bring it back, not a request that happened to
    /// be in flight when it went down.
    down_by_checks: bool,
}

/// A change of state worth printing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The backend went down, for this reason.
    Down(String),
    /// The backend came back, for this reason.
    Up(String),
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// A backend starts up: nobody has seen it fail.
    pub fn new() -> Health {
        Health {
            state: Mutex::new(State {
                up: true,
                fails: 0,
                retry_at: None,
                checks_passed: 0,
                checks_failed: 0,
                reason: String::new(),
                down_by_checks: false,
            }),
        }
    }

    /// Is the backend in rotation?
    pub fn is_up(&self) -> bool {
        self.state.lock().ignore_poison().up
    }

    /// Why it is down (empty when up).
    pub fn reason(&self) -> String {
        self.state.lock().ignore_poison().reason.clone()
    }

    /// May a request go there now: up, or down and due a trial?
    pub fn is_eligible(&self, now: Instant) -> bool {
        let s = self.state.lock().ignore_poison();
        s.up || s.retry_at.is_some_and(|t| now >= t)
    }

    /// Called for the backend a strategy picked. A down backend due a trial takes this one
    /// request, and no other until `fail_timeout` passes again; returns false if another
    /// request took the trial first.
    pub fn claim(&self, now: Instant, fail_timeout: Duration) -> bool {
        let mut s = self.state.lock().ignore_poison();
        if s.up {
            return true;
        }
        match s.retry_at {
            Some(t) if now >= t => {
                s.retry_at = Some(now + fail_timeout);
                true
            }
            _ => false,
        }
    }

    /// A request to the backend succeeded: the failure count restarts, and a down backend
    /// (this was its trial) comes back.
    pub fn record_success(&self) -> Option<Change> {
        let mut s = self.state.lock().ignore_poison();
        s.fails = 0;
        if s.up || s.down_by_checks {
            return None;
        }
        s.up = true;
        s.retry_at = None;
        s.checks_failed = 0;
        s.reason.clear();
        Some(Change::Up("a request succeeded".into()))
    }

    /// A request to the backend failed (`why`: "connection refused", "timed out", ...).
    /// After `max_fails` in a row it goes down for `fail_timeout`.
    pub fn record_failure(
        &self,
        why: &str,
        max_fails: u32,
        fail_timeout: Duration,
    ) -> Option<Change> {
        let mut s = self.state.lock().ignore_poison();
        s.fails = s.fails.saturating_add(1);
        s.checks_passed = 0;
        if !s.up {
            // A failed trial: stay down (claim already moved retry_at on).
            return None;
        }
        if s.fails < max_fails {
            return None;
        }
        let reason = format!(
            "{why}, {} failed request{} in a row",
            s.fails,
            plural(s.fails)
        );
        s.up = false;
        s.down_by_checks = false;
        s.retry_at = Some(Instant::now() + fail_timeout);
        s.reason = reason.clone();
        Some(Change::Down(reason))
    }

    /// One active check ended: `Ok(())` passed, `Err(why)` failed. `rise` passes in a row bring
    /// the backend back; `fall` failures in a row take it out.
    pub fn record_check(&self, result: Result<(), String>, rise: u32, fall: u32) -> Option<Change> {
        let mut s = self.state.lock().ignore_poison();
        match result {
            Ok(()) => {
                s.checks_failed = 0;
                s.checks_passed = s.checks_passed.saturating_add(1);
                if s.up || s.checks_passed < rise {
                    return None;
                }
                s.up = true;
                s.down_by_checks = false;
                s.fails = 0;
                s.retry_at = None;
                s.reason.clear();
                Some(Change::Up(format!(
                    "{} checks passed in a row",
                    s.checks_passed
                )))
            }
            Err(why) => {
                s.checks_passed = 0;
                s.checks_failed = s.checks_failed.saturating_add(1);
                if !s.up || s.checks_failed < fall {
                    return None;
                }
                let reason = format!("{why}, {} checks failed in a row", s.checks_failed);
                s.up = false;
                // With active checks on, only checks bring it back: no trial requests.
                s.down_by_checks = true;
                s.retry_at = None;
                s.reason = reason.clone();
                Some(Change::Down(reason))
            }
        }
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Prints a change of state: `[Health] http://127.0.0.1:8002 is DOWN: connection refused, ...`.
pub fn announce(url: &str, change: &Change) {
    match change {
        Change::Down(why) => console::error(format_args!("[Health] {url} is DOWN: {why}")),
        Change::Up(why) => console::error(format_args!("[Health] {url} is UP: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    #[test]
    fn passive_down_then_one_trial_then_up() {
        let h = Health::new();
        assert_eq!(h.record_failure("refused", 2, T), None);
        assert!(h.is_up());
        assert!(matches!(
            h.record_failure("refused", 2, T),
            Some(Change::Down(_))
        ));
        assert!(!h.is_up());
        let now = Instant::now();
        assert!(!h.is_eligible(now));
        let later = now + T + Duration::from_millis(1);
        assert!(h.is_eligible(later));
        assert!(h.claim(later, T));
        assert!(!h.claim(later, T), "only one trial at a time");
        assert!(matches!(h.record_success(), Some(Change::Up(_))));
        assert!(h.is_up());
    }

    #[test]
    fn success_resets_the_count() {
        let h = Health::new();
        h.record_failure("x", 2, T);
        h.record_success();
        assert_eq!(h.record_failure("x", 2, T), None);
    }

    #[test]
    fn active_rise_and_fall() {
        let h = Health::new();
        assert_eq!(h.record_check(Err("refused".into()), 2, 3), None);
        assert_eq!(h.record_check(Err("refused".into()), 2, 3), None);
        let Some(Change::Down(why)) = h.record_check(Err("refused".into()), 2, 3) else {
            panic!()
        };
        assert_eq!(why, "refused, 3 checks failed in a row");
        assert!(
            !h.is_eligible(Instant::now() + T * 100),
            "no trial requests under active checks"
        );
        assert_eq!(h.record_check(Ok(()), 2, 3), None);
        assert!(matches!(h.record_check(Ok(()), 2, 3), Some(Change::Up(_))));
    }
}
