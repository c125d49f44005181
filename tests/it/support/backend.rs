//! Scripted backends: the server's side of the wire, read byte-exact, so a test can assert
//! what the balancer really put on the wire and answer with exactly the bytes it wants.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Read timeout on a scripted backend's connections: a backend waiting for a request that
/// never comes gives up after this (as [`super::CLIENT_WAIT`], a few seconds).
pub const BACKEND_WAIT: Duration = Duration::from_secs(5);

/// A backend that runs `handle` on its own thread for every connection it accepts.
pub struct ScriptedBackend {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl ScriptedBackend {
    pub fn start(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> ScriptedBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(handle);
        let accept = {
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("scripted-accept".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(stream) = stream else { continue };
                        let _ = stream.set_read_timeout(Some(BACKEND_WAIT));
                        let _ = stream.set_write_timeout(Some(BACKEND_WAIT));
                        let handle = Arc::clone(&handle);
                        let _ = thread::Builder::new()
                            .name("scripted-conn".into())
                            .spawn(move || handle(stream));
                    }
                })
                .unwrap()
        };
        ScriptedBackend {
            addr,
            stop,
            accept: Some(accept),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ScriptedBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

/// One request as a backend read it: the head (blank line included) and the body exactly as
/// it arrived (still chunk-encoded, trailers included).
pub type Message = (String, Vec<u8>);

/// Reads one request head (up to the blank line), byte by byte so nothing after it is
/// consumed. `None` if the connection closed, broke or timed out first.
pub fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    loop {
        let line = read_line(s)?;
        head.extend_from_slice(&line);
        if line == b"\r\n" {
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
    }
}

/// Reads one whole request message (see [`Message`]). `None` if the connection closed or
/// broke before the message ended.
pub fn read_message(s: &mut TcpStream) -> Option<Message> {
    let head = read_head(s)?;
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if let Some(len) = super::header(&lower, "content-length") {
        let len: usize = len.parse().ok()?;
        body.resize(len, 0);
        s.read_exact(&mut body).ok()?;
    } else if super::header(&lower, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let line = read_line(s)?;
            body.extend_from_slice(&line);
            let text = String::from_utf8_lossy(&line);
            let size = text.trim_end().split(';').next()?;
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            if size == 0 {
                loop {
                    let trailer = read_line(s)?;
                    body.extend_from_slice(&trailer);
                    if trailer == b"\r\n" {
                        return Some((head, body));
                    }
                }
            }
            let mut data = vec![0; size + 2];
            s.read_exact(&mut data).ok()?;
            body.extend_from_slice(&data);
        }
    }
    Some((head, body))
}

fn read_line(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        match s.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            _ => return None,
        }
    }
    Some(line)
}

/// The request target of a head (`/path?q`).
pub fn target_of(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or("")
}

/// Writes a `200` with `body` and Content-Length; `false` if the write failed.
pub fn write_ok(s: &mut TcpStream, body: &str) -> bool {
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(reply.as_bytes()).is_ok()
}

/// What a backend saw: connections accepted and request messages read.
#[derive(Default)]
pub struct Seen {
    connections: AtomicUsize,
    messages: Mutex<Vec<Message>>,
}

impl Seen {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Counts a connection accepted.
    pub fn connected(&self) {
        self.connections.fetch_add(1, Ordering::SeqCst);
    }

    pub fn count(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    /// The heads received so far.
    pub fn heads(&self) -> Vec<String> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// How many of the heads received start with `prefix` (`GET /again`).
    pub fn count_starting(&self, prefix: &str) -> usize {
        self.heads()
            .iter()
            .filter(|h| h.starts_with(prefix))
            .count()
    }

    pub fn message(&self, i: usize) -> Message {
        self.messages.lock().unwrap()[i].clone()
    }

    pub fn last(&self) -> Message {
        self.messages
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request reached the backend")
    }

    pub fn record(&self, message: &Message) {
        self.messages.lock().unwrap().push(message.clone());
    }
}

/// What a [`Recorder`] does after a request: write these bytes, then keep the connection
/// for the next request or close it.
pub struct Reply {
    pub bytes: Vec<u8>,
    pub close: bool,
}

impl Reply {
    /// These bytes, and the connection stays open.
    pub fn bytes(bytes: &[u8]) -> Reply {
        Reply {
            bytes: bytes.to_vec(),
            close: false,
        }
    }

    /// These bytes, then the backend closes (the end of a close-delimited body).
    pub fn then_close(bytes: &[u8]) -> Reply {
        Reply {
            bytes: bytes.to_vec(),
            close: true,
        }
    }

