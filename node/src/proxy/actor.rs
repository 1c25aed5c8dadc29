//! The proxy's shell: an actix actor that follows Services and EndpointSlices (the node's
//! [`ServiceView`]), and after any change writes this node's table anew in one `nft`
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

use std::time::Duration;

use actix::prelude::*;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use rudder_actors::informer::Event;

use super::model::{answer_locally, service_ports};
use super::nft;
use super::ruleset::{full_sync, ProxyConfig};
use crate::service_view::ServiceView;

/// How long after a change the table is written (changes arriving meanwhile join it).
const COALESCE: Duration = Duration::from_millis(20);
const RETRY: Duration = Duration::from_secs(1);

/// The node proxy.
pub struct Proxy {
    view: ServiceView,
    node: String,
    config: ProxyConfig,
    synced: (bool, bool),
    scheduled: bool,
    in_flight: bool,
    dirty: bool,
    /// The script last applied: an identical one is not applied again.
    applied: Option<String>,
}

impl Proxy {
    pub fn new(view: ServiceView, node: String, config: ProxyConfig) -> Self {
        Self {
            view,
            node,
            config,
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
    fn script(&self) -> String {
        let mut ports = Vec::new();
        for (service, slices) in self.view.services_with_slices() {
            let slices: Vec<&EndpointSlice> = slices.iter().map(|s| &**s).collect();
            ports.extend(service_ports(&service, &slices, &self.node));
        }
        answer_locally(&mut ports, &self.config.local_targets);
        full_sync(&self.config, &ports)
    }

    fn sync(&mut self, ctx: &mut Context<Self>) {
        if !(self.synced.0 && self.synced.1) || self.in_flight || !self.dirty {
            return;
        }
        self.dirty = false;
        let script = self.script();
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
        ctx.add_message_stream(self.view.services.subscribe());
        ctx.add_message_stream(self.view.slices.subscribe());
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
