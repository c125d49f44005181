//! The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy's `proxy-protocol.txt`
//! specifies them: an L4 balancer or a TLS terminator in front of the balancer opens each
//! connection with one header that names the client it relays, so the client's address
//! survives the extra hop without any HTTP field.
//!
//! [`parse`] is a pure function of the first bytes of a connection, in the style of httparse:
//! [`Parsed::Complete`] with the header and its length (the bytes after it are the start of
//! the first request), [`Parsed::Partial`] when more bytes are needed, or an error.
//! [`read`] runs it on a new connection (`--proxy-protocol`), within `--header-timeout`.
//!
//! ```text
//! v1: PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\n          (at most 107 bytes)
//! v2: \r\n\r\n\0\r\nQUIT\n  ver|cmd  family|proto  length(2)   (16 bytes)
//!     then the addresses (12 bytes IPv4, 36 IPv6, 216 Unix) and TLVs (type, length(2), value)
//! ```

use crate::conn::{BufConn, is_timeout};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

/// The longest v1 header, `\r\n` included (the specification's limit).
pub const V1_MAX: usize = 107;
/// The start of a v1 header.
pub const V1_PREFIX: &[u8] = b"PROXY ";
/// The first 12 bytes of a v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part of a v2 header: the signature, version and command, family and protocol,
/// and the length of what follows.
pub const V2_FIXED: usize = 16;
/// The longest address block plus TLVs accepted after the fixed part of a v2 header. The
/// format allows 65,535 bytes; the addresses take at most 216 and the TLVs HAProxy and cloud
/// balancers send a few hundred, so anything longer is refused rather than buffered.
pub const V2_MAX_LEN: usize = 4096;
/// The TLV that says the client connected over TLS.
pub const PP2_TYPE_SSL: u8 = 0x20;
/// The flag, in the first byte of a [`PP2_TYPE_SSL`] value, that the client spoke TLS.
pub const PP2_CLIENT_SSL: u8 = 0x01;

/// A PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// 1 or 2.
    pub version: u8,
    /// The client's address and port as the proxy saw them. `None` for a `LOCAL` command
    /// (the proxy's own connection: a health probe), `UNKNOWN` (v1), or an address family
    /// other than IPv4 and IPv6: the connection's own peer address stays the client's.
    pub source: Option<SocketAddr>,
    /// The address the client connected to, when `source` is known.
    pub destination: Option<SocketAddr>,
    /// A v2 [`PP2_TYPE_SSL`] TLV with [`PP2_CLIENT_SSL`] set: the client spoke https.
    pub ssl: bool,
}

/// What [`parse`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header, and how many bytes it took; what follows belongs to the request.
    Complete(Header, usize),
    /// A valid start of a header: read more.
    Partial,
}

/// Parses a PROXY header at the start of `data`, of either version.
///
/// # Errors
/// Why the bytes are not a PROXY header: the wrong signature (a plain HTTP request, say),
/// a v1 line that is too long or malformed, a v2 version, command or family that does not
/// exist, a v2 length past [`V2_MAX_LEN`], an address block too short for its family, or a
/// TLV that runs past the end.
pub fn parse(data: &[u8]) -> Result<Parsed, &'static str> {
    let n = data.len().min(V2_SIGNATURE.len());
    if data[..n] == V2_SIGNATURE[..n] && n > 0 {
        return parse_v2(data);
    }
    let n = data.len().min(V1_PREFIX.len());
    if data[..n] == V1_PREFIX[..n] {
        return parse_v1(data);
    }
    Err("the connection does not start with a PROXY protocol header")
}

