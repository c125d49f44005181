//! The admin listener's answers: the handlers that [`route`](super::routes) picks (metrics,
//! the status page and `/status.json`, the backend list and its changes, `/reload`, the demo's
//! drills), and [`render`], which writes any [`Answer`] as the bytes of a response.
//!
//! An [`Answer`] is also what [`super::access`] and the request reading refuse with; the
//! lab's switches (`POST /strategy`, `.../weight`) are in [`super::lab`]; the status page's
//! HTML and JSON are [`super::status`]'s.

use super::status::{self, Row, Status};
use super::{AdminShared, DrillError, csp};
use crate::backends::member::Backend;
use crate::config::{BackendSpec, is_own_address};
use crate::console;
use crate::context::Shared;
use crate::http::Error;
use crate::http::pages::{self, Head};
use crate::metrics::prometheus;
use crate::poison::IgnorePoison;
use crate::reload;
use std::sync::Arc;

/// An answer before it is written: a status, a body (`Ok`: content type and content;
/// `Err`: the reason for an error page), and extra header fields.
#[derive(Clone)]
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) body: Result<(&'static str, String), String>,
    pub(super) fields: Vec<(&'static str, String)>,
}

impl Answer {
    /// An error page (or, for a request that wants JSON, an error object) saying `why`.
    pub(super) fn page(status: u16, why: impl Into<String>) -> Answer {
        Answer {
            status,
            body: Err(why.into()),
            fields: Vec::new(),
        }
    }

    /// `json`, as `application/json`.
    pub(super) fn json(status: u16, json: String) -> Answer {
        Answer {
            status,
            body: Ok(("application/json", json)),
            fields: Vec::new(),
        }
    }

    /// With one more header field.
    pub(super) fn with(mut self, name: &'static str, value: String) -> Answer {
        self.fields.push((name, value));
        self
    }
}

impl From<Error> for Answer {
    fn from(e: Error) -> Answer {
        Answer::page(e.status, e.why)
    }
}

/// The bytes of an answer: an error page in the balancer's style, or the content. Every
/// answer says `X-Content-Type-Options: nosniff`, so a browser takes the JSON and the metrics
/// text for what their `Content-Type` says, never for a page or a script. With `json`, an
/// error is `{"status": N, "error": "why"}` rather than a page.
pub(super) fn render(mut answer: Answer, head_only: bool, json: bool) -> Vec<u8> {
    if json && let Err(why) = &answer.body {
        let mut text = format!("{{\"status\":{},\"error\":", answer.status);
        status::json_string(&mut text, why);
        text.push('}');
        answer.body = Ok(("application/json", text));
    }
    let fields: Vec<(&str, &str)> = answer
        .fields
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .chain([("X-Content-Type-Options", "nosniff")])
        .collect();
    match answer.body {
        Err(why) => pages::ErrorPage::new(answer.status, &why)
            .head_only(head_only)
            .fields_instead(&fields)
            .bytes(),
        Ok((content_type, body)) => {
            let mut head = Head::new(answer.status)
                .content(content_type, body.len())
                .date()
                .field("Cache-Control", "no-store")
                .close(true);
            for (name, value) in fields {
                head = head.field(name, value);
            }
            head.with_body(body.as_bytes(), head_only)
        }
    }
}

/// `POST /demo/{name}/{drill}[/{arg}]`: puts a demo backend in a drill (`stop`, `start`, `hang`,
/// `slow/500`, `error/500`, `ok`). Answers with the console line; the status page's buttons send
/// `then=status` and are sent back to the page (`303 See Other`).
pub(super) fn demo_drill(
    shared: &AdminShared,
    name: &str,
    drill: &str,
    arg: Option<&str>,
    body: &[u8],
) -> Answer {
    let Some(drills) = &shared.drills else {
        return Answer::page(
            404,
            "no demo backends in this run (they start without --backend, or with --demo N)",
        );
    };
    match drills.switch(name, drill, arg) {
        Ok(line) => {
            console::notice(format_args!("{line}"));
            let back = body == b"then=status";
            Answer {
                status: if back { 303 } else { 200 },
                body: Ok(("text/plain; charset=utf-8", format!("{line}\n"))),
                fields: if back {
                    vec![("Location", "/status".to_string())]
                } else {
                    Vec::new()
                },
            }
        }
        Err(DrillError::NoSuchBackend(why)) => Answer::page(404, why),
        Err(DrillError::Invalid(why)) => Answer::page(400, why),
    }
}

/// The status page's data now, with the drill rows when demo backends are wired in, and
/// with each backend's last minute when `history` (see [`Status::collect`]).
fn status(shared: &AdminShared, history: bool) -> Status {
    let demos = shared.drills.as_ref().map_or_else(Vec::new, |d| d.rows());
    Status::collect(&shared.balancer, demos, history)
}

/// `GET /status`: the HTML page, with the policy that lets its own script and style run and
/// nothing else ([`csp`]).
pub(super) fn status_page(shared: &AdminShared) -> Answer {
    Answer {
        status: 200,
        body: Ok(("text/html; charset=utf-8", status(shared, false).html())),
        fields: vec![("Content-Security-Policy", csp::STATUS_POLICY.clone())],
    }
}

/// `GET /status.json`: the status, and the configuration's reloads and settings.
pub(super) fn status_json(shared: &AdminShared) -> Answer {
    let json = reload::in_status_json(status(shared, true).json(), &shared.balancer);
    Answer::json(200, json)
}

/// `GET /metrics`: the Prometheus text: the balancer's and each backend's counters, the
/// process's own, the backends file's (with `--backends-file`) and the configuration's reloads.
pub(super) fn metrics(lb: &Shared) -> Answer {
    let backends = lb.backends.snapshot();
    let samples: Vec<_> = backends
        .iter()
        .map(|b| prometheus::BackendSample {
            url: &b.url,
            up: b.health.is_up(),
            draining: b.is_draining(),
            weight: b.weight(),
            active: b.active(),
            stats: &b.stats,
        })
        .collect();
    let mut text = prometheus::render(&samples, &lb.stats);
    crate::metrics::process::ProcessSample::read().render(&mut text);
    if let Some(file) = &lb.file {
        let info = file.info();
        let loaded_unix = info
            .loaded
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let sample = prometheus::FileSample {
            path: &info.path,
            generation: info.generation,
            loaded_unix,
            ok: info.last_error.is_none(),
            errors: info.errors,
            list: info.list,
        };
        prometheus::render_file(&mut text, &sample);
    }
    reload::render_metrics(&mut text, lb);
    Answer {
        status: 200,
        body: Ok((prometheus::CONTENT_TYPE, text)),
        fields: Vec::new(),
    }
}

/// `POST /reload`: what `SIGHUP` does; `200` with what changed, or `422` with why the
/// files were refused (nothing changed).
pub(super) fn reload_now(lb: &Shared) -> Answer {
    match reload::reload(lb, "POST /reload") {
        Ok(outcome) => Answer::json(200, outcome.json()),
        Err(why) => Answer::page(422, format!("reload refused, nothing changed: {why}")),
    }
}

/// `GET /backends`: every backend as JSON, in rotation order.
pub(super) fn list(lb: &Shared) -> Answer {
    let rows: Vec<String> = lb
        .backends
        .snapshot()
        .iter()
        .map(|b| Row::of(b).json())
        .collect();
    Answer::json(200, format!("[{}]", rows.join(",")))
}

/// `GET /backends/{id}`: one backend as JSON.
pub(super) fn backend(lb: &Shared, id: &str) -> Answer {
    with_backend(lb, id, |b| Answer::json(200, Row::of(b).json()))
}

/// Runs `f` on the backend with id `id`; `404` when there is none.
pub(super) fn with_backend(
    lb: &Shared,
    id: &str,
    f: impl FnOnce(&Arc<Backend>) -> Answer,
) -> Answer {
    match id.parse().ok().and_then(|id| lb.backends.get(id)) {
        Some(b) => f(&b),
        None => Answer::page(404, "no backend with this id (GET /backends lists them)"),
    }
}

/// `POST /backends/{id}/drain` and `.../enable`: out of rotation (requests in flight finish),
/// or back in.
pub(super) fn set_draining(lb: &Shared, id: &str, draining: bool) -> Answer {
    with_backend(lb, id, |b| {
        if b.is_draining() != draining {
            b.set_draining(draining);
            let what = if draining { "draining" } else { "enabled" };
            console::notice(format_args!("[Admin] Backend {} {} {what}", b.id, b.url));
        }
        Answer::json(200, Row::of(b).json())
    })
}

/// `409` for a change to the backend list while `--backends-file` manages it: the next
/// reload would undo the change, and the copies sharing the file would not see it. Draining
/// and enabling stay allowed: they are this copy's operational state, not the list.
pub(super) fn file_managed(lb: &Shared) -> Option<Answer> {
    let file = lb.file.as_ref()?;
    Some(Answer::page(
        409,
        format!(
            "the backend list is managed by --backends-file {}: change the file (drain and \
             enable still work here)",
            file.path.display()
        ),
    ))
}

/// `POST /backends`: adds the backend of the body ([`parse_new_backend`]), `201` with its
/// `Location`; never one of this process's own addresses, never an address twice.
pub(super) fn add(body: &[u8], shared: &AdminShared) -> Answer {
    let spec = match parse_new_backend(body) {
        Ok(spec) => spec,
        Err(why) => return Answer::page(400, why),
    };
    let lb = &shared.balancer;
    // The admin listener too: as a backend, it would hand the admin API to every client of
    // the balanced port.
    if let Some(own) = shared
        .own
        .iter()
        .find(|own| is_own_address(**own, spec.addr))
    {
        return Answer::page(
            400,
            format!(
                "{} is this balancer's own listener {own}: every request would come back to it",
                spec.url
            ),
        );
    }
    let _changing = shared.changes.lock().ignore_poison();
    if let Some(existing) = lb.backends.snapshot().iter().find(|b| b.addr == spec.addr) {
        return Answer::page(409, "this address is already a backend")
            .with("Location", format!("/backends/{}", existing.id));
    }
    let backend = lb.backends.add(&spec);
    console::notice(format_args!(
        "[Admin] Backend {} {} added (weight {})",
        backend.id,
        backend.url,
        backend.weight()
    ));
    Answer::json(201, Row::of(&backend).json())
        .with("Location", format!("/backends/{}", backend.id))
}

/// `DELETE /backends/{id}`: removes a drained backend with no request in flight (see the
/// [module map](super)).
pub(super) fn remove(id: &str, shared: &AdminShared) -> Answer {
    let lb = &shared.balancer;
    let _changing = shared.changes.lock().ignore_poison();
    with_backend(lb, id, |b| {
        if !b.is_draining() {
            return Answer::page(409, "drain the backend first: POST /backends/ID/drain");
        }
        if b.active() > 0 {
            return Answer::page(
                409,
                "requests are still in flight on this backend: try again",
            )
            .with("Retry-After", pages::RETRY_AFTER_SECS.to_string());
        }
        lb.backends.remove(b.id);
        console::notice(format_args!("[Admin] Backend {} {} removed", b.id, b.url));
        Answer::json(200, Row::of(b).json())
    })
}

/// The body of `POST /backends`: form fields `url` and optional `weight`
/// (`application/x-www-form-urlencoded`, as `curl -d` sends), or a bare
/// `http://HOST:PORT[,weight=N]` as on the command line.
///
/// # Errors
/// A message saying what is wrong, for the `400` answer.
fn parse_new_backend(body: &[u8]) -> Result<BackendSpec, String> {
    let text = std::str::from_utf8(body)
        .map_err(|_| "the body is not UTF-8".to_string())?
        .trim();
    if text.is_empty() {
        return Err("send url=http://HOST:PORT (and &weight=N) in the body".into());
    }
    let bare = text
        .find("://")
        .is_some_and(|scheme| !text[..scheme].contains('='));
    if bare {
        return BackendSpec::parse(text);
    }
    let (mut url, mut weight) = (None, None);
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value)?;
        match name {
            "url" => url = Some(value),
            "weight" => weight = Some(value),
            _ => return Err(format!("unknown field {name:?} (url and weight are known)")),
        }
    }
    let url = url.ok_or("the url field is missing")?;
    if url.contains(',') {
        return Err("give the weight as its own field: url=...&weight=N".into());
    }
    match weight {
        Some(w) => BackendSpec::parse(&format!("{url},weight={w}")),
        None => BackendSpec::parse(&url),
    }
}

