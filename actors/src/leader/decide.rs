//! The election's pure core: from the Lease as read (or its absence), who we are, the epoch we
//! lead at (if we do) and the time, [`decide`] whether to acquire, renew or follow, and
//! returns the Lease to write.
//!
//! The rules match the API server's fence (`apiserver/src/registry/fence.rs`): a lease lasts
//! `leaseDurationSeconds` from its `renewTime` (or `acquireTime`), up to and including that
//! instant, and `leaseTransitions` is the epoch a fence names. Unlike client-go, **every**
//! acquisition raises the epoch, also our own lease taken again: a fence from an earlier term,
//! of this process or a past life of it, then no longer passes.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

use super::config::ElectionConfig;

/// What to do with the lease now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Write `lease` — create it when it has no `resourceVersion`, else replace it
    /// compare-and-swap on that version; once written we lead at `epoch`.
    Acquire { lease: Lease, epoch: i32 },
    /// Write `lease` (compare-and-swap): we keep leading at our epoch.
    Renew { lease: Lease },
    /// `holder` leads; its lease expires at `expires` unless renewed.
    Follow { holder: String, expires: Timestamp },
}

/// Decides for `me` (a holder identity) at `now`; `leading` is the epoch we lead at now.
/// Pure.
pub fn decide(
    observed: Option<&Lease>,
    me: &str,
    leading: Option<i32>,
    now: Timestamp,
    config: &ElectionConfig,
) -> Decision {
    // The lease stores microseconds: decide with the time as it will be read back.
    let now = truncate_to_micros(now);
    let Some(lease) = observed else {
        let fresh = Lease {
            metadata: ObjectMeta {
                namespace: Some(config.lease_namespace.clone()),
                name: Some(config.lease_name.clone()),
                ..ObjectMeta::default()
            },
            spec: None,
        };
        return acquire(&fresh, me, now, config);
    };
    let spec = lease.spec.as_ref();
    let holder = spec
        .and_then(|s| s.holder_identity.as_deref())
        .unwrap_or("");
    let epoch = spec.and_then(|s| s.lease_transitions).unwrap_or(0);
    if holder == me {
        return match leading {
            Some(ours) if ours == epoch && !is_expired(lease, now) => renew(lease, now, config),
            // Ours from an earlier term (we stepped down, or the write that made us leader
            // landed after we gave up on it): a new term, a new epoch, without waiting.
            _ => acquire(lease, me, now, config),
        };
    }
    match expiry(lease) {
        Some(expires) if !holder.is_empty() && expires >= now => Decision::Follow {
            holder: holder.to_string(),
            expires,
        },
        // Free, expired, or held without a time (it would never expire): take it.
        _ => acquire(lease, me, now, config),
    }
}

/// When `lease` expires as the fence reads it: `leaseDurationSeconds` after `renewTime`, or
/// after `acquireTime` if it was never renewed; `None` without either time.
pub fn expiry(lease: &Lease) -> Option<Timestamp> {
    let spec = lease.spec.as_ref()?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?;
    let duration = spec.lease_duration_seconds.unwrap_or(0);
    Some(renewed.0 + SignedDuration::from_secs(i64::from(duration)))
}

/// Whether `lease` has expired at `now` (it still holds at its exact expiry, as the fence
/// says), or never had a time to expire from.
pub fn is_expired(lease: &Lease, now: Timestamp) -> bool {
    expiry(lease).is_none_or(|expires| expires < now)
}

fn acquire(lease: &Lease, me: &str, now: Timestamp, config: &ElectionConfig) -> Decision {
    let previous = lease.spec.clone().unwrap_or_default();
    // Two billion acquisitions would overflow; the epoch then stays, which no lease reaches.
    let epoch = previous.lease_transitions.unwrap_or(0).saturating_add(1);
    let lease = Lease {
        metadata: lease.metadata.clone(),
        spec: Some(LeaseSpec {
            holder_identity: Some(me.to_string()),
            lease_duration_seconds: Some(config.lease_duration_seconds()),
            lease_transitions: Some(epoch),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            ..previous
        }),
    };
    Decision::Acquire { lease, epoch }
}

fn renew(lease: &Lease, now: Timestamp, config: &ElectionConfig) -> Decision {
    let mut lease = lease.clone();
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(config.lease_duration_seconds());
    Decision::Renew { lease }
}

