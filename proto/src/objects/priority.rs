//! Pod priority: the PriorityClasses every cluster has, and the priority a new pod gets from
//! its `priorityClassName`, as Kubernetes' Priority admission plugin resolves it on create.
//! Pure: the classes are the caller's (the informer's list, or the store's).
//!
//! ```text
//!  spec.priorityClassName ─ set ──► that class (the built-ins when the list lacks them)
//!                         │           none ─► "no PriorityClass with name X was found"
//!                         └ unset ─► the globalDefault class (lowest value if several)
//!                                     none ─► 0, PreemptLowerPriority
//!  spec.priority / spec.preemptionPolicy already set and different ─► refused
//! ```
//!
//! Kubernetes checks the class on create only; on update it keeps the priority the pod had.

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Names with this prefix are reserved for the built-in classes
/// (`SystemPriorityClassPrefix`).
pub const SYSTEM_PRIORITY_CLASS_PREFIX: &str = "system-";
pub const SYSTEM_CLUSTER_CRITICAL: &str = "system-cluster-critical";
pub const SYSTEM_NODE_CRITICAL: &str = "system-node-critical";
/// `SystemCriticalPriority`: system-cluster-critical's value; system-node-critical is 1000
/// above it.
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;
/// The highest value of a class not named `system-…` (`HighestUserDefinablePriority`).
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i32 = 1_000_000_000;
/// A pod's priority when it names no class and none is the global default
/// (`DefaultPriorityWhenNoDefaultClassExists`).
pub const DEFAULT_PRIORITY: i32 = 0;
/// The preemption policy of a class that does not say, and of a pod without a class.
pub const PREEMPT_LOWER_PRIORITY: &str = "PreemptLowerPriority";
/// The preemption policy of pods that wait rather than evict others.
pub const PREEMPT_NEVER: &str = "Never";

/// Why a pod's priority cannot be resolved: the API server refuses the pod (Forbidden) with
/// these words, which are kube-apiserver's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriorityError {
    /// `spec.priorityClassName` names a class that does not exist.
    #[error("no PriorityClass with name {name} was found")]
    ClassNotFound { name: String },
    /// The pod sets `spec.priority` itself, to another value than its class has.
    #[error(
        "the integer value of priority ({given}) must not be provided in pod spec; priority \
         admission controller computed {computed} from the given PriorityClass name"
    )]
    PriorityMismatch { given: i32, computed: i32 },
    /// The pod sets `spec.preemptionPolicy` itself, to another policy than its class has.
    #[error(
        "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; \
         priority admission controller computed {computed} from the given PriorityClass name"
    )]
    PreemptionPolicyMismatch { given: String, computed: String },
}

/// The classes kube-apiserver creates at start: system-node-critical (2000001000) and
/// system-cluster-critical (2000000000), neither the default, both PreemptLowerPriority.
pub fn system_classes() -> Vec<PriorityClass> {
    [
        (
            SYSTEM_NODE_CRITICAL,
            SYSTEM_CRITICAL_PRIORITY + 1000,
            "Used for system critical pods that must not be moved from their current node.",
        ),
        (
            SYSTEM_CLUSTER_CRITICAL,
            SYSTEM_CRITICAL_PRIORITY,
            "Used for system critical pods that must run in the cluster, but can be moved to \
             another node if necessary.",
        ),
    ]
    .into_iter()
    .map(|(name, value, description)| PriorityClass {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        value,
        description: Some(description.to_string()),
        global_default: Some(false),
        preemption_policy: Some(PREEMPT_LOWER_PRIORITY.to_string()),
    })
    .collect()
}

/// The global default class: of those with `globalDefault: true`, the lowest value (a race
/// may leave several), the first listed among equals.
pub fn default_class(classes: &[PriorityClass]) -> Option<&PriorityClass> {
    classes
        .iter()
        .filter(|c| c.global_default == Some(true))
        .fold(None, |lowest: Option<&PriorityClass>, c| match lowest {
            Some(l) if l.value <= c.value => Some(l),
            _ => Some(c),
        })
}

