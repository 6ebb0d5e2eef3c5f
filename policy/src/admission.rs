// SPDX-License-Identifier: GPL-3.0-or-later
//! Admission: whether a room's memory fits what the machine has left. The host keeps a
//! reserve (bay0, the kernel, page cache) of the larger of [`RESERVE_MIN_MIB`] and 1/8 of
//! its memory; rooms share the rest, each charged its policy memory plus its VMM's
//! overhead (bay0 states that overhead and sizes the room's cgroup with it).

/// The smallest memory kept for the host (MiB).
pub const RESERVE_MIN_MIB: u64 = 192;

/// Memory kept for the host out of `total_mib`.
pub fn reserve_mib(total_mib: u64) -> u64 {
    RESERVE_MIN_MIB.max(total_mib / 8)
}

/// A room that does not fit: what it needs and what is left for rooms (MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom {
    pub need_mib: u64,
    pub free_mib: u64,
}

/// Does a room needing `need_mib` fit next to rooms charged `used_mib` on a machine of
/// `total_mib`?
pub fn admit(total_mib: u64, used_mib: u64, need_mib: u64) -> Result<(), NoRoom> {
    let free_mib = total_mib
        .saturating_sub(reserve_mib(total_mib))
        .saturating_sub(used_mib);
    if need_mib <= free_mib {
        Ok(())
    } else {
        Err(NoRoom { need_mib, free_mib })
    }
}

/// MemTotal of a /proc/meminfo text, in MiB (0 when it cannot be read).
pub fn mem_total_mib(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_keeps_the_host_reserve_and_counts_running_rooms() {
        assert_eq!(reserve_mib(1024), 192);
        assert_eq!(reserve_mib(6144), 768);
        // 6 GiB: 5376 MiB for rooms.
        assert!(admit(6144, 0, 5376).is_ok());
        assert_eq!(
            admit(6144, 0, 5377),
            Err(NoRoom {
                need_mib: 5377,
                free_mib: 5376
            })
        );
        assert_eq!(admit(6144, 5000, 400).unwrap_err().free_mib, 376);
        // Nothing left, or more charged than there is: never an underflow.
        assert_eq!(admit(100, 0, 1).unwrap_err().free_mib, 0);
        assert_eq!(admit(1024, u64::MAX, 1).unwrap_err().free_mib, 0);
    }

    #[test]
    fn meminfo_is_read() {
        let text = "MemTotal:        1015800 kB\nMemFree:          1 kB\n";
        assert_eq!(mem_total_mib(text), 991);
        assert_eq!(mem_total_mib("garbage"), 0);
        assert_eq!(mem_total_mib(""), 0);
    }
}
