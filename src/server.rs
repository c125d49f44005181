//! A running balancer: the chapter's `HTTPServer(('localhost', 9000), ...).serve_forever()`,
//! with a clean stop.
//!
//! [`Balancer::start`] binds, builds the shared context ([`Shared`]), and starts the parts:
//! the [`Admin`] listener first (so that a bad `--admin` fails start-up before the rest
//! starts), the health [`Checker`], the [`Watcher`] of `--backends-file`, the [`Listener`] whose
//! connections go to [`proxy::serve`], and the access log's writer. [`Balancer::shutdown`]
//! (or dropping the handle) stops accepting, lets requests in flight finish for up to
//! `--drain-timeout`, closes idle keep-alive connections, joins its own threads (health
//! checker, file watcher, log writer) and stops the admin listener; connection threads still
//! busy when the drain timeout runs out end with the process.

use crate::admin::{Admin, Drills};
use crate::backends::checker::Checker;
use crate::backends::file::Watcher;
use crate::config::{self, Config};
use crate::console;
use crate::context::Shared;
use crate::listener::{Listener, Options, Threads};
use crate::log;
use crate::poison::IgnorePoison;
use crate::proxy;
use crate::reload;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A running balancer.
#[derive(Debug)]
pub struct Balancer {
    shared: Arc<Shared>,
    listener: Option<Listener>,
    /// The access log's writer thread.
    log_writer: Option<log::Writer>,
    /// The thread that follows `--backends-file`.
    watcher: Option<Watcher>,
    admin: Option<Admin>,
}

/// What a shutdown did, for the closing summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Requests answered over the whole run.
    pub requests: u64,
    /// Connections accepted over the whole run.
    pub accepted: u64,
    /// Connections still open when the drain timeout ran out (0 after a clean drain).
    pub abandoned: u64,
    /// How long the drain took.
    pub drain: Duration,
}

impl Balancer {
    /// Binds `config.listen` and starts serving.
    ///
    /// # Errors
    /// The address cannot be bound (in use, not local, no permission); the message names it.
    pub fn start(config: Config) -> io::Result<Balancer> {
        Balancer::start_with(config, None)
    }

    /// Like [`Balancer::start`], with failure drills the admin listener can switch (the
    /// demo backends' `/demo/...` and the status page's buttons).
    ///
    /// # Errors
    /// The address cannot be bound (in use, not local, no permission); the message names it.
    pub fn start_with_drills(config: Config, drills: Arc<dyn Drills>) -> io::Result<Balancer> {
        Balancer::start_with(config, Some(drills))
    }

