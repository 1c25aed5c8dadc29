//! The DNS server's feed: an actix actor that follows Services and EndpointSlices (the
//! node's [`ServiceView`]) and, a moment after any change, replaces the names the server
//! answers from.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use rudder_actors::informer::Event;

use super::records::ClusterNames;
use super::server::SharedNames;
use crate::service_view::ServiceView;

/// How long after a change the names are rebuilt (changes arriving meanwhile join it).
const COALESCE: Duration = Duration::from_millis(10);

/// Keeps [`SharedNames`] current.
pub struct ClusterDns {
    view: ServiceView,
    domain: Name,
    names: SharedNames,
    synced: (bool, bool),
    scheduled: bool,
    serial: u32,
}

impl ClusterDns {
    pub fn new(view: ServiceView, domain: Name, names: SharedNames) -> Self {
        Self {
            view,
            domain,
            names,
            synced: (false, false),
            scheduled: false,
            serial: 0,
        }
    }

    fn changed(&mut self, ctx: &mut Context<Self>) {
        if self.scheduled || !(self.synced.0 && self.synced.1) {
            return;
        }
        self.scheduled = true;
        ctx.run_later(COALESCE, |dns, _| {
            dns.scheduled = false;
            dns.rebuild();
        });
    }

    fn rebuild(&mut self) {
        self.serial = self.serial.wrapping_add(1);
        let all = self.view.services_with_slices();
        let inputs = all.iter().map(|(service, slices)| {
            let slices: Vec<&EndpointSlice> = slices.iter().map(|s| &**s).collect();
            (&**service, slices)
        });
        let names = ClusterNames::new(&self.domain, inputs, self.serial);
        *self
            .names
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(names));
    }
}

impl Actor for ClusterDns {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.add_message_stream(self.view.services.subscribe());
        ctx.add_message_stream(self.view.slices.subscribe());
    }
}

impl Handler<Event<Service>> for ClusterDns {
    type Result = ();

    fn handle(&mut self, event: Event<Service>, ctx: &mut Context<Self>) {
        if let Event::Synced = event {
            self.synced.0 = true;
        }
        self.changed(ctx);
    }
}

impl Handler<Event<EndpointSlice>> for ClusterDns {
    type Result = ();

    fn handle(&mut self, event: Event<EndpointSlice>, ctx: &mut Context<Self>) {
        if let Event::Synced = event {
            self.synced.1 = true;
        }
        self.changed(ctx);
    }
}
