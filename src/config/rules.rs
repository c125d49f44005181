//! Rules between flags that no single flag's row can check: one source of backends and at
//! least one when a listen address is given, weights only where the strategy reads them,
//! health-check defaults that follow the values given, no backend that is the balancer itself,
//! and a token for an admin listener open beyond loopback.

use super::file::{Setting, Source};
use super::{BackendSpec, Config, StrategyKind};
use std::net::SocketAddr;

/// What no single flag can check: defaults that follow the flags given, and flags that
/// conflict with each other.
pub(super) fn check(config: &mut Config) -> Result<(), String> {
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

/// The backend list comes from `--backend` or from `--backends-file`, not both: the file
/// replaces the whole list on every change, and would silently drop the flags' backends.
pub(super) fn one_source_of_backends(
    backend: Option<&Setting>,
    backends_file: Option<&Setting>,
) -> Result<(), String> {
    match (backend, backends_file) {
        (Some(b), Some(_)) if matches!(b.source, Source::File(_)) => Err(format!(
            "{}: a config file that lists backends cannot be used with --backends-file: put \
             every backend in the backends file",
            b.at
        )),
        (Some(_), Some(_)) => Err(
            "--backend and --backends-file cannot be used together: put every backend in the file"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// A weight other than 1 under a strategy that does not read weights
/// ([`StrategyKind::reads_weights`]: `round-robin`, the chapter's plain rotation, and `cookie`,
/// whose first pick is that rotation) would be ignored in silence: it is an error instead,
/// naming the strategies that use it.
///
/// # Errors
/// The first backend with such a weight.
pub fn weights_are_used(strategy: StrategyKind, backends: &[BackendSpec]) -> Result<(), String> {
    if strategy.reads_weights() {
        return Ok(());
    }
    match backends.iter().find(|b| b.weight != 1) {
        Some(b) => Err(format!(
            "--backend {},weight={}: --strategy {} ignores weights; use --strategy {}, or drop \
             the weight",
            b.url,
            b.weight,
            strategy.name(),
            StrategyKind::names(StrategyKind::reads_weights, " or ")
        )),
        None => Ok(()),
    }
}

/// `--listen` alone must not fall back to the demo pages: a listener open to the world
/// serving Red and Blue is never what an operator with an empty `$BACKENDS` meant. The
/// demo starts only when no listen address is given either (`cargo run`), or when asked.
pub(super) fn some_source_of_backends(settings: &[Setting]) -> Result<(), String> {
    let has = |name: &str| settings.iter().any(|s| s.flag == name);
    let sources = ["--backend", "--backends-file", "--demo", "--demo-port"];
    if has("--listen") && !sources.iter().any(|s| has(s)) {
        return Err(
            "--listen needs a backend source: --backend, --backends-file, --demo N, or a \
             --config file with backend lines (the demo backends start only without --listen)"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::run;
    use std::time::Duration;

    #[test]
    fn broken_rules_name_the_flags() {
        for (args, needle) in [
            (
                &[
                    "--backends-file",
                    "b.txt",
                    "--backend",
                    "http://127.0.0.1:8001",
                ][..],
                "--backend and --backends-file cannot be used together",
            ),
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
}
