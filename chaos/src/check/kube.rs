//! Kubernetes invariants over the store's own record of the objects (every change of pods,
//! ReplicaSets, Deployments and Nodes from revision 1, in revision order): the objects
//! are replayed revision by revision and after each one these must hold —
//!
//! - **bound once**: a pod's `spec.nodeName`, once set, never changes (no pod bound twice,
//!   or to two nodes);
//! - **allocatable**: the pods bound to a node and not finished never ask for more CPU,
//!   memory or pods than the node's `status.allocatable` (terminating pods still count, as
//!   the scheduler counts them);
//! - **ReplicaSet**: a new pod never takes a ReplicaSet's active pods (owned, not being
//!   deleted, not finished) beyond its `spec.replicas`;
//! - **fenced**: every write a scheduler or controller manager made under its lease (as its
//!   master logged it, [`fenced_writes`]) landed while the lease was held by that holder
//!   at that epoch: no write of a deposed leader (an old epoch) lands;
//! - **StatefulSet**: no two pods of a StatefulSet hold the same ordinal at once (its
//!   `apps.kubernetes.io/pod-index` label, or the number its name ends in), terminating
//!   pods included: a replacement waits until its predecessor is gone;
//! - **Deployment**: the replicas a Deployment's ReplicaSets ask for together never grow
//!   beyond its `spec.replicas + maxSurge` (0 for Recreate): the rolling update's promise.
//!   Its pods may overlap that for a moment, as in Kubernetes (one ReplicaSet's new pod
//!   created before another's old one is deleted), so they are not what is judged.
//!
//! A controller acts on the replicas it last saw, which may be the value before the latest
//! change: both bounds allow the larger of the two (the workload changes one object's
//! replicas at most every few seconds, far longer than a controller's view lags). A count
//! above `replicas` because of a scale-down not yet carried out is no violation: only a
//! count that *grows* past the bound is (an orphan adopted is no growth: Kubernetes too
//! deletes the extra one after). Pure.

use std::collections::{BTreeSet, HashMap};

use rudder_proto::objects::quantity::Quantity;
use serde_json::Value;

use super::watch::Change;

/// One broken invariant, where it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub revision: i64,
    pub detail: String,
}

/// What the record held: evidence that the checks had something to judge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    pub pods_created: usize,
    pub binds: usize,
    /// Nodes that were, at some revision, full (every pod slot taken).
    pub full_nodes: usize,
    /// Times a ReplicaSet's or a Deployment's active pods grew, each judged.
    pub growths_judged: usize,
    /// Times the scheduler's or the controller manager's lease went to another holder.
    pub takeovers: usize,
    /// Fenced writes judged against their lease.
    pub fenced_writes: usize,
    /// Pods of StatefulSets created, each judged for its ordinal.
    pub ordinals_judged: usize,
}

/// A write a leader-elected component made under its lease, as its master logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencedWrite {
    /// `namespace/name` of the lease.
    pub lease: String,
    pub holder: String,
    pub epoch: i64,
    pub revision: i64,
}

/// The fenced writes a master logged (`... fenced write landed lease=NS/NAME holder=H
/// epoch=E revision=R`, target `rudder::fenced`). Pure.
pub fn fenced_writes(log: &str) -> Vec<FencedWrite> {
    // Whole lines only: the member may be writing the last one as it is read.
    let whole = log.rsplit_once('\n').map_or("", |(lines, _)| lines);
    whole
        .lines()
        .filter(|line| line.contains("fenced write landed"))
        .filter_map(|line| {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
                    .map(str::to_string)
            };
            Some(FencedWrite {
                lease: field("lease")?,
                holder: field("holder")?,
                epoch: field("epoch")?.parse().ok()?,
                revision: field("revision")?.parse().ok()?,
            })
        })
        .collect()
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Judged {
    pub violations: Vec<Violation>,
    pub evidence: Evidence,
}

