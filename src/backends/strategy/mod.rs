//! Which backend takes the next request: one small trait, one file per algorithm.
//!
//! The chapter's algorithm is `next(itertools.cycle(BACKENDS))` ([`round_robin`]); its
//! "Related Concepts" name three more: weighted round robin ([`weighted`]), least connections
//! ([`least_conn`]) and session affinity, here two ways: by client address ([`ip_hash`]) and
//! by cookie ([`cookie`], the chapter's "sticky sessions"). In the style of Pingora's
//! load-balancing crate, a strategy only answers "which one?" ([`Strategy::pick`]); the
//! backend set ([`crate::backends::Backends::candidates`]) asks again, with the failed
//! backends excluded, when a backend fails, so each backend is tried at most once per request.
//!
//! A strategy that needs more than the client's address overrides two methods that do nothing
//! by default: it may read the request head ([`Strategy::pin`]) and add fields to the response
//! head ([`Strategy::on_response`]), as the affinity cookie does. Each pick says why
//! ([`explain`]): the status page and `--explain` show it.
//!
//! A new strategy is one file here, its `pub mod` line below, and one row in the list of
//! [`StrategyKind`] (in `src/config/mod.rs`), which gives it its `--strategy` name, its place in
//! `--help` and the admin lab, and says whether it reads weights. The compiler then asks for
//! its arm in [`build`] (a `match` must cover every variant): the list of names stays in
//! `config`, which must not depend on the strategies, so `build` is where a name meets its code.

use crate::backends::member::Backend;
use crate::config::StrategyKind;
use crate::http::Header;
use explain::Choice;
use std::net::IpAddr;
use std::sync::Arc;

pub use crate::backends::member::hash64;

pub mod cookie;
pub mod explain;
pub mod ip_hash;
pub mod least_conn;
pub mod round_robin;
pub mod weighted;

/// Name of the cookie that pins a client to a backend ([`cookie`]).
pub const AFFINITY_COOKIE: &str = "lb_backend";

/// What a strategy may look at besides the backends.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The client's address (for `ip-hash`).
    pub client_ip: IpAddr,
    /// The [`Backend::tag`] of the backend the request asks for by its own means, read by
    /// [`Strategy::pin`] (the affinity cookie's value, for `cookie`).
    pub pin: Option<u64>,
}

/// A load-balancing algorithm.
pub trait Strategy: Send + Sync + std::fmt::Debug {
    /// Picks the backend for a request among those for which `usable` is true (healthy, not
    /// draining, not already tried for this request): its index in `backends`, with the
    /// numbers that made it the one ([`explain::Reason`]). `None` when no backend is usable.
    fn choose(
        &self,
        backends: &[Arc<Backend>],
        key: &Key,
        usable: &dyn Fn(&Backend) -> bool,
    ) -> Option<Choice>;

    /// [`Strategy::choose`]'s index alone.
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        key: &Key,
        usable: &dyn Fn(&Backend) -> bool,
    ) -> Option<usize> {
        self.choose(backends, key, usable).map(|c| c.index)
    }

    /// The [`Backend::tag`] a request asks for, from its header fields ([`Key::pin`]).
    fn pin(&self, _headers: &[Header<'_>]) -> Option<u64> {
        None
    }

    /// Adds whole header lines (`Name: value\r\n`) to the head of the response that
    /// `backend` gave to the request with `key`.
    fn on_response(&self, _backend: &Backend, _key: &Key, _out: &mut Vec<u8>) {}
}

/// The strategy for a `--strategy` name: one arm per row of [`StrategyKind`].
pub fn build(kind: StrategyKind) -> Box<dyn Strategy> {
    match kind {
        StrategyKind::RoundRobin => Box::new(round_robin::RoundRobin::default()),
        StrategyKind::Weighted => Box::new(weighted::Weighted::default()),
        StrategyKind::LeastConn => Box::new(least_conn::LeastConn::default()),
        StrategyKind::IpHash => Box::new(ip_hash::IpHash),
        StrategyKind::Cookie => Box::new(cookie::Cookie::default()),
    }
}

/// Helpers for the strategies' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Key, Strategy};
    use crate::backends::member::Backend;
    use crate::config::BackendSpec;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    /// Backends `http://127.0.0.1:8001`, `8002`, ... with ids 0, 1, ... and these weights.
    pub(crate) fn backends(weights: &[u32]) -> Vec<Arc<Backend>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let url = format!("http://127.0.0.1:{},weight={w}", 8001 + i);
                Arc::new(Backend::new(i, &BackendSpec::parse(&url).unwrap()))
            })
            .collect()
    }

    /// A request from 127.0.0.1 without a cookie.
    pub(crate) fn key() -> Key {
        Key {
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            pin: None,
        }
    }

    /// `n` picks in a row with [`key`].
    pub(crate) fn picks(
        s: &dyn Strategy,
        bs: &[Arc<Backend>],
        n: usize,
        usable: &dyn Fn(&Backend) -> bool,
    ) -> Vec<usize> {
        (0..n)
            .map(|_| s.pick(bs, &key(), usable).unwrap())
            .collect()
    }
}
