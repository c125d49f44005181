//! `chapter`: "Chapter 1: Load Balancer" in one file of Rust, the standard library only.
//!
//! This is where a reader of the chapter starts. It does what the chapter's Python does, in
//! the same order, and uses nothing from the `load_balancer` library next to it:
//!
//! 1. two backends, the Red Server and the Blue Server, each answering every request with its
//!    one line of HTML, each on its own listening socket and its own thread;
//! 2. a balancer on port 9000 that gives every client connection a thread of its own, reads
//!    the request line by hand, picks the next backend in turn (a counter behind a lock),
//!    asks that backend for the same path and copies its answer back;
//! 3. a small HTML `502 Bad Gateway` page when the backend cannot be reached.
//!
//! ```text
//! cargo run --bin chapter                  Red on 8001, Blue on 8002, the balancer on 9000
//! cargo run --bin chapter -- --port 0 --red 0 --blue 0     any free ports (printed)
//! cargo run --bin chapter -- --blue-down   Blue is not started: every second request gets a 502
//! cargo run --bin chapter -- --red-down --blue-down   neither is started: every request, a 502
//! curl http://localhost:9000               Red, Blue, Red, Blue, ...
//! ```
//!
//! What it does not do is the point of the guide (`cargo doc --open`, module `guide`): one
//! request per connection, GET only, no headers or body passed on, no second try when a
//! backend is down, one fixed timeout for everything, no limit on threads, and Ctrl-C simply
//! ends it. Each step of the guide shows one of these going wrong, and where the crate fixes
//! it. What it must never do is panic on bad input, and it does not.

// `use` is Python's `import`: it names things from the standard library (`std`).
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How long any socket waits for the other side before giving up. The Python original waits
/// forever; one number for everything is the simplest honest choice (the crate has one per
/// situation: see the guide's slow-client and hung-backend steps).
const TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes read of one request head (request line and header lines). Past it, the
/// connection is dropped without an answer.
const MAX_HEAD: u64 = 16 * 1024;
/// Pause after a failed `accept` (say, out of file descriptors), so the loop does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(10);

/// What `--help` prints (and what a wrong argument is answered with).
const USAGE: &str = "usage: chapter [--port N] [--red N] [--blue N] [--red-down] [--blue-down]
  --port N                 the balancer's port (default 9000; 0: any free port)
  --red N, --blue N        the Red and Blue Servers' ports (default 8001, 8002; 0: any)
  --red-down, --blue-down  do not start that server, but still send it its turn";

/// What the command line asked for. A `struct` is a class with fields and no methods.
struct Options {
    port: u16,
    red: u16,
    blue: u16,
    red_down: bool,
    blue_down: bool,
}

/// `if __name__ == "__main__":`. The `ExitCode` it returns is the process's exit status.
fn main() -> ExitCode {
    // `match` runs the arm that fits the value: here the three things `parse_args` can say.
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // `run` serves until the process is ended; it only comes back if starting up failed.
    if let Err(e) = run(options) {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// Reads the flags. `Ok(None)` asks for the usage; `Err` carries a message naming the flag.
/// `Result` is how Rust returns "a value, or an error" where Python would raise.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        port: 9000,
        red: 8001,
        blue: 8002,
        red_down: false,
        blue_down: false,
    };
    while let Some(flag) = args.next() {
        // `&mut options.port` borrows that one field, so that it can be changed below.
        let port = match flag.as_str() {
            "--help" | "-h" => return Ok(None),
            "--red-down" => {
                options.red_down = true;
                continue;
            }
            "--blue-down" => {
                options.blue_down = true;
                continue;
            }
            "--port" => &mut options.port,
            "--red" => &mut options.red,
            "--blue" => &mut options.blue,
            _ => return Err(format!("unknown argument {flag:?}")),
        };
        let value = args.next().unwrap_or_default(); // a missing value reads as ""
        // `let ... else`: take the value apart if it has this shape, or else leave.
        let Ok(number) = value.parse() else {
            return Err(format!(
                "{flag} needs a port number (0 to 65535), not {value:?}"
            ));
        };
        *port = number;
    }
    if (options.red_down && options.red == 0) || (options.blue_down && options.blue == 0) {
        return Err("a server left down needs its port: --red N or --blue N, not 0".into());
    }
    Ok(Some(options))
}