    fn start_with(mut config: Config, drills: Option<Arc<dyn Drills>>) -> io::Result<Balancer> {
        let listener = TcpListener::bind(config.listen).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen on {}: {e}", config.listen))
        })?;
        // From here on `listen` is what was bound (port 0 becomes the port chosen), so that
        // the admin API can refuse a backend that is this listener.
        config.listen = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let live = shared.live();
        let config = &live.config;
        warn_if_over_budget(config.max_connections);
        // The admin listener is bound before any thread starts, so a bad --admin fails start-up.
        let admin = start_admin(&shared, drills)?;
        if let Some(checks) = reload::checks(config) {
            let checker = Checker::start(Arc::clone(&shared.backends), checks)?;
            *shared.checker.lock().ignore_poison() = Some(checker);
        }
        let admin_addr = admin.as_ref().and_then(Admin::addr);
        let _ = shared.own.set(
            [Some(config.listen), admin_addr]
                .into_iter()
                .flatten()
                .collect(),
        );
        let watcher = watch(&shared, config, admin_addr)?;
        let options = Options {
            name: "accept".into(),
            worker: "client",
            max_connections: config.max_connections,
            refusal: "too many connections (--max-connections)",
            timeouts: shared.accept_timeouts,
            stats: Arc::clone(&shared.stats),
        };
        let listener = {
            let shared = Arc::clone(&shared);
            Listener::start(listener, options, move |conn| proxy::serve(conn, &shared))?
        };
        let log_writer = log::Writer::start(Arc::clone(&shared), |shared| &shared.log)?;
        Ok(Balancer {
            shared,
            listener: Some(listener),
            log_writer: Some(log_writer),
            watcher,
            admin,
        })
    }

    /// The address the balancer listens on (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.shared.live().config.listen
    }

    /// The address of the admin listener, when it listens on TCP.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(Admin::addr)
    }

    /// The path of the admin listener's socket, with `--admin unix:PATH`.
    pub fn admin_socket(&self) -> Option<&std::path::Path> {
        self.admin.as_ref().and_then(Admin::socket_path)
    }

    /// The state shared with the connection threads (backends, counters, ...).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Reads `--config` and `--backends-file` again and applies them whole, or nothing
    /// (`SIGHUP`; see [`reload`]).
    ///
    /// # Errors
    /// Why the files were refused; the settings in force stay.
    pub fn reload(&self, by: &str) -> Result<reload::Outcome, String> {
        reload::reload(&self.shared, by)
    }

    /// The connection threads: how many wait for a connection, how many were started.
    pub fn threads(&self) -> Option<Arc<Threads>> {
        self.listener.as_ref().map(|l| Arc::clone(l.threads()))
    }

    /// Stops accepting, waits up to `--drain-timeout` for requests in flight, closes idle
    /// keep-alive connections, and returns what happened.
    pub fn shutdown(mut self) -> Summary {
        self.stop()
    }

    fn stop(&mut self) -> Summary {
        let started = Instant::now();
        let abandoned = self
            .listener
            .take()
            .map_or(0, |l| l.stop(self.shared.live().config.drain_timeout));
        let checker = self.shared.checker.lock().map(|mut c| c.take());
        if let Ok(Some(checker)) = checker {
            checker.stop();
        }
        if let Some(watcher) = self.watcher.take() {
            watcher.stop();
        }
        if let Some(log_writer) = self.log_writer.take() {
            log_writer.stop();
        }
        self.shared.log.flush();
        // The admin listener stays up during the drain, so it can be watched.
        if let Some(admin) = self.admin.take() {
            admin.stop();
        }
        Summary {
            requests: self.shared.stats.requests.load(Ordering::Relaxed),
            accepted: self.shared.stats.accepted.load(Ordering::Relaxed),
            abandoned,
            drain: started.elapsed(),
        }
    }
}

/// Says so when `--max-connections` asks for more connections than the open-file limit can
/// hold ([`config::max_connections_for`]): past it, `accept` and backend connections fail
/// with "Too many open files" before the cap answers `503`.
fn warn_if_over_budget(max_connections: usize) {
    let Some(limit) = config::open_file_limit() else {
        return;
    };
    let fits = config::max_connections_for(limit);
    if max_connections > fits {
        console::error(format_args!(
            "[LoadBalancer] warning: --max-connections {max_connections} is more than the open-file \
             limit ({limit}) can hold, about {fits} (two descriptors per connection, and a reserve); \
             raise the limit (ulimit -n, LimitNOFILE=) or lower the cap"
        ));
    }
}

/// The watcher of `--backends-file`, when there is one.
fn watch(
    shared: &Shared,
    config: &Config,
    admin: Option<SocketAddr>,
) -> io::Result<Option<Watcher>> {
    let Some(file) = &shared.file else {
        return Ok(None);
    };
    let watcher = Watcher::start(
        Arc::clone(file),
        Arc::clone(&shared.backends),
        [Some(config.listen), admin].into_iter().flatten().collect(),
        config.backends_file_interval,
    )?;
    Ok(Some(watcher))
}

/// Starts the admin listener of `shared.config`: on its Unix socket, on its TCP address, or
/// none. Only the default address may be skipped when taken (a second balancer on one
/// machine).
fn start_admin(shared: &Arc<Shared>, drills: Option<Arc<dyn Drills>>) -> io::Result<Option<Admin>> {
    let live = shared.live();
    let config = &live.config;
    if let Some(path) = &config.admin_unix {
        return Admin::start_unix(path, Arc::clone(shared), drills).map(Some);
    }
    let Some(addr) = config.admin else {
        return Ok(None);
    };
    match Admin::start(addr, Arc::clone(shared), drills) {
        Ok(admin) => Ok(Some(admin)),
        Err(e) if !config.admin_required && e.kind() == io::ErrorKind::AddrInUse => {
            console::error(format_args!(
                "[Admin] not started: {e} (pass --admin ADDR or --admin off)"
            ));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if self.listener.is_some() {
            self.stop();
        }
    }
}
