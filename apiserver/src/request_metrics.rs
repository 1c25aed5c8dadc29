//! The API's Prometheus metrics, counted alike at both front ends (gRPC in `service.rs`,
//! HTTP in `http/`): `rudder_apiserver_request_duration_seconds` by Kubernetes verb,
//! resource, subresource and HTTP code (gRPC answers counted by the HTTP code of the
//! Kubernetes `Status` they carry), `rudder_apiserver_requests_in_flight`, and
//! `rudder_apiserver_watches` open by resource. Resources are labelled by the served kind's
//! plural (`unknown` for none) and subresources from the served list (`other` for any
//! else), so that no client can grow the series.
//!
//! A watch's duration is the time to start it (its answer's headers); how long it then
//! stays open is what the watch gauge shows.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;
use rudder_proto::metrics::{duration_histogram, observe, Metrics};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    pub resource: &'static str,
}

/// The subresources the API serves; any other is labelled `other`.
const SUBRESOURCES: [&str; 12] = [
    "status",
    "scale",
    "binding",
    "eviction",
    "log",
    "exec",
    "attach",
    "portforward",
    "proxy",
    "finalize",
    "ephemeralcontainers",
    "resize",
];

/// A resource name as a label: the served kind's plural however the client spelled it
/// (`po`, `Pods`, `deployments.apps`), `unknown` for none. Labels stay few whatever
/// clients send.
pub fn resource_label(name: &str) -> &'static str {
    crate::kinds::resolve(name).map_or("unknown", |info| info.resource)
}

/// A subresource as a label: one the API serves, or `other`.
pub fn subresource_label(name: &str) -> &'static str {
    match name {
        "" => "",
        known => SUBRESOURCES
            .iter()
            .find(|served| **served == known)
            .copied()
            .unwrap_or("other"),
    }
}

type DurationFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// The API's figures; clones share them. [`Default`] makes figures no registry serves.
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    durations: DurationFamily,
    in_flight: Gauge,
    watches: Family<WatchLabels, Gauge>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self {
            durations: Family::new_with_constructor(duration_histogram),
            in_flight: Gauge::default(),
            watches: Family::default(),
        }
    }
}

/// Kubernetes' verb for an HTTP request: `get` or `list` by whether it names an object,
/// `watch` when it asks to, `deletecollection` for a DELETE of a collection.
pub fn http_verb(method: &http::Method, names_object: bool, watch: bool) -> &'static str {
    use http::Method;
    match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if names_object => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if names_object => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    }
}

/// The HTTP code of a gRPC answer: the code of the Kubernetes `Status` in its details
/// (every API error carries one), else the usual mapping of the gRPC code.
pub fn http_code_of(status: &tonic::Status) -> u16 {
    let from_details = serde_json::from_slice::<serde_json::Value>(status.details())
        .ok()
        .and_then(|details| details.get("code")?.as_u64())
        .and_then(|code| u16::try_from(code).ok());
    if let Some(code) = from_details {
        return code;
    }
    use tonic::Code;
    match status.code() {
        Code::Ok => 200,
        Code::InvalidArgument | Code::OutOfRange => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied | Code::FailedPrecondition => 403,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::ResourceExhausted => 429,
        Code::Cancelled => 499,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
    }
}

impl ApiMetrics {
    /// New figures, registered in `metrics`.
    pub fn registered(metrics: &Metrics) -> Self {
        let figures = Self::default();
        metrics.register_with_unit(
            "rudder_apiserver_request_duration",
            "Time to answer an API request, by verb, resource, subresource and HTTP code",
            Unit::Seconds,
            figures.durations.clone(),
        );
        metrics.register(
            "rudder_apiserver_requests_in_flight",
            "API requests being answered",
            figures.in_flight.clone(),
        );
        metrics.register(
            "rudder_apiserver_watches",
            "Watches open, by resource",
            figures.watches.clone(),
        );
        figures
    }

