//! The last minute of one backend, second by second: requests answered, failed attempts,
//! `5xx` answers and how long requests took, plus the moments it went down, came back or was
//! drained. The status page draws its charts from this.
//!
//! # The ring
//!
//! [`History`] is a fixed ring of [`HISTORY_SECONDS`] slots; second `s` (Unix time) lives in
//! slot `s % HISTORY_SECONDS`. Its memory never grows: 60 slots of 16 words, 7.5 KiB per
//! backend, allocated when the backend counts its first event (a list of 10,000 backends
//! that mostly sit idle, or are read only for the status page, does not cost 75 MB).
//!
//! Every count in a slot is one [`AtomicU64`] holding *which second it counts* in its high 32
//! bits and *how many* in its low 32 bits (a tagged word). Counting one event in second `s`:
//!
//! - the word already carries `s`: `fetch_add(1)`, the same one instruction as any counter;
//! - it carries an older second (the slot's turn came round again): replace the whole word
//!   with `(s, 1)` by `compare_exchange`, and start over if another thread changed it first.
//!
//! So there is no separate "roll the ring over" step that threads could race on, and no lock:
//! at a second boundary, the first thread to count in the new second resets each word it
//! touches as it counts; two threads doing so at once agree through the compare-exchange (one
//! writes `(s, 1)`, the other sees `s` and adds), and nothing counted in `s` is lost. A word
//! nobody touched this second keeps its old tag, and the reader treats it as zero: reading
//! second `s` only counts words tagged `s`. Different seconds use different slots, so a
//! thread that read the clock just before a boundary and counts just after still counts into
//! its own second's slot, not the new one.
//!
//! What is left is a thread that stalls for a whole minute between reading the clock and
//! counting: its count can land in (or reset) a slot that now belongs to another second. The
//! chart is off by that count for one second; the counters behind `/metrics` are exact.
//!
//! # The clock
//!
//! Seconds are counted on the monotonic clock from the [`Epoch`], one window
//! ([`HISTORY_SECONDS`]) before the first moment anything asked for the time here, so that
//! even the first second has a whole window behind it. A wall clock set back or forward
//! changes nothing, and a request pays no clock read of its own: the proxy's `Instant` taken
//! at the end of the response serves for the duration and the second. The Unix time of the
//! epoch, taken once, turns these seconds into times of day for the page
//! ([`Series::in_unix_time`]). The functions that count take the second as an argument, so
//! the tests pass their own clock.
//!
//! Each slot holds its own duration histogram (the buckets of [`DURATION_BUCKETS`]), so the
//! median and 99th percentile of each second are read as for the whole run
//! ([`Histogram::quantile`](super::Histogram::quantile)).

use super::{DURATION_BUCKETS, bucket_quantile};
use crate::poison::IgnorePoison;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How many seconds the history covers, the current one included.
pub const HISTORY_SECONDS: usize = 60;
/// Most state changes kept per backend. A backend flapping faster than this in a minute
/// shows its last ones; the console has them all.
pub const MAX_EVENTS: usize = 16;

/// Low 32 bits of a tagged word: the count.
const COUNT: u64 = 0xFFFF_FFFF;

/// One second's counts, each a tagged word (see the module documentation).
#[derive(Debug, Default)]
struct Slot {
    /// Responses relayed.
    answered: AtomicU64,
    /// Attempts that failed: connection not made, response broken or timed out.
    failed: AtomicU64,
    /// Responses relayed with a `5xx` status.
    server_errors: AtomicU64,
    /// Durations of the responses relayed whole, by bucket of [`DURATION_BUCKETS`], the
    /// overflow last.
    durations: [AtomicU64; DURATION_BUCKETS.len() + 1],
}

/// What a backend that never counted anything reads as.
static EMPTY: Slot = Slot {
    answered: AtomicU64::new(0),
    failed: AtomicU64::new(0),
    server_errors: AtomicU64::new(0),
    durations: [const { AtomicU64::new(0) }; DURATION_BUCKETS.len() + 1],
};

/// A change of a backend's state, to mark on the time axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When, in milliseconds since the [`Epoch`].
    pub time_ms: u64,
    /// `DOWN`, `UP`, `DRAINING` or `ENABLED`.
    pub state: &'static str,
    /// Why (for `DOWN` and `UP`; empty for the admin's drain and enable).
    pub reason: String,
}

/// A backend's last [`HISTORY_SECONDS`] seconds. See the module documentation.
#[derive(Debug)]
pub struct History {
    /// The ring, allocated at the first count.
    slots: OnceLock<Box<[Slot; HISTORY_SECONDS]>>,
    /// State changes, oldest first, at most [`MAX_EVENTS`]. A lock, but one taken only when a
    /// backend changes state and when the page reads it, never for an ordinary request.
    events: Mutex<VecDeque<Event>>,
}

