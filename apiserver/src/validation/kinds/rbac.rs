//! Role, ClusterRole, RoleBinding and ClusterRoleBinding: rules that say what they apply
//! to, and bindings that name a role of the right kind and subjects of known kinds
//! (`pkg/apis/rbac/validation`).

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::super::names::path_segment_name;
use super::super::selector::validate_selector;
use super::super::{FieldError, Validate};
use super::{each_invalid, immutable};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn rules(errs: &mut Vec<FieldError>, rules: Option<&Vec<PolicyRule>>, namespaced: bool) {
    for (i, rule) in rules.into_iter().flatten().enumerate() {
        let path = format!("rules[{i}]");
        if rule.verbs.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = rule.non_resource_urls.as_deref().unwrap_or_default();
        let groups = rule.api_groups.as_deref().unwrap_or_default();
        let resources = rule.resources.as_deref().unwrap_or_default();
        if !urls.is_empty() {
            if namespaced {
                errs.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    format!("{urls:?}"),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if !groups.is_empty() || !resources.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    format!("{urls:?}"),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if groups.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if resources.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
}

fn role_ref(errs: &mut Vec<FieldError>, role: &RoleRef, kinds: &[&str]) {
    if role.api_group != RBAC_GROUP {
        errs.push(FieldError::not_supported(
            "roleRef.apiGroup",
            &role.api_group,
            &[RBAC_GROUP],
        ));
    }
    if !kinds.contains(&role.kind.as_str()) {
        errs.push(FieldError::not_supported("roleRef.kind", &role.kind, kinds));
    }
    if role.name.is_empty() {
        errs.push(FieldError::required("roleRef.name", ""));
    } else {
        each_invalid(
            errs,
            "roleRef.name",
            &role.name,
            path_segment_name(&role.name),
        );
    }
}

fn subjects(errs: &mut Vec<FieldError>, subjects: Option<&Vec<Subject>>, cluster_wide: bool) {
    for (i, subject) in subjects.into_iter().flatten().enumerate() {
        let path = format!("subjects[{i}]");
        if subject.name.is_empty() {
            errs.push(FieldError::required(format!("{path}.name"), ""));
        }
        let group = subject.api_group.as_deref().unwrap_or("");
        match subject.kind.as_str() {
            "ServiceAccount" => {
                if !group.is_empty() {
                    errs.push(FieldError::not_supported(
                        format!("{path}.apiGroup"),
                        group,
                        &[""],
                    ));
                }
                let namespace = subject.namespace.as_deref().unwrap_or("");
                if cluster_wide && namespace.is_empty() {
                    errs.push(FieldError::required(format!("{path}.namespace"), ""));
                }
            }
            "User" | "Group" => {
                if group != RBAC_GROUP {
                    errs.push(FieldError::not_supported(
                        format!("{path}.apiGroup"),
                        group,
                        &[RBAC_GROUP],
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                format!("{path}.kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
}

impl Validate for Role {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        rules(&mut errs, self.rules.as_ref(), true);
        errs
    }
}

impl Validate for ClusterRole {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        rules(&mut errs, self.rules.as_ref(), false);
        let selectors = self
            .aggregation_rule
            .as_ref()
            .and_then(|rule| rule.cluster_role_selectors.as_ref());
        for (i, selector) in selectors.into_iter().flatten().enumerate() {
            let path = format!("aggregationRule.clusterRoleSelectors[{i}]");
            if let Err(problems) = validate_selector(selector, &path) {
                errs.extend(problems);
            }
        }
        errs
    }
}

impl Validate for RoleBinding {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        role_ref(&mut errs, &self.role_ref, &["Role", "ClusterRole"]);
        subjects(&mut errs, self.subjects.as_ref(), false);
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate();
        immutable(&mut errs, "roleRef", &self.role_ref, &old.role_ref);
        errs
    }
}

impl Validate for ClusterRoleBinding {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        role_ref(&mut errs, &self.role_ref, &["ClusterRole"]);
        subjects(&mut errs, self.subjects.as_ref(), true);
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate();
        immutable(&mut errs, "roleRef", &self.role_ref, &old.role_ref);
        errs
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn paths(errs: &[FieldError]) -> Vec<&str> {
        errs.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn rules_say_what_they_apply_to() {
        let role: Role = serde_json::from_value(json!({
            "metadata": { "name": "r", "namespace": "n" },
            "rules": [
                { "verbs": ["get"], "apiGroups": [""], "resources": ["pods"] },
                { "verbs": [], "apiGroups": [""], "resources": ["pods"] },
                { "verbs": ["get"], "resources": ["pods"] },
                { "verbs": ["get"], "nonResourceURLs": ["/metrics"] },
            ] }))
        .unwrap();
        assert_eq!(
            paths(&role.validate()),
            [
                "rules[1].verbs",
                "rules[2].apiGroups",
                "rules[3].nonResourceURLs"
            ]
        );
        let cluster_role: ClusterRole = serde_json::from_value(json!({
            "metadata": { "name": "c" },
            "rules": [{ "verbs": ["get"], "nonResourceURLs": ["/metrics"] }] }))
        .unwrap();
        assert!(cluster_role.validate().is_empty());
    }

    #[test]
    fn bindings_name_a_role_and_known_subjects_and_keep_their_role() {
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": { "name": "b", "namespace": "n" },
            "roleRef": { "apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "view" },
            "subjects": [
                { "kind": "User", "apiGroup": RBAC_GROUP, "name": "jane" },
                { "kind": "ServiceAccount", "name": "default" },
                { "kind": "Robot", "name": "r2" },
                { "kind": "Group", "name": "devs" },
            ] }))
        .unwrap();
        assert_eq!(
            paths(&binding.validate()),
            ["subjects[2].kind", "subjects[3].apiGroup"]
        );
        let mut other = binding.clone();
        other.role_ref.name = "edit".into();
        assert!(paths(&other.validate_update(&binding)).contains(&"roleRef"));

        let cluster: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": { "name": "b" },
            "roleRef": { "apiGroup": RBAC_GROUP, "kind": "Role", "name": "view" },
            "subjects": [{ "kind": "ServiceAccount", "name": "default" }] }))
        .unwrap();
        assert_eq!(
            paths(&cluster.validate()),
            ["roleRef.kind", "subjects[0].namespace"]
        );
    }
}
