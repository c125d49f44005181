//! Lines and header fields: the part of RFC 9112 that requests and responses share. The
//! chapter's handler never sees them (`http.server` parses them, and its forwarding drops the
//! client's); here they are read, checked, and forwarded.
//!
//! A head is a start line, then field lines `name: value`, then an empty line. Lines end in
//! CRLF; like nginx and HAProxy we also accept a bare LF (RFC 9112 section 2.2 allows it), which
//! is safe here because the balancer never forwards the client's bytes as they came: it writes a
//! fresh head, with CRLF, from what it parsed.

use super::{Error, MAX_HEAD, MAX_HEADERS, is_token};

/// One header field, borrowed from the buffer it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The field name, as sent (compare with [`Header::is`], names are case-insensitive).
    pub name: &'a str,
    /// The field value without leading or trailing whitespace. May hold bytes above 0x7F
    /// (`obs-text`), never CR, LF, NUL or another control byte but HTAB.
    pub value: &'a [u8],
}

impl Header<'_> {
    /// Does this field have the given name? Field names are case-insensitive (RFC 9110 section 5.1).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// Finds the next line of `buf` starting at `from`: returns the line without its line ending,
/// and where the line after it starts. `None` if no LF has arrived yet.
pub fn next_line(buf: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let rest = &buf[from..];
    let lf = rest.iter().position(|&b| b == b'\n')?;
    let line = &rest[..lf];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, from + lf + 1))
}

/// Parses the field lines of a head, starting at `pos` (just after the start line), into
/// `headers`. Returns where the head ends (after the empty line), or `None` if it has not
/// fully arrived yet.
///
/// # Errors
/// `431` past [`MAX_HEADERS`] fields or [`MAX_HEAD`] bytes; `400` for a malformed field
/// (see [`parse_field`]).
pub fn parse_fields<'a>(
    buf: &'a [u8],
    mut pos: usize,
    headers: &mut Vec<Header<'a>>,
) -> Result<Option<usize>, Error> {
    loop {
        let Some((line, next)) = next_line(buf, pos) else {
            return if buf.len() > MAX_HEAD {
                Err(too_large())
            } else {
                Ok(None)
            };
        };
        if next > MAX_HEAD {
            return Err(too_large());
        }
        if line.is_empty() {
            return Ok(Some(next));
        }
        if headers.len() == MAX_HEADERS {
            return Err(Error {
                status: 431,
                why: "too many header fields",
            });
        }
        headers.push(parse_field(line)?);
        pos = next;
    }
}

fn too_large() -> Error {
    Error {
        status: 431,
        why: "header section too large",
    }
}

/// Parses one field line `name: value` (RFC 9112 section 5).
///
/// # Errors
/// `400` for a line folded onto the previous one (obs-fold, section 5.2), a name that is not a
/// token (this includes whitespace before the colon, which section 5.1 says to reject), a
/// missing colon, or a control byte (NUL, CR, ...) in the value.
pub fn parse_field(line: &[u8]) -> Result<Header<'_>, Error> {
    if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
        return Err(Error::bad("obsolete line folding in a header field"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(Error::bad("header field without a colon"))?;
    let name = &line[..colon];
    if name.last().is_some_and(|&b| b == b' ' || b == b'\t') {
        return Err(Error::bad("whitespace before the colon of a header field"));
    }
    if !is_token(name) {
        return Err(Error::bad("invalid header field name"));
    }
    let value = trim_ows(&line[colon + 1..]);
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(Error::bad("control character in a header field value"));
    }
    // A token is ASCII, so this cannot fail; the error arm only keeps the code panic-free.
    let name = std::str::from_utf8(name).map_err(|_| Error::bad("invalid header field name"))?;
    Ok(Header { name, value })
}

/// Removes optional whitespace (SP and HTAB, RFC 9110 section 5.6.3) from both ends.
pub fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The elements of a comma-separated list value (RFC 9110 section 5.6.1), trimmed, empty
/// elements skipped: `"a, ,b"` gives `a` and `b`.
pub fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// The values of every field called `name`, in order.
pub fn values<'h, 'a>(
    headers: &'h [Header<'a>],
    name: &'h str,
) -> impl Iterator<Item = &'a [u8]> + 'h {
    headers.iter().filter(move |h| h.is(name)).map(|h| h.value)
}