/// Checks `changes` (any order within a revision; revisions ascending) and the `fenced`
/// writes against the leases in them.
pub fn check(changes: &[Change], fenced: &[FencedWrite]) -> Judged {
    let mut replay = Replay::default();
    let mut at = 0;
    while at < changes.len() {
        let revision = changes[at].revision;
        let end = changes[at..]
            .iter()
            .position(|c| c.revision != revision)
            .map_or(changes.len(), |n| at + n);
        replay.apply(&changes[at..end]);
        at = end;
    }
    for write in fenced {
        replay.judge_fenced(write);
    }
    Judged {
        violations: replay.violations,
        evidence: Evidence {
            full_nodes: replay.ever_full.len(),
            ..replay.evidence
        },
    }
}

/// The leases whose holders act as the scheduler and the controller manager.
const LEADER_LEASES: [&str; 2] = [SCHEDULER_LEASE, CONTROLLER_MANAGER_LEASE];

/// The store keys of the scheduler's and the controller manager's leases.
pub const SCHEDULER_LEASE: &str = "/registry/leases/kube-system/rudder-scheduler";
pub const CONTROLLER_MANAGER_LEASE: &str = "/registry/leases/kube-system/rudder-controller-manager";

/// What a node offers, in milli-CPUs, bytes and pods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Resources {
    cpu_millis: i128,
    memory: i128,
    pods: i128,
}

/// A ReplicaSet or a Deployment: its replicas now and before the latest change.
#[derive(Debug, Clone, Default)]
struct Owner {
    name: String,
    replicas: i64,
    previous: Option<i64>,
    /// A ReplicaSet's Deployment (by uid).
    controller: Option<String>,
    /// A Deployment's surge: `maxSurge` as written (an int or a percentage), 0 for Recreate.
    surge: Value,
}

impl Owner {
    fn of(object: &Value, earlier: Option<&Owner>) -> Self {
        let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1);
        let previous = match earlier {
            Some(earlier) if earlier.replicas != replicas => Some(earlier.replicas),
            Some(earlier) => earlier.previous,
            None => None,
        };
        let strategy = &object["spec"]["strategy"];
        let surge = match strategy["type"].as_str() {
            Some("Recreate") => Value::from(0),
            _ => match &strategy["rollingUpdate"]["maxSurge"] {
                Value::Null => Value::from("25%"),
                written => written.clone(),
            },
        };
        Self {
            name: format!("{}/{}", namespace(object), name(object)),
            replicas,
            previous,
            controller: controller_uid(object).map(str::to_string),
            surge,
        }
    }

    /// The most it may have: the larger of its replicas now and before, plus `surge`.
    fn bound(&self, with_surge: bool) -> i64 {
        let replicas = self.replicas.max(self.previous.unwrap_or(0));
        match with_surge {
            true => replicas + resolve_surge(&self.surge, replicas),
            false => replicas,
        }
    }
}

/// `maxSurge` against `replicas`: a count, or a percentage rounded up (as Kubernetes does).
/// Written here again on purpose: the checker does not judge the controllers with their own
/// code (`rudder_actors::intstr`).
fn resolve_surge(surge: &Value, replicas: i64) -> i64 {
    match surge {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(text) => match text.strip_suffix('%').map(str::parse::<i64>) {
            Some(Ok(percent)) => (replicas * percent + 99) / 100,
            _ => text.parse().unwrap_or(0),
        },
        _ => 0,
    }
}

#[derive(Default)]
struct Replay {
    pods: HashMap<String, Value>,
    nodes: HashMap<String, Resources>,
    /// ReplicaSets and Deployments by uid, and their uids by store key.
    owners: HashMap<String, Owner>,
    owner_at: HashMap<String, String>,
    /// Each bound pod's node, by pod uid, and the revision it was bound at.
    bound: HashMap<String, (String, i64)>,
    /// Nodes over their allocatable now (reported when they go over, not at every revision).
    over: BTreeSet<String>,
    ever_full: BTreeSet<String>,
    /// Every lease's holder and epoch from each revision it was written at, by
    /// `namespace/name`.
    leases: HashMap<String, Vec<(i64, String, i64)>>,
    violations: Vec<Violation>,
    evidence: Evidence,
}

