//! `--hold`: many idle connections at once, and the balancer's memory while it holds them.

use crate::Url;
use crate::load::Client;
use std::io;
use std::time::Instant;

/// Opens `n` connections, sends one request on each and reads its response, keeps them all
/// open, then checks that a new connection is still served and that the held ones are still
/// open; prints the balancer's memory when its `pid` is known.
pub(crate) fn hold(url: &Url, n: usize, pid: Option<u32>) -> io::Result<bool> {
    let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", url.path, url.host);
    let before = pid.and_then(memory);
    let started = Instant::now();
    let mut held = Vec::with_capacity(n);
    let mut failed = 0;
    for i in 0..n {
        match Client::connect(url.addr).and_then(|mut c| c.exchange(request.as_bytes()).map(|_| c))
        {
            Ok(c) => held.push(c),
            Err(e) => {
                failed += 1;
                if failed == 1 {
                    eprintln!("bench: connection {i} failed: {e}");
                }
            }
        }
    }
    println!(
        "hold: {} of {n} connections open after one request each ({:.1}s)",
        held.len(),
        started.elapsed().as_secs_f64()
    );
    if let (Some(pid), Some((rss, _))) = (pid, pid.and_then(memory)) {
        let base = before.map_or(0, |(r, _)| r);
        println!(
            "hold: balancer pid {pid}: VmRSS {:.1} MiB ({:.1} KiB per held connection over the {:.1} MiB before)",
            mib(rss),
            (rss.saturating_sub(base)) as f64 / 1024.0 / held.len().max(1) as f64,
            mib(base)
        );
    }
    let fresh = Client::connect(url.addr).and_then(|mut c| c.exchange(request.as_bytes()));
    println!(
        "hold: a new request while they are held: {}",
        match &fresh {
            Ok(_) => "served".to_string(),
            Err(e) => format!("FAILED ({e})"),
        }
    );
    // Every held connection still works: a second request on each.
    let mut lost = 0;
    for c in &mut held {
        if c.exchange(request.as_bytes()).is_err() {
            lost += 1;
        }
    }
    println!(
        "hold: second request on the held connections: {} ok, {lost} failed",
        held.len() - lost
    );
    Ok(failed == 0 && fresh.is_ok() && lost == 0)
}

/// (VmRSS, VmHWM) of a process in bytes, from `/proc/PID/status`.
pub(crate) fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
