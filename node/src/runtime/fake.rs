//! The fake runtime of hollow nodes: pods "run" in memory and get real-looking addresses from
//! the node's pod CIDR, so everything above the runtime behaves as on a real node.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use super::{PodPlan, RunningContainer, RunningPod, Runtime, RuntimeError};

pub struct FakeRuntime {
    cidr: String,
    pool: AddressPool,
    pods: Mutex<BTreeMap<String, RunningPod>>,
}

impl FakeRuntime {
    /// Pods get addresses from `cidr` (`10.244.1.0/24`); an unparsable one gives none.
    pub fn new(cidr: &str) -> Self {
        Self {
            cidr: cidr.to_string(),
            pool: AddressPool::parse(cidr).unwrap_or_default(),
            pods: Mutex::default(),
        }
    }
}

impl Runtime for FakeRuntime {
    fn start(&self, plan: &PodPlan, now: jiff::Timestamp) -> Result<RunningPod, RuntimeError> {
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = pods.get(&plan.uid) {
            return Ok(running.clone());
        }
        let used: Vec<String> = pods.values().map(|p| p.ip.clone()).collect();
        let ip = self
            .pool
            .first_free(&used)
            .ok_or_else(|| RuntimeError::AddressesExhausted {
                cidr: self.cidr.clone(),
            })?;
        let running = RunningPod {
            uid: plan.uid.clone(),
            namespace: plan.namespace.clone(),
            name: plan.name.clone(),
            ip: ip.to_string(),
            started_at: now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            containers: plan
                .containers
                .iter()
                .map(|(name, image)| RunningContainer {
                    name: name.clone(),
                    image: image.clone(),
                    id: format!("fake://{}/{name}", plan.uid),
                })
                .collect(),
        };
        pods.insert(plan.uid.clone(), running.clone());
        Ok(running)
    }

    fn stop(&self, uid: &str) -> Result<(), RuntimeError> {
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        pods.remove(uid)
            .map(drop)
            .ok_or_else(|| RuntimeError::UnknownPod { uid: uid.into() })
    }

    fn pods(&self) -> Vec<RunningPod> {
        let pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        pods.values().cloned().collect()
    }
}

/// The host addresses of an IPv4 CIDR, minus the network address and the first host (the
/// node's bridge).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPool {
    network: u32,
    size: u32,
}

impl AddressPool {
    pub fn parse(cidr: &str) -> Option<Self> {
        let (address, bits) = cidr.split_once('/')?;
        let address: Ipv4Addr = address.parse().ok()?;
        let bits: u32 = bits.parse().ok().filter(|b| (8..=30).contains(b))?;
        let mask = u32::MAX << (32 - bits);
        Some(Self {
            network: u32::from(address) & mask,
            size: 1 << (32 - bits),
        })
    }

    /// The lowest address not in `used`.
    pub fn first_free(&self, used: &[String]) -> Option<Ipv4Addr> {
        (2..self.size.saturating_sub(1))
            .map(|offset| Ipv4Addr::from(self.network + offset))
            .find(|ip| !used.iter().any(|u| *u == ip.to_string()))
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
            containers: vec![("app".into(), "busybox".into())],
        }
    }

    #[test]
    fn pods_get_the_lowest_free_address_and_give_it_back_when_stopped() {
        let runtime = FakeRuntime::new("10.244.1.0/24");
        let now = jiff::Timestamp::UNIX_EPOCH;
        assert_eq!(runtime.start(&plan("a"), now).unwrap().ip, "10.244.1.2");
        assert_eq!(runtime.start(&plan("b"), now).unwrap().ip, "10.244.1.3");
        assert_eq!(
            runtime.start(&plan("a"), now).unwrap().ip,
            "10.244.1.2",
            "idempotent"
        );
        runtime.stop("a").unwrap();
        assert_eq!(runtime.start(&plan("c"), now).unwrap().ip, "10.244.1.2");
        assert!(runtime.stop("a").is_err());
    }

    #[test]
    fn a_full_range_is_an_error_naming_it() {
        let runtime = FakeRuntime::new("10.0.0.0/30");
        let now = jiff::Timestamp::UNIX_EPOCH;
        runtime.start(&plan("a"), now).unwrap();
        let error = runtime.start(&plan("b"), now).unwrap_err();
        assert!(error.to_string().contains("10.0.0.0/30"));
    }
}
