//! A std-only fuzz test of the request path: thousands of seeded mutations of valid
//! requests (byte flips, inserted CR/LF/NUL/space/colon, duplicated lines, truncations,
//! Content-Length and Transfer-Encoding games) go through the balancer to a backend that
//! records every request head it receives.
//!
//! What must hold for every one of them:
//! - no hang: every exchange ends (answer and close) within a deadline;
//! - every answer is a sequence of well-formed HTTP/1.1 responses, then a close;
//! - no smuggling: every head the backend receives was written by the balancer (it carries
//!   the balancer's `Via` and `X-Forwarded-For`); bytes a client hid in a body never reach
//!   the backend as a request of their own, and the backend never counts more requests than
//!   the balancer sent;
//! - no panic anywhere, and the balancer still answers a control request at the end.
//!
//! The same runs again with `--proxy-protocol` and a PROXY header (v1 or v2, now and then
//! mutated too) in front of every request: the header's bytes must never leak into a
//! request, and a broken header must close the connection without forwarding anything.
//!
//! The generator is a splitmix64 PRNG with a fixed seed, so a failure names the iteration and
//! reproduces: set `FUZZ_SEED` to try others, `FUZZ_ITERATIONS` for a longer run.

use crate::support::fuzz::{self, Rng};
use crate::support::*;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// Default number of mutated exchanges (spread over [`WORKERS`] client threads).
const ITERATIONS: usize = 5000;
/// Client threads sending at once.
const WORKERS: usize = 4;
/// Longest an exchange may take before it counts as a hang.
const DEADLINE: Duration = Duration::from_secs(10);
/// The request a client hides inside a body.
const SMUGGLED: &str = "GET /SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n";

/// Valid requests, most of them hiding [`SMUGGLED`] in their body.
fn seeds() -> Vec<Vec<u8>> {
    let s = SMUGGLED;
    let n = s.len();
    [
        "GET /plain HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n".to_string(),
        format!("POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n{s}"),
        format!("POST /te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{n:x}\r\n{s}\r\n0\r\n\r\n"),
        format!("POST /ext HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4;a=b\r\nGET \r\n{:x}\r\n{}\r\n0\r\nX-T: 1\r\n\r\n", n - 4, &s[4..]),
        format!("GET /getbody HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n{s}"),
        format!("GET /first HTTP/1.1\r\nHost: x\r\n\r\nPOST /second HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n{s}GET /third HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!("POST /old HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: {n}\r\n\r\n{s}"),
        format!("POST /expect HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {n}\r\n\r\n{s}"),
        // Classic desync shapes (refused as they are; mutations make them subtle).
        format!("POST /clte HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{s}"),
        format!("POST /tecl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n{:x}\r\n{s}\r\n0\r\n\r\n", n),
        format!("POST /tete HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n{n:x}\r\n{s}\r\n0\r\n\r\n"),
        format!("POST /clcl HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\nContent-Length: 0\r\n\r\n{s}"),
        "POST /zero HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_string(),
        "GET http://elsewhere.example/abs HTTP/1.1\r\nHost: x\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\n".to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

/// Bytes that matter to an HTTP/1.1 parser.
const INTERESTING: &[u8] = b"\r\n\0 :\t,;0159afxX-";

/// Whole lines a mutation may insert.
const LINES: &[&str] = &[
    "Transfer-Encoding: chunked\r\n",
    "Transfer-Encoding: identity\r\n",
    "Transfer-Encoding: gzip, chunked\r\n",
    "Content-Length: 0\r\n",
    "Content-Length: 10\r\n",
    "Content-Length: 36\r\n",
    "Content-Length: 18446744073709551616\r\n",
    "Connection: close\r\n",
    "Connection: keep-alive\r\n",
    "Expect: 100-continue\r\n",
    "Host: y\r\n",
    " folded\r\n",
    "\r\n",
];

/// Applies one to three random mutations to `base`.
fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut m = base.to_vec();
    for _ in 0..1 + rng.below(3) {
        if m.is_empty() {
            break;
        }
        let at = rng.below(m.len());
        match rng.below(9) {
            0 => m[at] = *rng.pick(INTERESTING),
            1 => m[at] = rng.next() as u8,
            2 => m.insert(at, *rng.pick(INTERESTING)),
            3 => {
                m.remove(at);
            }
            4 => m.truncate(at),
            5 => {
                // Duplicate the line that holds `at`.
                let start = m[..at]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1);
                let end = m[at..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(m.len(), |p| at + p + 1);
                let line = m[start..end].to_vec();
                m.splice(end..end, line);
            }
            6 => {
                // Insert a whole line at a line start.
                let start = m[..at]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1);
                let line = rng.pick(LINES).as_bytes().to_vec();
                m.splice(start..start, line);
            }
            7 => {
                // Replace a run of digits (a length, a chunk size) with another number.
                if let Some(d) = (at..m.len()).chain(0..at).find(|&i| m[i].is_ascii_digit()) {
                    let end = (d..m.len())
                        .find(|&i| !m[i].is_ascii_hexdigit())
                        .unwrap_or(m.len());
                    let number = match rng.below(4) {
                        0 => rng.below(4).to_string(),
                        1 => rng.below(100).to_string(),
                        2 => format!("{:x}", rng.below(100)),
                        _ => rng.next().to_string(),
                    };
                    m.splice(d..end, number.into_bytes());
                }
            }
            _ => m[at] = m[at].to_ascii_uppercase() ^ (u8::from(m[at].is_ascii_alphabetic()) << 5),
        }
    }
    m
}

/// Checks that `answer` is zero or more complete HTTP/1.1 responses, nothing else; returns
/// their status codes.
fn check_responses(answer: &[u8]) -> Result<Vec<u16>, String> {
    let mut rest = answer;
    let mut statuses = Vec::new();
    while !rest.is_empty() {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("a response head without its end")?;
        let head = std::str::from_utf8(&rest[..end]).map_err(|_| "a head that is not text")?;
        rest = &rest[end + 4..];
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .filter(|s| (100..600).contains(s))
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut length = None;
        let mut chunked = false;
        for line in lines {
            let (name, value) = line
                .split_once(": ")
                .ok_or_else(|| format!("bad field line {line:?}"))?;
            if name.is_empty() || name.contains([' ', '\t']) || value.contains(['\r', '\n', '\0']) {
                return Err(format!("bad field line {line:?}"));
            }
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().map_err(|_| "bad Content-Length")?);
            }
            if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value == "chunked";
                if !chunked || length.is_some() {
                    return Err(format!("bad framing in {head:?}"));
                }
            }
        }
        statuses.push(status);
        if (100..200).contains(&status) || status == 204 || status == 304 {
            continue;
        }
        if chunked {
            return Err("a chunked answer (the backend here always sends a length)".into());
        }
        let length = length.ok_or_else(|| format!("no length in {head:?}"))?;
        if rest.len() < length {
            return Err(format!("a body cut short in {head:?}"));
        }
        rest = &rest[length..];
    }
    Ok(statuses)
}

