//! Reloading the configuration while serving: what `SIGHUP` and `POST /reload` do.
//!
//! A reload parses the command line again exactly as at start ([`config::parse_args`]),
//! which reads the `--config` file again, and reads the `--backends-file`. Everything is
//! read and checked before anything changes: a bad file changes nothing, one error line
//! says why, and `/metrics` shows the reload refused (`lb_config_last_reload_successful 0`).
//! A good one is applied in this order:
//!
//! - the strategy ([`crate::backends::Backends::set_strategy`], the lab's switch) and the passive health
//!   policy ([`crate::backends::Backends::set_policy`]);
//! - the backend list as a diff ([`crate::backends::Backends::replace`]): a backend still listed keeps its
//!   pool, health, counters and id, a new weight is set in place, one that left drains;
//! - the active health checks, restarted only if their flags changed (health stays);
//! - the access log's `--quiet`;
//! - everything the requests read ([`Live`]: timeouts, `--max-body`, `--explain`, trusted
//!   proxies, the admin token), put in force whole ([`Shared::set_live`]): a request takes
//!   them when its head starts arriving and keeps that copy to its end
//!   ([`Shared::refresh`]).
//!
//! A setting that needs a new socket or thread set-up ([`RESTART_ONLY`]: `listen`, `admin`,
//! `max-connections`, ...) is not applied: one line names it ("needs a restart") and the
//! rest applies. With no backend source at all (the demo), the list stays as it is.

use crate::backends::checker::{Checker, Checks};
use crate::backends::file::describe;
use crate::backends::health::Policy;
use crate::config::{self, BackendSpec, Command, Config, FLAGS};
use crate::console;
use crate::context::{Live, Shared};
use crate::poison::IgnorePoison;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::SystemTime;

/// Flags a running balancer cannot change: they name sockets it bound, the size of its
/// accept loop, or where its backend list comes from.
pub const RESTART_ONLY: [&str; 9] = [
    "--listen",
    "--admin",
    "--max-connections",
    "--backends-file",
    "--backends-file-interval",
    "--demo",
    "--demo-port",
    "--config",
    // The backends' cookie values are keyed when each backend is made.
    "--cookie-secret-file",
];

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Each setting applied: `name: old -> new`.
    pub changed: Vec<String>,
    /// Each setting changed in the files but not applied, as it needs a restart.
    pub restart: Vec<String>,
    /// What happened to the backend list (empty: nothing).
    pub backends: String,
}

impl Outcome {
    /// The answer of `POST /reload`.
    pub fn json(&self) -> String {
        let list = |items: &[String]| {
            let quoted: Vec<String> = items.iter().map(|i| quoted(i)).collect();
            format!("[{}]", quoted.join(","))
        };
        format!(
            "{{\"reloaded\":true,\"changed\":{},\"needs_restart\":{},\"backends\":{}}}",
            list(&self.changed),
            list(&self.restart),
            quoted(&self.backends)
        )
    }
}

