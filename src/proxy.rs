//! One client connection, top to bottom: the chapter's `LoadBalancerHandler`, grown up.
//!
//! The chapter's handler reads a GET, picks the next backend, fetches the whole answer with
//! `http.client`, and copies it back. This module does the same steps for every method,
//! in this order, and a reader can follow them down the file:
//!
//! 1. [`serve`]: the connection loop, one request after another (keep-alive, pipelining).
//! 2. `read_request`: the request head, under the idle and header timeouts.
//! 3. `plan`: check the head and write the head the backend will get.
//! 4. `forward`: pick a backend; on failure, the next one (each at most once).
//! 5. `attempt`: one backend: send the request, read the response head.
//! 6. `relay_response`: stream the response back, re-framed for the client.
//!
//! Bodies are never held whole: they stream through fixed-size buffers in both directions.

use crate::backend::Backend;
use crate::conn::{BufConn, is_timeout};
use crate::http::chunked::{self, Decoder, Step};
use crate::http::framing::{self, Body};
use crate::http::head;
use crate::http::request::{self, Request, Target};
use crate::http::response::{self, Response};
use crate::http::{Error, MAX_HEAD, MAX_REQUEST_LINE, Parse, Version, pages};
use crate::log::Record;
use crate::metrics::inc;
use crate::server::Shared;
use crate::strategy::{self, Key};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Read buffer of a client connection: most request heads fit in one read.
pub const CLIENT_BUFFER: usize = 8 * 1024;
/// The client buffer may grow this far, so that a head up to [`MAX_HEAD`] fits.
pub const CLIENT_BUFFER_MAX: usize = MAX_HEAD + CLIENT_BUFFER;
/// Buffer for streaming a long `Content-Length` body, allocated for the copy only. Larger than
/// the connection buffers so that a big body moves in few system calls; 128 KiB matches the
/// socket buffer Linux grows to under load, so one read rarely finds more than this.
pub const STREAM_CHUNK: usize = 128 * 1024;
/// A pooled connection idle longer than this is checked with a peek before use (always, for
/// a request that must not be sent twice).
pub const PEEK_AFTER_IDLE: Duration = Duration::from_secs(1);
/// The `Via` entry added to forwarded requests (RFC 9110 section 7.6.3).
pub const VIA: &str = "1.1 load-balancer";

/// A client connection: the socket with its read buffer, and who it is.
struct Client {
    conn: BufConn,
    ip: IpAddr,
    /// `ip` as text, for `X-Forwarded-For`: formatted once per connection, not per request.
    ip_text: String,
}

/// What [`plan`] learned from a request head, and the head to send to a backend.
struct Plan {
    method: String,
    target: String,
    version: Version,
    body: Body,
    /// The client wants the connection kept open after this request.
    keep_alive: bool,
    /// The head for the backend, blank line included.
    upstream_head: Vec<u8>,
    /// The client sent `Expect: 100-continue` and waits for a `100` before its body.
    expect_continue: bool,
    /// The client asked to switch protocols (`Upgrade`, e.g. WebSocket).
    upgrade: bool,
    /// The value of the affinity cookie, for `--strategy cookie`.
    cookie: Option<String>,
}

impl Plan {
    fn head_only(&self) -> bool {
        self.method == "HEAD"
    }
}

/// How a request ended, for the log and for the connection loop.
struct Outcome {
    status: u16,
    /// Body bytes sent to the client.
    bytes: u64,
    backend: Option<Arc<Backend>>,
    /// The client connection can take another request.
    keep_alive: bool,
}

/// Why an attempt at a backend did not end in a relayed response.
enum Fault {
    /// The backend failed before any byte of its response reached the client. `retry`: the
    /// request may go to another backend (nothing of the client's body was consumed, and it
    /// was not sent or is idempotent).
    Backend { error: Error, retry: bool },
    /// The client sent a body the balancer refuses (`400`, `413`) or went silent (`408`);
    /// answer with the page if given, then close.
    Client(Option<Error>),
    /// The balancer itself could not make the attempt (out of file descriptors): answer with
    /// the page, and blame no backend.
    Local(Error),
    /// The response had started when the backend or the client failed: close, nothing to add.
    Broken {
        status: u16,
        bytes: u64,
        backend_failed: Option<&'static str>,
    },
}

