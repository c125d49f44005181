//! `--download` and `--upload`: one large body through the balancer and directly, timed.

use crate::hold::{memory, mib};
use crate::load::parse_head;
use crate::{Options, RESPONSE_TIMEOUT, STREAM_BUFFER, Url};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Moves `size` bytes through the balancer and directly (when known), one request each and
/// `--repeat` times in turn, and prints the bandwidths, each ratio, their median, and the
/// balancer's peak memory (when its pid is known; else this process's).
pub(crate) fn stream(
    what: &str,
    size: u64,
    balancer: &Url,
    direct: Option<&Url>,
    o: &Options,
) -> io::Result<bool> {
    let gib = size as f64 / (1u64 << 30) as f64;
    let whose = if o.pid.is_some() {
        "balancer"
    } else {
        "this process (balancer, backends and client)"
    };
    let mut ratios = Vec::new();
    for _ in 0..o.repeat {
        let through = transfer(what, size, balancer)?;
        let (rss, hwm) = memory(o.pid.unwrap_or(std::process::id())).unwrap_or_default();
        println!(
            "{what:8} {gib:.2} GiB through the balancer: {:.0} MiB/s  ({whose}: VmRSS {:.1} MiB, peak VmHWM {:.1} MiB)",
            mib(size) / through.as_secs_f64(),
            mib(rss),
            mib(hwm)
        );
        if let Some(direct) = direct {
            let straight = transfer(what, size, direct)?;
            println!(
                "{what:8} {gib:.2} GiB directly:             {:.0} MiB/s",
                mib(size) / straight.as_secs_f64()
            );
            let ratio = straight.as_secs_f64() / through.as_secs_f64();
            println!("ratio {what} balancer/direct: {ratio:.2}");
            ratios.push(ratio);
        }
    }
    if ratios.len() > 1 {
        ratios.sort_by(f64::total_cmp);
        let n = ratios.len();
        let median = if n % 2 == 1 {
            ratios[n / 2]
        } else {
            (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
        };
        println!(
            "median ratio {what} balancer/direct: {median:.2} (of {n}: {:.2} to {:.2})",
            ratios[0],
            ratios[n - 1]
        );
    }
    Ok(true)
}

/// One download (`GET /bytes/SIZE`) or upload (`POST /echo` with a `SIZE` body); returns
/// the time from the request's first byte to the response's last.
fn transfer(what: &str, size: u64, url: &Url) -> io::Result<Duration> {
    let mut stream = TcpStream::connect_timeout(&url.addr, RESPONSE_TIMEOUT)?;
    stream.set_read_timeout(Some(RESPONSE_TIMEOUT))?;
    stream.set_write_timeout(Some(RESPONSE_TIMEOUT))?;
    let started = Instant::now();
    let mut buf = vec![b'x'; STREAM_BUFFER];
    if what == "download" {
        let head = format!(
            "GET /bytes/{size} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            url.host
        );
        stream.write_all(head.as_bytes())?;
    } else {
        let head = format!(
            "POST /echo HTTP/1.1\r\nHost: {}\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n",
            url.host
        );
        stream.write_all(head.as_bytes())?;
        let mut left = size;
        while left > 0 {
            let take = left.min(buf.len() as u64) as usize;
            stream.write_all(&buf[..take])?;
            left -= take as u64;
        }
    }
    // Read to the end (the response says `Connection: close`), checking the length.
    let mut got = 0u64;
    let mut head: Option<(u16, usize)> = None;
    let mut pending = Vec::new();
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        match head {
            Some(_) => got += n as u64,
            None => {
                pending.extend_from_slice(&buf[..n]);
                if let Some((status, length, _, len)) = parse_head(&pending)? {
                    head = Some((status, length));
                    got += (pending.len() - len) as u64;
                }
            }
        }
    }
    let elapsed = started.elapsed();
    match head {
        Some((200, length)) if got == length as u64 => Ok(elapsed),
        Some((status, length)) => Err(io::Error::other(format!(
            "{what} via {}: status {status}, {got} of {length} body bytes",
            url.host
        ))),
        None => Err(io::Error::other(format!(
            "{what} via {}: no response",
            url.host
        ))),
    }
}
