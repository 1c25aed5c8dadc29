//! What a node reports about its machine: CPUs, memory, kernel, OS. Parsing is pure; only
//! [`Machine::read`] touches `/proc` and `/etc`.

/// The machine facts a Node's status carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub kernel_version: String,
    pub os_image: String,
    /// `amd64`, `arm64`, ... (Go's names, as Kubernetes labels use them).
    pub architecture: String,
    pub hostname: String,
    pub machine_id: String,
    pub boot_id: String,
}

impl Machine {
    /// Reads this machine; a fact that cannot be read is reported as "" or 0, never fatal.
    pub fn read() -> Self {
        let text = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        Self {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            memory_bytes: parse_mem_total(&text("/proc/meminfo")).unwrap_or(0),
            kernel_version: text("/proc/sys/kernel/osrelease").trim().to_string(),
            os_image: parse_os_image(&text("/etc/os-release")).unwrap_or_else(|| "Linux".into()),
            architecture: go_architecture(std::env::consts::ARCH).to_string(),
            hostname: text("/proc/sys/kernel/hostname").trim().to_string(),
            machine_id: text("/etc/machine-id").trim().to_string(),
            boot_id: text("/proc/sys/kernel/random/boot_id").trim().to_string(),
        }
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line.split_whitespace().skip(1);
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value * 1024),
        Some(_) => None,
    }
}

/// `PRETTY_NAME` of `/etc/os-release`.
pub fn parse_os_image(os_release: &str) -> Option<String> {
    let line = os_release.lines().find(|l| l.starts_with("PRETTY_NAME="))?;
    Some(line["PRETTY_NAME=".len()..].trim_matches('"').to_string())
}

/// Rust's architecture names as Go (and so Kubernetes) spells them.
pub fn go_architecture(rust: &str) -> &str {
    match rust {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_read_from_meminfo_in_bytes() {
        let meminfo = "MemTotal:       24684084 kB\nMemFree:        16421932 kB\n";
        assert_eq!(parse_mem_total(meminfo), Some(24_684_084 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn the_os_image_is_the_pretty_name() {
        let release = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            parse_os_image(release).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn architectures_use_gos_names() {
        assert_eq!(go_architecture("x86_64"), "amd64");
        assert_eq!(go_architecture("aarch64"), "arm64");
    }
}
