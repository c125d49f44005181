//! The backend set: the chapter's `BACKENDS` list and its `itertools.cycle`.
//!
//! [`Backends`] holds the list (changeable at run time: the admin API adds and removes
//! backends, and [`Backends::replace`] takes a whole new list), the strategy that picks among
//! them, and the passive health policy.
//!
//! Failover is in [`failover`]: there, [`Backends::candidates`] gives the backends one
//! request may try ([`Candidates`]), in order, each at most once, the strategy's pick first;
//! each [`Candidate`] counts its request in flight and is told how the attempt went, which
//! is where passive health is kept. Its module doc follows a request from the pick to the
//! next try.

pub mod checker;
pub mod failover;
pub mod file;
pub mod health;
pub mod member;
pub mod retry;
pub mod strategy;

pub use failover::{Candidate, Candidates};

use health::Policy;
use member::Backend;
use strategy::Strategy;

use crate::config::{BackendSpec, StrategyKind};
use crate::http::Header;
use crate::poison::IgnorePoison;
use crate::secret::Secret;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
            current: AtomicUsize::new(strategy.index()),
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
        Arc::clone(&self.list.lock().ignore_poison())
    }

    /// Adds a backend; returns it.
    pub fn add(&self, spec: &BackendSpec) -> Arc<Backend> {
        let backend = self.create(spec);
        let mut list = self.list.lock().ignore_poison();
        let mut new = Vec::clone(&list);
        new.push(Arc::clone(&backend));
        *list = Arc::new(new);
        backend
    }

    /// Removes the backend with this id; returns it, or `None` if there is none.
    pub fn remove(&self, id: usize) -> Option<Arc<Backend>> {
        let mut list = self.list.lock().ignore_poison();
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
        let mut list = self.list.lock().ignore_poison();
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

    /// The strategy that picks now.
    pub fn strategy(&self) -> StrategyKind {
        StrategyKind::ALL[self.current.load(Ordering::Relaxed) % StrategyKind::ALL.len()]
    }

    /// Makes `kind` pick from the next request on; returns the one it replaces. Requests
    /// being routed finish with the strategy they started with; the backends, their pools
    /// and their health stay as they are.
    pub fn set_strategy(&self, kind: StrategyKind) -> StrategyKind {
        let old = self.current.swap(kind.index(), Ordering::Relaxed);
        StrategyKind::ALL[old % StrategyKind::ALL.len()]
    }

    fn algorithm(&self, kind: StrategyKind) -> &dyn Strategy {
        self.strategies[kind.index()].as_ref()
    }

    /// What the strategy reads from a request head for [`Key::pin`](strategy::Key::pin)
    /// (the affinity cookie); `None` for strategies that read nothing.
    pub fn pin(&self, headers: &[Header<'_>]) -> Option<u64> {
        self.algorithm(self.strategy()).pin(headers)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::retry::Failure;
    use crate::backends::strategy::Key;
    use std::net::{IpAddr, Ipv4Addr};

    const POLICY: Policy = Policy {
        max_fails: 1,
        fail_timeout: Duration::from_secs(10),
    };

    /// `n` backends on 127.0.0.1 from port 8001, in round robin (the failover tests use it too).
    pub(super) fn set(n: usize) -> Backends {
        let specs: Vec<_> = (0..n)
            .map(|i| BackendSpec::parse(&format!("http://127.0.0.1:{}", 8001 + i)).unwrap())
            .collect();
        Backends::new(&specs, StrategyKind::RoundRobin, POLICY)
    }

    /// A request's key from 127.0.0.1, with nothing pinned.
    pub(super) fn key() -> Key {
        Key {
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            pin: None,
        }
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
        // Each switch answers with the one it replaced (the lab says "from ... to ...").
        assert_eq!(
            set.set_strategy(StrategyKind::IpHash),
            StrategyKind::LeastConn
        );
    }
}
