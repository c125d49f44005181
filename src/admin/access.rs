//! Who may do what on the admin listener: the token, and the rule for changes.
//!
//! | listener | reading (`GET`, `HEAD`) | changing (`POST`, `DELETE`) |
//! |---|---|---|
//! | TCP, no token (loopback only: [`crate::config`] refuses another address) | open | `403`, except the demo's drills and lab switches (below) |
//! | TCP, with a token | the token, else `401` | the token, else `401` |
//! | Unix socket (`--admin unix:PATH`, mode 0600), no token | open to the socket's owner | open to the socket's owner |
//! | Unix socket, with a token | the token, else `401` | the token, else `401` |
//!
//! A TCP port on loopback is open to every user of the machine: without a token, anyone could
//! add a backend of their own and take traffic. So a TCP admin listener without a token only
//! reads. A Unix socket is guarded by the file system instead: created with mode 0600, only
//! its owner (and root) can connect, as HAProxy's stats socket and Docker's API socket are
//! protected.
//!
//! One exception keeps the demo of a bare `cargo run` working: with demo backends started by
//! this very process ([`super::Drills`] wired in), the status page's drill buttons and the
//! lab's switches (`POST /demo/{name}/{drill}`, `POST /strategy`, `POST /backends/{id}/weight`)
//! are allowed on a loopback TCP listener without a token. It is bounded three ways: only
//! those paths (never adding, draining, enabling or removing a backend, so nobody can bring a
//! server of their own into rotation), only what reshapes traffic among the backends already
//! configured (a drill stops, slows or breaks a demo server inside this process; a switch
//! changes the strategy or a weight), and only when demo backends run at all (`--backend` or
//! `--backends-file` alone start none).
//!
//! The token comes from `--admin-token-file` ([`crate::secret::read_token_file`]): a flag's
//! value is shown by `ps` to every user, a file's content is not.

use super::answers::Answer;
use crate::http::head;
use crate::secret::same_secret;

/// The protection space named in both `WWW-Authenticate` challenges (RFC 9110 section 11.5).
const REALM: &str = "realm=\"load-balancer admin\"";

/// What the access rule needs to know about one request and its listener.
#[derive(Debug, Clone, Copy)]
pub(super) struct Asked<'a> {
    /// The method (`HEAD` counts as reading).
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The `Authorization` field value, if sent.
    pub authorization: Option<&'a [u8]>,
    /// It came over the Unix socket (`--admin unix:PATH`).
    pub unix: bool,
    /// Demo backends run in this process (their drills are wired in).
    pub drills: bool,
}

/// Does the request change something?
pub(super) fn changes(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD")
}

/// Applies the rule of the table above.
///
/// # Errors
/// `401` with the challenges when a token is configured and not presented; `403` for a change
/// on a TCP listener without a token.
pub(super) fn check(asked: &Asked<'_>, token: Option<&str>) -> Result<(), Answer> {
    if let Some(token) = token {
        return authorize(asked.authorization, token);
    }
    let demo_change = asked.drills && is_demo_change(asked.path);
    if !asked.unix && changes(asked.method) && !demo_change {
        return Err(Answer::page(
            403,
            "changes on a TCP admin listener need a token: start the balancer with \
             --admin-token-file PATH, or put the admin on a Unix socket (--admin unix:PATH)",
        ));
    }
    Ok(())
}

/// The paths of the demo's exception: the drills and the lab's switches.
fn is_demo_change(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(
        segments.as_slice(),
        ["demo", ..] | ["strategy"] | ["backends", _, "weight"]
    )
}

/// Checks the token.
///
/// # Errors
/// `401` with a `WWW-Authenticate` challenge for each scheme when the token is missing or
/// wrong: Basic first, so that a browser asks its user (it knows no Bearer).
pub(super) fn authorize(authorization: Option<&[u8]>, token: &str) -> Result<(), Answer> {
    if authorization.is_some_and(|value| presents(value, token.as_bytes())) {
        return Ok(());
    }
    Err(Answer::page(
        401,
        "this admin listener needs the token of --admin-token-file: \
         Authorization: Bearer TOKEN, or Basic with the token as the password",
    )
    .with(
        "WWW-Authenticate",
        format!("Basic {REALM}, charset=\"UTF-8\""),
    )
    .with("WWW-Authenticate", format!("Bearer {REALM}")))
}

