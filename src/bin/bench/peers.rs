//! `--peers`: this balancer beside nginx and HAProxy, over the same two backends, driven in
//! turn by the same load, with the CPU time each proxy spent per request.
//!
//! The backends are two demo backends in this process (the Red and Blue pages), so the
//! comparison needs nothing but the proxies. The balancer runs as its own process (this
//! binary again, with [`CHILD_FLAG`], serving through the crate's `Balancer` with its access
//! log on and sent to `/dev/null`), so that `/proc` can tell its CPU time from the load's.
//! nginx and HAProxy run from configurations written here, into a temporary directory, when
//! they are found in `PATH`; each listens on a loopback port the system picked.

use crate::load::{Client, Run, load};
use crate::{Options, Url, with_path};
use load_balancer::config::{BackendSpec, Config};
use load_balancer::demo::DemoBackend;
use load_balancer::server::Balancer;
use std::fmt::Write as _;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The first argument that makes this binary the balancer process of `--peers`:
/// `bench --balancer-child LISTEN BACKEND_URL...`. It serves until its stdin closes.
pub(crate) const CHILD_FLAG: &str = "--balancer-child";
/// What to run when a peer is missing.
const INSTALL_HINT: &str = "apt-get install -y nginx haproxy";
/// How long a proxy may take to answer its first request after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a proxy may take to exit after it was asked to stop, before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Clock ticks per second in `/proc/PID/stat` (`USER_HZ`: 100 in Linux's user ABI on every
/// architecture; `getconf CLK_TCK` prints it).
const TICKS_PER_SECOND: f64 = 100.0;

/// The three proxies, in the order they are measured.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Balancer,
    Nginx,
    Haproxy,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Balancer => "balancer",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
        }
    }
}

/// One measured proxy.
struct Row {
    kind: Kind,
    run: Run,
    /// CPU time of the proxy's processes per completed request, in microseconds.
    cpu_us: f64,
}

/// Runs `--peers`; `Ok(false)` when a proxy that is installed did not start or a load had
/// errors. A proxy that is not installed is reported and skipped, and is not a failure.
pub(crate) fn peers(o: &Options) -> io::Result<bool> {
    let localhost = SocketAddr::from(([127, 0, 0, 1], 0));
    let red = DemoBackend::start(0, localhost)?;
    let blue = DemoBackend::start(1, localhost)?;
    let backends = [red.addr(), blue.addr()];
    let dir = TempDir::create()?;
    println!(
        "peers: backends: two demo backends in this process ({} and {}); {} connections{}, {:.1}s per proxy, one proxy at a time",
        red.url(),
        blue.url(),
        o.connections,
        if o.close { " (close)" } else { "" },
        o.seconds.as_secs_f64()
    );
    let (mut rows, mut ok) = (Vec::new(), true);
    for kind in [Kind::Balancer, Kind::Nginx, Kind::Haproxy] {
        match Peer::start(kind, &dir.0, backends) {
            Ok(Some(peer)) => {
                let row = measure(&peer, o);
                ok &= row.run.errors == 0;
                rows.push(row);
            }
            Ok(None) => println!(
                "peers: {} not found in PATH; to compare with it: {INSTALL_HINT}",
                kind.name()
            ),
            Err(e) => {
                println!("peers: {} did not start: {e}", kind.name());
                ok = false;
            }
        }
    }
    print_table(&rows);
    Ok(ok)
}

/// Drives one proxy with the load and reads its CPU time before and after.
fn measure(peer: &Peer, o: &Options) -> Row {
    let url = with_path(&Url::from_addr(peer.addr, "/"), o.path.as_deref());
    let before = cpu_ticks(peer.child.id());
    let run = load(&url, o);
    let ticks = cpu_ticks(peer.child.id()).saturating_sub(before);
    let cpu_us = ticks as f64 / TICKS_PER_SECOND * 1e6 / run.latencies.len().max(1) as f64;
    Row {
        kind: peer.kind,
        run,
        cpu_us,
    }
}

