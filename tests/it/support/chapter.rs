//! What the chapter's step tests (`tests/it/chapter.rs`) and the guide's exercises
//! (`tests/it/exercises.rs`) share: the programs under test (the chapter's `chapter`, the
//! learner's copy `exercise`, the crate's `load-balancer`), and the scenarios a step and its
//! exercise both run. Their client ([`super::RawConn::try_response`], which tells a closed
//! connection from a silent one) and the backends they play ([`super::TestBackend`],
//! [`super::HungBackend`]) are the other tests' too.

use super::process::{Launch, Running};
use super::{NoResponse, RawConn, Response, TestBackend, connect, get, get_raw, request};
use std::net::{SocketAddr, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How long a test waits for something that should happen: a line, an answer, an exit. As
/// long as a test client waits for a byte.
pub const PATIENCE: Duration = super::CLIENT_WAIT;
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

// ---------------------------------------------------------------------------------------------
// Scenarios that a step and its exercise share.

/// One client sends half a request line and goes quiet; then another asks for `/`. Returns
/// the other client's answer, and what the quiet one got within `watch`.
pub fn quiet_client_then_another(
    addr: SocketAddr,
    watch: Duration,
) -> ((u16, String), Result<Response, NoResponse>) {
    let mut quiet = RawConn::open(addr);
    quiet.send(b"GET / HTT");
    let other = get(&format!("http://{addr}/"));
    quiet.stream.set_read_timeout(Some(watch)).unwrap();
    (other, quiet.try_response())
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
    let mut c = RawConn::open(addr);
    c.send(&get_raw("/"));
    let first = c.try_response().expect("an answer to the first request");
    let second = c.try_send(&get_raw("/")).and_then(|()| c.try_response());
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
    (0..4).map(|_| get(&format!("http://{addr}/"))).collect()
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
    let client = thread::spawn(move || request(addr, &get_raw("/slow")));
    backend.next_request();
    client
}
