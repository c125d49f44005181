//! The cap on connections (`--max-connections`): who takes a place under it, and what a client
//! past it gets.
//!
//! Connections and the second threads of upgraded tunnels share the cap ([`admit`],
//! [`TunnelSlot`]), so that it bounds threads. A client past it gets `503` and `Retry-After`
//! instead of a thread, and its connection is closed gently, so that the page is not lost to
//! a reset ([`Refusals`]): the refusing thread (one that waits in `accept`) writes the page,
//! never waiting long for the client, and hands the socket to the listener's one lingering
//! thread ([`linger::spawn_lingerer`], started at the first refusal); when that thread has as
//! many as it may hold, or cannot start, the socket is closed at once ([`linger::close_now`]).

use super::{REFUSAL_WRITE_TIMEOUT, linger};
use crate::http::pages;
use crate::metrics::ServerStats;
use crate::poison::IgnorePoison;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};

/// Takes a place under the cap `max` for a connection just accepted, counted in
/// `stats.open`; `false`, with nothing taken, when connections and tunnel threads together
/// already fill it.
pub(super) fn admit(stats: &ServerStats, max: usize) -> bool {
    // Adds to `open`, then reads `tunnels`; `TunnelSlot::take` does the reverse: of two racing
    // takers, at least one sees the other (sequentially consistent order).
    let taken = stats.open.fetch_add(1, Ordering::SeqCst) + stats.tunnels.load(Ordering::SeqCst);
    if taken as usize >= max {
        stats.open.fetch_sub(1, Ordering::SeqCst);
        return false;
    }
    true
}

/// The slot of the connection cap that an upgraded tunnel's second thread takes (see
/// [`crate::proxy::relay`]): a connection and its tunnel thread count two, so `--max-connections`
/// bounds the threads, as it is meant to. Given back when dropped.
#[derive(Debug)]
pub struct TunnelSlot<'a>(&'a ServerStats);

impl TunnelSlot<'_> {
    /// Takes a slot for a tunnel thread if connections and tunnels together leave one free
    /// under `max` (the cap `stats` are counted against); `None` at the cap.
    pub fn take(stats: &ServerStats, max: usize) -> Option<TunnelSlot<'_>> {
        // The reverse of `admit`'s order (see there).
        let taken =
            stats.tunnels.fetch_add(1, Ordering::SeqCst) + stats.open.load(Ordering::SeqCst);
        if taken as usize >= max {
            stats.tunnels.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(TunnelSlot(stats))
    }
}

impl Drop for TunnelSlot<'_> {
    fn drop(&mut self) {
        self.0.tunnels.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How one listener refuses connections: the way to its lingering thread, once started.
#[derive(Debug)]
pub(super) struct Refusals {
    /// The lingering thread's queue, started at the first refusal; `None` before, and after
    /// [`Refusals::stop_lingering`].
    lingerer: Mutex<Option<mpsc::SyncSender<TcpStream>>>,
    /// Most refused connections lingering at once ([`linger::linger_max`]).
    linger_max: usize,
}

impl Refusals {
    /// Refusals for a listener with a cap of `max_connections`.
    pub(super) fn new(max_connections: usize) -> Refusals {
        Refusals {
            lingerer: Mutex::new(None),
            linger_max: linger::linger_max(max_connections),
        }
    }

    /// Answers a client past the cap with `503` (never waiting on it for long), then hands the
    /// socket to the lingering thread, started at the first refusal unless the listener is
    /// `draining`.
    pub(super) fn refuse(&self, stream: TcpStream, why: &str, draining: &AtomicBool) {
        let page = pages::ErrorPage::new(503, why).bytes();
        let _ = stream.set_write_timeout(Some(REFUSAL_WRITE_TIMEOUT));
        let _ = (&stream).write_all(&page);
        let mut lingerer = self.lingerer.lock().ignore_poison();
        if lingerer.is_none() && !draining.load(Ordering::SeqCst) {
            *lingerer = linger::spawn_lingerer(self.linger_max).ok();
        }
        let Some(lingerer) = lingerer.as_ref() else {
            return linger::close_now(stream);
        };
        if let Err(mpsc::TrySendError::Full(s) | mpsc::TrySendError::Disconnected(s)) =
            lingerer.try_send(stream)
        {
            linger::close_now(s);
        }
    }

    /// Lets the lingering thread end: it does once nothing lingers and no sender is left.
    pub(super) fn stop_lingering(&self) {
        self.lingerer.lock().ignore_poison().take();
    }
}