fn print_table(rows: &[Row]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{:10} {:>10} {:>8} {:>8} {:>7} {:>11}",
        "proxy", "req/s", "p50 ms", "p99 ms", "errors", "cpu us/req"
    );
    for r in rows {
        println!(
            "{:10} {:>10.0} {:>8.3} {:>8.3} {:>7} {:>11.1}",
            r.kind.name(),
            r.run.rate(),
            ms(r.run.quantile(0.50)),
            ms(r.run.quantile(0.99)),
            r.run.errors,
            r.cpu_us
        );
    }
    let Some(lb) = rows.iter().find(|r| r.kind == Kind::Balancer) else {
        return;
    };
    for peer in rows.iter().filter(|r| r.kind != Kind::Balancer) {
        println!(
            "ratio lb/{}: req/s {:.2}  cpu/req {:.2}",
            peer.kind.name(),
            lb.run.rate() / peer.run.rate().max(f64::MIN_POSITIVE),
            lb.cpu_us / peer.cpu_us.max(f64::MIN_POSITIVE)
        );
    }
}

/// A proxy process this run started; dropping it stops the proxy.
struct Peer {
    kind: Kind,
    addr: SocketAddr,
    child: Child,
    /// The balancer's stdin: closing it is how the balancer is told to stop.
    stdin: Option<ChildStdin>,
    /// nginx's own way to stop it and its workers (`nginx -s stop`).
    stop: Option<Command>,
}

impl Peer {
    /// Starts `kind` in front of `backends` and waits until it answers a request; `Ok(None)`
    /// when nginx or HAProxy is not in `PATH`.
    fn start(kind: Kind, dir: &Path, backends: [SocketAddr; 2]) -> io::Result<Option<Peer>> {
        let addr = free_port()?;
        let log = std::fs::File::create(dir.join(format!("{}.log", kind.name())))?;
        let (mut command, stop) = match kind {
            Kind::Balancer => (balancer_command(addr, backends)?, None),
            Kind::Nginx => match which("nginx") {
                None => return Ok(None),
                Some(nginx) => nginx_commands(&nginx, dir, addr, backends)?,
            },
            Kind::Haproxy => match which("haproxy") {
                None => return Ok(None),
                Some(haproxy) => (haproxy_command(&haproxy, dir, addr, backends)?, None),
            },
        };
        if kind != Kind::Balancer {
            command.stdin(Stdio::null());
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(log.try_clone()?)
            .spawn()?;
        let stdin = child.stdin.take();
        let peer = Peer {
            kind,
            addr,
            child,
            stdin,
            stop,
        };
        peer.wait_until_serving(dir)
    }

    /// Polls with a request until one is answered; an early exit or the timeout is an error
    /// that quotes the proxy's log.
    fn wait_until_serving(mut self, dir: &Path) -> io::Result<Option<Peer>> {
        let deadline = Instant::now() + START_TIMEOUT;
        let request = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", self.addr);
        loop {
            let answered =
                Client::connect(self.addr).and_then(|mut c| c.exchange(request.as_bytes()));
            if answered.is_ok() {
                return Ok(Some(self));
            }
            let exited = self.child.try_wait()?;
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join(format!("{}.log", self.kind.name())))
                    .unwrap_or_default();
                let why = exited.map_or_else(
                    || format!("no answer in {}s", START_TIMEOUT.as_secs()),
                    |s| format!("exited ({s})"),
                );
                return Err(io::Error::other(format!("{why}: {}", log.trim())));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        match self.stop.as_mut() {
            Some(stop) => {
                let _ = stop.stdout(Stdio::null()).stderr(Stdio::null()).status();
            }
            // HAProxy is one process (threads, no master): killing it leaves nothing behind.
            None if self.kind == Kind::Haproxy => {
                let _ = self.child.kill();
            }
            None => {}
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This binary again, as the balancer process.
fn balancer_command(addr: SocketAddr, backends: [SocketAddr; 2]) -> io::Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    command.arg(CHILD_FLAG).arg(addr.to_string());
    command.args(backends.map(|b| format!("http://{b}")));
    command.stdin(Stdio::piped());
    Ok(command)
}

/// nginx in the foreground with a configuration written into `dir`, and `nginx -s stop`.
fn nginx_commands(
    nginx: &Path,
    dir: &Path,
    addr: SocketAddr,
    backends: [SocketAddr; 2],
) -> io::Result<(Command, Option<Command>)> {
    // Paths are relative to the prefix (`-p dir`): the pid file, and the temporary files'
    // folders, which would otherwise be the package's own (/var/lib/nginx, root's).
    let mut servers = String::new();
    for b in backends {
        let _ = write!(servers, "server {b}; ");
    }
    let conf = format!(
        "# nginx as a round-robin proxy with upstream keep-alive (written by bench --peers)
worker_processes auto;
daemon off;
pid nginx.pid;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path body; proxy_temp_path proxy; fastcgi_temp_path fastcgi;
  uwsgi_temp_path uwsgi; scgi_temp_path scgi;
  upstream app {{ {servers}keepalive 512; keepalive_requests 1000000; }}
  server {{
    listen {addr} backlog=4096;
    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}
  }}
}}
"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let command = |extra: &[&str]| {
        let mut c = Command::new(nginx);
        c.arg("-p").arg(dir).arg("-e").arg(dir.join("nginx.err"));
        c.arg("-c").arg(&path).args(extra);
        c
    };
    Ok((command(&[]), Some(command(&["-s", "stop"]))))
}

