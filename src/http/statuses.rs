//! A set of status codes written as a list of codes and ranges, `200-399,401`: which answers
//! pass a health check (`--health-status`; HAProxy's `http-check expect status`, nginx's
//! `match { status 200-399; }`).

/// The statuses a list names. The default, [`StatusSet::default`], is `200-399`: any `2xx`
/// or `3xx` (HAProxy's `option httpchk` rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet {
    /// Inclusive ranges; a single code is a range of one.
    ranges: Vec<(u16, u16)>,
}

impl Default for StatusSet {
    fn default() -> StatusSet {
        StatusSet {
            ranges: vec![(200, 399)],
        }
    }
}

impl StatusSet {
    /// Parses `200-399,401`: codes and ranges from 100 to 599, separated by commas.
    ///
    /// # Errors
    /// A message naming the part that is not a code or a range, or a range that runs
    /// backwards.
    pub fn parse(text: &str) -> Result<StatusSet, String> {
        let code = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| format!("{s:?} is not a status from 100 to 599"))
        };
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let range = match part.split_once('-') {
                Some((from, to)) => (code(from)?, code(to)?),
                None => (code(part)?, code(part)?),
            };
            if range.0 > range.1 {
                return Err(format!("the range {part:?} runs backwards"));
            }
            ranges.push(range);
        }
        Ok(StatusSet { ranges })
    }

    /// Is `status` in the set?
    pub fn contains(&self, status: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(from, to)| (from..=to).contains(&status))
    }
}

impl std::fmt::Display for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, &(from, to)) in self.ranges.iter().enumerate() {
            let comma = if i > 0 { "," } else { "" };
            if from == to {
                write!(f, "{comma}{from}")?;
            } else {
                write!(f, "{comma}{from}-{to}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges() {
        let s = StatusSet::parse("200-399,401").unwrap();
        for (status, ok) in [
            (200, true),
            (302, true),
            (399, true),
            (401, true),
            (400, false),
            (404, false),
            (199, false),
        ] {
            assert_eq!(s.contains(status), ok, "{status}");
        }
        assert_eq!(s.to_string(), "200-399,401");
        assert_eq!(StatusSet::default().to_string(), "200-399");
        assert!(StatusSet::parse("204").unwrap().contains(204));
        for bad in [
            "", "2xx", "200-", "-300", "399-200", "200,,300", "99", "600", "200-700",
        ] {
            assert!(StatusSet::parse(bad).is_err(), "{bad}");
        }
    }
}
