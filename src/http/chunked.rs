//! A streaming decoder for the chunked transfer coding (RFC 9112 section 7.1): how a body of
//! unknown length travels, which the chapter's `resp.read()` hides by reading it all.
//!
//! ```text
//! 5;ext=1\r\n      chunk size in hex, optional extensions
//! hello\r\n        that many bytes of data
//! 0\r\n            the last chunk
//! Trailer: x\r\n   optional trailer fields
//! \r\n             end
//! ```
//!
//! The decoder never holds body data: it points at the data inside the caller's buffer, so a
//! body of any size streams through in constant memory. Sizes are checked for overflow, and
//! every line must end in CRLF exactly: whatever the balancer cannot read exactly one way is
//! refused, so it cannot disagree with a backend about where a body ends.

use super::head::{may_trail, parse_field};
use super::{Error, MAX_HEAD};

/// Longest chunk-size line (size and extensions) accepted. nginx and HAProxy ignore extensions;
/// the limit only stops a line that never ends.
pub const MAX_CHUNK_LINE: usize = 4096;

/// What [`Decoder::decode`] found in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `input[start..end]` is body data; the caller consumes `end` bytes and calls again.
    Data {
        /// Where the data starts in the input.
        start: usize,
        /// Where the data ends; everything before it has been decoded.
        end: usize,
    },
    /// All of the input was consumed without finishing a piece of data: read more.
    NeedMore,
    /// The body ended after `used` bytes of the input; the rest belongs to the next message.
    Done {
        /// Bytes of the input that belonged to this body.
        used: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size; `digits` so far.
    Size { digits: u32 },
    /// After the size: optional extensions up to the CR.
    Extension,
    /// Expecting the LF that ends a chunk-size line.
    SizeLf,
    /// Inside chunk data; `remaining` bytes to go.
    Data { remaining: u64 },
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// Reading a trailer line (or the final empty line).
    Trailer,
    /// The body is complete.
    Done,
}

/// Decodes one chunked body, fed in pieces.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    size: u64,
    line_len: usize,
    /// Trailer fields as received, each line ending in CRLF; empty when there were none.
    trailers: Vec<u8>,
    /// Bytes of the trailer section read so far, the dropped fields' lines included: the
    /// section's limit counts what arrived, not what was kept.
    trailer_bytes: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

fn bad(why: &'static str) -> Error {
    Error::bad(why)
}

impl Decoder {
    /// A decoder at the start of a body.
    pub fn new() -> Decoder {
        Decoder {
            state: State::Size { digits: 0 },
            size: 0,
            line_len: 0,
            trailers: Vec::new(),
            trailer_bytes: 0,
        }
    }

    /// The trailer section received after the last chunk, each field line ending in CRLF
    /// (validated like header fields), without the fields a trailer may not carry
    /// ([`super::head::NOT_IN_TRAILERS`]). Empty when there was none.
    pub fn trailers(&self) -> &[u8] {
        &self.trailers
    }

    /// Decodes from `input`, which continues where the previous call's consumed bytes ended.
    ///
    /// # Errors
    /// `400` for a malformed chunk size (not hex, overflowing a u64), a missing CRLF, a
    /// chunk line over [`MAX_CHUNK_LINE`], a malformed trailer field, or trailers over
    /// [`MAX_HEAD`]. (The proxy turns these into `502` when a backend sent them.)
    pub fn decode(&mut self, input: &[u8]) -> Result<Step, Error> {
        for i in 0..input.len() {
            if let Some(step) = self.step(input, i)? {
                return Ok(step);
            }
        }
        Ok(match self.state {
            State::Done => Step::Done { used: input.len() },
            _ => Step::NeedMore,
        })
    }

    /// Takes `input[i]` (and, in chunk data, as much after it as the chunk holds); `Some`
    /// when a piece of data or the end of the body was found.
    fn step(&mut self, input: &[u8], i: usize) -> Result<Option<Step>, Error> {
        let b = input[i];
        match self.state {
            State::Size { digits } => self.size_byte(b, digits)?,
            State::Extension => self.extension_byte(b)?,
            State::SizeLf => {
                expect(b, b'\n', "chunk size line does not end in CRLF")?;
                self.line_len = 0;
                self.state = match self.size {
                    0 => State::Trailer,
                    remaining => State::Data { remaining },
                };
                self.size = 0;
            }
            State::Data { remaining } => {
                let take = remaining.min((input.len() - i) as u64);
                self.state = match remaining - take {
                    0 => State::DataCr,
                    left => State::Data { remaining: left },
                };
                let end = i + take as usize;
                return Ok(Some(Step::Data { start: i, end }));
            }
            State::DataCr => {
                expect(b, b'\r', "chunk data is not followed by CRLF")?;
                self.state = State::DataLf;
            }
            State::DataLf => {
                expect(b, b'\n', "chunk data is not followed by CRLF")?;
                self.state = State::Size { digits: 0 };
            }
            State::Trailer => return self.trailer_byte(b, i),
            State::Done => return Ok(Some(Step::Done { used: i })),
        }
        Ok(None)
    }

