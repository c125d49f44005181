//! A listener's descriptor budget beyond its connections (spare threads in `accept`, refused
//! connections lingering), and closing refused connections gently, on one thread.

use super::{DRAIN_POLL, LINGER_MAX, SPARE_MAX};
use crate::conn::LINGER;
use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

/// Most refused connections a listener with a cap of `max_connections` keeps lingering (and
/// queued for lingering): an eighth of the cap, at least 1, at most [`LINGER_MAX`]. Each holds
/// a descriptor for up to [`LINGER`]; with 1024 of them, a burst of clients past the cap of a
/// balancer under `ulimit -n 1024` ran it out of descriptors.
pub(super) fn linger_max(max_connections: usize) -> usize {
    (max_connections / 8).clamp(1, LINGER_MAX)
}

/// Most spare threads a listener with a cap of `max_connections` keeps waiting in `accept`:
/// an eighth of the cap, at least 1, at most [`SPARE_MAX`]. Linux reserves a descriptor for a
/// thread before it blocks in `accept` (`get_unused_fd_flags` comes first in `accept4`), so
/// each spare holds one: under `ulimit -n 128`, 120 spares left after a burst of idle clients
/// made every `socket()` fail with `EMFILE` while only 6 descriptors were open.
pub(super) fn spare_max(max_connections: usize) -> usize {
    (max_connections / crate::config::CONNECTIONS_PER_SPARE).clamp(1, SPARE_MAX)
}

/// Closes a refused connection now, without lingering: what the client sent is read first
/// (what has arrived of it), so that the close is a FIN after the `503`, not a reset that
/// could discard the page before the client reads it.
pub(super) fn close_now(stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    if stream.set_nonblocking(true).is_ok() {
        let mut scratch = [0u8; 4096];
        for _ in 0..16 {
            if !matches!((&stream).read(&mut scratch), Ok(1..)) {
                break;
            }
        }
    }
}

/// A thread that closes refused connections gently: it half-closes them and reads what the
/// client still sends for up to [`LINGER`], so the client reads the `503` instead of a reset;
/// at most `max` at once (and `max` queued), past which they are closed at once.
/// It ends when the listener has stopped (dropping the sender) and nothing lingers.
pub(super) fn spawn_lingerer(max: usize) -> io::Result<mpsc::SyncSender<TcpStream>> {
    let (tx, rx) = mpsc::sync_channel::<TcpStream>(max);
    thread::Builder::new()
        .name("linger".into())
        .spawn(move || {
            let mut lingering: Vec<(TcpStream, Instant)> = Vec::new();
            let mut scratch = [0u8; 4096];
            loop {
                // Wait for work without spinning when there is none.
                let first = if lingering.is_empty() {
                    rx.recv().ok()
                } else {
                    rx.recv_timeout(DRAIN_POLL * 2).ok()
                };
                if first.is_none() && lingering.is_empty() {
                    return;
                }
                for stream in first.into_iter().chain(rx.try_iter()) {
                    if lingering.len() >= max {
                        close_now(stream);
                        continue;
                    }
                    let _ = stream.shutdown(Shutdown::Write);
                    if stream.set_nonblocking(true).is_ok() {
                        lingering.push((stream, Instant::now() + LINGER));
                    }
                }
                let now = Instant::now();
                lingering.retain_mut(|(stream, deadline)| {
                    if now >= *deadline {
                        return false;
                    }
                    loop {
                        match stream.read(&mut scratch) {
                            Ok(0) => return false,
                            Ok(_) => continue,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                            Err(_) => return false,
                        }
                    }
                });
            }
        })?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spares_are_an_eighth_of_the_cap() {
        for (cap, max) in [(32, 4), (256, 32), (4, 1), (2000, 250), (16_384, 250)] {
            assert_eq!(spare_max(cap), max, "cap {cap}");
        }
    }

    #[test]
    fn lingering_is_an_eighth_of_the_cap() {
        for (cap, max) in [(32, 4), (256, 32), (4, 1), (16_384, 1024), (100_000, 1024)] {
            assert_eq!(linger_max(cap), max, "cap {cap}");
        }
    }
}
