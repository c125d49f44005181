//! Failover, the backend set's side: the backends one request may try, in order, each at
//! most once, with the strategy's pick first (Pingora's `select_with` is the model).
//!
//! How a request fails over, from the pick to the next try:
//!
//! 1. [`Backends::candidates`] is the pick: an iterator ([`Candidates`]) whose first item is
//!    the strategy's choice, and each next one its choice among the backends not tried yet.
//! 2. `proxy::failover` (in [`crate::proxy`]) loops over it, one [`Candidate`] at a time,
//! 3. and gives each one `attempt` ([`crate::proxy::attempt`]). The candidate is told how
//!    it went ([`Candidate::answered`], [`Candidate::failed`]): that is where passive
//!    health is kept.
//! 4. After a failure, [`may_retry`](crate::backends::retry::may_retry) decides whether the
//!    next candidate may be tried (`proxy::settle` asks it); if not, the round ends there.
//!
//! Health never empties the rotation: when no backend that health lets through is left for
//! a request (every backend is out, by passive or active checks, or the ones in rotation
//! already failed this request), the others are its candidates too, Envoy's "panic mode";
//! a backend that answers a request is back at once (one the active checks took out comes
//! back only by them, but serves in the meantime). A request gets `503` only when no
//! backend is left to try at all: none configured, or all draining.

use super::Backends;
use super::health::Policy;
use super::member::{ActiveGuard, Backend};
use super::retry::Failure;
use super::strategy::explain::{SkipCode, Why};
use super::strategy::{Key, Strategy};
use crate::metrics::inc;
use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

impl Backends {
    /// The backends to try for a request, best first: each pick is the strategy's among the
    /// backends that may take a request now and were not tried for this one yet.
    pub fn candidates(&self, key: Key) -> Candidates<'_> {
        let kind = self.strategy();
        Candidates {
            set: self,
            strategy: self.algorithm(kind),
            list: self.snapshot(),
            key,
            tried: Tried::default(),
            why: Why::new(kind, key.client_ip),
            policy: self.policy(),
        }
    }
}

/// The backends one request may still try; see [`Backends::candidates`].
#[derive(Debug)]
pub struct Candidates<'a> {
    set: &'a Backends,
    /// The strategy of this request, read once when it started.
    strategy: &'a dyn Strategy,
    list: Arc<Vec<Arc<Backend>>>,
    key: Key,
    tried: Tried,
    why: Why,
    /// The passive health policy, read once when the request started.
    policy: Policy,
}

impl<'a> Iterator for Candidates<'a> {
    type Item = Candidate;

    fn next(&mut self) -> Option<Candidate> {
        loop {
            let now = Instant::now();
            let (i, panic) = self.pick(now)?;
            let backend = &self.list[i];
            if self.tried.contains(backend.id) {
                return None; // a strategy offered one it was told not to: no round for ever
            }
            self.tried.push(backend.id);
            if !panic && !backend.health.claim(now, self.policy.fail_timeout) {
                self.why.skip(backend.id, SkipCode::TrialTaken);
                continue; // another request took this backend's trial
            }
            // Counted in flight first, then checked again: the admin API removes a backend
            // only once it is draining and has nothing in flight, so one of the two sees the
            // other.
            let in_flight = backend.start_request();
            if backend.is_draining() {
                self.why.skip(backend.id, SkipCode::Draining);
                continue;
            }
            inc(&backend.stats.requests);
            return Some(Candidate {
                in_flight,
                policy: self.policy,
                started: now,
            });
        }
    }
}

