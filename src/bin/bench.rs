//! `bench`: the balancer's own benchmark, standard library only.
//!
//! The chapter's balancer answers about twenty requests a second; this one is meant to stand
//! next to nginx. To make that claim checkable without installing anything, `bench` starts two
//! demo backends and a balancer in this process (on `127.0.0.1:0`, quiet, no admin listener),
//! drives the balancer with a closed-loop keep-alive load, then drives one demo backend
//! directly with the same load, and prints both and their ratio: the cost of the balancer.
//!
//! ```text
//! cargo run --release --bin bench -- --connections 64 --seconds 5
//! cargo run --release --bin bench -- --target http://127.0.0.1:9000/ --connections 256
//! cargo run --release --bin bench -- --hold 10000 --target http://127.0.0.1:9000/ --pid PID
//! cargo run --release --bin bench -- --download 1g --upload 1g --repeat 9
//! ```
//!
//! "Closed loop": each of `--connections` threads owns one connection and sends its next
//! request only when the previous response has been read, so req/s is what the server
//! sustains at that concurrency, and latency is measured from the request's first byte
//! written to its response's last byte read. Responses are framed by `Content-Length` (the
//! demo backends and most servers send it for small pages); a response that is not `2xx`, a
//! broken connection or a timeout counts as an error.

use load_balancer::config::{BackendSpec, Config, parse_duration, parse_size};
use load_balancer::demo::DemoBackend;
use load_balancer::server::Balancer;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

/// Connections of the load, unless `--connections` says otherwise (wrk's example uses 400;
/// 64 is where this 2-core machine kind is saturated).
const DEFAULT_CONNECTIONS: usize = 64;
/// How long each load runs, unless `--seconds` says otherwise.
const DEFAULT_SECONDS: Duration = Duration::from_secs(5);
/// How long a client waits for any one response before counting an error (wrk's `--timeout`
/// default is 2 s).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response head the client accepts.
const MAX_HEAD: usize = 64 * 1024;
/// Buffer for streaming bodies in `--download` and `--upload`.
const STREAM_BUFFER: usize = 256 * 1024;

const USAGE: &str = "\
usage: bench [--connections N] [--seconds S] [--close] [--path PATH] [--target URL]
       bench --hold N --target URL [--pid PID]
       bench [--download SIZE] [--upload SIZE] [--repeat N] [--target URL --direct URL] [--pid PID]

