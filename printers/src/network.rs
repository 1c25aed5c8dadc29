//! Rows of Service, Endpoints and EndpointSlice, after kubectl's `printService`,
//! `printEndpoints` and `printEndpointSlice`.

use std::collections::BTreeSet;

use serde_json::Value;

use super::fields::{
    age_at, array_at, count_at, format_labels, name_of, str_at, string_map, text_at, text_or,
};

/// Longest EXTERNAL-IP of a LoadBalancer before kubectl clips it (without `-o wide`).
const LOAD_BALANCER_WIDTH: usize = 16;

/// NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE, wide SELECTOR.
pub(crate) fn service(service: &Value, now: jiff::Timestamp) -> Vec<String> {
    let first_cluster_ip = array_at(service, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str);
    let cluster_ip = first_cluster_ip
        .or_else(|| str_at(service, &["spec", "clusterIP"]))
        .filter(|ip| !ip.is_empty())
        .unwrap_or("<none>");
    let ports = service_ports(service);
    vec![
        name_of(service),
        service_type(service).to_owned(),
        cluster_ip.to_owned(),
        external_ip(service, false),
        if ports.is_empty() {
            "<none>".into()
        } else {
            ports
        },
        age_at(service, &["metadata", "creationTimestamp"], now),
        format_labels(&string_map(service, &["spec", "selector"])),
    ]
}

/// `spec.type`, ClusterIP (the API server's default) when unset.
pub(crate) fn service_type(service: &Value) -> &str {
    text_or(service, &["spec", "type"], "ClusterIP")
}

