//! The roles and bindings every cluster starts with (pure), named as Kubernetes names
//! them so that manifests written for Kubernetes bind the same roles:
//!
//! - `cluster-admin`: everything, bound to the `system:masters` group (which a master
//!   also lets through without looking at the policy, as kube-apiserver does).
//! - `admin`, `edit`, `view`: the user-facing roles, aggregated from
//!   `system:aggregate-to-admin`, `-edit`, `-view` and any ClusterRole labelled
//!   `rbac.authorization.k8s.io/aggregate-to-{admin,edit,view}: "true"`; each gathers the
//!   next (admin ⊇ edit ⊇ view). `view` reads no Secrets.
//! - `system:basic-user` (ask what one may do), `system:discovery` and
//!   `system:public-info-viewer` (discovery, version, health), bound to every
//!   authenticated user; `system:monitoring` (`/metrics`, health), bound to the
//!   `system:monitoring` group.
//!
//! A master writes them at start if absent and otherwise adds what this version's hold and
//! the stored ones lack ([`reconcile_role`], [`reconcile_binding`]), unless an operator set
//! `rbac.authorization.kubernetes.io/autoupdate: "false"` on one, as Kubernetes does.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::rbac::{Policy, RBAC_GROUP};

/// The group every authenticated caller is in.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The group of callers without credentials (only health endpoints reach the policy).
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The group whose members may do anything.
pub const MASTERS: &str = "system:masters";

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
/// Every verb of a served kind.
const READ_WRITE: &[&str] = &crate::kinds::VERBS;

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

fn rule(verbs: &[&str], group: &str, resources: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        api_groups: Some(vec![group.to_string()]),
        resources: Some(strings(resources)),
        ..PolicyRule::default()
    }
}

fn paths(verbs: &[&str], urls: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        non_resource_urls: Some(strings(urls)),
        ..PolicyRule::default()
    }
}

const AGGREGATE_TO: &str = "rbac.authorization.k8s.io/aggregate-to-";

fn metadata(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    let mut all: BTreeMap<String, String> = labels
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    all.insert("kubernetes.io/bootstrapping".into(), "rbac-defaults".into());
    ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(all),
        annotations: Some(BTreeMap::from([(
            "rbac.authorization.kubernetes.io/autoupdate".to_string(),
            "true".to_string(),
        )])),
        ..ObjectMeta::default()
    }
}

fn role(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: metadata(name, labels),
        rules: Some(rules),
        aggregation_rule: None,
    }
}

/// A role holding what every ClusterRole labelled `aggregate-to-{to}` holds.
fn aggregated(name: &str, to: &str, labels: &[(&str, &str)]) -> ClusterRole {
    ClusterRole {
        metadata: metadata(name, labels),
        rules: Some(Vec::new()),
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    format!("{AGGREGATE_TO}{to}"),
                    "true".to_string(),
                )])),
                match_expressions: None,
            }]),
        }),
    }
}

