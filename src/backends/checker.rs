//! The active health checker: a thread that asks every backend "are you well?" on a timer,
//! the chapter's "Health Checks" from "Production Considerations".
//!
//! Passive checks ([`super::health`]) only learn about a backend from real requests: a dead
//! backend costs a client a retry before it is taken out, and a backend that is out comes back
//! only when a trial request happens to go there. With `--health-check PATH`, this thread
//! sends `GET PATH` to every backend each `--health-interval`; any `2xx` or `3xx` answer within
//! `--health-timeout` passes (HAProxy's `option httpchk` rule; `--health-status` names other
//! statuses, `--health-host` the `Host` a virtual host answers to), anything else fails. `--fall`
//! failures in a row take the backend out, `--rise` passes bring it back, even with no client
//! traffic at all (HAProxy's `inter 2s rise 2 fall 3`).
//!
//! One thread for all backends, which each round probes every backend of the current list in
//! parallel, one short scoped thread per probe: a backend that hangs costs its own probe the
//! timeout, not the others their turn, and backends added at run time (the admin API's
//! [`crate::backends::Backends::add`]) are in the next round because each round reads the list
//! anew. Between rounds the thread sleeps on a [`Sleeper`], so a shutdown wakes it at once
//! ([`crate::stop`]); a round in progress finishes first, which takes at most `--health-timeout`.

use super::Backends;
use super::member::Backend;
use crate::conn::is_local_failure;
use crate::console;
use crate::http::statuses::StatusSet;
use crate::http::{Parse, response};
use crate::stop::{Sleeper, Stopper, Woke};
use crate::throttle::{self, Throttle};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The `User-Agent` of health checks, so backend logs can tell them from client requests.
pub const USER_AGENT: &str = "load-balancer-health-check";

/// What to check and when: `--health-check`, `--health-interval`, `--health-timeout`,
/// `--rise` and `--fall`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checks {
    /// The path probed with `GET`.
    pub path: String,
    /// Time from the start of one round to the start of the next.
    pub interval: Duration,
    /// Limit on one probe, connect to response head.
    pub timeout: Duration,
    /// Passed probes in a row that bring a backend back.
    pub rise: u32,
    /// Failed probes in a row that take a backend out.
    pub fall: u32,
    /// The `Host` of the probes (`--health-host`); `None`: the backend's `HOST:PORT`.
    pub host: Option<String>,
    /// The statuses that pass (`--health-status`, default `200-399`).
    pub statuses: StatusSet,
}

/// A running checker. [`Checker::stop`] (or dropping it) stops and joins its thread.
#[derive(Debug)]
pub struct Checker {
    thread: Stopper,
}

impl Checker {
    /// Starts checking `backends` as `checks` says.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start(backends: Arc<Backends>, checks: Checks) -> io::Result<Checker> {
        let thread = Stopper::spawn("health", move |sleeper| run(&backends, &checks, sleeper))?;
        Ok(Checker { thread })
    }

    /// Stops the checker and waits for its thread (at most one round's `--health-timeout`).
    pub fn stop(self) {
        self.thread.stop();
    }
}

/// One round per `--health-interval`, measured from the start of each round, until stopped.
fn run(backends: &Backends, checks: &Checks, sleeper: &Sleeper) {
    loop {
        let started = Instant::now();
        let list = backends.snapshot();
        thread::scope(|scope| {
            for backend in list.iter() {
                let check = move || check(backend, checks);
                let spawned = thread::Builder::new()
                    .name("health-probe".into())
                    .stack_size(crate::listener::THREAD_STACK)
                    .spawn_scoped(scope, check);
                if spawned.is_err() {
                    // No thread to spare: probe on this one rather than skip the backend.
                    check();
                }
            }
        });
        if sleeper.sleep_until(started + checks.interval) == Woke::Stop {
            return;
        }
    }
}

