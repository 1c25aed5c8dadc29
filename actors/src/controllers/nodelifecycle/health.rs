//! One node's health as the node lifecycle controller sees it (Kubernetes'
//! `tryUpdateNodeHealth` and the taints of `doNoScheduleTaintingPass` and
//! `processTaintBaseEviction`). Pure.
//!
//! ```text
//!  last heard = latest of: Lease renewTime (kube-node-lease/<node>), Ready heartbeat,
//!               creation, the end of a full disruption
//!  now > last heard + grace (40 s; 60 s for a node that never posted status)
//!      ─► Ready, MemoryPressure, DiskPressure, PIDPressure := Unknown
//!         (NodeStatusUnknown "Kubelet stopped posting node status.")
//!  Ready False   ─► not-ready:NoSchedule    + not-ready:NoExecute
//!  Ready Unknown ─► unreachable:NoSchedule  + unreachable:NoExecute
//!  pressure conditions True, spec.unschedulable ─► their NoSchedule taints
//! ```

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::scheduling::taints::{
    DISK_PRESSURE, MEMORY_PRESSURE, NETWORK_UNAVAILABLE, NOT_READY, NO_EXECUTE, NO_SCHEDULE,
    PID_PRESSURE, UNREACHABLE, UNSCHEDULABLE,
};

/// Where kubelets keep their heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The conditions a silent node's are set Unknown (`Ready` first).
const WATCHED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// A node's Ready condition, as the controller reads (or has just set) it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Readiness {
    Ready,
    NotReady,
    /// The kubelet went silent (or never spoke).
    Unknown,
}

impl Readiness {
    fn of(status: &str) -> Self {
        match status {
            "True" => Self::Ready,
            "False" => Self::NotReady,
            _ => Self::Unknown,
        }
    }

    /// The NoExecute taint key a node in this state carries, if any.
    pub fn no_execute_taint(self) -> Option<&'static str> {
        match self {
            Self::Ready => None,
            Self::NotReady => Some(NOT_READY),
            Self::Unknown => Some(UNREACHABLE),
        }
    }
}

/// What the controller concludes about one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub readiness: Readiness,
    /// The whole new `status.conditions` when the controller must write them.
    pub new_conditions: Option<Vec<NodeCondition>>,
    /// When the node's grace runs out if it stays silent (`None`: already Unknown).
    pub silent_at: Option<jiff::Timestamp>,
}

/// How long a node may stay silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grace {
    /// `--node-monitor-grace-period` (40 s).
    pub monitor: Duration,
    /// `--node-startup-grace-period` (60 s) for a node that never posted a Ready condition.
    pub startup: Duration,
}

impl Default for Grace {
    fn default() -> Self {
        Self {
            monitor: Duration::from_secs(40),
            startup: Duration::from_secs(60),
        }
    }
}

/// `lease`: the node's Lease, if any. `grace_restart`: when the cluster left full disruption
/// (every node's grace starts again from there).
pub fn assess(
    node: &Node,
    lease: Option<&Lease>,
    grace: Grace,
    grace_restart: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Health {
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let ready = conditions.iter().find(|c| c.type_ == "Ready");
    let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let renewed = lease
        .and_then(|l| l.spec.as_ref()?.renew_time.as_ref())
        .map(|t| t.0);
    let heartbeat = ready
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    let last_heard = [created, renewed, heartbeat, grace_restart]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let period = if ready.is_some() {
        grace.monitor
    } else {
        grace.startup
    };
    let deadline = last_heard
        .checked_add(jiff::SignedDuration::try_from(period).unwrap_or_default())
        .unwrap_or(last_heard);
    let readiness = ready.map_or(Readiness::Unknown, |c| Readiness::of(&c.status));
    if now <= deadline {
        let silent_at = (readiness != Readiness::Unknown || ready.is_none()).then_some(deadline);
        return Health {
            readiness,
            new_conditions: None,
            silent_at,
        };
    }
    let stale = WATCHED_CONDITIONS.iter().any(|t| {
        conditions
            .iter()
            .find(|c| c.type_ == *t)
            .is_none_or(|c| c.status != "Unknown")
    });
    Health {
        readiness: Readiness::Unknown,
        new_conditions: stale.then(|| mark_unknown(conditions, created, now)),
        silent_at: None,
    }
}

/// Sets the watched conditions Unknown, adding the ones the kubelet never posted.
fn mark_unknown(
    mut conditions: Vec<NodeCondition>,
    created: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Vec<NodeCondition> {
    for kind in WATCHED_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == kind) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
            }
            None => conditions.push(NodeCondition {
                type_: kind.into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_heartbeat_time: created.map(Time),
                last_transition_time: Some(Time(now)),
            }),
        }
    }
    conditions
}

/// The NoSchedule taints the node's conditions and `spec.unschedulable` call for, by key
/// (`doNoScheduleTaintingPass`); `conditions` as just assessed.
pub fn no_schedule_taints(node: &Node, conditions: &[NodeCondition]) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = conditions
        .iter()
        .filter_map(|c| match (c.type_.as_str(), c.status.as_str()) {
            ("Ready", "False") => Some(NOT_READY),
            ("Ready", "Unknown") => Some(UNREACHABLE),
            ("MemoryPressure", "True") => Some(MEMORY_PRESSURE),
            ("DiskPressure", "True") => Some(DISK_PRESSURE),
            ("NetworkUnavailable", "True") => Some(NETWORK_UNAVAILABLE),
            ("PIDPressure", "True") => Some(PID_PRESSURE),
            _ => None,
        })
        .collect();
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        keys.push(UNSCHEDULABLE);
    }
    keys
}

