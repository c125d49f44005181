//! The admin listener: metrics, the status page, and the backend API, on a port of its own.
//!
//! The chapter's "Monitoring" and "Production Considerations" (metrics, auto-scaling
//! integration) made real. A second `TcpListener` (`--admin`, default `127.0.0.1:9001`)
//! serves, on a [`Listener`] of its own (a thread per connection, at most
//! [`MAX_ADMIN_CONNECTIONS`] at once), one request per connection:
//!
//! | request | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text ([`crate::metrics::prometheus`]) |
//! | `GET /status`, `GET /` | the HTML status page ([`status`]), live, with its [`csp`] policy |
//! | `GET /status.json` | the same data as JSON |
//! | `GET /backends`, `GET /backends/{id}` | the backends as JSON |
//! | `POST /backends` | add one: body `url=http://HOST:PORT&weight=N` or a bare URL → `201` |
//! | `POST /backends/{id}/drain` | no new requests to it; requests in flight finish |
//! | `POST /backends/{id}/enable` | undo a drain |
//! | `DELETE /backends/{id}` | remove a drained backend with no request in flight |
//! | `POST /demo/{name}/{drill}` | a failure drill, when demo backends are wired in ([`Drills`]) |
//! | `POST /strategy`, `POST /backends/{id}/weight` | switch live ([`lab`]) |
//! | `POST /reload` | read `--config` and `--backends-file` again, as `SIGHUP` does ([`crate::reload`]); answers what changed |
//!
//! The balanced port never answers these paths: they are only on this listener. Who may ask
//! what is [`access`]'s rule: on TCP without a token, only reading (and the demo's drills and lab switches);
//! with a token (`--admin-token-file`), every request needs it, else `401`: as
//! `Authorization: Bearer TOKEN` (RFC 6750) from a script, or as the password of HTTP Basic
//! credentials (RFC 7617, any user name) from a browser, which asks for it once and then sends
//! it with the status page's own requests too (HAProxy's stats page and nginx's `auth_basic`
//! work the same way). On a Unix socket ([`unix`], `--admin unix:PATH`, mode 0600) the file
//! system keeps other users out. Errors are JSON for a request that was for JSON
//! (`Accept: application/json`, or a JSON path).
//!
//! Removal follows HAProxy's runtime API (`del server`): a backend must be put out of
//! rotation first (its `set server ... state drain`, here `POST .../drain`), and the removal
//! is refused while requests are still in flight on it (`409`, try again). So a `200` to
//! `DELETE` means the server behind it can be switched off without cutting a request.
//! With `--backends-file`, the file manages the list: `POST /backends` and `DELETE` answer
//! `409` and say so ([`crate::backends::file`]); drain and enable still work.
//!
//! # The folder
//!
//! - this file: the listener ([`Admin`], on TCP or on a Unix socket through [`unix`]); for
//!   each connection it reads one request, admits it, routes it and writes the answer;
//! - `admin/reading.rs` reads the request and admits it or not, by [`access`]'s rule (with
//!   [`base64`] for HTTP Basic credentials);
//! - `admin/routes.rs` says which handler answers `method path`; `admin/answers.rs` holds the
//!   handlers and `render`, which writes an answer's bytes; [`lab`] switches the strategy and
//!   the weights;
//! - [`status`]: the status page's model, its HTML and its JSON; [`why`] explains each
//!   routing decision in words; [`csp`] is the page's policy for its own `status.js` and
//!   `status.css`.

pub mod access;
mod answers;
pub mod base64;
pub mod csp;
pub mod lab;
mod reading;
mod routes;
pub mod status;
pub mod unix;
pub mod why;

