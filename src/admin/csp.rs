//! The status page's `Content-Security-Policy`: its own inline script and style may run,
//! nothing else may load.
//!
//! CSP Level 3 lets a page name the inline `<script>` and `<style>` elements it allows by a
//! *hash source*, `'sha256-` + the base64 of the SHA-256 of the element's text + `'`. The
//! status page's script and style are fixed at build time ([`STATUS_SCRIPT`],
//! [`STATUS_STYLE`]), so their hashes are the same for every response: no per-response
//! secret is needed, as a nonce would be (and the standard library has no random number
//! generator fit to make one). An injected `<script>` (a backend URL or a failure reason that
//! slipped past escaping) does not match the hash and does not run.
//!
//! SHA-256 (FIPS 180-4) is small enough to write here, and the tests check it against the
//! published test vectors; base64 is [`super::base64`].

use super::base64;
use std::sync::LazyLock;

/// The status page's script, inlined in the page.
pub const STATUS_SCRIPT: &str = include_str!("status.js");
/// The status page's style sheet, inlined in the page.
pub const STATUS_STYLE: &str = include_str!("status.css");

/// The policy sent with the status page. `default-src 'none'` shuts everything off; then only
/// what the page uses: its script and style by hash, `fetch` of `/status.json` from this
/// origin (`connect-src 'self'`), the drill buttons' forms posting to this origin. Charts are
/// SVG drawn by the script, which no directive restricts; no element carries a `style`
/// attribute (colours are SVG `fill` attributes). `frame-ancestors 'none'` keeps another
/// site from framing the page and its buttons (clickjacking); `base-uri 'none'` keeps an
/// injected `<base>` from moving the form targets.
pub static STATUS_POLICY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        hash_source(STATUS_SCRIPT),
        hash_source(STATUS_STYLE)
    )
});

/// The CSP hash source of an inline element's text: `'sha256-BASE64'`.
pub fn hash_source(text: &str) -> String {
    format!("'sha256-{}'", base64::encode(&sha256(text.as_bytes())))
}

/// The first 32 bits of the fractional parts of the cube roots of the first 64 primes
/// (FIPS 180-4 section 4.2.2).
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// The first 32 bits of the fractional parts of the square roots of the first 8 primes
/// (FIPS 180-4 section 5.3.3).
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The SHA-256 digest of `data` (FIPS 180-4 section 6.2).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    // Padding (section 5.1.1): a 1 bit, zeros up to 56 bytes mod 64, the length in bits as
    // a big-endian 64-bit number.
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    let bits = (data.len() as u64).wrapping_mul(8);
    message.extend_from_slice(&bits.to_be_bytes());

    let mut h = H0;
    for block in message.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (t, word) in block.chunks_exact(4).enumerate() {
            w[t] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for t in 16..64 {
            let s0 = w[t - 15].rotate_right(7) ^ w[t - 15].rotate_right(18) ^ (w[t - 15] >> 3);
            let s1 = w[t - 2].rotate_right(17) ^ w[t - 2].rotate_right(19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16]
                .wrapping_add(s0)
                .wrapping_add(w[t - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for t in 0..64 {
            let big_s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(big_s1)
                .wrapping_add(ch)
                .wrapping_add(K[t])
                .wrapping_add(w[t]);
            let big_s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = big_s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut digest = [0u8; 32];
    for (out, word) in digest.chunks_exact_mut(4).zip(h) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    digest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(digest: &[u8]) -> String {
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha256_test_vectors() {
        // FIPS 180-4 examples (NIST CSRC "Examples with Intermediate Values") and RFC 6234
        // section 8.5 TEST1..TEST4: one block, two blocks (the 448-bit message leaves no room
        // for the length), a 896-bit message, a million bytes, 80 repetitions of 8 bytes.
        let million_a = vec![b'a'; 1_000_000];
        let eighty_times = "01234567".repeat(80);
        let cases: [(&[u8], &str); 6] = [
            (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
            ),
            (
                b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
                "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
            ),
            (
                &million_a,
                "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
            ),
            (
                eighty_times.as_bytes(),
                "594847328451bdfa85056225462cc1d867d877fb388df0ce35f25ab5562bfbb5",
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(hex(&sha256(message)), expected, "{} bytes", message.len());
        }
    }

    #[test]
    fn sha256_around_the_block_boundary() {
        // Lengths where the padding needs one more block or just fits (values from
        // coreutils' sha256sum).
        for (n, expected) in [
            (
                55,
                "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318",
            ),
            (
                63,
                "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34",
            ),
            (
                64,
                "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb",
            ),
            (
                65,
                "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0",
            ),
        ] {
            assert_eq!(hex(&sha256(&vec![b'a'; n])), expected, "{n} bytes");
        }
    }

    #[test]
    fn the_inlined_files_cannot_end_their_element_early() {
        // Inlined, a `</script` or `<!--` inside the script would end it or change how it is
        // read, and the browser would hash other text than this.
        for (text, tag) in [(STATUS_SCRIPT, "</script"), (STATUS_STYLE, "</style")] {
            let lower = text.to_ascii_lowercase();
            assert!(!lower.contains(tag) && !lower.contains("<!--"), "{tag}");
        }
    }

    #[test]
    fn hash_sources() {
        // The CSP spec's own example: `alert('Hello, world.');`.
        assert_eq!(
            hash_source("alert('Hello, world.');"),
            "'sha256-qznLcsROx4GACP2dm0UCKCzCG+HiZ1guq6ZZDob/Tng='"
        );
        let policy = STATUS_POLICY.as_str();
        assert!(policy.starts_with("default-src 'none'; script-src 'sha256-"));
        assert!(policy.contains(&hash_source(STATUS_SCRIPT)));
        assert!(policy.contains(&hash_source(STATUS_STYLE)));
        assert!(!policy.contains("unsafe"), "{policy}");
    }
}
