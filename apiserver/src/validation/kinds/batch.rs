//! Job and CronJob (`pkg/apis/batch/validation`).

use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};

use super::super::names::{validate_annotations, validate_labels};
use super::super::selector::validate_selector;
use super::super::{FieldError, Validate};
use super::cron::schedule_problem;
use super::pod_spec::{template_restart_policy, validate_template};
use super::{immutable, json, non_negative, one_of, selector_matches_template};

/// Checks a job spec at `path` (`spec`, or a CronJob's `spec.jobTemplate.spec`).
fn job_spec(spec: &JobSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let counts = [
        ("parallelism", spec.parallelism.map(i64::from)),
        ("completions", spec.completions.map(i64::from)),
        ("activeDeadlineSeconds", spec.active_deadline_seconds),
        ("backoffLimit", spec.backoff_limit.map(i64::from)),
        (
            "backoffLimitPerIndex",
            spec.backoff_limit_per_index.map(i64::from),
        ),
        ("maxFailedIndexes", spec.max_failed_indexes.map(i64::from)),
        (
            "ttlSecondsAfterFinished",
            spec.ttl_seconds_after_finished.map(i64::from),
        ),
    ];
    for (field, value) in counts {
        non_negative(&mut errs, format!("{path}.{field}"), value);
    }
    let mode = spec.completion_mode.as_deref();
    one_of(
        &mut errs,
        format!("{path}.completionMode"),
        mode,
        &["NonIndexed", "Indexed"],
    );
    let indexed = mode == Some("Indexed");
    // Each index is one completion, so the count must be known up front.
    if indexed && spec.completions.is_none() {
        errs.push(FieldError::required(
            format!("{path}.completions"),
            "when completion mode is Indexed",
        ));
    }
    if !indexed && spec.backoff_limit_per_index.is_some() {
        errs.push(FieldError::forbidden(
            format!("{path}.backoffLimitPerIndex"),
            "requires indexed completion mode",
        ));
    }
    let replacement = spec.pod_replacement_policy.as_deref();
    let policies = ["TerminatingOrFailed", "Failed"];
    one_of(
        &mut errs,
        format!("{path}.podReplacementPolicy"),
        replacement,
        &policies,
    );

    let template_path = format!("{path}.template");
    // The server may generate the selector (from the job's uid); when given, it must be
    // valid and select the job's own pods.
    if let Some(selector) = &spec.selector {
        match validate_selector(selector, &format!("{path}.selector")) {
            Ok(parsed) => {
                let labels = spec
                    .template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.as_ref());
                selector_matches_template(&mut errs, &parsed, labels, &template_path);
            }
            Err(problems) => errs.extend(problems),
        }
    }
    errs.extend(validate_template(&spec.template, &template_path));
    template_restart_policy(
        &mut errs,
        &spec.template,
        &template_path,
        &["OnFailure", "Never"],
    );
    errs
}

impl Validate for Job {
    fn validate(&self) -> Vec<FieldError> {
        job_spec(&self.spec.clone().unwrap_or_default(), "spec")
    }

    /// A job's pods must all come from one template and be found by one selector, so
    /// neither may change once the job runs; nor may how it counts completions.
    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate();
        let new = self.spec.clone().unwrap_or_default();
        let old = old.spec.clone().unwrap_or_default();
        immutable(&mut errs, "spec.selector", &new.selector, &old.selector);
        immutable(&mut errs, "spec.template", &new.template, &old.template);
        immutable(
            &mut errs,
            "spec.completionMode",
            &new.completion_mode,
            &old.completion_mode,
        );
        // An elastic indexed job scales by changing completions and parallelism together.
        let elastic =
            new.completion_mode.as_deref() == Some("Indexed") && new.completions == new.parallelism;
        if !elastic {
            immutable(
                &mut errs,
                "spec.completions",
                &new.completions,
                &old.completions,
            );
        }
        errs
    }
}

