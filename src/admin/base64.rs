//! Base64 with padding (RFC 4648 section 4), both ways: the status page's CSP hash sources
//! are written in it ([`super::csp`]), and a browser sends HTTP Basic credentials in it
//! (RFC 7617), which the admin listener reads when it has a token (`--admin-token-file`).

/// The 64 symbols, in the order of their values.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes `data`, padded with `=` to a multiple of four symbols.
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        // 3 bytes make 4 symbols; 2 bytes 3 symbols and `=`; 1 byte 2 symbols and `==`.
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes padded base64; `None` for anything else: a length that is not a multiple of four,
/// a symbol outside the alphabet, `=` other than one or two at the end, or bits left over
/// past the last byte (so each byte string has exactly one accepted encoding).
pub fn decode(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let padding = text.iter().rev().take_while(|&&b| b == b'=').count();
    if padding > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    // `bits` holds the `held` low bits not yet output (at most 12).
    let (mut bits, mut held) = (0u32, 0u32);
    for &symbol in &text[..text.len() - padding] {
        let value = ALPHABET.iter().position(|&a| a == symbol)?;
        bits = bits << 6 | value as u32;
        held += 6;
        if held >= 8 {
            held -= 8;
            out.push((bits >> held) as u8);
            bits &= (1 << held) - 1;
        }
    }
    (bits == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4648 section 10.
    const VECTORS: [(&str, &str); 7] = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];

    #[test]
    fn test_vectors_both_ways() {
        for (plain, coded) in VECTORS {
            assert_eq!(encode(plain.as_bytes()), coded, "{plain:?}");
            assert_eq!(
                decode(coded.as_bytes()).as_deref(),
                Some(plain.as_bytes()),
                "{coded:?}"
            );
        }
        assert_eq!(encode(&[0xfb, 0xff, 0xbf]), "+/+/");
        assert_eq!(decode(b"+/+/"), Some(vec![0xfb, 0xff, 0xbf]));
    }

    #[test]
    fn every_byte_value_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        for len in 0..all.len() {
            assert_eq!(
                decode(encode(&all[..len]).as_bytes()).as_deref(),
                Some(&all[..len])
            );
        }
    }

    #[test]
    fn anything_but_padded_base64_is_refused() {
        for bad in [
            "Zg",       // unpadded
            "Zg=",      // short
            "Z===",     // three `=`
            "Zm=v",     // `=` inside
            "Zm9v\n",   // a line break
            "Zm9-",     // the URL-safe alphabet
            "Zh==",     // bits left over past the last byte
            "Zm9 YmE=", // a space
        ] {
            assert_eq!(decode(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
