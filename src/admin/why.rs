//! Why each request went where it went, in words, and the status page's lab controls.
//!
//! The facts are [`crate::backends::strategy::explain`]'s, one [`Why`] per decision; the words are
//! made here only when the status page or `/status.json` is read, with each backend named
//! as the page names it (the demo's `Red`, else its URL).

use crate::backends::member::Backend;
use crate::backends::strategy::explain::{SkipCode, Why};
use crate::config::{MAX_WEIGHT, StrategyKind};
use crate::http::pages::escape;
use crate::log::Decision;
use std::fmt::Write as _;
use std::sync::Arc;

/// One decision's explanation in words, made when the page is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    /// The strategy that picked.
    pub strategy: &'static str,
    /// Its reason, e.g. `least-conn: Red 0 active, Blue 3`.
    pub reason: String,
    /// Each backend passed over: its id, name, state code and the sentence.
    pub skipped: Vec<(usize, String, &'static str, String)>,
    /// Passed over but not listed (past [`crate::backends::strategy::explain::MAX_SKIPS`]).
    pub more: u16,
    /// The pick was made in panic mode.
    pub panic: bool,
}

impl Explained {
    /// The whole explanation on one line.
    pub fn text(&self) -> String {
        let mut out = self.reason.clone();
        for (_, _, _, text) in &self.skipped {
            let _ = write!(out, "; skipped {text}");
        }
        if self.more > 0 {
            let _ = write!(out, "; and {} more skipped", self.more);
        }
        out
    }

    /// As a JSON object; `json_string` writes a JSON string.
    pub fn json(&self, out: &mut String, json_string: fn(&mut String, &str)) {
        out.push_str("{\"strategy\":");
        json_string(out, self.strategy);
        out.push_str(",\"reason\":");
        json_string(out, &self.reason);
        let _ = write!(out, ",\"panic\":{},\"skipped\":[", self.panic);
        for (i, (id, name, state, text)) in self.skipped.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{{\"id\":{id},\"name\":");
            json_string(out, name);
            out.push_str(",\"state\":");
            json_string(out, state);
            out.push_str(",\"reason\":");
            json_string(out, text);
            out.push('}');
        }
        let _ = write!(out, "],\"more_skipped\":{},\"text\":", self.more);
        json_string(out, &self.text());
        out.push('}');
    }
}

/// The explanations of `recent`, in its order, backends named by `name_of` (the demo's
/// `Red`, or the URL); one that left the list is `#ID`.
pub fn explain(
    backends: &[Arc<Backend>],
    name_of: &dyn Fn(&Backend) -> String,
    recent: &[Decision],
) -> Vec<Option<Explained>> {
    let name = |id: usize| {
        backends
            .iter()
            .find(|b| b.id == id)
            .map_or_else(|| format!("#{id}"), |b| name_of(b))
    };
    recent
        .iter()
        .map(|d| d.why.as_ref().map(|w| words(w, backends, &name)))
        .collect()
}

fn words(w: &Why, backends: &[Arc<Backend>], name: &dyn Fn(usize) -> String) -> Explained {
    Explained {
        strategy: w.strategy.name(),
        reason: w.reason_text(name),
        skipped: w
            .skipped()
            .iter()
            .map(|s| {
                let state = match s.code {
                    SkipCode::Down | SkipCode::TrialTaken => "DOWN",
                    SkipCode::Draining => "DRAINING",
                    SkipCode::Failed(_) => "TRIED",
                };
                (s.id, name(s.id), state, Why::skip_text(s, backends, name))
            })
            .collect(),
        more: w.more(),
        panic: w.panic,
    }
}

/// The status page's lab controls (the demo's page only): the strategy, and each backend's
/// weight (`rows`: id, name, weight), as forms that post to [`super::lab`]'s API and come
/// back to the page.
pub fn controls_html(strategy: &str, rows: &[(usize, String, u32)], out: &mut String) {
    out.push_str(
        "<h2>Lab: strategy and weights</h2>\n<div id=\"lab\">\
         <form method=\"post\" action=\"/strategy\"><label>strategy \
         <select name=\"name\">",
    );
    for name in StrategyKind::ALL.map(StrategyKind::name) {
        let selected = if name == strategy { " selected" } else { "" };
        let _ = write!(out, "<option{selected}>{name}</option>");
    }
    out.push_str(
        "</select></label><input type=\"hidden\" name=\"then\" value=\"status\">\
         <button>switch</button></form>\n",
    );
    for (id, name, w) in rows {
        let _ = writeln!(
            out,
            "<form method=\"post\" action=\"/backends/{id}/weight\"><label>{name} weight \
             <input name=\"weight\" type=\"number\" min=\"1\" max=\"{MAX_WEIGHT}\" value=\"{w}\" \
             size=\"3\"></label><input type=\"hidden\" name=\"then\" value=\"status\">\
             <button>set</button></form>",
            name = escape(name),
        );
    }
    out.push_str("</div>\n");
}
