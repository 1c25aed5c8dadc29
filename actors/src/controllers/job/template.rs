//! The pods a Job creates: its template plus the labels, annotation, finalizer, owner
//! reference, and (Indexed mode) completion index, hostname and environment that Kubernetes'
//! Job controller gives them. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{self, EnvVar, EnvVarSource, ObjectFieldSelector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::pods::cached::Pod;

/// The label (and legacy `controller-uid`) carrying the Job's uid.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The label (and legacy `job-name`) carrying the Job's name.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// The annotation and label carrying an Indexed Job pod's index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The environment variable an Indexed Job pod reads its index from.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Held by every Job pod until the controller has counted its end in the Job's status, so a
/// pod deleted right after it finished is still counted, once.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

/// The owner reference Job pods carry.
pub fn owner_reference(job: &Job) -> OwnerReference {
    OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job.metadata.name.clone().unwrap_or_default(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The labels that tie a pod to its Job, new and legacy names.
pub fn job_labels(job: &Job) -> BTreeMap<String, String> {
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    BTreeMap::from([
        (CONTROLLER_UID_LABEL.to_string(), uid.clone()),
        (JOB_NAME_LABEL.to_string(), name.clone()),
        ("controller-uid".to_string(), uid),
        ("job-name".to_string(), name),
    ])
}

/// A new pod from the Job's template; `index` for an Indexed Job. Named by the API from
/// `<job>-` (`<job>-<index>-` when indexed).
pub fn new_pod(job: &Job, index: Option<u32>) -> v1::Pod {
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let spec = job.spec.clone().unwrap_or_default();
    let template = spec.template.metadata.unwrap_or_default();
    let mut labels = template.labels.unwrap_or_default();
    labels.extend(job_labels(job));
    let mut annotations = template.annotations.unwrap_or_default();
    let mut finalizers = template.finalizers.unwrap_or_default();
    finalizers.push(TRACKING_FINALIZER.to_string());
    let mut pod_spec = spec.template.spec;
    let mut generate_name = format!("{job_name}-");
    if let Some(index) = index {
        generate_name = format!("{job_name}-{index}-");
        labels.insert(COMPLETION_INDEX.to_string(), index.to_string());
        annotations.insert(COMPLETION_INDEX.to_string(), index.to_string());
        if let Some(pod_spec) = pod_spec.as_mut() {
            if pod_spec.hostname.is_none() {
                pod_spec.hostname = Some(format!("{job_name}-{index}"));
            }
            let containers = pod_spec.containers.iter_mut();
            let init = pod_spec.init_containers.iter_mut().flatten();
            for container in containers.chain(init) {
                container.env.get_or_insert_with(Vec::new).push(index_env());
            }
        }
    }
    v1::Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations).filter(|a| !a.is_empty()),
            finalizers: Some(finalizers),
            owner_references: Some(vec![owner_reference(job)]),
            ..ObjectMeta::default()
        },
        spec: pod_spec,
        status: None,
    }
}

/// `JOB_COMPLETION_INDEX` from the pod's annotation, as Kubernetes sets it.
fn index_env() -> EnvVar {
    EnvVar {
        name: COMPLETION_INDEX_ENV.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// The completion index a pod carries (annotation first, then label), if valid.
pub fn completion_index(pod: &Pod) -> Option<u32> {
    let from = |map: &Option<BTreeMap<String, String>>| {
        map.as_ref()?.get(COMPLETION_INDEX)?.parse::<u32>().ok()
    };
    from(&pod.metadata.annotations).or_else(|| from(&pod.metadata.labels))
}

/// Whether the pod still holds the tracking finalizer.
pub fn is_tracked(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "pi", "namespace": "default", "uid": "job-uid" },
            "spec": { "template": {
                "metadata": { "labels": { "app": "pi" } },
                "spec": { "restartPolicy": "Never",
                          "containers": [{ "name": "c", "image": "busybox" }] } } }
        }))
        .unwrap()
    }

    #[test]
    fn job_pods_carry_labels_finalizer_and_owner() {
        let pod = new_pod(&job(), None);
        let labels = pod.metadata.labels.as_ref().unwrap();
        for (key, value) in [
            ("app", "pi"),
            (CONTROLLER_UID_LABEL, "job-uid"),
            (JOB_NAME_LABEL, "pi"),
            ("controller-uid", "job-uid"),
            ("job-name", "pi"),
        ] {
            assert_eq!(labels.get(key).map(String::as_str), Some(value), "{key}");
        }
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-"));
        assert!(is_tracked(&Pod::from(&pod)));
        assert_eq!(pod.metadata.owner_references.unwrap()[0].kind, "Job");
        assert_eq!(completion_index(&Pod::from(new_pod(&job(), None))), None);
    }

    #[test]
    fn indexed_pods_carry_their_index_hostname_and_env() {
        let pod = new_pod(&job(), Some(3));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-3-"));
        assert_eq!(completion_index(&Pod::from(&pod)), Some(3));
        assert_eq!(
            pod.metadata
                .labels
                .as_ref()
                .unwrap()
                .get(COMPLETION_INDEX)
                .map(String::as_str),
            Some("3")
        );
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-3"));
        let env = &spec.containers[0].env.as_ref().unwrap()[0];
        assert_eq!(env.name, COMPLETION_INDEX_ENV);
        assert_eq!(
            env.value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
    }
}
