//! What a pod's worker keeps on disk (`<root>/pods/<uid>/pod.json`) to carry on after a
//! kubelet restart, and the pod status it shows. The data and its view are pure; `save` and
//! `load_all` are the only file work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde::{Deserialize, Serialize};

use super::super::lifecycle::{pod_phase, RestartPolicy};
use super::super::{ContainerState, PodPlan, RunningContainer, RunningPod};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub spec: PodSpec,
    pub ip: String,
    pub started_at: String,
    pub sandbox_ready: bool,
    pub containers: Vec<ContainerRecord>,
    /// The boot this record's processes belong to (`/proc/sys/kernel/random/boot_id`).
    #[serde(default)]
    pub boot_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: String,
    pub init: bool,
    pub image: String,
    pub image_id: String,
    /// How many attempts were made (the next attempt's number).
    pub attempts: u32,
    /// The current or last attempt's id.
    pub id: String,
    /// The current attempt's process, while it runs.
    pub pid: Option<i32>,
    pub restart_count: u32,
    pub state: ContainerState,
    pub last_state: Option<ContainerState>,
    /// When the next attempt may start (unix milliseconds); `None`: now.
    pub next_start_ms: Option<i64>,
    /// Failed image lookups in a row.
    pub image_failures: u32,
    /// Set when the container ended for good (its policy does not restart it).
    pub done: bool,
    /// Crashes in a row without a long run between them: the backoff's exponent.
    #[serde(default)]
    pub crash_streak: u32,
}

/// Why a pod record could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("creating {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("encoding the record of pod {pod}: {source}")]
    Encode {
        pod: String,
        source: serde_json::Error,
    },
    #[error("saving {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl PodRecord {
    /// A pod about to get its sandbox: every container waiting for its first attempt.
    pub fn new(plan: &PodPlan, ip: String, now: jiff::Timestamp, boot_id: String) -> Self {
        let init = plan.spec.init_containers.iter().flatten();
        Self {
            uid: plan.uid.clone(),
            namespace: plan.namespace.clone(),
            name: plan.name.clone(),
            ip,
            started_at: rfc3339(now),
            sandbox_ready: false,
            boot_id,
            containers: init
                .map(|c| ContainerRecord::new(c, true))
                .chain(
                    plan.spec
                        .containers
                        .iter()
                        .map(|c| ContainerRecord::new(c, false)),
                )
                .collect(),
            spec: plan.spec.clone(),
        }
    }

    pub fn restart_policy(&self) -> RestartPolicy {
        RestartPolicy::parse(self.spec.restart_policy.as_deref())
    }

    /// The spec of one of the pod's containers.
    pub fn container_spec(&self, c: &ContainerRecord) -> Option<&Container> {
        if c.init {
            let mut init = self.spec.init_containers.iter().flatten();
            init.find(|s| s.name == c.name)
        } else {
            self.spec.containers.iter().find(|s| s.name == c.name)
        }
    }

    /// `name_namespace(uid)`, as Kubernetes names a pod in its events.
    pub fn label(&self) -> String {
        format!("{}_{}({})", self.name, self.namespace, self.uid)
    }

    /// The pod's status (phase by the lifecycle rules). `probed`: container name → (ready,
    /// started) from its probes; a container without an entry is both while it runs.
    pub fn status(&self, probed: &BTreeMap<String, (bool, bool)>) -> RunningPod {
        let view = |c: &ContainerRecord| c.status(probed.get(&c.name).copied());
        let init: Vec<_> = self
            .containers
            .iter()
            .filter(|c| c.init)
            .map(view)
            .collect();
        let containers: Vec<_> = self
            .containers
            .iter()
            .filter(|c| !c.init)
            .map(view)
            .collect();
        RunningPod {
            uid: self.uid.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            ip: if self.sandbox_ready {
                self.ip.clone()
            } else {
                String::new()
            },
            started_at: self.started_at.clone(),
            phase: pod_phase(self.restart_policy(), &init, &containers),
            init_containers: init,
            containers,
            message: None,
        }
    }
}

impl ContainerRecord {
    fn new(spec: &Container, init: bool) -> Self {
        let reason = if init {
            "PodInitializing"
        } else {
            "ContainerCreating"
        };
        Self {
            name: spec.name.clone(),
            init,
            image: spec.image.clone().unwrap_or_default(),
            image_id: String::new(),
            attempts: 0,
            id: String::new(),
            pid: None,
            restart_count: 0,
            state: waiting(reason, ""),
            last_state: None,
            next_start_ms: None,
            image_failures: 0,
            done: false,
            crash_streak: 0,
        }
    }

    fn status(&self, probed: Option<(bool, bool)>) -> RunningContainer {
        let running = matches!(self.state, ContainerState::Running { .. });
        let (ready, started) = probed.unwrap_or((running, running));
        RunningContainer {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: self.image_id.clone(),
            id: if self.id.is_empty() {
                String::new()
            } else {
                format!("rudder://{}", self.id)
            },
            state: self.state.clone(),
            last_state: self.last_state.clone(),
            restart_count: self.restart_count,
            ready: running && ready,
            started: running && started,
        }
    }

