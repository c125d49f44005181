//! The demo backends: the chapter's "Red Server" and "Blue Server", and more colours.
//!
//! In the chapter these are two `http.server.HTTPServer`s in daemon threads that answer GET
//! with one line of HTML. Here each is a small HTTP/1.1 server on a
//! [`crate::listener::Listener`] (a thread per connection, like the balancer), speaking
//! keep-alive with `Content-Length`, answering every method. Besides the page they serve:
//!
//! - `/echo`: what the backend received (method, target, headers, body), to see what the
//!   balancer forwards;
//! - `/status/NNN`: the page with status `NNN`, to see what the balancer relays;
//! - `/bytes/N`: `N` bytes, streamed, for bandwidth measurements.
//!
//! The demo is a user of the library, as `main` is: the balancer's core knows nothing of it.
//! `main` starts a [`Fleet`] and hands it to the balancer as its [`Drills`] hook, so that the
//! admin listener and the status page can switch drills (`stop red`, `hang blue`, ...).
//!
//! Two files:
//!
//! - this one, `src/demo/mod.rs`: what a learner reads first: the colours and [`page`]s, the
//!   [`Drill`]s and how a request waits under one, a [`DemoBackend`] (start, stop, listen
//!   again) and the [`Fleet`] the console and the admin listener switch drills on;
//! - `src/demo/server.rs` (the private module `server`): the small HTTP server each backend
//!   runs on a connection: reading a request with [`crate::http`], its body, and answering
//!   it (the page, `/echo`, `/status/NNN`, `/bytes/N`, the [`FAVICON`]) with
//!   [`crate::http::pages::Head`].

mod server;

pub use server::{BULK_IO, ECHO_MAX_BODY, FAVICON};

use crate::admin::status::DemoRow;
use crate::admin::{DrillError, Drills};
use crate::conn::Timeouts;
use crate::http::pages::PALETTE;
use crate::listener::{Listener, Options};
use crate::poison::IgnorePoison;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Names and CSS colours of the demo backends, in order: the chapter's two first.
pub const COLOURS: [(&str, &str); 8] = [
    ("Red", PALETTE[0]),
    ("Blue", PALETTE[1]),
    ("Green", PALETTE[2]),
    ("Orange", PALETTE[3]),
    ("Purple", PALETTE[4]),
    ("Teal", PALETTE[5]),
    ("Brown", PALETTE[6]),
    ("Pink", PALETTE[7]),
];

/// Limit on a demo backend's wait for a client (it is a demo, not a target for slowloris).
pub const DEMO_TIMEOUT: Duration = Duration::from_secs(60);
/// Most connections one demo backend serves at once; past it, `503`. High: behind a busy
/// balancer a demo backend has one connection per request in flight.
pub const DEMO_MAX_CONNECTIONS: usize = 16_384;

/// The page of demo backend number `index` (0 is Red, "Server 1").
pub fn page(index: usize) -> String {
    let (name, css) = COLOURS[index % COLOURS.len()];
    format!(
        "<h1 style='color:{css};'>{name} Server - Server {}</h1>",
        index + 1
    )
}

/// A drill: the state a demo backend is put in to show how the balancer copes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drill {
    /// Normal service (`start`, `ok`).
    Ok,
    /// Not listening: connections are refused (`stop`).
    Stop,
    /// Accepts connections and reads requests, but never answers (`hang`).
    Hang,
    /// Answers after this delay (`slow MS`).
    Slow(Duration),
    /// Answers with this status (`error STATUS`).
    Error(u16),
}

impl Drill {
    /// Parses a drill as typed on the console or in the admin URL: `stop`, `start`, `ok`,
    /// `hang`, `slow 500` (milliseconds), `error 500`.
    ///
    /// # Errors
    /// A message saying which drills exist.
    pub fn parse(name: &str, arg: Option<&str>) -> Result<Drill, String> {
        let number = |what: &str| -> Result<u64, String> {
            arg.and_then(|a| a.parse().ok())
                .ok_or_else(|| format!("{name} needs {what}"))
        };
        match name {
            "ok" | "start" => Ok(Drill::Ok),
            "stop" => Ok(Drill::Stop),
            "hang" => Ok(Drill::Hang),
            "slow" => Ok(Drill::Slow(Duration::from_millis(
                number("a delay in milliseconds, e.g. slow 500")?.min(600_000),
            ))),
            "error" => match number("a status from 400 to 599, e.g. error 500")? {
                code @ 400..=599 => Ok(Drill::Error(code as u16)),
                _ => Err("error needs a status from 400 to 599".into()),
            },
            _ => Err(format!(
                "unknown drill {name:?}: use stop, start, hang, slow MS, error STATUS or ok"
            )),
        }
    }