use crate::conn::{BufConn, LINGER, Timeouts, linger_close};
use crate::context::Shared;
use crate::http::MAX_HEAD;
use crate::listener::{Accepted, Listener, Options};
use answers::render;
use reading::{AdminRequest, Source, admit, read_head};
use routes::route;
use status::DemoRow;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Limit on reading one admin request and on writing its answer. Admin clients are scripts
/// and browsers on the operator's side: a few seconds is plenty.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a new admin connection may stay silent before its first byte; then it is closed
/// without an answer. Short, because the listener serves at most [`MAX_ADMIN_CONNECTIONS`] at
/// once: without it, that many sockets that never send a byte would lock the operator out for
/// the whole [`ADMIN_TIMEOUT`] and its lingering close. A script or a browser sends its
/// request at once after connecting (nginx closes a silent connection at its
/// `client_header_timeout` the same way, without a response).
pub const ADMIN_FIRST_BYTE: Duration = Duration::from_secs(1);
/// Largest admin request body: the API takes one URL and a weight.
pub const MAX_ADMIN_BODY: u64 = 4 * 1024;
/// Most admin connections served at once; past it, `503`. The admin port must not become a
/// way to exhaust the balancer's threads.
pub const MAX_ADMIN_CONNECTIONS: usize = 32;

/// Failure drills that the admin listener can switch (`POST /demo/{name}/{drill}`) and the
/// status page shows with buttons. The balancer knows nothing of demo backends: whoever runs
/// them hands this hook over ([`crate::demo::Fleet`] implements it, and `main` wires it in
/// through [`crate::server::Balancer::start_with_drills`]).
pub trait Drills: Send + Sync + std::fmt::Debug {
    /// The backends that take drills, as the status page shows them.
    fn rows(&self) -> Vec<DemoRow>;

    /// Puts the backend `name` in `drill` (with `arg` for `slow` and `error`); returns the
    /// line to print.
    ///
    /// # Errors
    /// No backend of that name (`404`), or a drill that does not parse (`400`).
    fn switch(&self, name: &str, drill: &str, arg: Option<&str>) -> Result<String, DrillError>;
}

/// Why a drill was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrillError {
    /// No backend has this name.
    NoSuchBackend(String),
    /// The drill or its argument is wrong, or the backend could not be switched.
    Invalid(String),
}

/// A running admin listener. Dropping it stops it.
#[derive(Debug)]
pub struct Admin {
    on: On,
}

/// Where the admin listener listens.
#[derive(Debug)]
enum On {
    Tcp(Listener),
    Unix(unix::UnixAdmin),
}

/// What the connection threads of the admin listener share.
#[derive(Debug)]
struct AdminShared {
    balancer: Arc<Shared>,
    drills: Option<Arc<dyn Drills>>,
    /// The listener is a Unix socket (see [`access`]).
    unix: bool,
    /// Taken by every change to the backend list, so that two `POST /backends` with the
    /// same URL cannot both pass the duplicate check.
    changes: Mutex<()>,
    /// The addresses this process listens on for clients and for this API: never a backend.
    own: [SocketAddr; 2],
}

