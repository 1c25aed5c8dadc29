//! Kubernetes' RBAC evaluation (pure): the cluster's Roles, ClusterRoles and their
//! bindings as a [`Policy`], and whether it lets a [`User`] take an [`Action`].
//!
//! As kube-apiserver's RBAC authorizer decides: an action is allowed when a
//! ClusterRoleBinding, or a RoleBinding in the action's namespace, names the user (by name,
//! by one of its groups, or as a ServiceAccount) and its role has a rule covering the
//! action's verb, API group, resource (and subresource) and name, or its path. Nothing
//! denies: without such a rule, the action is not allowed. A ClusterRole with an
//! `aggregationRule` also holds the rules of every ClusterRole its selectors match (what
//! Kubernetes' aggregation controller writes into it), here as soon as the policy changes.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use rudder_proto::objects::selector::LabelSelector;

/// Who acts: a user name and its groups (`system:authenticated` among them once the
/// caller proved who it is).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

/// What a request does, as an authorizer sees it (kube-apiserver's `RequestInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Resource(ResourceAction),
    /// A request for a path that names no resource (`/metrics`, `/version`, discovery).
    Path {
        verb: String,
        path: String,
    },
}

/// A request for a resource: `get pods "web" in "default"`, `create pods/eviction`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourceAction {
    /// get, list, watch, create, update, patch, delete, deletecollection, or a special
    /// verb a check asks about (bind, escalate, impersonate).
    pub verb: String,
    /// "" for the core group.
    pub group: String,
    pub resource: String,
    pub subresource: String,
    /// Empty for cluster-scoped resources and for requests across every namespace.
    pub namespace: String,
    /// Empty for collections and creates.
    pub name: String,
}

impl Action {
    pub fn verb(&self) -> &str {
        match self {
            Action::Resource(action) => &action.verb,
            Action::Path { verb, .. } => verb,
        }
    }
}

/// The outcome of an evaluation, with Kubernetes' reason: which binding allowed it, or the
/// bindings that could not be followed (a role they name does not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

/// The cluster's RBAC objects, kept current by the policy cache.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// By name, in order: an aggregated role gathers its rules in this order, the same
    /// on every master.
    cluster_roles: BTreeMap<String, ClusterRole>,
    /// By (namespace, name).
    roles: HashMap<(String, String), Role>,
    cluster_role_bindings: BTreeMap<String, ClusterRoleBinding>,
    /// By namespace, then name.
    role_bindings: HashMap<String, BTreeMap<String, RoleBinding>>,
    /// Each ClusterRole's rules with those its aggregation rule gathers.
    effective: HashMap<String, Vec<PolicyRule>>,
}

/// One RBAC object as the cache hands it over.
#[derive(Debug, Clone)]
pub enum RbacObject {
    Role(Role),
    ClusterRole(ClusterRole),
    RoleBinding(RoleBinding),
    ClusterRoleBinding(ClusterRoleBinding),
}

/// The four kinds by their resource names.
pub const RBAC_RESOURCES: [&str; 4] = [
    "clusterroles",
    "roles",
    "clusterrolebindings",
    "rolebindings",
];

/// The API group of the RBAC kinds.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn key_of(
    metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> (String, String) {
    (
        metadata.namespace.clone().unwrap_or_default(),
        metadata.name.clone().unwrap_or_default(),
    )
}

impl RbacObject {
    /// Decodes a stored object of `resource` (one of [`RBAC_RESOURCES`]).
    pub fn decode(resource: &str, object: serde_json::Value) -> Result<Self, String> {
        let decoded = match resource {
            "roles" => serde_json::from_value(object).map(RbacObject::Role),
            "clusterroles" => serde_json::from_value(object).map(RbacObject::ClusterRole),
            "rolebindings" => serde_json::from_value(object).map(RbacObject::RoleBinding),
            "clusterrolebindings" => {
                serde_json::from_value(object).map(RbacObject::ClusterRoleBinding)
            }
            other => return Err(format!("{other} is not an RBAC resource")),
        };
        decoded.map_err(|error| format!("a stored {resource} object does not decode: {error}"))
    }
}

impl Policy {
    /// A policy of `objects` (bootstrap, tests).
    pub fn of(objects: impl IntoIterator<Item = RbacObject>) -> Self {
        let mut policy = Policy::default();
        for object in objects {
            policy.insert(object);
        }
        policy.aggregate();
        policy
    }

