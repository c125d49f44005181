//! The heads the balancer writes: the request head a backend gets, and the response head a
//! client gets (RFC 9110 section 7.6, "Message Forwarding").
//!
//! The chapter's handler sends the backend only `GET path`, and copies every header of the
//! answer back, `Server` and `Date` twice included. Here the client's fields are passed on,
//! in order, minus those that describe one connection (hop-by-hop), with the framing written
//! anew and the forwarding fields (`X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`,
//! `X-Real-IP`, `Forwarded`, `Via`) added; the backend's answer comes back the same way.

use crate::http::framing::{self, Body};
use crate::http::head;
use crate::http::request::{Request, Target};
use crate::http::response::Response;
use crate::http::{Error, Version};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::time::SystemTime;

/// The product name at the start of this balancer's `Via` pseudonym.
pub const VIA_PRODUCT: &str = "load-balancer";

/// This balancer's `Via` entry, `1.1 load-balancer-<8 hex digits>` (RFC 9110 section 7.6.3).
///
/// The `received-by` part is a pseudonym, as the RFC allows: the product name and 32 bits of
/// a hash of the listening address, the process id and the start time, so that it names this
/// one running balancer without telling a backend where it listens. The balancer refuses a
/// request whose `Via` already holds its own entry (`508 Loop Detected`): a
/// product name alone would make two different balancers in a chain see a loop that is not
/// there.
pub fn via_entry(listen: SocketAddr, pid: u32, started: SystemTime) -> String {
    let mut hasher = DefaultHasher::new();
    (listen, pid, started).hash(&mut hasher);
    format!("1.1 {VIA_PRODUCT}-{:08x}", hasher.finish() as u32)
}

/// Who sent a request, and who forwards it: what [`plan`] writes into the forwarding fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hop<'a> {
    /// The client's address as text (`X-Real-IP`, `Forwarded: for=`): the peer's, or the
    /// client a trusted peer names ([`crate::proxy::trust`]).
    pub(crate) client_ip: &'a str,
    /// The address this balancer was connected from (or the PROXY header's source), as
    /// text: appended to `X-Forwarded-For`.
    pub(crate) peer_ip: &'a str,
    /// The client spoke https (to a TLS terminator in front): `X-Forwarded-Proto`, `proto=`.
    pub(crate) https: bool,
    /// The host the client asked a trusted hop for (its `X-Forwarded-Host`), which then
    /// replaces `Host` in `X-Forwarded-Host` and `host=`.
    pub(crate) host: Option<&'a [u8]>,
    /// This balancer's `Via` entry ([`via_entry`]).
    pub(crate) via: &'a str,
    /// A new `X-Request-Id` to write in place of the client's (none, or not sane); `None`
    /// when the client's passes as it is, or ids are off ([`crate::request_id`]).
    pub(crate) new_request_id: Option<&'a str>,
}

/// What [`plan`] learned from a request head, and the head to send to a backend.
pub(crate) struct Plan {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) version: Version,
    pub(crate) body: Body,
    /// The client wants the connection kept open after this request.
    pub(crate) keep_alive: bool,
    /// The head for the backend, blank line included.
    pub(crate) upstream_head: Vec<u8>,
    /// The client sent `Expect: 100-continue` and waits for a `100` before its body.
    pub(crate) expect_continue: bool,
    /// The client asked to switch protocols (`Upgrade`, e.g. WebSocket).
    pub(crate) upgrade: bool,
    /// The request's id (`X-Request-Id`), unless `--request-id off`; set by the proxy.
    pub(crate) request_id: Option<String>,
    /// `Referer` and `User-Agent`, for a log format that writes them; set by the proxy.
    pub(crate) referer: Option<String>,
    /// See `referer`.
    pub(crate) user_agent: Option<String>,
}

impl Plan {
    pub(crate) fn head_only(&self) -> bool {
        self.method == "HEAD"
    }
}

