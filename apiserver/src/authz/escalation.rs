//! What keeps RBAC from being a way around itself (pure): a user may write a Role or
//! ClusterRole only with rules it holds itself, and bind a role only if it holds every
//! rule of that role — unless it may `escalate` (roles) or `bind` (bindings), as
//! Kubernetes decides.
//!
//! A grant is broken into single rules (one API group, resource, verb and name, or one
//! path and verb), and each must be covered by one rule the author holds: a wildcard
//! covers anything, a value only itself (a `*` in the grant needs a `*` held).

use k8s_openapi::api::rbac::v1::PolicyRule;

const ALL: &str = "*";

/// The single rules of `grant` that none of `held` covers, in the grant's order.
pub fn uncovered(held: &[PolicyRule], grant: &[PolicyRule]) -> Vec<PolicyRule> {
    grant
        .iter()
        .flat_map(single_rules)
        .filter(|single| !held.iter().any(|owner| covers(owner, single)))
        .collect()
}

/// `rule` broken into rules of one verb and one group, resource and name (or one path).
fn single_rules(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut singles = Vec::new();
    let one = |value: &String| Some(vec![value.clone()]);
    for verb in &rule.verbs {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                let names = rule.resource_names.as_deref().unwrap_or_default();
                if names.is_empty() {
                    singles.push(PolicyRule {
                        verbs: vec![verb.clone()],
                        api_groups: one(group),
                        resources: one(resource),
                        ..PolicyRule::default()
                    });
                }
                for name in names {
                    singles.push(PolicyRule {
                        verbs: vec![verb.clone()],
                        api_groups: one(group),
                        resources: one(resource),
                        resource_names: one(name),
                        ..PolicyRule::default()
                    });
                }
            }
        }
        for url in rule.non_resource_urls.iter().flatten() {
            singles.push(PolicyRule {
                verbs: vec![verb.clone()],
                non_resource_urls: one(url),
                ..PolicyRule::default()
            });
        }
    }
    singles
}

fn has_all(owner: Option<&Vec<String>>, wanted: Option<&Vec<String>>) -> bool {
    let owner = owner.map(Vec::as_slice).unwrap_or_default();
    owner.iter().any(|value| value == ALL)
        || wanted
            .into_iter()
            .flatten()
            .all(|value| owner.contains(value))
}

/// Whether `owner` covers the single rule `single` (Kubernetes' `ruleCovers`).
fn covers(owner: &PolicyRule, single: &PolicyRule) -> bool {
    let verbs = owner.verbs.iter().any(|verb| verb == ALL)
        || single.verbs.iter().all(|verb| owner.verbs.contains(verb));
    let groups = has_all(owner.api_groups.as_ref(), single.api_groups.as_ref());
    let resources =
        single.resources.iter().flatten().all(|resource| {
            resource_covered(owner.resources.as_deref().unwrap_or_default(), resource)
        });
    let urls = single.non_resource_urls.iter().flatten().all(|url| {
        owner.non_resource_urls.iter().flatten().any(|held| {
            held == url
                || held
                    .strip_suffix('*')
                    .is_some_and(|prefix| url.starts_with(prefix))
        })
    });
    let owner_names = owner.resource_names.as_deref().unwrap_or_default();
    let single_names = single.resource_names.as_deref().unwrap_or_default();
    let names = owner_names.is_empty()
        || (!single_names.is_empty() && single_names.iter().all(|n| owner_names.contains(n)));
    verbs && groups && resources && urls && names
}

/// `*` covers every resource; `pods/*` every subresource of pods; `*/status` the status of
/// every resource; anything else only itself.
fn resource_covered(held: &[String], resource: &str) -> bool {
    if held.iter().any(|h| h == ALL || h == resource) {
        return true;
    }
    let Some((base, subresource)) = resource.split_once('/') else {
        return false;
    };
    held.iter()
        .any(|h| *h == format!("{base}/*") || *h == format!("*/{subresource}"))
}

/// A rule as Kubernetes prints it in an escalation error:
/// `{APIGroups:["apps"], Resources:["deployments"], Verbs:["create"]}`.
pub fn describe(rule: &PolicyRule) -> String {
    let list = |values: &[String]| {
        let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
        format!("[{}]", quoted.join(" "))
    };
    let mut parts = Vec::new();
    if let Some(groups) = rule.api_groups.as_deref().filter(|g| !g.is_empty()) {
        parts.push(format!("APIGroups:{}", list(groups)));
    }
    if let Some(resources) = rule.resources.as_deref().filter(|r| !r.is_empty()) {
        parts.push(format!("Resources:{}", list(resources)));
    }
    if let Some(names) = rule.resource_names.as_deref().filter(|n| !n.is_empty()) {
        parts.push(format!("ResourceNames:{}", list(names)));
    }
    if let Some(urls) = rule.non_resource_urls.as_deref().filter(|u| !u.is_empty()) {
        parts.push(format!("NonResourceURLs:{}", list(urls)));
    }
    parts.push(format!("Verbs:{}", list(&rule.verbs)));
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
        let strings = |values: &[&str]| Some(values.iter().map(|v| v.to_string()).collect());
        PolicyRule {
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            api_groups: strings(groups),
            resources: strings(resources),
            ..PolicyRule::default()
        }
    }

    #[test]
    fn a_grant_within_what_is_held_is_covered() {
        let held = [rule(
            &["get", "list", "create"],
            &[""],
            &["pods", "configmaps"],
        )];
        assert!(uncovered(&held, &[rule(&["get", "create"], &[""], &["pods"])]).is_empty());
        let everything = [rule(&["*"], &["*"], &["*"])];
        assert!(uncovered(&everything, &[rule(&["*"], &["apps"], &["*"])]).is_empty());
    }

    #[test]
    fn each_single_rule_beyond_what_is_held_is_named() {
        let held = [rule(&["get", "list"], &[""], &["pods"])];
        let missing = uncovered(&held, &[rule(&["get", "delete"], &["", "apps"], &["pods"])]);
        let shown: Vec<String> = missing.iter().map(describe).collect();
        assert_eq!(
            shown,
            [
                r#"{APIGroups:["apps"], Resources:["pods"], Verbs:["get"]}"#,
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#,
                r#"{APIGroups:["apps"], Resources:["pods"], Verbs:["delete"]}"#,
            ]
        );
        // A wildcard in the grant needs a wildcard held.
        assert_eq!(uncovered(&held, &[rule(&["*"], &[""], &["pods"])]).len(), 1);
    }

    #[test]
    fn names_and_subresources_and_paths_are_covered_as_kubernetes_covers_them() {
        let mut named = rule(&["get"], &[""], &["secrets"]);
        named.resource_names = Some(vec!["tls".into()]);
        // A rule for some names does not cover every name, and the other way round.
        assert_eq!(
            uncovered(&[named.clone()], &[rule(&["get"], &[""], &["secrets"])]).len(),
            1
        );
        assert!(uncovered(&[rule(&["get"], &[""], &["secrets"])], &[named]).is_empty());
        assert!(uncovered(
            &[rule(&["get"], &[""], &["pods/*"])],
            &[rule(&["get"], &[""], &["pods/log"])]
        )
        .is_empty());
        let metrics = PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: Some(vec!["/metrics".into()]),
            ..PolicyRule::default()
        };
        let prefix = PolicyRule {
            non_resource_urls: Some(vec!["/met*".into()]),
            ..metrics.clone()
        };
        assert!(uncovered(&[prefix], std::slice::from_ref(&metrics)).is_empty());
        assert_eq!(uncovered(&[], &[metrics]).len(), 1);
    }
}
