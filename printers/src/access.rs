//! The cells of the RBAC kinds, as kubectl prints them: a role's name and when it was
//! created (`CREATED AT`, RFC 3339, not an age), a binding's role (`ClusterRole/view`)
//! and, wide, its users, groups and service accounts (`namespace/name`).

use serde_json::Value;

use super::fields::{age_at, array_at, name_of, text_at};

/// NAME CREATED AT.
pub(crate) fn role(role: &Value, _now: jiff::Timestamp) -> Vec<String> {
    vec![
        name_of(role),
        text_at(role, &["metadata", "creationTimestamp"]).to_owned(),
    ]
}

/// NAME ROLE AGE; wide: USERS GROUPS SERVICEACCOUNTS.
pub(crate) fn binding(binding: &Value, now: jiff::Timestamp) -> Vec<String> {
    let role = format!(
        "{}/{}",
        text_at(binding, &["roleRef", "kind"]),
        text_at(binding, &["roleRef", "name"])
    );
    let subjects = array_at(binding, &["subjects"]);
    let of_kind = |kind: &str| -> String {
        subjects
            .iter()
            .filter(|subject| text_at(subject, &["kind"]) == kind)
            .map(|subject| {
                let name = text_at(subject, &["name"]);
                match (kind, text_at(subject, &["namespace"])) {
                    ("ServiceAccount", namespace) => format!("{namespace}/{name}"),
                    _ => name.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        name_of(binding),
        role,
        age_at(binding, &["metadata", "creationTimestamp"], now),
        of_kind("User"),
        of_kind("Group"),
        of_kind("ServiceAccount"),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::now;

    #[test]
    fn a_binding_shows_its_role_and_wide_its_subjects_by_kind() {
        let binding = json!({
            "metadata": { "name": "readers", "namespace": "team" },
            "roleRef": { "kind": "ClusterRole", "name": "view" },
            "subjects": [
                { "kind": "User", "name": "jane" },
                { "kind": "User", "name": "joe" },
                { "kind": "Group", "name": "devs" },
                { "kind": "ServiceAccount", "name": "robot", "namespace": "team" },
            ] });
        let cells = super::binding(&binding, now());
        assert_eq!(cells[0..2], ["readers", "ClusterRole/view"]);
        assert_eq!(cells[3..], ["jane, joe", "devs", "team/robot"]);
    }

    #[test]
    fn a_role_shows_when_it_was_created() {
        let role = json!({ "metadata": { "name": "view",
                                         "creationTimestamp": "2026-12-06T09:00:00Z" } });
        assert_eq!(super::role(&role, now()), ["view", "2026-12-06T09:00:00Z"]);
    }
}
