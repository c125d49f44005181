//! The lab: switch the strategy and the weights live, and read why each request went where
//! it went.
//!
//! | request | answer |
//! |---|---|
//! | `POST /strategy` | body `name=least-conn` (or any other [`StrategyKind`] name): the next request is picked so |
//! | `POST /backends/{id}/weight` | body `weight=3`: its share from the next request on |
//!
//! Both take the admin's rules as every change does (the token, and no cross-site form), and
//! both answer with the new state as JSON, or, for the status page's own forms (which send
//! `then=status`), with `303` back to the page. A switch keeps the backends, their idle
//! connections and their health; requests being routed finish with the strategy they
//! started with. Each switch is printed and marked on the page's charts, as `DOWN` and `UP`
//! are. A weight set here is this copy's runtime state, as HAProxy's `set server weight`:
//! with `--backends-file`, a reload that gives the backend another weight wins.
//!
//! The explanations and the page's controls are in [`super::why`].

use super::AdminShared;
use super::answers::{Answer, percent_decode, with_backend};
use super::status::Row;
use crate::config::{MAX_WEIGHT, StrategyKind};
use crate::console;

/// The lab's paths: the answer to `POST`, `None` for another method (`405`).
pub(super) fn route(
    method: &str,
    path: &[&str],
    body: &[u8],
    shared: &AdminShared,
) -> Option<Answer> {
    match (method, path) {
        ("POST", ["strategy"]) => Some(set_strategy(shared, body)),
        ("POST", ["backends", id, "weight"]) => Some(set_weight(shared, id, body)),
        _ => None,
    }
}

/// `POST /strategy`: `name=least-conn`.
fn set_strategy(shared: &AdminShared, body: &[u8]) -> Answer {
    let form = match Form::parse(body, &["name"]) {
        Ok(form) => form,
        Err(why) => return Answer::page(400, why),
    };
    let all = |last| StrategyKind::names(|_| true, last);
    let Some(name) = form.value.as_deref() else {
        return Answer::page(400, format!("send name={}", all(" or ")));
    };
    let Some(kind) = StrategyKind::parse(name) else {
        return Answer::page(400, format!("unknown strategy {name:?} ({})", all(", ")));
    };
    let lb = &shared.balancer;
    let old = lb.backends.set_strategy(kind);
    if old != kind {
        console::notice(format_args!(
            "[Admin] Strategy {} -> {}",
            old.name(),
            kind.name()
        ));
        for b in lb.backends.snapshot().iter() {
            b.stats.history.event_now("STRATEGY", kind.name());
        }
    }
    let json = format!(
        "{{\"strategy\":\"{}\",\"was\":\"{}\"}}",
        kind.name(),
        old.name()
    );
    form.answer(Answer::json(200, with_weights_note(json, shared)))
}

/// `POST /backends/{id}/weight`: `weight=3`.
fn set_weight(shared: &AdminShared, id: &str, body: &[u8]) -> Answer {
    let form = match Form::parse(body, &["weight"]) {
        Ok(form) => form,
        Err(why) => return Answer::page(400, why),
    };
    let weight = form.value.as_deref().and_then(|w| w.parse::<u32>().ok());
    let Some(weight) = weight.filter(|w| (1..=MAX_WEIGHT).contains(w)) else {
        return Answer::page(
            400,
            format!("send weight=N, a whole number from 1 to {MAX_WEIGHT}"),
        );
    };
    with_backend(&shared.balancer, id, |b| {
        let old = b.weight();
        if old != weight {
            b.set_weight(weight);
            console::notice(format_args!(
                "[Admin] Backend {} {} weight {old} -> {weight}",
                b.id, b.url
            ));
            b.stats.history.event_now("WEIGHT", &weight.to_string());
        }
        form.answer(Answer::json(
            200,
            with_weights_note(Row::of(b).json(), shared),
        ))
    })
}

/// A weight the strategy in force does not read is said, not ignored in silence (issue 22):
/// `json` gains a `"note"`, and the console a line. (At start, in a config file and in a
/// backends file, such a weight is an error; here the lab lets a reader set weights and
/// strategies in any order.)
fn with_weights_note(mut json: String, shared: &AdminShared) -> String {
    let lb = &shared.balancer;
    let kind = lb.backends.strategy();
    let weighted = lb.backends.snapshot().iter().any(|b| b.weight() != 1);
    if weighted && !kind.reads_weights() {
        let note = format!(
            "{} ignores weights: switch to {} for them to count",
            kind.name(),
            StrategyKind::names(StrategyKind::reads_weights, " or ")
        );
        console::notice(format_args!("[Admin] Note: {note}"));
        json.insert_str(json.len() - 1, &format!(",\"note\":\"{note}\""));
    }
    json
}

/// A one-field form body (`name=value`), with the status page's `then=status`.
struct Form {
    value: Option<String>,
    back_to_page: bool,
}

impl Form {
    fn parse(body: &[u8], field: &[&str]) -> Result<Form, String> {
        let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
        let mut form = Form {
            value: None,
            back_to_page: false,
        };
        for pair in text.trim().split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "then" if value == "status" => form.back_to_page = true,
                _ if field.contains(&name) => form.value = Some(percent_decode(value)?),
                _ => return Err(format!("unknown field {name:?} ({} is known)", field[0])),
            }
        }
        Ok(form)
    }

    /// `answer`, or `303` back to the status page for its own forms.
    fn answer(&self, answer: Answer) -> Answer {
        if !self.back_to_page {
            return answer;
        }
        Answer {
            status: 303,
            body: Ok(("text/plain; charset=utf-8", "see /status\n".to_string())),
            fields: vec![("Location", "/status".to_string())],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies() {
        let f = Form::parse(b"name=least-conn&then=status", &["name"]).unwrap();
        assert_eq!(f.value.as_deref(), Some("least-conn"));
        assert!(f.back_to_page);
        let f = Form::parse(b"weight=3\n", &["weight"]).unwrap();
        assert_eq!((f.value.as_deref(), f.back_to_page), (Some("3"), false));
        assert!(Form::parse(b"colour=red", &["name"]).is_err());
        assert!(Form::parse(b"name=%zz", &["name"]).is_err());
        assert!(Form::parse(&[0xff], &["name"]).is_err());
        assert_eq!(Form::parse(b"", &["name"]).unwrap().value, None);
    }
}
