//! EndpointSlice (`discovery.k8s.io/v1`): a Service's endpoints in slices of at most 1,000,
//! as the EndpointSlice controller writes them and the node proxy and DNS read them.

use std::net::{Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};

use super::super::names::{dns1123_label, dns1123_subdomain};
use super::super::{FieldError, Validate};
use super::endpoints::{endpoint_ip, protocols};
use super::{each_invalid, one_of, port_number, IMMUTABLE};

const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];
/// Kubernetes' limits per slice.
const MAX_ENDPOINTS: usize = 1000;
const MAX_PORTS: usize = 100;
const MAX_ADDRESSES: usize = 100;

fn address(errs: &mut Vec<FieldError>, path: &str, text: &str, address_type: &str) {
    match address_type {
        "IPv4" if text.parse::<Ipv4Addr>().is_err() => errs.push(FieldError::invalid(
            path,
            text,
            "must be a valid IPv4 address",
        )),
        "IPv6" if text.parse::<Ipv6Addr>().is_err() => errs.push(FieldError::invalid(
            path,
            text,
            "must be a valid IPv6 address",
        )),
        "IPv4" | "IPv6" => endpoint_ip(errs, path, text),
        "FQDN" => each_invalid(errs, path, text, dns1123_subdomain(text)),
        _ => {}
    }
}

fn endpoint(errs: &mut Vec<FieldError>, endpoint: &Endpoint, address_type: &str, at: &str) {
    let addresses = &endpoint.addresses;
    if addresses.is_empty() {
        errs.push(FieldError::required(format!("{at}.addresses"), ""));
    } else if addresses.len() > MAX_ADDRESSES {
        errs.push(FieldError::too_many(
            format!("{at}.addresses"),
            MAX_ADDRESSES,
        ));
    }
    for (i, text) in addresses.iter().enumerate() {
        address(errs, &format!("{at}.addresses[{i}]"), text, address_type);
    }
    if let Some(hostname) = endpoint.hostname.as_deref() {
        each_invalid(
            errs,
            &format!("{at}.hostname"),
            hostname,
            dns1123_label(hostname),
        );
    }
    if let Some(node) = endpoint.node_name.as_deref() {
        each_invalid(
            errs,
            &format!("{at}.nodeName"),
            node,
            dns1123_subdomain(node),
        );
    }
}

fn port(errs: &mut Vec<FieldError>, port: &EndpointPort, at: &str) {
    if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
        each_invalid(errs, &format!("{at}.name"), name, dns1123_label(name));
    }
    if let Some(number) = port.port {
        port_number(errs, format!("{at}.port"), number);
    }
    protocols(
        errs,
        at,
        port.protocol.as_deref(),
        port.app_protocol.as_deref(),
    );
}

impl Validate for EndpointSlice {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let address_type = self.address_type.as_str();
        if address_type.is_empty() {
            errs.push(FieldError::required("addressType", ""));
        } else {
            one_of(&mut errs, "addressType", Some(address_type), ADDRESS_TYPES);
        }
        if self.endpoints.len() > MAX_ENDPOINTS {
            errs.push(FieldError::too_many("endpoints", MAX_ENDPOINTS));
        }
        for (i, each) in self.endpoints.iter().enumerate() {
            endpoint(&mut errs, each, address_type, &format!("endpoints[{i}]"));
        }
        let ports = self.ports.as_deref().unwrap_or_default();
        if ports.len() > MAX_PORTS {
            errs.push(FieldError::too_many("ports", MAX_PORTS));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, each) in ports.iter().enumerate() {
            let at = format!("ports[{i}]");
            port(&mut errs, each, &at);
            let name = each.name.as_deref().unwrap_or("");
            if !names.insert(name) {
                errs.push(FieldError::duplicate(format!("{at}.name"), name));
            }
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate();
        if self.address_type != old.address_type {
            errs.push(FieldError::invalid(
                "addressType",
                &self.address_type,
                IMMUTABLE,
            ));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{from_json, paths};
    use super::*;
    use serde_json::json;

    fn slice(change: impl FnOnce(&mut serde_json::Value)) -> EndpointSlice {
        let mut value = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": { "name": "web-abc", "labels": { "kubernetes.io/service-name": "web" } },
            "addressType": "IPv4",
            "endpoints": [{ "addresses": ["10.244.1.5"], "conditions": { "ready": true },
                            "nodeName": "node-1" }],
            "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }]
        });
        change(&mut value);
        from_json(value)
    }

    #[test]
    fn the_docs_slice_is_valid() {
        assert_eq!(slice(|_| {}).validate(), vec![]);
    }

    #[test]
    fn addresses_match_the_address_type_and_are_not_special() {
        let errs = slice(|s| {
            s["endpoints"][0]["addresses"] = json!(["fd00::1", "127.0.0.1"]);
            s["ports"][0]["protocol"] = json!("ICMP");
        })
        .validate();
        assert_eq!(
            paths(&errs),
            [
                "endpoints[0].addresses[0]",
                "endpoints[0].addresses[1]",
                "ports[0].protocol"
            ]
        );
        let errs = slice(|s| s["addressType"] = json!("IPv5")).validate();
        assert_eq!(paths(&errs), ["addressType"]);
        let errs = slice(|s| s["endpoints"][0]["addresses"] = json!([])).validate();
        assert_eq!(paths(&errs), ["endpoints[0].addresses"]);
    }

    #[test]
    fn the_address_type_is_immutable() {
        let errs = slice(|s| s["addressType"] = json!("IPv6")).validate_update(&slice(|_| {}));
        assert!(paths(&errs).contains(&"addressType"), "{errs:?}");
    }
}
