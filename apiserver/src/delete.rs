//! `delete`: graceful pod termination, finalizers, preconditions, and the propagation
//! policy's finalizers.
//!
//! The decision is pure ([`plan`]); the registry executes it in one compare-and-swap. The
//! request itself never touches dependents (objects whose `ownerReferences` name the deleted
//! one): Background removes the owner and the garbage collector deletes what it owned;
//! Foreground and Orphan keep the owner marked with the `foregroundDeletion` / `orphan`
//! finalizer, which the garbage collector removes once the dependents are gone / released.
//! A namespace is marked Terminating and stays until the namespace controller has emptied
//! it and removed its `kubernetes` finalizer. Either way a master killed mid-request leaves
//! nothing half done: the rest is a controller's, which resumes on any master.

use rudder_proto::objects::deletion::{FOREGROUND_DELETION, ORPHAN};
use rudder_proto::objects::priority::{SYSTEM_CLUSTER_CRITICAL, SYSTEM_NODE_CRITICAL};
use serde_json::Value;

use crate::error::ApiError;
use crate::kinds::KindInfo;
use crate::object;
use crate::registry::{
    holds_contents, landed, object_ref, request_namespace, unchanged, Committed, Fence, Registry,
    Target, Write,
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
    /// A request's `propagationPolicy`; `""` is none given.
    pub fn parse(text: &str) -> Result<Option<Self>, ApiError> {
        match text {
            "" => Ok(None),
            "Background" | "background" => Ok(Some(Self::Background)),
            "Orphan" | "orphan" => Ok(Some(Self::Orphan)),
            "Foreground" | "foreground" => Ok(Some(Self::Foreground)),
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
    /// `None`: not given (the object's garbage-collection finalizers stay as they are).
    pub propagation: Option<Propagation>,
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

impl Propagation {
    /// The finalizer that carries this policy to the garbage collector, if it needs one.
    fn finalizer(self) -> Option<&'static str> {
        match self {
            Self::Orphan => Some(ORPHAN),
            Self::Foreground => Some(FOREGROUND_DELETION),
            Self::Background => None,
        }
    }
}

/// Decides what deleting `object` with `propagation` (`None`: not given) does at `now`.
/// Pure.
pub fn plan(
    info: &KindInfo,
    object: &Value,
    grace: Option<i64>,
    propagation: Option<Propagation>,
    now: jiff::Timestamp,
) -> Plan {
    let deleting = object::is_being_deleted(object);
    if info.kind == "Namespace" {
        // A namespace empties first: the namespace controller removes its finalizer, then it
        // goes (a delete of a terminating namespace with no finalizers left removes it).
        if !deleting {
            let mut marked = mark(object, now, 0);
            marked["status"]["phase"] = Value::from("Terminating");
            return Plan::Mark(marked);
        }
        return if object::finalizers(object).is_empty() && !holds_contents(info, object) {
            Plan::Remove
        } else {
            Plan::AlreadyMarked
        };
    }
    // A policy given replaces the garbage collector's finalizer the object holds (the
    // later request wins, as in Kubernetes); none given leaves them as they are.
    let held = object::finalizers(object);
    let wanted: Vec<String> = match propagation {
        None => held.clone(),
        Some(policy) => held
            .iter()
            .filter(|f| *f != ORPHAN && *f != FOREGROUND_DELETION)
            .cloned()
            .chain(policy.finalizer().map(String::from))
            .collect(),
    };
    let changed = wanted != held;
    let with_wanted = |mut marked: Value| {
        if changed {
            object::metadata_mut(&mut marked)
                .insert("finalizers".into(), Value::from(wanted.clone()));
        }
        marked
    };
    // `object` as it is, to be written with new finalizers only.
    let unmarked = || {
        let mut same = object.clone();
        object::metadata_mut(&mut same).remove("resourceVersion");
        same
    };
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
                Some(current) if deleting && current <= grace && !changed => Plan::AlreadyMarked,
                Some(current) if deleting && current <= grace => {
                    Plan::Mark(with_wanted(unmarked()))
                }
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
                    Plan::Mark(with_wanted(marked))
                }
            };
        }
    }
    if wanted.is_empty() {
        // Nothing holds it (any more).
        return Plan::Remove;
    }
    let current = object["metadata"]["deletionGracePeriodSeconds"].as_i64();
    if deleting && current == Some(0) {
        return if changed {
            Plan::Mark(with_wanted(unmarked()))
        } else {
            Plan::AlreadyMarked
        };
    }
    Plan::Mark(with_wanted(mark(object, now, 0)))
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
        let key = object::key(info, &namespace, name);
        for attempt in 0..MAX_ATTEMPTS {
            let Some(kv) = self.read(&key).await? else {
                // Gone because an earlier attempt of this request deleted it: answer as that
                // attempt would have, with the object as it was before.
                if let Some(revision) = self.earlier_attempt().await? {
                    if let Some(before) = self.read_at(&key, revision - 1).await? {
                        return Ok((before, true));
                    }
                }
                return Err(ApiError::NotFound {
                    object: object_ref(info, name),
                });
            };
            let current = object::decode(&kv)?;
            // NodeRestriction on the object the delete compares against (not an earlier
            // read: a pod of the same name could have moved to another node since), before
            // anything about it is told.
            crate::authz::admit_delete(info, &current)?;
            check_preconditions(info, &current, options)?;
            let mut compares = vec![unchanged(&key, kv.mod_revision)];
            compares.extend(self.fence_holds(fence, attempt > 0).await?);
            let decision = plan(
                info,
                &current,
                options.grace_period_seconds,
                options.propagation,
                jiff::Timestamp::now(),
            );
            match decision {
                Plan::AlreadyMarked => return Ok((current, false)),
                Plan::Mark(mut marked) => {
                    let write = Write::Put(object::encode(&marked));
                    let committed = self.commit(&key, compares, write).await?;
                    if let Committed::At { revision, .. } = landed(fence, committed) {
                        object::set_resource_version(&mut marked, revision);
                        return Ok((marked, false));
                    }
                }
                Plan::Remove => {
                    let releases = self.releases(info, &current);
                    let committed = self
                        .commit_with(&key, compares, Write::Delete, releases)
                        .await?;
                    if let Committed::At { revision, .. } = landed(fence, committed) {
                        let mut gone = current;
                        object::set_resource_version(&mut gone, revision);
                        return Ok((gone, true));
                    }
                }
            }
        }
        Err(ApiError::Conflict {
            object: object_ref(info, name),
            reason: "the object kept changing while it was being deleted; try again".into(),
        })
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
        let Plan::Mark(marked) = plan(pods, &bound, None, None, now()) else {
            panic!("a bound pod is marked");
        };
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
        assert_eq!(
            marked["metadata"]["deletionTimestamp"],
            "2026-01-01T00:00:30Z"
        );
        let unbound = json!({ "metadata": { "name": "p" }, "spec": {} });
        assert_eq!(plan(pods, &unbound, None, None, now()), Plan::Remove);
        assert_eq!(plan(pods, &bound, Some(0), None, now()), Plan::Remove);
    }

    #[test]
    fn a_grace_period_can_shorten_but_never_lengthen() {
        let pods = resolve("pods").unwrap();
        let Plan::Mark(marked) = plan(
            pods,
            &json!({ "spec": { "nodeName": "n" } }),
            Some(10),
            None,
            now(),
        ) else {
            panic!("marked");
        };
        assert_eq!(
            plan(pods, &marked, Some(20), None, now()),
            Plan::AlreadyMarked
        );
        assert!(matches!(
            plan(pods, &marked, Some(5), None, now()),
            Plan::Mark(_)
        ));
    }

    #[test]
    fn finalizers_keep_an_object_marked_until_they_are_removed() {
        let config_maps = resolve("cm").unwrap();
        let held = json!({ "metadata": { "name": "c", "finalizers": ["example.com/hold"] } });
        let Plan::Mark(marked) = plan(config_maps, &held, None, None, now()) else {
            panic!("marked");
        };
        assert_eq!(
            plan(config_maps, &marked, None, None, now()),
            Plan::AlreadyMarked
        );
        assert_eq!(
            plan(config_maps, &json!({ "metadata": {} }), None, None, now()),
            Plan::Remove
        );
    }

    #[test]
    fn a_namespace_is_marked_terminating_first() {
        let namespaces = resolve("ns").unwrap();
        let Plan::Mark(marked) = plan(
            namespaces,
            &json!({ "metadata": { "name": "a" }, "spec": { "finalizers": ["kubernetes"] } }),
            None,
            None,
            now(),
        ) else {
            panic!("marked");
        };
        assert_eq!(marked["status"]["phase"], "Terminating");
        assert_eq!(
            plan(namespaces, &marked, None, None, now()),
            Plan::AlreadyMarked,
            "it waits for the namespace controller"
        );
        let mut emptied = marked.clone();
        emptied["spec"]["finalizers"] = json!([]);
        assert_eq!(plan(namespaces, &emptied, None, None, now()), Plan::Remove);
    }

    #[test]
    fn foreground_and_orphan_mark_the_owner_with_their_finalizer_and_background_removes_it() {
        let replica_sets = resolve("rs").unwrap();
        let owner = json!({ "metadata": { "name": "web", "resourceVersion": "7" } });
        assert_eq!(
            plan(
                replica_sets,
                &owner,
                None,
                Some(Propagation::Background),
                now()
            ),
            Plan::Remove
        );
        for (propagation, finalizer) in [
            (Propagation::Foreground, "foregroundDeletion"),
            (Propagation::Orphan, "orphan"),
        ] {
            let Plan::Mark(marked) = plan(replica_sets, &owner, None, Some(propagation), now())
            else {
                panic!("{propagation:?} marks the owner");
            };
            assert_eq!(marked["metadata"]["finalizers"], json!([finalizer]));
            assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 0);
            assert!(marked["metadata"].get("resourceVersion").is_none());
            assert_eq!(
                plan(replica_sets, &marked, None, Some(propagation), now()),
                Plan::AlreadyMarked,
                "asking again changes nothing"
            );
            assert_eq!(
                plan(replica_sets, &marked, None, None, now()),
                Plan::AlreadyMarked,
                "no policy given keeps the one asked before"
            );
            assert_eq!(
                plan(
                    replica_sets,
                    &marked,
                    None,
                    Some(Propagation::Background),
                    now()
                ),
                Plan::Remove,
                "Background given drops the finalizer, and nothing else holds it"
            );
        }
    }

    #[test]
    fn a_second_delete_with_another_policy_replaces_its_finalizer_and_keeps_the_deletion_time() {
        let replica_sets = resolve("rs").unwrap();
        let owner = json!({ "metadata": { "name": "web" } });
        let Plan::Mark(orphaning) =
            plan(replica_sets, &owner, None, Some(Propagation::Orphan), now())
        else {
            panic!("marked");
        };
        let later = now() + jiff::SignedDuration::from_secs(60);
        let Plan::Mark(both) = plan(
            replica_sets,
            &orphaning,
            None,
            Some(Propagation::Foreground),
            later,
        ) else {
            panic!("the foreground finalizer is added");
        };
        assert_eq!(
            both["metadata"]["finalizers"],
            json!(["foregroundDeletion"]),
            "the later policy replaces the earlier"
        );
        assert_eq!(
            both["metadata"]["deletionTimestamp"],
            orphaning["metadata"]["deletionTimestamp"]
        );
    }

    #[test]
    fn a_bound_pod_deleted_in_the_foreground_keeps_its_grace_period_and_gets_the_finalizer() {
        let pods = resolve("pods").unwrap();
        let bound = json!({ "metadata": { "name": "p" }, "spec": { "nodeName": "n1" } });
        let Plan::Mark(marked) = plan(pods, &bound, None, Some(Propagation::Foreground), now())
        else {
            panic!("marked");
        };
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
        assert_eq!(
            marked["metadata"]["finalizers"],
            json!(["foregroundDeletion"])
        );
    }

    #[test]
    fn unknown_propagation_policies_are_refused() {
        assert_eq!(Propagation::parse("").unwrap(), None);
        assert_eq!(
            Propagation::parse("Orphan").unwrap(),
            Some(Propagation::Orphan)
        );
        assert!(Propagation::parse("Sideways").is_err());
    }
}
