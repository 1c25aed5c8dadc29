//! The cluster's network settings as the masters publish them, pure: the
//! `kube-system/rudder-cluster` ConfigMap. Masters are told the ranges (`--service-cidr`,
//! `--service-node-port-range`, `--lb-pool`, `--cluster-cidr`); nodes read them here, so
//! that a node started without those flags agrees with its masters, and one given flags that
//! disagree says so instead of routing the wrong ranges.
//!
//! The first master to write the ConfigMap sets it; a master started later with other
//! values warns, naming each difference (the cluster keeps what it has).

use serde_json::{json, Value};

use crate::allocation::ServiceRanges;

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "rudder-cluster";

/// The cluster's network settings, as text (what the flags take).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub service_cidr: String,
    pub service_node_port_range: String,
    pub lb_pool: String,
    /// The kube-dns Service's address (the tenth of the service range).
    pub cluster_dns: String,
    /// The pod network (`--cluster-cidr` of the controller manager), if the masters run it.
    pub cluster_cidr: Option<String>,
}

/// Each setting: its ConfigMap key and the flag it comes from.
const KEYS: [(&str, &str); 5] = [
    ("service-cidr", "--service-cidr"),
    ("service-node-port-range", "--service-node-port-range"),
    ("lb-pool", "--lb-pool"),
    ("cluster-dns", "--cluster-dns"),
    ("cluster-cidr", "--cluster-cidr"),
];

impl ClusterConfig {
    pub fn new(ranges: &ServiceRanges, cluster_cidr: Option<String>) -> Self {
        Self {
            service_cidr: ranges.cluster_ips.to_string(),
            service_node_port_range: format!(
                "{}-{}",
                ranges.node_ports.start(),
                ranges.node_ports.end()
            ),
            lb_pool: ranges.load_balancer_ips.to_string(),
            cluster_dns: ranges.dns_ip().to_string(),
            cluster_cidr,
        }
    }

    fn values(&self) -> [Option<&str>; 5] {
        [
            Some(self.service_cidr.as_str()),
            Some(self.service_node_port_range.as_str()),
            Some(self.lb_pool.as_str()),
            Some(self.cluster_dns.as_str()),
            self.cluster_cidr.as_deref(),
        ]
    }

    /// The ConfigMap that publishes these settings.
    pub fn to_config_map(&self) -> Value {
        let data: serde_json::Map<String, Value> = KEYS
            .iter()
            .zip(self.values())
            .filter_map(|((key, _), value)| Some(((*key).to_owned(), Value::from(value?))))
            .collect();
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": NAME, "namespace": NAMESPACE },
            "data": data,
        })
    }

    /// The settings a ConfigMap publishes; names what is missing.
    pub fn from_config_map(config_map: &Value) -> Result<Self, String> {
        let data = &config_map["data"];
        let get = |key: &str| data[key].as_str().map(str::to_owned);
        let required =
            |key: &str| get(key).ok_or_else(|| format!("{NAMESPACE}/{NAME} has no {key:?}"));
        Ok(Self {
            service_cidr: required("service-cidr")?,
            service_node_port_range: required("service-node-port-range")?,
            lb_pool: required("lb-pool")?,
            cluster_dns: required("cluster-dns")?,
            cluster_cidr: get("cluster-cidr"),
        })
    }

    /// How `ours` (a member's own settings) differs from the cluster's: a line per flag.
    pub fn differences(&self, ours: &ClusterConfig) -> Vec<String> {
        KEYS.iter()
            .zip(self.values().into_iter().zip(ours.values()))
            .filter_map(|((_, flag), (cluster, mine))| match (cluster, mine) {
                (Some(cluster), Some(mine)) if cluster != mine => {
                    Some(format!("{flag} {mine} (the cluster's is {cluster})"))
                }
                _ => None,
            })
            .collect()
    }
}

/// A node's setting: the flag if given, else the cluster's, else `default` (a cluster
/// whose masters publish nothing). A flag that disagrees with the cluster is an error
/// naming both, since the node would route ranges its masters never give out.
pub fn settle(
    flag: &str,
    given: Option<&str>,
    cluster: Option<&str>,
    default: &str,
) -> Result<String, String> {
    match (given, cluster) {
        (Some(given), Some(cluster)) if given != cluster => Err(format!(
            "{flag} {given} disagrees with the cluster's {cluster} ({NAMESPACE}/{NAME}): \
             leave the flag out to take the cluster's"
        )),
        (Some(given), _) => Ok(given.to_owned()),
        (None, Some(cluster)) => Ok(cluster.to_owned()),
        (None, None) => Ok(default.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ClusterConfig {
        ClusterConfig::new(&ServiceRanges::default(), Some("10.244.0.0/16".into()))
    }

    #[test]
    fn the_config_map_carries_every_setting_and_reads_back() {
        let config = defaults();
        let map = config.to_config_map();
        assert_eq!(map["metadata"]["namespace"], "kube-system");
        assert_eq!(map["data"]["service-cidr"], "10.96.0.0/12");
        assert_eq!(map["data"]["service-node-port-range"], "30000-32767");
        assert_eq!(map["data"]["cluster-dns"], "10.96.0.10");
        assert_eq!(ClusterConfig::from_config_map(&map), Ok(config));
    }

    #[test]
    fn a_cluster_without_a_pod_network_leaves_it_out() {
        let config = ClusterConfig::new(&ServiceRanges::default(), None);
        let map = config.to_config_map();
        assert!(map["data"].get("cluster-cidr").is_none());
        assert_eq!(
            ClusterConfig::from_config_map(&map).unwrap().cluster_cidr,
            None
        );
    }

    #[test]
    fn a_missing_setting_is_named() {
        let mut map = defaults().to_config_map();
        map["data"].as_object_mut().unwrap().remove("lb-pool");
        let error = ClusterConfig::from_config_map(&map).unwrap_err();
        assert!(error.contains("\"lb-pool\""), "{error}");
    }

    #[test]
    fn a_node_takes_its_flag_else_the_clusters_else_the_default_and_refuses_a_disagreement() {
        let flag = "--lb-pool";
        assert_eq!(settle(flag, Some("a"), Some("a"), "d"), Ok("a".into()));
        assert_eq!(settle(flag, None, Some("c"), "d"), Ok("c".into()));
        assert_eq!(settle(flag, Some("a"), None, "d"), Ok("a".into()));
        assert_eq!(settle(flag, None, None, "d"), Ok("d".into()));
        let error = settle(flag, Some("a"), Some("c"), "d").unwrap_err();
        assert!(
            error.starts_with("--lb-pool a disagrees with the cluster's c"),
            "{error}"
        );
    }

    #[test]
    fn differences_name_the_flag_ours_and_the_clusters() {
        let cluster = defaults();
        let mut ours = defaults();
        assert!(cluster.differences(&ours).is_empty());
        ours.lb_pool = "10.112.7.0/24".into();
        ours.cluster_cidr = None;
        assert_eq!(
            cluster.differences(&ours),
            ["--lb-pool 10.112.7.0/24 (the cluster's is 10.112.0.0/24)"]
        );
    }
}
