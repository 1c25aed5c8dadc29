//! Bind (Kubernetes' `pods/binding`): assigns a pod to a node. `spec.nodeName` moves only
//! from empty to the node, never on a pod being deleted; [`assign`] decides, the registry
//! writes the result in one compare-and-swap on the revision it read.

use serde_json::Value;

use super::transform::set_condition;
use super::{
    contended, landed, object_ref, unchanged, Committed, Fence, Registry, Resolved, Write,
    MAX_ATTEMPTS,
};
use crate::error::ApiError;
use crate::kinds::KindInfo;
use crate::object;
use crate::validation::names::dns1123_subdomain;
use crate::validation::FieldError;

/// A pod and the node it is to run on.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// The pod's uid, so that a pod deleted and created again under the same name is not
    /// bound in its place; empty: whichever pod has the name.
    pub uid: &'a str,
    pub node: &'a str,
}

/// What binding does to a pod as it is now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Assignment {
    /// The pod, bound and marked scheduled.
    Bound(Value),
    /// It is already on this node (maybe the one asked for, by an earlier attempt).
    AlreadyOn(String),
}

/// Decides what `binding` does to `pod` as it is; `now` dates its PodScheduled condition.
/// Pure.
pub(crate) fn assign(
    pods: &KindInfo,
    pod: &Value,
    binding: &Binding<'_>,
    now: jiff::Timestamp,
) -> Result<Assignment, ApiError> {
    let Binding {
        namespace,
        name,
        uid,
        node,
    } = *binding;
    if !uid.is_empty() && object::uid(pod) != uid {
        return Err(ApiError::Conflict {
            object: object_ref(pods, name),
            reason: format!(
                "the pod's uid is {}, not {uid}: it was deleted and created again",
                object::uid(pod)
            ),
        });
    }
    if object::is_being_deleted(pod) {
        return Err(ApiError::Forbidden {
            message: format!(
                "pod {namespace}/{name} is being deleted, cannot be assigned to a host"
            ),
        });
    }
    if let Some(bound) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Ok(Assignment::AlreadyOn(bound.into()));
    }
    let mut bound = pod.clone();
    bound["spec"]["nodeName"] = Value::from(node);
    set_condition(&mut bound, "PodScheduled", "True", now);
    Ok(Assignment::Bound(bound))
}

/// The node a binding names must be a valid node name.
fn check_node(binding: &Binding<'_>) -> Result<(), ApiError> {
    let problems = dns1123_subdomain(binding.node);
    if binding.node.is_empty() || !problems.is_empty() {
        return Err(ApiError::Invalid {
            kind: "Binding".into(),
            name: binding.name.into(),
            causes: vec![if binding.node.is_empty() {
                FieldError::required("target.name", "the node to bind to")
            } else {
                FieldError::invalid("target.name", binding.node, problems.join("; "))
            }],
        });
    }
    Ok(())
}

/// Planted (`bind-ignores-assigned`, a chaos build only): a pod bound to one node is bound
/// to another when asked, as if the check for an assigned pod were missing.
fn rebind_planted() -> bool {
    rudder_proto::failpoints::eval("bind-ignores-assigned", |_| ()).is_some()
}

impl Registry {
    /// Assigns a pod to a node: only an unassigned pod that is not being deleted.
    pub async fn bind(
        &self,
        binding: &Binding<'_>,
        fence: Option<&Fence>,
    ) -> Result<Value, ApiError> {
        let pods = self.kind("pods")?;
        check_node(binding)?;
        let at = Resolved {
            info: pods,
            namespace: binding.namespace,
            name: binding.name,
        };
        let key = at.key();
        let now = jiff::Timestamp::now();
        for attempt in 0..MAX_ATTEMPTS {
            let Some(kv) = self.read(&key).await? else {
                return Err(at.not_found());
            };
            let current = object::decode(&kv)?;
            let mut pod = match assign(pods, &current, binding, now)? {
                Assignment::Bound(pod) => pod,
                Assignment::AlreadyOn(node) if node != binding.node && rebind_planted() => {
                    let mut moved = current;
                    moved["spec"]["nodeName"] = Value::from(binding.node);
                    moved
                }
                Assignment::AlreadyOn(node) => {
                    if let Some(done) = self.as_earlier_attempt_left(&key).await? {
                        return Ok(done);
                    }
                    return Err(ApiError::Conflict {
                        object: object_ref(pods, binding.name),
                        reason: format!(
                            "pod {} is already assigned to node {node:?}",
                            binding.name
                        ),
                    });
                }
            };
            let mut compares = vec![unchanged(&key, kv.mod_revision)];
            compares.extend(self.fence_holds(fence, attempt > 0).await?);
            let body = object::encode(&pod);
            let committed = self.commit(&key, compares, Write::Put(body)).await?;
            if let Committed::At { revision, replayed } = landed(fence, committed) {
                if replayed {
                    if let Some(written) = self.read_at(&key, revision).await? {
                        return Ok(written);
                    }
                }
                object::set_resource_version(&mut pod, revision);
                return Ok(pod);
            }
        }
        Err(contended(pods, binding.name))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::resolve;

    fn now() -> jiff::Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn binding<'a>(uid: &'a str, node: &'a str) -> Binding<'a> {
        Binding {
            namespace: "default",
            name: "web",
            uid,
            node,
        }
    }

    #[test]
    fn an_unassigned_pod_is_bound_and_marked_scheduled() {
        let pods = resolve("pods").unwrap();
        let pod = json!({ "metadata": { "name": "web", "uid": "u1" }, "spec": {} });
        let Assignment::Bound(bound) = assign(pods, &pod, &binding("u1", "n1"), now()).unwrap()
        else {
            panic!("an unassigned pod is bound");
        };
        assert_eq!(bound["spec"]["nodeName"], "n1");
        assert_eq!(bound["status"]["conditions"][0]["type"], "PodScheduled");
        assert_eq!(bound["status"]["conditions"][0]["status"], "True");
    }

    #[test]
    fn a_bound_pod_stays_on_its_node() {
        let pods = resolve("pods").unwrap();
        let pod = json!({ "metadata": { "name": "web" }, "spec": { "nodeName": "n2" } });
        assert_eq!(
            assign(pods, &pod, &binding("", "n1"), now()).unwrap(),
            Assignment::AlreadyOn("n2".into())
        );
    }

    #[test]
    fn a_pod_being_deleted_or_created_again_is_not_bound() {
        let pods = resolve("pods").unwrap();
        let pod = json!({ "metadata": { "name": "web", "uid": "u2" }, "spec": {} });
        let error = assign(pods, &pod, &binding("u1", "n1"), now()).unwrap_err();
        assert!(
            error.to_string().contains("deleted and created again"),
            "{error}"
        );
        let deleting = json!({
            "metadata": { "name": "web", "deletionTimestamp": "2026-01-01T00:00:00Z" },
            "spec": {},
        });
        let error = assign(pods, &deleting, &binding("", "n1"), now()).unwrap_err();
        assert!(error.to_string().contains("is being deleted"), "{error}");
    }

    #[test]
    fn the_node_must_be_named_and_valid() {
        assert!(check_node(&binding("", "node-1")).is_ok());
        let error = check_node(&binding("", "")).unwrap_err();
        assert!(
            error.to_string().contains("target.name: Required"),
            "{error}"
        );
        assert!(check_node(&binding("", "Node_1")).is_err());
    }
}