impl Candidates<'_> {
    /// Why the last backend offered was picked, and which were passed over (the facts; see
    /// [`crate::backends::strategy::explain`]).
    pub fn why(&self) -> &Why {
        &self.why
    }

    /// The backend `id` failed this request so (`why`): the explanation says so.
    pub fn failed(&mut self, id: usize, why: &'static str) {
        self.why.skip(id, SkipCode::Failed(why));
    }

    /// Lets this request's strategy add header lines to the head of the response that
    /// `backend` gave (the affinity cookie's `Set-Cookie`).
    pub fn on_response(&self, backend: &Backend, out: &mut Vec<u8>) {
        self.strategy.on_response(backend, &self.key, out);
    }

    /// The index in the list of the next backend to try, and whether it is a panic-mode pick.
    fn pick(&mut self, now: Instant) -> Option<(usize, bool)> {
        // The backends the strategy looks at and may not take are noted as it goes, in a
        // `Cell` since it is handed a `Fn`: round robin looks only at those it passes over.
        let why = Cell::new(self.why);
        let skip = |id: usize, code: SkipCode| {
            let mut w = why.get();
            w.skip(id, code);
            why.set(w);
        };
        loop {
            let tried = &self.tried;
            let usable = |b: &Backend| {
                let code = if tried.contains(b.id) {
                    return false;
                } else if b.is_draining() {
                    SkipCode::Draining
                } else if !b.health.is_eligible(now) {
                    SkipCode::Down
                } else {
                    return true;
                };
                skip(b.id, code);
                false
            };
            if let Some(c) = self.strategy.choose(&self.list, &self.key, &usable) {
                self.why = why.get();
                self.why.chosen = Some((self.list[c.index].id, c.reason));
                self.why.panic = false;
                return Some((c.index, false));
            }
            // The list changed since this request took it (a reload or the admin API): the
            // backends that left are draining, and the new ones were never offered. Take the
            // new list before falling back to panic mode, so that no request fails because
            // of a change made while it was being routed.
            if !self.refresh() {
                break;
            }
        }
        self.why = why.get();
        // Panic mode (Envoy's name): when no backend the health checks let through is
        // left, the ones they took out are tried too, rather than none. Health is an
        // estimate; a 503 for every client because every backend failed once is worse
        // than asking them again. One that answers is back in rotation at once.
        let tried = &self.tried;
        let in_rotation = |b: &Backend| !tried.contains(b.id) && !b.is_draining();
        let c = self.strategy.choose(&self.list, &self.key, &in_rotation)?;
        let id = self.list[c.index].id;
        self.why.unskip(id);
        self.why.chosen = Some((id, c.reason));
        self.why.panic = true;
        Some((c.index, true))
    }

    /// Takes the backend set's current list if it is not the one this request started
    /// with; true if it did. The backends already tried keep their ids, so none is tried twice.
    fn refresh(&mut self) -> bool {
        let now = self.set.snapshot();
        if Arc::ptr_eq(&now, &self.list) {
            return false;
        }
        self.list = now;
        true
    }
}

/// One backend to try for a request, counted in flight until dropped.
#[derive(Debug)]
pub struct Candidate {
    in_flight: ActiveGuard,
    policy: Policy,
    started: Instant,
}

impl Candidate {
    /// The backend.
    pub fn backend(&self) -> &Arc<Backend> {
        self.in_flight.backend()
    }

    /// It answered, and the response went to the client (`status`): a down backend on trial
    /// comes back, and the time is counted.
    pub fn answered(&self, status: u16) {
        let backend = self.backend();
        if let Some(change) = backend.health.record_success() {
            backend.health_changed(&change);
        }
        backend.stats.count_timed_response(status, self.started);
    }

    /// It failed as `failure` says (`why`, in words): counted, and after `--max-fails`
    /// failures in a row the backend leaves the rotation for `--fail-timeout`.
    pub fn failed(&self, failure: Failure, why: &str) {
        let backend = self.backend();
        match failure {
            Failure::Connect => backend.stats.count_connect_error(),
            _ => backend.stats.count_response_error(),
        }
        self.fault(why);
    }

