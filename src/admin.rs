//! The admin listener: metrics, the status page, and the backend API, on a port of its own.
//!
//! The chapter's "Monitoring" and "Production Considerations" (metrics, auto-scaling
//! integration) made real. A second `TcpListener` (`--admin`, default `127.0.0.1:9001`)
//! serves, on a [`Listener`] of its own (a thread per connection, at most
//! [`MAX_ADMIN_CONNECTIONS`] at once), one request per connection:
//!
//! | request | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text ([`crate::metrics::prometheus`]) |
//! | `GET /status`, `GET /` | the HTML status page ([`status`]), live, with its [`csp`] policy |
//! | `GET /status.json` | the same data as JSON |
//! | `GET /backends`, `GET /backends/{id}` | the backends as JSON |
//! | `POST /backends` | add one: body `url=http://HOST:PORT&weight=N` or a bare URL → `201` |
//! | `POST /backends/{id}/drain` | no new requests to it; requests in flight finish |
//! | `POST /backends/{id}/enable` | undo a drain |
//! | `DELETE /backends/{id}` | remove a drained backend with no request in flight |
//! | `POST /demo/{name}/{drill}` | a failure drill, when demo backends are wired in ([`Drills`]) |
//! | `POST /strategy`, `POST /backends/{id}/weight` | switch live ([`lab`]) |
//! | `POST /reload` | read `--config` and `--backends-file` again, as `SIGHUP` does ([`crate::reload`]); answers what changed |
//!
//! The balanced port never answers these paths: they are only on this listener. Who may ask
//! what is [`access`]'s rule: on TCP without a token, only reading (and the demo's drills and lab switches);
//! with a token (`--admin-token-file`), every request needs it, else `401`: as
//! `Authorization: Bearer TOKEN` (RFC 6750) from a script, or as the password of HTTP Basic
//! credentials (RFC 7617, any user name) from a browser, which asks for it once and then sends
//! it with the status page's own requests too (HAProxy's stats page and nginx's `auth_basic`
//! work the same way). On a Unix socket ([`unix`], `--admin unix:PATH`, mode 0600) the file
//! system keeps other users out. Errors are JSON for a request that was for JSON
//! (`Accept: application/json`, or a JSON path).
//!
//! Removal follows HAProxy's runtime API (`del server`): a backend must be put out of
//! rotation first (its `set server ... state drain`, here `POST .../drain`), and the removal
//! is refused while requests are still in flight on it (`409`, try again). So a `200` to
//! `DELETE` means the server behind it can be switched off without cutting a request.
//! With `--backends-file`, the file manages the list: `POST /backends` and `DELETE` answer
//! `409` and say so ([`crate::backends::file`]); drain and enable still work.

pub mod access;
pub mod base64;
pub mod csp;
pub mod lab;
mod reading;
pub mod status;
pub mod unix;
pub mod why;

use crate::backends::member::Backend;
use crate::config::{BackendSpec, is_own_address};
use crate::conn::{BufConn, LINGER, Timeouts, linger_close};
use crate::console;
use crate::context::Shared;
use crate::http::pages::{self, Head};
use crate::http::{Error, MAX_HEAD};
use crate::listener::{Accepted, Listener, Options};
use crate::metrics::prometheus;
use crate::reload;
use reading::{AdminRequest, Source, admit, read_head};
use status::{DemoRow, Row, Status};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Limit on reading one admin request and on writing its answer. Admin clients are scripts
/// and browsers on the operator's side: a few seconds is plenty.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a new admin connection may stay silent before its first byte; then it is closed
/// without an answer. Short, because the listener serves at most [`MAX_ADMIN_CONNECTIONS`] at
/// once: without it, that many sockets that never send a byte would lock the operator out for
/// the whole [`ADMIN_TIMEOUT`] and its lingering close. A script or a browser sends its
/// request at once after connecting (nginx closes a silent connection at its
/// `client_header_timeout` the same way, without a response).
pub const ADMIN_FIRST_BYTE: Duration = Duration::from_secs(1);
/// Largest admin request body: the API takes one URL and a weight.
pub const MAX_ADMIN_BODY: u64 = 4 * 1024;
/// Most admin connections served at once; past it, `503`. The admin port must not become a
/// way to exhaust the balancer's threads.
pub const MAX_ADMIN_CONNECTIONS: usize = 32;