impl Default for History {
    fn default() -> Self {
        History {
            slots: OnceLock::new(),
            events: Mutex::new(VecDeque::new()),
        }
    }
}

/// The history read at one moment: entry `i` of each list is the `i`th second from
/// `start_ms`, the last one the current (still filling) second. Times are in milliseconds
/// since the [`Epoch`] as read, since the Unix epoch after [`Series::in_unix_time`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// When the first second of the window began.
    pub start_ms: u64,
    /// Responses relayed, per second.
    pub answered: Vec<u64>,
    /// Failed attempts (connect errors and failed responses), per second.
    pub failed: Vec<u64>,
    /// Responses relayed with a `5xx` status, per second.
    pub server_errors: Vec<u64>,
    /// Median duration of the second's responses (bucket upper bound, `INFINITY` past the
    /// last bucket); `None` in a second without responses.
    pub p50: Vec<Option<f64>>,
    /// 99th percentile duration, as [`Series::p50`].
    pub p99: Vec<Option<f64>>,
    /// State changes in the window, oldest first.
    pub events: Vec<Event>,
}

/// The origin of the history's time: [`HISTORY_SECONDS`] before the moment `read` on the
/// monotonic clock, whose Unix time was `unix`.
#[derive(Debug, Clone, Copy)]
pub struct Epoch {
    read: Instant,
    unix: Duration,
}

/// How far the [`Epoch`] lies before its first reading: one window.
const LEAD: Duration = Duration::from_secs(HISTORY_SECONDS as u64);

/// Set the first time it is used.
static EPOCH: LazyLock<Epoch> = LazyLock::new(|| Epoch {
    read: Instant::now(),
    unix: SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default(),
});

/// Time since the [`Epoch`] at `t` (at least one window).
pub fn since_epoch(t: Instant) -> Duration {
    t.saturating_duration_since(EPOCH.read) + LEAD
}

/// The second (since the [`Epoch`]) that `t` falls in.
pub fn second(t: Instant) -> u64 {
    since_epoch(t).as_secs()
}

/// The second (since the [`Epoch`]) now.
pub fn current_second() -> u64 {
    second(Instant::now())
}

impl Series {
    /// The same series with its times counted from the Unix epoch, for the page.
    pub fn in_unix_time(mut self) -> Series {
        let epoch = EPOCH.unix.saturating_sub(LEAD);
        let offset = u64::try_from(epoch.as_millis()).unwrap_or(u64::MAX);
        self.start_ms = self.start_ms.saturating_add(offset);
        for e in &mut self.events {
            e.time_ms = e.time_ms.saturating_add(offset);
        }
        self
    }
}

