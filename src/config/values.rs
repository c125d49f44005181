//! How a flag's value is written: durations (`250ms`, `2s`, `1m`), sizes (`10m`) and counts.

use std::time::Duration;

/// Parses a duration: `250ms`, `2s`, `1m`, `1h`, or a bare number of seconds.
///
/// # Errors
/// A message for anything else, for zero, and for more than a day (surely a typo).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (write 250ms, 2s, 1m or 1h)"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit {unit:?} (use ms, s, m or h)"
            ));
        }
    };
    if d.is_zero() {
        return Err("the duration must be more than zero".into());
    }
    if d > Duration::from_secs(86_400) {
        return Err(format!("{text:?} is more than a day"));
    }
    Ok(d)
}

/// A duration as [`parse_duration`] reads it: whole seconds as `30s`, anything else in
/// milliseconds (`250ms`).
pub(super) fn show_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Parses a byte size: a number with an optional `k`, `m` or `g` (powers of 1024, as nginx).
///
/// # Errors
/// A message for anything else, and for overflow.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.to_ascii_lowercase();
    let (digits, shift) = match lower.as_bytes().last() {
        Some(b'k') => (&lower[..lower.len() - 1], 10),
        Some(b'm') => (&lower[..lower.len() - 1], 20),
        Some(b'g') => (&lower[..lower.len() - 1], 30),
        _ => (lower.as_str(), 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (write 1048576, 512k, 10m or 1g)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses a whole number from `min` to `max`.
pub(super) fn parse_count(text: &str, min: u32, max: u32) -> Result<u32, String> {
    text.parse()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("{text:?} must be a whole number from {min} to {max}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_shown_as_they_are_read() {
        for d in [
            Duration::from_millis(250),
            Duration::from_secs(1),
            Duration::from_secs(60),
            Duration::from_millis(1500),
        ] {
            assert_eq!(parse_duration(&show_duration(d)), Ok(d), "{d:?}");
        }
        assert_eq!(show_duration(Duration::from_secs(30)), "30s");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in [
            "",
            "s",
            "0",
            "0ms",
            "-1s",
            "1.5s",
            "2 s",
            "1d",
            "99999999999999999999",
            "25h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        for bad in ["", "k", "1.5m", "-1", "99999999999g"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
