//! ServiceAccount: Kubernetes checks nothing beyond its metadata (`ValidateServiceAccount`
//! validates the name as a DNS-1123 subdomain, which [`super::super::meta`] does for every
//! kind), so the references it lists are free text that the token machinery reads.

use k8s_openapi::api::core::v1::ServiceAccount;

use super::super::{FieldError, Validate};

impl Validate for ServiceAccount {
    fn validate(&self) -> Vec<FieldError> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::from_json;
    use super::*;
    use serde_json::json;

    #[test]
    fn a_service_account_with_secrets_and_pull_secrets_is_valid() {
        let account: ServiceAccount = from_json(json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": { "name": "build-robot", "namespace": "default" },
            "automountServiceAccountToken": false,
            "secrets": [{ "name": "build-robot-token" }],
            "imagePullSecrets": [{ "name": "registry-key" }]
        }));
        assert_eq!(account.validate(), vec![]);
        assert_eq!(account.validate_update(&account.clone()), vec![]);
    }
}
