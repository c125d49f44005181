//! What the chapter's step tests (`tests/it/chapter.rs`) and the guide's exercises
//! (`tests/it/exercises.rs`) share: the programs under test (the chapter's `chapter`, the
//! learner's copy `exercise`, the crate's `load-balancer`), a strict client that tells a
//! closed connection from a silent one, backends the tests play themselves, and the
//! scenarios a step and its exercise both run.

use super::process::{Launch, Running};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How long a test waits for something that should happen: a line, an answer, an exit.
pub const PATIENCE: Duration = Duration::from_secs(5);
/// The chapter's Red and Blue pages.
pub const RED: &str = "<h1 style='color:red;'>Red Server - Server 1</h1>";
pub const BLUE: &str = "<h1 style='color:blue;'>Blue Server - Server 2</h1>";

// ---------------------------------------------------------------------------------------------
// The two programs under test.

/// `chapter` on free ports (Red, Blue and the balancer), with `args` after those; its stdout
/// and stderr read as one.
pub fn the_chapter(args: &[&str]) -> Running {
    Launch::chapter()
        .args(&["--port", "0", "--red", "0", "--blue", "0"])
        .args(args)
        .and_stderr()
        .patience(PATIENCE)
        .start()
}

/// The learner's copy of the chapter, `exercise` (`src/bin/exercise.rs`), started as
/// [`the_chapter`] starts `chapter`. Panics, with the command that makes the copy, if there
/// is none.
pub fn the_exercise(args: &[&str]) -> Running {
    Launch::exercise()
        .args(&["--port", "0", "--red", "0", "--blue", "0"])
        .args(args)
        .and_stderr()
        .patience(PATIENCE)
        .start()
}

/// `load-balancer` on a free port, demo backends on free ports, no admin listener, with
/// `args` after those (a later flag wins: `--admin 127.0.0.1:0` turns it back on); its stdout
/// and stderr read as one.
pub fn the_crate(args: &[&str]) -> Running {
    Launch::demo()
        .args(args)
        .and_stderr()
        .patience(PATIENCE)
        .start()
}

pub fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    thread::Builder::new().name(name.into()).spawn(f).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Clients.

/// A response as read off the wire.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Status line and header fields, up to and with the empty line.
    pub head: String,
    pub body: String,
}

impl Response {
    /// The value of header field `name` (any case), if present.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn closes(&self) -> bool {
        self.field("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A GET with ureq, on a connection of its own: status and body.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(PATIENCE))
        .build()
        .into();
    let mut response = agent.get(&format!("http://{addr}{path}")).call().unwrap();
    let body = response.body_mut().read_to_string().unwrap();
    (response.status().as_u16(), body)
}

/// A connection with [`PATIENCE`] as its read and write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Why no response came.
#[derive(Debug, PartialEq)]
pub enum NoResponse {
    /// The peer closed the connection (the FIN, a reset, or a write that found it gone)
    /// before a byte of a response.
    Closed,
    /// The connection is still open, and no byte came within the read timeout.
    Silent,
}

/// What one read on a client connection came to.
enum Io {
    Data,
    Closed,
    Silent,
}

/// Reads more into `data`. Panics on an error that is neither a close nor a timeout.
fn read_more(stream: &mut TcpStream, data: &mut Vec<u8>) -> Io {
    let mut buf = [0; 4096];
    match stream.read(&mut buf) {
        Ok(0) => Io::Closed,
        Ok(n) => {
            data.extend_from_slice(&buf[..n]);
            Io::Data
        }
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Io::Closed,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Io::Silent,
        Err(e) => panic!("read: {e}"),
    }
}

/// Sends `raw`; `Err(Closed)` if the peer has closed the connection already.
pub fn send(stream: &mut TcpStream, raw: &[u8]) -> Result<(), NoResponse> {
    match stream.write_all(raw) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
            ) =>
        {
            Err(NoResponse::Closed)
        }
        Err(e) => panic!("write: {e}"),
    }
}

/// Sends `raw` on a new connection; reads one response.
pub fn request(addr: SocketAddr, raw: &[u8]) -> Result<Response, NoResponse> {
    let mut stream = connect(addr);
    send(&mut stream, raw)?;
    read_response(&mut stream)
}

