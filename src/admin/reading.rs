//! Reading one admin request: its head, then the checks that decide whether it is served
//! (`Host`, the [`super::access`] rule, `Origin`), then its body.

use super::answers::Answer;
use super::{AdminShared, MAX_ADMIN_BODY, access};
use crate::conn::{BufConn, is_timeout};
use crate::http::framing::{self, Body};
use crate::http::{Parse, head, request};
use std::io;
use std::time::{Duration, Instant};

/// One admin request, read whole.
pub(super) struct AdminRequest {
    pub(super) method: String,
    /// The path, without the query.
    pub(super) path: String,
    /// The `Authorization` field value, if sent.
    pub(super) authorization: Option<Vec<u8>>,
    /// `Host` names this listener (see [`names_this_listener`]).
    pub(super) host_ok: bool,
    /// A browser sent it from another site's page (see [`is_cross_site`]).
    pub(super) cross_site: bool,
    /// Errors are answered in JSON (see [`wants_json`]).
    pub(super) json: bool,
    /// How the body is framed, until it is read into `body`.
    pub(super) framing: Body,
    pub(super) body: Vec<u8>,
}

/// What an admin request is read from: a TCP connection's [`BufConn`], or a Unix socket's
/// [`unix::UnixConn`].
pub(super) trait Source {
    /// The bytes read and not yet used.
    fn data(&self) -> &[u8];
    /// Marks the first `n` bytes of `data` used.
    fn consume(&mut self, n: usize);
    /// Reads more (0: the peer closed; `InvalidData`: the buffer is full).
    fn fill(&mut self) -> io::Result<usize>;
    /// Limits the next reads.
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()>;
}

impl Source for BufConn {
    fn data(&self) -> &[u8] {
        BufConn::data(self)
    }
    fn consume(&mut self, n: usize) {
        BufConn::consume(self, n);
    }
    fn fill(&mut self) -> io::Result<usize> {
        BufConn::fill(self)
    }
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        BufConn::set_read_timeout(self, timeout)
    }
}

/// Reads a request head.
pub(super) fn read_head(
    conn: &mut impl Source,
    deadline: Instant,
    admin_name: Option<&str>,
) -> Result<AdminRequest, Answer> {
    loop {
        if let Parse::Complete { head, len } = request::parse(conn.data()).map_err(Answer::from)? {
            let host = head.host().map_err(Answer::from)?;
            let framing = framing::request_body(&head).map_err(Answer::from)?;
            let path = head.target.split('?').next().unwrap_or("").to_string();
            let authorization = head::values(&head.headers, "authorization")
                .next()
                .map(<[u8]>::to_vec);
            let req = AdminRequest {
                method: head.method.to_string(),
                json: wants_json(&path, &head.headers),
                path,
                authorization,
                host_ok: host.is_none_or(|h| names_this_listener(h, admin_name)),
                cross_site: is_cross_site(&head.headers, host),
                framing,
                body: Vec::new(),
            };
            conn.consume(len);
            return Ok(req);
        }
        fill_by(conn, deadline)?;
    }
}

/// Checks that the request may be served (its `Host`, the [`access`] rule, its `Origin`), and
/// only then reads its body (`Content-Length` only): an unauthorised client cannot make the
/// balancer read a body.
pub(super) fn admit(
    conn: &mut impl Source,
    req: &mut AdminRequest,
    shared: &AdminShared,
    deadline: Instant,
) -> Result<(), Answer> {
    if !req.host_ok && !shared.unix {
        return Err(Answer::page(
            421,
            "this admin listener answers only to an IP address, localhost or its \
             --admin name in Host: a page of another site cannot read it",
        ));
    }
    let asked = access::Asked {
        method: &req.method,
        path: &req.path,
        authorization: req.authorization.as_deref(),
        unix: shared.unix,
        drills: shared.drills.is_some(),
    };
    access::check(&asked, shared.balancer.live().config.admin_token.as_deref())?;
    if req.cross_site && access::changes(&req.method) {
        return Err(Answer::page(
            403,
            "a change from another site's page is refused (its Origin is not this listener)",
        ));
    }
    let length = match req.framing {
        Body::Empty => 0,
        Body::Length(n) if n > MAX_ADMIN_BODY => {
            return Err(Answer::page(413, "admin request bodies are at most 4 KiB"));
        }
        Body::Length(n) => n as usize,
        Body::Chunked | Body::UntilClose => {
            return Err(Answer::page(411, "send the body with a Content-Length"));
        }
    };
    while conn.data().len() < length {
        fill_by(conn, deadline)?;
    }
    req.body = conn.data()[..length].to_vec();
    conn.consume(length);
    Ok(())
}