/// Kubernetes' syntactic time zone check: IANA names (`Europe/Paris`, `Etc/GMT+2`), never
/// `Local`. Whether the zone exists is left to the controller's zone database.
fn time_zone(errs: &mut Vec<FieldError>, zone: &str) {
    let path = "spec.timeZone";
    if zone.is_empty() {
        errs.push(FieldError::invalid(
            path,
            zone,
            "timeZone must be nil or non-empty string",
        ));
        return;
    }
    if zone.eq_ignore_ascii_case("local") {
        errs.push(FieldError::invalid(
            path,
            zone,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
        return;
    }
    let part_ok = |part: &str| {
        (1..=14).contains(&part.len())
            && part != "."
            && part != ".."
            && !part.starts_with('-')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
    };
    if !zone.split('/').all(part_ok) {
        errs.push(FieldError::invalid(
            path,
            zone,
            format!("unknown time zone {zone}"),
        ));
    }
}

impl Validate for CronJob {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = self.spec.clone().unwrap_or_default();
        if spec.schedule.is_empty() {
            errs.push(FieldError::required("spec.schedule", ""));
        } else if spec.schedule.contains("TZ") {
            // Time zones in the schedule were never supported; `timeZone` is.
            errs.push(FieldError::invalid(
                "spec.schedule",
                &spec.schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        } else if let Some(problem) = schedule_problem(&spec.schedule) {
            errs.push(FieldError::invalid(
                "spec.schedule",
                &spec.schedule,
                problem,
            ));
        }
        if let Some(zone) = &spec.time_zone {
            time_zone(&mut errs, zone);
        }
        let policy = spec.concurrency_policy.as_deref();
        one_of(
            &mut errs,
            "spec.concurrencyPolicy",
            policy,
            &["Allow", "Forbid", "Replace"],
        );
        let counts = [
            ("startingDeadlineSeconds", spec.starting_deadline_seconds),
            (
                "successfulJobsHistoryLimit",
                spec.successful_jobs_history_limit.map(i64::from),
            ),
            (
                "failedJobsHistoryLimit",
                spec.failed_jobs_history_limit.map(i64::from),
            ),
        ];
        for (field, value) in counts {
            non_negative(&mut errs, format!("spec.{field}"), value);
        }

        let template = &spec.job_template;
        if let Some(meta) = &template.metadata {
            if let Some(labels) = &meta.labels {
                errs.extend(validate_labels(labels, "spec.jobTemplate.metadata.labels"));
            }
            if let Some(annotations) = &meta.annotations {
                let path = "spec.jobTemplate.metadata.annotations";
                errs.extend(validate_annotations(annotations, path));
            }
        }
        let job = template.spec.clone().unwrap_or_default();
        errs.extend(job_spec(&job, "spec.jobTemplate.spec"));
        // Each run's job gets a selector generated from its own uid.
        if let Some(selector) = &job.selector {
            errs.push(FieldError::invalid(
                "spec.jobTemplate.spec.selector",
                json(selector),
                "`selector` will be auto-generated",
            ));
        }
        if job.manual_selector == Some(true) {
            errs.push(FieldError::not_supported(
                "spec.jobTemplate.spec.manualSelector",
                true,
                &["nil", "false"],
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

    /// The pi Job of the Kubernetes docs.
    fn job(change: impl FnOnce(&mut serde_json::Value)) -> Job {
        let mut value = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi"},
            "spec": {
                "backoffLimit": 4,
                "template": {
                    "spec": {
                        "containers": [{
                            "name": "pi", "image": "perl:5.34.0",
                            "command": ["perl", "-Mbignum=bpi", "-wle", "print bpi(2000)"]
                        }],
                        "restartPolicy": "Never"
                    }
                }
            }
        });
        change(&mut value);
        from_json(value)
    }

    /// The hello CronJob of the Kubernetes docs.
    fn cron_job(change: impl FnOnce(&mut serde_json::Value)) -> CronJob {
        let mut value = json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "hello"},
            "spec": {
                "schedule": "* * * * *",
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": 3,
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [{
                                    "name": "hello", "image": "busybox:1.28",
                                    "imagePullPolicy": "IfNotPresent",
                                    "command": ["/bin/sh", "-c", "date; echo Hello"]
                                }],
                                "restartPolicy": "OnFailure"
                            }
                        }
                    }
                }
            }
        });
        change(&mut value);
        from_json(value)
    }

    #[test]
    fn the_docs_job_is_valid() {
        assert_eq!(job(|_| {}).validate(), vec![]);
    }

    #[test]
    fn job_counts_may_not_be_negative() {
        let errs = job(|j| {
            j["spec"]["parallelism"] = json!(-1);
            j["spec"]["completions"] = json!(-1);
            j["spec"]["backoffLimit"] = json!(-1);
        })
        .validate();
        assert_eq!(
            paths(&errs),
            ["spec.parallelism", "spec.completions", "spec.backoffLimit"]
        );
        assert_eq!(errs[0].detail, "must be greater than or equal to 0");
    }

    #[test]
    fn a_job_template_restarts_on_failure_or_never() {
        let errs =
            job(|j| j["spec"]["template"]["spec"]["restartPolicy"] = json!("Always")).validate();
        assert_eq!(
            only(&errs, "spec.template.spec.restartPolicy").to_string(),
            "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \
             \"OnFailure\", \"Never\""
        );
        let errs = job(|j| {
            j["spec"]["template"]["spec"]
                .as_object_mut()
                .expect("object")
                .remove("restartPolicy");
        })
        .validate();
        only(&errs, "spec.template.spec.restartPolicy");
    }

    #[test]
    fn a_job_template_pod_spec_is_validated() {
        let errs =
            job(|j| j["spec"]["template"]["spec"]["containers"][0]["image"] = json!("")).validate();
        only(&errs, "spec.template.spec.containers[0].image");
    }

    #[test]
    fn an_indexed_job_needs_completions() {
        let errs = job(|j| j["spec"]["completionMode"] = json!("Indexed")).validate();
        assert_eq!(
            only(&errs, "spec.completions").kind,
            FieldErrorKind::Required
        );
        let errs = job(|j| j["spec"]["completionMode"] = json!("Random")).validate();
        only(&errs, "spec.completionMode");
    }

    #[test]
    fn a_given_job_selector_must_match_the_template() {
        let errs = job(|j| {
            j["spec"]["selector"] = json!({"matchLabels": {"job-name": "pi"}});
        })
        .validate();
        only(&errs, "spec.template.metadata.labels");
        let ok = job(|j| {
            j["spec"]["selector"] = json!({"matchLabels": {"job-name": "pi"}});
            j["spec"]["template"]["metadata"] = json!({"labels": {"job-name": "pi"}});
        });
        assert_eq!(ok.validate(), vec![]);
    }

    #[test]
    fn a_job_selector_and_template_are_immutable() {
        let old = job(|j| {
            j["spec"]["selector"] = json!({"matchLabels": {"job-name": "pi"}});
            j["spec"]["template"]["metadata"] = json!({"labels": {"job-name": "pi"}});
        });
        let new = job(|j| {
            j["spec"]["selector"] =
                json!({"matchExpressions": [{"key": "job-name", "operator": "Exists"}]});
            j["spec"]["template"]["metadata"] = json!({"labels": {"job-name": "pi"}});
            j["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:5.36");
        });
        let errs = new.validate_update(&old);
        assert_eq!(paths(&errs), ["spec.selector", "spec.template"]);
        assert!(errs.iter().all(|e| e.detail == "field is immutable"));
        let more_backoff = job(|j| {
            j["spec"]["selector"] = json!({"matchLabels": {"job-name": "pi"}});
            j["spec"]["template"]["metadata"] = json!({"labels": {"job-name": "pi"}});
            j["spec"]["backoffLimit"] = json!(6);
        });
        assert_eq!(more_backoff.validate_update(&old), vec![]);
    }

    #[test]
    fn an_elastic_indexed_job_may_change_completions_with_parallelism() {
        let indexed = |n: i32| {
            job(move |j| {
                j["spec"]["completionMode"] = json!("Indexed");
                j["spec"]["completions"] = json!(n);
                j["spec"]["parallelism"] = json!(n);
            })
        };
        assert_eq!(indexed(5).validate_update(&indexed(3)), vec![]);
        let skewed = job(|j| {
            j["spec"]["completionMode"] = json!("Indexed");
            j["spec"]["completions"] = json!(5);
            j["spec"]["parallelism"] = json!(3);
        });
        only(&skewed.validate_update(&indexed(3)), "spec.completions");
    }

    #[test]
    fn the_docs_cron_job_is_valid() {
        assert_eq!(cron_job(|_| {}).validate(), vec![]);
    }

    #[test]
    fn a_schedule_is_required_and_parsed() {
        let errs = cron_job(|c| c["spec"]["schedule"] = json!("")).validate();
        assert_eq!(only(&errs, "spec.schedule").kind, FieldErrorKind::Required);
        let errs = cron_job(|c| c["spec"]["schedule"] = json!("0 25 * * *")).validate();
        assert_eq!(
            only(&errs, "spec.schedule").to_string(),
            "spec.schedule: Invalid value: \"0 25 * * *\": end of range (25) above maximum (23): 25"
        );
        let errs = cron_job(|c| c["spec"]["schedule"] = json!("CRON_TZ=UTC 0 * * * *")).validate();
        assert!(only(&errs, "spec.schedule")
            .detail
            .contains("use timeZone field instead"));
        let named = cron_job(|c| c["spec"]["schedule"] = json!("@weekly"));
        assert_eq!(named.validate(), vec![]);
    }

    #[test]
    fn a_concurrency_policy_is_known() {
        let errs = cron_job(|c| c["spec"]["concurrencyPolicy"] = json!("Queue")).validate();
        assert_eq!(
            only(&errs, "spec.concurrencyPolicy").to_string(),
            "spec.concurrencyPolicy: Unsupported value: \"Queue\": supported values: \"Allow\", \
             \"Forbid\", \"Replace\""
        );
    }

    #[test]
    fn a_time_zone_is_an_iana_name() {
        let ok = cron_job(|c| c["spec"]["timeZone"] = json!("America/New_York"));
        assert_eq!(ok.validate(), vec![]);
        for bad in ["", "Local", "../etc/passwd", "Europe/Not Real"] {
            let errs = cron_job(|c| c["spec"]["timeZone"] = json!(bad)).validate();
            only(&errs, "spec.timeZone");
        }
    }

    #[test]
    fn the_job_template_is_validated_under_its_path() {
        let errs = cron_job(|c| {
            c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
            c["spec"]["jobTemplate"]["spec"]["backoffLimit"] = json!(-1);
        })
        .validate();
        assert_eq!(
            paths(&errs),
            [
                "spec.jobTemplate.spec.backoffLimit",
                "spec.jobTemplate.spec.template.spec.restartPolicy"
            ]
        );
    }

    #[test]
    fn a_job_template_selector_is_generated_not_given() {
        let errs = cron_job(|c| {
            c["spec"]["jobTemplate"]["spec"]["selector"] = json!({"matchLabels": {"a": "b"}});
            c["spec"]["jobTemplate"]["spec"]["template"]["metadata"] =
                json!({"labels": {"a": "b"}});
        })
        .validate();
        assert_eq!(
            only(&errs, "spec.jobTemplate.spec.selector").detail,
            "`selector` will be auto-generated"
        );
    }

    #[test]
    fn cron_job_history_limits_may_not_be_negative() {
        let errs = cron_job(|c| c["spec"]["failedJobsHistoryLimit"] = json!(-1)).validate();
        only(&errs, "spec.failedJobsHistoryLimit");
    }
}
