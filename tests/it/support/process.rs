//! The real binaries (`load-balancer`, and the chapter's one-file `chapter`): started with
//! flags, their console read line by line with a deadline, stopped with a signal.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits for a line of the binary's output, or for it to exit.
pub const PROCESS_WAIT: Duration = Duration::from_secs(10);

/// The start of the line both binaries print once they listen, before the address.
const RUNNING_AT: &str = "[LoadBalancer] Running at http://";

/// What an exercise test says when there is no copy of the chapter to test.
const NO_EXERCISE: &str = "

The exercises are done in a copy of the chapter, src/bin/exercise.rs, which is not there
yet. Make it, from the project's top directory, with

    cp src/bin/chapter.rs src/bin/exercise.rs

then do the exercise in that file and run the test again. (git ignores the copy, and
chapter.rs stays as the chapter wrote it, for the step tests.)
";

/// A binary to start: the program, its flags, which of its output a test reads, and how long
/// a test waits for a line of it.
pub struct Launch {
    program: &'static str,
    args: Vec<String>,
    stdout: bool,
    stderr: bool,
    /// stderr is a pipe that is never read (a stuck log shipper).
    stderr_stuck: bool,
    /// The open-file limit to start it under (`ulimit -n`), if not the test's own.
    open_files: Option<usize>,
    patience: Duration,
}

impl Launch {
    /// The `load-balancer` binary, with no flags yet; its stdout is read, and a line is
    /// waited for up to [`PROCESS_WAIT`].
    pub fn balancer() -> Launch {
        Launch {
            program: env!("CARGO_BIN_EXE_load-balancer"),
            args: Vec::new(),
            stdout: true,
            stderr: false,
            stderr_stuck: false,
            open_files: None,
            patience: PROCESS_WAIT,
        }
    }

    /// `load-balancer` as `cargo run` starts it, but on free ports: the balancer on
    /// `127.0.0.1:0`, the demo backends on port 0, no admin listener. Flags added later
    /// win (`--admin 127.0.0.1:0` turns the admin listener back on).
    pub fn demo() -> Launch {
        Launch::balancer().args(&[
            "--listen",
            "127.0.0.1:0",
            "--demo-port",
            "0",
            "--admin",
            "off",
        ])
    }

    /// `load-balancer` on `127.0.0.1:0` over the one backend at `url`, with no admin
    /// listener. Flags added later win.
    pub fn over(url: &str) -> Launch {
        Launch::balancer().args(&[
            "--listen",
            "127.0.0.1:0",
            "--backend",
            url,
            "--admin",
            "off",
        ])
    }

    /// The chapter's one-file balancer (`src/bin/chapter.rs`), with no flags yet.
    pub fn chapter() -> Launch {
        Launch {
            program: env!("CARGO_BIN_EXE_chapter"),
            ..Launch::balancer()
        }
    }

    /// The learner's copy of the chapter (`src/bin/exercise.rs`, the `exercise` binary), with
    /// no flags yet. Panics with the `cp` command that makes the copy when there is none.
    ///
    /// Cargo builds every binary of the package before it runs an integration test, and
    /// tells the test where each one is (`CARGO_BIN_EXE_<name>`, read here when the test is
    /// compiled), so once the copy exists, `cargo test` builds it, fresh, with the tests.
    /// Adding or removing the file changes the binaries the tests depend on, so Cargo then
    /// compiles the tests again. The file is checked as well, so that a binary left behind
    /// in `target/` by a copy since deleted is never run.
    pub fn exercise() -> Launch {
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/src/bin/exercise.rs");
        let program = option_env!("CARGO_BIN_EXE_exercise");
        match program {
            Some(program) if std::path::Path::new(source).exists() => Launch {
                program,
                ..Launch::balancer()
            },
            _ => panic!("{NO_EXERCISE}"),
        }
    }

