//! Helpers for every test family: start demo backends and a balancer on port 0, read the
//! balancer's counters, wait for conditions without sleeping blindly.
//!
//! Every use of the library's API that is not the behaviour under test goes through here
//! (configuration, starting, counters, pool sizes), so a rename in `src/` is fixed in one place.
//!
//! - [`client`]: the client's side of the wire: raw connections, one strict "read until the
//!   balancer closed" rule, response parsing (one that tells a closed connection from a
//!   silent one), ureq calls, clients under load;
//! - [`backend`]: scripted backends: one record-and-reply backend, one that can be switched
//!   off without giving up its port, gates that hold requests, one that reports each request
//!   and answers, breaks, trickles or holds as told, one that never answers;
//! - [`process`]: the real binaries (`load-balancer` and the chapter's `chapter`), their
//!   output line by line, signals;
//! - [`files`]: a directory of a test's own, files written by rename;
//! - [`fuzz`]: the seeded generator and the panic counter both fuzzers use;
//! - [`chapter`]: what the guide's step tests and its exercises share: the chapter's programs
//!   and the scenarios a step and its exercise both run.

pub mod backend;
pub mod chapter;
pub mod client;
pub mod files;
pub mod fuzz;
pub mod process;

pub use backend::*;
pub use client::*;

pub use load_balancer::config::Config;
pub use load_balancer::server::Balancer;

use load_balancer::backends::member::Backend;
use load_balancer::config::{BackendSpec, StrategyKind};
use load_balancer::demo::{DemoBackend, Fleet};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

/// `--drain-timeout` of a test's balancer. A balancer is stopped when its test ends, and
/// waits this long for requests still in flight: none when the test passed, but a failed
/// test may leave one hanging at a backend, and its failure should not wait the default
/// 10 s on top. Tests of the drain itself set their own.
pub const TEST_DRAIN: Duration = Duration::from_secs(1);

/// A configuration for tests: port 0, no admin listener, quiet, the given backends, and a
/// drain of [`TEST_DRAIN`].
pub fn config(urls: &[String]) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin: None,
        quiet: true,
        backends: urls.iter().map(|u| spec(u)).collect(),
        drain_timeout: TEST_DRAIN,
        ..Config::default()
    }
}

/// A backend spec from `http://HOST:PORT[,weight=N]`.
pub fn spec(url: &str) -> BackendSpec {
    BackendSpec::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// A backend known by `url` (as a host name would be written) that is reached at `addr`,
/// as when the URL's host resolves to that address at start-up. The URL is what the
/// strategies hash, so tests can name backends with fixed URLs on ports picked by the kernel.
pub fn named_spec(url: &str, addr: SocketAddr, weight: u32) -> BackendSpec {
    BackendSpec {
        url: url.to_string(),
        addr,
        weight,
    }
}

/// Sets the strategy of a configuration, by its `--strategy` name.
pub fn set_strategy(c: &mut Config, name: &str) {
    c.strategy = StrategyKind::parse(name).unwrap_or_else(|| panic!("no strategy {name}"));
}

/// Asks for the admin listener on a free port.
pub fn with_admin(c: &mut Config) {
    c.admin = Some("127.0.0.1:0".parse().unwrap());
}

/// Starts a balancer; panics with the reason if it cannot.
pub fn start(c: Config) -> Balancer {
    Balancer::start(c).unwrap_or_else(|e| panic!("the balancer did not start: {e}"))
}

/// Starts a balancer or returns why it could not.
pub fn try_start(c: Config) -> std::io::Result<Balancer> {
    Balancer::start(c)
}

/// Starts a balancer over `urls` with the test configuration.
pub fn start_over(urls: &[String]) -> Balancer {
    start(config(urls))
}

/// `n` demo backends (Red, Blue, Green, ...) on port 0.
pub fn demos(n: usize) -> Vec<DemoBackend> {
    (0..n).map(demo).collect()
}

/// Demo backend number `index` (0: Red) on port 0.
pub fn demo(index: usize) -> DemoBackend {
    DemoBackend::start(index, "127.0.0.1:0".parse().unwrap()).unwrap()
}

/// URLs of demo backends.
pub fn urls(demos: &[DemoBackend]) -> Vec<String> {
    demos.iter().map(|d| d.url()).collect()
}

/// A fleet of `n` demo backends on port 0 and a balancer over them that can switch their
/// drills (the admin listener's `/demo/...`), configured by `tweak`.
pub fn fleet_setup(n: usize, tweak: impl FnOnce(&mut Config)) -> (Arc<Fleet>, Balancer) {
    let fleet = Arc::new(Fleet::start(n, Ipv4Addr::LOCALHOST.into(), 0).unwrap());
    let urls: Vec<String> = fleet.backends.iter().map(|d| d.url()).collect();
    let mut c = config(&urls);
    tweak(&mut c);
    let lb = Balancer::start_with_drills(c, Arc::clone(&fleet) as _).unwrap();
    (fleet, lb)
}

/// Demo backends and a balancer over them; both stop when dropped.
pub struct Setup {
    pub lb: Balancer,
    pub demos: Vec<DemoBackend>,
}

impl Setup {
    /// `n` demo backends behind a balancer with the test configuration, changed by `tweak`.
    pub fn new(n: usize, tweak: impl FnOnce(&mut Config)) -> Setup {
        let demos = demos(n);
        let mut c = config(&urls(&demos));
        tweak(&mut c);
        Setup {
            lb: start(c),
            demos,
        }
    }

    /// `http://ADDR` of the balancer, plus `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.lb.addr(), path)
    }

    pub fn addr(&self) -> SocketAddr {
        self.lb.addr()
    }

    /// The pages of the demo backends, in order.
    pub fn pages(&self) -> Vec<String> {
        self.demos.iter().map(|d| d.page().to_string()).collect()
    }

    /// Which demo backend (by index) answered with `body`.
    pub fn served(&self, body: &str) -> usize {
        self.demos
            .iter()
            .position(|d| d.page() == body)
            .unwrap_or_else(|| panic!("not a demo page: {body:?}"))
    }
}

