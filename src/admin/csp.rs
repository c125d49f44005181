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
//! SHA-256 is [`crate::digest::sha256`]; base64 is [`super::base64`].

use super::base64;
use crate::digest::sha256;
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

#[cfg(test)]
mod tests {
    use super::*;

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