/// Reads the configuration again and applies it, or refuses it whole (`by`: what asked,
/// for the log line).
///
/// # Errors
/// Why the files were refused; nothing changed.
pub fn reload(shared: &Shared, by: &str) -> Result<Outcome, String> {
    let mut reloads = shared.reloads.lock().ignore_poison();
    let old = shared.live();
    let own = shared.own.get().map_or(&[][..], Vec::as_slice);
    let (new, list) = match read(&old.config, own) {
        Ok(read) => read,
        Err(why) => {
            console::error(format_args!(
                "[Reload] {by}: refused, nothing changed: {why}"
            ));
            reloads.refused += 1;
            reloads.last_error = Some(why.clone());
            if let (Some(file), true) = (&shared.file, why.starts_with("--backends-file")) {
                file.refused(why.clone());
            }
            return Err(why);
        }
    };
    let outcome = apply(shared, &old.config, new, list);
    reloads.taken += 1;
    reloads.last_error = None;
    reloads.last_taken = Some(SystemTime::now());
    for line in &outcome.restart {
        console::notice(format_args!(
            "[Reload] {line}: needs a restart, not applied"
        ));
    }
    let changed = match (outcome.changed.is_empty(), outcome.backends.is_empty()) {
        (true, true) => "no change".to_string(),
        _ => [outcome.changed.join("; "), outcome.backends.clone()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
    };
    console::notice(format_args!("[Reload] {by}: {changed}"));
    Ok(outcome)
}

/// The new configuration and the backend list to apply (`None`: keep the list, the demo).
///
/// `own`: the addresses this process listens on, as bound; a list naming one is refused
/// whatever its source (the file's `listen` may be `:0`, or a new one that needs a restart).
fn read(old: &Config, own: &[SocketAddr]) -> Result<(Config, Option<Vec<BackendSpec>>), String> {
    // A configuration built in code (not parsed from flags) has nothing to read again but
    // its backends file: parsing an empty command line would reset it to the defaults.
    let new = if old.command_line.is_empty() {
        Box::new(old.clone())
    } else {
        match config::parse_args(old.command_line.clone())? {
            Command::Run(new) => new,
            _ => return Err("the command line asks for --help or --version".into()),
        }
    };
    let given = |c: &Config| c.settings.iter().any(|s| s.flag == "--backend");
    // The admin stays where it is (a restart moves it): one that is not on loopback keeps
    // needing a token, which the new file may not drop.
    if old.admin.is_some_and(|a| !a.ip().is_loopback()) && new.admin_token.is_none() {
        return Err(format!(
            "--admin {}: the admin listener is not on loopback and stays there until a \
             restart, so the configuration must keep its --admin-token-file",
            old.admin.map_or(String::new(), |a| a.to_string())
        ));
    }
    let list = match &old.backends_file {
        Some(path) => Some(
            crate::backends::file::load(path, own).map_err(|e| format!("--backends-file {e}"))?,
        ),
        None if given(&new) => Some([&new.backends[..], &old.demo_backends[..]].concat()),
        None if given(old) => {
            return Err(
                "the configuration names no backend any more (a reload keeps the \
                        list only for the demo)"
                    .into(),
            );
        }
        None => None,
    };
    if let Some(list) = &list {
        if let Some((b, at)) = list.iter().find_map(|b| {
            let at = own.iter().find(|o| config::is_own_address(**o, b.addr))?;
            Some((b, at))
        }) {
            return Err(format!(
                "backend {}: that is this balancer's own listener {at}: every request would \
                 come back to it",
                b.url
            ));
        }
        config::weights_are_used(new.strategy, list)?;
    }
    Ok((*new, list))
}

/// Puts `new` in force (but the settings that need a restart), with `list` if given.
fn apply(
    shared: &Shared,
    old: &Config,
    mut new: Config,
    list: Option<Vec<BackendSpec>>,
) -> Outcome {
    let mut outcome = Outcome::default();
    for (flag, was, now) in differences(old, &new) {
        let line = format!("{}: {was} -> {now}", &flag[2..]);
        if RESTART_ONLY.contains(&flag) {
            outcome.restart.push(line);
        } else {
            outcome.changed.push(line);
        }
    }
    keep_restart_only(old, &mut new);
    new.demo_backends.clone_from(&old.demo_backends);
    let backends = &shared.backends;
    if backends.strategy() != new.strategy {
        backends.set_strategy(new.strategy);
        for b in backends.snapshot().iter() {
            b.stats.history.event_now("STRATEGY", new.strategy.name());
        }
    }
    backends.set_policy(Policy {
        max_fails: new.max_fails,
        fail_timeout: new.fail_timeout,
    });
    match list {
        Some(list) => {
            outcome.backends = take_list(shared, &list);
            new.backends = list;
        }
        None => new.backends = old.backends.clone(),
    }
    restart_checks(shared, old, &new);
    shared.log.set_quiet(new.quiet);
    shared.log.set_format(new.access_log_format);
    shared.set_live(Live::of(new));
    outcome
}

/// Applies the backend list; returns what changed, in words.
fn take_list(shared: &Shared, list: &[BackendSpec]) -> String {
    let diff = match &shared.file {
        Some(file) => crate::backends::file::take(file, &shared.backends, list),
        None => {
            let diff = shared.backends.replace(list);
            for gone in &diff.removed {
                gone.set_draining(true);
            }
            diff
        }
    };
    if diff.is_empty() {
        String::new()
    } else {
        format!("backends: {}", describe(&diff))
    }
}

/// Each flag whose values differ: (flag, old values, new values), as given (a secret only
/// said to be set).
fn differences(old: &Config, new: &Config) -> Vec<(&'static str, String, String)> {
    let values = |c: &Config, flag: &str| -> Vec<String> {
        let given = c.settings.iter().filter(|s| s.flag == flag);
        given.map(|s| s.value.clone()).collect()
    };
    let shown_all = |flag: &str, values: &[String]| {
        if values.is_empty() {
            return "default".to_string();
        }
        let shown: Vec<&str> = values.iter().map(|v| shown(flag, v)).collect();
        shown.join(" ")
    };
    FLAGS
        .iter()
        .filter_map(|f| {
            let (was, now) = (values(old, f.name), values(new, f.name));
            (was != now).then(|| (f.name, shown_all(f.name, &was), shown_all(f.name, &now)))
        })
        .collect()
}

/// Keeps the old values of [`RESTART_ONLY`] in `new`, and their settings.
fn keep_restart_only(old: &Config, new: &mut Config) {
    new.listen = old.listen;
    new.admin = old.admin;
    new.admin_unix.clone_from(&old.admin_unix);
    new.cookie_secret.clone_from(&old.cookie_secret);
    new.admin_required = old.admin_required;
    new.admin_name.clone_from(&old.admin_name);
    new.max_connections = old.max_connections;
    new.backends_file.clone_from(&old.backends_file);
    new.backends_file_interval = old.backends_file_interval;
    new.demo = old.demo;
    new.demo_port = old.demo_port;
    new.settings.retain(|s| !RESTART_ONLY.contains(&s.flag));
    let kept = old
        .settings
        .iter()
        .filter(|s| RESTART_ONLY.contains(&s.flag));
    new.settings.extend(kept.cloned());
}

/// Restarts the active health checks if their flags changed; the backends keep their health.
fn restart_checks(shared: &Shared, old: &Config, new: &Config) {
    let (was, now) = (checks(old), checks(new));
    if was == now {
        return;
    }
    let mut checker = shared.checker.lock().ignore_poison();
    if let Some(running) = checker.take() {
        running.stop();
    }
    if let Some(checks) = now {
        match Checker::start(std::sync::Arc::clone(&shared.backends), checks) {
            Ok(started) => *checker = Some(started),
            Err(e) => console::error(format_args!(
                "[Reload] error: cannot start the health checks: {e}"
            )),
        }
    }
}

/// The active checks `--health-check` asks for, if it does.
pub fn checks(config: &Config) -> Option<Checks> {
    let path = config.health_check.clone()?;
    Some(Checks {
        path,
        interval: config.health_interval,
        timeout: config.health_timeout,
        rise: config.rise,
        fall: config.fall,
        host: config.health_host.clone(),
        statuses: config.health_status.clone(),
    })
}

/// Appends the `lb_config_*` families to `/metrics` (named after Prometheus' own
/// `prometheus_config_last_reload_successful`).
pub fn render_metrics(out: &mut String, shared: &Shared) {
    let r = shared.reloads.lock().ignore_poison().clone();
    let families = [
        (
            "lb_config_last_reload_successful",
            "1 unless the last reload (SIGHUP, POST /reload) was refused.",
            "gauge",
            u64::from(r.last_error.is_none()),
        ),
        (
            "lb_config_reloads_total",
            "Reloads of the configuration taken.",
            "counter",
            r.taken,
        ),
        (
            "lb_config_reload_errors_total",
            "Reloads refused (a bad file): nothing changed.",
            "counter",
            r.refused,
        ),
    ];
    for (name, help, kind, value) in families {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    }
}

/// `/status.json` with a `"config"` member added: the reloads, and the settings in force
/// as given (a flag's values, by name without dashes).
pub fn in_status_json(mut json: String, shared: &Shared) -> String {
    let r = shared.reloads.lock().ignore_poison().clone();
    let live = shared.live();
    let mut out = format!(
        ",\"config\":{{\"reloads\":{},\"reload_errors\":{},\"last_reload_error\":{},\"settings\":{{",
        r.taken,
        r.refused,
        r.last_error.as_deref().map_or("null".into(), quoted)
    );
    let mut first = true;
    for f in FLAGS {
        let values: Vec<String> = live
            .config
            .settings
            .iter()
            .filter(|s| s.flag == f.name)
            .map(|s| quoted(shown(f.name, &s.value)))
            .collect();
        if !values.is_empty() {
            let comma = if first { "" } else { "," };
            let _ = write!(out, "{comma}\"{}\":[{}]", &f.name[2..], values.join(","));
            first = false;
        }
    }
    out.push_str("}}");
    if json.ends_with('}') {
        json.insert_str(json.len() - 1, &out);
    }
    json
}

/// `value` as a JSON string.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A value as shown: secrets (a flag named `token` or `secret`) are only said to be set.
fn shown<'a>(flag: &str, value: &'a str) -> &'a str {
    match (flag.contains("token") || flag.contains("secret"), value) {
        (_, "") => "on",
        (true, _) => "(set)",
        (false, v) => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Config {
        match config::parse_args(args.iter().map(|s| s.to_string())) {
            Ok(Command::Run(c)) => *c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn differences_are_the_flags_as_given_and_restarts_keep_the_old_values() {
        let old = parsed(&["--backend", "http://127.0.0.1:1", "--admin-token", "one"]);
        let mut new = parsed(&[
            "--listen",
            "127.0.0.1:2",
            "--backend",
            "http://127.0.0.1:1",
            "--backend",
            "http://127.0.0.1:3",
            "--admin-token",
            "two",
            "--quiet",
        ]);
        let d = differences(&old, &new);
        let names: Vec<&str> = d.iter().map(|(f, _, _)| *f).collect();
        assert_eq!(names, ["--listen", "--backend", "--quiet", "--admin-token"]);
        assert_eq!(d[0].1, "default");
        assert_eq!(d[1].2, "http://127.0.0.1:1 http://127.0.0.1:3");
        assert_eq!((d[2].1.as_str(), d[2].2.as_str()), ("default", "on"));
        assert_eq!(d[3].2, "(set)", "a token is never shown");
        keep_restart_only(&old, &mut new);
        assert_eq!(new.listen, old.listen);
        assert!(
            differences(&old, &new)
                .iter()
                .all(|(f, _, _)| *f != "--listen")
        );
    }

    #[test]
    fn the_answer_is_json() {
        let o = Outcome {
            changed: vec!["strategy: round-robin -> \"weighted\"".into()],
            restart: vec![],
            backends: "backends: + http://x:1\n".into(),
        };
        assert_eq!(
            o.json(),
            "{\"reloaded\":true,\"changed\":[\"strategy: round-robin -> \\\"weighted\\\"\"],\
             \"needs_restart\":[],\"backends\":\"backends: + http://x:1\\u000a\"}"
        );
    }
}
