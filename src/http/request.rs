//! The request head: `METHOD target HTTP/1.1`, then header fields (RFC 9112 sections 3 and 5).
//!
//! In the chapter, `http.server` parses this and hands `self.path` to `do_GET`. Here it is done
//! by hand, strictly: anything two servers could read two ways (and so smuggle a request past
//! one of them) is refused with the status RFC 9112 names.

use super::head::{self, Header};
use super::{Error, MAX_REQUEST_LINE, Parse, Version, is_token};

/// Bytes of empty lines tolerated before a request line (RFC 9112 section 2.2 asks servers to
/// ignore "at least one"; some clients send a CRLF after a POST body). Four CRLFs.
pub const MAX_LEADING_EMPTY_BYTES: usize = 8;

/// A parsed request head, borrowed from the bytes it was parsed from.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method token, case-sensitive (`GET`, `POST`, ...).
    pub method: &'a str,
    /// The request target exactly as sent: see [`Request::target`] for what it means.
    pub target: &'a str,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: Version,
    /// The header fields, in order.
    pub headers: Vec<Header<'a>>,
}

/// The four forms of request target (RFC 9112 section 3.2), reduced to what a gateway needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// `/path?query`: forwarded as it is.
    Origin(&'a str),
    /// `http://host:port/path?query`: only the authority and the origin-form part are kept; the
    /// authority never picks where the request goes (RFC 9112 section 3.2.2).
    Absolute {
        /// `host:port` from the target; it replaces the `Host` field.
        authority: &'a str,
        /// The path and query as sent: may be empty or start with `?`, which
        /// [`Target::write_origin_form`] mends.
        origin: &'a str,
    },
    /// `*`, as in `OPTIONS * HTTP/1.1`.
    Asterisk,
}

impl Target<'_> {
    /// Appends the target as a backend receives it: origin-form, or `*`.
    pub fn write_origin_form(&self, out: &mut Vec<u8>) {
        match *self {
            Target::Origin(path) => out.extend_from_slice(path.as_bytes()),
            Target::Absolute { origin, .. } => {
                if !origin.starts_with('/') {
                    out.push(b'/');
                }
                out.extend_from_slice(origin.as_bytes());
            }
            Target::Asterisk => out.push(b'*'),
        }
    }
}

/// Parses a request head from the start of `buf`.
///
/// Empty lines before the request line are skipped, as RFC 9112 section 2.2 asks.
///
/// # Errors
/// - `400` for a malformed request line or field (see [`head::parse_field`]),
/// - `414` for a request line over [`MAX_REQUEST_LINE`] bytes,
/// - `431` for a head over the size or field-count limits,
/// - `505` for an HTTP version other than 1.0 and 1.1.
pub fn parse(buf: &[u8]) -> Result<Parse<Request<'_>>, Error> {
    let mut pos = 0;
    // Each empty line takes a byte at least, so the limit on their bytes bounds the turns
    // too; counting them as well means no turn of this loop can go without progress.
    let mut turns = 0..=MAX_LEADING_EMPTY_BYTES;
    let line = loop {
        if turns.next().is_none() {
            return Err(Error::bad("empty lines before the request line"));
        }
        let Some((line, next)) = head::next_line(buf, pos) else {
            return if buf.len() - pos > MAX_REQUEST_LINE {
                Err(uri_too_long())
            } else {
                Ok(Parse::Partial)
            };
        };
        if line.len() > MAX_REQUEST_LINE {
            return Err(uri_too_long());
        }
        if !line.is_empty() {
            pos = next;
            break line;
        }
        if next > MAX_LEADING_EMPTY_BYTES {
            // A few stray CRLFs after a previous body are tolerated; a stream of them is not.
            return Err(Error::bad("empty lines before the request line"));
        }
        pos = next;
    };
    let (method, target, version) = parse_request_line(line)?;
    let mut headers = Vec::with_capacity(16);
    match head::parse_fields(buf, pos, &mut headers)? {
        None => Ok(Parse::Partial),
        Some(len) => Ok(Parse::Complete {
            head: Request {
                method,
                target,
                version,
                headers,
            },
            len,
        }),
    }
}

fn uri_too_long() -> Error {
    Error {
        status: 414,
        why: "request line too long",
    }
}

/// `method SP request-target SP HTTP-version`, with exactly one space between the parts.
fn parse_request_line(line: &[u8]) -> Result<(&str, &str, Version), Error> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::bad("malformed request line"));
    };
    if !is_token(method) {
        return Err(Error::bad("invalid method"));
    }
    // Visible ASCII only: no spaces, controls or raw bytes above 0x7F (clients percent-encode them).
    if target.is_empty() || !target.iter().all(|b| (0x21..0x7f).contains(b)) {
        return Err(Error::bad("invalid request target"));
    }
    let version = parse_version(version)?;
    // Both are ASCII, checked above, so these conversions cannot fail.
    let method = std::str::from_utf8(method).map_err(|_| Error::bad("invalid method"))?;
    let target = std::str::from_utf8(target).map_err(|_| Error::bad("invalid request target"))?;
    Ok((method, target, version))
}

