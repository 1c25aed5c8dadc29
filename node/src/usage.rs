//! What the machine and its containers use, as `rudder top` shows it (pure): the parsers of
//! the kernel's files a node reads (`/proc/stat`, `/proc/meminfo`, cgroup v1 and v2 CPU and
//! memory files), and the rates two readings give.
//!
//! Memory is the working set, as the kubelet reports it to metrics-server: usage less the
//! inactive file pages (page cache the kernel can take back at once).

/// What one container uses now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUsage {
    pub name: String,
    /// The attempt's id (`rudder://...`): a restart changes it, and its CPU counter starts
    /// again.
    pub id: String,
    /// CPU time since it started, nanoseconds.
    pub cpu_nanos: u64,
    /// Working set, bytes.
    pub memory_bytes: u64,
}

/// What one pod's running containers use now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUsage {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub containers: Vec<ContainerUsage>,
}

/// What the machine and its pods use now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineUsage {
    /// CPU time since boot, nanoseconds.
    pub cpu_nanos: u64,
    /// Memory in use, bytes.
    pub memory_bytes: u64,
    pub pods: Vec<PodUsage>,
}

/// CPU time in nanoseconds from `/proc/stat`'s `cpu` line (user, nice, system, irq and
/// softirq; idle and iowait are not use, and steal is time the hypervisor took), at
/// `ticks_per_second`.
pub fn proc_stat_cpu_nanos(stat: &str, ticks_per_second: u64) -> Option<u64> {
    let fields: Vec<u64> = stat
        .lines()
        .find(|line| line.starts_with("cpu "))?
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let busy: u128 = [0, 1, 2, 5, 6]
        .iter()
        .filter_map(|i| fields.get(*i))
        .map(|ticks| u128::from(*ticks))
        .sum();
    u64::try_from(busy * 1_000_000_000 / u128::from(ticks_per_second.max(1))).ok()
}

/// Memory in use from `/proc/meminfo`: MemTotal less MemAvailable, bytes.
pub fn meminfo_used_bytes(meminfo: &str) -> Option<u64> {
    let kib = |name: &str| -> Option<u64> {
        meminfo
            .lines()
            .find_map(|line| line.strip_prefix(name))?
            .trim_start_matches(':')
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(kib("MemTotal")?.saturating_sub(kib("MemAvailable")?) * 1024)
}

/// A value from a cgroup stat file's `name value` lines.
pub fn stat_field(stat: &str, name: &str) -> Option<u64> {
    stat.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok())?
    })
}

/// CPU nanoseconds from cgroup v2's `cpu.stat` (`usage_usec`).
pub fn cgroup_v2_cpu_nanos(cpu_stat: &str) -> Option<u64> {
    stat_field(cpu_stat, "usage_usec")?.checked_mul(1000)
}

/// The working set from a memory usage and its `memory.stat`: v1 names the inactive file
/// pages `total_inactive_file`, v2 `inactive_file`.
pub fn working_set(usage: u64, memory_stat: &str) -> u64 {
    let inactive = stat_field(memory_stat, "total_inactive_file")
        .or_else(|| stat_field(memory_stat, "inactive_file"))
        .unwrap_or(0);
    usage.saturating_sub(inactive)
}

/// Millicores used between two readings of cumulative CPU nanoseconds `elapsed_nanos`
/// apart (`None` when no time passed or the counter went back: a restart).
pub fn millicores(before: u64, after: u64, elapsed_nanos: u64) -> Option<u64> {
    if elapsed_nanos == 0 || after < before {
        return None;
    }
    Some(((after - before) as u128 * 1000 / elapsed_nanos as u128) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_cpu_counts_busy_ticks_only() {
        let stat = "cpu  100 20 30 5000 40 5 5 10 0 0\ncpu0 50 10 15 2500 20 2 2 5 0 0\n";
        // user 100 + nice 20 + system 30 + irq 5 + softirq 5 = 160 ticks (not steal's 10).
        assert_eq!(proc_stat_cpu_nanos(stat, 100), Some(1_600_000_000));
        // 64 busy cores for a year: no overflow.
        let year = format!("cpu  {} 0 0 0 0 0 0 0\n", 64u64 * 100 * 86_400 * 365);
        assert_eq!(
            proc_stat_cpu_nanos(&year, 100),
            Some(64 * 86_400 * 365 * 1_000_000_000)
        );
        assert_eq!(proc_stat_cpu_nanos("intr 5\n", 100), None);
    }

    #[test]
    fn machine_memory_is_total_less_available() {
        let meminfo =
            "MemTotal:       16000 kB\nMemFree:         1000 kB\nMemAvailable:    6000 kB\n";
        assert_eq!(meminfo_used_bytes(meminfo), Some(10_000 * 1024));
    }

    #[test]
    fn cgroup_files_of_both_versions_read() {
        assert_eq!(
            cgroup_v2_cpu_nanos("usage_usec 2500\nuser_usec 2000\n"),
            Some(2_500_000)
        );
        let v1 = "cache 100\ntotal_inactive_file 4096\n";
        assert_eq!(working_set(10_000, v1), 10_000 - 4096);
        let v2 = "anon 5000\ninactive_file 1000\n";
        assert_eq!(working_set(8_000, v2), 7_000);
        assert_eq!(working_set(500, v2), 0, "never below zero");
    }

    #[test]
    fn a_rate_needs_time_and_a_counter_that_went_forward() {
        assert_eq!(
            millicores(1_000_000_000, 1_500_000_000, 1_000_000_000),
            Some(500)
        );
        assert_eq!(millicores(5, 4, 1_000), None);
        assert_eq!(millicores(5, 9, 0), None);
    }
}
