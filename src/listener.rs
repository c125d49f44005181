//! One accept loop for every port the crate listens on: the balancer's, the admin listener's
//! and each demo backend's.
//!
//! The chapter runs `HTTPServer(...).serve_forever()`: one request at a time, so one slow
//! client stops everybody. A [`Listener`] gives every connection its own thread (the Rust
//! Book's final project does the same, and warns that without a cap this is a way to exhaust
//! the machine), so past its cap a client gets `503` and `Retry-After` instead of a thread.
//! What it does for every port alike:
//!
//! - **accept** with the peer's address (no `getpeername` call), and set the socket's
//!   [`Timeouts`] before anything reads from it;
//! - **cap** the connections open at once ([`Options::max_connections`]); a refused client
//!   gets its `503` and a gentle close on a thread of its own ([`LINGER`], so the answer is not
//!   lost to a reset);
//! - **spare threads**: a thread whose connection ended parks for up to [`SPARE_IDLE`] and
//!   takes the next connection, so short connections do not pay for a thread start each
//!   (Apache httpd's worker MPM keeps spare threads for the same reason, `MaxSpareThreads`);
//! - **drain**: [`Listener::stop`] stops accepting, closes the connections that wait for their
//!   next request, and lets busy ones finish, up to a deadline; [`Listener::abort`] closes
//!   them all (a demo backend that is "switched off").
//!
//! What a connection is for is the caller's: [`Listener::start`] takes the function that
//! serves one connection ([`crate::proxy::serve`] for the balancer).

use crate::conn::{LINGER, Timeouts};
use crate::http::pages;
use crate::metrics::{ServerStats, inc};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Stack size of a connection thread. The proxy's buffers live on the heap, so a small stack
/// suffices; only the pages a thread touches cost memory, which keeps 10,000 idle
/// connections within a few hundred megabytes.
pub const THREAD_STACK: usize = 128 * 1024;
/// Most refused connections lingering at once; past it they are closed at once.
pub const LINGER_MAX: usize = 1024;
/// Most threads parked at once; more exit when their connection ends. Apache httpd's
/// `MaxSpareThreads` default (worker MPM) is 250.
pub const SPARE_MAX: usize = 250;
/// How long a parked thread waits for a connection before it exits, so that the threads of a
/// burst do not stay around for good.
pub const SPARE_IDLE: Duration = Duration::from_secs(10);
/// Limit on writing the `503` to a refused client: the accept thread never waits longer.
pub const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (out of file descriptors, an aborted handshake), so that the
/// loop does not spin while the cause lasts.
pub const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(10);
/// How often a drain looks whether the busy connections have finished.
pub const DRAIN_POLL: Duration = Duration::from_millis(10);

/// How a listener is run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Name of the accept thread, also used in its console messages (`accept`, `admin`, ...).
    pub name: String,
    /// Name of the connection threads (`client`, `admin-conn`, ...).
    pub worker: &'static str,
    /// Most connections served at once; past it, `503`.
    pub max_connections: usize,
    /// Why a refused client is refused, for its `503` page.
    pub refusal: &'static str,
    /// The limits applied to every accepted socket.
    pub timeouts: Timeouts,
    /// Where the listener counts connections accepted, refused and open.
    pub stats: Arc<ServerStats>,
}

/// A running listener. [`Listener::stop`], [`Listener::abort`] or dropping it stops it.
#[derive(Debug)]
pub struct Listener {
    addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

/// What the accept thread and the connection threads share.
#[derive(Debug)]
struct State {
    options: Options,
    /// Set when the listener stops: no new connections, no new requests on kept-alive ones.
    draining: AtomicBool,
    connections: Connections,
    spares: Arc<Spares>,
}

/// One accepted connection, as handed to the function that serves it.
#[derive(Debug)]
pub struct Accepted<'a> {
    /// The socket, with its [`Timeouts`] set. Shared with the listener (not `dup`ed), so
    /// that a drain can shut an idle connection down without a second file descriptor.
    pub stream: Arc<TcpStream>,
    /// The client's address.
    pub peer: SocketAddr,
    /// What the connection and the listener tell each other.
    pub flags: Flags<'a>,
}

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