    /// Replaces every object of `resource` with `objects` (a fresh list).
    pub fn replace_all(&mut self, resource: &str, objects: Vec<RbacObject>) {
        match resource {
            "roles" => self.roles.clear(),
            "clusterroles" => self.cluster_roles.clear(),
            "rolebindings" => self.role_bindings.clear(),
            "clusterrolebindings" => self.cluster_role_bindings.clear(),
            _ => {}
        }
        for object in objects {
            self.insert(object);
        }
        self.aggregate();
    }

    /// Adds or replaces one object.
    pub fn upsert(&mut self, object: RbacObject) {
        let cluster_role = matches!(object, RbacObject::ClusterRole(_));
        self.insert(object);
        if cluster_role {
            self.aggregate();
        }
    }

    /// Removes one object.
    pub fn remove(&mut self, object: &RbacObject) {
        match object {
            RbacObject::Role(role) => {
                self.roles.remove(&key_of(&role.metadata));
            }
            RbacObject::ClusterRole(role) => {
                let (_, name) = key_of(&role.metadata);
                self.cluster_roles.remove(&name);
                self.aggregate();
            }
            RbacObject::RoleBinding(binding) => {
                let (namespace, name) = key_of(&binding.metadata);
                if let Some(bindings) = self.role_bindings.get_mut(&namespace) {
                    bindings.remove(&name);
                    if bindings.is_empty() {
                        self.role_bindings.remove(&namespace);
                    }
                }
            }
            RbacObject::ClusterRoleBinding(binding) => {
                let (_, name) = key_of(&binding.metadata);
                self.cluster_role_bindings.remove(&name);
            }
        }
    }

    fn insert(&mut self, object: RbacObject) {
        match object {
            RbacObject::Role(role) => {
                self.roles.insert(key_of(&role.metadata), role);
            }
            RbacObject::ClusterRole(role) => {
                let (_, name) = key_of(&role.metadata);
                self.cluster_roles.insert(name, role);
            }
            RbacObject::RoleBinding(binding) => {
                let (namespace, name) = key_of(&binding.metadata);
                self.role_bindings
                    .entry(namespace)
                    .or_default()
                    .insert(name, binding);
            }
            RbacObject::ClusterRoleBinding(binding) => {
                let (_, name) = key_of(&binding.metadata);
                self.cluster_role_bindings.insert(name, binding);
            }
        }
    }

    /// Works out every ClusterRole's effective rules: its own, and for an aggregated one
    /// those of each ClusterRole its selectors match, followed through aggregated roles
    /// it gathers (each role once).
    fn aggregate(&mut self) {
        let selectors: HashMap<&str, Vec<LabelSelector>> = self
            .cluster_roles
            .iter()
            .filter_map(|(name, role)| {
                let rule = role.aggregation_rule.as_ref()?;
                let selectors = rule
                    .cluster_role_selectors
                    .iter()
                    .flatten()
                    // A selector that does not parse gathers nothing (validation refuses
                    // them on write).
                    .filter_map(|selector| LabelSelector::from_api(selector).ok())
                    .collect();
                Some((name.as_str(), selectors))
            })
            .collect();
        let mut effective = HashMap::new();
        for name in self.cluster_roles.keys() {
            let mut seen = HashSet::new();
            let mut rules = Vec::new();
            let mut pending = std::collections::VecDeque::from([name.as_str()]);
            while let Some(next) = pending.pop_front() {
                if !seen.insert(next) {
                    continue;
                }
                let Some(role) = self.cluster_roles.get(next) else {
                    continue;
                };
                let Some(selectors) = selectors.get(next) else {
                    // A plain role: its own rules.
                    for rule in role.rules.iter().flatten() {
                        if !rules.contains(rule) {
                            rules.push(rule.clone());
                        }
                    }
                    continue;
                };
                // An aggregated role: its `rules` are what aggregation wrote there (as
                // Kubernetes' controller does), so only the roles it selects count, in name
                // order, breadth first.
                for (other, role) in &self.cluster_roles {
                    let labels = role.metadata.labels.as_ref();
                    if other != next && selectors.iter().any(|s| s.matches_labels(labels)) {
                        pending.push_back(other);
                    }
                }
            }
            effective.insert(name.clone(), rules);
        }
        self.effective = effective;
    }

