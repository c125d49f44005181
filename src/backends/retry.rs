//! May this request go to another backend? The one rule, its inputs, and its table.
//!
//! The chapter's handler tries one backend and answers `502` when it fails. A real balancer
//! tries the next backend, but only when the client cannot tell the difference: the request
//! must be whole in hand to send it again, and a backend that may have acted on it must not
//! be asked to act twice. [`may_retry`] answers from three facts: how far the request's body
//! got ([`BodyState`]), where the attempt failed ([`Failure`]), and whether the method is
//! idempotent (RFC 9110 section 9.2.2). nginx (`proxy_next_upstream`), HAProxy (`retry-on`)
//! and Envoy (`retry_on`) draw the same lines; where they differ, the table says which one
//! this follows.

/// How far the request's body got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyState {
    /// The request has no body.
    None,
    /// The whole body arrived with the head and stays in the client's buffer until the
    /// request is done: it can be sent again.
    Whole,
    /// The body is still on the client's socket, not a byte read yet.
    Waiting,
    /// Body bytes were read from the client and sent on: they cannot be sent again.
    Consumed,
    /// The body was read to its end and sent: it cannot be sent again, but the client
    /// connection is at the start of its next request.
    Done,
}

impl BodyState {
    /// Can the request still be sent whole to a backend?
    pub fn replayable(self) -> bool {
        matches!(
            self,
            BodyState::None | BodyState::Whole | BodyState::Waiting
        )
    }

    /// Is the client's connection at a request boundary (nothing of this body left unread)?
    pub fn read_to_end(self) -> bool {
        matches!(self, BodyState::None | BodyState::Whole | BodyState::Done)
    }
}

/// Where an attempt at a backend failed, before any of its response reached the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made (refused, unreachable, `--connect-timeout`): nothing
    /// was sent.
    Connect,
    /// Writing the request failed. `partly`: some of it may have reached the backend.
    Send {
        /// Some bytes of the request were written before the failure.
        partly: bool,
    },
    /// The backend closed or reset the connection before any byte of a response.
    Closed,
    /// The backend was silent for `--backend-timeout` after the request was sent (before a
    /// response head, or in the middle of one: the same failure either way).
    TimedOut,
    /// A response came but its head was malformed, too large, or broke off.
    BadResponse,
}

impl Failure {
    /// The status the client gets when this is the last failure of its request: `504` for a
    /// backend that went silent, `502` for one that refused or broke (RFC 9110 sections
    /// 15.6.3 and 15.6.5).
    pub fn status(self) -> u16 {
        match self {
            Failure::TimedOut => 504,
            _ => 502,
        }
    }
}

/// May a request whose attempt failed with `failure` go to another backend?
///
/// Never once its body cannot be sent again. A failure to connect sent nothing, and neither
/// did a write that failed before its first byte. After that, only an idempotent method may
/// be sent twice (a backend that died after reading a `POST` may have acted on it), and only
/// when no byte of a response came back.
///
/// A backend that went silent after the request was sent is not asked again elsewhere, for
/// any method (HAProxy's and Envoy's default; nginx's `proxy_next_upstream timeout` would).
/// A request that is slow everywhere (a report, a URL that hangs) would otherwise cost one
/// `--backend-timeout` per backend before its `504`, and fail every backend in passing: one
/// client asking for it could take the whole rotation out. So a timed-out request costs one
/// `--backend-timeout` and one backend's failure count, and no more.
pub fn may_retry(failure: Failure, body: BodyState, idempotent: bool) -> bool {
    if !body.replayable() {
        return false;
    }
    match failure {
        Failure::Connect | Failure::Send { partly: false } => true,
        Failure::Send { partly: true } | Failure::Closed => idempotent,
        Failure::TimedOut | Failure::BadResponse => false,
    }
}

/// May a request whose attempt on a *reused* (pooled) connection failed with `failure` be
/// sent again to the same backend, on a fresh connection?
///
/// Whenever [`may_retry`] would let it go elsewhere, and also after an answer that could not
/// be parsed, for an idempotent request whose body can be sent again: on a connection that
/// carried earlier responses, garbage is most likely the tail of one of them (a body sent on
/// a `HEAD` answer) rather than this request's answer, so it is not the backend's failure.
/// The fresh connection's own result is what counts for the backend's health.
pub fn may_retry_fresh(failure: Failure, body: BodyState, idempotent: bool) -> bool {
    may_retry(failure, body, idempotent)
        || (failure == Failure::BadResponse && idempotent && body.replayable())
}

#[cfg(test)]
mod tests {
    use super::*;
    use BodyState::{Consumed, Done, None as NoBody, Waiting, Whole};
    use Failure::*;

    #[test]
    fn the_retry_table() {
        const PARTLY: Failure = Send { partly: true };
        const UNSENT: Failure = Send { partly: false };
        // failure     body       GET?   may go elsewhere
        let table = [
            (Connect, NoBody, false, true),
            (Connect, Whole, false, true),
            (Connect, Waiting, false, true),
            (UNSENT, Whole, false, true),
            (UNSENT, Waiting, false, true),
            (PARTLY, NoBody, true, true),
            (PARTLY, NoBody, false, false),
            (PARTLY, Whole, true, true),
            (Closed, NoBody, true, true),
            (Closed, Whole, false, false),
            (Closed, Waiting, true, true),
            (TimedOut, NoBody, true, false),
            (TimedOut, Whole, true, false),
            (TimedOut, NoBody, false, false),
            (BadResponse, NoBody, true, false),
            (Connect, Consumed, true, false),
            (Closed, Consumed, true, false),
            (Closed, Done, true, false),
            (UNSENT, Done, true, false),
        ];
        for (failure, body, idempotent, expected) in table {
            assert_eq!(
                may_retry(failure, body, idempotent),
                expected,
                "{failure:?} {body:?} idempotent={idempotent}"
            );
        }
    }

    #[test]
    fn the_fresh_connection_table() {
        // failure     body       GET?   again on a fresh connection
        let table = [
            (BadResponse, NoBody, true, true),
            (BadResponse, Whole, true, true),
            (BadResponse, NoBody, false, false),
            (BadResponse, Consumed, true, false),
            (Closed, NoBody, true, true),
            (TimedOut, NoBody, true, false),
        ];
        for (failure, body, idempotent, expected) in table {
            assert_eq!(
                may_retry_fresh(failure, body, idempotent),
                expected,
                "{failure:?} {body:?} idempotent={idempotent}"
            );
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(TimedOut.status(), 504);
        for f in [Connect, Send { partly: true }, Closed, BadResponse] {
            assert_eq!(f.status(), 502, "{f:?}");
        }
    }
}
