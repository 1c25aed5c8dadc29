//! Namespace, Node, Event and Lease.

use std::collections::BTreeSet;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, Node};

use super::super::names::{cidr, label_value, qualified_name};
use super::super::{FieldError, Validate};
use super::pod_spec::TAINT_EFFECTS;
use super::{each_invalid, non_negative, one_of, positive, quantity, NOT_NEGATIVE};

/// Finalizer names that need no domain prefix.
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

impl Validate for Namespace {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let finalizers = self
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.as_deref())
            .unwrap_or_default();
        for finalizer in finalizers {
            let path = "spec.finalizers";
            each_invalid(&mut errs, path, finalizer, qualified_name(finalizer));
            // An unprefixed name is reserved for Kubernetes' own finalizers.
            if !finalizer.contains('/') && !STANDARD_FINALIZERS.contains(&finalizer.as_str()) {
                errs.push(FieldError::invalid(
                    path,
                    finalizer,
                    "name is neither a standard finalizer name nor is it fully qualified",
                ));
            }
        }
        errs
    }
}

impl Validate for Node {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = self.spec.clone().unwrap_or_default();
        if let Some(pod_cidr) = spec.pod_cidr.as_deref().filter(|c| !c.is_empty()) {
            each_invalid(&mut errs, "spec.podCIDR", pod_cidr, cidr(pod_cidr));
        }
        let cidrs = spec.pod_cidrs.as_deref().unwrap_or_default();
        let mut seen = BTreeSet::new();
        for (i, each) in cidrs.iter().enumerate() {
            let at = format!("spec.podCIDRs[{i}]");
            each_invalid(&mut errs, &at, each, cidr(each));
            if !seen.insert(each) {
                errs.push(FieldError::duplicate(at, each));
            }
        }
        // Dual stack allows one range per IP family, so two at most, of different families.
        let v6 = cidrs.iter().filter(|c| c.contains(':')).count();
        if cidrs.len() > 2 || (cidrs.len() == 2 && v6 != 1) {
            errs.push(FieldError::invalid(
                "spec.podCIDRs",
                cidrs.join(","),
                "may specify no more than one CIDR for each IP family",
            ));
        }
        if let (Some(single), Some(first)) = (spec.pod_cidr.as_deref(), cidrs.first()) {
            if !single.is_empty() && single != first {
                errs.push(FieldError::invalid(
                    "spec.podCIDRs",
                    first,
                    "first value must match `podCIDR`",
                ));
            }
        }

