//! A pod's lifecycle rules, pure: when a container restarts and after how long, what phase
//! the pod is in, and when a probe's results flip it.

use std::time::Duration;

use super::{ContainerState, PodPhase, RunningContainer};

/// The restart policy of a pod spec (Kubernetes' default: Always).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn parse(policy: Option<&str>) -> Self {
        match policy {
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        }
    }

    /// Whether a container that exited with `exit_code` runs again.
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }

    /// Init containers restart on failure unless the pod never restarts anything.
    pub fn restarts_init(self, exit_code: i32) -> bool {
        exit_code != 0 && self != RestartPolicy::Never
    }
}

/// Crash-loop backoff: `base`, doubled per restart, at most `max` (Kubernetes: 10 s, 5 min).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(10),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// How long to wait before restart number `restarts + 1`.
    pub fn delay(self, restarts: u32) -> Duration {
        let factor = 1u32.checked_shl(restarts.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// The pod's phase from its containers (as the kubelet's getPhase).
pub fn pod_phase(
    policy: RestartPolicy,
    init: &[RunningContainer],
    containers: &[RunningContainer],
) -> PodPhase {
    let failed = |c: &RunningContainer| matches!(&c.state, ContainerState::Terminated { exit_code, .. } if *exit_code != 0);
    let succeeded =
        |c: &RunningContainer| matches!(&c.state, ContainerState::Terminated { exit_code: 0, .. });
    if policy == RestartPolicy::Never && init.iter().any(failed) {
        return PodPhase::Failed;
    }
    if !init.iter().all(succeeded) {
        return PodPhase::Pending;
    }
    let running = containers
        .iter()
        .filter(|c| matches!(c.state, ContainerState::Running { .. }))
        .count();
    let waiting_first_time = containers
        .iter()
        .any(|c| matches!(c.state, ContainerState::Waiting { .. }) && c.last_state.is_none());
    if waiting_first_time {
        return PodPhase::Pending;
    }
    if running > 0 {
        return PodPhase::Running;
    }
    let all_terminated = containers
        .iter()
        .all(|c| matches!(c.state, ContainerState::Terminated { .. }));
    if !all_terminated {
        // Waiting to restart after a crash.
        return PodPhase::Running;
    }
    match policy {
        RestartPolicy::Always => PodPhase::Running,
        _ if containers.iter().all(succeeded) => PodPhase::Succeeded,
        RestartPolicy::OnFailure => PodPhase::Running,
        RestartPolicy::Never => PodPhase::Failed,
    }
}

/// A probe's recent results against its thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeState {
    /// The probe's verdict: passing (true) or failing.
    pub passing: bool,
    successes: u32,
    failures: u32,
}

impl ProbeState {
    /// Readiness starts failing until a probe passes; liveness starts passing.
    pub fn new(passing: bool) -> Self {
        Self {
            passing,
            successes: 0,
            failures: 0,
        }
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records one result; the verdict flips after `success_threshold` passes in a row or
    /// `failure_threshold` failures in a row. Returns whether it flipped.
    pub fn record(&mut self, ok: bool, success_threshold: u32, failure_threshold: u32) -> bool {
        if ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let flip = if self.passing {
            !ok && self.failures >= failure_threshold.max(1)
        } else {
            ok && self.successes >= success_threshold.max(1)
        };
        if flip {
            self.passing = !self.passing;
        }
        flip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(state: ContainerState, restarted: bool) -> RunningContainer {
        RunningContainer {
            name: "c".into(),
            image: "i".into(),
            image_id: String::new(),
            id: String::new(),
            last_state: restarted.then(|| state.clone()),
            state,
            restart_count: u32::from(restarted),
            ready: false,
            started: false,
        }
    }

    fn running() -> ContainerState {
        ContainerState::Running {
            started_at: "t".into(),
        }
    }

    fn exited(exit_code: i32) -> ContainerState {
        ContainerState::Terminated {
            exit_code,
            signal: None,
            reason: String::new(),
            message: String::new(),
            started_at: "t".into(),
            finished_at: "t".into(),
        }
    }

    fn waiting() -> ContainerState {
        ContainerState::Waiting {
            reason: "ContainerCreating".into(),
            message: String::new(),
        }
    }

    #[test]
    fn backoff_doubles_from_its_base_up_to_its_cap() {
        let backoff = Backoff::default();
        let delays: Vec<u64> = (0..7).map(|n| backoff.delay(n).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn restart_policies_decide_on_the_exit_code() {
        assert!(RestartPolicy::parse(None).restarts(0));
        assert!(!RestartPolicy::parse(Some("OnFailure")).restarts(0));
        assert!(RestartPolicy::parse(Some("OnFailure")).restarts(1));
        assert!(!RestartPolicy::parse(Some("Never")).restarts(1));
        assert!(RestartPolicy::Always.restarts_init(1));
        assert!(!RestartPolicy::Always.restarts_init(0));
        assert!(!RestartPolicy::Never.restarts_init(1));
    }

    #[test]
    fn phases_follow_the_containers() {
        use PodPhase::*;
        let always = RestartPolicy::Always;
        assert_eq!(
            pod_phase(always, &[], &[container(waiting(), false)]),
            Pending
        );
        assert_eq!(
            pod_phase(always, &[], &[container(running(), false)]),
            Running
        );
        assert_eq!(
            pod_phase(always, &[], &[container(waiting(), true)]),
            Running,
            "crash-looping is still Running"
        );
        assert_eq!(
            pod_phase(always, &[container(running(), false)], &[]),
            Pending,
            "init containers first"
        );
        let never = RestartPolicy::Never;
        assert_eq!(
            pod_phase(never, &[], &[container(exited(0), false)]),
            Succeeded
        );
        assert_eq!(
            pod_phase(
                never,
                &[],
                &[container(exited(0), false), container(exited(2), false)]
            ),
            Failed
        );
        assert_eq!(
            pod_phase(never, &[container(exited(1), false)], &[]),
            Failed
        );
        assert_eq!(
            pod_phase(
                RestartPolicy::OnFailure,
                &[],
                &[container(exited(0), false)]
            ),
            Succeeded
        );
    }

    #[test]
    fn probes_flip_after_their_thresholds_in_a_row() {
        let mut liveness = ProbeState::new(true);
        assert!(!liveness.record(false, 1, 3));
        assert!(!liveness.record(false, 1, 3));
        assert!(!liveness.record(true, 1, 3), "a pass resets the count");
        assert!(!liveness.record(false, 1, 3));
        assert!(!liveness.record(false, 1, 3));
        assert!(liveness.record(false, 1, 3));
        assert!(!liveness.passing);
        let mut readiness = ProbeState::new(false);
        assert!(!readiness.record(true, 2, 3));
        assert!(readiness.record(true, 2, 3));
        assert!(readiness.passing);
    }
}
