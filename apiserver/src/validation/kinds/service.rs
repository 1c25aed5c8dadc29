//! Service: its type, ports, cluster IP, and what follows from each.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Service, ServicePort};

use super::super::names::{
    cidr, dns1123_label, dns1123_subdomain, ip_address, qualified_name, validate_labels,
};
use super::super::{FieldError, Validate};
use super::{each_invalid, one_of, port_number, port_number_or_name, IMMUTABLE, PROTOCOLS};

/// Service types, in the order Kubernetes lists them.
const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

fn service_type(service: &Service) -> &str {
    let spec = service.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref())
        .filter(|t| !t.is_empty())
        .unwrap_or("ClusterIP")
}

fn cluster_ip(service: &Service) -> &str {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .unwrap_or("")
}

/// A headless service has no virtual IP: DNS answers with the pods' own addresses.
fn is_headless(service: &Service) -> bool {
    cluster_ip(service) == "None"
}

impl Validate for Service {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = self.spec.clone().unwrap_or_default();
        one_of(&mut errs, "spec.type", spec.type_.as_deref(), SERVICE_TYPES);
        let kind = service_type(self);
        let headless = is_headless(self);
        let ports = spec.ports.as_deref().unwrap_or_default();

        if kind == "ExternalName" {
            // The name may end in a dot to mark it fully qualified.
            let name = spec.external_name.as_deref().unwrap_or("");
            let name = name.strip_suffix('.').unwrap_or(name);
            if name.is_empty() {
                errs.push(FieldError::required("spec.externalName", ""));
            } else {
                each_invalid(
                    &mut errs,
                    "spec.externalName",
                    name,
                    dns1123_subdomain(name),
                );
            }
            if !cluster_ip(self).is_empty() {
                errs.push(FieldError::forbidden(
                    "spec.clusterIP",
                    "may not be set for ExternalName services",
                ));
            }
        } else {
            if ports.is_empty() && !headless {
                errs.push(FieldError::required("spec.ports", ""));
            }
            cluster_ips(
                &mut errs,
                &spec.cluster_ip,
                spec.cluster_ips.as_deref(),
                kind,
            );
        }

        service_ports(&mut errs, ports, kind);
        if let Some(selector) = &spec.selector {
            errs.extend(validate_labels(selector, "spec.selector"));
        }
        let affinity = spec.session_affinity.as_deref();
        one_of(
            &mut errs,
            "spec.sessionAffinity",
            affinity,
            &["ClientIP", "None"],
        );
        let policies = ["Cluster", "Local"];
        let external = spec.external_traffic_policy.as_deref();
        one_of(&mut errs, "spec.externalTrafficPolicy", external, &policies);
        let internal = spec.internal_traffic_policy.as_deref();
        one_of(&mut errs, "spec.internalTrafficPolicy", internal, &policies);
        let family_policies = ["SingleStack", "PreferDualStack", "RequireDualStack"];
        let family_policy = spec.ip_family_policy.as_deref();
        one_of(
            &mut errs,
            "spec.ipFamilyPolicy",
            family_policy,
            &family_policies,
        );
        for (i, family) in spec.ip_families.iter().flatten().enumerate() {
            one_of(
                &mut errs,
                format!("spec.ipFamilies[{i}]"),
                Some(family),
                &["IPv4", "IPv6"],
            );
        }
        for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
            each_invalid(
                &mut errs,
                &format!("spec.externalIPs[{i}]"),
                ip,
                ip_address(ip),
            );
        }
        for (i, range) in spec
            .load_balancer_source_ranges
            .iter()
            .flatten()
            .enumerate()
        {
            let at = format!("spec.loadBalancerSourceRanges[{i}]");
            each_invalid(&mut errs, &at, range, cidr(range));
        }
        errs
    }

    /// The cluster IP is allocated once and kept, unless the service becomes or stops being
    /// an ExternalName (which has none).
    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate();
        let external = service_type(self) == "ExternalName" || service_type(old) == "ExternalName";
        let (new_ip, old_ip) = (cluster_ip(self), cluster_ip(old));
        if !external && !old_ip.is_empty() && new_ip != old_ip {
            errs.push(FieldError::invalid("spec.clusterIP", new_ip, IMMUTABLE));
        }
        // Which implementation serves a LoadBalancer is chosen once (its address depends on
        // it); a Service may choose when it becomes one.
        let class = |s: &Service| s.spec.as_ref().and_then(|s| s.load_balancer_class.clone());
        let balanced = |s: &Service| service_type(s) == "LoadBalancer";
        if balanced(self) && balanced(old) && class(self) != class(old) {
            errs.push(FieldError::invalid(
                "spec.loadBalancerClass",
                class(self).unwrap_or_default(),
                "may not change once set",
            ));
        }
        errs
    }
}

