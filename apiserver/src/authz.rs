//! Authorization: whether a caller may do what it asks, decided before the registry is
//! asked, at both front ends (`service.rs` for gRPC, `http/authorize.rs` for HTTP), for
//! every verb, watches and subresources alike.
//!
//! ```text
//!  Caller (rudder_proto::authn) ─► User ─┬─ plaintext (loopback): trusted, as before security
//!                                        ├─ group system:masters: everything
//!                                        ├─ a node's credential: node rules (node.rs), then
//!                                        └─ rbac::Policy::decide ◄─ policy_cache (watches the
//!                                                                   four RBAC kinds)
//! ```
//!
//! - [`rbac`]: Kubernetes' RBAC evaluation over the cluster's roles and bindings (pure).
//! - [`escalation`]: a role or binding may grant only what its author holds (pure); the
//!   registry asks [`admit_write`] while it admits an object.
//! - [`node`]: what a node's credential may read and write (Kubernetes' Node authorizer
//!   and NodeRestriction; pure), with the pods bound to the node read from the registry.
//! - [`defaults`]: the roles and bindings every cluster starts with (pure).
//! - [`grpc`]: the action a gRPC request takes, read as the registry will read it (pure;
//!   HTTP's comes from its path).
//! - `policy_cache`: the policy kept current from the registry's own watches.
//! - [`review`]: the access reviews (`kubectl auth can-i`), answered from the same policy.

pub mod defaults;
pub mod escalation;
pub mod grpc;
pub mod node;
mod policy_cache;
pub mod rbac;
pub mod review;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use rudder_proto::authn::Caller;
use serde_json::Value;
use tokio::sync::watch;

use crate::error::ApiError;
use crate::kinds::KindInfo;
use crate::registry::Registry;
use crate::service_account_tokens;
use policy_cache::PolicyCache;
use rbac::{Action, Policy, ResourceAction, User, RBAC_GROUP};

/// How long a token bound to an object being deleted stays good (Kubernetes': 60 s).
const DELETION_GRACE: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// How long a request waits for the policy to be read at a master's start before it is
/// answered "unavailable".
const POLICY_LOAD_WAIT: Duration = Duration::from_secs(10);

/// Decides requests against the cluster's RBAC policy (cheap to clone: one shared cache).
#[derive(Clone)]
pub struct Authorizer {
    cache: Arc<PolicyCache>,
    /// Where the node rules read pods (set when the cache starts following).
    registry: Arc<OnceLock<Registry>>,
}

impl Default for Authorizer {
    fn default() -> Self {
        Self::new()
    }
}

/// Who a caller is, for authorization: `None` for a caller trusted with everything.
pub fn user_of(caller: Option<&Caller>) -> Option<User> {
    match caller {
        // A plaintext connection (only a loopback master serves one) and in-process
        // callers (no front door) are trusted, as before security.
        None | Some(Caller::Plaintext) => None,
        Some(Caller::Authenticated(subject)) => {
            let mut groups = subject.groups.clone();
            if !groups.iter().any(|group| group == defaults::AUTHENTICATED) {
                groups.push(defaults::AUTHENTICATED.into());
            }
            Some(User {
                name: subject.user.clone(),
                groups,
            })
        }
        Some(Caller::Anonymous) => Some(User {
            name: "system:anonymous".into(),
            groups: vec![defaults::UNAUTHENTICATED.into()],
        }),
    }
}

fn is_superuser(user: &User) -> bool {
    user.groups.iter().any(|group| group == defaults::MASTERS)
}

impl Authorizer {
    /// An authorizer whose policy is empty until [`Authorizer::follow`] loads it.
    pub fn new() -> Self {
        Self {
            cache: Arc::new(PolicyCache::new()),
            registry: Arc::new(OnceLock::new()),
        }
    }

    /// Keeps the policy current from `registry` until `stopped` (a master's task).
    pub fn follow(
        &self,
        registry: Registry,
        stopped: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let _ = self.registry.set(registry.clone());
        self.cache.clone().follow(registry, stopped)
    }

