//! One accept loop for every port the crate listens on: the balancer's, the admin listener's
//! and each demo backend's. (The admin listener on a Unix socket, `--admin unix:PATH`, has a
//! small loop of its own in [`crate::admin::unix`]: a `Listener` takes TCP sockets only.)
//!
//! The chapter runs `HTTPServer(...).serve_forever()`: one request at a time, so one slow
//! client stops everybody. A [`Listener`] gives every connection its own thread (the Rust
//! Book's final project does the same, and warns that without a cap this is a way to exhaust
//! the machine), so past its cap a client gets `503` and `Retry-After` instead of a thread.
//! What it does for every port alike:
//!
//! - **accept** with the peer's address (no `getpeername` call), with the socket's
//!   [`Timeouts`] in place before anything reads from it: they are set once, on the listening
//!   socket, and every accepted socket inherits them (see [`Listener::start`]);
//! - **cap** the connections open at once ([`Options::max_connections`]); a refused client
//!   gets its `503` and a gentle close on the listener's one lingering thread ([`LINGER`](crate::conn::LINGER), so
//!   the answer is not lost to a reset): that is `listener/cap.rs` and `listener/linger.rs`;
//! - **no hand-off**: there is no accept thread. The connection threads take turns waiting in
//!   `accept` themselves (the "leader/follower" pattern): the thread that accepts a
//!   connection serves it, after making sure another thread waits in `accept` (starting one if
//!   none does). So a new connection wakes one thread, not an accept thread and then a
//!   connection thread, and no lock or condition variable sits between them. A thread whose
//!   connection ended goes back to `accept` as a spare (Apache httpd's worker MPM keeps spare
//!   threads for the same reason, `MaxSpareThreads`), up to [`SPARE_MAX`] of them, and at
//!   most an eighth of the cap (Linux reserves a descriptor for each
//!   thread blocked in `accept`, so spares count against the open-file limit). A spare
//!   thread that waited a whole accept timeout for nothing exits, unless it is the last;
//! - **drain**: [`Listener::stop`] stops accepting, closes the connections that wait for their
//!   next request, and lets busy ones finish, up to a deadline; [`Listener::abort`] closes
//!   them all (a demo backend that is "switched off"). How requests in flight get to finish
//!   on Ctrl-C (the registry of open connections, and the loop that waits for them) is all in
//!   `listener/drain.rs`; this file accepts, and runs the connection threads.
//!
//! What a connection is for is the caller's: [`Listener::start`] takes the function that
//! serves one connection ([`crate::proxy::serve`] for the balancer).

mod cap;
mod drain;
mod linger;

use cap::Refusals;
pub use cap::TunnelSlot;
pub use drain::Flags;
use drain::{Connections, Slot};

use crate::conn::{Timeouts, is_local_failure, is_timeout};
use crate::console;
use crate::metrics::{ServerStats, inc};
use crate::throttle::{self, Throttle};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread;
use std::time::Duration;

/// Stack size of a connection thread. The proxy's buffers live on the heap, so a small stack
/// suffices; only the pages a thread touches cost memory, which keeps 10,000 idle
/// connections within a few hundred megabytes.
pub const THREAD_STACK: usize = 128 * 1024;
/// Most refused connections lingering at once (and as many more queued for the lingering
/// thread); past it they are closed at once. A lingering connection holds a descriptor, so
/// a listener lingers at most an eighth of its cap.
pub const LINGER_MAX: usize = 1024;
/// Most threads waiting in `accept` at once; a thread whose connection ends while this many
/// wait exits instead. Apache httpd's `MaxSpareThreads` default (worker MPM) is 250.
pub const SPARE_MAX: usize = 250;
/// Limit on writing the `503` to a refused client: the refusing thread never waits longer.
pub const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (out of file descriptors, an aborted handshake), so that the
/// loop does not spin while the cause lasts.
pub const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(10);
/// Pause after an `accept` that failed for want of descriptors (`EMFILE`, `ENFILE`): they
/// come back only as connections close, so retrying sooner only spins (and used to log
/// about 300 lines a second per listener).
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often a drain looks whether the busy connections have finished.
pub const DRAIN_POLL: Duration = Duration::from_millis(10);
/// How long a stop spends waking the threads that wait in `accept` (one connection of its own
/// each) before it gives up on the rest; they then leave at their next wake-up.
pub const WAKE_LIMIT: Duration = Duration::from_secs(5);

