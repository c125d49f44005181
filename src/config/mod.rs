//! Configuration: every default in one place, and the command-line parser.
//!
//! The chapter hard-codes its two backends and port 9000. Here they are the defaults
//! ([`Config::default`]), and flags change them. The parser is a table ([`FLAGS`], in
//! `config/flags.rs`): one row per flag with its value name, help text and default, and one
//! function that applies it. `--help` is printed from the same table, and the defaults it
//! shows are read from [`Config::default`], so none of them can drift apart.

pub mod file;
mod flags;
mod limits;
mod rules;
mod values;

use crate::proxy::trust::Cidr;
use file::{Setting, Source};
pub use flags::{FLAGS, Flag, Text, usage};
pub use limits::{
    CONNECTIONS_PER_SPARE, DEFAULT_MAX_CONNECTIONS_CEILING, DEFAULT_MAX_CONNECTIONS_FLOOR,
    FD_RESERVE, FDS_PER_CONNECTION, default_max_connections, max_connections_for, open_file_limit,
};
pub use rules::{is_own_address, weights_are_used};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;
pub use values::{parse_duration, parse_size};

/// Where the balancer listens unless `--listen` says otherwise (the chapter's port 9000).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9000";
/// Where the admin listener listens unless `--admin` says otherwise.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9001";
/// Port of the first demo backend (the chapter's Red Server); the next ones count up.
pub const DEMO_FIRST_PORT: u16 = 8001;
/// Demo backends started when no `--backend` is given: the chapter's Red and Blue.
pub const DEMO_DEFAULT_COUNT: usize = 2;
/// Most demo backends `--demo` starts (one per colour in [`crate::demo::COLOURS`]).
pub const DEMO_MAX: usize = 8;
/// Largest `weight=` accepted for a backend (nginx has no limit; this keeps sums small).
pub const MAX_WEIGHT: u32 = 1000;
/// Shortest `--backends-file-interval`: a stat of one file ten times a second is still
/// nothing, and a shorter interval would only burn a core's wake-ups.
pub const MIN_FILE_INTERVAL: Duration = Duration::from_millis(100);

