//! What both fuzzers share: a small seeded generator, the environment variables that replay
//! or lengthen a run, and a count of panics in the balancer's threads.

use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough to pick mutations.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// A generator for one `key` (a request's token) under `seed`: the same pair always
    /// gives the same numbers, whichever thread asks first.
    pub fn keyed(seed: u64, key: &str) -> Rng {
        let mut rng = Rng(seed);
        for &b in key.as_bytes() {
            rng.0 ^= u64::from(b);
            rng.next();
        }
        rng
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The seed of a fuzz run: `FUZZ_SEED` (decimal or `0x` hex) if set, else `default`.
pub fn seed(default: u64) -> u64 {
    match std::env::var("FUZZ_SEED") {
        Ok(text) => {
            let text = text.trim();
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
                None => text.replace('_', "").parse(),
            };
            parsed.unwrap_or_else(|_| panic!("FUZZ_SEED={text:?} is not a number"))
        }
        Err(_) => default,
    }
}

/// How many iterations a fuzz run makes: `FUZZ_ITERATIONS` if set, else `default`.
pub fn iterations(default: usize) -> usize {
    std::env::var("FUZZ_ITERATIONS")
        .ok()
        .map(|t| {
            t.parse()
                .unwrap_or_else(|_| panic!("FUZZ_ITERATIONS={t:?}"))
        })
        .unwrap_or(default)
}

static PANICS: AtomicUsize = AtomicUsize::new(0);
static HOOK: Once = Once::new();

/// Panics so far in threads of the balancer and the demo backends, counted from the first
/// call on. The library names each of its threads; the test harness names its threads after
/// the tests (`module::name`), and a test's own helper threads have no name, so those are not
/// counted (a test that panics there fails on its own).
pub fn balancer_panics() -> usize {
    HOOK.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let ours = thread
                .name()
                .is_some_and(|n| !n.contains("::") && n != "main" && !n.starts_with("scripted"));
            if ours {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default_hook(info);
        }));
    });
    PANICS.load(Ordering::SeqCst)
}
