//! The client side of a connection: who the client is, and the wait for its next request.
//!
//! Who it is comes in two layers. Who connected (the TCP peer, or the client a PROXY header
//! names with `--proxy-protocol`) is read once, when [`serve`](super::serve) opens the
//! connection (`Client::open`). Who each request is for (the client a trusted hop names in
//! its forwarding fields, see [`trust`](super::trust)) is taken per request, when
//! `read_request` has `Who::believe` it; the rest of the request reads the answer (`ip`,
//! `https`, the text for `X-Forwarded-For`). Between requests, `first_byte` waits for the
//! next one with the connection marked idle, so that a drain may close it.

use super::proxy_protocol;
use super::trust::{Claims, is_trusted};
use crate::conn::{BufConn, is_timeout};
use crate::console;
use crate::context::{Live, Shared};
use crate::http::MAX_HEAD;
use crate::listener::Flags;
use std::fmt::Write as _;
use std::net::{IpAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

/// Read buffer of a client connection: most request heads fit in one read.
pub const CLIENT_BUFFER: usize = 8 * 1024;
/// The client buffer may grow this far, so that a head up to [`MAX_HEAD`] fits.
pub const CLIENT_BUFFER_MAX: usize = MAX_HEAD + CLIENT_BUFFER;

/// A client connection: the socket with its read buffer, and who it is.
pub(super) struct Client {
    pub(super) conn: BufConn,
    pub(super) who: Who,
    /// The settings of this request, read once as its head starts to arrive ([`Live`]): a
    /// reload in the middle of it changes the next one.
    pub(super) live: Arc<Live>,
}

/// Who a client is: who connected, and who a request says it is for.
pub(super) struct Who {
    /// Who connected: the TCP peer, or the client its PROXY header names (`--proxy-protocol`).
    pub(super) peer: IpAddr,
    /// `peer` as text, for `X-Forwarded-For`: formatted once per connection, not per request.
    pub(super) peer_text: String,
    /// The connection came over TLS: its PROXY header says so (`send-proxy-v2-ssl`).
    tls: bool,
    /// This request's client: `peer`, or the client a trusted `peer` names
    /// ([`trust`](super::trust)).
    pub(super) ip: IpAddr,
    /// `ip` as text when a trusted hop named it (the buffer is kept from one request to
    /// the next: no allocation per request).
    named_text: String,
    /// `named_text` holds this request's client.
    named: bool,
    /// This request came over https: the connection's `tls`, or what a trusted hop says.
    pub(super) https: bool,
}

impl Who {
    fn new(peer: IpAddr, tls: bool) -> Who {
        Who {
            peer,
            peer_text: peer.to_string(),
            tls,
            ip: peer,
            named_text: String::new(),
            named: false,
            https: tls,
        }
    }

    /// Takes what a trusted hop says about the request (`None`: nothing, or not trusted).
    pub(super) fn believe(&mut self, claims: Option<Claims<'_>>) {
        let Some(claims) = claims else {
            (self.ip, self.named, self.https) = (self.peer, false, self.tls);
            return;
        };
        if !(self.named && self.ip == claims.client) {
            self.named_text.clear();
            let _ = write!(self.named_text, "{}", claims.client);
        }
        (self.ip, self.named) = (claims.client, true);
        self.https = claims.https.unwrap_or(self.tls);
    }

    /// This request's client as text.
    pub(super) fn ip_text(&self) -> &str {
        if self.named {
            &self.named_text
        } else {
            &self.peer_text
        }
    }
}

impl Client {
    /// A new connection from `peer`. With `--proxy-protocol`, its PROXY header is read
    /// first (by `by`): the client it names (its peer's address for `LOCAL` and `UNKNOWN`),
    /// and whether that client spoke TLS. `None`: the connection is to be closed unread, as
    /// it sent no valid header in time, or its peer is not in `--trusted-proxy` when that
    /// is given.
    pub(super) fn open(
        stream: Arc<TcpStream>,
        peer: IpAddr,
        (live, ctx): (Arc<Live>, &Shared),
        by: Instant,
    ) -> Option<Client> {
        if live.timeouts != ctx.accept_timeouts {
            // A reload changed the limits the listener set on the socket.
            let _ = live.timeouts.accepted(&stream);
        }
        let mut conn = BufConn::new(stream, CLIENT_BUFFER, CLIENT_BUFFER_MAX)
            .read_timeout_is(live.timeouts.first_byte());
        if !live.config.proxy_protocol {
            let who = Who::new(peer, false);
            return Some(Client { conn, who, live });
        }
        let trusted = &live.config.trusted_proxies;
        let read = if trusted.is_empty() || is_trusted(trusted, peer) {
            proxy_protocol::read(&mut conn, by)
        } else {
            Err("a PROXY header is taken only from --trusted-proxy peers")
        };
        match read {
            Ok(header) => {
                let who = Who::new(header.source.map_or(peer, |s| s.ip()), header.ssl);
                Some(Client { conn, who, live })
            }
            Err(why) => {
                console::error(format_args!(
                    "[LoadBalancer] error: closed a connection from {peer}: {why}"
                ));
                None
            }
        }
    }
}

/// Waits up to `wait` for the first byte of a request, marked idle meanwhile (a drain may
/// close the connection then). `false`: none came, the client closed, or the balancer stops.
///
/// A socket's read timeout is usually still the shorter one set at accept
/// ([`crate::conn::Timeouts::first_byte`]): the wait starts with it and is stretched to
/// `wait` only if nothing came by then. Most clients send their next request, or close,
/// within it, so most connections never pay a system call to change the timeout.
pub(super) fn first_byte(conn: &mut BufConn, wait: std::time::Duration, flags: Flags<'_>) -> bool {
    flags.set_idle(true);
    if flags.draining() {
        return false;
    }
    let started = Instant::now();
    let set = conn.read_timeout().filter(|&t| t <= wait);
    if set.is_none() {
        let _ = conn.set_read_timeout(wait);
    }
    // No buffer is held while waiting (see `BufConn::fill_idle`).
    let mut read = conn.fill_idle();
    if set.is_some_and(|t| t < wait) && matches!(&read, Err(e) if is_timeout(e)) {
        let rest = wait.saturating_sub(started.elapsed());
        if !rest.is_zero() && conn.set_read_timeout(rest).is_ok() {
            read = conn.fill_idle();
        }
    }
    flags.set_idle(false);
    matches!(read, Ok(1..))
}
