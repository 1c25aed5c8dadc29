//! Update, update-status, finalize and patch: each reads the current object, builds its
//! replacement (pure, in `transform`), and writes it in a compare-and-swap on the revision it
//! read ([`Registry::modify`]).

use rudder_raftstore::kv::Revision;
use serde_json::Value;

use super::service_allocations::Holding;
use super::transform::{
    candidate, completes_deletion, named, namespace_for, patched, request_namespace,
    resource_version_of, revise, Part, PatchType,
};
use super::{
    body, contended, landed, stale, unchanged, Committed, Registry, Resolved, Target, Write,
    WriteOptions, MAX_ATTEMPTS,
};
use crate::error::ApiError;
use crate::field_ownership;
use crate::kinds::KindInfo;
use crate::object;

impl Registry {
    /// Replaces an object. With a resourceVersion in the body this is compare-and-swap: a
    /// stale one is a conflict. `status` must be left out or unchanged (see `update_status`).
    pub async fn update(
        &self,
        target: &Target<'_>,
        body: &[u8],
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.replace(target, body, Part::Object, options).await
    }

    /// Replaces only the object's `status`.
    pub async fn update_status(
        &self,
        target: &Target<'_>,
        body: &[u8],
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.replace(target, body, Part::Status, options).await
    }

    /// Replaces the object (`Part::Object`: `update`), only its status (`update_status`) or
    /// only a namespace's finalizers (`Part::Finalize`: the finalize subresource; a
    /// terminating namespace left without finalizers is deleted).
    pub async fn replace(
        &self,
        target: &Target<'_>,
        body: &[u8],
        part: Part,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut object = body::parse(body, self.max_object_bytes)?;
        let info = body::kind_of(target.resource, &mut object)?;
        let namespace = namespace_for(info, target.namespace, &object)?;
        let object = named(object, target.name)?;
        let wanted = resource_version_of(&object)?;
        if info.kind == "PriorityClass" {
            self.admit_global_default(info, &object).await?;
        }
        let at = Resolved {
            info,
            namespace: &namespace,
            name: target.name,
        };
        self.modify(&at, wanted, options, |current| {
            let next = candidate(info, part, current, &object)?;
            Ok(tracked(info, current, next, options))
        })
        .await
    }

    /// Applies an RFC 7386 JSON merge patch to the object (or to its status).
    pub async fn patch(
        &self,
        target: &Target<'_>,
        patch: &[u8],
        part: Part,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.patch_as(PatchType::Merge, target, patch, part, options)
            .await
    }

    /// Applies a patch of any of the [`PatchType`]s Kubernetes serves to the object (or
    /// to its status). A resourceVersion in a merge or strategic patch makes it a
    /// compare-and-swap, as for an update; a JSON patch may `test` it instead.
    pub async fn patch_as(
        &self,
        patch_type: PatchType,
        target: &Target<'_>,
        patch: &[u8],
        part: Part,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let info = self.kind(target.resource)?;
        let patch = match patch_type {
            PatchType::Json => body::parse_json_patch(patch, self.max_object_bytes)?,
            PatchType::Merge | PatchType::Strategic => body::parse(patch, self.max_object_bytes)?,
        };
        let namespace = request_namespace(info, target.namespace);
        let wanted = match patch_type {
            PatchType::Json => None,
            PatchType::Merge | PatchType::Strategic => resource_version_of(&patch)?,
        };
        if info.kind == "PriorityClass" {
            // What the patch makes of globalDefault (a JSON patch says it by operations).
            let global_default = match patch_type {
                PatchType::Json => {
                    let current = self.get(target).await?;
                    patched(patch_type, info.kind, &current, &patch)?["globalDefault"].clone()
                }
                PatchType::Merge | PatchType::Strategic => patch["globalDefault"].clone(),
            };
            let marked = serde_json::json!({ "metadata": { "name": target.name },
                                             "globalDefault": global_default });
            self.admit_global_default(info, &marked).await?;
        }
        let at = Resolved {
            info,
            namespace: &namespace,
            name: target.name,
        };
        self.modify(&at, wanted, options, |current| {
            let patched = patched(patch_type, info.kind, current, &patch)?;
            let next = candidate(info, part, current, &patched)?;
            Ok(tracked(info, current, next, options))
        })
        .await
    }