/// One exchange: send `request`, usually half-close (the client has said everything), and
/// read until the balancer closes. `Err` on a hang.
fn exchange_once(addr: SocketAddr, request: &[u8], half_close: bool) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    // The balancer may answer and close before reading everything: a failed write is fine.
    let _ = s.write_all(request);
    if half_close {
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut answer = Vec::new();
    try_read_until_closed(&mut s, &mut answer)?;
    Ok(answer)
}

/// Is this head one the balancer wrote? Only the balancer adds its `Via` entry and the
/// client's address to `X-Forwarded-For` (127.0.0.1, or the address a PROXY header gave);
/// the fuzzed clients never send either field.
fn written_by_balancer(head: &str, proxied: bool) -> bool {
    let via = fields(head, "via");
    let xff = fields(head, "x-forwarded-for");
    let client_ok = match &xff[..] {
        [one] if proxied => one.parse::<std::net::IpAddr>().is_ok(),
        [one] => one == "127.0.0.1",
        _ => false,
    };
    head.ends_with("\r\n\r\n")
        && via.len() == 1
        && via[0].starts_with("1.1 load-balancer-")
        && client_ok
        && !head[..head.len() - 2].contains("\r\n\r\n")
}

/// A PROXY header for a fuzzed request: v1 or v2 (IPv4, IPv6, with TLVs, `LOCAL`), now and
/// then mutated like the requests.
fn proxy_header(rng: &mut Rng) -> Vec<u8> {
    let v2 = |command: u8, family: u8, body: &[u8]| {
        let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        out.extend_from_slice(&[0x20 | command, family]);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    };
    let ipv4 = [
        203,
        0,
        113,
        rng.below(256) as u8,
        127,
        0,
        0,
        1,
        0x9c,
        0x40,
        0x01,
        0xbb,
    ];
    let mut ipv6 = [0u8; 36];
    ipv6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    ipv6[15] = rng.below(256) as u8;
    ipv6[31] = 1;
    let ssl = [0x20, 0x00, 0x05, 0x01, 0, 0, 0, 0];
    let header = match rng.below(6) {
        0 => format!(
            "PROXY TCP4 203.0.113.{} 127.0.0.1 40000 80\r\n",
            rng.below(256)
        )
        .into_bytes(),
        1 => b"PROXY TCP6 2001:db8::7 ::1 40000 80\r\n".to_vec(),
        2 => v2(1, 0x11, &ipv4),
        3 => v2(1, 0x11, &[&ipv4[..], &ssl].concat()),
        4 => v2(1, 0x21, &ipv6),
        _ => v2(0, 0x00, &[]),
    };
    if rng.one_in(8) {
        mutate(rng, &header)
    } else {
        header
    }
}

#[test]
fn seeded_mutations_never_panic_hang_or_smuggle() {
    fuzz_requests(false, ITERATIONS);
}

#[test]
fn seeded_mutations_behind_a_proxy_header() {
    fuzz_requests(true, ITERATIONS / 2);
}

