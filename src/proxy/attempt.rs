//! One try at one backend: the chapter's `conn.request(...)`, `conn.getresponse()` and
//! `self.wfile.write(resp.read())`, for every method and every framing.
//!
//! `attempt` connects (or takes a pooled connection), sends the request head and body
//! (`send_request`), reads the response head (`read_reply`), and streams the response to
//! the client (`relay_response`). When it fails it says where, as a `Fault`; whether the
//! request may then go to another backend is
//! [`may_retry`](crate::backends::retry::may_retry)'s to say, and the proxy's to act on.

use super::relay::{CopyError, copy_chunked, copy_exact, copy_until_close, tunnel};
use super::rewrite::{Plan, Reply, build_reply};
use crate::backends::member::Backend;
use crate::backends::retry::{BodyState, Failure, may_retry_fresh};
use crate::conn::{BufConn, Timeouts, is_local_failure, is_timeout};
use crate::http::framing::Body;
use crate::http::{Error, Parse, pages, response};
use crate::metrics::Held;
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Most interim (`1xx`) responses read before the final one; past it the backend gets the
/// blame and the client `502`. Each interim head is read and dropped, so without a cap a
/// backend could hold a request (and the client's thread) forever by sending `103 Early
/// Hints` without end: each one resets `--backend-timeout`. A real exchange has one or two.
pub const MAX_INTERIM: usize = 32;
/// Why a backend that passed [`MAX_INTERIM`] failed.
const TOO_MANY_INTERIM: &str = "the backend sent more than 32 interim (1xx) responses";

/// The client's side of one request, as the attempts at backends see and change it.
pub(crate) struct Exchange<'a> {
    /// The client connection (its buffer holds the body when it came whole).
    pub(crate) client: &'a mut BufConn,
    /// The request, as checked and rewritten for the backend.
    pub(crate) plan: &'a Plan,
    /// How far the request's body got.
    pub(crate) body: BodyState,
    /// `100 Continue` went to the client.
    pub(crate) continue_sent: bool,
    /// Limits of client and backend connections.
    pub(crate) timeouts: &'a Timeouts,
    /// `--max-body`.
    pub(crate) max_body: Option<u64>,
    /// Set when the balancer stops: the client connection closes after this response.
    pub(crate) draining: &'a AtomicBool,
    /// Request bodies being streamed from clients now ([`crate::metrics::ServerStats::bodies`]).
    pub(crate) bodies: &'a AtomicU64,
}

/// A response relayed to the client in full.
pub(crate) struct Relayed {
    /// Its status.
    pub(crate) status: u16,
    /// Body bytes sent to the client.
    pub(crate) bytes: u64,
    /// The client connection can take another request.
    pub(crate) client_keep: bool,
}