    /// A `200` with `body` and Content-Length.
    pub fn ok(body: &str) -> Reply {
        Reply::bytes(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    }
}

/// The record-and-reply backend: it reads every request on every connection, records it in
/// [`Seen`], and answers what `reply` says, given the request and its number on its
/// connection (0 for the first).
pub struct Recorder {
    pub seen: Arc<Seen>,
    backend: ScriptedBackend,
}

impl Recorder {
    pub fn start(reply: impl Fn(&Message, usize) -> Reply + Send + Sync + 'static) -> Recorder {
        let seen = Arc::new(Seen::default());
        let backend = {
            let seen = Arc::clone(&seen);
            ScriptedBackend::start(move |mut s| {
                seen.connected();
                let mut nth = 0;
                while let Some(message) = read_message(&mut s) {
                    seen.record(&message);
                    let reply = reply(&message, nth);
                    nth += 1;
                    if s.write_all(&reply.bytes).is_err() || reply.close {
                        return;
                    }
                }
            })
        };
        Recorder { seen, backend }
    }

    /// Answers every request with `200` and the request's target as the body.
    pub fn echo_target() -> Recorder {
        Recorder::start(|(head, _), _| Reply::ok(target_of(head)))
    }

    /// Answers every request with the same bytes.
    pub fn fixed(bytes: &'static [u8]) -> Recorder {
        Recorder::start(move |_, _| Reply::bytes(bytes))
    }

    pub fn url(&self) -> String {
        self.backend.url()
    }
}

impl std::ops::Deref for Recorder {
    type Target = Seen;

    fn deref(&self) -> &Seen {
        &self.seen
    }
}

/// A backend that can be switched off and on without giving up its port: while off it reads
/// each request and closes without an answer (a failed request, or a failed check, for the
/// balancer); while on it answers `200` with its page. Its port stays bound throughout, so
/// no other test can take it in between, as it could if the backend closed its listener and
/// bound the port again.
pub struct Switchable {
    up: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    page: String,
    backend: ScriptedBackend,
}

impl Switchable {
    pub fn start(page: &str) -> Switchable {
        let up = Arc::new(AtomicBool::new(true));
        let served = Arc::new(AtomicUsize::new(0));
        let backend = {
            let (up, served, page) = (Arc::clone(&up), Arc::clone(&served), page.to_string());
            ScriptedBackend::start(move |mut s| {
                while read_message(&mut s).is_some() {
                    if !up.load(Ordering::SeqCst) {
                        return;
                    }
                    served.fetch_add(1, Ordering::SeqCst);
                    if !write_ok(&mut s, &page) {
                        return;
                    }
                }
            })
        };
        Switchable {
            up,
            served,
            page: page.to_string(),
            backend,
        }
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    /// Requests (and checks) answered while on.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    pub fn page(&self) -> &str {
        &self.page
    }

    pub fn url(&self) -> String {
        self.backend.url()
    }
}

/// A gate that holds requests until it is opened, counting those it holds.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    arrived: AtomicUsize,
}

impl Gate {
    /// Counts an arrival and waits until the gate is open.
    pub fn pass(&self) {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }

    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    /// Waits up to `limit` for the gate to open, without counting an arrival; whether it is
    /// open.
    pub fn open_within(&self, limit: Duration) -> bool {
        let open = self.open.lock().unwrap();
        let (open, _) = self
            .opened
            .wait_timeout_while(open, limit, |open| !*open)
            .unwrap();
        *open
    }

    /// Requests that reached the gate so far.
    pub fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }
}

/// A backend that holds every request at `gate` and then answers `200` with `body`.
pub fn gated_backend(gate: &Arc<Gate>, body: &'static str) -> ScriptedBackend {
    let gate = Arc::clone(gate);
    ScriptedBackend::start(move |mut s| {
        while read_message(&mut s).is_some() {
            gate.pass();
            if !write_ok(&mut s, body) {
                return;
            }
        }
    })
}

/// A backend that answers `200` with the request's target as the body: at once, except
/// `/slow`, which it holds at `gate` first.
pub fn slow_on_request(gate: &Arc<Gate>) -> Recorder {
    let gate = Arc::clone(gate);
    Recorder::start(move |(head, _), _| {
        if target_of(head) == "/slow" {
            gate.pass();
        }
        Reply::ok(target_of(head))
    })
}

/// A backend that accepts connections (the system completes them into its backlog) and never
/// reads or answers: a hung server.
pub struct HungBackend {
    listener: TcpListener,
}

impl HungBackend {
    pub fn new() -> HungBackend {
        HungBackend {
            listener: TcpListener::bind("127.0.0.1:0").unwrap(),
        }
    }

    /// The port, as a flag's value.
    pub fn port(&self) -> String {
        self.listener.local_addr().unwrap().port().to_string()
    }
}

