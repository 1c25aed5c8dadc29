//! What happens to a container's record at each turn of its life: started, failed to start,
//! no image, exited, or its node rebooted. Pure: each step takes `now` and changes only the
//! record; the worker does the I/O around them.
//!
//! Kubernetes' rules: the first restart is immediate, then crash-loop backoff (10 s, 20 s, ...
//! at most 5 min) until a run lasts longer than twice the cap; image failures and launch
//! failures back off on their own counts.

use std::time::Duration;

use super::super::lifecycle::{Backoff, RestartPolicy};
use super::super::ContainerState;
use super::record::{rfc3339, waiting, ContainerRecord, PodRecord};
use super::shim::ExitRecord;

/// What an exit means for the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// Its policy does not run it again.
    Done,
    /// It runs again once `delay` has passed (zero: at once).
    Restart { delay: Duration },
}

/// Whether the container at `index` must wait: an init container for the init containers
/// before it to succeed, an app container (listed after them) for all of them.
pub fn blocked(containers: &[ContainerRecord], index: usize) -> bool {
    containers[..index]
        .iter()
        .filter(|before| before.init)
        .any(|before| !before.succeeded())
}

/// Whether a new attempt of the container may start now.
pub fn may_start(c: &ContainerRecord, now: jiff::Timestamp) -> bool {
    c.pid.is_none() && !c.done && c.next_start_ms.is_none_or(|t| now.as_millisecond() >= t)
}

/// The attempt that ended: terminated for good, or waiting for its restart after backoff.
pub fn on_exit(
    c: &mut ContainerRecord,
    exit: &ExitRecord,
    rules: (RestartPolicy, Backoff),
    pod: &str,
    now: jiff::Timestamp,
) -> AfterExit {
    let (policy, backoff) = rules;
    let started_at = match &c.state {
        ContainerState::Running { started_at } => started_at.clone(),
        _ => String::new(),
    };
    let reason = if exit.oom_killed {
        "OOMKilled"
    } else if exit.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    let terminated = ContainerState::Terminated {
        exit_code: exit.exit_code,
        signal: exit.signal,
        reason: reason.into(),
        message: String::new(),
        started_at: started_at.clone(),
        finished_at: exit.finished_at.clone(),
    };
    c.pid = None;
    let restarts = if c.init {
        policy.restarts_init(exit.exit_code)
    } else {
        policy.restarts(exit.exit_code)
    };
    if !restarts {
        c.state = terminated;
        c.done = true;
        return AfterExit::Done;
    }
    let ran_long = started_at.parse::<jiff::Timestamp>().is_ok_and(|t| {
        let ran = now.duration_since(t);
        ran.as_secs() > i64::try_from(backoff.max.as_secs() * 2).unwrap_or(i64::MAX)
    });
    if ran_long {
        c.crash_streak = 0;
    }
    let delay = match c.crash_streak {
        0 => Duration::ZERO,
        streak => backoff.delay(streak - 1),
    };
    c.crash_streak += 1;
    c.last_state = Some(terminated.clone());
    c.next_start_ms = Some(after(now, delay));
    c.state = if delay.is_zero() {
        terminated
    } else {
        waiting(
            "CrashLoopBackOff",
            format!(
                "back-off {}s restarting failed container={} pod={pod}",
                delay.as_secs(),
                c.name
            ),
        )
    };
    AfterExit::Restart { delay }
}

/// The end of an attempt whose shim died before writing its exit record.
pub fn unknown_exit(now: jiff::Timestamp) -> ExitRecord {
    ExitRecord {
        exit_code: 255,
        signal: None,
        oom_killed: false,
        finished_at: rfc3339(now),
    }
}

/// No image for the container: `reason` and `message` shown, the next lookup after backoff.
pub fn on_image_failure(
    c: &mut ContainerRecord,
    (reason, message): (&str, String),
    backoff: Backoff,
    now: jiff::Timestamp,
) {
    c.state = waiting(reason, message);
    let delay = backoff.delay(c.image_failures);
    c.image_failures += 1;
    c.next_start_ms = Some(after(now, delay));
}