/// Why an attempt did not end in a relayed response.
pub(crate) enum Fault {
    /// The backend failed before any byte of its response reached the client.
    Backend(Failure, &'static str),
    /// The client sent a body the balancer refuses (`400`, `413`) or went silent (`408`):
    /// answer with the page if given, then close. `None`: the client went away.
    Client(Option<Error>),
    /// The balancer itself could not make the attempt (out of file descriptors, local ports or
    /// memory): answer with the page, and blame no backend.
    Local(Error),
    /// The response had started when the backend or the client failed: close, nothing to add.
    /// `blame` says why the backend is at fault, `None` when the client went away.
    Broken {
        /// The status already sent.
        status: u16,
        /// Body bytes already sent.
        bytes: u64,
        /// Why the backend is to blame, if it is.
        blame: Option<&'static str>,
    },
}

/// One try at `backend`: connect (or reuse a pooled connection), send the request, read the
/// response head, relay the response. `add` writes extra lines into the client's head.
pub(crate) fn attempt(
    x: &mut Exchange<'_>,
    backend: &Backend,
    add: &impl Fn(&mut Vec<u8>),
) -> Result<Relayed, Fault> {
    let connect_failed = |e: io::Error| {
        if is_local_failure(&e) {
            return Fault::Local(Error {
                status: 503,
                why: "the balancer is out of local resources (file descriptors, ports or memory)",
            });
        }
        Fault::Backend(Failure::Connect, connect_error(&e))
    };
    let idempotent = crate::http::request::is_idempotent(&x.plan.method);
    let connected = backend.connect(x.timeouts).map_err(connect_failed)?;
    let (mut up, mut reused) = (connected.conn, connected.pooled);
    // A pooled connection is used only if nothing arrived on it while it sat idle: a byte
    // there is the tail of an earlier response (bytes past its Content-Length; a connection
    // that carried a HEAD, 204 or 304 answer is not pooled at all, see `build_reply`) or an
    // answer nobody asked for (a 408), and relayed it would
    // reach this client as its own response. A FIN means the backend closed it. Either way
    // the connection is dropped and a fresh one made.
    if reused && !looks_alive(&up) {
        up = backend.connect_fresh(x.timeouts).map_err(connect_failed)?;
        reused = false;
    }
    let reply = loop {
        let result = send_request(x, &mut up, backend).and_then(|()| read_reply(&mut up, x, add));
        match result {
            Ok(reply) => break reply,
            Err(Fault::Backend(failure, _))
                if reused && may_retry_fresh(failure, x.body, idempotent) =>
            {
                // The backend had closed this idle connection, or left bytes of an earlier
                // answer on it: not its fault. Once more, on a new connection.
                up = backend.connect_fresh(x.timeouts).map_err(connect_failed)?;
                reused = false;
            }
            Err(fault) => return Err(fault),
        }
    };
    relay_response(x, up, reply, backend)
}

fn connect_error(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            "connect timed out (--connect-timeout)"
        }
        _ => "could not connect",
    }
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
fn send_request(x: &mut Exchange<'_>, up: &mut BufConn, backend: &Backend) -> Result<(), Fault> {
    if matches!(x.body, BodyState::None | BodyState::Whole) {
        return send_whole(x, up, backend);
    }
    up.write_all(&x.plan.upstream_head)
        .map_err(|e| send_failed(&e, false))?;
    if x.plan.expect_continue && !x.continue_sent {
        x.client
            .write_all(pages::CONTINUE)
            .map_err(|_| Fault::Client(None))?;
        x.continue_sent = true;
    }
    x.body = BodyState::Consumed;
    let _streaming = Held::new(x.bodies);
    let _ = x.client.set_read_timeout(x.timeouts.client);
    let mut sent = 0;
    let result = match x.plan.body {
        Body::Length(n) => copy_exact(x.client, &up.stream, n, Vec::new(), &mut sent),
        Body::Chunked => copy_chunked(
            x.client,
            &up.stream,
            x.max_body,
            Vec::new(),
            true,
            &mut sent,
        ),
        Body::Empty | Body::UntilClose => Ok(()),
    };
    backend.stats.bytes_in.fetch_add(sent, Ordering::Relaxed);
    if result.is_ok() {
        x.body = BodyState::Done;
    }
    result.map_err(|e| match e {
        CopyError::Dest(e) => send_failed(&e, true),
        CopyError::Source(e) if is_timeout(&e) => Fault::Client(Some(Error {
            status: 408,
            why: "the request body took too long (--client-timeout)",
        })),
        CopyError::Source(_) | CopyError::SourceClosed => Fault::Client(None),
        CopyError::Framing(error) => Fault::Client(Some(error)),
        CopyError::TooLarge => Fault::Client(Some(Error {
            status: 413,
            why: "the request body is larger than --max-body",
        })),
    })
}

/// Sends a request whose body (if any) is whole in the client's buffer: head and body in
/// one write, and the buffer keeps the body for another backend.
fn send_whole(x: &Exchange<'_>, up: &mut BufConn, backend: &Backend) -> Result<(), Fault> {
    let head = &x.plan.upstream_head;
    let body = match x.plan.body {
        Body::Length(n) => &x.client.data()[..n as usize],
        _ => &[][..],
    };
    if body.is_empty() {
        return up.write_all(head).map_err(|e| send_failed(&e, false));
    }
    let mut message = Vec::with_capacity(head.len() + body.len());
    message.extend_from_slice(head);
    message.extend_from_slice(body);
    // A write that fails part-way may have delivered the head: then it was "sent", and a
    // non-idempotent request must not go to another backend.
    write_counted(&*up.stream, &message).map_err(|(e, partly)| send_failed(&e, partly))?;
    let sent = body.len() as u64;
    backend.stats.bytes_in.fetch_add(sent, Ordering::Relaxed);
    Ok(())
}

