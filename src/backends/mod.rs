//! The backend set: the chapter's `BACKENDS` list and its `itertools.cycle`, and failover.
//!
//! [`Backends`] holds the list (changeable at run time: the admin API adds and removes
//! backends, and [`Backends::replace`] takes a whole new list), the strategy that picks among
//! them, and the passive health policy. The proxy asks it for the candidates of one request
//! ([`Backends::candidates`]) and tries them in order with a plain `for` loop: the strategy's
//! pick among the backends that are usable and not yet tried, each at most once (Pingora's
//! `select_with` is the model). Each [`Candidate`] counts its request in flight, and is told
//! how the attempt went, which is where passive health is kept.
//!
//! Health never empties the rotation: when no backend that health lets through is left for
//! a request (every backend is out, by passive or active checks, or the ones in rotation
//! already failed this request), the others are its candidates too, Envoy's "panic mode";
//! a backend that answers a request is back at once (one the active checks took out comes back only by
//! them, but serves in the meantime). A request gets `503` only when no backend is left to
//! try at all: none configured, or all draining.

pub mod checker;
pub mod file;
pub mod health;
pub mod member;
pub mod retry;
pub mod strategy;

use crate::backends::health::Policy;
use crate::backends::member::{ActiveGuard, Backend};
use crate::backends::retry::Failure;
use crate::backends::strategy::explain::{SkipCode, Why};
use crate::backends::strategy::{Key, Strategy};
use crate::config::{BackendSpec, StrategyKind};
use crate::http::Header;
use crate::metrics::inc;
use crate::secret::Secret;
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The backends of a running balancer. Reads take a snapshot (`Arc` of the list), so the
/// admin API can add and remove backends while requests run without holding any lock
/// during I/O.
#[derive(Debug)]
pub struct Backends {
    list: Mutex<Arc<Vec<Arc<Backend>>>>,
    next_id: AtomicUsize,
    /// One of each strategy, in the order of [`StrategyKind::ALL`], each keeping its own
    /// state (a rotation's place, current weights), and which one picks now: switching is
    /// one store, and reading it costs a request one load.
    strategies: [Box<dyn Strategy>; StrategyKind::ALL.len()],
    current: AtomicUsize,
    /// The passive health policy, which a reload may change: `--max-fails`, and
    /// `--fail-timeout` in milliseconds. Each request copies it once ([`Backends::policy`]).
    max_fails: AtomicU32,
    fail_timeout_ms: AtomicU64,
    /// The key of the backends' tags (`--cookie-secret-file`, see [`Backend::tag`]).
    tag_key: Option<Secret>,
}

impl Backends {
    /// The backends of the command line, numbered from 0, picked by `strategy` (until
    /// [`Backends::set_strategy`]), taken out of rotation by `policy`.
    pub fn new(specs: &[BackendSpec], strategy: StrategyKind, policy: Policy) -> Backends {
        Backends::keyed(specs, strategy, policy, None)
    }

