//! `--backends-file PATH`: the backend list kept in a file that something else writes (a
//! Kubernetes ConfigMap, consul-template, any configuration tool), so that several copies of
//! the balancer serve one list.
//!
//! The file has one backend a line, as `--backend` takes it (`http://HOST:PORT[,weight=N]`);
//! `#` starts a comment, and blank lines are skipped:
//!
//! ```text
//! # backends for the shop, written by consul-template
//! http://10.0.0.11:8080
//! http://10.0.0.12:8080,weight=2   # the bigger machine
//! ```
//!
//! `main` reads it once at start ([`load`]; a bad file stops the start with exit status 2 and
//! names the line). Then a [`Watcher`] thread looks at the file's modification time, size
//! and inode every `--backends-file-interval` (1 s) and reads it again when one of them
//! changed; `SIGHUP` reads it at once ([`crate::reload`]). Writers replace the file by
//! renaming a new one over it, so a half-written file is never read; a file that does not
//! parse anyway is ignored whole: the list stays as it was, one error line names the file
//! and the line, and the counters in [`FileState`] count it (`/metrics`, `/status`).
//!
//! A good file is applied as a diff ([`Backends::replace`]): a backend whose URL is still
//! listed stays the same backend, with its idle connections, counters and health (a new
//! weight is set in place); new ones start as a backend added by the admin API does; a
//! backend no longer listed is drained at once (no new requests, its idle connections
//! close) and dropped when its last request in flight has finished. Requests that were
//! being routed while the list changed take the new list ([`Backends::candidates`]), so a
//! reload fails no request.
//!
//! Identity across copies: each backend is named by its URL as written in the file. The
//! affinity strategies hash that URL ([`super::strategy::ip_hash`], the cookie's
//! [`Backend::tag`]), never a number given out at run time, so every copy that reads the same
//! file sends a client to the same backend.

use super::member::{Backend, hash64};
use super::{Backends, Diff};
use crate::config::{self, BackendSpec, is_own_address};
use crate::console;
use crate::poison::IgnorePoison;
use crate::stop::{Sleeper, Stopper, Woke};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Largest backends file read, in bytes: about thirty thousand backends. A bigger file is
/// refused as a bad file (the list stays), not read into memory.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Why a backends file was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The line at fault, counted from 1; `None` for the whole file.
    pub line: Option<usize>,
    /// What is wrong.
    pub why: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(n) => write!(f, "line {n}: {}", self.why),
            None => f.write_str(&self.why),
        }
    }
}

/// Parses the text of a backends file. `own` are the addresses the balancer itself listens on
/// (`--listen`, the admin listener), which no line may name: every request would come back
/// to the balancer, or the admin API would be open to every client.
///
/// # Errors
/// The first line that is not a backend ([`BackendSpec::parse`] says why), a backend listed
/// twice (by URL or by address), the balancer's own address, or a file without any backend:
/// an empty list would answer every request with `503`, which is never what a half-rendered
/// template meant (nginx refuses an upstream without servers, too).
pub fn parse(text: &str, own: &[SocketAddr]) -> Result<Vec<BackendSpec>, FileError> {
    let mut specs: Vec<BackendSpec> = Vec::new();
    // The line of each URL and address so far: a set, so that a list of 10,000 is checked in
    // one pass (a search of the list for each line took 12 s for 45,000 lines).
    let mut urls: HashMap<String, usize> = HashMap::new();
    let mut addrs: HashMap<SocketAddr, usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let at = |why: String| FileError { line: Some(n), why };
        // A URL never holds `#` (BackendSpec refuses it), so `#` always starts a comment.
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let spec = BackendSpec::parse(line).map_err(at)?;
        if let Some(first) = urls.get(&spec.url).or_else(|| addrs.get(&spec.addr)) {
            return Err(at(format!(
                "{} is already a backend (line {first}, address {})",
                spec.url, spec.addr
            )));
        }
        if let Some(own) = own.iter().find(|own| is_own_address(**own, spec.addr)) {
            return Err(at(format!(
                "{} is this balancer's own listening address {own} (--listen or --admin): \
                 every request would come back to it",
                spec.url
            )));
        }
        urls.insert(spec.url.clone(), n);
        addrs.insert(spec.addr, n);
        specs.push(spec);
    }
    if specs.is_empty() {
        return Err(FileError {
            line: None,
            why: "no backend in the file (an empty list would answer every request with 503)"
                .into(),
        });
    }
    Ok(specs)
}

