//! A pod's sandbox: its network namespace (network.rs) and the `/etc/hosts`,
//! `/etc/resolv.conf` and `/etc/hostname` every container of the pod mounts.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::network::{NetworkError, NodeNetwork};
use super::record::PodRecord;
use super::resolv::{resolv_conf, NodeDns};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("bad pod address {0:?}")]
    BadAddress(String),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("writing /etc files to {}: {source}", path.display())]
    EtcFiles {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The pod's network namespace with its address, and its `/etc` files in `dir`.
pub fn make(
    network: &NodeNetwork,
    dns: &NodeDns,
    dir: &Path,
    pod: &PodRecord,
) -> Result<(), SandboxError> {
    let ip: Ipv4Addr = pod
        .ip
        .parse()
        .map_err(|_| SandboxError::BadAddress(pod.ip.clone()))?;
    network.add_pod(&pod.uid, ip)?;
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        etc_files(pod, dns)
            .iter()
            .try_for_each(|(name, content)| std::fs::write(dir.join(name), content))
    });
    written.map_err(|source| SandboxError::EtcFiles {
        path: dir.to_path_buf(),
        source,
    })
}

/// (file name, content) of the pod's `/etc` files: its own name on its address, and its
/// resolver (see `resolv.rs`).
pub fn etc_files(pod: &PodRecord, dns: &NodeDns) -> [(&'static str, String); 3] {
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{}\n",
        pod.ip, pod.name
    );
    let resolv = resolv_conf(&pod.spec, &pod.namespace, dns);
    [
        ("hosts", hosts),
        ("resolv.conf", resolv),
        ("hostname", pod.name.clone()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::PodPlan;

    #[test]
    fn etc_files_name_the_pod_and_search_its_namespace_first() {
        let plan = PodPlan {
            uid: "u".into(),
            namespace: "shop".into(),
            name: "kubia".into(),
            spec: Default::default(),
            volume_files: Default::default(),
        };
        let pod = PodRecord::new(
            &plan,
            "10.244.1.7".into(),
            jiff::Timestamp::UNIX_EPOCH,
            String::new(),
        );
        let dns = NodeDns {
            cluster_dns: Some(Ipv4Addr::new(10, 96, 0, 10)),
            cluster_domain: "cluster.local".into(),
            host_resolv_conf: String::new(),
        };
        let [hosts, resolv, hostname] = etc_files(&pod, &dns);
        assert!(hosts.1.ends_with("10.244.1.7\tkubia\n"), "{}", hosts.1);
        assert!(
            resolv.1.starts_with(
                "nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local"
            ),
            "{}",
            resolv.1
        );
        assert_eq!(hostname, ("hostname", "kubia".to_string()));
    }
}
