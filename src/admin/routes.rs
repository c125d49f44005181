//! Which handler answers `method path`: the admin API's table of paths, in one `match`.
//!
//! The handlers are in [`super::answers`], the lab's (`POST /strategy`,
//! `POST /backends/{id}/weight`) in [`super::lab`]. A request reaches [`route`] only once it
//! is read and admitted (the `Host`, [`super::access`] and `Origin` checks); `HEAD` comes here
//! as `GET`, and the listener writes the answer without its body.

use super::answers::{
    Answer, add, backend, demo_drill, file_managed, list, metrics, reload_now, remove,
    set_draining, status_json, status_page,
};
use super::{AdminShared, lab};

/// Which handler answers `method path`; `405` with `Allow` for a known path and another method.
pub(super) fn route(method: &str, path: &str, body: &[u8], shared: &AdminShared) -> Answer {
    let lb = &shared.balancer;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (allow, answer): (&str, Option<Answer>) = match segments.as_slice() {
        ["metrics"] => ("GET, HEAD", (method == "GET").then(|| metrics(lb))),
        [""] | ["status"] => ("GET, HEAD", (method == "GET").then(|| status_page(shared))),
        ["status.json"] => ("GET, HEAD", (method == "GET").then(|| status_json(shared))),
        ["backends"] => match method {
            "GET" => ("", Some(list(lb))),
            "POST" => (
                "",
                Some(file_managed(lb).unwrap_or_else(|| add(body, shared))),
            ),
            _ => ("GET, HEAD, POST", None),
        },
        ["backends", id] => match method {
            "GET" => ("", Some(backend(lb, id))),
            "DELETE" => (
                "",
                Some(file_managed(lb).unwrap_or_else(|| remove(id, shared))),
            ),
            _ => ("GET, HEAD, DELETE", None),
        },
        ["backends", id, action @ ("drain" | "enable")] => match method {
            "POST" => ("", Some(set_draining(lb, id, *action == "drain"))),
            _ => ("POST", None),
        },
        ["reload"] => ("POST", (method == "POST").then(|| reload_now(lb))),
        ["strategy"] | ["backends", _, "weight"] => {
            ("POST", lab::route(method, &segments, body, shared))
        }
        ["demo", name, drill, arg @ ..] if arg.len() <= 1 => match method {
            "POST" => (
                "",
                Some(demo_drill(shared, name, drill, arg.first().copied(), body)),
            ),
            _ => ("POST", None),
        },
        _ => return Answer::page(404, "no such admin path: see /status, /metrics, /backends"),
    };
    answer.unwrap_or_else(|| {
        Answer::page(405, "method not allowed on this admin path").with("Allow", allow.into())
    })
}
