//! A StatefulSet's stable identities (Kubernetes' `stateful_set_utils.go`), pure:
//!
//! ```text
//!  pod    <set>-<ordinal>            hostname = its name, subdomain = spec.serviceName
//!         labels  statefulset.kubernetes.io/pod-name = <set>-<ordinal>
//!                 apps.kubernetes.io/pod-index       = <ordinal>
//!                 controller-revision-hash           = <revision name> (<set>-<hash>)
//!  claims <template>-<set>-<ordinal>  one per volumeClaimTemplate, mounted as volume <template>
//! ```
//!
//! An ordinal is read back only from the exact form `<set>-<decimal>` (no sign, no leading
//! zero, within `i32` as Kubernetes parses it), so no two names map to one ordinal.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    self, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::pods::cached::Pod;

pub use crate::controllers::daemonset::placement::REVISION_HASH_LABEL;

/// The label naming a StatefulSet pod (per-pod Services select on it).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label carrying a StatefulSet pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// `persistentVolumeClaimRetentionPolicy`: whether a pod's claims go with the set
/// (`whenDeleted: Delete`) and with the pod when it is scaled away (`whenScaled: Delete`).
/// Unset is Retain; an unknown value makes the whole policy Retain, as in Kubernetes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub delete_when_deleted: bool,
    pub delete_when_scaled: bool,
}

impl Retention {
    pub fn of(spec: &StatefulSetSpec) -> Self {
        let policy = spec
            .persistent_volume_claim_retention_policy
            .clone()
            .unwrap_or_default();
        let delete = |value: Option<&str>| match value {
            None | Some("Retain") => Some(false),
            Some("Delete") => Some(true),
            Some(_) => None,
        };
        match (
            delete(policy.when_deleted.as_deref()),
            delete(policy.when_scaled.as_deref()),
        ) {
            (Some(delete_when_deleted), Some(delete_when_scaled)) => Self {
                delete_when_deleted,
                delete_when_scaled,
            },
            _ => Self::default(),
        }
    }

    /// Retain on both counts: the controller leaves claim owners alone.
    pub fn retains_all(self) -> bool {
        !self.delete_when_deleted && !self.delete_when_scaled
    }

    /// Whether a claim of a pod whose ordinal is (`in_range`) or is not in the set's range is
    /// owned by the set, so that it goes when the set goes.
    pub fn owned_by_set(self, in_range: bool) -> bool {
        self.delete_when_deleted && (in_range || !self.delete_when_scaled)
    }

    /// Whether such a claim is owned by its pod, so that it goes when the scaled-away pod goes.
    pub fn owned_by_pod(self, in_range: bool) -> bool {
        self.delete_when_scaled && !in_range
    }
}

/// What names a StatefulSet's pods and claims.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// `spec.serviceName`: every pod's subdomain.
    pub service_name: String,
    /// `spec.selector.matchLabels`: copied onto every claim.
    pub match_labels: BTreeMap<String, String>,
    pub claim_templates: Vec<PersistentVolumeClaim>,
    pub retention: Retention,
}

impl Identity {
    pub fn of(set: &StatefulSet) -> Self {
        let spec = set.spec.as_ref();
        Self {
            name: set.metadata.name.clone().unwrap_or_default(),
            namespace: set.metadata.namespace.clone().unwrap_or_default(),
            uid: set.metadata.uid.clone().unwrap_or_default(),
            service_name: spec
                .and_then(|s| s.service_name.clone())
                .unwrap_or_default(),
            match_labels: spec
                .and_then(|s| s.selector.match_labels.clone())
                .unwrap_or_default(),
            claim_templates: spec
                .and_then(|s| s.volume_claim_templates.clone())
                .unwrap_or_default(),
            retention: spec.map(Retention::of).unwrap_or_default(),
        }
    }

    /// The controller reference its pods and revisions carry.
    pub fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    pub fn pod_name(&self, ordinal: i64) -> String {
        format!("{}-{ordinal}", self.name)
    }

    /// The ordinal of a pod named exactly `<set>-<ordinal>`; `None` for any other name.
    pub fn ordinal_of(&self, pod_name: &str) -> Option<i64> {
        let digits = pod_name
            .strip_prefix(self.name.as_str())?
            .strip_prefix('-')?;
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        if !canonical {
            return None;
        }
        digits.parse::<i32>().ok().map(i64::from)
    }

    /// `<template>-<set>-<ordinal>`.
    pub fn claim_name(&self, template: &PersistentVolumeClaim, ordinal: i64) -> String {
        let template = template.metadata.name.as_deref().unwrap_or("");
        format!("{template}-{}-{ordinal}", self.name)
    }

    /// The names of the claims the pod of `ordinal` mounts, in template order.
    pub fn claim_names(&self, ordinal: i64) -> Vec<String> {
        self.claim_templates
            .iter()
            .map(|t| self.claim_name(t, ordinal))
            .collect()
    }

