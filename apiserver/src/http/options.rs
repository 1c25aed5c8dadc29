//! A request's query parameters and option bodies as the registry's options (pure): list
//! and watch parameters, `dryRun`, `fieldManager` and `force`, DeleteOptions (query or body),
//! and the patch a content type names.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::delete::{DeleteOptions, Propagation};
use crate::error::ApiError;
use crate::kinds::FieldValidation;
use crate::list::ListOptions;
use crate::registry::PatchType;
use crate::validation::FieldError;
use crate::watch::WatchOptions;

pub type Query = HashMap<String, String>;

fn text(query: &Query, name: &str) -> String {
    query.get(name).cloned().unwrap_or_default()
}

fn flag(query: &Query, name: &str) -> bool {
    matches!(query.get(name).map(String::as_str), Some("true" | "1"))
}

/// Whether a GET of a collection is a watch (`?watch=true`, `?watch=1`).
pub fn is_watch(query: &Query) -> bool {
    flag(query, "watch")
}

pub fn list_options(namespace: &str, query: &Query) -> Result<ListOptions, ApiError> {
    resource_version_match(query)?;
    let limit = match query.get("limit").map(String::as_str) {
        None | Some("") => 0,
        Some(text) => text.parse().map_err(|_| {
            ApiError::bad_field("limit", format!("limit {text:?} is not a whole number"))
        })?,
    };
    Ok(ListOptions {
        namespace: namespace.to_owned(),
        label_selector: text(query, "labelSelector"),
        field_selector: text(query, "fieldSelector"),
        limit,
        continue_token: text(query, "continue"),
        resource_version: text(query, "resourceVersion"),
    })
}

/// `resourceVersionMatch`: `NotOlderThan` and `Exact` are both what a resourceVersion
/// means here (the store reads exactly at it, which is not older).
fn resource_version_match(query: &Query) -> Result<(), ApiError> {
    match query.get("resourceVersionMatch").map(String::as_str) {
        None | Some("" | "NotOlderThan" | "Exact") => Ok(()),
        Some(other) => Err(ApiError::bad_field(
            "resourceVersionMatch",
            format!("{other:?} is not a resourceVersionMatch: use NotOlderThan or Exact"),
        )),
    }
}

pub fn watch_options(namespace: &str, query: &Query) -> Result<WatchOptions, ApiError> {
    let send_initial_events = match query.get("sendInitialEvents").map(String::as_str) {
        None | Some("") => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_field(
                "sendInitialEvents",
                format!("sendInitialEvents {other:?} is not true or false"),
            ))
        }
    };
    // As kube-apiserver validates a watch's options: resourceVersionMatch comes with
    // sendInitialEvents, and is then NotOlderThan.
    let forbidden = match (
        send_initial_events,
        text(query, "resourceVersionMatch").as_str(),
    ) {
        (Some(_), "NotOlderThan") | (None, "") => None,
        (Some(_), _) => {
            Some("sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")
        }
        (None, _) => {
            Some("resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided")
        }
    };
    if let Some(message) = forbidden {
        return Err(ApiError::Invalid {
            kind: "ListOptions.meta.k8s.io".into(),
            name: String::new(),
            causes: vec![FieldError::forbidden("resourceVersionMatch", message)],
        });
    }
    let allow_bookmarks = flag(query, "allowWatchBookmarks");
    Ok(WatchOptions {
        namespace: namespace.to_owned(),
        label_selector: text(query, "labelSelector"),
        field_selector: text(query, "fieldSelector"),
        resource_version: text(query, "resourceVersion"),
        allow_bookmarks,
        bookmark_interval: None,
        send_initial_events,
    })
}

/// How long a watch may last (`timeoutSeconds`); none: until the client or server ends it.
pub fn watch_timeout(query: &Query) -> Result<Option<Duration>, ApiError> {
    match query.get("timeoutSeconds").map(String::as_str) {
        None | Some("") => Ok(None),
        Some(text) => match text.parse::<u64>() {
            Ok(0) => Ok(None),
            Ok(seconds) => Ok(Some(Duration::from_secs(seconds))),
            Err(_) => Err(ApiError::bad_field(
                "timeoutSeconds",
                format!("timeoutSeconds {text:?} is not a whole number of seconds"),
            )),
        },
    }
}

/// `dryRun=All`: decide everything, write nothing. Any other value is refused.
pub fn dry_run(query: &Query) -> Result<bool, ApiError> {
    match query.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_field(
            "dryRun",
            format!("dryRun {other:?} is not supported: the only value is All"),
        )),
    }
}

