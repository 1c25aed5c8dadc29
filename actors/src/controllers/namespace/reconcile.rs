//! What the namespace controller does about one namespace (pure): nothing while it is
//! active; while it terminates, delete what is in it, and once nothing is left, remove its
//! `kubernetes` finalizer (the finalize subresource), which removes it; a namespace that
//! never had the finalizer is deleted again instead.

use k8s_openapi::api::core::v1::Namespace;
use rudder_proto::objects::deletion::NAMESPACE_CONTENTS;

/// The next step for one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not terminating: nothing to do.
    Nothing,
    /// Delete the contents (`remaining` objects were found), then look again.
    Empty { remaining: usize },
    /// Empty: replace `spec.finalizers` with `keep` (without `kubernetes`).
    Finalize { keep: Vec<String> },
    /// Empty and without the finalizer: delete the namespace itself.
    Delete,
}

/// Decides for `namespace` given how many objects are still in it.
pub fn reconcile(namespace: &Namespace, remaining: usize) -> Step {
    if namespace.metadata.deletion_timestamp.is_none() {
        return Step::Nothing;
    }
    if remaining > 0 {
        return Step::Empty { remaining };
    }
    let finalizers = namespace
        .spec
        .as_ref()
        .and_then(|spec| spec.finalizers.clone())
        .unwrap_or_default();
    if finalizers.iter().any(|f| f == NAMESPACE_CONTENTS) {
        Step::Finalize {
            keep: finalizers
                .into_iter()
                .filter(|f| f != NAMESPACE_CONTENTS)
                .collect(),
        }
    } else {
        Step::Delete
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::NamespaceSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn namespace(terminating: bool, finalizers: &[&str]) -> Namespace {
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some("team".into());
        if terminating {
            namespace.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        }
        namespace.spec = Some(NamespaceSpec {
            finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
        });
        namespace
    }

    #[test]
    fn an_active_namespace_is_left_alone_whatever_it_holds() {
        assert_eq!(
            reconcile(&namespace(false, &["kubernetes"]), 3),
            Step::Nothing
        );
    }

    #[test]
    fn a_terminating_namespace_is_emptied_then_finalized() {
        let going = namespace(true, &["kubernetes", "example.com/audit"]);
        assert_eq!(reconcile(&going, 2), Step::Empty { remaining: 2 });
        assert_eq!(
            reconcile(&going, 0),
            Step::Finalize {
                keep: vec!["example.com/audit".into()]
            }
        );
    }

    #[test]
    fn an_empty_terminating_namespace_without_the_finalizer_is_deleted_again() {
        assert_eq!(reconcile(&namespace(true, &[]), 0), Step::Delete);
    }
}
