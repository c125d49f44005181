//! One client connection, top to bottom: the chapter's `LoadBalancerHandler`, grown up.
//!
//! The chapter's handler reads a GET, picks the next backend, fetches the whole answer with
//! `http.client`, and copies it back. This module does the same steps for every method, in
//! this order, and a reader can follow them down the file:
//!
//! 1. [`serve`]: the connection loop, one request after another (keep-alive, pipelining).
//! 2. `read_request`: the request head, under the idle and header timeouts; `plan` (in
//!    [`crate::rewrite`]) checks it and writes the head the backend will get.
//! 3. `forward`, then `try_candidates`: a plain `for` over the backends the set offers for
//!    this request ([`crate::backends::Backends::candidates`]), one `attempt`
//!    ([`crate::attempt`]) each, until one answers or [`crate::retry::may_retry`] says the
//!    request may not go further.
//! 4. `answer`: the balancer's own page when no backend answered.
//!
//! Bodies are never held whole (beyond what one read brings): they stream through buffers of
//! bounded size in both directions.

use crate::attempt::{Exchange, Fault, attempt};
use crate::backend::Backend;
use crate::backends::Candidate;
use crate::conn::{BufConn, LINGER, is_timeout, linger_close};
use crate::console;
use crate::context::Shared;
use crate::http::framing::Body;
use crate::http::{Error, MAX_HEAD, MAX_REQUEST_LINE, Parse, pages, request};
use crate::listener::{Accepted, Flags, TunnelSlot};
use crate::log::Record;
use crate::metrics::inc;
use crate::retry::{BodyState, may_retry};
use crate::rewrite::{Hop, Plan, plan};
use crate::strategy::Key;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Read buffer of a client connection: most request heads fit in one read.
pub const CLIENT_BUFFER: usize = 8 * 1024;
/// The client buffer may grow this far, so that a head up to [`MAX_HEAD`] fits.
pub const CLIENT_BUFFER_MAX: usize = MAX_HEAD + CLIENT_BUFFER;
/// The answer when no backend could be tried at all.
const NO_BACKEND: Error = Error {
    status: 503,
    why: "no healthy backend",
};

/// The answer to an upgrade when the thread its tunnel needs would pass the cap.
const NO_TUNNEL_SLOT: Error = Error {
    status: 503,
    why: "too many connections (--max-connections): no room for this tunnel's second thread",
};

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

/// Serves one client connection until it closes, idles out, or the balancer drains.
pub fn serve(conn: Accepted<'_>, ctx: &Shared) {
    let Accepted {
        stream,
        peer,
        flags,
    } = conn;
    let mut client = Client {
        conn: BufConn::new(stream, CLIENT_BUFFER, CLIENT_BUFFER_MAX)
            .read_timeout_is(ctx.timeouts.first_byte()),
        ip: peer.ip(),
        ip_text: peer.ip().to_string(),
    };
    // The first head must be whole within --header-timeout of accept; later ones within it
    // of their first byte, after up to --idle-timeout of waiting.
    let mut first_head_by = Some(Instant::now() + ctx.timeouts.header);
    loop {
        let started = Instant::now();
        let time = SystemTime::now();
        let read = read_request(&mut client, ctx, flags, first_head_by.take());
        let (plan, pin) = match read {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(error) => {
                // The head could not be trusted: answer, and do not read another request.
                let page = pages::error_response(error.status, error.why, true, false);
                let _ = client.conn.write_all(&page);
                inc(&ctx.stats.local_responses);
                console::error(format_args!(
                    "[LoadBalancer] error: {} from {}: {}",
                    error.status, client.ip, error.why
                ));
                let line = ("-", "-", "-");
                log(ctx, &client, time, started, line, error.status, None);
                linger_close(&client.conn.stream, LINGER);
                return;
            }
        };
        let outcome = forward(&mut client, &plan, pin, ctx, flags);
        let line = (
            plan.method.as_str(),
            plan.target.as_str(),
            plan.version.as_str(),
        );
        log(
            ctx,
            &client,
            time,
            started,
            line,
            outcome.status,
            Some(&outcome),
        );
        if !outcome.keep_alive || flags.draining() {
            if !outcome.keep_alive && outcome.backend.is_none() {
                linger_close(&client.conn.stream, LINGER);
            }
            return;
        }
    }
}

