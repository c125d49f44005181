//! Request ids (`X-Request-Id`), as nginx's `$request_id` and Envoy's `x-request-id`: one id
//! follows a request through the balancer, the backend and both logs, so a line in one can
//! be found in the other.
//!
//! A request that arrives with a sane id keeps it ([`is_sane`]: the id of a proxy in front,
//! or of the client's own tracing); any other gets a new one ([`generate`]). The backend is
//! sent the id, the client gets it back in the response, and the access log writes it.
//! `--request-id off` turns all of this off.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The header field.
pub const HEADER: &str = "X-Request-Id";
/// Longest id kept from a request; a longer one is replaced. Ids in use (a UUID is 36
/// characters, nginx's are 32, AWS's trace ids about 40) fit with room to spare.
pub const MAX_LEN: usize = 128;

/// Is `id` one to keep: 1 to [`MAX_LEN`] visible ASCII characters (no spaces, no control
/// characters, nothing that a log line or a header would have to escape)?
pub fn is_sane(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// A new id: 32 lowercase hex digits (128 bits), as nginx's `$request_id`.
///
/// Made of a counter and a key drawn once per process from the operating system's
/// randomness (std's `RandomState`), hashed with SipHash: never the same twice in a run, and
/// not guessable from the ids seen before. It is an id, not a secret.
pub fn generate() -> String {
    static KEYS: OnceLock<std::hash::RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let keys = KEYS.get_or_init(std::hash::RandomState::new);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let half = |part: u8| {
        let mut h = keys.build_hasher();
        h.write_u64(n);
        h.write_u8(part);
        h.finish()
    };
    // Hex digits pushed by hand: this runs for every request, and `format!` costs more.
    let mut id = String::with_capacity(32);
    for word in [half(0), half(1)] {
        for shift in (0..16).rev() {
            id.push(char::from(
                b"0123456789abcdef"[(word >> (shift * 4)) as usize & 0xf],
            ));
        }
    }
    id
}

/// The id of a request with these header fields, and whether it is the client's own (kept
/// as it is) or a new one (to be written in place of the client's): the client's when it
/// sent exactly one and [`is_sane`] says so.
pub fn choose(headers: &[crate::http::Header<'_>]) -> (String, bool) {
    let mut sent = crate::http::head::values(headers, "x-request-id");
    match (sent.next(), sent.next()) {
        (Some(id), None) if is_sane(id) => (String::from_utf8_lossy(id).into_owned(), true),
        _ => (generate(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_32_hex_digits_and_differ() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| generate()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert!(is_sane(id.as_bytes()));
        }
    }

    #[test]
    fn sane_ids() {
        for good in [
            &b"a"[..],
            b"9f1c-2b",
            b"Root=1-67891233-abcdef012345678912345678",
        ] {
            assert!(is_sane(good), "{}", String::from_utf8_lossy(good));
        }
        let long = vec![b'a'; MAX_LEN + 1];
        for bad in [
            &b""[..],
            b"a b",
            b"a\tb",
            b"a\"b",
            b"a\\b",
            "é".as_bytes(),
            &long,
        ] {
            assert!(!is_sane(bad), "{}", String::from_utf8_lossy(bad));
        }
        assert!(is_sane(&long[1..]));
    }
}
