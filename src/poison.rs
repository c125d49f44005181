//! One way to take a lock that a panic may have poisoned.
//!
//! A thread that panics while it holds a `Mutex` (or an `RwLock`, or waits on a `Condvar`)
//! marks the lock "poisoned", and every later `lock()` returns `Err`, to warn that the data
//! may be half-changed. Everything the balancer keeps behind a lock (a counter, a list of
//! backends swapped whole, a queue of lines) is whole after every statement, so a panic
//! elsewhere leaves nothing half-done: the right answer is to carry on with the data, and
//! not to let one panicked connection thread take every other one down with it.
//! `chapter.rs` writes that out once (`unwrap_or_else(|poisoned| poisoned.into_inner())`);
//! the crate says it with [`IgnorePoison::ignore_poison`], everywhere the same.

use std::sync::{LockResult, PoisonError};

/// `.ignore_poison()` on what `lock`, `read`, `write` and a `Condvar`'s waits return: the
/// guard, poisoned or not.
pub trait IgnorePoison<Guard> {
    /// The guard, whether or not a thread panicked while holding the lock.
    fn ignore_poison(self) -> Guard;
}

impl<Guard> IgnorePoison<Guard> for LockResult<Guard> {
    fn ignore_poison(self) -> Guard {
        self.unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_lock_poisoned_by_a_panic_still_gives_its_data() {
        let shared = Arc::new(Mutex::new(41));
        let holder = Arc::clone(&shared);
        let panicked = std::thread::spawn(move || {
            let mut n = holder.lock().ignore_poison();
            *n += 1;
            panic!("while holding the lock");
        })
        .join();
        assert!(panicked.is_err());
        assert!(shared.lock().is_err(), "the lock is poisoned");
        assert_eq!(*shared.lock().ignore_poison(), 42);
    }
}
