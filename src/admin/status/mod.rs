//! The status page: what each backend is doing, readable at a glance, as HTML and as JSON.
//!
//! The chapter's "Monitoring" is a line per request on the console. The page at `/status` shows
//! the same story live: the last routing decisions as a strip of coloured squares (the round
//! robin, visible), charts of the last minute per backend (requests answered, error rate, p99
//! latency, with the moments a backend went DOWN, came UP or was drained marked on the time
//! axis), one row per backend in its colour (UP, DOWN with the reason, or DRAINING), and the
//! demo backends' drill buttons. `/status.json` carries the same data for scripts, the
//! history of [`crate::metrics::history`] included. Both are rendered from a [`Status`]
//! snapshot by pure functions.
//!
//! The page is whole without JavaScript (the tables and the strip, reloading every
//! [`REFRESH_SECS`] through a `<noscript>` refresh). Its inline script
//! ([`csp::STATUS_SCRIPT`](super::csp::STATUS_SCRIPT)) fetches `/status.json` every
//! [`REFRESH_SECS`] and redraws the page in place, charts included; the page's
//! `Content-Security-Policy` ([`super::csp`]) lets that script and its style run and nothing
//! else.
//!
//! The folder: this file is the model, a [`Status`] read from the balancer at one moment
//! (a [`Row`] per backend, the [`Counts`] by state, a [`DemoRow`] per demo backend);
//! `admin/status/html.rs` writes the page ([`Status::html`]) and `admin/status/json.rs` the
//! JSON ([`Status::json`], [`Row::json`], [`json_string`]). The page's script and style are
//! `admin/status.js` and `admin/status.css`; `admin/answers.rs` serves the page and the JSON.

mod html;
mod json;

pub use html::{DECISION_ROWS, DRILL_BUTTONS, REFRESH_SECS, STRIP_CELL, STRIP_GAP};
pub use json::json_string;

use super::why::{self, Explained};
use crate::backends::file::FileInfo;
use crate::backends::member::Backend;
use crate::context::Shared;
use crate::http::pages::PALETTE;
use crate::log::Decision;
use crate::metrics::history::{self, Series};
use std::sync::atomic::Ordering;
use std::time::SystemTime;

/// Most backend rows on the status page and in `/status.json`; past it the rest are counted
/// in [`Counts`] only (`GET /backends` lists them all). 45,000 rows with their last minute
/// made a 57 MB `/status.json`.
pub const STATUS_ROWS: usize = 200;

/// Whether a backend takes new requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// In rotation.
    Up,
    /// Out of rotation by its health, for this reason.
    Down(String),
    /// Taken out by the admin API: requests in flight finish, no new ones come.
    Draining,
}

impl State {
    /// `UP`, `DOWN` or `DRAINING`.
    pub fn label(&self) -> &'static str {
        match self {
            State::Up => "UP",
            State::Down(_) => "DOWN",
            State::Draining => "DRAINING",
        }
    }
}

/// One backend, as the status page and the backend API show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Its id in the admin API.
    pub id: usize,
    /// `http://HOST:PORT`.
    pub url: String,
    /// A CSS colour, by id from [`PALETTE`] (so the chapter's Red and Blue stay red and blue).
    pub colour: &'static str,
    /// Up, down or draining.
    pub state: State,
    /// Its weight.
    pub weight: u32,
    /// Requests in flight.
    pub active: usize,
    /// Requests sent to it.
    pub requests: u64,
    /// Connect errors plus failed responses.
    pub errors: u64,
    /// Median request duration in seconds (bucket upper bound), if any request finished.
    pub p50: Option<f64>,
    /// 99th percentile request duration in seconds (bucket upper bound).
    pub p99: Option<f64>,
    /// The last minute, second by second (on the status page; `None` in the backend API).
    pub history: Option<Series>,
}

