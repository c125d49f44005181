//! Why a request went where it went: the facts of one routing decision, kept small, and
//! turned into words only when somebody reads them.
//!
//! Every pick returns a [`Choice`]: the index and the strategy's own numbers at that moment
//! ([`Reason`]: the current weight, the requests in flight, the cookie's token...). The
//! backend set ([`crate::backends::Candidates`]) adds the backends it passed over and why
//! ([`SkipCode`]: down, draining, already tried), at most [`MAX_SKIPS`] of them. All of it
//! is `Copy` and of fixed size: a request carries its [`Why`] to the log without one
//! allocation, and the status page, `/status.json` and the `--explain` console line write
//! the sentence ([`Why::reason_text`], [`Why::skip_text`]) when they are read.
//!
//! What a skipped backend's state means is read at that time too: "DOWN since 12:00:01,
//! connection refused, 3 failed requests in a row" is the backend's health as the page is
//! drawn, which is the state that skipped it unless it has come back since (then the text
//! says so).

use crate::backends::member::Backend;
use crate::config::StrategyKind;
use crate::time;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

/// Most skipped backends kept per decision; more are only counted.
pub const MAX_SKIPS: usize = 4;
/// Most other backends a least-connections reason lists beside the winner.
pub const MAX_COMPARED: usize = 3;

/// A strategy's pick: where, and its numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// Index in the list the strategy was given.
    pub index: usize,
    /// The numbers behind it.
    pub reason: Reason,
}

/// A strategy's own reason for a pick, as numbers. Ids are [`Backend::id`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Round robin: the next usable backend after `after`, where the rotation stood.
    RoundRobin {
        /// The backend the rotation stood at (the last one picked, usually).
        after: usize,
    },
    /// Smooth weighted round robin: the winner's current weight and the sum of the weights.
    Weighted {
        /// The winner's current weight when it won.
        current: i64,
        /// The sum of the usable backends' weights (the winner's current weight drops by it).
        total: i64,
    },
    /// Least connections: the winner's requests in flight, and up to [`MAX_COMPARED`] others'.
    LeastConn {
        /// The winner's requests in flight.
        active: u32,
        /// Other usable backends: id and requests in flight.
        others: [(usize, u32); MAX_COMPARED],
        /// How many of `others` are filled.
        len: u8,
    },
    /// ip-hash: the winner has the highest score for the client's address.
    IpHash,
    /// cookie: the affinity cookie named this backend (its tag).
    Pinned {
        /// The cookie's token, the backend's [`Backend::tag`].
        tag: u64,
    },
    /// cookie: no usable backend named, so round robin.
    Unpinned {
        /// The request had a cookie, naming a backend gone, down or already tried.
        had_cookie: bool,
        /// Where the rotation stood, as [`Reason::RoundRobin`].
        after: usize,
    },
    /// A strategy with no numbers to show, in its own words (`random: a roll of the dice`):
    /// a new strategy's file can start with this, without a variant of its own here.
    Plain(&'static str),
}

/// Why a backend was passed over for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipCode {
    /// Out of rotation by its health.
    Down,
    /// Out of rotation by its health, and its one trial request was taken by another request.
    TrialTaken,
    /// Draining: no new requests.
    Draining,
    /// Tried for this request already, and it failed so.
    Failed(&'static str),
}

/// One backend passed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skip {
    /// Its [`Backend::id`].
    pub id: usize,
    /// Why.
    pub code: SkipCode,
}

/// One request's routing decision, as facts. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Why {
    /// The strategy that picked (strategies switch at run time).
    pub strategy: StrategyKind,
    /// The client's address (ip-hash's key).
    pub client: IpAddr,
    /// The last backend picked (its id) and the strategy's reason; `None` if none was.
    pub chosen: Option<(usize, Reason)>,
    /// The pick was made in panic mode: no backend in rotation was left, so the ones out
    /// of it were asked too.
    pub panic: bool,
    skips: [Skip; MAX_SKIPS],
    len: u8,
    /// Skips past [`MAX_SKIPS`], counted only.
    more: u16,
}

impl Why {
    /// A decision not made yet.
    pub fn new(strategy: StrategyKind, client: IpAddr) -> Why {
        Why {
            strategy,
            client,
            chosen: None,
            panic: false,
            skips: [Skip {
                id: 0,
                code: SkipCode::Draining,
            }; MAX_SKIPS],
            len: 0,
            more: 0,
        }
    }

