//! The demo backends' own small HTTP/1.1 server: one connection, one request after another.
//!
//! The other part, `mod.rs` (the module [`crate::demo`]), holds what a learner reads first:
//! the colours and pages, the drills, [`DemoBackend`](super::DemoBackend) (start, stop, the
//! listener) and the [`Fleet`](super::Fleet). This file is what runs on each accepted
//! connection, top to bottom:
//!
//! 1. `serve`: the connection loop (keep-alive), counting requests;
//! 2. `read_request`: the head, read with the crate's own [`crate::http::request`] parser,
//!    kept as a `Received` for `/echo`; then `read_body`, the body, of any framing;
//! 3. the drill (`drill_status`, in `mod.rs`) says whether and with what status to answer;
//! 4. `respond`: the page, `/echo`, `/status/NNN`, `/bytes/N` (streamed, `stream_bytes`) or
//!    the favicon's `204`, each head written with [`crate::http::pages::Head`].
//!
//! It is a demo server, but the benchmark and the tests drive it hard: a long body moves in
//! [`BULK_IO`] reads and writes, and the `/bytes/N` pattern is built once.

use super::{DemoShared, drill_status};
use crate::conn::BufConn;
use crate::http::chunked::{Decoder, Step};
use crate::http::framing::{self, Body};
use crate::http::pages::Head;
use crate::http::{Error, Parse, Version, pages, request};
use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};

/// Size of one read or write when a demo backend moves a long body (`/bytes/N`, a long
/// request body): large, so that a bandwidth test through the balancer measures the balancer
/// and not a backend's many small system calls.
pub const BULK_IO: usize = 256 * 1024;
/// Most body bytes `/echo` shows; the rest is read and counted.
pub const ECHO_MAX_BODY: usize = 64 * 1024;
/// The path browsers ask for an icon; answered `204 No Content` and not counted, as the
/// chapter's server does.
pub const FAVICON: &str = "/favicon.ico";

/// What a demo backend received, kept for `/echo`.
struct Received {
    method: String,
    target: String,
    version: Version,
    headers: Vec<(String, Vec<u8>)>,
    keep_alive: bool,
    body: Body,
}

/// Serves one connection until the client closes, asks to close, sends a malformed request,
/// or a drill says to close without answering.
pub(super) fn serve(stream: Arc<TcpStream>, shared: &DemoShared) -> io::Result<()> {
    let mut conn = BufConn::new(stream, 8 * 1024, 64 * 1024);
    loop {
        let received = match read_request(&mut conn)? {
            None => return Ok(()),
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                conn.write_all(&pages::ErrorPage::new(e.status, e.why).bytes())?;
                return Ok(());
            }
        };
        let body = read_body(&mut conn, received.body)?;
        let Some(status) = drill_status(shared) else {
            return Ok(());
        };
        if received.target.split('?').next() != Some(FAVICON) {
            shared.requests.fetch_add(1, Ordering::Relaxed);
        }
        respond(&mut conn, &received, &body, &shared.page, status)?;
        if !received.keep_alive {
            return Ok(());
        }
    }
}

/// Reads the next request head (not its body): `None` when the client closed first,
/// `Some(Err(_))` when the head is malformed (the caller answers with the error's page).
fn read_request(conn: &mut BufConn) -> io::Result<Option<Result<Received, Error>>> {
    loop {
        match request::parse(conn.data()) {
            Ok(Parse::Complete { head, len }) => {
                let body = framing::request_body(&head);
                let received = body.map(|body| Received {
                    method: head.method.to_string(),
                    target: head.target.to_string(),
                    version: head.version,
                    headers: head
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), h.value.to_vec()))
                        .collect(),
                    keep_alive: head.keep_alive(),
                    body,
                });
                conn.consume(len);
                return Ok(Some(received));
            }
            Ok(Parse::Partial) => {
                if conn.fill()? == 0 {
                    return Ok(None);
                }
            }
            Err(e) => return Ok(Some(Err(e))),
        }
    }
}

/// Reads a `Content-Length` body of `left` bytes, handing each piece to `keep`: what the
/// connection has buffered, then reads of up to [`BULK_IO`] bytes (a backend that read 8 KiB
/// at a time would make a bandwidth test through the balancer measure the backend).
fn read_length(conn: &mut BufConn, mut left: u64, keep: &mut dyn FnMut(&[u8])) -> io::Result<()> {
    let mut chunk = Vec::new();
    while left > 0 {
        let took = if conn.data().is_empty() {
            if chunk.is_empty() {
                chunk = vec![0; left.min(BULK_IO as u64) as usize];
            }
            let want = left.min(chunk.len() as u64) as usize;
            let n = (&*conn.stream).read(&mut chunk[..want])?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            keep(&chunk[..n]);
            n
        } else {
            let take = left.min(conn.data().len() as u64) as usize;
            keep(&conn.data()[..take]);
            conn.consume(take);
            take
        };
        left -= took as u64;
    }
    Ok(())
}

