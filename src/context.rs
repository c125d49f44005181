//! What every connection thread of one balancer shares: the chapter's module-level globals
//! (`BACKENDS`, the `itertools.cycle`), gathered in one value.
//!
//! [`Shared`] is built once by [`crate::server::Balancer::start`] and read by
//! [`crate::proxy::serve`] for every request and by the admin listener ([`crate::admin`]).
//! The layers under the proxy do not see it: they are handed the values they use (a
//! [`Timeouts`], a backend, a limit).

use crate::backends::Backends;
use crate::backends_file::FileState;
use crate::config::Config;
use crate::conn::Timeouts;
use crate::health::Policy;
use crate::log::AccessLog;
use crate::metrics::ServerStats;
use crate::rewrite::via_entry;
use std::sync::Arc;
use std::time::SystemTime;

/// Everything the connection threads share: configuration, backends, counters.
#[derive(Debug)]
pub struct Shared {
    /// The configuration this balancer was started with.
    pub config: Config,
    /// The time limits of client and backend connections, from the configuration.
    pub timeouts: Timeouts,
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
            timeouts: Timeouts::of(&config),
            backends: Arc::new(Backends::new(&config.backends, config.strategy, policy)),
            log: AccessLog::new(config.quiet),
            stats: Arc::default(),
            via: via_entry(config.listen, std::process::id(), SystemTime::now()),
            file: config
                .backends_file
                .clone()
                .map(|path| Arc::new(FileState::new(path, &config.backends))),
            config,
        }
    }
}
