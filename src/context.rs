//! What every connection thread of one balancer shares: the chapter's module-level globals
//! (`BACKENDS`, the `itertools.cycle`), gathered in one value.
//!
//! [`Shared`] is built once by [`crate::server::Balancer::start`] and read by
//! [`crate::proxy::serve`] for every request and by the admin listener ([`crate::admin`]).
//! The layers under the proxy do not see it: they are handed the values they use (a
//! [`Timeouts`], a backend, a limit).

use crate::backends::Backends;
use crate::backends::checker::Checker;
use crate::backends::file::FileState;
use crate::backends::health::Policy;
use crate::config::Config;
use crate::conn::Timeouts;
use crate::log::AccessLog;
use crate::metrics::ServerStats;
use crate::poison::IgnorePoison;
use crate::proxy::rewrite::via_entry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::SystemTime;

/// The settings in force: what a reload ([`crate::reload`]) replaces whole. A request
/// reads them once ([`Shared::live`]) and keeps that copy to its end, so a reload never
/// changes a request half-way.
#[derive(Debug)]
pub struct Live {
    /// The configuration (with `listen` the address really bound, and the settings that
    /// need a restart as the balancer was started with).
    pub config: Config,
    /// The time limits of client and backend connections, from `config`.
    pub timeouts: Timeouts,
    /// Which reload put these settings in force (0: the start).
    pub generation: u64,
}

impl Live {
    /// The settings of `config`.
    pub fn of(config: Config) -> Live {
        Live {
            timeouts: Timeouts::of(&config),
            config,
            generation: 0,
        }
    }
}

/// How the reloads of the configuration went (`SIGHUP`, `POST /reload`), for `/metrics`
/// and `/status.json`.
#[derive(Debug, Default, Clone)]
pub struct Reloads {
    /// Reloads taken.
    pub taken: u64,
    /// Reloads refused (a bad file): nothing changed.
    pub refused: u64,
    /// Why the last one was refused; `None` when it was taken (or none was asked for).
    pub last_error: Option<String>,
    /// When the last reload was taken.
    pub last_taken: Option<SystemTime>,
}

/// Everything the connection threads share: configuration, backends, counters.
#[derive(Debug)]
pub struct Shared {
    /// The settings in force; read them with [`Shared::live`].
    live: RwLock<Arc<Live>>,
    /// The [`Live::generation`] in force: a request whose copy is as new reads no lock.
    generation: AtomicU64,
    /// The time limits the listener gives each accepted socket (those of the start).
    pub accept_timeouts: Timeouts,
    /// The backends, changeable at run time, with the strategy that picks among them.
    pub backends: Arc<Backends>,
    /// The access log and recent routing decisions.
    pub log: AccessLog,
    /// Balancer-wide counters (the listener counts connections in them).
    pub stats: Arc<ServerStats>,
    /// This balancer's `Via` entry, a pseudonym of this run ([`via_entry`]): forwarded
    /// requests carry it, and a request that already does is a loop.
    pub via: String,
    /// With `--backends-file`: the file that manages the backend list, and how its reads went.
    pub file: Option<Arc<FileState>>,
    /// The active health checker (`--health-check`), which a reload may restart.
    pub checker: Mutex<Option<Checker>>,
    /// How the reloads went ([`crate::reload`]); its lock also lets one reload run at a time.
    pub reloads: Mutex<Reloads>,
    /// The addresses this process listens on, as bound (the balancer's, the admin's on TCP),
    /// set once both are: no backend may be one of them, whoever names it.
    pub own: OnceLock<Vec<SocketAddr>>,
}

impl Shared {
    /// Shared state for `config`, whose `listen` is the address really bound (the port
    /// chosen when it asked for port 0).
    pub fn new(config: Config) -> Shared {
        let policy = Policy {
            max_fails: config.max_fails,
            fail_timeout: config.fail_timeout,
        };
        Shared {
            accept_timeouts: Timeouts::of(&config),
            backends: Arc::new(Backends::keyed(
                &config.backends,
                config.strategy,
                policy,
                config.cookie_secret.clone(),
            )),
            log: AccessLog::new(config.quiet, config.access_log_format),
            stats: Arc::default(),
            via: via_entry(config.listen, std::process::id(), SystemTime::now()),
            file: config
                .backends_file
                .clone()
                .map(|path| Arc::new(FileState::new(path, &config.backends))),
            checker: Mutex::new(None),
            reloads: Mutex::default(),
            own: OnceLock::new(),
            live: RwLock::new(Arc::new(Live::of(config))),
            generation: AtomicU64::new(0),
        }
    }

    /// The settings in force now: one uncontended read lock and a reference count.
    pub fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live.read().ignore_poison())
    }

    /// `held` if it is still the settings in force (one load of a counter no request
    /// writes), else the settings in force now.
    pub fn refresh(&self, held: &mut Arc<Live>) {
        if self.generation.load(Ordering::Acquire) != held.generation {
            *held = self.live();
        }
    }

    /// Puts `live` in force for the requests that start from now.
    pub fn set_live(&self, mut live: Live) {
        let mut slot = self.live.write().ignore_poison();
        live.generation = slot.generation + 1;
        let generation = live.generation;
        *slot = Arc::new(live);
        // After the swap: whoever sees the new number finds the new settings.
        self.generation.store(generation, Ordering::Release);
    }
}
