//! One backend server: where it is, whether it may take requests, what it has done, and its
//! idle connections.
//!
//! The chapter's `BACKENDS` list holds `(host, port)` pairs and `http.client` opens a new
//! connection for every request. A [`Backend`] adds the state a real balancer keeps per
//! server: health ([`Health`]), counters ([`BackendStats`]), requests in flight (for
//! least-connections), a draining flag (for runtime removal), and a pool of idle keep-alive
//! connections so most requests skip the TCP handshake. The set of backends, and which of
//! them a request tries, is [`crate::backends`].

use super::health::{self, Change, Health};
use crate::config::BackendSpec;
use crate::conn::{BufConn, Timeouts};
use crate::digest::hmac_sha256;
use crate::metrics::BackendStats;
use crate::poison::IgnorePoison;
use crate::secret::Secret;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most idle connections kept per backend. nginx's `keepalive` directive has no default; its
/// docs use 16 to 32. A balancer under heavy load needs about as many as requests in flight.
pub const POOL_MAX_IDLE: usize = 256;
/// How long an idle pooled connection is trusted. Shorter than the keep-alive timeouts of
/// common servers (Apache and Node.js close idle connections after 5 s), so the balancer
/// rarely picks a connection the backend is closing.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Read buffer of an upstream connection; large enough that one read usually takes a whole
/// small response, and that big bodies stream in few system calls.
pub const UPSTREAM_BUFFER: usize = 32 * 1024;

/// A connection from [`Backend::connect`], and where it came from.
#[derive(Debug)]
pub struct Connected {
    /// The connection, buffered.
    pub conn: BufConn,
    /// Taken from the idle pool rather than opened now: it may have been closed by the
    /// backend meanwhile, so a failure on it is retried once on a new connection.
    pub pooled: bool,
}

/// One backend and everything the balancer knows about it.
#[derive(Debug)]
pub struct Backend {
    /// Stable number for the admin API (`/backends/{id}`), never reused in one run.
    pub id: usize,
    /// `http://HOST:PORT`, as shown in logs and metrics.
    pub url: String,
    /// A stable 64-bit name of this backend, a hash of its URL: it names the backend in the
    /// affinity cookie, and stays the same across restarts and in every copy that lists the
    /// same URL. Computed once, here. Without a key ([`Backend::keyed`]) it is [`hash64`], which
    /// anyone can compute for a guessed URL, so the cookie can be matched to an address by
    /// trying candidates; with `--cookie-secret-file` it is the first 64 bits of
    /// HMAC-SHA-256(key, URL) ([`crate::digest::hmac_sha256`]), which cannot be matched
    /// without the key.
    pub tag: u64,
    /// The address connected to.
    pub addr: SocketAddr,
    /// Relative share of requests under `--strategy weighted` (and the weight of the others
    /// that honour weights); changed in place when a reloaded backend list gives it another.
    weight: AtomicU32,
    /// Up or down, by passive and active checks.
    pub health: Health,
    /// Counters for `/metrics` and `/status`.
    pub stats: BackendStats,
    /// Requests in flight right now (see [`ActiveGuard`]).
    active: AtomicUsize,
    /// No new requests: set by the admin API before removal, and on a backend a reloaded
    /// `--backends-file` no longer lists.
    draining: AtomicBool,
    /// Idle keep-alive connections, most recently used last.
    pool: Mutex<VecDeque<(BufConn, Instant)>>,
}

impl Backend {
    /// A backend from its command-line spec, up and with an empty pool.
    pub fn new(id: usize, spec: &BackendSpec) -> Backend {
        Backend::keyed(id, spec, None)
    }

    /// [`Backend::new`], with its [`Backend::tag`] keyed by `key` when given.
    pub fn keyed(id: usize, spec: &BackendSpec, key: Option<&Secret>) -> Backend {
        let tag = match key {
            Some(key) => {
                let mac = hmac_sha256(key.bytes(), spec.url.as_bytes());
                u64::from_be_bytes(mac[..8].try_into().unwrap_or_default())
            }
            None => hash64(spec.url.as_bytes()),
        };
        Backend {
            id,
            url: spec.url.clone(),
            tag,
            addr: spec.addr,
            weight: AtomicU32::new(spec.weight),
            health: Health::new(),
            stats: BackendStats::default(),
            active: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            pool: Mutex::new(VecDeque::new()),
        }
    }

    /// Its weight now.
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Gives it another weight, keeping everything else (health, counters, idle connections).
    pub fn set_weight(&self, weight: u32) {
        self.weight.store(weight, Ordering::Relaxed);
    }

    /// May a strategy pick this backend for a new request now? Not while draining, nor while
    /// down (unless its `fail_timeout` has passed and it is due a trial request).
    pub fn is_eligible(&self, now: Instant) -> bool {
        !self.is_draining() && self.health.is_eligible(now)
    }

    /// Requests in flight on this backend.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Counts a request in flight until the returned guard is dropped, on every path.
    pub fn start_request(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        ActiveGuard {
            backend: Arc::clone(self),
        }
    }

