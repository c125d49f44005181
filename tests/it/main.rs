//! The integration tests: one binary (ureq and the library are linked once), one module per
//! behaviour family. Every test drives the real balancer (in process, or the real binary) on
//! `127.0.0.1:0`, with ureq and raw `TcpStream`s; helpers live in [`support`].

mod support;

mod access_log;
mod admin;
mod admin_access;
mod admin_hardening;
mod backends_file;
mod basics;
mod behind_a_terminator;
mod bench;
mod chapter;
mod config_file;
mod drain;
mod drills;
mod error_answers;
mod exercises;
mod failover;
mod framing;
mod fuzz_requests;
mod fuzz_responses;
mod hardening;
mod hardening2;
mod health;
mod hygiene;
mod keepalive;
mod lab;
mod maps;
mod rejects;
#[cfg(unix)]
mod reload;
#[cfg(unix)]
mod signals;
mod status;
mod strategies;
mod timeouts;
mod upgrade;
