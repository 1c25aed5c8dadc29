//! The Priority admission, as kube-apiserver's plugin does it: a new pod gets
//! `spec.priority` and `spec.preemptionPolicy` from the PriorityClass it names (or from the
//! global default class, whose name it then takes), resolved by
//! [`rudder_proto::objects::priority::admit`] against the classes read from the store in one
//! range. An unknown class, or a priority the pod set itself that its class contradicts, is
//! Forbidden. An update resolves nothing: it keeps what the pod got when it was made. A
//! PriorityClass marked `globalDefault` is refused while another class is the default.
//!
//! ```text
//!  create(pod) ─ admit ─► range /registry/priorityclasses/ ─► admit(spec, classes)
//!                          ├─ Ok  ─► spec.priority, .preemptionPolicy, .priorityClassName
//!                          └─ Err ─► Forbidden: pods "x" is forbidden: <Kubernetes' words>
//!  update(pod) ─ candidate ─► keep_priority: the stored values fill what the body leaves out
//! ```

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use rudder_proto::objects::priority;
use rudder_raftstore::kv::{KeyRange, RangeRequest};
use serde_json::Value;

use super::{object_ref, Registry};
use crate::error::ApiError;
use crate::kinds::KindInfo;
use crate::object;

/// The pod fields the admission sets on create and an update carries forward.
const ADMITTED_FIELDS: [&str; 2] = ["priority", "preemptionPolicy"];

impl Registry {
    /// Sets the priority of `pod` (admitted, about to be created) from its class, or refuses
    /// it. `info` is the Pod kind.
    pub(super) async fn admit_priority(
        &self,
        info: &KindInfo,
        pod: &mut Value,
    ) -> Result<(), ApiError> {
        let classes = self.priority_classes().await?;
        prioritize(info, pod, &classes)
    }

    /// Refuses a PriorityClass marked `globalDefault` while another class is (Kubernetes'
    /// Priority admission: only one default may exist). `class` is the class as it is to be
    /// written.
    pub(super) async fn admit_global_default(
        &self,
        info: &KindInfo,
        class: &Value,
    ) -> Result<(), ApiError> {
        if class["globalDefault"] != Value::Bool(true) {
            return Ok(());
        }
        let classes = self.priority_classes().await?;
        only_default(info, class, &classes)
    }

    /// Every stored PriorityClass, in one linearizable read, so a class created just before
    /// the pod is found. The built-in classes need not be among them: resolving falls back
    /// to [`priority::system_classes`].
    async fn priority_classes(&self) -> Result<Vec<PriorityClass>, ApiError> {
        let kind = self.kind("priorityclasses")?;
        let (_, response) = self
            .range(RangeRequest {
                range: KeyRange::prefix(object::prefix(kind, "")),
                ..Default::default()
            })
            .await?;
        let mut classes = Vec::with_capacity(response.kvs.len());
        for kv in &response.kvs {
            let class: PriorityClass = serde_json::from_slice(&kv.value).map_err(|error| {
                ApiError::internal(format!(
                    "stored PriorityClass {} does not decode: {error}",
                    String::from_utf8_lossy(&kv.key)
                ))
            })?;
            classes.push(class);
        }
        Ok(classes)
    }
}

/// Refuses `class` (marked globalDefault) when another of `classes` is the default.
fn only_default(info: &KindInfo, class: &Value, classes: &[PriorityClass]) -> Result<(), ApiError> {
    let name = object::name(class);
    let other = classes
        .iter()
        .filter(|c| c.global_default == Some(true))
        .filter_map(|c| c.metadata.name.as_deref())
        .find(|other| *other != name);
    match other {
        Some(other) => Err(ApiError::Forbidden {
            message: format!(
                "{} is forbidden: PriorityClass {other} is already marked as default. Only \
                 one default can exist",
                object_ref(info, name)
            ),
        }),
        None => Ok(()),
    }
}

/// Resolves the priority of `pod` (admitted JSON) against `classes` and writes it into the
/// pod: `spec.priority`, `spec.preemptionPolicy` when the class states one, and the default
/// class's name for a pod that names none. A pod without a spec is left to validation.
fn prioritize(info: &KindInfo, pod: &mut Value, classes: &[PriorityClass]) -> Result<(), ApiError> {
    let name = object::name(pod).to_string();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let mut typed: PodSpec =
        serde_json::from_value(Value::Object(spec.clone())).map_err(|error| {
            ApiError::internal(format!(
                "the admitted spec of pod {name:?} does not decode: {error}"
            ))
        })?;
    priority::admit(&mut typed, classes).map_err(|error| ApiError::Forbidden {
        message: format!("{} is forbidden: {error}", object_ref(info, &name)),
    })?;
    if let Some(value) = typed.priority {
        spec.insert("priority".to_string(), Value::from(value));
    }
    if let Some(policy) = typed.preemption_policy {
        spec.insert("preemptionPolicy".to_string(), Value::from(policy));
    }
    if let Some(class) = typed.priority_class_name.filter(|class| !class.is_empty()) {
        spec.insert("priorityClassName".to_string(), Value::from(class));
    }
    Ok(())
}

