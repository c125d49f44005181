//! The closed-loop load: `--connections` threads, each with one keep-alive connection (or a
//! new one per request with `--close`), a request, its whole response, again until the time
//! is up; and the small response-head parser the other parts share.

use crate::{MAX_HEAD, Options, RESPONSE_TIMEOUT, Url};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// What one load run measured.
pub(crate) struct Run {
    pub(crate) elapsed: Duration,
    /// Latency of every completed request, sorted.
    pub(crate) latencies: Vec<Duration>,
    pub(crate) errors: u64,
}

impl Run {
    pub(crate) fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency below which `q` (0 to 1) of the requests completed.
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[i]
    }
}

pub(crate) fn print_result(name: &str, url: &Url, o: &Options, run: &Run) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:8} http://{}{}  {} connections{}, {:.1}s: {:.0} req/s  p50 {:.3}ms  p99 {:.3}ms  max {:.3}ms  errors {}",
        url.host,
        url.path,
        o.connections,
        if o.close { " (close)" } else { "" },
        run.elapsed.as_secs_f64(),
        run.rate(),
        ms(run.quantile(0.50)),
        ms(run.quantile(0.99)),
        ms(run.latencies.last().copied().unwrap_or_default()),
        run.errors
    );
}

/// Drives `url` with `o.connections` threads for `o.seconds`.
pub(crate) fn load(url: &Url, o: &Options) -> Run {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: bench\r\n{}\r\n",
        url.path,
        url.host,
        if o.close { "Connection: close\r\n" } else { "" }
    );
    let started = Instant::now();
    let deadline = started + o.seconds;
    let workers: Vec<_> = (0..o.connections)
        .map(|_| {
            let (addr, request, close) = (url.addr, request.clone(), o.close);
            thread::Builder::new()
                .name("bench-client".into())
                .stack_size(256 * 1024)
                .spawn(move || client_loop(addr, request.as_bytes(), close, deadline))
        })
        .collect();
    let mut run = Run {
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        errors: 0,
    };
    for worker in workers {
        match worker.map(|w| w.join()) {
            Ok(Ok((latencies, errors))) => {
                run.latencies.extend(latencies);
                run.errors += errors;
            }
            _ => run.errors += 1,
        }
    }
    run.elapsed = started.elapsed();
    run.latencies.sort_unstable();
    run
}

/// One client: one connection (a new one after `close`, an error, or the server closing),
/// a request, its response, again until `deadline`.
fn client_loop(
    addr: SocketAddr,
    request: &[u8],
    close: bool,
    deadline: Instant,
) -> (Vec<Duration>, u64) {
    let mut latencies = Vec::with_capacity(4096);
    let mut errors = 0;
    let mut conn: Option<Client> = None;
    while Instant::now() < deadline {
        let started = Instant::now();
        let result = match conn.as_mut() {
            Some(c) => c.exchange(request),
            None => Client::connect(addr).and_then(|c| conn.insert(c).exchange(request)),
        };
        match result {
            Ok(keep) => {
                latencies.push(started.elapsed());
                if close || !keep {
                    conn = None;
                }
            }
            Err(_) => {
                errors += 1;
                conn = None;
            }
        }
    }
    (latencies, errors)
}

/// A client connection with its read buffer.
pub(crate) struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes in `buf` that are read and not yet used.
    len: usize,
}

impl Client {
    pub(crate) fn connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, RESPONSE_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(RESPONSE_TIMEOUT))?;
        stream.set_write_timeout(Some(RESPONSE_TIMEOUT))?;
        Ok(Client {
            stream,
            buf: vec![0; 16 * 1024],
            len: 0,
        })
    }

    /// Sends `request` and reads the whole response; returns whether the server keeps the
    /// connection open. A status other than `2xx` is an error.
    pub(crate) fn exchange(&mut self, request: &[u8]) -> io::Result<bool> {
        self.stream.write_all(request)?;
        let (status, body, keep, head_len) = loop {
            if let Some(head) = parse_head(&self.buf[..self.len])? {
                break head;
            }
            self.read_more()?;
        };
        // Skip the body: what is buffered, then the rest from the socket.
        let mut left = body;
        let buffered = (self.len - head_len).min(left);
        left -= buffered;
        self.buf.copy_within(head_len + buffered..self.len, 0);
        self.len -= head_len + buffered;
        while left > 0 {
            let n = self.read_more()?.min(left);
            self.buf.copy_within(n..self.len, 0);
            self.len -= n;
            left -= n;
        }
        if !(200..300).contains(&status) {
            return Err(io::Error::other(format!("status {status}")));
        }
        Ok(keep)
    }

    fn read_more(&mut self) -> io::Result<usize> {
        if self.len == self.buf.len() {
            if self.buf.len() >= MAX_HEAD {
                return Err(io::Error::other("response head too large"));
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        match self.stream.read(&mut self.buf[self.len..])? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                self.len += n;
                Ok(n)
            }
        }
    }
}

/// Parses a response head if `data` holds a whole one: (status, body length, keep-alive,
/// head length). Only what the load needs: the status, `Content-Length`, `Connection: close`.
pub(crate) fn parse_head(data: &[u8]) -> io::Result<Option<(u16, usize, bool, usize)>> {
    let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&data[..end]).map_err(io::Error::other)?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("bad status line"))?;
    let (mut length, mut keep) = (None, true);
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            keep = false;
        }
    }
    let length = length.ok_or_else(|| io::Error::other("no Content-Length"))?;
    Ok(Some((status, length, keep, end + 4)))
}
