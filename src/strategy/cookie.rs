//! Sticky sessions by cookie: a client that was served once keeps going to the same backend,
//! the chapter's "session affinity" done the way HAProxy's `cookie ... insert` does it.
//!
//! The first response to a client carries `Set-Cookie: lb_backend=TOKEN; HttpOnly` (written
//! by the proxy, see [`super::affinity_token`]): the token is a hash of the backend's URL, so
//! the cookie names the backend without showing its address. A later request carrying the
//! token of a usable backend goes there. Without a cookie, with an unknown token, or when the
//! backend it names is down, draining or already failed for this request, the pick falls back
//! to round robin, and the proxy sets a new cookie for the backend that answered.
//!
//! Unlike ip-hash, this follows the client, not its address: many users behind one NAT spread
//! out, and a phone that changes networks keeps its backend.

use super::round_robin::RoundRobin;
use super::{Key, Strategy, affinity_token};
use crate::backend::Backend;
use std::sync::Arc;

/// The backend named by the affinity cookie, else round robin.
#[derive(Debug, Default)]
pub struct Cookie {
    fallback: RoundRobin,
}

impl Strategy for Cookie {
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        key: &Key<'_>,
        usable: &dyn Fn(&Backend) -> bool,
    ) -> Option<usize> {
        if let Some(token) = key.cookie
            && let Some(i) = backends
                .iter()
                .position(|b| usable(b) && affinity_token(b) == token)
        {
            return Some(i);
        }
        self.fallback.pick(backends, key, usable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::testing::backends;
    use std::net::{IpAddr, Ipv4Addr};

    fn with_cookie(cookie: Option<&str>) -> Key<'_> {
        Key {
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            cookie,
        }
    }

    #[test]
    fn the_cookie_pins_and_the_rest_rotate() {
        let s = Cookie::default();
        let bs = backends(&[1, 1, 1]);
        let c = affinity_token(&bs[2]);
        // cookie for c:  c c c      no cookie: a b      bad cookie: c a
        for _ in 0..3 {
            assert_eq!(s.pick(&bs, &with_cookie(Some(c)), &|_| true), Some(2));
        }
        assert_eq!(s.pick(&bs, &with_cookie(None), &|_| true), Some(0));
        assert_eq!(s.pick(&bs, &with_cookie(None), &|_| true), Some(1));
        assert_eq!(s.pick(&bs, &with_cookie(Some("zz")), &|_| true), Some(2));
        assert_eq!(s.pick(&bs, &with_cookie(Some("zz")), &|_| true), Some(0));
    }

    #[test]
    fn an_unusable_pinned_backend_falls_back() {
        let s = Cookie::default();
        let bs = backends(&[1, 1, 1]);
        let a = affinity_token(&bs[0]);
        // a is down: the cookie for a gets b, then c (round robin).
        let up = |b: &Backend| b.id != 0;
        assert_eq!(s.pick(&bs, &with_cookie(Some(a)), &up), Some(1));
        assert_eq!(s.pick(&bs, &with_cookie(Some(a)), &up), Some(2));
        assert_eq!(s.pick(&bs, &with_cookie(Some(a)), &|_| false), None);
    }

    #[test]
    fn the_token_hides_the_address() {
        let bs = backends(&[1]);
        let token = affinity_token(&bs[0]);
        assert_eq!(token.len(), 16);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
        assert!(!token.contains("127.0.0.1"));
    }
}