/// Writes all of `message` to `to`, again after a write a signal interrupted. On failure,
/// the error, and whether some bytes were written before it (`partly`).
fn write_counted(mut to: impl Write, message: &[u8]) -> Result<(), (io::Error, bool)> {
    let mut written = 0;
    while written < message.len() {
        match to.write(&message[written..]) {
            Ok(0) => return Err((io::ErrorKind::WriteZero.into(), written > 0)),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((e, written > 0)),
        }
    }
    Ok(())
}

/// Writing the request failed; `partly`: some of it may have reached the backend. A backend
/// that stopped reading for `--backend-timeout` timed out, as one that stopped answering.
fn send_failed(e: &io::Error, partly: bool) -> Fault {
    let why = io_why(e, "could not send the request to the backend");
    let failure = if is_timeout(e) {
        Failure::TimedOut
    } else {
        Failure::Send { partly }
    };
    Fault::Backend(failure, why)
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
/// nginx does, at most [`MAX_INTERIM`] of them) and writes the head for the client.
fn read_reply(
    up: &mut BufConn,
    x: &Exchange<'_>,
    add: &impl Fn(&mut Vec<u8>),
) -> Result<Reply, Fault> {
    let mut interims = 0;
    loop {
        match response::parse(up.data()) {
            Err(e) => return Err(Fault::Backend(Failure::BadResponse, e.why)),
            Ok(Parse::Complete { head, len })
                if (100..200).contains(&head.status) && head.status != 101 =>
            {
                interims += 1;
                if interims > MAX_INTERIM {
                    return Err(Fault::Backend(Failure::BadResponse, TOO_MANY_INTERIM));
                }
                up.consume(len);
                continue;
            }
            Ok(Parse::Complete { head, len }) => {
                let draining = x.draining.load(Ordering::Relaxed);
                let reply = build_reply(&head, x.plan, draining, add)
                    .map_err(|e| Fault::Backend(Failure::BadResponse, e.why))?;
                up.consume(len);
                return Ok(reply);
            }
            Ok(Parse::Partial) => {}
        }
        let answered = interims > 0 || !up.data().is_empty();
        let broke = |why| {
            let failure = if answered {
                Failure::BadResponse
            } else {
                Failure::Closed
            };
            Fault::Backend(failure, why)
        };
        match up.fill() {
            Ok(0) => {
                return Err(broke(
                    "the backend closed the connection without a response",
                ));
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {
                return Err(Fault::Backend(
                    Failure::TimedOut,
                    "the backend did not answer in time (--backend-timeout)",
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(Fault::Backend(
                    Failure::BadResponse,
                    "the backend's response head is too large",
                ));
            }
            Err(e) => return Err(broke(io_why(&e, "reading from the backend failed"))),
        }
    }
}

/// Streams the response to the client; returns the pooled connection when it is reusable.
fn relay_response(
    x: &mut Exchange<'_>,
    mut up: BufConn,
    reply: Reply,
    backend: &Backend,
) -> Result<Relayed, Fault> {
    let mut sent = 0;
    let mut to: &TcpStream = &x.client.stream;
    let result = match reply.body {
        Body::Empty if reply.switching => {
            if to.write_all(&reply.head).is_ok() {
                tunnel(x.client, up, x.timeouts.idle);
            }
            return Ok(Relayed {
                status: reply.status,
                bytes: 0,
                client_keep: false,
            });
        }
        Body::Length(n) if n <= up.data().len() as u64 => {
            // The body is whole in the buffer (the common case for small pages): the backend
            // connection goes back to the pool before the one write of head and body, so
            // that a request this client sends as soon as it has read the answer finds it
            // there (nginx also releases an upstream connection once the response is read).
            let mut message = reply.head;
            message.extend_from_slice(&up.data()[..n as usize]);
            up.consume(n as usize);
            if reply.upstream_keep {
                backend.release(up);
            }
            let written = to.write_all(&message).map_err(CopyError::Dest);
            if written.is_ok() {
                sent = n;
            }
            return finish(written, sent, reply.status, reply.client_keep, backend);
        }
        Body::Empty => to.write_all(&reply.head).map_err(CopyError::Dest),
        Body::Length(n) => copy_exact(&mut up, to, n, reply.head, &mut sent),
        Body::Chunked => copy_chunked(&mut up, to, None, reply.head, reply.chunk_out, &mut sent),
        Body::UntilClose => copy_until_close(&mut up, to, reply.head, reply.chunk_out, &mut sent),
    };
    if result.is_ok() && reply.upstream_keep {
        backend.release(up);
    }
    finish(result, sent, reply.status, reply.client_keep, backend)
}

/// The end of a relayed response: `sent` body bytes counted for the backend, and what the
/// copy's `result` means for the client and for the backend's health.
fn finish(
    result: Result<(), CopyError>,
    sent: u64,
    status: u16,
    client_keep: bool,
    backend: &Backend,
) -> Result<Relayed, Fault> {
    backend.stats.bytes_out.fetch_add(sent, Ordering::Relaxed);
    let blame = match result {
        Ok(()) => {
            return Ok(Relayed {
                status,
                bytes: sent,
                client_keep,
            });
        }
        Err(CopyError::Dest(_)) => None,
        Err(CopyError::Source(e)) if is_timeout(&e) => Some("the backend went silent mid-response"),
        Err(_) => Some("the response broke off"),
    };
    Err(Fault::Broken {
        status,
        bytes: sent,
        blame,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that answers each write as scripted, and fails the test if written to
    /// after its script ran out (as a write loop that went on after an error would).
    struct Scripted(Vec<io::Result<usize>>);

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            assert!(
                !self.0.is_empty(),
                "written to again after the script ended"
            );
            self.0.remove(0).map(|n| n.min(buf.len()))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_says_whether_part_of_the_request_went_out() {
        use io::ErrorKind::{BrokenPipe, ConnectionReset, Interrupted, WriteZero};
        let err = |kind: io::ErrorKind| Err(io::Error::from(kind));
        // What each write returns -> Ok, or the error and whether bytes went out first.
        type Case = (Vec<io::Result<usize>>, Result<(), (io::ErrorKind, bool)>);
        let cases: Vec<Case> = vec![
            (vec![Ok(10)], Ok(())),
            (vec![Ok(4), Ok(6)], Ok(())),
            // A signal interrupts a write: it is made again, not a failure.
            (vec![err(Interrupted), Ok(10)], Ok(())),
            (vec![Ok(3), err(Interrupted), Ok(7)], Ok(())),
            // Nothing went out: the request may go to another backend.
            (vec![err(BrokenPipe)], Err((BrokenPipe, false))),
            (vec![Ok(0)], Err((WriteZero, false))),
            // Part of it went out: the backend may have the head.
            (
                vec![Ok(3), err(ConnectionReset)],
                Err((ConnectionReset, true)),
            ),
            (vec![Ok(3), Ok(0)], Err((WriteZero, true))),
        ];
        for (script, want) in cases {
            let got = write_counted(Scripted(script), b"0123456789");
            assert_eq!(got.map_err(|(e, partly)| (e.kind(), partly)), want);
        }
    }

    #[test]
    fn a_failed_exchange_names_what_the_backend_did() {
        // The reason goes on the client's 502/504 page and in the error log.
        let otherwise = "reading from the backend failed";
        for (kind, why) in [
            (
                io::ErrorKind::ConnectionReset,
                "the backend reset the connection",
            ),
            (
                io::ErrorKind::BrokenPipe,
                "the backend closed the connection",
            ),
            (
                io::ErrorKind::TimedOut,
                "the backend timed out (--backend-timeout)",
            ),
            (
                io::ErrorKind::WouldBlock,
                "the backend timed out (--backend-timeout)",
            ),
            (io::ErrorKind::ConnectionAborted, otherwise),
            (io::ErrorKind::Other, otherwise),
        ] {
            assert_eq!(io_why(&kind.into(), otherwise), why, "{kind:?}");
        }
    }

    #[test]
    fn the_interim_message_names_the_cap() {
        // The message is a `&'static str` (no formatting on the error path): it must say the
        // number the constant holds.
        assert!(TOO_MANY_INTERIM.contains(&format!(" {MAX_INTERIM} ")));
    }
}
