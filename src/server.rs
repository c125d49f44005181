//! The accept loop: one thread per client connection, a cap on how many, and a clean stop.
//!
//! The chapter runs `HTTPServer(...).serve_forever()`: one request at a time, so one slow
//! client stops everybody. Here every connection gets its own thread (the Rust Book's final
//! project does the same, and warns that without a cap this is a way to exhaust the machine),
//! so past `--max-connections` a client gets `503` and `Retry-After` instead of a thread.
//!
//! [`Balancer::start`] binds, starts the threads, and returns a handle with the bound address;
//! [`Balancer::shutdown`] (or dropping the handle) stops accepting, lets requests in flight
//! finish for up to `--drain-timeout`, closes idle keep-alive connections, and joins its own
//! threads (accept, log, health checker, admin); connection threads still busy when the
//! drain timeout runs out end with the process.

use crate::admin::Admin;
use crate::backend::Backends;
use crate::checker::Checker;
use crate::config::Config;
use crate::demo::Fleet;
use crate::http::pages;
use crate::log::{AccessLog, FLUSH_INTERVAL};
use crate::metrics::{ServerStats, inc};
use crate::proxy;
use crate::spare::{Job, Spares};
use crate::strategy::{self, Strategy};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Stack size of a connection thread. The proxy's buffers live on the heap, so a small stack
/// suffices; only the pages a thread touches cost memory, which keeps 10,000 idle
/// connections within a few hundred megabytes.
pub const THREAD_STACK: usize = 128 * 1024;
/// How long a refused or failed connection is kept to read what the client still sends, so
/// closing does not reset the connection before the client reads the answer (nginx's
/// `lingering_close`).
pub const LINGER: Duration = Duration::from_secs(2);
/// Most refused connections lingering at once; past it they are closed at once.
pub const LINGER_MAX: usize = 1024;

/// Everything the connection threads share: configuration, backends, strategy, counters.
#[derive(Debug)]
pub struct Shared {
    /// The configuration this balancer was started with.
    pub config: Config,
    /// The backends, changeable at run time.
    pub backends: Backends,
    /// The load-balancing strategy.
    pub strategy: Box<dyn Strategy>,
    /// The access log and recent routing decisions.
    pub log: AccessLog,
    /// Balancer-wide counters.
    pub stats: ServerStats,
    /// Set when the balancer stops: no new requests on kept-alive connections.
    pub draining: AtomicBool,
    /// Open client connections, so a shutdown can close the idle ones.
    pub connections: Connections,
    /// The demo backends started with this balancer, for drills (none with `--backend` only).
    pub demos: Option<Arc<Fleet>>,
    /// Connection threads waiting for their next connection.
    pub spares: Spares,
}

impl Shared {
    /// Shared state for `config`, with the demo backends (if any) for drills.
    pub fn new(config: Config, demos: Option<Arc<Fleet>>) -> Shared {
        Shared {
            backends: Backends::new(&config.backends),
            strategy: strategy::build(config.strategy),
            log: AccessLog::new(config.quiet),
            stats: ServerStats::default(),
            draining: AtomicBool::new(false),
            connections: Connections::default(),
            demos,
            spares: Spares::default(),
            config,
        }
    }
}

/// An open client connection's stream, and its flag saying it waits for its next request.
type OpenConnection = (Arc<TcpStream>, Arc<AtomicBool>);

