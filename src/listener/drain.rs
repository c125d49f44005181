//! The drain: on Ctrl-C or `SIGTERM`, requests in flight finish, and connections that only
//! wait for their next request are closed at once.
//!
//! Every connection thread has a [`Slot`] in its listener's [`Connections`] for its whole
//! life: the connection it serves now, if any, and whether that connection waits for its next
//! request ([`Flags::set_idle`]). A stop ([`Listener::stop`](super::Listener::stop)), in order:
//!
//! 1. sets the listener's `draining` flag, which a connection reads before it takes another
//!    request ([`Flags::draining`]);
//! 2. stops accepting: every thread waiting in `accept` gets a connection of our own, sees
//!    `draining` and leaves ([`wake_accepting`]), and the port closes;
//! 3. shuts down the idle connections, again and again, until none is open or the drain
//!    timeout runs out ([`drain`]). A busy connection is never shut down here: it finishes
//!    its request, sees `draining`, and closes itself.
//!
//! [`OpenGuard`] keeps a connection counted open until it ends, also by a panic, so the
//! drain never waits for a connection that is gone.

use super::{DRAIN_POLL, REFUSAL_WRITE_TIMEOUT, Threads, WAKE_LIMIT};
use crate::metrics::ServerStats;
use crate::poison::IgnorePoison;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The flags a connection shares with its listener: "I wait for my next request" one way,
/// "we are stopping" the other.
#[derive(Debug, Clone, Copy)]
pub struct Flags<'a> {
    idle: &'a AtomicBool,
    draining: &'a AtomicBool,
}

impl<'a> Flags<'a> {
    /// Marks the connection as waiting for its next request (a drain may then close it), or
    /// as busy (a drain lets it finish).
    pub fn set_idle(self, idle: bool) {
        self.idle.store(idle, Ordering::SeqCst);
    }

    /// Is the listener stopping? Then a connection takes no further request.
    pub fn draining(self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The flag behind [`Flags::draining`], for code that reads it later.
    pub fn draining_flag(self) -> &'a AtomicBool {
        self.draining
    }
}

/// Wakes every thread waiting in `accept`, with a connection of our own each (a stop has set
/// `draining`: they see it and leave), for up to [`WAKE_LIMIT`]; those left then leave at
/// their next wake-up.
pub(super) fn wake_accepting(threads: &Threads, addr: SocketAddr) {
    let wake = wake_addr(addr);
    let give_up = Instant::now() + WAKE_LIMIT;
    loop {
        let waiting = threads.waiting();
        if waiting == 0 || Instant::now() >= give_up {
            return;
        }
        let _ = TcpStream::connect_timeout(&wake, REFUSAL_WRITE_TIMEOUT);
        // One at a time: no more wake-up connections queue than there are threads.
        let until = Instant::now() + DRAIN_POLL;
        while threads.waiting() >= waiting && Instant::now() < until {
            thread::yield_now();
        }
    }
}

/// Where to connect to wake our own accept loop: the bound address, or loopback when bound
/// to all interfaces.
fn wake_addr(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// Closes the idle connections of `connections` now and every [`DRAIN_POLL`] (a busy one
/// becomes idle when its request ends, unless it closes first), until none is `open` or
/// `drain` has passed; returns how many are still open then.
pub(super) fn drain(connections: &Connections, open: &AtomicU64, drain: Duration) -> u64 {
    let deadline = Instant::now() + drain;
    loop {
        connections.close(false);
        let open = open.load(Ordering::SeqCst);
        if open == 0 || Instant::now() >= deadline {
            return open;
        }
        thread::sleep(DRAIN_POLL);
    }
}

/// Keeps a connection counted as open, and in its thread's slot of the registry, until it is
/// dropped: when the connection ends, and also if its thread panics, so that a bug can never
/// leak a slot of the cap.
pub(super) struct OpenGuard<'a> {
    stats: &'a ServerStats,
    slot: &'a Slot,
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.slot.idle.store(false, Ordering::SeqCst);
        let stream = self.slot.stream.lock().ignore_poison().take();
        drop(stream); // closed outside the lock
        self.stats.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection thread's place in the registry of open connections, for the thread's whole
/// life: the connection it serves now, if any, and whether that connection waits for its next
/// request. Only its own thread and a drain lock it, so the lock is not contended; a single
/// map of all connections was locked twice per connection by every thread.
#[derive(Debug, Default)]
pub(super) struct Slot {
    /// The connection's socket, shared with the thread serving it (not `dup`ed: one
    /// descriptor per connection).
    stream: Mutex<Option<Arc<TcpStream>>>,
    /// The connection waits for its next request (see [`Flags::set_idle`]).
    idle: AtomicBool,
}

impl Slot {
    /// Puts `stream`, already counted in `stats.open`, in this slot for a drain to find; the
    /// guard takes it out and counts it closed.
    pub(super) fn open<'a>(
        &'a self,
        stream: &Arc<TcpStream>,
        stats: &'a ServerStats,
    ) -> OpenGuard<'a> {
        *self.stream.lock().ignore_poison() = Some(Arc::clone(stream));
        OpenGuard { stats, slot: self }
    }

    /// The flags of the connection in this slot, with its listener's `draining`.
    pub(super) fn flags<'a>(&'a self, draining: &'a AtomicBool) -> Flags<'a> {
        Flags {
            idle: &self.idle,
            draining,
        }
    }
}