/// The taint keys this controller owns for `effect`: it adds and removes only these.
pub fn managed_keys(effect: &str) -> &'static [&'static str] {
    match effect {
        NO_SCHEDULE => &[
            NOT_READY,
            UNREACHABLE,
            MEMORY_PRESSURE,
            DISK_PRESSURE,
            NETWORK_UNAVAILABLE,
            PID_PRESSURE,
            UNSCHEDULABLE,
        ],
        NO_EXECUTE => &[NOT_READY, UNREACHABLE],
        _ => &[],
    }
}

/// Whether `taint` is one of the controller's for its effect.
pub fn is_managed(taint: &Taint) -> bool {
    managed_keys(&taint.effect).contains(&taint.key.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(conditions: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": { "name": "n1", "creationTimestamp": "2024-01-01T00:00:00Z" },
            "status": { "conditions": conditions }
        }))
        .unwrap()
    }

    fn ready(status: &str, heartbeat: &str) -> serde_json::Value {
        json!([{ "type": "Ready", "status": status, "lastHeartbeatTime": heartbeat,
                 "lastTransitionTime": "2024-01-01T00:00:00Z" },
               { "type": "MemoryPressure", "status": "False" }])
    }

    fn lease(renewed: &str) -> Lease {
        serde_json::from_value(
            json!({ "metadata": { "name": "n1", "namespace": NODE_LEASE_NAMESPACE },
            "spec": { "renewTime": renewed } }),
        )
        .unwrap()
    }

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_renewed_lease_keeps_a_node_as_it_reports_itself() {
        let n = node(ready("True", "2024-01-01T00:00:10Z"));
        let l = lease("2024-01-01T00:10:00Z");
        let h = assess(
            &n,
            Some(&l),
            Grace::default(),
            None,
            at("2024-01-01T00:10:40Z"),
        );
        assert_eq!(h.readiness, Readiness::Ready);
        assert_eq!(h.new_conditions, None);
        assert_eq!(h.silent_at, Some(at("2024-01-01T00:10:40Z")));
        let not_ready = node(ready("False", "2024-01-01T00:00:10Z"));
        let h = assess(
            &not_ready,
            Some(&l),
            Grace::default(),
            None,
            at("2024-01-01T00:10:00Z"),
        );
        assert_eq!(h.readiness, Readiness::NotReady);
    }

    #[test]
    fn a_lease_silent_past_the_grace_period_makes_the_node_unknown() {
        let n = node(ready("True", "2024-01-01T00:00:10Z"));
        let l = lease("2024-01-01T00:10:00Z");
        let h = assess(
            &n,
            Some(&l),
            Grace::default(),
            None,
            at("2024-01-01T00:10:41Z"),
        );
        assert_eq!(h.readiness, Readiness::Unknown);
        let conditions = h.new_conditions.expect("written");
        let ready = &conditions[0];
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(
            ready.last_transition_time,
            Some(Time(at("2024-01-01T00:10:41Z")))
        );
        assert_eq!(
            ready.last_heartbeat_time,
            Some(Time(at("2024-01-01T00:00:10Z"))),
            "kept"
        );
        let kinds: Vec<_> = conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("Ready", "Unknown"),
                ("MemoryPressure", "Unknown"),
                ("DiskPressure", "Unknown"),
                ("PIDPressure", "Unknown")
            ]
        );
        assert_eq!(
            conditions[2].reason.as_deref(),
            Some("NodeStatusNeverUpdated")
        );

        let mut already = n.clone();
        already.status.as_mut().unwrap().conditions = Some(conditions);
        let again = assess(
            &already,
            Some(&l),
            Grace::default(),
            None,
            at("2024-01-01T00:20:00Z"),
        );
        assert_eq!(again.new_conditions, None, "nothing new to write");
        assert_eq!(again.readiness, Readiness::Unknown);
    }

    #[test]
    fn a_node_that_never_posted_status_gets_the_startup_grace() {
        let n = node(json!([]));
        let h = assess(&n, None, Grace::default(), None, at("2024-01-01T00:00:59Z"));
        assert_eq!(
            (h.readiness, h.new_conditions.is_none()),
            (Readiness::Unknown, true)
        );
        assert_eq!(h.silent_at, Some(at("2024-01-01T00:01:00Z")));
        let h = assess(&n, None, Grace::default(), None, at("2024-01-01T00:01:01Z"));
        let conditions = h.new_conditions.unwrap();
        assert_eq!(
            conditions[0].reason.as_deref(),
            Some("NodeStatusNeverUpdated")
        );
    }

    #[test]
    fn leaving_full_disruption_restarts_every_grace_period() {
        let n = node(ready("True", "2024-01-01T00:00:10Z"));
        let restart = Some(at("2024-01-01T01:00:00Z"));
        let h = assess(
            &n,
            None,
            Grace::default(),
            restart,
            at("2024-01-01T01:00:30Z"),
        );
        assert_eq!(h.readiness, Readiness::Ready);
    }

    #[test]
    fn conditions_call_for_their_no_schedule_taints() {
        let mut n = node(json!([]));
        n.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            unschedulable: Some(true),
            ..Default::default()
        });
        let conditions: Vec<NodeCondition> = serde_json::from_value(json!([
            { "type": "Ready", "status": "Unknown" },
            { "type": "DiskPressure", "status": "True" },
            { "type": "MemoryPressure", "status": "False" },
            { "type": "NetworkUnavailable", "status": "True" }
        ]))
        .unwrap();
        assert_eq!(
            no_schedule_taints(&n, &conditions),
            [
                UNREACHABLE,
                DISK_PRESSURE,
                NETWORK_UNAVAILABLE,
                UNSCHEDULABLE
            ]
        );
    }
}
