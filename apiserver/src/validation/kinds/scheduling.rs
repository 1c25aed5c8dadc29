//! PriorityClass (`scheduling.k8s.io/v1`), as `pkg/apis/scheduling/validation` checks it:
//! `system-` names belong to the built-in classes, exactly as Kubernetes defines them; every
//! other class stays at or below `HighestUserDefinablePriority`, so no user's class outranks
//! them; value and preemption policy are fixed once made (pods already carry them).

use k8s_openapi::api::scheduling::v1::PriorityClass;
use rudder_proto::objects::priority::{
    system_classes, HIGHEST_USER_DEFINABLE_PRIORITY, PREEMPT_LOWER_PRIORITY, PREEMPT_NEVER,
    SYSTEM_PRIORITY_CLASS_PREFIX,
};

use super::super::{FieldError, Validate};
use super::{immutable, one_of};

/// The preemption policies, in the order Kubernetes lists them.
const PREEMPTION_POLICIES: &[&str] = &[PREEMPT_LOWER_PRIORITY, PREEMPT_NEVER];

impl Validate for PriorityClass {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let name = self.metadata.name.as_deref().unwrap_or("");
        if name.starts_with(SYSTEM_PRIORITY_CLASS_PREFIX) {
            let global_default = self.global_default.unwrap_or(false);
            if let Err(why) = known_system_class(name, self.value, global_default) {
                errs.push(FieldError::forbidden(
                    "metadata.name",
                    format!(
                        "priority class names with '{SYSTEM_PRIORITY_CLASS_PREFIX}' prefix are \
                         reserved for system use only. error: {why}"
                    ),
                ));
            }
        } else if self.value > HIGHEST_USER_DEFINABLE_PRIORITY {
            errs.push(FieldError::forbidden(
                "value",
                format!(
                    "maximum allowed value of a user defined priority is \
                     {HIGHEST_USER_DEFINABLE_PRIORITY}"
                ),
            ));
        }
        one_of(
            &mut errs,
            "preemptionPolicy",
            self.preemption_policy.as_deref(),
            PREEMPTION_POLICIES,
        );
        errs
    }

    /// Kubernetes checks only what an update may not change (`ValidatePriorityClassUpdate`):
    /// the name (metadata's check), the value and the preemption policy. Description and
    /// globalDefault may change.
    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if self.value != old.value {
            errs.push(FieldError::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        immutable(
            &mut errs,
            "preemptionPolicy",
            &self.preemption_policy,
            &old.preemption_policy,
        );
        errs
    }
}

/// Kubernetes' `IsKnownSystemPriorityClass`: `name` is a built-in class and `value` and
/// `global_default` are exactly its own; otherwise what differs, in Kubernetes' words.
fn known_system_class(name: &str, value: i32, global_default: bool) -> Result<(), String> {
    let builtin = system_classes();
    let Some(class) = builtin
        .iter()
        .find(|class| class.metadata.name.as_deref() == Some(name))
    else {
        return Err(format!("{name} is not a known system priority class"));
    };
    if class.value != value {
        return Err(format!(
            "value of {name} PriorityClass must be {}",
            class.value
        ));
    }
    let expected = class.global_default.unwrap_or(false);
    if expected != global_default {
        return Err(format!(
            "globalDefault of {name} PriorityClass must be {expected}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::super::ApplyDefaults;
    use super::super::test_util::{from_json, paths};
    use super::*;
    use serde_json::{json, Value};

    fn class(manifest: Value) -> PriorityClass {
        let mut class: PriorityClass = from_json(manifest);
        class.apply_defaults();
        class
    }

    #[test]
    fn priority_classes_are_checked_as_kubernetes_does() {
        let reserved = "metadata.name: Forbidden: priority class names with 'system-' prefix \
                        are reserved for system use only. error: ";
        let table: Vec<(&str, Value, Vec<String>)> = vec![
            (
                "a user's class",
                json!({"metadata": {"name": "high"}, "value": 1000, "globalDefault": false}),
                vec![],
            ),
            (
                "the highest a user may define",
                json!({"metadata": {"name": "top"}, "value": 1_000_000_000}),
                vec![],
            ),
            (
                "a negative value",
                json!({"metadata": {"name": "low"}, "value": -10}),
                vec![],
            ),
            (
                "a user's class above the limit",
                json!({"metadata": {"name": "greedy"}, "value": 1_000_000_001}),
                vec![
                    "value: Forbidden: maximum allowed value of a user defined priority is \
                      1000000000"
                        .to_string(),
                ],
            ),
            (
                "a built-in as Kubernetes defines it",
                json!({"metadata": {"name": "system-node-critical"}, "value": 2_000_001_000}),
                vec![],
            ),
            (
                "a built-in with another value",
                json!({"metadata": {"name": "system-node-critical"}, "value": 5}),
                vec![format!(
                    "{reserved}value of system-node-critical PriorityClass must be 2000001000"
                )],
            ),
            (
                "a built-in made the default",
                json!({"metadata": {"name": "system-cluster-critical"},
                       "value": 2_000_000_000, "globalDefault": true}),
                vec![format!(
                    "{reserved}globalDefault of system-cluster-critical PriorityClass must be \
                     false"
                )],
            ),
            (
                "an unknown system- name",
                json!({"metadata": {"name": "system-mine"}, "value": 1}),
                vec![format!(
                    "{reserved}system-mine is not a known system priority class"
                )],
            ),
            (
                "a known policy",
                json!({"metadata": {"name": "batch"}, "value": 10, "preemptionPolicy": "Never"}),
                vec![],
            ),
            (
                "an unknown policy",
                json!({"metadata": {"name": "batch"}, "value": 10,
                       "preemptionPolicy": "Sometimes"}),
                vec![
                    "preemptionPolicy: Unsupported value: \"Sometimes\": supported values: \
                      \"PreemptLowerPriority\", \"Never\""
                        .to_string(),
                ],
            ),
            (
                "an empty policy",
                json!({"metadata": {"name": "batch"}, "value": 10, "preemptionPolicy": ""}),
                vec!["preemptionPolicy: Required value".to_string()],
            ),
        ];
        for (why, manifest, expected) in table {
            let errs: Vec<String> = class(manifest)
                .validate()
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(errs, expected, "{why}");
        }
    }

    #[test]
    fn the_built_in_classes_are_valid() {
        for mut builtin in system_classes() {
            builtin.apply_defaults();
            assert_eq!(builtin.validate(), vec![], "{:?}", builtin.metadata.name);
        }
    }

    #[test]
    fn value_and_preemption_policy_are_fixed_once_made() {
        let old = class(json!({"metadata": {"name": "high"}, "value": 1000}));
        let mut described = old.clone();
        described.description = Some("for the web tier".into());
        described.global_default = Some(true);
        assert_eq!(described.validate_update(&old), vec![]);

        let mut revalued = old.clone();
        revalued.value = 2000;
        revalued.preemption_policy = Some(PREEMPT_NEVER.into());
        let errs = revalued.validate_update(&old);
        assert_eq!(paths(&errs), ["value", "preemptionPolicy"]);
        assert_eq!(
            errs[0].to_string(),
            "value: Forbidden: may not be changed in an update."
        );
        assert_eq!(
            errs[1].to_string(),
            "preemptionPolicy: Invalid value: \"Never\": field is immutable"
        );
    }
}