        let mut taints = BTreeSet::new();
        for (i, taint) in spec.taints.iter().flatten().enumerate() {
            let at = format!("spec.taints[{i}]");
            each_invalid(
                &mut errs,
                &format!("{at}.key"),
                &taint.key,
                qualified_name(&taint.key),
            );
            let value = taint.value.as_deref().unwrap_or("");
            let problems = label_value(value);
            if !problems.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{at}.value"),
                    value,
                    problems.join(";"),
                ));
            }
            one_of(
                &mut errs,
                format!("{at}.effect"),
                Some(&taint.effect),
                TAINT_EFFECTS,
            );
            if !taints.insert((&taint.key, &taint.effect)) {
                let mut err = FieldError::duplicate(&at, format!("{}:{}", taint.key, taint.effect));
                err.detail = "taints must be unique by key and effect pair".into();
                errs.push(err);
            }
        }

        // Status is written by the kubelet, but a capacity it cannot parse would break the
        // scheduler's arithmetic.
        let status = self.status.as_ref();
        let lists = [
            ("status.capacity", status.and_then(|s| s.capacity.as_ref())),
            (
                "status.allocatable",
                status.and_then(|s| s.allocatable.as_ref()),
            ),
        ];
        for (path, list) in lists {
            for (name, value) in list.into_iter().flatten() {
                let at = format!("{path}[{name}]");
                if quantity(&mut errs, &at, &value.0).is_some_and(|q| q.is_negative()) {
                    errs.push(FieldError::invalid(at, &value.0, NOT_NEGATIVE));
                }
            }
        }
        errs
    }

    /// The pod range is handed out once; moving it would strand the pods already on it.
    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate();
        let new_spec = self.spec.clone().unwrap_or_default();
        let old_spec = old.spec.clone().unwrap_or_default();
        let was_set = old_spec.pod_cidrs.as_ref().is_some_and(|c| !c.is_empty())
            || old_spec.pod_cidr.as_deref().is_some_and(|c| !c.is_empty());
        if was_set
            && (new_spec.pod_cidrs != old_spec.pod_cidrs || new_spec.pod_cidr != old_spec.pod_cidr)
        {
            errs.push(FieldError::forbidden(
                "spec.podCIDRs",
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        let old_provider = old_spec.provider_id.as_deref().unwrap_or("");
        if !old_provider.is_empty() && new_spec.provider_id != old_spec.provider_id {
            errs.push(FieldError::forbidden(
                "spec.providerID",
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
        errs
    }
}

impl Validate for Event {
    /// Events describe another object; they must say which, in their own namespace. The
    /// length limits of events.k8s.io apply to new-style events (those with `eventTime`).
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let involved = &self.involved_object;
        for (field, value) in [("kind", &involved.kind), ("name", &involved.name)] {
            if value.as_deref().is_none_or(str::is_empty) {
                errs.push(FieldError::required(format!("involvedObject.{field}"), ""));
            }
        }
        let namespace = self.metadata.namespace.as_deref().unwrap_or("");
        let involved_namespace = involved.namespace.as_deref().unwrap_or("");
        // A cluster-scoped object's events live in `default` (or nowhere, for old clients).
        let cluster_scoped_ok =
            involved_namespace.is_empty() && ["", "default", "kube-system"].contains(&namespace);
        if involved_namespace != namespace && !cluster_scoped_ok {
            errs.push(FieldError::invalid(
                "involvedObject.namespace",
                involved_namespace,
                "does not match event.namespace",
            ));
        }
        one_of(
            &mut errs,
            "type",
            self.type_.as_deref(),
            &["Normal", "Warning"],
        );
        non_negative(&mut errs, "count", self.count.map(i64::from));
        if self.event_time.is_some() {
            let limits = [
                ("reason", &self.reason, 128),
                ("action", &self.action, 128),
                ("reportingInstance", &self.reporting_instance, 128),
                ("message", &self.message, 1024),
            ];
            for (field, value, max) in limits {
                if value.as_deref().is_some_and(|v| v.len() > max) {
                    errs.push(FieldError::invalid(
                        field,
                        "",
                        format!("can have at most {max} characters"),
                    ));
                }
            }
            let component = self.reporting_component.as_deref().unwrap_or("");
            if component.is_empty() {
                errs.push(FieldError::required("reportingComponent", ""));
            } else {
                each_invalid(
                    &mut errs,
                    "reportingComponent",
                    component,
                    qualified_name(component),
                );
            }
        }
        errs
    }
}

impl Validate for Lease {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let Some(spec) = &self.spec else {
            return errs;
        };
        let duration = spec.lease_duration_seconds.map(i64::from);
        positive(&mut errs, "spec.leaseDurationSeconds", duration);
        non_negative(
            &mut errs,
            "spec.leaseTransitions",
            spec.lease_transitions.map(i64::from),
        );
        let strategy = spec.strategy.as_deref().unwrap_or("");
        if !strategy.is_empty() {
            each_invalid(
                &mut errs,
                "spec.strategy",
                strategy,
                qualified_name(strategy),
            );
        }
        // A preferred holder only means something to a coordinated election.
        if spec
            .preferred_holder
            .as_deref()
            .is_some_and(|h| !h.is_empty())
            && strategy.is_empty()
        {
            errs.push(FieldError::forbidden(
                "spec.preferredHolder",
                "may only be specified if `strategy` is defined",
            ));
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

    #[test]
    fn namespace_finalizers_are_qualified_or_standard() {
        let ns: Namespace = from_json(json!({
            "metadata": {"name": "dev"},
            "spec": {"finalizers": ["kubernetes", "example.com/cleanup"]}
        }));
        assert_eq!(ns.validate(), vec![]);
        let ns: Namespace = from_json(json!({"spec": {"finalizers": ["cleanup", "a b/c"]}}));
        let errs = ns.validate();
        assert_eq!(paths(&errs), ["spec.finalizers", "spec.finalizers"]);
        assert_eq!(
            errs[0].detail,
            "name is neither a standard finalizer name nor is it fully qualified"
        );
    }

    fn node(change: impl FnOnce(&mut serde_json::Value)) -> Node {
        let mut value = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}},
            "spec": {
                "podCIDR": "10.244.1.0/24",
                "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"],
                "providerID": "rudder://node-1",
                "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
            },
            "status": {
                "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                "allocatable": {"cpu": "3800m", "memory": "15Gi", "pods": "110"}
            }
        });
        change(&mut value);
        from_json(value)
    }

    #[test]
    fn a_realistic_node_is_valid() {
        assert_eq!(node(|_| {}).validate(), vec![]);
    }

    #[test]
    fn pod_cidrs_are_valid_one_per_family() {
        let errs = node(|n| n["spec"]["podCIDR"] = json!("10.244.1.0")).validate();
        assert_eq!(paths(&errs), ["spec.podCIDR", "spec.podCIDRs"]);
        let errs = node(|n| n["spec"]["podCIDRs"][1] = json!("10.245.0.0/16")).validate();
        only(&errs, "spec.podCIDRs");
        let errs = node(|n| n["spec"]["podCIDRs"][1] = json!("10.244.1.0/24")).validate();
        assert_eq!(paths(&errs), ["spec.podCIDRs[1]", "spec.podCIDRs"]);
    }

    #[test]
    fn taint_effects_must_be_known() {
        let errs = node(|n| n["spec"]["taints"][0]["effect"] = json!("NoEntry")).validate();
        assert_eq!(
            only(&errs, "spec.taints[0].effect").to_string(),
            "spec.taints[0].effect: Unsupported value: \"NoEntry\": supported values: \
             \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""
        );
        let errs = node(|n| n["spec"]["taints"][0]["effect"] = json!("")).validate();
        assert_eq!(
            only(&errs, "spec.taints[0].effect").kind,
            FieldErrorKind::Required
        );
    }

    #[test]
    fn taints_have_valid_keys_and_values_and_are_unique() {
        let errs = node(|n| {
            n["spec"]["taints"] = json!([
                {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                {"key": "dedicated", "value": "other", "effect": "NoSchedule"},
                {"key": "bad key", "value": "-", "effect": "NoExecute"}
            ]);
        })
        .validate();
        assert_eq!(
            paths(&errs),
            [
                "spec.taints[1]",
                "spec.taints[2].key",
                "spec.taints[2].value"
            ]
        );
    }

    #[test]
    fn node_capacity_must_parse() {
        let errs = node(|n| n["status"]["capacity"]["memory"] = json!("16 GB")).validate();
        only(&errs, "status.capacity[memory]");
    }

    #[test]
    fn a_node_pod_cidr_is_set_once() {
        let unset = node(|n| {
            n["spec"].as_object_mut().expect("object").remove("podCIDR");
            n["spec"]
                .as_object_mut()
                .expect("object")
                .remove("podCIDRs");
        });
        let set = node(|_| {});
        assert_eq!(set.validate_update(&unset), vec![]);
        let moved = node(|n| {
            n["spec"]["podCIDR"] = json!("10.244.9.0/24");
            n["spec"]["podCIDRs"][0] = json!("10.244.9.0/24");
        });
        assert_eq!(
            only(&moved.validate_update(&set), "spec.podCIDRs").kind,
            FieldErrorKind::Forbidden
        );
        let cordoned = node(|n| n["spec"]["unschedulable"] = json!(true));
        assert_eq!(cordoned.validate_update(&set), vec![]);
    }

    fn event(change: impl FnOnce(&mut serde_json::Value)) -> Event {
        let mut value = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web-0.17c2d3a4b5c6d7e8", "namespace": "default"},
            "involvedObject": {
                "apiVersion": "v1", "kind": "Pod", "name": "web-0", "namespace": "default",
                "uid": "0d9c1c4e-5b52-4b8c-9d1e-5c4d3b2a1f00"
            },
            "reason": "Scheduled",
            "message": "Successfully assigned default/web-0 to node-1",
            "source": {"component": "default-scheduler"},
            "type": "Normal",
            "count": 1,
            "firstTimestamp": "2024-05-01T10:00:00Z",
            "lastTimestamp": "2024-05-01T10:00:00Z"
        });
        change(&mut value);
        from_json(value)
    }

    #[test]
    fn a_scheduler_event_is_valid() {
        assert_eq!(event(|_| {}).validate(), vec![]);
    }

    #[test]
    fn an_event_names_its_object() {
        let errs = event(|e| e["involvedObject"] = json!({"namespace": "default"})).validate();
        assert_eq!(paths(&errs), ["involvedObject.kind", "involvedObject.name"]);
    }

    #[test]
    fn an_event_lives_in_its_objects_namespace() {
        let errs = event(|e| e["involvedObject"]["namespace"] = json!("other")).validate();
        assert_eq!(
            only(&errs, "involvedObject.namespace").detail,
            "does not match event.namespace"
        );
        let node_event = event(|e| {
            e["involvedObject"] = json!({"kind": "Node", "name": "node-1"});
        });
        assert_eq!(node_event.validate(), vec![]);
    }

    #[test]
    fn an_event_type_is_normal_or_warning() {
        let errs = event(|e| e["type"] = json!("Error")).validate();
        only(&errs, "type");
    }

    #[test]
    fn a_new_style_event_has_bounded_fields_and_a_reporter() {
        let errs = event(|e| {
            e["eventTime"] = json!("2024-05-01T10:00:00.000000Z");
            e["reason"] = json!("x".repeat(129));
        })
        .validate();
        assert_eq!(paths(&errs), ["reason", "reportingComponent"]);
    }

    #[test]
    fn lease_durations_are_positive_and_transitions_not_negative() {
        let lease: Lease = from_json(json!({
            "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": "node-1", "leaseDurationSeconds": 40,
                "renewTime": "2024-05-01T10:00:00.000000Z", "leaseTransitions": 0
            }
        }));
        assert_eq!(lease.validate(), vec![]);
        let mut bad = lease.clone();
        if let Some(spec) = bad.spec.as_mut() {
            spec.lease_duration_seconds = Some(0);
            spec.lease_transitions = Some(-1);
            spec.preferred_holder = Some("node-2".into());
        }
        let errs = bad.validate();
        assert_eq!(
            paths(&errs),
            [
                "spec.leaseDurationSeconds",
                "spec.leaseTransitions",
                "spec.preferredHolder"
            ]
        );
        assert_eq!(errs[0].detail, "must be greater than 0");
    }
}