/// `http://ADDR` of the admin listener, plus `path`.
pub fn admin_url(lb: &Balancer, path: &str) -> String {
    format!("http://{}{}", admin_addr(lb), path)
}

/// The admin listener's address.
pub fn admin_addr(lb: &Balancer) -> SocketAddr {
    lb.admin_addr().expect("the admin listener runs")
}

/// The token that [`admin_get`] and [`admin_post`] present. A listener configured without a
/// token ignores it; one configured with it (`admin-token` in a test's config) lets these
/// helpers change things over TCP, which needs a token.
pub const ADMIN_TOKEN: &str = "support-admin-token";

/// POSTs a form `body` to the admin listener, with [`ADMIN_TOKEN`]; returns status, Location
/// and body.
pub fn admin_post(admin: SocketAddr, path: &str, body: &str) -> (u16, Option<String>, String) {
    let mut c = RawConn::open(admin);
    c.send(
        format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let (head, body) = c.response();
    let lower = head.to_ascii_lowercase();
    let location = header(&lower, "location").map(str::to_string);
    (
        status_of(&head),
        location,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// The balancer's backends, as they are now.
pub fn backends(lb: &Balancer) -> Arc<Vec<Arc<Backend>>> {
    lb.shared().backends.snapshot()
}

/// Backend number `i` (in configuration order).
pub fn backend(lb: &Balancer, i: usize) -> Arc<Backend> {
    Arc::clone(&backends(lb)[i])
}

/// Is backend `i` up (in rotation, as far as health goes)?
pub fn backend_up(lb: &Balancer, i: usize) -> bool {
    backend(lb, i).health.is_up()
}

/// Adds a backend at run time, as the admin API does.
pub fn add_backend(lb: &Balancer, url: &str) -> Arc<Backend> {
    lb.shared().backends.add(&spec(url))
}

/// Idle connections in backend `i`'s pool.
pub fn pooled(lb: &Balancer, i: usize) -> usize {
    backend(lb, i).pooled_count()
}

/// Requests (attempts) the balancer sent to backend `b`.
pub fn attempts(b: &Backend) -> u64 {
    b.stats.requests.load(Ordering::Relaxed)
}

/// Responses relayed from backend `b` with a status of class `class` (2 for 2xx, ...).
pub fn responses(b: &Backend, class: usize) -> u64 {
    b.stats.responses[class - 1].load(Ordering::Relaxed)
}

/// Failures after sending (broken or missing response, timeout) counted for backend `b`.
pub fn response_errors(b: &Backend) -> u64 {
    b.stats.response_errors.load(Ordering::Relaxed)
}

/// Requests (attempts) sent to all backends.
pub fn attempts_total(lb: &Balancer) -> u64 {
    backends(lb).iter().map(|b| attempts(b)).sum()
}

/// Client connections open now.
pub fn open_connections(lb: &Balancer) -> u64 {
    lb.shared().stats.open.load(Ordering::SeqCst)
}

/// Client connections accepted since the start.
pub fn accepted(lb: &Balancer) -> u64 {
    lb.shared().stats.accepted.load(Ordering::SeqCst)
}

/// A probe of the connection threads alive that outlives the balancer's handle, to watch
/// what a shutdown does with them.
pub fn threads_probe(lb: &Balancer) -> impl Fn() -> usize + Send + 'static {
    let threads = lb.threads().expect("the balancer is running");
    move || threads.alive()
}

/// Waits until no client connection is open and no backend has a request in flight.
pub fn wait_idle(lb: &Balancer) {
    wait_for(
        Duration::from_secs(10),
        "no open connection, nothing in flight",
        || open_connections(lb) == 0 && backends(lb).iter().all(|b| b.active() == 0),
    );
}

/// Polls `check` every 10 ms until it is true; panics after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// An address that refuses connections for as long as this value lives, and that no other
/// test can take meanwhile.
///
/// The port is the local end of a connected socket held here: nothing listens on it, so a
/// connection attempt is refused, and since that socket does not allow address reuse, no
/// listener can bind the port until it is dropped. (Binding a listener and closing it again
/// would leave a port any parallel test may pick up.)
pub struct DeadPort {
    addr: SocketAddr,
    _held: (TcpStream, TcpStream),
}

impl DeadPort {
    pub fn new() -> DeadPort {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        DeadPort {
            addr: client.local_addr().unwrap(),
            _held: (client, server),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// `GET` on the admin listener, with [`ADMIN_TOKEN`]: status and body.
pub fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let url = format!("http://{admin}{path}");
    let mut resp = agent()
        .get(&url)
        .header("Authorization", format!("Bearer {ADMIN_TOKEN}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}

/// A sample's value from `/metrics` (the first line that starts with `name` and a space or `{`).
pub fn metric(admin: SocketAddr, name: &str) -> f64 {
    let (status, text) = admin_get(admin, "/metrics");
    assert_eq!(status, 200);
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}
