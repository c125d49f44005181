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

/// The standard reason phrase for the status codes the balancer itself sends (RFC 9110 section 15;
/// `508` is RFC 5842 section 7.2).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
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

/// A complete error response: head and HTML page.
///
/// `why` is shown on the page (HTML-escaped). With `close`, the head says `Connection: close`.
/// For a `HEAD` request (`head_only`) the body is left out but `Content-Length` still gives
/// its size, as RFC 9110 section 9.3.2 allows. A `503` carries `Retry-After`, a `405` `Allow`.
pub fn error_response(status: u16, why: &str, close: bool, head_only: bool) -> Vec<u8> {
    error_response_adding(status, why, close, head_only, &[])
}

/// [`error_response`] with `extra` header fields after the automatic ones (the request's
/// `X-Request-Id`).
pub fn error_response_adding(
    status: u16,
    why: &str,
    close: bool,
    head_only: bool,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let retry_after = RETRY_AFTER_SECS.to_string();
    let automatic: &[(&str, &str)] = match status {
        503 => &[("Retry-After", &retry_after)],
        405 => &[("Allow", ALLOWED_METHODS)],
        _ => &[],
    };
    let fields: Vec<(&str, &str)> = automatic.iter().chain(extra).copied().collect();
    error_response_with(status, why, close, head_only, &fields)
}

/// [`error_response`] with the given header `fields` instead of the automatic `Retry-After`
/// and `Allow` (the admin listener allows other methods, and its `401` needs
/// `WWW-Authenticate`).
pub fn error_response_with(
    status: u16,
    why: &str,
    close: bool,
    head_only: bool,
    fields: &[(&str, &str)],
) -> Vec<u8> {
    let title = format!("{status} {}", reason(status));
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>{title}</title></head><body>\n\
         <h1 style='color:gray;'>{title}</h1>\n<p>{}</p>\n<hr><p>load-balancer</p>\n</body></html>\n",
        escape(why)
    );
    let mut out = format!(
        "HTTP/1.1 {title}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nDate: {}\r\n",
        body.len(),
        time::http_date(std::time::SystemTime::now())
    );
    for (name, value) in fields {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&body);
    }
    out.into_bytes()
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
    fn pages_are_well_framed() {
        for status in [
            400, 401, 403, 404, 405, 408, 409, 411, 413, 414, 431, 501, 502, 503, 504, 505,
        ] {
            let raw = error_response(status, "why <b>", true, false);
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
        let head_only = error_response(502, "x", false, true);
        assert!(head_only.ends_with(b"\r\n\r\n"));
        assert!(
            String::from_utf8_lossy(&error_response(503, "", true, false))
                .contains("Retry-After: 1\r\n")
        );
        assert!(
            String::from_utf8_lossy(&error_response(405, "", true, false)).contains("Allow: GET")
        );
        let own = error_response_with(405, "", true, false, &[("Allow", "POST")]);
        let own = String::from_utf8_lossy(&own);
        assert!(own.contains("\r\nAllow: POST\r\n") && !own.contains("Allow: GET"));
    }
}