/// Serves one client connection until it closes, idles out, or the balancer drains.
/// `idle` is set while the connection waits for its next request, so that a shutdown can
/// close it without cutting a request short.
pub fn serve(stream: Arc<TcpStream>, peer: SocketAddr, shared: &Shared, idle: &AtomicBool) {
    let cfg = &shared.config;
    if stream.set_nodelay(true).is_err()
        || stream.set_write_timeout(Some(cfg.client_timeout)).is_err()
    {
        return;
    }
    let mut client = Client {
        conn: BufConn::new(stream, CLIENT_BUFFER, CLIENT_BUFFER_MAX),
        ip: peer.ip(),
        ip_text: peer.ip().to_string(),
    };
    loop {
        let started = Instant::now();
        let time = SystemTime::now();
        let plan = match read_request(&mut client, shared, idle) {
            Ok(Some(plan)) => plan,
            Ok(None) => return,
            Err(error) => {
                // The head could not be trusted: answer, and do not read another request.
                let page = pages::error_response(error.status, error.why, true, false);
                let _ = client.conn.write_all(&page);
                inc(&shared.stats.local_responses);
                eprintln!(
                    "[LoadBalancer] error: {} from {}: {}",
                    error.status, client.ip, error.why
                );
                log(
                    shared,
                    &client,
                    time,
                    started,
                    ("-", "-", "-"),
                    error.status,
                    None,
                );
                linger_close(client.conn.stream);
                return;
            }
        };
        let outcome = forward(&mut client, &plan, shared);
        let version = plan.version.as_str();
        log(
            shared,
            &client,
            time,
            started,
            (&plan.method, &plan.target, version),
            outcome.status,
            Some(&outcome),
        );
        if !outcome.keep_alive || shared.draining.load(Ordering::Relaxed) {
            if !outcome.keep_alive && outcome.backend.is_none() {
                linger_close(client.conn.stream);
            }
            return;
        }
    }
}

