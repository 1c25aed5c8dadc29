//! Create: a new object, written only while its key is free, its namespace open and the
//! writer's fence held. A new pod first goes through the Priority admission (`priority`), a
//! new claim through the DefaultStorageClass admission (`storage_class`).

use rudder_raftstore::kv::Compare;
use serde_json::Value;

use super::transform::{fold_string_data, namespace_for, prepare_for_create, Stamp};
use super::{
    absent, body, contended, landed, object_ref, unchanged, Committed, Registry, Resolved,
    WriteOptions, MAX_ATTEMPTS,
};
use crate::error::ApiError;
use crate::kinds::KindInfo;
use crate::object;

/// What of the metadata a client sends a create keeps, beyond what any create keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kept {
    /// The server's own: a client's `managedFields` are dropped.
    Nothing,
    /// The managed fields server-side apply made for the new object.
    ManagedFields,
}

impl Registry {
    /// Creates the object in `body` in `namespace` (the body's namespace, if any, must agree).
    /// `resource` may be empty when the body says its apiVersion and kind.
    pub async fn create(
        &self,
        resource: &str,
        namespace: &str,
        body: &[u8],
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut object = body::parse(body, self.max_object_bytes)?;
        let info = body::kind_of(resource, &mut object)?;
        let namespace = namespace_for(info, namespace, &object)?;
        self.create_object(info, &namespace, object, Kept::Nothing, options)
            .await
    }

    /// Creates `object`, of the kind `info`, in `namespace` (settled by the caller).
    pub(crate) async fn create_object(
        &self,
        info: &'static KindInfo,
        namespace: &str,
        mut object: Value,
        kept: Kept,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let managed_fields = object
            .pointer_mut("/metadata/managedFields")
            .map(Value::take);
        prepare_for_create(info, &mut object, namespace, &stamp());
        if let (Kept::ManagedFields, Some(managed_fields)) = (kept, managed_fields) {
            object["metadata"]["managedFields"] = managed_fields;
        }
        fold_string_data(info, &mut object);
        if info.kind == "Pod" {
            self.admit_service_account(namespace, &mut object).await?;
        }
        let mut object =
            info.admit_with(object, None, options.field_validation, &options.warnings)?;
        crate::authz::admit_write(info, &object, None)?;
        if info.kind == "Pod" {
            self.admit_priority(info, &mut object).await?;
        }
        if info.kind == "PersistentVolumeClaim" {
            self.admit_storage_class(&mut object).await?;
        }
        if info.kind == "PriorityClass" {
            self.admit_global_default(info, &object).await?;
        }
        let admitted = object;
        let name = object::name(&admitted).to_string();
        let at = Resolved {
            info,
            namespace,
            name: &name,
        };
        let key = at.key();
        for attempt in 0..MAX_ATTEMPTS {
            let mut object = admitted.clone();
            // Decided again on each attempt: a lost compare may mean a value was taken.
            let holding = self.allocate(info, None, &mut object).await?;
            let body = body::encode(&object, self.max_object_bytes)?;
            let mut compares = vec![absent(&key)];
            compares.extend(holding.compares);
            if info.namespaced {
                compares.push(self.namespace_is_open(&at).await?);
            }
            compares.extend(
                self.fence_holds(options.fence.as_ref(), attempt > 0)
                    .await?,
            );
            if options.dry_run {
                return Ok(object);
            }
            let write = self.put(info, body).await?;
            let committed = self
                .commit_with(&key, compares, write, holding.writes)
                .await?;
            match landed(options.fence.as_ref(), committed) {
                Committed::At {
                    revision,
                    replayed: false,
                } => {
                    let mut created = object;
                    object::set_resource_version(&mut created, revision);
                    return Ok(created);
                }
                // A retry of a create that was applied: answer with what it created (its
                // uid and timestamp, not this attempt's).
                Committed::At {
                    revision,
                    replayed: true,
                } => {
                    return self
                        .read_at(&key, revision)
                        .await?
                        .ok_or_else(|| at.not_found())
                }
                Committed::Lost(Some(_)) => {
                    return Err(ApiError::AlreadyExists {
                        object: object_ref(info, &name),
                    })
                }
                // The namespace or the lease changed under us: decide again.
                Committed::Lost(None) => continue,
            }
        }
        Err(contended(info, &name))
    }

    /// A compare that holds while the namespace of the object `at` names exists and is not
    /// terminating; a terminating one refuses the create as Kubernetes' NamespaceLifecycle
    /// admission does (`Forbidden` with the `NamespaceTerminating` cause).
    async fn namespace_is_open(&self, at: &Resolved<'_>) -> Result<Compare, ApiError> {
        let namespaces = self.kind("namespaces")?;
        let name = at.namespace;
        let key = object::key(namespaces, "", name);
        let Some(kv) = self.read(&key).await? else {
            return Err(ApiError::NotFound {
                object: object_ref(namespaces, name),
            });
        };
        let namespace = object::decode(&kv)?;
        if object::is_being_deleted(&namespace) || namespace["status"]["phase"] == "Terminating" {
            return Err(ApiError::NamespaceTerminating {
                object: object_ref(at.info, at.name),
                namespace: name.to_string(),
            });
        }
        Ok(unchanged(&key, kv.mod_revision))
    }
}

/// The clock and randomness a new object takes (read here, once, so the transform is pure).
fn stamp() -> Stamp {
    let mut name_suffix = [0; 5];
    name_suffix.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..5]);
    Stamp {
        now: jiff::Timestamp::now(),
        uid: uuid::Uuid::new_v4().to_string(),
        name_suffix,
    }
}