    /// Adds flags after those given so far.
    pub fn args(mut self, args: &[&str]) -> Launch {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Reads stderr as well as stdout, as one stream of lines.
    pub fn and_stderr(mut self) -> Launch {
        self.stderr = true;
        self
    }

    /// Reads stderr only; stdout is discarded.
    pub fn only_stderr(mut self) -> Launch {
        self.stdout = false;
        self.stderr = true;
        self
    }

    /// Makes stderr a pipe that nobody reads, as a stuck log shipper or a full journald: once
    /// its buffer is full, a write to it waits forever.
    pub fn stderr_stuck(mut self) -> Launch {
        self.stderr_stuck = true;
        self
    }

    /// Starts it under an open-file limit of `n` (`ulimit -n n` in a shell that then `exec`s it).
    pub fn open_files(mut self, n: usize) -> Launch {
        self.open_files = Some(n);
        self
    }

    /// Waits up to `limit` for each line, not [`PROCESS_WAIT`].
    pub fn patience(mut self, limit: Duration) -> Launch {
        self.patience = limit;
        self
    }

    /// Starts the process (stdin empty; stderr discarded unless [`Launch::and_stderr`]) and
    /// waits for its `[LoadBalancer] Running at http://ADDR` line.
    pub fn start(self) -> Running {
        let mut running = self.spawn();
        running.addr = running.address_after(RUNNING_AT);
        running
    }

    /// Starts the process, as [`Launch::start`] does, without waiting for a line: for one that
    /// should exit by itself (a configuration it refuses). Its `addr` is port 0.
    pub fn spawn(self) -> Running {
        let mut child = self
            .command()
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", self.program));
        let reaper = Reaper::watch(child.id());
        let (tx, lines) = mpsc::channel();
        let stuck = if self.stderr_stuck {
            child.stderr.take()
        } else {
            None
        };
        if let Some(stderr) = child.stderr.take() {
            forward_lines("stderr-reader", stderr, tx.clone());
        }
        if let Some(stdout) = child.stdout.take() {
            forward_lines("stdout-reader", stdout, tx);
        }
        Running {
            child,
            reaper: Some(reaper),
            lines,
            seen: Vec::new(),
            _stuck: stuck,
            patience: self.patience,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        }
    }

    /// The command that starts it: the program (under `sh` for an open-file limit), its
    /// flags, stdin empty, stdout and stderr piped or discarded as asked.
    fn command(&self) -> Command {
        let mut command = match self.open_files {
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")])
                    .arg(self.program);
                sh
            }
            None => Command::new(self.program),
        };
        let piped = |read: bool| if read { Stdio::piped() } else { Stdio::null() };
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(piped(self.stdout))
            .stderr(piped(self.stderr || self.stderr_stuck));
        command
    }
}

/// A watcher that kills a process started here should this test process end without
/// stopping it. A [`Running`] kills its process when dropped, also when its test panics, but
/// when a test fails under libtest's `--fail-fast` (as cargo-mutants runs the tests), the
/// test binary exits at once, and the processes of the tests still running are never
/// dropped: without this, they would go on running, for good.
///
/// The watcher is a shell that reads its stdin, a pipe whose other end only this process
/// holds, and kills the process once the pipe closes: when this process ends, however it
/// ends. Stopping the watcher first, before the process is waited for, keeps it from killing
/// a process id that has been given to another process since.
struct Reaper {
    watcher: Child,
}

impl Reaper {
    fn watch(pid: u32) -> Reaper {
        let script = "while read -r _; do :; done; kill -KILL \"$0\" 2>/dev/null";
        let watcher = Command::new("sh")
            .args(["-c", script, &pid.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("sh: {e}"));
        Reaper { watcher }
    }
}

impl Drop for Reaper {
    /// Kills the watcher (before its stdin closes, so that it never gets to its `kill`).
    fn drop(&mut self) {
        let _ = self.watcher.kill();
        let _ = self.watcher.wait();
    }
}

/// Sends each line of `from` to `to`, on a thread of its own, until `from` ends.
fn forward_lines(name: &str, from: impl Read + Send + 'static, to: Sender<String>) {
    thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            for line in BufReader::new(from).lines().map_while(Result::ok) {
                if to.send(line).is_err() {
                    return;
                }
            }
        })
        .unwrap();
}

