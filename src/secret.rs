//! Secrets kept in files: reading one that only its owner may read, and comparing a
//! presented secret without leaking through timing. The admin token
//! (`--admin-token-file`) and the sticky cookie's key (`--cookie-secret-file`) come from here.

use std::path::Path;
use std::sync::Arc;

/// Shortest `--cookie-secret-file` accepted: 16 bytes, 128 bits when they are random (as
/// `head -c 32 /dev/urandom | base64` gives), too many to guess.
pub const MIN_COOKIE_SECRET: usize = 16;

/// A key read from a file. Its `Debug` does not show it, so a printed configuration does not
/// leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    /// The key's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Reads the sticky cookie's key from `--cookie-secret-file` ([`read_secret_file`]).
///
/// # Errors
/// As [`read_secret_file`], and a key shorter than [`MIN_COOKIE_SECRET`].
pub fn read_cookie_secret(path: &Path) -> Result<Secret, String> {
    let bytes = read_secret_file(path)?;
    if bytes.len() < MIN_COOKIE_SECRET {
        return Err(format!(
            "{} holds {} bytes: a key needs at least {MIN_COOKIE_SECRET} (head -c 32 /dev/urandom | base64 > FILE)",
            path.display(),
            bytes.len()
        ));
    }
    Ok(Secret(bytes.into()))
}

/// Compares a presented secret with the expected one in time that depends only on the
/// expected one's length, so response times do not reveal how many leading bytes matched.
pub fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != expected.len());
    for (i, &e) in expected.iter().enumerate() {
        diff |= e ^ presented.get(i).copied().unwrap_or(!e);
    }
    diff == 0
}

/// Reads a secret from a file that only its owner may read, as ssh insists for a private key:
/// the whole content, one trailing newline (`\n` or `\r\n`) stripped. Used for
/// `--admin-token-file` and `--cookie-secret-file`.
///
/// # Errors
/// A message naming the file: it cannot be read, group or others may read or write it (with
/// the `chmod` that fixes it), or it is empty.
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{shown} is open to group or others (mode {mode:03o}): a secret must be its \
             owner's alone; run chmod 600 {shown}"
        ));
    }
    let mut bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(format!("{shown} is empty"));
    }
    Ok(bytes)
}

/// Reads the admin token from `--admin-token-file` ([`read_secret_file`]).
///
/// # Errors
/// As [`read_secret_file`], and a token that is not visible ASCII without spaces (it must
/// fit in an `Authorization` field).
pub fn read_token_file(path: &Path) -> Result<String, String> {
    let bytes = read_secret_file(path)?;
    if bytes.iter().any(|b| !(0x21..0x7f).contains(b)) {
        return Err(format!(
            "the token in {} must be visible ASCII characters, without spaces",
            path.display()
        ));
    }
    String::from_utf8(bytes).map_err(|_| "the token is not ASCII".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"s3cretX", b"s3cret"));
        assert!(!same_secret(b"S3cret", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
    }

    #[test]
    fn secret_files_must_be_the_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("lb-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        for (mode, ok) in [(0o600, true), (0o400, true), (0o640, false), (0o604, false)] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            let read = read_token_file(&file);
            assert_eq!(read.is_ok(), ok, "{mode:o}: {read:?}");
            if let Err(e) = read {
                assert!(e.contains("chmod 600"), "{e}");
            }
        }
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token_file(&file).unwrap(), "s3cret");
        std::fs::write(&file, "s3cret\r\n").unwrap();
        assert_eq!(read_token_file(&file).unwrap(), "s3cret");
        for bad in ["", "\n", "two words\n", "s3cret\n\n"] {
            std::fs::write(&file, bad).unwrap();
            assert!(read_token_file(&file).is_err(), "{bad:?}");
        }
        assert!(read_token_file(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cookie_key_is_long_enough_and_hidden_from_debug() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("lb-cookie-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "short\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = read_cookie_secret(&file).unwrap_err();
        assert!(err.contains("at least 16"), "{err}");
        std::fs::write(&file, "0123456789abcdefXYZ\n").unwrap();
        let key = read_cookie_secret(&file).unwrap();
        assert_eq!(key.bytes(), b"0123456789abcdefXYZ");
        assert_eq!(format!("{key:?}"), "Secret(19 bytes)");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
