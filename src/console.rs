//! Lines for the console that never make their caller wait: errors for stderr, notices for
//! stdout, each through a bounded buffer and a writer thread of its own.
//!
//! `eprintln!` writes under stderr's lock and waits as long as the write does. When stderr is
//! a pipe that nobody reads (a stuck log shipper, a full journald), the first thread to log
//! blocks inside the write and every later one waits on the lock: on a request's path, each of
//! them keeps its connection slot, and after about a thousand bad requests the balancer had no
//! slot left. Here a caller only appends its line to memory ([`error`], [`notice`]); a thread
//! per stream writes it out. When a stream does not keep up and [`MAX_PENDING`] bytes are
//! waiting, further lines are dropped and counted ([`dropped`], `lb_log_lines_dropped_total`
//! on `/metrics`), and once the stream moves again one line says how many were lost.
//!
//! Start-up errors (a bad flag, a port in use) are still printed directly by `main`: nothing
//! is served yet, and the process is about to exit.

use crate::poison::IgnorePoison;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Most text kept waiting for one stream; past it, lines are dropped and counted.
pub const MAX_PENDING: usize = 256 * 1024;

/// Lines dropped (console and access log) because their stream did not keep up.
static DROPPED: AtomicU64 = AtomicU64::new(0);

static ERRORS: Sink = Sink::new(Stream::Stderr);
static NOTICES: Sink = Sink::new(Stream::Stdout);

/// Queues an error line for stderr (a newline is added). Never waits for stderr.
pub fn error(line: fmt::Arguments<'_>) {
    ERRORS.push(line);
}

/// Queues a notice for stdout (a newline is added), such as a backend added through the
/// admin API. Never waits for stdout.
pub fn notice(line: fmt::Arguments<'_>) {
    NOTICES.push(line);
}

/// Lines dropped since start because stdout or stderr did not keep up: console lines here,
/// and access-log lines ([`crate::log::AccessLog`]).
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Counts `n` lines dropped elsewhere (the access log), in [`dropped`].
pub fn count_dropped(n: u64) {
    DROPPED.fetch_add(n, Ordering::Relaxed);
}

/// Waits up to `limit` for the lines queued so far to be written (before the process exits).
/// Returns false if some were still waiting: a stream that is not read cannot hold up exit.
pub fn flush(limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    ERRORS.wait_written(deadline) & NOTICES.wait_written(deadline)
}

#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// One stream's queue, and its writer thread (started with the first line).
struct Sink {
    stream: Stream,
    state: Mutex<Queue>,
    /// Signalled when a line is queued, and when a batch has been written.
    changed: Condvar,
    writer: OnceLock<bool>,
}

#[derive(Default)]
struct Queue {
    text: String,
    /// Lines dropped since the last batch was taken.
    dropped: u64,
    /// A batch is being written.
    busy: bool,
}

impl Queue {
    /// Is something waiting to be written, or being written?
    fn pending(&self) -> bool {
        self.busy || !self.text.is_empty() || self.dropped > 0
    }
}

impl Sink {
    const fn new(stream: Stream) -> Sink {
        Sink {
            stream,
            state: Mutex::new(Queue {
                text: String::new(),
                dropped: 0,
                busy: false,
            }),
            changed: Condvar::new(),
            writer: OnceLock::new(),
        }
    }

    fn push(&'static self, line: fmt::Arguments<'_>) {
        // Formatted before the lock is taken, so the lock is held only to copy text.
        let mut text = line.to_string();
        text.push('\n');
        let started = *self.writer.get_or_init(|| self.start());
        let mut queue = self.state.lock().ignore_poison();
        if !started {
            // No thread could be started: write inline rather than lose errors silently.
            drop(queue);
            self.write(&text);
            return;
        }
        if queue.text.len() + text.len() > MAX_PENDING {
            queue.dropped += 1;
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        queue.text.push_str(&text);
        drop(queue);
        self.changed.notify_all();
    }

    fn start(&'static self) -> bool {
        let name = match self.stream {
            Stream::Stdout => "console-out",
            Stream::Stderr => "console-err",
        };
        thread::Builder::new()
            .name(name.into())
            .spawn(move || self.run())
            .is_ok()
    }

    /// The writer: takes what is queued, writes it outside the lock, and again.
    fn run(&self) {
        let mut queue = self.state.lock().ignore_poison();
        loop {
            if queue.text.is_empty() && queue.dropped == 0 {
                queue.busy = false;
                self.changed.notify_all();
                queue = self.changed.wait(queue).ignore_poison();
                continue;
            }
            queue.busy = true;
            let mut batch = std::mem::take(&mut queue.text);
            let dropped = std::mem::take(&mut queue.dropped);
            drop(queue);
            if dropped > 0 {
                batch.push_str(&format!(
                    "[LoadBalancer] {dropped} log lines dropped: {} is not keeping up\n",
                    self.name()
                ));
            }
            self.write(&batch);
            queue = self.state.lock().ignore_poison();
        }
    }

    fn name(&self) -> &'static str {
        match self.stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn write(&self, text: &str) {
        // Nothing useful can be done when the stream is gone; the balancer keeps serving.
        let _ = match self.stream {
            Stream::Stdout => std::io::stdout().lock().write_all(text.as_bytes()),
            Stream::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
        };
        if let Stream::Stdout = self.stream {
            let _ = std::io::stdout().flush();
        }
    }

    /// Waits until nothing is queued or being written, or until `deadline`; false if
    /// something still was then. (Lines are queued only once the writer thread runs, so this
    /// never waits for a writer that is not there.)
    fn wait_written(&self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        let (queue, _) = self
            .changed
            .wait_timeout_while(self.state.lock().ignore_poison(), left, |q| q.pending())
            .ignore_poison();
        !queue.pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_written_and_flush_waits_for_them() {
        notice(format_args!("[Test] console notice"));
        assert!(flush(Duration::from_secs(5)));
        assert!(NOTICES.state.lock().ignore_poison().text.is_empty());
    }
}