impl Listener {
    /// Serves every connection accepted on `listener` with `serve`, on a thread of its own.
    ///
    /// # Errors
    /// The address cannot be read or the accept thread cannot start.
    pub fn start<F>(listener: TcpListener, options: Options, serve: F) -> io::Result<Listener>
    where
        F: Fn(Accepted<'_>) + Send + Sync + 'static,
    {
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            options,
            draining: AtomicBool::new(false),
            connections: Connections::default(),
            spares: Arc::new(Spares::default()),
        });
        let accept = {
            let (state, serve) = (Arc::clone(&state), Arc::new(serve));
            thread::Builder::new()
                .name(state.options.name.clone())
                .spawn(move || accept_loop(&listener, &state, &serve))?
        };
        Ok(Listener {
            addr,
            state,
            accept: Some(accept),
        })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The parked connection threads, waiting for their next connection.
    pub fn spares(&self) -> &Arc<Spares> {
        &self.state.spares
    }

    /// Stops accepting, closes the connections that wait for a request, and waits up to
    /// `drain` for the busy ones to finish; returns how many are still open then (they go on
    /// until their request ends, or the process does).
    pub fn stop(mut self, drain: Duration) -> u64 {
        self.halt();
        let deadline = Instant::now() + drain;
        loop {
            self.state.connections.close(false);
            let open = self.state.options.stats.open.load(Ordering::SeqCst);
            if open == 0 || Instant::now() >= deadline {
                return open;
            }
            thread::sleep(DRAIN_POLL);
        }
    }

    /// Stops accepting and closes every open connection, busy or not.
    pub fn abort(mut self) {
        self.halt();
        self.state.connections.close(true);
    }

    fn halt(&mut self) {
        self.state.draining.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            // The accept thread is blocked in accept(): a connection of our own wakes it.
            let _ = TcpStream::connect_timeout(&wake_addr(self.addr), REFUSAL_WRITE_TIMEOUT);
            let _ = accept.join();
        }
        self.state.spares.close();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.halt();
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

fn accept_loop<F>(listener: &TcpListener, state: &Arc<State>, serve: &Arc<F>)
where
    F: Fn(Accepted<'_>) + Send + Sync + 'static,
{
    let options = &state.options;
    let stats = &options.stats;
    let mut lingerer = None;
    loop {
        // `accept` (not `incoming`) also gives the peer's address: no `getpeername` call.
        let accepted = listener.accept();
        if state.draining.load(Ordering::SeqCst) {
            return;
        }
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                eprintln!("[{}] accept failed: {e}", options.name);
                thread::sleep(ACCEPT_RETRY_PAUSE);
                continue;
            }
        };
        inc(&stats.accepted);
        let taken =
            stats.open.fetch_add(1, Ordering::SeqCst) + stats.tunnels.load(Ordering::SeqCst);
        if taken as usize >= options.max_connections {
            stats.open.fetch_sub(1, Ordering::SeqCst);
            inc(&stats.rejected);
            refuse(stream, options.refusal, &mut lingerer);
            continue;
        }
        dispatch(state, serve, stream, peer);
    }
}

/// Serves an accepted connection on a parked thread if one is free, else on a new thread
/// that parks for the next connection when this one ends.
fn dispatch<F>(state: &Arc<State>, serve: &Arc<F>, stream: TcpStream, peer: SocketAddr)
where
    F: Fn(Accepted<'_>) + Send + Sync + 'static,
{
    let job: Job = {
        let (state, serve) = (Arc::clone(state), Arc::clone(serve));
        Box::new(move || {
            let stream = Arc::new(stream);
            let (id, idle) = state.connections.add(&stream);
            let _open = OpenGuard { state: &state, id };
            if state.options.timeouts.accepted(&stream).is_ok() {
                let draining = &state.draining;
                let flags = Flags {
                    idle: &idle,
                    draining,
                };
                serve(Accepted {
                    stream,
                    peer,
                    flags,
                });
            }
        })
    };
    let Err(job) = state.spares.hand_off(job) else {
        return;
    };
    let spares = Arc::clone(&state.spares);
    let spawned = thread::Builder::new()
        .name(state.options.worker.into())
        .stack_size(THREAD_STACK)
        .spawn(move || {
            job();
            while let Some(next) = spares.next() {
                next();
            }
        });
    if let Err(e) = spawned {
        // The job (and the stream in it) is dropped: the client sees a close.
        state.options.stats.open.fetch_sub(1, Ordering::SeqCst);
        eprintln!(
            "[{}] cannot start a thread for {peer}: {e}",
            state.options.name
        );
    }
}

/// Answers a client past the cap with `503` from the accept thread (never waiting on it for
/// long), then hands the socket to the lingering thread, started at the first refusal.
fn refuse(stream: TcpStream, why: &str, lingerer: &mut Option<mpsc::SyncSender<TcpStream>>) {
    let page = pages::error_response(503, why, true, false);
    let _ = stream.set_write_timeout(Some(REFUSAL_WRITE_TIMEOUT));
    let _ = (&stream).write_all(&page);
    if lingerer.is_none() {
        *lingerer = spawn_lingerer().ok();
    }
    if let Some(lingerer) = lingerer {
        let _ = lingerer.try_send(stream);
    }
}

/// Keeps a connection counted as open, and in the registry of open connections, until it is
/// dropped: when the connection ends, and also if its thread panics, so that a bug can never
/// leak a slot of the cap.
struct OpenGuard<'a> {
    state: &'a State,
    id: u64,
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.state.connections.remove(self.id);
        self.state.options.stats.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The slot of the connection cap that an upgraded tunnel's second thread takes (see
/// [`crate::relay`]): a connection and its tunnel thread count two, so `--max-connections`
/// bounds the threads, as it is meant to. Given back when dropped.
#[derive(Debug)]
pub struct TunnelSlot<'a>(&'a ServerStats);

