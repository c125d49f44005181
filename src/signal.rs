//! Ctrl-C, `SIGTERM` and `SIGHUP`: the signal becomes a number in an atomic, and `main` acts.
//!
//! The chapter's Python balancer dies with a `KeyboardInterrupt` traceback on Ctrl-C, cutting
//! whatever it was relaying. Here `SIGINT` (Ctrl-C) and `SIGTERM` (what `kill`, systemd and
//! Kubernetes send) start a graceful drain, and a second signal ends the process at once.
//! `SIGHUP`, the Unix convention for "read your configuration again" (nginx, HAProxy's
//! master, sshd), has `main` reload at once ([`hangups`]): [`crate::reload`] reads the command
//! line, `--config` and `--backends-file` again and applies what changed. It never ends the
//! process, as its default action would.
//!
//! The standard library has no signal API, so this file holds the crate's only `unsafe`: the
//! declaration of C's `signal` function (libc is linked by `std` already) and its one call,
//! made for each of the three signals.
//! A signal handler interrupts a thread at an arbitrary instruction, so it may only do what is
//! async-signal-safe; ours does one atomic addition and one atomic store, nothing else: no
//! allocation, no lock, no printing. The main thread polls [`received`] and does the rest.

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// `SIGINT`: Ctrl-C in the terminal (the number is 2 on every Unix, per POSIX's XSI list).
pub const SIGINT: i32 = 2;
/// `SIGTERM`: the polite request to stop (15 on every Unix).
pub const SIGTERM: i32 = 15;
/// `SIGHUP`: read the configuration again (1 on every Unix).
pub const SIGHUP: i32 = 1;

/// How many SIGINT/SIGTERM arrived since [`install`].
static RECEIVED: AtomicUsize = AtomicUsize::new(0);
/// The number of the last SIGINT/SIGTERM that arrived (0: none yet).
static LAST: AtomicI32 = AtomicI32::new(0);
/// How many SIGHUP arrived since [`install`].
static HANGUPS: AtomicUsize = AtomicUsize::new(0);

/// Signals that arrived so far (0 until the first).
pub fn received() -> usize {
    RECEIVED.load(Ordering::SeqCst)
}

/// SIGHUPs that arrived so far: `main` reloads the configuration when this grows.
pub fn hangups() -> usize {
    HANGUPS.load(Ordering::SeqCst)
}

/// The last signal that arrived, if any (for the exit status `128 + signal` on a hard stop).
pub fn last() -> Option<i32> {
    match LAST.load(Ordering::SeqCst) {
        0 => None,
        n => Some(n),
    }
}

/// The name of a signal this module handles, for messages.
pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "signal",
    }
}

/// The handler: atomics only, which are lock-free on every platform std supports, and so
/// async-signal-safe.
#[cfg(unix)]
extern "C" fn on_signal(signal: std::ffi::c_int) {
    LAST.store(signal, Ordering::SeqCst);
    RECEIVED.fetch_add(1, Ordering::SeqCst);
}

/// The SIGHUP handler: one atomic addition, nothing more (async-signal-safe, as above).
#[cfg(unix)]
extern "C" fn on_hangup(_signal: std::ffi::c_int) {
    HANGUPS.fetch_add(1, Ordering::SeqCst);
}

#[cfg(unix)]
mod ffi {
    use std::ffi::c_int;

    /// C's `sighandler_t`: a pointer to a handler function, or one of the special values;
    /// `usize` has the size of a function pointer on every target std supports.
    pub type SigHandler = usize;
    /// What `signal` returns on failure (`SIG_ERR`, which is `(sighandler_t) -1`).
    pub const SIG_ERR: SigHandler = usize::MAX;

    // SAFETY: this is the C standard library's `signal` (ISO C 7.14.1.1, POSIX), with the
    // signature libc gives it: `sighandler_t signal(int signum, sighandler_t handler)`.
    // std links the C library on every Unix, so the symbol exists.
    unsafe extern "C" {
        pub fn signal(signum: c_int, handler: SigHandler) -> SigHandler;
    }
}

/// Installs the handlers for SIGINT and SIGTERM (drain) and SIGHUP (re-read). On glibc, musl
/// and the BSDs, `signal` keeps the handler installed after it runs and restarts interrupted
/// system calls (BSD semantics), so the balancer's blocking reads and accepts are not
/// disturbed.
///
/// # Errors
/// The C library refused to install a handler (it does not for these three signals).
#[cfg(unix)]
pub fn install() -> std::io::Result<()> {
    let drain: extern "C" fn(std::ffi::c_int) = on_signal;
    let reread: extern "C" fn(std::ffi::c_int) = on_hangup;
    for (signal, handler) in [(SIGINT, drain), (SIGTERM, drain), (SIGHUP, reread)] {
        // SAFETY: `signal` is the C function declared above, called with a valid signal
        // number and a pointer to an `extern "C" fn(c_int)`, the type C expects of a handler.
        // The handler touches only atomics (async-signal-safe) and never unwinds.
        let previous = unsafe { ffi::signal(signal, handler as ffi::SigHandler) };
        if previous == ffi::SIG_ERR {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Without Unix signals, nothing to install: the process stops as the platform stops it.
///
/// # Errors
/// None on this platform.
#[cfg(not(unix))]
pub fn install() -> std::io::Result<()> {
    Ok(())
}
