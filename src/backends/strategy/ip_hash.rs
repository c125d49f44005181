//! Client-IP affinity by rendezvous hashing: the same client goes to the same backend, one of
//! the chapter's "Related Concepts" (session affinity).
//!
//! `hash(ip) % n` would do it until a backend goes down: then `n` changes and almost every
//! client moves. Rendezvous hashing (highest random weight, Thaler and Ravishankar, 1998)
//! scores every backend for the client, `hash(ip, backend URL)`, and picks the highest
//! score. A backend that leaves takes only its own clients away (each moves to its
//! second-highest score); everybody else's highest score did not change. A backend that comes
//! back gets exactly those clients back. The cost is one hash per backend per request, which
//! for a few dozen backends is less than a ring's lookup table costs to keep up to date.
//!
//! Weights count, in the weighted form of the method: the score is `-weight / ln(u)` with `u`
//! the hash mapped into (0, 1), so a backend of weight 2 wins about twice the clients. With
//! equal weights this is the plain highest-hash rule.
//!
//! The key is the client's address: the TCP peer's, or the client a `--trusted-proxy` peer
//! names in `X-Forwarded-For`, or a PROXY protocol header's source (see
//! [`crate::proxy::trust`]). Behind another proxy every client would otherwise have that proxy's
//! address; an `X-Forwarded-For` from anyone else is not believed, since it would let any
//! client pick its backend.

use super::explain::{Choice, Reason};
use super::{Key, Strategy, hash64};
use crate::backends::member::Backend;
use std::net::IpAddr;
use std::sync::Arc;

/// Rendezvous hashing of the client's IP address.
#[derive(Debug, Default)]
pub struct IpHash;

/// The score of `backend` for a client at `ip`; the usable backend with the highest score
/// takes the client.
pub fn score(ip: IpAddr, backend: &Backend) -> f64 {
    // An IPv4 client seen on a dual-stack listener as ::ffff:a.b.c.d is the same client.
    let mut bytes = match ip.to_canonical() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    bytes.push(b' ');
    bytes.extend_from_slice(backend.url.as_bytes());
    // The top 53 bits as a fraction strictly inside (0, 1), so ln(u) is finite and negative.
    let u = ((hash64(&bytes) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(backend.weight().max(1)) / u.ln()
}

impl Strategy for IpHash {
    fn choose(
        &self,
        backends: &[Arc<Backend>],
        key: &Key,
        usable: &dyn Fn(&Backend) -> bool,
    ) -> Option<Choice> {
        backends
            .iter()
            .enumerate()
            .filter(|(_, b)| usable(b))
            .map(|(i, b)| (i, score(key.client_ip, b)))
            .max_by(|(_, x), (_, y)| x.total_cmp(y))
            .map(|(index, _)| Choice {
                index,
                reason: Reason::IpHash,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::strategy::testing::{backends, picks};
    use std::net::Ipv4Addr;

    fn client(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)) // 10.0.0.0 onwards
    }

    fn assign(bs: &[Arc<Backend>], ip: IpAddr, usable: &dyn Fn(&Backend) -> bool) -> usize {
        let key = Key {
            client_ip: ip,
            pin: None,
        };
        bs[IpHash.pick(bs, &key, usable).unwrap()].id
    }

    #[test]
    fn one_client_always_gets_the_same_backend() {
        let bs = backends(&[1, 1, 1]);
        // 127.0.0.1: x x x x x x, whichever x it is.
        let first = picks(&IpHash, &bs, 1, &|_| true)[0];
        assert_eq!(picks(&IpHash, &bs, 6, &|_| true), [first; 6]);
        // The IPv4-mapped IPv6 form of 127.0.0.1 is the same client.
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(assign(&bs, mapped, &|_| true), bs[first].id);
    }

    #[test]
    fn removing_one_of_n_moves_only_its_clients() {
        const N: usize = 5;
        const CLIENTS: u32 = 20_000;
        let bs = backends(&[1; N]);
        let before: Vec<usize> = (0..CLIENTS)
            .map(|n| assign(&bs, client(n), &|_| true))
            .collect();
        // Spread: each backend gets about 1/N of the clients (within 10%).
        for id in 0..N {
            let share = before.iter().filter(|&&b| b == id).count() as f64 / f64::from(CLIENTS);
            assert!((share - 0.2).abs() < 0.02, "backend {id} has {share}");
        }
        // Backend 2 goes down.
        let after: Vec<usize> = (0..CLIENTS)
            .map(|n| assign(&bs, client(n), &|b| b.id != 2))
            .collect();
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b != a {
                assert_eq!(*b, 2, "a client of a healthy backend moved");
                moved += 1;
            } else {
                assert_ne!(*a, 2);
            }
        }
        // Exactly the clients of backend 2 moved: about 1/N (0.2), with some slack.
        let fraction = f64::from(moved) / f64::from(CLIENTS);
        assert!(fraction <= 1.0 / N as f64 + 0.02, "{fraction} moved");
        assert_eq!(moved, before.iter().filter(|&&b| b == 2).count() as u32);
        // And they spread over the others rather than landing on one.
        for id in [0, 1, 3, 4] {
            let got = (0..CLIENTS as usize)
                .filter(|&n| before[n] == 2 && after[n] == id)
                .count();
            assert!(
                got > moved as usize / 8,
                "backend {id} got {got} of {moved}"
            );
        }
    }

    #[test]
    fn weight_two_gets_about_twice_the_clients() {
        let bs = backends(&[2, 1, 1]);
        let mut counts = [0u32; 3];
        for n in 0..20_000 {
            counts[assign(&bs, client(n), &|_| true)] += 1;
        }
        // Expected 1/2, 1/4, 1/4.
        let share = f64::from(counts[0]) / 20_000.0;
        assert!((share - 0.5).abs() < 0.03, "{counts:?}");
    }

    #[test]
    fn none_usable_is_none() {
        let bs = backends(&[1, 1]);
        let key = Key {
            client_ip: client(1),
            pin: None,
        };
        assert_eq!(IpHash.pick(&bs, &key, &|_| false), None);
        assert_eq!(IpHash.pick(&[], &key, &|_| true), None);
    }
}