/// The priority and preemption policy a new pod with `spec` gets: its named class's, found in
/// `classes` or else among the built-ins ([`system_classes`], which a store may not list);
/// with no name, the global default class's, or 0 and PreemptLowerPriority. The policy is
/// `None` when the class does not state one (the pod keeps its own). A pod that sets
/// `spec.priority` or `spec.preemptionPolicy` itself must agree with its class.
pub fn resolve(
    spec: &PodSpec,
    classes: &[PriorityClass],
) -> Result<(i32, Option<String>), PriorityError> {
    let named = spec
        .priority_class_name
        .as_deref()
        .filter(|name| !name.is_empty());
    let (priority, policy) = match named {
        Some(name) => {
            let builtin = system_classes();
            let class = find(classes, name)
                .or_else(|| find(&builtin, name))
                .ok_or_else(|| PriorityError::ClassNotFound {
                    name: name.to_string(),
                })?;
            (class.value, class.preemption_policy.clone())
        }
        None => match default_class(classes) {
            Some(class) => (class.value, class.preemption_policy.clone()),
            None => (DEFAULT_PRIORITY, Some(PREEMPT_LOWER_PRIORITY.to_string())),
        },
    };
    if let Some(given) = spec.priority.filter(|&given| given != priority) {
        return Err(PriorityError::PriorityMismatch {
            given,
            computed: priority,
        });
    }
    if let (Some(given), Some(computed)) = (spec.preemption_policy.as_deref(), policy.as_deref()) {
        if given != computed {
            return Err(PriorityError::PreemptionPolicyMismatch {
                given: given.to_string(),
                computed: computed.to_string(),
            });
        }
    }
    Ok((priority, policy))
}

/// What the admission plugin does to a new pod's spec: [`resolve`], then set
/// `spec.priority`, the policy (when the class states one) and, for a pod naming no class,
/// the global default class's name.
pub fn admit(spec: &mut PodSpec, classes: &[PriorityClass]) -> Result<(), PriorityError> {
    let (priority, policy) = resolve(spec, classes)?;
    let unnamed = spec
        .priority_class_name
        .as_deref()
        .is_none_or(str::is_empty);
    if unnamed {
        if let Some(class) = default_class(classes) {
            spec.priority_class_name = class.metadata.name.clone();
        }
    }
    spec.priority = Some(priority);
    if policy.is_some() {
        spec.preemption_policy = policy;
    }
    Ok(())
}

