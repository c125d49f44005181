//! One client connection, top to bottom: the chapter's `LoadBalancerHandler`, grown up.
//!
//! The chapter's handler reads a GET, picks the next backend, fetches the whole answer with
//! `http.client`, and copies it back. `chapter.rs` names those steps `serve`, `read_request`,
//! `pick`, `attempt` and `answer`; this module does the same steps for every method, under
//! the same names (the pick is a call, in `route`), and a reader can follow them down the file:
//!
//! 1. [`serve`]: the connection loop, one request after another (keep-alive, pipelining).
//!    Who the client is (its peer, a PROXY header, trusted forwarding fields) is kept in
//!    [`client`].
//! 2. `read_request`: the request head, under the idle and header timeouts; `plan` (in
//!    [`rewrite`]) checks it and writes the head the backend will get.
//! 3. `route`: the pick is [`crate::backends::Backends::candidates`], the backends to try
//!    in order (the strategy's choice first); `failover` is a plain loop over them, one
//!    `attempt` ([`attempt`]) each, until one answers or
//!    [`crate::backends::retry::may_retry`] says the request may not go further. The
//!    set's side of failover, and the whole path, are in [`crate::backends::failover`].
//! 4. `answer`: the balancer's own page when no backend answered. `serve` then writes the
//!    request's access-log line (`log`), right where the request ends.
//!
//! Bodies are never held whole (beyond what one read brings): they stream through buffers of
//! bounded size in both directions.

pub mod attempt;
pub mod client;
pub mod proxy_protocol;
pub mod relay;
pub mod rewrite;
pub mod trust;

pub use client::{CLIENT_BUFFER, CLIENT_BUFFER_MAX};

use attempt::{Exchange, Fault, attempt};
use client::{Client, Who, first_byte};
use rewrite::{Hop, Plan, plan};

use crate::backends::Candidate;
use crate::backends::member::Backend;
use crate::backends::retry::{BodyState, may_retry};
use crate::backends::strategy::Key;
use crate::backends::strategy::explain::{Why, plain_name};
use crate::conn::{LINGER, is_timeout, linger_close};
use crate::console;
use crate::context::{Live, Shared};
use crate::http::framing::Body;
use crate::http::{Error, MAX_REQUEST_LINE, Parse, head, pages, request};
use crate::listener::{Accepted, Flags, TunnelSlot};
use crate::log::Record;
use crate::metrics::inc;
use crate::request_id;
use std::io;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

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

/// How a request ended, for the log and for the connection loop.
struct Outcome {
    status: u16,
    /// Body bytes sent to the client.
    bytes: u64,
    backend: Option<Arc<Backend>>,
    /// The client connection can take another request.
    keep_alive: bool,
    /// Why it went to `backend` (and which backends it passed over).
    why: Option<Why>,
    /// Backends tried before, or instead of, `backend`, in order (empty, and not allocated,
    /// when the first one answered).
    failed: Vec<Arc<Backend>>,
    /// Time spent with backends (see [`Record::upstream`]).
    upstream: Option<std::time::Duration>,
}