/// Decodes `%XX` escapes and `+` (a space in form encoding).
pub(super) fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent escape in {s:?}"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_backend_bodies() {
        for body in [
            "url=http://127.0.0.1:8003&weight=2",
            "url=http%3A%2F%2F127.0.0.1%3A8003&weight=2",
            "weight=2&url=http://127.0.0.1:8003\n",
            "http://127.0.0.1:8003,weight=2",
        ] {
            let spec = parse_new_backend(body.as_bytes()).unwrap();
            assert_eq!(spec.url, "http://127.0.0.1:8003", "{body}");
            assert_eq!(spec.weight, 2, "{body}");
        }
        assert_eq!(
            parse_new_backend(b"http://127.0.0.1:8003").unwrap().weight,
            1
        );
        for (body, needle) in [
            ("", "url="),
            ("weight=2", "url field"),
            ("url=http://127.0.0.1:8003&colour=red", "unknown field"),
            ("url=http://127.0.0.1:8003,weight=3", "own field"),
            ("url=http://127.0.0.1:8003&weight=0", "weight"),
            ("url=http%3", "percent"),
            ("url=ftp://x:1", "http://"),
        ] {
            let e = parse_new_backend(body.as_bytes()).unwrap_err();
            assert!(e.contains(needle), "{body:?}: {e}");
        }
        assert!(parse_new_backend(&[0xff]).is_err());
    }
}