    /// Whether a ClusterRole of this name exists.
    pub fn has_cluster_role(&self, name: &str) -> bool {
        self.cluster_roles.contains_key(name)
    }

    /// Whether a ClusterRoleBinding of this name exists.
    pub fn has_cluster_role_binding(&self, name: &str) -> bool {
        self.cluster_role_bindings.contains_key(name)
    }

    /// Each aggregated ClusterRole whose stored `rules` are not what it gathers: its name
    /// and the rules to write (what Kubernetes' aggregation controller writes).
    pub fn stale_aggregations(&self) -> Vec<(String, Vec<PolicyRule>)> {
        self.cluster_roles
            .iter()
            .filter(|(_, role)| role.aggregation_rule.is_some())
            .filter_map(|(name, role)| {
                let gathered = self.effective.get(name)?;
                let stored = role.rules.as_deref().unwrap_or_default();
                // As sets: masters that gather in another order do not rewrite each other.
                let same = stored.len() == gathered.len()
                    && gathered.iter().all(|rule| stored.contains(rule));
                (!same).then(|| (name.clone(), gathered.clone()))
            })
            .collect()
    }

    /// A ClusterRole's effective rules, if it exists.
    pub fn cluster_role_rules(&self, name: &str) -> Option<&[PolicyRule]> {
        self.effective.get(name).map(Vec::as_slice)
    }

    /// The rules a binding in `namespace` ("" for a ClusterRoleBinding) refers to.
    fn referred_rules(&self, namespace: &str, role: &RoleRef) -> Result<&[PolicyRule], String> {
        match role.kind.as_str() {
            "ClusterRole" => self.cluster_role_rules(&role.name).ok_or_else(|| {
                format!(
                    "clusterrole.rbac.authorization.k8s.io {:?} not found",
                    role.name
                )
            }),
            "Role" if !namespace.is_empty() => self
                .roles
                .get(&(namespace.to_string(), role.name.clone()))
                .map(|role| role.rules.as_deref().unwrap_or_default())
                .ok_or_else(|| format!("role.rbac.authorization.k8s.io {:?} not found", role.name)),
            other => Err(format!("a binding may not refer to a {other:?}")),
        }
    }

    /// Every binding that names `user` and applies in `namespace` (the cluster's bindings,
    /// then `namespace`'s), with the rules of the role it refers to, or why they are
    /// missing. A ClusterRoleBinding's namespace is "".
    fn bindings_of<'a>(
        &'a self,
        user: &'a User,
        namespace: &'a str,
    ) -> impl Iterator<Item = (Binding<'a>, Result<&'a [PolicyRule], String>)> + 'a {
        let cluster = self
            .cluster_role_bindings
            .iter()
            .filter(move |(_, binding)| names(binding.subjects.as_deref(), user, ""))
            .map(move |(name, binding)| {
                let found = Binding {
                    kind: "ClusterRoleBinding",
                    name,
                    namespace: "",
                    role: &binding.role_ref,
                };
                (found, self.referred_rules("", &binding.role_ref))
            });
        let namespaced = self
            .role_bindings
            .get(namespace)
            .filter(|_| !namespace.is_empty())
            .into_iter()
            .flatten()
            .filter(move |(_, binding)| names(binding.subjects.as_deref(), user, namespace))
            .map(move |(name, binding)| {
                let found = Binding {
                    kind: "RoleBinding",
                    name,
                    namespace,
                    role: &binding.role_ref,
                };
                (found, self.referred_rules(namespace, &binding.role_ref))
            });
        cluster.chain(namespaced)
    }

    /// Whether the policy lets `user` take `action`.
    pub fn decide(&self, user: &User, action: &Action) -> Decision {
        let namespace = match action {
            Action::Resource(action) => action.namespace.as_str(),
            Action::Path { .. } => "",
        };
        let mut broken = Vec::new();
        for (binding, rules) in self.bindings_of(user, namespace) {
            match rules {
                Ok(rules) if rules.iter().any(|rule| allows(rule, action)) => {
                    return Decision {
                        allowed: true,
                        reason: format!("RBAC: allowed by {} to {}", binding, subject_text(user)),
                    }
                }
                Ok(_) => {}
                Err(why) => broken.push(why),
            }
        }
        Decision {
            allowed: false,
            reason: if broken.is_empty() {
                String::new()
            } else {
                format!("RBAC: [{}]", broken.join(", "))
            },
        }
    }

    /// Every rule `user` holds in `namespace` ("" for the cluster's bindings only), for
    /// checking a grant against what its author holds.
    pub fn rules_of(&self, user: &User, namespace: &str) -> Vec<PolicyRule> {
        self.bindings_of(user, namespace)
            .filter_map(|(_, rules)| rules.ok())
            .flatten()
            .cloned()
            .collect()
    }

    /// The rules a binding's role holds (a Role in `namespace`, or a ClusterRole).
    pub fn role_rules(&self, namespace: &str, role: &RoleRef) -> Result<Vec<PolicyRule>, String> {
        self.referred_rules(namespace, role)
            .map(<[PolicyRule]>::to_vec)
    }
}