/// The open client connections, each with a flag saying it waits for its next request.
#[derive(Debug, Default)]
pub struct Connections {
    next_id: AtomicU64,
    /// The stream is the connection thread's own (shared, not `dup`ed: one descriptor each).
    open: Mutex<HashMap<u64, OpenConnection>>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, OpenConnection>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection; returns its id and its idle flag.
    fn add(&self, stream: &Arc<TcpStream>) -> (u64, Arc<AtomicBool>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let idle = Arc::new(AtomicBool::new(false));
        self.lock()
            .insert(id, (Arc::clone(stream), Arc::clone(&idle)));
        (id, idle)
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Closes every connection that waits for a request (the shutdown's "close idle
    /// keep-alive connections"). Busy ones finish their request and then close.
    pub fn close_idle(&self) -> usize {
        let open = self.lock();
        let mut closed = 0;
        for (stream, idle) in open.values() {
            if idle.load(Ordering::Relaxed) {
                let _ = stream.shutdown(Shutdown::Both);
                closed += 1;
            }
        }
        closed
    }
}

/// A running balancer.
#[derive(Debug)]
pub struct Balancer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
    flusher: Option<JoinHandle<()>>,
    /// The active health checker, with `--health-check`.
    checker: Option<Checker>,
    stopped: Arc<AtomicBool>,
    admin: Option<Admin>,
}

/// What a shutdown did, for the closing summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Requests answered over the whole run.
    pub requests: u64,
    /// Connections accepted over the whole run.
    pub accepted: u64,
    /// Connections still open when the drain timeout ran out (0 after a clean drain).
    pub abandoned: u64,
    /// How long the drain took.
    pub drain: Duration,
}

impl Balancer {
    /// Binds `config.listen` and starts serving.
    ///
    /// # Errors
    /// The address cannot be bound (in use, not local, no permission); the message names it.
    pub fn start(config: Config) -> io::Result<Balancer> {
        Balancer::start_with_demos(config, None)
    }

    /// Like [`Balancer::start`], and keeps the demo backends, so drills can be switched
    /// through the balancer (the admin listener's `/demo/...`).
    ///
    /// # Errors
    /// The address cannot be bound (in use, not local, no permission); the message names it.
    pub fn start_with_demos(config: Config, demos: Option<Arc<Fleet>>) -> io::Result<Balancer> {
        let listener = TcpListener::bind(config.listen).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen on {}: {e}", config.listen))
        })?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config, demos));
        // The admin listener is bound before any thread starts, so a bad --admin fails start-up.
        // Only the default address may be skipped when taken (a second balancer on one machine).
        let admin = match shared.config.admin {
            Some(addr) => match Admin::start(addr, Arc::clone(&shared)) {
                Ok(admin) => Some(admin),
                Err(e) if !shared.config.admin_required && e.kind() == io::ErrorKind::AddrInUse => {
                    eprintln!("[Admin] not started: {e} (pass --admin ADDR or --admin off)");
                    None
                }
                Err(e) => return Err(e),
            },
            None => None,
        };
        let stopped = Arc::new(AtomicBool::new(false));
        let lingerer = spawn_lingerer()?;
        let checker = Checker::start(&shared)?;
        let accept = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("accept".into())
                .spawn(move || accept_loop(listener, &shared, &lingerer))?
        };
        let flusher = {
            let (shared, stopped) = (Arc::clone(&shared), Arc::clone(&stopped));
            thread::Builder::new().name("log".into()).spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    thread::park_timeout(FLUSH_INTERVAL);
                    shared.log.flush();
                }
            })?
        };
        Ok(Balancer {
            shared,
            addr,
            accept: Some(accept),
            flusher: Some(flusher),
            checker,
            stopped,
            admin,
        })
    }

    /// The address the balancer listens on (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the admin listener, when `--admin` is not `off`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(Admin::addr)
    }

    /// The state shared with the connection threads (backends, counters, ...).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops accepting, waits up to `--drain-timeout` for requests in flight, closes idle
    /// keep-alive connections, and returns what happened.
    pub fn shutdown(mut self) -> Summary {
        self.stop()
    }

    fn stop(&mut self) -> Summary {
        let started = Instant::now();
        self.shared.draining.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            // The accept thread is blocked in accept(): a connection of our own wakes it.
            let _ = TcpStream::connect_timeout(&wake_addr(self.addr), Duration::from_secs(1));
            let _ = accept.join();
        }
        self.shared.spares.close();
        let deadline = started + self.shared.config.drain_timeout;
        loop {
            self.shared.connections.close_idle();
            if self.shared.stats.open.load(Ordering::SeqCst) == 0 || Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        if let Some(checker) = self.checker.take() {
            checker.stop();
        }
        self.stopped.store(true, Ordering::Relaxed);
        if let Some(flusher) = self.flusher.take() {
            flusher.thread().unpark();
            let _ = flusher.join();
        }
        self.shared.log.flush();
        // The admin listener stays up during the drain, so it can be watched.
        if let Some(admin) = self.admin.take() {
            admin.stop();
        }
        Summary {
            requests: self.shared.stats.requests.load(Ordering::Relaxed),
            accepted: self.shared.stats.accepted.load(Ordering::Relaxed),
            abandoned: self.shared.stats.open.load(Ordering::Relaxed),
            drain: started.elapsed(),
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.stop();
        }
    }
}

