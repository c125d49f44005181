//! Spare connection threads: a thread that finished its connection waits a while for the next
//! one instead of exiting.
//!
//! The chapter's server handles one request at a time; [`crate::server`] gives every client
//! connection its own thread. Starting a thread costs more than a short request: a stack to
//! map, a guard page, signal and scheduler set-up, about fifteen system calls, and as many
//! again when it exits. With `Connection: close` clients that is paid for every request. So a
//! thread whose connection ended parks here for up to [`SPARE_IDLE`], and the accept loop
//! hands the next connection to a parked thread when there is one. Each thread still serves
//! one connection at a time; only the start-up is saved. Apache httpd's worker MPM keeps spare
//! threads for the same reason (`MaxSpareThreads`).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most threads parked at once; more exit when their connection ends. Apache httpd's
/// `MaxSpareThreads` default (worker MPM) is 250.
pub const SPARE_MAX: usize = 250;
/// How long a parked thread waits for a connection before it exits, so that the threads of a
/// burst do not stay around for good.
pub const SPARE_IDLE: Duration = Duration::from_secs(10);

/// A connection to serve, as handed to a thread.
pub type Job = Box<dyn FnOnce() + Send>;

/// Parked threads and the connections handed to them.
#[derive(Debug, Default)]
pub struct Spares {
    state: Mutex<State>,
    ready: Condvar,
}

#[derive(Default)]
struct State {
    /// Jobs handed off and not yet picked up; never more than `parked`.
    jobs: VecDeque<Job>,
    /// Threads waiting in [`Spares::next`].
    parked: usize,
    /// The balancer stopped: parked threads exit.
    closed: bool,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("jobs", &self.jobs.len())
            .field("parked", &self.parked)
            .field("closed", &self.closed)
            .finish()
    }
}

impl Spares {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives `job` to a parked thread; hands it back when none is free (the caller then starts
    /// a thread for it).
    ///
    /// # Errors
    /// The job itself, when no parked thread is free to take it.
    pub fn hand_off(&self, job: Job) -> Result<(), Job> {
        let mut state = self.lock();
        // Every queued job has a parked thread of its own: a thread leaves only when no job
        // waits (see `next`), so the job cannot be stranded.
        if state.closed || state.parked <= state.jobs.len() {
            return Err(job);
        }
        state.jobs.push_back(job);
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// Called by a thread whose job is done: waits up to [`SPARE_IDLE`] for the next one.
    /// `None`: the thread should exit (enough are parked already, none came, or the balancer
    /// stopped).
    pub fn next(&self) -> Option<Job> {
        let mut state = self.lock();
        if state.closed || state.parked >= SPARE_MAX {
            return None;
        }
        state.parked += 1;
        let deadline = Instant::now() + SPARE_IDLE;
        loop {
            if let Some(job) = state.jobs.pop_front() {
                state.parked -= 1;
                return Some(job);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || state.closed {
                state.parked -= 1;
                return None;
            }
            state = self
                .ready
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Threads parked right now.
    pub fn parked(&self) -> usize {
        self.lock().parked
    }

    /// Stops parking: parked threads exit (after any job already handed to them), and
    /// [`Spares::hand_off`] takes no more.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc;

    #[test]
    fn a_parked_thread_takes_the_next_job_and_close_ends_it() {
        let spares = Arc::new(Spares::default());
        let none_parked: Job = Box::new(|| {});
        assert!(
            spares.hand_off(none_parked).is_err(),
            "nobody is parked yet"
        );

        let (done_tx, done_rx) = mpsc::channel();
        let thread = {
            let spares = Arc::clone(&spares);
            std::thread::spawn(move || {
                let mut served = 0;
                while let Some(job) = spares.next() {
                    job();
                    served += 1;
                }
                served
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while spares.parked() == 0 {
            assert!(Instant::now() < deadline, "the thread never parked");
            std::thread::yield_now();
        }
        let job: Job = Box::new(move || done_tx.send("served").unwrap());
        assert!(spares.hand_off(job).is_ok());
        assert_eq!(done_rx.recv_timeout(Duration::from_secs(5)), Ok("served"));
        spares.close();
        assert_eq!(thread.join().unwrap(), 1);
        assert!(spares.hand_off(Box::new(|| {})).is_err(), "closed");
    }
}
