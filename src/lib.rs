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
//! Client Request → Load Balancer (Port 9000)          server::Balancer, listener, proxy
//!                       ↓                              backends + strategy (Mutex<usize>)
//!         ┌─────────────────────────┐
//!         ↓                         ↓
//!    Backend 1 (Port 8001)    Backend 2 (Port 8002)   backend::Backend (pool, health, counters)
//!    "Red Server"             "Blue Server"           demo::DemoBackend
//! ```
//!
//! A request flows one way through the modules, and reading them in this order follows it
//! (no module imports one that imports it back):
//!
//! 1. [`config`]: flags and defaults (the chapter's hard-coded ports, made flags).
//! 2. [`server`]: starts and stops a balancer; [`context`]: what its threads share.
//! 3. [`listener`]: accept, a thread per connection, the cap, spare threads, the drain
//!    (the same for the balancer, the admin listener and the demo backends).
//! 4. [`proxy`]: one connection, top to bottom: read a request, try the candidates, answer.
//!    [`rewrite`] writes the heads each side gets. Behind a TLS terminator or an L4
//!    balancer, [`proxy_protocol`] reads the header that names the client, and [`trust`]
//!    says which hops' forwarding fields to believe.
//! 5. [`backends`]: the backend set; it hands the proxy the candidates for a request
//!    (failover) using a [`strategy`] (round robin and the chapter's "Related Concepts");
//!    [`backends_file`] keeps the list in step with a file that many copies share.
//! 6. [`attempt`]: one try at one backend; [`retry`]: may the request go to another?
//!    [`relay`] moves the bodies, [`conn`] holds the sockets and their [`conn::Timeouts`].
//! 7. [`backend`], [`health`] and [`checker`]: one backend's state, its idle connections,
//!    up or down, and the thread that probes it.
//! 8. [`http`]: the HTTP/1.1 syntax, parsed by hand from bytes (no sockets in there).
//! 9. [`log`], [`metrics`]: what the console and the counters say.
//! 10. [`admin`]: the admin listener: `/metrics`, the `/status` page, the backend API.
//! 11. [`demo`]: the Red and Blue servers, a user of the library like `main`.
//! 12. [`signal`]: Ctrl-C and `SIGTERM` become a graceful drain; `SIGHUP` re-reads
//!     `--backends-file`.
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
pub mod attempt;
pub mod backend;
pub mod backends;
pub mod backends_file;
pub mod checker;
pub mod config;
pub mod conn;
pub mod console;
pub mod context;
pub mod demo;
pub mod digest;
pub mod guide;
pub mod health;
pub mod http;
pub mod listener;
pub mod log;
pub mod metrics;
pub mod proxy;
pub mod proxy_protocol;
pub mod relay;
pub mod reload;
pub mod request_id;
pub mod retry;
pub mod rewrite;
pub mod secret;
pub mod server;
pub mod signal;
pub mod strategy;
pub mod throttle;
pub mod time;
pub mod trust;
