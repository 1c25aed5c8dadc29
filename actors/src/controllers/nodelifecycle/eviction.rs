//! When a pod on a NoExecute-tainted node must go (Kubernetes' taint eviction controller,
//! `processPodOnNode`). Pure.
//!
//! ```text
//!  no NoExecute taint on the node                  ─► Stay
//!  a NoExecute taint the pod does not tolerate     ─► Now
//!  all tolerated, some for tolerationSeconds only  ─► At (earliest timeAdded + seconds)
//!  all tolerated for ever                          ─► Stay
//! ```
//!
//! Kubernetes counts the seconds from when its taint manager first saw the taint; here they
//! count from the taint's `timeAdded`, which the cluster stores, so a new leader evicts on the
//! same schedule as the old one. A taint without `timeAdded` counts from `now` (it is then
//! re-examined each pass; this controller always sets `timeAdded` on its own taints).

use k8s_openapi::api::core::v1::Taint;

use crate::pods::cached::Pod;
use crate::scheduling::taints::{matching_tolerations, NO_EXECUTE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    Stay,
    Now,
    At(jiff::Timestamp),
}

/// What the node's `taints` mean for `pod` at `now`.
pub fn decide(pod: &Pod, taints: &[Taint], now: jiff::Timestamp) -> Eviction {
    let no_execute: Vec<Taint> = taints
        .iter()
        .filter(|t| t.effect == NO_EXECUTE)
        .cloned()
        .collect();
    if no_execute.is_empty() {
        return Eviction::Stay;
    }
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let Some(used) = matching_tolerations(&no_execute, tolerations) else {
        return Eviction::Now;
    };
    let deadline = no_execute
        .iter()
        .zip(used)
        .filter_map(|(taint, toleration)| {
            let seconds = toleration.toleration_seconds?;
            let since = taint.time_added.as_ref().map_or(now, |t| t.0);
            since
                .saturating_add(jiff::SignedDuration::from_secs(seconds.max(0)))
                .ok()
        })
        .min();
    match deadline {
        None => Eviction::Stay,
        Some(at) if at <= now => Eviction::Now,
        Some(at) => Eviction::At(at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduling::taints::{
        taint, toleration_exists, NOT_READY, NO_SCHEDULE, UNREACHABLE,
    };

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn pod(tolerations: Vec<k8s_openapi::api::core::v1::Toleration>) -> Pod {
        Pod {
            spec: Some(crate::pods::cached::PodSpec {
                tolerations: Some(tolerations),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pods_leave_a_tainted_node_at_once_or_when_their_toleration_runs_out() {
        let unreachable = [taint(UNREACHABLE, NO_EXECUTE, Some(at(0)))];
        let soft = [taint(UNREACHABLE, NO_SCHEDULE, Some(at(0)))];
        let for_5 = toleration_exists(UNREACHABLE, NO_EXECUTE, Some(5));
        let forever = toleration_exists(UNREACHABLE, NO_EXECUTE, None);
        let negative = toleration_exists(UNREACHABLE, NO_EXECUTE, Some(-1));
        let table = [
            ("untainted", pod(vec![]), &[][..], Eviction::Stay),
            ("NoSchedule only", pod(vec![]), &soft[..], Eviction::Stay),
            (
                "no toleration",
                pod(vec![]),
                &unreachable[..],
                Eviction::Now,
            ),
            (
                "5 s",
                pod(vec![for_5.clone()]),
                &unreachable[..],
                Eviction::At(at(5)),
            ),
            (
                "for ever",
                pod(vec![forever]),
                &unreachable[..],
                Eviction::Stay,
            ),
            (
                "negative is zero",
                pod(vec![negative]),
                &unreachable[..],
                Eviction::Now,
            ),
        ];
        for (why, p, taints, expected) in table {
            assert_eq!(decide(&p, taints, at(1)), expected, "{why}");
        }
        assert_eq!(
            decide(&pod(vec![for_5]), &unreachable, at(5)),
            Eviction::Now
        );
    }

    #[test]
    fn the_earliest_deadline_of_several_taints_wins_and_one_untolerated_evicts() {
        let taints = [
            taint(UNREACHABLE, NO_EXECUTE, Some(at(0))),
            taint(NOT_READY, NO_EXECUTE, Some(at(10))),
        ];
        let both = pod(vec![
            toleration_exists(UNREACHABLE, NO_EXECUTE, Some(300)),
            toleration_exists(NOT_READY, NO_EXECUTE, Some(20)),
        ]);
        assert_eq!(decide(&both, &taints, at(1)), Eviction::At(at(30)));
        let one = pod(vec![toleration_exists(UNREACHABLE, NO_EXECUTE, Some(300))]);
        assert_eq!(decide(&one, &taints, at(1)), Eviction::Now);
    }
}