    /// What the drill does, for the console.
    pub fn describe(self) -> String {
        match self {
            Drill::Ok => "ok: answering normally".into(),
            Drill::Stop => "stopped: connections are refused".into(),
            Drill::Hang => "hanging: accepts requests, never answers".into(),
            Drill::Slow(d) => format!("slow: answers after {} ms", d.as_millis()),
            Drill::Error(code) => format!("failing: answers every request with {code}"),
        }
    }
}

/// A running demo backend. Dropping it stops it.
#[derive(Debug)]
pub struct DemoBackend {
    index: usize,
    addr: SocketAddr,
    shared: Arc<DemoShared>,
    /// The listener, while listening (not under the `stop` drill).
    listening: Mutex<Option<Listener>>,
}

#[derive(Debug)]
struct DemoShared {
    page: String,
    /// Requests answered, for tests and the console.
    requests: AtomicU64,
    /// The current drill; connection threads wait on `changed` while hanging or slow.
    drill: Mutex<Drill>,
    changed: Condvar,
}

impl DemoShared {
    fn drill(&self) -> Drill {
        *self.drill.lock().ignore_poison()
    }
}

impl DemoBackend {
    /// Starts demo backend number `index` (0: Red, 1: Blue, ...) listening on `addr`
    /// (port 0 picks a free port).
    ///
    /// # Errors
    /// The address cannot be bound; the message names it.
    pub fn start(index: usize, addr: SocketAddr) -> io::Result<DemoBackend> {
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(DemoShared {
            page: page(index),
            requests: AtomicU64::new(0),
            drill: Mutex::new(Drill::Ok),
            changed: Condvar::new(),
        });
        let demo = DemoBackend {
            index,
            addr,
            shared,
            listening: Mutex::new(None),
        };
        demo.listen(listener)?;
        Ok(demo)
    }

    fn listen(&self, listener: TcpListener) -> io::Result<()> {
        let options = Options {
            name: format!("demo-{}", self.name().to_lowercase()),
            worker: "demo-conn",
            max_connections: DEMO_MAX_CONNECTIONS,
            refusal: "too many connections to this demo backend",
            timeouts: Timeouts::uniform(DEMO_TIMEOUT),
            stats: Arc::default(),
        };
        let shared = Arc::clone(&self.shared);
        let listener = Listener::start(listener, options, move |conn| {
            let _ = server::serve(conn.stream, &shared);
        })?;
        *self.listening.lock().ignore_poison() = Some(listener);
        Ok(())
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for `--backend`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `Red`, `Blue`, ...
    pub fn name(&self) -> &'static str {
        COLOURS[self.index % COLOURS.len()].0
    }

    /// The CSS colour of its page.
    pub fn colour(&self) -> &'static str {
        COLOURS[self.index % COLOURS.len()].1
    }

    /// The HTML page this backend answers with.
    pub fn page(&self) -> &str {
        &self.shared.page
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// The current drill.
    pub fn drill(&self) -> Drill {
        self.shared.drill()
    }

    /// Puts the backend in a drill: `Stop` closes the listener and every connection, `Ok`
    /// listens again on the same port, the others change how requests are answered.
    ///
    /// # Errors
    /// The port cannot be bound again when leaving `Stop` (another program took it).
    pub fn set_drill(&self, drill: Drill) -> io::Result<()> {
        if drill == Drill::Stop {
            self.halt();
        } else if self.listening.lock().ignore_poison().is_none() {
            self.listen(bind(self.addr)?)?;
        }
        *self.shared.drill.lock().ignore_poison() = drill;
        self.shared.changed.notify_all();
        Ok(())
    }

    /// Stops listening and closes every open connection.
    pub fn stop(self) {
        self.halt();
    }

    fn halt(&self) {
        if let Some(listener) = self.listening.lock().ignore_poison().take() {
            listener.abort();
        }
        *self.shared.drill.lock().ignore_poison() = Drill::Stop;
        self.shared.changed.notify_all();
    }
}