    /// The policy as last read.
    pub fn policy(&self) -> Arc<Policy> {
        self.cache.policy()
    }

    /// Waits until the policy is loaded.
    pub async fn until_loaded(&self) {
        self.cache.until_loaded().await
    }

    /// The policy's changes, to wait on.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.cache.changes()
    }

    /// Whether `caller` may take `action`, and Kubernetes' reason. Waits (briefly) for
    /// the policy's first load.
    pub async fn decide(
        &self,
        caller: Option<&Caller>,
        action: &Action,
    ) -> Result<rbac::Decision, ApiError> {
        let Some(user) = user_of(caller) else {
            return Ok(rbac::Decision {
                allowed: true,
                reason: "a trusted connection".into(),
            });
        };
        self.decide_for(&user, action).await
    }

    /// [`Authorizer::decide`] for a user already known.
    pub async fn decide_for(
        &self,
        user: &User,
        action: &Action,
    ) -> Result<rbac::Decision, ApiError> {
        if is_superuser(user) {
            return Ok(rbac::Decision {
                allowed: true,
                reason: format!("{} may do anything", defaults::MASTERS),
            });
        }
        if let Some(node) = node::node_of(user) {
            if self.node_allows(node, action).await? {
                return Ok(rbac::Decision {
                    allowed: true,
                    reason: format!("the node rules allow node {node:?}"),
                });
            }
        }
        self.loaded().await?;
        Ok(self.policy().decide(user, action))
    }

    /// Whether the node rules let `node` take `action`, reading the pods they depend on.
    async fn node_allows(&self, node: &str, action: &Action) -> Result<bool, ApiError> {
        let registry = self.registry.get();
        match (node::verdict(node, action), registry) {
            (node::Verdict::Allow, _) => Ok(true),
            (node::Verdict::NoOpinion, _) | (_, None) => Ok(false),
            (node::Verdict::IfPodBound { namespace, name }, Some(registry)) => {
                let target = crate::registry::Target {
                    resource: "pods",
                    namespace: &namespace,
                    name: &name,
                };
                match registry.get(&target).await {
                    Ok(pod) => Ok(pod["spec"]["nodeName"].as_str() == Some(node)),
                    // Deleting what is not there: the registry says so.
                    Err(ApiError::NotFound { .. }) => Ok(true),
                    Err(error) => Err(error),
                }
            }
            (node::Verdict::IfAccountOfPod { namespace, account }, Some(registry)) => {
                let pods = registry
                    .list("pods", &bound_to_node(node, namespace))
                    .await?;
                // Named exactly (admission names every pod's account), never a mirror
                // pod's: a node's mirror pod runs as no account.
                Ok(pods.items.iter().any(|pod| {
                    pod["spec"]["serviceAccountName"].as_str() == Some(account.as_str())
                        && !pod["metadata"]["annotations"][node::MIRROR_ANNOTATION].is_string()
                }))
            }
            (
                node::Verdict::IfUsedByPod {
                    resource,
                    namespace,
                    name,
                },
                Some(registry),
            ) => {
                let pods = registry
                    .list("pods", &bound_to_node(node, namespace))
                    .await?;
                Ok(pods.items.into_iter().any(|pod| {
                    serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(pod)
                        .is_ok_and(|pod| node::pod_uses(&pod, &resource, &name))
                }))
            }
        }
    }

    /// A ServiceAccount token is good while its account (and the pod it is bound to) is
    /// the one it was issued for: deleting either revokes it, as in Kubernetes.
    async fn still_bound(&self, binding: &service_account_tokens::Binding) -> Result<(), ApiError> {
        let Some(registry) = self.registry.get() else {
            return Err(ApiError::Timeout {
                message: "this master cannot check ServiceAccount tokens yet: try again".into(),
                retry_after_seconds: 1,
            });
        };
        let gone = |what: String| ApiError::Unauthorized {
            message: format!("the token's {what} no longer exists"),
        };
        // The object's uid, unless it is gone or has been being deleted for longer than
        // Kubernetes' grace (a pod stuck terminating on a lost node keeps no token).
        let live_uid = |resource: &'static str, name: String| {
            let namespace = binding.namespace.clone();
            async move {
                let target = crate::registry::Target {
                    resource,
                    namespace: &namespace,
                    name: &name,
                };
                let object = match registry.get(&target).await {
                    Ok(object) => object,
                    Err(ApiError::NotFound { .. }) => return Ok(None),
                    Err(error) => return Err(error),
                };
                let deleted_since = object["metadata"]["deletionTimestamp"]
                    .as_str()
                    .and_then(|time| time.parse::<jiff::Timestamp>().ok());
                let now = jiff::Timestamp::now();
                if deleted_since.is_some_and(|since| now.duration_since(since) > DELETION_GRACE) {
                    return Ok(None);
                }
                Ok(object["metadata"]["uid"].as_str().map(str::to_string))
            }
        };
        let account = format!("ServiceAccount {}/{}", binding.namespace, binding.account);
        if live_uid("serviceaccounts", binding.account.clone())
            .await?
            .as_deref()
            != Some(binding.account_uid.as_str())
        {
            return Err(gone(account));
        }
        if let Some((pod, uid)) = &binding.pod {
            if live_uid("pods", pod.clone()).await?.as_deref() != Some(uid.as_str()) {
                return Err(gone(format!("pod {}/{pod}", binding.namespace)));
            }
        }
        Ok(())
    }

    async fn loaded(&self) -> Result<(), ApiError> {
        match self.cache.loaded_within(POLICY_LOAD_WAIT).await {
            true => Ok(()),
            false => Err(ApiError::Timeout {
                message: "this master has not read the cluster's RBAC policy yet (it needs a \
                          store quorum): try again"
                    .into(),
                retry_after_seconds: 1,
            }),
        }
    }

    /// Refuses `action` with Kubernetes' Forbidden unless `caller` may take it (and with
    /// Unauthorized if `caller`'s ServiceAccount token is bound to what is gone).
    pub async fn authorize(
        &self,
        caller: Option<&Caller>,
        action: &Action,
    ) -> Result<(), ApiError> {
        if let Some(Caller::Authenticated(subject)) = caller {
            if let Some(binding) = service_account_tokens::bound_to(subject) {
                self.still_bound(&binding).await?;
            }
        }
        let Some(user) = user_of(caller) else {
            return Ok(());
        };
        let decision = self.decide_for(&user, action).await?;
        if decision.allowed {
            return Ok(());
        }
        Err(forbidden(&user, action, &decision.reason))
    }
}

