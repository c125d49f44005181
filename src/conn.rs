//! Sockets: a TCP stream with a read buffer whose unread bytes stay visible (the socket the
//! chapter's `LoadBalancerHandler` reads from, `self.rfile`, and the one it opens to a
//! backend), the time limits every socket gets where it is made ([`Timeouts`]), and the gentle
//! close after a final answer ([`linger_close`]).
//!
//! `std::io::BufReader` only refills an empty buffer, but a parser that got half a head needs
//! the next bytes appended to the first half; and after a head, the bytes already read belong to
//! the body or to the next pipelined request. [`BufConn`] keeps them: [`BufConn::data`] shows
//! what has been read and not yet used, [`BufConn::consume`] marks bytes used, and
//! [`BufConn::fill`] reads more behind them.

use crate::config::Config;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// How many bytes [`BufConn::fill_idle`] reads into a small array on the stack while no
/// buffer is held: a typical request head (`curl`'s is under 100 bytes, a browser's a few
/// hundred) arrives whole in it; a longer one takes one more read.
pub const IDLE_READ: usize = 1024;

/// How long a connection is kept after a final answer to read what the client still sends,
/// so that closing does not reset the connection before the client reads the answer (nginx's
/// `lingering_close`, see [`linger_close`]).
pub const LINGER: Duration = Duration::from_secs(2);

/// The time limits of one kind of connection, in one place, applied where its sockets are
/// made: [`Timeouts::accepted`] for a connection a listener accepted, [`Timeouts::connect`]
/// for one the balancer opens to a backend. Code further down only narrows the read limit
/// for the stage a connection is in (waiting for a head, a body, a response).
///
/// The balancer's come from its flags ([`Timeouts::of`]); the admin listener and the demo
/// backends use one limit for everything ([`Timeouts::uniform`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Making a connection to a backend (`--connect-timeout`).
    pub connect: Duration,
    /// A backend's silence while it is sent a request or sends a response (`--backend-timeout`).
    pub backend: Duration,
    /// A client's whole request head, from accept for a connection's first head, from its
    /// first byte for later ones (`--header-timeout`).
    pub header: Duration,
    /// A client's silence while it sends a body or takes a response (`--client-timeout`).
    pub client: Duration,
    /// A kept-alive connection (or an upgraded tunnel) with nothing to do (`--idle-timeout`).
    pub idle: Duration,
}

impl Timeouts {
    /// The balancer's limits, from its flags.
    pub fn of(config: &Config) -> Timeouts {
        Timeouts {
            connect: config.connect_timeout,
            backend: config.backend_timeout,
            header: config.header_timeout,
            client: config.client_timeout,
            idle: config.idle_timeout,
        }
    }

    /// One limit for every stage (the admin listener, the demo backends).
    pub const fn uniform(limit: Duration) -> Timeouts {
        Timeouts {
            connect: limit,
            backend: limit,
            header: limit,
            client: limit,
            idle: limit,
        }
    }

    /// Sets up a connection a listener accepted: no Nagle delay, writes limited by
    /// [`Timeouts::client`], reads by [`Timeouts::first_byte`].
    ///
    /// # Errors
    /// The socket's error.
    pub fn accepted(&self, stream: &TcpStream) -> io::Result<()> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(self.client))?;
        stream.set_read_timeout(Some(self.first_byte()))
    }

    /// How long a new connection may wait for its first byte: [`Timeouts::header`] (the
    /// first head must be whole within it from accept, as nginx's `client_header_timeout`
    /// counts from accept), or [`Timeouts::idle`] when that is shorter. A kept-alive
    /// connection waits [`Timeouts::idle`] for each later request.
    pub fn first_byte(&self) -> Duration {
        self.header.min(self.idle)
    }

    /// Does `stream` have the options [`Timeouts::accepted`] sets already? (A socket inherits
    /// them from its listener on Linux and the BSDs; see [`crate::listener::Listener::start`].)
    pub fn accepted_already(&self, stream: &TcpStream) -> bool {
        stream.nodelay().unwrap_or(false)
            && stream.write_timeout().ok() == Some(Some(self.client))
            && stream.read_timeout().ok() == Some(Some(self.first_byte()))
    }

    /// Opens a connection to a backend within [`Timeouts::connect`]; reads and writes on it
    /// are limited by [`Timeouts::backend`].
    ///
    /// # Errors
    /// Connection refused, unreachable, or the connect limit passed.
    pub fn connect(&self, addr: &SocketAddr) -> io::Result<TcpStream> {
        let stream = TcpStream::connect_timeout(addr, self.connect)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(self.backend))?;
        stream.set_read_timeout(Some(self.backend))?;
        Ok(stream)
    }
}

