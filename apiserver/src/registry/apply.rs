//! Server-side apply (`application/apply-patch+yaml`): a manager's configuration merged into
//! the live object by [`field_ownership::apply`], or the object created from it when there is
//! none. Either way the write is the ordinary update's or create's, with every check of
//! theirs.

use serde_json::Value;

use super::create::Kept;
use super::transform::{candidate, named, namespace_for, Part};
use super::{body, contended, object_ref, Registry, Resolved, Target, WriteOptions};
use crate::error::ApiError;
use crate::field_ownership::{self, Applier};
use crate::kinds::FieldValidation;
use crate::object;
use crate::validation::FieldError;

impl Registry {
    /// Applies the configuration in `body` as `options.field_manager` (required). `force`
    /// takes fields other managers own instead of failing with the conflicts. The object,
    /// and whether the apply created it.
    pub async fn apply(
        &self,
        target: &Target<'_>,
        body: &[u8],
        force: bool,
        options: &WriteOptions,
    ) -> Result<(Value, bool), ApiError> {
        let Some(manager) = options.field_manager.as_deref().filter(|m| !m.is_empty()) else {
            return Err(ApiError::Invalid {
                kind: "PatchOptions.meta.k8s.io".into(),
                name: String::new(),
                causes: vec![FieldError::required(
                    "fieldManager",
                    "is required for apply patch: name who applies \
                     (kubectl apply --server-side --field-manager=NAME)",
                )],
            });
        };
        // A field the kind lacks cannot be owned: an apply always validates strictly, as
        // Kubernetes refuses fields its schema does not declare in an apply.
        let options = &WriteOptions {
            field_validation: FieldValidation::Strict,
            ..options.clone()
        };
        let mut config = body::parse(body, self.max_object_bytes)?;
        if config["apiVersion"].as_str().unwrap_or("").is_empty()
            || config["kind"].as_str().unwrap_or("").is_empty()
        {
            return Err(ApiError::bad_request(
                "an apply configuration must say its apiVersion and kind",
            ));
        }
        let info = body::kind_of(target.resource, &mut config)?;
        let namespace = namespace_for(info, target.namespace, &config)?;
        let mut config = named(config, target.name)?;
        // Status is its writers', not an applier's: Kubernetes resets it in an apply.
        if let Some(map) = config.as_object_mut() {
            map.remove("status");
        }
        let at = Resolved {
            info,
            namespace: &namespace,
            name: target.name,
        };
        // Absent, then created meanwhile: apply once more to what was created.
        for _ in 0..2 {
            let now = object::timestamp(jiff::Timestamp::now());
            let applier = Applier {
                manager,
                api_version: info.api_version,
                force,
                now: &now,
            };
            let updated = self
                .modify(&at, None, options, |current| match field_ownership::apply(
                    info.kind,
                    Some(current),
                    &config,
                    &applier,
                )? {
                    Ok(object) => candidate(info, Part::Object, current, &object),
                    Err(conflicts) => Err(ApiError::ApplyConflict {
                        object: object_ref(info, target.name),
                        conflicts,
                    }),
                })
                .await;
            match updated {
                Err(ApiError::NotFound { .. }) => {}
                other => return other.map(|object| (object, false)),
            }
            let object = match field_ownership::apply(info.kind, None, &config, &applier)? {
                Ok(object) => object,
                Err(_) => return Err(ApiError::internal("conflicts on an object not yet made")),
            };
            let created = self
                .create_object(info, &namespace, object, Kept::ManagedFields, options)
                .await;
            match created {
                Err(ApiError::AlreadyExists { .. }) => continue,
                other => return other.map(|object| (object, true)),
            }
        }
        Err(contended(info, target.name))
    }
}
