//! Rules between flags that no single flag's row can check: one source of backends and at
//! least one when a listen address is given, and weights only where the strategy reads them.

use super::BackendSpec;
use super::StrategyKind;
use super::file::{Setting, Source};

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

/// A weight other than 1 under a strategy that does not read weights (`round-robin`, the
/// chapter's plain rotation, and `cookie`, whose first pick is that rotation) would be
/// ignored in silence: it is an error instead, naming the strategies that use it.
///
/// # Errors
/// The first backend with such a weight.
pub fn weights_are_used(strategy: StrategyKind, backends: &[BackendSpec]) -> Result<(), String> {
    if !matches!(strategy, StrategyKind::RoundRobin | StrategyKind::Cookie) {
        return Ok(());
    }
    match backends.iter().find(|b| b.weight != 1) {
        Some(b) => Err(format!(
            "--backend {},weight={}: --strategy {} ignores weights; use --strategy weighted, \
             least-conn or ip-hash, or drop the weight",
            b.url,
            b.weight,
            strategy.name()
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
