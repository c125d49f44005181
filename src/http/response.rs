//! The response head a backend sends: `HTTP/1.1 200 OK`, then header fields (RFC 9112 section 4).
//!
//! The chapter's original copies every header of the backend's answer and lets `http.server`
//! add its own `Server` and `Date`, so both appear twice. Here the status line and fields are
//! parsed once, and relayed as they came, minus the hop-by-hop ones.

use super::head::{self, Header};
use super::request::parse_version;
use super::{Error, MAX_HEAD, Parse, Version};

/// A parsed response head, borrowed from the bytes it was parsed from.
#[derive(Debug, PartialEq, Eq)]
pub struct Response<'a> {
    /// The backend's HTTP version.
    pub version: Version,
    /// The three-digit status code.
    pub status: u16,
    /// The reason phrase, relayed unchanged (may be empty).
    pub reason: &'a [u8],
    /// The header fields, in order.
    pub headers: Vec<Header<'a>>,
}

/// Parses a response head from the start of `buf`.
///
/// # Errors
/// Any fault has status `502`: a backend that speaks broken HTTP is a bad gateway, whatever the
/// fault was (a malformed status line, a field, or a head over the limits).
pub fn parse(buf: &[u8]) -> Result<Parse<Response<'_>>, Error> {
    let bad = |why| Error { status: 502, why };
    let Some((line, pos)) = head::next_line(buf, 0) else {
        return if buf.len() > MAX_HEAD {
            Err(bad("response head too large"))
        } else {
            Ok(Parse::Partial)
        };
    };
    let (version, status, reason) = parse_status_line(line).ok_or(bad("malformed status line"))?;
    let mut headers = Vec::with_capacity(16);
    match head::parse_fields(buf, pos, &mut headers) {
        Ok(None) => Ok(Parse::Partial),
        Ok(Some(len)) => Ok(Parse::Complete {
            head: Response {
                version,
                status,
                reason,
                headers,
            },
            len,
        }),
        Err(e) => Err(bad(e.why)),
    }
}

/// `HTTP-version SP 3DIGIT SP reason-phrase`. A missing reason phrase, and even the space
/// before it, is tolerated: some servers send `HTTP/1.1 200` alone.
fn parse_status_line(line: &[u8]) -> Option<(Version, u16, &[u8])> {
    let version = parse_version(line.get(..8)?).ok()?;
    let rest = line.get(8..)?.strip_prefix(b" ")?;
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || code[0] == b'0' {
        return None;
    }
    let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let reason = match &rest[3..] {
        [] => &[][..],
        [b' ', reason @ ..] => reason,
        _ => return None,
    };
    if reason
        .iter()
        .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return None;
    }
    Some((version, status, reason))
}

impl Response<'_> {
    /// Does the backend keep the connection open after this response (RFC 9112 section 9.3)?
    pub fn keep_alive(&self) -> bool {
        let close = head::has_token(&self.headers, "connection", "close");
        match self.version {
            Version::Http11 => !close,
            Version::Http10 => !close && head::has_token(&self.headers, "connection", "keep-alive"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_response() {
        let raw = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nServer: x\r\n\r\n";
        let Ok(Parse::Complete { head, len }) = parse(raw) else {
            panic!()
        };
        assert_eq!(len, raw.len());
        assert_eq!(head.status, 404);
        assert_eq!(head.reason, b"Not Found");
        assert_eq!(head.headers.len(), 2);
        assert!(head.keep_alive());
    }

    #[test]
    fn every_truncated_prefix_is_partial() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        for cut in 0..raw.len() {
            assert_eq!(parse(&raw[..cut]), Ok(Parse::Partial), "cut at {cut}");
        }
    }

    #[test]
    fn reason_phrase_may_be_missing() {
        for raw in [&b"HTTP/1.1 204\r\n\r\n"[..], b"HTTP/1.1 204 \r\n\r\n"] {
            let Ok(Parse::Complete { head, .. }) = parse(raw) else {
                panic!()
            };
            assert_eq!(head.status, 204);
            assert_eq!(head.reason, b"");
        }
        let Ok(Parse::Complete { head, .. }) = parse(b"HTTP/1.0 200 OK\r\n\r\n") else {
            panic!()
        };
        assert!(!head.keep_alive());
    }

    #[test]
    fn an_http_1_0_backend_keeps_the_connection_only_when_it_says_keep_alive() {
        for (raw, keep) in [
            (
                &b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"[..],
                true,
            ),
            (b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n", false),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\n\r\n",
                false,
            ),
            (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", false),
            (b"HTTP/1.1 200 OK\r\n\r\n", true),
        ] {
            let Ok(Parse::Complete { head, .. }) = parse(raw) else {
                panic!()
            };
            assert_eq!(
                head.keep_alive(),
                keep,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn a_status_line_that_never_ends_is_502_past_the_head_limit() {
        // Up to MAX_HEAD bytes the line may still end; one byte more and it cannot fit.
        let line = |n| [&b"HTTP/1.1 200 "[..], &vec![b'x'; n - 13]].concat();
        assert_eq!(parse(&line(MAX_HEAD)), Ok(Parse::Partial));
        let err = parse(&line(MAX_HEAD + 1)).unwrap_err();
        assert_eq!((err.status, err.why), (502, "response head too large"));
    }

    #[test]
    fn broken_responses_are_502() {
        for raw in [
            &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 099 x\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200OK\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"ICY 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
            b"HTTP/1.1 200 O\0K\r\n\r\n",
        ] {
            assert_eq!(
                parse(raw).unwrap_err().status,
                502,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
