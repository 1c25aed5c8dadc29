//! Asking the authorizer (`authorization.k8s.io/v1`), as `kubectl auth can-i` and
//! `rudder auth can-i` do: a SelfSubjectAccessReview asks for the caller, a
//! SubjectAccessReview for any user and groups (for whoever may create them: `admin`
//! and up), a LocalSubjectAccessReview for any user within one namespace. Nothing is
//! stored: the review comes back with its `status` (`allowed`, and the reason).

use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReviewStatus,
};
use rudder_proto::authn::Caller;
use serde_json::Value;

use super::rbac::{Action, ResourceAction, User};
use super::Authorizer;
use crate::error::ApiError;
use crate::validation::FieldError;

/// The group the reviews are served in.
pub const REVIEW_GROUP: &str = "authorization.k8s.io";

/// The review resources, and the kind each is.
pub const REVIEWS: [(&str, &str); 3] = [
    ("selfsubjectaccessreviews", "SelfSubjectAccessReview"),
    ("subjectaccessreviews", "SubjectAccessReview"),
    ("localsubjectaccessreviews", "LocalSubjectAccessReview"),
];

/// Whether `resource` is a review resource.
pub fn is_review(resource: &str) -> bool {
    REVIEWS.iter().any(|(name, _)| *name == resource)
}

/// The review resource and namespace an HTTP path names:
/// `/apis/authorization.k8s.io/v1/selfsubjectaccessreviews`,
/// `/apis/authorization.k8s.io/v1/namespaces/NS/localsubjectaccessreviews`.
pub fn at_path(path: &str) -> Option<(&'static str, String)> {
    let rest = path
        .trim_end_matches('/')
        .strip_prefix("/apis/authorization.k8s.io/v1/")?;
    let (namespace, resource) = match rest.split('/').collect::<Vec<_>>().as_slice() {
        [resource] => (String::new(), *resource),
        ["namespaces", namespace, resource] => (namespace.to_string(), *resource),
        _ => return None,
    };
    let (resource, _) = REVIEWS.iter().find(|(name, _)| *name == resource)?;
    let local = *resource == "localsubjectaccessreviews";
    (local != namespace.is_empty()).then_some((resource, namespace))
}

/// The spec of any of the three reviews (a self review has no user).
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Spec {
    resource_attributes: Option<ResourceAttributes>,
    non_resource_attributes: Option<NonResourceAttributes>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    groups: Option<Vec<String>>,
}

