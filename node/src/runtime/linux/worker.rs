//! A pod's worker thread: the shell around the pure steps. Every 100 ms (or when woken) it
//! makes the sandbox if missing, reads exit files, starts attempts whose time has come
//! (restart.rs decides), runs due probes (probe_schedule.rs decides), saves the record when
//! it changed and publishes the status. Asked to stop, it terminates the pod and frees
//! everything it had.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::image_policy::{image_failure, image_source, ImageFailure, ImageSource};
use super::launch::{attempt_dir, launch, unmount_rootfs, Attempt};
use super::probe_schedule::{ProbeKind, Probes, Verdict};
use super::record::{container_id, pod_dir, save, PodRecord};
use super::restart;
use super::shared::{boot_id, lock, PodSlot, Shared};
use super::shim::{self, ExitRecord};
use super::{probe, sandbox};
use crate::image::pull::pull;
use crate::image::reference::Reference;

/// How long a container's process may be gone before its shim writes the exit record.
const EXIT_RECORD_PATIENCE: Duration = Duration::from_secs(10);

pub(super) struct Worker {
    shared: Arc<Shared>,
    slot: Arc<PodSlot>,
    record: PodRecord,
    dir: PathBuf,
    probes: BTreeMap<String, Probes>,
    sandbox_error: Option<String>,
    /// Attempt id → when its process was first seen gone without an exit record.
    exit_missing_since: BTreeMap<String, Instant>,
}

impl Worker {
    pub(super) fn new(shared: Arc<Shared>, slot: Arc<PodSlot>, record: PodRecord) -> Self {
        let dir = pod_dir(&shared.config.root, &record.uid);
        Self {
            shared,
            slot,
            record,
            dir,
            probes: BTreeMap::new(),
            sandbox_error: None,
            exit_missing_since: BTreeMap::new(),
        }
        .adopting()
    }

    /// A pod read back from disk: containers of an earlier boot are gone; running ones get
    /// probe state.
    fn adopting(mut self) -> Self {
        let boot = boot_id();
        if self.record.boot_id != boot {
            restart::on_reboot(&mut self.record, boot, jiff::Timestamp::now());
        }
        let now = Instant::now();
        for c in &self.record.containers {
            if c.pid.is_none() || c.init {
                continue;
            }
            if let Some(spec) = self.record.container_spec(c) {
                let probes = Probes::adopted(c.id.clone(), spec, now);
                self.probes.insert(c.name.clone(), probes);
            }
        }
        self
    }

    pub(super) fn run(mut self) {
        loop {
            let stop = *lock(&self.slot.stop);
            if let Some(grace) = stop {
                self.terminate(grace);
                lock(&self.shared.pods).remove(&self.record.uid);
                lock(&self.shared.addresses).remove(&self.record.uid);
                self.notify();
                return;
            }
            let before = self.record.clone();
            if !self.record.sandbox_ready {
                self.make_sandbox();
            }
            if self.record.sandbox_ready {
                self.step_containers();
                self.run_probes();
            }
            if self.record != before {
                if let Err(e) = save(&self.dir, &self.record) {
                    tracing::warn!(pod = %self.record.name, error = %e, "saving pod record");
                }
            }
            self.publish();
            let stop = lock(&self.slot.stop);
            if stop.is_none() {
                let _ = self
                    .slot
                    .wake
                    .wait_timeout(stop, Duration::from_millis(100));
            }
        }
    }

    fn notify(&self) {
        if let Some(notify) = lock(&self.shared.notify).clone() {
            notify();
        }
    }

    /// Publishes the status; tells the kubelet when it changed.
    fn publish(&self) {
        let probed: BTreeMap<String, (bool, bool)> = self
            .probes
            .iter()
            .map(|(name, p)| (name.clone(), p.verdicts()))
            .collect();
        let mut status = self.record.status(&probed);
        status.message = self.sandbox_error.clone();
        let changed = {
            let mut current = lock(&self.slot.status);
            let changed = *current != status;
            *current = status;
            changed
        };
        if changed {
            self.notify();
        }
    }