/// `HTTP/x.y` (RFC 9112 section 2.3). A higher 1.x minor version is read as 1.1, the highest
/// this side speaks (RFC 9110 section 6.2); a major version of 2 or more gets `505`.
pub fn parse_version(v: &[u8]) -> Result<Version, Error> {
    match v {
        b"HTTP/1.0" => Ok(Version::Http10),
        // HTTP/1.1, and any later 1.x.
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {
            Ok(Version::Http11)
        }
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(Error {
                status: 505,
                why: "only HTTP/1.0 and HTTP/1.1 are supported",
            })
        }
        [b'H', b'T', b'T', b'P', b'/', major] if (b'2'..=b'9').contains(major) => Err(Error {
            status: 505,
            why: "only HTTP/1.0 and HTTP/1.1 are supported",
        }),
        _ => Err(Error::bad("malformed HTTP version")),
    }
}

impl<'a> Request<'a> {
    /// What the request target means (RFC 9112 section 3.2).
    ///
    /// # Errors
    /// `400` for an authority-form target (only `CONNECT` uses it, and the balancer refuses
    /// `CONNECT` before asking), for `*` with a method other than `OPTIONS`, and for an absolute
    /// target that is not `http://` or `https://`, has no host, or whose authority holds a byte
    /// a `Host` field may not (userinfo's `@` among them).
    pub fn target(&self) -> Result<Target<'a>, Error> {
        let t = self.target;
        if t.starts_with('/') {
            return Ok(Target::Origin(t));
        }
        if t == "*" {
            return if self.method == "OPTIONS" {
                Ok(Target::Asterisk)
            } else {
                Err(Error::bad(
                    "asterisk target with a method other than OPTIONS",
                ))
            };
        }
        let rest = strip_prefix_ignore_case(t, "http://")
            .or_else(|| strip_prefix_ignore_case(t, "https://"))
            .ok_or(Error::bad("invalid request target"))?;
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, origin) = rest.split_at(end);
        // The authority replaces Host on the way to the backend, so it obeys Host's rule.
        if authority.is_empty() || !is_valid_host(authority.as_bytes()) {
            return Err(Error::bad("invalid authority in the request target"));
        }
        Ok(Target::Absolute { authority, origin })
    }

    /// Does the client want the connection kept open after this request (RFC 9112 section 9.3)?
    /// HTTP/1.1: yes unless `Connection: close`. HTTP/1.0: only with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        let close = head::has_token(&self.headers, "connection", "close");
        match self.version {
            Version::Http11 => !close,
            Version::Http10 => !close && head::has_token(&self.headers, "connection", "keep-alive"),
        }
    }

    /// The value of the single `Host` field.
    ///
    /// # Errors
    /// `400` when an HTTP/1.1 request has no `Host`, when there are several, or when the value
    /// is not a host with an optional port ([`is_valid_host`]; RFC 9112 section 3.2). An empty
    /// value passes (RFC 9112 section 3.2: a target without an authority).
    pub fn host(&self) -> Result<Option<&'a [u8]>, Error> {
        let mut hosts = head::values(&self.headers, "host");
        let host = hosts.next();
        if hosts.next().is_some() {
            return Err(Error::bad("more than one Host header field"));
        }
        match host {
            None if self.version == Version::Http11 => Err(Error::bad("missing Host header field")),
            Some(h) if !h.is_empty() && !is_valid_host(h) => {
                Err(Error::bad("invalid Host header field"))
            }
            _ => Ok(host),
        }
    }
}

