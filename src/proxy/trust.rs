//! Whom to believe about where a request came from: the `--trusted-proxy` ranges, and what
//! a trusted hop's forwarding fields say (the client's address, the scheme it used, the host
//! it asked for).
//!
//! Behind a TLS terminator every request comes from the terminator's address and over plain
//! HTTP. The terminator writes down the real client in `X-Forwarded-For` and the scheme in
//! `X-Forwarded-Proto`, but any client can write those fields too, so they are believed only
//! from a peer in a range named with `--trusted-proxy`. From such a peer the client is the
//! right-most `X-Forwarded-For` address that is not itself trusted (nginx's
//! `real_ip_recursive on`): each hop appends the address it was connected from, so walking
//! from the right through trusted hops ends at the first address that no trusted hop can
//! vouch beyond. Everything left of it was written by the client and is ignored.
//!
//! Pure functions over parsed header fields: no sockets, no allocation.

use crate::http::Header;
use crate::http::head::trim_ows;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4 or IPv6 address range, `10.0.0.0/8` or `fd00::/8`; a bare address is a range of
/// one (`/32` or `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The first address of the range.
    net: IpAddr,
    /// How many leading bits an address must share with `net`.
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR` or `ADDR/PREFIX` (IPv4 or IPv6).
    ///
    /// # Errors
    /// A message for a bad address, a prefix past the address's bits, and an address with
    /// bits set past the prefix (`10.0.0.1/8`: nginx only warns, but a typo in a trust rule
    /// should not pass in silence).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 or IPv6 address"))?;
        let bits = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= bits && (p.len() == 1 || !p.starts_with('0')))
                .ok_or_else(|| format!("prefix {p:?} must be a number from 0 to {bits}"))?,
        };
        let cidr = Cidr { net, prefix };
        if bits_of(net) & !cidr.mask() != 0 {
            let first = cidr.first();
            return Err(format!(
                "{text} has bits set past the /{prefix}: the range is written {first}/{prefix}"
            ));
        }
        Ok(cidr)
    }

    /// Is `ip` in this range? An IPv4 address seen as `::ffff:a.b.c.d` (on a dual-stack
    /// listener) counts as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && bits_of(ip) & self.mask() == bits_of(self.net)
    }

    /// The mask of the prefix, over the bits of the address family (IPv4 in the low 32).
    fn mask(&self) -> u128 {
        let bits = if self.net.is_ipv4() { 32 } else { 128 };
        let ones = u128::MAX
            .checked_shl(128 - u32::from(self.prefix))
            .unwrap_or(0);
        ones >> (128 - bits)
    }

    /// The first address of the range `net` is in (for the error message).
    fn first(&self) -> IpAddr {
        let first = bits_of(self.net) & self.mask();
        match self.net {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(first as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(first)),
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// An address as a number: IPv4 in the low 32 bits.
fn bits_of(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Is `ip` in one of the `trusted` ranges?
pub fn is_trusted(trusted: &[Cidr], ip: IpAddr) -> bool {
    trusted.iter().any(|range| range.contains(ip))
}

/// What a trusted hop says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims<'a> {
    /// The client: the right-most forwarded address that is not trusted (or the left-most
    /// one, if every one is), or the peer itself when it forwarded none.
    pub client: IpAddr,
    /// The scheme the hop reports: `Some(true)` for `https`, `Some(false)` for `http`,
    /// `None` when it says nothing (or something else).
    pub https: Option<bool>,
    /// The host the client asked for, as the hop reports it (`X-Forwarded-Host`, or the
    /// `host=` of `Forwarded`), when it is a plain host name.
    pub host: Option<&'a [u8]>,
}

/// What the forwarding fields of a request from `peer` say, if `peer` is trusted; `None`
/// otherwise (and with no `--trusted-proxy`, always `None`, after one comparison).
///
/// A hop speaks one dialect: with an `X-Forwarded-For`, the client comes from it, the
/// scheme from `X-Forwarded-Proto` and the host from `X-Forwarded-Host`; without one, all
/// three come from `Forwarded` (RFC 7239: `for=`, `proto=`, `host=`). So a client's forged
/// `Forwarded` never fills in what an `X-Forwarded-*` hop left out. Each time the
/// right-most value counts: it is the one the trusted hop wrote, whether it appends to a
/// list or replaces it.
pub fn believe<'a>(trusted: &[Cidr], peer: IpAddr, headers: &[Header<'a>]) -> Option<Claims<'a>> {
    if trusted.is_empty() || !is_trusted(trusted, peer) {
        return None;
    }
    let (client, https, host) = if has(headers, "x-forwarded-for") {
        let hops = elements(headers, "x-forwarded-for").map(node);
        (
            walk(trusted, peer, hops),
            last(headers, "x-forwarded-proto").and_then(scheme),
            last(headers, "x-forwarded-host"),
        )
    } else {
        let hops = elements(headers, "forwarded").map(|e| param(e, b"for").and_then(node));
        let nearest = last(headers, "forwarded");
        (
            walk(trusted, peer, hops),
            nearest.and_then(|e| param(e, b"proto")).and_then(scheme),
            nearest.and_then(|e| param(e, b"host")),
        )
    };
    Some(Claims {
        client,
        https,
        host: host.filter(|h| is_plain_host(h)),
    })
}

/// Walks the forwarded addresses from the right, through trusted ones: the first one not
/// trusted is the client. An element that is not an address (`unknown`, an obfuscated
/// name, garbage) stops the walk at the last trusted address: beyond it nobody vouches.
fn walk(trusted: &[Cidr], peer: IpAddr, hops: impl Iterator<Item = Option<IpAddr>>) -> IpAddr {
    let mut client = peer;
    for hop in hops {
        let Some(ip) = hop else { break };
        client = ip;
        if !is_trusted(trusted, ip) {
            break;
        }
    }
    client
}

fn has(headers: &[Header<'_>], name: &str) -> bool {
    headers.iter().any(|h| h.is(name))
}

/// The elements of every `name` field, right-most first (the last line's last element).
fn elements<'h, 'a>(
    headers: &'h [Header<'a>],
    name: &'h str,
) -> impl Iterator<Item = &'a [u8]> + 'h {
    headers
        .iter()
        .rev()
        .filter(move |h| h.is(name))
        .flat_map(|h| h.value.rsplit(|&b| b == b','))
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// The right-most element of the `name` fields.
fn last<'a>(headers: &[Header<'a>], name: &str) -> Option<&'a [u8]> {
    elements(headers, name).next()
}

/// An address as a forwarding field writes it: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:80`.
fn node(text: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(text).ok()?;
    if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(is_port);
        return port_ok.then(|| v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6))?;
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    let (v4, port) = text.split_once(':')?;
    is_port(port).then(|| v4.parse::<Ipv4Addr>().ok().map(IpAddr::V4))?
}