/// Checks a request head and writes the head the backend will receive.
///
/// What changes on the way (RFC 9110 section 7.6): hop-by-hop fields are dropped, and so
/// are names with an underscore (nginx's `underscores_in_headers off`: CGI-style backends
/// read `X_Forwarded_For` and `X-Forwarded-For` as the same variable, so a client could
/// otherwise forge what the balancer sets). The target becomes origin-form; the framing is
/// written anew; the forwarding fields are written as [`push_forwarding`] says. Everything
/// else passes unchanged, in order.
///
/// # Errors
/// The page to answer with: `405` for `CONNECT`, `400` for a bad target, `Host` or framing,
/// `501` for an unknown transfer coding, `413` for a body over `--max-body`, `417` for an
/// expectation other than `100-continue`, `508` for a request that has been through this
/// balancer before (its `Via` holds [`Hop::via`]: a loop).
pub(crate) fn plan(req: &Request<'_>, hop: Hop<'_>, max_body: Option<u64>) -> Result<Plan, Error> {
    if came_through(req, hop.via) {
        // Forwarding it again would only bring it back, once per thread until the cap.
        return Err(Error {
            status: 508,
            why: "this request has already passed through this balancer (its Via says so): \
                  a backend leads back here",
        });
    }
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
    if let (Body::Length(n), Some(max)) = (body, max_body)
        && n > max
    {
        return Err(Error {
            status: 413,
            why: "the request body is larger than --max-body",
        });
    }
    let expect_continue = expects_continue(req, body)?;
    // An upgrade carries no body (a WebSocket handshake is a GET): bytes after the head
    // belong to the new protocol, so a request with a body is never upgraded.
    let upgrade = req.version == Version::Http11
        && matches!(body, Body::Empty | Body::Length(0))
        && head::has_token(&req.headers, "connection", "upgrade")
        && head::values(&req.headers, "upgrade").next().is_some();
    let out = upstream_head(req, &target, host, hop, body, upgrade);
    Ok(Plan {
        method: req.method.to_string(),
        target: req.target.to_string(),
        version: req.version,
        body,
        keep_alive: req.keep_alive(),
        upstream_head: out,
        expect_continue,
        upgrade,
        request_id: None,
        referer: None,
        user_agent: None,
    })
}

/// Does a `Via` element of `req` name this balancer (the `received-by` of `via`)?
fn came_through(req: &Request<'_>, via: &str) -> bool {
    let ours = via.split(' ').nth(1).unwrap_or(via).as_bytes();
    head::values(&req.headers, "via")
        .flat_map(head::list)
        .any(|element| {
            element
                .split(|&b| b == b' ' || b == b'\t')
                .filter(|part| !part.is_empty())
                .nth(1)
                .is_some_and(|received_by| received_by.eq_ignore_ascii_case(ours))
        })
}

/// Does the client wait for `100 Continue` before its body?
///
/// # Errors
/// `417` for an expectation other than `100-continue` (RFC 9110 section 10.1.1).
fn expects_continue(req: &Request<'_>, body: Body) -> Result<bool, Error> {
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
    Ok(expect_continue)
}