/// Every default ClusterRole.
pub fn cluster_roles() -> Vec<ClusterRole> {
    let to_admin = format!("{AGGREGATE_TO}admin");
    let to_edit = format!("{AGGREGATE_TO}edit");
    let to_view = format!("{AGGREGATE_TO}view");
    vec![
        role(
            "cluster-admin",
            &[],
            vec![rule(&["*"], "*", &["*"]), paths(&["*"], &["*"])],
        ),
        aggregated("admin", "admin", &[]),
        aggregated("edit", "edit", &[(&to_admin, "true")]),
        aggregated("view", "view", &[(&to_edit, "true")]),
        role(
            "system:aggregate-to-admin",
            &[(&to_admin, "true")],
            vec![
                rule(READ_WRITE, RBAC_GROUP, &["roles", "rolebindings"]),
                rule(
                    &["create"],
                    "authorization.k8s.io",
                    &["localsubjectaccessreviews"],
                ),
            ],
        ),
        role(
            "system:aggregate-to-edit",
            &[(&to_edit, "true")],
            edit_rules(),
        ),
        role(
            "system:aggregate-to-view",
            &[(&to_view, "true")],
            view_rules(),
        ),
        role(
            "system:basic-user",
            &[],
            vec![
                rule(
                    &["create"],
                    "authorization.k8s.io",
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(
                    &["create"],
                    "authentication.k8s.io",
                    &["selfsubjectreviews"],
                ),
            ],
        ),
        role(
            "system:discovery",
            &[],
            vec![paths(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        role(
            "system:public-info-viewer",
            &[],
            vec![paths(
                &["get"],
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
            )],
        ),
        role(
            "system:monitoring",
            &[],
            vec![paths(
                &["get"],
                &[
                    "/healthz",
                    "/healthz/*",
                    "/livez",
                    "/livez/*",
                    "/metrics",
                    "/readyz",
                    "/readyz/*",
                ],
            )],
        ),
    ]
}

/// What `view` reads: the workloads, their pods and logs, Services, configuration but
/// Secrets, and events.
fn view_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            READ,
            "",
            &[
                "pods",
                "pods/log",
                "pods/status",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "replicationcontrollers/status",
                "services",
                "services/status",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "configmaps",
                "serviceaccounts",
                "limitranges",
                "resourcequotas",
                "resourcequotas/status",
                "events",
                "bindings",
                "namespaces",
                "namespaces/status",
            ],
        ),
        rule(
            READ,
            "apps",
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
        ),
        rule(
            READ,
            "autoscaling",
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
        ),
        rule(
            READ,
            "batch",
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
        ),
        rule(READ, "discovery.k8s.io", &["endpointslices"]),
        rule(
            READ,
            "policy",
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
        rule(
            READ,
            "networking.k8s.io",
            &["ingresses", "ingresses/status", "networkpolicies"],
        ),
        rule(READ, "events.k8s.io", &["events"]),
    ]
}

/// What `edit` adds to `view`: writing the workloads, pods (and into them: exec, attach,
/// port-forward), Services, configuration and Secrets; reading Secrets. Not Endpoints,
/// EndpointSlices or Leases, which their controllers keep (writing an Endpoints sends a
/// Service's traffic anywhere: CVE-2021-25740).
fn edit_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            &["create", "get"],
            "",
            &[
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "services/proxy",
            ],
        ),
        rule(&["create"], "", &["pods/eviction", "serviceaccounts/token"]),
        rule(&["impersonate"], "", &["serviceaccounts"]),
        rule(
            READ,
            "",
            &[
                "secrets",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
            ],
        ),
        rule(
            WRITE,
            "",
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "services",
                "services/proxy",
                "persistentvolumeclaims",
                "configmaps",
                "secrets",
                "serviceaccounts",
            ],
        ),
        rule(
            WRITE,
            "apps",
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
        ),
        rule(WRITE, "autoscaling", &["horizontalpodautoscalers"]),
        rule(WRITE, "batch", &["cronjobs", "jobs"]),
        rule(WRITE, "policy", &["poddisruptionbudgets"]),
        rule(
            WRITE,
            "networking.k8s.io",
            &["ingresses", "networkpolicies"],
        ),
    ]
}

fn binding(name: &str, role: &str, groups: &[&str]) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: metadata(name, &[]),
        role_ref: RoleRef {
            api_group: RBAC_GROUP.into(),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(
            groups
                .iter()
                .map(|group| Subject {
                    api_group: Some(RBAC_GROUP.into()),
                    kind: "Group".into(),
                    name: group.to_string(),
                    namespace: None,
                })
                .collect(),
        ),
    }
}

/// Every default ClusterRoleBinding.
pub fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    vec![
        binding("cluster-admin", "cluster-admin", &[MASTERS]),
        binding("system:basic-user", "system:basic-user", &[AUTHENTICATED]),
        binding("system:discovery", "system:discovery", &[AUTHENTICATED]),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &[AUTHENTICATED, UNAUTHENTICATED],
        ),
        binding(
            "system:monitoring",
            "system:monitoring",
            &["system:monitoring"],
        ),
    ]
}

/// Whether every default ClusterRole and ClusterRoleBinding is in `policy`.
pub fn all_in(policy: &Policy) -> bool {
    let roles = cluster_roles();
    let bindings = cluster_role_bindings();
    roles
        .iter()
        .filter_map(|role| role.metadata.name.as_deref())
        .all(|name| policy.has_cluster_role(name))
        && bindings
            .iter()
            .filter_map(|binding| binding.metadata.name.as_deref())
            .all(|name| policy.has_cluster_role_binding(name))
}

/// The annotation by which an operator keeps a default role or binding as they changed it.
pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

fn autoupdates(metadata: &ObjectMeta) -> bool {
    metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(AUTOUPDATE))
        .is_none_or(|value| value != "false")
}

/// Adds the default's labels that `stored` lacks (one an operator changed stays as they
/// set it); whether any was.
fn add_labels(stored: &mut ObjectMeta, default: &ObjectMeta) -> bool {
    let labels = stored.labels.get_or_insert_with(BTreeMap::new);
    let mut added = false;
    for (key, value) in default.labels.iter().flatten() {
        if !labels.contains_key(key) {
            labels.insert(key.clone(), value.clone());
            added = true;
        }
    }
    added
}