/// Reads and parses the backends file at `path` (see [`parse`]).
///
/// # Errors
/// A message that names the file, and the line when one is at fault: the file cannot be
/// read, is larger than [`MAX_FILE_BYTES`], is not UTF-8, or does not parse.
pub fn load(path: &Path, own: &[SocketAddr]) -> Result<Vec<BackendSpec>, String> {
    let named = |why: &dyn std::fmt::Display| format!("{}: {why}", path.display());
    let mut bytes = Vec::new();
    let file = open_regular(path).map_err(|e| named(&e))?;
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| named(&e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(named(&format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|_| named(&"the file is not UTF-8 text"))?;
    parse(&text, own).map_err(|e| named(&e))
}

/// Opens `path` for reading if it is a regular file. The open itself never waits: a FIFO
/// there would block a plain `open` until a writer came, and the watcher with it (a `SIGTERM`
/// then never finished its drain). `O_NONBLOCK` makes such an open return at once; a regular
/// file ignores the flag.
fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        /// `O_NONBLOCK` on Linux (`<fcntl.h>`; the value on x86-64, arm64 and riscv64).
        const O_NONBLOCK: i32 = 0o4000;
        options.custom_flags(O_NONBLOCK);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// A 64-bit name of a list: the same backends with the same weights in the same order give
/// the same value in every copy (shown as 16 hex digits in `/status` and `/metrics`).
pub fn list_hash<'a>(list: impl IntoIterator<Item = (&'a str, u32)>) -> u64 {
    let mut text = String::new();
    for (url, weight) in list {
        let _ = writeln!(text, "{url},weight={weight}");
    }
    hash64(text.as_bytes())
}

/// What the file watcher has done, for `/status` and `/metrics`.
#[derive(Debug)]
pub struct FileState {
    /// The file, as given to `--backends-file`.
    pub path: PathBuf,
    /// What the reads did, changed together under one lock.
    last: Mutex<Last>,
}

/// What the reads of the file did, changed together.
#[derive(Debug, Clone)]
struct Last {
    /// Times the list changed, counting the list read at start as 1.
    generation: u64,
    /// Reads of the file that were refused (bad syntax, unreadable, missing).
    errors: u64,
    /// When the file was last read and taken.
    loaded: SystemTime,
    /// Why the last read was refused; `None` when it was taken.
    error: Option<String>,
    /// [`list_hash`] of the list in force.
    list: u64,
}

/// A copy of [`FileState`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// The file.
    pub path: String,
    /// Times the list changed; 1 is the list read at start.
    pub generation: u64,
    /// When the file was last read and taken.
    pub loaded: SystemTime,
    /// Reads of the file that were refused since start.
    pub errors: u64,
    /// Why the last read was refused, if it was.
    pub last_error: Option<String>,
    /// [`list_hash`] of the list in force: two copies with the same value serve the same list.
    pub list: u64,
}

impl FileState {
    /// The state of a balancer started with the list of `path`, `specs`: generation 1.
    pub fn new(path: PathBuf, specs: &[BackendSpec]) -> FileState {
        FileState {
            path,
            last: Mutex::new(Last {
                generation: 1,
                errors: 0,
                loaded: SystemTime::now(),
                error: None,
                list: list_hash(specs.iter().map(|s| (s.url.as_str(), s.weight))),
            }),
        }
    }

    /// What it says now.
    pub fn info(&self) -> FileInfo {
        let last = self.last.lock().ignore_poison().clone();
        FileInfo {
            path: self.path.display().to_string(),
            generation: last.generation,
            loaded: last.loaded,
            errors: last.errors,
            last_error: last.error,
            list: last.list,
        }
    }

    /// Records a read that was taken; `changed`: it changed the list.
    fn taken(&self, changed: bool, list: u64) -> u64 {
        let mut last = self.last.lock().ignore_poison();
        last.generation += u64::from(changed);
        last.loaded = SystemTime::now();
        last.error = None;
        last.list = list;
        last.generation
    }