/// An attempt was made with the image `manifest`: it started as `pid`, or failed with
/// `error` and is tried again after backoff.
pub fn on_attempt(
    c: &mut ContainerRecord,
    id: String,
    manifest: String,
    started: Result<i32, String>,
    backoff: Backoff,
    now: jiff::Timestamp,
) {
    let first = c.attempts == 0;
    c.image_failures = 0;
    c.attempts += 1;
    c.id = id;
    c.image_id = manifest;
    match started {
        Ok(pid) => {
            if !first {
                c.restart_count += 1;
            }
            c.pid = Some(pid);
            c.next_start_ms = None;
            c.state = ContainerState::Running {
                started_at: rfc3339(now),
            };
        }
        Err(error) => {
            let delay = backoff.delay(c.restart_count);
            c.state = waiting("RunContainerError", error);
            c.next_start_ms = Some(after(now, delay));
        }
    }
}

/// The node rebooted since the record was written: its processes are gone (their pids may
/// name others now), and so are its mounts and network. Each container that ran ended with
/// an unknown exit; it restarts at once if its policy says so.
pub fn on_reboot(record: &mut PodRecord, boot_id: String, now: jiff::Timestamp) {
    let policy = record.restart_policy();
    record.boot_id = boot_id;
    record.sandbox_ready = false;
    for c in &mut record.containers {
        if c.pid.take().is_none() {
            continue;
        }
        let terminated = ContainerState::Terminated {
            exit_code: 255,
            signal: None,
            reason: "Unknown".into(),
            message: "the node restarted".into(),
            started_at: String::new(),
            finished_at: rfc3339(now),
        };
        let restarts = if c.init {
            policy.restarts_init(255)
        } else {
            policy.restarts(255)
        };
        if restarts {
            c.last_state = Some(terminated);
            c.state = waiting("ContainerCreating", "");
            c.next_start_ms = None;
        } else {
            c.state = terminated;
            c.done = true;
        }
    }
}