/// HAProxy in the foreground with a configuration written into `dir`.
fn haproxy_command(
    haproxy: &Path,
    dir: &Path,
    addr: SocketAddr,
    backends: [SocketAddr; 2],
) -> io::Result<Command> {
    // `maxconn 8000`: HAProxy asks for about two descriptors per connection at start and
    // refuses to start when the limit is lower (20,000 is common).
    let threads = thread::available_parallelism().map_or(1, |n| n.get());
    let conf = format!(
        "# HAProxy as a round-robin proxy, connections reused on both sides (written by bench --peers)
global
  nbthread {threads}
  maxconn 8000
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind {addr}
  default_backend be
backend be
  balance roundrobin
  http-reuse always
  server red {}
  server blue {}
",
        backends[0], backends[1]
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, conf)?;
    let mut command = Command::new(haproxy);
    command.arg("-db").arg("-f").arg(&path);
    Ok(command)
}

/// `bench --balancer-child LISTEN BACKEND_URL...`: serves through the crate's balancer, its
/// access log on stdout, until stdin closes.
pub(crate) fn balancer_child(args: &[String]) -> ExitCode {
    let balancer = match start_balancer(args) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("bench {CHILD_FLAG}: {e}");
            return ExitCode::from(2);
        }
    };
    let mut byte = [0u8; 1];
    while matches!(io::stdin().read(&mut byte), Ok(n) if n > 0) {}
    drop(balancer);
    ExitCode::SUCCESS
}

/// The balancer of [`balancer_child`]: the defaults of `load-balancer --listen LISTEN
/// --backend URL...`, without an admin listener.
fn start_balancer(args: &[String]) -> Result<Balancer, String> {
    let (listen, urls) = args.split_first().ok_or("needs LISTEN BACKEND_URL...")?;
    let listen = listen
        .parse()
        .map_err(|_| format!("{listen:?} is not an address"))?;
    let backends = urls
        .iter()
        .map(|b| BackendSpec::parse(b))
        .collect::<Result<Vec<_>, _>>()?;
    let config = Config {
        listen,
        admin: None,
        backends,
        ..Config::default()
    };
    Balancer::start(config).map_err(|e| e.to_string())
}

/// User and system CPU ticks of process `root` and all its descendants (nginx's master and
/// its workers), from `/proc/PID/stat`; each process's figure already sums its threads.
fn cpu_ticks(root: u32) -> u64 {
    let mut procs = Vec::new(); // (pid, parent, ticks)
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the command name in parentheses: state, ppid, ..., utime (12th), stime (13th).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, r)| r)
            .split_whitespace()
            .collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        procs.push((pid, field(1) as u32, field(11) + field(12)));
    }
    let mut tree = vec![root];
    let mut total = 0;
    let mut i = 0;
    while let Some(&pid) = tree.get(i) {
        for &(child, parent, ticks) in &procs {
            if child == pid {
                total += ticks;
            } else if parent == pid {
                tree.push(child);
            }
        }
        i += 1;
    }
    total
}

/// A loopback address with a port the system picked (free when this returns).
fn free_port() -> io::Result<SocketAddr> {
    TcpListener::bind(("127.0.0.1", 0))?.local_addr()
}

/// The executable `name` in a directory of `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A directory for the proxies' configurations and logs, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> io::Result<TempDir> {
        let path = std::env::temp_dir().join(format!("bench-peers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