fn cluster_ips(
    errs: &mut Vec<FieldError>,
    ip: &Option<String>,
    ips: Option<&[String]>,
    kind: &str,
) {
    let ip = ip.as_deref().unwrap_or("");
    if ip == "None" && kind != "ClusterIP" {
        errs.push(FieldError::invalid(
            "spec.clusterIP",
            ip,
            format!("may not be set to 'None' for {kind} services"),
        ));
    } else if !ip.is_empty() && ip != "None" {
        each_invalid(errs, "spec.clusterIP", ip, ip_address(ip));
    }
    let ips = ips.unwrap_or_default();
    for (i, each) in ips.iter().enumerate() {
        let at = format!("spec.clusterIPs[{i}]");
        if each == "None" {
            if i > 0 || ips.len() > 1 {
                errs.push(FieldError::invalid(
                    at,
                    each,
                    "'None' must be the first and only value",
                ));
            }
        } else {
            each_invalid(errs, &at, each, ip_address(each));
        }
    }
    if let Some(first) = ips.first() {
        if !ip.is_empty() && first != ip {
            errs.push(FieldError::invalid(
                "spec.clusterIPs",
                first,
                "first value must match `clusterIP`",
            ));
        }
    }
}

fn service_ports(errs: &mut Vec<FieldError>, ports: &[ServicePort], kind: &str) {
    let mut names = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    let exposes_node_ports = kind == "NodePort" || kind == "LoadBalancer";
    for (i, port) in ports.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        let name = port.name.as_deref().unwrap_or("");
        // With several ports, endpoints and clients tell them apart by name.
        if name.is_empty() && ports.len() > 1 {
            errs.push(FieldError::required(format!("{at}.name"), ""));
        } else if !name.is_empty() {
            each_invalid(errs, &format!("{at}.name"), name, dns1123_label(name));
            if !names.insert(name) {
                errs.push(FieldError::duplicate(format!("{at}.name"), name));
            }
        }
        port_number(errs, format!("{at}.port"), port.port);
        one_of(
            errs,
            format!("{at}.protocol"),
            port.protocol.as_deref(),
            PROTOCOLS,
        );
        if let Some(target) = &port.target_port {
            port_number_or_name(errs, &format!("{at}.targetPort"), target);
        }
        if let Some(app) = port.app_protocol.as_deref() {
            each_invalid(errs, &format!("{at}.appProtocol"), app, qualified_name(app));
        }
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        let key = format!("{}/{protocol}", port.port);
        if !seen.insert(key.clone()) {
            errs.push(FieldError::duplicate(&at, key));
        }
        let Some(node_port) = port.node_port.filter(|p| *p != 0) else {
            continue;
        };
        let at = format!("{at}.nodePort");
        if !exposes_node_ports {
            errs.push(FieldError::forbidden(
                at,
                format!("may not be used when `type` is '{kind}'"),
            ));
        } else if !(1..=65535).contains(&node_port) {
            // Whether it is in the cluster's node port range is the allocator's to say
            // (`allocation`: the range is a flag).
            port_number(errs, at, node_port);
        } else if !node_ports.insert((node_port, protocol)) {
            errs.push(FieldError::duplicate(at, node_port));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::FieldErrorKind;
    use super::super::test_util::{from_json, only, paths};
    use super::*;
    use serde_json::json;

    fn service(change: impl FnOnce(&mut serde_json::Value)) -> Service {
        let mut value = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "my-service"},
            "spec": {
                "selector": {"app.kubernetes.io/name": "MyApp"},
                "ports": [
                    {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 9376},
                    {"name": "https", "protocol": "TCP", "port": 443, "targetPort": "https"}
                ]
            }
        });
        change(&mut value);
        from_json(value)
    }

    #[test]
    fn the_docs_service_is_valid() {
        assert_eq!(service(|_| {}).validate(), vec![]);
    }

    #[test]
    fn a_node_port_service_with_an_allocated_ip_is_valid() {
        let svc = service(|s| {
            s["spec"]["type"] = json!("NodePort");
            s["spec"]["clusterIP"] = json!("10.96.0.10");
            s["spec"]["clusterIPs"] = json!(["10.96.0.10"]);
            s["spec"]["ports"][0]["nodePort"] = json!(30007);
        });
        assert_eq!(svc.validate(), vec![]);
    }

    #[test]
    fn the_service_type_must_be_known() {
        let errs = service(|s| s["spec"]["type"] = json!("Internal")).validate();
        assert_eq!(
            only(&errs, "spec.type").to_string(),
            "spec.type: Unsupported value: \"Internal\": supported values: \"ClusterIP\", \
             \"ExternalName\", \"LoadBalancer\", \"NodePort\""
        );
    }

    #[test]
    fn ports_are_required_except_for_external_names_and_headless_services() {
        let errs = service(|s| s["spec"]["ports"] = json!([])).validate();
        assert_eq!(only(&errs, "spec.ports").kind, FieldErrorKind::Required);
        let headless = service(|s| {
            s["spec"]["ports"] = json!([]);
            s["spec"]["clusterIP"] = json!("None");
        });
        assert_eq!(headless.validate(), vec![]);
        let external: Service = from_json(json!({
            "metadata": {"name": "my-database"},
            "spec": {"type": "ExternalName", "externalName": "db.example.com."}
        }));
        assert_eq!(external.validate(), vec![]);
    }

    #[test]
    fn an_external_name_must_be_a_dns_name() {
        let errs = service(|s| {
            s["spec"] = json!({"type": "ExternalName", "externalName": "not a name"});
        })
        .validate();
        only(&errs, "spec.externalName");
        let errs = service(|s| s["spec"] = json!({"type": "ExternalName"})).validate();
        assert_eq!(
            only(&errs, "spec.externalName").kind,
            FieldErrorKind::Required
        );
    }

    #[test]
    fn port_numbers_and_protocols_are_checked() {
        let errs = service(|s| {
            s["spec"]["ports"][0]["port"] = json!(0);
            s["spec"]["ports"][1]["protocol"] = json!("ICMP");
        })
        .validate();
        assert_eq!(
            paths(&errs),
            ["spec.ports[0].port", "spec.ports[1].protocol"]
        );
    }

    #[test]
    fn several_ports_need_unique_names() {
        let errs = service(|s| {
            s["spec"]["ports"][0]
                .as_object_mut()
                .expect("object")
                .remove("name");
        })
        .validate();
        assert_eq!(
            only(&errs, "spec.ports[0].name").kind,
            FieldErrorKind::Required
        );
        let errs = service(|s| s["spec"]["ports"][1]["name"] = json!("http")).validate();
        assert_eq!(
            only(&errs, "spec.ports[1].name").kind,
            FieldErrorKind::Duplicate {
                value: "http".into()
            }
        );
        let single = service(|s| s["spec"]["ports"] = json!([{"port": 80}]));
        assert_eq!(single.validate(), vec![]);
    }

    #[test]
    fn the_same_port_and_protocol_may_not_repeat() {
        let errs = service(|s| s["spec"]["ports"][1]["port"] = json!(80)).validate();
        assert_eq!(
            only(&errs, "spec.ports[1]").kind,
            FieldErrorKind::Duplicate {
                value: "80/TCP".into()
            }
        );
    }

    #[test]
    fn a_target_port_is_a_number_or_a_port_name() {
        let errs = service(|s| {
            s["spec"]["ports"][0]["targetPort"] = json!(70000);
            s["spec"]["ports"][1]["targetPort"] = json!("not_a_name");
        })
        .validate();
        assert_eq!(
            paths(&errs),
            ["spec.ports[0].targetPort", "spec.ports[1].targetPort"]
        );
    }

    #[test]
    fn node_ports_need_a_node_port_type_and_the_range() {
        let errs = service(|s| s["spec"]["ports"][0]["nodePort"] = json!(30007)).validate();
        assert_eq!(
            only(&errs, "spec.ports[0].nodePort").to_string(),
            "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"
        );
        let errs = service(|s| {
            s["spec"]["type"] = json!("LoadBalancer");
            s["spec"]["ports"][0]["nodePort"] = json!(70000);
        })
        .validate();
        // The cluster's node port range is the allocator's to check (`allocation`).
        only(&errs, "spec.ports[0].nodePort");
        let errs = service(|s| {
            s["spec"]["type"] = json!("NodePort");
            s["spec"]["ports"][0]["nodePort"] = json!(30007);
            s["spec"]["ports"][1]["nodePort"] = json!(30007);
        })
        .validate();
        assert_eq!(
            only(&errs, "spec.ports[1].nodePort").kind,
            FieldErrorKind::Duplicate {
                value: "30007".into()
            }
        );
    }

    #[test]
    fn a_cluster_ip_is_an_address_none_or_empty() {
        let errs = service(|s| s["spec"]["clusterIP"] = json!("10.96.0.300")).validate();
        assert_eq!(
            only(&errs, "spec.clusterIP").detail,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
        );
        let errs = service(|s| {
            s["spec"]["clusterIP"] = json!("10.96.0.1");
            s["spec"]["clusterIPs"] = json!(["10.96.0.2"]);
        })
        .validate();
        only(&errs, "spec.clusterIPs");
        let errs = service(|s| {
            s["spec"]["type"] = json!("NodePort");
            s["spec"]["clusterIP"] = json!("None");
        })
        .validate();
        only(&errs, "spec.clusterIP");
    }

    #[test]
    fn selector_labels_are_checked() {
        let errs = service(|s| s["spec"]["selector"]["app"] = json!("my app")).validate();
        only(&errs, "spec.selector");
    }

    #[test]
    fn the_cluster_ip_is_immutable_once_set() {
        let old = service(|s| s["spec"]["clusterIP"] = json!("10.96.0.10"));
        let same = service(|s| {
            s["spec"]["clusterIP"] = json!("10.96.0.10");
            s["spec"]["ports"][0]["port"] = json!(8080);
        });
        assert_eq!(same.validate_update(&old), vec![]);
        let moved = service(|s| s["spec"]["clusterIP"] = json!("10.96.0.11"));
        assert_eq!(
            only(&moved.validate_update(&old), "spec.clusterIP").to_string(),
            "spec.clusterIP: Invalid value: \"10.96.0.11\": field is immutable"
        );
        let allocated = service(|s| s["spec"]["clusterIP"] = json!("10.96.0.10"));
        assert_eq!(allocated.validate_update(&service(|_| {})), vec![]);
        let external: Service = from_json(json!({
            "spec": {"type": "ExternalName", "externalName": "db.example.com"}
        }));
        assert_eq!(external.validate_update(&old), vec![]);
    }

    #[test]
    fn a_load_balancers_class_may_not_change_once_set() {
        let old = service(|s| {
            s["spec"]["type"] = json!("LoadBalancer");
            s["spec"]["loadBalancerClass"] = json!("example.com/lb");
        });
        let changed = service(|s| s["spec"]["type"] = json!("LoadBalancer"));
        assert_eq!(
            only(&changed.validate_update(&old), "spec.loadBalancerClass").to_string(),
            "spec.loadBalancerClass: Invalid value: \"\": may not change once set"
        );
        // Chosen when it becomes a LoadBalancer.
        let plain = service(|_| {});
        assert_eq!(old.validate_update(&plain), vec![]);
    }
}
