//! Probes (liveness, readiness, startup) and lifecycle hooks: exactly one handler each,
//! with valid ports and sane timings.

use k8s_openapi::api::core::v1::{HTTPGetAction, LifecycleHandler, Probe};

use super::super::FieldError;
use super::{non_negative, one_of, port_number, port_number_or_name, positive};

/// `handlers` names the handler fields and whether each is set: exactly one must be.
fn exactly_one_handler(handlers: &[(&str, bool)], at: &str, errs: &mut Vec<FieldError>) {
    let mut set = handlers.iter().filter(|(_, present)| *present);
    if set.next().is_none() {
        errs.push(FieldError::required(at, "must specify a handler type"));
    }
    for (name, _) in set {
        errs.push(FieldError::forbidden(
            format!("{at}.{name}"),
            "may not specify more than 1 handler type",
        ));
    }
}

pub(super) fn probe(p: &Probe, at: &str, needs_single_success: bool, errs: &mut Vec<FieldError>) {
    let handlers = [
        ("exec", p.exec.is_some()),
        ("httpGet", p.http_get.is_some()),
        ("tcpSocket", p.tcp_socket.is_some()),
        ("grpc", p.grpc.is_some()),
    ];
    exactly_one_handler(&handlers, at, errs);
    if let Some(exec) = &p.exec {
        if exec.command.as_ref().is_none_or(Vec::is_empty) {
            errs.push(FieldError::required(format!("{at}.exec.command"), ""));
        }
    }
    if let Some(get) = &p.http_get {
        http_get(get, &format!("{at}.httpGet"), errs);
    }
    if let Some(tcp) = &p.tcp_socket {
        port_number_or_name(errs, &format!("{at}.tcpSocket.port"), &tcp.port);
    }
    if let Some(grpc) = &p.grpc {
        port_number(errs, format!("{at}.grpc.port"), grpc.port);
    }
    let numbers = [
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("periodSeconds", p.period_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ];
    for (name, value) in numbers {
        non_negative(errs, format!("{at}.{name}"), value.map(i64::from));
    }
    // Liveness and startup are pass/fail gates: one success must be enough.
    if let Some(threshold) = p
        .success_threshold
        .filter(|t| needs_single_success && *t != 1)
    {
        errs.push(FieldError::invalid(
            format!("{at}.successThreshold"),
            threshold,
            "must be 1",
        ));
    }
    positive(
        errs,
        format!("{at}.terminationGracePeriodSeconds"),
        p.termination_grace_period_seconds,
    );
}

pub(super) fn lifecycle_handler(
    h: &LifecycleHandler,
    at: &str,
    grace: i64,
    errs: &mut Vec<FieldError>,
) {
    let handlers = [
        ("exec", h.exec.is_some()),
        ("httpGet", h.http_get.is_some()),
        ("tcpSocket", h.tcp_socket.is_some()),
        ("sleep", h.sleep.is_some()),
    ];
    exactly_one_handler(&handlers, at, errs);
    if let Some(exec) = &h.exec {
        if exec.command.as_ref().is_none_or(Vec::is_empty) {
            errs.push(FieldError::required(format!("{at}.exec.command"), ""));
        }
    }
    if let Some(get) = &h.http_get {
        http_get(get, &format!("{at}.httpGet"), errs);
    }
    if let Some(tcp) = &h.tcp_socket {
        port_number_or_name(errs, &format!("{at}.tcpSocket.port"), &tcp.port);
    }
    if let Some(sleep) = &h.sleep {
        if sleep.seconds < 0 || sleep.seconds > grace {
            errs.push(FieldError::invalid(
                format!("{at}.sleep.seconds"),
                sleep.seconds,
                format!(
                    "must be non-negative and less than terminationGracePeriodSeconds ({grace})"
                ),
            ));
        }
    }
}

fn http_get(get: &HTTPGetAction, at: &str, errs: &mut Vec<FieldError>) {
    port_number_or_name(errs, &format!("{at}.port"), &get.port);
    one_of(
        errs,
        format!("{at}.scheme"),
        get.scheme.as_deref(),
        &["HTTP", "HTTPS"],
    );
}

#[cfg(test)]
mod tests {
    use super::super::super::FieldErrorKind;
    use super::super::test_util::{from_json, only, paths};
    use super::*;
    use serde_json::json;

    const AT: &str = "spec.containers[0].livenessProbe";

    fn check(value: serde_json::Value, needs_single_success: bool) -> Vec<FieldError> {
        let mut errs = Vec::new();
        probe(&from_json(value), AT, needs_single_success, &mut errs);
        errs
    }

    fn hook(value: serde_json::Value, grace: i64) -> Vec<FieldError> {
        let mut errs = Vec::new();
        lifecycle_handler(
            &from_json(value),
            "spec.containers[0].lifecycle.preStop",
            grace,
            &mut errs,
        );
        errs
    }

    #[test]
    fn usual_probes_are_valid() {
        let http = json!({
            "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTPS"},
            "initialDelaySeconds": 3, "periodSeconds": 3, "failureThreshold": 5
        });
        assert_eq!(check(http, true), vec![]);
        assert_eq!(check(json!({"tcpSocket": {"port": "http"}}), true), vec![]);
        assert_eq!(check(json!({"grpc": {"port": 2379}}), true), vec![]);
        let exec = json!({"exec": {"command": ["cat", "/tmp/healthy"]}, "successThreshold": 3});
        assert_eq!(check(exec, false), vec![]);
    }

    #[test]
    fn a_probe_has_exactly_one_handler() {
        let errs = check(json!({"periodSeconds": 5}), true);
        assert_eq!(
            only(&errs, AT).to_string(),
            "spec.containers[0].livenessProbe: Required value: must specify a handler type"
        );
        let errs = check(
            json!({"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}),
            true,
        );
        let err = only(&errs, "spec.containers[0].livenessProbe.tcpSocket");
        assert_eq!(
            err.to_string(),
            format!("{AT}.tcpSocket: Forbidden: may not specify more than 1 handler type")
        );
    }

    #[test]
    fn probe_ports_and_numbers_are_checked() {
        let errs = check(
            json!({
                "httpGet": {"port": 0, "scheme": "FTP"},
                "timeoutSeconds": -1,
                "successThreshold": 2
            }),
            true,
        );
        assert_eq!(
            paths(&errs),
            [
                "spec.containers[0].livenessProbe.httpGet.port",
                "spec.containers[0].livenessProbe.httpGet.scheme",
                "spec.containers[0].livenessProbe.timeoutSeconds",
                "spec.containers[0].livenessProbe.successThreshold",
            ]
        );
        assert_eq!(errs[3].detail, "must be 1");
        let errs = check(json!({"exec": {}}), true);
        assert_eq!(
            only(&errs, "spec.containers[0].livenessProbe.exec.command").kind,
            FieldErrorKind::Required
        );
    }

    #[test]
    fn a_hook_has_exactly_one_handler() {
        assert_eq!(
            hook(json!({"exec": {"command": ["nginx", "-s", "quit"]}}), 30),
            vec![]
        );
        let errs = hook(json!({}), 30);
        only(&errs, "spec.containers[0].lifecycle.preStop");
        let errs = hook(
            json!({"sleep": {"seconds": 1}, "httpGet": {"port": 80}}),
            30,
        );
        only(&errs, "spec.containers[0].lifecycle.preStop.sleep");
    }

    #[test]
    fn a_pre_stop_sleep_fits_in_the_grace_period() {
        assert_eq!(hook(json!({"sleep": {"seconds": 5}}), 30), vec![]);
        let errs = hook(json!({"sleep": {"seconds": 5}}), 3);
        let err = only(&errs, "spec.containers[0].lifecycle.preStop.sleep.seconds");
        assert_eq!(
            err.detail,
            "must be non-negative and less than terminationGracePeriodSeconds (3)"
        );
        let errs = hook(json!({"sleep": {"seconds": -1}}), 30);
        only(&errs, "spec.containers[0].lifecycle.preStop.sleep.seconds");
    }
}
