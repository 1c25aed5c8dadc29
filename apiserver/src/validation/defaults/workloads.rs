//! Defaults of the workload kinds: ReplicationController, the apps/v1 controllers, Job and
//! CronJob. Each also defaults its pod template (see [`pod::template`]).

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ReplicationController;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::super::ApplyDefaults;
use super::fields::default_string;
use super::pod;

/// Old ReplicaSets, ControllerRevisions and the like kept for rollbacks.
const REVISION_HISTORY_LIMIT: i32 = 10;
/// How long a Deployment may go without progress before it is reported as failing.
const PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// Pod failures a Job tolerates before it fails.
const JOB_BACKOFF_LIMIT: i32 = 6;

impl ApplyDefaults for ReplicationController {
    fn apply_defaults(&mut self) {
        let Some(spec) = &mut self.spec else {
            return;
        };
        spec.replicas.get_or_insert(1);
        if let Some(template) = &mut spec.template {
            // An RC without a selector selects, and is labelled as, the pods it makes.
            let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
            if let Some(labels) = labels.filter(|labels| !labels.is_empty()) {
                if spec.selector.as_ref().is_none_or(|s| s.is_empty()) {
                    spec.selector = Some(labels.clone());
                }
                if self.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
                    self.metadata.labels = Some(labels.clone());
                }
            }
            pod::template(template);
        }
    }
}

impl ApplyDefaults for ReplicaSet {
    fn apply_defaults(&mut self) {
        let Some(spec) = &mut self.spec else {
            return;
        };
        spec.replicas.get_or_insert(1);
        if let Some(template) = &mut spec.template {
            pod::template(template);
        }
    }
}

impl ApplyDefaults for Deployment {
    fn apply_defaults(&mut self) {
        let Some(spec) = &mut self.spec else {
            return;
        };
        spec.replicas.get_or_insert(1);
        let strategy = spec.strategy.get_or_insert_with(Default::default);
        default_string(&mut strategy.type_, "RollingUpdate");
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            let rolling = strategy.rolling_update.get_or_insert_with(Default::default);
            let quarter = || IntOrString::String("25%".to_string());
            rolling.max_unavailable.get_or_insert_with(quarter);
            rolling.max_surge.get_or_insert_with(quarter);
        }
        spec.revision_history_limit
            .get_or_insert(REVISION_HISTORY_LIMIT);
        spec.progress_deadline_seconds
            .get_or_insert(PROGRESS_DEADLINE_SECONDS);
        pod::template(&mut spec.template);
    }
}

impl ApplyDefaults for DaemonSet {
    fn apply_defaults(&mut self) {
        let Some(spec) = &mut self.spec else {
            return;
        };
        let strategy = spec.update_strategy.get_or_insert_with(Default::default);
        default_string(&mut strategy.type_, "RollingUpdate");
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            let rolling = strategy.rolling_update.get_or_insert_with(Default::default);
            rolling.max_unavailable.get_or_insert(IntOrString::Int(1));
            rolling.max_surge.get_or_insert(IntOrString::Int(0));
        }
        spec.revision_history_limit
            .get_or_insert(REVISION_HISTORY_LIMIT);
        pod::template(&mut spec.template);
    }
}

impl ApplyDefaults for StatefulSet {
    fn apply_defaults(&mut self) {
        let Some(spec) = &mut self.spec else {
            return;
        };
        default_string(&mut spec.pod_management_policy, "OrderedReady");
        let strategy = spec.update_strategy.get_or_insert_with(Default::default);
        if strategy.type_.as_deref().is_none_or(str::is_empty) {
            strategy.type_ = Some("RollingUpdate".to_string());
            strategy.rolling_update.get_or_insert_with(Default::default);
        }
        // As in Kubernetes, an explicit RollingUpdate without parameters stays without them.
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            if let Some(rolling) = &mut strategy.rolling_update {
                rolling.partition.get_or_insert(0);
            }
        }
        let retention = spec
            .persistent_volume_claim_retention_policy
            .get_or_insert_with(Default::default);
        default_string(&mut retention.when_deleted, "Retain");
        default_string(&mut retention.when_scaled, "Retain");
        spec.replicas.get_or_insert(1);
        spec.revision_history_limit
            .get_or_insert(REVISION_HISTORY_LIMIT);
        for claim in spec.volume_claim_templates.iter_mut().flatten() {
            claim.apply_defaults();
        }
        pod::template(&mut spec.template);
    }
}

