//! # load-balancer
//!
//! The round-robin HTTP/1.1 load balancer of "Chapter 1: Load Balancer", in Rust with the
//! standard library only, built to be read next to the chapter and to hold up in real use.
//!
//! New here? Start with the [`guide`]: the chapter in one Rust file (`src/bin/chapter.rs`),
//! then eight steps from it to this crate, each with a test that shows what it fixes; and the
//! reference pages (configuration, failover, operations, many copies, drills, performance,
//! testing).
//!
//! The chapter's picture, and where each part lives:
//!
//! ```text
//! Client Request → Load Balancer (Port 9000)          server::Balancer, listener, proxy/
//!                       ↓                              backends/ + strategy (Mutex<usize>)
//!         ┌─────────────────────────┐
//!         ↓                         ↓
//!    Backend 1 (Port 8001)    Backend 2 (Port 8002)   backends::member (pool, health, counters)
//!    "Red Server"             "Blue Server"           demo::DemoBackend
//! ```
//!
//! A request flows one way through the modules, and reading them in this order follows it
//! (no module imports one that imports it back). The two folders are the picture's two
//! halves: [`proxy`] is the client's side, [`backends`] the servers' side.
//!
//! 1. [`config`]: flags and defaults (the chapter's hard-coded ports, made flags).
//! 2. [`server`]: starts and stops a balancer; [`context`]: what its threads share.
//! 3. [`listener`]: accept, a thread per connection, the cap, spare threads, the drain
//!    (the same for the balancer, the admin listener on TCP and the demo backends).
//! 4. [`proxy`]: one connection, top to bottom, with the chapter's verbs: `serve`,
//!    `read_request`, the pick, `attempt`, `answer`.
//!    - [`proxy::rewrite`] writes the heads each side gets;
//!    - [`proxy::attempt`] is one try at one backend, [`proxy::relay`] moves the bodies;
//!    - behind a TLS terminator or an L4 balancer, [`proxy::proxy_protocol`] reads the
//!      header that names the client, and [`proxy::trust`] says which hops' forwarding
//!      fields to believe.
//! 5. [`backends`]: the backend set; the pick ([`backends::Backends::candidates`]) hands
//!    the proxy the backends to try for a request, in order (failover).
//!    - [`backends::strategy`]: who goes first (round robin and the chapter's "Related
//!      Concepts");
//!    - [`backends::retry`]: may a failed request go to another backend?
//!    - [`backends::member`]: one backend's state and its idle connections;
//!    - [`backends::health`] and [`backends::checker`]: up or down, and the thread that
//!      probes it;
//!    - [`backends::file`] keeps the list in step with a file that many copies share.
//! 6. [`conn`]: the sockets and their [`conn::Timeouts`], for both sides.
//! 7. [`http`]: the HTTP/1.1 syntax, parsed by hand from bytes (no sockets in there).
//! 8. [`log`], [`metrics`], [`console`]: what the console and the counters say.
//! 9. [`admin`]: the admin listener: `/metrics`, the `/status` page, the backend API;
//!    [`reload`] applies a changed configuration without a restart.
//! 10. [`demo`]: the Red and Blue servers, a user of the library like `main`.
//! 11. [`signal`]: Ctrl-C and `SIGTERM` become a graceful drain; `SIGHUP` reloads;
//!     [`stop`]: how a background thread on a timer is woken and stopped; [`poison`]: how
//!     every lock is taken.
//!
//! ```no_run
//! use load_balancer::{config::{BackendSpec, Config}, demo::DemoBackend, server::Balancer};
//!
//! let red = DemoBackend::start(0, "127.0.0.1:0".parse().unwrap()).unwrap();
//! let blue = DemoBackend::start(1, "127.0.0.1:0".parse().unwrap()).unwrap();
//! let mut config = Config::default();
//! config.listen = "127.0.0.1:0".parse().unwrap();
//! config.admin = None;
//! config.backends = vec![BackendSpec::parse(&red.url()).unwrap(), BackendSpec::parse(&blue.url()).unwrap()];
//! let balancer = Balancer::start(config).unwrap();
//! println!("balancing on http://{}", balancer.addr());
//! balancer.shutdown();
//! ```

#![deny(missing_docs)]

pub mod admin;
pub mod backends;
pub mod config;
pub mod conn;
pub mod console;
pub mod context;
pub mod demo;
pub mod digest;
pub mod guide;
pub mod http;
pub mod listener;
pub mod log;
pub mod metrics;
pub mod poison;
pub mod proxy;
pub mod reload;
pub mod request_id;
pub mod secret;
pub mod server;
pub mod signal;
pub mod stop;
pub mod throttle;
pub mod time;