/// How a listener is run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Name used in the listener's console messages (`accept`, `admin`, ...).
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
    /// The listening socket. This is its only lasting owner: a thread holds it only while it
    /// waits in `accept`, so that once a stop has woken them all, dropping this closes the
    /// port (a demo backend "switched off" refuses connections at once).
    socket: Option<Arc<TcpListener>>,
}

/// What the connection threads of one listener share.
#[derive(Debug)]
struct State {
    options: Options,
    /// The listening socket, for the threads to wait on (see [`Listener::socket`]).
    socket: Weak<TcpListener>,
    /// Set when the listener stops: no new connections, no new requests on kept-alive ones.
    draining: AtomicBool,
    threads: Arc<Threads>,
    connections: Connections,
    /// Do accepted sockets inherit the listener's options? Known from the first one on.
    inherited: OnceLock<bool>,
    /// How a client past the cap is answered, and the thread that closes it gently.
    refusals: Refusals,
    /// Failed `accept`s are printed at most once a second.
    accept_errors: Throttle,
    /// Most spare threads waiting in `accept`: an eighth of the cap, at most [`SPARE_MAX`].
    spare_max: usize,
}

/// Counts of a listener's connection threads, for tests and the curious.
#[derive(Debug, Default)]
pub struct Threads {
    /// Threads waiting in `accept` now (or on their way there).
    waiting: AtomicUsize,
    /// Threads alive now, serving or waiting.
    alive: AtomicUsize,
    /// Threads started over the listener's life.
    started: AtomicU64,
}

impl Threads {
    /// Threads waiting in `accept` for the next connection.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Threads alive, serving a connection or waiting for one.
    pub fn alive(&self) -> usize {
        self.alive.load(Ordering::SeqCst)
    }