/// Version 1: one line of text.
fn parse_v1(data: &[u8]) -> Result<Parsed, &'static str> {
    let window = &data[..data.len().min(V1_MAX)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if data.len() >= V1_MAX {
            Err("a PROXY v1 header longer than 107 bytes")
        } else {
            Ok(Parsed::Partial)
        };
    };
    let line = data[..lf]
        .strip_suffix(b"\r")
        .ok_or("a PROXY v1 header must end with CRLF")?;
    let line = std::str::from_utf8(line).map_err(|_| "a PROXY v1 header that is not text")?;
    let mut parts = line.split(' ');
    parts.next(); // "PROXY", checked by the caller
    let header = match parts.next() {
        Some("UNKNOWN") => Header {
            version: 1,
            source: None,
            destination: None,
            ssl: false,
        },
        Some(family @ ("TCP4" | "TCP6")) => {
            let fields: Vec<&str> = parts.collect();
            let [src, dst, sport, dport] = fields[..] else {
                return Err("a PROXY v1 header needs two addresses and two ports");
            };
            let v6 = family == "TCP6";
            Header {
                version: 1,
                source: Some(v1_address(src, sport, v6)?),
                destination: Some(v1_address(dst, dport, v6)?),
                ssl: false,
            }
        }
        _ => return Err("a PROXY v1 protocol must be TCP4, TCP6 or UNKNOWN"),
    };
    Ok(Parsed::Complete(header, lf + 1))
}

/// One address and port of a v1 header, of the family the header names.
fn v1_address(ip: &str, port: &str, v6: bool) -> Result<SocketAddr, &'static str> {
    let ip: IpAddr = if v6 {
        ip.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        ip.parse::<Ipv4Addr>().map(IpAddr::V4)
    }
    .map_err(|_| "a PROXY v1 address that is not of its family")?;
    let decimal = (1..=5).contains(&port.len())
        && port.bytes().all(|b| b.is_ascii_digit())
        && (port == "0" || !port.starts_with('0'));
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|_| decimal)
        .ok_or("a PROXY v1 port must be a number from 0 to 65535")?;
    Ok(SocketAddr::new(ip, port))
}

/// Version 2: a binary header.
fn parse_v2(data: &[u8]) -> Result<Parsed, &'static str> {
    if data.len() < V2_FIXED {
        return Ok(Parsed::Partial);
    }
    let (version, command) = (data[12] >> 4, data[12] & 0x0f);
    let (family, transport) = (data[13] >> 4, data[13] & 0x0f);
    let len = usize::from(u16::from_be_bytes([data[14], data[15]]));
    if version != 2 {
        return Err("a PROXY v2 header of an unknown version");
    }
    if command > 1 {
        return Err("a PROXY v2 command other than LOCAL and PROXY");
    }
    if family > 3 || transport > 2 {
        return Err("a PROXY v2 address family or protocol that does not exist");
    }
    if len > V2_MAX_LEN {
        return Err("a PROXY v2 header longer than the balancer accepts");
    }
    let Some(body) = data.get(V2_FIXED..V2_FIXED + len) else {
        return Ok(Parsed::Partial);
    };
    let mut header = Header {
        version: 2,
        source: None,
        destination: None,
        ssl: false,
    };
    // LOCAL: the proxy speaks for itself; its address block, if any, means nothing.
    // AF_UNSPEC: no addresses, and the specification says to ignore what follows.
    if command == 1 && family != 0 {
        let addresses = match family {
            1 => 12,
            2 => 36,
            _ => 216, // AF_UNIX: two paths, not a client address
        };
        let (block, tlvs) = body
            .split_at_checked(addresses)
            .ok_or("a PROXY v2 address block too short for its family")?;
        if let Some((src, dst)) = v2_addresses(family, block) {
            header.source = Some(src);
            header.destination = Some(dst);
        }
        header.ssl = client_ssl(tlvs)?;
    }
    Ok(Parsed::Complete(header, V2_FIXED + len))
}

/// The source and destination of an IPv4 (family 1) or IPv6 (2) address block.
fn v2_addresses(family: u8, block: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    match family {
        1 => {
            let ip = |at: usize| -> [u8; 4] { block[at..at + 4].try_into().unwrap_or_default() };
            Some((
                SocketAddr::new(Ipv4Addr::from(ip(0)).into(), port(8)),
                SocketAddr::new(Ipv4Addr::from(ip(4)).into(), port(10)),
            ))
        }
        2 => {
            let ip = |at: usize| -> [u8; 16] { block[at..at + 16].try_into().unwrap_or_default() };
            Some((
                SocketAddr::new(Ipv6Addr::from(ip(0)).into(), port(32)),
                SocketAddr::new(Ipv6Addr::from(ip(16)).into(), port(34)),
            ))
        }
        _ => None,
    }
}