    /// Is the backend draining (no new requests)?
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Starts or stops draining, marked on the status page's time axis when it changes.
    /// Draining also closes the idle pooled connections.
    pub fn set_draining(&self, draining: bool) {
        if self.draining.swap(draining, Ordering::SeqCst) != draining {
            let state = if draining { "DRAINING" } else { "ENABLED" };
            self.stats.history.event_now(state, "");
        }
        if draining {
            self.pool.lock().ignore_poison().clear();
        }
    }

    /// Prints a change of health, marks it on the status page's time axis, and, when the
    /// backend went down, closes its idle pooled connections: they are suspect, and would
    /// otherwise wait in the pool (nobody checks them out while the backend is down) holding
    /// the backend's resources.
    pub fn health_changed(&self, change: &Change) {
        health::announce(&self.url, change);
        let (state, reason) = match change {
            Change::Down(why) => ("DOWN", why),
            Change::Up(why) => ("UP", why),
        };
        self.stats.history.event_now(state, reason);
        if matches!(change, Change::Down(_)) {
            let idle = std::mem::take(&mut *self.pool.lock().ignore_poison());
            drop(idle); // closed outside the lock
        }
    }

    /// A connection to this backend: a pooled one if a fresh-enough one is idle (the caller
    /// then checks nothing arrived on it meanwhile), else a new one.
    ///
    /// # Errors
    /// Connection refused, unreachable, or the connect timeout passed.
    pub fn connect(&self, timeouts: &Timeouts) -> io::Result<Connected> {
        if let Some(conn) = self.pooled() {
            return Ok(Connected { conn, pooled: true });
        }
        let conn = self.connect_fresh(timeouts)?;
        Ok(Connected {
            conn,
            pooled: false,
        })
    }

    /// A new connection, never a pooled one, with the limits of `timeouts`.
    ///
    /// # Errors
    /// Connection refused, unreachable, or the connect timeout passed.
    pub fn connect_fresh(&self, timeouts: &Timeouts) -> io::Result<BufConn> {
        let stream = timeouts.connect(&self.addr)?;
        Ok(
            BufConn::new(stream, UPSTREAM_BUFFER, UPSTREAM_BUFFER)
                .read_timeout_is(timeouts.backend),
        )
    }

    /// The most recently idled pooled connection that is still young. Connections idle past
    /// [`POOL_IDLE_TIMEOUT`] sit at the front (the pool is used last-in, first-out) and are
    /// closed here, so none lingers half-closed by its backend while traffic never pauses.
    fn pooled(&self) -> Option<BufConn> {
        let mut pool = self.pool.lock().ignore_poison();
        let mut stale = Vec::new();
        while pool
            .front()
            .is_some_and(|(_, since)| since.elapsed() >= POOL_IDLE_TIMEOUT)
        {
            stale.extend(pool.pop_front());
        }
        let conn = pool.pop_back().map(|(conn, _)| conn);
        drop(pool);
        drop(stale); // closed outside the lock
        conn
    }

    /// Returns a connection whose last response was read completely and that the backend
    /// keeps open. Dropped instead when the pool is full or the backend is draining.
    pub fn release(&self, conn: BufConn) {
        if conn.data().is_empty() && !self.is_draining() {
            let mut pool = self.pool.lock().ignore_poison();
            if pool.len() < POOL_MAX_IDLE {
                pool.push_back((conn, Instant::now()));
            }
        }
    }

    /// Idle connections in the pool now.
    pub fn pooled_count(&self) -> usize {
        self.pool.lock().ignore_poison().len()
    }
}

/// Keeps a backend's in-flight count up while alive; dropping it, on any path, counts the
/// request finished. Least-connections reads that count, so no error path may leak one.
#[derive(Debug)]
pub struct ActiveGuard {
    backend: Arc<Backend>,
}

impl ActiveGuard {
    /// The backend this request is counted on.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.backend.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A 64-bit hash of bytes: FNV-1a, then a final mix (from MurmurHash3's `fmix64`) so that
/// similar inputs (127.0.0.1, 127.0.0.2) land far apart. Stable across runs and platforms,
/// unlike `std`'s `DefaultHasher`, whose algorithm may change between Rust releases.
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::hash64;

    #[test]
    fn the_pool_keeps_at_most_pool_max_idle_connections() {
        use super::{Backend, POOL_MAX_IDLE};
        use crate::config::BackendSpec;
        use crate::conn::BufConn;
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let backend = Backend::new(0, &BackendSpec::parse(&url).unwrap());
        let mut accepted = Vec::new();
        for _ in 0..=POOL_MAX_IDLE {
            let conn = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            accepted.push(listener.accept().unwrap().0);
            backend.release(BufConn::new(conn, 16, 16));
        }
        // One more than the pool holds was given back: the last one was closed instead.
        assert_eq!(backend.pooled_count(), POOL_MAX_IDLE);
    }

    #[test]
    fn similar_inputs_hash_apart() {
        assert_ne!(hash64(b"127.0.0.1"), hash64(b"127.0.0.2"));
    }

    #[test]
    fn the_hash_is_pinned() {
        // Stable across runs and platforms, as promised: these are the function's values.
        assert_eq!(hash64(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(hash64(b"127.0.0.1"), 0xcede_3ba3_b641_7b22);
    }
}