impl Drop for DemoBackend {
    fn drop(&mut self) {
        self.halt();
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Applies the drill to a request that has been read: returns the status to answer with, or
/// `None` to close without answering (hanging until the drill changes, or stopped).
fn drill_status(shared: &DemoShared) -> Option<u16> {
    let drill = shared.drill.lock().ignore_poison();
    match *drill {
        Drill::Ok => Some(200),
        Drill::Stop => None,
        Drill::Error(code) => Some(code),
        Drill::Hang => {
            let _changed = shared
                .changed
                .wait_while(drill, |d| *d == Drill::Hang)
                .ignore_poison();
            None
        }
        Drill::Slow(delay) => {
            // The whole delay, unless the drill changes to one that is not slow.
            let _waited = shared
                .changed
                .wait_timeout_while(drill, delay, |d| matches!(d, Drill::Slow(_)))
                .ignore_poison();
            Some(200)
        }
    }
}

/// The demo backends of one run, by name, so drills can be switched by name from the console
/// (`stop red`) or the admin listener (`POST /demo/red/stop`).
#[derive(Debug, Default)]
pub struct Fleet {
    /// The demo backends, Red first.
    pub backends: Vec<DemoBackend>,
}

impl Fleet {
    /// Starts `n` demo backends on consecutive ports from `first` (port 0: any free ports).
    ///
    /// # Errors
    /// A port cannot be bound; the message names it.
    pub fn start(n: usize, host: std::net::IpAddr, first: u16) -> io::Result<Fleet> {
        let backends = (0..n)
            .map(|i| {
                let port = if first == 0 { 0 } else { first + i as u16 };
                DemoBackend::start(i, SocketAddr::new(host, port))
            })
            .collect::<io::Result<_>>()?;
        Ok(Fleet { backends })
    }

    /// The demo backend called `name` (`red`, `Red`, ...).
    pub fn find(&self, name: &str) -> Option<&DemoBackend> {
        self.backends
            .iter()
            .find(|d| d.name().eq_ignore_ascii_case(name))
    }

    /// Carries out a console command such as `stop red`, `slow blue 500` or `error red 500`;
    /// returns the line to print.
    ///
    /// # Errors
    /// A message saying what is wrong with the command.
    pub fn command(&self, line: &str) -> Result<String, String> {
        let mut words = line.split_whitespace();
        let (Some(drill), Some(name)) = (words.next(), words.next()) else {
            return Err("type a drill and a backend: stop red, start red, hang red, slow red 500, error red 500, ok red".into());
        };
        self.apply(name, drill, words.next())
    }

    /// Puts the backend `name` in the drill `drill` (with `arg` for `slow` and `error`);
    /// returns the line to print.
    ///
    /// # Errors
    /// Unknown backend or drill, or the port could not be bound again.
    pub fn apply(&self, name: &str, drill: &str, arg: Option<&str>) -> Result<String, String> {
        let backend = self.find(name).ok_or_else(|| self.unknown(name))?;
        let drill = Drill::parse(drill, arg)?;
        backend.set_drill(drill).map_err(|e| e.to_string())?;
        Ok(format!(
            "[Drill] {} Server ({}) is {}",
            backend.name(),
            backend.url(),
            drill.describe()
        ))
    }
}

impl Fleet {
    fn unknown(&self, name: &str) -> String {
        let names: Vec<_> = self
            .backends
            .iter()
            .map(|d| d.name().to_lowercase())
            .collect();
        format!("no demo backend {name:?} (there are: {})", names.join(", "))
    }
}

/// The admin listener's drill buttons and `POST /demo/...` act on the fleet through this.
impl Drills for Fleet {
    fn rows(&self) -> Vec<DemoRow> {
        self.backends
            .iter()
            .map(|d| DemoRow {
                name: d.name(),
                colour: d.colour(),
                url: d.url(),
                drill: d.drill().describe(),
            })
            .collect()
    }

    fn switch(&self, name: &str, drill: &str, arg: Option<&str>) -> Result<String, DrillError> {
        if self.find(name).is_none() {
            return Err(DrillError::NoSuchBackend(self.unknown(name)));
        }
        self.apply(name, drill, arg).map_err(DrillError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drills_parse() {
        assert_eq!(Drill::parse("stop", None), Ok(Drill::Stop));
        assert_eq!(Drill::parse("start", None), Ok(Drill::Ok));
        assert_eq!(
            Drill::parse("slow", Some("250")),
            Ok(Drill::Slow(Duration::from_millis(250)))
        );
        assert_eq!(Drill::parse("error", Some("503")), Ok(Drill::Error(503)));
        assert!(Drill::parse("error", Some("200")).is_err());
        assert!(Drill::parse("slow", None).is_err());
        assert!(Drill::parse("explode", None).is_err());
    }

    #[test]
    fn pages_follow_the_chapter() {
        assert_eq!(page(0), "<h1 style='color:red;'>Red Server - Server 1</h1>");
        assert_eq!(
            page(1),
            "<h1 style='color:blue;'>Blue Server - Server 2</h1>"
        );
        assert_eq!(
            page(2),
            "<h1 style='color:green;'>Green Server - Server 3</h1>"
        );
    }
}