/// A stream and the bytes read from it but not yet used.
#[derive(Debug)]
pub struct BufConn {
    /// The socket itself, for writing and for socket options. Shared (`&TcpStream` reads and
    /// writes too), so that the balancer's registry of open connections can shut an idle one
    /// down at exit without a second file descriptor per connection (`try_clone` would `dup`
    /// it, and 10,000 clients would then need 20,000 descriptors).
    pub stream: Arc<TcpStream>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    capacity: usize,
    max: usize,
    read_timeout: Option<Duration>,
}

impl BufConn {
    /// Wraps `stream` with a buffer of `capacity` bytes that may grow to `max` bytes when a
    /// head does not fit. The buffer is allocated on the first read, so an idle connection
    /// that never sends anything holds none.
    pub fn new(stream: impl Into<Arc<TcpStream>>, capacity: usize, max: usize) -> BufConn {
        let capacity = capacity.max(1);
        BufConn {
            stream: stream.into(),
            buf: Vec::new(),
            start: 0,
            end: 0,
            capacity,
            max: max.max(capacity),
            read_timeout: None,
        }
    }

    /// The bytes read and not yet consumed.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks the first `n` bytes of [`BufConn::data`] as used.
    ///
    /// # Panics
    /// If `n` is more than `data().len()`: that would be a bug in the caller.
    pub fn consume(&mut self, n: usize) {
        assert!(n <= self.data().len(), "consumed more than was read");
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more bytes behind the unread ones; returns how many (0: the peer closed).
    ///
    /// # Errors
    /// The socket's error (a timeout is `WouldBlock` or `TimedOut`), or `InvalidData` when the
    /// unread bytes already fill the largest buffer allowed.
    pub fn fill(&mut self) -> io::Result<usize> {
        if self.buf.len() < self.capacity {
            // No buffer yet, or the small one of `fill_idle`: the full size, once.
            self.buf.resize(self.capacity, 0);
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < self.max {
                let grown = (self.buf.len() * 2).min(self.max);
                self.buf.resize(grown, 0);
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "read buffer full",
                ));
            }
        }
        let n = (&*self.stream).read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Waits for bytes while holding no buffer, then reads them into a new one: for a kept-alive
    /// connection between requests, so that an idle connection costs its thread and socket but
    /// no heap buffer (the wait reads into [`IDLE_READ`] bytes on the stack). Returns how many
    /// bytes came (0: the peer closed). Only when nothing is buffered.
    ///
    /// # Errors
    /// The socket's error (a timeout is `WouldBlock` or `TimedOut`).
    pub fn fill_idle(&mut self) -> io::Result<usize> {
        debug_assert!(self.data().is_empty(), "fill_idle with unread bytes");
        self.buf = Vec::new();
        let mut first = [0u8; IDLE_READ];
        let n = (&*self.stream).read(&mut first)?;
        // Just the bytes that came: a request whose head came whole needs no more room, and
        // a buffer of the full capacity would be zeroed first (safe Rust reads only into
        // initialised memory). `fill` makes room when more must be read.
        self.buf = first[..n].to_vec();
        self.start = 0;
        self.end = n;
        Ok(n)
    }

    /// Notes that the socket's read timeout is already `timeout` (set where the socket was
    /// made, see [`Timeouts`]), so [`BufConn::set_read_timeout`] skips setting it again.
    pub fn read_timeout_is(mut self, timeout: Duration) -> BufConn {
        self.read_timeout = Some(timeout);
        self
    }

    /// The socket's read timeout as last set through this connection (or noted with
    /// [`BufConn::read_timeout_is`]); `None` when not known.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    /// Sets the socket's read timeout, skipping the system call when it is already set.
    ///
    /// # Errors
    /// The socket's error.
    pub fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        if self.read_timeout != Some(timeout) {
            self.stream.set_read_timeout(Some(timeout))?;
            self.read_timeout = Some(timeout);
        }
        Ok(())
    }

    /// Writes all of `bytes` to the socket.
    ///
    /// # Errors
    /// The socket's error.
    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        (&*self.stream).write_all(bytes)
    }
}

