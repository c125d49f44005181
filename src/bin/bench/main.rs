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
//! cargo run --release --bin bench -- --peers
//! ```
//!
//! "Closed loop": each of `--connections` threads owns one connection and sends its next
//! request only when the previous response has been read, so req/s is what the server
//! sustains at that concurrency, and latency is measured from the request's first byte
//! written to its response's last byte read. Responses are framed by `Content-Length` (the
//! demo backends and most servers send it for small pages); a response that is not `2xx`, a
//! broken connection or a timeout counts as an error.
//!
//! With `--peers`, the same load drives this balancer, nginx and HAProxy in turn over the same
//! two backends, and `bench` prints each one's req/s, latency and CPU time per request, then
//! the ratios (see [`peers`](mod@peers)).
//!
//! One file per job, in the order `run` reaches them: [`load`](mod@load) (the closed-loop load
//! and the response-head parser), [`peers`](mod@peers) (beside nginx and HAProxy), [`hold`]
//! (idle connections and memory), [`transfer`] (large bodies).

mod hold;
mod load;
mod peers;
mod transfer;

use load::{load, print_result};
use load_balancer::config::{BackendSpec, Config, parse_duration, parse_size};
use load_balancer::demo::DemoBackend;
use load_balancer::server::Balancer;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

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
       bench --peers [--connections N] [--seconds S] [--close] [--path PATH]
       bench [--download SIZE] [--upload SIZE] [--repeat N] [--target URL --direct URL] [--pid PID]

Without --target: starts two demo backends and a balancer in this process, drives the
balancer, then one demo backend directly with the same load, and prints the ratio.
With --peers: the same load drives this balancer, nginx and HAProxy (those found in PATH)
in turn over two demo backends, and prints req/s, latency, CPU time per request, ratios.

  --connections N  concurrent keep-alive connections, one thread each (default 64)
  --seconds S      length of each load: 5, 500ms, 1m (default 5)
  --close          send `Connection: close`: a new connection for every request
  --path PATH      request target (default /)
  --peers          compare with nginx and HAProxy (apt-get install -y nginx haproxy)
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
pub(crate) struct Options {
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
    peers: bool,
}

/// `http://HOST:PORT/PATH`, resolved.
#[derive(Debug, Clone)]
pub(crate) struct Url {
    addr: SocketAddr,
    host: String,
    path: String,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(peers::CHILD_FLAG) {
        return peers::balancer_child(&args[1..]);
    }
    let options = match parse_args(args.into_iter()) {
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
        peers: false,
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
            "--peers" => o.peers = true,
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
    let alone =
        o.target.is_none() && o.hold.is_none() && o.download.is_none() && o.upload.is_none();
    if o.peers && !alone {
        return Err("--peers starts its own proxies and backends: no --target, --hold, --download or --upload".into());
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
    if o.peers {
        return peers::peers(o);
    }
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
        return hold::hold(&balancer, n, o.pid);
    }
    if o.download.is_some() || o.upload.is_some() {
        let mut ok = true;
        if let Some(size) = o.download {
            ok &= transfer::stream("download", size, &balancer, direct.as_ref(), o)?;
        }
        if let Some(size) = o.upload {
            ok &= transfer::stream("upload", size, &balancer, direct.as_ref(), o)?;
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