    fn make_sandbox(&mut self) {
        let network = &self.shared.config.network;
        let making = Instant::now();
        let dns = &self.shared.config.dns;
        match sandbox::make(network, dns, &self.dir, &self.record) {
            Ok(()) => {
                let netns = network.netns_path(&self.record.uid);
                tracing::debug!(pod = %self.record.name, netns = %netns.display(), elapsed = ?making.elapsed(), "sandbox ready");
                self.record.sandbox_ready = true;
                self.sandbox_error = None;
            }
            Err(error) => {
                tracing::warn!(pod = %self.record.name, %error, "creating the pod sandbox");
                self.sandbox_error = Some(format!("creating the pod sandbox: {error}"));
            }
        }
    }

    /// Init containers one at a time, in order; then every container.
    fn step_containers(&mut self) {
        for index in 0..self.record.containers.len() {
            if !restart::blocked(&self.record.containers, index) {
                self.step_container(index);
            }
        }
    }

    fn step_container(&mut self, index: usize) {
        let c = &self.record.containers[index];
        let Some(pid) = c.pid else {
            if restart::may_start(c, jiff::Timestamp::now()) {
                self.start_attempt(index);
            }
            return;
        };
        let exit_file = attempt_dir(&self.dir, &c.id).join("exit.json");
        if let Some(exit) = ExitRecord::read(&exit_file) {
            self.exit_missing_since.remove(&c.id);
            self.ended(index, exit);
        } else if !shim::alive(pid) {
            // The process is gone: its shim is cleaning up and then writes the exit
            // record. Only if none comes (the shim was killed) is the end unknown.
            let since = *self
                .exit_missing_since
                .entry(c.id.clone())
                .or_insert_with(Instant::now);
            if since.elapsed() > EXIT_RECORD_PATIENCE {
                self.exit_missing_since.remove(&c.id);
                self.ended(index, restart::unknown_exit(jiff::Timestamp::now()));
            }
        }
    }

    /// The container's attempt ended: unmount its rootfs; restart it (after backoff) or not.
    fn ended(&mut self, index: usize, exit: ExitRecord) {
        let rules = (self.record.restart_policy(), self.shared.config.backoff);
        let pod = self.record.label();
        let c = &mut self.record.containers[index];
        let bundle = attempt_dir(&self.dir, &c.id);
        unmount_rootfs(&bundle);
        let _ = std::fs::remove_dir_all(&bundle);
        self.probes.remove(&c.name);
        let after = restart::on_exit(c, &exit, rules, &pod, jiff::Timestamp::now());
        tracing::info!(pod = %pod, container = %c.name, exit_code = exit.exit_code, ?after, "container ended");
    }

    fn start_attempt(&mut self, index: usize) {
        let backoff = self.shared.config.backoff;
        let c = &self.record.containers[index];
        let Some(spec) = self.record.container_spec(c).cloned() else {
            return;
        };
        let manifest = match self.image(&c.image, spec.image_pull_policy.as_deref()) {
            Ok(manifest) => manifest,
            Err(failure) => {
                let c = &mut self.record.containers[index];
                let reason = image_failure(&c.image, &failure, c.image_failures);
                restart::on_image_failure(c, reason, backoff, jiff::Timestamp::now());
                return;
            }
        };
        let id = container_id(&self.record.uid, &c.name, c.attempts);
        let launching = Instant::now();
        let attempt = Attempt {
            pod: &self.record,
            pod_dir: &self.dir,
            container: &spec,
            record: c,
            manifest: &manifest,
            id: &id,
        };
        let started = launch(&self.shared.config, &self.shared.images, &attempt);
        tracing::debug!(pod = %self.record.name, container = %c.name, elapsed = ?launching.elapsed(), "launched");
        if let Err(error) = &started {
            let bundle = attempt_dir(&self.dir, &id);
            let shim_log = std::fs::read_to_string(bundle.join("shim.log")).unwrap_or_default();
            let detail: Vec<&str> = shim_log.lines().rev().take(20).collect();
            tracing::warn!(pod = %self.record.name, container = %c.name, %error, shim_log = %detail.into_iter().rev().collect::<Vec<_>>().join(" | "), "starting container");
            unmount_rootfs(&bundle);
            let _ = std::fs::remove_dir_all(&bundle);
        }
        if started.is_ok() {
            let probes = Probes::started(id.clone(), &spec, Instant::now());
            self.probes.insert(c.name.clone(), probes);
        }
        let c = &mut self.record.containers[index];
        let started = started.map_err(|e| e.to_string());
        restart::on_attempt(c, id, manifest, started, backoff, jiff::Timestamp::now());
    }

