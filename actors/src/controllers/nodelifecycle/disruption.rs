//! How fast the node lifecycle controller may taint nodes NoExecute (and so evict their pods),
//! per zone, and when it must stop (Kubernetes' `ComputeZoneState`, `handleDisruption` and the
//! zone token buckets). Pure state; `now` comes from the caller.
//!
//! ```text
//!  zone (region + zone labels) ─ ready / not ready ─► state        ─► tainting rate
//!    none ready, some not                         ─► FullDisruption ─► 0.1/s (normal)
//!    > 2 not ready and ≥ 55 % of the zone         ─► Partial        ─► 0.01/s, 0 if ≤ 50 nodes
//!    otherwise                                    ─► Normal         ─► 0.1/s
//!  every zone FullDisruption ─► the master is probably the one cut off: stop tainting, lift
//!    the NoExecute taints already set; when a node is heard again, every node's grace restarts.
//! ```

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;

use super::health::Readiness;

/// The settings of the disruption logic (kube-controller-manager's flags).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSettings {
    /// `--node-eviction-rate`: nodes tainted per second in a healthy zone.
    pub eviction_rate: f64,
    /// `--secondary-node-eviction-rate`: in a partially disrupted large zone.
    pub secondary_eviction_rate: f64,
    /// `--large-cluster-size-threshold`: a zone of at most this many nodes stops instead.
    pub large_cluster_threshold: usize,
    /// `--unhealthy-zone-threshold`: the share of not-ready nodes that makes a zone disrupted.
    pub unhealthy_zone_threshold: f64,
}

