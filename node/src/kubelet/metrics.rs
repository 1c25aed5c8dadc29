//! The kubelet's Prometheus metrics: `rudder_kubelet_pod_start_duration_seconds` (from a
//! pod's creation to the report that makes it Running), `rudder_kubelet_container_restarts_total`,
//! and, read from the runtime at each scrape, `rudder_kubelet_running_pods` and
//! `rudder_kubelet_running_containers`.
//!
//! A pod's start is timed once. Restarts are counted from what the kubelet reports: the rise of each container's
//! `restartCount` over the higher of what the API last showed and what this kubelet last
//! counted, so a restart counts once however often it is reported, and a kubelet that
//! restarts does not count old restarts again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;
use rudder_proto::metrics::{duration_histogram, encode_gauge, observe, Metrics};
use serde_json::Value;

use crate::runtime::{ContainerState, PodPhase, RunningPod, Runtime};

/// What was counted of one pod: its restarts by container, and whether its start was
/// timed (a second report before the informer shows the first must not time it again).
#[derive(Debug, Default)]
struct Counted {
    restarts: BTreeMap<String, u32>,
    start_timed: bool,
}

/// The kubelet's figures; clones share them. [`Default`] makes figures no registry serves
/// (hollow nodes, many kubelets in one process, keep theirs unserved).
#[derive(Clone, Debug)]
pub struct KubeletMetrics {
    pod_start_duration: Histogram,
    container_restarts: Counter,
    /// By pod uid.
    counted: Arc<Mutex<BTreeMap<String, Counted>>>,
}

impl Default for KubeletMetrics {
    fn default() -> Self {
        Self {
            pod_start_duration: duration_histogram(),
            container_restarts: Counter::default(),
            counted: Arc::default(),
        }
    }
}

/// How long `pod` (as the API has it) took from its creation to `now`, if the status
/// about to be reported (`running`) makes it Running for the first time.
pub fn start_duration(pod: &Value, running: &RunningPod, now: jiff::Timestamp) -> Option<Duration> {
    if running.phase != PodPhase::Running || pod["status"]["phase"] == "Running" {
        return None;
    }
    let created: jiff::Timestamp = pod["metadata"]["creationTimestamp"]
        .as_str()?
        .parse()
        .ok()?;
    now.duration_since(created).try_into().ok()
}

/// The restarts of `running`'s containers not counted before, given the counts the API
/// shows for the pod (`pod`), and what was counted (updated).
pub fn new_restarts(pod: &Value, running: &RunningPod, counted: &mut BTreeMap<String, u32>) -> u64 {
    let shown = |name: &str| -> u32 {
        ["initContainerStatuses", "containerStatuses"]
            .iter()
            .filter_map(|list| pod["status"][list].as_array())
            .flatten()
            .find(|status| status["name"] == name)
            .and_then(|status| status["restartCount"].as_u64())
            .and_then(|count| u32::try_from(count).ok())
            .unwrap_or(0)
    };
    let mut new = 0;
    for container in running.init_containers.iter().chain(&running.containers) {
        let before = counted
            .get(&container.name)
            .copied()
            .unwrap_or(0)
            .max(shown(&container.name));
        new += u64::from(container.restart_count.saturating_sub(before));
        counted.insert(container.name.clone(), container.restart_count.max(before));
    }
    new
}

impl KubeletMetrics {
    /// New figures, registered in `metrics`, with the pods `runtime` runs read at each
    /// scrape.
    pub fn registered(metrics: &Metrics, runtime: Arc<dyn Runtime>) -> Self {
        let figures = Self::default();
        metrics.register_with_unit(
            "rudder_kubelet_pod_start_duration",
            "Time from a pod's creation to the report that it runs",
            Unit::Seconds,
            figures.pod_start_duration.clone(),
        );
        metrics.register(
            "rudder_kubelet_container_restarts",
            "Container restarts on this node",
            figures.container_restarts.clone(),
        );
        metrics.register_collector(RuntimeFigures { runtime });
        figures
    }