impl Row {
    /// The row for one backend, read from its live counters.
    pub fn of(b: &Backend) -> Row {
        let state = if b.is_draining() {
            State::Draining
        } else if b.health.is_up() {
            State::Up
        } else {
            State::Down(b.health.reason())
        };
        let s = &b.stats;
        Row {
            id: b.id,
            url: b.url.clone(),
            colour: colour(b.id),
            state,
            weight: b.weight(),
            active: b.active(),
            requests: s.requests.load(Ordering::Relaxed),
            errors: s.connect_errors.load(Ordering::Relaxed)
                + s.response_errors.load(Ordering::Relaxed),
            p50: s.duration.quantile(0.5),
            p99: s.duration.quantile(0.99),
            history: None,
        }
    }

    /// [`Row::of`] with the backend's history up to second `now` (see [`history::second`]).
    pub fn with_history(b: &Backend, now: u64) -> Row {
        Row {
            history: Some(b.stats.history.series(now).in_unix_time()),
            ..Row::of(b)
        }
    }
}

/// The colour of backend `id`.
pub fn colour(id: usize) -> &'static str {
    PALETTE[id % PALETTE.len()]
}

/// How many backends there are, by state (all of them, not only the rows shown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// All backends.
    pub total: usize,
    /// In rotation.
    pub up: usize,
    /// Out by their health.
    pub down: usize,
    /// Draining.
    pub draining: usize,
}

/// Everything the status page shows, read at one moment.
#[derive(Debug, Clone)]
pub struct Status {
    /// One row per backend, in rotation order, at most [`STATUS_ROWS`].
    pub backends: Vec<Row>,
    /// All the backends, counted by state.
    pub counts: Counts,
    /// The last routing decisions, oldest first.
    pub recent: Vec<Decision>,
    /// Why each of `recent` went where it went, in words ([`why::explain`]).
    pub why: Vec<Option<Explained>>,
    /// Client connections open now.
    pub open: u64,
    /// Of those, the ones upgraded to a tunnel (`101 Switching Protocols`), or asking a
    /// backend to be (the tunnel's slot of the cap is taken before the request goes out).
    pub tunnels: u64,
    /// Of those, the ones whose request body is being read now (a slow `POST` holds its
    /// thread and a backend connection while it trickles).
    pub bodies: u64,
    /// Client connections accepted since start.
    pub accepted: u64,
    /// Requests answered since start.
    pub requests: u64,
    /// The strategy's name.
    pub strategy: &'static str,
    /// The demo backends of this run, for the drill buttons.
    pub demos: Vec<DemoRow>,
    /// With `--backends-file`: the file, its generation and its last reads.
    pub file: Option<FileInfo>,
    /// When it was read.
    pub time: SystemTime,
}

/// One demo backend on the status page, with its drill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoRow {
    /// `Red`, `Blue`, ...
    pub name: &'static str,
    /// Its CSS colour.
    pub colour: &'static str,
    /// `http://127.0.0.1:8001`.
    pub url: String,
    /// What its drill does now.
    pub drill: String,
}

impl Status {
    /// Reads the balancer's state now; `demos` are the drill rows (see
    /// [`crate::admin::Drills`]). With `history`, each row carries its last minute, for
    /// [`Status::json`] (the HTML page draws its charts from that JSON, so it needs none).
    pub fn collect(shared: &Shared, demos: Vec<DemoRow>, history: bool) -> Status {
        let stats = &shared.stats;
        let now = history::current_second();
        let row = |b: &Backend| {
            if history {
                Row::with_history(b, now)
            } else {
                Row::of(b)
            }
        };
        let all = shared.backends.snapshot();
        let recent = shared.log.recent();
        let mut counts = Counts {
            total: all.len(),
            ..Counts::default()
        };
        for b in all.iter() {
            if b.is_draining() {
                counts.draining += 1;
            } else if b.health.is_up() {
                counts.up += 1;
            } else {
                counts.down += 1;
            }
        }
        Status {
            backends: all.iter().take(STATUS_ROWS).map(|b| row(b)).collect(),
            counts,
            why: why::explain(&all, &|b| name_of(&demos, b), &recent),
            recent,
            open: stats.open.load(Ordering::Relaxed),
            tunnels: stats.tunnels.load(Ordering::Relaxed),
            bodies: stats.bodies.load(Ordering::Relaxed),
            accepted: stats.accepted.load(Ordering::Relaxed),
            requests: stats.requests.load(Ordering::Relaxed),
            strategy: shared.backends.strategy().name(),
            demos,
            file: shared.file.as_ref().map(|f| f.info()),
            time: SystemTime::now(),
        }
    }
}