    /// A request for `resource` (as the client named it) starts; [`InFlight::finish`]
    /// records its answer.
    pub fn request(&self, verb: &'static str, resource: &str, subresource: &str) -> InFlight {
        self.in_flight.inc();
        InFlight {
            metrics: self.clone(),
            verb,
            resource: resource_label(resource),
            subresource: subresource_label(subresource),
            started: Instant::now(),
        }
    }

    /// A watch on `resource` (as the client named it) is open while the returned guard
    /// lives.
    pub fn watch_opened(&self, resource: &str) -> OpenWatch {
        let gauge = self.watches.get_or_create_owned(&WatchLabels {
            resource: resource_label(resource),
        });
        gauge.inc();
        OpenWatch(gauge)
    }
}

/// A request being answered: counted in flight until dropped.
#[derive(Debug)]
pub struct InFlight {
    metrics: ApiMetrics,
    verb: &'static str,
    resource: &'static str,
    subresource: &'static str,
    started: Instant,
}

impl InFlight {
    /// Records the answer's HTTP `code` and the time it took.
    pub fn finish(self, code: u16) {
        let labels = RequestLabels {
            verb: self.verb,
            resource: self.resource,
            subresource: self.subresource,
            code,
        };
        observe(
            &self.metrics.durations.get_or_create(&labels),
            self.started.elapsed(),
        );
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

/// One open watch, counted until dropped.
#[derive(Debug)]
pub struct OpenWatch(Gauge);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;

    #[test]
    fn http_requests_get_kubernetes_verbs() {
        assert_eq!(http_verb(&Method::GET, true, false), "get");
        assert_eq!(http_verb(&Method::GET, false, false), "list");
        assert_eq!(http_verb(&Method::GET, false, true), "watch");
        assert_eq!(http_verb(&Method::GET, true, true), "watch");
        assert_eq!(http_verb(&Method::POST, false, false), "create");
        assert_eq!(http_verb(&Method::PUT, true, false), "update");
        assert_eq!(http_verb(&Method::PATCH, true, false), "patch");
        assert_eq!(http_verb(&Method::DELETE, true, false), "delete");
        assert_eq!(http_verb(&Method::DELETE, false, false), "deletecollection");
    }

    #[test]
    fn labels_stay_few_whatever_clients_send() {
        assert_eq!(resource_label("po"), "pods");
        assert_eq!(resource_label("Deployments.apps"), "deployments");
        assert_eq!(resource_label("no-such-thing-9f8e"), "unknown");
        assert_eq!(subresource_label("status"), "status");
        assert_eq!(subresource_label(""), "");
        assert_eq!(subresource_label("x".repeat(1000).as_str()), "other");
    }

    #[test]
    fn a_grpc_answer_counts_as_the_http_code_of_its_kubernetes_status() {
        let not_found = crate::error::ApiError::PathNotFound;
        assert_eq!(http_code_of(&tonic::Status::from(not_found)), 404);
        assert_eq!(http_code_of(&tonic::Status::unavailable("no leader")), 503);
        assert_eq!(
            http_code_of(&tonic::Status::invalid_argument("bad id")),
            400
        );
    }

    #[test]
    fn requests_are_in_flight_until_answered_and_watches_until_closed() {
        let metrics = Metrics::default();
        let api = ApiMetrics::registered(&metrics);
        let request = api.request("get", "pods", "");
        assert_eq!(api.in_flight.get(), 1);
        request.finish(404);
        assert_eq!(api.in_flight.get(), 0);
        let watch = api.watch_opened("pods");
        let text = metrics.encode();
        assert!(
            text.contains("rudder_apiserver_watches{resource=\"pods\"} 1\n"),
            "{text}"
        );
        drop(watch);
        assert!(metrics
            .encode()
            .contains("rudder_apiserver_watches{resource=\"pods\"} 0\n"));
        assert!(text.contains(
            "rudder_apiserver_request_duration_seconds_count{verb=\"get\",resource=\"pods\",subresource=\"\",code=\"404\"} 1\n"
        ), "{text}");
    }
}
