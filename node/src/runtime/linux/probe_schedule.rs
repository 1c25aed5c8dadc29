//! Which of a running container's probes are due, and what their results mean (Kubernetes'
//! rules): nothing but the startup probe runs until it passes; a failed startup probe or a
//! liveness probe that flips to failing restarts the container; readiness decides Ready.
//! Pure: `now` comes from the worker, which runs the probes (probe.rs).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};

use super::super::lifecycle::ProbeState;
use super::probe::timing;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 3] = [
        ProbeKind::Startup,
        ProbeKind::Liveness,
        ProbeKind::Readiness,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
        }
    }

    /// The container's probe of this kind.
    pub fn of(self, container: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Startup => container.startup_probe.as_ref(),
            ProbeKind::Liveness => container.liveness_probe.as_ref(),
            ProbeKind::Readiness => container.readiness_probe.as_ref(),
        }
    }
}

/// What a probe's result asks of the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    CarryOn,
    /// Kill the attempt; its restart policy decides what follows.
    Restart,
}

/// Probe bookkeeping of one running attempt (not persisted: a restarted kubelet probes
/// afresh).
#[derive(Debug, Clone)]
pub struct Probes {
    pub attempt_id: String,
    started: Instant,
    startup: ProbeState,
    liveness: ProbeState,
    readiness: ProbeState,
    last_run: BTreeMap<ProbeKind, Instant>,
}

impl Probes {
    /// An attempt that started `now`: not ready until its readiness probe passes, not
    /// started until its startup probe does (each only if it has one).
    pub fn started(attempt_id: String, container: &Container, now: Instant) -> Self {
        Self {
            attempt_id,
            started: now,
            startup: ProbeState::new(container.startup_probe.is_none()),
            liveness: ProbeState::new(true),
            readiness: ProbeState::new(container.readiness_probe.is_none()),
            last_run: BTreeMap::new(),
        }
    }

    /// An attempt found running by a restarted kubelet: long started, readiness proven
    /// again.
    pub fn adopted(attempt_id: String, container: &Container, now: Instant) -> Self {
        let long_ago = now.checked_sub(Duration::from_secs(3600)).unwrap_or(now);
        Self {
            started: long_ago,
            startup: ProbeState::new(true),
            ..Self::started(attempt_id, container, now)
        }
    }

    /// (ready, started) as the probes say.
    pub fn verdicts(&self) -> (bool, bool) {
        (self.readiness.passing, self.startup.passing)
    }

    /// Whether the probe of `kind` runs now: past its initial delay and its period since
    /// the last run, and the startup probe alone until it passes.
    pub fn due(&self, kind: ProbeKind, probe: &Probe, now: Instant) -> bool {
        let startup_pending = !self.startup.passing;
        if (kind == ProbeKind::Startup) != startup_pending {
            return false;
        }
        let (delay, period, ..) = timing(probe);
        if now.saturating_duration_since(self.started) < delay {
            return false;
        }
        let ran_lately = self
            .last_run
            .get(&kind)
            .is_some_and(|t| now.saturating_duration_since(*t) < period);
        !ran_lately
    }

    /// Records a result of the probe of `kind`, run at `now`.
    pub fn record(&mut self, kind: ProbeKind, probe: &Probe, ok: bool, now: Instant) -> Verdict {
        self.last_run.insert(kind, now);
        let (_, _, _, success, failure) = timing(probe);
        let state = match kind {
            ProbeKind::Startup => &mut self.startup,
            ProbeKind::Liveness => &mut self.liveness,
            ProbeKind::Readiness => &mut self.readiness,
        };
        // Only readiness may ask for more than one success.
        let success = if kind == ProbeKind::Readiness {
            success
        } else {
            1
        };
        let flipped = state.record(ok, success, failure);
        let failed = !state.passing;
        let restart = match kind {
            ProbeKind::Startup => failed && state.failures() >= failure,
            ProbeKind::Liveness => flipped && failed,
            ProbeKind::Readiness => false,
        };
        if restart {
            Verdict::Restart
        } else {
            Verdict::CarryOn
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(probes: serde_json::Value) -> Container {
        let mut c = serde_json::json!({ "name": "app" });
        c.as_object_mut()
            .unwrap()
            .extend(probes.as_object().unwrap().clone());
        serde_json::from_value(c).unwrap()
    }

    fn probe(period: i32, failure: i32) -> serde_json::Value {
        serde_json::json!({ "exec": { "command": ["true"] }, "periodSeconds": period, "failureThreshold": failure })
    }

    #[test]
    fn only_the_startup_probe_runs_until_it_passes() {
        let c = container(
            serde_json::json!({ "startupProbe": probe(1, 3), "livenessProbe": probe(1, 1), "readinessProbe": probe(1, 1) }),
        );
        let now = Instant::now();
        let mut probes = Probes::started("a".into(), &c, now);
        assert_eq!(probes.verdicts(), (false, false));
        let due = |p: &Probes, at| ProbeKind::ALL.map(|k| p.due(k, k.of(&c).unwrap(), at));
        assert_eq!(due(&probes, now), [true, false, false]);
        let startup = c.startup_probe.as_ref().unwrap();
        assert_eq!(
            probes.record(ProbeKind::Startup, startup, true, now),
            Verdict::CarryOn
        );
        assert_eq!(probes.verdicts(), (false, true));
        assert_eq!(due(&probes, now), [false, true, true]);
    }

    #[test]
    fn a_probe_waits_its_period_between_runs() {
        let c = container(serde_json::json!({ "livenessProbe": probe(10, 3) }));
        let liveness = c.liveness_probe.as_ref().unwrap();
        let now = Instant::now();
        let mut probes = Probes::started("a".into(), &c, now);
        assert!(probes.due(ProbeKind::Liveness, liveness, now));
        probes.record(ProbeKind::Liveness, liveness, true, now);
        assert!(!probes.due(ProbeKind::Liveness, liveness, now + Duration::from_secs(9)));
        assert!(probes.due(ProbeKind::Liveness, liveness, now + Duration::from_secs(10)));
    }

    #[test]
    fn liveness_restarts_when_it_flips_to_failing_and_startup_when_it_runs_out_of_tries() {
        let c = container(
            serde_json::json!({ "startupProbe": probe(1, 2), "livenessProbe": probe(1, 2) }),
        );
        let (startup, liveness) = (
            c.startup_probe.as_ref().unwrap(),
            c.liveness_probe.as_ref().unwrap(),
        );
        let now = Instant::now();
        let mut probes = Probes::started("a".into(), &c, now);
        assert_eq!(
            probes.record(ProbeKind::Startup, startup, false, now),
            Verdict::CarryOn
        );
        assert_eq!(
            probes.record(ProbeKind::Startup, startup, false, now),
            Verdict::Restart
        );
        let mut probes = Probes::adopted("a".into(), &c, now);
        assert_eq!(
            probes.record(ProbeKind::Liveness, liveness, false, now),
            Verdict::CarryOn
        );
        assert_eq!(
            probes.record(ProbeKind::Liveness, liveness, false, now),
            Verdict::Restart
        );
        assert_eq!(
            probes.record(ProbeKind::Liveness, liveness, false, now),
            Verdict::CarryOn,
            "already failing"
        );
    }

    #[test]
    fn an_adopted_attempt_is_started_but_proves_readiness_again() {
        let c = container(
            serde_json::json!({ "startupProbe": probe(1, 2), "readinessProbe": probe(1, 1) }),
        );
        let probes = Probes::adopted("a".into(), &c, Instant::now());
        assert_eq!(probes.verdicts(), (false, true));
    }
}
