//! The real binary: started with flags, its stdout read line by line, stopped with a signal.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits for a line of the binary's output, or for it to exit.
pub const PROCESS_WAIT: Duration = Duration::from_secs(10);

/// The `load-balancer` binary, running. Killed if still running when dropped, so a failed
/// test does not leave it behind.
pub struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    /// The balanced listener's address, from the `Running at` line.
    pub addr: SocketAddr,
}

impl Running {
    /// Starts the binary with `args` (stdin empty, stderr discarded) and waits for its
    /// `[LoadBalancer] Running at http://ADDR` line.
    pub fn start(args: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_load-balancer"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::Builder::new()
            .name("stdout-reader".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            })
            .unwrap();
        let mut running = Running {
            child,
            lines,
            seen: Vec::new(),
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let line = running.line_with("[LoadBalancer] Running at http://");
        running.addr = url_in(&line)
            .trim_start_matches("http://")
            .parse()
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        running
    }

    /// Waits (up to [`PROCESS_WAIT`]) for a stdout line containing `needle`; returns it.
    /// Lines read while looking are kept, so they can be asked for later.
    pub fn line_with(&mut self, needle: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + PROCESS_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; got {:?}", self.seen),
            }
        }
    }

    /// Did the process print a line containing `needle`? Reads its output to the end, so
    /// the process must have exited (else this fails after [`PROCESS_WAIT`]).
    pub fn has_line(&mut self, needle: &str) -> bool {
        loop {
            match self.lines.recv_timeout(PROCESS_WAIT) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("stdout still open"),
            }
        }
        self.seen.iter().any(|l| l.contains(needle))
    }

    /// Sends a signal (`TERM`, `INT`) with `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// Waits up to `limit` for the process to exit.
    pub fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "still running after {limit:?}");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
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