/// Closes a connection after a final answer without losing it: half-close, then read and
/// drop what the peer still sends (the rest of a refused body) until it closes or `limit`
/// passes. Closing a socket with unread input resets the connection, and a reset can destroy
/// the answer before the peer reads it (nginx's `lingering_close` exists for the same reason).
/// The limit holds however slowly the peer trickles bytes.
pub fn linger_close(stream: &TcpStream, limit: Duration) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = std::time::Instant::now() + limit;
    let mut scratch = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&*stream).read(&mut scratch) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Is this error a read or write timeout? (Linux reports `WouldBlock`, others `TimedOut`.)
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Did a socket call fail for a reason on this machine (out of file descriptors, memory or
/// local ports)? That is no fault of the peer's: a backend must not leave the rotation for
/// it, and an `accept` that fails so should wait before it tries again.
pub fn is_local_failure(e: &io::Error) -> bool {
    // ENOMEM 12, ENFILE 23, EMFILE 24, EADDRNOTAVAIL 99 (no local port left), ENOBUFS 105.
    matches!(e.raw_os_error(), Some(12 | 23 | 24 | 99 | 105))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn accepted_sockets_inherit_the_listeners_options() {
        let timeouts = Timeouts {
            client: Duration::from_millis(2500),
            idle: Duration::from_millis(1500),
            ..Timeouts::uniform(Duration::from_secs(1))
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (plain, _) = listener.accept().unwrap();
        assert!(!timeouts.accepted_already(&plain), "std sets none of them");
        timeouts.accepted(&plain).unwrap();
        assert!(
            timeouts.accepted_already(&plain),
            "the check reads what is set"
        );
        // Set on a listener, they reach the sockets it accepts (the listener relies on it on
        // Linux; where it does not hold, it sets them on each socket).
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::OwnedFd;
            let socket = TcpStream::from(OwnedFd::from(listener));
            timeouts.accepted(&socket).unwrap();
            let listener = TcpListener::from(OwnedFd::from(socket));
            let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (inherited, _) = listener.accept().unwrap();
            assert!(timeouts.accepted_already(&inherited));
        }
    }

    /// One `fill` that must bring bytes: a close, an error or a wait past 5 s fails the test
    /// (a loop of `fill` calls that got nothing would otherwise spin for ever).
    fn more(conn: &mut BufConn) -> usize {
        conn.stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let n = conn.fill().unwrap();
        assert!(n > 0, "the writer closed");
        n
    }

    #[test]
    fn an_idle_connection_holds_no_buffer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (reader, _) = listener.accept().unwrap();
        let mut conn = BufConn::new(reader, 4096, 8192);
        writer.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(conn.fill_idle().unwrap(), 18);
        assert_eq!(conn.data(), b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(conn.buf.capacity(), 18, "just what came");
        // More bytes (a body, the rest of a long head) get the full buffer.
        writer.write_all(&[b'x'; 3000]).unwrap();
        while conn.data().len() < 18 + 3000 {
            more(&mut conn);
        }
        assert_eq!(conn.buf.len(), 4096);
        conn.consume(18 + 3000);
        // Waiting again gives the buffer back first.
        writer.write_all(b"next").unwrap();
        assert_eq!(conn.fill_idle().unwrap(), 4);
        assert_eq!((conn.data(), conn.buf.capacity()), (&b"next"[..], 4));
        drop(writer);
        conn.consume(4);
        assert_eq!(conn.fill_idle().unwrap(), 0);
        assert_eq!(conn.buf.capacity(), 0, "nothing held after the close");
    }

    #[test]
    fn keeps_unread_bytes_and_grows() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (reader, _) = listener.accept().unwrap();
        let mut conn = BufConn::new(reader, 4, 8);
        assert_eq!(conn.data(), b"");
        writer.write_all(b"abcdefghij").unwrap();
        let mut got = 0;
        while got < 8 {
            got += more(&mut conn);
        }
        assert_eq!(conn.data(), b"abcdefgh");
        assert_eq!(conn.fill().unwrap_err().kind(), io::ErrorKind::InvalidData);
        conn.consume(6);
        assert_eq!(conn.data(), b"gh");
        while conn.data().len() < 4 {
            more(&mut conn);
        }
        assert_eq!(conn.data(), b"ghij");
        conn.consume(4);
        assert_eq!(conn.data(), b"");
    }
}