/// Kubernetes' Forbidden for `action`: `pods "web" is forbidden: User "jane" cannot delete
/// resource "pods" in API group "" in the namespace "default"`.
pub fn forbidden(user: &User, action: &Action, reason: &str) -> ApiError {
    let reason = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    match action {
        Action::Path { verb, path } => ApiError::Denied {
            resource: String::new(),
            group: String::new(),
            name: String::new(),
            message: format!("User {:?} cannot {verb} path {path:?}{reason}", user.name),
        },
        Action::Resource(action) => {
            let resource = if action.subresource.is_empty() {
                action.resource.clone()
            } else {
                format!("{}/{}", action.resource, action.subresource)
            };
            let scope = if action.namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace {:?}", action.namespace)
            };
            let qualified = if action.group.is_empty() {
                action.resource.clone()
            } else {
                format!("{}.{}", action.resource, action.group)
            };
            ApiError::Denied {
                resource: qualified,
                group: action.group.clone(),
                name: action.name.clone(),
                message: format!(
                    "User {:?} cannot {} resource {resource:?} in API group {:?} {scope}{reason}",
                    user.name, action.verb, action.group
                ),
            }
        }
    }
}

/// A list of the pods in `namespace` bound to `node`.
fn bound_to_node(node: &str, namespace: String) -> crate::list::ListOptions {
    crate::list::ListOptions {
        namespace,
        field_selector: format!("spec.nodeName={node}"),
        ..crate::list::ListOptions::default()
    }
}