    /// The image's manifest digest by the container's pull policy: from the store, or
    /// pulled (when the node pulls from its registry).
    fn image(&self, image: &str, pull_policy: Option<&str>) -> Result<String, ImageFailure> {
        let reference = Reference::parse(image)?;
        let store = &self.shared.images;
        let pulls = &self.shared.config.pull;
        let stored = store.resolve(image).ok();
        match image_source(
            &reference,
            pull_policy,
            pulls.allows(&reference.registry),
            stored,
        )? {
            ImageSource::Stored(manifest) => Ok(manifest),
            ImageSource::Pull => {
                tracing::info!(pod = %self.record.name, %image, "pulling image");
                Ok(pull(store, image, pulls)?)
            }
        }
    }

    fn run_probes(&mut self) {
        let state_root = self.shared.config.root.join("containers");
        for c in self.record.containers.iter().filter(|c| !c.init) {
            let (Some(pid), Some(spec), Some(probes)) = (
                c.pid,
                self.record.container_spec(c),
                self.probes.get_mut(&c.name),
            ) else {
                continue;
            };
            let attempt_id = probes.attempt_id.clone();
            let target = probe::ProbeTarget {
                pod_ip: &self.record.ip,
                container: spec,
                shim_binary: &self.shared.config.shim_binary,
                state_root: &state_root,
                container_id: &attempt_id,
            };
            let mut restart = false;
            for kind in ProbeKind::ALL {
                let Some(probe) = kind.of(spec) else { continue };
                if !probes.due(kind, probe, Instant::now()) {
                    continue;
                }
                let ok = probe::run(&target, probe);
                if probes.record(kind, probe, ok, Instant::now()) == Verdict::Restart {
                    tracing::info!(pod = %self.record.name, container = %c.name, kind = kind.as_str(), "probe failed; restarting the container");
                    restart = true;
                }
            }
            if restart {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }

    /// SIGTERM to every running container, SIGKILL after `grace`, then everything the pod
    /// had is freed.
    fn terminate(&mut self, grace: Option<Duration>) {
        let grace = grace.unwrap_or_else(|| {
            Duration::from_secs(
                self.record
                    .spec
                    .termination_grace_period_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(30),
            )
        });
        let running: Vec<(i32, PathBuf)> = self
            .record
            .containers
            .iter()
            .filter_map(|c| Some((c.pid?, attempt_dir(&self.dir, &c.id).join("exit.json"))))
            .collect();
        for (pid, _) in &running {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
        }
        let all_ended = |deadline: Instant| {
            while Instant::now() < deadline {
                if running.iter().all(|(_, exit)| exit.exists()) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            running.iter().all(|(_, exit)| exit.exists())
        };
        if !all_ended(Instant::now() + grace) {
            for (pid, exit) in &running {
                if !exit.exists() {
                    let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
                }
            }
            if !all_ended(Instant::now() + Duration::from_secs(10)) {
                tracing::warn!(pod = %self.record.name, "containers did not end 10 s after SIGKILL");
            }
        }
        for c in &self.record.containers {
            if !c.id.is_empty() {
                unmount_rootfs(&attempt_dir(&self.dir, &c.id));
            }
        }
        if let Err(error) = self.shared.config.network.remove_pod(&self.record.uid) {
            tracing::warn!(pod = %self.record.name, %error, "removing the pod network");
        }
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(pod = %self.record.name, %error, "removing the pod's files");
        }
        tracing::info!(pod = %self.record.name, "pod stopped and cleaned up");
    }
}
