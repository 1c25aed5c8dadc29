//! The fake runtime of hollow nodes: pods "run" in memory and get real-looking addresses from
//! the node's pod CIDR, so everything above the runtime behaves as on a real node. A pod
//! started or stopped says so at once (as a real runtime's pod worker does when its state
//! changes), so the kubelet reports it without waiting for its periodic resync.

use std::collections::BTreeMap;
use std::sync::Mutex;

use std::time::Duration;

use super::address_pool::AddressPool;
use super::{
    ContainerState, Notify, PodPhase, PodPlan, RunningContainer, RunningPod, Runtime, RuntimeError,
};

pub struct FakeRuntime {
    cidr: String,
    pool: AddressPool,
    pods: Mutex<BTreeMap<String, RunningPod>>,
    notify: Mutex<Option<Notify>>,
}

impl FakeRuntime {
    /// Pods get addresses from `cidr` (`10.244.1.0/24`); an unparsable one gives none.
    pub fn new(cidr: &str) -> Self {
        Self {
            cidr: cidr.to_string(),
            pool: AddressPool::parse(cidr).unwrap_or_default(),
            pods: Mutex::default(),
            notify: Mutex::default(),
        }
    }

    /// Tells the kubelet that a pod's state changed.
    fn changed(&self) {
        let notify = self
            .notify
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(notify) = notify {
            notify();
        }
    }
}

impl Runtime for FakeRuntime {
    /// Hollow pods mount nothing: they need no claim bound to start.
    fn mounts_volumes(&self) -> bool {
        false
    }

    fn set_notify(&self, notify: Notify) {
        *self.notify.lock().unwrap_or_else(|p| p.into_inner()) = Some(notify);
    }

    fn start(&self, plan: &PodPlan, now: jiff::Timestamp) -> Result<(), RuntimeError> {
        if self.start_new(plan, now)? {
            self.changed();
        }
        Ok(())
    }

    fn stop(&self, uid: &str, _grace: Option<Duration>) -> Result<(), RuntimeError> {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid)
            .ok_or_else(|| RuntimeError::UnknownPod { uid: uid.into() })?;
        self.changed();
        Ok(())
    }

    fn pods(&self) -> Vec<RunningPod> {
        let pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        pods.values().cloned().collect()
    }
}

impl FakeRuntime {
    /// Starts the pod unless it is known already; whether it started it.
    fn start_new(&self, plan: &PodPlan, now: jiff::Timestamp) -> Result<bool, RuntimeError> {
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        if pods.contains_key(&plan.uid) {
            return Ok(false);
        }
        let used: Vec<String> = pods.values().map(|p| p.ip.clone()).collect();
        let ip = self
            .pool
            .first_free(&used)
            .ok_or_else(|| RuntimeError::AddressesExhausted {
                cidr: self.cidr.clone(),
            })?;
        let started_at = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let running = RunningPod {
            uid: plan.uid.clone(),
            namespace: plan.namespace.clone(),
            name: plan.name.clone(),
            ip: ip.to_string(),
            started_at: started_at.clone(),
            phase: PodPhase::Running,
            init_containers: Vec::new(),
            containers: plan
                .containers()
                .into_iter()
                .map(|(name, image)| RunningContainer {
                    id: format!("fake://{}/{name}", plan.uid),
                    name,
                    image_id: image.clone(),
                    image,
                    state: ContainerState::Running {
                        started_at: started_at.clone(),
                    },
                    last_state: None,
                    restart_count: 0,
                    ready: true,
                    started: true,
                })
                .collect(),
            message: None,
        };
        pods.insert(plan.uid.clone(), running);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(uid: &str) -> PodPlan {
        PodPlan {
            uid: uid.into(),
            namespace: "default".into(),
            name: uid.into(),
            spec: serde_json::from_value(serde_json::json!({
                "containers": [{ "name": "app", "image": "busybox" }]
            }))
            .unwrap(),
            volume_files: Default::default(),
        }
    }

    fn ip(runtime: &FakeRuntime, uid: &str) -> String {
        let pods = runtime.pods();
        pods.iter().find(|p| p.uid == uid).unwrap().ip.clone()
    }

    #[test]
    fn pods_get_the_lowest_free_address_and_give_it_back_when_stopped() {
        let runtime = FakeRuntime::new("10.244.1.0/24");
        let now = jiff::Timestamp::UNIX_EPOCH;
        runtime.start(&plan("a"), now).unwrap();
        runtime.start(&plan("b"), now).unwrap();
        assert_eq!(ip(&runtime, "a"), "10.244.1.2");
        assert_eq!(ip(&runtime, "b"), "10.244.1.3");
        runtime.start(&plan("a"), now).unwrap();
        assert_eq!(ip(&runtime, "a"), "10.244.1.2", "idempotent");
        runtime.stop("a", None).unwrap();
        runtime.start(&plan("c"), now).unwrap();
        assert_eq!(ip(&runtime, "c"), "10.244.1.2");
        assert!(runtime.stop("a", None).is_err());
    }

    #[test]
    fn a_full_range_is_an_error_naming_it() {
        let runtime = FakeRuntime::new("10.0.0.0/30");
        let now = jiff::Timestamp::UNIX_EPOCH;
        runtime.start(&plan("a"), now).unwrap();
        let error = runtime.start(&plan("b"), now).unwrap_err();
        assert!(error.to_string().contains("10.0.0.0/30"));
    }

    #[test]
    fn a_pod_started_or_stopped_is_told_at_once_and_a_repeated_start_is_not() {
        let runtime = FakeRuntime::new("10.244.1.0/24");
        let told = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = told.clone();
        runtime.set_notify(std::sync::Arc::new(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
        let now = jiff::Timestamp::UNIX_EPOCH;
        runtime.start(&plan("a"), now).unwrap();
        runtime.start(&plan("a"), now).unwrap();
        runtime.stop("a", None).unwrap();
        assert_eq!(told.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