/// Closes a connection after an error page without losing the page: half-close, then read
/// and drop what the client still sends (the rest of a refused body) for a moment. Closing a
/// socket with unread input resets the connection, and a reset can destroy the page before
/// the client reads it (nginx's `lingering_close` exists for the same reason).
fn linger_close(stream: Arc<TcpStream>) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(crate::server::LINGER));
    let deadline = Instant::now() + crate::server::LINGER;
    let mut scratch = [0u8; 1024];
    while Instant::now() < deadline {
        match (&*stream).read(&mut scratch) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn log(
    shared: &Shared,
    client: &Client,
    time: SystemTime,
    started: Instant,
    (method, target, version): (&str, &str, &str),
    status: u16,
    outcome: Option<&Outcome>,
) {
    inc(&shared.stats.requests);
    shared.log.record(&Record {
        client: client.ip,
        time,
        method,
        target,
        version,
        status,
        bytes: outcome.map_or(0, |o| o.bytes),
        backend: outcome
            .and_then(|o| o.backend.as_deref())
            .map(|b| b.url.as_str()),
        duration: started.elapsed(),
    });
}

/// Reads the next request head. `Ok(None)`: the client closed or stayed idle past
/// `--idle-timeout`, so the connection just ends (as nginx does, without a response).
///
/// # Errors
/// The error page to answer with: a parse error, or `408` when the head took longer than
/// `--header-timeout` from its first byte (slowloris clients hold only their own thread).
fn read_request(
    client: &mut Client,
    shared: &Shared,
    idle: &AtomicBool,
) -> Result<Option<Plan>, Error> {
    let cfg = &shared.config;
    if client.conn.data().is_empty() {
        idle.store(true, Ordering::SeqCst);
        if shared.draining.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let _ = client.conn.set_read_timeout(cfg.idle_timeout);
        let read = client.conn.fill();
        idle.store(false, Ordering::SeqCst);
        match read {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
    let deadline = Instant::now() + cfg.header_timeout;
    let mut scanned = 0;
    loop {
        let data = client.conn.data();
        if head_may_be_complete(data, scanned) || data.len() > MAX_REQUEST_LINE {
            if let Parse::Complete { head, len } = request::parse(data)? {
                let plan = plan(&head, &client.ip_text, shared)?;
                client.conn.consume(len);
                return Ok(Some(plan));
            }
        }
        scanned = data.len();
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || client.conn.set_read_timeout(left).is_err() {
            return Err(Error {
                status: 408,
                why: "the request head took too long",
            });
        }
        match client.conn.fill() {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {
                return Err(Error {
                    status: 408,
                    why: "the request head took too long",
                });
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(Error {
                    status: 431,
                    why: "header section too large",
                });
            }
            Err(_) => return Ok(None),
        }
    }
}

/// Could `data` hold a whole head? Looks for the blank line in the bytes that arrived since
/// `scanned`, so a head trickling in byte by byte is not parsed again for every byte.
fn head_may_be_complete(data: &[u8], scanned: usize) -> bool {
    let from = scanned.saturating_sub(3);
    data[from..].windows(2).any(|w| w == b"\n\n") || data[from..].windows(3).any(|w| w == b"\n\r\n")
}

/// Checks a request head and writes the head the backend will receive.
///
/// What changes on the way (RFC 9110 section 7.6): hop-by-hop fields are dropped, and so
/// are names with an underscore (nginx's `underscores_in_headers off`: CGI-style backends
/// read `X_Forwarded_For` and `X-Forwarded-For` as the same variable, so a client could
/// otherwise forge what the balancer sets); the
/// target becomes origin-form; the framing is written anew; `X-Forwarded-For` gets the
/// client's address appended, `X-Forwarded-Proto` and `X-Forwarded-Host` are set, and `Via`
/// gets this balancer's entry. Everything else passes unchanged, in order.
///
/// # Errors
/// The page to answer with: `405` for `CONNECT`, `400` for a bad target, `Host` or framing,
/// `501` for an unknown transfer coding, `413` for a body over `--max-body`, `417` for an
/// expectation other than `100-continue`.
fn plan(req: &Request<'_>, client_ip: &str, shared: &Shared) -> Result<Plan, Error> {
    if req.method == "CONNECT" {
        // A tunnel to an address of the client's choosing is an open proxy: never.
        return Err(Error {
            status: 405,
            why: "CONNECT is not allowed: this is not a forward proxy",
        });
    }
    let target = req.target()?;
    let host = req.host()?;
    let body = framing::request_body(req)?;
    if let (Body::Length(n), Some(max)) = (body, shared.config.max_body)
        && n > max
    {
        return Err(Error {
            status: 413,
            why: "the request body is larger than --max-body",
        });
    }
    let mut expect_continue = false;
    for value in head::values(&req.headers, "expect") {
        if value.eq_ignore_ascii_case(b"100-continue") {
            expect_continue = req.version == Version::Http11 && body != Body::Empty;
        } else {
            return Err(Error {
                status: 417,
                why: "only the 100-continue expectation is supported",
            });
        }
    }
    // An upgrade carries no body (a WebSocket handshake is a GET): bytes after the head
    // belong to the new protocol, so a request with a body is never upgraded.
    let upgrade = req.version == Version::Http11
        && body == Body::Empty
        && head::has_token(&req.headers, "connection", "upgrade")
        && head::values(&req.headers, "upgrade").next().is_some();

    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(req.method.as_bytes());
    out.push(b' ');
    target.write_origin_form(&mut out);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut forwarded_for: Vec<&[u8]> = Vec::new();
    let mut via: Vec<&[u8]> = Vec::new();
    for h in &req.headers {
        if h.is("x-forwarded-for") {
            forwarded_for.push(h.value);
        } else if h.is("via") {
            via.push(h.value);
        } else if !(head::is_hop_by_hop(&req.headers, h.name)
            || h.name.contains('_')
            || h.is("content-length")
            || h.is("expect")
            || h.is("x-forwarded-proto")
            || h.is("x-forwarded-host")
            || (h.is("host") && matches!(target, Target::Absolute { .. })))
        {
            push_field(&mut out, h.name, h.value);
        }
    }
    let host = match target {
        // RFC 9112 section 3.2.2: the target's authority replaces Host.
        Target::Absolute { authority, .. } => {
            push_field(&mut out, "Host", authority.as_bytes());
            Some(authority.as_bytes())
        }
        _ => host,
    };
    forwarded_for.push(client_ip.as_bytes());
    push_list(&mut out, "X-Forwarded-For", &forwarded_for);
    push_field(&mut out, "X-Forwarded-Proto", b"http");
    if let Some(host) = host {
        push_field(&mut out, "X-Forwarded-Host", host);
    }
    via.push(VIA.as_bytes());
    push_list(&mut out, "Via", &via);
    match body {
        Body::Length(n) => push_field(&mut out, "Content-Length", n.to_string().as_bytes()),
        Body::Chunked => push_field(&mut out, "Transfer-Encoding", b"chunked"),
        Body::Empty | Body::UntilClose => {}
    }
    if upgrade {
        for value in head::values(&req.headers, "upgrade") {
            push_field(&mut out, "Upgrade", value);
        }
        push_field(&mut out, "Connection", b"upgrade");
    }
    out.extend_from_slice(b"\r\n");

    let cookie = (shared.config.strategy == crate::config::StrategyKind::Cookie)
        .then(|| strategy::affinity_cookie(&req.headers))
        .flatten();
    Ok(Plan {
        method: req.method.to_string(),
        target: req.target.to_string(),
        version: req.version,
        body,
        keep_alive: req.keep_alive(),
        upstream_head: out,
        expect_continue,
        upgrade,
        cookie,
    })
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_list(out: &mut Vec<u8>, name: &str, values: &[&[u8]]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(v);
    }
    out.extend_from_slice(b"\r\n");
}

/// What the balancer has done with the client's side of a request so far.
#[derive(Default)]
struct Progress {
    /// `100 Continue` went to the client.
    continue_sent: bool,
    /// Body bytes were read from the client socket: the request cannot be sent again.
    body_consumed: bool,
    /// The body was read from the client to its end.
    body_done: bool,
}

/// Sends the request to the backend the strategy picks; if that one fails in a way that
/// allows it, to the next, each backend at most once (Pingora's "max iterations"); answers
/// with an error page when none could.
fn forward(client: &mut Client, plan: &Plan, shared: &Shared) -> Outcome {
    // A body that arrived whole with the head stays in the buffer until the request is done,
    // so a second backend can be sent the same bytes if the first fails.
    let buffered_body = match plan.body {
        Body::Empty => Some(0),
        Body::Length(n) if n <= client.conn.data().len() as u64 => Some(n as usize),
        _ => None,
    };
    let mut progress = Progress::default();
    let outcome = forward_to_backends(client, plan, shared, &mut progress, buffered_body.is_some());
    if let Some(n) = buffered_body {
        client.conn.consume(n);
    }
    outcome
}

fn forward_to_backends(
    client: &mut Client,
    plan: &Plan,
    shared: &Shared,
    progress: &mut Progress,
    replayable: bool,
) -> Outcome {
    let cfg = &shared.config;
    let backends = shared.backends.snapshot();
    let key = Key {
        client_ip: client.ip,
        cookie: plan.cookie.as_deref(),
    };
    let mut tried: Vec<usize> = Vec::with_capacity(2);
    let mut last_error = None;
    loop {
        let now = Instant::now();
        let usable = |b: &Backend| !tried.contains(&b.id) && b.is_eligible(now);
        let Some(i) = shared.strategy.pick(&backends, &key, &usable) else {
            break;
        };
        let backend = &backends[i];
        tried.push(backend.id);
        if !backend.health.claim(now, cfg.fail_timeout) {
            continue; // another request took this backend's trial
        }
        let _in_flight = backend.start_request();
        inc(&backend.stats.requests);
        let started = Instant::now();
        match attempt(client, plan, backend, shared, progress, replayable) {
            Ok(outcome) => {
                if let Some(change) = backend.health.record_success() {
                    backend.health_changed(&change);
                }
                backend.stats.count_response(outcome.status);
                backend.stats.duration.observe(started.elapsed());
                return outcome;
            }
            Err(Fault::Backend { error, retry }) => {
                backend_failed(backend, plan, error.why, shared);
                last_error = Some(error);
                if !retry {
                    break;
                }
                inc(&backend.stats.retries);
            }
            Err(Fault::Client(page)) => {
                let Some(error) = page else {
                    return Outcome {
                        status: 499,
                        bytes: 0,
                        backend: None,
                        keep_alive: false,
                    };
                };
                return answer(client, plan, shared, error, false);
            }
            Err(Fault::Local(error)) => {
                eprintln!(
                    "[LoadBalancer] error: {} {}: {}",
                    plan.method, plan.target, error.why
                );
                let keep = replayable || progress.body_done;
                return answer(client, plan, shared, error, keep);
            }
            Err(Fault::Broken {
                status,
                bytes,
                backend_failed: why,
            }) => {
                if let Some(why) = why {
                    backend_failed(backend, plan, why, shared);
                }
                backend.stats.count_response(status);
                return Outcome {
                    status,
                    bytes,
                    backend: Some(Arc::clone(backend)),
                    keep_alive: false,
                };
            }
        }
    }
    let error = last_error.unwrap_or(Error {
        status: 503,
        why: "no healthy backend",
    });
    // Unless the body was read to its end, the next bytes on the connection are not a request.
    let keep = replayable || progress.body_done;
    answer(client, plan, shared, error, keep)
}

/// Counts a failure against a backend, prints it, and takes the backend out of rotation
/// when it has failed `--max-fails` times in a row.
fn backend_failed(backend: &Backend, plan: &Plan, why: &str, shared: &Shared) {
    eprintln!(
        "[LoadBalancer] error: {} {} via {}: {why}",
        plan.method, plan.target, backend.url
    );
    let cfg = &shared.config;
    if let Some(change) = backend
        .health
        .record_failure(why, cfg.max_fails, cfg.fail_timeout)
    {
        backend.health_changed(&change);
    }
}

/// Answers the client with one of the balancer's own pages.
fn answer(client: &mut Client, plan: &Plan, shared: &Shared, error: Error, keep: bool) -> Outcome {
    let keep = keep && plan.keep_alive && !shared.draining.load(Ordering::Relaxed);
    let page = pages::error_response(error.status, error.why, !keep, plan.head_only());
    let written = client.conn.write_all(&page).is_ok();
    inc(&shared.stats.local_responses);
    let body = page
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |p| page.len() - p - 4);
    Outcome {
        status: error.status,
        bytes: body as u64,
        backend: None,
        keep_alive: keep && written,
    }
}

/// What went wrong while sending a request or waiting for its response head.
enum SendFault {
    /// The backend side failed. `sent`: some of the request reached it. `answered`: some of
    /// a response came back. `timed_out`: it went silent.
    Backend {
        error: Error,
        sent: bool,
        answered: bool,
        timed_out: bool,
    },
    /// The client side failed (see [`Fault::Client`]).
    Client(Option<Error>),
}

/// One try at one backend: connect (or reuse a pooled connection), send the request, read
/// the response head, relay the response.
fn attempt(
    client: &mut Client,
    plan: &Plan,
    backend: &Arc<Backend>,
    shared: &Shared,
    progress: &mut Progress,
    replayable: bool,
) -> Result<Outcome, Fault> {
    let cfg = &shared.config;
    let connect_failed = |e: io::Error| {
        if out_of_descriptors(&e) {
            return Fault::Local(Error {
                status: 503,
                why: "the balancer is out of file descriptors (raise ulimit -n)",
            });
        }
        inc(&backend.stats.connect_errors);
        Fault::Backend {
            error: connect_error(&e),
            retry: true,
        }
    };
    let idempotent = request::is_idempotent(&plan.method);
    let (mut up, idle_for) = backend
        .connect(cfg.connect_timeout, cfg.backend_timeout)
        .map_err(connect_failed)?;
    let mut reused = idle_for.is_some();
    // A request that must not be sent twice gets a connection known to be open; so does any
    // request on a connection that sat idle a while, in case the backend wrote something
    // (a 408, say) and closed it meanwhile. Busy connections skip the check: it costs three
    // system calls.
    if idle_for.is_some_and(|idle| !idempotent || idle > PEEK_AFTER_IDLE) && !looks_alive(&up) {
        up = backend
            .connect_fresh(cfg.connect_timeout, cfg.backend_timeout)
            .map_err(connect_failed)?;
        reused = false;
    }
    let reply = loop {
        let result = send_request(client, plan, &mut up, backend, shared, progress, replayable)
            .and_then(|()| read_reply(&mut up, plan, backend, shared));
        match result {
            Ok(reply) => break reply,
            Err(SendFault::Client(page)) => return Err(Fault::Client(page)),
            Err(SendFault::Backend {
                error,
                sent,
                answered,
                timed_out,
            }) => {
                let retry = !progress.body_consumed && !answered && (idempotent || !sent);
                if reused && retry && !timed_out {
                    // The backend had closed this idle connection: not its fault. Once more,
                    // on a new connection.
                    up = backend
                        .connect_fresh(cfg.connect_timeout, cfg.backend_timeout)
                        .map_err(connect_failed)?;
                    reused = false;
                    continue;
                }
                if !timed_out && !answered {
                    inc(&backend.stats.response_errors);
                }
                return Err(Fault::Backend { error, retry });
            }
        }
    };
    relay_response(client, up, reply, backend, shared)
}

/// Did a connect fail because this process (`EMFILE`, 24) or the system (`ENFILE`, 23) ran
/// out of file descriptors? That is no fault of the backend's.
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24))
}

