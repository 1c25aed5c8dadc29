//! Fenced writes: a leader-elected writer (a controller manager, a scheduler) sends the
//! lease it holds with each write, and the write lands only while that lease is still held
//! as the fence says. [`check`] decides that from the lease and the time; the registry reads
//! the lease and compares its revision in the write's transaction, so a lease taken over
//! between the check and the write still refuses the write.
//!
//! A write's first attempt checks the lease as this master last read it (`checked_leases.rs`)
//! instead of reading it again: as safe, since the transaction commits only while the lease
//! is still at that revision (so exactly the lease checked). A lease that changed since fails
//! the compare, and the next attempt reads it; a remembered lease that would refuse is read
//! again before the refusal stands.

use rudder_raftstore::kv::Compare;
use serde_json::Value;

use super::{unchanged, Committed, Registry};
use crate::error::ApiError;
use crate::object;

/// A leader-elected writer's proof of leadership (see `Fence` in `api.proto`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease_namespace: String,
    pub lease_name: String,
    pub holder: String,
    pub epoch: i32,
}

/// Whether `lease` (a Lease object) is, at `now`, held as `fence` says: by its holder, at its
/// epoch (`leaseTransitions`), and not expired — it lasts `leaseDurationSeconds` from its
/// last renewal (or acquisition), up to and including that instant. Pure.
pub(crate) fn check(fence: &Fence, lease: &Value, now: jiff::Timestamp) -> Result<(), ApiError> {
    let spec = &lease["spec"];
    let holder = spec["holderIdentity"].as_str().unwrap_or("");
    let epoch = spec["leaseTransitions"].as_i64().unwrap_or(0);
    if holder != fence.holder || epoch != i64::from(fence.epoch) {
        return Err(refused(
            fence,
            &format!("the lease is held by {holder:?} at epoch {epoch}"),
        ));
    }
    let renewed = spec["renewTime"]
        .as_str()
        .or(spec["acquireTime"].as_str())
        .and_then(object::parse_timestamp);
    let duration = spec["leaseDurationSeconds"].as_i64().unwrap_or(0);
    if let Some(renewed) = renewed {
        let expires = renewed + jiff::SignedDuration::from_secs(duration);
        if expires < now {
            return Err(refused(fence, &format!("the lease expired at {expires}")));
        }
    }
    Ok(())
}

/// A write's outcome, passed on; a fenced write that landed is logged (target
/// `rudder::fenced`, at debug) with its lease, holder, epoch and revision, where a chaos
/// run's checker reads it: the lease must have been held so at that revision.
pub(crate) fn landed(fence: Option<&Fence>, committed: Committed) -> Committed {
    if let (
        Some(fence),
        Committed::At {
            revision,
            replayed: false,
        },
    ) = (fence, &committed)
    {
        tracing::debug!(
            target: "rudder::fenced",
            lease = %format!("{}/{}", fence.lease_namespace, fence.lease_name),
            holder = %fence.holder,
            epoch = fence.epoch,
            revision,
            "fenced write landed"
        );
    }
    committed
}

fn refused(fence: &Fence, why: &str) -> ApiError {
    ApiError::Forbidden {
        message: format!(
            "fenced write refused: {why}; {} (epoch {}) is no longer the leader of lease {}/{}",
            fence.holder, fence.epoch, fence.lease_namespace, fence.lease_name
        ),
    }
}

impl Registry {
    /// The compares that hold while `fence`'s lease is still held as the fence says (none
    /// for an unfenced write), or the refusal when it is not held so now. `retry`: an
    /// earlier attempt of the write failed its compares, so the lease is read again.
    pub(crate) async fn fence_holds(
        &self,
        fence: Option<&Fence>,
        retry: bool,
    ) -> Result<Vec<Compare>, ApiError> {
        let Some(fence) = fence else {
            return Ok(Vec::new());
        };
        // A bug plantable by chaos runs (off unless planted): fences waved through.
        if rudder_proto::failpoints::eval("fence-ignored", |_| ()).is_some() {
            return Ok(Vec::new());
        }
        let leases = self.kind("leases")?;
        let key = object::key(leases, &fence.lease_namespace, &fence.lease_name);
        let now = jiff::Timestamp::now();
        if !retry {
            if let Some((revision, lease)) = self.checked_leases.get(&key) {
                if check(fence, &lease, now).is_ok() {
                    return Ok(vec![unchanged(&key, revision)]);
                }
            }
        }
        let read = self.read(&key).await?;
        let held = match self.checked_leases.remember(&key, read.as_ref())? {
            None => Err(refused(fence, "the lease does not exist")),
            Some((revision, lease)) => {
                check(fence, &lease, now).map(|()| vec![unchanged(&key, revision)])
            }
        };
        if let Err(refusal) = &held {
            // A deposed leader still acting: what operators look for after a failover.
            tracing::info!(holder = %fence.holder, epoch = fence.epoch, %refusal, "fenced write refused");
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fence() -> Fence {
        Fence {
            lease_namespace: "kube-system".into(),
            lease_name: "kube-scheduler".into(),
            holder: "m1".into(),
            epoch: 2,
        }
    }

    fn lease(holder: &str, epoch: i64) -> Value {
        json!({ "spec": {
            "holderIdentity": holder, "leaseTransitions": epoch, "leaseDurationSeconds": 15,
            "acquireTime": "2026-01-01T00:00:00.000000Z",
            "renewTime": "2026-01-01T00:01:00.000000Z",
        } })
    }

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_lease_holds_until_the_end_of_its_duration_from_the_last_renewal() {
        let held = lease("m1", 2);
        assert!(check(&fence(), &held, at("2026-01-01T00:01:15Z")).is_ok());
        let error = check(&fence(), &held, at("2026-01-01T00:01:15.000000001Z")).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("the lease expired at 2026-01-01T00:01:15Z"),
            "{error}"
        );
    }

    #[test]
    fn a_lease_never_renewed_lasts_from_its_acquisition() {
        let mut acquired = lease("m1", 2);
        acquired["spec"]["renewTime"] = Value::Null;
        assert!(check(&fence(), &acquired, at("2026-01-01T00:00:15Z")).is_ok());
        assert!(check(&fence(), &acquired, at("2026-01-01T00:00:16Z")).is_err());
    }

    #[test]
    fn another_holder_or_epoch_refuses_the_write_naming_both() {
        let now = at("2026-01-01T00:01:00Z");
        let error = check(&fence(), &lease("m2", 3), now).unwrap_err();
        assert!(
            error.to_string().starts_with(
                "fenced write refused: the lease is held by \"m2\" at epoch 3; m1 (epoch 2) is \
                 no longer the leader of lease kube-system/kube-scheduler"
            ),
            "{error}"
        );
        assert!(check(&fence(), &lease("m1", 3), now).is_err());
    }
}
