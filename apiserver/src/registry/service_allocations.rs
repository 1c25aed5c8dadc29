//! The shell of [`crate::allocation`]: a Service's cluster IP, node ports and load-balancer
//! address are decided when it is written, and held by reservation keys written in the same
//! transaction as the Service. Each new value's key must be absent for the transaction to
//! commit, so two concurrent creates never hold one value (the loser decides again); a
//! deleted Service's keys go with it.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Service;
use rand::Rng;
use rudder_raftstore::kv::{Compare, KeyRange, RangeRequest};
use serde_json::{json, Value};

use super::{absent, Registry, Write};
use crate::allocation::{assign, claimed, held, Reservation, RESERVATIONS_PREFIX};
use crate::error::ApiError;
use crate::kinds::KindInfo;
use crate::object;

/// The compares and writes that make a Service's write hold exactly its values.
#[derive(Default)]
pub(crate) struct Holding {
    pub compares: Vec<Compare>,
    pub writes: Vec<(Vec<u8>, Write)>,
}

impl Registry {
    /// For a Service about to be written in place of `old` (`None`: a create): fills in what
    /// it needs from the pools (refusing values asked for that are taken or out of range),
    /// and returns what its transaction must also compare and write. Nothing for other kinds.
    pub(crate) async fn allocate(
        &self,
        info: &KindInfo,
        old: Option<&Value>,
        next: &mut Value,
    ) -> Result<Holding, ApiError> {
        if info.kind != "Service" {
            return Ok(Holding::default());
        }
        let ranges = &self.service_ranges;
        let mut service: Service = serde_json::from_value(next.clone())
            .map_err(|e| ApiError::internal(format!("an admitted Service does not decode: {e}")))?;
        let own = old.map(claimed_by).unwrap_or_default();
        let taken = self.reservations().await?;
        let mut rng = rand::rng();
        assign(&mut service, &own, &taken, ranges, &mut |n| {
            rng.random_range(0..n)
        })
        .map_err(|causes| ApiError::Invalid {
            kind: info.qualified_kind(),
            name: object::name(next).to_string(),
            causes,
        })?;
        *next = serde_json::to_value(&service)
            .map_err(|e| ApiError::internal(format!("encoding a Service: {e}")))?;
        let wanted = held(&service, ranges);
        let holder = serde_json::to_vec(&json!({
            "namespace": object::namespace(next),
            "name": object::name(next),
            "uid": next["metadata"]["uid"],
        }))
        .expect("JSON encodes");
        let mut holding = Holding::default();
        // A value held already keeps its key; a new one (or one whose key is missing: a
        // Service stored before allocation kept keys) gets its key if it is still absent.
        for reservation in &wanted {
            if own.contains(reservation) && taken.contains(reservation) {
                continue;
            }
            let key = reservation.key();
            holding.compares.push(absent(&key));
            holding.writes.push((key, Write::Put(holder.clone())));
        }
        // Whatever it no longer claims is released, in the ranges or not.
        for reservation in own.difference(&claimed(&service)) {
            holding.writes.push((reservation.key(), Write::Delete));
        }
        Ok(holding)
    }

    /// The reservation keys to delete with a Service that goes (nothing for other kinds).
    pub(crate) fn releases(&self, info: &KindInfo, gone: &Value) -> Vec<(Vec<u8>, Write)> {
        if info.kind != "Service" {
            return Vec::new();
        }
        claimed_by(gone)
            .into_iter()
            .map(|reservation| (reservation.key(), Write::Delete))
            .collect()
    }

    /// Every value of every pool held now.
    async fn reservations(&self) -> Result<BTreeSet<Reservation>, ApiError> {
        let (_, response) = self
            .range(RangeRequest {
                range: KeyRange::prefix(RESERVATIONS_PREFIX.as_bytes().to_vec()),
                keys_only: true,
                ..Default::default()
            })
            .await?;
        Ok(response
            .kvs
            .iter()
            .filter_map(|kv| Reservation::from_key(&kv.key))
            .collect())
    }
}

fn claimed_by(service: &Value) -> BTreeSet<Reservation> {
    serde_json::from_value::<Service>(service.clone())
        .map(|service| claimed(&service))
        .unwrap_or_default()
}