/// The head a backend gets for `req`, blank line included (see [`plan`]).
fn upstream_head(
    req: &Request<'_>,
    target: &Target<'_>,
    host: Option<&[u8]>,
    hop: Hop<'_>,
    body: Body,
    upgrade: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(req.method.as_bytes());
    out.push(b' ');
    target.write_origin_form(&mut out);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let absolute = matches!(target, Target::Absolute { .. });
    let hop_by_hop = head::HopByHop::new(&req.headers);
    for h in &req.headers {
        // X-Forwarded-For and Via are written below, with this hop appended; the framing
        // and the other forwarding fields are the balancer's to write.
        if !(h.is("x-forwarded-for")
            || h.is("via")
            || h.is("x-real-ip")
            || h.is("forwarded")
            || hop_by_hop.contains(h.name)
            || h.name.contains('_')
            || h.is("content-length")
            || h.is("expect")
            || h.is("x-forwarded-proto")
            || h.is("x-forwarded-host")
            || (hop.new_request_id.is_some() && h.is("x-request-id"))
            || (absolute && h.is("host")))
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
    push_forwarding(&mut out, req, hop.host.or(host), hop);
    if let Some(id) = hop.new_request_id {
        push_field(&mut out, crate::request_id::HEADER, id.as_bytes());
    }
    match body {
        Body::Length(n) => push_length(&mut out, n),
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
    out
}

/// The fields that say where the request came from. What a backend can trust: the last
/// element of `X-Forwarded-For` and of `Via` (appended here; what precedes them is whatever
/// the client or earlier proxies claimed), and all of `X-Real-IP`, `Forwarded`,
/// `X-Forwarded-Proto` and `X-Forwarded-Host`, which the client's values never reach: they
/// are replaced with this hop's: nginx's common `proxy_set_header X-Real-IP $remote_addr`,
/// and one RFC 7239 `Forwarded` element with `for`, `host` and `proto` (what YARP's
/// `AddForwarded` writes by default, replacing the client's too). A client's `Forwarded` is
/// not kept in front of ours: naive readers take its first `for=`, which the client chose.
fn push_forwarding(out: &mut Vec<u8>, req: &Request<'_>, host: Option<&[u8]>, hop: Hop<'_>) {
    let forwarded_for = head::values(&req.headers, "x-forwarded-for");
    push_list(
        out,
        "X-Forwarded-For",
        forwarded_for.chain([hop.peer_ip.as_bytes()]),
    );
    let proto: &[u8] = if hop.https { b"https" } else { b"http" };
    push_field(out, "X-Forwarded-Proto", proto);
    if let Some(host) = host {
        push_field(out, "X-Forwarded-Host", host);
    }
    push_field(out, "X-Real-IP", hop.client_ip.as_bytes());
    // RFC 7239 section 6: an IPv6 node is bracketed and quoted; a host with a port needs the
    // quotes too (":" is not a token byte). A Host never holds '"' or '\\' (it was checked).
    out.extend_from_slice(b"Forwarded: for=");
    if hop.client_ip.contains(':') {
        out.extend_from_slice(b"\"[");
        out.extend_from_slice(hop.client_ip.as_bytes());
        out.extend_from_slice(b"]\"");
    } else {
        out.extend_from_slice(hop.client_ip.as_bytes());
    }
    if let Some(host) = host {
        out.extend_from_slice(b";host=\"");
        out.extend_from_slice(host);
        out.push(b'"');
    }
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(proto);
    out.extend_from_slice(b"\r\n");
    let via = head::values(&req.headers, "via");
    push_list(out, "Via", via.chain([hop.via.as_bytes()]));
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Appends the decimal digits of `n`: what `n.to_string()` gives, without a String and the
/// formatting machinery, twice per response.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let start = out.len();
    loop {
        out.push(b'0' + (n % 10) as u8);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out[start..].reverse();
}

/// One field `name: a, b, c` that joins `values`, as a list field's several lines mean the
/// same (RFC 9110 section 5.3).
fn push_list<'v>(out: &mut Vec<u8>, name: &str, values: impl Iterator<Item = &'v [u8]>) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(v);
    }
    out.extend_from_slice(b"\r\n");
}

/// The response head as the client will get it, and how to relay the body.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Body,
    /// The client head, blank line included.
    pub(crate) head: Vec<u8>,
    /// Re-encode the body as chunked (length unknown, client speaks HTTP/1.1).
    pub(crate) chunk_out: bool,
    /// The backend connection can go back to the pool after the body.
    pub(crate) upstream_keep: bool,
    /// The client connection stays open after the body.
    pub(crate) client_keep: bool,
    /// `101 Switching Protocols`: after the head, bytes flow both ways untouched.
    pub(crate) switching: bool,
}

