//! A container's resource requests and limits.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use super::super::names::qualified_name;
use super::super::quantity::Quantity;
use super::super::FieldError;
use super::{each_invalid, quantity, NOT_NEGATIVE};

/// Resource names a container may use without a `domain/` prefix.
const STANDARD_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];

/// Kubernetes' `ValidateContainerResourceRequirements`: known resource names, quantities that
/// parse and are not negative, and requests no larger than limits.
pub(super) fn container_resources(r: &ResourceRequirements, at: &str, errs: &mut Vec<FieldError>) {
    let empty = BTreeMap::new();
    let limits = r.limits.as_ref().unwrap_or(&empty);
    let requests = r.requests.as_ref().unwrap_or(&empty);
    let mut parsed_limits = BTreeMap::new();
    for (name, value) in limits {
        if let Some(limit) = resource(name, value, &format!("{at}.limits[{name}]"), errs) {
            parsed_limits.insert(name.as_str(), limit);
        }
    }
    for (name, value) in requests {
        let Some(request) = resource(name, value, &format!("{at}.requests[{name}]"), errs) else {
            continue;
        };
        let (Some(limit), Some(limit_text)) = (parsed_limits.get(name.as_str()), limits.get(name))
        else {
            continue;
        };
        // Hugepages and extended resources (GPUs, ...) cannot be overcommitted: what is
        // requested is what is reserved, so the two must agree exactly.
        let overcommit = STANDARD_RESOURCES.contains(&name.as_str());
        if !overcommit && request != *limit {
            errs.push(FieldError::invalid(
                format!("{at}.requests"),
                &value.0,
                format!("must be equal to {name} limit of {}", limit_text.0),
            ));
        } else if request > *limit {
            errs.push(FieldError::invalid(
                format!("{at}.requests"),
                &value.0,
                format!(
                    "must be less than or equal to {name} limit of {}",
                    limit_text.0
                ),
            ));
        }
    }
}

/// One resource name and quantity; returns the quantity when it is usable.
fn resource(
    name: &str,
    value: &ApiQuantity,
    at: &str,
    errs: &mut Vec<FieldError>,
) -> Option<Quantity> {
    each_invalid(errs, at, name, qualified_name(name));
    if !name.contains('/') && !STANDARD_RESOURCES.contains(&name) && !name.starts_with("hugepages-")
    {
        errs.push(FieldError::invalid(
            at,
            name,
            "must be a standard resource for containers",
        ));
    }
    let parsed = quantity(errs, at, &value.0)?;
    if parsed.is_negative() {
        errs.push(FieldError::invalid(at, &value.0, NOT_NEGATIVE));
        return None;
    }
    Some(parsed)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{from_json, only, paths};
    use super::*;
    use serde_json::json;

    fn check(requests: serde_json::Value, limits: serde_json::Value) -> Vec<FieldError> {
        let r: ResourceRequirements = from_json(json!({"requests": requests, "limits": limits}));
        let mut errs = Vec::new();
        container_resources(&r, "spec.containers[0].resources", &mut errs);
        errs
    }

    #[test]
    fn usual_requests_and_limits_are_valid() {
        let errs = check(
            json!({"cpu": "250m", "memory": "64Mi", "ephemeral-storage": "1Gi"}),
            json!({
                "cpu": "0.5", "memory": "128Mi", "example.com/gpu": "1", "hugepages-2Mi": "1Gi"
            }),
        );
        assert_eq!(errs, vec![]);
    }

    #[test]
    fn requests_may_not_exceed_limits() {
        let errs = check(json!({"memory": "1G"}), json!({"memory": "128Mi"}));
        let err = only(&errs, "spec.containers[0].resources.requests");
        assert_eq!(
            err.to_string(),
            "spec.containers[0].resources.requests: Invalid value: \"1G\": must be less than \
             or equal to memory limit of 128Mi"
        );
        assert_eq!(check(json!({"cpu": "0.5"}), json!({"cpu": "500m"})), vec![]);
        let errs = check(json!({"cpu": "501m"}), json!({"cpu": "0.5"}));
        only(&errs, "spec.containers[0].resources.requests");
    }

    #[test]
    fn extended_resources_request_exactly_their_limit() {
        let errs = check(
            json!({"example.com/gpu": "0"}),
            json!({"example.com/gpu": "1"}),
        );
        let err = only(&errs, "spec.containers[0].resources.requests");
        assert_eq!(err.detail, "must be equal to example.com/gpu limit of 1");
    }

    #[test]
    fn quantities_must_parse_and_not_be_negative() {
        let errs = check(json!({"memory": "lots"}), json!({"cpu": "-1"}));
        assert_eq!(
            paths(&errs),
            [
                "spec.containers[0].resources.limits[cpu]",
                "spec.containers[0].resources.requests[memory]"
            ]
        );
        assert_eq!(errs[0].detail, "must be greater than or equal to 0");
        assert!(errs[1]
            .detail
            .starts_with("quantities must match the regular expression"));
    }

    #[test]
    fn resource_names_without_a_domain_must_be_standard() {
        let errs = check(json!({}), json!({"gpu": "1"}));
        let err = only(&errs, "spec.containers[0].resources.limits[gpu]");
        assert_eq!(err.detail, "must be a standard resource for containers");
        let errs = check(json!({"a/b/c": "1"}), json!({}));
        only(&errs, "spec.containers[0].resources.requests[a/b/c]");
    }
}
