//! One client connection, top to bottom: the chapter's `LoadBalancerHandler`, grown up.
//!
//! The chapter's handler reads a GET, picks the next backend, fetches the whole answer with
//! `http.client`, and copies it back. This module does the same steps for every method,
//! in this order, and a reader can follow them down the file:
//!
//! 1. [`serve`]: the connection loop, one request after another (keep-alive, pipelining).
//! 2. `read_request`: the request head, under the idle and header timeouts.
//! 3. `plan` (in [`crate::rewrite`]): check the head and write the head the
//!    backend will get; `build_reply` there writes the head the client gets.
//! 4. `forward`: pick a backend; on failure, the next one (each at most once).
//! 5. `attempt`: one backend: send the request, read the response head.
//! 6. `relay_response`: stream the response back, re-framed for the client.
//!
//! Bodies are never held whole: they stream through fixed-size buffers in both directions.

use crate::backend::Backend;
use crate::conn::{BufConn, is_timeout, linger_close};
use crate::http::framing::Body;
use crate::http::request;
use crate::http::response;
use crate::http::{Error, MAX_HEAD, MAX_REQUEST_LINE, Parse, pages};
use crate::log::Record;
use crate::metrics::inc;
use crate::relay::{CopyError, copy_chunked, copy_exact, copy_until_close, tunnel};
use crate::rewrite::{Plan, Reply, build_reply, plan};
use crate::server::Shared;
use crate::strategy::Key;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

/// Read buffer of a client connection: most request heads fit in one read.
pub const CLIENT_BUFFER: usize = 8 * 1024;
/// The client buffer may grow this far, so that a head up to [`MAX_HEAD`] fits.
pub const CLIENT_BUFFER_MAX: usize = MAX_HEAD + CLIENT_BUFFER;

/// A client connection: the socket with its read buffer, and who it is.
struct Client {
    conn: BufConn,
    ip: IpAddr,
    /// `ip` as text, for `X-Forwarded-For`: formatted once per connection, not per request.
    ip_text: String,
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
    /// The balancer itself could not make the attempt (out of file descriptors, local ports or
    /// memory): answer with the page, and blame no backend.
    Local(Error),
    /// The response had started when the backend or the client failed: close, nothing to add.
    /// `blame` says why the backend is at fault, `None` when the client went away.
    Broken {
        status: u16,
        bytes: u64,
        blame: Option<&'static str>,
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
                linger_close(&client.conn.stream, crate::server::LINGER);
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
                linger_close(&client.conn.stream, crate::server::LINGER);
            }
            return;
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
        if (head_may_be_complete(data, scanned) || data.len() > MAX_REQUEST_LINE)
            && let Parse::Complete { head, len } = request::parse(data)?
        {
            let plan = plan(&head, &client.ip_text, shared)?;
            client.conn.consume(len);
            return Ok(Some(plan));
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
    let rest = &data[scanned.saturating_sub(2)..];
    // One pass: each LF, then is the line after it empty?
    rest.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && matches!(rest[i + 1..], [b'\n', ..] | [b'\r', b'\n', ..]))
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
        // Counted in flight first, then checked again: the admin API removes a backend only
        // once it is draining and has nothing in flight, so one of the two sees the other.
        let _in_flight = backend.start_request();
        if backend.is_draining() {
            continue;
        }
        inc(&backend.stats.requests);
        let started = Instant::now();
        match attempt(client, plan, backend, shared, progress, replayable) {
            Ok(outcome) => {
                if let Some(change) = backend.health.record_success() {
                    backend.health_changed(&change);
                }
                backend.stats.count_timed_response(outcome.status, started);
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
                blame,
            }) => {
                if let Some(why) = blame {
                    backend.stats.count_response_error();
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
        if local_failure(&e) {
            return Fault::Local(Error {
                status: 503,
                why: "the balancer is out of local resources (file descriptors, ports or memory)",
            });
        }
        backend.stats.count_connect_error();
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
    // A pooled connection is used only if nothing arrived on it while it sat idle: a byte
    // there is the tail of an earlier response (a body on a HEAD, 204 or 304 answer, bytes
    // past its Content-Length) or an answer nobody asked for (a 408), and relayed it would
    // reach this client as its own response. A FIN means the backend closed it. Either way
    // the connection is dropped and a fresh one made.
    if reused && !looks_alive(&up) {
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
                // Everything after a connection was made counts: timeouts, closes, broken
                // heads (a stale pooled connection retried above does not).
                backend.stats.count_response_error();
                return Err(Fault::Backend { error, retry });
            }
        }
    };
    relay_response(client, up, reply, backend, shared)
}

/// Did a connect fail for a reason on this machine (out of file descriptors, memory or local
/// ports)? That is no fault of the backend's, and must not take it out of rotation.
fn local_failure(e: &io::Error) -> bool {
    // ENOMEM 12, ENFILE 23, EMFILE 24, EADDRNOTAVAIL 99 (no local port left), ENOBUFS 105.
    matches!(e.raw_os_error(), Some(12 | 23 | 24 | 99 | 105))
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

/// Is a pooled connection still open, with nothing unasked waiting on it? A non-blocking peek
/// sees the backend's FIN, or stray bytes it wrote while the connection was idle. Three
/// system calls (two `ioctl`s around a `recv` with `MSG_PEEK`), none of which sleeps.
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
                tunnel(&mut client.conn, up, shared.config.idle_timeout);
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
            blame: None,
        }),
        Err(CopyError::Source(e)) if is_timeout(&e) => Err(Fault::Broken {
            status,
            bytes: sent,
            blame: Some("the backend went silent mid-response"),
        }),
        Err(_) => Err(Fault::Broken {
            status,
            bytes: sent,
            blame: Some("the response broke off"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::head_may_be_complete;

    #[test]
    fn blank_line_found_however_the_head_arrives() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\nHost: a\n\n",
        ] {
            // Arriving in two pieces, cut anywhere: found only once the whole head is there.
            for cut in 0..head.len() {
                assert!(!head_may_be_complete(&head[..cut], 0), "cut {cut}");
                assert!(head_may_be_complete(head, cut), "cut {cut}");
            }
        }
        assert!(!head_may_be_complete(b"GET / HTTP/1.1\r\nHost: a\r\n", 0));
    }
}
