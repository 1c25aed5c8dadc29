//! The proxy's shell: an actix actor that follows Services and EndpointSlices (the shared
//! informer runtime), and after any change writes this node's table anew in one `nft`
//! transaction, on a blocking thread, at most one at a time.
//!
//! ```text
//!  Event<Service | EndpointSlice> ─► dirty ─► (both caches synced, none in flight)
//!     model::service_ports for every Service ─► ruleset::full_sync ─► unchanged? skip
//!     ─► nft -f - ─► failed? look again in a second
//! ```
//!
//! Every sync is a full one (the whole table, replaced atomically); writing only the
//! chains that changed is the next step (BENCHMARKS.md will say when it matters). The table
//! stays when the proxy stops, so pods stay reachable while a node restarts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use rudder_actors::informer::{Event, Informer, Query};
use rudder_proto::client::ApiClient;

use super::model::service_ports;
use super::nft;
use super::ruleset::{full_sync, ProxyConfig};

/// The label naming a slice's Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// How long after a change the table is written (changes arriving meanwhile join it).
const COALESCE: Duration = Duration::from_millis(20);
const RETRY: Duration = Duration::from_secs(1);

/// The node proxy.
pub struct Proxy {
    client: Arc<ApiClient>,
    node: String,
    config: ProxyConfig,
    services: Option<Informer<Service>>,
    slices: Option<Informer<EndpointSlice>>,
    synced: (bool, bool),
    scheduled: bool,
    in_flight: bool,
    dirty: bool,
    /// The script last applied: an identical one is not applied again.
    applied: Option<String>,
}

impl Proxy {
    pub fn new(client: Arc<ApiClient>, node: String, config: ProxyConfig) -> Self {
        Self {
            client,
            node,
            config,
            services: None,
            slices: None,
            synced: (false, false),
            scheduled: false,
            in_flight: false,
            dirty: false,
            applied: None,
        }
    }

    fn changed(&mut self, ctx: &mut Context<Self>) {
        self.dirty = true;
        if !self.scheduled {
            self.scheduled = true;
            ctx.run_later(COALESCE, |proxy, ctx| {
                proxy.scheduled = false;
                proxy.sync(ctx);
            });
        }
    }

    /// The table as the caches say it should be.
    fn script(&self) -> Option<String> {
        let (services, slices) = (self.services.as_ref()?, self.slices.as_ref()?);
        let mut by_service: BTreeMap<(String, String), Vec<Arc<EndpointSlice>>> = BTreeMap::new();
        for slice in slices.cache().list() {
            let labels = slice.metadata.labels.as_ref();
            if let Some(name) = labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) {
                let namespace = slice.metadata.namespace.clone().unwrap_or_default();
                by_service
                    .entry((namespace, name.clone()))
                    .or_default()
                    .push(slice);
            }
        }
        let mut all = services.cache().list();
        all.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        let ports: Vec<_> = all
            .iter()
            .flat_map(|service| {
                let key = (
                    service.metadata.namespace.clone().unwrap_or_default(),
                    service.metadata.name.clone().unwrap_or_default(),
                );
                let slices = by_service.get(&key).cloned().unwrap_or_default();
                let slices: Vec<&EndpointSlice> = slices.iter().map(|s| &**s).collect();
                service_ports(service, &slices, &self.node)
            })
            .collect();
        Some(full_sync(&self.config, &ports))
    }

    fn sync(&mut self, ctx: &mut Context<Self>) {
        if !(self.synced.0 && self.synced.1) || self.in_flight || !self.dirty {
            return;
        }
        self.dirty = false;
        let Some(script) = self.script() else { return };
        if self.applied.as_ref() == Some(&script) {
            return;
        }
        self.in_flight = true;
        let applying = script.clone();
        let work = tokio::task::spawn_blocking(move || nft::apply(&applying));
        ctx.spawn(actix::fut::wrap_future::<_, Self>(work).map(move |outcome, proxy, ctx| {
            proxy.in_flight = false;
            match outcome {
                Ok(Ok(())) => proxy.applied = Some(script),
                Ok(Err(error)) => {
                    tracing::warn!(%error, table = %proxy.config.table, "the proxy's rules were refused; trying again");
                    proxy.applied = None;
                    proxy.dirty = true;
                    ctx.run_later(RETRY, |proxy, ctx| proxy.sync(ctx));
                    return;
                }
                Err(error) => tracing::warn!(%error, "the nft thread failed"),
            }
            // Changes that arrived while nft ran.
            if proxy.dirty {
                proxy.sync(ctx);
            }
        }));
    }
}

impl Actor for Proxy {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let services = Informer::start(self.client.clone(), Query::all::<Service>(), Vec::new());
        let slices = Informer::start(
            self.client.clone(),
            Query::all::<EndpointSlice>(),
            Vec::new(),
        );
        ctx.add_message_stream(services.subscribe());
        ctx.add_message_stream(slices.subscribe());
        self.services = Some(services);
        self.slices = Some(slices);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(informer) = &self.services {
            informer.stop();
        }
        if let Some(informer) = &self.slices {
            informer.stop();
        }
    }
}

impl Handler<Event<Service>> for Proxy {
    type Result = ();

    fn handle(&mut self, event: Event<Service>, ctx: &mut Context<Self>) {
        if let Event::Synced = event {
            self.synced.0 = true;
        }
        self.changed(ctx);
    }
}

impl Handler<Event<EndpointSlice>> for Proxy {
    type Result = ();

    fn handle(&mut self, event: Event<EndpointSlice>, ctx: &mut Context<Self>) {
        if let Event::Synced = event {
            self.synced.1 = true;
        }
        self.changed(ctx);
    }
}