/// kubectl's `makePortString`: `443/TCP`, `8080:31348/TCP` with a node port, comma-joined.
fn service_ports(service: &Value) -> String {
    let ports: Vec<String> = array_at(service, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = count_at(p, &["port"]);
            let protocol = text_or(p, &["protocol"], "TCP");
            match count_at(p, &["nodePort"]) {
                node_port if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    ports.join(",")
}

/// kubectl's `getServiceExternalIP`: external IPs, a LoadBalancer's ingress (`<pending>` until
/// it has one), or the ExternalName.
pub(crate) fn external_ip(service: &Value, wide: bool) -> String {
    let external: Vec<&str> = array_at(service, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match service_type(service) {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".into(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            let ingress = load_balancer_ingress(service, wide);
            let mut all: Vec<&str> = ingress.split(',').filter(|s| !s.is_empty()).collect();
            all.extend(&external);
            if all.is_empty() {
                "<pending>".into()
            } else if external.is_empty() {
                ingress
            } else {
                all.join(",")
            }
        }
        "ExternalName" => text_at(service, &["spec", "externalName"]).to_owned(),
        _ => "<unknown>".into(),
    }
}

/// The LoadBalancer's ingress IPs (or hostnames), sorted, deduplicated and, unless `wide`,
/// clipped to 16 characters with `...`.
fn load_balancer_ingress(service: &Value, wide: bool) -> String {
    let ingress: BTreeSet<&str> = array_at(service, &["status", "loadBalancer", "ingress"])
        .iter()
        .map(|i| match text_at(i, &["ip"]) {
            "" => text_at(i, &["hostname"]),
            ip => ip,
        })
        .filter(|s| !s.is_empty())
        .collect();
    let joined = ingress.into_iter().collect::<Vec<_>>().join(",");
    if !wide && joined.chars().count() > LOAD_BALANCER_WIDTH {
        let clipped: String = joined.chars().take(LOAD_BALANCER_WIDTH - 3).collect();
        return format!("{clipped}...");
    }
    joined
}

/// NAME ENDPOINTS AGE.
pub(crate) fn endpoints(endpoints: &Value, now: jiff::Timestamp) -> Vec<String> {
    vec![
        name_of(endpoints),
        format_endpoints(endpoints),
        age_at(endpoints, &["metadata", "creationTimestamp"], now),
    ]
}

/// kubectl's `formatEndpoints`: up to three `ip:port`, then `+ N more...`; `<none>` without
/// subsets.
pub(crate) fn format_endpoints(endpoints: &Value) -> String {
    const MAX: usize = 3;
    let subsets = array_at(endpoints, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut list = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let ips: Vec<&str> = array_at(subset, &["addresses"])
            .iter()
            .map(|a| text_at(a, &["ip"]))
            .collect();
        let ports = array_at(subset, &["ports"]);
        // A headless service may have no ports: list the bare addresses.
        let port_numbers: Vec<Option<i64>> = if ports.is_empty() {
            vec![None]
        } else {
            ports.iter().map(|p| Some(count_at(p, &["port"]))).collect()
        };
        for port in port_numbers {
            count += ips.len();
            for ip in ips.iter().take(MAX.saturating_sub(list.len())) {
                list.push(match port {
                    Some(port) if ip.contains(':') => format!("[{ip}]:{port}"),
                    Some(port) => format!("{ip}:{port}"),
                    None => (*ip).to_owned(),
                });
            }
        }
    }
    let joined = list.join(",");
    if count > MAX {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

/// NAME ADDRESSTYPE PORTS ENDPOINTS AGE.
pub(crate) fn endpoint_slice(slice: &Value, now: jiff::Timestamp) -> Vec<String> {
    vec![
        name_of(slice),
        text_at(slice, &["addressType"]).to_owned(),
        slice_ports(slice),
        slice_endpoints(slice),
        age_at(slice, &["metadata", "creationTimestamp"], now),
    ]
}

/// kubectl's `formatDiscoveryPorts`: the port numbers, `<unset>` for a port without one.
fn slice_ports(slice: &Value) -> String {
    let ports = array_at(slice, &["ports"]);
    if ports.is_empty() {
        return "<unset>".into();
    }
    let numbers: Vec<String> = ports
        .iter()
        .map(|p| match p["port"].as_i64() {
            Some(port) => port.to_string(),
            None => "<unset>".into(),
        })
        .collect();
    numbers.join(",")
}

/// kubectl's `formatDiscoveryEndpoints`: up to three addresses, then `+ N more...`.
fn slice_endpoints(slice: &Value) -> String {
    const MAX: usize = 3;
    let addresses: Vec<&str> = array_at(slice, &["endpoints"])
        .iter()
        .flat_map(|e| array_at(e, &["addresses"]))
        .filter_map(Value::as_str)
        .collect();
    if addresses.is_empty() {
        return "<unset>".into();
    }
    let shown = addresses[..addresses.len().min(MAX)].join(",");
    if addresses.len() > MAX {
        format!("{shown} + {} more...", addresses.len() - MAX)
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{meta, now};
    use super::*;
    use serde_json::json;

    #[test]
    fn a_node_port_service_row() {
        let s = json!({
            "metadata": meta("kubia-nodeport"),
            "spec": {"type": "NodePort", "clusterIP": "10.111.254.223",
                     "clusterIPs": ["10.111.254.223"], "selector": {"app": "kubia"},
                     "ports": [{"port": 80, "nodePort": 30123, "protocol": "TCP"},
                               {"port": 443, "protocol": "TCP"}]}
        });
        assert_eq!(
            service(&s, now()),
            [
                "kubia-nodeport",
                "NodePort",
                "10.111.254.223",
                "<none>",
                "80:30123/TCP,443/TCP",
                "13d",
                "app=kubia"
            ]
        );
    }

    #[test]
    fn a_load_balancer_without_ingress_is_pending() {
        let mut s = json!({"metadata": meta("lb"),
                           "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.7",
                                    "ports": [{"port": 80, "nodePort": 31348}]}});
        assert_eq!(
            service(&s, now())[2..5],
            ["10.0.0.7", "<pending>", "80:31348/TCP"]
        );
        s["status"] = json!({"loadBalancer": {"ingress": [{"ip": "130.211.53.173"}]}});
        assert_eq!(service(&s, now())[3], "130.211.53.173");
    }

    #[test]
    fn long_load_balancer_addresses_are_clipped_unless_wide() {
        let s = json!({"spec": {"type": "LoadBalancer", "externalIPs": ["1.2.3.4"]},
                       "status": {"loadBalancer": {"ingress": [
                           {"hostname": "a1b2c3.elb.example.com"}]}}});
        assert_eq!(external_ip(&s, false), "a1b2c3.elb.ex...,1.2.3.4");
        assert_eq!(external_ip(&s, true), "a1b2c3.elb.example.com,1.2.3.4");
    }

    #[test]
    fn service_defaults_and_other_types() {
        let bare = json!({"metadata": {"name": "s"}});
        assert_eq!(
            service(&bare, now())[1..5],
            ["ClusterIP", "<none>", "<none>", "<none>"]
        );
        let external = json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        assert_eq!(external_ip(&external, false), "db.example.com");
        let with_ips = json!({"spec": {"externalIPs": ["1.1.1.1", "2.2.2.2"]}});
        assert_eq!(external_ip(&with_ips, false), "1.1.1.1,2.2.2.2");
        assert_eq!(
            external_ip(&json!({"spec": {"type": "Weird"}}), false),
            "<unknown>"
        );
    }

    #[test]
    fn endpoints_list_three_addresses_then_a_count() {
        let e = json!({"metadata": meta("kubia"), "subsets": [{
            "addresses": [{"ip": "10.1.0.1"}, {"ip": "10.1.0.2"}, {"ip": "10.1.0.3"},
                          {"ip": "10.1.0.4"}],
            "ports": [{"port": 8080}]}]});
        assert_eq!(
            endpoints(&e, now()),
            [
                "kubia",
                "10.1.0.1:8080,10.1.0.2:8080,10.1.0.3:8080 + 1 more...",
                "13d"
            ]
        );
    }

    #[test]
    fn endpoints_without_ports_or_subsets() {
        let headless = json!({"subsets": [{"addresses": [{"ip": "10.1.0.1"}, {"ip": "fd00::1"}]}]});
        assert_eq!(format_endpoints(&headless), "10.1.0.1,fd00::1");
        let v6 = json!({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
        assert_eq!(format_endpoints(&v6), "[fd00::1]:80");
        assert_eq!(format_endpoints(&json!({})), "<none>");
    }

    #[test]
    fn an_endpoint_slice_row() {
        let slice = json!({
            "metadata": meta("kubia-http-1a2b3c4d-0"),
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.244.1.2"]}, {"addresses": ["10.244.1.3"]},
                          {"addresses": ["10.244.2.2"]}, {"addresses": ["10.244.2.3"]}]
        });
        let row = endpoint_slice(&slice, now());
        assert_eq!(
            row[..4],
            [
                "kubia-http-1a2b3c4d-0",
                "IPv4",
                "8080",
                "10.244.1.2,10.244.1.3,10.244.2.2 + 1 more..."
            ]
        );
        let empty = json!({ "metadata": meta("empty"), "addressType": "IPv4", "endpoints": [] });
        assert_eq!(endpoint_slice(&empty, now())[2..4], ["<unset>", "<unset>"]);
    }
}