/// Sends seeded mutations of the seed requests through a balancer (`proxied`: with
/// `--proxy-protocol`, a PROXY header in front of each) and checks what the module's doc
/// says must hold.
fn fuzz_requests(proxied: bool, default_iterations: usize) {
    let panics_before = fuzz::balancer_panics();
    let seed = fuzz::seed(0x5EED_CAFE);
    let iterations = fuzz::iterations(default_iterations);
    eprintln!(
        "fuzz (requests, proxied: {proxied}): seed {seed:#x} (replay: FUZZ_SEED={seed:#x}), \
         {iterations} iterations"
    );

    // Every head the backend receives is kept; each request gets a short `200`.
    let backend = Recorder::start(|_, _| Reply::ok("ok"));
    let mut c = config(&[backend.url()]);
    // Short timeouts: a truncated request ends in a few hundred milliseconds.
    c.header_timeout = Duration::from_millis(300);
    c.client_timeout = Duration::from_millis(300);
    c.idle_timeout = Duration::from_millis(300);
    c.backend_timeout = Duration::from_secs(2);
    c.max_body = Some(1 << 20);
    // Failures (there are some: cut bodies) must not take the only backend out of rotation.
    c.max_fails = u32::MAX;
    c.proxy_protocol = proxied;
    let lb = start(c);
    let front = move |rng: &mut Rng, request: &[u8]| -> Vec<u8> {
        if proxied {
            [proxy_header(rng), request.to_vec()].concat()
        } else {
            request.to_vec()
        }
    };
    let addr = lb.addr();

    // The seeds as they are: none of the hidden requests may reach the backend.
    let mut rng = Rng(seed);
    for (i, request) in seeds().iter().enumerate() {
        let answer = exchange_once(addr, &front(&mut rng, request), true).unwrap();
        check_responses(&answer)
            .unwrap_or_else(|e| panic!("seed {i}: {e}: {:?}", String::from_utf8_lossy(&answer)));
    }
    let heads = backend.heads();
    assert!(
        !heads.iter().any(|h| h.contains("/SMUGGLED")),
        "a request hidden in a body reached the backend: {heads:?}"
    );
    assert!(heads.len() >= 8, "the valid seeds were served: {heads:?}");

    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            thread::spawn(move || {
                let seeds = seeds();
                let mut rng = Rng(seed ^ (w as u64).wrapping_mul(0x1234_5678_9ABC_DEF1));
                let mut statuses = Vec::new();
                for i in 0..iterations / WORKERS {
                    let base = rng.pick(&seeds).clone();
                    let mutated = mutate(&mut rng, &base);
                    let request = front(&mut rng, &mutated);
                    // Mostly half-closed; now and then the client just stops and waits,
                    // so the header and idle timeouts end the exchange.
                    let half_close = rng.below(40) != 0;
                    let context = || {
                        format!(
                            "worker {w}, iteration {i}, seed {seed:#x}: {:?}",
                            String::from_utf8_lossy(&request)
                        )
                    };
                    let answer = exchange_once(addr, &request, half_close)
                        .unwrap_or_else(|e| panic!("hang: {e}\n{}", context()));
                    statuses.extend(check_responses(&answer).unwrap_or_else(|e| {
                        panic!(
                            "malformed answer: {e}: {:?}\n{}",
                            String::from_utf8_lossy(&answer),
                            context()
                        )
                    }));
                }
                statuses
            })
        })
        .collect();
    let statuses: Vec<u16> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let took = started.elapsed();
    let mut by_status = std::collections::BTreeMap::new();
    for s in &statuses {
        *by_status.entry(*s).or_insert(0usize) += 1;
    }
    eprintln!(
        "fuzz: {iterations} mutated exchanges in {took:?}; responses by status: {by_status:?}"
    );
    // The mutations must exercise both sides: requests that pass and requests refused.
    let passed = statuses.iter().filter(|&&s| s == 200).count();
    let refused = statuses
        .iter()
        .filter(|&&s| (400..500).contains(&s))
        .count();
    assert!(
        passed > iterations / 10 && refused > iterations / 10,
        "a lopsided corpus: {by_status:?}"
    );

    // No smuggling: every head at the backend came from the balancer, and no more of them
    // than the balancer sent.
    let heads = backend.heads();
    for head in &heads {
        assert!(
            written_by_balancer(head, proxied),
            "a head the balancer did not write: {head:?}"
        );
    }
    let sent = attempts_total(&lb);
    assert!(
        heads.len() as u64 <= sent,
        "the backend parsed {} requests out of {sent} sent",
        heads.len()
    );
    // Still answering, nothing left hanging, no panic anywhere.
    let (status, body) = if proxied {
        let control = b"PROXY TCP4 203.0.113.1 127.0.0.1 1 80\r\n\
                        GET /control HTTP/1.1\r\nHost: x\r\n\r\n";
        let answer = String::from_utf8(exchange_once(addr, control, true).unwrap()).unwrap();
        (status_of(&answer), split_answer(&answer).1.to_string())
    } else {
        get(&format!("http://{addr}/control"))
    };
    assert_eq!((status, body.as_str()), (200, "ok"));
    wait_idle(&lb);
    assert_eq!(
        fuzz::balancer_panics(),
        panics_before,
        "a thread of the balancer panicked"
    );
}
