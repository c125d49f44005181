//! HTTP/1.1 message syntax, as pure functions over bytes (no sockets here).
//!
//! The chapter's Python original leaves parsing to `http.server`; here every byte the balancer
//! trusts goes through these functions first. They follow RFC 9112 ("HTTP/1.1") and RFC 9110
//! ("HTTP Semantics") and, in the style of `httparse`, return [`Parse::Complete`] once a whole
//! head has arrived, [`Parse::Partial`] while more bytes are needed, or an [`Error`] that already
//! knows which status code to answer with.
//!
//! - [`head`]: lines and header fields, shared by requests and responses.
//! - [`request`] / [`response`]: the start line and the facts the proxy needs from a head.
//! - [`framing`]: where a message body ends (Content-Length, chunked, or connection close).
//! - [`chunked`]: a streaming decoder for the chunked transfer coding.
//! - [`pages`]: the small HTML pages the balancer answers with itself.

pub mod chunked;
pub mod framing;
pub mod head;
pub mod pages;
pub mod request;
pub mod response;
pub mod statuses;

pub use head::Header;

/// Longest request line accepted, in bytes (nginx's `large_client_header_buffers` is 8 KiB too).
/// A longer one is answered with `414 URI Too Long`.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Largest header section accepted (start line and fields), in bytes. Past it: `431`.
pub const MAX_HEAD: usize = 32 * 1024;
/// Most header fields accepted in one head (HAProxy's default `tune.http.maxhdr` is 101). Past it: `431`.
pub const MAX_HEADERS: usize = 100;

/// The outcome of parsing bytes that may not hold a whole head yet.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse<T> {
    /// A whole head was parsed; it used the first `len` bytes of the input.
    Complete {
        /// The parsed head.
        head: T,
        /// How many bytes of the input the head took, blank line included.
        len: usize,
    },
    /// The input ends before the head does: read more and call again.
    Partial,
}

/// HTTP version of a message (RFC 9112 section 2.3). Only 1.0 and 1.1 are spoken here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`: connections close after each message unless `Connection: keep-alive`.
    Http10,
    /// `HTTP/1.1`: persistent connections by default.
    Http11,
}

impl Version {
    /// The version as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// Why a message was refused, and the status code the balancer answers with.
///
/// Parsing functions decide the status (400, 414, 431, 501, 505, ...) where they find the
/// fault, so the proxy maps errors to answers in one place: [`pages::ErrorPage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    /// The status code to answer with.
    pub status: u16,
    /// A short, fixed explanation for the error page and the console.
    pub why: &'static str,
}

impl Error {
    /// A `400 Bad Request` with the given reason.
    pub const fn bad(why: &'static str) -> Error {
        Error { status: 400, why }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status,
            pages::reason(self.status),
            self.why
        )
    }
}

impl std::error::Error for Error {}

/// Is `b` a `tchar`, a byte allowed in a token such as a method or a field name (RFC 9110 section 5.6.2)?
/// Written as one `match` so that the compiler can turn it into a table lookup: it runs for
/// every byte of every field name.
pub fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+'
        | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

/// Is `s` a non-empty token (RFC 9110 section 5.6.2)?
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_reads_as_its_status_line_and_why() {
        let error = Error::bad("malformed request line");
        assert_eq!(error.to_string(), "400 Bad Request: malformed request line");
    }

    #[test]
    fn tchar_is_the_rfc_list() {
        // RFC 9110 section 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-"
        // / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
        for b in 0..=u8::MAX {
            let listed = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_tchar(b), listed, "byte {b:#04x}");
        }
    }
}