/// Reads a request body, keeping the first [`ECHO_MAX_BODY`] bytes.
fn read_body(conn: &mut BufConn, body: Body) -> io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let mut keep = |data: &[u8]| {
        let room = ECHO_MAX_BODY.saturating_sub(kept.len());
        kept.extend_from_slice(&data[..data.len().min(room)]);
    };
    match body {
        Body::Empty | Body::UntilClose => {}
        Body::Length(left) => read_length(conn, left, &mut keep)?,
        Body::Chunked => {
            let mut decoder = Decoder::new();
            loop {
                match decoder
                    .decode(conn.data())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
                {
                    Step::Data { start, end } => {
                        keep(&conn.data()[start..end]);
                        conn.consume(end);
                    }
                    Step::NeedMore => {
                        conn.consume(conn.data().len());
                        if conn.fill()? == 0 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                    Step::Done { used } => {
                        conn.consume(used);
                        break;
                    }
                }
            }
        }
    }
    Ok(kept)
}

/// Answers one request: with the drill's status (and the page) when it is not 200, else by
/// path: the favicon, `/echo`, `/bytes/N`, `/status/NNN` or the page.
fn respond(
    conn: &mut BufConn,
    r: &Received,
    body: &[u8],
    page: &str,
    drill_status: u16,
) -> io::Result<()> {
    let path = r.target.split('?').next().unwrap_or("");
    let (status, content_type, content): (u16, &str, Vec<u8>) = if drill_status != 200 {
        (drill_status, "text/html", page.as_bytes().to_vec())
    } else if path == FAVICON {
        // As the chapter's server: no icon. The 204 may be cached for a day, so a browser's
        // reloads do not spend a turn of the rotation on the icon every time.
        let head = Head::new(204)
            .field("Cache-Control", "max-age=86400")
            .field("Server", "demo")
            .close(!r.keep_alive);
        return conn.write_all(&head.with_body(b"", true));
    } else if path == "/echo" {
        (200, "text/plain; charset=utf-8", echo(r, body))
    } else if let Some(n) = path
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        return stream_bytes(conn, r, n);
    } else if let Some(code) = path
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
    {
        let code = if (200..600).contains(&code) {
            code
        } else {
            400
        };
        (code, "text/html", page.as_bytes().to_vec())
    } else {
        (200, "text/html", page.as_bytes().to_vec())
    };
    write_page(conn, r, status, content_type, &content)
}

/// Writes a whole response with `content` (left out for HEAD, 204 and 304).
fn write_page(
    conn: &mut BufConn,
    r: &Received,
    status: u16,
    content_type: &str,
    content: &[u8],
) -> io::Result<()> {
    let mut head = Head::new(status)
        .content(content_type, content.len())
        .field("Server", "demo")
        .close(!r.keep_alive);
    if r.keep_alive && r.version == Version::Http10 {
        head = head.field("Connection", "keep-alive");
    }
    let no_body = r.method == "HEAD" || status == 204 || status == 304;
    conn.write_all(&head.with_body(content, no_body))
}

/// The `/echo` page: request line, fields, blank line, body.
fn echo(r: &Received, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{} {} {}\n", r.method, r.target, r.version.as_str()).into_bytes();
    for (name, value) in &r.headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// The pattern `/bytes/N` sends, one [`BULK_IO`] write of it at a time: built once, not per
/// request.
static BYTES_BLOCK: LazyLock<Vec<u8>> =
    LazyLock::new(|| (0..BULK_IO).map(|i| b'a' + (i % 26) as u8).collect());

/// `/bytes/N`: `N` bytes of a repeating pattern, in [`BULK_IO`] writes.
fn stream_bytes(conn: &mut BufConn, r: &Received, n: u64) -> io::Result<()> {
    let head = Head::new(200)
        .field("Content-Type", "application/octet-stream")
        .field("Content-Length", n)
        .field("Server", "demo")
        .close(!r.keep_alive);
    conn.write_all(&head.with_body(b"", true))?;
    if r.method == "HEAD" {
        return Ok(());
    }
    let block = &*BYTES_BLOCK;
    let mut left = n;
    while left > 0 {
        let take = left.min(block.len() as u64) as usize;
        conn.write_all(&block[..take])?;
        left -= take as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_shows_the_request_line_fields_and_body() {
        let r = Received {
            method: "POST".into(),
            target: "/echo?x=1".into(),
            version: Version::Http11,
            headers: vec![
                ("Host".into(), b"demo".to_vec()),
                ("X-Forwarded-For".into(), b"10.0.0.1".to_vec()),
            ],
            keep_alive: true,
            body: Body::Length(5),
        };
        assert_eq!(
            echo(&r, b"hello"),
            b"POST /echo?x=1 HTTP/1.1\nHost: demo\nX-Forwarded-For: 10.0.0.1\n\nhello"
        );
    }

    #[test]
    fn the_bytes_pattern_runs_a_to_z_and_starts_again() {
        assert_eq!(BYTES_BLOCK.len(), BULK_IO);
        assert_eq!(&BYTES_BLOCK[..3], b"abc");
        assert_eq!(&BYTES_BLOCK[25..28], b"zab");
    }
}