    /// Notes a backend passed over. The first reason given for a backend stands, except
    /// that a failed attempt replaces any other (it says more).
    pub fn skip(&mut self, id: usize, code: SkipCode) {
        let len = usize::from(self.len);
        if let Some(s) = self.skips[..len].iter_mut().find(|s| s.id == id) {
            if matches!(code, SkipCode::Failed(_)) {
                s.code = code;
            }
            return;
        }
        if len < MAX_SKIPS {
            self.skips[len] = Skip { id, code };
            self.len += 1;
        } else {
            self.more = self.more.saturating_add(1);
        }
    }

    /// Takes `id` off the skipped (it was picked after all, in panic mode).
    pub fn unskip(&mut self, id: usize) {
        let len = usize::from(self.len);
        if let Some(at) = self.skips[..len].iter().position(|s| s.id == id) {
            self.skips.copy_within(at + 1..len, at);
            self.len -= 1;
        }
    }

    /// The backends passed over, in order.
    pub fn skipped(&self) -> &[Skip] {
        &self.skips[..usize::from(self.len)]
    }

    /// How many more were passed over than [`Why::skipped`] lists.
    pub fn more(&self) -> u16 {
        self.more
    }

    /// The strategy's reason in words, e.g. `least-conn: Red 0 active, Blue 3`;
    /// `name` gives a backend's name from its id.
    pub fn reason_text(&self, name: &dyn Fn(usize) -> String) -> String {
        let Some((id, reason)) = self.chosen else {
            return "no backend left to try".to_string();
        };
        let mut out = String::new();
        let _ = match reason {
            Reason::RoundRobin { after } => write!(out, "round robin: next after {}", name(after)),
            Reason::Weighted { current, total } => write!(
                out,
                "weighted: {}'s turn (current weight {current} of {total})",
                name(id)
            ),
            Reason::LeastConn {
                active,
                others,
                len,
            } => {
                let _ = write!(out, "least-conn: {} {active} active", name(id));
                for (other, n) in &others[..usize::from(len)] {
                    let _ = write!(out, ", {} {n}", name(*other));
                }
                Ok(())
            }
            Reason::IpHash => write!(out, "ip-hash: highest score for {}", self.client),
            Reason::Plain(words) => write!(out, "{words}"),
            Reason::Pinned { tag } => write!(
                out,
                "cookie: pinned by {}={tag:016x}",
                super::AFFINITY_COOKIE
            ),
            Reason::Unpinned { had_cookie, after } => write!(
                out,
                "cookie: {}, round robin (next after {})",
                if had_cookie {
                    "its cookie names no usable backend"
                } else {
                    "new client"
                },
                name(after)
            ),
        };
        if self.panic {
            out.push_str(
                " (panic mode: no backend in rotation was left, so those out of it were asked too)",
            );
        }
        out
    }

    /// One skipped backend in words, e.g. `Blue: DOWN since 12:00:01, connection refused, 3
    /// failed requests in a row`, with its state read now from `backends`.
    pub fn skip_text(
        skip: &Skip,
        backends: &[Arc<Backend>],
        name: &dyn Fn(usize) -> String,
    ) -> String {
        let who = name(skip.id);
        let backend = backends.iter().find(|b| b.id == skip.id);
        match skip.code {
            SkipCode::Down | SkipCode::TrialTaken => {
                let mut out = format!("{who}: DOWN");
                match backend.filter(|b| !b.health.is_up()) {
                    Some(b) => {
                        if let Some(t) = b.stats.history.last_event_time("DOWN") {
                            let c = time::civil(t);
                            let _ =
                                write!(out, " since {:02}:{:02}:{:02}", c.hour, c.minute, c.second);
                        }
                        let _ = write!(out, ", {}", b.health.reason());
                    }
                    None => out.push_str(" then (in rotation again now)"),
                }
                if skip.code == SkipCode::TrialTaken {
                    out.push_str("; its one trial request went to another request");
                }
                out
            }
            SkipCode::Draining => format!("{who}: draining"),
            SkipCode::Failed(why) => format!("{who}: already tried for this request, {why}"),
        }
    }

    /// The whole explanation on one line: the reason, then each skipped backend.
    pub fn line(&self, backends: &[Arc<Backend>], name: &dyn Fn(usize) -> String) -> String {
        let mut out = self.reason_text(name);
        for s in self.skipped() {
            out.push_str("; skipped ");
            out.push_str(&Why::skip_text(s, backends, name));
        }
        if self.more > 0 {
            let _ = write!(out, "; and {} more skipped", self.more);
        }
        out
    }
}