/// How one run of the balancer is set up. [`Config::default`] is what `load-balancer` with
/// no flags does (apart from the demo backends, which `main` starts).
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the balanced listener (`--listen`).
    pub listen: SocketAddr,
    /// Backends to balance over (`--backend`, repeatable). Empty means "start demo backends".
    pub backends: Vec<BackendSpec>,
    /// How many demo backends to start (`--demo N`); `None` means "only if no `--backend`".
    pub demo: Option<usize>,
    /// Port of the first demo backend (`--demo-port`); the others take the next ones. `0`:
    /// every demo backend takes any free port.
    pub demo_port: u16,
    /// Load-balancing strategy (`--strategy`).
    pub strategy: StrategyKind,
    /// No per-request log lines (`--quiet`); errors still go to stderr.
    pub quiet: bool,
    /// Each log line says why the request went where it went (`--explain`).
    pub explain: bool,
    /// Limit on connecting to a backend (`--connect-timeout`, nginx's `proxy_connect_timeout`).
    pub connect_timeout: Duration,
    /// Limit on a backend's silence: no byte of the response (or of its body) for this long
    /// gives `504` or a closed connection (`--backend-timeout`, nginx's `proxy_read_timeout`).
    pub backend_timeout: Duration,
    /// Limit on a client's whole request head, from accept for a connection's first head and
    /// from its first byte for later ones (`--header-timeout`, nginx's
    /// `client_header_timeout`): past it, `408`.
    pub header_timeout: Duration,
    /// Limit on a client's silence while sending a body or taking a response
    /// (`--client-timeout`, nginx's `client_body_timeout` and `send_timeout`).
    pub client_timeout: Duration,
    /// How long an idle keep-alive client connection is kept (`--idle-timeout`).
    pub idle_timeout: Duration,
    /// Most client connections served at once (`--max-connections`); past it, `503`.
    pub max_connections: usize,
    /// Largest request body accepted, in bytes (`--max-body`); `None`: no limit.
    pub max_body: Option<u64>,
    /// Consecutive failures that take a backend out of rotation (`--max-fails`, nginx's `max_fails`).
    pub max_fails: u32,
    /// How long a failed backend stays out before a trial request (`--fail-timeout`).
    pub fail_timeout: Duration,
    /// Path for active health checks (`--health-check`); `None`: passive checks only.
    pub health_check: Option<String>,
    /// Time between active checks of one backend (`--health-interval`, HAProxy's `inter`).
    pub health_interval: Duration,
    /// Limit on one active check (`--health-timeout`).
    pub health_timeout: Duration,
    /// Consecutive passed checks that bring a backend back (`--rise`, HAProxy's `rise`).
    pub rise: u32,
    /// Consecutive failed checks that take a backend out (`--fall`, HAProxy's `fall`).
    pub fall: u32,
    /// Address of the admin listener (`--admin`); `None` with `--admin off`.
    pub admin: Option<SocketAddr>,
    /// `--admin` was given: failing to bind it stops start-up. The default address is only a
    /// convenience: if it is taken (another balancer runs), the balancer starts without it.
    pub admin_required: bool,
    /// The admin listener's Unix socket (`--admin unix:PATH`); then `admin` is `None`.
    pub admin_unix: Option<PathBuf>,
    /// Token every admin request must carry (`--admin-token-file`, or `--admin-token`): as a
    /// bearer token, or as the password of HTTP Basic credentials.
    pub admin_token: Option<String>,
    /// The host name `--admin` was given with (`--admin ops.internal:9001`), lowercase; `None`
    /// for an IP address. Admin requests must name the listener by an IP address,
    /// `localhost`, or this name (see [`crate::admin`]).
    pub admin_name: Option<String>,
    /// How long a shutdown waits for in-flight requests (`--drain-timeout`).
    pub drain_timeout: Duration,
    /// The file that manages the backend list (`--backends-file`). `backends` must hold its
    /// list at start ([`crate::backends::file::load`], which `main` calls); the balancer then
    /// re-reads it when it changes, and the admin API no longer adds or removes backends.
    pub backends_file: Option<PathBuf>,
    /// How often the backends file is checked for a change (`--backends-file-interval`): its
    /// modification time, size and inode, not its content.
    pub backends_file_interval: Duration,
    /// The access log's format (`--access-log-format`).
    pub access_log_format: LogFormat,
    /// Give every request an `X-Request-Id` (`--request-id`, [`crate::request_id`]).
    pub request_id: bool,
    /// The `Host` of health checks (`--health-host`); `None`: the backend's `HOST:PORT`.
    pub health_host: Option<String>,
    /// The statuses a health check passes with (`--health-status`).
    pub health_status: crate::http::statuses::StatusSet,
    /// The key of the sticky cookie (`--cookie-secret-file`): the cookie is then an HMAC of the
    /// backend's URL ([`crate::backends::member::Backend::tag`]); `None`: an unkeyed hash.
    pub cookie_secret: Option<crate::secret::Secret>,
    /// Peers whose forwarding fields are believed (`--trusted-proxy`, repeatable; nginx's
    /// `set_real_ip_from`); from them, also a PROXY header. Empty: nobody's.
    pub trusted_proxies: Vec<Cidr>,
    /// Every connection to the balanced listener opens with a PROXY protocol header, v1 or
    /// v2 (`--proxy-protocol`); its source address is the client's.
    pub proxy_protocol: bool,
    /// The config file (`--config`): its lines are flags, and SIGHUP reads it again.
    pub config_file: Option<PathBuf>,
    /// Only check the configuration, print it and exit (`--check`).
    pub check: bool,
    /// Every flag given, in the file or on the command line, in the order applied.
    pub settings: Vec<Setting>,
    /// The command line this configuration was parsed from, for a reload to parse again.
    pub command_line: Vec<String>,
    /// The demo backends `main` started and added to `backends` (`--demo` with `--backend`),
    /// which a reload keeps in the list.
    pub demo_backends: Vec<BackendSpec>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("the default listen address parses"),
            backends: Vec::new(),
            demo: None,
            demo_port: DEMO_FIRST_PORT,
            strategy: StrategyKind::RoundRobin,
            quiet: false,
            explain: false,
            connect_timeout: Duration::from_secs(2),
            backend_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            client_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: default_max_connections(),
            max_body: None,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            health_check: None,
            health_interval: Duration::from_secs(2),
            health_timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            admin: Some(
                DEFAULT_ADMIN
                    .parse()
                    .expect("the default admin address parses"),
            ),
            admin_required: false,
            admin_unix: None,
            admin_token: None,
            admin_name: None,
            drain_timeout: Duration::from_secs(10),
            backends_file: None,
            backends_file_interval: Duration::from_secs(1),
            access_log_format: LogFormat::Console,
            request_id: true,
            health_host: None,
            health_status: crate::http::statuses::StatusSet::default(),
            cookie_secret: None,
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
            config_file: None,
            check: false,
            settings: Vec::new(),
            command_line: Vec::new(),
            demo_backends: Vec::new(),
        }
    }
}

