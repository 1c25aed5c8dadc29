//! Rows of PersistentVolume and PersistentVolumeClaim, after kubectl's printers.

use serde_json::Value;

use super::fields::{age_at, array_at, at, is_deleting, name_of, str_at, text_at, text_or};

/// NAME CAPACITY ACCESS MODES RECLAIM POLICY STATUS CLAIM STORAGECLASS VOLUMEATTRIBUTESCLASS
/// REASON AGE, wide VOLUMEMODE.
pub(crate) fn persistent_volume(pv: &Value, now: jiff::Timestamp) -> Vec<String> {
    let claim = at(pv, &["spec", "claimRef"])
        .filter(|c| c.is_object())
        .map_or(String::new(), |c| {
            format!("{}/{}", text_at(c, &["namespace"]), text_at(c, &["name"]))
        });
    let class = match str_at(pv, &["metadata", "annotations", BETA_STORAGE_CLASS]) {
        Some(class) => class,
        None => text_at(pv, &["spec", "storageClassName"]),
    };
    vec![
        name_of(pv),
        quantity(pv, &["spec", "capacity", "storage"]),
        access_modes(array_at(pv, &["spec", "accessModes"])),
        text_at(pv, &["spec", "persistentVolumeReclaimPolicy"]).to_owned(),
        volume_phase(pv),
        claim,
        class.to_owned(),
        text_or(pv, &["spec", "volumeAttributesClassName"], "<unset>").to_owned(),
        text_at(pv, &["status", "reason"]).to_owned(),
        age_at(pv, &["metadata", "creationTimestamp"], now),
        text_or(pv, &["spec", "volumeMode"], "<unset>").to_owned(),
    ]
}

/// NAME STATUS VOLUME CAPACITY ACCESS MODES STORAGECLASS VOLUMEATTRIBUTESCLASS AGE, wide
/// VOLUMEMODE. Capacity and access modes show once the claim is bound to a volume.
pub(crate) fn persistent_volume_claim(pvc: &Value, now: jiff::Timestamp) -> Vec<String> {
    let volume = text_at(pvc, &["spec", "volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(pvc, &["status", "capacity", "storage"]),
            access_modes(array_at(pvc, &["status", "accessModes"])),
        )
    };
    let class = str_at(pvc, &["metadata", "annotations", BETA_STORAGE_CLASS])
        .or_else(|| str_at(pvc, &["spec", "storageClassName"]))
        .unwrap_or("");
    vec![
        name_of(pvc),
        volume_phase(pvc),
        volume.to_owned(),
        capacity,
        modes,
        class.to_owned(),
        text_or(pvc, &["spec", "volumeAttributesClassName"], "<unset>").to_owned(),
        age_at(pvc, &["metadata", "creationTimestamp"], now),
        text_or(pvc, &["spec", "volumeMode"], "<unset>").to_owned(),
    ]
}

/// The legacy annotation that still wins over `storageClassName`.
const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// `Terminating` while being deleted, else the phase (Pending, which the API server sets on
/// create, when unset).
fn volume_phase(volume: &Value) -> String {
    if is_deleting(volume) {
        return "Terminating".into();
    }
    text_or(volume, &["status", "phase"], "Pending").to_owned()
}

/// A resource quantity as stored (`5Gi`); Go's zero quantity prints `0`.
fn quantity(v: &Value, path: &[&str]) -> String {
    match at(v, path) {
        Some(Value::String(q)) => q.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".into(),
    }
}

/// kubectl's `GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that order, deduplicated.
fn access_modes(modes: &[Value]) -> String {
    let has = |mode: &str| modes.iter().any(|m| m.as_str() == Some(mode));
    let short = [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ];
    let present: Vec<&str> = short
        .iter()
        .filter(|(mode, _)| has(mode))
        .map(|(_, s)| *s)
        .collect();
    present.join(",")
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{meta, now};
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bound_persistent_volume_row() {
        let pv = json!({
            "metadata": {"name": "mongodb-pv", "creationTimestamp": "2024-05-19T12:00:00Z"},
            "spec": {"capacity": {"storage": "1Gi"},
                     "accessModes": ["ReadOnlyMany", "ReadWriteOnce", "ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "local",
                     "claimRef": {"namespace": "default", "name": "mongodb-pvc"}},
            "status": {"phase": "Bound"}
        });
        assert_eq!(
            persistent_volume(&pv, now()),
            [
                "mongodb-pv",
                "1Gi",
                "RWO,ROX",
                "Retain",
                "Bound",
                "default/mongodb-pvc",
                "local",
                "<unset>",
                "",
                "13d",
                "<unset>"
            ]
        );
    }

    #[test]
    fn claims_show_capacity_only_once_bound() {
        let mut pvc = json!({
            "metadata": meta("mongodb-pvc"),
            "spec": {"resources": {"requests": {"storage": "1Gi"}},
                     "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                     "volumeMode": "Filesystem"}
        });
        assert_eq!(
            persistent_volume_claim(&pvc, now()),
            [
                "mongodb-pvc",
                "Pending",
                "",
                "",
                "",
                "",
                "<unset>",
                "13d",
                "Filesystem"
            ]
        );
        pvc["spec"]["volumeName"] = json!("mongodb-pv");
        pvc["status"] = json!({"phase": "Bound", "capacity": {"storage": "1Gi"},
                               "accessModes": ["ReadWriteOncePod"]});
        pvc["metadata"]["annotations"] =
            json!({"volume.beta.kubernetes.io/storage-class": "legacy"});
        assert_eq!(
            persistent_volume_claim(&pvc, now())[1..6],
            ["Bound", "mongodb-pv", "1Gi", "RWOP", "legacy"]
        );
        pvc["metadata"]["deletionTimestamp"] = json!("2024-06-01T11:00:00Z");
        assert_eq!(persistent_volume_claim(&pvc, now())[1], "Terminating");
    }
}