/// What a default ClusterRole stored as `stored` becomes so that it holds what this
/// version's `default` holds (Kubernetes' reconciliation at a master's start: missing
/// rules, labels and aggregation selectors are added, nothing is taken away); `None` when
/// nothing is missing, or its `autoupdate` annotation is `false`.
pub fn reconcile_role(stored: &ClusterRole, default: &ClusterRole) -> Option<ClusterRole> {
    if !autoupdates(&stored.metadata) {
        return None;
    }
    let mut next = stored.clone();
    let mut changed = add_labels(&mut next.metadata, &default.metadata);
    match &default.aggregation_rule {
        // Its rules are aggregation's: only its selectors are reconciled.
        Some(rule) => {
            let selectors = next
                .aggregation_rule
                .get_or_insert_with(Default::default)
                .cluster_role_selectors
                .get_or_insert_with(Vec::new);
            for selector in rule.cluster_role_selectors.iter().flatten() {
                if !selectors.contains(selector) {
                    selectors.push(selector.clone());
                    changed = true;
                }
            }
        }
        None => {
            let rules = next.rules.get_or_insert_with(Vec::new);
            for rule in default.rules.iter().flatten() {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                    changed = true;
                }
            }
        }
    }
    changed.then_some(next)
}

/// What a default ClusterRoleBinding stored as `stored` becomes so that it names every
/// subject the default names; `None` as for [`reconcile_role`] (a binding whose role was
/// changed is left alone: the role a binding names cannot change).
pub fn reconcile_binding(
    stored: &ClusterRoleBinding,
    default: &ClusterRoleBinding,
) -> Option<ClusterRoleBinding> {
    if !autoupdates(&stored.metadata) || stored.role_ref != default.role_ref {
        return None;
    }
    let mut next = stored.clone();
    let mut changed = add_labels(&mut next.metadata, &default.metadata);
    let subjects = next.subjects.get_or_insert_with(Vec::new);
    for subject in default.subjects.iter().flatten() {
        if !subjects.contains(subject) {
            subjects.push(subject.clone());
            changed = true;
        }
    }
    changed.then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named<'a>(roles: &'a [ClusterRole], name: &str) -> &'a ClusterRole {
        roles
            .iter()
            .find(|role| role.metadata.name.as_deref() == Some(name))
            .unwrap()
    }

    #[test]
    fn an_older_default_role_gets_what_this_version_adds_and_keeps_what_it_has() {
        let roles = cluster_roles();
        let current = named(&roles, "system:aggregate-to-view");
        assert_eq!(reconcile_role(current, current), None, "nothing missing");
        let mut older = current.clone();
        older.rules.as_mut().unwrap().pop();
        let extra = rule(&["get"], "example.com", &["widgets"]);
        older.rules.as_mut().unwrap().push(extra.clone());
        let reconciled = reconcile_role(&older, current).expect("a rule is missing");
        let rules = reconciled.rules.unwrap();
        assert!(rules.contains(&extra), "what the operator added stays");
        assert!(current
            .rules
            .iter()
            .flatten()
            .all(|rule| rules.contains(rule)));
        // Kept as the operator changed it.
        let mut kept = older.clone();
        kept.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(AUTOUPDATE.into(), "false".into());
        assert_eq!(reconcile_role(&kept, current), None);
        // An aggregated role gets its selectors back, never rules.
        let view = named(&roles, "view");
        let mut bare = view.clone();
        bare.aggregation_rule = None;
        let reconciled = reconcile_role(&bare, view).unwrap();
        assert_eq!(reconciled.aggregation_rule, view.aggregation_rule);
        assert_eq!(reconciled.rules, view.rules);
    }

    #[test]
    fn a_label_an_operator_changed_stays_as_they_set_it() {
        let roles = cluster_roles();
        let edit = named(&roles, "edit");
        let mut relabelled = edit.clone();
        relabelled.metadata.labels.as_mut().unwrap().insert(
            "rbac.authorization.k8s.io/aggregate-to-admin".into(),
            "false".into(),
        );
        assert_eq!(reconcile_role(&relabelled, edit), None);
    }

    #[test]
    fn a_default_binding_gets_back_the_subjects_it_lost() {
        let bindings = cluster_role_bindings();
        let discovery = bindings
            .iter()
            .find(|b| b.metadata.name.as_deref() == Some("system:discovery"))
            .unwrap();
        let mut emptied = discovery.clone();
        emptied.subjects = Some(Vec::new());
        let reconciled = reconcile_binding(&emptied, discovery).unwrap();
        assert_eq!(reconciled.subjects, discovery.subjects);
        assert_eq!(reconcile_binding(discovery, discovery), None);
    }
}