fn find<'c>(classes: &'c [PriorityClass], name: &str) -> Option<&'c PriorityClass> {
    classes
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn class(name: &str, value: i32, default: bool, policy: Option<&str>) -> PriorityClass {
        PriorityClass {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            value,
            global_default: Some(default),
            preemption_policy: policy.map(str::to_string),
            ..PriorityClass::default()
        }
    }

    fn spec(json: Value) -> PodSpec {
        let mut json = json;
        json["containers"] = json!([{ "name": "c" }]);
        serde_json::from_value(json).expect("a test pod spec decodes")
    }

    fn classes() -> Vec<PriorityClass> {
        vec![
            class("high", 1000, false, None),
            class("batch", 10, false, Some(PREEMPT_NEVER)),
        ]
    }

    fn with_defaults() -> Vec<PriorityClass> {
        let mut all = classes();
        all.push(class("normal", 100, true, Some(PREEMPT_LOWER_PRIORITY)));
        all.push(class("also-default", 50, true, Some(PREEMPT_NEVER)));
        all
    }

    #[test]
    fn a_pod_gets_its_class_the_default_or_zero() {
        let lower = || Some(PREEMPT_LOWER_PRIORITY.to_string());
        let never = || Some(PREEMPT_NEVER.to_string());
        type Row = (
            &'static str,
            Value,
            Vec<PriorityClass>,
            Result<(i32, Option<String>), PriorityError>,
        );
        let table: Vec<Row> = vec![
            (
                "named class",
                json!({ "priorityClassName": "high" }),
                classes(),
                Ok((1000, None)),
            ),
            (
                "named class's policy",
                json!({ "priorityClassName": "batch" }),
                classes(),
                Ok((10, never())),
            ),
            (
                "built-in not listed",
                json!({ "priorityClassName": "system-node-critical" }),
                vec![],
                Ok((2_000_001_000, lower())),
            ),
            (
                "built-in listed",
                json!({ "priorityClassName": "system-cluster-critical" }),
                system_classes(),
                Ok((2_000_000_000, lower())),
            ),
            (
                "no class, no default",
                json!({}),
                classes(),
                Ok((0, lower())),
            ),
            (
                "empty name is no name",
                json!({ "priorityClassName": "" }),
                classes(),
                Ok((0, lower())),
            ),
            (
                "no class: the lowest default",
                json!({}),
                with_defaults(),
                Ok((50, never())),
            ),
            (
                "a named class wins over the default",
                json!({ "priorityClassName": "high" }),
                with_defaults(),
                Ok((1000, None)),
            ),
            (
                "unknown class",
                json!({ "priorityClassName": "gold" }),
                classes(),
                Err(PriorityError::ClassNotFound {
                    name: "gold".into(),
                }),
            ),
            (
                "own priority agreeing",
                json!({ "priorityClassName": "high", "priority": 1000 }),
                classes(),
                Ok((1000, None)),
            ),
            (
                "own priority differing",
                json!({ "priorityClassName": "high", "priority": 5 }),
                classes(),
                Err(PriorityError::PriorityMismatch {
                    given: 5,
                    computed: 1000,
                }),
            ),
            (
                "own priority without class",
                json!({ "priority": 7 }),
                classes(),
                Err(PriorityError::PriorityMismatch {
                    given: 7,
                    computed: 0,
                }),
            ),
            (
                "own policy agreeing",
                json!({ "priorityClassName": "batch", "preemptionPolicy": "Never" }),
                classes(),
                Ok((10, never())),
            ),
            (
                "own policy, class silent",
                json!({ "priorityClassName": "high", "preemptionPolicy": "Never" }),
                classes(),
                Ok((1000, None)),
            ),
            (
                "own policy differing",
                json!({ "priorityClassName": "batch", "preemptionPolicy": "PreemptLowerPriority" }),
                classes(),
                Err(PriorityError::PreemptionPolicyMismatch {
                    given: PREEMPT_LOWER_PRIORITY.into(),
                    computed: PREEMPT_NEVER.into(),
                }),
            ),
        ];
        for (why, pod, classes, expected) in table {
            assert_eq!(resolve(&spec(pod), &classes), expected, "{why}");
        }
    }

    #[test]
    fn refusals_are_in_kubernetes_words() {
        let table = [
            (
                PriorityError::ClassNotFound {
                    name: "gold".into(),
                },
                "no PriorityClass with name gold was found",
            ),
            (
                PriorityError::PriorityMismatch {
                    given: 5,
                    computed: 1000,
                },
                "the integer value of priority (5) must not be provided in pod spec; priority \
                 admission controller computed 1000 from the given PriorityClass name",
            ),
            (
                PriorityError::PreemptionPolicyMismatch {
                    given: "Never".into(),
                    computed: "PreemptLowerPriority".into(),
                },
                "the string value of PreemptionPolicy (Never) must not be provided in pod spec; \
                 priority admission controller computed PreemptLowerPriority from the given \
                 PriorityClass name",
            ),
        ];
        for (error, message) in table {
            assert_eq!(error.to_string(), message);
        }
    }

    #[test]
    fn admission_fills_in_priority_policy_and_the_default_class_name() {
        let mut named = spec(json!({ "priorityClassName": "batch" }));
        admit(&mut named, &with_defaults()).unwrap();
        assert_eq!(named.priority, Some(10));
        assert_eq!(named.preemption_policy.as_deref(), Some(PREEMPT_NEVER));

        let mut unnamed = spec(json!({}));
        admit(&mut unnamed, &with_defaults()).unwrap();
        assert_eq!(unnamed.priority_class_name.as_deref(), Some("also-default"));
        assert_eq!(unnamed.priority, Some(50));

        let mut plain = spec(json!({ "preemptionPolicy": "Never" }));
        admit(&mut plain, &[]).unwrap_err();
        let mut silent = spec(json!({ "priorityClassName": "high", "preemptionPolicy": "Never" }));
        admit(&mut silent, &classes()).unwrap();
        assert_eq!(
            silent.preemption_policy.as_deref(),
            Some(PREEMPT_NEVER),
            "kept"
        );
        assert_eq!(silent.priority_class_name.as_deref(), Some("high"));
    }

    #[test]
    fn the_built_in_classes_are_kubernetes_own() {
        let built = system_classes();
        let summary: Vec<(Option<&str>, i32, Option<bool>)> = built
            .iter()
            .map(|c| (c.metadata.name.as_deref(), c.value, c.global_default))
            .collect();
        assert_eq!(
            summary,
            [
                (Some("system-node-critical"), 2_000_001_000, Some(false)),
                (Some("system-cluster-critical"), 2_000_000_000, Some(false)),
            ]
        );
        assert_eq!(
            built[1].description.as_deref(),
            Some(
                "Used for system critical pods that must run in the cluster, but can be moved \
                 to another node if necessary."
            )
        );
        assert!(built
            .iter()
            .all(|c| c.value > HIGHEST_USER_DEFINABLE_PRIORITY));
    }
}