    /// [`Backends::new`], with every backend's [`Backend::tag`] keyed by `tag_key`, the ones
    /// added later too.
    pub fn keyed(
        specs: &[BackendSpec],
        strategy: StrategyKind,
        policy: Policy,
        tag_key: Option<Secret>,
    ) -> Backends {
        let list: Vec<_> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| Arc::new(Backend::keyed(i, s, tag_key.as_ref())))
            .collect();
        Backends {
            next_id: AtomicUsize::new(list.len()),
            list: Mutex::new(Arc::new(list)),
            strategies: StrategyKind::ALL.map(strategy::build),
            current: AtomicUsize::new(position(strategy)),
            max_fails: AtomicU32::new(policy.max_fails),
            fail_timeout_ms: AtomicU64::new(millis(policy.fail_timeout)),
            tag_key,
        }
    }

    /// The passive health policy now.
    pub fn policy(&self) -> Policy {
        Policy {
            max_fails: self.max_fails.load(Ordering::Relaxed),
            fail_timeout: Duration::from_millis(self.fail_timeout_ms.load(Ordering::Relaxed)),
        }
    }

    /// Sets the passive health policy (a reload): requests that start from now use it.
    pub fn set_policy(&self, policy: Policy) {
        self.max_fails.store(policy.max_fails, Ordering::Relaxed);
        self.fail_timeout_ms
            .store(millis(policy.fail_timeout), Ordering::Relaxed);
    }

    /// The current list. Cheap: one lock for a reference-count increment.
    pub fn snapshot(&self) -> Arc<Vec<Arc<Backend>>> {
        Arc::clone(&self.lock())
    }

    /// Adds a backend; returns it.
    pub fn add(&self, spec: &BackendSpec) -> Arc<Backend> {
        let backend = self.create(spec);
        let mut list = self.lock();
        let mut new = Vec::clone(&list);
        new.push(Arc::clone(&backend));
        *list = Arc::new(new);
        backend
    }

    /// Removes the backend with this id; returns it, or `None` if there is none.
    pub fn remove(&self, id: usize) -> Option<Arc<Backend>> {
        let mut list = self.lock();
        let at = list.iter().position(|b| b.id == id)?;
        let mut new = Vec::clone(&list);
        let removed = new.remove(at);
        *list = Arc::new(new);
        Some(removed)
    }

    /// Makes the list `specs`, in that order, as a diff against the current one. A backend
    /// whose URL and address are unchanged is kept as it is: the same [`Backend`], with its
    /// health, counters, idle connections and draining flag; a new weight is set in place
    /// (HAProxy's `set server weight` does the same), since a weight says nothing about the
    /// server's state. The others are added, and the ones not in `specs` leave the list:
    /// the caller drains them (requests in flight on them finish). Returns what changed.
    pub fn replace(&self, specs: &[BackendSpec]) -> Diff {
        let mut list = self.lock();
        let mut diff = Diff::default();
        let mut new = Vec::with_capacity(specs.len());
        // Looked up by URL and address, so a long list is matched in one pass, not one scan
        // per entry, while requests wait for this lock.
        let current: HashMap<(&str, SocketAddr), &Arc<Backend>> =
            list.iter().map(|b| ((b.url.as_str(), b.addr), b)).collect();
        for spec in specs {
            match current.get(&(spec.url.as_str(), spec.addr)) {
                Some(kept) => {
                    if kept.weight() != spec.weight {
                        diff.reweighted.push((Arc::clone(kept), kept.weight()));
                        kept.set_weight(spec.weight);
                    }
                    new.push(Arc::clone(kept));
                }
                None => {
                    let added = self.create(spec);
                    diff.added.push(Arc::clone(&added));
                    new.push(added);
                }
            }
        }
        let kept: HashSet<usize> = new.iter().map(|b| b.id).collect();
        diff.removed = list
            .iter()
            .filter(|b| !kept.contains(&b.id))
            .cloned()
            .collect();
        let same_order = |a: &[Arc<Backend>], b: &[Arc<Backend>]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y))
        };
        diff.reordered =
            diff.added.is_empty() && diff.removed.is_empty() && !same_order(&list, &new);
        *list = Arc::new(new);
        diff
    }

    /// A new backend for `spec`, with the next id (ids are never reused in one run).
    fn create(&self, spec: &BackendSpec) -> Arc<Backend> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Arc::new(Backend::keyed(id, spec, self.tag_key.as_ref()))
    }

    /// The backend with this id, if present.
    pub fn get(&self, id: usize) -> Option<Arc<Backend>> {
        self.snapshot().iter().find(|b| b.id == id).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, Arc<Vec<Arc<Backend>>>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The strategy that picks now.
    pub fn strategy(&self) -> StrategyKind {
        StrategyKind::ALL[self.current.load(Ordering::Relaxed) % StrategyKind::ALL.len()]
    }

    /// Makes `kind` pick from the next request on; returns the one it replaces. Requests
    /// being routed finish with the strategy they started with; the backends, their pools
    /// and their health stay as they are.
    pub fn set_strategy(&self, kind: StrategyKind) -> StrategyKind {
        let old = self.current.swap(position(kind), Ordering::Relaxed);
        StrategyKind::ALL[old % StrategyKind::ALL.len()]
    }

    fn algorithm(&self, kind: StrategyKind) -> &dyn Strategy {
        self.strategies[position(kind)].as_ref()
    }

    /// What the strategy reads from a request head for [`Key::pin`] (the affinity cookie);
    /// `None` for strategies that read nothing.
    pub fn pin(&self, headers: &[Header<'_>]) -> Option<u64> {
        self.algorithm(self.strategy()).pin(headers)
    }

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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Where `kind` is in [`StrategyKind::ALL`].
fn position(kind: StrategyKind) -> usize {
    kind.index()
}

/// What [`Backends::replace`] changed.
#[derive(Debug, Default)]
pub struct Diff {
    /// Backends new to the list.
    pub added: Vec<Arc<Backend>>,
    /// Backends that left the list (not drained yet: that is the caller's choice).
    pub removed: Vec<Arc<Backend>>,
    /// Backends kept with a new weight, each with its old weight.
    pub reweighted: Vec<(Arc<Backend>, u32)>,
    /// The same backends as before, in another order (round robin follows the list's order).
    pub reordered: bool,
}

impl Diff {
    /// Did the list stay exactly as it was?
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.reweighted.is_empty()
            && !self.reordered
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
    use crate::config::StrategyKind;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    const POLICY: Policy = Policy {
        max_fails: 1,
        fail_timeout: Duration::from_secs(10),
    };

    fn set(n: usize) -> Backends {
        let specs: Vec<_> = (0..n)
            .map(|i| BackendSpec::parse(&format!("http://127.0.0.1:{}", 8001 + i)).unwrap())
            .collect();
        Backends::new(&specs, StrategyKind::RoundRobin, POLICY)
    }

    fn key() -> Key {
        Key {
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            pin: None,
        }
    }

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
            set.strategies[position(StrategyKind::RoundRobin)] = Box::new(AlwaysFirst);
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
    fn replace_keeps_known_backends_and_their_state() {
        let set = set(3);
        let before = set.snapshot();
        let b1 = Arc::clone(&before[1]);
        b1.stats.requests.fetch_add(5, Ordering::Relaxed);
        b1.set_draining(true); // the admin API's drain is operational state: it stays
        set.candidates(key())
            .find(|c| c.backend().id == 2)
            .unwrap()
            .failed(Failure::Connect, "refused");
        let spec = |s: &str| BackendSpec::parse(s).unwrap();
        // 8002 kept, 8003 kept with weight 3, 8001 leaves, 8009 is new.
        let diff = set.replace(&[
            spec("http://127.0.0.1:8002"),
            spec("http://127.0.0.1:8003,weight=3"),
            spec("http://127.0.0.1:8009"),
        ]);
        let now = set.snapshot();
        assert!(Arc::ptr_eq(&now[0], &b1), "kept, with its counters");
        assert_eq!(b1.stats.requests.load(Ordering::Relaxed), 5);
        assert!(b1.is_draining());
        assert!(
            Arc::ptr_eq(&now[1], &before[2]),
            "a new weight keeps the backend"
        );
        assert_eq!(now[1].weight(), 3);
        assert!(!now[1].health.is_up(), "and its health");
        assert_eq!(now[2].id, 3, "a new id, never reused");
        assert_eq!(diff.removed.len(), 1);
        assert_eq!(diff.removed[0].url, "http://127.0.0.1:8001");
        assert_eq!(diff.added.len(), 1);
        assert_eq!(diff.reweighted.len(), 1);
        assert_eq!(diff.reweighted[0].1, 1, "the old weight");
        assert!(!diff.is_empty());
        // The same list again changes nothing; another order is a change.
        let same = [8002, 8003, 8009].map(|p| {
            let w = if p == 8003 { ",weight=3" } else { "" };
            spec(&format!("http://127.0.0.1:{p}{w}"))
        });
        assert!(set.replace(&same).is_empty());
        let mut turned = same.clone();
        turned.reverse();
        let diff = set.replace(&turned);
        assert!(diff.reordered && !diff.is_empty());
        assert_eq!(set.snapshot()[2].id, 1);
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
    fn a_switch_applies_to_the_next_request_not_to_one_being_routed() {
        let set = set(2);
        let mut routing = set.candidates(key());
        assert_eq!(
            set.set_strategy(StrategyKind::LeastConn),
            StrategyKind::RoundRobin
        );
        assert_eq!(set.strategy(), StrategyKind::LeastConn);
        routing.next().unwrap();
        assert_eq!(routing.why().strategy, StrategyKind::RoundRobin);
        let mut next = set.candidates(key());
        next.next().unwrap();
        assert_eq!(next.why().strategy, StrategyKind::LeastConn);
        assert!(matches!(
            next.why().chosen,
            Some((
                _,
                crate::backends::strategy::explain::Reason::LeastConn { .. }
            ))
        ));
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