/// Answers a review of `resource` (in `namespace`, for a local one) sent by `caller`:
/// the review with its status.
pub async fn review(
    authorizer: &Authorizer,
    caller: Option<&Caller>,
    resource: &str,
    namespace: &str,
    mut review: Value,
) -> Result<Value, ApiError> {
    let (_, kind) = REVIEWS
        .iter()
        .find(|(name, _)| *name == resource)
        .ok_or_else(|| ApiError::bad_request(format!("{resource} is not a review")))?;
    // Written into below: anything but an object is refused first.
    if !review.is_object() {
        return Err(ApiError::bad_request(format!(
            "the body must be a {kind} object (apiVersion, kind, spec)"
        )));
    }
    let invalid = |cause: FieldError| ApiError::Invalid {
        kind: format!("{kind}.{REVIEW_GROUP}"),
        name: String::new(),
        causes: vec![cause],
    };
    let spec: Spec = serde_json::from_value(review["spec"].clone())
        .map_err(|error| invalid(FieldError::invalid("spec", "", error.to_string())))?;
    let action = match (&spec.resource_attributes, &spec.non_resource_attributes) {
        (Some(attributes), None) => Action::Resource(ResourceAction {
            verb: attributes.verb.clone().unwrap_or_default(),
            group: attributes.group.clone().unwrap_or_default(),
            resource: attributes.resource.clone().unwrap_or_default(),
            subresource: attributes.subresource.clone().unwrap_or_default(),
            namespace: attributes.namespace.clone().unwrap_or_default(),
            name: attributes.name.clone().unwrap_or_default(),
        }),
        (None, Some(attributes)) if resource != "localsubjectaccessreviews" => Action::Path {
            verb: attributes.verb.clone().unwrap_or_default(),
            path: attributes.path.clone().unwrap_or_default(),
        },
        _ => {
            return Err(invalid(FieldError::invalid(
                "spec.resourceAttributes",
                "",
                if resource == "localsubjectaccessreviews" {
                    "resourceAttributes must be specified (and nonResourceAttributes not)"
                } else {
                    "exactly one of nonResourceAttributes or resourceAttributes must be specified"
                },
            )))
        }
    };
    if let Action::Resource(attributes) = &action {
        if resource == "localsubjectaccessreviews" && attributes.namespace != namespace {
            return Err(invalid(FieldError::invalid(
                "spec.resourceAttributes.namespace",
                &attributes.namespace,
                "must match metadata.namespace",
            )));
        }
    }
    let decision = if resource == "selfsubjectaccessreviews" {
        authorizer.decide(caller, &action).await?
    } else {
        let user = User {
            name: spec.user.unwrap_or_default(),
            groups: spec.groups.unwrap_or_default(),
        };
        if user.name.is_empty() && user.groups.is_empty() {
            return Err(invalid(FieldError::invalid(
                "spec.user",
                "",
                "at least one of user or group must be specified",
            )));
        }
        authorizer.decide_for(&user, &action).await?
    };
    let status = SubjectAccessReviewStatus {
        allowed: decision.allowed,
        reason: (!decision.reason.is_empty()).then_some(decision.reason),
        ..SubjectAccessReviewStatus::default()
    };
    review["status"] = serde_json::to_value(status)
        .map_err(|error| ApiError::internal(format!("encoding a review's status: {error}")))?;
    if !review["metadata"].is_object() {
        review["metadata"] = Value::Object(Default::default());
    }
    Ok(review)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_paths_name_their_resource_and_a_local_one_its_namespace() {
        assert_eq!(
            at_path("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"),
            Some(("selfsubjectaccessreviews", String::new()))
        );
        assert_eq!(
            at_path("/apis/authorization.k8s.io/v1/namespaces/team/localsubjectaccessreviews"),
            Some(("localsubjectaccessreviews", "team".into()))
        );
        assert_eq!(
            at_path("/apis/authorization.k8s.io/v1/localsubjectaccessreviews"),
            None
        );
        assert_eq!(
            at_path("/apis/authorization.k8s.io/v1/namespaces/team/subjectaccessreviews"),
            None
        );
        assert_eq!(at_path("/api/v1/pods"), None);
    }

    #[tokio::test]
    async fn a_review_of_another_user_says_what_the_policy_says_and_bad_ones_are_named() {
        let authorizer = Authorizer::new();
        authorizer.cache.change(|policy| {
            *policy = super::super::rbac::Policy::of(
                super::super::defaults::cluster_roles()
                    .into_iter()
                    .map(super::super::rbac::RbacObject::ClusterRole),
            )
        });
        authorizer.cache.mark_loaded();
        let asked = |user: &str, groups: Vec<&str>| {
            serde_json::json!({
                "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": { "user": user, "groups": groups,
                          "resourceAttributes": { "verb": "delete", "resource": "nodes", "name": "n1" } } })
        };
        let jane = review(
            &authorizer,
            None,
            "subjectaccessreviews",
            "",
            asked("jane", vec![]),
        )
        .await
        .unwrap();
        assert_eq!(jane["status"]["allowed"], false);
        let master = review(
            &authorizer,
            None,
            "subjectaccessreviews",
            "",
            asked("root", vec!["system:masters"]),
        )
        .await
        .unwrap();
        assert_eq!(master["status"]["allowed"], true);
        let nobody = review(
            &authorizer,
            None,
            "subjectaccessreviews",
            "",
            asked("", vec![]),
        )
        .await
        .unwrap_err();
        assert!(
            nobody.to_string().contains("at least one of user or group"),
            "{nobody}"
        );
        let both = serde_json::json!({ "spec": { "user": "jane",
            "resourceAttributes": { "verb": "get" }, "nonResourceAttributes": { "path": "/" } } });
        let error = review(&authorizer, None, "subjectaccessreviews", "", both)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("exactly one of"), "{error}");
        let not_an_object = review(
            &authorizer,
            None,
            "subjectaccessreviews",
            "",
            serde_json::json!([1]),
        )
        .await
        .unwrap_err();
        assert!(not_an_object
            .to_string()
            .contains("must be a SubjectAccessReview object"));
    }
}