/// The open connections, so that a drain can close the idle ones: a slot per connection
/// thread, added when the thread starts and removed when it ends.
#[derive(Debug, Default)]
pub(super) struct Connections {
    slots: Mutex<Vec<Arc<Slot>>>,
}

impl Connections {
    /// A slot for a thread that starts; it leaves the registry when the guard is dropped (when
    /// the thread ends, also by a panic).
    pub(super) fn join(&self) -> SlotGuard<'_> {
        let slot = Arc::new(Slot::default());
        self.slots.lock().ignore_poison().push(Arc::clone(&slot));
        SlotGuard {
            connections: self,
            slot,
        }
    }

    /// Shuts down the connections that wait for a request, or with `busy_too` all of them.
    pub(super) fn close(&self, busy_too: bool) {
        for slot in self.slots.lock().ignore_poison().iter() {
            if (busy_too || slot.idle.load(Ordering::SeqCst))
                && let Some(stream) = slot.stream.lock().ignore_poison().as_ref()
            {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

/// A thread's slot in the registry, for as long as the thread lives.
pub(super) struct SlotGuard<'a> {
    connections: &'a Connections,
    /// The slot itself.
    pub(super) slot: Arc<Slot>,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut slots = self.connections.slots.lock().ignore_poison();
        if let Some(i) = slots.iter().position(|s| Arc::ptr_eq(s, &self.slot)) {
            slots.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{Timeouts, is_timeout};
    use crate::listener::{Accepted, Listener};
    use std::io::Read;
    use std::net::TcpListener;

    #[test]
    fn abort_closes_busy_connections_and_a_dropped_listener_stops() {
        let stats = Arc::new(ServerStats::default());
        // Timeouts longer than the client waits below: only the listener can close it in time.
        let timeouts = Timeouts::uniform(Duration::from_secs(30));
        let options = super::super::tests::test_options(16, timeouts, &stats);
        // Busy until its client closes or the listener closes it.
        let serve = |conn: Accepted<'_>| while let Ok(1..) = (&*conn.stream).read(&mut [0; 1]) {};
        let bind = || TcpListener::bind("127.0.0.1:0").unwrap();
        let listener = Listener::start(bind(), options.clone(), serve).unwrap();
        let mut client = TcpStream::connect(listener.addr()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while stats.open.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "never served");
            thread::yield_now();
        }
        listener.abort();
        match client.read(&mut [0; 1]) {
            Ok(0) => {}
            other => assert!(other.as_ref().is_err_and(|e| !is_timeout(e)), "{other:?}"),
        }
        // Dropped without stop or abort: it stops accepting all the same, and its threads go.
        let listener = Listener::start(bind(), options, serve).unwrap();
        let threads = Arc::clone(listener.threads());
        drop(listener);
        let deadline = Instant::now() + Duration::from_secs(5);
        while threads.alive() > 0 {
            assert!(Instant::now() < deadline, "threads still running");
            thread::yield_now();
        }
    }

    #[test]
    fn a_thread_that_ends_leaves_the_registry() {
        // Threads come and go for as long as the balancer runs: their slots must go with
        // them, or the registry (and each drain's walk over it) grows without end.
        let connections = Connections::default();
        let count = || connections.slots.lock().ignore_poison().len();
        let first = connections.join();
        let second = connections.join();
        assert_eq!(count(), 2);
        drop(first);
        assert_eq!(count(), 1);
        let left = connections.slots.lock().ignore_poison()[0].clone();
        assert!(
            Arc::ptr_eq(&left, &second.slot),
            "the other thread's slot stays"
        );
        drop(second);
        assert_eq!(count(), 0);
    }
}