/// A backend's name for the explanations: `#ID URL`, or `#ID` once it has left the list.
pub fn plain_name(backends: &[Arc<Backend>], id: usize) -> String {
    match backends.iter().find(|b| b.id == id) {
        Some(b) => b.url.clone(),
        None => format!("#{id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::strategy::testing::backends;
    use std::net::Ipv4Addr;

    fn why(reason: Reason, chosen: usize) -> Why {
        let mut w = Why::new(StrategyKind::RoundRobin, IpAddr::V4(Ipv4Addr::LOCALHOST));
        w.chosen = Some((chosen, reason));
        w
    }

    const NAMES: [&str; 3] = ["Red", "Blue", "Green"];

    fn name(id: usize) -> String {
        NAMES
            .get(id)
            .map_or_else(|| format!("#{id}"), |n| n.to_string())
    }

    #[test]
    fn every_reason_in_words() {
        let cases = [
            (
                Reason::RoundRobin { after: 1 },
                0,
                "round robin: next after Blue",
            ),
            (
                Reason::Weighted {
                    current: 4,
                    total: 6,
                },
                0,
                "weighted: Red's turn (current weight 4 of 6)",
            ),
            (
                Reason::LeastConn {
                    active: 0,
                    others: [(1, 3), (0, 0), (0, 0)],
                    len: 1,
                },
                0,
                "least-conn: Red 0 active, Blue 3",
            ),
            (Reason::IpHash, 2, "ip-hash: highest score for 127.0.0.1"),
            (
                Reason::Pinned { tag: 0xab },
                1,
                "cookie: pinned by lb_backend=00000000000000ab",
            ),
            (
                Reason::Unpinned {
                    had_cookie: false,
                    after: 2,
                },
                0,
                "cookie: new client, round robin (next after Green)",
            ),
            (Reason::Plain("dice: a six"), 1, "dice: a six"),
        ];
        for (reason, chosen, text) in cases {
            assert_eq!(why(reason, chosen).reason_text(&name), text);
        }
        let none = Why::new(StrategyKind::Cookie, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(none.reason_text(&name), "no backend left to try");
    }

    #[test]
    fn skips_are_kept_once_and_counted_past_the_limit() {
        let mut w = why(Reason::RoundRobin { after: 0 }, 2);
        w.skip(0, SkipCode::Down);
        w.skip(0, SkipCode::Draining); // the first reason stands...
        assert_eq!(w.skipped()[0].code, SkipCode::Down);
        w.skip(0, SkipCode::Failed("connection refused")); // ...but a failure says more
        assert_eq!(
            w.skipped(),
            [Skip {
                id: 0,
                code: SkipCode::Failed("connection refused")
            }]
        );
        for id in 1..=5 {
            w.skip(id, SkipCode::Draining);
        }
        assert_eq!((w.skipped().len(), w.more()), (MAX_SKIPS, 2));
        let line = w.line(&backends(&[1, 1, 1]), &name);
        assert!(line.ends_with("; and 2 more skipped"), "{line}");
    }

    #[test]
    fn a_backend_picked_after_all_leaves_the_skipped_in_their_order() {
        let mut w = why(Reason::RoundRobin { after: 0 }, 1);
        for id in [0, 1, 2] {
            w.skip(id, SkipCode::Down);
        }
        w.unskip(0); // panic mode: every backend was down, and Red was tried after all
        let ids: Vec<usize> = w.skipped().iter().map(|s| s.id).collect();
        assert_eq!(ids, [1, 2]);
        w.unskip(7); // never skipped: nothing changes
        assert_eq!(w.skipped().len(), 2);
    }

    #[test]
    fn skipped_backends_in_words_with_their_state_now() {
        let bs = backends(&[1, 1, 1]);
        bs[1]
            .health
            .record_failure("connection refused", 1, std::time::Duration::from_secs(10));
        bs[1].stats.history.event_now("DOWN", "connection refused");
        let mut w = why(Reason::RoundRobin { after: 1 }, 2);
        w.skip(1, SkipCode::Down);
        w.skip(0, SkipCode::Failed("connection refused"));
        let line = w.line(&bs, &name);
        let (start, rest) = line.split_once(" since ").unwrap();
        assert_eq!(start, "round robin: next after Blue; skipped Blue: DOWN");
        // hh:mm:ss, then the health's own reason.
        assert_eq!(
            &rest[8..],
            ", connection refused, 1 failed request in a row; skipped Red: already tried for \
             this request, connection refused"
        );
        // Back up by the time it is read: said so.
        bs[1].health.record_success();
        let s = Skip {
            id: 1,
            code: SkipCode::Down,
        };
        assert_eq!(
            Why::skip_text(&s, &bs, &name),
            "Blue: DOWN then (in rotation again now)"
        );
        let gone = Skip {
            id: 7,
            code: SkipCode::Draining,
        };
        assert_eq!(Why::skip_text(&gone, &bs, &name), "#7: draining");
    }
}
