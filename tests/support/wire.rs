//! Raw-wire helpers for the HTTP/1.1 test families (keep-alive, framing, hygiene, rejects,
//! timeouts, upgrade, fuzz): a scripted backend's side of the conversation, read byte-exact,
//! so a test can assert what the balancer really put on the wire.
//!
//! Included with `#[path = "support/wire.rs"] mod wire;` next to `mod support;`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What a scripted backend saw: connections accepted and request messages read.
#[derive(Default)]
pub struct Seen {
    pub connections: AtomicUsize,
    pub messages: Mutex<Vec<(String, Vec<u8>)>>,
}

impl Seen {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
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

    pub fn last(&self) -> (String, Vec<u8>) {
        self.messages.lock().unwrap().last().cloned().unwrap()
    }

    pub fn record(&self, message: &(String, Vec<u8>)) {
        self.messages.lock().unwrap().push(message.clone());
    }
}

/// Reads one request from a backend connection: the head (up to and including the blank line)
/// and the body exactly as it arrived (still chunk-encoded, trailers included). `None` if the
/// connection closed or broke before the message ended.
pub fn read_message(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let head = read_line_until_blank(s)?;
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if let Some(len) = field(&lower, "content-length") {
        let len: usize = len.parse().ok()?;
        body.resize(len, 0);
        s.read_exact(&mut body).ok()?;
    } else if field(&lower, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
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

fn read_line_until_blank(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    loop {
        let line = read_line(s)?;
        head.extend_from_slice(&line);
        if line == b"\r\n" {
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
    }
}

/// The value of the first field `name` (lowercase) in a lowercased head.
pub fn field<'a>(lower_head: &'a str, name: &str) -> Option<&'a str> {
    lower_head.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// Every value of field `name` (case-insensitive) in a head, in order.
pub fn fields(head: &str, name: &str) -> Vec<String> {
    head.lines()
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
        .collect()
}

/// The status code of a response text (`HTTP/1.1 200 OK...`).
pub fn status(response: &str) -> u16 {
    response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {response:?}"))
}

/// A `200` with `body` and Content-Length.
pub fn ok(s: &mut TcpStream, body: &str) -> bool {
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(reply.as_bytes()).is_ok()
}