    /// Threads started since the listener started.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }
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

impl Listener {
    /// Serves every connection accepted on `listener` with `serve`, on a thread of its own.
    ///
    /// The socket options of [`Timeouts::accepted`] are set on the listening socket, once:
    /// Linux and the BSDs copy a listener's `TCP_NODELAY` and send and receive timeouts to
    /// every socket it accepts, so a connection costs no `setsockopt` (the first accepted
    /// socket is checked, and where they were not inherited they are set on each). Linux also
    /// applies the receive timeout to `accept` itself: that is the *accept timeout* after which
    /// a spare thread leaves ([`Timeouts::first_byte`]: `--header-timeout` for the balancer, or
    /// `--idle-timeout` if shorter).
    ///
    /// # Errors
    /// The address cannot be read or the first thread cannot start.
    pub fn start<F>(listener: TcpListener, options: Options, serve: F) -> io::Result<Listener>
    where
        F: Fn(Accepted<'_>) + Send + Sync + 'static,
    {
        let addr = listener.local_addr()?;
        let socket = Arc::new(with_options(listener, &options.timeouts));
        let spare_max = linger::spare_max(options.max_connections);
        let refusals = Refusals::new(options.max_connections);
        let state = Arc::new(State {
            options,
            socket: Arc::downgrade(&socket),
            draining: AtomicBool::new(false),
            threads: Arc::default(),
            connections: Connections::default(),
            inherited: OnceLock::new(),
            refusals,
            accept_errors: Throttle::new(),
            spare_max,
        });
        spawn_worker(&state, &Arc::new(serve))?;
        Ok(Listener {
            addr,
            state,
            socket: Some(socket),
        })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The connection threads: how many wait for a connection, how many were started.
    pub fn threads(&self) -> &Arc<Threads> {
        &self.state.threads
    }

    /// Stops accepting, closes the connections that wait for a request, and waits up to
    /// `drain` for the busy ones to finish; returns how many are still open then (they go on
    /// until their request ends, or the process does).
    pub fn stop(mut self, drain: Duration) -> u64 {
        self.halt();
        let state = &self.state;
        drain::drain(&state.connections, &state.options.stats.open, drain)
    }

    /// Stops accepting and closes every open connection, busy or not.
    pub fn abort(mut self) {
        self.halt();
        self.state.connections.close(true);
    }

    /// Stops accepting: wakes every thread waiting in `accept` (they see `draining` and
    /// leave), then closes the listening socket.
    fn halt(&mut self) {
        self.state.draining.store(true, Ordering::SeqCst);
        let Some(socket) = self.socket.take() else {
            return;
        };
        drain::wake_accepting(&self.state.threads, self.addr);
        drop(socket);
        self.state.refusals.stop_lingering();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Sets the options of [`Timeouts::accepted`] on the listening socket, for the sockets it
/// accepts to inherit. std has the setters on `TcpStream` only, so the descriptor moves into
/// one for the calls and back (safe conversions through `OwnedFd`; no second descriptor).
/// Where this fails, the options are set on each accepted socket instead (see
/// [`State::set_up`]).
#[cfg(unix)]
fn with_options(listener: TcpListener, timeouts: &Timeouts) -> TcpListener {
    use std::os::fd::OwnedFd;
    let socket = TcpStream::from(OwnedFd::from(listener));
    let _ = timeouts.accepted(&socket);
    TcpListener::from(OwnedFd::from(socket))
}

/// Elsewhere the options are set on each accepted socket.
#[cfg(not(unix))]
fn with_options(listener: TcpListener, _timeouts: &Timeouts) -> TcpListener {
    listener
}

impl State {
    /// Gives an accepted socket the options of [`Timeouts::accepted`], unless it inherited
    /// them from the listener (looked at on the first socket only: three `getsockopt`s once).
    fn set_up(&self, stream: &TcpStream) -> io::Result<()> {
        let timeouts = &self.options.timeouts;
        if *self
            .inherited
            .get_or_init(|| timeouts.accepted_already(stream))
        {
            Ok(())
        } else {
            timeouts.accepted(stream)
        }
    }
}

/// Starts a connection thread, which begins by waiting in `accept`; it is counted in
/// [`Threads::waiting`] from before it starts.
fn spawn_worker<F>(state: &Arc<State>, serve: &Arc<F>) -> io::Result<()>
where
    F: Fn(Accepted<'_>) + Send + Sync + 'static,
{
    // Counted here, before it runs: in `waiting` so that no other thread believes nobody
    // waits in `accept`, and the other counts so that they never lag behind `waiting`.
    let threads = &state.threads;
    threads.waiting.fetch_add(1, Ordering::SeqCst);
    threads.started.fetch_add(1, Ordering::SeqCst);
    threads.alive.fetch_add(1, Ordering::SeqCst);
    let (state2, serve) = (Arc::clone(state), Arc::clone(serve));
    let spawned = thread::Builder::new()
        .name(state.options.worker.into())
        .stack_size(THREAD_STACK)
        .spawn(move || work(&state2, &serve));
    if let Err(e) = spawned {
        threads.waiting.fetch_sub(1, Ordering::SeqCst);
        threads.started.fetch_sub(1, Ordering::SeqCst);
        threads.alive.fetch_sub(1, Ordering::SeqCst);
        return Err(e);
    }
    Ok(())
}

/// Counts a thread out of [`Threads::alive`] when it ends, also by a panic (it was counted in
/// by `spawn_worker`).
struct Alive<'a>(&'a Threads);

impl Drop for Alive<'_> {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection thread's life: wait in `accept`, serve what it accepted (after making sure
/// another thread waits in `accept`), and again, until it is not needed.
fn work<F>(state: &Arc<State>, serve: &Arc<F>)
where
    F: Fn(Accepted<'_>) + Send + Sync + 'static,
{
    let threads = &state.threads;
    let _alive = Alive(threads);
    let slot = state.connections.join();
    let options = &state.options;
    let stats = &options.stats;
    // On entry, and at the top of each turn, this thread is counted in `waiting`.
    loop {
        let accepted = match state.socket.upgrade() {
            Some(socket) => socket.accept(),
            None => Err(io::ErrorKind::NotConnected.into()),
        };
        let others = threads.waiting.fetch_sub(1, Ordering::SeqCst) - 1;
        if state.draining.load(Ordering::SeqCst) {
            return; // a wake-up connection, or a client too late: dropped
        }
        match accepted {
            Ok((stream, peer)) => {
                inc(&stats.accepted);
                if !cap::admit(stats, options.max_connections) {
                    inc(&stats.rejected);
                    state
                        .refusals
                        .refuse(stream, options.refusal, &state.draining);
                } else if others == 0 && !start_waiting_thread(state, serve) {
                    // No thread could be started to wait in `accept`: this one goes back to
                    // it, and the client is told to come back.
                    stats.open.fetch_sub(1, Ordering::SeqCst);
                    inc(&stats.rejected);
                    state
                        .refusals
                        .refuse(stream, "out of threads", &state.draining);
                } else {
                    serve_one(state, &**serve, &slot.slot, stream, peer);
                }
            }
            // Waited a whole accept timeout for nothing: leave if another thread waits.
            Err(e) if is_timeout(&e) && others > 0 => return,
            Err(e) if is_timeout(&e) => {}
            Err(e) if accept_failed(state, &e, others) => return,
            Err(_) => {}
        }
        // Back to `accept`, unless enough threads wait there or the listener stops. (Counted
        // before `draining` is read: a stop sets `draining` before it counts the waiting
        // threads, so either this thread sees the stop or the stop sees this thread.)
        if threads.waiting.fetch_add(1, Ordering::SeqCst) >= state.spare_max
            || state.draining.load(Ordering::SeqCst)
        {
            threads.waiting.fetch_sub(1, Ordering::SeqCst);
            return;
        }
    }
}

/// After a failed `accept`: one line a second at most, and a pause so the loop does not
/// spin. Out of descriptors (`EMFILE`, `ENFILE`), the connection stays in the backlog until
/// some close: surplus threads leave (`true`), the last one waits [`ACCEPT_BACKOFF`].
fn accept_failed(state: &State, e: &io::Error, others: usize) -> bool {
    if let Some(n) = state.accept_errors.allow() {
        console::error(format_args!(
            "[{}] accept failed: {e}{}",
            state.options.name,
            throttle::left_out(n)
        ));
    }
    if !is_local_failure(e) {
        thread::sleep(ACCEPT_RETRY_PAUSE);
        return false;
    }
    if others > 0 {
        return true;
    }
    thread::sleep(ACCEPT_BACKOFF);
    false
}

/// Starts a thread to wait in `accept` in this one's place; `false` if none could start.
fn start_waiting_thread<F>(state: &Arc<State>, serve: &Arc<F>) -> bool
where
    F: Fn(Accepted<'_>) + Send + Sync + 'static,
{
    match spawn_worker(state, serve) {
        Ok(()) => true,
        Err(e) => {
            console::error(format_args!(
                "[{}] cannot start a thread: {e}",
                state.options.name
            ));
            false
        }
    }
}

/// Serves one accepted connection on this thread, counted open (and registered for the
/// drain) until it ends, also if `serve` panics.
fn serve_one<F>(state: &State, serve: &F, slot: &Slot, stream: TcpStream, peer: SocketAddr)
where
    F: Fn(Accepted<'_>),
{
    let stream = Arc::new(stream);
    let _open = slot.open(&stream, &state.options.stats);
    if state.set_up(&stream).is_ok() {
        let flags = slot.flags(&state.draining);
        serve(Accepted {
            stream,
            peer,
            flags,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Instant;

    /// The options of a test listener: this cap and these timeouts, counting into `stats`.
    pub(super) fn test_options(
        max_connections: usize,
        timeouts: Timeouts,
        stats: &Arc<ServerStats>,
    ) -> Options {
        Options {
            name: "test-accept".into(),
            worker: "test-conn",
            max_connections,
            refusal: "full",
            timeouts,
            stats: Arc::clone(stats),
        }
    }

    #[test]
    fn past_the_cap_a_client_gets_503_and_stop_closes_idle_connections() {
        let stats = Arc::new(ServerStats::default());
        let options = test_options(1, Timeouts::uniform(Duration::from_secs(5)), &stats);
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
        second.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        assert_eq!(stats.rejected.load(Ordering::SeqCst), 1);
        assert_eq!(
            listener.stop(Duration::from_secs(5)),
            0,
            "the idle one closed"
        );
        drop(first);
    }

    #[test]
    fn the_thread_that_accepts_serves_and_one_more_waits() {
        let stats = Arc::new(ServerStats::default());
        let options = test_options(16, Timeouts::uniform(Duration::from_secs(5)), &stats);
        let listener =
            Listener::start(TcpListener::bind("127.0.0.1:0").unwrap(), options, |conn| {
                let _ = (&*conn.stream).write_all(b"hello");
            })
            .unwrap();
        let threads = Arc::clone(listener.threads());
        let addr = listener.addr();
        let wait_for = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !done() {
                assert!(Instant::now() < deadline, "{what}");
                thread::yield_now();
            }
        };
        for i in 0..3 {
            let mut client = TcpStream::connect(addr).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut answer = String::new();
            client.read_to_string(&mut answer).unwrap();
            assert_eq!(answer, "hello", "connection {i}");
            // The thread that served it waits in `accept` again, beside the one it started
            // when it took the connection: two threads for one client at a time, however
            // many connections it makes one after the other.
            wait_for("two threads waiting", &|| threads.waiting() == 2);
        }
        assert_eq!(threads.started(), 2);
        assert_eq!(stats.accepted.load(Ordering::SeqCst), 3);
        assert_eq!(listener.stop(Duration::from_secs(5)), 0);
        wait_for("every thread gone", &|| threads.alive() == 0);
        // Stopped means the port is closed: a new connection is refused, not queued.
        assert!(TcpStream::connect(addr).is_err(), "still listening");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn spare_threads_leave_after_an_accept_timeout_but_the_last_stays() {
        // Accept timeout 300 ms: the read timeout accepted sockets start with.
        let stats = Arc::new(ServerStats::default());
        let options = test_options(16, Timeouts::uniform(Duration::from_millis(300)), &stats);
        // Each connection is held until its client closes (read timeouts or not): four at
        // once need four threads.
        let listener =
            Listener::start(TcpListener::bind("127.0.0.1:0").unwrap(), options, |conn| {
                loop {
                    match (&*conn.stream).read(&mut [0u8; 1]) {
                        Ok(0) => return,
                        Err(e) if !is_timeout(&e) => return,
                        _ => {}
                    }
                }
            })
            .unwrap();
        let threads = Arc::clone(listener.threads());
        let wait_for = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !done() {
                assert!(Instant::now() < deadline, "{what}");
                thread::sleep(Duration::from_millis(5));
            }
        };
        let clients: Vec<_> = (0..4)
            .map(|_| TcpStream::connect(listener.addr()).unwrap())
            .collect();
        wait_for("four served and one waiting", &|| {
            threads.alive() == 5 && threads.waiting() == 1
        });
        drop(clients);
        wait_for("the four back in accept", &|| threads.waiting() >= 2);
        // After one accept timeout with nothing to accept, all but one leave.
        wait_for("all but one thread gone", &|| threads.alive() == 1);
        assert_eq!(threads.waiting(), 1);
        // The one left still serves.
        let mut client = TcpStream::connect(listener.addr()).unwrap();
        client.write_all(b"x").unwrap();
        wait_for("a thread started for the next", &|| threads.alive() == 2);
        listener.abort();
    }
}