tokio::task_local! {
    static REQUESTER: Requester;
}

/// The node the current request is made by, if its caller is a node's credential.
pub fn requesting_node() -> Option<String> {
    REQUESTER
        .try_with(|requester| node::node_of(&requester.user).map(str::to_string))
        .ok()
        .flatten()
}

/// Who a write is made for, as the registry's RBAC admission needs to know.
#[derive(Clone)]
struct Requester {
    user: User,
    authorizer: Authorizer,
}

/// Runs `verb` as `caller`'s: what it writes is admitted as `caller`'s ([`admit_write`]).
pub async fn acting_as<F: Future>(
    authorizer: &Authorizer,
    caller: Option<&Caller>,
    verb: F,
) -> F::Output {
    match user_of(caller).filter(|user| !is_superuser(user)) {
        Some(user) => {
            let requester = Requester {
                user,
                authorizer: authorizer.clone(),
            };
            REQUESTER.scope(requester, verb).await
        }
        None => verb.await,
    }
}

/// Admits `object` (replacing `old` if given) as the current requester's write: a node
/// writes only its own Node and Lease and mirror pods bound to it ([`node::admit`]); a join
/// token for masters is only `system:masters`' to make; an RBAC object may not grant more
/// than its author holds ([`check_grant`]). Writes made for
/// no requester (the master's own, trusted callers, `system:masters`) pass.
pub fn admit_write(info: &KindInfo, object: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let Ok(requester) = REQUESTER.try_with(Requester::clone) else {
        return Ok(());
    };
    if let Some(node) = node::node_of(&requester.user) {
        node::admit(node, info.resource, object, old).map_err(|message| ApiError::Denied {
            resource: info.qualified_resource(),
            group: info.group.into(),
            name: object["metadata"]["name"].as_str().unwrap_or("").into(),
            message,
        })?;
    }
    if info.resource == "secrets"
        && (rudder_proto::join_token::joins_masters(object)
            || old.is_some_and(rudder_proto::join_token::joins_masters))
    {
        // A master token yields the CA's key: only those who hold it already may make one.
        return Err(ApiError::Denied {
            resource: info.qualified_resource(),
            group: info.group.into(),
            name: object["metadata"]["name"].as_str().unwrap_or("").into(),
            message: format!(
                "User {:?} may not make or change a join token for masters: only \
                 system:masters may (`rudder token create --role master` with an admin's \
                 credentials)",
                requester.user.name
            ),
        });
    }
    if info.group != RBAC_GROUP {
        return Ok(());
    }
    check_grant(&requester, info, object, old)
}

/// Admits the delete of `current` as the current requester's: a node deletes only pods
/// bound to it (checked on the very object the delete compares against).
pub fn admit_delete(info: &KindInfo, current: &Value) -> Result<(), ApiError> {
    let Some(node) = requesting_node() else {
        return Ok(());
    };
    if info.resource != "pods" || current["spec"]["nodeName"].as_str() == Some(node.as_str()) {
        return Ok(());
    }
    Err(ApiError::Denied {
        resource: info.qualified_resource(),
        group: info.group.into(),
        name: current["metadata"]["name"].as_str().unwrap_or("").into(),
        message: format!("node {node:?} can only delete pods bound to it"),
    })
}

