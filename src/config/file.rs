//! The config file (`--config PATH`): the same flags, one a line, without their dashes.
//!
//! ```text
//! # /etc/load-balancer.conf
//! listen 0.0.0.0:8080
//! backend http://10.0.0.1:80,weight=2   # a repeatable flag repeats its line
//! backend http://10.0.0.2:80
//! strategy weighted
//! health-check /health
//! quiet
//! ```
//!
//! A line `name value` is the flag `--name value`, read by the same row of [`FLAGS`] as the
//! command line, so every flag works here with no code of its own. `#` at the start of a
//! line or after a space starts a comment; blank lines are skipped. The file is read first
//! and the command line second, and a flag given on the command line replaces all of the
//! file's lines for it (for a repeatable flag such as `backend`, the command line's list
//! replaces the file's). An error names the file, the line and the flag.
//!
//! Each [`Setting`] remembers where it came from, for `--check` ([`report`]).

use super::{Config, FLAGS, Flag};
use std::fmt::Write as _;
use std::path::Path;

/// Largest config file read (a config file is a few hundred lines; this is a typo guard).
pub const MAX_FILE: u64 = 1 << 20;

/// Flags that only make sense on the command line.
const COMMAND_LINE_ONLY: [&str; 2] = ["--config", "--check"];

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The command line.
    Flag,
    /// A line of the config file (numbered from 1).
    File(usize),
}

/// One flag with its value, as given on the command line or in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The flag, with its dashes (`--backend`).
    pub flag: &'static str,
    /// Its value as written (empty for a switch).
    pub value: String,
    /// Where it was given.
    pub source: Source,
    /// The start of an error message about it: `PATH:LINE: name` for a file's line,
    /// the flag for the command line.
    pub at: String,
}

/// The flag of the table called `name` (with dashes).
pub fn find(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.name == name)
}

/// Reads the config file at `path` into settings.
///
/// # Errors
/// The file cannot be read, is too large or not UTF-8, or a line names an unknown flag, a
/// switch with a value or a flag without one; the message starts with `PATH:LINE:`.
pub fn read(path: &Path) -> Result<Vec<Setting>, String> {
    let shown = path.display();
    let size = std::fs::metadata(path)
        .map_err(|e| format!("--config {shown}: {e}"))?
        .len();
    if size > MAX_FILE {
        return Err(format!(
            "--config {shown}: {size} bytes is more than a config file ({MAX_FILE} at most)"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("--config {shown}: {e}"))?;
    parse(&shown.to_string(), &text)
}

/// Parses the text of a config file called `path` (for messages).
///
/// # Errors
/// As [`read`], for the first bad line.
pub fn parse(path: &str, text: &str) -> Result<Vec<Setting>, String> {
    let mut settings = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = without_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        let number = index + 1;
        let (name, value) = line
            .split_once(char::is_whitespace)
            .map_or((line, ""), |(n, v)| (n, v.trim()));
        let at = format!("{path}:{number}: {name}");
        let flag = find(&format!("--{name}"))
            .filter(|f| !name.starts_with('-') && !COMMAND_LINE_ONLY.contains(&f.name))
            .ok_or_else(|| format!("{at}: unknown setting (write a flag without its dashes)"))?;
        match (flag.value, value.is_empty()) {
            (None, false) => return Err(format!("{at}: takes no value")),
            (Some(meta), true) => return Err(format!("{at}: needs a value ({meta})")),
            _ => {}
        }
        settings.push(Setting {
            flag: flag.name,
            value: value.to_string(),
            source: Source::File(number),
            at,
        });
    }
    Ok(settings)
}

/// The line up to a `#` that starts it or follows a space or tab.
fn without_comment(line: &str) -> &str {
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        if c == '#' && previous.is_whitespace() {
            return &line[..i];
        }
        previous = c;
    }
    line
}

/// The file's settings, then the command line's; a flag on the command line drops every
/// line of the file for the same flag.
pub fn merge(file: Vec<Setting>, command_line: Vec<Setting>) -> Vec<Setting> {
    let mut all: Vec<Setting> = file
        .into_iter()
        .filter(|s| !command_line.iter().any(|c| c.flag == s.flag))
        .collect();
    all.extend(command_line);
    all
}

/// The effective configuration, for `--check`: every flag of the table with its value and
/// where it came from (`default`, the file's line, or `flag`), then the backends a
/// `--backends-file` gave.
pub fn report(config: &Config) -> String {
    let file = config.config_file.as_ref().map(|p| p.display().to_string());
    let defaults = Config::default();
    let mut out = String::new();
    for flag in FLAGS.iter().filter(|f| f.name != "--check") {
        let name = &flag.name[2..];
        let given: Vec<&Setting> = config
            .settings
            .iter()
            .filter(|s| s.flag == flag.name)
            .collect();
        if given.is_empty() {
            let shown = flag.default.show(&defaults);
            let _ = writeln!(out, "{name:<24} {shown:<40} default");
        }
        for s in given {
            let value = if flag.value.is_none() { "on" } else { &s.value };
            let from = match (&s.source, &file) {
                (Source::File(line), Some(path)) => format!("file {path}:{line}"),
                _ => "flag".to_string(),
            };
            let _ = writeln!(out, "{name:<24} {value:<40} {from}");
        }
    }
    if let Some(path) = &config.backends_file {
        for b in &config.backends {
            let value = format!("{},weight={}", b.url, b.weight);
            let _ = writeln!(
                out,
                "{:<24} {value:<40} backends-file {}",
                "backend",
                path.display()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(settings: &[Setting]) -> Vec<(&str, &str)> {
        settings
            .iter()
            .map(|s| (s.flag, s.value.as_str()))
            .collect()
    }

    #[test]
    fn lines_comments_and_switches() {
        let text = "# a comment\n\nlisten 0.0.0.0:8080\n  backend   http://10.0.0.1:80,weight=2  # first\nquiet\nadmin-token a#b\n";
        let s = parse("lb.conf", text).unwrap();
        assert_eq!(
            names(&s),
            [
                ("--listen", "0.0.0.0:8080"),
                ("--backend", "http://10.0.0.1:80,weight=2"),
                ("--quiet", ""),
                ("--admin-token", "a#b"),
            ]
        );
        assert_eq!(s[1].source, Source::File(4));
        assert_eq!(s[1].at, "lb.conf:4: backend");
    }

    #[test]
    fn bad_lines_name_the_file_line_and_flag() {
        for (text, needle) in [
            ("listen 1:1\nnope 3\n", "lb.conf:2: nope: unknown setting"),
            ("--listen 1:1\n", "lb.conf:1: --listen: unknown setting"),
            ("quiet yes\n", "lb.conf:1: quiet: takes no value"),
            ("\n\nlisten\n", "lb.conf:3: listen: needs a value"),
            ("config other.conf\n", "lb.conf:1: config: unknown"),
            ("check\n", "lb.conf:1: check: unknown"),
        ] {
            let err = parse("lb.conf", text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_command_line_replaces_the_files_lines_of_a_flag() {
        let file = parse(
            "f",
            "backend http://127.0.0.1:1\nbackend http://127.0.0.1:2\nquiet\n",
        )
        .unwrap();
        let cli = vec![Setting {
            flag: "--backend",
            value: "http://127.0.0.1:3".into(),
            source: Source::Flag,
            at: "--backend".into(),
        }];
        assert_eq!(
            names(&merge(file, cli)),
            [("--quiet", ""), ("--backend", "http://127.0.0.1:3")]
        );
    }
}