impl ApplyDefaults for Job {
    fn apply_defaults(&mut self) {
        let Some(spec) = &mut self.spec else {
            return;
        };
        // A Job with neither runs one pod to completion. With only `completions`, pods run
        // one at a time; with only `parallelism`, it is a work queue and `completions` stays
        // unset.
        if spec.completions.is_none() && spec.parallelism.is_none() {
            spec.completions = Some(1);
        }
        spec.parallelism.get_or_insert(1);
        // With a per-index limit, the global limit would only get in the way.
        let backoff_limit = if spec.backoff_limit_per_index.is_some() {
            i32::MAX
        } else {
            JOB_BACKOFF_LIMIT
        };
        spec.backoff_limit.get_or_insert(backoff_limit);
        let template_labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref());
        if let Some(labels) = template_labels.filter(|labels| !labels.is_empty()) {
            if self.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
                self.metadata.labels = Some(labels.clone());
            }
        }
        spec.completion_mode
            .get_or_insert_with(|| "NonIndexed".to_string());
        spec.suspend.get_or_insert(false);
        let conditions = spec
            .pod_failure_policy
            .iter_mut()
            .flat_map(|policy| policy.rules.iter_mut())
            .flat_map(|rule| rule.on_pod_conditions.iter_mut().flatten());
        for pattern in conditions {
            if pattern.status.is_empty() {
                pattern.status = "True".to_string();
            }
        }
        // A failure policy must see a pod's final state before it is replaced.
        let replacement = if spec.pod_failure_policy.is_some() {
            "Failed"
        } else {
            "TerminatingOrFailed"
        };
        spec.pod_replacement_policy
            .get_or_insert_with(|| replacement.to_string());
        // manualSelector and selector are the registry's: it generates the controller-uid
        // selector once the Job has a uid.
        pod::template(&mut spec.template);
    }
}