/// Reads one response: the head, then a `Content-Length` body or, without one, everything
/// until the peer closes. `Err` if not a byte of it came: the peer closed
/// ([`NoResponse::Closed`]) or the read timed out ([`NoResponse::Silent`]). Panics on half a
/// response (closed or timed out after its first byte).
pub fn read_response(stream: &mut TcpStream) -> Result<Response, NoResponse> {
    let mut data = Vec::new();
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match read_more(stream, &mut data) {
            Io::Data => {}
            Io::Closed if data.is_empty() => return Err(NoResponse::Closed),
            Io::Silent if data.is_empty() => return Err(NoResponse::Silent),
            Io::Closed | Io::Silent => {
                panic!("half a head: {:?}", String::from_utf8_lossy(&data))
            }
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {head:?}"));
    let mut response = Response {
        status,
        head,
        body: String::new(),
    };
    let length: Option<usize> = response.field("content-length").map(|v| v.parse().unwrap());
    let mut body = data.split_off(head_end);
    match length {
        Some(length) => {
            while body.len() < length {
                assert!(
                    matches!(read_more(stream, &mut body), Io::Data),
                    "no more of the body: {response:?}"
                );
            }
        }
        None if status == 204 || status == 304 => {}
        None => loop {
            match read_more(stream, &mut body) {
                Io::Data => {}
                Io::Closed => break,
                Io::Silent => panic!("a body delimited by the close, not closed: {response:?}"),
            }
        },
    }
    response.body = String::from_utf8_lossy(&body).into_owned();
    Ok(response)
}

/// A GET for `path` with HTTP/1.1 and a Host field, as raw bytes.
pub fn get_raw(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: lb\r\n\r\n").into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Backends the tests play themselves.

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

    pub fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }
}

/// What a [`TestBackend`] does once it has read a request.
#[derive(Clone, Copy, PartialEq)]
pub enum Reply {
    /// Answers `200` with the body `done` (once released, while held).
    Done,
    /// Closes the connection without a byte of an answer: a backend that broke.
    Nothing,
    /// Answers `200` with [`SLOW_BODY`]: the head at once, then the body one byte every
    /// [`TRICKLE`] until released (or until one byte is left), then the rest. A slow backend
    /// that is never silent for long.
    Slowly,
}

/// How long a [`Reply::Slowly`] backend waits between two bytes of its body while held: a
/// fifth of the one-second timeouts the exercises ask for, so that it never looks hung.
pub const TRICKLE: Duration = Duration::from_millis(200);
/// The body of a [`Reply::Slowly`] answer: 64 dots (at one every [`TRICKLE`], over twelve
/// seconds of them).
pub const SLOW_BODY: &str = "................................................................";

/// A backend played by the test: it reports every request it reads (head and
/// `Content-Length` body) on `requests`, then replies as its [`Reply`] says. While
/// [`TestBackend::held`], it finishes an answer only once released (or after twice
/// [`PATIENCE`]).
pub struct TestBackend {
    pub addr: SocketAddr,
    pub requests: Receiver<(String, Vec<u8>)>,
    gate: Option<Sender<()>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl TestBackend {
    /// Answers at once.
    pub fn new() -> TestBackend {
        TestBackend::replying(Reply::Done)
    }

    /// Replies at once as `reply` says.
    pub fn replying(reply: Reply) -> TestBackend {
        let mut backend = TestBackend::held_with(reply);
        backend.release();
        backend
    }

    /// Answers once [`TestBackend::release`] is called.
    pub fn held() -> TestBackend {
        TestBackend::held_with(Reply::Done)
    }

    /// Replies as `reply` says, finishing an answer once [`TestBackend::release`] is called.
    pub fn held_with(reply: Reply) -> TestBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (report, requests) = mpsc::channel();
        let (gate, wait) = mpsc::channel::<()>();
        let wait = Arc::new(Mutex::new(wait));
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let accept = spawn("test-backend", move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (report, wait) = (report.clone(), Arc::clone(&wait));
                spawn("test-backend-conn", move || {
                    serve_test(stream, reply, &report, &wait)
                });
            }
        });
        TestBackend {
            addr,
            requests,
            gate: Some(gate),
            stop,
            accept: Some(accept),
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
    pub fn release(&mut self) {
        self.gate = None;
    }

    /// The next request the backend read, waiting up to [`PATIENCE`].
    pub fn next_request(&self) -> (String, Vec<u8>) {
        self.requests
            .recv_timeout(PATIENCE)
            .expect("a request reached the test backend")
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.gate = None;
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// One connection to a [`TestBackend`]: requests until the peer closes (or asks to).
fn serve_test(
    mut stream: TcpStream,
    reply: Reply,
    report: &Sender<(String, Vec<u8>)>,
    wait: &Mutex<Receiver<()>>,
) {
    let _ = stream.set_read_timeout(Some(PATIENCE * 2));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    while let Some((head, body, close)) = read_test_request(&mut reader) {
        let _ = report.send((head, body));
        let close_field = if close { "Connection: close\r\n" } else { "" };
        let answered = match reply {
            Reply::Nothing => return,
            Reply::Done => {
                // Held: wait until the test drops its end of the gate.
                let _ = wait.lock().unwrap().recv_timeout(PATIENCE * 2);
                let answer =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n{close_field}\r\ndone");
                stream.write_all(answer.as_bytes())
            }
            Reply::Slowly => answer_slowly(&mut stream, close_field, wait),
        };
        if answered.is_err() || close {
            return;
        }
    }
}

/// Reads one request: its head, its `Content-Length` body, and whether the connection ends
/// after it (HTTP/1.0, or `Connection: close`). `None` when the peer closed or broke off.
fn read_test_request(reader: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>, bool)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => head.push_str(&line),
        }
        if line == "\r\n" {
            break;
        }
    }
    let lower = head.to_ascii_lowercase();
    let length = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let http_1_0 = head
        .lines()
        .next()
        .is_some_and(|l| l.ends_with(" HTTP/1.0"));
    let close = http_1_0 || lower.contains("\r\nconnection: close\r\n");
    Some((head, body, close))
}

