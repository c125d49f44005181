//! Least connections: the backend with the fewest requests in flight, one of the chapter's
//! "Related Concepts".
//!
//! Round robin assumes every request costs the same. When some take long (a report, a large
//! download), the backends serving them pile up work while round robin keeps sending them
//! their share. Least connections looks at what each backend is doing right now:
//! [`Backend::active`], a count kept by the guard of [`Backend::start_request`], which
//! decrements on drop, so no error path leaves a request counted forever.
//!
//! Weights count as in nginx's `least_conn` and HAProxy's `leastconn`: the backend with the
//! lowest `active / weight` wins, so a backend of weight 2 may carry twice the requests.
//! Ties (all idle, the usual case at low load) are broken round robin, from where the last
//! pick stopped; without that, the first backend would take every request of a quiet site.

use super::explain::{Choice, MAX_COMPARED, Reason};
use super::{Key, Strategy};
use crate::backends::member::Backend;
use crate::poison::IgnorePoison;
use std::sync::{Arc, Mutex};

/// Fewest requests in flight (relative to weight), ties in turn.
#[derive(Debug, Default)]
pub struct LeastConn {
    /// Where the next tie-breaking scan starts.
    next: Mutex<usize>,
}

impl Strategy for LeastConn {
    fn choose(
        &self,
        backends: &[Arc<Backend>],
        _key: &Key,
        usable: &dyn Fn(&Backend) -> bool,
    ) -> Option<Choice> {
        let n = backends.len();
        let mut next = self.next.lock().ignore_poison();
        let mut best: Option<(usize, u64, u64)> = None;
        // Every usable backend's count, for the reason: the winner's and some others'.
        let mut seen = [(0usize, 0u32); MAX_COMPARED + 1];
        let mut len = 0;
        for i in (0..n).map(|k| (*next + k) % n) {
            let b = &backends[i];
            if !usable(b) {
                continue;
            }
            let (active, weight) = (b.active() as u64, u64::from(b.weight().max(1)));
            if len < seen.len() {
                seen[len] = (i, u32::try_from(active).unwrap_or(u32::MAX));
                len += 1;
            }
            // active/weight < best_active/best_weight, without division. Strictly less: on a
            // tie the earlier one in this scan (the round-robin order) stays.
            if best.is_none_or(|(_, ba, bw)| active * bw < ba * weight) {
                best = Some((i, active, weight));
            }
        }
        let (found, active, _) = best?;
        *next = (found + 1) % n;
        Some(Choice {
            index: found,
            reason: reason(backends, found, active, &seen[..len]),
        })
    }
}

/// The numbers of a pick: the winner's count, and up to [`MAX_COMPARED`] others (by id).
fn reason(backends: &[Arc<Backend>], found: usize, active: u64, seen: &[(usize, u32)]) -> Reason {
    let mut others = [(0, 0); MAX_COMPARED];
    let mut len = 0;
    for &(i, n) in seen.iter().filter(|(i, _)| *i != found).take(MAX_COMPARED) {
        others[len] = (backends[i].id, n);
        len += 1;
    }
    Reason::LeastConn {
        active: u32::try_from(active).unwrap_or(u32::MAX),
        others,
        len: len as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::strategy::testing::{backends, key, picks};

    #[test]
    fn idle_backends_take_turns() {
        let s = LeastConn::default();
        let bs = backends(&[1, 1, 1]);
        // Nothing in flight: a b c a b c
        assert_eq!(picks(&s, &bs, 6, &|_| true), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn busy_backends_are_avoided() {
        let s = LeastConn::default();
        let bs = backends(&[1, 1, 1]);
        // a has 2 in flight, b 1, c 0:
        //   active  a=2 b=1 c=0  ->  c
        //   (c now holds 1)  a=2 b=1 c=1  ->  b (the scan goes a b c: b before c)
        //   (b now 2)        a=2 b=2 c=1  ->  c
        let a1 = bs[0].start_request();
        let _a2 = bs[0].start_request();
        let _b = bs[1].start_request();
        let first = s.pick(&bs, &key(), &|_| true).unwrap();
        assert_eq!(first, 2);
        let _c = bs[first].start_request();
        let second = s.pick(&bs, &key(), &|_| true).unwrap();
        assert_eq!(second, 1);
        let _b2 = bs[second].start_request();
        assert_eq!(s.pick(&bs, &key(), &|_| true), Some(2));
        // A guard dropped is a request finished: a=1 b=2 c=1.
        drop(a1);
        assert_eq!(bs[0].active(), 1);
        //  the scan starts after c: a=1, b=2, c=1 (a tie: a stays)  ->  a
        assert_eq!(s.pick(&bs, &key(), &|_| true), Some(0));
    }

    #[test]
    fn weight_scales_the_count() {
        let s = LeastConn::default();
        let bs = backends(&[2, 1]);
        // a (weight 2) with 1 in flight counts as 1/2, b with 0 as 0: b.
        let _a = bs[0].start_request();
        assert_eq!(s.pick(&bs, &key(), &|_| true), Some(1));
        // b with 1 counts as 1/1, more than a's 1/2: a.
        let _b = bs[1].start_request();
        assert_eq!(s.pick(&bs, &key(), &|_| true), Some(0));
    }

    #[test]
    fn the_reason_names_the_winner_and_as_many_others_as_it_has_room_for() {
        // More usable backends than the reason has room for: the first three busy, the
        // fourth idle (it wins), the fifth idle too. The reason carries the winner's count
        // and the first MAX_COMPARED others of the scan, however many backends there are.
        let s = LeastConn::default();
        let bs = backends(&[1; MAX_COMPARED + 2]);
        let _busy: Vec<_> = bs[..MAX_COMPARED]
            .iter()
            .map(|b| b.start_request())
            .collect();
        let choice = s.choose(&bs, &key(), &|_| true).unwrap();
        assert_eq!(choice.index, MAX_COMPARED);
        let mut others = [(0, 0); MAX_COMPARED];
        for (slot, b) in others.iter_mut().zip(&bs) {
            *slot = (b.id, 1);
        }
        let len = MAX_COMPARED as u8;
        assert_eq!(
            choice.reason,
            Reason::LeastConn {
                active: 0,
                others,
                len
            }
        );
    }

    #[test]
    fn skips_unusable_backends() {
        let s = LeastConn::default();
        let bs = backends(&[1, 1, 1]);
        // a is busy and the idle b unusable: c c
        let _busy = bs[0].start_request();
        assert_eq!(picks(&s, &bs, 2, &|b| b.id != 1), [2, 2]);
        assert_eq!(s.pick(&bs, &key(), &|_| false), None);
        assert_eq!(s.pick(&[], &key(), &|_| true), None);
    }
}
