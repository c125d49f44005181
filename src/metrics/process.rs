//! The process metrics every Prometheus client library exports, under their standard names
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...), read from `/proc/self`
//! as those libraries read them on Linux. Dashboards and alerts written for any Prometheus
//! exporter then work for the balancer too.
//!
//! Where a file cannot be read (not Linux, a locked-down `/proc`), its metrics are left out
//! rather than reported as zero: a missing series is visible, a wrong one is not.

use std::fmt::Write as _;

/// `AT_CLKTCK` in the auxiliary vector: clock ticks per second, the unit of the times in
/// `/proc/self/stat`.
const AT_CLKTCK: u64 = 17;
/// `AT_PAGESZ` in the auxiliary vector: the page size, the unit of the resident set size.
const AT_PAGESZ: u64 = 6;
/// What Linux uses on every architecture it runs on, when the auxiliary vector is unreadable.
const DEFAULT_CLK_TCK: u64 = 100;
/// The usual page size, when the auxiliary vector is unreadable.
const DEFAULT_PAGE_SIZE: u64 = 4096;

/// One reading of the process's state. `None`: not known here.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessSample {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident memory, in bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory, in bytes.
    pub virtual_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl ProcessSample {
    /// Reads `/proc/self/stat`, `/proc/self/fd`, `/proc/self/limits`, `/proc/stat` (boot time)
    /// and `/proc/self/auxv` (clock tick and page size).
    pub fn read() -> ProcessSample {
        let (ticks, page) = auxv();
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().map(stat_fields).unwrap_or_default();
        let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
        let boot = boot_time();
        ProcessSample {
            cpu_seconds: field(14)
                .zip(field(15))
                .map(|(user, system)| (user + system) as f64 / ticks as f64),
            resident_bytes: field(24).map(|pages| pages * page),
            virtual_bytes: field(23),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|dir| dir.count() as u64),
            max_fds: crate::config::open_file_limit().map(|n| n as u64),
            start_time_seconds: field(22)
                .zip(boot)
                .map(|(start, boot)| boot as f64 + start as f64 / ticks as f64),
        }
    }

    /// Appends the families, each with its `# HELP` and `# TYPE` lines.
    pub fn render(&self, out: &mut String) {
        let families = [
            (
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                "counter",
                self.cpu_seconds.map(|s| format!("{s}")),
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                "gauge",
                self.resident_bytes.map(|n| n.to_string()),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                "gauge",
                self.virtual_bytes.map(|n| n.to_string()),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                "gauge",
                self.open_fds.map(|n| n.to_string()),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                "gauge",
                self.max_fds.map(|n| n.to_string()),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                "gauge",
                self.start_time_seconds.map(|s| format!("{s:.2}")),
            ),
        ];
        for (name, help, kind, value) in families {
            if let Some(value) = value {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
                );
            }
        }
    }
}

/// The fields of `/proc/self/stat` from the third (the state) on. The second, the command
/// name in parentheses, may itself hold spaces and parentheses: everything up to its last `)`
/// is skipped.
fn stat_fields(stat: &str) -> Vec<&str> {
    let after = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    after.split_whitespace().collect()
}

/// The boot time from `/proc/stat` (`btime`), in seconds since the Unix epoch.
fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Clock ticks per second and the page size, from `/proc/self/auxv`: what `sysconf` reads
/// (without it, which std does not offer). Pairs of native-endian words: a type, a value.
fn auxv() -> (u64, u64) {
    let (mut ticks, mut page) = (DEFAULT_CLK_TCK, DEFAULT_PAGE_SIZE);
    let Ok(bytes) = std::fs::read("/proc/self/auxv") else {
        return (ticks, page);
    };
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |chunk: &[u8]| -> u64 {
        let mut b = [0u8; WORD];
        b.copy_from_slice(chunk);
        usize::from_ne_bytes(b) as u64
    };
    for pair in bytes.chunks_exact(2 * WORD) {
        let (kind, value) = (word(&pair[..WORD]), word(&pair[WORD..]));
        match kind {
            AT_CLKTCK if value > 0 => ticks = value,
            AT_PAGESZ if value > 0 => page = value,
            _ => {}
        }
    }
    (ticks, page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_name_may_hold_spaces_and_parentheses() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 5 0 1234 5000 300";
        let f = stat_fields(stat);
        assert_eq!(f[0], "S");
        assert_eq!((f[14 - 3], f[15 - 3]), ("7", "3"));
        assert_eq!((f[22 - 3], f[23 - 3], f[24 - 3]), ("1234", "5000", "300"));
    }

    #[test]
    fn this_process_is_read_whole() {
        let s = ProcessSample::read();
        assert!(s.cpu_seconds.is_some_and(|c| c >= 0.0), "{s:?}");
        assert!(s.resident_bytes.is_some_and(|n| n > 0), "{s:?}");
        assert!(s.virtual_bytes >= s.resident_bytes, "{s:?}");
        assert!(s.open_fds.is_some_and(|n| n >= 3), "{s:?}");
        assert!(s.max_fds >= s.open_fds, "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = s.start_time_seconds.unwrap();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "{start} vs {now}"
        );
        let (ticks, page) = auxv();
        assert!(ticks > 0 && page.is_power_of_two(), "{ticks} {page}");
    }

    #[test]
    fn unknown_values_are_left_out() {
        let mut out = String::new();
        ProcessSample {
            open_fds: Some(9),
            ..ProcessSample::default()
        }
        .render(&mut out);
        assert_eq!(
            out,
            "# HELP process_open_fds Number of open file descriptors.\n\
             # TYPE process_open_fds gauge\nprocess_open_fds 9\n"
        );
    }
}
