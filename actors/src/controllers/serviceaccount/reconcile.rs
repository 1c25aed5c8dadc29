//! Which ServiceAccounts one namespace lacks, pure: the namespace (as the cache has it, or
//! `None` when it is gone) and its accounts in, the creates out.
//!
//! Kubernetes creates only in an `Active` namespace: a namespace being emptied would refuse
//! the create anyway, and the account would only be deleted again. A cache that lags behind
//! our own create asks for the account twice; the second create answers AlreadyExists, which
//! the actor counts as done, so no expectations are needed.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use serde_json::{json, Value};

/// The accounts every active namespace has (kube-controller-manager ensures only `default`).
pub const ENSURED: &[&str] = &["default"];

/// One step toward the namespace's accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the account `name` in `namespace`.
    Create { namespace: String, name: String },
}

impl Action {
    /// The object to create.
    pub fn body(&self) -> Value {
        let Action::Create { namespace, name } = self;
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": { "name": name, "namespace": namespace },
        })
    }
}

/// Whether new content may be created in `namespace`: its phase is `Active` and it is not
/// being deleted (a deletion the cache shows before the phase changes counts too).
pub fn is_active(namespace: &Namespace) -> bool {
    namespace.metadata.deletion_timestamp.is_none()
        && namespace.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Active")
}

/// The creates that give `namespace` every account in `ensured`. `accounts` are the cached
/// accounts of that namespace (others are ignored); one being deleted still counts as there
/// until it is gone, when its deletion brings the namespace back here.
pub fn reconcile(
    namespace: Option<&Namespace>,
    accounts: &[Arc<ServiceAccount>],
    ensured: &[&str],
) -> Vec<Action> {
    let Some(namespace) = namespace.filter(|n| is_active(n)) else {
        return Vec::new();
    };
    let Some(name) = namespace.metadata.name.as_deref().filter(|n| !n.is_empty()) else {
        return Vec::new();
    };
    let exists = |wanted: &str| {
        accounts.iter().any(|account| {
            account.metadata.namespace.as_deref() == Some(name)
                && account.metadata.name.as_deref() == Some(wanted)
        })
    };
    ensured
        .iter()
        .filter(|wanted| !exists(wanted))
        .map(|wanted| Action::Create {
            namespace: name.to_string(),
            name: (*wanted).to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(name: &str, phase: Option<&str>, deleting: bool) -> Namespace {
        let mut namespace: Namespace = serde_json::from_value(json!({
            "metadata": { "name": name },
            "status": { "phase": phase },
        }))
        .expect("a namespace");
        if deleting {
            namespace.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    jiff::Timestamp::from_second(1_700_000_000).expect("a time"),
                ));
        }
        namespace
    }

    fn account(namespace: &str, name: &str) -> Arc<ServiceAccount> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": { "name": name, "namespace": namespace },
            }))
            .expect("an account"),
        )
    }

    fn create(namespace: &str) -> Action {
        Action::Create {
            namespace: namespace.into(),
            name: "default".into(),
        }
    }

    #[test]
    fn each_case_creates_default_only_where_kubernetes_would() {
        let team = namespace("team", Some("Active"), false);
        let terminating = namespace("team", Some("Terminating"), true);
        let marked_not_yet_terminating = namespace("team", Some("Active"), true);
        let without_phase = namespace("team", None, false);
        /// (what, the namespace, its accounts, the actions wanted)
        type Case<'a> = (
            &'a str,
            Option<&'a Namespace>,
            Vec<Arc<ServiceAccount>>,
            Vec<Action>,
        );
        let cases: Vec<Case> = vec![
            ("a new namespace", Some(&team), vec![], vec![create("team")]),
            (
                "default already there",
                Some(&team),
                vec![account("team", "default")],
                vec![],
            ),
            (
                "only other accounts",
                Some(&team),
                vec![account("team", "builder")],
                vec![create("team")],
            ),
            (
                "default of another namespace",
                Some(&team),
                vec![account("other", "default")],
                vec![create("team")],
            ),
            (
                "a terminating namespace",
                Some(&terminating),
                vec![],
                vec![],
            ),
            (
                "deleted, phase not yet changed",
                Some(&marked_not_yet_terminating),
                vec![],
                vec![],
            ),
            ("no phase yet", Some(&without_phase), vec![], vec![]),
            ("the namespace is gone", None, vec![], vec![]),
        ];
        for (case, namespace, accounts, expected) in cases {
            assert_eq!(reconcile(namespace, &accounts, ENSURED), expected, "{case}");
        }
    }

    #[test]
    fn an_account_being_deleted_counts_until_it_is_gone() {
        let team = namespace("team", Some("Active"), false);
        let mut going = ServiceAccount::clone(&account("team", "default"));
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::from_second(1_700_000_000).expect("a time"),
            ));
        assert_eq!(reconcile(Some(&team), &[Arc::new(going)], ENSURED), vec![]);
        assert_eq!(reconcile(Some(&team), &[], ENSURED), vec![create("team")]);
    }

    #[test]
    fn every_ensured_account_is_created() {
        let team = namespace("team", Some("Active"), false);
        let actions = reconcile(
            Some(&team),
            &[account("team", "default")],
            &["default", "builder"],
        );
        assert_eq!(
            actions,
            vec![Action::Create {
                namespace: "team".into(),
                name: "builder".into()
            }]
        );
    }

    #[test]
    fn the_body_is_a_plain_service_account_in_its_namespace() {
        assert_eq!(
            create("team").body(),
            json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": { "name": "default", "namespace": "team" },
            })
        );
    }
}