/// Unix milliseconds `delay` after `now`.
fn after(now: jiff::Timestamp, delay: Duration) -> i64 {
    now.as_millisecond()
        .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::PodPlan;

    const BACKOFF: Backoff = Backoff {
        base: Duration::from_secs(10),
        max: Duration::from_secs(300),
    };

    fn pod(restart_policy: &str) -> PodRecord {
        let plan = PodPlan {
            uid: "u".into(),
            namespace: "default".into(),
            name: "kubia".into(),
            spec: serde_json::from_value(serde_json::json!({
                "restartPolicy": restart_policy,
                "initContainers": [{ "name": "setup", "image": "busybox" }],
                "containers": [{ "name": "app", "image": "kubia" }]
            }))
            .unwrap(),
            volume_files: Default::default(),
        };
        PodRecord::new(&plan, "10.244.1.2".into(), at(0), "boot".into())
    }

    fn at(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(secs).unwrap()
    }

    fn exit(code: i32, secs: i64) -> ExitRecord {
        ExitRecord {
            exit_code: code,
            signal: None,
            oom_killed: false,
            finished_at: rfc3339(at(secs)),
        }
    }

    fn running_since(c: &mut ContainerRecord, secs: i64) {
        on_attempt(
            c,
            format!("u-app-{}", c.attempts),
            "sha256:x".into(),
            Ok(42),
            BACKOFF,
            at(secs),
        );
    }

    #[test]
    fn the_first_restart_is_immediate_then_the_backoff_doubles() {
        let mut record = pod("Always");
        let c = &mut record.containers[1];
        let mut delays = Vec::new();
        for round in 0..4 {
            running_since(c, round * 100);
            let step = on_exit(
                c,
                &exit(1, round * 100 + 1),
                (RestartPolicy::Always, BACKOFF),
                "p",
                at(round * 100 + 1),
            );
            delays.push(step);
        }
        let secs = |s| AfterExit::Restart {
            delay: Duration::from_secs(s),
        };
        assert_eq!(delays, [secs(0), secs(10), secs(20), secs(40)]);
        assert_eq!(c.restart_count, 3);
        assert!(
            matches!(&c.state, ContainerState::Waiting { reason, message }
            if reason == "CrashLoopBackOff" && message == "back-off 40s restarting failed container=app pod=p")
        );
        assert_eq!(c.next_start_ms, Some(301_000 + 40_000));
        assert!(!may_start(c, at(340)));
        assert!(may_start(c, at(341)));
    }

    #[test]
    fn a_run_longer_than_twice_the_cap_starts_the_backoff_over() {
        let mut record = pod("Always");
        let c = &mut record.containers[1];
        c.crash_streak = 5;
        running_since(c, 0);
        let step = on_exit(
            c,
            &exit(1, 601),
            (RestartPolicy::Always, BACKOFF),
            "p",
            at(601),
        );
        assert_eq!(
            step,
            AfterExit::Restart {
                delay: Duration::ZERO
            }
        );
        assert!(matches!(
            c.state,
            ContainerState::Terminated { exit_code: 1, .. }
        ));
        assert!(may_start(c, at(601)));
    }

    #[test]
    fn policies_decide_whether_an_exit_is_the_end() {
        for (policy, code, done) in [
            ("Never", 1, true),
            ("OnFailure", 0, true),
            ("OnFailure", 1, false),
            ("Always", 0, false),
        ] {
            let mut record = pod(policy);
            let c = &mut record.containers[1];
            running_since(c, 0);
            let step = on_exit(
                c,
                &exit(code, 5),
                (RestartPolicy::parse(Some(policy)), BACKOFF),
                "p",
                at(5),
            );
            assert_eq!(step == AfterExit::Done, done, "{policy} exit {code}");
            assert_eq!(c.done, done);
            assert!(!may_start(c, at(1000)) || !done);
        }
    }

    #[test]
    fn app_containers_wait_for_every_init_container_to_succeed() {
        let mut record = pod("Always");
        assert!(!blocked(&record.containers, 0));
        assert!(blocked(&record.containers, 1));
        let setup = &mut record.containers[0];
        running_since(setup, 0);
        assert_eq!(
            on_exit(
                setup,
                &exit(0, 1),
                (RestartPolicy::Always, BACKOFF),
                "p",
                at(1)
            ),
            AfterExit::Done
        );
        assert!(!blocked(&record.containers, 1));
    }

    #[test]
    fn image_and_launch_failures_back_off_on_their_own_counts() {
        let mut record = pod("Always");
        let c = &mut record.containers[1];
        on_image_failure(c, ("ErrImagePull", "no".into()), BACKOFF, at(0));
        on_image_failure(c, ("ImagePullBackOff", "no".into()), BACKOFF, at(10));
        assert_eq!(c.image_failures, 2);
        assert_eq!(c.next_start_ms, Some(30_000));
        on_attempt(
            c,
            "u-app-0".into(),
            "sha256:x".into(),
            Err("no shim".into()),
            BACKOFF,
            at(30),
        );
        assert_eq!(c.image_failures, 0);
        assert_eq!(c.state, waiting("RunContainerError", "no shim"));
        assert_eq!(c.next_start_ms, Some(40_000));
        assert_eq!((c.attempts, c.restart_count), (1, 0));
        running_since(c, 40);
        assert_eq!((c.attempts, c.restart_count, c.pid), (2, 1, Some(42)));
    }

    #[test]
    fn after_a_reboot_running_containers_ended_unknown_and_restart_by_policy() {
        for (policy, done) in [("Always", false), ("Never", true)] {
            let mut record = pod(policy);
            record.sandbox_ready = true;
            running_since(&mut record.containers[1], 0);
            on_reboot(&mut record, "new boot".into(), at(50));
            assert_eq!(record.boot_id, "new boot");
            assert!(!record.sandbox_ready);
            let c = &record.containers[1];
            assert_eq!(c.pid, None);
            assert_eq!(c.done, done, "{policy}");
            let ended = if done {
                &c.state
            } else {
                c.last_state.as_ref().unwrap()
            };
            assert!(
                matches!(ended, ContainerState::Terminated { exit_code: 255, reason, .. } if reason == "Unknown")
            );
            assert_eq!(record.containers[0].pid, None, "never started: untouched");
            assert!(!record.containers[0].done);
        }
    }
}
