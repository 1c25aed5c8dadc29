//! Lease calls of [`Store`]: grant and revoke go through the log (tagged like every
//! write); keep-alive and time-to-live are answered by the leader's lease clock
//! (`crate::lease`), which also expires leases through the log.

use std::time::Instant;

use super::{Attempt, Header, LeaderAnswer, Store, StoreError};
use crate::error::KvError;
use crate::kv::{Command, CommandResult, Lease, LeaseId, LeaseTimeToLive};
use crate::network::{ForwardRequest, ForwardResponse};
use crate::types::Request;

impl Store {
    /// Grants a lease; `id` 0 picks a fresh id.
    pub async fn lease_grant(&self, id: LeaseId, ttl: i64) -> Result<(Header, Lease), StoreError> {
        let id = if id == 0 {
            (rand::random::<u64>() >> 1).max(1) as LeaseId
        } else {
            id
        };
        match self.propose(Command::LeaseGrant { id, ttl }).await? {
            (header, CommandResult::LeaseGranted { id, ttl }) => Ok((header, Lease { id, ttl })),
            (_, other) => unreachable!("lease grant answered with {other:?}"),
        }
    }

    pub async fn lease_revoke(&self, id: LeaseId) -> Result<Header, StoreError> {
        Ok(self.propose(Command::LeaseRevoke { id }).await?.0)
    }

    /// Restarts the lease's clock on the leader; returns the TTL in seconds.
    pub async fn lease_keep_alive(&self, id: LeaseId) -> Result<(Header, i64), StoreError> {
        let answer = self
            .on_leader(ForwardRequest::LeaseKeepAlive(id), || async {
                Ok(match self.keep_alive_local(id)? {
                    Some(ttl) => Attempt::Done(ttl),
                    None => self.leader_attempt(),
                })
            })
            .await?;
        match answer {
            LeaderAnswer::Local(ttl) | LeaderAnswer::Remote(ForwardResponse::KeepAlive { ttl }) => {
                Ok((self.header(), ttl))
            }
            LeaderAnswer::Remote(other) => Err(StoreError::unexpected(other)),
        }
    }

    pub async fn lease_time_to_live(
        &self,
        id: LeaseId,
        keys: bool,
    ) -> Result<(Header, LeaseTimeToLive), StoreError> {
        let answer = self
            .on_leader(ForwardRequest::LeaseTimeToLive { id, keys }, || async {
                Ok(match self.time_to_live_local(id, keys)? {
                    Some(ttl) => Attempt::Done(ttl),
                    None => self.leader_attempt(),
                })
            })
            .await?;
        match answer {
            LeaderAnswer::Local(ttl) | LeaderAnswer::Remote(ForwardResponse::TimeToLive(ttl)) => {
                Ok((self.header(), ttl))
            }
            LeaderAnswer::Remote(other) => Err(StoreError::unexpected(other)),
        }
    }

    pub async fn leases(&self) -> Result<(Header, Vec<Lease>), StoreError> {
        self.read_barrier().await?;
        let leases = self.inner.keyspace.read().mvcc.leases().collect();
        Ok((self.header(), leases))
    }

    /// `Ok(None)` when this member does not lead.
    pub(super) fn keep_alive_local(&self, id: LeaseId) -> Result<Option<i64>, StoreError> {
        let Some(term) = self.leading_term() else {
            return Ok(None);
        };
        let leases: Vec<Lease> = self.inner.keyspace.read().mvcc.leases().collect();
        let lease = leases
            .iter()
            .find(|l| l.id == id)
            .cloned()
            .ok_or(KvError::LeaseNotFound { id })?;
        let mut clock = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        clock.sync(Some(term), &leases, now);
        Ok(Some(clock.keep_alive(&lease, now)))
    }

    pub(super) fn time_to_live_local(
        &self,
        id: LeaseId,
        with_keys: bool,
    ) -> Result<Option<LeaseTimeToLive>, StoreError> {
        let Some(term) = self.leading_term() else {
            return Ok(None);
        };
        let state = self.inner.keyspace.read();
        let leases: Vec<Lease> = state.mvcc.leases().collect();
        let Some(lease) = state.mvcc.lease(id) else {
            return Ok(Some(LeaseTimeToLive {
                id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            }));
        };
        let keys = if with_keys {
            state.mvcc.lease_keys(id)
        } else {
            Vec::new()
        };
        drop(state);
        let mut clock = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        clock.sync(Some(term), &leases, now);
        let ttl = clock.remaining(id, now).unwrap_or(lease.ttl);
        Ok(Some(LeaseTimeToLive {
            id,
            ttl,
            granted_ttl: lease.ttl,
            keys,
        }))
    }

    /// One round of the leader's lease duty: sync the clock, revoke what expired.
    /// Run by [`crate::server`] a few times per second.
    pub async fn expire_leases(&self) {
        let expired = {
            let leases: Vec<Lease> = self.inner.keyspace.read().mvcc.leases().collect();
            let mut clock = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            clock.sync(self.leading_term(), &leases, now);
            clock.expired(now)
        };
        for id in expired {
            // Untagged and never retried: a revoke this round could not make is decided
            // again next round from the replicated state.
            let revoke = Request {
                command: Command::LeaseRevoke { id },
                tag: None,
            };
            match self.inner.proposer.propose(revoke).await {
                Ok(_) => tracing::debug!(lease = id, "lease expired and was revoked"),
                Err(rejected) => {
                    tracing::debug!(
                        lease = id,
                        ?rejected,
                        "could not revoke an expired lease yet"
                    );
                    return;
                }
            }
        }
    }
}
