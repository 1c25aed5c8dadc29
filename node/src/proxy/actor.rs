//! The proxy's shell: an actix actor that follows Services and EndpointSlices (the node's
//! [`ServiceView`]), notes which Services changed, and brings this node's table up to date
//! in one `nft` transaction, on a blocking thread, at most one at a time.
//!
//! ```text
//!  Event<Service | EndpointSlice> ─► the Service it concerns is dirty (a relist: all are)
//!     ─► (both caches synced, none in flight, 20 ms to gather more)
//!     each dirty Service: model::service_ports ─► ruleset::plan_service ─► Edits
//!     ─► first sync, or the last failed: script::full of every Service (table replaced)
//!        otherwise: script::changes of the edits against the ruleset applied (none? skip)
//!     ─► nft -f - ─► failed? a full sync in a second
//!                  ─► written: the UDP flows the change left wrong deleted (conntrack)
//!                  ─► chains emptied? a sync in a second deletes them
//! ```
//!
//! The table stays when the proxy stops, so pods stay reachable while a node restarts;
//! the first sync of the next start replaces it whole. Every minute the proxy checks that
//! its table is still there (`nft flush ruleset`, a firewall reload) and writes it whole
//! if not.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use actix::prelude::*;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use rudder_actors::informer::{Event, ObjectKey};
use rudder_proto::metrics::observe;

use super::conntrack::{self, stale_flows, StaleFlow};
use super::metrics::ProxyMetrics;
use super::model::{answer_locally, service_ports, Protocol, ServicePort};
use super::nft;
use super::ruleset::{plan_service, Edits, ProxyConfig, Ruleset, ServiceRules};
use super::script;
use crate::service_view::{service_of_slice, ServiceView};

/// How long after a change the table is written (changes arriving meanwhile join it).
const COALESCE: Duration = Duration::from_millis(20);
const RETRY: Duration = Duration::from_secs(1);
/// How long after a sync that emptied chains the next deletes them (see
/// `Ruleset::stale_chains`).
const STALE: Duration = Duration::from_secs(1);
/// How often the proxy checks that its table is still there.
const CHECK: Duration = Duration::from_secs(60);

/// Which Services' rules must be planned again.
#[derive(Debug, Default)]
enum Dirty {
    #[default]
    Nothing,
    Services(BTreeSet<ObjectKey>),
    Everything,
}

impl Dirty {
    fn add(&mut self, service: ObjectKey) {
        match self {
            Self::Nothing => *self = Self::Services(BTreeSet::from([service])),
            Self::Services(services) => {
                services.insert(service);
            }
            Self::Everything => {}
        }
    }
}

/// The node proxy.
pub struct Proxy {
    view: ServiceView,
    node: String,
    config: ProxyConfig,
    synced: (bool, bool),
    scheduled: bool,
    in_flight: bool,
    /// A write failed: nothing more is tried until the retry.
    backing_off: bool,
    dirty: Dirty,
    /// The ruleset the table holds, known after a sync succeeded: the next writes only
    /// what differs from it. `None` until then, and after a failure.
    applied: Option<Ruleset>,
    /// The UDP ports of each Service as the last successful sync wrote them.
    udp_ports: UdpPorts,
    metrics: ProxyMetrics,
}

/// UDP ports by Service (`namespace/name`).
type UdpPorts = BTreeMap<String, Vec<ServicePort>>;

impl Proxy {
    pub fn new(view: ServiceView, node: String, config: ProxyConfig) -> Self {
        Self {
            view,
            node,
            config,
            synced: (false, false),
            scheduled: false,
            in_flight: false,
            backing_off: false,
            dirty: Dirty::Everything,
            applied: None,
            udp_ports: UdpPorts::new(),
            metrics: ProxyMetrics::default(),
        }
    }