/// Serves one client connection until it closes, idles out, or the balancer drains.
pub fn serve(conn: Accepted<'_>, ctx: &Shared) {
    let Accepted {
        stream,
        peer,
        flags,
    } = conn;
    // The first head (after a PROXY header) must be whole within --header-timeout of accept;
    // later ones within it of their first byte, after up to --idle-timeout of waiting.
    let live = ctx.live();
    let by = Instant::now() + live.timeouts.header;
    let Some(mut client) = Client::open(stream, peer.ip(), (live, ctx), by) else {
        return;
    };
    let mut first_head_by = Some(by);
    loop {
        let started = Instant::now();
        let time = SystemTime::now();
        let read = read_request(&mut client, ctx, flags, first_head_by.take());
        let (plan, pin) = match read {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(error) => {
                // The head could not be trusted: answer, and do not read another request.
                let page = pages::ErrorPage::new(error.status, error.why).bytes();
                let _ = client.conn.write_all(&page);
                ctx.stats.count_local(error.status);
                console::error(format_args!(
                    "[LoadBalancer] error: {} from {}: {}",
                    error.status, client.who.ip, error.why
                ));
                log(ctx, &client, (time, started), None, error.status, None);
                linger_close(&client.conn.stream, LINGER);
                return;
            }
        };
        let outcome = route(&mut client, &plan, pin, ctx, flags);
        let status = outcome.status;
        log(
            ctx,
            &client,
            (time, started),
            Some(&plan),
            status,
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

/// Writes the access-log line of one request (`plan`: `None` when its head could not be read).
fn log(
    ctx: &Shared,
    client: &Client,
    (time, started): (SystemTime, Instant),
    plan: Option<&Plan>,
    status: u16,
    outcome: Option<&Outcome>,
) {
    inc(&ctx.stats.requests);
    let joined;
    let backend = match outcome {
        Some(o) if o.failed.is_empty() => o.backend.as_deref().map(|b| b.url.as_str()),
        Some(o) => {
            let urls: Vec<&str> = o
                .failed
                .iter()
                .chain(&o.backend)
                .map(|b| b.url.as_str())
                .collect();
            joined = urls.join(",");
            Some(joined.as_str())
        }
        None => None,
    };
    let text = |f: fn(&Plan) -> &Option<String>| plan.and_then(|p| f(p).as_deref());
    let why = outcome.and_then(|o| o.why.as_ref());
    // Words only when asked for: the facts are what every request pays for.
    let explained = match why {
        Some(w) if client.live.config.explain => {
            let list = ctx.backends.snapshot();
            w.line(&list, &|id| plain_name(&list, id))
        }
        _ => String::new(),
    };
    ctx.log.record(&Record {
        client: client.who.ip,
        time,
        method: plan.map_or("-", |p| p.method.as_str()),
        target: plan.map_or("-", |p| p.target.as_str()),
        version: plan.map_or("-", |p| p.version.as_str()),
        status,
        bytes: outcome.map_or(0, |o| o.bytes),
        backend,
        duration: started.elapsed(),
        referer: text(|p| &p.referer),
        user_agent: text(|p| &p.user_agent),
        request_id: text(|p| &p.request_id),
        upstream: outcome.and_then(|o| o.upstream),
        local: outcome.is_none_or(|o| o.backend.is_none()),
        why,
        explained: &explained,
    });
}

/// The answer to a request head that took longer than `--header-timeout`.
const SLOW: Error = Error {
    status: 408,
    why: "the request head took too long",
};

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
    let wait = match first_head_by {
        Some(_) => client.live.timeouts.first_byte(),
        None => client.live.timeouts.idle,
    };
    if client.conn.data().is_empty() && !first_byte(&mut client.conn, wait, flags) {
        return Ok(None);
    }
    if first_head_by.is_none() {
        ctx.refresh(&mut client.live); // a later request: the settings in force now
    }
    let deadline = first_head_by.unwrap_or_else(|| Instant::now() + client.live.timeouts.header);
    let mut scanned = 0;
    client.who.believe(None);
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
            let plan = plan_request(&head, &mut client.who, &client.live, ctx)?;
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

/// [`plan`] for a request head: who it is from (what a trusted hop claims), its id
/// ([`request_id`]) and, for a log format that writes them, its `Referer` and `User-Agent`.
fn plan_request(
    head: &request::Request<'_>,
    who: &mut Who,
    live: &Live,
    ctx: &Shared,
) -> Result<Plan, Error> {
    let claims = trust::believe(&live.config.trusted_proxies, who.peer, &head.headers);
    who.believe(claims);
    let id = live
        .config
        .request_id
        .then(|| request_id::choose(&head.headers));
    let hop = Hop {
        client_ip: who.ip_text(),
        peer_ip: &who.peer_text,
        https: who.https,
        host: claims.and_then(|c| c.host),
        via: &ctx.via,
        new_request_id: id.as_ref().and_then(|(id, kept)| (!kept).then_some(&**id)),
    };
    let mut plan = plan(head, hop, live.config.max_body)?;
    plan.request_id = id.map(|(id, _)| id);
    if ctx.log.format().wants_agent() {
        let field = |name| head::values(&head.headers, name).next().map(lossy);
        (plan.referer, plan.user_agent) = (field("referer"), field("user-agent"));
    }
    Ok(plan)
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
// An `Outcome` carries its `Why` (about 200 bytes, by value so that routing allocates
// nothing): boxing it, as the lint suggests, would cost each request an allocation.
#[allow(clippy::large_enum_variant)]
enum End {
    /// A response went to the client (whole, or broken off after it started).
    Relayed(Outcome),
    /// The balancer answers with its own page.
    Answer {
        /// The page's status and reason.
        error: Error,
        /// Whether the connection may stay open after it: no unread body bytes are left.
        keep_alive: bool,
    },
    /// The client went away: nothing to answer (logged as nginx's `499`).
    Gone,
}

/// After a failed attempt: on to the next candidate (with the answer to give if none is
/// left), or stop here.
#[allow(clippy::large_enum_variant)] // as `End`
enum Next {
    Retry(Error),
    Stop(End),
}

/// Sends the request to the backends the set offers, in turn, until one answers or the
/// request may not go further; answers with an error page when none did.
fn route(
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
        .then(|| TunnelSlot::take(&ctx.stats, client.live.config.max_connections));
    if let Some(None) = tunnel_slot {
        return answer(client, plan, ctx, NO_TUNNEL_SLOT, false);
    }
    let body = body_state(plan.body, client.conn.data().len());
    let mut x = Exchange {
        client: &mut client.conn,
        plan,
        body,
        continue_sent: false,
        timeouts: &client.live.timeouts,
        max_body: client.live.config.max_body,
        draining: flags.draining_flag(),
        bodies: &ctx.stats.bodies,
    };
    let key = Key {
        client_ip: client.who.ip,
        pin,
    };
    let (started, mut failed) = (Instant::now(), Vec::new());
    let (end, why) = failover(&mut x, ctx, key, &mut failed);
    let upstream = started.elapsed();
    if let (BodyState::Whole, Body::Length(n)) = (body, plan.body) {
        client.conn.consume(n as usize);
    }
    let mut outcome = match end {
        End::Relayed(outcome) => outcome,
        End::Answer { error, keep_alive } => {
            answer(client, plan, ctx, error, keep_alive && !flags.draining())
        }
        End::Gone => Outcome {
            status: 499,
            bytes: 0,
            backend: None,
            keep_alive: false,
            why: None,
            failed: Vec::new(),
            upstream: None,
        },
    };
    outcome.why = Some(why);
    let tried = outcome.backend.is_some() || !failed.is_empty();
    outcome.upstream = tried.then_some(upstream);
    outcome.failed = failed;
    outcome
}

/// Where a request's body is before the first attempt. A body that arrived whole with the
/// head stays in the buffer until the request is done, so a second backend can be sent the
/// same bytes if the first fails.
fn body_state(body: Body, buffered: usize) -> BodyState {
    match body {
        Body::Empty => BodyState::None,
        Body::Length(n) if n <= buffered as u64 => BodyState::Whole,
        _ => BodyState::Waiting,
    }
}

/// Failover: each candidate once, until one answers or the request may not go on.
/// Returns how it ended and why it went where it went; each backend tried that did not
/// answer is added to `failed`.
fn failover(
    x: &mut Exchange<'_>,
    ctx: &Shared,
    key: Key,
    failed: &mut Vec<Arc<Backend>>,
) -> (End, Why) {
    let mut last = NO_BACKEND;
    let mut candidates = ctx.backends.candidates(key);
    while let Some(candidate) = candidates.next() {
        let backend = candidate.backend();
        let add = |out: &mut Vec<u8>| candidates.on_response(backend, out);
        match attempt(x, backend, &add) {
            Ok(done) => {
                candidate.answered(done.status);
                let outcome = Outcome {
                    status: done.status,
                    bytes: done.bytes,
                    backend: Some(Arc::clone(backend)),
                    keep_alive: done.client_keep,
                    why: None,
                    failed: Vec::new(),
                    upstream: None,
                };
                return (End::Relayed(outcome), *candidates.why());
            }
            Err(fault) => {
                let next = settle(fault, &candidate, x);
                if !matches!(next, Next::Stop(End::Relayed(_))) {
                    failed.push(Arc::clone(backend));
                }
                match next {
                    Next::Retry(error) => {
                        candidates.failed(backend.id, error.why);
                        last = error;
                    }
                    Next::Stop(end) => return (end, *candidates.why()),
                }
            }
        }
    }
    // Unless the body was read to its end, the next bytes on the connection are not a request.
    let keep_alive = x.body.read_to_end();
    (
        End::Answer {
            error: last,
            keep_alive,
        },
        *candidates.why(),
    )
}

/// Each way an attempt can fail, and what follows for the client: here, in one place.
fn settle(fault: Fault, candidate: &Candidate, x: &Exchange<'_>) -> Next {
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
                let keep_alive = x.body.read_to_end();
                return Next::Stop(End::Answer { error, keep_alive });
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
                why: None,
                failed: Vec::new(),
                upstream: None,
            }))
        }
        Fault::Client(Some(error)) => Next::Stop(End::Answer {
            error,
            keep_alive: false,
        }),
        Fault::Client(None) => Next::Stop(End::Gone),
        Fault::Local(error) => {
            report(plan, None, error.why);
            let keep_alive = x.body.read_to_end();
            Next::Stop(End::Answer { error, keep_alive })
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
    let id = plan
        .request_id
        .as_deref()
        .map(|id| (request_id::HEADER, id));
    let fields: &[(&str, &str)] = id.as_slice();
    let page = pages::ErrorPage::new(error.status, error.why)
        .keep_alive(keep)
        .head_only(plan.head_only())
        .fields(fields)
        .bytes();
    let written = client.conn.write_all(&page).is_ok();
    ctx.stats.count_local(error.status);
    let body = page
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |p| page.len() - p - 4);
    Outcome {
        status: error.status,
        bytes: body as u64,
        backend: None,
        keep_alive: keep && written,
        why: None,
        failed: Vec::new(),
        upstream: None,
    }
}

/// A header field's value as text (a byte that is not UTF-8 becomes U+FFFD).
fn lossy(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
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