/// Starts the backends and the balancer, then serves forever.
fn run(options: Options) -> io::Result<()> {
    // Every listener is bound before its thread starts, so the port is ready when its line is
    // printed (the Python original sleeps half a second instead). `?` means: if this failed,
    // return the error to the caller now (a `raise` that the signature declares).
    let red = start_backend(options.red, options.red_down, "Red", 1)?;
    let blue = start_backend(options.blue, options.blue_down, "Blue", 2)?;
    let listener = bind(options.port)?;
    let port = listener.local_addr()?.port();
    println!("[LoadBalancer] Running at http://localhost:{port}");
    // The round robin: the index of the next backend, behind a lock (`Mutex`), shared by all
    // client threads through an `Arc` (a pointer that counts its owners).
    let next = Arc::new(Mutex::new(0));
    serve_forever(listener, |client| {
        let next = Arc::clone(&next);
        // A thread per connection; `move` hands it `client` and `next`. `[red, blue]` is the
        // chapter's `BACKENDS` list: an array of two addresses can be copied, so every client
        // thread gets a copy of its own.
        let spawned = thread::Builder::new()
            .name("client".into())
            .spawn(move || serve(client, [red, blue], &next));
        if let Err(e) = spawned {
            eprintln!("[LoadBalancer] cannot start a thread: {e}");
        }
    });
    Ok(())
}

/// Binds `127.0.0.1:port` (the chapter's `localhost`; port 0 lets the system choose).
fn bind(port: u16) -> io::Result<TcpListener> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on port {port}: {e}")))
}

/// Python's `serve_forever`: hands every accepted connection to `handle`, one after another.
fn serve_forever(listener: TcpListener, mut handle: impl FnMut(TcpStream)) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => handle(stream),
            Err(e) => {
                eprintln!("accept failed: {e}");
                thread::sleep(ACCEPT_PAUSE);
            }
        }
    }
}