/// Refuses an RBAC object that would grant the requester's more than it holds, unless it
/// may `escalate` (roles) or `bind` (bindings).
fn check_grant(
    requester: &Requester,
    info: &KindInfo,
    object: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let policy = requester.authorizer.policy();
    let user = &requester.user;
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let special = |verb: &str, resource: &str, role: &str| {
        let action = Action::Resource(ResourceAction {
            verb: verb.into(),
            group: RBAC_GROUP.into(),
            resource: resource.into(),
            namespace: namespace.clone(),
            name: role.into(),
            ..ResourceAction::default()
        });
        policy.decide(user, &action).allowed
    };
    let decode = |value: &Value| serde_json::from_value::<Grant>(value.clone()).ok();
    let grant = decode(object)
        .ok_or_else(|| ApiError::internal(format!("an admitted {} does not decode", info.kind)))?;
    let unchanged = old
        .and_then(decode)
        .is_some_and(|old| old.same_rules(&grant));
    let held = || policy.rules_of(user, &namespace);
    let uncovered = match info.resource {
        "roles" | "clusterroles" => {
            if unchanged || special("escalate", info.resource, &name) {
                return Ok(());
            }
            if grant.aggregation_rule.is_some() {
                // Kubernetes: gathering other roles' rules is for those who hold them all.
                let everything = defaults::cluster_roles()
                    .into_iter()
                    .find(|role| role.metadata.name.as_deref() == Some("cluster-admin"))
                    .and_then(|role| role.rules)
                    .unwrap_or_default();
                escalation::uncovered(&held(), &everything)
            } else {
                escalation::uncovered(&held(), &grant.rules.clone().unwrap_or_default())
            }
        }
        _ => {
            let Some(role) = &grant.role_ref else {
                return Ok(());
            };
            let role_resource = if role.kind == "Role" {
                "roles"
            } else {
                "clusterroles"
            };
            if special("bind", role_resource, &role.name) {
                return Ok(());
            }
            let rules = policy
                .role_rules(&namespace, role)
                .map_err(|why| ApiError::Denied {
                    resource: info.qualified_resource(),
                    group: info.group.into(),
                    name: name.clone(),
                    message: format!("the role it binds cannot be checked: {why}"),
                })?;
            escalation::uncovered(&held(), &rules)
        }
    };
    if uncovered.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = uncovered.iter().map(escalation::describe).collect();
    Err(ApiError::Denied {
        resource: info.qualified_resource(),
        group: info.group.into(),
        name,
        message: format!(
            "user {:?} (groups={:?}) is attempting to grant RBAC permissions not currently \
             held:\n{}",
            user.name,
            user.groups,
            shown.join("\n")
        ),
    })
}

/// What an RBAC object grants, whatever its kind (labels too: they choose the aggregated
/// roles a ClusterRole joins).
#[derive(serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Grant {
    #[serde(default)]
    metadata: GrantMetadata,
    rules: Option<Vec<k8s_openapi::api::rbac::v1::PolicyRule>>,
    aggregation_rule: Option<k8s_openapi::api::rbac::v1::AggregationRule>,
    role_ref: Option<k8s_openapi::api::rbac::v1::RoleRef>,
    subjects: Option<Vec<k8s_openapi::api::rbac::v1::Subject>>,
}

#[derive(serde::Deserialize, PartialEq, Default)]
struct GrantMetadata {
    labels: Option<std::collections::BTreeMap<String, String>>,
}

impl Grant {
    /// A role whose rules, aggregation and labels are unchanged needs no check (bindings
    /// always do: they name subjects).
    fn same_rules(&self, other: &Grant) -> bool {
        self.role_ref.is_none()
            && self.rules == other.rules
            && self.aggregation_rule == other.aggregation_rule
            && self.metadata == other.metadata
    }
}

/// The default roles and bindings, as the store objects a master makes at start.
pub fn default_objects() -> Vec<(&'static str, Value)> {
    let roles = defaults::cluster_roles()
        .into_iter()
        .filter_map(|role: ClusterRole| {
            let mut value = serde_json::to_value(role).ok()?;
            value["apiVersion"] = "rbac.authorization.k8s.io/v1".into();
            value["kind"] = "ClusterRole".into();
            Some(("clusterroles", value))
        });
    let bindings =
        defaults::cluster_role_bindings()
            .into_iter()
            .filter_map(|binding: ClusterRoleBinding| {
                let mut value = serde_json::to_value(binding).ok()?;
                value["apiVersion"] = "rbac.authorization.k8s.io/v1".into();
                value["kind"] = "ClusterRoleBinding".into();
                Some(("clusterrolebindings", value))
            });
    roles.chain(bindings).collect()
}
