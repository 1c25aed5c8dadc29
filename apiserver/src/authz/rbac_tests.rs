use serde_json::json;

use super::*;
use crate::authz::defaults;

fn object(resource: &str, value: serde_json::Value) -> RbacObject {
    RbacObject::decode(resource, value).unwrap()
}

fn user(name: &str, groups: &[&str]) -> User {
    User {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn act(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Action {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    Action::Resource(ResourceAction {
        verb: verb.into(),
        group: group.into(),
        resource: resource.into(),
        subresource: subresource.into(),
        namespace: namespace.into(),
        name: name.into(),
    })
}

/// The default roles and bindings, with `extra` objects.
fn policy_with(extra: Vec<RbacObject>) -> Policy {
    let roles = defaults::cluster_roles()
        .into_iter()
        .map(RbacObject::ClusterRole);
    let bindings = defaults::cluster_role_bindings()
        .into_iter()
        .map(RbacObject::ClusterRoleBinding);
    Policy::of(roles.chain(bindings).chain(extra))
}

fn binding(
    resource: &str,
    name: &str,
    namespace: &str,
    role: (&str, &str),
    subject: serde_json::Value,
) -> RbacObject {
    object(
        resource,
        json!({ "metadata": { "name": name, "namespace": namespace },
                "roleRef": { "apiGroup": RBAC_GROUP, "kind": role.0, "name": role.1 },
                "subjects": [subject] }),
    )
}

#[test]
fn a_user_bound_to_view_in_a_namespace_reads_there_and_nothing_more() {
    let policy = policy_with(vec![binding(
        "rolebindings",
        "jane-views",
        "team",
        ("ClusterRole", "view"),
        json!({ "kind": "User", "apiGroup": RBAC_GROUP, "name": "jane" }),
    )]);
    let jane = user("jane", &[defaults::AUTHENTICATED]);
    for allowed in [
        act("list", "", "pods", "team", ""),
        act("get", "apps", "deployments", "team", "web"),
        act("watch", "", "pods", "team", ""),
        act("get", "", "pods/log", "team", "web-1"),
    ] {
        let decision = policy.decide(&jane, &allowed);
        assert!(decision.allowed, "{allowed:?}");
        assert_eq!(
            decision.reason,
            r#"RBAC: allowed by RoleBinding "jane-views" in namespace "team" of ClusterRole "view" to User "jane""#
        );
    }
    for refused in [
        act("create", "", "pods", "team", ""),
        act("delete", "", "pods", "team", "web-1"),
        act("get", "", "secrets", "team", "db"),
        act("create", "", "pods/exec", "team", "web-1"),
        act("list", "", "pods", "other", ""),
        act("list", "", "pods", "", ""),
    ] {
        assert!(!policy.decide(&jane, &refused).allowed, "{refused:?}");
    }
    // Discovery and asking what one may do are every authenticated user's.
    let discovery = Action::Path {
        verb: "get".into(),
        path: "/apis/apps/v1".into(),
    };
    assert!(policy.decide(&jane, &discovery).allowed);
    let metrics = Action::Path {
        verb: "get".into(),
        path: "/metrics".into(),
    };
    assert!(!policy.decide(&jane, &metrics).allowed);
    assert!(
        policy
            .decide(
                &jane,
                &act(
                    "create",
                    "authorization.k8s.io",
                    "selfsubjectaccessreviews",
                    "",
                    ""
                )
            )
            .allowed
    );
}

#[test]
fn admin_holds_edit_which_holds_view_and_a_labelled_role_joins_them_at_once() {
    let policy = policy_with(vec![binding(
        "clusterrolebindings",
        "ops-edit",
        "",
        ("ClusterRole", "edit"),
        json!({ "kind": "Group", "apiGroup": RBAC_GROUP, "name": "ops" }),
    )]);
    let ops = user("sam", &["ops"]);
    assert!(
        policy
            .decide(&ops, &act("create", "", "pods", "any", ""))
            .allowed
    );
    assert!(
        policy
            .decide(&ops, &act("get", "", "secrets", "any", "s"))
            .allowed
    );
    assert!(
        policy
            .decide(&ops, &act("list", "", "pods", "", ""))
            .allowed
    );
    // edit may not grant roles; admin may.
    assert!(
        !policy
            .decide(&ops, &act("create", RBAC_GROUP, "rolebindings", "any", ""))
            .allowed
    );
    let admin = policy.cluster_role_rules("admin").unwrap();
    let binds = act("create", RBAC_GROUP, "rolebindings", "any", "");
    assert!(admin.iter().any(|rule| allows(rule, &binds)));
    let view = policy.cluster_role_rules("view").unwrap();
    assert!(!view
        .iter()
        .any(|rule| allows(rule, &act("get", "", "secrets", "a", "s"))));

    // A ClusterRole labelled to aggregate into view widens view, edit and admin.
    let mut policy = policy;
    policy.upsert(object(
        "clusterroles",
        json!({ "metadata": { "name": "widgets-view",
                              "labels": { "rbac.authorization.k8s.io/aggregate-to-view": "true" } },
                "rules": [{ "verbs": ["get"], "apiGroups": ["example.com"], "resources": ["widgets"] }] }),
    ));
    let widgets = act("get", "example.com", "widgets", "any", "w");
    for role in ["view", "edit", "admin"] {
        let rules = policy.cluster_role_rules(role).unwrap();
        assert!(rules.iter().any(|rule| allows(rule, &widgets)), "{role}");
    }
    assert!(policy.decide(&ops, &widgets).allowed);
}

#[test]
fn service_accounts_groups_and_missing_roles_are_followed_as_kubernetes_follows_them() {
    let policy = policy_with(vec![
        object(
            "roles",
            json!({ "metadata": { "name": "pod-reader", "namespace": "apps" },
                    "rules": [{ "verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"],
                                "resourceNames": [] }] }),
        ),
        // A ServiceAccount without a namespace is one of the binding's.
        binding(
            "rolebindings",
            "robot-reads",
            "apps",
            ("Role", "pod-reader"),
            json!({ "kind": "ServiceAccount", "name": "robot" }),
        ),
        binding(
            "rolebindings",
            "dangling",
            "apps",
            ("Role", "gone"),
            json!({ "kind": "Group", "apiGroup": RBAC_GROUP, "name": defaults::AUTHENTICATED }),
        ),
    ]);
    let robot = user(
        "system:serviceaccount:apps:robot",
        &[defaults::AUTHENTICATED],
    );
    assert!(
        policy
            .decide(&robot, &act("list", "", "pods", "apps", ""))
            .allowed
    );
    let refused = policy.decide(&robot, &act("delete", "", "pods", "apps", "p"));
    assert!(!refused.allowed);
    assert_eq!(
        refused.reason,
        r#"RBAC: [role.rbac.authorization.k8s.io "gone" not found]"#
    );
    // The same name in another namespace is another account.
    let other = user(
        "system:serviceaccount:web:robot",
        &[defaults::AUTHENTICATED],
    );
    assert!(
        !policy
            .decide(&other, &act("list", "", "pods", "apps", ""))
            .allowed
    );
    assert_eq!(
        service_account_of("system:serviceaccount:a:b"),
        Some(("a", "b"))
    );
    assert_eq!(service_account_of("system:serviceaccount:a"), None);
}

#[test]
fn rules_match_verbs_groups_resources_subresources_names_and_paths() {
    let rule: PolicyRule = serde_json::from_value(json!({
        "verbs": ["get"], "apiGroups": [""], "resources": ["pods", "*/status"],
        "resourceNames": ["web"] }))
    .unwrap();
    assert!(allows(&rule, &act("get", "", "pods", "n", "web")));
    assert!(allows(
        &rule,
        &act("get", "", "services/status", "n", "web")
    ));
    assert!(!allows(&rule, &act("get", "", "pods/log", "n", "web")));
    assert!(!allows(&rule, &act("get", "", "pods", "n", "db")));
    assert!(!allows(&rule, &act("get", "apps", "pods", "n", "web")));
    assert!(!allows(&rule, &act("list", "", "pods", "n", "web")));
    let paths: PolicyRule = serde_json::from_value(
        json!({ "verbs": ["get"], "nonResourceURLs": ["/logs/*", "/metrics"] }),
    )
    .unwrap();
    let path = |p: &str| Action::Path {
        verb: "get".into(),
        path: p.into(),
    };
    assert!(allows(&paths, &path("/metrics")));
    assert!(allows(&paths, &path("/logs/a/b")));
    assert!(!allows(&paths, &path("/metrics/extra")));
    // A resource rule never matches a path, nor a path rule a resource.
    assert!(!allows(&rule, &path("/metrics")));
    assert!(!allows(&paths, &act("get", "", "pods", "n", "web")));
}

#[test]
fn a_deleted_binding_no_longer_allows() {
    let granted = binding(
        "clusterrolebindings",
        "jane-admin",
        "",
        ("ClusterRole", "cluster-admin"),
        json!({ "kind": "User", "apiGroup": RBAC_GROUP, "name": "jane" }),
    );
    let mut policy = policy_with(vec![granted.clone()]);
    let jane = user("jane", &[]);
    let anything = act("delete", "", "nodes", "", "n1");
    assert!(policy.decide(&jane, &anything).allowed);
    policy.remove(&granted);
    assert!(!policy.decide(&jane, &anything).allowed);
}

#[test]
fn aggregated_roles_are_given_what_they_gather_and_lose_what_no_role_holds_any_more() {
    let mut policy = policy_with(Vec::new());
    let stale = policy.stale_aggregations();
    let names: Vec<&str> = stale.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["admin", "edit", "view"]);
    // Written back (as the master's writer does), nothing is stale, and decisions stand.
    for (name, rules) in stale.clone() {
        let mut role = defaults::cluster_roles()
            .into_iter()
            .find(|role| role.metadata.name.as_deref() == Some(name.as_str()))
            .unwrap();
        role.rules = Some(rules);
        policy.upsert(RbacObject::ClusterRole(role));
    }
    assert!(policy.stale_aggregations().is_empty());
    let view_rules = policy.cluster_role_rules("view").unwrap().to_vec();
    assert_eq!(view_rules, stale[2].1);
    // A rule left in an aggregated role's `rules` that no selected role holds is dropped
    // (the field is aggregation's to write).
    let mut view = defaults::cluster_roles()
        .into_iter()
        .find(|role| role.metadata.name.as_deref() == Some("view"))
        .unwrap();
    let mut rules = view_rules.clone();
    rules.push(
        serde_json::from_value(
            json!({ "verbs": ["delete"], "apiGroups": [""], "resources": ["nodes"] }),
        )
        .unwrap(),
    );
    view.rules = Some(rules);
    policy.upsert(RbacObject::ClusterRole(view));
    let viewer = user("v", &["viewers"]);
    policy.upsert(binding(
        "clusterrolebindings",
        "viewers",
        "",
        ("ClusterRole", "view"),
        json!({ "kind": "Group", "apiGroup": RBAC_GROUP, "name": "viewers" }),
    ));
    assert!(
        !policy
            .decide(&viewer, &act("delete", "", "nodes", "", "n1"))
            .allowed
    );
    assert_eq!(policy.stale_aggregations()[0].0, "view");
}