fn is_port(text: &str) -> bool {
    (1..=5).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

/// The value of parameter `name` in one `Forwarded` element (`for=x;proto=https`),
/// unquoted. A quoted value with a backslash escape is not taken (no hop writes one).
fn param<'a>(element: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    element.split(|&b| b == b';').find_map(|pair| {
        let pair = trim_ows(pair);
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (key, value) = (&pair[..eq], &pair[eq + 1..]);
        if !key.eq_ignore_ascii_case(name) {
            return None;
        }
        match value {
            [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => Some(inner),
            [b'"', ..] => None,
            _ => Some(value),
        }
    })
}

fn scheme(value: &[u8]) -> Option<bool> {
    if value.eq_ignore_ascii_case(b"https") {
        Some(true)
    } else if value.eq_ignore_ascii_case(b"http") {
        Some(false)
    } else {
        None
    }
}

/// A host (with a port) that is safe to write into `X-Forwarded-Host` and into a quoted
/// `host=`: letters, digits and `.-:[]_`, as a URI authority without user info has them.
fn is_plain_host(host: &[u8]) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| Cidr::parse(c).unwrap()).collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_match() {
        // (range, inside, outside)
        let table: &[(&str, &[&str], &[&str])] = &[
            (
                "10.0.0.0/8",
                &["10.0.0.0", "10.255.255.255", "::ffff:10.1.2.3"],
                &["11.0.0.0", "9.255.255.255", "::a00:1"],
            ),
            (
                "127.0.0.1",
                &["127.0.0.1", "::ffff:127.0.0.1"],
                &["127.0.0.2", "::1"],
            ),
            ("127.0.0.1/32", &["127.0.0.1"], &["127.0.0.2"]),
            (
                "192.168.1.128/25",
                &["192.168.1.128", "192.168.1.255"],
                &["192.168.1.127", "192.168.2.128"],
            ),
            (
                "0.0.0.0/0",
                &["1.2.3.4", "255.255.255.255"],
                &["::1", "2001:db8::1"],
            ),
            ("::1", &["::1"], &["::2", "127.0.0.1"]),
            (
                "fd00::/8",
                &["fd00::1", "fdff:ffff::"],
                &["fe00::", "fc00::1"],
            ),
            (
                "2001:db8::/32",
                &["2001:db8::", "2001:db8:ffff::1"],
                &["2001:db9::"],
            ),
            (
                "::/0",
                &["::", "2001:db8::1", "::fffe:0:1"],
                &["1.2.3.4", "::ffff:1.2.3.4"],
            ),
        ];
        for (range, inside, outside) in table {
            let c = Cidr::parse(range).unwrap();
            for a in *inside {
                assert!(c.contains(ip(a)), "{range} should hold {a}");
            }
            for a in *outside {
                assert!(!c.contains(ip(a)), "{range} should not hold {a}");
            }
        }
        assert_eq!(Cidr::parse("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(Cidr::parse("::1").unwrap().to_string(), "::1/128");
    }

    #[test]
    fn bad_ranges_say_why() {
        for (bad, why) in [
            ("", "not an IPv4"),
            ("10.0.0/8", "not an IPv4"),
            ("localhost", "not an IPv4"),
            ("10.0.0.0/33", "from 0 to 32"),
            ("::/129", "from 0 to 128"),
            ("10.0.0.0/", "from 0 to 32"),
            ("10.0.0.0/-1", "from 0 to 32"),
            ("10.0.0.0/08", "from 0 to 32"),
            ("10.0.0.0/8/8", "from 0 to 32"),
            ("10.0.0.1/8", "written 10.0.0.0/8"),
            ("fd00::1/8", "written fd00::/8"),
            ("1.2.3.4 ", "not an IPv4"),
        ] {
            let err = Cidr::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    /// The claims of a request with these fields from `peer`, trusting `trusted`.
    fn claims(
        trusted: &[&str],
        peer: &str,
        fields: &[(&str, &str)],
    ) -> Option<(String, Option<bool>, Option<String>)> {
        let headers: Vec<Header<'_>> = fields
            .iter()
            .map(|(n, v)| Header {
                name: n,
                value: v.as_bytes(),
            })
            .collect();
        believe(&cidrs(trusted), ip(peer), &headers).map(|c| {
            let host = c.host.map(|h| String::from_utf8(h.to_vec()).unwrap());
            (c.client.to_string(), c.https, host)
        })
    }

    fn client(trusted: &[&str], peer: &str, fields: &[(&str, &str)]) -> String {
        claims(trusted, peer, fields).map_or_else(|| "untrusted".into(), |c| c.0)
    }

    #[test]
    fn nothing_is_believed_from_an_untrusted_peer() {
        let xff = [
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-Proto", "https"),
        ];
        assert_eq!(claims(&[], "127.0.0.1", &xff), None);
        assert_eq!(claims(&["10.0.0.0/8"], "127.0.0.1", &xff), None);
        assert_eq!(claims(&["10.0.0.1"], "10.0.0.2", &xff), None);
    }

    #[test]
    fn chains_of_one_two_and_three_trusted_hops() {
        let t = &["10.0.0.0/8", "fd00::/8"];
        let xff = |v: &'static str| [("X-Forwarded-For", v)];
        // One hop: the terminator 10.0.0.1 says 1.2.3.4.
        assert_eq!(client(t, "10.0.0.1", &xff("1.2.3.4")), "1.2.3.4");
        // Two hops: the client's own claim (6.6.6.6) is left of the real client.
        assert_eq!(
            client(t, "10.0.0.1", &xff("6.6.6.6, 1.2.3.4, 10.0.0.2")),
            "1.2.3.4"
        );
        // Three hops, one of them IPv6, on separate lines.
        let lines = [
            ("X-Forwarded-For", "6.6.6.6, 1.2.3.4"),
            ("X-Forwarded-For", "10.9.9.9"),
            ("X-Forwarded-For", "[fd00::7]:4430"),
        ];
        assert_eq!(client(t, "10.0.0.1", &lines), "1.2.3.4");
        // An untrusted entry between trusted ones ends the walk there.
        assert_eq!(
            client(t, "10.0.0.1", &xff("1.2.3.4, 5.5.5.5, 10.0.0.2")),
            "5.5.5.5"
        );
        // Every entry trusted: the left-most one.
        assert_eq!(
            client(t, "10.0.0.1", &xff("10.0.0.3, 10.0.0.2")),
            "10.0.0.3"
        );
        // No entry: the peer itself.
        assert_eq!(client(t, "10.0.0.1", &[]), "10.0.0.1");
        assert_eq!(client(t, "10.0.0.1", &xff(" , ")), "10.0.0.1");
        // Garbage or `unknown` stops the walk at the last trusted address.
        assert_eq!(client(t, "10.0.0.1", &xff("1.2.3.4, nonsense")), "10.0.0.1");
        assert_eq!(
            client(t, "10.0.0.1", &xff("1.2.3.4, unknown, 10.0.0.2")),
            "10.0.0.2"
        );
        // Ports and brackets as some hops write them.
        assert_eq!(client(t, "10.0.0.1", &xff("1.2.3.4:5678")), "1.2.3.4");
        assert_eq!(client(t, "10.0.0.1", &xff("2001:db8::1")), "2001:db8::1");
        assert_eq!(client(t, "10.0.0.1", &xff("[2001:db8::1]")), "2001:db8::1");
        assert_eq!(client(t, "10.0.0.1", &xff("[2001:db8::1]:x")), "10.0.0.1");
        assert_eq!(client(t, "10.0.0.1", &xff("1.2.3.4:123456")), "10.0.0.1");
    }

    #[test]
    fn forwarded_is_read_when_there_is_no_x_forwarded_for() {
        let t = &["10.0.0.0/8"];
        let fwd = |v: &'static str| [("Forwarded", v)];
        assert_eq!(
            claims(
                t,
                "10.0.0.1",
                &fwd("for=6.6.6.6, for=1.2.3.4;proto=https;host=shop.example")
            ),
            Some(("1.2.3.4".into(), Some(true), Some("shop.example".into())))
        );
        assert_eq!(
            client(
                t,
                "10.0.0.1",
                &fwd("for=\"[2001:db8::1]:443\", for=10.0.0.2")
            ),
            "2001:db8::1"
        );
        assert_eq!(
            client(t, "10.0.0.1", &fwd("for=_hidden, for=10.0.0.2")),
            "10.0.0.2"
        );
        assert_eq!(client(t, "10.0.0.1", &fwd("proto=https")), "10.0.0.1");
        // X-Forwarded-For wins when both are sent.
        let both = [("Forwarded", "for=5.5.5.5"), ("X-Forwarded-For", "1.2.3.4")];
        assert_eq!(client(t, "10.0.0.1", &both), "1.2.3.4");
    }

    #[test]
    fn scheme_and_host_are_the_right_most_plain_values() {
        let t = &["127.0.0.1"];
        // With an X-Forwarded-For in front, unless the fields are Forwarded.
        let got = |fields: &[(&str, &str)]| {
            let mut with_xff = vec![("X-Forwarded-For", "1.2.3.4")];
            with_xff.extend_from_slice(fields);
            let forwarded = fields.iter().any(|(n, _)| *n == "Forwarded");
            let fields = if forwarded { fields } else { &with_xff[..] };
            claims(t, "127.0.0.1", fields).map(|c| (c.1, c.2))
        };
        assert_eq!(
            got(&[("X-Forwarded-Proto", "https")]),
            Some((Some(true), None))
        );
        assert_eq!(
            got(&[("X-Forwarded-Proto", "HTTPS")]),
            Some((Some(true), None))
        );
        assert_eq!(
            got(&[("X-Forwarded-Proto", "https, http")]),
            Some((Some(false), None))
        );
        assert_eq!(got(&[("X-Forwarded-Proto", "gopher")]), Some((None, None)));
        assert_eq!(got(&[]), Some((None, None)));
        assert_eq!(
            got(&[("X-Forwarded-Host", "evil\", a.example:8443")]),
            Some((None, Some("a.example:8443".into())))
        );
        assert_eq!(got(&[("X-Forwarded-Host", "a b")]), Some((None, None)));
        assert_eq!(got(&[("X-Forwarded-Host", "x\"y")]), Some((None, None)));
        assert_eq!(
            got(&[("Forwarded", "host=\"[::1]:8080\";proto=http")]),
            Some((Some(false), Some("[::1]:8080".into())))
        );
        assert_eq!(
            got(&[("Forwarded", "proto=\"ht\\tps\"")]),
            Some((None, None))
        );
        // An X-Forwarded-For hop speaks that dialect: a Forwarded beside it is the client's.
        let mixed = [
            ("X-Forwarded-For", "1.2.3.4"),
            ("Forwarded", "for=6.6.6.6;proto=https;host=evil.example"),
        ];
        assert_eq!(
            claims(t, "127.0.0.1", &mixed),
            Some(("1.2.3.4".into(), None, None))
        );
    }
}
