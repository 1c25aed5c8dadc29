//! The built-in local-path provisioner (k3s ships one, `rancher.io/local-path`): a claim of a
//! class whose provisioner is [`LOCAL_PATH_PROVISIONER`] gets a hostPath volume on the node
//! the scheduler selected for its first pod, pinned there by node affinity. Pure: what the
//! PersistentVolume is, or why there is none; the controller creates it and binds the claim.
//!
//! ```text
//!  claim (unbound, class C) ─ C.provisioner ─ rudder.io/local-path ─ selected node N?
//!      ├─ yes ─► PV pvc-<claim uid>: hostPath /var/lib/rudder/storage/pvc-<uid>_<ns>_<claim>
//!      │         (cut to 255 bytes; DirectoryOrCreate), capacity = request, the claim's
//!      │         access modes, node affinity kubernetes.io/hostname In [N], claimRef, C's
//!      │         reclaim policy
//!      ├─ no (an Immediate class) ─► Failed: a local volume needs a node
//!      ├─ a claim no directory can serve (selector, data source, Block, shared access
//!      │  modes, no size) ─► Failed ([`refusal`]; the scheduler asks it too, and keeps
//!      │  such a claim's pod Pending rather than select a node for it)
//!      └─ another provisioner ─► External: it is someone else's to make
//! ```
//!
//! The directory is made by the kubelet when the first pod mounts it (world-writable, as
//! k3s's provisioner makes it); nothing here touches a node's disk.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rudder_proto::objects::storage::{
    BOUND_BY_CONTROLLER_ANNOTATION, HOSTNAME_LABEL, LOCAL_PATH_PROVISIONER, LOCAL_PATH_ROOT,
    PROVISIONED_BY_ANNOTATION, RECLAIM_DELETE,
};

/// The access modes a directory on one node can honour.
const LOCAL_ACCESS_MODES: &[&str] = &["ReadWriteOnce", "ReadWriteOncePod"];
/// The longest name of a directory entry on Linux file systems (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// What provisioning a claim comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Provisioning {
    /// The volume to create; the binder binds the claim to it once it is seen.
    Create(Box<PersistentVolume>),
    /// The class's provisioner is not built in: an external one (or an administrator) makes
    /// the volume.
    External { provisioner: String },
    /// It cannot be done as the claim and class stand; the reason, for a
    /// `ProvisioningFailed` event.
    Failed(String),
}

/// The node a claim's volume goes on: its name and the value of its
/// `kubernetes.io/hostname` label (the node's name when it has none, or is not known yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub node: &'a str,
    pub hostname: &'a str,
}

/// The name of the volume provisioned for a claim (`pvc-<claim uid>`), so a retried
/// provisioning finds the volume it already made.
pub fn volume_name(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or_default())
}

/// The directory of the volume provisioned for `claim`, under [`LOCAL_PATH_ROOT`]:
/// `pvc-<uid>_<namespace>_<claim>`, as k3s's provisioner names it, cut to [`NAME_MAX`] bytes
/// (a claim's name may be 253 bytes long; the uid keeps a cut name unique).
pub fn directory_name(claim: &PersistentVolumeClaim) -> String {
    let namespace = claim.metadata.namespace.as_deref().unwrap_or_default();
    let claim_name = claim.metadata.name.as_deref().unwrap_or_default();
    let mut name = format!("{}_{namespace}_{claim_name}", volume_name(claim));
    let mut cut = name.len().min(NAME_MAX);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    name.truncate(cut);
    name
}

/// Why no directory the built-in provisioner makes can serve `claim`, on any node: a
/// selector, a data source, Block mode, an access mode a single node cannot honour, or no
/// size; `None` when one can.
pub fn refusal(claim: &PersistentVolumeClaim) -> Option<String> {
    let spec = claim.spec.as_ref();
    if spec.is_some_and(|s| s.selector.is_some()) {
        return Some("claim.Spec.Selector is not supported for dynamic provisioning".into());
    }
    if spec.is_some_and(|s| s.data_source.is_some() || s.data_source_ref.is_some()) {
        return Some(format!(
            "{LOCAL_PATH_PROVISIONER} cannot fill a volume from a data source: remove \
             spec.dataSource"
        ));
    }
    if spec.and_then(|s| s.volume_mode.as_deref()) == Some("Block") {
        return Some(format!(
            "{LOCAL_PATH_PROVISIONER} makes Filesystem volumes only, not Block"
        ));
    }
    let modes = spec
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default();
    if let Some(mode) = modes
        .iter()
        .find(|m| !LOCAL_ACCESS_MODES.contains(&m.as_str()))
    {
        return Some(format!(
            "{LOCAL_PATH_PROVISIONER} volumes live on one node and support only the \
             ReadWriteOnce and ReadWriteOncePod access modes, not {mode}"
        ));
    }
    let size = spec
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"));
    if size.is_none() {
        return Some("the claim requests no storage size (spec.resources.requests.storage)".into());
    }
    None
}

