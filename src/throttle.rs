//! At most one console line per interval for a message that can repeat without end (an
//! `accept` that fails while the process is out of descriptors, a health check that cannot
//! be made for a local reason), with a count of the lines left out.

use crate::poison::IgnorePoison;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a repeating message is printed at most.
pub const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// When a repeating message was last printed, and how many were left out since.
#[derive(Debug, Default)]
pub struct Throttle {
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    /// A throttle that lets the first message through.
    pub const fn new() -> Throttle {
        Throttle {
            state: Mutex::new((None, 0)),
        }
    }

    /// May the message be printed now? `Some(n)`: yes, and `n` were left out since the last
    /// one printed; `None`: not within [`LOG_INTERVAL`] of the last one (it is counted).
    pub fn allow(&self) -> Option<u64> {
        let mut state = self.state.lock().ignore_poison();
        let now = Instant::now();
        if state
            .0
            .is_some_and(|last| now.duration_since(last) < LOG_INTERVAL)
        {
            state.1 += 1;
            return None;
        }
        state.0 = Some(now);
        Some(std::mem::take(&mut state.1))
    }
}

/// `" (N more like it left out)"`, or nothing when none were.
pub fn left_out(n: u64) -> String {
    match n {
        0 => String::new(),
        n => format!(" ({n} more like it left out)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_rest_counted() {
        let t = Throttle::new();
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        // As if the interval had passed.
        t.state.lock().unwrap().0 = Some(Instant::now() - LOG_INTERVAL);
        assert_eq!(t.allow(), Some(2));
        assert_eq!(left_out(2), " (2 more like it left out)");
        assert_eq!(left_out(0), "");
    }
}
