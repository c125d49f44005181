//! Which backend takes the next request: one small trait, one file per algorithm.
//!
//! The chapter's algorithm is `next(itertools.cycle(BACKENDS))` ([`round_robin`]); its
//! "Related Concepts" name three more: weighted round robin ([`weighted`]), least connections
//! ([`least_conn`]) and session affinity, here two ways: by client address ([`ip_hash`]) and
//! by cookie ([`cookie`], the chapter's "sticky sessions"). In the style of Pingora's
//! load-balancing crate, a strategy only answers "which one?" ([`Strategy::pick`]); the proxy
//! asks again, with the failed backend excluded, when a backend fails, so each backend is
//! tried at most once per request.

use crate::backend::Backend;
use crate::config::StrategyKind;
use std::net::IpAddr;
use std::sync::Arc;

pub mod cookie;
pub mod ip_hash;
pub mod least_conn;
pub mod round_robin;
pub mod weighted;

/// What a strategy may look at besides the backends.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    /// The client's address (for `ip-hash`).
    pub client_ip: IpAddr,
    /// The value of the balancer's affinity cookie, if the request carried one (for `cookie`).
    pub cookie: Option<&'a str>,
}

/// A load-balancing algorithm.
pub trait Strategy: Send + Sync + std::fmt::Debug {
    /// Picks the index in `backends` of the backend for a request, among those for which
    /// `usable` is true (healthy, not draining, not already tried for this request).
    /// `None` when no backend is usable.
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        key: &Key<'_>,
        usable: &dyn Fn(&Backend) -> bool,
    ) -> Option<usize>;
}

/// The strategy for a `--strategy` name.
pub fn build(kind: StrategyKind) -> Box<dyn Strategy> {
    match kind {
        StrategyKind::RoundRobin => Box::new(round_robin::RoundRobin::default()),
        StrategyKind::Weighted => Box::new(weighted::Weighted::default()),
        StrategyKind::LeastConn => Box::new(least_conn::LeastConn::default()),
        StrategyKind::IpHash => Box::new(ip_hash::IpHash),
        StrategyKind::Cookie => Box::new(cookie::Cookie::default()),
    }
}

/// Name of the cookie that pins a client to a backend under `--strategy cookie`.
pub const AFFINITY_COOKIE: &str = "lb_backend";

/// The affinity cookie's value for a backend: a hash of its URL, so the cookie names the
/// backend without showing its address, and stays the same across restarts. Computed once,
/// when the backend is created (see [`token_for_url`]).
pub fn affinity_token(backend: &Backend) -> &str {
    &backend.affinity_token
}

/// The affinity token of a backend URL: 16 hex digits of [`hash64`].
pub fn token_for_url(url: &str) -> String {
    format!("{:016x}", hash64(url.as_bytes()))
}

/// The value of the affinity cookie in a request's `Cookie` fields, if any.
pub fn affinity_cookie(headers: &[crate::http::Header<'_>]) -> Option<String> {
    crate::http::head::values(headers, "cookie")
        .flat_map(|v| v.split(|&b| b == b';'))
        .filter_map(|pair| {
            let pair = crate::http::head::trim_ows(pair);
            let eq = pair.iter().position(|&b| b == b'=')?;
            (&pair[..eq] == AFFINITY_COOKIE.as_bytes()).then(|| &pair[eq + 1..])
        })
        .find_map(|v| std::str::from_utf8(v).ok().map(str::to_string))
}

/// A 64-bit hash of bytes: FNV-1a, then a final mix (from MurmurHash3's `fmix64`) so that
/// similar inputs (127.0.0.1, 127.0.0.2) land far apart. Stable across runs and platforms,
/// unlike `std`'s `DefaultHasher`, whose algorithm may change between Rust releases.
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Helpers for the strategies' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Key, Strategy};
    use crate::backend::Backend;
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
    pub(crate) fn key() -> Key<'static> {
        Key {
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            cookie: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Header;

    #[test]
    fn finds_the_affinity_cookie() {
        let headers = [
            Header {
                name: "Cookie",
                value: b"a=1; lb_backend=abc",
            },
            Header {
                name: "Cookie",
                value: b"lb_backend=zzz",
            },
        ];
        assert_eq!(affinity_cookie(&headers).as_deref(), Some("abc"));
        assert_eq!(
            affinity_cookie(&[Header {
                name: "Cookie",
                value: b"xlb_backend=1"
            }]),
            None
        );
        assert_ne!(hash64(b"127.0.0.1"), hash64(b"127.0.0.2"));
    }
}
