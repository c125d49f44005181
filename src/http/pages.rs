//! The balancer's own answers: small HTML pages in the style of the chapter's demo servers.
//!
//! The Python original answers a dead backend with the bare text `Bad Gateway: [Errno 111]
//! Connection refused`, without `Content-Type` or `Content-Length`. Every page here is a whole,
//! well-framed response: status line, `Content-Type`, `Content-Length`, `Date`, and
//! `Connection: close` whenever the balancer is about to close the connection.

use crate::time;

/// Seconds a client is asked to wait (`Retry-After`) after a `503`: the connection cap or no
/// healthy backend are both short-lived states.
pub const RETRY_AFTER_SECS: u32 = 1;

/// CSS colours of the chapter's pages, in the order of its servers (Red, Blue, then more): the
/// demo backends' pages and the status page's rows use them, so that backend 1 stays red.
pub const PALETTE: [&str; 8] = [
    "red", "blue", "green", "orange", "purple", "teal", "brown", "hotpink",
];

/// Methods named in the `Allow` field of a `405` (RFC 9110 section 15.5.6 requires the field).
/// Everything is relayed except `CONNECT`; the list names the registered methods that are.
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE";

/// The interim answer to `Expect: 100-continue` (RFC 9110 section 10.1.1), sent before the
/// balancer streams a body to the backend: a status line and the empty line, nothing else.
/// A constant, not a [`Head`], because it is written on the request path, where a head
/// built each time would cost an allocation.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The standard reason phrase for the status codes the balancer itself sends (RFC 9110 section 15;
/// `431` is RFC 6585 section 5, `508` RFC 5842 section 7.2).
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        303 => "See Other",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        508 => "Loop Detected",
        _ => "Error",
    }
}

/// The head of a response written here rather than relayed (the error pages, the admin
/// listener's answers, the demo backends' pages), built one named step at a time, so that a
/// call site reads `Head::new(204).field("Cache-Control", "max-age=86400").close(true)`
/// rather than a status line typed out by hand.
#[derive(Debug)]
pub struct Head {
    text: String,
}

impl Head {
    /// A status line with the standard [`reason`] phrase.
    pub fn new(status: u16) -> Head {
        Head {
            text: format!("HTTP/1.1 {status} {}\r\n", reason(status)),
        }
    }

    /// Adds `name: value`. The caller makes sure neither holds a line break.
    pub fn field(mut self, name: &str, value: impl std::fmt::Display) -> Head {
        use std::fmt::Write as _;
        let _ = write!(self.text, "{name}: {value}\r\n");
        self
    }

    /// `Content-Type` and `Content-Length`: what a body of `length` bytes is.
    pub fn content(self, content_type: &str, length: usize) -> Head {
        self.field("Content-Type", content_type)
            .field("Content-Length", length)
    }

    /// `Date`, now (RFC 9110 section 6.6.1: an origin server with a clock sends it).
    pub fn date(self) -> Head {
        let now = time::http_date(std::time::SystemTime::now());
        self.field("Date", now)
    }

    /// `Connection: close` when `close`: the connection ends after this response.
    pub fn close(self, close: bool) -> Head {
        if close {
            return self.field("Connection", "close");
        }
        self
    }

    /// The head's bytes, with the empty line that ends it, followed by `body` unless
    /// `head_only` (the answer to a `HEAD` request, or a status that has no body).
    pub fn with_body(self, body: &[u8], head_only: bool) -> Vec<u8> {
        let mut out = self.text.into_bytes();
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(body);
        }
        out
    }
}

/// One of the balancer's own error pages: a whole response, head and HTML page, built with
/// named options.
///
/// `why` is shown on the page (HTML-escaped). The connection closes after it unless
/// [`keep_alive`](ErrorPage::keep_alive) says otherwise. For a `HEAD` request
/// ([`head_only`](ErrorPage::head_only)) the body is left out but `Content-Length` still gives
/// its size, as RFC 9110 section 9.3.2 allows. A `503` carries `Retry-After`, a `405` `Allow`,
/// unless [`fields_instead`](ErrorPage::fields_instead) replaces them.
#[derive(Debug, Clone, Copy)]
pub struct ErrorPage<'a> {
    status: u16,
    why: &'a str,
    keep_alive: bool,
    head_only: bool,
    fields: &'a [(&'a str, &'a str)],
    automatic: bool,
}