/// Is `method` idempotent (RFC 9110 section 9.2.2)? Only these may be sent again after a
/// backend failed while handling them.
pub fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// Is `value` a host with an optional port, as a `Host` field or an absolute target's
/// authority may hold: a registered name of letters, digits, `-`, `.` and `_` (an IPv4
/// address is one too), or an IPv6 address in brackets; then `:` and at most five digits.
///
/// RFC 3986 allows more in a reg-name (`!$&'()*+,;=~` and `%XX`), and so did this balancer:
/// `Host: x,for=6.6.6.6;by=` then reached the backend inside `Forwarded: host="..."`, quoted
/// but with a `,` that a reader splitting on commas takes for a second element whose `for=`
/// it believes. No name in DNS has those bytes, so such a value gets `400`.
pub fn is_valid_host(value: &[u8]) -> bool {
    let (host, port) = match value.strip_prefix(b"[") {
        Some(rest) => {
            let Some(end) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            let inside = std::str::from_utf8(&rest[..end]).ok();
            if inside
                .and_then(|s| s.parse::<std::net::Ipv6Addr>().ok())
                .is_none()
            {
                return false;
            }
            (&b""[..], &rest[end + 1..])
        }
        None => {
            let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
            let host = &value[..end];
            if host.is_empty() {
                return false;
            }
            (host, &value[end..])
        }
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    port_ok
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

fn strip_prefix_ignore_case<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_hosts() {
        for ok in [
            "example.com",
            "example.com:8080",
            "a_b-c.d",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:9000",
            "[2001:db8::1]",
            "x:",
            "[::1]:",
        ] {
            assert!(is_valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "x,for=6.6.6.6;by=",
            "x;y",
            "a b",
            "a/b",
            "a%41",
            "u@h",
            ":80",
            "x:123456",
            "x:8a",
            "x:80:80",
            "[::1",
            "[zz]",
            "[::1]x",
            "a\"b",
            "",
        ] {
            assert!(!is_valid_host(bad.as_bytes()), "{bad}");
        }
    }

    fn complete(buf: &[u8]) -> (Request<'_>, usize) {
        match parse(buf) {
            Ok(Parse::Complete { head, len }) => (head, len),
            other => panic!(
                "expected a complete head for {:?}, got {other:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }

    fn status(buf: &[u8]) -> u16 {
        match parse(buf) {
            Err(e) => e.status,
            Ok(p) => panic!(
                "expected an error for {:?}, got {p:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }

    #[test]
    fn parses_a_simple_get() {
        let raw = b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\nBODY";
        let (req, len) = complete(raw);
        assert_eq!(len, raw.len() - 4);
        assert_eq!(req.method, "GET");
        assert_eq!(req.target, "/a?b=c");
        assert_eq!(req.version, Version::Http11);
        assert_eq!(req.headers.len(), 2);
        assert_eq!(req.host().unwrap(), Some(&b"example.com"[..]));
        assert!(req.keep_alive());
    }

    #[test]
    fn every_truncated_prefix_is_partial() {
        let raw = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX-A: b\r\n\r\n";
        for cut in 0..raw.len() {
            assert_eq!(parse(&raw[..cut]), Ok(Parse::Partial), "cut at {cut}");
        }
        assert!(matches!(parse(raw), Ok(Parse::Complete { len, .. }) if len == raw.len()));
    }

    #[test]
    fn bare_lf_and_leading_blank_lines_are_accepted() {
        let (req, len) = complete(b"\r\nGET / HTTP/1.0\nHost: x\n\n");
        assert_eq!(req.version, Version::Http10);
        assert_eq!(len, 26);
        assert!(!req.keep_alive());
    }

    #[test]
    fn keep_alive_rules() {
        let (r, _) = complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(r.keep_alive());
        let (r, _) = complete(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n");
        assert!(!r.keep_alive());
    }

    #[test]
    fn rejects_with_the_right_status() {
        let cases: &[(&[u8], u16)] = &[
            (b"GET  / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1 \r\n\r\n", 400),
            (b"GET /\r\n\r\n", 400),
            (b"G(T / HTTP/1.1\r\n\r\n", 400),
            (b"GET /a\x01b HTTP/1.1\r\n\r\n", 400),
            (b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400),
            (b"GET / http/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\n\r\n", 505),
            (b"GET / HTTP/2\r\n\r\n", 505),
            (b"GET / HTTP/3\r\n\r\n", 505),
            (b"GET / HTTP/0.9\r\n\r\n", 505),
            (b"GET / HTTP/1.x\r\n\r\n", 400),
            (b"GET / HTTP/a.1\r\n\r\n", 400),
            (b"GET / HTTP/2.x\r\n\r\n", 400),
            (b"\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n", 400),
        ];
        for (raw, want) in cases {
            assert_eq!(status(raw), *want, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn minor_versions_above_one_read_as_1_1() {
        let (r, _) = complete(b"GET / HTTP/1.7\r\nHost: x\r\n\r\n");
        assert_eq!(r.version, Version::Http11);
    }

    #[test]
    fn up_to_eight_bytes_of_empty_lines_are_skipped_and_no_more() {
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let eight = [&b"\r\n\r\n\r\n\r\n"[..], request].concat();
        assert_eq!(complete(&eight).0.target, "/");
        let nine = [&b"\r\n\r\n\r\n\r\n\n"[..], request].concat();
        assert_eq!(status(&nine), 400);
    }

    #[test]
    fn an_unfinished_request_line_waits_until_it_is_too_long() {
        // Exactly MAX_REQUEST_LINE bytes without an end may still end well: wait for more.
        let mut raw = b"GET /".to_vec();
        raw.resize(MAX_REQUEST_LINE, b'a');
        assert!(matches!(parse(&raw), Ok(Parse::Partial)));
        raw.push(b'a');
        assert_eq!(status(&raw), 414);
        // Leading empty lines do not count towards the request line's length.
        let mut raw = b"\r\n\r\nGET /".to_vec();
        raw.resize(MAX_REQUEST_LINE + 4, b'a');
        assert!(matches!(parse(&raw), Ok(Parse::Partial)));
    }

    #[test]
    fn a_request_line_of_8_kib_is_accepted_as_nginx_does() {
        // nginx's default large_client_header_buffers is 8k: links that long exist.
        let mut raw = b"GET /".to_vec();
        raw.resize(8 * 1024 - b" HTTP/1.1".len(), b'a');
        raw.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(complete(&raw).0.target.len(), 8 * 1024 - 13);
    }

    #[test]
    fn long_request_line_is_414_even_before_it_ends() {
        let mut raw = b"GET /".to_vec();
        raw.resize(MAX_REQUEST_LINE + 10, b'a');
        assert_eq!(status(&raw), 414);
        raw.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        assert_eq!(status(&raw), 414);
    }

    #[test]
    fn host_rules() {
        let (r, _) = complete(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(r.host().unwrap_err().status, 400);
        let (r, _) = complete(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
        assert_eq!(r.host().unwrap_err().status, 400);
        let (r, _) = complete(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n");
        assert_eq!(r.host().unwrap_err().status, 400);
        let (r, _) = complete(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n");
        assert_eq!(r.host().unwrap_err().status, 400);
        let (r, _) = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(r.host().unwrap(), None);
        let (r, _) = complete(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n");
        assert_eq!(r.host().unwrap(), Some(&b"[::1]:80"[..]));
    }

    #[test]
    fn target_forms() {
        let cases: &[(&[u8], Result<Target<'_>, u16>)] = &[
            (b"GET /x?y HTTP/1.1\r\n\r\n", Ok(Target::Origin("/x?y"))),
            (
                b"GET http://evil.example:8080/p?q HTTP/1.1\r\n\r\n",
                Ok(Target::Absolute {
                    authority: "evil.example:8080",
                    origin: "/p?q",
                }),
            ),
            (
                b"GET HTTP://h HTTP/1.1\r\n\r\n",
                Ok(Target::Absolute {
                    authority: "h",
                    origin: "",
                }),
            ),
            (
                b"GET http://h?q HTTP/1.1\r\n\r\n",
                Ok(Target::Absolute {
                    authority: "h",
                    origin: "?q",
                }),
            ),
            (b"OPTIONS * HTTP/1.1\r\n\r\n", Ok(Target::Asterisk)),
            (b"GET * HTTP/1.1\r\n\r\n", Err(400)),
            (b"GET http:///p HTTP/1.1\r\n\r\n", Err(400)),
            (b"GET http://u@h/ HTTP/1.1\r\n\r\n", Err(400)),
            // Issue 11: the authority becomes Host, so Host's bytes only.
            (b"GET http://a\"b<c>/ HTTP/1.1\r\n\r\n", Err(400)),
            (b"GET http://a{b}/ HTTP/1.1\r\n\r\n", Err(400)),
            (b"GET http://a\\b/ HTTP/1.1\r\n\r\n", Err(400)),
            (
                b"GET http://[::1]:8080/ HTTP/1.1\r\n\r\n",
                Ok(Target::Absolute {
                    authority: "[::1]:8080",
                    origin: "/",
                }),
            ),
            (b"GET ftp://h/ HTTP/1.1\r\n\r\n", Err(400)),
            (b"GET example.com:443 HTTP/1.1\r\n\r\n", Err(400)),
        ];
        for (raw, want) in cases {
            let (r, _) = complete(raw);
            assert_eq!(
                r.target().map_err(|e| e.status),
                *want,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn origin_form_is_always_rooted() {
        for (target, want) in [
            (Target::Origin("/a?b"), "/a?b"),
            (
                Target::Absolute {
                    authority: "h",
                    origin: "",
                },
                "/",
            ),
            (
                Target::Absolute {
                    authority: "h",
                    origin: "?q",
                },
                "/?q",
            ),
            (
                Target::Absolute {
                    authority: "h",
                    origin: "/p",
                },
                "/p",
            ),
            (Target::Asterisk, "*"),
        ] {
            let mut out = Vec::new();
            target.write_origin_form(&mut out);
            assert_eq!(out, want.as_bytes());
        }
    }
}
