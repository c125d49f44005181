//! Configuration: every default in one place, and the command-line parser.
//!
//! The chapter hard-codes its two backends and port 9000. Here they are the defaults, and
//! flags change them. The parser is a table ([`FLAGS`]): one row per flag with its value
//! name, default and help text, and one function that applies it. `--help` is printed from the
//! same table, so the two cannot drift apart.

pub mod file;
mod rules;

use crate::proxy::trust::Cidr;
use file::{Setting, Source};
pub use rules::weights_are_used;
use rules::{one_source_of_backends, some_source_of_backends};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

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
/// Ceiling of the default connection cap (`--max-connections`).
pub const DEFAULT_MAX_CONNECTIONS_CEILING: usize = 16_384;
/// File descriptors kept back from the connection cap (at most half the open-file limit):
/// listeners and admin connections (about 40), idle pooled upstream connections beyond
/// those of the clients open now ([`crate::backends::member::POOL_MAX_IDLE`], 256), and health checks
/// (one connection per backend per round; with more than about 200 backends and
/// `--health-check`, set `--max-connections` by hand).
pub const FD_RESERVE: usize = 512;
/// Descriptors one proxied client connection holds: its own, and its backend's.
pub const FDS_PER_CONNECTION: usize = 2;
/// Connections per spare thread waiting in `accept`: a listener keeps at most one spare per
/// this many connections of its cap, and Linux reserves a descriptor for each while it waits.
pub const CONNECTIONS_PER_SPARE: usize = 8;

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

/// The load-balancing strategies (`--strategy`), one file each under [`crate::backends::strategy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyKind {
    /// Each backend in turn (the chapter's `itertools.cycle`).
    RoundRobin,
    /// Smooth weighted round robin, as nginx does it.
    Weighted,
    /// The backend with the fewest requests in flight.
    LeastConn,
    /// The client's IP address picks the backend (rendezvous hashing).
    IpHash,
    /// A cookie pins a client to the backend that served it first (sticky sessions).
    Cookie,
}