/// Provisions `claim` of `class` on `target` (the node selected for its first pod; `None`
/// when none is).
pub fn provision(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    target: Option<Target<'_>>,
) -> Provisioning {
    if class.provisioner != LOCAL_PATH_PROVISIONER {
        return Provisioning::External {
            provisioner: class.provisioner.clone(),
        };
    }
    match local_path_volume(claim, class, target) {
        Ok(volume) => Provisioning::Create(Box::new(volume)),
        Err(why) => Provisioning::Failed(why),
    }
}

/// The hostPath volume for `claim` on `target`, or why there can be none.
fn local_path_volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    target: Option<Target<'_>>,
) -> Result<PersistentVolume, String> {
    let Some(target) = target else {
        return Err(format!(
            "{LOCAL_PATH_PROVISIONER} makes a directory on one node and no node was selected \
             for this claim: give the class volumeBindingMode WaitForFirstConsumer, so the \
             claim is provisioned where its first pod is scheduled"
        ));
    };
    if let Some(why) = refusal(claim) {
        return Err(why);
    }
    let spec = claim.spec.clone().unwrap_or_default();
    let modes = spec.access_modes.clone().unwrap_or_default();
    let Some(size) = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
    else {
        return Err("the claim requests no storage size (spec.resources.requests.storage)".into());
    };
    let namespace = claim.metadata.namespace.clone().unwrap_or_default();
    let claim_name = claim.metadata.name.clone().unwrap_or_default();
    let name = volume_name(claim);
    let path = format!("{LOCAL_PATH_ROOT}/{}", directory_name(claim));
    let annotations = BTreeMap::from([
        (
            PROVISIONED_BY_ANNOTATION.to_string(),
            LOCAL_PATH_PROVISIONER.to_string(),
        ),
        (
            BOUND_BY_CONTROLLER_ANNOTATION.to_string(),
            "yes".to_string(),
        ),
    ]);
    Ok(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: Some(modes),
            capacity: Some(BTreeMap::from([("storage".to_string(), size)])),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(namespace),
                name: Some(claim_name),
                uid: claim.metadata.uid.clone(),
                resource_version: claim.metadata.resource_version.clone(),
                field_path: None,
            }),
            host_path: Some(HostPathVolumeSource {
                path,
                type_: Some("DirectoryOrCreate".into()),
            }),
            mount_options: class.mount_options.clone(),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME_LABEL.to_string(),
                            operator: "In".to_string(),
                            values: Some(vec![target.hostname.to_string()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| RECLAIM_DELETE.to_string()),
            ),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: Some("Filesystem".into()),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rudder_proto::objects::storage::default_storage_class;
    use serde_json::{json, Value};

    fn claim(change: impl FnOnce(&mut Value)) -> PersistentVolumeClaim {
        let mut value = json!({
            "metadata": { "name": "data-web-0", "namespace": "default", "uid": "u-1",
                          "resourceVersion": "7" },
            "spec": { "accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                      "volumeMode": "Filesystem",
                      "resources": { "requests": { "storage": "1Gi" } } }
        });
        change(&mut value);
        serde_json::from_value(value).expect("a test claim decodes")
    }

    const N1: Target<'static> = Target {
        node: "n1",
        hostname: "n1.local",
    };

    #[test]
    fn a_local_path_claim_gets_a_directory_pinned_to_its_node() {
        let Provisioning::Create(volume) =
            provision(&claim(|_| {}), &default_storage_class(), Some(N1))
        else {
            panic!("a volume");
        };
        let volume = serde_json::to_value(&volume).expect("encodes");
        assert_eq!(
            volume,
            json!({
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": { "name": "pvc-u-1", "annotations": {
                    "pv.kubernetes.io/provisioned-by": "rudder.io/local-path",
                    "pv.kubernetes.io/bound-by-controller": "yes" } },
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "capacity": { "storage": "1Gi" },
                    "claimRef": { "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                  "namespace": "default", "name": "data-web-0", "uid": "u-1",
                                  "resourceVersion": "7" },
                    "hostPath": { "path": "/var/lib/rudder/storage/pvc-u-1_default_data-web-0",
                                  "type": "DirectoryOrCreate" },
                    "nodeAffinity": { "required": { "nodeSelectorTerms": [{ "matchExpressions": [
                        { "key": "kubernetes.io/hostname", "operator": "In",
                          "values": ["n1.local"] }] }] } },
                    "persistentVolumeReclaimPolicy": "Delete",
                    "storageClassName": "local-path",
                    "volumeMode": "Filesystem"
                }
            })
        );
    }

    #[test]
    fn what_a_local_directory_cannot_be_is_refused_and_other_provisioners_are_external() {
        let class = default_storage_class();
        let table: Vec<(&str, PersistentVolumeClaim, Option<Target<'_>>, &str)> = vec![
            ("no node", claim(|_| {}), None, "no node was selected"),
            (
                "shared",
                claim(|c| c["spec"]["accessModes"] = json!(["ReadWriteMany"])),
                Some(N1),
                "not ReadWriteMany",
            ),
            (
                "a block device",
                claim(|c| c["spec"]["volumeMode"] = json!("Block")),
                Some(N1),
                "Filesystem volumes only",
            ),
            (
                "a selector",
                claim(|c| c["spec"]["selector"] = json!({ "matchLabels": { "a": "b" } })),
                Some(N1),
                "Selector is not supported",
            ),
            (
                "a data source",
                claim(|c| {
                    c["spec"]["dataSource"] =
                        json!({ "kind": "PersistentVolumeClaim", "name": "other" })
                }),
                Some(N1),
                "cannot fill a volume from a data source",
            ),
            (
                "no size",
                claim(|c| c["spec"]["resources"] = json!({})),
                Some(N1),
                "requests no storage size",
            ),
        ];
        for (why, claim, target, expected) in table {
            match provision(&claim, &class, target) {
                Provisioning::Failed(message) => {
                    assert!(message.contains(expected), "{why}: {message}");
                    if target.is_some() {
                        assert_eq!(refusal(&claim), Some(message), "{why}: on any node");
                    }
                }
                other => panic!("{why}: {other:?}"),
            }
        }
        assert_eq!(refusal(&claim(|_| {})), None);
        let mut nfs = class;
        nfs.provisioner = "example.com/nfs".into();
        assert_eq!(
            provision(&claim(|_| {}), &nfs, Some(N1)),
            Provisioning::External {
                provisioner: "example.com/nfs".into()
            }
        );
    }

    #[test]
    fn a_long_claim_name_is_cut_to_a_directory_name_that_fits() {
        let long = "d".repeat(253);
        let long_claim = claim(|c| c["metadata"]["name"] = json!(long));
        let name = directory_name(&long_claim);
        assert_eq!(name.len(), NAME_MAX);
        assert!(name.starts_with("pvc-u-1_default_ddd"), "{name}");
        let Provisioning::Create(volume) =
            provision(&long_claim, &default_storage_class(), Some(N1))
        else {
            panic!("a volume");
        };
        let path = volume
            .spec
            .and_then(|s| s.host_path)
            .map(|h| h.path)
            .expect("a hostPath");
        assert_eq!(path, format!("{LOCAL_PATH_ROOT}/{name}"));
        assert_eq!(
            directory_name(&claim(|_| {})),
            "pvc-u-1_default_data-web-0",
            "a short name is kept whole"
        );
    }

    #[test]
    fn a_class_that_retains_gives_its_volumes_retain() {
        let mut class = default_storage_class();
        class.reclaim_policy = Some("Retain".into());
        let Provisioning::Create(volume) = provision(&claim(|_| {}), &class, Some(N1)) else {
            panic!("a volume");
        };
        let spec = volume.spec.expect("a spec");
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Retain")
        );
    }
}