Without --target: starts two demo backends and a balancer in this process, drives the
balancer, then one demo backend directly with the same load, and prints the ratio.

  --connections N  concurrent keep-alive connections, one thread each (default 64)
  --seconds S      length of each load: 5, 500ms, 1m (default 5)
  --close          send `Connection: close`: a new connection for every request
  --path PATH      request target (default /)
  --target URL     drive this running balancer instead (http://HOST:PORT[/PATH])
  --direct URL     with --target: the backend to compare against
  --hold N         open N connections, one request on each, keep them open, then check
                   that a new request is served; with --pid, print that process's memory
  --download SIZE  fetch /bytes/SIZE through the balancer and directly (512m, 1g)
  --upload SIZE    POST SIZE bytes to /echo through the balancer and directly
  --repeat N       with --download/--upload: N transfers each way, through and direct in
                   turn, then the median ratio when there is a direct one to compare (one
                   transfer of 1 GiB lasts under a second, so one ratio is mostly the
                   scheduler's luck; default 1)
  --pid PID        the balancer's process, for its memory (VmRSS, VmHWM from /proc)
";

/// What the command line asks for.
#[derive(Debug)]
struct Options {
    connections: usize,
    seconds: Duration,
    close: bool,
    path: Option<String>,
    target: Option<Url>,
    direct: Option<Url>,
    hold: Option<usize>,
    download: Option<u64>,
    repeat: usize,
    upload: Option<u64>,
    pid: Option<u32>,
}

/// `http://HOST:PORT/PATH`, resolved.
#[derive(Debug, Clone)]
struct Url {
    addr: SocketAddr,
    host: String,
    path: String,
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("bench: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut o = Options {
        connections: DEFAULT_CONNECTIONS,
        seconds: DEFAULT_SECONDS,
        close: false,
        path: None,
        target: None,
        direct: None,
        hold: None,
        download: None,
        repeat: 1,
        upload: None,
        pid: None,
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        // `--flag value` and `--flag=value` both work.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let count = |v: String| {
            v.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{flag}: {v:?} is not a positive whole number"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--connections" | "-c" => o.connections = count(value()?)?,
            "--seconds" | "-d" => o.seconds = parse_duration(&value()?)?,
            "--close" => o.close = true,
            "--path" => o.path = Some(value()?),
            "--target" => o.target = Some(Url::parse(&value()?)?),
            "--direct" => o.direct = Some(Url::parse(&value()?)?),
            "--hold" => o.hold = Some(count(value()?)?),
            "--download" => o.download = Some(parse_size(&value()?)?),
            "--upload" => o.upload = Some(parse_size(&value()?)?),
            "--repeat" => o.repeat = count(value()?)?,
            "--pid" => {
                let v = value()?;
                o.pid = Some(
                    v.parse()
                        .map_err(|_| format!("--pid: {v:?} is not a pid"))?,
                );
            }
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    check_together(&o)?;
    Ok(Some(o))
}

/// Flags that only make sense with another one.
fn check_together(o: &Options) -> Result<(), String> {
    if o.repeat > 1 && o.download.is_none() && o.upload.is_none() {
        return Err("--repeat needs --download or --upload".into());
    }
    if o.hold.is_some() && o.target.is_none() {
        return Err("--hold needs --target (run the balancer as its own process, so that its memory is its own)".into());
    }
    Ok(())
}

impl Url {
    fn parse(text: &str) -> Result<Url, String> {
        let rest = text
            .strip_prefix("http://")
            .ok_or_else(|| format!("{text:?}: only http:// URLs"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = host
            .to_socket_addrs()
            .map_err(|e| format!("{text:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("{text:?}: no address"))?;
        Ok(Url {
            addr,
            host: host.to_string(),
            path: path.to_string(),
        })
    }

    fn from_addr(addr: SocketAddr, path: &str) -> Url {
        Url {
            addr,
            host: addr.to_string(),
            path: path.to_string(),
        }
    }

    fn with_path(&self, path: &str) -> Url {
        Url {
            path: path.to_string(),
            ..self.clone()
        }
    }
}

/// Runs what the options ask for; `Ok(false)` when a check failed (errors in the load, a
/// held connection lost, a request not served).
fn run(o: &Options) -> io::Result<bool> {
    // In-process setup unless a target is given: two demo backends and a balancer over them.
    let mut _keep = None;
    let (balancer, direct) = match &o.target {
        Some(target) => (target.clone(), o.direct.clone()),
        None => {
            let localhost = SocketAddr::from(([127, 0, 0, 1], 0));
            let red = DemoBackend::start(0, localhost)?;
            let blue = DemoBackend::start(1, localhost)?;
            let config = Config {
                listen: localhost,
                admin: None,
                quiet: true,
                backends: vec![spec(&red), spec(&blue)],
                ..Config::default()
            };
            let lb = Balancer::start(config)?;
            let urls = (
                Url::from_addr(lb.addr(), "/"),
                Some(Url::from_addr(red.addr(), "/")),
            );
            _keep = Some((lb, red, blue));
            urls
        }
    };
    if let Some(n) = o.hold {
        return hold(&balancer, n, o.pid);
    }
    if o.download.is_some() || o.upload.is_some() {
        let mut ok = true;
        if let Some(size) = o.download {
            ok &= stream("download", size, &balancer, direct.as_ref(), o)?;
        }
        if let Some(size) = o.upload {
            ok &= stream("upload", size, &balancer, direct.as_ref(), o)?;
        }
        return Ok(ok);
    }
    let path = o.path.as_deref();
    let through = load(&with_path(&balancer, path), o);
    print_result("balancer", &balancer, o, &through);
    let mut ok = through.errors == 0;
    if let Some(direct) = direct {
        let straight = load(&with_path(&direct, path), o);
        print_result("direct", &direct, o, &straight);
        println!(
            "ratio balancer/direct: {:.2}",
            through.rate() / straight.rate().max(f64::MIN_POSITIVE)
        );
        ok &= straight.errors == 0;
    }
    Ok(ok)
}

fn spec(demo: &DemoBackend) -> BackendSpec {
    BackendSpec::parse(&demo.url()).expect("a demo URL parses")
}

fn with_path(url: &Url, path: Option<&str>) -> Url {
    path.map_or_else(|| url.clone(), |p| url.with_path(p))
}

// ---------------------------------------------------------------------------------------
// The closed-loop load

/// What one load run measured.
struct Run {
    elapsed: Duration,
    /// Latency of every completed request, sorted.
    latencies: Vec<Duration>,
    errors: u64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency below which `q` (0 to 1) of the requests completed.
    fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[i]
    }
}

fn print_result(name: &str, url: &Url, o: &Options, run: &Run) {
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
fn load(url: &Url, o: &Options) -> Run {
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
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes in `buf` that are read and not yet used.
    len: usize,
}

impl Client {
    fn connect(addr: SocketAddr) -> io::Result<Client> {
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
    fn exchange(&mut self, request: &[u8]) -> io::Result<bool> {
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
fn parse_head(data: &[u8]) -> io::Result<Option<(u16, usize, bool, usize)>> {
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

// ---------------------------------------------------------------------------------------
// Idle connections and memory

/// Opens `n` connections, sends one request on each and reads its response, keeps them all
/// open, then checks that a new connection is still served and that the held ones are still
/// open; prints the balancer's memory when its `pid` is known.
fn hold(url: &Url, n: usize, pid: Option<u32>) -> io::Result<bool> {
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
fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

// ---------------------------------------------------------------------------------------
// Streaming

/// Moves `size` bytes through the balancer and directly (when known), one request each and
/// `--repeat` times in turn, and prints the bandwidths, each ratio, their median, and the
/// balancer's peak memory (when its pid is known; else this process's).
fn stream(
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
