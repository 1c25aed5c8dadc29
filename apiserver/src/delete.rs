//! `delete`: graceful pod termination, finalizers, preconditions, propagation to dependents
//! (objects whose `ownerReferences` name the deleted one), and the finalization of
//! terminating namespaces.
//!
//! The decision is pure ([`plan`]); the registry executes it in one compare-and-swap.
//! Dependents are handled by the deleting request itself (Orphan: their owner reference is
//! removed first; Foreground: they go first; Background: they go after the owner).

use std::future::Future;
use std::pin::Pin;

use rudder_proto::objects::priority::{SYSTEM_CLUSTER_CRITICAL, SYSTEM_NODE_CRITICAL};
use rudder_raftstore::kv::{prefix_end, KeyRange, RangeRequest};
use serde_json::Value;

use crate::error::ApiError;
use crate::kinds::{KindInfo, KINDS};
use crate::object;
use crate::registry::{
    object_ref, request_namespace, unchanged, Committed, Fence, Registry, Resolved, Target, Write,
    WriteOptions,
};

const MAX_ATTEMPTS: usize = 16;
/// Namespaces every cluster needs, which Kubernetes refuses to delete.
const PROTECTED_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];
/// The built-in PriorityClasses, which Kubernetes refuses to delete (critical pods name them).
const PROTECTED_PRIORITY_CLASSES: [&str; 2] = [SYSTEM_NODE_CRITICAL, SYSTEM_CLUSTER_CRITICAL];
/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// What happens to the objects a deleted object owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// Dependents stay, without their owner reference.
    Orphan,
    /// The owner goes now, its dependents right after.
    #[default]
    Background,
    /// The dependents go first, then the owner.
    Foreground,
}

impl Propagation {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        match text {
            "" | "Background" | "background" => Ok(Self::Background),
            "Orphan" | "orphan" => Ok(Self::Orphan),
            "Foreground" | "foreground" => Ok(Self::Foreground),
            other => Err(ApiError::bad_field(
                "propagationPolicy",
                format!(
                    "unsupported propagation policy {other:?}: use Orphan, Background or \
                     Foreground"
                ),
            )),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `None`: the object's own (pods: `spec.terminationGracePeriodSeconds`).
    pub grace_period_seconds: Option<i64>,
    pub propagation: Propagation,
    pub precondition_uid: String,
    pub precondition_resource_version: String,
}

/// What a delete request does to the object as it is now.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Remove it from the store.
    Remove,
    /// Keep it, marked for deletion as given (graceful termination or finalizers pending).
    Mark(Value),
    /// It is already marked at least as urgently: nothing to write.
    AlreadyMarked,
}