/// Should errors be JSON? When the client asked for JSON (`Accept: application/json`), and on
/// the JSON API's own paths (`/backends...`, `/status.json`), whose answers are JSON already:
/// a script that parses them must not meet an HTML page when something is wrong.
fn wants_json(path: &str, headers: &[crate::http::Header<'_>]) -> bool {
    path == "/status.json"
        || path == "/backends"
        || path.starts_with("/backends/")
        || head::values(headers, "accept").any(|v| {
            v.windows(b"json".len())
                .any(|w| w.eq_ignore_ascii_case(b"json"))
        })
}

/// Reads more of an admin request, if it comes before `deadline`.
///
/// # Errors
/// The answer to give: `408` past the deadline, `431` for a head too large, `400` when the
/// connection closed or failed.
fn fill_by(conn: &mut impl Source, deadline: Instant) -> Result<(), Answer> {
    let timed_out = || Answer::page(408, "the admin request took too long");
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() || conn.set_read_timeout(left).is_err() {
        return Err(timed_out());
    }
    match conn.fill() {
        Ok(0) => Err(Answer::page(400, "the connection closed mid-request")),
        Ok(_) => Ok(()),
        Err(e) if is_timeout(&e) => Err(timed_out()),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            Err(Answer::page(431, "header section too large"))
        }
        Err(_) => Err(Answer::page(400, "reading the request failed")),
    }
}

/// Does a `Host` name this listener as only its operator would? An IP address, `localhost`,
/// or the name given with `--admin`; the port is not looked at.
///
/// Every admin request must pass this rule (else `421 Misdirected Request`), against DNS
/// rebinding: a page on `evil.example` whose name is then made to resolve to 127.0.0.1 is
/// same-origin with that name for the browser, which sends no `Origin` on a same-origin GET,
/// and could otherwise read `/status.json`, `/metrics` and `/backends`. But the browser still
/// sends `Host: evil.example`. A name only its owner's DNS controls cannot be rebound by
/// anyone else, and an IP literal cannot be rebound at all.
fn names_this_listener(host: &[u8], admin_name: Option<&str>) -> bool {
    let name = match host.iter().rposition(|&b| b == b':') {
        Some(colon) if !host.ends_with(b"]") => &host[..colon],
        _ => host,
    };
    let Ok(name) = std::str::from_utf8(name) else {
        return false;
    };
    let literal = match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => name.parse::<std::net::Ipv4Addr>().is_ok(),
    };
    literal
        || name.eq_ignore_ascii_case("localhost")
        || admin_name.is_some_and(|n| name.eq_ignore_ascii_case(n))
}

/// Did a browser send this request from a page of another site? Browsers add `Origin` to a
/// form's POST; a page on any web site could otherwise post to `127.0.0.1:9001/backends` and
/// add a backend of its choosing (cross-site request forgery). The status page's own buttons
/// come from the listener itself: `Origin` is `http://` + `Host` (and `Host` has passed
/// [`names_this_listener`]), or `https://` + `Host` when a TLS proxy in front serves the page.
/// Clients such as curl send no `Origin` and are not affected. With a token (`--admin-token-file`) this check
/// matters all the more: a browser that logged in with Basic credentials sends them with
/// every request to the listener, also with a forged one from another site's page.
/// `host` is the request's `Host`, as [`request::Request::host`] checked it.
fn is_cross_site(headers: &[crate::http::Header<'_>], host: Option<&[u8]>) -> bool {
    let Some(origin) = head::values(headers, "origin").next() else {
        return false;
    };
    let Some(host) = host else {
        return true;
    };
    let authority = origin
        .strip_prefix(b"http://")
        .or_else(|| origin.strip_prefix(b"https://"));
    !authority.is_some_and(|o| o.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_requests() {
        use crate::http::Header;
        let h = |origin: Option<&'static [u8]>, host: &'static [u8]| {
            let mut v = vec![Header {
                name: "Host",
                value: host,
            }];
            v.extend(origin.map(|o| Header {
                name: "Origin",
                value: o,
            }));
            is_cross_site(&v, Some(host))
        };
        assert!(!h(None, b"127.0.0.1:9001"), "curl sends no Origin");
        assert!(
            !h(Some(b"http://127.0.0.1:9001"), b"127.0.0.1:9001"),
            "the status page"
        );
        assert!(!h(Some(b"http://localhost:9001"), b"localhost:9001"));
        assert!(
            !h(Some(b"https://lb.example"), b"lb.example"),
            "the status page behind a TLS proxy"
        );
        assert!(h(Some(b"http://evil.example"), b"127.0.0.1:9001"));
        assert!(h(Some(b"https://evil.example"), b"lb.example"));
        assert!(h(Some(b"ftp://lb.example"), b"lb.example"));
        assert!(h(Some(b"null"), b"127.0.0.1:9001"));
    }

    #[test]
    fn host_rule() {
        let ok = |host: &[u8], name| names_this_listener(host, name);
        for host in [
            &b"127.0.0.1:9001"[..],
            b"127.0.0.1",
            b"10.1.2.3:9001",
            b"[::1]:9001",
            b"[::1]",
            b"localhost:9001",
            b"LocalHost",
        ] {
            assert!(ok(host, None), "{}", String::from_utf8_lossy(host));
        }
        for host in [
            &b"evil.example:9001"[..],
            b"evil.example",
            b"rebind.example:9001",
            b"localhost.evil.example",
            b"localhost.",
            b"1.2.3",
            b"[evil]:9001",
            b"",
        ] {
            assert!(!ok(host, None), "{}", String::from_utf8_lossy(host));
        }
        assert!(ok(b"ops.internal:9001", Some("ops.internal")));
        assert!(ok(b"OPS.internal", Some("ops.internal")));
        assert!(!ok(b"ops.internal.evil.example", Some("ops.internal")));
    }
}