/// The head the client gets: the backend's status line and fields, minus hop-by-hop fields,
/// with framing and connection fields for this client, and the lines `add` writes (the
/// strategy's, see [`Strategy::on_response`](crate::backends::strategy::Strategy::on_response)).
/// `draining`: the balancer is stopping, so the client connection closes after this response.
pub(crate) fn build_reply(
    head: &Response<'_>,
    plan: &Plan,
    draining: bool,
    add: impl FnOnce(&mut Vec<u8>),
) -> Result<Reply, Error> {
    // A HEAD or 304 answer's Content-Length passes, checked and written once; a 1xx or 204
    // never carries one (RFC 9110 section 8.6): a backend's is dropped.
    let (body, declared) = framing::response_framing(head, &plan.method)?;
    let switching = head.status == 101;
    if switching && !plan.upgrade {
        return Err(Error {
            status: 502,
            why: "the backend switched protocols unasked",
        });
    }
    let unknown_length = matches!(body, Body::Chunked | Body::UntilClose);
    let chunk_out = unknown_length && plan.version == Version::Http11;
    let client_keep = plan.keep_alive && !switching && (chunk_out || !unknown_length) && !draining;
    // A connection that just carried an answer without a body (to HEAD, a 204, a 304) is not
    // pooled: a backend that sends a body anyway may send it late, after the peek before
    // reuse has looked, and the next request on the connection would read it as its answer.
    let upstream_keep =
        head.keep_alive() && !matches!(body, Body::UntilClose | Body::Empty) && !switching;

    let mut out = Vec::with_capacity(512);
    push_status_line(&mut out, head.status, head.reason);
    push_relayed_fields(&mut out, head, switching);
    match (body, declared) {
        (Body::Length(n), _) | (Body::Empty, Some(n)) => push_length(&mut out, n),
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
    add(&mut out);
    // The request's id goes back to the client, unless the backend answered with its own.
    if let Some(id) = &plan.request_id
        && head::values(&head.headers, "x-request-id").next().is_none()
    {
        push_field(&mut out, crate::request_id::HEADER, id.as_bytes());
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

/// `HTTP/1.1 STATUS REASON`, as the balancer speaks HTTP/1.1 to every client.
fn push_status_line(out: &mut Vec<u8>, status: u16, reason: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, status.into());
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
}

/// The backend's header fields that the client gets: all but the hop-by-hop ones (the
/// `Upgrade` of a switch passes) and `Content-Length`, which the balancer writes itself.
fn push_relayed_fields(out: &mut Vec<u8>, head: &Response<'_>, switching: bool) {
    let hop_by_hop = head::HopByHop::new(&head.headers);
    for h in &head.headers {
        let keep = if switching && h.is("upgrade") {
            true
        } else {
            !hop_by_hop.contains(h.name) && !h.is("content-length")
        };
        if keep {
            push_field(out, h.name, h.value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Parse;
    use std::time::Duration;

    #[test]
    fn via_names_one_running_balancer() {
        let at = |a: &str| a.parse::<SocketAddr>().unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let one = via_entry(at("127.0.0.1:9000"), 42, t);
        assert!(one.starts_with("1.1 load-balancer-"), "{one}");
        assert_eq!(one.len(), "1.1 load-balancer-".len() + 8);
        assert_eq!(one, via_entry(at("127.0.0.1:9000"), 42, t), "stable");
        for other in [
            via_entry(at("127.0.0.1:9001"), 42, t),
            via_entry(at("127.0.0.1:9000"), 43, t),
            via_entry(at("127.0.0.1:9000"), 42, t + Duration::from_nanos(1)),
        ] {
            assert_ne!(one, other);
        }
    }

    #[test]
    fn a_loop_is_our_own_received_by() {
        let ours = "1.1 load-balancer-0123abcd";
        let looped = |via: &str| {
            let raw = format!("GET / HTTP/1.1\r\nHost: x\r\nVia: {via}\r\n\r\n");
            let Ok(Parse::Complete { head, .. }) = crate::http::request::parse(raw.as_bytes())
            else {
                panic!("{via}")
            };
            came_through(&head, ours)
        };
        assert!(looped(ours));
        assert!(looped("1.0 fred, 1.1 LOAD-BALANCER-0123ABCD (note)"));
        assert!(looped("HTTP/1.1\tload-balancer-0123abcd"));
        assert!(!looped("1.1 load-balancer"));
        assert!(!looped("1.1 load-balancer-0123abce, 1.0 fred"));
        assert!(!looped("1.1 fred (load-balancer-0123abcd)"));
    }

    #[test]
    fn decimals_match_to_string() {
        for n in [0, 7, 10, 200, 1_048_576, u64::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }
}