/// Starts one demo backend on its own thread (unless it is to be left `down`); returns its
/// address. Its colour is its name in lower case: "Red" is red.
fn start_backend(port: u16, down: bool, name: &str, number: u32) -> io::Result<SocketAddr> {
    if down {
        println!("[Backend] {name} Server left down (http://localhost:{port})");
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    let listener = bind(port)?;
    let port = listener.local_addr()?.port();
    let colour = name.to_lowercase();
    let page = format!("<h1 style='color:{colour};'>{name} Server - Server {number}</h1>");
    println!("[Backend] Server started at http://localhost:{port}");
    // One thread serves this backend's connections one at a time, as Python's `HTTPServer`.
    thread::Builder::new()
        .name(colour)
        .spawn(move || serve_forever(listener, |stream| serve_page(stream, &page)))?;
    Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// The backend's `do_GET`: reads the request, answers with the page, closes.
fn serve_page(stream: TcpStream, page: &str) {
    if read_request(&stream).is_some() {
        let _ = respond(&stream, "200 OK", page);
    }
}

/// The balancer's `do_GET`, for one client connection: one request, one answer, then close.
/// The connection closes when `client` goes out of scope, at the end of this function.
fn serve(client: TcpStream, backends: [SocketAddr; 2], next: &Mutex<usize>) {
    // A client that closes, stays silent for TIMEOUT or sends too much gets no answer.
    let Some(words) = read_request(&client) else {
        return;
    };
    // The request line has three words: `GET /path HTTP/1.1`. The version is not looked at.
    let [method, path, _version] = words.as_slice() else {
        return answer(&client, "400 Bad Request", "a request line has three words");
    };
    if method != "GET" {
        return answer(&client, "501 Not Implemented", "only GET is implemented");
    }
    if path == "/favicon.ico" {
        // Browsers ask for an icon; the chapter answers "no content" without using a turn.
        let _ = (&client).write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        return;
    }
    let backend = pick(&backends, next);
    let port = backend.port();
    println!("[LoadBalancer] Routing path '{path}' to http://localhost:{port}");
    if let Err(e) = attempt(&client, path, backend) {
        eprintln!("[LoadBalancer] http://localhost:{port} failed: {e}");
        answer(&client, "502 Bad Gateway", &e.to_string());
    }
}

/// `next(itertools.cycle(BACKENDS))`: the backend whose turn it is. The index is taken and
/// moved on while the lock is held; the lock is released when `i` goes out of scope.
/// `unwrap_or_else(...)`: a thread that panicked while holding the lock "poisoned" it; the
/// number inside is still fine, so carry on with it.
fn pick(backends: &[SocketAddr], next: &Mutex<usize>) -> SocketAddr {
    let mut i = next.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let backend = backends[*i % backends.len()];
    *i = (*i + 1) % backends.len();
    backend
}

/// Sets the socket's timeouts, then reads a request head: the request line, then header lines
/// up to the empty line. Returns the request line's words; `None` if the client closed, was
/// silent for [`TIMEOUT`], or sent [`MAX_HEAD`] bytes without an empty line. The header lines
/// are read and dropped. (`Option` is a value or `None`, and the compiler makes the caller
/// look at which before using it.)
fn read_request(stream: &TcpStream) -> Option<Vec<String>> {
    stream.set_read_timeout(Some(TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(TIMEOUT)).ok()?;
    // `take` stops reading after MAX_HEAD bytes; `BufReader` reads lines, like `rfile`.
    let mut reader = BufReader::new(stream.take(MAX_HEAD));
    let mut request_line = Vec::new();
    loop {
        let mut line = Vec::new();
        // `.ok()?`: an error (a timeout, a reset) ends the request, as a closed socket does.
        reader.read_until(b'\n', &mut line).ok()?;
        if !line.ends_with(b"\n") {
            return None; // closed, or MAX_HEAD reached, before the line ended
        }
        if request_line.is_empty() {
            request_line = line;
        } else if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    // Bytes to text: anything that is not UTF-8 becomes "�" instead of an error.
    let text = String::from_utf8_lossy(&request_line);
    Some(text.split_whitespace().map(String::from).collect())
}

/// Asks `backend` for `path` and copies its answer to the client. `Err` only while nothing has
/// been sent to the client yet, so that the caller can still answer with a 502.
fn attempt(mut client: &TcpStream, path: &str, backend: SocketAddr) -> io::Result<()> {
    let mut upstream = TcpStream::connect_timeout(&backend, TIMEOUT)?;
    upstream.set_read_timeout(Some(TIMEOUT))?;
    upstream.set_write_timeout(Some(TIMEOUT))?;
    // Like `http.client`'s `request("GET", path)`: the client's headers and body stay behind.
    // HTTP/1.0, so the backend closes the connection after its answer.
    let port = backend.port();
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost:{port}\r\n\r\n");
    upstream.write_all(request.as_bytes())?;
    // The first bytes of the answer decide: nothing at all is a failure (a 502) ...
    let mut first = [0; 8192];
    let n = upstream.read(&mut first)?;
    if n == 0 {
        let why = "the backend closed the connection without answering";
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, why));
    }
    // ... while once they are on their way, a failure can only cut the answer short: a 502
    // now would be a second answer after the start of the first. So: the first bytes, then
    // everything else until the backend closes (`chain` reads one source, then the other).
    let _ = io::copy(&mut (&first[..n]).chain(&upstream), &mut client);
    Ok(())
}

/// Writes a whole response: `status` (as `"200 OK"`) and an HTML `body`.
fn respond(mut stream: &TcpStream, status: &str, body: &str) -> io::Result<()> {
    let head = format!("HTTP/1.1 {status}\r\nContent-Type: text/html\r\nConnection: close\r\n");
    write!(stream, "{head}Content-Length: {}\r\n\r\n{body}", body.len())
}

/// Answers with the balancer's own error page, in the demo pages' style. `why` comes from this
/// file or the operating system's error text, so it needs no HTML escaping. A write error is
/// ignored: the client is gone, and there is nobody left to tell.
fn answer(client: &TcpStream, status: &str, why: &str) {
    let page = format!("<h1 style='color:gray;'>{status}</h1>\n<p>{why}</p>\n");
    let _ = respond(client, status, &page);
}
