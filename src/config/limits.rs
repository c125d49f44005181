//! The default connection cap (`--max-connections`): what the open-file limit allows, so that
//! the cap is reached (and a client past it gets `503` at once) before the descriptors run out.

/// Ceiling of the default connection cap (`--max-connections`).
pub const DEFAULT_MAX_CONNECTIONS_CEILING: usize = 16_384;
/// Floor of the default connection cap, however low the open-file limit.
pub const DEFAULT_MAX_CONNECTIONS_FLOOR: usize = 16;
/// File descriptors kept back from the connection cap (at most half the open-file limit):
/// listeners and admin connections (about 40), idle pooled upstream connections beyond
/// those of the clients open now ([`POOL_MAX_IDLE`](crate::backends::member::POOL_MAX_IDLE),
/// 256), and health checks (one connection per backend per round; with more than about 200
/// backends and `--health-check`, set `--max-connections` by hand).
pub const FD_RESERVE: usize = 512;
/// Descriptors one proxied client connection holds: its own, and its backend's.
pub const FDS_PER_CONNECTION: usize = 2;
/// Connections per spare thread waiting in `accept`: a listener keeps at most one spare per
/// this many connections of its cap, and Linux reserves a descriptor for each while it waits.
pub const CONNECTIONS_PER_SPARE: usize = 8;

/// The open-file limit of this process (soft), read from `/proc/self/limits`, if known.
pub fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The default connection cap: what the open-file limit allows, so that the cap is reached
/// (and a client past it gets `503` at once) before the descriptors run out.
pub fn default_max_connections() -> usize {
    max_connections_for(open_file_limit().unwrap_or(1024))
}

/// The connection cap for an open-file limit of `limit`: [`FD_RESERVE`] kept back (at most
/// half the limit), then [`FDS_PER_CONNECTION`] per client connection and one per
/// [`CONNECTIONS_PER_SPARE`] for the spare threads in `accept`; at least
/// [`DEFAULT_MAX_CONNECTIONS_FLOOR`], at most [`DEFAULT_MAX_CONNECTIONS_CEILING`]. 1024
/// (systemd's default) gives 240.
pub fn max_connections_for(limit: usize) -> usize {
    let reserve = FD_RESERVE.min(limit / 2);
    let per_spare = FDS_PER_CONNECTION * CONNECTIONS_PER_SPARE + 1;
    (limit.saturating_sub(reserve) * CONNECTIONS_PER_SPARE / per_spare).clamp(
        DEFAULT_MAX_CONNECTIONS_FLOOR,
        DEFAULT_MAX_CONNECTIONS_CEILING,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_counts_two_descriptors_per_connection() {
        for (limit, cap) in [
            (1024, 240),
            (128, 30),
            (4096, 1686),
            (1 << 20, 16_384),
            (8, 16),
        ] {
            assert_eq!(max_connections_for(limit), cap, "ulimit -n {limit}");
        }
    }
}
