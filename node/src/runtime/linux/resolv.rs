//! A pod's `/etc/resolv.conf`, pure: its `dnsPolicy` and `dnsConfig` over the cluster DNS
//! and the node's own resolver, as the kubelet writes it.
//!
//! - `ClusterFirst` (the default): the cluster DNS, searching the pod's namespace, then
//!   `svc.<domain>`, `<domain>` and the node's own search domains; `ndots:5`. A pod on the
//!   host's network gets `Default` instead, unless it asks for `ClusterFirstWithHostNet`.
//!   A node without cluster DNS falls back to `Default`.
//! - `Default`: the node's resolver as it is.
//! - `None`: nothing but the pod's `dnsConfig`.
//!
//! `dnsConfig` then adds nameservers and search domains (once each) and sets options. As
//! the kubelet, the result keeps the first 3 nameservers and the first 32 search domains
//! that fit in 2,048 characters (what resolvers read).

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::PodSpec;

/// The most nameservers a resolver uses (glibc's MAXNS).
const MAX_NAMESERVERS: usize = 3;
/// The most search domains, and their most characters in all (the kubelet's limits).
const MAX_SEARCHES: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;

/// What the node knows of DNS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeDns {
    /// The cluster DNS Service's address (`--cluster-dns`); `None` when the cluster has none.
    pub cluster_dns: Option<Ipv4Addr>,
    /// `--cluster-domain`, e.g. `cluster.local`.
    pub cluster_domain: String,
    /// The node's own `/etc/resolv.conf`.
    pub host_resolv_conf: String,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Resolver {
    nameservers: Vec<String>,
    searches: Vec<String>,
    /// (name, value): `ndots:5` is ("ndots", Some("5")).
    options: Vec<(String, Option<String>)>,
}

impl Resolver {
    fn parse(text: &str) -> Self {
        let mut parsed = Self::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => parsed.nameservers.extend(words.next().map(String::from)),
                Some("search") | Some("domain") => {
                    parsed.searches = words.map(String::from).collect()
                }
                Some("options") => words.for_each(|option| parsed.set_option(option)),
                _ => {}
            }
        }
        parsed
    }

    fn set_option(&mut self, option: &str) {
        let (name, value) = match option.split_once(':') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (option.to_owned(), None),
        };
        match self.options.iter_mut().find(|(known, _)| *known == name) {
            Some(existing) => existing.1 = value,
            None => self.options.push((name, value)),
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for server in &self.nameservers {
            out.push_str(&format!("nameserver {server}\n"));
        }
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        if !self.options.is_empty() {
            let options: Vec<String> = self
                .options
                .iter()
                .map(|(name, value)| match value {
                    Some(value) => format!("{name}:{value}"),
                    None => name.clone(),
                })
                .collect();
            out.push_str(&format!("options {}\n", options.join(" ")));
        }
        out
    }
}

fn push_once(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|known| known == item) {
        list.push(item.to_owned());
    }
}

