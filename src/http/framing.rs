//! Where a message body ends (RFC 9112 section 6.3): the rule request smuggling attacks. The
//! chapter reads a backend's whole answer with `resp.read()` and never forwards a request
//! body; a balancer that streams bodies both ways must know exactly where each one ends.
//!
//! If the balancer and a backend disagreed on where a request body ends, bytes the client hid
//! inside a body would reach the backend as a second request. So every ambiguous case is
//! refused, not guessed: `Content-Length` with `Transfer-Encoding`, differing lengths, lengths
//! that are not plain digits, and codings other than a final `chunked`.

use super::head::{self, Header};
use super::request::Request;
use super::response::Response;
use super::{Error, Version};

/// How the length of a body is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body at all: no framing field in a request, or a response that cannot have one
    /// (to `HEAD`, or `1xx`, `204`, `304`).
    Empty,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// The chunked transfer coding: a series of sized chunks, then optional trailers.
    Chunked,
    /// Everything until the sender closes the connection (responses only).
    UntilClose,
}

/// The body framing of a request (RFC 9112 section 6.3, items 3 to 6).
///
/// # Errors
/// - `400` for both `Transfer-Encoding` and `Content-Length`, for a `Transfer-Encoding` on an
///   HTTP/1.0 request or whose last coding is not `chunked`, and for a bad `Content-Length`;
/// - `501` for a transfer coding other than `chunked` (RFC 9112 section 6.1).
pub fn request_body(req: &Request<'_>) -> Result<Body, Error> {
    let length = content_length(&req.headers).map_err(Error::bad)?;
    match transfer_coding(&req.headers)? {
        None => Ok(length.map_or(Body::Empty, Body::Length)),
        Some(_) if length.is_some() => Err(Error::bad("both Transfer-Encoding and Content-Length")),
        Some(_) if req.version == Version::Http10 => {
            Err(Error::bad("Transfer-Encoding in an HTTP/1.0 request"))
        }
        Some(Coding::Chunked) => Ok(Body::Chunked),
        Some(Coding::NotChunkedLast) => {
            Err(Error::bad("Transfer-Encoding does not end in chunked"))
        }
        Some(Coding::Unknown) => Err(Error {
            status: 501,
            why: "unsupported transfer coding",
        }),
    }
}

/// The body framing of a response to a request with method `method` (RFC 9112 section 6.3,
/// items 1 to 7), and the `Content-Length` it declares without framing anything: a `HEAD`
/// or `304` answer states the size the body would have had (RFC 9110 section 8.6), and that
/// value passes on to the client, a list of identical values as one. A `1xx` or `204` never
/// carries one (`None`).
///
/// The framing fields are checked on every response, also on those that cannot have a body
/// (to `HEAD`, `1xx`, `204`, `304`): there they do not delimit anything, but a client or a
/// cache reads a `HEAD` or `304` answer's length, and must not get a value it cannot read.
/// nginx and HAProxy refuse such a response with `502` too.
///
/// # Errors
/// `502` for framing a proxy cannot trust: both `Transfer-Encoding` and `Content-Length`
/// (section 6.3 item 3 calls it a likely smuggling attempt), a bad `Content-Length` (not a
/// decimal number, or differing values: section 6.3 item 5), or a transfer coding other than
/// `chunked` (the balancer could not re-frame it).
pub fn response_framing(resp: &Response<'_>, method: &str) -> Result<(Body, Option<u64>), Error> {
    let bad = |why| Error { status: 502, why };
    let length = content_length(&resp.headers).map_err(bad)?;
    let coding = transfer_coding(&resp.headers).map_err(|e| bad(e.why))?;
    let body = match coding {
        None => length.map_or(Body::UntilClose, Body::Length),
        Some(_) if length.is_some() => {
            return Err(bad(
                "backend sent both Transfer-Encoding and Content-Length",
            ));
        }
        Some(Coding::Chunked) => Body::Chunked,
        Some(_) => return Err(bad("backend used a transfer coding other than chunked")),
    };
    if (100..200).contains(&resp.status) || resp.status == 204 {
        return Ok((Body::Empty, None));
    }
    if method == "HEAD" || resp.status == 304 {
        return Ok((Body::Empty, length));
    }
    Ok((body, None))
}

/// What the `Transfer-Encoding` fields of a message ask for.
#[derive(Debug, PartialEq, Eq)]
enum Coding {
    /// Exactly `chunked`.
    Chunked,
    /// Codings that do not end in `chunked` (`gzip`).
    NotChunkedLast,
    /// `chunked` last, but after other codings this balancer does not decode (`gzip, chunked`).
    Unknown,
}

