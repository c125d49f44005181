//! Moving bodies: the bytes after a head, streamed in fixed-size buffers, and the two-way
//! tunnel after `101 Switching Protocols`.
//!
//! The chapter's handler reads the backend's whole answer (`resp.read()`) before sending any
//! of it. These functions never hold a body: they copy what has arrived, piece by piece,
//! through a connection's read buffer (or one larger buffer for long bodies), so a 1 GiB
//! download costs the balancer the same memory as a 1 KiB one. They also re-frame: a chunked
//! or close-delimited body is decoded and, for a client that speaks HTTP/1.1, chunked again;
//! `Content-Length` bodies are copied to the byte.

use crate::conn::{BufConn, is_timeout};
use crate::http::Error;
use crate::http::chunked::{self, Decoder, Step};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Buffer for streaming a long `Content-Length` body, allocated for the copy only. Larger than
/// the connection buffers so that a big body moves in few system calls; 128 KiB matches the
/// socket buffer Linux grows to under load, so one read rarely finds more than this.
pub const STREAM_CHUNK: usize = 128 * 1024;
/// Most the long-body buffer grows to. It doubles from [`STREAM_CHUNK`] each time a read fills
/// it (the sender is ahead of the balancer, as in a bulk transfer on a fast network), so a bulk
/// transfer moves in few large system calls, while a slow one keeps the small buffer. Measured
/// on a 1 GiB upload (`bench --upload 1g`, balancer in its own process): CPU per GiB in the
/// balancer 75-82 ticks with 128 KiB, 54-67 with 512 KiB, 58-67 with 1 MiB.
pub const STREAM_CHUNK_MAX: usize = 1024 * 1024;

/// Why a body could not be copied to its end.
pub(crate) enum CopyError {
    /// Reading the source failed (or timed out).
    Source(io::Error),
    /// The source closed before the body's end.
    SourceClosed,
    /// Writing to the destination failed.
    Dest(io::Error),
    /// The chunked framing was broken.
    Framing(Error),
    /// The body passed `--max-body`.
    TooLarge,
}

/// Reads more into `src`'s buffer, mapping the end of the stream to an error.
fn fill(src: &mut BufConn) -> Result<(), CopyError> {
    match src.fill() {
        Ok(0) => Err(CopyError::SourceClosed),
        Ok(_) => Ok(()),
        Err(e) => Err(CopyError::Source(e)),
    }
}

/// Copies exactly `n` body bytes from `src` to `dst`, after writing `prefix` (a head): the
/// head and the first buffered bytes go out in one write.
pub(crate) fn copy_exact(
    src: &mut BufConn,
    mut dst: &TcpStream,
    n: u64,
    mut prefix: Vec<u8>,
    sent: &mut u64,
) -> Result<(), CopyError> {
    let mut left = n;
    let first = left.min(src.data().len() as u64) as usize;
    // Without a head to send, the loop below sends the buffered bytes the same way.
    if !prefix.is_empty() {
        prefix.extend_from_slice(&src.data()[..first]);
        dst.write_all(&prefix).map_err(CopyError::Dest)?;
        src.consume(first);
        left -= first as u64;
        *sent += first as u64;
    }
    // A body longer than the connection's buffer streams through a larger buffer that lives
    // only as long as this copy: fewer system calls (and wake-ups) per byte, and no memory
    // kept for it after the body.
    let mut chunk = Vec::new();
    if left > src.data().len() as u64 + STREAM_CHUNK as u64 {
        chunk = vec![0; STREAM_CHUNK];
    }
    while left > 0 {
        if src.data().is_empty() && !chunk.is_empty() {
            let want = left.min(chunk.len() as u64) as usize;
            let n = match (&*src.stream).read(&mut chunk[..want]) {
                Ok(0) => return Err(CopyError::SourceClosed),
                Ok(n) => n,
                Err(e) => return Err(CopyError::Source(e)),
            };
            dst.write_all(&chunk[..n]).map_err(CopyError::Dest)?;
            left -= n as u64;
            *sent += n as u64;
            if let Some(size) = grown(chunk.len(), n, left) {
                chunk.resize(size, 0);
            }
            continue;
        }
        if src.data().is_empty() {
            fill(src)?;
        }
        let take = left.min(src.data().len() as u64) as usize;
        dst.write_all(&src.data()[..take])
            .map_err(CopyError::Dest)?;
        src.consume(take);
        left -= take as u64;
        *sent += take as u64;
    }
    Ok(())
}

/// The long-body buffer's next size, if it should grow: double, while reads fill it (the
/// sender is ahead) and more than twice its size is still to come, up to
/// [`STREAM_CHUNK_MAX`]. Only the number of system calls depends on it, never the bytes.
fn grown(size: usize, read: usize, left: u64) -> Option<usize> {
    (read == size && size < STREAM_CHUNK_MAX && left > 2 * read as u64).then_some(2 * read)
}