fn log(
    ctx: &Shared,
    client: &Client,
    time: SystemTime,
    started: Instant,
    (method, target, version): (&str, &str, &str),
    status: u16,
    outcome: Option<&Outcome>,
) {
    inc(&ctx.stats.requests);
    ctx.log.record(&Record {
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

/// Reads the next request head; returns its plan and what the strategy reads from it
/// ([`Key::pin`]). `Ok(None)`: the client closed, or sent nothing (within `--idle-timeout`
/// between requests, or [`crate::conn::Timeouts::first_byte`] after accept), so the
/// connection just ends (as nginx does, without a response). `first_head_by`: the deadline
/// of a connection's first head, counted from accept.
///
/// # Errors
/// The error page to answer with: a parse error, or `408` when the head took longer than
/// `--header-timeout` from its first byte, or from accept for the first (slowloris clients
/// hold only their own thread, and not for longer than that).
fn read_request(
    client: &mut Client,
    ctx: &Shared,
    flags: Flags<'_>,
    first_head_by: Option<Instant>,
) -> Result<Option<(Plan, Option<u64>)>, Error> {
    const SLOW: Error = Error {
        status: 408,
        why: "the request head took too long",
    };
    let wait = match first_head_by {
        Some(_) => ctx.timeouts.first_byte(),
        None => ctx.timeouts.idle,
    };
    if client.conn.data().is_empty() && !first_byte(&mut client.conn, wait, flags) {
        return Ok(None);
    }
    let deadline = first_head_by.unwrap_or_else(|| Instant::now() + ctx.timeouts.header);
    let mut scanned = 0;
    // Past MAX_REQUEST_LINE the head is parsed once before its end (a request line that long
    // is a 414 at once); after that only when a blank line may have come. Parsing it again
    // on every read made a 30 KiB head trickled a byte at a time cost 0.75 s of CPU.
    let mut line_checked = false;
    loop {
        let data = client.conn.data();
        let long = !line_checked && data.len() > MAX_REQUEST_LINE;
        line_checked |= long;
        if (head_may_be_complete(data, scanned) || long)
            && let Parse::Complete { head, len } = request::parse(data)?
        {
            let hop = Hop {
                client_ip: &client.ip_text,
                via: &ctx.via,
            };
            let plan = plan(&head, hop, ctx.config.max_body)?;
            let pin = ctx.backends.pin(&head.headers);
            client.conn.consume(len);
            return Ok(Some((plan, pin)));
        }
        scanned = data.len();
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || client.conn.set_read_timeout(left).is_err() {
            return Err(SLOW);
        }
        match client.conn.fill() {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => return Err(SLOW),
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

/// Waits up to `wait` for the first byte of a request, marked idle meanwhile (a drain may
/// close the connection then). `false`: none came, the client closed, or the balancer stops.
///
/// A socket's read timeout is usually still the shorter one set at accept
/// ([`crate::conn::Timeouts::first_byte`]): the wait starts with it and is stretched to
/// `wait` only if nothing came by then. Most clients send their next request, or close,
/// within it, so most connections never pay a system call to change the timeout.
fn first_byte(conn: &mut BufConn, wait: std::time::Duration, flags: Flags<'_>) -> bool {
    flags.set_idle(true);
    if flags.draining() {
        return false;
    }
    let started = Instant::now();
    let set = conn.read_timeout().filter(|&t| t <= wait);
    if set.is_none() {
        let _ = conn.set_read_timeout(wait);
    }
    // No buffer is held while waiting (see `BufConn::fill_idle`).
    let mut read = conn.fill_idle();
    if set.is_some_and(|t| t < wait) && matches!(&read, Err(e) if is_timeout(e)) {
        let rest = wait.saturating_sub(started.elapsed());
        if !rest.is_zero() && conn.set_read_timeout(rest).is_ok() {
            read = conn.fill_idle();
        }
    }
    flags.set_idle(false);
    matches!(read, Ok(1..))
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

/// How a request's round of attempts ended.
enum End {
    /// A response went to the client (whole, or broken off after it started).
    Relayed(Outcome),
    /// The balancer answers with its own page; `keep`: the connection may stay open.
    Answer(Error, bool),
    /// The client went away: nothing to answer (logged as nginx's `499`).
    Gone,
}

/// After a failed attempt: on to the next candidate (with the answer to give if none is
/// left), or stop here.
enum Next {
    Retry(Error),
    Stop(End),
}

/// Sends the request to the backends the set offers, in turn, until one answers or the
/// request may not go further; answers with an error page when none did.
fn forward(
    client: &mut Client,
    plan: &Plan,
    pin: Option<u64>,
    ctx: &Shared,
    flags: Flags<'_>,
) -> Outcome {
    // A switch of protocols runs the tunnel's second direction on a thread of its own, which
    // takes a slot of --max-connections until the tunnel ends (the guard gives it back).
    let tunnel_slot = plan
        .upgrade
        .then(|| TunnelSlot::take(&ctx.stats, ctx.config.max_connections));
    if let Some(None) = tunnel_slot {
        return answer(client, plan, ctx, NO_TUNNEL_SLOT, false);
    }
    // A body that arrived whole with the head stays in the buffer until the request is done,
    // so a second backend can be sent the same bytes if the first fails.
    let body = match plan.body {
        Body::Empty => BodyState::None,
        Body::Length(n) if n <= client.conn.data().len() as u64 => BodyState::Whole,
        _ => BodyState::Waiting,
    };
    let mut x = Exchange {
        client: &mut client.conn,
        plan,
        body,
        continue_sent: false,
        timeouts: &ctx.timeouts,
        max_body: ctx.config.max_body,
        draining: flags.draining_flag(),
        bodies: &ctx.stats.bodies,
    };
    let key = Key {
        client_ip: client.ip,
        pin,
    };
    let end = try_candidates(&mut x, ctx, key);
    if let (BodyState::Whole, Body::Length(n)) = (body, plan.body) {
        client.conn.consume(n as usize);
    }
    match end {
        End::Relayed(outcome) => outcome,
        End::Answer(error, keep) => answer(client, plan, ctx, error, keep && !flags.draining()),
        End::Gone => Outcome {
            status: 499,
            bytes: 0,
            backend: None,
            keep_alive: false,
        },
    }
}

/// The forwarding loop: each candidate once, until one answers or the request may not go on.
fn try_candidates(x: &mut Exchange<'_>, ctx: &Shared, key: Key) -> End {
    let mut last = NO_BACKEND;
    for candidate in ctx.backends.candidates(key) {
        let backend = candidate.backend();
        let add = |out: &mut Vec<u8>| ctx.backends.on_response(backend, &key, out);
        match attempt(x, backend, &add) {
            Ok(done) => {
                candidate.answered(done.status);
                return End::Relayed(Outcome {
                    status: done.status,
                    bytes: done.bytes,
                    backend: Some(Arc::clone(backend)),
                    keep_alive: done.client_keep,
                });
            }
            Err(fault) => match settle(fault, &candidate, x) {
                Next::Retry(error) => last = error,
                Next::Stop(end) => return end,
            },
        }
    }
    // Unless the body was read to its end, the next bytes on the connection are not a request.
    End::Answer(last, x.body.read_to_end())
}

/// Each way an attempt can fail, and what follows for the client: here, in one place.
fn settle(fault: Fault, candidate: &Candidate<'_>, x: &Exchange<'_>) -> Next {
    let (plan, backend) = (x.plan, candidate.backend());
    match fault {
        Fault::Backend(failure, why) => {
            report(plan, Some(backend), why);
            candidate.failed(failure, why);
            let error = Error {
                status: failure.status(),
                why,
            };
            if !may_retry(failure, x.body, request::is_idempotent(&plan.method)) {
                return Next::Stop(End::Answer(error, x.body.read_to_end()));
            }
            candidate.retried();
            Next::Retry(error)
        }
        Fault::Broken {
            status,
            bytes,
            blame,
        } => {
            if let Some(why) = blame {
                report(plan, Some(backend), why);
            }
            candidate.broke(status, blame);
            Next::Stop(End::Relayed(Outcome {
                status,
                bytes,
                backend: Some(Arc::clone(backend)),
                keep_alive: false,
            }))
        }
        Fault::Client(Some(error)) => Next::Stop(End::Answer(error, false)),
        Fault::Client(None) => Next::Stop(End::Gone),
        Fault::Local(error) => {
            report(plan, None, error.why);
            Next::Stop(End::Answer(error, x.body.read_to_end()))
        }
    }
}

/// Prints why a request failed at a backend (or, with `None`, on this machine).
fn report(plan: &Plan, backend: Option<&Arc<Backend>>, why: &str) {
    match backend {
        Some(b) => console::error(format_args!(
            "[LoadBalancer] error: {} {} via {}: {why}",
            plan.method, plan.target, b.url
        )),
        None => console::error(format_args!(
            "[LoadBalancer] error: {} {}: {why}",
            plan.method, plan.target
        )),
    }
}

/// Answers the client with one of the balancer's own pages.
fn answer(client: &mut Client, plan: &Plan, ctx: &Shared, error: Error, keep: bool) -> Outcome {
    let keep = keep && plan.keep_alive;
    let page = pages::error_response(error.status, error.why, !keep, plan.head_only());
    let written = client.conn.write_all(&page).is_ok();
    inc(&ctx.stats.local_responses);
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