fn transfer_coding(headers: &[Header<'_>]) -> Result<Option<Coding>, Error> {
    let mut codings = head::values(headers, "transfer-encoding")
        .flat_map(head::list)
        .peekable();
    if codings.peek().is_none() {
        // No field, or fields with only empty elements: RFC 9110 section 5.6.1 says to ignore
        // empty list elements, but a Transfer-Encoding with no coding is nonsense.
        return match head::values(headers, "transfer-encoding").next() {
            Some(_) => Err(Error::bad("empty Transfer-Encoding")),
            None => Ok(None),
        };
    }
    let (mut count, mut chunked_at, mut last_is_chunked) = (0, None, false);
    for coding in codings {
        last_is_chunked = coding.eq_ignore_ascii_case(b"chunked");
        if last_is_chunked {
            if chunked_at.is_some() {
                return Err(Error::bad("chunked applied twice"));
            }
            chunked_at = Some(count);
        }
        count += 1;
    }
    Ok(Some(match (last_is_chunked, count) {
        (true, 1) => Coding::Chunked,
        (true, _) => Coding::Unknown,
        (false, _) if chunked_at.is_some() => {
            return Err(Error::bad("chunked is not the last transfer coding"));
        }
        (false, _) => Coding::NotChunkedLast,
    }))
}

/// The value of the `Content-Length` fields: `None` if absent. Several fields, or a list, are
/// accepted only if every value is the same (RFC 9112 section 6.3 item 5).
fn content_length(headers: &[Header<'_>]) -> Result<Option<u64>, &'static str> {
    let mut length = None;
    for value in head::values(headers, "content-length") {
        let mut any = false;
        for element in value.split(|&b| b == b',').map(head::trim_ows) {
            let n = parse_length(element).ok_or("invalid Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Err("differing Content-Length values");
            }
            length = Some(n);
            any = true;
        }
        if !any {
            return Err("invalid Content-Length");
        }
    }
    Ok(length)
}

/// `1*DIGIT` as a u64: no sign, no spaces, no hex, no overflow.
fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Parse, request, response};

    fn req_body(raw: &[u8]) -> Result<Body, u16> {
        let Ok(Parse::Complete { head, .. }) = request::parse(raw) else {
            panic!("bad test input")
        };
        request_body(&head).map_err(|e| e.status)
    }

    fn resp_body(raw: &[u8], method: &str) -> Result<Body, u16> {
        let Ok(Parse::Complete { head, .. }) = response::parse(raw) else {
            panic!("bad test input")
        };
        response_framing(&head, method)
            .map(|(body, _)| body)
            .map_err(|e| e.status)
    }

    #[test]
    fn the_length_a_bodiless_answer_declares() {
        let declared = |raw: &[u8], method: &str| {
            let Ok(Parse::Complete { head, .. }) = response::parse(raw) else {
                panic!("bad test input")
            };
            response_framing(&head, method).map_err(|e| e.status)
        };
        type Case<'a> = (&'a [u8], &'a str, Result<(Body, Option<u64>), u16>);
        let cases: &[Case<'_>] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                "HEAD",
                Ok((Body::Empty, Some(5))),
            ),
            (
                b"HTTP/1.1 304 X\r\nContent-Length: 5, 5\r\n\r\n",
                "GET",
                Ok((Body::Empty, Some(5))),
            ),
            (
                b"HTTP/1.1 304 X\r\nContent-Length: 5, 7\r\n\r\n",
                "GET",
                Err(502),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
                "HEAD",
                Err(502),
            ),
            (
                b"HTTP/1.1 204 X\r\nContent-Length: 0\r\n\r\n",
                "HEAD",
                Ok((Body::Empty, None)),
            ),
            (
                b"HTTP/1.1 103 X\r\nContent-Length: 3\r\n\r\n",
                "GET",
                Ok((Body::Empty, None)),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                "GET",
                Ok((Body::Length(5), None)),
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", "HEAD", Ok((Body::Empty, None))),
        ];
        for (raw, method, want) in cases {
            assert_eq!(
                declared(raw, method),
                *want,
                "{method} {:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn request_framing_table() {
        let cases: &[(&str, Result<Body, u16>)] = &[
            ("", Ok(Body::Empty)),
            ("Content-Length: 0\r\n", Ok(Body::Length(0))),
            ("Content-Length: 12\r\n", Ok(Body::Length(12))),
            (
                "Content-Length: 12\r\nContent-Length: 12\r\n",
                Ok(Body::Length(12)),
            ),
            ("Content-Length: 12, 12\r\n", Ok(Body::Length(12))),
            ("Content-Length: 12\r\nContent-Length: 13\r\n", Err(400)),
            ("Content-Length: 12, 13\r\n", Err(400)),
            ("Content-Length: +12\r\n", Err(400)),
            ("Content-Length: -1\r\n", Err(400)),
            ("Content-Length: 0x10\r\n", Err(400)),
            ("Content-Length: 1 2\r\n", Err(400)),
            ("Content-Length:\r\n", Err(400)),
            ("Content-Length: 18446744073709551616\r\n", Err(400)),
            (
                "Content-Length: 18446744073709551615\r\n",
                Ok(Body::Length(u64::MAX)),
            ),
            ("Transfer-Encoding: chunked\r\n", Ok(Body::Chunked)),
            ("Transfer-Encoding: Chunked\r\n", Ok(Body::Chunked)),
            (
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                Err(400),
            ),
            ("Transfer-Encoding: gzip\r\n", Err(400)),
            ("Transfer-Encoding: chunked, gzip\r\n", Err(400)),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
                Err(400),
            ),
            ("Transfer-Encoding: chunked, chunked\r\n", Err(400)),
            ("Transfer-Encoding: gzip, chunked\r\n", Err(501)),
            ("Transfer-Encoding: xchunked\r\n", Err(400)),
            ("Transfer-Encoding: \r\n", Err(400)),
        ];
        for (fields, want) in cases {
            let raw = format!("POST / HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
            assert_eq!(req_body(raw.as_bytes()), *want, "{fields:?}");
        }
        assert_eq!(
            req_body(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(400)
        );
    }

    #[test]
    fn a_refused_coding_says_why() {
        // The page (a request's 400) and the error log (a response's 502) name the fault:
        // `chunked` followed by another coding is a broken message, other codings alone
        // are ones this balancer does not take.
        let not_last = "chunked is not the last transfer coding";
        let cases = [
            (
                "gzip",
                "Transfer-Encoding does not end in chunked",
                "backend used a transfer coding other than chunked",
            ),
            ("chunked, gzip", not_last, not_last),
            ("gzip, chunked, gzip", not_last, not_last),
        ];
        for (coding, request_why, response_why) in cases {
            let raw = format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {coding}\r\n\r\n");
            let Ok(Parse::Complete { head, .. }) = request::parse(raw.as_bytes()) else {
                panic!("bad test input")
            };
            let error = request_body(&head).unwrap_err();
            assert_eq!((error.status, error.why), (400, request_why), "{coding}");
            let raw = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {coding}\r\n\r\n");
            let Ok(Parse::Complete { head, .. }) = response::parse(raw.as_bytes()) else {
                panic!("bad test input")
            };
            let error = response_framing(&head, "GET").unwrap_err();
            assert_eq!((error.status, error.why), (502, response_why), "{coding}");
        }
    }

    #[test]
    fn response_framing_table() {
        let cases: &[(&str, &str, Result<Body, u16>)] = &[
            ("200 OK", "Content-Length: 5\r\n", Ok(Body::Length(5))),
            ("200 OK", "", Ok(Body::UntilClose)),
            (
                "200 OK",
                "Transfer-Encoding: chunked\r\n",
                Ok(Body::Chunked),
            ),
            (
                "200 OK",
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                Err(502),
            ),
            ("200 OK", "Transfer-Encoding: gzip\r\n", Err(502)),
            (
                "200 OK",
                "Content-Length: 5\r\nContent-Length: 6\r\n",
                Err(502),
            ),
            ("200 OK", "Content-Length: abc\r\n", Err(502)),
            ("204 No Content", "", Ok(Body::Empty)),
            ("304 Not Modified", "Content-Length: 5\r\n", Ok(Body::Empty)),
            ("101 Switching Protocols", "", Ok(Body::Empty)),
        ];
        for (status, fields, want) in cases {
            let raw = format!("HTTP/1.1 {status}\r\n{fields}\r\n");
            assert_eq!(
                resp_body(raw.as_bytes(), "GET"),
                *want,
                "{status} {fields:?}"
            );
        }
        assert_eq!(
            resp_body(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD"),
            Ok(Body::Empty)
        );
        // Without a body the framing fields still have to be readable: the Content-Length of
        // a HEAD or 304 answer reaches the client.
        for (status, fields, method) in [
            ("200 OK", "Content-Length: 18446744073709551616\r\n", "HEAD"),
            (
                "200 OK",
                "Content-Length: 5\r\nContent-Length: 3\r\n",
                "HEAD",
            ),
            (
                "200 OK",
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                "HEAD",
            ),
            ("304 Not Modified", "Content-Length: 1x\r\n", "GET"),
            ("204 No Content", "Transfer-Encoding: gzip\r\n", "GET"),
        ] {
            let raw = format!("HTTP/1.1 {status}\r\n{fields}\r\n");
            assert_eq!(
                resp_body(raw.as_bytes(), method),
                Err(502),
                "{method} {status} {fields:?}"
            );
        }
        assert_eq!(
            resp_body(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                "HEAD"
            ),
            Ok(Body::Empty)
        );
    }
}