impl Replay {
    fn apply(&mut self, changes: &[Change]) {
        let revision = changes[0].revision;
        let mut touched_nodes = BTreeSet::new();
        let mut grown = BTreeSet::new();
        let mut asked_more = BTreeSet::new();
        for change in changes {
            let resource = change
                .key
                .strip_prefix("/registry/")
                .map(|rest| rest.split('/').next().unwrap_or_default());
            let value: Option<Value> = change
                .value
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok());
            match resource {
                Some("pods") => {
                    self.pod(revision, &change.key, value, &mut touched_nodes, &mut grown)
                }
                Some("replicasets" | "deployments") => {
                    self.owner(&change.key, value, &mut asked_more)
                }
                Some("leases") => self.lease(revision, &change.key, value.as_ref()),
                Some("nodes") => {
                    if let Some(node) = &value {
                        self.nodes.insert(name(node).into(), allocatable(node));
                        touched_nodes.insert(name(node).to_string());
                    }
                }
                _ => {}
            }
        }
        for node in touched_nodes {
            self.judge_node(revision, &node);
        }
        for rs in grown {
            self.judge_replica_set(revision, &rs);
        }
        for deployment in asked_more {
            self.judge_deployment(revision, &deployment);
        }
    }

    fn pod(
        &mut self,
        revision: i64,
        key: &str,
        value: Option<Value>,
        touched_nodes: &mut BTreeSet<String>,
        grown: &mut BTreeSet<String>,
    ) {
        let old = match &value {
            Some(new) => self.pods.insert(key.into(), new.clone()),
            None => self.pods.remove(key),
        };
        if let Some(old) = &old {
            touched_nodes.extend(node_of(old).map(str::to_string));
        }
        let Some(new) = value else { return };
        if old.is_none() {
            self.evidence.pods_created += 1;
        }
        if let Some(node) = node_of(&new) {
            touched_nodes.insert(node.into());
            let uid = uid(&new).to_string();
            match self.bound.get(&uid) {
                None => {
                    self.bound.insert(uid, (node.into(), revision));
                    self.evidence.binds += 1;
                }
                Some((first, at)) if first != node => self.violations.push(Violation {
                    invariant: "bound once",
                    revision,
                    detail: format!(
                        "pod {key} (uid {uid}) was bound to {first} at revision {at}, then \
                         to {node}"
                    ),
                }),
                Some(_) => {}
            }
        } else if let Some((first, at)) = self.bound.get(uid(&new)) {
            self.violations.push(Violation {
                invariant: "bound once",
                revision,
                detail: format!("pod {key} was bound to {first} at revision {at}, then unbound"),
            });
        }
        // Only a new pod grows its owner: adopting an orphan may exceed replicas for a
        // moment in Kubernetes too (the extra one is then deleted).
        if let Some(owner) = active_owner(&new).filter(|_| old.is_none()) {
            grown.insert(owner.to_string());
        }
        if old.is_none() {
            self.judge_ordinal(revision, key, &new);
        }
    }

    /// A new pod of a StatefulSet must be the only one holding its ordinal.
    fn judge_ordinal(&mut self, revision: i64, key: &str, pod: &Value) {
        let Some((set, ordinal)) = stateful_ordinal(pod) else {
            return;
        };
        self.evidence.ordinals_judged += 1;
        let twin = self.pods.iter().find(|(other_key, other)| {
            *other_key != key && stateful_ordinal(other) == Some((set, ordinal))
        });
        if let Some((twin, _)) = twin {
            self.violations.push(Violation {
                invariant: "StatefulSet",
                revision,
                detail: format!(
                    "pod {key} holds ordinal {ordinal} of StatefulSet {set}, which pod {twin} \
                     still holds"
                ),
            });
        }
    }

    /// A lease: its holder and epoch from this revision on; for a leader-elected
    /// component's, a new holder is a takeover (the first is not).
    fn lease(&mut self, revision: i64, key: &str, value: Option<&Value>) {
        let holder = value
            .and_then(|lease| lease["spec"]["holderIdentity"].as_str())
            .unwrap_or("");
        let epoch = value
            .and_then(|lease| lease["spec"]["leaseTransitions"].as_i64())
            .unwrap_or(0);
        let name = key.trim_start_matches("/registry/leases/");
        let history = self.leases.entry(name.to_string()).or_default();
        // Its holder before, passing over releases (no holder).
        let before = history
            .iter()
            .rev()
            .map(|(_, h, _)| h)
            .find(|h| !h.is_empty());
        let taken_over = before.is_some_and(|before| !holder.is_empty() && before != holder);
        if taken_over && LEADER_LEASES.contains(&key) {
            self.evidence.takeovers += 1;
        }
        history.push((revision, holder.to_string(), epoch));
    }

    /// A ReplicaSet or a Deployment; a ReplicaSet of a Deployment asking for more pods
    /// than before puts the Deployment in `asked_more`.
    fn owner(&mut self, key: &str, value: Option<Value>, asked_more: &mut BTreeSet<String>) {
        let Some(object) = value else {
            if let Some(uid) = self.owner_at.remove(key) {
                self.owners.remove(&uid);
            }
            return;
        };
        let uid = uid(&object).to_string();
        let earlier = self.owners.get(&uid);
        let owner = Owner::of(&object, earlier);
        if let Some(deployment) = &owner.controller {
            if owner.replicas > earlier.map_or(0, |e| e.replicas) {
                asked_more.insert(deployment.clone());
            }
        }
        self.owner_at.insert(key.into(), uid.clone());
        self.owners.insert(uid, owner);
    }

    fn judge_node(&mut self, revision: i64, node: &str) {
        let Some(offered) = self.nodes.get(node).copied() else {
            return;
        };
        let mut used = Resources::default();
        for pod in self.pods.values() {
            if node_of(pod) == Some(node) && !is_finished(pod) {
                let asked = requests(pod);
                used.cpu_millis += asked.cpu_millis;
                used.memory += asked.memory;
                used.pods += 1;
            }
        }
        if offered.pods > 0 && used.pods >= offered.pods {
            self.ever_full.insert(node.into());
        }
        let over: Vec<String> = [
            ("cpu (millis)", used.cpu_millis, offered.cpu_millis),
            ("memory (bytes)", used.memory, offered.memory),
            ("pods", used.pods, offered.pods),
        ]
        .into_iter()
        .filter(|(_, used, offered)| used > offered)
        .map(|(what, used, offered)| format!("{what} {used} of {offered}"))
        .collect();
        match over.is_empty() {
            true => {
                self.over.remove(node);
            }
            false if self.over.insert(node.into()) => self.violations.push(Violation {
                invariant: "allocatable",
                revision,
                detail: format!("node {node} is over its allocatable: {}", over.join(", ")),
            }),
            false => {}
        }
    }

    /// A fenced write must have landed while its lease was held as its fence said.
    fn judge_fenced(&mut self, write: &FencedWrite) {
        self.evidence.fenced_writes += 1;
        let history = self
            .leases
            .get(&write.lease)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let then = history
            .iter()
            .rev()
            .find(|(at, _, _)| *at <= write.revision);
        let held =
            then.is_some_and(|(_, holder, epoch)| *holder == write.holder && *epoch == write.epoch);
        if !held {
            let then = match then {
                Some((at, holder, epoch)) => {
                    format!("held by {holder:?} at epoch {epoch} since revision {at}")
                }
                None => "not there".into(),
            };
            self.violations.push(Violation {
                invariant: "fenced",
                revision: write.revision,
                detail: format!(
                    "a write under lease {} by {} at epoch {} landed while the lease was {then}",
                    write.lease, write.holder, write.epoch
                ),
            });
        }
    }

    /// A ReplicaSet's active pods grew: judged against its replicas.
    fn judge_replica_set(&mut self, revision: i64, rs_uid: &str) {
        let Some(rs) = self.owners.get(rs_uid) else {
            return;
        };
        let active = self
            .pods
            .values()
            .filter(|pod| active_owner(pod) == Some(rs_uid))
            .count() as i64;
        self.evidence.growths_judged += 1;
        let bound = rs.bound(false);
        if active > bound {
            self.violations.push(Violation {
                invariant: "ReplicaSet",
                revision,
                detail: format!(
                    "ReplicaSet {} has {active} active pods, more than {bound} (its replicas \
                     now or before); replicas {}{}",
                    rs.name,
                    rs.replicas,
                    before(rs.previous)
                ),
            });
        }
    }

    /// A Deployment's ReplicaSets asked for more: the replicas they ask for together are
    /// judged against its replicas plus maxSurge (the promise a rolling update keeps; the
    /// pods themselves may overlap for a moment while one ReplicaSet's pod is created
    /// before another's is deleted).
    fn judge_deployment(&mut self, revision: i64, deployment_uid: &str) {
        let Some(deployment) = self.owners.get(deployment_uid) else {
            return;
        };
        let asked: i64 = self
            .owners
            .values()
            .filter(|rs| rs.controller.as_deref() == Some(deployment_uid))
            .map(|rs| rs.replicas)
            .sum();
        self.evidence.growths_judged += 1;
        let bound = deployment.bound(true);
        if asked > bound {
            self.violations.push(Violation {
                invariant: "Deployment",
                revision,
                detail: format!(
                    "Deployment {}'s ReplicaSets ask for {asked} pods, more than {bound} (its \
                     replicas now or before, plus maxSurge); replicas {}{}",
                    deployment.name,
                    deployment.replicas,
                    before(deployment.previous)
                ),
            });
        }
    }
}

