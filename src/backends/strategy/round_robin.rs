//! Round robin: each backend in turn, the chapter's `itertools.cycle`.
//!
//! The Python original calls `next()` on a shared iterator without a lock, which is safe only
//! because its server handles one request at a time. Here many threads pick at once, so the
//! position lives in a `Mutex<usize>`, held while the pick looks for the next usable backend:
//! that reads each backend it passes over (its health and draining flag), usually just one.

use super::explain::{Choice, Reason};
use super::{Key, Strategy};
use crate::backends::member::Backend;
use crate::poison::IgnorePoison;
use std::sync::{Arc, Mutex};

/// Round robin over the usable backends.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: Mutex<usize>,
}

impl Strategy for RoundRobin {
    fn choose(
        &self,
        backends: &[Arc<Backend>],
        _key: &Key,
        usable: &dyn Fn(&Backend) -> bool,
    ) -> Option<Choice> {
        self.next_usable(backends, usable)
            .map(|(index, after)| Choice {
                index,
                reason: Reason::RoundRobin { after },
            })
    }
}

impl RoundRobin {
    /// The next usable backend's index, and the id of the backend the rotation stood at.
    pub(crate) fn next_usable(
        &self,
        backends: &[Arc<Backend>],
        usable: &dyn Fn(&Backend) -> bool,
    ) -> Option<(usize, usize)> {
        let n = backends.len();
        let mut next = self.next.lock().ignore_poison();
        // Start where the last pick stopped; skip unusable backends, so that with B down the
        // rotation is A C A C, not A C C A C C.
        let found = (0..n)
            .map(|i| (*next + i) % n)
            .find(|&i| usable(&backends[i]))?;
        let after = backends[(*next + n - 1) % n].id;
        *next = (found + 1) % n;
        Some((found, after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::strategy::testing::{backends, key, picks};

    #[test]
    fn rotates_and_skips() {
        let rr = RoundRobin::default();
        let bs = backends(&[1, 1, 1]);
        // All usable:   A B C A B C
        assert_eq!(picks(&rr, &bs, 6, &|_| true), [0, 1, 2, 0, 1, 2]);
        // B unusable:   A C A C
        assert_eq!(picks(&rr, &bs, 4, &|b| b.id != 1), [0, 2, 0, 2]);
        assert_eq!(rr.pick(&bs, &key(), &|_| false), None);
        assert_eq!(rr.pick(&[], &key(), &|_| true), None);
    }
}
