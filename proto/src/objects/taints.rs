//! Taints and tolerations with Kubernetes' exact semantics (`k8s.io/api/core/v1`'s
//! `Toleration.ToleratesTaint`, `component-helpers`' `FindMatchingUntoleratedTaint` and
//! `GetMatchingTolerations`), the taints the node controllers set, and the
//! DefaultTolerationSeconds admission. Pure.
//!
//! A toleration tolerates a taint when its effect is empty or equal, its key is empty or equal,
//! and its operator is `Exists`, or `Equal` (the default) with an equal value. So
//! `{operator: Exists}` with no key and no effect tolerates every taint.

use k8s_openapi::api::core::v1::{PodSpec, Taint, Toleration};

/// The effects a taint may have.
pub const NO_SCHEDULE: &str = "NoSchedule";
pub const PREFER_NO_SCHEDULE: &str = "PreferNoSchedule";
pub const NO_EXECUTE: &str = "NoExecute";

/// The node taints Kubernetes' controllers set (`k8s.io/api/core/v1/well_known_taints.go`).
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

/// What DefaultTolerationSeconds gives a pod for `not-ready` and `unreachable` (5 minutes).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Whether `toleration` tolerates `taint` (`Toleration.ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        "Exists" => true,
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn is_tolerated(taint: &Taint, tolerations: &[Toleration]) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The first taint with one of `effects` that no toleration tolerates
/// (`FindMatchingUntoleratedTaint` with an effect filter).
pub fn first_untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effects: &[&str],
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|taint| effects.contains(&taint.effect.as_str()))
        .find(|taint| !is_tolerated(taint, tolerations))
}

/// For each taint, the first toleration that tolerates it; `None` when one is not tolerated
/// (`GetMatchingTolerations`).
pub fn matching_tolerations<'a>(
    taints: &[Taint],
    tolerations: &'a [Toleration],
) -> Option<Vec<&'a Toleration>> {
    taints
        .iter()
        .map(|taint| tolerations.iter().find(|t| tolerates(t, taint)))
        .collect()
}

/// The same taint: equal key and effect (`Taint.MatchTaint`); the value does not count.
pub fn is_same_taint(a: &Taint, b: &Taint) -> bool {
    a.key == b.key && a.effect == b.effect
}

/// A taint of `key` and `effect`, without a value.
pub fn taint(key: &str, effect: &str, time_added: Option<jiff::Timestamp>) -> Taint {
    Taint {
        key: key.to_string(),
        effect: effect.to_string(),
        value: None,
        time_added: time_added.map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
    }
}

/// `{key, operator: Exists, effect}`, optionally for `seconds` only.
pub fn toleration_exists(key: &str, effect: &str, seconds: Option<i64>) -> Toleration {
    Toleration {
        key: Some(key.to_string()),
        operator: Some("Exists".to_string()),
        effect: Some(effect.to_string()),
        value: None,
        toleration_seconds: seconds,
    }
}

/// Adds `toleration` to the pod, replacing one with the same key, operator, value and effect
/// (`AddOrUpdateTolerationInPodSpec`). Whether the spec changed.
pub fn add_or_update_toleration(spec: &mut PodSpec, toleration: Toleration) -> bool {
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    let same = |t: &Toleration| {
        t.key == toleration.key
            && t.operator == toleration.operator
            && t.value == toleration.value
            && t.effect == toleration.effect
    };
    match tolerations.iter_mut().find(|t| same(t)) {
        Some(existing) if *existing == toleration => false,
        Some(existing) => {
            *existing = toleration;
            true
        }
        None => {
            tolerations.push(toleration);
            true
        }
    }
}