    /// Records its syncs in `metrics`.
    pub fn with_metrics(mut self, metrics: ProxyMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    fn changed(&mut self, ctx: &mut Context<Self>) {
        if !self.scheduled {
            self.scheduled = true;
            ctx.run_later(COALESCE, |proxy, ctx| {
                proxy.scheduled = false;
                proxy.sync(ctx);
            });
        }
    }

    /// One Service's rules as the caches say they should be (`None`: it forwards
    /// nothing), and its UDP ports.
    fn planned(&self, service: &ObjectKey) -> (Option<ServiceRules>, Vec<ServicePort>) {
        let (service, slices) = self.view.service_with_slices(service);
        let Some(service) = service else {
            return (None, Vec::new());
        };
        let slices: Vec<&EndpointSlice> = slices.iter().map(|s| &**s).collect();
        let mut ports = service_ports(&service, &slices, &self.node);
        answer_locally(&mut ports, &self.config.local_targets);
        let rules = Some(plan_service(&ports)).filter(|rules| *rules != ServiceRules::default());
        ports.retain(|port| port.protocol == Protocol::Udp);
        (rules, ports)
    }

    /// The edits for the dirty Services (for everything, each Service cached and each the
    /// table still holds), and their UDP ports.
    fn edits(&self, dirty: Dirty) -> (Edits, UdpPorts) {
        let services: BTreeSet<ObjectKey> = match dirty {
            Dirty::Nothing => BTreeSet::new(),
            Dirty::Services(services) => services,
            Dirty::Everything => {
                let cached = self.view.services.cache().list();
                let cached = cached.iter().map(|service| service_key(service));
                // And every Service the table or the UDP flows still know of: one deleted
                // meanwhile must go from both.
                let held = self
                    .applied
                    .iter()
                    .flat_map(|applied| applied.services().keys())
                    .chain(self.udp_ports.keys())
                    .filter_map(|key| {
                        let (namespace, name) = key.split_once('/')?;
                        Some(ObjectKey::new(namespace, name))
                    });
                cached.chain(held).collect()
            }
        };
        let mut edits = Edits::new();
        let mut udp = UdpPorts::new();
        for service in services {
            let (rules, ports) = self.planned(&service);
            let key = format!("{}/{}", service.namespace, service.name);
            udp.insert(key.clone(), ports);
            edits.insert(key, rules);
        }
        (edits, udp)
    }

    /// The UDP flows the edited Services' changes leave wrong.
    fn stale_flows(&self, udp: &UdpPorts) -> Vec<StaleFlow> {
        let mut flows = BTreeSet::new();
        for (service, ports) in udp {
            let before = self
                .udp_ports
                .get(service)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            flows.extend(stale_flows(before, ports, &self.config.node_ips));
        }
        flows.into_iter().collect()
    }

    fn sync(&mut self, ctx: &mut Context<Self>) {
        if !(self.synced.0 && self.synced.1) || self.in_flight || self.backing_off {
            return;
        }
        let dirty = match (&self.dirty, &self.applied) {
            (Dirty::Nothing, Some(applied)) if applied.stale_chains().is_empty() => return,
            // Nothing is known about the table: every Service is written.
            (_, None) => Dirty::Everything,
            _ => std::mem::take(&mut self.dirty),
        };
        self.dirty = Dirty::Nothing;
        let (edits, udp) = self.edits(dirty);
        let flows = self.stale_flows(&udp);
        let (script, next) = match self.applied.take() {
            None => {
                let mut rules = Ruleset::new(&self.config);
                rules.apply(edits);
                (script::full(&self.config, &rules), rules)
            }
            Some(mut applied) => match script::changes(&self.config.table, &applied, &edits) {
                Some(script) => {
                    applied.apply(edits);
                    (script, applied)
                }
                None => {
                    self.applied = Some(applied);
                    return;
                }
            },
        };
        self.in_flight = true;
        let table = self.config.table.clone();
        let sync_duration = self.metrics.sync_duration.clone();
        let work = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let written = nft::apply(&script);
            if written.is_ok() {
                // The rules are in place: flows translated the old way go.
                for flow in &flows {
                    if let Err(error) = conntrack::delete(flow) {
                        tracing::warn!(%error, %table, "a stale UDP flow stays until it times out");
                    }
                }
            }
            observe(&sync_duration, started.elapsed());
            written
        });
        ctx.spawn(actix::fut::wrap_future::<_, Self>(work).map(move |outcome, proxy, ctx| {
            proxy.in_flight = false;
            let failure = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error.to_string()),
                Err(error) => Some(format!("the nft thread failed: {error}")),
            };
            if let Some(error) = failure {
                proxy.metrics.sync_failures.inc();
                tracing::warn!(%error, table = %proxy.config.table, "the proxy's rules were not written; writing the whole table again");
                proxy.applied = None;
                proxy.backing_off = true;
                ctx.run_later(RETRY, |proxy, ctx| {
                    proxy.backing_off = false;
                    proxy.sync(ctx);
                });
                return;
            }
            let stale = !next.stale_chains().is_empty();
            proxy.metrics.written(&next);
            proxy.applied = Some(next);
            for (service, ports) in udp {
                if ports.is_empty() {
                    proxy.udp_ports.remove(&service);
                } else {
                    proxy.udp_ports.insert(service, ports);
                }
            }
            // Changes that arrived while nft ran.
            if !matches!(proxy.dirty, Dirty::Nothing) {
                proxy.sync(ctx);
            } else if stale {
                ctx.run_later(STALE, |proxy, ctx| proxy.sync(ctx));
            }
        }));
    }

    /// Writes the table whole if it is gone.
    fn check(&mut self, ctx: &mut Context<Self>) {
        if self.applied.is_none() || self.in_flight {
            return;
        }
        let table = self.config.table.clone();
        let work = tokio::task::spawn_blocking(move || nft::has_chain(&table, "services"));
        ctx.spawn(actix::fut::wrap_future::<_, Self>(work).map(|found, proxy, ctx| {
            if let Ok(Ok(false)) = found {
                tracing::warn!(table = %proxy.config.table, "the proxy's table is gone; writing it again");
                proxy.applied = None;
                // Flows made while it was gone went untranslated: the rewrite clears them.
                proxy.udp_ports.clear();
                proxy.sync(ctx);
            }
        }));
    }
}