    /// Records a read that was refused, for `why`; returns the generation still in force.
    pub fn refused(&self, why: String) -> u64 {
        let mut last = self.last.lock().ignore_poison();
        last.error = Some(why);
        last.errors += 1;
        last.generation
    }
}

/// What tells a changed file from an unchanged one without reading it: modification time,
/// size, and (on Unix) device and inode, which change when a new file is renamed over the
/// old one even within one tick of the clock. Read through symbolic links, so a ConfigMap
/// volume's swapped `..data` link counts as a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    file: (u64, u64),
}

impl Stamp {
    /// The file's stamp now; `None` when it cannot be read (missing, no permission).
    fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let file = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let file = (0, 0);
        Some(Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            file,
        })
    }
}

/// The thread that watches the backends file. [`Watcher::stop`] (or dropping it) stops and
/// joins it.
#[derive(Debug)]
pub struct Watcher {
    thread: Stopper,
}

/// What the watcher thread works with.
struct Watch {
    state: Arc<FileState>,
    backends: Arc<Backends>,
    /// The addresses the balancer listens on (see [`parse`]).
    own: Vec<SocketAddr>,
    interval: Duration,
    /// The file's stamp when it was last read.
    seen: Option<Stamp>,
    /// Backends the file no longer lists that still have requests in flight.
    leaving: Vec<Arc<Backend>>,
}

impl Watcher {
    /// Starts watching `state.path` every `interval` for `backends`, which hold the file's
    /// list already. The file is read once more here, before the thread starts, so that a
    /// change made between the read at start and this call is not missed (an unchanged
    /// file changes nothing).
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start(
        state: Arc<FileState>,
        backends: Arc<Backends>,
        own: Vec<SocketAddr>,
        interval: Duration,
    ) -> io::Result<Watcher> {
        let mut watch = Watch {
            seen: Stamp::of(&state.path),
            state,
            backends,
            own,
            interval,
            leaving: Vec::new(),
        };
        watch.read();
        let thread = Stopper::spawn("backends-file", move |sleeper| watch.run(sleeper))?;
        Ok(Watcher { thread })
    }

    /// Stops the thread and waits for it.
    pub fn stop(self) {
        self.thread.stop();
    }
}

impl Watch {
    /// Looks at the file every interval until stopped.
    fn run(&mut self, sleeper: &Sleeper) {
        loop {
            if sleeper.sleep(self.interval) == Woke::Stop {
                return;
            }
            // Stamp first, then read: a change after the stamp is seen at the next look.
            let stamp = Stamp::of(&self.state.path);
            if stamp != self.seen {
                self.seen = stamp;
                self.read();
            }
            self.sweep();
        }
    }

    /// Reads the file and applies it, or refuses it whole.
    fn read(&mut self) {
        let path = &self.state.path;
        let read = load(path, &self.own).and_then(|specs| {
            config::weights_are_used(self.backends.strategy(), &specs).map(|()| specs)
        });
        let specs = match read {
            Ok(specs) => specs,
            Err(why) => {
                let message =
                    format!("[Backends] {why}: file ignored, the backend list stays as it was");
                let generation = self.state.refused(why);
                console::error(format_args!("{message} (generation {generation})"));
                return;
            }
        };
        let diff = take(&self.state, &self.backends, &specs);
        self.leaving.extend(diff.removed);
    }

    /// Drops the backends that left the list once their last request has finished.
    fn sweep(&mut self) {
        self.leaving.retain(|b| {
            let busy = b.active() > 0;
            if !busy {
                console::notice(format_args!(
                    "[Backends] {} dropped: no request left in flight",
                    b.url
                ));
            }
            busy
        });
    }
}

/// Applies `specs`, the file's list read and found good, to `backends` as a diff, and
/// records it in `state`: one line says what changed, and the backends that left start to
/// drain. Returns the diff (the callers keep the leaving backends to say when they go).
pub fn take(state: &FileState, backends: &Backends, specs: &[BackendSpec]) -> Diff {
    let diff = backends.replace(specs);
    let list = list_hash(specs.iter().map(|s| (s.url.as_str(), s.weight)));
    let generation = state.taken(!diff.is_empty(), list);
    if !diff.is_empty() {
        console::notice(format_args!(
            "[Backends] {} generation {generation}: {}",
            state.path.display(),
            describe(&diff)
        ));
    }
    for gone in &diff.removed {
        gone.set_draining(true);
    }
    diff
}