/// One backend as written on the command line: `http://HOST:PORT[,weight=N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// The URL as shown in logs and metrics: `http://HOST:PORT`, as the user wrote the host.
    pub url: String,
    /// The address connected to (the host resolved once, at start-up).
    pub addr: SocketAddr,
    /// Relative share of requests under `--strategy weighted` (default 1).
    pub weight: u32,
}

impl BackendSpec {
    /// Parses `http://HOST:PORT` with an optional `,weight=N`.
    ///
    /// # Errors
    /// A message naming what is wrong: not `http://`, a path, a missing port, a host that does
    /// not resolve, a weight that is not 1 to [`MAX_WEIGHT`].
    pub fn parse(text: &str) -> Result<BackendSpec, String> {
        let (url, options) = text.split_once(',').unwrap_or((text, ""));
        let mut weight = 1;
        for option in options.split(',').filter(|o| !o.is_empty()) {
            match option.split_once('=') {
                Some(("weight", w)) => {
                    weight = w
                        .parse()
                        .ok()
                        .filter(|w| (1..=MAX_WEIGHT).contains(w))
                        .ok_or_else(|| {
                            format!(
                                "weight must be a whole number from 1 to {MAX_WEIGHT}, not {w:?}"
                            )
                        })?;
                }
                _ => {
                    return Err(format!(
                        "unknown backend option {option:?} (only weight=N is known)"
                    ));
                }
            }
        }
        let hostport = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(
                    "https backends are not supported: this balancer speaks plain HTTP".into(),
                );
            }
            _ => return Err(format!("backend {url:?} must look like http://HOST:PORT")),
        };
        let hostport = hostport.strip_suffix('/').unwrap_or(hostport);
        if hostport.contains(['/', '?', '#', '@']) || hostport.is_empty() {
            return Err(format!(
                "backend {url:?} must be http://HOST:PORT, without a path"
            ));
        }
        let addr = resolve(hostport).map_err(|e| format!("backend {url:?}: {e}"))?;
        Ok(BackendSpec {
            url: format!("http://{hostport}"),
            addr,
            weight,
        })
    }
}

/// Resolves `HOST:PORT` to its first address.
fn resolve(hostport: &str) -> Result<SocketAddr, String> {
    let Some((_, port)) = hostport.rsplit_once(':') else {
        return Err("needs a port, as in 127.0.0.1:8001".into());
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("port {port:?} is not a number from 0 to 65535"));
    }
    hostport
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {hostport:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport:?} resolves to no address"))
}