impl Admin {
    /// Binds `addr` and serves the admin API for `balancer`, with `drills` when demo
    /// backends run.
    ///
    /// # Errors
    /// The address cannot be bound; the message names it.
    pub fn start(
        addr: SocketAddr,
        balancer: Arc<Shared>,
        drills: Option<Arc<dyn Drills>>,
    ) -> io::Result<Admin> {
        let listener = TcpListener::bind(addr).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen on {addr} (--admin): {e}"))
        })?;
        let shared = AdminShared {
            own: [balancer.live().config.listen, listener.local_addr()?],
            balancer,
            drills,
            unix: false,
            changes: Mutex::new(()),
        };
        let options = Options {
            name: "admin".into(),
            worker: "admin-conn",
            max_connections: MAX_ADMIN_CONNECTIONS,
            refusal: "too many admin connections",
            timeouts: Timeouts::uniform(ADMIN_TIMEOUT),
            stats: Arc::default(),
        };
        let listener = Listener::start(listener, options, move |conn| serve(conn, &shared))?;
        Ok(Admin {
            on: On::Tcp(listener),
        })
    }

    /// Makes a Unix socket of mode 0600 at `path` (`--admin unix:PATH`, see [`unix`]) and
    /// serves the admin API for `balancer` on it; the socket is removed when the listener
    /// stops.
    ///
    /// # Errors
    /// The path holds something other than a stale socket, or cannot be written; the message
    /// names it.
    pub fn start_unix(
        path: &Path,
        balancer: Arc<Shared>,
        drills: Option<Arc<dyn Drills>>,
    ) -> io::Result<Admin> {
        let listener = unix::bind(path)?;
        let listen = balancer.live().config.listen;
        let shared = AdminShared {
            // No TCP address of the admin's own: the balanced listener twice.
            own: [listen, listen],
            balancer,
            drills,
            unix: true,
            changes: Mutex::new(()),
        };
        let admin = unix::UnixAdmin::start(listener, path, move |s| serve_unix(s, &shared))?;
        Ok(Admin {
            on: On::Unix(admin),
        })
    }

    /// The bound address (with the real port when started on port 0); `None` on a Unix
    /// socket.
    pub fn addr(&self) -> Option<SocketAddr> {
        match &self.on {
            On::Tcp(listener) => Some(listener.addr()),
            On::Unix(_) => None,
        }
    }

    /// The socket's path, on a Unix socket.
    pub fn socket_path(&self) -> Option<&Path> {
        match &self.on {
            On::Tcp(_) => None,
            On::Unix(admin) => Some(admin.path()),
        }
    }

    /// Stops accepting admin connections; requests being answered finish on their own. A
    /// Unix socket is removed.
    pub fn stop(self) {
        match self.on {
            On::Tcp(listener) => {
                listener.stop(Duration::ZERO);
            }
            On::Unix(admin) => admin.stop(),
        }
    }
}

/// Writes `bytes`, then closes gently (see [`linger_close`]), for at most [`LINGER`].
fn answer_and_close(mut stream: &TcpStream, bytes: &[u8]) {
    if io::Write::write_all(&mut stream, bytes).is_ok() {
        linger_close(stream, LINGER);
    }
}

fn serve(accepted: Accepted<'_>, shared: &AdminShared) {
    let mut conn = BufConn::new(accepted.stream, 4096, MAX_HEAD + 4096);
    if let Some(answer) = answer(&mut conn, shared) {
        answer_and_close(&conn.stream, &answer);
    }
}

fn serve_unix(stream: &mut UnixStream, shared: &AdminShared) {
    let answer = answer(&mut unix::UnixConn::new(stream, MAX_HEAD + 4096), shared);
    if let Some(answer) = answer {
        let _ = io::Write::write_all(stream, &answer);
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Reads one request from `conn` and answers it; `None` when nothing was asked (the client
/// stayed silent since it connected, or closed).
fn answer(conn: &mut impl Source, shared: &AdminShared) -> Option<Vec<u8>> {
    if conn.set_read_timeout(ADMIN_FIRST_BYTE).is_err() || !matches!(conn.fill(), Ok(1..)) {
        return None;
    }
    let deadline = Instant::now() + ADMIN_TIMEOUT;
    let live = shared.balancer.live();
    let admin_name = live.config.admin_name.as_deref();
    let mut req = match read_head(conn, deadline, admin_name) {
        Ok(req) => req,
        Err(answer) => return Some(render(answer, false, false)),
    };
    Some(match admit(conn, &mut req, shared, deadline) {
        Ok(()) => handle(&req, shared),
        Err(answer) => render(answer, req.method == "HEAD", req.json),
    })
}

/// Routes a request and writes the whole response.
fn handle(req: &AdminRequest, shared: &AdminShared) -> Vec<u8> {
    let head_only = req.method == "HEAD";
    let method = if head_only {
        "GET"
    } else {
        req.method.as_str()
    };
    render(
        route(method, &req.path, &req.body, shared),
        head_only,
        req.json,
    )
}