/// The `/etc/resolv.conf` of a pod in `namespace` with `spec`, on a node with `dns`.
pub fn resolv_conf(spec: &PodSpec, namespace: &str, dns: &NodeDns) -> String {
    let host = Resolver::parse(&dns.host_resolv_conf);
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster = match policy {
        "ClusterFirstWithHostNet" => dns.cluster_dns,
        "ClusterFirst" if !host_network => dns.cluster_dns,
        _ => None,
    };
    let mut resolver = match (policy, cluster) {
        ("None", _) => Resolver::default(),
        (_, Some(server)) => {
            let domain = &dns.cluster_domain;
            let mut searches = vec![
                format!("{namespace}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.clone(),
            ];
            for search in &host.searches {
                push_once(&mut searches, search);
            }
            Resolver {
                nameservers: vec![server.to_string()],
                searches,
                options: vec![("ndots".into(), Some("5".into()))],
            }
        }
        _ => host,
    };
    if let Some(config) = &spec.dns_config {
        for server in config.nameservers.iter().flatten() {
            push_once(&mut resolver.nameservers, server);
        }
        for search in config.searches.iter().flatten() {
            push_once(&mut resolver.searches, search);
        }
        for option in config.options.iter().flatten() {
            if let Some(name) = &option.name {
                let text = match &option.value {
                    Some(value) => format!("{name}:{value}"),
                    None => name.clone(),
                };
                resolver.set_option(&text);
            }
        }
    }
    resolver.nameservers.truncate(MAX_NAMESERVERS);
    let mut chars = 0;
    let fitting = resolver
        .searches
        .iter()
        .take(MAX_SEARCHES)
        .take_while(|search| {
            chars += search.len() + 1;
            chars <= MAX_SEARCH_CHARS
        })
        .count();
    resolver.searches.truncate(fitting);
    resolver.render()
}

/// The node's resolver for pods: `/etc/resolv.conf`, unless it only names loopback
/// servers (a systemd-resolved stub at 127.0.0.53, which a pod cannot reach from its own
/// network namespace) and `upstream` (systemd-resolved's list of the real servers) exists.
pub fn host_resolver(etc_resolv_conf: &str, upstream: Option<&str>) -> String {
    let servers = Resolver::parse(etc_resolv_conf).nameservers;
    let loopback_only = !servers.is_empty()
        && servers.iter().all(|server| {
            server
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
        });
    match upstream {
        Some(upstream) if loopback_only => upstream.to_owned(),
        _ => etc_resolv_conf.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption};

    fn node() -> NodeDns {
        NodeDns {
            cluster_dns: Some(Ipv4Addr::new(10, 96, 0, 10)),
            cluster_domain: "cluster.local".into(),
            host_resolv_conf:
                "# the host's\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0\n".into(),
        }
    }

    fn spec(policy: Option<&str>, host_network: bool) -> PodSpec {
        PodSpec {
            dns_policy: policy.map(Into::into),
            host_network: Some(host_network),
            ..Default::default()
        }
    }

    #[test]
    fn cluster_first_asks_the_cluster_dns_and_searches_the_namespace_first() {
        assert_eq!(
            resolv_conf(&spec(None, false), "shop", &node()),
            "nameserver 10.96.0.10\n\
             search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n\
             options ndots:5\n"
        );
    }

    #[test]
    fn default_and_host_network_pods_use_the_nodes_resolver() {
        let host = "nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n";
        assert_eq!(
            resolv_conf(&spec(Some("Default"), false), "shop", &node()),
            host
        );
        assert_eq!(resolv_conf(&spec(None, true), "shop", &node()), host);
        let with_host_net = resolv_conf(
            &spec(Some("ClusterFirstWithHostNet"), true),
            "shop",
            &node(),
        );
        assert!(
            with_host_net.starts_with("nameserver 10.96.0.10\n"),
            "{with_host_net}"
        );
        // A node without cluster DNS: the node's resolver.
        let bare = NodeDns {
            cluster_dns: None,
            ..node()
        };
        assert_eq!(resolv_conf(&spec(None, false), "shop", &bare), host);
    }

    #[test]
    fn at_most_three_nameservers_and_thirty_two_search_domains_are_kept() {
        let mut pod = spec(Some("None"), false);
        pod.dns_config = Some(PodDNSConfig {
            nameservers: Some((1..=5).map(|i| format!("10.0.0.{i}")).collect()),
            searches: Some((0..40).map(|i| format!("s{i}.example")).collect()),
            options: None,
        });
        let conf = resolv_conf(&pod, "shop", &node());
        assert_eq!(conf.matches("nameserver ").count(), 3, "{conf}");
        assert!(conf.contains("nameserver 10.0.0.3\n") && !conf.contains("10.0.0.4"));
        let searches = conf.lines().find(|l| l.starts_with("search ")).unwrap();
        assert_eq!(searches.split_whitespace().count(), 1 + 32, "{searches}");
    }

    #[test]
    fn a_loopback_stub_resolver_gives_way_to_the_upstream_list() {
        let stub = "nameserver 127.0.0.53\noptions edns0\n";
        let upstream = "nameserver 192.0.2.1\n";
        assert_eq!(host_resolver(stub, Some(upstream)), upstream);
        assert_eq!(host_resolver(stub, None), stub);
        let real = "nameserver 192.0.2.53\n";
        assert_eq!(host_resolver(real, Some(upstream)), real);
    }

    #[test]
    fn none_is_only_the_pods_dns_config_which_any_policy_extends() {
        let mut pod = spec(Some("None"), false);
        pod.dns_config = Some(PodDNSConfig {
            nameservers: Some(vec!["10.0.0.2".into()]),
            searches: Some(vec!["a.example".into()]),
            options: Some(vec![
                PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                },
                PodDNSConfigOption {
                    name: Some("rotate".into()),
                    value: None,
                },
            ]),
        });
        assert_eq!(
            resolv_conf(&pod, "shop", &node()),
            "nameserver 10.0.0.2\nsearch a.example\noptions ndots:2 rotate\n"
        );
        pod.dns_policy = None;
        let merged = resolv_conf(&pod, "shop", &node());
        assert!(
            merged.starts_with("nameserver 10.96.0.10\nnameserver 10.0.0.2\n"),
            "{merged}"
        );
        assert!(merged.contains(" corp.example a.example\n"), "{merged}");
        assert!(merged.ends_with("options ndots:2 rotate\n"), "{merged}");
    }
}