impl StrategyKind {
    /// Every strategy with its flag name.
    pub const ALL: [(StrategyKind, &'static str); 5] = [
        (StrategyKind::RoundRobin, "round-robin"),
        (StrategyKind::Weighted, "weighted"),
        (StrategyKind::LeastConn, "least-conn"),
        (StrategyKind::IpHash, "ip-hash"),
        (StrategyKind::Cookie, "cookie"),
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("?", |(_, n)| n)
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

/// One row of the flag table.
pub struct Flag {
    /// The flag, with its dashes.
    pub name: &'static str,
    /// Name of the value in the usage (`ADDR`), or `None` for a switch.
    pub value: Option<&'static str>,
    /// The default, as shown in `--help`.
    pub default: &'static str,
    /// One line of help.
    pub help: &'static str,
    apply: fn(&mut Config, &str) -> Result<(), String>,
}

/// Every flag the balancer knows (except `--help` and `--version`).
pub const FLAGS: &[Flag] = &[
    Flag {
        name: "--config",
        value: Some("PATH"),
        default: "none",
        help: "read flags from this file, one a line without the dashes (listen 0.0.0.0:80); flags given here win; SIGHUP reads it again",
        apply: |c, v| {
            if v.is_empty() {
                return Err("needs the path of a file".into());
            }
            c.config_file = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Flag {
        name: "--check",
        value: None,
        default: "off",
        help: "read the flags, --config and --backends-file, print every setting and where it came from, and exit (0: good, 2: not)",
        apply: |c, _| {
            c.check = true;
            Ok(())
        },
    },
    Flag {
        name: "--listen",
        value: Some("ADDR"),
        default: DEFAULT_LISTEN,
        help: "address of the balanced listener",
        apply: |c, v| {
            c.listen = resolve(v)?;
            Ok(())
        },
    },
    Flag {
        name: "--backend",
        value: Some("URL"),
        default: "the demo backends",
        help: "a backend, http://HOST:PORT[,weight=N]; repeat for more",
        apply: |c, v| {
            c.backends.push(BackendSpec::parse(v)?);
            Ok(())
        },
    },
    Flag {
        name: "--backends-file",
        value: Some("PATH"),
        default: "none",
        help: "the backends, one URL a line as --backend takes it; re-read when it changes or on SIGHUP",
        apply: |c, v| {
            if v.is_empty() {
                return Err("needs the path of a file".into());
            }
            c.backends_file = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Flag {
        name: "--backends-file-interval",
        value: Some("DUR"),
        default: "1s",
        help: "how often --backends-file is checked for a change (its time, size and inode)",
        apply: |c, v| {
            let d = parse_duration(v)?;
            if d < MIN_FILE_INTERVAL {
                return Err(format!("must be at least {MIN_FILE_INTERVAL:?}"));
            }
            c.backends_file_interval = d;
            Ok(())
        },
    },
    Flag {
        name: "--demo",
        value: Some("N"),
        default: "2 without --backend",
        help: "start N demo backends (Red, Blue, Green, ...) on ports 8001 and up; with --backends-file, the file says which are balanced",
        apply: |c, v| {
            c.demo = Some(parse_count(v, 1, DEMO_MAX as u32)? as usize);
            Ok(())
        },
    },
    Flag {
        name: "--demo-port",
        value: Some("PORT"),
        default: "8001",
        help: "port of the first demo backend, the others count up; 0: any free ports",
        apply: |c, v| {
            let port = parse_count(v, 0, u32::from(u16::MAX - DEMO_MAX as u16))?;
            c.demo_port = port as u16;
            Ok(())
        },
    },
    Flag {
        name: "--strategy",
        value: Some("NAME"),
        default: "round-robin",
        help: "round-robin, weighted, least-conn, ip-hash or cookie",
        apply: |c, v| {
            let found = StrategyKind::ALL.iter().find(|(_, n)| *n == v);
            c.strategy = found.map(|(k, _)| *k).ok_or_else(|| {
                format!(
                    "unknown strategy {v:?} (round-robin, weighted, least-conn, ip-hash, cookie)"
                )
            })?;
            Ok(())
        },
    },
    Flag {
        name: "--cookie-secret-file",
        value: Some("PATH"),
        default: "none",
        help: "key of the sticky cookie (mode 0600, 16+ bytes): the cookie is an HMAC of the backend, not a plain hash",
        apply: |c, v| {
            c.cookie_secret = Some(crate::secret::read_cookie_secret(std::path::Path::new(v))?);
            Ok(())
        },
    },
    Flag {
        name: "--quiet",
        value: None,
        default: "off",
        help: "no line per request (errors still go to stderr)",
        apply: |c, _| {
            c.quiet = true;
            Ok(())
        },
    },
    Flag {
        name: "--explain",
        value: None,
        default: "off",
        help: "end each log line with why the request went there (why=\"round robin: ...\")",
        apply: |c, _| {
            c.explain = true;
            Ok(())
        },
    },
    Flag {
        name: "--connect-timeout",
        value: Some("DUR"),
        default: "2s",
        help: "limit on connecting to a backend; then the next one",
        apply: |c, v| {
            c.connect_timeout = parse_duration(v)?;
            Ok(())
        },
    },
    Flag {
        name: "--backend-timeout",
        value: Some("DUR"),
        default: "30s",
        help: "limit on a backend's silence; then 504",
        apply: |c, v| {
            c.backend_timeout = parse_duration(v)?;
            Ok(())
        },
    },
    Flag {
        name: "--header-timeout",
        value: Some("DUR"),
        default: "10s",
        help: "limit on receiving a request head; then 408",
        apply: |c, v| {
            c.header_timeout = parse_duration(v)?;
            Ok(())
        },
    },
    Flag {
        name: "--client-timeout",
        value: Some("DUR"),
        default: "30s",
        help: "limit on a client's silence while sending a body or reading a response",
        apply: |c, v| {
            c.client_timeout = parse_duration(v)?;
            Ok(())
        },
    },
    Flag {
        name: "--idle-timeout",
        value: Some("DUR"),
        default: "60s",
        help: "how long an idle keep-alive client connection is kept",
        apply: |c, v| {
            c.idle_timeout = parse_duration(v)?;
            Ok(())
        },
    },
    Flag {
        name: "--max-connections",
        value: Some("N"),
        default: "open-file limit - 512, 64 to 16384",
        help: "client connections served at once; past it, 503",
        apply: |c, v| {
            c.max_connections = parse_count(v, 1, 1_000_000)? as usize;
            Ok(())
        },
    },
    Flag {
        name: "--max-body",
        value: Some("SIZE"),
        default: "no limit",
        help: "largest request body, e.g. 10m or 1g; past it, 413",
        apply: |c, v| {
            c.max_body = Some(parse_size(v)?);
            Ok(())
        },
    },
    Flag {
        name: "--max-fails",
        value: Some("N"),
        default: "1",
        help: "consecutive failures that take a backend out of rotation",
        apply: |c, v| {
            c.max_fails = parse_count(v, 1, 1000)?;
            Ok(())
        },
    },
    Flag {
        name: "--fail-timeout",
        value: Some("DUR"),
        default: "10s",
        help: "how long a failed backend stays out before a trial request",
        apply: |c, v| {
            c.fail_timeout = parse_duration(v)?;
            Ok(())
        },
    },
    Flag {
        name: "--health-check",
        value: Some("PATH"),
        default: "off",
        help: "turn on active health checks: GET PATH on every backend",
        apply: |c, v| {
            if !v.starts_with('/') || v.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
                return Err(format!("{v:?} must be a path such as /health"));
            }
            c.health_check = Some(v.to_string());
            Ok(())
        },
    },
    Flag {
        name: "--health-host",
        value: Some("NAME"),
        default: "the backend's HOST:PORT",
        help: "the Host of health checks (a virtual host answers only for its name)",
        apply: |c, v| {
            let ok = |b: u8| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b);
            if v.is_empty() || !v.bytes().all(ok) {
                return Err("must be a host name, with an optional :PORT".into());
            }
            c.health_host = Some(v.to_string());
            Ok(())
        },
    },
    Flag {
        name: "--health-status",
        value: Some("LIST"),
        default: "200-399",
        help: "the statuses a health check passes with, e.g. 200-399,401",
        apply: |c, v| {
            c.health_status = crate::http::statuses::StatusSet::parse(v)?;
            Ok(())
        },
    },
    Flag {
        name: "--health-interval",
        value: Some("DUR"),
        default: "2s",
        help: "time between two checks of a backend",
        apply: |c, v| {
            c.health_interval = parse_duration(v)?;
            Ok(())
        },
    },
    Flag {
        name: "--health-timeout",
        value: Some("DUR"),
        default: "1s, or the interval if shorter",
        help: "limit on one check",
        apply: |c, v| {
            c.health_timeout = parse_duration(v)?;
            Ok(())
        },
    },
    Flag {
        name: "--rise",
        value: Some("N"),
        default: "2",
        help: "passed checks in a row that bring a backend back",
        apply: |c, v| {
            c.rise = parse_count(v, 1, 1000)?;
            Ok(())
        },
    },
    Flag {
        name: "--fall",
        value: Some("N"),
        default: "3",
        help: "failed checks in a row that take a backend out",
        apply: |c, v| {
            c.fall = parse_count(v, 1, 1000)?;
            Ok(())
        },
    },
    Flag {
        name: "--admin",
        value: Some("ADDR"),
        default: DEFAULT_ADMIN,
        help: "address of the admin listener (metrics, status page, backend API), unix:PATH for a 0600 socket, or off",
        apply: |c, v| {
            c.admin_unix = v.strip_prefix("unix:").map(PathBuf::from);
            if c.admin_unix
                .as_ref()
                .is_some_and(|p| p.as_os_str().is_empty())
            {
                return Err("needs the path of the socket: unix:/run/lb/admin.sock".into());
            }
            c.admin = match v {
                "off" => None,
                _ if c.admin_unix.is_some() => None,
                _ => Some(resolve(v)?),
            };
            c.admin_required = v != "off";
            c.admin_name = admin_name(v).filter(|_| c.admin.is_some());
            Ok(())
        },
    },
    Flag {
        name: "--admin-token-file",
        value: Some("PATH"),
        default: "none",
        help: "admin requests need the token in this file (mode 0600; Bearer, or as a Basic password)",
        apply: |c, v| {
            c.admin_token = Some(crate::secret::read_token_file(std::path::Path::new(v))?);
            Ok(())
        },
    },
    Flag {
        name: "--admin-token",
        value: Some("TOKEN"),
        default: "none",
        help: "the token as a value: every user sees it in ps; use --admin-token-file",
        apply: |c, v| {
            if v.is_empty() || v.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
                return Err("the token must be visible ASCII characters, without spaces".into());
            }
            c.admin_token = Some(v.to_string());
            Ok(())
        },
    },
    Flag {
        name: "--access-log-format",
        value: Some("NAME"),
        default: "console",
        help: "console (the line shown in the README), combined (nginx's) or json (JSON Lines)",
        apply: |c, v| {
            let found = LogFormat::ALL.iter().find(|(_, n)| *n == v);
            c.access_log_format = found
                .map(|(f, _)| *f)
                .ok_or_else(|| format!("unknown format {v:?} (console, combined, json)"))?;
            Ok(())
        },
    },
    Flag {
        name: "--trusted-proxy",
        value: Some("CIDR"),
        default: "none",
        help: "believe X-Forwarded-For/-Proto/-Host and Forwarded from peers in this range (10.0.0.0/8, ::1); repeat for more",
        apply: |c, v| {
            c.trusted_proxies.push(Cidr::parse(v)?);
            Ok(())
        },
    },
    Flag {
        name: "--request-id",
        value: Some("on|off"),
        default: "on",
        help: "give each request an X-Request-Id (kept from the client when sane), sent to the backend, returned and logged",
        apply: |c, v| {
            c.request_id = match v {
                "on" => true,
                "off" => false,
                _ => return Err("must be on or off".into()),
            };
            Ok(())
        },
    },
    Flag {
        name: "--proxy-protocol",
        value: None,
        default: "off",
        help: "every connection starts with a PROXY protocol header (v1 or v2) naming the client; with --trusted-proxy, only from those peers",
        apply: |c, _| {
            c.proxy_protocol = true;
            Ok(())
        },
    },
    Flag {
        name: "--drain-timeout",
        value: Some("DUR"),
        default: "10s",
        help: "on SIGINT/SIGTERM, how long to wait for requests in flight",
        apply: |c, v| {
            c.drain_timeout = parse_duration(v)?;
            Ok(())
        },
    },
];

/// The usage text: one line per flag, from [`FLAGS`].
pub fn usage() -> String {
    let mut out = String::from(
        "Usage: load-balancer [FLAGS]\n\n\
         A round-robin HTTP/1.1 load balancer. With no --backend, it starts demo backends\n\
         (Red on 127.0.0.1:8001, Blue on 8002) and balances them on 127.0.0.1:9000.\n\
         Durations are written 250ms, 2s, 1m or 1h (a bare number is seconds).\n\nFlags:\n",
    );
    for f in FLAGS {
        let left = format!("{} {}", f.name, f.value.unwrap_or(""));
        out.push_str(&format!(
            "  {left:<25} {} [default: {}]\n",
            f.help, f.default
        ));
    }
    out.push_str("  --help                    print this help\n  --version                 print the version\n");
    out
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
    check(&mut config)?;
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

/// What no single flag can check: defaults that follow the flags given, and flags that
/// conflict with each other.
fn check(config: &mut Config) -> Result<(), String> {
    let given = |name: &str| config.settings.iter().find(|s| s.flag == name);
    one_source_of_backends(given("--backend"), given("--backends-file"))?;
    some_source_of_backends(&config.settings)?;
    // A default follows the values the user did give; only two given values can conflict.
    match (
        given("--health-interval").is_some(),
        given("--health-timeout").is_some(),
    ) {
        (true, true) if config.health_timeout > config.health_interval => {
            return Err(format!(
                "--health-timeout {:?} must not exceed --health-interval {:?}",
                config.health_timeout, config.health_interval
            ));
        }
        (true, false) => config.health_timeout = config.health_timeout.min(config.health_interval),
        (false, true) => {
            config.health_interval = config.health_interval.max(config.health_timeout);
        }
        _ => {}
    }
    for flag in ["--health-host", "--health-status"] {
        if given(flag).is_some() && config.health_check.is_none() {
            return Err(format!(
                "{flag} needs --health-check PATH (it shapes the active checks)"
            ));
        }
    }
    // The default --admin address is skipped when something else holds it (a backend
    // there is then no loop); one given by hand is always ours.
    let admin = config.admin.filter(|_| config.admin_required);
    for (flag, own) in [("--listen", Some(config.listen)), ("--admin", admin)] {
        let Some(own) = own else { continue };
        if let Some(b) = config.backends.iter().find(|b| is_own_address(own, b.addr)) {
            return Err(format!(
                "--backend {}: that is this balancer's own {flag} address {own}: every request \
                 would come back to it",
                b.url
            ));
        }
    }
    weights_are_used(config.strategy, &config.backends)?;
    if let Some(admin) = config.admin
        && !admin.ip().is_loopback()
        && config.admin_token.is_none()
    {
        return Err(format!(
            "--admin {admin}: a non-loopback admin address needs --admin-token-file"
        ));
    }
    Ok(())
}

/// The host name in an `--admin HOST:PORT` value, lowercase; `None` for `off` or an IP
/// address (literals pass the admin's `Host` rule anyway).
fn admin_name(value: &str) -> Option<String> {
    let (host, _port) = value.rsplit_once(':')?;
    let literal =
        host.parse::<std::net::IpAddr>().is_ok() || (host.starts_with('[') && host.ends_with(']'));
    (!literal).then(|| host.to_ascii_lowercase())
}

/// Would connecting to `addr` reach the balancer listening on `listen`? The same address,
/// or the same port on loopback (or any address) when `listen` takes every interface. A
/// backend like that sends each request back into the balancer, which forwards it again.
/// (Other addresses of this host are not known here; the `Via` check catches those loops at
/// run time.)
pub fn is_own_address(listen: SocketAddr, addr: SocketAddr) -> bool {
    listen.port() == addr.port()
        && (listen.ip() == addr.ip()
            || (listen.ip().is_unspecified()
                && (addr.ip().is_loopback() || addr.ip().is_unspecified())))
}

/// Parses a duration: `250ms`, `2s`, `1m`, `1h`, or a bare number of seconds.
///
/// # Errors
/// A message for anything else, for zero, and for more than a day (surely a typo).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (write 250ms, 2s, 1m or 1h)"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit {unit:?} (use ms, s, m or h)"
            ));
        }
    };
    if d.is_zero() {
        return Err("the duration must be more than zero".into());
    }
    if d > Duration::from_secs(86_400) {
        return Err(format!("{text:?} is more than a day"));
    }
    Ok(d)
}