/// Does any field called `name` list `token` (case-insensitive)? For `Connection: close` and the like.
pub fn has_token(headers: &[Header<'_>], name: &str, token: &str) -> bool {
    values(headers, name)
        .flat_map(list)
        .any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
}

/// Hop-by-hop fields: they describe one connection, so a proxy never forwards them
/// (RFC 9110 section 7.6.1; `Proxy-Connection` is its non-standard cousin). `Transfer-Encoding`
/// is here because the balancer re-frames every body it relays.
pub const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// Fields that must not arrive in a trailer section, so the balancer drops them from the
/// trailers it forwards: RFC 9110 section 6.5.1 names what a recipient needs before the
/// content and so cannot take from a trailer: framing (`Content-Length`, `Transfer-Encoding`,
/// `Trailer`), routing (`Host`), request modifiers (controls and conditionals), authentication,
/// response control data and the content's format. Hop-by-hop fields and names with an
/// underscore are dropped as in a header section.
pub const NOT_IN_TRAILERS: [&str; 28] = [
    "content-length",
    "transfer-encoding",
    "trailer",
    "host",
    "cache-control",
    "expect",
    "max-forwards",
    "pragma",
    "range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "authorization",
    "proxy-authorization",
    "www-authenticate",
    "proxy-authenticate",
    "cookie",
    "set-cookie",
    "age",
    "expires",
    "date",
    "location",
    "retry-after",
    "vary",
    "content-encoding",
    "content-type",
];

/// May a field called `name` be forwarded in a trailer section? See [`NOT_IN_TRAILERS`].
pub fn may_trail(name: &str) -> bool {
    !(name.contains('_')
        || HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || NOT_IN_TRAILERS.iter().any(|h| name.eq_ignore_ascii_case(h)))
}

/// Fields that a `Connection` header cannot make hop-by-hop: the message's routing and
/// framing. RFC 9110 section 7.6.1 lets a sender list connection options there, not remove
/// what every recipient needs; `Connection: host` would otherwise strip `Host` from the
/// request a backend gets. (Content-Length and Transfer-Encoding are written anew by the
/// balancer from the framing anyway.)
pub const NEVER_HOP_BY_HOP: [&str; 3] = ["host", "content-length", "transfer-encoding"];

fn never_hop_by_hop(name: &str) -> bool {
    NEVER_HOP_BY_HOP
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

/// Which fields of one message stay on this side of the proxy: the fixed [`HOP_BY_HOP`] set,
/// and any field that a `Connection` header of the message names, except those in
/// [`NEVER_HOP_BY_HOP`]. The message's `Connection` fields are read once, not once per field:
/// most keep-alive messages name nothing there but `keep-alive`, and for them the test is the
/// fixed set alone.
pub struct HopByHop<'h, 'a> {
    headers: &'h [Header<'a>],
    /// A `Connection` field names something beyond the fixed set (`close` included: a field
    /// called `Close` is then hop-by-hop too).
    names_more: bool,
}

impl<'h, 'a> HopByHop<'h, 'a> {
    /// Reads the `Connection` fields of the message whose fields are `headers`.
    pub fn new(headers: &'h [Header<'a>]) -> Self {
        let names_more = values(headers, "connection").flat_map(list).any(|token| {
            !HOP_BY_HOP
                .iter()
                .any(|h| token.eq_ignore_ascii_case(h.as_bytes()))
        });
        HopByHop {
            headers,
            names_more,
        }
    }

    /// Should the field `name` of this message stay on this side of the proxy?
    pub fn contains(&self, name: &str) -> bool {
        HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
            || (self.names_more
                && has_token(self.headers, "connection", name)
                && !never_hop_by_hop(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule of [`HopByHop`] written plainly, field by field, for the tests to hold the
    /// faster version to.
    fn is_hop_by_hop(headers: &[Header<'_>], name: &str) -> bool {
        HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
            || (has_token(headers, "connection", name) && !never_hop_by_hop(name))
    }

    #[test]
    fn fields_parse_and_trim() {
        let h = parse_field(b"Content-Type: \t text/html \t").unwrap();
        assert_eq!(h.name, "Content-Type");
        assert_eq!(h.value, b"text/html");
        assert!(h.is("content-type"));
        let h = parse_field(b"X-Empty:").unwrap();
        assert_eq!(h.value, b"");
        let h = parse_field(b"X-Utf8: caf\xc3\xa9").unwrap();
        assert_eq!(h.value, b"caf\xc3\xa9");
    }

    #[test]
    fn bad_fields_are_400() {
        for line in [
            &b" folded"[..],
            b"\tfolded",
            b"Host : x",
            b"Host\t: x",
            b"No colon",
            b": empty name",
            b"Bad Name: x",
            b"X: a\0b",
            b"X: a\rb",
            b"X: a\x7fb",
            b"X(y): z",
        ] {
            let err = parse_field(line).unwrap_err();
            assert_eq!(err.status, 400, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn lines_accept_crlf_and_lf() {
        assert_eq!(next_line(b"ab\r\ncd", 0), Some((&b"ab"[..], 4)));
        assert_eq!(next_line(b"ab\ncd", 0), Some((&b"ab"[..], 3)));
        assert_eq!(next_line(b"ab\r", 0), None);
    }

    #[test]
    fn lists_and_tokens() {
        let got: Vec<_> = list(b" a , ,b,, c ").collect();
        assert_eq!(got, [&b"a"[..], b"b", b"c"]);
        let headers = [
            Header {
                name: "Connection",
                value: b"Keep-Alive, X-Secret",
            },
            Header {
                name: "connection",
                value: b"close",
            },
        ];
        assert!(has_token(&headers, "CONNECTION", "close"));
        assert!(has_token(&headers, "connection", "keep-alive"));
        assert!(is_hop_by_hop(&headers, "x-secret"));
        assert!(is_hop_by_hop(&headers, "TE"));
        assert!(!is_hop_by_hop(&headers, "Trailer"));
        assert!(!is_hop_by_hop(&headers, "X-Other"));
    }

    #[test]
    fn connection_cannot_name_routing_or_framing_fields() {
        let headers = [Header {
            name: "Connection",
            value: b"Host, Content-Length, x-secret",
        }];
        let hop = HopByHop::new(&headers);
        assert!(!hop.contains("Host") && !is_hop_by_hop(&headers, "host"));
        assert!(!hop.contains("content-length"));
        assert!(hop.contains("X-Secret"));
        // Transfer-Encoding stays in the fixed set: the balancer re-frames every body.
        assert!(hop.contains("Transfer-Encoding"));
    }

    #[test]
    fn hop_by_hop_of_one_message_agrees_with_the_rule() {
        let field = |name, value| Header { name, value };
        let messages = [
            vec![],
            vec![field("Connection", &b"keep-alive"[..])],
            vec![field("Connection", b"close"), field("X-Secret", b"1")],
            vec![
                field("Connection", b"Keep-Alive, X-Secret"),
                field("X-Secret", b"1"),
            ],
            vec![field("connection", b"te"), field("connection", b"x-other")],
            vec![field("Connection", b"host, content-length, X-Secret")],
        ];
        for headers in &messages {
            let hop = HopByHop::new(headers);
            for name in [
                "X-Secret", "x-other", "TE", "Upgrade", "Trailer", "Host", "close",
            ] {
                assert_eq!(
                    hop.contains(name),
                    is_hop_by_hop(headers, name),
                    "{name} in {headers:?}"
                );
            }
        }
    }

    #[test]
    fn a_head_may_be_max_head_bytes_with_max_headers_fields() {
        // Exactly at both limits: MAX_HEADERS fields, padded so that the blank line ends
        // at byte MAX_HEAD.
        let mut head = Vec::new();
        for i in 1..MAX_HEADERS {
            head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"X-Pad: ");
        head.resize(MAX_HEAD - 4, b'p');
        head.extend_from_slice(b"\r\n\r\n");
        let mut headers = Vec::new();
        assert_eq!(parse_fields(&head, 0, &mut headers), Ok(Some(MAX_HEAD)));
        assert_eq!(headers.len(), MAX_HEADERS);
        // Not ended yet at MAX_HEAD bytes: it may still end there; one byte more cannot.
        let mut headers = Vec::new();
        let unended = vec![b'a'; MAX_HEAD];
        assert_eq!(parse_fields(&unended, 0, &mut headers), Ok(None));
        let mut longer = head[..MAX_HEAD - 2].to_vec();
        longer.extend_from_slice(b"p\r\n\r\n");
        let err = parse_fields(&longer, 0, &mut Vec::new()).unwrap_err();
        assert_eq!((err.status, err.why), (431, "header section too large"));
    }

    #[test]
    fn a_folded_line_is_refused_as_a_fold() {
        // RFC 9112 section 5.2: a line that starts with a space or a tab continues the
        // previous field (obs-fold); it is refused as such, whatever follows.
        for line in [&b" x: y"[..], b"\tx: y", b" continued"] {
            let err = parse_field(line).unwrap_err();
            let text = String::from_utf8_lossy(line);
            assert_eq!(
                err.why, "obsolete line folding in a header field",
                "{text:?}"
            );
        }
    }

    #[test]
    fn whitespace_before_the_colon_is_refused_as_such() {
        // RFC 9112 section 5.1: a server must reject it (a proxy that passed it on could
        // be read by the next hop as another field name).
        for line in [&b"x : y"[..], b"x\t: y"] {
            let err = parse_field(line).unwrap_err();
            let text = String::from_utf8_lossy(line);
            assert_eq!(
                err.why, "whitespace before the colon of a header field",
                "{text:?}"
            );
        }
    }

    #[test]
    fn field_limits_are_431() {
        let mut head = Vec::new();
        for i in 0..=MAX_HEADERS {
            head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let mut headers = Vec::new();
        assert_eq!(
            parse_fields(&head, 0, &mut headers).unwrap_err().status,
            431
        );

        let big = vec![b'a'; MAX_HEAD + 1];
        let mut headers = Vec::new();
        assert_eq!(parse_fields(&big, 0, &mut headers).unwrap_err().status, 431);
    }
}