/// Does an `Authorization` value present `token`? Either `Bearer TOKEN`, or `Basic` and the
/// base64 of `USER:TOKEN` with any user name (a user name cannot hold a colon, RFC 7617
/// section 2, so the password is everything after the first). The scheme is case-insensitive
/// (RFC 9110 section 11.1) and followed by one or more spaces.
fn presents(value: &[u8], token: &[u8]) -> bool {
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, rest) = value.split_at(space);
    let credentials = head::trim_ows(rest);
    if scheme.eq_ignore_ascii_case(b"bearer") {
        same_secret(credentials, token)
    } else if scheme.eq_ignore_ascii_case(b"basic") {
        super::base64::decode(credentials).is_some_and(|pair| {
            let colon = pair.iter().position(|&b| b == b':');
            colon.is_some_and(|colon| same_secret(&pair[colon + 1..], token))
        })
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked<'a>(method: &'a str, path: &'a str, unix: bool, drills: bool) -> Asked<'a> {
        Asked {
            method,
            path,
            authorization: None,
            unix,
            drills,
        }
    }

    #[test]
    fn without_a_token_tcp_only_reads() {
        let status = |a: Asked<'_>| check(&a, None).err().map(|e| e.status);
        assert_eq!(status(asked("GET", "/backends", false, false)), None);
        assert_eq!(status(asked("HEAD", "/metrics", false, false)), None);
        for (method, path) in [
            ("POST", "/backends"),
            ("POST", "/backends/0/drain"),
            ("POST", "/backends/0/enable"),
            ("DELETE", "/backends/0"),
            ("POST", "/demo/red/stop"),
            ("PUT", "/status"),
        ] {
            assert_eq!(
                status(asked(method, path, false, false)),
                Some(403),
                "{path}"
            );
            assert_eq!(
                status(asked(method, path, true, false)),
                None,
                "unix {path}"
            );
        }
        // The demo's drills and the lab's switches, and only them, when demo backends run.
        for path in ["/demo/red/stop", "/strategy", "/backends/0/weight"] {
            assert_eq!(status(asked("POST", path, false, true)), None, "{path}");
            assert_eq!(
                status(asked("POST", path, false, false)),
                Some(403),
                "{path}"
            );
        }
        for path in [
            "/backends",
            "/backends/0/drain",
            "/backends/0/enable",
            "/strategy/x",
        ] {
            assert_eq!(
                status(asked("POST", path, false, true)),
                Some(403),
                "{path}"
            );
        }
        let delete = asked("DELETE", "/backends/0", false, true);
        assert_eq!(status(delete), Some(403));
    }

    #[test]
    fn with_a_token_everything_needs_it() {
        for unix in [false, true] {
            for method in ["GET", "POST"] {
                let mut a = asked(method, "/demo/red/stop", unix, true);
                assert_eq!(check(&a, Some("t0k")).err().map(|e| e.status), Some(401));
                a.authorization = Some(b"Bearer t0k");
                assert!(check(&a, Some("t0k")).is_ok());
            }
        }
    }

    #[test]
    fn the_token_as_bearer_or_as_a_basic_password() {
        let basic = |pair: &str| format!("Basic {}", super::super::base64::encode(pair.as_bytes()));
        for good in [
            "Bearer t0k".to_string(),
            "bearer   t0k".into(),
            basic("admin:t0k"),
            basic(":t0k"),
            basic("a:t0k"),
            basic("anyone:t0k").replacen("Basic", "BASIC", 1),
        ] {
            assert!(authorize(Some(good.as_bytes()), "t0k").is_ok(), "{good}");
        }
        for bad in [
            None,
            Some("Bearer t0x".to_string()),
            Some("Basic t0k".into()),
            Some("t0k".into()),
            Some("Bearer".into()),
            Some(basic("t0k")),
            Some(basic("admin:t0x")),
            Some(basic("admin:t0k:")),
            Some(format!(
                "Bearer {}",
                super::super::base64::encode(b"admin:t0k")
            )),
            Some(basic("a:t0k").trim_end_matches('=').to_string()),
        ] {
            let Err(answer) = authorize(bad.as_deref().map(str::as_bytes), "t0k") else {
                panic!("{bad:?} passed")
            };
            assert_eq!(answer.status, 401);
            let challenges: Vec<_> = answer
                .fields
                .iter()
                .map(|(n, v)| (*n, v.as_str()))
                .collect();
            assert_eq!(
                challenges,
                [
                    (
                        "WWW-Authenticate",
                        "Basic realm=\"load-balancer admin\", charset=\"UTF-8\""
                    ),
                    ("WWW-Authenticate", "Bearer realm=\"load-balancer admin\""),
                ]
            );
        }
    }
}