/// The DefaultTolerationSeconds admission, on pod creation: a pod that tolerates neither
/// `not-ready:NoExecute` nor `unreachable:NoExecute` (a toleration with that key or no key,
/// and effect NoExecute or none) gets `{key, Exists, NoExecute, seconds}` for each, so its
/// pods leave a lost node after `seconds` rather than at once or never. Whether it changed.
pub fn add_default_toleration_seconds(
    spec: &mut PodSpec,
    not_ready_seconds: i64,
    unreachable_seconds: i64,
) -> bool {
    let covers = |key: &str| {
        spec.tolerations.iter().flatten().any(|t| {
            let t_key = t.key.as_deref().unwrap_or("");
            let effect = t.effect.as_deref().unwrap_or("");
            (t_key == key || t_key.is_empty()) && (effect == NO_EXECUTE || effect.is_empty())
        })
    };
    let missing: Vec<Toleration> = [
        (NOT_READY, not_ready_seconds),
        (UNREACHABLE, unreachable_seconds),
    ]
    .into_iter()
    .filter(|(key, _)| !covers(key))
    .map(|(key, seconds)| toleration_exists(key, NO_EXECUTE, Some(seconds)))
    .collect();
    let changed = !missing.is_empty();
    spec.tolerations
        .get_or_insert_with(Vec::new)
        .extend(missing);
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toleration(json: serde_json::Value) -> Toleration {
        serde_json::from_value(json).expect("a test toleration decodes")
    }

    fn taint_of(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            value: value.map(str::to_string),
            ..taint(key, effect, None)
        }
    }

    #[test]
    fn tolerations_match_taints_as_kubernetes_does() {
        use serde_json::json;
        let gpu = taint_of("gpu", Some("true"), NO_SCHEDULE);
        let table = [
            (
                json!({"operator": "Exists"}),
                true,
                "empty key with Exists tolerates all",
            ),
            (
                json!({"key": "gpu", "operator": "Exists"}),
                true,
                "Exists ignores the value",
            ),
            (
                json!({"key": "gpu", "value": "true"}),
                true,
                "the operator defaults to Equal",
            ),
            (
                json!({"key": "gpu", "operator": "Equal", "value": "false"}),
                false,
                "value",
            ),
            (
                json!({"key": "gpu", "operator": "Equal"}),
                false,
                "empty value vs true",
            ),
            (
                json!({"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}),
                true,
                "effect",
            ),
            (
                json!({"key": "gpu", "operator": "Exists", "effect": "NoExecute"}),
                false,
                "other",
            ),
            (
                json!({"key": "tpu", "operator": "Exists"}),
                false,
                "another key",
            ),
            (
                json!({"key": "gpu", "operator": "Lt", "value": "true"}),
                false,
                "unknown op",
            ),
            (
                json!({"operator": "Exists", "effect": "NoSchedule"}),
                true,
                "all of one effect",
            ),
        ];
        for (json, expected, why) in table {
            assert_eq!(tolerates(&toleration(json), &gpu), expected, "{why}");
        }
        let no_value = taint_of("gpu", None, NO_SCHEDULE);
        assert!(tolerates(
            &toleration(json!({"key": "gpu", "operator": "Equal"})),
            &no_value
        ));
    }

    #[test]
    fn the_first_untolerated_taint_is_found_among_the_effects_asked_for() {
        let taints = [
            taint_of("soft", None, PREFER_NO_SCHEDULE),
            taint_of("a", None, NO_SCHEDULE),
            taint_of("b", None, NO_EXECUTE),
        ];
        let tolerate_a = [toleration_exists("a", NO_SCHEDULE, None)];
        let hard = [NO_SCHEDULE, NO_EXECUTE];
        assert_eq!(
            first_untolerated(&taints, &tolerate_a, &hard).map(|t| t.key.as_str()),
            Some("b")
        );
        assert_eq!(
            first_untolerated(&taints, &tolerate_a, &[NO_SCHEDULE]),
            None,
            "PreferNoSchedule is not asked for"
        );
        assert_eq!(
            first_untolerated(&taints, &[], &[PREFER_NO_SCHEDULE])
                .unwrap()
                .key,
            "soft"
        );
    }

    #[test]
    fn matching_tolerations_pairs_every_taint_or_gives_none() {
        let taints = [
            taint_of(UNREACHABLE, None, NO_EXECUTE),
            taint_of(NOT_READY, None, NO_EXECUTE),
        ];
        let tolerations = [
            toleration_exists(NOT_READY, NO_EXECUTE, Some(5)),
            toleration_exists(UNREACHABLE, NO_EXECUTE, Some(30)),
        ];
        let used = matching_tolerations(&taints, &tolerations).unwrap();
        let seconds: Vec<_> = used.iter().map(|t| t.toleration_seconds).collect();
        assert_eq!(seconds, [Some(30), Some(5)]);
        assert!(matching_tolerations(&taints, &tolerations[..1]).is_none());
        assert_eq!(matching_tolerations(&[], &[]), Some(vec![]));
    }

    #[test]
    fn default_toleration_seconds_adds_what_the_pod_lacks() {
        let mut bare = PodSpec::default();
        assert!(add_default_toleration_seconds(&mut bare, 300, 300));
        assert_eq!(
            bare.tolerations.unwrap(),
            [
                toleration_exists(NOT_READY, NO_EXECUTE, Some(300)),
                toleration_exists(UNREACHABLE, NO_EXECUTE, Some(300)),
            ]
        );

        let own = toleration_exists(UNREACHABLE, NO_EXECUTE, Some(5));
        let mut partial = PodSpec {
            tolerations: Some(vec![own.clone()]),
            ..PodSpec::default()
        };
        assert!(add_default_toleration_seconds(&mut partial, 300, 300));
        assert_eq!(
            partial.tolerations.unwrap(),
            [own, toleration_exists(NOT_READY, NO_EXECUTE, Some(300))]
        );

        let everything = toleration(serde_json::json!({"operator": "Exists"}));
        let mut tolerant = PodSpec {
            tolerations: Some(vec![everything.clone()]),
            ..PodSpec::default()
        };
        assert!(!add_default_toleration_seconds(&mut tolerant, 300, 300));
        assert_eq!(tolerant.tolerations.unwrap(), [everything]);

        let mut no_schedule_only = PodSpec {
            tolerations: Some(vec![toleration_exists(NOT_READY, NO_SCHEDULE, None)]),
            ..PodSpec::default()
        };
        add_default_toleration_seconds(&mut no_schedule_only, 300, 300);
        assert_eq!(
            no_schedule_only.tolerations.unwrap().len(),
            3,
            "NoSchedule does not count"
        );
    }

    #[test]
    fn add_or_update_replaces_the_same_toleration_and_appends_others() {
        let mut spec = PodSpec {
            tolerations: Some(vec![toleration_exists(NOT_READY, NO_EXECUTE, Some(300))]),
            ..PodSpec::default()
        };
        assert!(add_or_update_toleration(
            &mut spec,
            toleration_exists(NOT_READY, NO_EXECUTE, None)
        ));
        assert!(!add_or_update_toleration(
            &mut spec,
            toleration_exists(NOT_READY, NO_EXECUTE, None)
        ));
        assert!(add_or_update_toleration(
            &mut spec,
            toleration_exists(UNREACHABLE, NO_EXECUTE, None)
        ));
        assert_eq!(
            spec.tolerations.unwrap(),
            [
                toleration_exists(NOT_READY, NO_EXECUTE, None),
                toleration_exists(UNREACHABLE, NO_EXECUTE, None)
            ]
        );
    }
}
