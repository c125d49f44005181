//! Sticky sessions by cookie: a client that was served once keeps going to the same backend,
//! the chapter's "session affinity" done the way HAProxy's `cookie ... insert` does it.
//!
//! The first response to a client carries `Set-Cookie: lb_backend=TOKEN; Path=/; HttpOnly;
//! SameSite=Lax` (this strategy's [`Strategy::on_response`] hook writes it): the token is the
//! backend's [`Backend::tag`], a hash of its URL, so the cookie names the backend without
//! showing its address. A later request carrying the token of a usable backend goes there (read by the
//! [`Strategy::pin`] hook). Without a cookie, with an unknown token, or when the backend it
//! names is down, draining or already failed for this request, the pick falls back to round
//! robin, and the response sets a new cookie for the backend that answered.
//!
//! Unlike ip-hash, this follows the client, not its address: many users behind one NAT spread
//! out, and a phone that changes networks keeps its backend.

use super::explain::{Choice, Reason};
use super::round_robin::RoundRobin;
use super::{Key, Strategy};
use crate::backends::member::Backend;
use crate::http::{Header, head};
use std::sync::Arc;

pub use super::AFFINITY_COOKIE;
/// Attributes of the cookie: every path, hidden from scripts, not sent on cross-site
/// sub-requests.
pub const COOKIE_ATTRIBUTES: &str = "Path=/; HttpOnly; SameSite=Lax";

/// The backend named by the affinity cookie, else round robin.
#[derive(Debug, Default)]
pub struct Cookie {
    fallback: RoundRobin,
}

impl Strategy for Cookie {
    fn choose(
        &self,
        backends: &[Arc<Backend>],
        key: &Key,
        usable: &dyn Fn(&Backend) -> bool,
    ) -> Option<Choice> {
        if let Some(tag) = key.pin
            && let Some(index) = backends.iter().position(|b| b.tag == tag && usable(b))
        {
            return Some(Choice {
                index,
                reason: Reason::Pinned { tag },
            });
        }
        let (index, after) = self.fallback.next_usable(backends, usable)?;
        Some(Choice {
            index,
            reason: Reason::Unpinned {
                had_cookie: key.pin.is_some(),
                after,
            },
        })
    }

    fn pin(&self, headers: &[Header<'_>]) -> Option<u64> {
        affinity_cookie(headers)
    }

    fn on_response(&self, backend: &Backend, key: &Key, out: &mut Vec<u8>) {
        if key.pin == Some(backend.tag) {
            return; // the client's cookie already names this backend
        }
        out.extend_from_slice(b"Set-Cookie: ");
        out.extend_from_slice(AFFINITY_COOKIE.as_bytes());
        out.push(b'=');
        push_token(out, backend.tag);
        out.extend_from_slice(b"; ");
        out.extend_from_slice(COOKIE_ATTRIBUTES.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// The affinity cookie's value for a backend: its [`Backend::tag`] as 16 lowercase hex digits
/// (what [`Cookie`]'s `on_response` writes; the tests compare with it).
#[cfg(test)]
fn affinity_token(backend: &Backend) -> String {
    let mut out = Vec::with_capacity(16);
    push_token(&mut out, backend.tag);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `tag` as 16 lowercase hex digits, without the formatting machinery.
fn push_token(out: &mut Vec<u8>, tag: u64) {
    for shift in (0..16).rev() {
        out.push(b"0123456789abcdef"[(tag >> (shift * 4)) as usize & 0xf]);
    }
}

/// The backend tag named by the affinity cookie in a request's `Cookie` fields, if any: the
/// first `lb_backend`, when its value is 16 lowercase hex digits as `on_response` writes.
pub fn affinity_cookie(headers: &[Header<'_>]) -> Option<u64> {
    let value = head::values(headers, "cookie")
        .flat_map(|v| v.split(|&b| b == b';'))
        .find_map(|pair| {
            head::trim_ows(pair)
                .strip_prefix(AFFINITY_COOKIE.as_bytes())?
                .strip_prefix(b"=")
        })?;
    let hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if value.len() != 16 || !value.iter().all(hex) {
        return None;
    }
    // 16 hex digits fit a u64 exactly.
    Some(value.iter().fold(0u64, |n, &b| {
        n << 4 | u64::from((b as char).to_digit(16).unwrap_or(0))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::strategy::testing::backends;
    use std::net::{IpAddr, Ipv4Addr};

    fn with_pin(pin: Option<u64>) -> Key {
        Key {
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            pin,
        }
    }

    #[test]
    fn the_cookie_pins_and_the_rest_rotate() {
        let s = Cookie::default();
        let bs = backends(&[1, 1, 1]);
        let c = bs[2].tag;
        // cookie for c:  c c c      no cookie: a b      bad cookie: c a
        for _ in 0..3 {
            assert_eq!(s.pick(&bs, &with_pin(Some(c)), &|_| true), Some(2));
        }
        assert_eq!(s.pick(&bs, &with_pin(None), &|_| true), Some(0));
        assert_eq!(s.pick(&bs, &with_pin(None), &|_| true), Some(1));
        assert_eq!(s.pick(&bs, &with_pin(Some(7)), &|_| true), Some(2));
        assert_eq!(s.pick(&bs, &with_pin(Some(7)), &|_| true), Some(0));
    }

    #[test]
    fn an_unusable_pinned_backend_falls_back() {
        let s = Cookie::default();
        let bs = backends(&[1, 1, 1]);
        let a = bs[0].tag;
        // a is down: the cookie for a gets b, then c (round robin).
        let up = |b: &Backend| b.id != 0;
        assert_eq!(s.pick(&bs, &with_pin(Some(a)), &up), Some(1));
        assert_eq!(s.pick(&bs, &with_pin(Some(a)), &up), Some(2));
        assert_eq!(s.pick(&bs, &with_pin(Some(a)), &|_| false), None);
    }

    #[test]
    fn the_token_hides_the_address_and_reads_back() {
        let bs = backends(&[1]);
        let token = affinity_token(&bs[0]);
        assert_eq!(token, format!("{:016x}", bs[0].tag));
        let cookie = format!("a=1; {AFFINITY_COOKIE}={token}");
        let headers = [
            Header {
                name: "Cookie",
                value: cookie.as_bytes(),
            },
            Header {
                name: "Cookie",
                value: b"lb_backend=0000000000000001",
            },
        ];
        assert_eq!(affinity_cookie(&headers), Some(bs[0].tag));
        for bad in [
            &b"xlb_backend=0000000000000001"[..],
            b"lb_backend=00000000000000001",
            b"lb_backend=000000000000000G",
            b"lb_backend=+000000000000001",
            b"lb_backend=000000000000000A",
        ] {
            let h = [Header {
                name: "Cookie",
                value: bad,
            }];
            assert_eq!(
                affinity_cookie(&h),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn set_cookie_only_when_the_cookie_names_another_backend() {
        let bs = backends(&[1, 1]);
        let mut out = Vec::new();
        Cookie::default().on_response(&bs[0], &with_pin(Some(bs[0].tag)), &mut out);
        assert!(out.is_empty());
        Cookie::default().on_response(&bs[0], &with_pin(Some(bs[1].tag)), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "Set-Cookie: lb_backend={}; Path=/; HttpOnly; SameSite=Lax\r\n",
                affinity_token(&bs[0])
            )
        );
    }
}