/// DeleteOptions from the query and the body (the body's win, as kube-apiserver's do).
pub fn delete_options(query: &Query, body: &[u8]) -> Result<(DeleteOptions, bool), ApiError> {
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(body).map_err(|error| {
            ApiError::bad_request(format!("the DeleteOptions body is not valid JSON: {error}"))
        })?
    };
    let grace_period_seconds = match &body["gracePeriodSeconds"] {
        Value::Null => match query.get("gracePeriodSeconds") {
            None => None,
            Some(text) => Some(text.parse::<i64>().map_err(|_| {
                ApiError::bad_field(
                    "gracePeriodSeconds",
                    format!("gracePeriodSeconds {text:?} is not a whole number"),
                )
            })?),
        },
        value => Some(value.as_i64().ok_or_else(|| {
            ApiError::bad_field("gracePeriodSeconds", "must be a whole number of seconds")
        })?),
    };
    let propagation = match body["propagationPolicy"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| query.get("propagationPolicy").cloned())
    {
        Some(policy) => Propagation::parse(&policy)?,
        None => {
            let orphan = match &body["orphanDependents"] {
                Value::Bool(orphan) => Some(*orphan),
                _ => query.get("orphanDependents").map(|text| text == "true"),
            };
            match orphan {
                Some(true) => Propagation::parse("Orphan")?,
                Some(false) => Propagation::parse("Background")?,
                None => None,
            }
        }
    };
    let preconditions = &body["preconditions"];
    let dry_run = match body["dryRun"].as_array() {
        Some(values) => values.iter().any(|value| value == "All"),
        None => dry_run(query)?,
    };
    let options = DeleteOptions {
        grace_period_seconds,
        propagation,
        precondition_uid: preconditions["uid"].as_str().unwrap_or_default().to_owned(),
        precondition_resource_version: preconditions["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    Ok((options, dry_run))
}

/// `fieldValidation`: Strict, Warn or Ignore; without it Warn, as kube-apiserver does
/// (kubectl asks for Strict).
pub fn field_validation(query: &Query) -> Result<FieldValidation, ApiError> {
    match query.get("fieldValidation").map(String::as_str) {
        None | Some("") => Ok(FieldValidation::Warn),
        Some(text) => FieldValidation::parse(text),
    }
}

/// What a PATCH's content type asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Patch(PatchType),
    /// Server-side apply (`application/apply-patch+yaml`).
    Apply,
}

/// The patch a content type names.
pub fn patch_kind(content_type: &str) -> Result<PatchKind, ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "application/merge-patch+json" => Ok(PatchKind::Patch(PatchType::Merge)),
        "application/json-patch+json" => Ok(PatchKind::Patch(PatchType::Json)),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Patch(PatchType::Strategic)),
        "application/apply-patch+yaml" => Ok(PatchKind::Apply),
        other => Err(ApiError::UnsupportedMediaType {
            message: format!(
                "the body of a PATCH is {other:?}; use application/merge-patch+json, \
                 application/json-patch+json, application/strategic-merge-patch+json or \
                 application/apply-patch+yaml"
            ),
        }),
    }
}

/// The longest `fieldManager` Kubernetes takes.
const MAX_FIELD_MANAGER: usize = 128;

/// Who writes: `fieldManager`, else the client's User-Agent up to its first `/` (`kubectl`
/// of `kubectl/v1.32.0 (linux/amd64)`), as kube-apiserver names managers.
pub fn field_manager(query: &Query, user_agent: &str) -> Result<Option<String>, ApiError> {
    if let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) {
        if manager.len() > MAX_FIELD_MANAGER {
            return Err(ApiError::bad_field(
                "fieldManager",
                format!(
                    "fieldManager is {} bytes long: at most {MAX_FIELD_MANAGER}",
                    manager.len()
                ),
            ));
        }
        if manager.chars().any(|c| c.is_control()) {
            return Err(ApiError::bad_field(
                "fieldManager",
                "fieldManager may only hold printable characters",
            ));
        }
        return Ok(Some(manager.clone()));
    }
    let prefix = user_agent.split('/').next().unwrap_or("").trim();
    Ok((!prefix.is_empty()).then(|| prefix.chars().take(MAX_FIELD_MANAGER).collect()))
}

/// `force`: an apply's taking of fields others own; any other write refuses it.
pub fn force(query: &Query, kind: Option<PatchKind>) -> Result<bool, ApiError> {
    match query.get("force").map(String::as_str) {
        None | Some("" | "false") => Ok(false),
        Some("true") if kind == Some(PatchKind::Apply) => Ok(true),
        Some("true") => Err(ApiError::bad_field(
            "force",
            "force may only be given with an apply patch (application/apply-patch+yaml)",
        )),
        Some(other) => Err(ApiError::bad_field(
            "force",
            format!("force is {other:?}: use true or false"),
        )),
    }
}