/// Copies a chunked body from `src` to `dst` after `prefix`, decoding it and, with
/// `chunk_out`, encoding it again (trailers included); without, the data is sent as it is
/// (the connection then closes to end the body). Fails past `max` data bytes.
pub(crate) fn copy_chunked(
    src: &mut BufConn,
    mut dst: &TcpStream,
    max: Option<u64>,
    mut out: Vec<u8>,
    chunk_out: bool,
    sent: &mut u64,
) -> Result<(), CopyError> {
    let mut decoder = Decoder::new();
    loop {
        let step = match decoder.decode(src.data()) {
            Ok(step) => step,
            Err(e) => {
                // What came before the fault still goes out (for a response: the head and
                // the data so far), then the connection closes: the peer sees the same as
                // when a sender dies mid-body, not a close with nothing at all.
                let _ = dst.write_all(&out);
                return Err(CopyError::Framing(e));
            }
        };
        match step {
            Step::Data { start, end } => {
                let data = &src.data()[start..end];
                *sent += data.len() as u64;
                if max.is_some_and(|m| *sent > m) {
                    return Err(CopyError::TooLarge);
                }
                push_piece(&mut out, data, chunk_out);
                src.consume(end);
            }
            Step::NeedMore => {
                src.consume(src.data().len());
                if !out.is_empty() {
                    dst.write_all(&out).map_err(CopyError::Dest)?;
                    out.clear();
                }
                fill(src)?;
            }
            Step::Done { used } => {
                src.consume(used);
                if chunk_out {
                    out.extend_from_slice(b"0\r\n");
                    out.extend_from_slice(decoder.trailers());
                    out.extend_from_slice(b"\r\n");
                }
                return dst.write_all(&out).map_err(CopyError::Dest);
            }
        }
    }
}

/// Appends a piece of body data to `out`: as a chunk (size line, data, CRLF) with
/// `chunk_out`, else as it is.
fn push_piece(out: &mut Vec<u8>, data: &[u8], chunk_out: bool) {
    if chunk_out {
        chunked::write_chunk_size(out, data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

/// Copies a body that ends when the backend closes the connection, after `prefix`; with
/// `chunk_out` each piece becomes a chunk, so the client connection can stay open.
pub(crate) fn copy_until_close(
    src: &mut BufConn,
    mut dst: &TcpStream,
    mut out: Vec<u8>,
    chunk_out: bool,
    sent: &mut u64,
) -> Result<(), CopyError> {
    loop {
        let data = src.data();
        if !data.is_empty() {
            *sent += data.len() as u64;
            push_piece(&mut out, data, chunk_out);
            src.consume(data.len());
        }
        if !out.is_empty() {
            dst.write_all(&out).map_err(CopyError::Dest)?;
            out.clear();
        }
        match fill(src) {
            Ok(()) => {}
            Err(CopyError::SourceClosed) => {
                return if chunk_out {
                    dst.write_all(b"0\r\n\r\n").map_err(CopyError::Dest)
                } else {
                    Ok(())
                };
            }
            Err(e) => return Err(e),
        }
    }
}

/// After `101 Switching Protocols`: copies bytes both ways until either side closes or both
/// are silent for `idle`. One direction runs on a second thread for the tunnel's lifetime;
/// the proxy took a slot of `--max-connections` for it before the upgrade was sent on
/// ([`crate::listener::TunnelSlot`]), so threads stay within the cap.
pub(crate) fn tunnel(client: &mut BufConn, mut up: BufConn, idle: Duration) {
    // Bytes that arrived with the heads belong to the new protocol: pass them on first.
    let early_client = client.data().len();
    if up.write_all(client.data()).is_err() {
        return;
    }
    client.consume(early_client);
    let early_up = up.data().len();
    if client.write_all(up.data()).is_err() {
        return;
    }
    up.consume(early_up);
    // Both directions share the sockets (no `dup`: a tunnel costs no extra descriptors).
    let (from_client, to_up) = (Arc::clone(&client.stream), Arc::clone(&up.stream));
    // A read timeout in one direction alone does not end the tunnel: a server that pushes
    // to a silent client (or the other way round) is busy, not idle. Both directions note
    // their last byte here, and a timeout ends the tunnel only when neither moved for `idle`
    // (so a quiet tunnel closes after between one and two `idle` periods).
    let activity = Arc::new(Activity::new());
    let _ = from_client.set_read_timeout(Some(idle));
    let _ = up.stream.set_read_timeout(Some(idle));
    let upstream = {
        let activity = Arc::clone(&activity);
        std::thread::Builder::new()
            .name("tunnel".into())
            .stack_size(crate::listener::THREAD_STACK)
            .spawn(move || pipe(&from_client, &to_up, &activity, idle))
    };
    pipe(&up.stream, &client.stream, &activity, idle);
    if let Ok(handle) = upstream {
        let _ = handle.join();
    }
}

/// Buffer of one direction of a tunnel (WebSocket messages are mostly small).
pub const TUNNEL_BUFFER: usize = 16 * 1024;

/// When a tunnel last carried a byte in either direction.
struct Activity {
    start: Instant,
    /// Milliseconds from `start` to the last byte read.
    last_ms: std::sync::atomic::AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Copies `from` to `to` until `from` ends; then passes the end on (half-close). On an error,
/// or a timeout when the whole tunnel has been quiet for `idle`, closes both sockets, which
/// also ends the other direction.
fn pipe(mut from: &TcpStream, mut to: &TcpStream, activity: &Activity, idle: Duration) {
    let mut buf = vec![0u8; TUNNEL_BUFFER];
    loop {
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                activity.touch();
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if is_timeout(&e) && activity.quiet_for() < idle => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