/// One line saying what a reload changed.
pub fn describe(diff: &Diff) -> String {
    let mut parts = Vec::new();
    for b in &diff.added {
        parts.push(format!("+ {} (id {}, weight {})", b.url, b.id, b.weight()));
    }
    for b in &diff.removed {
        let busy = match b.active() {
            0 => String::new(),
            n => format!(", {n} in flight finish first"),
        };
        parts.push(format!("- {} (id {}, draining{busy})", b.url, b.id));
    }
    for (b, old) in &diff.reweighted {
        parts.push(format!("~ {} weight {old} -> {}", b.url, b.weight()));
    }
    if diff.reordered {
        parts.push("same backends, new order".into());
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen() -> SocketAddr {
        "127.0.0.1:9000".parse().unwrap()
    }

    #[test]
    fn lines_comments_and_weights() {
        let text = "# the shop\n\n  http://127.0.0.1:8001  \nhttp://127.0.0.1:8002,weight=3 # big\n\t# done\n";
        let specs = parse(text, &[listen()]).unwrap();
        let got: Vec<(&str, u32)> = specs.iter().map(|s| (s.url.as_str(), s.weight)).collect();
        assert_eq!(
            got,
            [("http://127.0.0.1:8001", 1), ("http://127.0.0.1:8002", 3)]
        );
        // CRLF line ends, as an editor on Windows writes them.
        assert_eq!(
            parse("http://127.0.0.1:8001\r\n", &[listen()])
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line, needle) in [
            ("http://127.0.0.1:8001\nhttps://x:1\n", Some(2), "https"),
            ("\n\n127.0.0.1:8001", Some(3), "http://HOST:PORT"),
            ("http://127.0.0.1:8001,weight=0", Some(1), "weight"),
            (
                "http://127.0.0.1:8001\nhttp://127.0.0.1:8001/",
                Some(2),
                "line 1",
            ),
            ("http://127.0.0.1:9000", Some(1), "own listening address"),
            ("# nothing\n\n", None, "no backend"),
            ("", None, "no backend"),
        ] {
            let e = parse(text, &[listen()]).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(needle), "{text:?}: {e}");
        }
        let e = parse("\nhttp://x", &[listen()]).unwrap_err();
        assert!(e.to_string().starts_with("line 2: "), "{e}");
    }

    #[test]
    fn the_list_hash_follows_urls_weights_and_order() {
        let a = list_hash([("http://a:1", 1), ("http://b:1", 1)]);
        assert_eq!(a, list_hash([("http://a:1", 1), ("http://b:1", 1)]));
        assert_ne!(a, list_hash([("http://b:1", 1), ("http://a:1", 1)]));
        assert_ne!(a, list_hash([("http://a:1", 2), ("http://b:1", 1)]));
    }

    #[test]
    fn a_file_too_large_or_missing_is_refused_with_its_name() {
        let dir = std::env::temp_dir().join(format!("lb-file-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.txt");
        let line = "# padding padding padding padding padding padding padding padding\n";
        std::fs::write(
            &big,
            line.repeat((MAX_FILE_BYTES as usize / line.len()) + 1),
        )
        .unwrap();
        let e = load(&big, &[listen()]).unwrap_err();
        assert!(e.contains("big.txt") && e.contains("larger than"), "{e}");
        // The limit itself is allowed: one backend, then comments up to exactly the limit.
        let mut exact = String::from("http://127.0.0.1:8001\n");
        exact.push('#');
        exact.push_str(&"x".repeat(MAX_FILE_BYTES as usize - exact.len() - 1));
        exact.push('\n');
        assert_eq!(exact.len() as u64, MAX_FILE_BYTES);
        std::fs::write(&big, &exact).unwrap();
        assert_eq!(load(&big, &[listen()]).unwrap().len(), 1);
        let e = load(&dir.join("missing.txt"), &[listen()]).unwrap_err();
        assert!(e.contains("missing.txt"), "{e}");
        std::fs::write(&big, [0xff, b'\n']).unwrap();
        assert!(load(&big, &[listen()]).unwrap_err().contains("UTF-8"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
