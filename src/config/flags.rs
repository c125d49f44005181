//! The flag table ([`FLAGS`]): one row per flag with its value name, help and default, and
//! one function that applies its value to a [`Config`].
//!
//! `--help` ([`usage`]) and `--check` ([`super::file::report`]) are printed from the same
//! rows, so the flags and their description cannot drift apart. No default is written here:
//! a row shows the value [`Config::default`] holds ([`Text::Value`]), or words made from the
//! constants the defaults use ([`Text::Made`]), and a unit test gives every value shown back
//! to its flag to check that it changes nothing.

use super::values::{parse_count, parse_duration, parse_size, show_duration};
use super::{
    BackendSpec, Config, DEFAULT_MAX_CONNECTIONS_CEILING, DEFAULT_MAX_CONNECTIONS_FLOOR,
    DEMO_DEFAULT_COUNT, DEMO_FIRST_PORT, DEMO_MAX, FD_RESERVE, LogFormat, MIN_FILE_INTERVAL,
    StrategyKind, resolve,
};
use crate::http::statuses::StatusSet;
use crate::proxy::trust::Cidr;
use Text::{Made, Value, Words};
use std::path::{Path, PathBuf};

/// One row of the flag table.
pub struct Flag {
    /// The flag, with its dashes.
    pub name: &'static str,
    /// Name of the value in the usage (`ADDR`), or `None` for a switch.
    pub value: Option<&'static str>,
    /// One line of help.
    pub help: Text,
    /// The default, as `--help` and `--check` show it.
    pub default: Text,
    /// Applies a value given to the flag (empty for a switch).
    pub(super) apply: fn(&mut Config, &str) -> Result<(), String>,
}