/// A binding, named as Kubernetes names it in a decision's reason.
struct Binding<'a> {
    kind: &'static str,
    name: &'a str,
    namespace: &'a str,
    role: &'a RoleRef,
}

impl std::fmt::Display for Binding<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.kind, self.name)?;
        if !self.namespace.is_empty() {
            write!(f, " in namespace {:?}", self.namespace)?;
        }
        write!(f, " of {} {:?}", self.role.kind, self.role.name)
    }
}

fn subject_text(user: &User) -> String {
    match service_account_of(&user.name) {
        Some((namespace, name)) => format!("ServiceAccount {name:?} of namespace {namespace:?}"),
        None => format!("User {:?}", user.name),
    }
}

/// The namespace and name of a ServiceAccount's user name
/// (`system:serviceaccount:NAMESPACE:NAME`).
pub fn service_account_of(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then_some((namespace, name))
}

/// Whether any of `subjects` names `user`; a ServiceAccount without a namespace is one of
/// the binding's `namespace`.
fn names(subjects: Option<&[Subject]>, user: &User, namespace: &str) -> bool {
    subjects
        .into_iter()
        .flatten()
        .any(|subject| match subject.kind.as_str() {
            "User" => subject.name == user.name,
            "Group" => user.groups.contains(&subject.name),
            "ServiceAccount" => {
                let account_namespace = subject
                    .namespace
                    .as_deref()
                    .filter(|namespace| !namespace.is_empty())
                    .unwrap_or(namespace);
                !account_namespace.is_empty()
                    && service_account_of(&user.name) == Some((account_namespace, &subject.name))
            }
            _ => false,
        })
}

const ALL: &str = "*";

fn has(values: Option<&Vec<String>>, wanted: &str) -> bool {
    values
        .into_iter()
        .flatten()
        .any(|value| value == ALL || value == wanted)
}

/// Whether `rule` allows `action` (Kubernetes' `RuleAllows`).
pub fn allows(rule: &PolicyRule, action: &Action) -> bool {
    let verb_matches = rule
        .verbs
        .iter()
        .any(|verb| verb == ALL || verb == action.verb());
    if !verb_matches {
        return false;
    }
    match action {
        Action::Resource(action) => {
            has(rule.api_groups.as_ref(), &action.group)
                && resource_matches(rule, action)
                && rule
                    .resource_names
                    .as_ref()
                    .is_none_or(|names| names.is_empty() || names.contains(&action.name))
        }
        Action::Path { path, .. } => rule.non_resource_urls.iter().flatten().any(|url| {
            url == ALL
                || url == path
                || url
                    .strip_suffix('*')
                    .is_some_and(|prefix| path.starts_with(prefix))
        }),
    }
}

/// `pods` matches `pods`; `pods/log` matches `pods/log`, `*/log` and `*`.
fn resource_matches(rule: &PolicyRule, action: &ResourceAction) -> bool {
    let combined = if action.subresource.is_empty() {
        action.resource.clone()
    } else {
        format!("{}/{}", action.resource, action.subresource)
    };
    rule.resources.iter().flatten().any(|resource| {
        resource == ALL
            || *resource == combined
            || (!action.subresource.is_empty()
                && resource
                    .strip_prefix('*')
                    .is_some_and(|suffix| suffix.starts_with('/') && combined.ends_with(suffix)))
    })
}

#[cfg(test)]
#[path = "rbac_tests.rs"]
mod tests;