/// Probes one backend, counts the result, and prints a change of state.
fn check(backend: &Backend, checks: &Checks) {
    let result = match probe(backend, checks) {
        Err(Failed::Local(why)) => {
            // Out of descriptors or ports here: the backend is not to blame, and a balancer
            // under a descriptor storm must not take its healthy backends out on top.
            if let Some(n) = LOCAL_FAILURES.allow() {
                console::error(format_args!(
                    "[Health] check of {} not made: {why}; its health stays as it was{}",
                    backend.url,
                    throttle::left_out(n)
                ));
            }
            return;
        }
        Err(Failed::Backend(why)) => Err(why),
        Ok(()) => Ok(()),
    };
    if let Some(change) = backend
        .health
        .record_check(result, checks.rise, checks.fall)
    {
        backend.health_changed(&change);
    }
}

/// Why a health check did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failed {
    /// The backend failed it: "connection refused", "status 500", ...
    Backend(String),
    /// It could not be made for a reason on this machine (out of file descriptors, memory or
    /// local ports): it says nothing about the backend.
    Local(String),
}

/// Health checks not made for a local reason are printed at most once a second.
static LOCAL_FAILURES: Throttle = Throttle::new();

/// One health check: `GET path` on a new connection with the `Host` of `checks`, within its
/// timeout in all; it passes when the status is one of `checks.statuses`.
///
/// # Errors
/// Why the check failed, in words for the console, and whether the backend is to blame.
pub fn probe(backend: &Backend, checks: &Checks) -> Result<(), Failed> {
    let timeout = checks.timeout;
    let deadline = Instant::now() + timeout;
    let late = || format!("no answer within {timeout:?} (--health-timeout)");
    let stream = match TcpStream::connect_timeout(&backend.addr, timeout) {
        Ok(stream) => stream,
        Err(e) if is_local_failure(&e) => return Err(Failed::Local(format!("{e}"))),
        Err(e) => return Err(Failed::Backend(connect_failed(&e, late))),
    };
    ask(backend, stream, checks, deadline, late).map_err(Failed::Backend)
}

/// Why a check could not connect, in the words of the other failures: a refusal, silence past
/// `--health-timeout` (`late`), or the system's own words.
fn connect_failed(e: &io::Error, late: impl Fn() -> String) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => late(),
        _ => format!("cannot connect: {e}"),
    }
}

/// Sends the check's request on `stream` and reads the answer's head by `deadline`.
fn ask(
    backend: &Backend,
    mut stream: TcpStream,
    checks: &Checks,
    deadline: Instant,
    late: impl Fn() -> String,
) -> Result<(), String> {
    // Time left before the deadline; `None` once it has passed.
    let left = || Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero());
    let host = match &checks.host {
        Some(host) => host,
        None => backend.url.strip_prefix("http://").unwrap_or(&backend.url),
    };
    let path = &checks.path;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\nConnection: close\r\n\r\n"
    );
    let Some(send_within) = left() else {
        return Err(late());
    };
    stream
        .set_write_timeout(Some(send_within))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(|e| format!("cannot send the check: {e}"))?;
    // Only the head matters: read until it is complete, and never more than a head may be.
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        match response::parse(&buf).map_err(|e| e.why.to_string())? {
            Parse::Complete { head, .. } if checks.statuses.contains(head.status) => return Ok(()),
            Parse::Complete { head, .. } => return Err(format!("status {}", head.status)),
            // (A head over MAX_HEAD is an error from the parser.)
            Parse::Partial => {}
        }
        let Some(left) = left() else {
            return Err(late());
        };
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err("connection closed before a response".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if crate::conn::is_timeout(&e) => return Err(late()),
            Err(e) => return Err(format!("reading the answer failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_that_times_out_says_so_as_a_silent_answer_does() {
        // A connect timeout needs a host that drops SYNs, which loopback never does: the
        // words are checked here, on the error the system gives.
        let late = || "no answer within 2s (--health-timeout)".to_string();
        for kind in [io::ErrorKind::TimedOut, io::ErrorKind::WouldBlock] {
            assert_eq!(connect_failed(&kind.into(), late), late());
        }
        let refused = io::ErrorKind::ConnectionRefused.into();
        assert_eq!(connect_failed(&refused, late), "connection refused");
        let other = io::Error::other("no route to host");
        assert_eq!(
            connect_failed(&other, late),
            "cannot connect: no route to host"
        );
    }
}