    /// The claims of the pod of `ordinal` as they are created: the template with its name,
    /// the set's namespace, the template's labels plus the selector's `matchLabels`, and the
    /// set as controller when the retention policy deletes claims with the set (a new pod is
    /// in range, so never its own pod as owner: that comes when it is scaled away).
    pub fn new_claims(&self, ordinal: i64) -> Vec<PersistentVolumeClaim> {
        self.claim_templates
            .iter()
            .map(|template| {
                let mut labels = template.metadata.labels.clone().unwrap_or_default();
                labels.extend(self.match_labels.clone());
                let mut owners = template
                    .metadata
                    .owner_references
                    .clone()
                    .unwrap_or_default();
                if self.retention.owned_by_set(true) {
                    owners.push(self.owner_reference());
                }
                PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some(self.claim_name(template, ordinal)),
                        namespace: Some(self.namespace.clone()),
                        labels: Some(labels),
                        annotations: template.metadata.annotations.clone(),
                        finalizers: template.metadata.finalizers.clone(),
                        owner_references: Some(owners).filter(|o| !o.is_empty()),
                        ..ObjectMeta::default()
                    },
                    spec: template.spec.clone(),
                    status: None,
                }
            })
            .collect()
    }

    /// The pod of `ordinal` from `template` (the set's template at `revision`): named,
    /// labelled, with hostname and subdomain, controlled by the set, and mounting its claims.
    /// A template volume named like a claim template gives way to the claim, as in Kubernetes.
    pub fn new_pod(&self, template: &PodTemplateSpec, revision: &str, ordinal: i64) -> v1::Pod {
        let meta = template.metadata.clone().unwrap_or_default();
        let name = self.pod_name(ordinal);
        let mut labels = meta.labels.unwrap_or_default();
        labels.insert(POD_NAME_LABEL.to_string(), name.clone());
        labels.insert(POD_INDEX_LABEL.to_string(), ordinal.to_string());
        labels.insert(REVISION_HASH_LABEL.to_string(), revision.to_string());
        let mut spec = template.spec.clone().unwrap_or_default();
        spec.hostname = Some(name.clone());
        spec.subdomain = Some(self.service_name.clone()).filter(|s| !s.is_empty());
        let mut volumes: Vec<v1::Volume> = self
            .claim_templates
            .iter()
            .map(|t| v1::Volume {
                name: t.metadata.name.clone().unwrap_or_default(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: self.claim_name(t, ordinal),
                    read_only: None,
                }),
                ..v1::Volume::default()
            })
            .collect();
        let claimed: Vec<String> = volumes.iter().map(|v| v.name.clone()).collect();
        volumes.extend(
            spec.volumes
                .take()
                .into_iter()
                .flatten()
                .filter(|v| !claimed.contains(&v.name)),
        );
        spec.volumes = Some(volumes).filter(|v| !v.is_empty());
        v1::Pod {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels),
                annotations: meta.annotations,
                finalizers: meta.finalizers,
                owner_references: Some(vec![self.owner_reference()]),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
            status: None,
        }
    }

    /// The identity labels an existing pod of `ordinal` lacks or has wrong (an adopted
    /// orphan, a hand-edited pod), to merge into its labels; `None` when it has them.
    pub fn missing_labels(&self, pod: &Pod, ordinal: i64) -> Option<BTreeMap<String, String>> {
        let want = [
            (POD_NAME_LABEL, self.pod_name(ordinal)),
            (POD_INDEX_LABEL, ordinal.to_string()),
        ];
        let have = pod.metadata.labels.as_ref();
        let missing: BTreeMap<String, String> = want
            .into_iter()
            .filter(|(key, value)| have.and_then(|l| l.get(*key)) != Some(value))
            .map(|(key, value)| (key.to_string(), value))
            .collect();
        Some(missing).filter(|m| !m.is_empty())
    }
}