/// [`Reply::Slowly`]: the head at once, the body's bytes one every [`TRICKLE`] until the gate
/// opens (or one byte is left), then the rest.
fn answer_slowly(
    stream: &mut TcpStream,
    close_field: &str,
    wait: &Mutex<Receiver<()>>,
) -> std::io::Result<()> {
    let length = SLOW_BODY.len();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n{close_field}\r\n"
    )?;
    let mut sent = 0;
    while sent + 1 < length {
        match wait.lock().unwrap().recv_timeout(TRICKLE) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => break, // released
        }
        stream.write_all(&SLOW_BODY.as_bytes()[sent..=sent])?;
        sent += 1;
    }
    stream.write_all(&SLOW_BODY.as_bytes()[sent..])
}

// ---------------------------------------------------------------------------------------------
// Scenarios that a step and its exercise share.

/// One client sends half a request line and goes quiet; then another asks for `/`. Returns
/// the other client's answer, and what the quiet one got within `watch`.
pub fn quiet_client_then_another(
    addr: SocketAddr,
    watch: Duration,
) -> ((u16, String), Result<Response, NoResponse>) {
    let mut quiet = connect(addr);
    quiet.write_all(b"GET / HTT").unwrap();
    let other = get(addr, "/");
    quiet.set_read_timeout(Some(watch)).unwrap();
    (other, read_response(&mut quiet))
}

/// Opens `n` connections that never send a byte, then asks for `/` on one more. The quiet
/// connections are returned, so that they stay open until the caller is done.
pub fn quiet_connections_then_one(
    addr: SocketAddr,
    n: usize,
) -> (Vec<TcpStream>, Result<Response, NoResponse>) {
    let quiet: Vec<TcpStream> = (0..n).map(|_| connect(addr)).collect();
    (quiet, request(addr, &get_raw("/")))
}

/// Two GETs, one after the other, on one connection.
pub fn two_requests_on_one_connection(
    addr: SocketAddr,
) -> (Response, Result<Response, NoResponse>) {
    let mut stream = connect(addr);
    stream.write_all(&get_raw("/")).unwrap();
    let first = read_response(&mut stream).expect("an answer to the first request");
    let second = send(&mut stream, &get_raw("/")).and_then(|()| read_response(&mut stream));
    (first, second)
}

/// A GET with a cookie, which the backend should see.
pub const WITH_COOKIE: &[u8] =
    b"GET /who HTTP/1.1\r\nHost: lb\r\nCookie: flavour=chocolate\r\n\r\n";
/// A POST with an 8-byte body, which the backend should see whole.
pub const A_POST: &[u8] =
    b"POST /form HTTP/1.1\r\nHost: lb\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\nname=red";

/// Four GETs in a row; each one's status and body.
pub fn four_gets(addr: SocketAddr) -> Vec<(u16, String)> {
    (0..4).map(|_| get(addr, "/")).collect()
}

/// Waits for the request [`request_in_flight`] started: it must finish with `200 done`.
pub fn assert_finishes(client: JoinHandle<Result<Response, NoResponse>>) {
    let answer = client
        .join()
        .unwrap()
        .expect("the request in flight finishes");
    assert_eq!((answer.status, answer.body.as_str()), (200, "done"));
}

/// Starts a GET on its own thread and waits until `backend` has it: a request in flight.
pub fn request_in_flight(
    addr: SocketAddr,
    backend: &TestBackend,
) -> JoinHandle<Result<Response, NoResponse>> {
    let client = spawn("client", move || request(addr, &get_raw("/slow")));
    backend.next_request();
    client
}