/// A binary, running. Killed if still running when dropped, so a failed test does not leave
/// it behind.
pub struct Running {
    child: Child,
    /// Kills the process if this test process ends first; stopped once the process is
    /// reaped.
    reaper: Option<Reaper>,
    lines: Receiver<String>,
    seen: Vec<String>,
    /// The read end of a stderr that is never read ([`Launch::stderr_stuck`]).
    _stuck: Option<ChildStderr>,
    patience: Duration,
    /// The balanced listener's address, from the `Running at` line.
    pub addr: SocketAddr,
}

impl Running {
    /// Waits (up to [`PROCESS_WAIT`], or the launch's patience) for a line containing
    /// `needle`; returns it. Lines read while looking are kept, so they can be asked for later.
    pub fn line_with(&mut self, needle: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + self.patience;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no line with {needle:?} in {:?}; got {:?}",
                    self.patience, self.seen
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "exited without a line with {needle:?}; it said {:?}",
                    self.seen
                ),
            }
        }
    }

    /// The address on the line that contains `prefix` (waited for as by
    /// [`Running::line_with`]), right after it: up to a space or a `/`, `localhost` read as
    /// `127.0.0.1`.
    pub fn address_after(&mut self, prefix: &str) -> SocketAddr {
        let line = self.line_with(prefix);
        let rest = &line[line.find(prefix).unwrap() + prefix.len()..];
        let host_port = rest.split([' ', '/']).next().unwrap();
        let addr = match host_port.strip_prefix("localhost:") {
            Some(port) => port
                .parse()
                .ok()
                .map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
            None => host_port.parse().ok(),
        };
        addr.unwrap_or_else(|| panic!("no address after {prefix:?} in {line:?}"))
    }

    /// The admin listener's address, from its `[Admin] Status page at http://ADDR/status`
    /// line (so the binary must have been started with one).
    pub fn admin(&mut self) -> SocketAddr {
        self.address_after("[Admin] Status page at http://")
    }

    /// `http://ADDR` of the balanced listener, plus `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The lines read so far, in the order they came.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Did the process print a line containing `needle`? Reads its output to the end, so
    /// the process must have exited (else this fails after [`PROCESS_WAIT`]).
    pub fn has_line(&mut self, needle: &str) -> bool {
        loop {
            match self.lines.recv_timeout(PROCESS_WAIT) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("its output is still open"),
            }
        }
        self.seen.iter().any(|l| l.contains(needle))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`TERM`, `INT`, `HUP`) with `kill`.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// Is the process still running (not exited, not killed)?
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Waits up to `limit` for the process to exit.
    pub fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let mut status = None;
        super::wait_for(limit, "the process to exit", || {
            status = self.exit_status();
            status.is_some()
        });
        status.unwrap()
    }

    /// How the process ended, if it has; once it has (and its id is free for another
    /// process), its [`Reaper`] is stopped.
    fn exit_status(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().unwrap();
        if status.is_some() {
            self.reaper = None;
        }
        status
    }

    /// How many threads the process has now (Linux: `/proc/PID/status`).
    #[cfg(target_os = "linux")]
    pub fn threads(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
        line["Threads:".len()..].trim().parse().unwrap()
    }

    /// CPU time the process has used so far, user and system, in clock ticks (Linux:
    /// `/proc/PID/stat`, fields 14 and 15; 100 ticks a second on usual kernels).
    #[cfg(target_os = "linux")]
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // The command name (field 2) is in parentheses and may hold spaces: count after it.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// Waits up to `limit` until the process has at least `n` threads.
    #[cfg(target_os = "linux")]
    pub fn wait_for_threads(&self, n: usize, limit: Duration) {
        super::wait_for(limit, &format!("{n} threads"), || self.threads() >= n);
    }
}

impl Drop for Running {
    /// Kills the process if it is still running, also when its test panicked. The reaper
    /// goes first: it must not outlive this process's claim on the process id.
    fn drop(&mut self) {
        self.reaper = None;
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The first `http://...` URL in a line, up to the next space.
pub fn url_in(line: &str) -> &str {
    let start = line
        .find("http://")
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    line[start..].split(' ').next().unwrap()
}