/// ", before that N" when there was a value before.
fn before(previous: Option<i64>) -> String {
    previous.map_or(String::new(), |n| format!(", before that {n}"))
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}

fn namespace(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or("")
}

fn uid(object: &Value) -> &str {
    object["metadata"]["uid"].as_str().unwrap_or("")
}

fn node_of(pod: &Value) -> Option<&str> {
    pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())
}

fn is_finished(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// The uid of the object's controller (its ownerReference with `controller: true`).
fn controller_uid(object: &Value) -> Option<&str> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)?["uid"]
        .as_str()
}

/// A StatefulSet's pod: its set (the controller's uid) and ordinal, from its pod-index
/// label or else the number its name ends in.
fn stateful_ordinal(pod: &Value) -> Option<(&str, i64)> {
    let controller = pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true && r["kind"] == "StatefulSet")?;
    let labelled = pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"]
        .as_str()
        .and_then(|index| index.parse().ok());
    let named = || name(pod).rsplit_once('-')?.1.parse().ok();
    Some((controller["uid"].as_str()?, labelled.or_else(named)?))
}

/// The controller of a pod that counts toward it: not being deleted, not finished.
fn active_owner(pod: &Value) -> Option<&str> {
    let deleting = !pod["metadata"]["deletionTimestamp"].is_null();
    match deleting || is_finished(pod) {
        true => None,
        false => controller_uid(pod),
    }
}