/// Decides what deleting `object` does at `now`. Pure.
pub fn plan(info: &KindInfo, object: &Value, grace: Option<i64>, now: jiff::Timestamp) -> Plan {
    let deleting = object::is_being_deleted(object);
    if info.kind == "Namespace" {
        // A namespace empties first; the namespace finalizer removes it (see `finalize_namespace`).
        if deleting {
            return Plan::AlreadyMarked;
        }
        let mut marked = mark(object, now, 0);
        marked["status"]["phase"] = Value::from("Terminating");
        return Plan::Mark(marked);
    }
    if info.kind == "Pod" {
        let bound = object["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        let finished = matches!(
            object["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        let grace = grace
            .or(object["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(DEFAULT_GRACE_SECONDS);
        if bound && !finished && grace > 0 {
            let current = object["metadata"]["deletionGracePeriodSeconds"].as_i64();
            return match current {
                // A shorter grace period may replace a longer one, never the reverse.
                Some(current) if deleting && current <= grace => Plan::AlreadyMarked,
                _ => {
                    let mut marked = mark(object, now, grace);
                    let earlier = object["metadata"]["deletionTimestamp"]
                        .as_str()
                        .and_then(object::parse_timestamp)
                        .filter(|existing| {
                            *existing < now + jiff::SignedDuration::from_secs(grace)
                        });
                    if let Some(existing) = earlier {
                        marked["metadata"]["deletionTimestamp"] =
                            Value::from(object::timestamp(existing));
                    }
                    Plan::Mark(marked)
                }
            };
        }
    }
    if !object::finalizers(object).is_empty() {
        let current = object["metadata"]["deletionGracePeriodSeconds"].as_i64();
        return if deleting && current == Some(0) {
            Plan::AlreadyMarked
        } else {
            Plan::Mark(mark(object, now, 0))
        };
    }
    Plan::Remove
}

/// `object` with `deletionTimestamp` = now + grace and `deletionGracePeriodSeconds` = grace.
fn mark(object: &Value, now: jiff::Timestamp, grace: i64) -> Value {
    let mut marked = object.clone();
    let at = now + jiff::SignedDuration::from_secs(grace);
    let meta = object::metadata_mut(&mut marked);
    meta.insert(
        "deletionTimestamp".into(),
        Value::from(object::timestamp(at)),
    );
    meta.insert("deletionGracePeriodSeconds".into(), Value::from(grace));
    meta.remove("resourceVersion");
    marked
}

type BoxedDelete<'a> = Pin<Box<dyn Future<Output = Result<(Value, bool), ApiError>> + Send + 'a>>;

impl Registry {
    /// Deletes an object. Returns it as deletion left it and whether it is gone (`false`:
    /// marked, waiting for its kubelet, finalizers or contents).
    pub async fn delete(
        &self,
        target: &Target<'_>,
        options: &DeleteOptions,
        fence: Option<&Fence>,
    ) -> Result<(Value, bool), ApiError> {
        let Target {
            resource,
            namespace,
            name,
        } = *target;
        let info = self.kind(resource)?;
        if let Some(grace) = options.grace_period_seconds.filter(|g| *g < 0) {
            return Err(ApiError::bad_field(
                "gracePeriodSeconds",
                format!("grace period must not be negative, got {grace}"),
            ));
        }
        if info.kind == "Namespace" && PROTECTED_NAMESPACES.contains(&name) {
            return Err(ApiError::Forbidden {
                message: format!("namespace {name:?} may not be deleted: it is a system namespace"),
            });
        }
        if info.kind == "PriorityClass" && PROTECTED_PRIORITY_CLASSES.contains(&name) {
            return Err(ApiError::Forbidden {
                message: format!(
                    "{} is forbidden: this is a system priority class and cannot be deleted",
                    object_ref(info, name)
                ),
            });
        }
        let namespace = request_namespace(info, namespace);
        self.delete_boxed(
            info,
            namespace,
            name.to_string(),
            options.clone(),
            fence.cloned(),
        )
        .await
    }

    fn delete_boxed<'a>(
        &'a self,
        info: &'static KindInfo,
        namespace: String,
        name: String,
        options: DeleteOptions,
        fence: Option<Fence>,
    ) -> BoxedDelete<'a> {
        Box::pin(async move {
            let key = object::key(info, &namespace, &name);
            for _ in 0..MAX_ATTEMPTS {
                let Some(kv) = self.read(&key).await? else {
                    // Gone because an earlier attempt of this request deleted it: answer as
                    // that attempt would have, with the object as it was before.
                    if let Some(revision) = self.earlier_attempt().await? {
                        if let Some(before) = self.read_at(&key, revision - 1).await? {
                            return Ok((before, true));
                        }
                    }
                    return Err(ApiError::NotFound {
                        object: object_ref(info, &name),
                    });
                };
                let current = object::decode(&kv)?;
                check_preconditions(info, &current, &options)?;
                let mut compares = vec![unchanged(&key, kv.mod_revision)];
                compares.extend(self.fence_holds(fence.as_ref()).await?);
                let decision = plan(
                    info,
                    &current,
                    options.grace_period_seconds,
                    jiff::Timestamp::now(),
                );
                let uid = object::uid(&current).to_string();
                match decision {
                    Plan::AlreadyMarked => return Ok((current, false)),
                    Plan::Mark(mut marked) => {
                        if let Committed::At { revision, .. } = self
                            .commit(&key, compares, Write::Put(object::encode(&marked)))
                            .await?
                        {
                            object::set_resource_version(&mut marked, revision);
                            return Ok((marked, false));
                        }
                    }
                    Plan::Remove => {
                        match options.propagation {
                            Propagation::Orphan => {
                                self.orphan_dependents(info, &namespace, &uid, fence.as_ref())
                                    .await?
                            }
                            Propagation::Foreground => {
                                self.delete_dependents(info, &namespace, &uid, fence.as_ref())
                                    .await?
                            }
                            Propagation::Background => {}
                        }
                        if let Committed::At { revision, .. } =
                            self.commit(&key, compares, Write::Delete).await?
                        {
                            if options.propagation == Propagation::Background {
                                self.delete_dependents(info, &namespace, &uid, fence.as_ref())
                                    .await?;
                            }
                            let mut gone = current;
                            object::set_resource_version(&mut gone, revision);
                            return Ok((gone, true));
                        }
                    }
                }
            }
            Err(ApiError::Conflict {
                object: object_ref(info, &name),
                reason: "the object kept changing while it was being deleted; try again".into(),
            })
        })
    }

    /// Every object (of any namespaced kind) whose owner references name `owner_uid`.
    async fn dependents(
        &self,
        owner: &KindInfo,
        namespace: &str,
        owner_uid: &str,
    ) -> Result<Vec<(&'static KindInfo, Value)>, ApiError> {
        let mut found = Vec::new();
        if owner_uid.is_empty() {
            return Ok(found);
        }
        for info in KINDS.iter().filter(|k| k.namespaced) {
            // A namespaced owner owns only objects in its own namespace.
            let scope = if owner.namespaced { namespace } else { "" };
            for object in self.scan(info, scope).await? {
                if object::is_owned_by(&object, owner_uid) {
                    found.push((info, object));
                }
            }
        }
        Ok(found)
    }

    pub(crate) async fn delete_dependents(
        &self,
        owner: &KindInfo,
        namespace: &str,
        owner_uid: &str,
        fence: Option<&Fence>,
    ) -> Result<(), ApiError> {
        for (info, dependent) in self.dependents(owner, namespace, owner_uid).await? {
            let result = self
                .delete_boxed(
                    info,
                    object::namespace(&dependent).to_string(),
                    object::name(&dependent).to_string(),
                    DeleteOptions::default(),
                    fence.cloned(),
                )
                .await;
            match result {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    async fn orphan_dependents(
        &self,
        owner: &KindInfo,
        namespace: &str,
        owner_uid: &str,
        fence: Option<&Fence>,
    ) -> Result<(), ApiError> {
        let options = WriteOptions {
            fence: fence.cloned(),
            dry_run: false,
        };
        for (info, dependent) in self.dependents(owner, namespace, owner_uid).await? {
            let at = Resolved {
                info,
                namespace: object::namespace(&dependent),
                name: object::name(&dependent),
            };
            // Filter the references of the object as it is at write time (another writer
            // may have changed them since the scan).
            let result = self
                .modify(&at, None, &options, |current| {
                    let mut next = current.clone();
                    if let Some(owners) = next["metadata"]["ownerReferences"].as_array_mut() {
                        owners.retain(|o| o["uid"].as_str() != Some(owner_uid));
                    }
                    object::metadata_mut(&mut next).remove("resourceVersion");
                    Ok(next)
                })
                .await;
            match result {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Every object of `info` in `namespace` (all namespaces when empty), linearizably.
    pub(crate) async fn scan(
        &self,
        info: &KindInfo,
        namespace: &str,
    ) -> Result<Vec<Value>, ApiError> {
        let prefix = object::prefix(info, namespace);
        let (_, response) = self
            .range(RangeRequest {
                range: KeyRange {
                    key: prefix.clone(),
                    range_end: prefix_end(&prefix),
                },
                ..Default::default()
            })
            .await?;
        response.kvs.iter().map(object::decode).collect()
    }

    /// One step of emptying a terminating namespace: deletes what is in it and, once it is
    /// empty, the namespace itself. Returns whether the namespace is gone.
    pub async fn finalize_namespace(&self, name: &str) -> Result<bool, ApiError> {
        let namespaces = self.kind("namespaces")?;
        let key = object::key(namespaces, "", name);
        let Some(kv) = self.read(&key).await? else {
            return Ok(true);
        };
        let namespace = object::decode(&kv)?;
        if !object::is_being_deleted(&namespace) {
            return Ok(false);
        }
        let mut remaining = 0;
        for info in KINDS.iter().filter(|k| k.namespaced) {
            for object in self.scan(info, name).await? {
                remaining += 1;
                if object::is_being_deleted(&object) && info.kind != "Pod" {
                    continue;
                }
                let result = self
                    .delete_boxed(
                        info,
                        name.to_string(),
                        object::name(&object).to_string(),
                        DeleteOptions::default(),
                        None,
                    )
                    .await;
                match result {
                    Ok(_) | Err(ApiError::NotFound { .. }) => {}
                    Err(error) => return Err(error),
                }
            }
        }
        if remaining > 0 {
            return Ok(false);
        }
        let compares = vec![unchanged(&key, kv.mod_revision)];
        Ok(matches!(
            self.commit(&key, compares, Write::Delete).await?,
            Committed::At { .. }
        ))
    }

    /// Names of namespaces marked for deletion.
    pub async fn terminating_namespaces(&self) -> Result<Vec<String>, ApiError> {
        let namespaces = self.kind("namespaces")?;
        Ok(self
            .scan(namespaces, "")
            .await?
            .iter()
            .filter(|ns| object::is_being_deleted(ns))
            .map(|ns| object::name(ns).to_string())
            .collect())
    }
}

fn check_preconditions(
    info: &KindInfo,
    current: &Value,
    options: &DeleteOptions,
) -> Result<(), ApiError> {
    let name = object::name(current);
    if !options.precondition_uid.is_empty() && options.precondition_uid != object::uid(current) {
        return Err(ApiError::Conflict {
            object: object_ref(info, name),
            reason: format!(
                "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                options.precondition_uid,
                object::uid(current)
            ),
        });
    }
    let version = object::meta_str(current, "resourceVersion");
    if !options.precondition_resource_version.is_empty()
        && options.precondition_resource_version != version
    {
        return Err(ApiError::Conflict {
            object: object_ref(info, name),
            reason: format!(
                "Precondition failed: ResourceVersion in precondition: {}, ResourceVersion in \
                 object meta: {version}",
                options.precondition_resource_version
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::resolve;

    fn now() -> jiff::Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_bound_pod_is_marked_with_its_grace_period_and_an_unbound_one_goes_at_once() {
        let pods = resolve("pods").unwrap();
        let bound = json!({ "metadata": { "name": "p" }, "spec": { "nodeName": "n1" } });
        let Plan::Mark(marked) = plan(pods, &bound, None, now()) else {
            panic!("a bound pod is marked");
        };
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
        assert_eq!(
            marked["metadata"]["deletionTimestamp"],
            "2026-01-01T00:00:30Z"
        );
        let unbound = json!({ "metadata": { "name": "p" }, "spec": {} });
        assert_eq!(plan(pods, &unbound, None, now()), Plan::Remove);
        assert_eq!(plan(pods, &bound, Some(0), now()), Plan::Remove);
    }

    #[test]
    fn a_grace_period_can_shorten_but_never_lengthen() {
        let pods = resolve("pods").unwrap();
        let Plan::Mark(marked) = plan(
            pods,
            &json!({ "spec": { "nodeName": "n" } }),
            Some(10),
            now(),
        ) else {
            panic!("marked");
        };
        assert_eq!(plan(pods, &marked, Some(20), now()), Plan::AlreadyMarked);
        assert!(matches!(plan(pods, &marked, Some(5), now()), Plan::Mark(_)));
    }

    #[test]
    fn finalizers_keep_an_object_marked_until_they_are_removed() {
        let config_maps = resolve("cm").unwrap();
        let held = json!({ "metadata": { "name": "c", "finalizers": ["example.com/hold"] } });
        let Plan::Mark(marked) = plan(config_maps, &held, None, now()) else {
            panic!("marked");
        };
        assert_eq!(plan(config_maps, &marked, None, now()), Plan::AlreadyMarked);
        assert_eq!(
            plan(config_maps, &json!({ "metadata": {} }), None, now()),
            Plan::Remove
        );
    }

    #[test]
    fn a_namespace_is_marked_terminating_first() {
        let namespaces = resolve("ns").unwrap();
        let Plan::Mark(marked) = plan(
            namespaces,
            &json!({ "metadata": { "name": "a" } }),
            None,
            now(),
        ) else {
            panic!("marked");
        };
        assert_eq!(marked["status"]["phase"], "Terminating");
        assert_eq!(plan(namespaces, &marked, None, now()), Plan::AlreadyMarked);
    }

    #[test]
    fn unknown_propagation_policies_are_refused() {
        assert_eq!(Propagation::parse("").unwrap(), Propagation::Background);
        assert!(Propagation::parse("Sideways").is_err());
    }
}