/// What the admission set when the pod was made, carried into a replacement (`next`) that
/// leaves it out, as Kubernetes' plugin does on update; a replacement that changes it is a
/// validation error (a pod's spec is fixed but for a few fields).
pub(super) fn keep_priority(next: &mut Value, current: &Value) {
    let Some(spec) = next.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for field in ADMITTED_FIELDS {
        if spec.get(field).is_none_or(Value::is_null) {
            if let Some(stored) = current["spec"].get(field) {
                spec.insert(field.to_string(), stored.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    use super::*;
    use crate::kinds::resolve;

    fn web_pod(spec: Value) -> Value {
        let mut spec = spec;
        spec["containers"] = json!([{ "name": "c", "image": "busybox" }]);
        json!({ "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": "web", "namespace": "default" }, "spec": spec })
    }

    fn class(name: &str, value: i32, global_default: bool) -> PriorityClass {
        PriorityClass {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            value,
            global_default: Some(global_default),
            preemption_policy: Some(priority::PREEMPT_LOWER_PRIORITY.to_string()),
            ..PriorityClass::default()
        }
    }

    #[test]
    fn only_one_class_may_be_the_global_default() {
        let info = resolve("priorityclasses").unwrap();
        let classes = [class("low", 10, true), class("high", 1000, false)];
        let wanted =
            json!({ "metadata": { "name": "high" }, "value": 1000, "globalDefault": true });
        let refused = only_default(info, &wanted, &classes)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains(
                "PriorityClass low is already marked as default. Only one default can exist"
            ),
            "{refused}"
        );
        let again = json!({ "metadata": { "name": "low" }, "value": 20, "globalDefault": true });
        assert!(
            only_default(info, &again, &classes).is_ok(),
            "the default itself may change"
        );
        assert!(only_default(info, &wanted, &classes[1..]).is_ok());
    }

    /// The pod's spec after admission against `classes`, or the refusal's message.
    fn admitted(spec: Value, classes: &[PriorityClass]) -> Result<Value, String> {
        let pods = resolve("pods").expect("pods are served");
        let mut pod = web_pod(spec);
        match prioritize(pods, &mut pod, classes) {
            Ok(()) => Ok(pod["spec"].clone()),
            Err(ApiError::Forbidden { message }) => Err(message),
            Err(other) => panic!("not a refusal: {other}"),
        }
    }

    #[test]
    fn a_pod_takes_its_class_or_the_default_and_is_refused_in_kubernetes_words() {
        let high = class("high", 1000, false);
        let normal = class("normal", 100, true);

        let critical = admitted(json!({ "priorityClassName": "system-node-critical" }), &[]);
        let critical = critical.expect("a built-in class");
        assert_eq!(critical["priority"], 2_000_001_000);
        assert_eq!(critical["preemptionPolicy"], "PreemptLowerPriority");

        let named = admitted(
            json!({ "priorityClassName": "high" }),
            std::slice::from_ref(&high),
        );
        assert_eq!(named.expect("a user's class")["priority"], 1000);

        let plain = admitted(json!({}), std::slice::from_ref(&high)).expect("no class, no default");
        assert_eq!(plain["priority"], 0);
        assert!(plain.get("priorityClassName").is_none());

        let defaulted = admitted(json!({}), &[high.clone(), normal.clone()]);
        let defaulted = defaulted.expect("the global default");
        assert_eq!(defaulted["priority"], 100);
        assert_eq!(defaulted["priorityClassName"], "normal");

        assert_eq!(
            admitted(
                json!({ "priorityClassName": "gold" }),
                std::slice::from_ref(&high)
            ),
            Err("pods \"web\" is forbidden: no PriorityClass with name gold was found".into())
        );
        assert_eq!(
            admitted(json!({ "priority": 5 }), &[high, normal]),
            Err(
                "pods \"web\" is forbidden: the integer value of priority (5) must not be \
                 provided in pod spec; priority admission controller computed 100 from the \
                 given PriorityClass name"
                    .into()
            )
        );
    }

    #[test]
    fn an_update_keeps_what_admission_set_unless_it_says_otherwise() {
        let current = json!({ "spec": { "priority": 1000, "preemptionPolicy": "Never" } });
        let mut bare = json!({ "spec": { "containers": [] } });
        keep_priority(&mut bare, &current);
        assert_eq!(bare["spec"]["priority"], 1000);
        assert_eq!(bare["spec"]["preemptionPolicy"], "Never");
        let mut changed = json!({ "spec": { "priority": 7 } });
        keep_priority(&mut changed, &current);
        assert_eq!(
            changed["spec"]["priority"], 7,
            "left to validation to refuse"
        );
        let mut odd = json!({ "spec": "none" });
        keep_priority(&mut odd, &current);
        assert_eq!(odd["spec"], "none");
    }
}