    /// A status report of `running` reached the API, which showed the pod as `pod`.
    pub fn reported(&self, pod: &Value, running: &RunningPod) {
        let mut counted = self.counted.lock().unwrap_or_else(|p| p.into_inner());
        let pod_counted = counted.entry(running.uid.clone()).or_default();
        if !pod_counted.start_timed {
            if let Some(took) = start_duration(pod, running, jiff::Timestamp::now()) {
                observe(&self.pod_start_duration, took);
                pod_counted.start_timed = true;
            }
        }
        let new = new_restarts(pod, running, &mut pod_counted.restarts);
        if new > 0 {
            self.container_restarts.inc_by(new);
        }
    }

    /// Forgets the pods not in `keep` (uids).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut counted = self.counted.lock().unwrap_or_else(|p| p.into_inner());
        counted.retain(|uid, _| keep(uid));
    }
}

/// The runtime's pods and containers that run, read at each scrape.
struct RuntimeFigures {
    runtime: Arc<dyn Runtime>,
}

impl std::fmt::Debug for RuntimeFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeFigures").finish_non_exhaustive()
    }
}

impl Collector for RuntimeFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let pods = self.runtime.pods();
        let running_pods = pods.iter().filter(|pod| pod.phase == PodPhase::Running);
        let running_containers = pods
            .iter()
            .flat_map(|pod| &pod.containers)
            .filter(|container| matches!(container.state, ContainerState::Running { .. }));
        let figures = [
            (
                "rudder_kubelet_running_pods",
                "Pods running on this node",
                running_pods.count(),
            ),
            (
                "rudder_kubelet_running_containers",
                "Containers running on this node",
                running_containers.count(),
            ),
        ];
        for (name, help, value) in figures {
            encode_gauge(&mut encoder, name, help, None, value as i64)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::runtime::RunningContainer;

    fn running(phase: PodPhase, restarts: u32) -> RunningPod {
        RunningPod {
            uid: "u1".into(),
            namespace: "default".into(),
            name: "web".into(),
            ip: "10.244.0.5".into(),
            started_at: String::new(),
            phase,
            init_containers: Vec::new(),
            containers: vec![RunningContainer {
                name: "app".into(),
                image: "kubia".into(),
                image_id: String::new(),
                id: String::new(),
                state: ContainerState::Running {
                    started_at: String::new(),
                },
                last_state: None,
                restart_count: restarts,
                ready: true,
                started: true,
            }],
            message: None,
        }
    }

    #[test]
    fn a_pod_start_is_timed_from_creation_once_when_it_first_runs() {
        let now: jiff::Timestamp = "2026-12-06T00:00:10Z".parse().unwrap();
        let pending = json!({
            "metadata": {"creationTimestamp": "2026-12-06T00:00:07Z"},
            "status": {"phase": "Pending"},
        });
        assert_eq!(
            start_duration(&pending, &running(PodPhase::Running, 0), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            start_duration(&pending, &running(PodPhase::Pending, 0), now),
            None,
            "not running yet"
        );
        let already = json!({
            "metadata": {"creationTimestamp": "2026-12-06T00:00:07Z"},
            "status": {"phase": "Running"},
        });
        assert_eq!(
            start_duration(&already, &running(PodPhase::Running, 0), now),
            None,
            "reported running before (a kubelet restart, another status change)"
        );
    }

    #[test]
    fn a_restart_counts_once_however_often_it_is_reported() {
        let mut counted = BTreeMap::new();
        let shown = |count: u32| json!({"status": {"containerStatuses": [{"name": "app", "restartCount": count}]}});
        assert_eq!(
            new_restarts(&shown(0), &running(PodPhase::Running, 1), &mut counted),
            1
        );
        // The informer has not caught up with the report: the API still shows 0.
        assert_eq!(
            new_restarts(&shown(0), &running(PodPhase::Running, 1), &mut counted),
            0
        );
        assert_eq!(
            new_restarts(&shown(1), &running(PodPhase::Running, 3), &mut counted),
            2
        );
    }

    #[test]
    fn a_restarted_kubelet_does_not_count_old_restarts_again() {
        let mut counted = BTreeMap::new();
        let shown = json!({"status": {"containerStatuses": [{"name": "app", "restartCount": 4}]}});
        assert_eq!(
            new_restarts(&shown, &running(PodPhase::Running, 4), &mut counted),
            0
        );
        assert_eq!(
            new_restarts(&shown, &running(PodPhase::Running, 5), &mut counted),
            1
        );
    }
}