/// A piece of the usage that is written out, or comes from the defaults: a default written
/// in the help too would be a second copy, free to drift from the first.
#[derive(Clone, Copy)]
pub enum Text {
    /// Words written out: a line of help, or a default that is no value of the flag (`none`).
    Words(&'static str),
    /// Words made from the constants of the defaults (`2 without --backend`).
    Made(fn() -> String),
    /// A value of the flag, as [`Config::default`] (given as the argument) holds it and as the
    /// flag takes it, maybe followed by `, ` and words (`1s, or the interval if shorter`).
    /// Giving the value to the flag changes nothing: a unit test checks every row.
    Value(fn(&Config) -> String),
}

impl Text {
    /// The text, with `defaults` from [`Config::default`].
    pub fn show(&self, defaults: &Config) -> String {
        match self {
            Words(words) => (*words).to_string(),
            Made(made) => made(),
            Value(value) => value(defaults),
        }
    }
}

/// A row for a flag whose value is a duration ([`parse_duration`]) kept in the field `$field`
/// of [`Config`], which also gives the default shown. `at_least` adds a lower bound; `then`,
/// words after the default.
macro_rules! duration {
    ($flag:literal, $field:ident, $help:literal $(, at_least $min:expr)? $(, then $then:literal)?) => {
        Flag {
            name: $flag,
            value: Some("DUR"),
            help: Words($help),
            default: Value(|d| show_duration(d.$field) $(+ $then)?),
            apply: |c, v| {
                let d = parse_duration(v)?;
                $(if d < $min {
                    return Err(format!("must be at least {:?}", $min));
                })?
                c.$field = d;
                Ok(())
            },
        }
    };
}

/// Every flag the balancer knows (except `--help` and `--version`).
pub const FLAGS: &[Flag] = &[
    Flag {
        name: "--config",
        value: Some("PATH"),
        default: Words("none"),
        help: Words(
            "read flags from this file, one a line without the dashes (listen 0.0.0.0:80); flags given here win; SIGHUP reads it again",
        ),
        apply: |c, v| {
            c.config_file = Some(a_path(v)?);
            Ok(())
        },
    },
    Flag {
        name: "--check",
        value: None,
        default: Words("off"),
        help: Words(
            "read the flags, --config and --backends-file, print every setting and where it came from, and exit (0: good, 2: not)",
        ),
        apply: |c, _| {
            c.check = true;
            Ok(())
        },
    },
    Flag {
        name: "--listen",
        value: Some("ADDR"),
        default: Value(|d| d.listen.to_string()),
        help: Words("address of the balanced listener"),
        apply: |c, v| {
            c.listen = resolve(v)?;
            Ok(())
        },
    },
    Flag {
        name: "--backend",
        value: Some("URL"),
        default: Words("the demo backends"),
        help: Words("a backend, http://HOST:PORT[,weight=N]; repeat for more"),
        apply: |c, v| {
            c.backends.push(BackendSpec::parse(v)?);
            Ok(())
        },
    },
    Flag {
        name: "--backends-file",
        value: Some("PATH"),
        default: Words("none"),
        help: Words(
            "the backends, one URL a line as --backend takes it; re-read when it changes or on SIGHUP",
        ),
        apply: |c, v| {
            c.backends_file = Some(a_path(v)?);
            Ok(())
        },
    },
    duration! { "--backends-file-interval", backends_file_interval, "how often --backends-file is checked for a change (its time, size and inode)", at_least MIN_FILE_INTERVAL },
    Flag {
        name: "--demo",
        value: Some("N"),
        default: Made(|| format!("{DEMO_DEFAULT_COUNT} without --backend")),
        help: Made(|| {
            format!(
                "start N demo backends (Red, Blue, Green, ...) on ports {DEMO_FIRST_PORT} and up; with --backends-file, the file says which are balanced"
            )
        }),
        apply: |c, v| {
            c.demo = Some(parse_count(v, 1, DEMO_MAX as u32)? as usize);
            Ok(())
        },
    },
    Flag {
        name: "--demo-port",
        value: Some("PORT"),
        default: Value(|d| d.demo_port.to_string()),
        help: Words("port of the first demo backend, the others count up; 0: any free ports"),
        apply: |c, v| {
            let port = parse_count(v, 0, u32::from(u16::MAX - DEMO_MAX as u16))?;
            c.demo_port = port as u16;
            Ok(())
        },
    },
    Flag {
        name: "--strategy",
        value: Some("NAME"),
        default: Value(|d| d.strategy.name().to_string()),
        help: Made(|| StrategyKind::names(|_| true, " or ")),
        apply: |c, v| {
            c.strategy = StrategyKind::parse(v).ok_or_else(|| {
                format!(
                    "unknown strategy {v:?} ({})",
                    StrategyKind::names(|_| true, ", ")
                )
            })?;
            Ok(())
        },
    },
    Flag {
        name: "--cookie-secret-file",
        value: Some("PATH"),
        default: Words("none"),
        help: Words(
            "key of the sticky cookie (mode 0600, 16+ bytes): the cookie is an HMAC of the backend, not a plain hash",
        ),
        apply: |c, v| {
            c.cookie_secret = Some(crate::secret::read_cookie_secret(Path::new(v))?);
            Ok(())
        },
    },
    Flag {
        name: "--quiet",
        value: None,
        default: Words("off"),
        help: Words("no line per request (errors still go to stderr)"),
        apply: |c, _| {
            c.quiet = true;
            Ok(())
        },
    },
    Flag {
        name: "--explain",
        value: None,
        default: Words("off"),
        help: Words("end each log line with why the request went there (why=\"round robin: ...\")"),
        apply: |c, _| {
            c.explain = true;
            Ok(())
        },
    },
    duration! { "--connect-timeout", connect_timeout, "limit on connecting to a backend; then the next one" },
    duration! { "--backend-timeout", backend_timeout, "limit on a backend's silence; then 504" },
    duration! { "--header-timeout", header_timeout, "limit on receiving a request head; then 408" },
    duration! { "--client-timeout", client_timeout, "limit on a client's silence while sending a body or reading a response" },
    duration! { "--idle-timeout", idle_timeout, "how long an idle keep-alive client connection is kept" },
    Flag {
        name: "--max-connections",
        value: Some("N"),
        default: Made(|| {
            format!(
                "open-file limit - {FD_RESERVE}, {DEFAULT_MAX_CONNECTIONS_FLOOR} to {DEFAULT_MAX_CONNECTIONS_CEILING}"
            )
        }),
        help: Words("client connections served at once; past it, 503"),
        apply: |c, v| {
            c.max_connections = parse_count(v, 1, 1_000_000)? as usize;
            Ok(())
        },
    },
    Flag {
        name: "--max-body",
        value: Some("SIZE"),
        default: Words("no limit"),
        help: Words("largest request body, e.g. 10m or 1g; past it, 413"),
        apply: |c, v| {
            c.max_body = Some(parse_size(v)?);
            Ok(())
        },
    },
    Flag {
        name: "--max-fails",
        value: Some("N"),
        default: Value(|d| d.max_fails.to_string()),
        help: Words("consecutive failures that take a backend out of rotation"),
        apply: |c, v| {
            c.max_fails = parse_count(v, 1, 1000)?;
            Ok(())
        },
    },
    duration! { "--fail-timeout", fail_timeout, "how long a failed backend stays out before a trial request" },
    Flag {
        name: "--health-check",
        value: Some("PATH"),
        default: Words("off"),
        help: Words("turn on active health checks: GET PATH on every backend"),
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
        default: Words("the backend's HOST:PORT"),
        help: Words("the Host of health checks (a virtual host answers only for its name)"),
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
        default: Value(|d| d.health_status.to_string()),
        help: Words("the statuses a health check passes with, e.g. 200-399,401"),
        apply: |c, v| {
            c.health_status = StatusSet::parse(v)?;
            Ok(())
        },
    },
    duration! { "--health-interval", health_interval, "time between two checks of a backend" },
    duration! { "--health-timeout", health_timeout, "limit on one check", then ", or the interval if shorter" },
    Flag {
        name: "--rise",
        value: Some("N"),
        default: Value(|d| d.rise.to_string()),
        help: Words("passed checks in a row that bring a backend back"),
        apply: |c, v| {
            c.rise = parse_count(v, 1, 1000)?;
            Ok(())
        },
    },
    Flag {
        name: "--fall",
        value: Some("N"),
        default: Value(|d| d.fall.to_string()),
        help: Words("failed checks in a row that take a backend out"),
        apply: |c, v| {
            c.fall = parse_count(v, 1, 1000)?;
            Ok(())
        },
    },
    Flag {
        name: "--admin",
        value: Some("ADDR"),
        default: Value(|d| d.admin.map_or("off".into(), |a| a.to_string())),
        help: Words(
            "address of the admin listener (metrics, status page, backend API), unix:PATH for a 0600 socket, or off",
        ),
        apply: apply_admin,
    },
    Flag {
        name: "--admin-token-file",
        value: Some("PATH"),
        default: Words("none"),
        help: Words(
            "admin requests need the token in this file (mode 0600; Bearer, or as a Basic password)",
        ),
        apply: |c, v| {
            c.admin_token = Some(crate::secret::read_token_file(Path::new(v))?);
            Ok(())
        },
    },
    Flag {
        name: "--admin-token",
        value: Some("TOKEN"),
        default: Words("none"),
        help: Words("the token as a value: every user sees it in ps; use --admin-token-file"),
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
        default: Value(|d| d.access_log_format.name().to_string()),
        help: Words(
            "console (the line shown in the README), combined (nginx's) or json (JSON Lines)",
        ),
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
        default: Words("none"),
        help: Words(
            "believe X-Forwarded-For/-Proto/-Host and Forwarded from peers in this range (10.0.0.0/8, ::1); repeat for more",
        ),
        apply: |c, v| {
            c.trusted_proxies.push(Cidr::parse(v)?);
            Ok(())
        },
    },
    Flag {
        name: "--request-id",
        value: Some("on|off"),
        default: Value(|d| if d.request_id { "on" } else { "off" }.to_string()),
        help: Words(
            "give each request an X-Request-Id (kept from the client when sane), sent to the backend, returned and logged",
        ),
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
        default: Words("off"),
        help: Words(
            "every connection starts with a PROXY protocol header (v1 or v2) naming the client; with --trusted-proxy, only from those peers",
        ),
        apply: |c, _| {
            c.proxy_protocol = true;
            Ok(())
        },
    },
    duration! { "--drain-timeout", drain_timeout, "on SIGINT/SIGTERM, how long to wait for requests in flight" },
];

/// The usage text: a few lines made from the defaults, then one line per flag, from [`FLAGS`].
pub fn usage() -> String {
    let d = Config::default();
    let mut out = format!(
        "Usage: load-balancer [FLAGS]\n\n\
         A {} HTTP/1.1 load balancer. With no --backend, it starts demo backends\n\
         (Red on 127.0.0.1:{}, Blue on {}) and balances them on {}.\n\
         Durations are written 250ms, 2s, 1m or 1h (a bare number is seconds).\n\nFlags:\n",
        d.strategy.name(),
        d.demo_port,
        d.demo_port + 1,
        d.listen
    );
    for f in FLAGS {
        let left = format!("{} {}", f.name, f.value.unwrap_or(""));
        out.push_str(&format!(
            "  {left:<25} {} [default: {}]\n",
            f.help.show(&d),
            f.default.show(&d)
        ));
    }
    out.push_str("  --help                    print this help\n  --version                 print the version\n");
    out
}

/// `--admin ADDR`, `--admin unix:PATH` or `--admin off`.
fn apply_admin(c: &mut Config, v: &str) -> Result<(), String> {
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
}

/// The host name in an `--admin HOST:PORT` value, lowercase; `None` for `off` or an IP
/// address (literals pass the admin's `Host` rule anyway).
fn admin_name(value: &str) -> Option<String> {
    let (host, _port) = value.rsplit_once(':')?;
    let literal =
        host.parse::<std::net::IpAddr>().is_ok() || (host.starts_with('[') && host.ends_with(']'));
    (!literal).then(|| host.to_ascii_lowercase())
}

/// The value of a flag that names a file: any path but an empty one.
fn a_path(value: &str) -> Result<PathBuf, String> {
    if value.is_empty() {
        return Err("needs the path of a file".into());
    }
    Ok(PathBuf::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::run;
    use std::time::Duration;

    #[test]
    fn every_default_shown_is_the_default() {
        let defaults = Config::default();
        for flag in FLAGS {
            let Value(value) = flag.default else {
                continue;
            };
            // A value may be followed by words: `1s, or the interval if shorter`.
            let shown = value(&defaults);
            let given = shown.split(", ").next().unwrap_or_default();
            let mut c = Config::default();
            (flag.apply)(&mut c, given).unwrap_or_else(|e| panic!("{} {given}: {e}", flag.name));
            // Giving --admin at all makes its address required; that is no value of it.
            c.admin_required = defaults.admin_required;
            assert_eq!(
                format!("{c:?}"),
                format!("{defaults:?}"),
                "{} [default: {shown}] is not the default",
                flag.name
            );
        }
    }

    #[test]
    fn a_switch_is_off_by_default_and_on_when_given() {
        let defaults = format!("{:?}", Config::default());
        for flag in FLAGS.iter().filter(|f| f.value.is_none()) {
            assert_eq!(
                flag.default.show(&Config::default()),
                "off",
                "{}",
                flag.name
            );
            let mut c = Config::default();
            (flag.apply)(&mut c, "").unwrap();
            assert_ne!(format!("{c:?}"), defaults, "{} changes nothing", flag.name);
        }
    }

    #[test]
    fn help_lists_every_flag() {
        let u = usage();
        for f in FLAGS {
            assert!(u.contains(f.name), "{}", f.name);
        }
    }

    #[test]
    fn help_names_every_strategy() {
        let u = usage();
        for kind in StrategyKind::ALL {
            assert!(u.contains(kind.name()), "{}", kind.name());
        }
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
}