/// The revision a pod was made from: its `controller-revision-hash` label, which for a
/// StatefulSet holds the revision's name.
pub fn revision_of(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .map_or("", String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn web(policy: serde_json::Value) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": { "name": "web", "namespace": "default", "uid": "sts-uid" },
            "spec": {
                "serviceName": "nginx",
                "selector": { "matchLabels": { "app": "nginx" } },
                "persistentVolumeClaimRetentionPolicy": policy,
                "template": {
                    "metadata": { "labels": { "app": "nginx" } },
                    "spec": { "containers": [{ "name": "nginx", "image": "nginx" }],
                              "volumes": [{ "name": "www", "emptyDir": {} },
                                          { "name": "cache", "emptyDir": {} }] } },
                "volumeClaimTemplates": [{
                    "metadata": { "name": "www", "labels": { "disk": "ssd" } },
                    "spec": { "accessModes": ["ReadWriteOnce"],
                              "resources": { "requests": { "storage": "1Gi" } } } }]
            }
        }))
        .unwrap()
    }

    #[test]
    fn only_the_exact_name_form_has_an_ordinal() {
        let id = Identity::of(&web(json!({})));
        let table = [
            ("web-0", Some(0)),
            ("web-12", Some(12)),
            ("web-012", None),
            ("web-", None),
            ("web-1-2", None),
            ("web-+1", None),
            ("webby-1", None),
            ("web-99999999999", None),
            ("other-1", None),
        ];
        for (name, ordinal) in table {
            assert_eq!(id.ordinal_of(name), ordinal, "{name}");
        }
        let dashed = Identity {
            name: "web-1".into(),
            ..Identity::default()
        };
        assert_eq!(dashed.ordinal_of("web-1-2"), Some(2));
    }

    #[test]
    fn a_new_pod_carries_its_identity_and_mounts_its_claims() {
        let set = web(json!({}));
        let id = Identity::of(&set);
        let pod = id.new_pod(&set.spec.clone().unwrap().template, "web-abc", 3);
        assert_eq!(pod.metadata.name.as_deref(), Some("web-3"));
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!(labels[POD_NAME_LABEL], "web-3");
        assert_eq!(labels[POD_INDEX_LABEL], "3");
        assert_eq!(labels[REVISION_HASH_LABEL], "web-abc");
        assert_eq!(labels["app"], "nginx");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-3"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let volumes = spec.volumes.unwrap();
        let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            ["www", "cache"],
            "the claim replaces the template's www"
        );
        let claim = volumes[0].persistent_volume_claim.as_ref().unwrap();
        assert_eq!(claim.claim_name, "www-web-3");
        let owner = &pod.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("StatefulSet", "sts-uid", Some(true))
        );
    }

    #[test]
    fn new_claims_are_labelled_by_the_selector_and_owned_as_the_policy_says() {
        let table = [
            (json!({}), false),
            (
                json!({ "whenDeleted": "Retain", "whenScaled": "Delete" }),
                false,
            ),
            (
                json!({ "whenDeleted": "Delete", "whenScaled": "Retain" }),
                true,
            ),
            (
                json!({ "whenDeleted": "Delete", "whenScaled": "Delete" }),
                true,
            ),
            (
                json!({ "whenDeleted": "Delete", "whenScaled": "Sometimes" }),
                false,
            ),
        ];
        for (policy, owned_by_set) in table {
            let id = Identity::of(&web(policy.clone()));
            let claims = id.new_claims(1);
            assert_eq!(claims.len(), 1);
            let claim = &claims[0];
            assert_eq!(claim.metadata.name.as_deref(), Some("www-web-1"));
            assert_eq!(claim.metadata.namespace.as_deref(), Some("default"));
            let labels = claim.metadata.labels.clone().unwrap();
            assert_eq!(
                (labels["app"].as_str(), labels["disk"].as_str()),
                ("nginx", "ssd")
            );
            let owners = claim.metadata.owner_references.clone().unwrap_or_default();
            assert_eq!(!owners.is_empty(), owned_by_set, "{policy}");
            assert!(owners.iter().all(|o| o.uid == "sts-uid"));
        }
    }

    #[test]
    fn retention_says_who_owns_a_claim_in_and_out_of_range() {
        let policy = |deleted: bool, scaled: bool| Retention {
            delete_when_deleted: deleted,
            delete_when_scaled: scaled,
        };
        // (policy, in range) -> (owned by the set, owned by the pod)
        let table = [
            (policy(false, false), true, (false, false)),
            (policy(false, false), false, (false, false)),
            (policy(true, false), true, (true, false)),
            (policy(true, false), false, (true, false)),
            (policy(false, true), true, (false, false)),
            (policy(false, true), false, (false, true)),
            (policy(true, true), true, (true, false)),
            (policy(true, true), false, (false, true)),
        ];
        for (p, in_range, owners) in table {
            assert_eq!(
                (p.owned_by_set(in_range), p.owned_by_pod(in_range)),
                owners,
                "{p:?} in range {in_range}"
            );
        }
    }

    #[test]
    fn an_adopted_pod_gets_the_labels_it_lacks() {
        let id = Identity::of(&web(json!({})));
        let mut pod = Pod::default();
        pod.metadata.labels = Some([(POD_NAME_LABEL.to_string(), "web-2".to_string())].into());
        let missing = id.missing_labels(&pod, 2).unwrap();
        assert_eq!(
            missing,
            BTreeMap::from([(POD_INDEX_LABEL.to_string(), "2".to_string())])
        );
        pod.metadata.labels.as_mut().unwrap().extend(missing);
        assert_eq!(id.missing_labels(&pod, 2), None);
    }
}