/// Parses a byte size: a number with an optional `k`, `m` or `g` (powers of 1024, as nginx).
///
/// # Errors
/// A message for anything else, and for overflow.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.to_ascii_lowercase();
    let (digits, shift) = match lower.as_bytes().last() {
        Some(b'k') => (&lower[..lower.len() - 1], 10),
        Some(b'm') => (&lower[..lower.len() - 1], 20),
        Some(b'g') => (&lower[..lower.len() - 1], 30),
        _ => (lower.as_str(), 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (write 1048576, 512k, 10m or 1g)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

fn parse_count(text: &str, min: u32, max: u32) -> Result<u32, String> {
    text.parse()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("{text:?} must be a whole number from {min} to {max}"))
}

/// The open-file limit of this process (soft), read from `/proc/self/limits`, if known.
pub fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The default connection cap: what the open-file limit allows, so that the cap is reached
/// (and a client past it gets `503` at once) before the descriptors run out.
pub fn default_max_connections() -> usize {
    max_connections_for(open_file_limit().unwrap_or(1024))
}

/// The connection cap for an open-file limit of `limit`: [`FD_RESERVE`] kept back (at most
/// half the limit), then [`FDS_PER_CONNECTION`] per client connection and one per
/// [`CONNECTIONS_PER_SPARE`] for the spare threads in `accept`; at least 16, at most
/// [`DEFAULT_MAX_CONNECTIONS_CEILING`]. 1024 (systemd's default) gives 240.
pub fn max_connections_for(limit: usize) -> usize {
    let reserve = FD_RESERVE.min(limit / 2);
    let per_spare = FDS_PER_CONNECTION * CONNECTIONS_PER_SPARE + 1;
    (limit.saturating_sub(reserve) * CONNECTIONS_PER_SPARE / per_spare)
        .clamp(16, DEFAULT_MAX_CONNECTIONS_CEILING)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_counts_two_descriptors_per_connection() {
        for (limit, cap) in [
            (1024, 240),
            (128, 30),
            (4096, 1686),
            (1 << 20, 16_384),
            (8, 16),
        ] {
            assert_eq!(max_connections_for(limit), cap, "ulimit -n {limit}");
        }
    }

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse_args(args.iter().map(|s| s.to_string()))? {
            Command::Run(c) => Ok(*c),
            other => panic!("{other:?}"),
        }
    }

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
    fn the_admin_name_is_kept_for_the_host_rule() {
        let name = |v: &str| run(&["--admin", v]).unwrap().admin_name;
        assert_eq!(name("LocalHost:9100"), Some("localhost".into()));
        assert_eq!(name("127.0.0.1:9100"), None);
        assert_eq!(name("[::1]:9100"), None);
        assert_eq!(name("off"), None);
        assert_eq!(run(&[]).unwrap().admin_name, None);
    }

    #[test]
    fn flags_apply() {
        let c = run(&[
            "--listen=127.0.0.1:0",
            "--backend",
            "http://127.0.0.1:8001",
            "--backend",
            "http://localhost:8002/,weight=5",
            "--strategy",
            "least-conn",
            "--quiet",
            "--connect-timeout",
            "250ms",
            "--max-body",
            "10m",
            "--admin",
            "off",
        ])
        .unwrap();
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.backends.len(), 2);
        assert_eq!(c.backends[1].url, "http://localhost:8002");
        assert_eq!(c.backends[1].weight, 5);
        assert_eq!(c.strategy, StrategyKind::LeastConn);
        assert!(c.quiet);
        assert_eq!(c.connect_timeout, Duration::from_millis(250));
        assert_eq!(c.max_body, Some(10 << 20));
        assert_eq!(c.admin, None);
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
            (&["--strategy", "random"], "--strategy"),
            (&["--connect-timeout", "2x"], "--connect-timeout"),
            (&["--quiet=1"], "--quiet takes no value"),
            (
                &[
                    "--backends-file",
                    "b.txt",
                    "--backend",
                    "http://127.0.0.1:8001",
                ],
                "--backend and --backends-file cannot be used together",
            ),
            (
                &["--backends-file-interval", "10ms"],
                "--backends-file-interval 10ms",
            ),
            (&["stray"], "unexpected argument"),
            (&["--health-status", "200-"], "--health-status 200-"),
            (&["--health-host", "a b"], "--health-host a b"),
            (&["--health-host", "app.example"], "needs --health-check"),
            (
                &["--listen", "127.0.0.1:9100"],
                "--listen needs a backend source",
            ),
            (
                &["--backend", "http://127.0.0.1:8001,weight=3"],
                "--strategy round-robin ignores weights",
            ),
            (
                &[
                    "--strategy",
                    "cookie",
                    "--backend",
                    "http://127.0.0.1:8001,weight=2",
                ],
                "--strategy cookie ignores weights",
            ),
            (
                &["--config", "/nonexistent/lb.conf"],
                "--config /nonexistent/lb.conf",
            ),
            (&["--admin", "0.0.0.0:9001"], "--admin-token"),
            (
                &["--health-interval", "2s", "--health-timeout", "5s"],
                "--health-timeout 5s must not exceed --health-interval 2s",
            ),
            (
                &[
                    "--listen",
                    "127.0.0.1:9100",
                    "--backend",
                    "http://127.0.0.1:9100",
                ],
                "--backend http://127.0.0.1:9100: that is this balancer's own --listen",
            ),
            (
                &[
                    "--listen",
                    "0.0.0.0:9100",
                    "--backend",
                    "http://localhost:9100",
                ],
                "own --listen address",
            ),
        ] {
            let err = run(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
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
    fn health_defaults_follow_the_values_given() {
        // Issue 11: a default the user never typed must not reject a valid flag.
        let c = run(&["--health-interval", "500ms"]).unwrap();
        assert_eq!(c.health_timeout, Duration::from_millis(500));
        let c = run(&["--health-interval", "5s"]).unwrap();
        assert_eq!(c.health_timeout, Duration::from_secs(1));
        let c = run(&["--health-timeout", "5s"]).unwrap();
        assert_eq!(
            (c.health_interval, c.health_timeout),
            (Duration::from_secs(5), Duration::from_secs(5))
        );
        let c = run(&["--health-timeout", "300ms"]).unwrap();
        assert_eq!(c.health_interval, Duration::from_secs(2));
        let c = run(&["--health-timeout", "2s", "--health-interval", "2s"]).unwrap();
        assert_eq!(c.health_timeout, Duration::from_secs(2));
    }

    #[test]
    fn own_address_rule() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(is_own_address(at("127.0.0.1:9000"), at("127.0.0.1:9000")));
        assert!(is_own_address(at("0.0.0.0:9000"), at("127.0.0.1:9000")));
        assert!(is_own_address(at("[::]:9000"), at("[::1]:9000")));
        assert!(!is_own_address(at("127.0.0.1:9000"), at("127.0.0.1:9001")));
        assert!(!is_own_address(at("127.0.0.1:9000"), at("127.0.0.2:9000")));
        assert!(!is_own_address(at("127.0.0.1:9000"), at("10.1.2.3:9000")));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in [
            "",
            "s",
            "0",
            "0ms",
            "-1s",
            "1.5s",
            "2 s",
            "1d",
            "99999999999999999999",
            "25h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        for bad in ["", "k", "1.5m", "-1", "99999999999g"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn help_lists_every_flag() {
        let u = usage();
        for f in FLAGS {
            assert!(u.contains(f.name), "{}", f.name);
        }
    }
}