    /// Reads the current object, builds its replacement with `make`, and writes it if the
    /// object has not changed meanwhile. `wanted` is the caller's resourceVersion, if any.
    pub(crate) async fn modify(
        &self,
        at: &Resolved<'_>,
        wanted: Option<Revision>,
        options: &WriteOptions,
        make: impl Fn(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let key = at.key();
        for attempt in 0..MAX_ATTEMPTS {
            let Some((kv, sealed_stale)) = self.read_checking_seal(&key).await? else {
                // An earlier attempt of this request may have completed a deletion.
                if let Some(revision) = self.earlier_attempt().await? {
                    if let Some(before) = self.read_at(&key, revision - 1).await? {
                        return Ok(before);
                    }
                }
                return Err(at.not_found());
            };
            // A planted bug for the chaos runner (`rudder chaos run --plant
            // update-ignores-resource-version`): the caller's resourceVersion not compared.
            let ignored = || {
                rudder_proto::failpoints::eval("update-ignores-resource-version", |_| ()).is_some()
            };
            if let Some(wanted) = wanted.filter(|_| !ignored()) {
                if wanted != kv.mod_revision {
                    if let Some(done) = self.as_earlier_attempt_left(&key).await? {
                        return Ok(done);
                    }
                    return Err(stale(at.info, at.name));
                }
            }
            let current = object::decode(&kv)?;
            let mut next = match revise(at.info, &current, make(&current)?, options)? {
                Some(next) => next,
                // Unchanged, but sealed by a key that no longer seals (or in clear): written
                // again, so a rotation's old key can go (`rudder encryption-keys reencrypt`).
                None if sealed_stale => current.clone(),
                None => return Ok(current),
            };
            // The last finalizer of an object being deleted is gone: the deletion completes.
            let completes_deletion = completes_deletion(at.info, &next);
            let holding = if completes_deletion {
                Holding {
                    writes: self.releases(at.info, &current),
                    ..Holding::default()
                }
            } else {
                self.allocate(at.info, Some(&current), &mut next).await?
            };
            let body = body::encode(&next, self.max_object_bytes)?;
            let mut compares = vec![unchanged(&key, kv.mod_revision)];
            compares.extend(holding.compares);
            compares.extend(
                self.fence_holds(options.fence.as_ref(), attempt > 0)
                    .await?,
            );
            if options.dry_run {
                return Ok(next);
            }
            let write = if completes_deletion {
                Write::Delete
            } else {
                self.put(at.info, body).await?
            };
            let committed = self
                .commit_with(&key, compares, write, holding.writes)
                .await?;
            if let Committed::At { revision, replayed } = landed(options.fence.as_ref(), committed)
            {
                if replayed && !completes_deletion {
                    // What the earlier attempt wrote, not what this one computed.
                    if let Some(written) = self.read_at(&key, revision).await? {
                        return Ok(written);
                    }
                }
                // A completed deletion's dependents are the garbage collector's (it sees the
                // owner gone), so an interrupted request leaves nothing half done.
                object::set_resource_version(&mut next, revision);
                return Ok(next);
            }
        }
        Err(contended(at.info, at.name))
    }
}

/// `next` with the managed fields of `current` moved to the writer where it changed them
/// (objects without managed fields stay without).
fn tracked(info: &KindInfo, current: &Value, next: Value, options: &WriteOptions) -> Value {
    field_ownership::track_update(
        info.kind,
        current,
        next,
        options.field_manager(),
        info.api_version,
        &object::timestamp(jiff::Timestamp::now()),
    )
}