/// The lease `me` gives up at the end of its term `epoch` (client-go's ReleaseOnCancel): no
/// holder, so a candidate takes it at once, and the term's fence no longer passes. `None`
/// when the lease is not ours at that epoch any more (a successor's: leave it alone).
pub fn release(observed: &Lease, me: &str, epoch: i32) -> Option<Lease> {
    let spec = observed.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(me) || spec.lease_transitions != Some(epoch) {
        return None;
    }
    let mut released = observed.clone();
    let spec = released.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = Some(String::new());
    spec.lease_duration_seconds = Some(1);
    Some(released)
}

fn truncate_to_micros(now: Timestamp) -> Timestamp {
    Timestamp::from_microsecond(now.as_microsecond()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "m1_5b0c";

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    /// A lease held by `holder` at `epoch`, renewed at 00:01:00 for 15 s (so it expires at
    /// 00:01:15), at resourceVersion 7.
    fn lease(holder: &str, epoch: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                namespace: Some("kube-system".into()),
                name: Some("rudder-controller-manager".into()),
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_transitions: Some(epoch),
                lease_duration_seconds: Some(15),
                acquire_time: Some(MicroTime(at("2026-01-01T00:00:00Z"))),
                renew_time: Some(MicroTime(at("2026-01-01T00:01:00Z"))),
                ..LeaseSpec::default()
            }),
        }
    }

    /// What `decide` wrote: (holder, epoch, acquireTime, renewTime, resourceVersion).
    fn written(lease: &Lease) -> (String, i32, Timestamp, Timestamp, Option<String>) {
        let spec = lease.spec.clone().expect("a spec");
        (
            spec.holder_identity.expect("a holder"),
            spec.lease_transitions.expect("an epoch"),
            spec.acquire_time.expect("acquired").0,
            spec.renew_time.expect("renewed").0,
            lease.metadata.resource_version.clone(),
        )
    }

    fn decide_at(observed: Option<&Lease>, leading: Option<i32>, now: &str) -> Decision {
        decide(observed, ME, leading, at(now), &ElectionConfig::default())
    }

    #[test]
    fn no_lease_is_created_at_epoch_one() {
        let Decision::Acquire { lease, epoch } = decide_at(None, None, "2026-01-01T00:00:00Z")
        else {
            panic!("expected to acquire");
        };
        assert_eq!(epoch, 1);
        let now = at("2026-01-01T00:00:00Z");
        assert_eq!(written(&lease), (ME.into(), 1, now, now, None));
        assert_eq!(
            lease.metadata.name.as_deref(),
            Some("rudder-controller-manager")
        );
        assert_eq!(lease.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(lease.spec.and_then(|s| s.lease_duration_seconds), Some(15));
    }

    #[test]
    fn anothers_lease_is_followed_up_to_and_including_its_expiry_and_taken_after() {
        let theirs = lease("m2_77aa", 4);
        let expires = at("2026-01-01T00:01:15Z");
        let follow = Decision::Follow {
            holder: "m2_77aa".into(),
            expires,
        };
        for now in ["2026-01-01T00:01:00Z", "2026-01-01T00:01:15Z"] {
            assert_eq!(decide_at(Some(&theirs), None, now), follow, "at {now}");
        }
        let after = "2026-01-01T00:01:15.000001Z";
        let Decision::Acquire { lease, epoch } = decide_at(Some(&theirs), None, after) else {
            panic!("expected to take the expired lease");
        };
        assert_eq!(epoch, 5);
        assert_eq!(
            written(&lease),
            (ME.into(), 5, at(after), at(after), Some("7".into())),
            "compare-and-swap on the version read"
        );
    }

    #[test]
    fn a_lease_written_by_a_past_life_of_this_name_is_someone_elses_until_it_expires() {
        let past_life = lease("m1_0001", 3);
        assert_eq!(
            decide_at(Some(&past_life), None, "2026-01-01T00:01:10Z"),
            Decision::Follow {
                holder: "m1_0001".into(),
                expires: at("2026-01-01T00:01:15Z")
            }
        );
        let Decision::Acquire { epoch, .. } =
            decide_at(Some(&past_life), None, "2026-01-01T00:01:16Z")
        else {
            panic!("expected to acquire after expiry");
        };
        assert_eq!(epoch, 4, "a new life acquires at a new epoch");
    }

    #[test]
    fn our_lease_at_our_epoch_is_renewed_keeping_its_epoch_and_acquisition() {
        let ours = lease(ME, 2);
        let now = "2026-01-01T00:01:09Z";
        let Decision::Renew { lease } = decide_at(Some(&ours), Some(2), now) else {
            panic!("expected to renew");
        };
        assert_eq!(
            written(&lease),
            (
                ME.into(),
                2,
                at("2026-01-01T00:00:00Z"),
                at(now),
                Some("7".into())
            )
        );
    }

    #[test]
    fn our_lease_from_an_earlier_term_is_acquired_again_at_a_new_epoch_without_waiting() {
        let ours = lease(ME, 2);
        for leading in [None, Some(1)] {
            let decision = decide_at(Some(&ours), leading, "2026-01-01T00:01:01Z");
            assert!(
                matches!(decision, Decision::Acquire { epoch: 3, .. }),
                "leading {leading:?}: {decision:?}"
            );
        }
    }

    #[test]
    fn our_own_lease_expired_while_we_led_is_a_new_term() {
        let ours = lease(ME, 2);
        let decision = decide_at(Some(&ours), Some(2), "2026-01-01T00:01:15.5Z");
        assert!(
            matches!(decision, Decision::Acquire { epoch: 3, .. }),
            "{decision:?}"
        );
        let at_expiry = decide_at(Some(&ours), Some(2), "2026-01-01T00:01:15Z");
        assert!(matches!(at_expiry, Decision::Renew { .. }), "{at_expiry:?}");
    }

    #[test]
    fn a_free_or_timeless_lease_is_taken_at_once() {
        let mut free = lease("", 6);
        let decision = decide_at(Some(&free), None, "2026-01-01T00:01:01Z");
        assert!(
            matches!(decision, Decision::Acquire { epoch: 7, .. }),
            "{decision:?}"
        );
        free.spec = Some(LeaseSpec {
            holder_identity: Some("m3_1".into()),
            ..LeaseSpec::default()
        });
        let decision = decide_at(Some(&free), None, "2026-01-01T00:01:01Z");
        assert!(
            matches!(decision, Decision::Acquire { epoch: 1, .. }),
            "a holder with no time would hold forever: {decision:?}"
        );
    }

    #[test]
    fn a_lease_never_renewed_expires_from_its_acquisition() {
        let mut acquired = lease("m2_1", 1);
        if let Some(spec) = acquired.spec.as_mut() {
            spec.renew_time = None;
        }
        assert_eq!(expiry(&acquired), Some(at("2026-01-01T00:00:15Z")));
        assert!(!is_expired(&acquired, at("2026-01-01T00:00:15Z")));
        assert!(is_expired(&acquired, at("2026-01-01T00:00:15.000001Z")));
    }

    #[test]
    fn times_are_written_in_microseconds_as_the_lease_stores_them() {
        let Decision::Acquire { lease, .. } =
            decide_at(None, None, "2026-01-01T00:00:00.123456789Z")
        else {
            panic!("expected to acquire");
        };
        let written = serde_json::to_value(&lease).expect("JSON");
        assert_eq!(
            written["spec"]["renewTime"],
            serde_json::json!("2026-01-01T00:00:00.123456Z")
        );
        assert_eq!(
            written["spec"]["acquireTime"],
            serde_json::json!("2026-01-01T00:00:00.123456Z")
        );
    }

    #[test]
    fn a_released_lease_has_no_holder_and_is_taken_at_once_at_the_next_epoch() {
        let config = ElectionConfig::for_lease("kube-system", "l");
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let Decision::Acquire { lease, epoch } = decide(None, "a", None, now, &config) else {
            panic!("a free lease is acquired");
        };
        assert_eq!(release(&lease, "b", epoch), None, "not b's");
        assert_eq!(release(&lease, "a", epoch + 1), None, "not this term's");
        let released = release(&lease, "a", epoch).expect("ours");
        let spec = released.spec.clone().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some(""));
        assert_eq!(spec.lease_transitions, Some(epoch));
        let soon = now + SignedDuration::from_millis(10);
        match decide(Some(&released), "b", None, soon, &config) {
            Decision::Acquire { epoch: next, .. } => assert_eq!(next, epoch + 1),
            other => panic!("a released lease is taken at once: {other:?}"),
        }
    }
}