/// Declares [`StrategyKind`] from one list of rows (below), so that a strategy's variant, its
/// `--strategy` name and whether it reads weights are written once: [`StrategyKind::ALL`],
/// [`StrategyKind::name`] and [`StrategyKind::reads_weights`] are made from the rows, and the
/// parser, `--help`, the error messages, the admin lab and the tests read those.
macro_rules! strategy_kinds {
    ($($(#[doc = $doc:literal])* $kind:ident = $name:literal, reads weights: $weights:literal;)*) => {
        /// The load-balancing strategies (`--strategy`), one file each under
        /// [`crate::backends::strategy`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum StrategyKind {
            $($(#[doc = $doc])* $kind,)*
        }

        impl StrategyKind {
            /// Every strategy, in the order of the rows (the order `--help` names them).
            pub const ALL: [StrategyKind; [$($name),*].len()] = [$(StrategyKind::$kind),*];

            /// The name used on the command line (`--strategy round-robin`).
            pub fn name(self) -> &'static str {
                match self {
                    $(StrategyKind::$kind => $name,)*
                }
            }

            /// Does the strategy read the backends' weights? A weight given under one that does
            /// not is an error, not ignored in silence ([`weights_are_used`]).
            pub fn reads_weights(self) -> bool {
                match self {
                    $(StrategyKind::$kind => $weights,)*
                }
            }
        }
    };
}

// A new strategy is one row here, its file in `src/backends/strategy/` with its `pub mod`
// line, and the arm of `strategy::build` that the compiler then asks for.
strategy_kinds! {
    /// Each backend in turn (the chapter's `itertools.cycle`).
    RoundRobin = "round-robin", reads weights: false;
    /// Smooth weighted round robin, as nginx does it.
    Weighted = "weighted", reads weights: true;
    /// The backend with the fewest requests in flight.
    LeastConn = "least-conn", reads weights: true;
    /// The client's IP address picks the backend (rendezvous hashing).
    IpHash = "ip-hash", reads weights: true;
    /// A cookie pins a client to the backend that served it first (sticky sessions).
    Cookie = "cookie", reads weights: false;
}

impl StrategyKind {
    /// The strategy called `name` on the command line, if any.
    pub fn parse(name: &str) -> Option<StrategyKind> {
        StrategyKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The names of the strategies `keep` keeps, in the order of [`StrategyKind::ALL`], for
    /// messages: `, ` between them, and `last` before the last one (`" or "`, or `", "`).
    pub fn names(keep: impl Fn(StrategyKind) -> bool, last: &str) -> String {
        let names: Vec<&str> = StrategyKind::ALL
            .into_iter()
            .filter(|k| keep(*k))
            .map(StrategyKind::name)
            .collect();
        match names.split_last() {
            Some((end, [])) => end.to_string(),
            Some((end, rest)) => format!("{}{last}{end}", rest.join(", ")),
            None => String::new(),
        }
    }

    /// Where the strategy is in [`StrategyKind::ALL`] (the rows declare the variants in that
    /// order, so this is a cast, not a search).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The formats of `--access-log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// The console line the README shows (the default): close to `combined`, easy to read.
    Console,
    /// nginx's `combined`, with the backend, the timings and the request id after it.
    Combined,
    /// One JSON object per line (JSON Lines).
    Json,
}

impl LogFormat {
    /// Every format with its flag name.
    pub const ALL: [(LogFormat, &'static str); 3] = [
        (LogFormat::Console, "console"),
        (LogFormat::Combined, "combined"),
        (LogFormat::Json, "json"),
    ];

    /// The name used on the command line (`--access-log-format json`).
    pub fn name(self) -> &'static str {
        LogFormat::ALL
            .iter()
            .find(|(f, _)| *f == self)
            .map_or("?", |(_, n)| n)
    }

    /// Does the format write `Referer` and `User-Agent` (so the proxy must keep them)?
    pub fn wants_agent(self) -> bool {
        self != LogFormat::Console
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run the balancer with this configuration.
    Run(Box<Config>),
    /// Print the usage and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
}

/// Parses the command line (without the program name), and the `--config` file it names.
///
/// Flags take their value as the next argument or after `=` (`--listen=127.0.0.1:80`). The
/// config file's lines are applied first, then the command line's flags, each of which
/// replaces the file's lines for the same flag ([`file::merge`]).
///
/// # Errors
/// A message naming the flag (and for the file, the file and line) and what is wrong with
/// it; `main` prints it and exits with status 2.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let command_line: Vec<String> = args.into_iter().collect();
    let mut given = Vec::new();
    let mut args = command_line.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--version" | "-V" => return Ok(Command::Version),
            _ => given.push(one_flag(arg, &mut args)?),
        }
    }
    let from_file = match given.iter().rev().find(|s| s.flag == "--config") {
        Some(s) => file::read(std::path::Path::new(&s.value))?,
        None => Vec::new(),
    };
    let settings = file::merge(from_file, given);
    let mut config = Config::default();
    for s in &settings {
        let flag = file::find(s.flag).expect("settings name flags of the table");
        (flag.apply)(&mut config, &s.value).map_err(|e| format!("{} {}: {e}", s.at, s.value))?;
    }
    config.settings = settings;
    config.command_line = command_line;
    rules::check(&mut config)?;
    Ok(Command::Run(Box::new(config)))
}

/// The flag `arg` (with its value: after `=`, or the next argument) as a [`Setting`].
fn one_flag<'a>(arg: &str, args: &mut impl Iterator<Item = &'a String>) -> Result<Setting, String> {
    let (name, inline) = match arg.split_once('=') {
        Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
        _ => (arg, None),
    };
    let flag = file::find(name).ok_or_else(|| {
        if name.starts_with('-') {
            format!("unknown flag {name}")
        } else {
            format!("unexpected argument {name:?} (flags start with --)")
        }
    })?;
    let value = match (flag.value, inline) {
        (None, None) => String::new(),
        (None, Some(_)) => return Err(format!("{name} takes no value")),
        (Some(_), Some(v)) => v,
        (Some(meta), None) => args
            .next()
            .cloned()
            .ok_or_else(|| format!("{name} needs a value ({meta})"))?,
    };
    Ok(Setting {
        flag: flag.name,
        value,
        source: Source::Flag,
        at: flag.name.to_string(),
    })
}