/// Where to connect to wake our own accept loop: the bound address, or loopback when bound
/// to all interfaces.
pub(crate) fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

fn accept_loop(
    listener: TcpListener,
    shared: &Arc<Shared>,
    lingerer: &mpsc::SyncSender<TcpStream>,
) {
    loop {
        // `accept` (not `incoming`) also gives the peer's address: no `getpeername` call.
        let accepted = listener.accept();
        if shared.draining.load(Ordering::SeqCst) {
            return;
        }
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors, or the client gave up during the handshake: say
                // so, pause a moment (retrying at once would spin), and go on.
                eprintln!("[LoadBalancer] accept failed: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        inc(&shared.stats.accepted);
        let open = shared.stats.open.fetch_add(1, Ordering::SeqCst);
        if open as usize >= shared.config.max_connections {
            shared.stats.open.fetch_sub(1, Ordering::SeqCst);
            inc(&shared.stats.rejected);
            let page =
                pages::error_response(503, "too many connections (--max-connections)", true, false);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = (&stream).write_all(&page);
            let _ = lingerer.try_send(stream);
            continue;
        }
        let worker = Arc::clone(shared);
        let job: Job = Box::new(move || {
            let stream = Arc::new(stream);
            let (id, idle) = worker.connections.add(&stream);
            let _open = OpenGuard {
                shared: &worker,
                id,
            };
            proxy::serve(stream, peer, &worker, &idle);
        });
        // A parked thread takes the connection if one is free; else a new thread starts, and
        // after its connection it parks for the next (see `spare`).
        let Err(job) = shared.spares.hand_off(job) else {
            continue;
        };
        let parker = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("client".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                job();
                while let Some(next) = parker.spares.next() {
                    next();
                }
            });
        if let Err(e) = spawned {
            // The closure (and the stream in it) is dropped: the client sees a close.
            shared.stats.open.fetch_sub(1, Ordering::SeqCst);
            eprintln!("[LoadBalancer] cannot start a thread for {peer}: {e}");
        }
    }
}

/// Keeps a client connection counted as open, and in the registry of open connections, until
/// it is dropped: when the connection ends, and also if its thread panics, so that a bug can
/// never leak a slot of `--max-connections`.
struct OpenGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.shared.connections.remove(self.id);
        self.shared.stats.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A thread that closes refused connections gently: it half-closes them and reads what the
/// client still sends for up to [`LINGER`], so the client reads the `503` instead of a reset.
fn spawn_lingerer() -> io::Result<mpsc::SyncSender<TcpStream>> {
    let (tx, rx) = mpsc::sync_channel::<TcpStream>(LINGER_MAX);
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
                    rx.recv_timeout(Duration::from_millis(20)).ok()
                };
                if first.is_none() && lingering.is_empty() {
                    return; // the balancer is gone
                }
                for stream in first.into_iter().chain(rx.try_iter()) {
                    let _ = stream.shutdown(Shutdown::Write);
                    if stream.set_nonblocking(true).is_ok() && lingering.len() < LINGER_MAX {
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
