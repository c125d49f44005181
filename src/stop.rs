//! The one way this crate stops a background thread that works on a timer: the health
//! checker ([`crate::backends::checker`]), the backends-file watcher
//! ([`crate::backends::file`]) and the access log's writer ([`crate::log::Writer`]).
//!
//! Such a thread does its work, sleeps an interval, and again. Stopping it must not wait for
//! the interval to run out (a `SIGTERM` would then take up to a whole `--health-interval`).
//! So the thread sleeps on a [`Sleeper`] and its owner holds a [`Stopper`]:
//!
//! ```
//! use load_balancer::stop::{Stopper, Woke};
//! use std::time::Duration;
//!
//! let ticker = Stopper::spawn("ticker", |sleeper| {
//!     while sleeper.sleep(Duration::from_secs(60)) != Woke::Stop {
//!         // the work, once a minute
//!     }
//! })
//! .unwrap();
//! drop(ticker); // stops the thread at once, and joins it
//! ```
//!
//! The Rust Book's `ThreadPool` stops its workers by dropping the sender of their channel:
//! `recv_timeout` wakes on that drop as on a message, which would do here too. A flag under
//! a lock says it more directly: "stopped" is a state, not a message, and
//! [`Condvar::wait_timeout_while`] sleeps until it is set or the time is up, whatever
//! spurious wake-ups happen on the way. (`SIGHUP` does not wake these threads: it reloads
//! through [`crate::reload`], which reads the backends file itself.)

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
    /// The time was up.
    Time,
}

/// What a background thread sleeps on, shared with its [`Stopper`].
#[derive(Debug, Default)]
pub struct Sleeper {
    stopped: Mutex<bool>,
    /// Rung when `stopped` is set.
    bell: Condvar,
}

impl Sleeper {
    /// Sleeps up to `interval`, less if the thread is stopped; once stopped, every sleep
    /// returns [`Woke::Stop`] at once.
    pub fn sleep(&self, interval: Duration) -> Woke {
        let stopped = self.stopped.lock().ignore_poison();
        let (stopped, _) = self
            .bell
            .wait_timeout_while(stopped, interval, |stopped| !*stopped)
            .ignore_poison();
        if *stopped { Woke::Stop } else { Woke::Time }
    }

    /// Sleeps until `deadline` (not at all if it has passed), less if stopped.
    pub fn sleep_until(&self, deadline: Instant) -> Woke {
        self.sleep(deadline.saturating_duration_since(Instant::now()))
    }

    /// Sets `stopped` and rings the bell.
    fn stop(&self) {
        *self.stopped.lock().ignore_poison() = true;
        self.bell.notify_all();
    }
}

/// A running background thread: dropping the `Stopper` (or [`Stopper::stop`]) stops it,
/// waking it at once, and waits for it to end (the work it is doing, if any, finishes first).
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

    /// Stops the thread and waits for it (what dropping the `Stopper` does).
    pub fn stop(self) {}
}

impl Drop for Stopper {
    fn drop(&mut self) {
        self.sleeper.stop();
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
    fn the_time_runs_out_without_a_stop() {
        let (stopper, rx) = reporter(Duration::from_millis(1));
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(Woke::Time));
        drop(stopper);
    }

    #[test]
    fn a_stop_stays() {
        let sleeper = Sleeper::default();
        sleeper.stop();
        assert_eq!(sleeper.sleep(Duration::from_secs(3600)), Woke::Stop);
        assert_eq!(sleeper.sleep_until(Instant::now()), Woke::Stop);
    }
}