/// The configuration the command line `args` gives, for the unit tests of the parser.
#[cfg(test)]
pub(crate) fn run(args: &[&str]) -> Result<Config, String> {
    match parse_args(args.iter().map(|s| s.to_string()))? {
        Command::Run(c) => Ok(*c),
        other => panic!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = run(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert!(c.backends.is_empty());
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.strategy, StrategyKind::RoundRobin);
        assert!(
            !c.admin_required,
            "the default admin address may be skipped when taken"
        );
        assert!(run(&["--admin", "127.0.0.1:9100"]).unwrap().admin_required);
    }

    #[test]
    fn foot_guns_that_stay_allowed() {
        // The demo: no flags, a strategy alone, --demo, or --listen with a backend source.
        assert!(run(&[]).is_ok());
        assert!(run(&["--strategy", "cookie"]).is_ok());
        assert!(run(&["--listen", "127.0.0.1:9100", "--demo", "3"]).is_ok());
        let weighted = ["--backend", "http://127.0.0.1:8001,weight=3"];
        for strategy in ["weighted", "least-conn", "ip-hash"] {
            let mut args = vec!["--strategy", strategy];
            args.extend(weighted);
            assert_eq!(run(&args).unwrap().backends[0].weight, 3, "{strategy}");
        }
    }

    #[test]
    fn each_strategy_is_parsed_by_its_name() {
        for (i, kind) in StrategyKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), i, "{kind:?}");
            assert_eq!(StrategyKind::parse(kind.name()), Some(kind));
            assert_eq!(run(&["--strategy", kind.name()]).unwrap().strategy, kind);
        }
        assert_eq!(StrategyKind::parse("fastest"), None);
        assert_eq!(StrategyKind::parse("Round-Robin"), None);
    }

    #[test]
    fn strategy_names_are_listed_for_messages() {
        let names = StrategyKind::ALL.map(StrategyKind::name);
        assert_eq!(StrategyKind::names(|_| true, ", "), names.join(", "));
        let (last, rest) = names.split_last().unwrap();
        let or = format!("{} or {last}", rest.join(", "));
        assert_eq!(StrategyKind::names(|_| true, " or "), or);
        let two = |k| matches!(k, StrategyKind::RoundRobin | StrategyKind::Weighted);
        assert_eq!(StrategyKind::names(two, " or "), "round-robin or weighted");
        let one = |k| k == StrategyKind::Weighted;
        assert_eq!(StrategyKind::names(one, " or "), "weighted");
        assert_eq!(StrategyKind::names(|_| false, " or "), "");
    }

    #[test]
    fn errors_name_the_flag() {
        for (args, needle) in [
            (&["--nope"][..], "--nope"),
            (&["--listen"], "--listen needs a value"),
            (&["--listen", "nowhere"], "--listen"),
            (&["--backend", "127.0.0.1:8001"], "--backend"),
            (&["--backend", "https://x:1"], "https"),
            (&["--backend", "http://127.0.0.1"], "port"),
            (&["--backend", "http://127.0.0.1:1/path"], "path"),
            (&["--backend", "http://127.0.0.1:1,weight=0"], "weight"),
            (&["--strategy", "fastest"], "--strategy"),
            (&["--connect-timeout", "2x"], "--connect-timeout"),
            (&["--quiet=1"], "--quiet takes no value"),
            (
                &["--backends-file-interval", "10ms"],
                "--backends-file-interval 10ms",
            ),
            (&["stray"], "unexpected argument"),
            (&["--health-status", "200-"], "--health-status 200-"),
            (&["--health-host", "a b"], "--health-host a b"),
            (
                &["--config", "/nonexistent/lb.conf"],
                "--config /nonexistent/lb.conf",
            ),
        ] {
            let err = run(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }
}