/// Failure drills that the admin listener can switch (`POST /demo/{name}/{drill}`) and the
/// status page shows with buttons. The balancer knows nothing of demo backends: whoever runs
/// them hands this hook over ([`crate::demo::Fleet`] implements it, and `main` wires it in
/// through [`crate::server::Balancer::start_with_drills`]).
pub trait Drills: Send + Sync + std::fmt::Debug {
    /// The backends that take drills, as the status page shows them.
    fn rows(&self) -> Vec<DemoRow>;

    /// Puts the backend `name` in `drill` (with `arg` for `slow` and `error`); returns the
    /// line to print.
    ///
    /// # Errors
    /// No backend of that name (`404`), or a drill that does not parse (`400`).
    fn switch(&self, name: &str, drill: &str, arg: Option<&str>) -> Result<String, DrillError>;
}

/// Why a drill was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrillError {
    /// No backend has this name.
    NoSuchBackend(String),
    /// The drill or its argument is wrong, or the backend could not be switched.
    Invalid(String),
}

/// A running admin listener. Dropping it stops it.
#[derive(Debug)]
pub struct Admin {
    on: On,
}

/// Where the admin listener listens.
#[derive(Debug)]
enum On {
    Tcp(Listener),
    Unix(unix::UnixAdmin),
}

/// What the connection threads of the admin listener share.
#[derive(Debug)]
struct AdminShared {
    balancer: Arc<Shared>,
    drills: Option<Arc<dyn Drills>>,
    /// The listener is a Unix socket (see [`access`]).
    unix: bool,
    /// Taken by every change to the backend list, so that two `POST /backends` with the
    /// same URL cannot both pass the duplicate check.
    changes: Mutex<()>,
    /// The addresses this process listens on for clients and for this API: never a backend.
    own: [SocketAddr; 2],
}

impl Admin {
    /// Binds `addr` and serves the admin API for `balancer`, with `drills` when demo
    /// backends run.
    ///
    /// # Errors
    /// The address cannot be bound; the message names it.
    pub fn start(
        addr: SocketAddr,
        balancer: Arc<Shared>,
        drills: Option<Arc<dyn Drills>>,
    ) -> io::Result<Admin> {
        let listener = TcpListener::bind(addr).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen on {addr} (--admin): {e}"))
        })?;
        let shared = AdminShared {
            own: [balancer.live().config.listen, listener.local_addr()?],
            balancer,
            drills,
            unix: false,
            changes: Mutex::new(()),
        };
        let options = Options {
            name: "admin".into(),
            worker: "admin-conn",
            max_connections: MAX_ADMIN_CONNECTIONS,
            refusal: "too many admin connections",
            timeouts: Timeouts::uniform(ADMIN_TIMEOUT),
            stats: Arc::default(),
        };
        let listener = Listener::start(listener, options, move |conn| serve(conn, &shared))?;
        Ok(Admin {
            on: On::Tcp(listener),
        })
    }

    /// Makes a Unix socket of mode 0600 at `path` (`--admin unix:PATH`, see [`unix`]) and
    /// serves the admin API for `balancer` on it; the socket is removed when the listener
    /// stops.
    ///
    /// # Errors
    /// The path holds something other than a stale socket, or cannot be written; the message
    /// names it.
    pub fn start_unix(
        path: &Path,
        balancer: Arc<Shared>,
        drills: Option<Arc<dyn Drills>>,
    ) -> io::Result<Admin> {
        let listener = unix::bind(path)?;
        let listen = balancer.live().config.listen;
        let shared = AdminShared {
            // No TCP address of the admin's own: the balanced listener twice.
            own: [listen, listen],
            balancer,
            drills,
            unix: true,
            changes: Mutex::new(()),
        };
        let admin = unix::UnixAdmin::start(listener, path, move |s| serve_unix(s, &shared))?;
        Ok(Admin {
            on: On::Unix(admin),
        })
    }

    /// The bound address (with the real port when started on port 0); `None` on a Unix
    /// socket.
    pub fn addr(&self) -> Option<SocketAddr> {
        match &self.on {
            On::Tcp(listener) => Some(listener.addr()),
            On::Unix(_) => None,
        }
    }

    /// The socket's path, on a Unix socket.
    pub fn socket_path(&self) -> Option<&Path> {
        match &self.on {
            On::Tcp(_) => None,
            On::Unix(admin) => Some(admin.path()),
        }
    }

    /// Stops accepting admin connections; requests being answered finish on their own. A
    /// Unix socket is removed.
    pub fn stop(self) {
        match self.on {
            On::Tcp(listener) => {
                listener.stop(Duration::ZERO);
            }
            On::Unix(admin) => admin.stop(),
        }
    }
}