/// A query from `(name, value)` pairs, for the tests of what reads queries.
#[cfg(test)]
pub fn query(pairs: &[(&str, &str)]) -> Query {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parameters_become_list_options() {
        let options = list_options(
            "ns",
            &query(&[
                ("labelSelector", "app=web"),
                ("limit", "5"),
                ("continue", "t"),
            ]),
        )
        .unwrap();
        assert_eq!(options.label_selector, "app=web");
        assert_eq!((options.limit, options.continue_token.as_str()), (5, "t"));
        assert!(list_options("", &query(&[("limit", "many")])).is_err());
        assert!(list_options("", &query(&[("resourceVersionMatch", "Newest")])).is_err());
    }

    #[test]
    fn delete_options_come_from_the_body_before_the_query() {
        let body = br#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Foreground",
                        "gracePeriodSeconds":0,"preconditions":{"uid":"u1"}}"#;
        let (options, dry_run) =
            delete_options(&query(&[("gracePeriodSeconds", "30")]), body).unwrap();
        assert_eq!(options.grace_period_seconds, Some(0));
        assert_eq!(
            options.propagation,
            Propagation::parse("Foreground").unwrap()
        );
        assert_eq!(options.precondition_uid, "u1");
        assert!(!dry_run);

        let (options, dry_run) = delete_options(
            &query(&[("gracePeriodSeconds", "5"), ("dryRun", "All")]),
            b"",
        )
        .unwrap();
        assert_eq!(options.grace_period_seconds, Some(5));
        assert!(dry_run);
        let (orphan, _) = delete_options(&query(&[]), br#"{"orphanDependents":true}"#).unwrap();
        assert_eq!(orphan.propagation, Propagation::parse("Orphan").unwrap());
        assert!(delete_options(&query(&[]), b"{not json").is_err());
    }

    #[test]
    fn patch_types_by_content_type() {
        assert_eq!(
            patch_kind("application/strategic-merge-patch+json").unwrap(),
            PatchKind::Patch(PatchType::Strategic)
        );
        assert_eq!(
            patch_kind("application/merge-patch+json; charset=utf-8").unwrap(),
            PatchKind::Patch(PatchType::Merge)
        );
        assert_eq!(
            patch_kind("application/apply-patch+yaml").unwrap(),
            PatchKind::Apply
        );
        assert!(patch_kind("text/plain").is_err());
        assert!(dry_run(&query(&[("dryRun", "Some")])).is_err());
        assert!(watch_timeout(&query(&[("timeoutSeconds", "x")])).is_err());
    }

    #[test]
    fn field_managers_come_from_the_query_or_the_user_agent() {
        let named = field_manager(&query(&[("fieldManager", "ci")]), "kubectl/v1.32").unwrap();
        assert_eq!(named.as_deref(), Some("ci"));
        let agent = field_manager(&query(&[]), "kubectl/v1.32.0 (linux/amd64)").unwrap();
        assert_eq!(agent.as_deref(), Some("kubectl"));
        assert_eq!(field_manager(&query(&[]), "").unwrap(), None);
        let long = "m".repeat(129);
        assert!(field_manager(&query(&[("fieldManager", &long)]), "").is_err());
        assert!(force(&query(&[("force", "true")]), Some(PatchKind::Apply)).unwrap());
        let refused = force(&query(&[("force", "true")]), None).unwrap_err();
        assert!(refused.to_string().contains("apply patch"), "{refused}");
        assert!(force(&query(&[("force", "yes")]), Some(PatchKind::Apply)).is_err());
    }

    #[test]
    fn a_streaming_list_takes_not_older_than_as_kube_apiserver_checks_it() {
        let streaming = [
            ("sendInitialEvents", "true"),
            ("resourceVersionMatch", "NotOlderThan"),
        ];
        let options = watch_options("ns", &query(&streaming)).unwrap();
        assert_eq!(options.send_initial_events, Some(true));
        assert!(!options.allow_bookmarks, "bookmarks are not required");
        let no_match = watch_options("ns", &query(&streaming[..1])).unwrap_err();
        assert!(no_match.to_string().contains("NotOlderThan"), "{no_match}");
        assert_eq!(no_match.reason_and_code(), ("Invalid", 422));
        let exact = watch_options(
            "ns",
            &query(&[
                ("sendInitialEvents", "false"),
                ("resourceVersionMatch", "Exact"),
            ]),
        );
        assert!(exact.is_err());
        let alone = watch_options("ns", &query(&streaming[1..])).unwrap_err();
        assert!(
            alone.to_string().contains("unless sendInitialEvents"),
            "{alone}"
        );
        let not = [
            ("sendInitialEvents", "false"),
            ("resourceVersionMatch", "NotOlderThan"),
        ];
        assert_eq!(
            watch_options("ns", &query(&not))
                .unwrap()
                .send_initial_events,
            Some(false)
        );
    }

    #[test]
    fn field_validation_is_warn_unless_asked() {
        assert_eq!(
            field_validation(&query(&[])).unwrap(),
            FieldValidation::Warn
        );
        let strict = query(&[("fieldValidation", "Strict")]);
        assert_eq!(field_validation(&strict).unwrap(), FieldValidation::Strict);
        assert!(field_validation(&query(&[("fieldValidation", "strict")])).is_err());
    }
}