    /// A byte of a chunk-size line, before any extension.
    fn size_byte(&mut self, b: u8, digits: u32) -> Result<(), Error> {
        match hex_value(b) {
            Some(v) => {
                self.size = self
                    .size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(u64::from(v)))
                    .ok_or(bad("chunk size overflows"))?;
                self.state = State::Size { digits: digits + 1 };
                self.line_len += 1;
                if self.line_len > MAX_CHUNK_LINE {
                    return Err(bad("chunk size line too long"));
                }
            }
            None if digits == 0 => return Err(bad("chunk size is not hexadecimal")),
            None if b == b'\r' => self.state = State::SizeLf,
            None if b == b';' || b == b' ' || b == b'\t' => self.state = State::Extension,
            None => return Err(bad("chunk size is not hexadecimal")),
        }
        Ok(())
    }

    /// A byte of a chunk extension: read and ignored, as nginx and HAProxy do, but bounded
    /// and free of control characters.
    fn extension_byte(&mut self, b: u8) -> Result<(), Error> {
        self.line_len += 1;
        if self.line_len > MAX_CHUNK_LINE {
            return Err(bad("chunk extension too long"));
        }
        match b {
            b'\r' => self.state = State::SizeLf,
            b'\t' => {}
            _ if b < 0x20 || b == 0x7f => {
                return Err(bad("control character in a chunk extension"));
            }
            _ => {}
        }
        Ok(())
    }

    /// A byte of the trailer section (byte `i` of the input); `Some` when it ended the body.
    fn trailer_byte(&mut self, b: u8, i: usize) -> Result<Option<Step>, Error> {
        // Trailer lines are short and rare: collect them whole, then check the line.
        let line_start = self.trailers.len() - self.line_len;
        self.trailers.push(b);
        self.line_len += 1;
        self.trailer_bytes += 1;
        // Counted as received: lines of dropped fields (`Host: x` again and again) leave
        // nothing kept, and a limit on what is kept let 9.9 MB of them through.
        if self.trailer_bytes > MAX_HEAD {
            return Err(Error {
                status: 431,
                why: "trailer section too large",
            });
        }
        if b != b'\n' {
            return Ok(None);
        }
        let line = &self.trailers[line_start..];
        let Some(line) = line.strip_suffix(b"\r\n") else {
            return Err(bad("trailer line does not end in CRLF"));
        };
        if line.is_empty() {
            self.trailers.truncate(line_start);
            self.state = State::Done;
            return Ok(Some(Step::Done { used: i + 1 }));
        }
        if !may_trail(parse_field(line)?.name) {
            // Framing, routing and the like never come from a trailer.
            self.trailers.truncate(line_start);
        }
        self.line_len = 0;
        Ok(None)
    }
}