/// What a [`TestBackend`] does once it has read a request.
#[derive(Clone, Copy, PartialEq)]
pub enum Answer {
    /// Answers `200` with the body `done` (once released, while held).
    Done,
    /// Closes the connection without a byte of an answer: a backend that broke.
    Nothing,
    /// Answers `200` with [`SLOW_BODY`]: the head at once, then the body one byte every
    /// [`TRICKLE`] until released (or until one byte is left), then the rest. A slow backend
    /// that is never silent for long.
    Slowly,
}

/// How long a [`Answer::Slowly`] backend waits between two bytes of its body while held: a
/// fifth of the one-second timeouts the guide's exercises ask for, so that it never looks
/// hung.
pub const TRICKLE: Duration = Duration::from_millis(200);
/// The body of a [`Answer::Slowly`] answer: 64 dots (at one every [`TRICKLE`], over twelve
/// seconds of them).
pub const SLOW_BODY: &str = "................................................................";
/// The longest a held [`TestBackend`] holds an answer: it answers then even if not released.
const HELD_AT_MOST: Duration = Duration::from_secs(10);

/// A backend that stands in for one the test names on a command line (the chapter's Blue, a
/// `--backend`): it reports every request it reads on `requests`, then answers as its
/// [`Answer`] says, closing after the answer when the request asked for that (HTTP/1.0, as
/// the chapter sends, or `Connection: close`). While held, it finishes an answer only once
/// released (or after [`HELD_AT_MOST`]).
pub struct TestBackend {
    pub addr: SocketAddr,
    /// Every request read, in order.
    pub requests: Receiver<Message>,
    gate: Arc<Gate>,
    _backend: ScriptedBackend,
}

impl TestBackend {
    /// Answers `done` at once.
    pub fn new() -> TestBackend {
        TestBackend::replying(Answer::Done)
    }

    /// Answers at once as `answer` says.
    pub fn replying(answer: Answer) -> TestBackend {
        let backend = TestBackend::held_with(answer);
        backend.release();
        backend
    }

    /// Answers `done` once [`TestBackend::release`] is called.
    pub fn held() -> TestBackend {
        TestBackend::held_with(Answer::Done)
    }

    /// Answers as `answer` says, finishing an answer once [`TestBackend::release`] is called.
    pub fn held_with(answer: Answer) -> TestBackend {
        let (report, requests) = mpsc::channel();
        let gate = Arc::new(Gate::default());
        let backend = {
            let gate = Arc::clone(&gate);
            ScriptedBackend::start(move |s| answer_requests(s, answer, &report, &gate))
        };
        TestBackend {
            addr: backend.addr,
            requests,
            gate,
            _backend: backend,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port, as a flag's value.
    pub fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// Lets held requests (and all later ones) be answered.
    pub fn release(&self) {
        self.gate.open();
    }

    /// The next request the backend read, waiting up to [`BACKEND_WAIT`].
    pub fn next_request(&self) -> Message {
        self.requests
            .recv_timeout(BACKEND_WAIT)
            .expect("a request reached the test backend")
    }
}

impl Drop for TestBackend {
    /// Releases what is held, so that no connection waits on a test that is over.
    fn drop(&mut self) {
        self.release();
    }
}

/// One connection to a [`TestBackend`]: requests until the peer closes or asks to.
fn answer_requests(mut s: TcpStream, answer: Answer, report: &Sender<Message>, gate: &Gate) {
    while let Some(message) = read_message(&mut s) {
        let close = wants_close(&message.0);
        let _ = report.send(message);
        let close_field = if close { "Connection: close\r\n" } else { "" };
        let answered = match answer {
            Answer::Nothing => return,
            Answer::Done => {
                gate.open_within(HELD_AT_MOST);
                let answer =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n{close_field}\r\ndone");
                s.write_all(answer.as_bytes())
            }
            Answer::Slowly => answer_slowly(&mut s, close_field, gate),
        };
        if answered.is_err() || close {
            return;
        }
    }
}

/// Does the request with `head` end its connection (HTTP/1.0, or `Connection: close`)?
fn wants_close(head: &str) -> bool {
    let lower = head.to_ascii_lowercase();
    let http_1_0 = lower
        .lines()
        .next()
        .is_some_and(|l| l.ends_with(" http/1.0"));
    http_1_0 || super::header(&lower, "connection") == Some("close")
}

/// [`Answer::Slowly`]: the head at once, the body's bytes one every [`TRICKLE`] until the gate
/// opens (or one byte is left), then the rest.
fn answer_slowly(s: &mut TcpStream, close_field: &str, gate: &Gate) -> std::io::Result<()> {
    let body = SLOW_BODY.as_bytes();
    write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{close_field}\r\n",
        body.len()
    )?;
    let mut sent = 0;
    while sent + 1 < body.len() && !gate.open_within(TRICKLE) {
        s.write_all(&body[sent..=sent])?;
        sent += 1;
    }
    s.write_all(&body[sent..])
}
