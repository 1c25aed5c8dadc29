//! Endpoints: the addresses and ports behind a Service.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, Endpoints};

use super::super::names::{dns1123_label, dns1123_subdomain, ip_address, qualified_name};
use super::super::{FieldError, Validate};
use super::{each_invalid, one_of, port_number, PROTOCOLS};

/// Kubernetes' `ValidateNonSpecialIP`: an endpoint must be reachable from other nodes.
pub(super) fn endpoint_ip(errs: &mut Vec<FieldError>, path: &str, text: &str) {
    let Ok(ip) = text.parse::<IpAddr>() else {
        each_invalid(errs, path, text, ip_address(text));
        return;
    };
    let special = match ip {
        IpAddr::V4(v4) => [
            v4.is_unspecified(),
            v4.is_loopback(),
            v4.is_link_local(),
            v4.octets()[..3] == [224, 0, 0],
        ],
        IpAddr::V6(v6) => [
            v6.is_unspecified(),
            v6.is_loopback(),
            v6.is_unicast_link_local(),
            v6.segments()[0] & 0xff0f == 0xff02,
        ],
    };
    let unspecified = format!("may not be unspecified ({text})");
    let messages = [
        unspecified.as_str(),
        "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
    ];
    for (is_special, message) in special.into_iter().zip(messages) {
        if is_special {
            errs.push(FieldError::invalid(path, text, message));
        }
    }
}

fn endpoint_address(errs: &mut Vec<FieldError>, address: &EndpointAddress, at: &str) {
    endpoint_ip(errs, &format!("{at}.ip"), &address.ip);
    if let Some(hostname) = address.hostname.as_deref().filter(|h| !h.is_empty()) {
        each_invalid(
            errs,
            &format!("{at}.hostname"),
            hostname,
            dns1123_label(hostname),
        );
    }
    if let Some(node) = address.node_name.as_deref() {
        each_invalid(
            errs,
            &format!("{at}.nodeName"),
            node,
            dns1123_subdomain(node),
        );
    }
}

fn endpoint_port(errs: &mut Vec<FieldError>, port: &EndpointPort, require_name: bool, at: &str) {
    let name = port.name.as_deref().unwrap_or("");
    if name.is_empty() && require_name {
        errs.push(FieldError::required(format!("{at}.name"), ""));
    } else if !name.is_empty() {
        each_invalid(errs, &format!("{at}.name"), name, dns1123_label(name));
    }
    port_number(errs, format!("{at}.port"), port.port);
    protocols(
        errs,
        at,
        port.protocol.as_deref(),
        port.app_protocol.as_deref(),
    );
}

/// An endpoint port's `protocol` and `appProtocol` (Endpoints and EndpointSlices alike).
pub(super) fn protocols(
    errs: &mut Vec<FieldError>,
    at: &str,
    protocol: Option<&str>,
    app_protocol: Option<&str>,
) {
    one_of(errs, format!("{at}.protocol"), protocol, PROTOCOLS);
    if let Some(app) = app_protocol {
        each_invalid(errs, &format!("{at}.appProtocol"), app, qualified_name(app));
    }
}

impl Validate for Endpoints {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for (i, subset) in self.subsets.iter().flatten().enumerate() {
            let at = format!("subsets[{i}]");
            let ready = subset.addresses.as_deref().unwrap_or_default();
            let not_ready = subset.not_ready_addresses.as_deref().unwrap_or_default();
            if ready.is_empty() && not_ready.is_empty() {
                errs.push(FieldError::required(
                    &at,
                    "must specify `addresses` or `notReadyAddresses`",
                ));
            }
            for (j, address) in ready.iter().enumerate() {
                endpoint_address(&mut errs, address, &format!("{at}.addresses[{j}]"));
            }
            for (j, address) in not_ready.iter().enumerate() {
                endpoint_address(&mut errs, address, &format!("{at}.notReadyAddresses[{j}]"));
            }
            let ports = subset.ports.as_deref().unwrap_or_default();
            for (j, port) in ports.iter().enumerate() {
                endpoint_port(
                    &mut errs,
                    port,
                    ports.len() > 1,
                    &format!("{at}.ports[{j}]"),
                );
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::FieldErrorKind;
    use super::super::test_util::{from_json, only, paths};
    use super::*;
    use serde_json::json;

    fn endpoints(change: impl FnOnce(&mut serde_json::Value)) -> Endpoints {
        let mut value = json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "my-service"},
            "subsets": [{
                "addresses": [
                    {"ip": "10.244.1.5", "nodeName": "node-1", "hostname": "web-0"},
                    {"ip": "fd00::5"}
                ],
                "notReadyAddresses": [{"ip": "10.244.2.7"}],
                "ports": [{"name": "http", "port": 9376, "protocol": "TCP"}]
            }]
        });
        change(&mut value);
        from_json(value)
    }

    #[test]
    fn realistic_endpoints_are_valid() {
        assert_eq!(endpoints(|_| {}).validate(), vec![]);
    }

    #[test]
    fn endpoint_addresses_are_routable_ips() {
        let errs = endpoints(|e| {
            e["subsets"][0]["addresses"] = json!([
                {"ip": "10.244.1"}, {"ip": "127.0.0.1"}, {"ip": "169.254.1.1"}, {"ip": "0.0.0.0"},
                {"ip": "::1"}
            ]);
        })
        .validate();
        assert_eq!(
            paths(&errs),
            [
                "subsets[0].addresses[0].ip",
                "subsets[0].addresses[1].ip",
                "subsets[0].addresses[2].ip",
                "subsets[0].addresses[3].ip",
                "subsets[0].addresses[4].ip",
            ]
        );
        assert_eq!(
            errs[1].detail,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)"
        );
        assert_eq!(errs[3].detail, "may not be unspecified (0.0.0.0)");
    }

    #[test]
    fn a_subset_needs_addresses() {
        let errs = endpoints(|e| {
            e["subsets"][0]["addresses"] = json!([]);
            e["subsets"][0]["notReadyAddresses"] = json!([]);
        })
        .validate();
        assert_eq!(only(&errs, "subsets[0]").kind, FieldErrorKind::Required);
    }

    #[test]
    fn endpoint_ports_are_checked() {
        let errs = endpoints(|e| {
            e["subsets"][0]["ports"] = json!([
                {"name": "http", "port": 0},
                {"port": 8443, "protocol": "QUIC"}
            ]);
        })
        .validate();
        assert_eq!(
            paths(&errs),
            [
                "subsets[0].ports[0].port",
                "subsets[0].ports[1].name",
                "subsets[0].ports[1].protocol"
            ]
        );
    }
}