/// Walks the TLVs: is there a [`PP2_TYPE_SSL`] with [`PP2_CLIENT_SSL`] set?
fn client_ssl(mut tlvs: &[u8]) -> Result<bool, &'static str> {
    let mut ssl = false;
    while !tlvs.is_empty() {
        let [kind, hi, lo, rest @ ..] = tlvs else {
            return Err("a PROXY v2 TLV cut short");
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        let (value, next) = rest
            .split_at_checked(len)
            .ok_or("a PROXY v2 TLV longer than the header")?;
        if *kind == PP2_TYPE_SSL {
            // client (1 byte), verify (4 bytes), then sub-TLVs.
            if value.len() < 5 {
                return Err("a PROXY v2 SSL TLV shorter than 5 bytes");
            }
            ssl = value[0] & PP2_CLIENT_SSL != 0;
        }
        tlvs = next;
    }
    Ok(ssl)
}

/// Reads the PROXY header that opens a connection, by `deadline` (`--header-timeout` from
/// accept); the bytes after it stay in `conn` as the start of the first request.
///
/// # Errors
/// Why the connection must be closed: not a header ([`parse`]), the peer closed, or the
/// deadline passed.
pub fn read(conn: &mut BufConn, deadline: Instant) -> Result<Header, &'static str> {
    loop {
        if let Parsed::Complete(header, len) = parse(conn.data())? {
            conn.consume(len);
            return Ok(header);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        const LATE: &str = "no whole PROXY header within --header-timeout";
        if left.is_zero() || conn.set_read_timeout(left).is_err() {
            return Err(LATE);
        }
        match conn.fill() {
            Ok(0) => return Err("the connection closed before its PROXY header ended"),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => return Err(LATE),
            Err(_) => return Err("the connection failed before its PROXY header ended"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 header: version 2 with `command`, `family_proto`, and `body` (addresses + TLVs).
    fn v2(command: u8, family_proto: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family_proto);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// The IPv4 address block 192.0.2.7:51234 -> 198.51.100.1:443.
    fn inet() -> Vec<u8> {
        let mut b = vec![192, 0, 2, 7, 198, 51, 100, 1];
        b.extend_from_slice(&51234u16.to_be_bytes());
        b.extend_from_slice(&443u16.to_be_bytes());
        b
    }

    /// The IPv6 address block [2001:db8::7]:51234 -> [2001:db8::1]:443.
    fn inet6() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        b.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        b.extend_from_slice(&51234u16.to_be_bytes());
        b.extend_from_slice(&443u16.to_be_bytes());
        b
    }

    fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn at(text: &str) -> Option<SocketAddr> {
        Some(text.parse().unwrap())
    }

    fn header(version: u8, src: Option<&str>, dst: Option<&str>, ssl: bool) -> Header {
        Header {
            version,
            source: src.and_then(at),
            destination: dst.and_then(at),
            ssl,
        }
    }

    /// Valid headers and what they say.
    fn valid() -> Vec<(&'static str, Vec<u8>, Header)> {
        let v4 = Some("192.0.2.7:51234");
        let v4d = Some("198.51.100.1:443");
        let v6 = Some("[2001:db8::7]:51234");
        let v6d = Some("[2001:db8::1]:443");
        // HAProxy's send-proxy-v2-ssl: the SSL TLV (client flag, verify 0) with a version
        // sub-TLV, after an ALPN TLV and before a NOOP.
        let ssl = tlv(
            PP2_TYPE_SSL,
            &cat(&[&[0x01, 0, 0, 0, 0], &tlv(0x21, b"TLSv1.3")]),
        );
        let not_ssl = tlv(PP2_TYPE_SSL, &[0x00, 0, 0, 0, 0]);
        vec![
            ("v1 tcp4", b"PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\n".to_vec(), header(1, v4, v4d, false)),
            ("v1 tcp6", b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n".to_vec(), header(1, v6, v6d, false)),
            ("v1 port 0", b"PROXY TCP4 192.0.2.7 198.51.100.1 0 65535\r\n".to_vec(), header(1, Some("192.0.2.7:0"), Some("198.51.100.1:65535"), false)),
            ("v1 unknown", b"PROXY UNKNOWN\r\n".to_vec(), header(1, None, None, false)),
            (
                "v1 unknown, longest",
                b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n".to_vec(),
                header(1, None, None, false),
            ),
            ("v2 ipv4", v2(1, 0x11, &inet()), header(2, v4, v4d, false)),
            ("v2 ipv6", v2(1, 0x21, &inet6()), header(2, v6, v6d, false)),
            // The specification's last transport, DGRAM (2): well-formed, addresses taken.
            ("v2 ipv4 datagram", v2(1, 0x12, &inet()), header(2, v4, v4d, false)),
            ("v2 local", v2(0, 0x00, &[]), header(2, None, None, false)),
            ("v2 local with addresses", v2(0, 0x11, &inet()), header(2, None, None, false)),
            ("v2 unspec", v2(1, 0x00, &[]), header(2, None, None, false)),
            ("v2 unspec with junk", v2(1, 0x00, b"ignored"), header(2, None, None, false)),
            ("v2 unix", v2(1, 0x31, &[b'/'; 216]), header(2, None, None, false)),
            (
                "v2 ssl",
                v2(1, 0x11, &cat(&[&inet(), &tlv(0x01, b"h2"), &ssl, &tlv(0x04, &[0; 3])])),
                header(2, v4, v4d, true),
            ),
            ("v2 ipv6 ssl", v2(1, 0x21, &cat(&[&inet6(), &ssl])), header(2, v6, v6d, true)),
            ("v2 ssl tlv, client plain", v2(1, 0x11, &cat(&[&inet(), &not_ssl])), header(2, v4, v4d, false)),
            ("v2 empty tlv", v2(1, 0x11, &cat(&[&inet(), &tlv(0xe0, &[])])), header(2, v4, v4d, false)),
            (
                "v2 at the length limit",
                v2(1, 0x11, &cat(&[&inet(), &tlv(0x04, &[0; V2_MAX_LEN - 12 - 3])])),
                header(2, v4, v4d, false),
            ),
        ]
    }

    #[test]
    fn valid_headers_byte_by_byte() {
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for (name, bytes, want) in valid() {
            assert_eq!(
                parse(&bytes),
                Ok(Parsed::Complete(want, bytes.len())),
                "{name}"
            );
            // A request pipelined right behind the header is not part of it.
            let with_request = cat(&[&bytes, request]);
            assert_eq!(
                parse(&with_request),
                Ok(Parsed::Complete(want, bytes.len())),
                "{name} + request"
            );
            // Every truncation is a valid start: wait for more.
            for cut in 0..bytes.len() {
                assert_eq!(
                    parse(&bytes[..cut]),
                    Ok(Parsed::Partial),
                    "{name} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn bad_headers_are_refused_with_a_reason() {
        let long_line = [&b"PROXY UNKNOWN "[..], &[b'x'; 100]].concat();
        let table: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "plain http",
                b"GET / HTTP/1.1\r\n\r\n".to_vec(),
                "does not start",
            ),
            (
                "lowercase",
                b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
                "does not start",
            ),
            ("tls hello", vec![0x16, 0x03, 0x01, 0x02], "does not start"),
            (
                "v2 signature broken",
                cat(&[b"\r\n\r\n\0\r\nQUIX\n", &[0x21, 0x11, 0, 0]]),
                "does not start",
            ),
            (
                "v1 no cr",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".to_vec(),
                "CRLF",
            ),
            ("v1 too long", long_line, "107"),
            (
                "v1 family",
                b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
                "TCP4, TCP6 or UNKNOWN",
            ),
            (
                "v1 no family",
                b"PROXY \r\n".to_vec(),
                "TCP4, TCP6 or UNKNOWN",
            ),
            (
                "v1 v6 in tcp4",
                b"PROXY TCP4 ::1 ::1 1 2\r\n".to_vec(),
                "not of its family",
            ),
            (
                "v1 v4 in tcp6",
                b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
                "not of its family",
            ),
            (
                "v1 bad address",
                b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n".to_vec(),
                "not of its family",
            ),
            (
                "v1 port too big",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n".to_vec(),
                "port",
            ),
            (
                "v1 port sign",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n".to_vec(),
                "port",
            ),
            (
                "v1 port zero-led",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n".to_vec(),
                "port",
            ),
            (
                "v1 missing port",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n".to_vec(),
                "two ports",
            ),
            (
                "v1 extra field",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n".to_vec(),
                "two ports",
            ),
            (
                "v1 double space",
                b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
                "two ports",
            ),
            (
                "v1 not utf-8",
                b"PROXY TCP4 \xff 5.6.7.8 1 2\r\n".to_vec(),
                "not text",
            ),
            (
                "v2 version 1",
                cat(&[&V2_SIGNATURE, &[0x11, 0x11, 0, 0]]),
                "version",
            ),
            (
                "v2 version 3",
                cat(&[&V2_SIGNATURE, &[0x31, 0x11, 0, 0]]),
                "version",
            ),
            ("v2 command 2", v2(2, 0x11, &inet()), "command"),
            ("v2 family 4", v2(1, 0x41, &inet()), "family"),
            ("v2 protocol 3", v2(1, 0x13, &inet()), "family"),
            (
                "v2 too long",
                cat(&[&V2_SIGNATURE, &[0x21, 0x11, 0x10, 0x01]]),
                "longer than",
            ),
            (
                "v2 max length",
                cat(&[&V2_SIGNATURE, &[0x21, 0x11, 0xff, 0xff]]),
                "longer than",
            ),
            ("v2 short ipv4", v2(1, 0x11, &inet()[..11]), "too short"),
            (
                "v2 ipv6 block in ipv4 size",
                v2(1, 0x21, &inet()),
                "too short",
            ),
            ("v2 short unix", v2(1, 0x31, &[0; 215]), "too short"),
            (
                "v2 tlv cut",
                v2(1, 0x11, &cat(&[&inet(), &[0x04, 0x00]])),
                "cut short",
            ),
            (
                "v2 tlv past end",
                v2(1, 0x11, &cat(&[&inet(), &[0x04, 0x00, 0x05, 1, 2]])),
                "longer than the header",
            ),
            (
                "v2 ssl tlv short",
                v2(1, 0x11, &cat(&[&inet(), &tlv(PP2_TYPE_SSL, &[1, 0, 0])])),
                "shorter than 5",
            ),
        ];
        for (name, bytes, why) in table {
            match parse(&bytes) {
                Err(e) => assert!(e.contains(why), "{name}: {e}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn anything_else_fails_at_its_first_wrong_byte() {
        // No waiting for a request line or for 107 bytes: the first byte that cannot start
        // a header ends it.
        for first in 0..=u8::MAX {
            let result = parse(&[first]);
            let starts = first == b'P' || first == b'\r';
            assert_eq!(result.is_ok(), starts, "byte {first:#04x}: {result:?}");
        }
        assert!(parse(b"PROXZ").is_err());
        assert!(parse(b"\r\n\r\n\0\r\nQUIT\r").is_err());
    }

    #[test]
    fn no_input_panics() {
        // Every prefix and every one-byte change of every valid header: an answer, never a
        // panic, and a Complete length within the input.
        for (name, bytes, _) in valid() {
            for i in 0..bytes.len() {
                for b in [0x00, 0x01, 0x0a, 0x0d, 0x20, 0x2f, 0x30, 0x3a, 0x7f, 0xff] {
                    let mut m = bytes.clone();
                    m[i] = b;
                    for cut in [i + 1, m.len()] {
                        if let Ok(Parsed::Complete(_, n)) = parse(&m[..cut]) {
                            assert!(n <= cut, "{name} at {i}: {n} > {cut}");
                        }
                    }
                }
            }
        }
    }
}
