//! # load-balancer
//!
//! The round-robin HTTP/1.1 load balancer of "Chapter 1: Load Balancer", in Rust with the
//! standard library only, built to be read next to the chapter and to hold up in real use.
//!
//! The chapter's picture, and where each part lives:
//!
//! ```text
//! Client Request → Load Balancer (Port 9000)          server::Balancer, proxy::serve
//!                       ↓                              strategy (round robin: Mutex<usize>)
//!         ┌─────────────────────────┐
//!         ↓                         ↓
//!    Backend 1 (Port 8001)    Backend 2 (Port 8002)   backend::Backend (pool, health, counters)
//!    "Red Server"             "Blue Server"           demo::DemoBackend
//! ```
//!
//! A request flows one way through the modules, and reading them in this order follows it:
//!
//! 1. [`config`]: flags and defaults (the chapter's hard-coded ports, made flags).
//! 2. [`server`]: the accept loop, a thread per client connection, the connection cap;
//!    [`spare`]: a thread whose connection ended waits for the next one.
//! 3. [`proxy`]: one connection, top to bottom: read the request, pick a backend, forward,
//!    relay the response; failover when a backend fails. [`rewrite`] writes the heads,
//!    [`relay`] moves the bodies.
//! 4. [`http`]: the HTTP/1.1 syntax, parsed by hand from bytes (no sockets in there).
//! 5. [`strategy`]: which backend is next (round robin and the chapter's "Related Concepts").
//! 6. [`backend`], [`health`] and [`checker`]: one backend's state, its idle connections,
//!    up or down, and the thread that probes it.
//! 7. [`demo`]: the Red and Blue servers.
//! 8. [`log`], [`metrics`]: what the console and the counters say.
//! 9. [`admin`]: the admin listener: `/metrics`, the `/status` page, the backend API.
//! 10. [`signal`]: Ctrl-C and `SIGTERM` become a graceful drain.
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
pub mod backend;
pub mod checker;
pub mod config;
pub mod conn;
pub mod demo;
pub mod guide;
pub mod health;
pub mod http;
pub mod log;
pub mod metrics;
pub mod proxy;
pub mod relay;
pub mod rewrite;
pub mod server;
pub mod signal;
pub mod spare;
pub mod strategy;
pub mod time;