impl Default for RateSettings {
    fn default() -> Self {
        Self {
            eviction_rate: 0.1,
            secondary_eviction_rate: 0.01,
            large_cluster_threshold: 50,
            unhealthy_zone_threshold: 0.55,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    /// Just seen; becomes one of the others on the next pass.
    Initial,
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// A token bucket of burst 1 (`flowcontrol.NewTokenBucketRateLimiter(qps, 1)`); a rate of 0
/// never admits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: jiff::Timestamp,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, now: jiff::Timestamp) -> Self {
        Self {
            rate,
            tokens: 1.0,
            last: now,
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    fn refill(&mut self, now: jiff::Timestamp) {
        if now > self.last {
            let elapsed = now.duration_since(self.last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(1.0);
            self.last = now;
        }
    }

    /// Takes a token if there is one.
    pub fn try_accept(&mut self, now: jiff::Timestamp) -> bool {
        self.refill(now);
        if self.rate > 0.0 && self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until a token is there (`None`: never, the rate is 0).
    pub fn wait(&self, now: jiff::Timestamp) -> Option<std::time::Duration> {
        let mut probe = *self;
        probe.refill(now);
        (self.rate > 0.0).then(|| {
            std::time::Duration::from_secs_f64(((1.0 - probe.tokens) / self.rate).max(0.0))
        })
    }

    /// A new rate (`SwapLimiter`): the bucket starts full unless this one was empty.
    pub fn swap_rate(&mut self, rate: f64, now: jiff::Timestamp) {
        if rate == self.rate {
            return;
        }
        self.refill(now);
        let was_empty = self.tokens < 1.0;
        *self = Self::new(rate, now);
        if was_empty {
            self.tokens = 0.0;
        }
    }
}

/// A zone's key: region and zone labels (`GetZoneKey`); "" when the node has neither.
pub fn zone_of(node: &Node) -> String {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let label = |new: &str, old: &str| {
        labels
            .get(new)
            .or(labels.get(old))
            .cloned()
            .unwrap_or_default()
    };
    let region = label(
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/region",
    );
    let zone = label(
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/zone",
    );
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\0:{zone}")
    }
}

/// The state of a zone whose nodes are this ready (`ComputeZoneState`).
pub fn zone_state(readiness: &[Readiness], settings: &RateSettings) -> ZoneState {
    let ready = readiness.iter().filter(|r| **r == Readiness::Ready).count();
    let not_ready = readiness.len() - ready;
    #[allow(clippy::cast_precision_loss)] // node counts are far below 2^52
    let share = not_ready as f64 / readiness.len().max(1) as f64;
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && share >= settings.unhealthy_zone_threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Zone {
    state: ZoneState,
    bucket: TokenBucket,
}

/// What a pass learned about the cluster as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Some node is ready somewhere: taint and evict at the zones' rates.
    Normal,
    /// Every zone just became fully disrupted: lift the NoExecute taints, evict nothing.
    EnteringFullDisruption,
    /// Still every zone fully disrupted: taint nothing, evict nothing.
    FullDisruption,
}

/// The zones' states and buckets, kept by the actor from pass to pass.
#[derive(Debug, Clone, Default)]
pub struct Disruption {
    zones: BTreeMap<String, Zone>,
    /// When the cluster last left full disruption: grace periods restart there.
    pub grace_restart: Option<jiff::Timestamp>,
}

impl Disruption {
    /// The state of a controller starting at `now` (a new term of leadership): every node's
    /// grace starts again there, as kube-controller-manager's probe timestamps do, so a node
    /// whose last renewal the store lost in an outage is not judged silent by a new leader.
    pub fn starting_at(now: jiff::Timestamp) -> Self {
        Self {
            zones: BTreeMap::new(),
            grace_restart: Some(now),
        }
    }

    /// One pass of `handleDisruption` over the zones and their nodes' readiness.
    pub fn observe(
        &mut self,
        zones: &BTreeMap<String, Vec<Readiness>>,
        settings: &RateSettings,
        now: jiff::Timestamp,
    ) -> Mode {
        let new: BTreeMap<&str, ZoneState> = zones
            .iter()
            .map(|(k, r)| (k.as_str(), zone_state(r, settings)))
            .collect();
        let all_are_full = new.values().all(|s| *s == ZoneState::FullDisruption);
        self.zones.retain(|k, _| zones.contains_key(k));
        for key in zones.keys() {
            self.zones.entry(key.clone()).or_insert_with(|| Zone {
                state: ZoneState::Initial,
                bucket: TokenBucket::new(settings.eviction_rate, now),
            });
        }
        // A zone seen for the first time is Initial, so a first pass is never "still down".
        let all_were_full = self
            .zones
            .values()
            .all(|z| z.state == ZoneState::FullDisruption);
        if all_are_full && all_were_full {
            return if zones.is_empty() {
                Mode::Normal
            } else {
                Mode::FullDisruption
            };
        }
        if all_are_full {
            for zone in self.zones.values_mut() {
                zone.bucket.swap_rate(0.0, now);
                zone.state = ZoneState::FullDisruption;
            }
            return Mode::EnteringFullDisruption;
        }
        if all_were_full {
            self.grace_restart = Some(now);
        }
        for (key, zone) in &mut self.zones {
            let state = new[key.as_str()];
            if zone.state != state || all_were_full {
                let rate = rate_for(state, zones[key].len(), settings);
                zone.bucket.swap_rate(rate, now);
                zone.state = state;
            }
        }
        Mode::Normal
    }

    pub fn state(&self, zone: &str) -> Option<ZoneState> {
        self.zones.get(zone).map(|z| z.state)
    }

    /// Takes a tainting token of `zone`.
    pub fn try_taint(&mut self, zone: &str, now: jiff::Timestamp) -> bool {
        self.zones
            .get_mut(zone)
            .is_some_and(|z| z.bucket.try_accept(now))
    }

    /// How long until `zone` may taint again (`None`: not at this rate).
    pub fn wait(&self, zone: &str, now: jiff::Timestamp) -> Option<std::time::Duration> {
        self.zones.get(zone)?.bucket.wait(now)
    }
}

fn rate_for(state: ZoneState, size: usize, settings: &RateSettings) -> f64 {
    match state {
        ZoneState::PartialDisruption if size > settings.large_cluster_threshold => {
            settings.secondary_eviction_rate
        }
        ZoneState::PartialDisruption => 0.0,
        ZoneState::Initial | ZoneState::Normal | ZoneState::FullDisruption => {
            settings.eviction_rate
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Readiness::{NotReady as Down, Ready as Up, Unknown};

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    #[test]
    fn zone_states_follow_the_share_of_not_ready_nodes() {
        let s = RateSettings::default();
        let table: [(&[Readiness], ZoneState); 6] = [
            (&[Up, Up, Up], ZoneState::Normal),
            (&[Down, Unknown], ZoneState::FullDisruption),
            (&[Up, Down, Down], ZoneState::Normal),
            (&[Up, Up, Down, Down, Down], ZoneState::PartialDisruption),
            (&[Up, Up, Up, Down, Down, Down], ZoneState::Normal),
            (&[], ZoneState::Normal),
        ];
        for (readiness, expected) in table {
            assert_eq!(zone_state(readiness, &s), expected, "{readiness:?}");
        }
    }

    #[test]
    fn a_bucket_admits_one_per_interval_and_none_at_rate_zero() {
        let mut b = TokenBucket::new(0.1, at(0));
        assert!(b.try_accept(at(0)));
        assert!(!b.try_accept(at(5)));
        assert_eq!(b.wait(at(5)), Some(std::time::Duration::from_secs(5)));
        assert!(b.try_accept(at(10)));
        let mut never = TokenBucket::new(0.0, at(0));
        assert!(!never.try_accept(at(1000)));
        assert_eq!(never.wait(at(0)), None);
        b.swap_rate(1.0, at(10));
        assert!(
            !b.try_accept(at(10)),
            "an empty bucket stays empty across a swap"
        );
        assert!(b.try_accept(at(11)));
    }

    fn zones(entries: &[(&str, &[Readiness])]) -> BTreeMap<String, Vec<Readiness>> {
        entries
            .iter()
            .map(|(k, r)| (k.to_string(), r.to_vec()))
            .collect()
    }

    #[test]
    fn every_zone_down_stops_tainting_and_recovery_restarts_the_grace() {
        let s = RateSettings::default();
        let mut d = Disruption::default();
        assert_eq!(
            d.observe(&zones(&[("a", &[Up, Up])]), &s, at(0)),
            Mode::Normal
        );
        assert_eq!(d.state("a"), Some(ZoneState::Normal));
        let down = zones(&[("a", &[Down, Unknown])]);
        assert_eq!(d.observe(&down, &s, at(10)), Mode::EnteringFullDisruption);
        assert!(!d.try_taint("a", at(100)));
        assert_eq!(d.observe(&down, &s, at(20)), Mode::FullDisruption);
        assert_eq!(d.grace_restart, None);
        assert_eq!(
            d.observe(&zones(&[("a", &[Up, Unknown])]), &s, at(30)),
            Mode::Normal
        );
        assert_eq!(d.grace_restart, Some(at(30)));
        assert!(d.try_taint("a", at(30)));
    }

    #[test]
    fn one_zone_down_among_healthy_ones_taints_at_the_normal_rate() {
        let s = RateSettings::default();
        let mut d = Disruption::default();
        let z = zones(&[("a", &[Up, Up]), ("b", &[Down, Down])]);
        assert_eq!(d.observe(&z, &s, at(0)), Mode::Normal);
        assert_eq!(d.state("b"), Some(ZoneState::FullDisruption));
        assert!(d.try_taint("b", at(0)));
        assert!(!d.try_taint("b", at(1)));
        assert!(d.try_taint("b", at(10)));
    }

    #[test]
    fn a_partly_disrupted_small_zone_stops_and_a_large_one_slows() {
        let s = RateSettings::default();
        let mut d = Disruption::default();
        let small = zones(&[("a", &[Up, Down, Down, Down])]);
        d.observe(&small, &s, at(0));
        assert_eq!(d.state("a"), Some(ZoneState::PartialDisruption));
        assert!(!d.try_taint("a", at(0)));
        let mut large = vec![Down; 40];
        large.extend([Up; 20]);
        let mut d = Disruption::default();
        d.observe(&zones(&[("a", &large)]), &s, at(0));
        assert!(d.try_taint("a", at(0)));
        assert!(!d.try_taint("a", at(50)));
        assert!(d.try_taint("a", at(100)), "0.01 per second");
    }
}