fn connect_error(e: &io::Error) -> Error {
    let why = match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            "connect timed out (--connect-timeout)"
        }
        _ => "could not connect",
    };
    Error { status: 502, why }
}

/// Is a pooled connection still open? A non-blocking peek sees the backend's FIN if it
/// closed the connection while idle. Costs three system calls, so it is only used before
/// sending a request that must not be sent twice.
fn looks_alive(up: &BufConn) -> bool {
    if up.stream.set_nonblocking(true).is_err() {
        return false;
    }
    let alive =
        matches!(up.stream.peek(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
    up.stream.set_nonblocking(false).is_ok() && alive
}

/// Writes the request head and body to the backend.
fn send_request(
    client: &mut Client,
    plan: &Plan,
    up: &mut BufConn,
    backend: &Backend,
    shared: &Shared,
    progress: &mut Progress,
    replayable: bool,
) -> Result<(), SendFault> {
    let backend_err = |e: io::Error, sent| SendFault::Backend {
        error: Error {
            status: 502,
            why: io_why(&e, "could not send the request to the backend"),
        },
        sent,
        answered: false,
        timed_out: false,
    };
    if replayable {
        // The body (if any) is in the buffer: head and body in one write.
        let body = match plan.body {
            Body::Length(n) => &client.conn.data()[..n as usize],
            _ => &[][..],
        };
        if body.is_empty() {
            return up
                .write_all(&plan.upstream_head)
                .map_err(|e| backend_err(e, false));
        }
        let mut message = Vec::with_capacity(plan.upstream_head.len() + body.len());
        message.extend_from_slice(&plan.upstream_head);
        message.extend_from_slice(body);
        // A write that fails part-way may have delivered the head: then it was "sent", and a
        // non-idempotent request must not go to another backend.
        let mut written = 0;
        while written < message.len() {
            match (&*up.stream).write(&message[written..]) {
                Ok(0) => return Err(backend_err(io::ErrorKind::WriteZero.into(), written > 0)),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(backend_err(e, written > 0)),
            }
        }
        let sent = body.len() as u64;
        backend.stats.bytes_in.fetch_add(sent, Ordering::Relaxed);
        return Ok(());
    }
    up.write_all(&plan.upstream_head)
        .map_err(|e| backend_err(e, false))?;
    if plan.expect_continue && !progress.continue_sent {
        client
            .conn
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|_| SendFault::Client(None))?;
        progress.continue_sent = true;
    }
    progress.body_consumed = true;
    let _ = client.conn.set_read_timeout(shared.config.client_timeout);
    let mut sent = 0;
    let result = match plan.body {
        Body::Length(n) => copy_exact(&mut client.conn, &up.stream, n, Vec::new(), &mut sent),
        Body::Chunked => copy_chunked(
            &mut client.conn,
            &up.stream,
            shared.config.max_body,
            Vec::new(),
            true,
            &mut sent,
        ),
        Body::Empty | Body::UntilClose => Ok(()),
    };
    backend.stats.bytes_in.fetch_add(sent, Ordering::Relaxed);
    progress.body_done = result.is_ok();
    result.map_err(|e| match e {
        CopyError::Dest(e) => backend_err(e, true),
        CopyError::Source(e) if is_timeout(&e) => SendFault::Client(Some(Error {
            status: 408,
            why: "the request body took too long (--client-timeout)",
        })),
        CopyError::Source(_) | CopyError::SourceClosed => SendFault::Client(None),
        CopyError::Framing(error) => SendFault::Client(Some(error)),
        CopyError::TooLarge => SendFault::Client(Some(Error {
            status: 413,
            why: "the request body is larger than --max-body",
        })),
    })
}

fn io_why(e: &io::Error, otherwise: &'static str) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionReset => "the backend reset the connection",
        io::ErrorKind::BrokenPipe => "the backend closed the connection",
        _ if is_timeout(e) => "the backend timed out (--backend-timeout)",
        _ => otherwise,
    }
}