impl TunnelSlot<'_> {
    /// Takes a slot for a tunnel thread if connections and tunnels together leave one free
    /// under `max` (the cap `stats` are counted against); `None` at the cap.
    pub fn take(stats: &ServerStats, max: usize) -> Option<TunnelSlot<'_>> {
        // The accept loop adds to `open` and then reads `tunnels`; this does the reverse: of
        // two racing takers, at least one sees the other (sequentially consistent order).
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

/// An open connection's stream, and its flag saying it waits for its next request.
type OpenConnection = (Arc<TcpStream>, Arc<AtomicBool>);

/// The open connections, so that a drain can close the idle ones.
#[derive(Debug, Default)]
struct Connections {
    next_id: AtomicU64,
    /// The stream is the connection thread's own (shared, not `dup`ed: one descriptor each).
    open: Mutex<HashMap<u64, OpenConnection>>,
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, OpenConnection>> {
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

    /// Shuts down the connections that wait for a request, or with `busy_too` all of them.
    fn close(&self, busy_too: bool) {
        for (stream, idle) in self.lock().values() {
            if busy_too || idle.load(Ordering::Relaxed) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

/// A thread that closes refused connections gently: it half-closes them and reads what the
/// client still sends for up to [`LINGER`], so the client reads the `503` instead of a reset.
/// It ends when the accept loop (holding the sender) has ended and nothing lingers.
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
                    rx.recv_timeout(DRAIN_POLL * 2).ok()
                };
                if first.is_none() && lingering.is_empty() {
                    return;
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

/// A connection to serve, as handed to a thread.
pub type Job = Box<dyn FnOnce() + Send>;

/// Parked threads and the connections handed to them.
#[derive(Debug, Default)]
pub struct Spares {
    state: Mutex<Parked>,
    ready: Condvar,
}

#[derive(Default)]
struct Parked {
    /// Jobs handed off and not yet picked up; never more than `parked`.
    jobs: VecDeque<Job>,
    /// Threads waiting in [`Spares::next`].
    parked: usize,
    /// The listener stopped: parked threads exit.
    closed: bool,
}

impl std::fmt::Debug for Parked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parked")
            .field("jobs", &self.jobs.len())
            .field("parked", &self.parked)
            .field("closed", &self.closed)
            .finish()
    }
}

impl Spares {
    fn lock(&self) -> MutexGuard<'_, Parked> {
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
    /// `None`: the thread should exit (enough are parked already, none came, or the listener
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

    #[test]
    fn past_the_cap_a_client_gets_503_and_stop_closes_idle_connections() {
        let stats = Arc::new(ServerStats::default());
        let options = Options {
            name: "test-accept".into(),
            worker: "test-conn",
            max_connections: 1,
            refusal: "full",
            timeouts: Timeouts::uniform(Duration::from_secs(5)),
            stats: Arc::clone(&stats),
        };
        // Each connection waits, marked idle, until it is closed.
        let listener =
            Listener::start(TcpListener::bind("127.0.0.1:0").unwrap(), options, |conn| {
                conn.flags.set_idle(true);
                let _ = (&*conn.stream).read(&mut [0u8; 1]);
            })
            .unwrap();
        let first = TcpStream::connect(listener.addr()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while stats.open.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "never served");
            thread::yield_now();
        }
        let mut second = TcpStream::connect(listener.addr()).unwrap();
        second
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = String::new();
        let _ = second.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        assert_eq!(stats.rejected.load(Ordering::SeqCst), 1);
        assert_eq!(
            listener.stop(Duration::from_secs(5)),
            0,
            "the idle one closed"
        );
        drop(first);
    }
}