impl<'a> ErrorPage<'a> {
    /// The page for `status`, saying `why`; it closes the connection.
    pub fn new(status: u16, why: &'a str) -> ErrorPage<'a> {
        ErrorPage {
            status,
            why,
            keep_alive: false,
            head_only: false,
            fields: &[],
            automatic: true,
        }
    }

    /// Whether the connection stays open after the page (no `Connection: close`).
    pub fn keep_alive(self, keep_alive: bool) -> Self {
        ErrorPage { keep_alive, ..self }
    }

    /// Whether the page answers a `HEAD` request: the head without the body.
    pub fn head_only(self, head_only: bool) -> Self {
        ErrorPage { head_only, ..self }
    }

    /// Header fields added after the automatic ones (the request's `X-Request-Id`).
    pub fn fields(self, fields: &'a [(&'a str, &'a str)]) -> Self {
        ErrorPage { fields, ..self }
    }

    /// Header fields instead of the automatic `Retry-After` and `Allow` (the admin listener
    /// allows other methods, and its `401` needs `WWW-Authenticate`).
    pub fn fields_instead(self, fields: &'a [(&'a str, &'a str)]) -> Self {
        ErrorPage {
            fields,
            automatic: false,
            ..self
        }
    }

    /// The whole response's bytes.
    pub fn bytes(self) -> Vec<u8> {
        let title = format!("{} {}", self.status, reason(self.status));
        let body = format!(
            "<!DOCTYPE html>\n<html><head><title>{title}</title></head><body>\n\
             <h1 style='color:gray;'>{title}</h1>\n<p>{}</p>\n<hr><p>load-balancer</p>\n</body></html>\n",
            escape(self.why)
        );
        let mut head = Head::new(self.status)
            .content("text/html; charset=utf-8", body.len())
            .date();
        if self.automatic {
            head = match self.status {
                503 => head.field("Retry-After", RETRY_AFTER_SECS),
                405 => head.field("Allow", ALLOWED_METHODS),
                _ => head,
            };
        }
        for (name, value) in self.fields {
            head = head.field(name, value);
        }
        head.close(!self.keep_alive)
            .with_body(body.as_bytes(), self.head_only)
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Parse, response};

    #[test]
    fn every_status_sent_here_has_its_rfc_reason_phrase() {
        // RFC 9110 section 15, by subsection; 508 from RFC 5842 section 7.2. The phrases
        // changed names over the years (413 was "Payload Too Large" in RFC 7231): these
        // are the current ones.
        let rfc: &[(u16, &str, &str)] = &[
            (200, "OK", "15.3.1"),
            (201, "Created", "15.3.2"),
            (204, "No Content", "15.3.5"),
            (303, "See Other", "15.4.4"),
            (304, "Not Modified", "15.4.5"),
            (400, "Bad Request", "15.5.1"),
            (401, "Unauthorized", "15.5.2"),
            (403, "Forbidden", "15.5.4"),
            (404, "Not Found", "15.5.5"),
            (405, "Method Not Allowed", "15.5.6"),
            (408, "Request Timeout", "15.5.9"),
            (409, "Conflict", "15.5.10"),
            (411, "Length Required", "15.5.12"),
            (413, "Content Too Large", "15.5.14"),
            (414, "URI Too Long", "15.5.15"),
            (417, "Expectation Failed", "15.5.18"),
            (421, "Misdirected Request", "15.5.20"),
            (431, "Request Header Fields Too Large", "RFC 6585 section 5"),
            (500, "Internal Server Error", "15.6.1"),
            (501, "Not Implemented", "15.6.2"),
            (502, "Bad Gateway", "15.6.3"),
            (503, "Service Unavailable", "15.6.4"),
            (504, "Gateway Timeout", "15.6.5"),
            (505, "HTTP Version Not Supported", "15.6.6"),
            (508, "Loop Detected", "RFC 5842 section 7.2"),
        ];
        for (status, phrase, section) in rfc {
            assert_eq!(reason(*status), *phrase, "{status}: see {section}");
            let head = String::from_utf8(Head::new(*status).with_body(b"", true)).unwrap();
            assert_eq!(head, format!("HTTP/1.1 {status} {phrase}\r\n\r\n"));
        }
    }

    #[test]
    fn continue_is_a_whole_interim_head() {
        let Ok(Parse::Complete { head, len }) = response::parse(CONTINUE) else {
            panic!("100 Continue does not parse")
        };
        assert_eq!((head.status, len), (100, CONTINUE.len()));
    }

    #[test]
    fn pages_are_well_framed() {
        for status in [
            400, 401, 403, 404, 405, 408, 409, 411, 413, 414, 431, 501, 502, 503, 504, 505,
        ] {
            let raw = ErrorPage::new(status, "why <b>").bytes();
            let Ok(Parse::Complete { head, len }) = response::parse(&raw) else {
                panic!("{status}")
            };
            assert_eq!(head.status, status);
            let length = crate::http::head::values(&head.headers, "content-length")
                .next()
                .unwrap();
            assert_eq!(
                std::str::from_utf8(length).unwrap(),
                (raw.len() - len).to_string()
            );
            let body = String::from_utf8_lossy(&raw[len..]);
            assert!(body.contains("why &lt;b&gt;"), "{body}");
            assert!(crate::http::head::has_token(
                &head.headers,
                "connection",
                "close"
            ));
        }
        let head_only = ErrorPage::new(502, "x")
            .keep_alive(true)
            .head_only(true)
            .bytes();
        assert!(head_only.ends_with(b"\r\n\r\n"));
        assert!(
            String::from_utf8_lossy(&ErrorPage::new(503, "").bytes())
                .contains("Retry-After: 1\r\n")
        );
        assert!(String::from_utf8_lossy(&ErrorPage::new(405, "").bytes()).contains("Allow: GET"));
        let own = ErrorPage::new(405, "")
            .fields_instead(&[("Allow", "POST")])
            .bytes();
        let own = String::from_utf8_lossy(&own);
        assert!(own.contains("\r\nAllow: POST\r\n") && !own.contains("Allow: GET"));
    }
}
