//! The one way this crate stops a background thread that works on a timer: the health
//! checker ([`crate::backends::checker`]), the backends-file watcher
//! ([`crate::backends::file`]) and the access log's writer ([`crate::log::Writer`]).
//!
//! Such a thread does its work, sleeps an interval, and again. Stopping it must not wait for
//! the interval to run out (a `SIGTERM` would then take up to a whole `--health-interval`),
//! and the file watcher must also be woken early to read its file now. So the thread sleeps
//! on a [`Sleeper`] and its owner holds a [`Stopper`]:
//!
//! ```
//! use load_balancer::stop::{Stopper, Woke};
//! use std::time::Duration;
//!
//! let ticker = Stopper::spawn("ticker", |sleeper| {
//!     while sleeper.sleep(Duration::from_secs(60)) != Woke::Stop {
//!         // the work, once a minute or when woken
//!     }
//! })
//! .unwrap();
//! ticker.wake(); // a round now
//! drop(ticker); // stops the thread at once, and joins it
//! ```
//!
//! Why a condition variable, and not a channel: the Rust Book's `ThreadPool` stops its
//! workers by dropping the sender of their channel, and `recv_timeout` wakes on a message and
//! on that drop alike, which is neat. But a wake-up sent as a message queues: two `SIGHUP`s
//! would be two reads of the file, and a wake-up still queued at a stop is delivered before
//! the disconnection, so the stop would first wait for one more round of work. Here stop and
//! wake-now are two flags under one lock, and [`Condvar::wait_timeout_while`] sleeps until
//! either is set or the time is up, whatever spurious wake-ups happen on the way: wake-ups
//! merge into one, and a stop wins over a wake-up.

use crate::poison::IgnorePoison;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Why [`Sleeper::sleep`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// The owner stops the thread: it returns without further work.
    Stop,
    /// The owner asked for work now ([`Stopper::wake`]).
    Now,
    /// The time was up.
    Time,
}

/// What a background thread sleeps on, shared with its [`Stopper`].
#[derive(Debug, Default)]
pub struct Sleeper {
    flags: Mutex<Flags>,
    /// Rung when a flag is set.
    bell: Condvar,
}

/// The requests of the owner, set under the [`Sleeper`]'s lock.
#[derive(Debug, Default)]
struct Flags {
    stop: bool,
    now: bool,
}

impl Sleeper {
    /// Sleeps up to `interval`, less if the thread is stopped or woken; a wake-up is used up
    /// by the sleep it ends, a stop is not (every later sleep returns [`Woke::Stop`] at once).
    pub fn sleep(&self, interval: Duration) -> Woke {
        let (mut flags, _) = self
            .bell
            .wait_timeout_while(self.flags.lock().ignore_poison(), interval, |f| {
                !f.stop && !f.now
            })
            .ignore_poison();
        if flags.stop {
            Woke::Stop
        } else if std::mem::take(&mut flags.now) {
            Woke::Now
        } else {
            Woke::Time
        }
    }

    /// Sleeps until `deadline` (not at all if it has passed), less if stopped or woken.
    pub fn sleep_until(&self, deadline: Instant) -> Woke {
        self.sleep(deadline.saturating_duration_since(Instant::now()))
    }

    /// Sets a flag and rings the bell.
    fn ring(&self, set: impl FnOnce(&mut Flags)) {
        set(&mut self.flags.lock().ignore_poison());
        self.bell.notify_all();
    }
}

/// A running background thread: [`Stopper::wake`] asks it to work now, and dropping the
/// `Stopper` (or [`Stopper::stop`]) stops it, waking it at once, and waits for it to end
/// (the work it is doing, if any, finishes first).
#[derive(Debug)]
pub struct Stopper {
    sleeper: Arc<Sleeper>,
    thread: Option<JoinHandle<()>>,
}

impl Stopper {
    /// Starts the thread `name`, which runs `run` with its [`Sleeper`].
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn spawn<F>(name: &str, run: F) -> io::Result<Stopper>
    where
        F: FnOnce(&Sleeper) + Send + 'static,
    {
        let sleeper = Arc::new(Sleeper::default());
        let thread = {
            let sleeper = Arc::clone(&sleeper);
            thread::Builder::new()
                .name(name.into())
                .spawn(move || run(&sleeper))?
        };
        Ok(Stopper {
            sleeper,
            thread: Some(thread),
        })
    }

    /// Ends the thread's sleep now, with [`Woke::Now`]; wake-ups made before it next sleeps
    /// count as one.
    pub fn wake(&self) {
        self.sleeper.ring(|f| f.now = true);
    }

    /// Stops the thread and waits for it (what dropping the `Stopper` does).
    pub fn stop(self) {}
}

impl Drop for Stopper {
    fn drop(&mut self) {
        self.sleeper.ring(|f| f.stop = true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A thread that reports each wake-up on a channel, sleeping `interval` between them.
    fn reporter(interval: Duration) -> (Stopper, mpsc::Receiver<Woke>) {
        let (tx, rx) = mpsc::channel();
        let stopper = Stopper::spawn("test-stop", move |sleeper| {
            loop {
                let woke = sleeper.sleep(interval);
                let _ = tx.send(woke);
                if woke == Woke::Stop {
                    return;
                }
            }
        })
        .unwrap();
        (stopper, rx)
    }

    #[test]
    fn a_stop_ends_a_long_sleep_at_once_and_joins() {
        let (stopper, rx) = reporter(Duration::from_secs(3600));
        let started = Instant::now();
        stopper.stop();
        // Joined: the thread has sent its last report, and it was the stop.
        assert_eq!(rx.try_recv(), Ok(Woke::Stop));
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "waited the interval"
        );
    }

    #[test]
    fn a_wake_ends_one_sleep_and_the_next_runs_its_time() {
        let (stopper, rx) = reporter(Duration::from_secs(3600));
        stopper.wake();
        let deadline = Duration::from_secs(10);
        assert_eq!(rx.recv_timeout(deadline), Ok(Woke::Now));
        drop(stopper);
        // Used up: the thread slept again until the stop (joined, so nothing more comes).
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [Woke::Stop]);
    }

    #[test]
    fn the_time_runs_out_without_a_wake() {
        let (stopper, rx) = reporter(Duration::from_millis(1));
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(Woke::Time));
        drop(stopper);
    }

    #[test]
    fn a_stop_wins_over_a_wake_and_stays() {
        let sleeper = Sleeper::default();
        sleeper.ring(|f| f.now = true);
        sleeper.ring(|f| f.stop = true);
        assert_eq!(sleeper.sleep(Duration::from_secs(3600)), Woke::Stop);
        assert_eq!(sleeper.sleep_until(Instant::now()), Woke::Stop);
    }
}
