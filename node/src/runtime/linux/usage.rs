//! What the machine and the pods' running containers use, read from `/proc` and each
//! container's cgroup (`/rudder/<container id>`, v1 or v2): the shell of `crate::usage`.

use std::path::Path;

use crate::runtime::{ContainerState, RunningPod};
use crate::usage::{
    cgroup_v2_cpu_nanos, meminfo_used_bytes, proc_stat_cpu_nanos, working_set, ContainerUsage,
    MachineUsage, PodUsage,
};

// The machine's figures are the kubelet's: its memory is the root cgroup's working set.

const CGROUPS: &str = "/sys/fs/cgroup";

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// CPU nanoseconds and working set of the cgroup at `relative` (v1 hierarchies first).
fn cgroup_usage(relative: &str) -> Option<(u64, u64)> {
    let root = Path::new(CGROUPS);
    let v1_cpu = read(root.join("cpuacct").join(relative).join("cpuacct.usage"))
        .and_then(|text| text.trim().parse().ok());
    if let Some(cpu) = v1_cpu {
        let memory = root.join("memory").join(relative);
        let usage = read(memory.join("memory.usage_in_bytes"))
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0);
        let stat = read(memory.join("memory.stat")).unwrap_or_default();
        return Some((cpu, working_set(usage, &stat)));
    }
    let group = root.join(relative);
    let cpu = cgroup_v2_cpu_nanos(&read(group.join("cpu.stat"))?)?;
    let usage = read(group.join("memory.current"))
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0);
    let stat = read(group.join("memory.stat")).unwrap_or_default();
    Some((cpu, working_set(usage, &stat)))
}

/// The machine's memory in use as the kubelet counts it: the root memory cgroup's working
/// set (v1), else MemTotal less MemAvailable (v2 has no root `memory.current`).
fn machine_memory() -> Option<u64> {
    let root = Path::new(CGROUPS).join("memory");
    let usage = read(root.join("memory.usage_in_bytes")).and_then(|text| text.trim().parse().ok());
    match usage {
        Some(usage) => Some(working_set(
            usage,
            &read(root.join("memory.stat")).unwrap_or_default(),
        )),
        None => meminfo_used_bytes(&read("/proc/meminfo")?),
    }
}

/// The machine's use and that of each running container (init containers too) of `pods`.
pub fn usage(pods: &[RunningPod]) -> Option<MachineUsage> {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    let cpu_nanos = proc_stat_cpu_nanos(&read("/proc/stat")?, ticks)?;
    let memory_bytes = machine_memory()?;
    let pods = pods
        .iter()
        .map(|pod| PodUsage {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            containers: pod
                .init_containers
                .iter()
                .chain(&pod.containers)
                .filter(|container| matches!(container.state, ContainerState::Running { .. }))
                .filter_map(|container| {
                    let id = container.id.strip_prefix("rudder://")?;
                    let (cpu_nanos, memory_bytes) = cgroup_usage(&format!("rudder/{id}"))?;
                    Some(ContainerUsage {
                        name: container.name.clone(),
                        id: container.id.clone(),
                        cpu_nanos,
                        memory_bytes,
                    })
                })
                .collect(),
        })
        .collect();
    Some(MachineUsage {
        cpu_nanos,
        memory_bytes,
        pods,
    })
}