impl ApplyDefaults for CronJob {
    fn apply_defaults(&mut self) {
        let Some(spec) = &mut self.spec else {
            return;
        };
        default_string(&mut spec.concurrency_policy, "Allow");
        spec.suspend.get_or_insert(false);
        spec.successful_jobs_history_limit.get_or_insert(3);
        spec.failed_jobs_history_limit.get_or_insert(1);
        // The job template's own defaults arrive when each Job is created; only its pod
        // template is defaulted here, as Kubernetes does.
        if let Some(job) = &mut spec.job_template.spec {
            pod::template(&mut job.template);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fields::defaulted;
    use super::*;

    fn kubia_template() -> serde_json::Value {
        json!({
            "metadata": {"labels": {"app": "kubia"}},
            "spec": {"containers": [{
                "name": "nodejs", "image": "luksa/kubia:v1",
                "ports": [{"containerPort": 8080}]
            }]}
        })
    }

    /// The pod spec defaults every template gets, and Pod-only ones it does not.
    fn assert_template_defaulted(template: &serde_json::Value) {
        let spec = &template["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["securityContext"], json!({}));
        assert!(spec.get("enableServiceLinks").is_none());
        let container = &spec["containers"][0];
        assert_eq!(container["imagePullPolicy"], "IfNotPresent");
        assert_eq!(container["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(container["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn a_replication_controller_selects_and_is_labelled_as_its_template() {
        let rc = defaulted::<ReplicationController>(json!({
            "apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "kubia"},
            "spec": {"template": kubia_template()}
        }));
        assert_eq!(rc["spec"]["replicas"], 1);
        assert_eq!(rc["spec"]["selector"], json!({"app": "kubia"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "kubia"}));
        assert_template_defaulted(&rc["spec"]["template"]);
    }

    #[test]
    fn a_replication_controller_keeps_its_own_selector_labels_and_replicas() {
        let rc = defaulted::<ReplicationController>(json!({
            "metadata": {"name": "kubia", "labels": {"team": "a"}},
            "spec": {"replicas": 0, "selector": {"app": "kubia"}, "template": {
                "metadata": {"labels": {"app": "kubia", "rev": "2"}},
                "spec": {"containers": [{"name": "c", "image": "c:1"}]}
            }}
        }));
        assert_eq!(rc["spec"]["replicas"], 0);
        assert_eq!(rc["spec"]["selector"], json!({"app": "kubia"}));
        assert_eq!(rc["metadata"]["labels"], json!({"team": "a"}));
    }

    #[test]
    fn a_replica_set_runs_one_replica_by_default() {
        let rs = defaulted::<ReplicaSet>(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "kubia"},
            "spec": {"selector": {"matchLabels": {"app": "kubia"}}, "template": kubia_template()}
        }));
        assert_eq!(rs["spec"]["replicas"], 1);
        assert_template_defaulted(&rs["spec"]["template"]);
        assert!(rs["metadata"].get("labels").is_none());
    }

    #[test]
    fn a_deployment_rolls_updates_a_quarter_at_a_time() {
        let deployment = defaulted::<Deployment>(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "kubia"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "kubia"}},
                "template": kubia_template()
            }
        }));
        let spec = &deployment["spec"];
        assert_eq!(spec["replicas"], 3);
        assert_eq!(spec["strategy"]["type"], "RollingUpdate");
        assert_eq!(spec["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], "25%");
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_template_defaulted(&spec["template"]);
    }

    #[test]
    fn a_recreate_deployment_gets_no_rolling_parameters() {
        let deployment = defaulted::<Deployment>(json!({
            "metadata": {"name": "kubia"},
            "spec": {
                "selector": {"matchLabels": {"app": "kubia"}},
                "strategy": {"type": "Recreate"},
                "template": kubia_template()
            }
        }));
        assert_eq!(deployment["spec"]["replicas"], 1);
        assert!(deployment["spec"]["strategy"]
            .get("rollingUpdate")
            .is_none());
    }

    #[test]
    fn a_deployment_keeps_partial_rolling_parameters() {
        let deployment = defaulted::<Deployment>(json!({
            "metadata": {"name": "kubia"},
            "spec": {
                "selector": {"matchLabels": {"app": "kubia"}},
                "strategy": {"rollingUpdate": {"maxSurge": 1}},
                "template": kubia_template()
            }
        }));
        let rolling = &deployment["spec"]["strategy"]["rollingUpdate"];
        assert_eq!(rolling["maxSurge"], 1);
        assert_eq!(rolling["maxUnavailable"], "25%");
    }

    #[test]
    fn a_daemon_set_replaces_one_pod_at_a_time() {
        let daemon_set = defaulted::<DaemonSet>(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "ssd-monitor"},
            "spec": {
                "selector": {"matchLabels": {"app": "kubia"}},
                "template": kubia_template()
            }
        }));
        let spec = &daemon_set["spec"];
        assert_eq!(spec["updateStrategy"]["type"], "RollingUpdate");
        assert_eq!(spec["updateStrategy"]["rollingUpdate"]["maxUnavailable"], 1);
        assert_eq!(spec["updateStrategy"]["rollingUpdate"]["maxSurge"], 0);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_template_defaulted(&spec["template"]);
    }

    #[test]
    fn an_on_delete_daemon_set_gets_no_rolling_parameters() {
        let daemon_set = defaulted::<DaemonSet>(json!({
            "metadata": {"name": "ds"},
            "spec": {
                "selector": {"matchLabels": {"app": "kubia"}},
                "updateStrategy": {"type": "OnDelete"},
                "template": kubia_template()
            }
        }));
        assert!(daemon_set["spec"]["updateStrategy"]
            .get("rollingUpdate")
            .is_none());
    }

    #[test]
    fn a_stateful_set_starts_pods_in_order_and_retains_claims() {
        let stateful_set = defaulted::<StatefulSet>(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "kubia"},
            "spec": {
                "serviceName": "kubia",
                "selector": {"matchLabels": {"app": "kubia"}},
                "template": kubia_template(),
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Mi"}}
                    }
                }]
            }
        }));
        let spec = &stateful_set["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(spec["updateStrategy"]["type"], "RollingUpdate");
        assert_eq!(spec["updateStrategy"]["rollingUpdate"]["partition"], 0);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        let retention = &spec["persistentVolumeClaimRetentionPolicy"];
        assert_eq!(
            retention,
            &json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        let claim = &spec["volumeClaimTemplates"][0];
        assert_eq!(claim["spec"]["volumeMode"], "Filesystem");
        assert_eq!(claim["status"]["phase"], "Pending");
        assert_template_defaulted(&spec["template"]);
    }

    #[test]
    fn a_stateful_set_with_explicit_rolling_update_gets_no_partition() {
        let stateful_set = defaulted::<StatefulSet>(json!({
            "metadata": {"name": "s"},
            "spec": {
                "selector": {"matchLabels": {"app": "kubia"}},
                "updateStrategy": {"type": "RollingUpdate"},
                "template": kubia_template()
            }
        }));
        assert_eq!(
            stateful_set["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate"})
        );
    }

    fn batch_job(spec: serde_json::Value) -> serde_json::Value {
        let mut spec = spec;
        spec["template"] = json!({
            "metadata": {"labels": {"app": "batch-job"}},
            "spec": {
                "restartPolicy": "OnFailure",
                "containers": [{"name": "main", "image": "luksa/batch-job"}]
            }
        });
        defaulted::<Job>(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "batch-job"},
            "spec": spec
        }))
    }

    #[test]
    fn a_job_with_neither_count_runs_one_pod_once() {
        let job = batch_job(json!({}));
        let spec = &job["spec"];
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert!(spec.get("manualSelector").is_none());
        assert!(spec.get("selector").is_none());
        assert_eq!(job["metadata"]["labels"], json!({"app": "batch-job"}));
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "OnFailure");
        let container = &spec["template"]["spec"]["containers"][0];
        assert_eq!(container["imagePullPolicy"], "Always");
    }

    #[test]
    fn a_job_with_only_completions_runs_one_pod_at_a_time() {
        let job = batch_job(json!({"completions": 5}));
        assert_eq!(job["spec"]["completions"], 5);
        assert_eq!(job["spec"]["parallelism"], 1);
    }

    #[test]
    fn a_job_with_only_parallelism_is_a_work_queue() {
        let job = batch_job(json!({"parallelism": 2}));
        assert!(job["spec"].get("completions").is_none());
        assert_eq!(job["spec"]["parallelism"], 2);
    }

    #[test]
    fn per_index_backoff_lifts_the_global_limit() {
        let job = batch_job(json!({
            "completions": 4, "completionMode": "Indexed", "backoffLimitPerIndex": 1
        }));
        assert_eq!(job["spec"]["backoffLimit"], i32::MAX);
        assert_eq!(job["spec"]["completionMode"], "Indexed");
    }

    #[test]
    fn a_pod_failure_policy_waits_for_failed_pods() {
        let job = batch_job(json!({"podFailurePolicy": {"rules": [{
            "action": "Ignore",
            "onPodConditions": [{"type": "DisruptionTarget", "status": ""}]
        }]}}));
        assert_eq!(job["spec"]["podReplacementPolicy"], "Failed");
        let pattern = &job["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0];
        assert_eq!(pattern["status"], "True");
    }

    #[test]
    fn a_cron_job_allows_overlap_and_keeps_some_history() {
        let cron_job = defaulted::<CronJob>(json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "batch-job-every-fifteen-minutes"},
            "spec": {
                "schedule": "0,15,30,45 * * * *",
                "jobTemplate": {"spec": {"template": {
                    "metadata": {"labels": {"app": "periodic-batch-job"}},
                    "spec": {
                        "restartPolicy": "OnFailure",
                        "containers": [{"name": "main", "image": "luksa/batch-job"}]
                    }
                }}}
            }
        }));
        let spec = &cron_job["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Allow");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["successfulJobsHistoryLimit"], 3);
        assert_eq!(spec["failedJobsHistoryLimit"], 1);
        let job_spec = &spec["jobTemplate"]["spec"];
        assert!(job_spec.get("backoffLimit").is_none());
        assert_eq!(
            job_spec["template"]["spec"]["schedulerName"],
            "default-scheduler"
        );
        assert_eq!(job_spec["template"]["spec"]["restartPolicy"], "OnFailure");
    }

    #[test]
    fn every_workload_kind_is_idempotent() {
        // `defaulted` asserts that a second pass changes nothing; these start from the
        // smallest objects, where the most gets filled in.
        let template = kubia_template();
        let selector = json!({"matchLabels": {"app": "kubia"}});
        let meta = json!({"name": "w"});
        defaulted::<ReplicationController>(json!({"metadata": meta, "spec": {}}));
        defaulted::<ReplicationController>(json!({"metadata": meta, "spec": {
            "template": template
        }}));
        for spec in [
            json!({"selector": selector}),
            json!({"selector": selector, "template": template}),
        ] {
            defaulted::<ReplicaSet>(json!({"metadata": meta, "spec": spec}));
        }
        let apps_spec = json!({"selector": selector, "template": template});
        defaulted::<Deployment>(json!({"metadata": meta, "spec": apps_spec}));
        defaulted::<DaemonSet>(json!({"metadata": meta, "spec": apps_spec}));
        defaulted::<StatefulSet>(json!({"metadata": meta, "spec": apps_spec}));
        defaulted::<Job>(json!({"metadata": meta, "spec": {"template": template}}));
        defaulted::<CronJob>(json!({"metadata": meta, "spec": {
            "schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}
        }}));
        defaulted::<Deployment>(json!({"metadata": meta}));
        defaulted::<Job>(json!({"metadata": meta}));
    }
}