/// A backend's name in the explanations: the demo's (`Red`), else its URL.
fn name_of(demos: &[DemoRow], b: &Backend) -> String {
    (demos.iter().find(|d| d.url == b.url)).map_or_else(|| b.url.clone(), |d| d.name.to_string())
}

/// The status the HTML and JSON tests write: three backends (up, down, draining), a demo
/// backend, a decision and its explanation.
#[cfg(test)]
mod sample {
    use super::*;
    use crate::metrics::history::Event;
    use std::time::{Duration, UNIX_EPOCH};

    pub(super) fn row(id: usize, state: State) -> Row {
        Row {
            id,
            url: format!("http://127.0.0.1:800{}", id + 1),
            colour: colour(id),
            state,
            weight: 1,
            active: 2,
            requests: 10,
            errors: 1,
            p50: Some(0.0005),
            p99: None,
            history: None,
        }
    }

    /// Three seconds of history (the page has 60; the JSON writer takes any length).
    pub(super) fn series() -> Series {
        Series {
            start_ms: 1_795_606_217_000,
            answered: vec![4, 0, 2],
            failed: vec![0, 1, 0],
            server_errors: vec![1, 0, 0],
            p50: vec![Some(0.001), None, Some(0.5)],
            p99: vec![Some(0.0025), None, Some(f64::INFINITY)],
            events: vec![Event {
                time_ms: 1_795_606_218_250,
                state: "DOWN",
                reason: "connection \"refused\"".into(),
            }],
        }
    }

    pub(super) fn decision(millis: u64, request: &str, backend: &str, status: u16) -> Decision {
        Decision {
            time: UNIX_EPOCH + Duration::from_millis(millis),
            client: std::net::Ipv4Addr::LOCALHOST.into(),
            request: request.into(),
            backend: backend.into(),
            status,
            why: None,
        }
    }

    pub(super) fn status() -> Status {
        Status {
            backends: vec![
                Row {
                    history: Some(series()),
                    ..row(0, State::Up)
                },
                row(1, State::Down("connection refused <x>".into())),
                row(2, State::Draining),
            ],
            why: vec![Some(Explained {
                strategy: "round-robin",
                reason: "round robin: next after Green".into(),
                skipped: vec![(0, "Red".into(), "DOWN", "Red: DOWN, refused".into())],
                more: 0,
                panic: false,
            })],
            counts: Counts {
                total: 3,
                up: 1,
                down: 1,
                draining: 1,
            },
            recent: vec![decision(
                1_795_606_219_042,
                "GET /a\"<b>",
                "http://127.0.0.1:8002",
                200,
            )],
            open: 3,
            tunnels: 1,
            bodies: 1,
            accepted: 7,
            requests: 30,
            strategy: "round-robin",
            demos: vec![DemoRow {
                name: "Red",
                colour: "red",
                url: "http://127.0.0.1:8001".into(),
                drill: "ok: answering normally".into(),
            }],
            file: None,
            time: UNIX_EPOCH + Duration::from_millis(1_795_606_219_500),
        }
    }

    /// [`status`] with a backends file whose last read was refused.
    pub(super) fn with_file() -> Status {
        let mut s = status();
        s.file = Some(FileInfo {
            path: "/etc/lb/<b>.txt".into(),
            generation: 4,
            loaded: UNIX_EPOCH + Duration::from_millis(1_795_606_219_042),
            errors: 1,
            last_error: Some("line 2: \"x\"".into()),
            list: 0xab,
        });
        s
    }
}