/// Counts one in `word` for `second` (see the module documentation).
fn bump(word: &AtomicU64, second: u64) {
    let tag = second & COUNT;
    let mut seen = word.load(Ordering::Relaxed);
    loop {
        if seen >> 32 == tag {
            word.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match word.compare_exchange_weak(seen, tag << 32 | 1, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => return,
            Err(now) => seen = now,
        }
    }
}

/// What `word` counted in `second`: zero if it carries another second.
fn read(word: &AtomicU64, second: u64) -> u64 {
    let w = word.load(Ordering::Relaxed);
    if w >> 32 == second & COUNT {
        w & COUNT
    } else {
        0
    }
}

impl History {
    /// The slot of `second`, for counting (the ring is allocated on first use).
    fn slot(&self, second: u64) -> &Slot {
        let slots = self
            .slots
            .get_or_init(|| Box::new(std::array::from_fn(|_| Slot::default())));
        &slots[(second % HISTORY_SECONDS as u64) as usize]
    }

    /// The slot of `second`, for reading: an empty one while nothing was ever counted.
    fn read_slot(&self, second: u64) -> &Slot {
        self.slots.get().map_or(&EMPTY, |slots| {
            &slots[(second % HISTORY_SECONDS as u64) as usize]
        })
    }

    /// Counts a response relayed in `second` with `status`.
    pub fn answered(&self, second: u64, status: u16) {
        let slot = self.slot(second);
        bump(&slot.answered, second);
        if status >= 500 {
            bump(&slot.server_errors, second);
        }
    }

    /// Counts, in `second`, a response that took a duration in `bucket` (an index into
    /// [`DURATION_BUCKETS`], or its length for longer).
    pub fn took(&self, second: u64, bucket: usize) {
        bump(&self.slot(second).durations[bucket], second);
    }

    /// Counts a failed attempt in `second`.
    pub fn failed(&self, second: u64) {
        bump(&self.slot(second).failed, second);
    }

    /// Records a change of state now.
    pub fn event_now(&self, state: &'static str, reason: &str) {
        self.event(since_epoch(Instant::now()), state, reason);
    }

    /// Records a change of state at `time` (since the [`Epoch`]).
    pub fn event(&self, time: Duration, state: &'static str, reason: &str) {
        let mut events = self.events.lock().ignore_poison();
        if events.len() == MAX_EVENTS {
            events.pop_front();
        }
        events.push_back(Event {
            time_ms: u64::try_from(time.as_millis()).unwrap_or(u64::MAX),
            state,
            reason: reason.to_string(),
        });
    }

    /// When the last `state` change kept here happened, on the wall clock (`None` if none
    /// is kept): "DOWN since" in a routing decision's explanation.
    pub fn last_event_time(&self, state: &str) -> Option<SystemTime> {
        let events = self.events.lock().ignore_poison();
        let e = events.iter().rev().find(|e| e.state == state)?;
        let epoch = EPOCH.unix.saturating_sub(LEAD);
        Some(UNIX_EPOCH + epoch + Duration::from_millis(e.time_ms))
    }

    /// The [`HISTORY_SECONDS`] seconds that end with second `now`.
    pub fn series(&self, now: u64) -> Series {
        let start = now.saturating_sub(HISTORY_SECONDS as u64 - 1);
        let mut s = Series {
            start_ms: start.saturating_mul(1000),
            answered: Vec::with_capacity(HISTORY_SECONDS),
            failed: Vec::with_capacity(HISTORY_SECONDS),
            server_errors: Vec::with_capacity(HISTORY_SECONDS),
            p50: Vec::with_capacity(HISTORY_SECONDS),
            p99: Vec::with_capacity(HISTORY_SECONDS),
            events: Vec::new(),
        };
        for second in start..=now {
            let slot = self.read_slot(second);
            s.answered.push(read(&slot.answered, second));
            s.failed.push(read(&slot.failed, second));
            s.server_errors.push(read(&slot.server_errors, second));
            let counts: [u64; DURATION_BUCKETS.len() + 1] =
                std::array::from_fn(|i| read(&slot.durations[i], second));
            s.p50.push(bucket_quantile(&counts, 0.5));
            s.p99.push(bucket_quantile(&counts, 0.99));
        }
        let from_ms = start.saturating_mul(1000);
        let until_ms = (now + 1).saturating_mul(1000);
        s.events = self
            .events
            .lock()
            .ignore_poison()
            .iter()
            .filter(|e| (from_ms..until_ms).contains(&e.time_ms))
            .cloned()
            .collect();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::bucket_index;
    use std::sync::Arc;

    /// A second (since the epoch) whose slot is 0: `T0 % 60 == 0`.
    const T0: u64 = 3_600;

    #[test]
    fn each_second_has_its_own_bucket() {
        let h = History::default();
        // Second T0: 3 answers (one 503), T0+1: 1 answer and 2 failures, T0+2: nothing.
        for status in [200, 503, 200] {
            h.answered(T0, status);
        }
        h.answered(T0 + 1, 200);
        h.failed(T0 + 1);
        h.failed(T0 + 1);
        let s = h.series(T0 + 3);
        assert_eq!(s.start_ms, (T0 + 3 - 59) * 1000);
        assert_eq!(s.answered.len(), HISTORY_SECONDS);
        // The window ends with the current second: T0 is 4th from the end.
        assert_eq!(s.answered[56..], [3, 1, 0, 0]);
        assert_eq!(s.failed[56..], [0, 2, 0, 0]);
        assert_eq!(s.server_errors[56..], [1, 0, 0, 0]);
        assert_eq!(s.answered[..56].iter().sum::<u64>(), 0);
    }

    #[test]
    fn the_ring_wraps_around_without_mixing_minutes() {
        let h = History::default();
        // Second T0 and, a minute later, T0 + 60 share slot 0.
        for _ in 0..5 {
            h.answered(T0, 200);
        }
        h.answered(T0 + 59, 200);
        // At T0 + 59, T0 is the first second of the window.
        let s = h.series(T0 + 59);
        assert_eq!((s.answered[0], s.answered[59]), (5, 1));
        // One second later it has left the window, though nothing reset its slot yet.
        let s = h.series(T0 + 60);
        assert_eq!(s.answered[59], 0, "T0's 5 do not show as T0+60's");
        assert_eq!(s.answered[58], 1);
        // The first count in T0 + 60 starts the slot over.
        h.answered(T0 + 60, 200);
        h.answered(T0 + 60, 200);
        let s = h.series(T0 + 60);
        assert_eq!((s.answered[58], s.answered[59]), (1, 2));
        assert_eq!(s.answered.iter().sum::<u64>(), 3);
        // Two minutes of silence: nothing left in the window.
        let s = h.series(T0 + 200);
        assert!(s.answered.iter().all(|&n| n == 0));
    }

    #[test]
    fn a_late_count_keeps_to_its_own_second() {
        let h = History::default();
        h.answered(T0 + 1, 200);
        // A thread that read the clock at T0 counts after T0 + 1 began: it has its own slot.
        h.answered(T0, 200);
        let s = h.series(T0 + 1);
        assert_eq!(s.answered[58..], [1, 1]);
    }

    #[test]
    fn percentiles_per_second() {
        let h = History::default();
        let fast = bucket_index(Duration::from_micros(300));
        let slow = bucket_index(Duration::from_millis(40));
        for _ in 0..98 {
            h.took(T0, fast);
        }
        for _ in 0..2 {
            h.took(T0, slow);
        }
        h.took(T0 + 1, bucket_index(Duration::from_secs(9)));
        let s = h.series(T0 + 2);
        assert_eq!((s.p50[57], s.p99[57]), (Some(0.0005), Some(0.05)));
        assert_eq!(s.p99[58], Some(f64::INFINITY));
        assert_eq!((s.p50[59], s.p99[59]), (None, None));
    }

    #[test]
    fn events_in_the_window_and_at_most_max_events() {
        let h = History::default();
        h.event(Duration::from_secs(T0 - 100), "DOWN", "too old");
        h.event(Duration::from_millis(T0 * 1000 + 250), "DOWN", "refused");
        h.event(Duration::from_secs(T0 + 5), "UP", "a request succeeded");
        let s = h.series(T0 + 10);
        let shown: Vec<_> = s.events.iter().map(|e| (e.time_ms, e.state)).collect();
        assert_eq!(shown, [(T0 * 1000 + 250, "DOWN"), ((T0 + 5) * 1000, "UP")]);
        for i in 0..MAX_EVENTS as u64 + 3 {
            h.event(
                Duration::from_secs(T0 + 6) + Duration::from_millis(i),
                "DRAINING",
                "",
            );
        }
        let s = h.series(T0 + 10);
        assert_eq!(s.events.len(), MAX_EVENTS);
        assert_eq!(
            s.events[0].time_ms,
            (T0 + 6) * 1000 + 3,
            "the oldest went first"
        );
    }

    #[test]
    fn the_real_clock_has_a_whole_window_from_the_start() {
        let h = History::default();
        let now = current_second();
        h.answered(now, 200);
        let s = h.series(now).in_unix_time();
        assert_eq!(s.answered.len(), HISTORY_SECONDS);
        assert_eq!(s.answered[HISTORY_SECONDS - 1], 1);
        // The window ends with the current second of the wall clock (a second of slack for
        // the two clocks read at different moments).
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let wall = u64::try_from(wall.as_millis()).unwrap();
        let end = s.start_ms + HISTORY_SECONDS as u64 * 1000;
        assert!(end - 2000 <= wall && wall <= end + 1000, "{end} {wall}");
    }

    #[test]
    fn threads_rolling_over_together_lose_nothing() {
        // Round after round, four threads start counting at the same moment into a second
        // whose slot still holds the second a minute before: they race to start the slot
        // over, then to add, and every count must arrive. A lost update shows as a short
        // count (the race is likely, not certain: a plain load-and-store in place of the
        // `fetch_add` failed this test in 3 runs of 4).
        const THREADS: usize = 4;
        const ROUNDS: u64 = 20;
        const EACH: u64 = 5_000;
        let h = Arc::new(History::default());
        let start = Arc::new(std::sync::Barrier::new(THREADS + 1));
        let done = Arc::new(std::sync::Barrier::new(THREADS + 1));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (h, start, done) = (Arc::clone(&h), Arc::clone(&start), Arc::clone(&done));
                std::thread::spawn(move || {
                    for round in 1..=ROUNDS {
                        start.wait();
                        for _ in 0..EACH {
                            h.answered(T0 + 60 * round, 200);
                        }
                        done.wait();
                    }
                })
            })
            .collect();
        for round in 1..=ROUNDS {
            start.wait();
            done.wait();
            let s = h.series(T0 + 60 * round);
            assert_eq!(s.answered[59], THREADS as u64 * EACH, "round {round}");
        }
        for t in threads {
            t.join().unwrap();
        }
    }
}