    /// Its response broke off after it had started reaching the client (`status`); `blame`
    /// says why when the backend is at fault (`None`: the client went away).
    pub fn broke(&self, status: u16, blame: Option<&str>) {
        let backend = self.backend();
        if let Some(why) = blame {
            backend.stats.count_response_error();
            self.fault(why);
        }
        backend.stats.count_response(status);
    }

    /// The request goes on to another backend after failing here.
    pub fn retried(&self) {
        inc(&self.backend().stats.retries);
    }

    fn fault(&self, why: &str) {
        let backend = self.backend();
        let Policy {
            max_fails,
            fail_timeout,
        } = self.policy;
        if let Some(change) = backend.health.record_failure(why, max_fails, fail_timeout) {
            backend.health_changed(&change);
        }
    }
}

/// The ids of the backends a request has tried: four inline, more on the heap (a request
/// tries one backend almost always, so this costs no allocation).
#[derive(Debug, Default)]
struct Tried {
    first: [usize; 4],
    len: usize,
    more: Vec<usize>,
}

impl Tried {
    fn contains(&self, id: usize) -> bool {
        self.first[..self.len.min(4)].contains(&id) || self.more.contains(&id)
    }

    fn push(&mut self, id: usize) {
        if self.len < 4 {
            self.first[self.len] = id;
        } else {
            self.more.push(id);
        }
        self.len += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::strategy::explain::{Choice, Reason};
    use crate::backends::tests::{key, set};
    use crate::config::{BackendSpec, StrategyKind};
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    fn ids(set: &Backends) -> Vec<usize> {
        set.candidates(key()).map(|c| c.backend().id).collect()
    }

    #[test]
    fn each_backend_at_most_once_in_rotation_order() {
        let set = set(6);
        // Round robin starts at 0, then at 1: every backend once, from where the last stopped.
        assert_eq!(ids(&set), [0, 1, 2, 3, 4, 5]);
        let first = set.candidates(key()).next().unwrap().backend().id;
        assert_eq!(first, 0, "the full pass above left the rotation at 0");
        assert_eq!(set.candidates(key()).next().unwrap().backend().id, 1);
    }

    /// A strategy that breaks its contract: backend 0, usable or not.
    #[derive(Debug)]
    struct AlwaysFirst;

    impl Strategy for AlwaysFirst {
        fn choose(
            &self,
            _: &[Arc<Backend>],
            _: &Key,
            _: &dyn Fn(&Backend) -> bool,
        ) -> Option<Choice> {
            Some(Choice {
                index: 0,
                reason: Reason::RoundRobin { after: 0 },
            })
        }
    }

    #[test]
    fn a_strategy_that_offers_a_tried_backend_again_ends_the_round() {
        // Each backend at most once per request, whatever the strategy: one that kept
        // offering the same backend would otherwise send a request round for ever. (On a
        // thread of its own, so that a round for ever fails this test instead of hanging it.)
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut set = set(3);
            set.strategies[StrategyKind::RoundRobin.index()] = Box::new(AlwaysFirst);
            let first = ids(&set);
            set.snapshot()[0].set_draining(true);
            let _ = done.send((first, ids(&set)));
        });
        let rounds = result.recv_timeout(Duration::from_secs(5));
        assert_eq!(rounds, Ok((vec![0], vec![])));
    }

    #[test]
    fn failures_take_a_backend_out_and_draining_ones_are_skipped() {
        let set = set(3);
        set.candidates(key())
            .next()
            .unwrap()
            .failed(Failure::Connect, "refused");
        set.snapshot()[2].set_draining(true);
        // 1 is in rotation; 0 is out, and comes only after it (panic mode, see below).
        assert_eq!(ids(&set), [1, 0]);
        let b0 = &set.snapshot()[0];
        assert!(!b0.health.is_up());
        assert_eq!(b0.stats.connect_errors.load(Ordering::Relaxed), 1);
        assert_eq!(b0.active(), 0, "a dropped candidate is no longer in flight");
    }

    #[test]
    fn when_every_backend_is_out_all_are_tried_again() {
        let set = set(2);
        for _ in 0..2 {
            set.candidates(key())
                .next()
                .unwrap()
                .failed(Failure::Connect, "refused");
        }
        assert!(set.snapshot().iter().all(|b| !b.health.is_up()));
        // Panic mode: both again, in rotation order, each once.
        let mut tried = ids(&set);
        tried.sort_unstable();
        assert_eq!(tried, [0, 1]);
        // One answers: it is back, and the other stays out, tried only after it.
        let back = {
            let candidate = set.candidates(key()).next().unwrap();
            candidate.answered(200);
            candidate.backend().id
        };
        let up: Vec<bool> = set.snapshot().iter().map(|b| b.health.is_up()).collect();
        assert_eq!(up.iter().filter(|u| **u).count(), 1, "{up:?}");
        assert_eq!(ids(&set), [back, 1 - back]);
        // Draining backends are never tried, panic or not.
        for b in set.snapshot().iter() {
            b.set_draining(true);
        }
        assert!(ids(&set).is_empty());
    }

    #[test]
    fn a_backend_that_failed_this_request_is_not_tried_again_in_panic() {
        let set = set(2);
        let mut candidates = set.candidates(key());
        let first = candidates.next().unwrap();
        first.failed(Failure::Connect, "refused");
        drop(first);
        // The other is up: it comes next; after it, nothing (both tried).
        let second = candidates.next().unwrap();
        assert_eq!(second.backend().id, 1);
        second.failed(Failure::Connect, "refused");
        drop(second);
        assert!(candidates.next().is_none());
    }

    #[test]
    fn a_request_routed_during_a_reload_takes_the_new_list() {
        let set = set(2);
        let mut candidates = set.candidates(key());
        // The whole list is replaced while the request is being routed: the old backends
        // drain (as the reload does), so the old list has nothing left to offer.
        let diff = set.replace(&[BackendSpec::parse("http://127.0.0.1:8009").unwrap()]);
        for gone in &diff.removed {
            gone.set_draining(true);
        }
        let c = candidates.next().expect("a backend of the new list");
        assert_eq!(c.backend().url, "http://127.0.0.1:8009");
        drop(c);
        assert!(candidates.next().is_none(), "each backend once");
    }

    #[test]
    fn each_pick_says_why_and_names_what_it_passed_over() {
        use crate::backends::strategy::explain::{Reason, Skip};
        let set = set(3);
        // 0 fails (and is out), 1 drains.
        set.candidates(key())
            .next()
            .unwrap()
            .failed(Failure::Connect, "refused");
        set.snapshot()[1].set_draining(true);
        let mut candidates = set.candidates(key());
        // The rotation stands after 0: 1 is draining, 2 is picked.
        let first = candidates.next().unwrap();
        assert_eq!(first.backend().id, 2);
        let why = *candidates.why();
        assert_eq!(why.chosen, Some((2, Reason::RoundRobin { after: 0 })));
        let draining = Skip {
            id: 1,
            code: SkipCode::Draining,
        };
        assert_eq!(why.skipped(), [draining]);
        assert!(!why.panic);
        // 2 fails too: only 0 is left, out of rotation, so it is a panic-mode pick, and not
        // listed as skipped.
        candidates.failed(2, "refused");
        drop(first);
        assert_eq!(candidates.next().unwrap().backend().id, 0);
        let why = *candidates.why();
        let failed = Skip {
            id: 2,
            code: SkipCode::Failed("refused"),
        };
        assert_eq!(why.skipped(), [draining, failed]);
        assert!(why.panic);
        assert_eq!(why.chosen.map(|(id, _)| id), Some(0));
    }

    #[test]
    fn tried_spills_past_four() {
        let mut t = Tried::default();
        for id in [7, 3, 9, 1, 4, 8] {
            assert!(!t.contains(id));
            t.push(id);
            assert!(t.contains(id));
        }
        assert!(!t.contains(5));
    }
}