    /// Ended with exit code 0 and will not run again: what the containers after an init
    /// container wait for.
    pub fn succeeded(&self) -> bool {
        self.done && matches!(self.state, ContainerState::Terminated { exit_code: 0, .. })
    }
}

pub fn waiting(reason: &str, message: impl Into<String>) -> ContainerState {
    ContainerState::Waiting {
        reason: reason.into(),
        message: message.into(),
    }
}

pub fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `<uid prefix>-<container>-<attempt>`: unique on the node, valid for libcontainer.
pub fn container_id(uid: &str, name: &str, attempt: u32) -> String {
    let short: String = uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    format!("{short}-{name}-{attempt}")
}

/// Where a pod's files live: its record, `/etc` files, volumes, logs and attempts.
pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

/// Writes `pod.json` atomically (a temporary file renamed over it).
pub fn save(dir: &Path, record: &PodRecord) -> Result<(), RecordError> {
    std::fs::create_dir_all(dir).map_err(|source| RecordError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let temp = dir.join("pod.json.tmp");
    let bytes = serde_json::to_vec(record).map_err(|source| RecordError::Encode {
        pod: record.label(),
        source,
    })?;
    std::fs::write(&temp, bytes)
        .and_then(|()| std::fs::rename(&temp, dir.join("pod.json")))
        .map_err(|source| RecordError::Write {
            path: dir.to_path_buf(),
            source,
        })
}

/// Every pod record under `<root>/pods` (unreadable ones are passed over).
pub fn load_all(root: &Path) -> Vec<PodRecord> {
    std::fs::read_dir(root.join("pods"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let bytes = std::fs::read(entry.path().join("pod.json")).ok()?;
            serde_json::from_slice(&bytes).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::PodPhase;

    pub fn plan(spec: serde_json::Value) -> PodPlan {
        PodPlan {
            uid: "3f1c2a9e-0000-4000-8000-000000000001".into(),
            namespace: "default".into(),
            name: "kubia".into(),
            spec: serde_json::from_value(spec).unwrap(),
            volume_files: BTreeMap::new(),
        }
    }

    #[test]
    fn container_ids_are_short_unique_and_plain() {
        let id = container_id("3f1c2a9e-0000-4000-8000-000000000001", "kubia", 2);
        assert_eq!(id, "3f1c2a9e0000-kubia-2");
    }

    #[test]
    fn a_new_pod_waits_init_containers_first_and_shows_no_address_before_its_sandbox() {
        let plan = plan(serde_json::json!({
            "initContainers": [{ "name": "setup", "image": "busybox" }],
            "containers": [{ "name": "app", "image": "kubia" }]
        }));
        let mut record = PodRecord::new(
            &plan,
            "10.244.1.2".into(),
            jiff::Timestamp::UNIX_EPOCH,
            "b".into(),
        );
        let names: Vec<(&str, bool)> = record
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.init))
            .collect();
        assert_eq!(names, [("setup", true), ("app", false)]);
        assert_eq!(record.containers[0].state, waiting("PodInitializing", ""));
        assert_eq!(record.containers[1].state, waiting("ContainerCreating", ""));
        let status = record.status(&BTreeMap::new());
        assert_eq!(status.ip, "");
        assert_eq!(status.phase, PodPhase::Pending);
        assert_eq!(status.started_at, "1970-01-01T00:00:00Z");
        record.sandbox_ready = true;
        assert_eq!(record.status(&BTreeMap::new()).ip, "10.244.1.2");
    }

    #[test]
    fn a_running_container_is_ready_and_started_only_as_its_probes_say() {
        let plan = plan(serde_json::json!({ "containers": [{ "name": "app", "image": "kubia" }] }));
        let mut record = PodRecord::new(
            &plan,
            "10.244.1.2".into(),
            jiff::Timestamp::UNIX_EPOCH,
            "b".into(),
        );
        record.containers[0].state = ContainerState::Running {
            started_at: "t".into(),
        };
        record.containers[0].id = "x-app-0".into();
        let unprobed = record.status(&BTreeMap::new());
        assert!(unprobed.containers[0].ready && unprobed.containers[0].started);
        assert_eq!(unprobed.containers[0].id, "rudder://x-app-0");
        let probed = BTreeMap::from([("app".to_string(), (false, true))]);
        let status = record.status(&probed);
        assert!(!status.containers[0].ready && status.containers[0].started);
    }

    #[test]
    fn records_survive_a_save_and_load() {
        let root = tempfile::tempdir().unwrap();
        let plan = plan(serde_json::json!({ "containers": [{ "name": "app", "image": "kubia" }] }));
        let record = PodRecord::new(
            &plan,
            "10.244.1.2".into(),
            jiff::Timestamp::UNIX_EPOCH,
            "b".into(),
        );
        save(&pod_dir(root.path(), &record.uid), &record).unwrap();
        assert_eq!(load_all(root.path()), vec![record]);
    }
}
