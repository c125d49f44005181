//! Weighted round robin, the smooth way nginx does it: the chapter's "Related Concepts" ask
//! for servers of different power to get different shares.
//!
//! The naive way sends a backend of weight 5 five requests in a row, then one to each of the
//! others: `a a a a a b c`. nginx's smooth weighted round robin (`ngx_http_upstream_round_robin.c`,
//! 2012) interleaves them: `a a b a c a a`. Each backend has a *current weight*. On every pick,
//! each usable backend's current weight grows by its weight; the one with the highest current
//! weight wins (the first in order on a tie), and its current weight drops by the sum of the
//! weights. Over one cycle of `sum` picks every backend is picked exactly `weight` times, and
//! no backend waits longer than it must.
//!
//! The current weights are kept by backend id, not by position, so backends added or removed
//! at run time keep or lose their own state without shifting anybody else's.

use super::explain::{Choice, Reason};
use super::{Key, Strategy};
use crate::backends::member::Backend;
use crate::poison::IgnorePoison;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Smooth weighted round robin over the usable backends.
#[derive(Debug, Default)]
pub struct Weighted {
    /// Current weight of each backend, by backend id.
    current: Mutex<HashMap<usize, i64>>,
}

impl Strategy for Weighted {
    fn choose(
        &self,
        backends: &[Arc<Backend>],
        _key: &Key,
        usable: &dyn Fn(&Backend) -> bool,
    ) -> Option<Choice> {
        let mut current = self.current.lock().ignore_poison();
        if current.len() > backends.len() {
            // A backend was removed: forget its state. Ids are never reused, so a key that
            // is not in the list belongs to a removed backend.
            current.retain(|id, _| backends.iter().any(|b| b.id == *id));
        }
        let mut total: i64 = 0;
        let mut best: Option<(usize, i64)> = None;
        for (i, backend) in backends.iter().enumerate() {
            if !usable(backend) {
                // As in nginx, a backend that is down or already tried neither gains weight
                // nor counts in the sum: the others share its turns.
                continue;
            }
            let weight = i64::from(backend.weight());
            let w = current.entry(backend.id).or_insert(0);
            *w += weight;
            total += weight;
            if best.is_none_or(|(_, top)| *w > top) {
                best = Some((i, *w));
            }
        }
        let (index, top) = best?;
        if let Some(w) = current.get_mut(&backends[index].id) {
            *w -= total;
        }
        Some(Choice {
            index,
            reason: Reason::Weighted {
                current: top,
                total,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::strategy::testing::{backends, key, picks};

    #[test]
    fn five_one_one_interleaves() {
        let s = Weighted::default();
        let bs = backends(&[5, 1, 1]);
        // current weights before each pick (+weights), the winner, then -7 for the winner:
        //   a  b  c        pick
        //   5  1  1   ->   a   (a: 5-7 = -2)
        //   3  2  2   ->   a   (a: -4)
        //   1  3  3   ->   b   (first of the tie; b: -4)
        //   6 -3  4   ->   a   (a: -1)
        //   4 -2  5   ->   c   (c: -2)
        //   9 -1 -1   ->   a   (a: 2)
        //   7  0  0   ->   a   (a: 0): all back to 0, the cycle repeats
        // a a b a c a a | a a b a c a a
        assert_eq!(
            picks(&s, &bs, 14, &|_| true),
            [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]
        );
    }

    #[test]
    fn equal_weights_are_round_robin() {
        let s = Weighted::default();
        let bs = backends(&[1, 1, 1]);
        // a b c a b c
        assert_eq!(picks(&s, &bs, 6, &|_| true), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn skips_unusable_backends() {
        let s = Weighted::default();
        let bs = backends(&[2, 1, 1]);
        // b unusable: a (2) and c (1) share the turns, 2:1.
        //   a  c          a  c
        //   2  1  -> a   -1  1
        //   1  2  -> c    1 -1
        //   3  0  -> a    0  0
        // a c a | a c a
        assert_eq!(picks(&s, &bs, 6, &|b| b.id != 1), [0, 2, 0, 0, 2, 0]);
        assert_eq!(s.pick(&bs, &key(), &|_| false), None);
        assert_eq!(s.pick(&[], &key(), &|_| true), None);
    }

    #[test]
    fn removed_backends_are_forgotten() {
        let s = Weighted::default();
        let bs = backends(&[3, 1]);
        picks(&s, &bs, 3, &|_| true);
        // Backend 0 removed: only 1 is left, and the state of 0 goes.
        let rest = vec![Arc::clone(&bs[1])];
        assert_eq!(picks(&s, &rest, 2, &|_| true), [0, 0]);
        assert_eq!(s.current.lock().unwrap().len(), 1);
    }
}
