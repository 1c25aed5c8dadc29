//! [`ElectionConfig`]: which Lease an elector competes for and its timers (Kubernetes'
//! leader-election defaults: lease 15 s, renew deadline 10 s, retry 2 s).

use std::time::Duration;

/// The Lease and the timers of one election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionConfig {
    pub lease_namespace: String,
    /// The controller manager's by default; the scheduler names its own.
    pub lease_name: String,
    /// How long a lease lasts from its last renewal: a follower takes over only after it.
    pub lease_duration: Duration,
    /// How long a leader keeps acting without a successful renewal before it steps down;
    /// shorter than the lease, so it stops before anyone can take over.
    pub renew_deadline: Duration,
    /// How often a leader renews and a follower looks again.
    pub retry_period: Duration,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        Self {
            lease_namespace: "kube-system".into(),
            lease_name: "rudder-controller-manager".into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Timers that would let a leader act past its lease, or never renew in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "the lease duration ({lease_duration:?}) must be a whole number of seconds, at least one"
    )]
    LeaseNotWholeSeconds { lease_duration: Duration },
    #[error(
        "the renew deadline ({renew_deadline:?}) must be shorter than the lease duration \
         ({lease_duration:?}), or a leader could act after its lease expired"
    )]
    RenewDeadlineNotShorterThanLease {
        renew_deadline: Duration,
        lease_duration: Duration,
    },
    #[error(
        "the retry period ({retry_period:?}) must be shorter than the renew deadline \
         ({renew_deadline:?}), or a leader steps down before it tries to renew"
    )]
    RetryNotShorterThanRenewDeadline {
        retry_period: Duration,
        renew_deadline: Duration,
    },
}

impl ElectionConfig {
    /// The default timers for the Lease `namespace/name`.
    pub fn for_lease(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            lease_namespace: namespace.into(),
            lease_name: name.into(),
            ..Self::default()
        }
    }

    /// Checks that the timers keep a leader inside its lease.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.lease_duration < Duration::from_secs(1) || self.lease_duration.subsec_nanos() != 0 {
            return Err(ConfigError::LeaseNotWholeSeconds {
                lease_duration: self.lease_duration,
            });
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(ConfigError::RenewDeadlineNotShorterThanLease {
                renew_deadline: self.renew_deadline,
                lease_duration: self.lease_duration,
            });
        }
        if self.retry_period >= self.renew_deadline {
            return Err(ConfigError::RetryNotShorterThanRenewDeadline {
                retry_period: self.retry_period,
                renew_deadline: self.renew_deadline,
            });
        }
        Ok(())
    }

    /// `spec.leaseDurationSeconds` (validated configs are whole seconds; larger than an i32
    /// holds is read as the largest).
    pub fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_kubernetes_and_valid() {
        let config = ElectionConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.lease_duration_seconds(), 15);
        assert_eq!(
            ElectionConfig::for_lease("kube-system", "rudder-scheduler").renew_deadline,
            Duration::from_secs(10)
        );
    }

    #[test]
    fn timers_that_let_a_leader_outlive_its_lease_are_refused() {
        let secs = Duration::from_secs;
        let with = |lease: Duration, renew: Duration, retry: Duration| ElectionConfig {
            lease_duration: lease,
            renew_deadline: renew,
            retry_period: retry,
            ..ElectionConfig::default()
        };
        assert!(matches!(
            with(secs(10), secs(10), secs(2)).validate(),
            Err(ConfigError::RenewDeadlineNotShorterThanLease { .. })
        ));
        assert!(matches!(
            with(secs(15), secs(2), secs(2)).validate(),
            Err(ConfigError::RetryNotShorterThanRenewDeadline { .. })
        ));
        assert!(matches!(
            with(
                Duration::from_millis(1_500),
                secs(1),
                Duration::from_millis(100)
            )
            .validate(),
            Err(ConfigError::LeaseNotWholeSeconds { .. })
        ));
    }
}