/// Writes `bytes`, then closes gently (see [`linger_close`]), for at most [`LINGER`].
fn answer_and_close(mut stream: &TcpStream, bytes: &[u8]) {
    if io::Write::write_all(&mut stream, bytes).is_ok() {
        linger_close(stream, LINGER);
    }
}

fn serve(accepted: Accepted<'_>, shared: &AdminShared) {
    let mut conn = BufConn::new(accepted.stream, 4096, MAX_HEAD + 4096);
    if let Some(answer) = answer(&mut conn, shared) {
        answer_and_close(&conn.stream, &answer);
    }
}

fn serve_unix(stream: &mut UnixStream, shared: &AdminShared) {
    let answer = answer(&mut unix::UnixConn::new(stream, MAX_HEAD + 4096), shared);
    if let Some(answer) = answer {
        let _ = io::Write::write_all(stream, &answer);
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Reads one request from `conn` and answers it; `None` when nothing was asked (the client
/// stayed silent since it connected, or closed).
fn answer(conn: &mut impl Source, shared: &AdminShared) -> Option<Vec<u8>> {
    if conn.set_read_timeout(ADMIN_FIRST_BYTE).is_err() || !matches!(conn.fill(), Ok(1..)) {
        return None;
    }
    let deadline = Instant::now() + ADMIN_TIMEOUT;
    let live = shared.balancer.live();
    let admin_name = live.config.admin_name.as_deref();
    let mut req = match read_head(conn, deadline, admin_name) {
        Ok(req) => req,
        Err(answer) => return Some(render(answer, false, false)),
    };
    Some(match admit(conn, &mut req, shared, deadline) {
        Ok(()) => handle(&req, shared),
        Err(answer) => render(answer, req.method == "HEAD", req.json),
    })
}

/// An answer before it is written: a status, a body (`Ok`: content type and content;
/// `Err`: the reason for an error page), and extra header fields.
#[derive(Clone)]
struct Answer {
    status: u16,
    body: Result<(&'static str, String), String>,
    fields: Vec<(&'static str, String)>,
}

impl Answer {
    fn page(status: u16, why: impl Into<String>) -> Answer {
        Answer {
            status,
            body: Err(why.into()),
            fields: Vec::new(),
        }
    }

    fn json(status: u16, json: String) -> Answer {
        Answer {
            status,
            body: Ok(("application/json", json)),
            fields: Vec::new(),
        }
    }

    fn with(mut self, name: &'static str, value: String) -> Answer {
        self.fields.push((name, value));
        self
    }
}

impl From<Error> for Answer {
    fn from(e: Error) -> Answer {
        Answer::page(e.status, e.why)
    }
}

/// Routes a request and writes the whole response.
fn handle(req: &AdminRequest, shared: &AdminShared) -> Vec<u8> {
    let head_only = req.method == "HEAD";
    let method = if head_only {
        "GET"
    } else {
        req.method.as_str()
    };
    render(
        route(method, &req.path, &req.body, shared),
        head_only,
        req.json,
    )
}

/// The bytes of an answer: an error page in the balancer's style, or the content. Every
/// answer says `X-Content-Type-Options: nosniff`, so a browser takes the JSON and the metrics
/// text for what their `Content-Type` says, never for a page or a script. With `json`, an
/// error is `{"status": N, "error": "why"}` rather than a page.
fn render(mut answer: Answer, head_only: bool, json: bool) -> Vec<u8> {
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

/// Which handler answers `method path`; `405` with `Allow` for a known path and another method.
fn route(method: &str, path: &str, body: &[u8], shared: &AdminShared) -> Answer {
    let lb = &shared.balancer;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (allow, answer): (&str, Option<Answer>) = match segments.as_slice() {
        ["metrics"] => ("GET, HEAD", (method == "GET").then(|| metrics(lb))),
        [""] | ["status"] => (
            "GET, HEAD",
            (method == "GET").then(|| Answer {
                status: 200,
                body: Ok(("text/html; charset=utf-8", status(shared, false).html())),
                fields: vec![("Content-Security-Policy", csp::STATUS_POLICY.clone())],
            }),
        ),
        ["status.json"] => (
            "GET, HEAD",
            (method == "GET").then(|| Answer::json(200, status_json(shared))),
        ),
        ["backends"] => match method {
            "GET" => ("", Some(list(lb))),
            "POST" => (
                "",
                Some(file_managed(lb).unwrap_or_else(|| add(body, shared))),
            ),
            _ => ("GET, HEAD, POST", None),
        },
        ["backends", id] => match method {
            "GET" => (
                "",
                Some(with_backend(lb, id, |b| {
                    Answer::json(200, Row::of(b).json())
                })),
            ),
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

/// `POST /demo/{name}/{drill}[/{arg}]`: puts a demo backend in a drill (`stop`, `start`, `hang`,
/// `slow/500`, `error/500`, `ok`). Answers with the console line; the status page's buttons send
/// `then=status` and are sent back to the page (`303 See Other`).
fn demo_drill(
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

/// `/status.json`: the status, and the configuration's reloads and settings.
fn status_json(shared: &AdminShared) -> String {
    reload::in_status_json(status(shared, true).json(), &shared.balancer)
}

fn metrics(lb: &Shared) -> Answer {
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
fn reload_now(lb: &Shared) -> Answer {
    match reload::reload(lb, "POST /reload") {
        Ok(outcome) => Answer::json(200, outcome.json()),
        Err(why) => Answer::page(422, format!("reload refused, nothing changed: {why}")),
    }
}

fn list(lb: &Shared) -> Answer {
    let rows: Vec<String> = lb
        .backends
        .snapshot()
        .iter()
        .map(|b| Row::of(b).json())
        .collect();
    Answer::json(200, format!("[{}]", rows.join(",")))
}

/// Runs `f` on the backend with id `id`; `404` when there is none.
fn with_backend(lb: &Shared, id: &str, f: impl FnOnce(&Arc<Backend>) -> Answer) -> Answer {
    match id.parse().ok().and_then(|id| lb.backends.get(id)) {
        Some(b) => f(&b),
        None => Answer::page(404, "no backend with this id (GET /backends lists them)"),
    }
}

fn set_draining(lb: &Shared, id: &str, draining: bool) -> Answer {
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
fn file_managed(lb: &Shared) -> Option<Answer> {
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

fn add(body: &[u8], shared: &AdminShared) -> Answer {
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
    let _changing = shared.changes.lock().unwrap_or_else(|e| e.into_inner());
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

fn remove(id: &str, shared: &AdminShared) -> Answer {
    let lb = &shared.balancer;
    let _changing = shared.changes.lock().unwrap_or_else(|e| e.into_inner());
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
pub fn parse_new_backend(body: &[u8]) -> Result<BackendSpec, String> {
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
fn percent_decode(s: &str) -> Result<String, String> {
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