impl Actor for Proxy {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.add_message_stream(self.view.services.subscribe());
        ctx.add_message_stream(self.view.slices.subscribe());
        ctx.run_interval(CHECK, |proxy, ctx| proxy.check(ctx));
    }
}

fn service_key(service: &Service) -> ObjectKey {
    ObjectKey::new(
        service.metadata.namespace.clone().unwrap_or_default(),
        service.metadata.name.clone().unwrap_or_default(),
    )
}

impl Handler<Event<Service>> for Proxy {
    type Result = ();

    fn handle(&mut self, event: Event<Service>, ctx: &mut Context<Self>) {
        match event {
            Event::Added(service) | Event::Deleted(service) => {
                self.dirty.add(service_key(&service))
            }
            Event::Updated { new, .. } => self.dirty.add(service_key(&new)),
            Event::Synced => {
                self.synced.0 = true;
                self.dirty = Dirty::Everything;
            }
        }
        self.changed(ctx);
    }
}

impl Handler<Event<EndpointSlice>> for Proxy {
    type Result = ();

    fn handle(&mut self, event: Event<EndpointSlice>, ctx: &mut Context<Self>) {
        match event {
            Event::Added(slice) | Event::Deleted(slice) => {
                if let Some(service) = service_of_slice(&slice) {
                    self.dirty.add(service);
                }
            }
            // A slice relabelled to another Service concerns both.
            Event::Updated { old, new } => {
                for service in [service_of_slice(&old), service_of_slice(&new)]
                    .into_iter()
                    .flatten()
                {
                    self.dirty.add(service);
                }
            }
            Event::Synced => {
                self.synced.1 = true;
                self.dirty = Dirty::Everything;
            }
        }
        self.changed(ctx);
    }
}