/// `b` must be `want`; otherwise the body is malformed, for the reason `why`.
fn expect(b: u8, want: u8, why: &'static str) -> Result<(), Error> {
    if b == want { Ok(()) } else { Err(bad(why)) }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends the size line of a chunk of `len` bytes (`len` must not be 0: that is the last chunk).
pub fn write_chunk_size(out: &mut Vec<u8>, len: usize) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{len:x}\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `piece` bytes; returns the data, the trailers and what is left.
    fn decode_all(input: &[u8], piece: usize) -> Result<(Vec<u8>, Vec<u8>, usize), Error> {
        let mut dec = Decoder::new();
        let mut data = Vec::new();
        let mut pos = 0;
        let mut end = piece.min(input.len());
        loop {
            match dec.decode(&input[pos..end])? {
                Step::Data { start, end: e } => {
                    data.extend_from_slice(&input[pos + start..pos + e]);
                    pos += e;
                }
                Step::NeedMore => {
                    pos = end;
                    if end == input.len() {
                        return Err(bad("test: input ended"));
                    }
                    end = (end + piece).min(input.len());
                }
                Step::Done { used } => {
                    return Ok((data, dec.trailers().to_vec(), input.len() - pos - used));
                }
            }
        }
    }

    #[test]
    fn decodes_in_any_pieces() {
        let body = b"5\r\nhello\r\n6;name=val\r\n world\r\n0\r\nX-Sum: 1\r\nX-More: 2\r\n\r\nNEXT";
        for piece in 1..=body.len() {
            let (data, trailers, left) = decode_all(body, piece).unwrap();
            assert_eq!(data, b"hello world", "piece {piece}");
            assert_eq!(trailers, b"X-Sum: 1\r\nX-More: 2\r\n");
            assert_eq!(left, 4);
        }
    }

    #[test]
    fn dropped_trailer_fields_count_against_the_limit() {
        let mut body = b"1\r\na\r\n0\r\n".to_vec();
        while body.len() < MAX_HEAD + 64 {
            body.extend_from_slice(b"Host: x\r\n");
        }
        body.extend_from_slice(b"\r\n");
        let err = decode_all(&body, 4096).unwrap_err();
        assert_eq!((err.status, err.why), (431, "trailer section too large"));
    }

    #[test]
    fn a_trailer_section_may_be_max_head_bytes_and_no_more() {
        // `n` bytes of trailer section after the last chunk, its closing blank line included.
        let body = |n: usize| {
            let mut b = b"0\r\nX-Pad: ".to_vec();
            b.resize(3 + n - 4, b'p');
            b.extend_from_slice(b"\r\n\r\n");
            b
        };
        let (_, trailers, left) = decode_all(&body(MAX_HEAD), 4096).unwrap();
        assert_eq!((trailers.len(), left), (MAX_HEAD - 2, 0));
        let err = decode_all(&body(MAX_HEAD + 1), 4096).unwrap_err();
        assert_eq!((err.status, err.why), (431, "trailer section too large"));
    }

    #[test]
    fn trailers_lose_the_fields_a_trailer_may_not_carry() {
        let body = b"0\r\nContent-Length: 5\r\nX-Sum: 1\r\nTransfer-Encoding: chunked\r\n\
                     host: evil\r\nConnection: close\r\nX_Sum: 2\r\nSet-Cookie: a=b\r\n\
                     X-More: 2\r\n\r\n";
        for piece in 1..=body.len() {
            let (_, trailers, left) = decode_all(body, piece).unwrap();
            assert_eq!(trailers, b"X-Sum: 1\r\nX-More: 2\r\n", "piece {piece}");
            assert_eq!(left, 0);
        }
    }

    #[test]
    fn every_truncated_prefix_needs_more() {
        let body = b"A\r\n0123456789\r\n0\r\n\r\n";
        for cut in 0..body.len() {
            assert!(decode_all(&body[..cut], 3).is_err(), "cut {cut}");
        }
        assert_eq!(decode_all(body, 3).unwrap().0, b"0123456789");
    }

    #[test]
    fn rejects_bad_framing() {
        for body in [
            &b"g\r\n"[..],
            b"\r\n",
            b"-1\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"ffffffffffffffffff\r\n",
            b"1;a\0b\r\nx\r\n0\r\n\r\n",
            b"0\r\nBad Trailer\r\n\r\n",
            b"0\r\nX: y\n\r\n",
        ] {
            assert_eq!(
                decode_all(body, 64).unwrap_err().status,
                400,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_size_line_without_digits_is_refused_not_taken_for_the_last_chunk() {
        // Whole bodies, so that a decoder that took the empty size for 0 would end them.
        for body in [&b"\r\n\r\n"[..], b" \r\n\r\n", b";x\r\n\r\n"] {
            let err = decode_all(body, 64).unwrap_err();
            let text = String::from_utf8_lossy(body);
            assert_eq!(
                (err.status, err.why),
                (400, "chunk size is not hexadecimal"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn whitespace_may_come_before_a_chunk_extension() {
        // RFC 9112 section 7.1.1: `chunk-ext = *( BWS ";" BWS chunk-ext-name ... )`.
        for body in [
            &b"5 ;a=b\r\nhello\r\n0\r\n\r\n"[..],
            b"5\t;a\r\nhello\r\n0\r\n\r\n",
        ] {
            let text = String::from_utf8_lossy(body);
            assert_eq!(decode_all(body, 64).unwrap().0, b"hello", "{text:?}");
        }
    }

    #[test]
    fn a_size_line_may_be_max_chunk_line_digits_long_and_no_longer() {
        let line = |n| [vec![b'0'; n - 1], b"5\r\nhello\r\n0\r\n\r\n".to_vec()].concat();
        assert_eq!(decode_all(&line(MAX_CHUNK_LINE), 1024).unwrap().0, b"hello");
        let err = decode_all(&line(MAX_CHUNK_LINE + 1), 1024).unwrap_err();
        assert_eq!((err.status, err.why), (400, "chunk size line too long"));
    }

    #[test]
    fn largest_chunk_size_parses() {
        let mut dec = Decoder::new();
        assert_eq!(
            dec.decode(b"ffffffffffffffff\r\nab").unwrap(),
            Step::Data { start: 18, end: 20 }
        );
    }

    #[test]
    fn long_extension_is_refused() {
        // The whole line before its CRLF, size and extension, may be MAX_CHUNK_LINE bytes.
        let line = |n: usize| {
            let mut body = b"1;".to_vec();
            body.resize(n, b'a');
            body.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
            body
        };
        assert_eq!(decode_all(&line(MAX_CHUNK_LINE), 64).unwrap().0, b"x");
        let err = decode_all(&line(MAX_CHUNK_LINE + 1), 64).unwrap_err();
        assert_eq!((err.status, err.why), (400, "chunk extension too long"));
    }

    #[test]
    fn an_extension_may_hold_spaces_and_tabs() {
        for body in [
            &b"5; a=b\r\nhello\r\n0\r\n\r\n"[..],
            b"5;\ta=\"b c\"\r\nhello\r\n0\r\n\r\n",
        ] {
            let text = String::from_utf8_lossy(body);
            assert_eq!(decode_all(body, 64).unwrap().0, b"hello", "{text:?}");
        }
    }

    #[test]
    fn size_lines_are_lowercase_hex() {
        let mut out = Vec::new();
        write_chunk_size(&mut out, 255);
        assert_eq!(out, b"ff\r\n");
    }
}