fn quantity(value: &Value) -> Option<Quantity> {
    match value {
        Value::String(text) => text.parse().ok(),
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

fn allocatable(node: &Value) -> Resources {
    let offered = &node["status"]["allocatable"];
    Resources {
        cpu_millis: quantity(&offered["cpu"]).map_or(0, Quantity::millis),
        memory: quantity(&offered["memory"]).map_or(0, Quantity::units),
        pods: quantity(&offered["pods"]).map_or(0, Quantity::units),
    }
}

/// What a pod asks of its node, as the scheduler reckons it: the containers' requests
/// summed, or the largest init container's if larger, plus the pod's overhead.
fn requests(pod: &Value) -> Resources {
    let of = |container: &Value| {
        let asked = &container["resources"]["requests"];
        (
            quantity(&asked["cpu"]).map_or(0, Quantity::millis),
            quantity(&asked["memory"]).map_or(0, Quantity::units),
        )
    };
    let list = |field: &str| pod["spec"][field].as_array().cloned().unwrap_or_default();
    let (mut cpu, mut memory) = list("containers")
        .iter()
        .map(of)
        .fold((0, 0), |(c, m), (c2, m2)| (c + c2, m + m2));
    for init in list("initContainers") {
        let (c, m) = of(&init);
        cpu = cpu.max(c);
        memory = memory.max(m);
    }
    let overhead = &pod["spec"]["overhead"];
    Resources {
        cpu_millis: cpu + quantity(&overhead["cpu"]).map_or(0, Quantity::millis),
        memory: memory + quantity(&overhead["memory"]).map_or(0, Quantity::units),
        pods: 1,
    }
}

#[cfg(test)]
#[path = "kube_tests.rs"]
mod tests;
