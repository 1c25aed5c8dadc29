//! The proxy's shell: an actix actor that follows Services and EndpointSlices (the node's
//! [`ServiceView`]), and after any change brings this node's table up to date in one `nft`
//! transaction, on a blocking thread, at most one at a time.
//!
//! ```text
//!  Event<Service | EndpointSlice> ─► dirty ─► (both caches synced, none in flight)
//!     model::service_ports for every Service ─► ruleset::plan
//!     ─► first sync, or the last failed: script::full (the table replaced)
//!        otherwise: script::changes against the last ruleset applied (nothing? skip)
//!     ─► nft -f - ─► failed? a full sync in a second
//! ```
//!
//! The table stays when the proxy stops, so pods stay reachable while a node restarts;
//! the first sync of the next start replaces it whole.

use std::time::Duration;

use actix::prelude::*;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use rudder_actors::informer::Event;

use super::model::{answer_locally, service_ports};
use super::nft;
use super::ruleset::{plan, ProxyConfig, Ruleset};
use super::script;
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
    /// The ruleset the table holds, known after a sync succeeded: the next writes only
    /// what differs from it. `None` until then, and after a failure.
    applied: Option<Ruleset>,
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
    fn desired(&self) -> Ruleset {
        let mut ports = Vec::new();
        for (service, slices) in self.view.services_with_slices() {
            let slices: Vec<&EndpointSlice> = slices.iter().map(|s| &**s).collect();
            ports.extend(service_ports(&service, &slices, &self.node));
        }
        answer_locally(&mut ports, &self.config.local_targets);
        plan(&self.config, &ports)
    }

    fn sync(&mut self, ctx: &mut Context<Self>) {
        if !(self.synced.0 && self.synced.1) || self.in_flight || !self.dirty {
            return;
        }
        self.dirty = false;
        let desired = self.desired();
        let script = match &self.applied {
            None => script::full(&self.config, &desired),
            Some(applied) => match script::changes(&self.config.table, applied, &desired) {
                Some(script) => script,
                None => return,
            },
        };
        self.in_flight = true;
        let work = tokio::task::spawn_blocking(move || nft::apply(&script));
        ctx.spawn(actix::fut::wrap_future::<_, Self>(work).map(move |outcome, proxy, ctx| {
            proxy.in_flight = false;
            let failure = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error.to_string()),
                Err(error) => Some(format!("the nft thread failed: {error}")),
            };
            if let Some(error) = failure {
                tracing::warn!(%error, table = %proxy.config.table, "the proxy's rules were not written; writing the whole table again");
                proxy.applied = None;
                proxy.dirty = true;
                ctx.run_later(RETRY, |proxy, ctx| proxy.sync(ctx));
                return;
            }
            proxy.applied = Some(desired);
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