/// The response head as the client will get it, and how to relay the body.
struct Reply {
    status: u16,
    body: Body,
    /// The client head, blank line included.
    head: Vec<u8>,
    /// Re-encode the body as chunked (length unknown, client speaks HTTP/1.1).
    chunk_out: bool,
    /// The backend connection can go back to the pool after the body.
    upstream_keep: bool,
    /// The client connection stays open after the body.
    client_keep: bool,
    /// `101 Switching Protocols`: after the head, bytes flow both ways untouched.
    switching: bool,
}

/// Reads the backend's response head (skipping `1xx` interim responses other than `101`, as
/// nginx does) and writes the head for the client.
fn read_reply(
    up: &mut BufConn,
    plan: &Plan,
    backend: &Backend,
    shared: &Shared,
) -> Result<Reply, SendFault> {
    let failed = |status, why, answered, timed_out| SendFault::Backend {
        error: Error { status, why },
        sent: true,
        answered,
        timed_out,
    };
    let mut interim = false;
    loop {
        match response::parse(up.data()) {
            Err(e) => return Err(failed(502, e.why, true, false)),
            Ok(Parse::Complete { head, len })
                if (100..200).contains(&head.status) && head.status != 101 =>
            {
                up.consume(len);
                interim = true;
                continue;
            }
            Ok(Parse::Complete { head, len }) => {
                let reply = build_reply(&head, plan, backend, shared)
                    .map_err(|e| failed(502, e.why, true, false))?;
                up.consume(len);
                return Ok(reply);
            }
            Ok(Parse::Partial) => {}
        }
        let answered = interim || !up.data().is_empty();
        match up.fill() {
            Ok(0) => {
                return Err(failed(
                    502,
                    "the backend closed the connection without a response",
                    answered,
                    false,
                ));
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {
                return Err(failed(
                    504,
                    "the backend did not answer in time (--backend-timeout)",
                    answered,
                    true,
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(failed(
                    502,
                    "the backend's response head is too large",
                    true,
                    false,
                ));
            }
            Err(e) => {
                return Err(failed(
                    502,
                    io_why(&e, "reading from the backend failed"),
                    answered,
                    false,
                ));
            }
        }
    }
}

/// The head the client gets: the backend's status line and fields, minus hop-by-hop fields,
/// with framing and connection fields for this client.
fn build_reply(
    head: &Response<'_>,
    plan: &Plan,
    backend: &Backend,
    shared: &Shared,
) -> Result<Reply, Error> {
    let body = framing::response_body(head, &plan.method)?;
    let switching = head.status == 101;
    if switching && !plan.upgrade {
        return Err(Error {
            status: 502,
            why: "the backend switched protocols unasked",
        });
    }
    let unknown_length = matches!(body, Body::Chunked | Body::UntilClose);
    let chunk_out = unknown_length && plan.version == Version::Http11;
    let client_keep = plan.keep_alive
        && !switching
        && (chunk_out || !unknown_length)
        && !shared.draining.load(Ordering::Relaxed);
    let upstream_keep = head.keep_alive() && body != Body::UntilClose && !switching;

    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(format!("HTTP/1.1 {} ", head.status).as_bytes());
    out.extend_from_slice(head.reason);
    out.extend_from_slice(b"\r\n");
    for h in &head.headers {
        let keep = if switching && h.is("upgrade") {
            true
        } else if head::is_hop_by_hop(&head.headers, h.name) {
            false
        } else {
            // Content-Length describes the body only when there is none by rule (HEAD, 304):
            // then it passes as sent. Otherwise the balancer writes it from the framing. A
            // 1xx or 204 never carries one (RFC 9110 section 8.6): a backend's is dropped.
            !h.is("content-length")
                || (body == Body::Empty && head.status != 204 && head.status >= 200)
        };
        if keep {
            push_field(&mut out, h.name, h.value);
        }
    }
    match body {
        Body::Length(n) => push_field(&mut out, "Content-Length", n.to_string().as_bytes()),
        _ if chunk_out => push_field(&mut out, "Transfer-Encoding", b"chunked"),
        _ => {}
    }
    if switching {
        push_field(&mut out, "Connection", b"upgrade");
    } else if !client_keep {
        push_field(&mut out, "Connection", b"close");
    } else if plan.version == Version::Http10 {
        push_field(&mut out, "Connection", b"keep-alive");
    }
    if shared.config.strategy == crate::config::StrategyKind::Cookie {
        let token = strategy::affinity_token(backend);
        if plan.cookie.as_deref() != Some(token.as_str()) {
            let cookie = format!(
                "{}={token}; Path=/; HttpOnly; SameSite=Lax",
                strategy::AFFINITY_COOKIE
            );
            push_field(&mut out, "Set-Cookie", cookie.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    Ok(Reply {
        status: head.status,
        body,
        head: out,
        chunk_out,
        upstream_keep,
        client_keep,
        switching,
    })
}

/// Streams the response to the client; returns the pooled connection when it is reusable.
fn relay_response(
    client: &mut Client,
    mut up: BufConn,
    reply: Reply,
    backend: &Arc<Backend>,
    shared: &Shared,
) -> Result<Outcome, Fault> {
    let status = reply.status;
    let mut sent = 0;
    let mut to: &TcpStream = &client.conn.stream;
    let result = match reply.body {
        Body::Empty if reply.switching => {
            if to.write_all(&reply.head).is_ok() {
                tunnel(client, up, shared.config.idle_timeout);
            }
            return Ok(Outcome {
                status,
                bytes: 0,
                backend: Some(Arc::clone(backend)),
                keep_alive: false,
            });
        }
        Body::Empty => to.write_all(&reply.head).map_err(CopyError::Dest),
        Body::Length(n) => copy_exact(&mut up, to, n, reply.head, &mut sent),
        Body::Chunked => copy_chunked(&mut up, to, None, reply.head, reply.chunk_out, &mut sent),
        Body::UntilClose => copy_until_close(&mut up, to, reply.head, reply.chunk_out, &mut sent),
    };
    backend.stats.bytes_out.fetch_add(sent, Ordering::Relaxed);
    match result {
        Ok(()) => {
            if reply.upstream_keep {
                backend.release(up);
            }
            Ok(Outcome {
                status,
                bytes: sent,
                backend: Some(Arc::clone(backend)),
                keep_alive: reply.client_keep,
            })
        }
        Err(CopyError::Dest(_)) => Err(Fault::Broken {
            status,
            bytes: sent,
            backend_failed: None,
        }),
        Err(CopyError::Source(e)) if is_timeout(&e) => Err(Fault::Broken {
            status,
            bytes: sent,
            backend_failed: Some("the backend went silent mid-response"),
        }),
        Err(_) => Err(Fault::Broken {
            status,
            bytes: sent,
            backend_failed: Some("the response broke off"),
        }),
    }
}

/// Why a body could not be copied to its end.
enum CopyError {
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
fn copy_exact(
    src: &mut BufConn,
    mut dst: &TcpStream,
    n: u64,
    mut prefix: Vec<u8>,
    sent: &mut u64,
) -> Result<(), CopyError> {
    let mut left = n;
    let first = left.min(src.data().len() as u64) as usize;
    if !prefix.is_empty() || first > 0 {
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

/// Copies a chunked body from `src` to `dst` after `prefix`, decoding it and, with
/// `chunk_out`, encoding it again (trailers included); without, the data is sent as it is
/// (the connection then closes to end the body). Fails past `max` data bytes.
fn copy_chunked(
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
                if chunk_out {
                    chunked::write_chunk_size(&mut out, data.len());
                    out.extend_from_slice(data);
                    out.extend_from_slice(b"\r\n");
                } else {
                    out.extend_from_slice(data);
                }
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

/// Copies a body that ends when the backend closes the connection, after `prefix`; with
/// `chunk_out` each piece becomes a chunk, so the client connection can stay open.
fn copy_until_close(
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
            if chunk_out {
                chunked::write_chunk_size(&mut out, data.len());
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            } else {
                out.extend_from_slice(data);
            }
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
/// are silent for `idle`. One direction runs on a second thread for the tunnel's lifetime.
fn tunnel(client: &mut Client, mut up: BufConn, idle: Duration) {
    // Bytes that arrived with the heads belong to the new protocol: pass them on first.
    let early_client = client.conn.data().len();
    if up.write_all(client.conn.data()).is_err() {
        return;
    }
    client.conn.consume(early_client);
    let early_up = up.data().len();
    if client.conn.write_all(up.data()).is_err() {
        return;
    }
    up.consume(early_up);
    let (Ok(from_client), Ok(to_up)) = (client.conn.stream.try_clone(), up.stream.try_clone())
    else {
        return;
    };
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
            .stack_size(crate::server::THREAD_STACK)
            .spawn(move || pipe(&from_client, &to_up, &activity, idle))
    };
    if let Ok(to_client) = client.conn.stream.try_clone() {
        pipe(&up.stream, &to_client, &activity, idle);
    }
    if let Ok(handle) = upstream {
        let _ = handle.join();
    }
}

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
    let mut buf = vec![0u8; 16 * 1024];
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
