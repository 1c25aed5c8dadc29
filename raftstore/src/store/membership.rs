//! Membership calls of [`Store`]: list, add (as learner or voter), promote, remove, and
//! members' addresses — each run on the leader (forwarded there otherwise), one at a time
//! per member with the check that decides it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};

use super::{Attempt, LeaderAnswer, MemberInfo, Store, StoreError};
use crate::network::{ForwardRequest, ForwardResponse};
use crate::types::{Member, NodeId, Peer};

impl Store {
    pub fn members(&self) -> Vec<MemberInfo> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, member)| MemberInfo {
                id: *id,
                member: member.clone(),
                is_learner: !voters.contains(id),
            })
            .collect()
    }

    /// Adds a member: as a learner, or (after it caught up) as a voter.
    pub async fn add_member(
        &self,
        id: NodeId,
        member: Member,
        learner: bool,
    ) -> Result<(), StoreError> {
        let request = ForwardRequest::AddMember {
            id,
            member: member.clone(),
            learner,
        };
        self.membership_call(
            request,
            || self.add_member_local(id, member.clone(), learner),
            |_| false,
        )
        .await
    }

    /// Replaces a member's name and addresses.
    pub async fn set_member(&self, id: NodeId, member: Member) -> Result<(), StoreError> {
        let request = ForwardRequest::SetMember {
            id,
            member: member.clone(),
        };
        self.membership_call(
            request,
            || self.set_member_local(id, member.clone()),
            |_| false,
        )
        .await
    }

    /// Whether this member's view of the membership lists it as `me`.
    fn lists(&self, me: &Member) -> bool {
        let listed = self.members().into_iter().find(|m| m.id == self.id());
        listed.is_some_and(|info| info.member == *me)
    }

    /// Makes the membership carry this member's current addresses (initial members are listed
    /// with their peer address only; a restarted member may have a new client port).
    pub async fn publish_self(self, me: Member, mut stopped: tokio::sync::watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stopped.changed() => return,
            }
            if self.lists(&me) {
                return;
            }
            // Not in the membership (yet: joining; or removed): nothing to publish now.
            if !self.members().iter().any(|m| m.id == self.id()) {
                continue;
            }
            match self.set_member(self.id(), me.clone()).await {
                // Done once this member's own view shows it, without waiting for
                // the next tick (which would undo a change an operator made since);
                // a view that does not show it yet is looked at again next tick.
                Ok(()) if self.lists(&me) => return,
                Ok(()) => {}
                // Removed meanwhile: nothing to publish, ever.
                Err(StoreError::MemberNotFound { .. }) => return,
                Err(error) => {
                    // With a changed address the leader cannot reach this member, so
                    // this member may never learn who leads: ask the others to pass it on.
                    tracing::debug!(%error, "publishing this member's addresses through a peer");
                    match self.publish_via_peers(me.clone()).await {
                        Ok(()) if self.lists(&me) => return,
                        Ok(()) => {}
                        Err(StoreError::MemberNotFound { .. }) => return,
                        Err(error) => {
                            tracing::debug!(%error, "publishing this member's addresses; will retry")
                        }
                    }
                }
            }
        }
    }

    /// Asks the other members, one after the other, to pass this member's addresses on to
    /// the leader (used when this member cannot find the leader itself).
    pub async fn publish_via_peers(&self, me: Member) -> Result<(), StoreError> {
        let request = ForwardRequest::SetMember {
            id: self.id(),
            member: me,
        };
        let mut last_error = StoreError::NoLeader;
        for other in self.members().into_iter().filter(|m| m.id != self.id()) {
            let peer = Peer {
                id: other.id,
                member: other.member,
            };
            let limit = self.inner.options.request_timeout;
            match self.forward(&peer, &request, limit).await {
                Ok(_) => return Ok(()),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    pub async fn promote_member(&self, id: NodeId) -> Result<(), StoreError> {
        self.membership_call(
            ForwardRequest::PromoteMember(id),
            || self.promote_local(id),
            |error| matches!(error, StoreError::NotLearner { .. }),
        )
        .await
    }

    pub async fn remove_member(&self, id: NodeId) -> Result<(), StoreError> {
        self.membership_call(
            ForwardRequest::RemoveMember(id),
            || self.remove_local(id),
            |error| matches!(error, StoreError::MemberNotFound { .. }),
        )
        .await
    }

    // Membership changes go through openraft's own log entries, not the request table, so
    // their retries are made safe by what they ask for: adding a member that is already
    // there and setting addresses are no-ops; a promote or remove retried after its first
    // attempt was applied finds its goal reached (`goal_reached`), answered as done.

    async fn membership_call<F, Fut>(
        &self,
        request: ForwardRequest,
        local: F,
        goal_reached: impl Fn(&StoreError) -> bool,
    ) -> Result<(), StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), StoreError>>,
    {
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let answer = self
            .on_leader(request, || async {
                // Count the attempts that may change something: run here, or forwarded.
                if self.leading_term().is_none() {
                    let attempt = self.leader_attempt();
                    if matches!(attempt, Attempt::Forward(_)) {
                        attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    return Ok(attempt);
                }
                attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match local().await {
                    Ok(()) => Ok(Attempt::Done(())),
                    // Leadership moved between the check and the change: find the new leader.
                    Err(StoreError::NoLeader) => Ok(self.leader_attempt()),
                    Err(error) => Err(error),
                }
            })
            .await;
        let retried = attempts.load(std::sync::atomic::Ordering::Relaxed) > 1;
        match answer {
            Ok(LeaderAnswer::Local(()) | LeaderAnswer::Remote(ForwardResponse::Done)) => Ok(()),
            Ok(LeaderAnswer::Remote(other)) => Err(StoreError::unexpected(other)),
            // An earlier attempt may have done it: "not a learner" after a promote, "not
            // found" after a remove, is then the goal reached.
            Err(error) if retried && goal_reached(&error) => Ok(()),
            Err(error) => Err(error),
        }
    }

    pub(super) async fn add_member_local(
        &self,
        id: NodeId,
        member: Member,
        learner: bool,
    ) -> Result<(), StoreError> {
        {
            let _one_change = self.inner.membership_lock.lock().await;
            let known = self.members().into_iter().find(|m| m.id == id);
            if known.is_none() && self.inner.keyspace.read().meta.members_ever.contains(&id) {
                return Err(StoreError::MemberIdUsed { id });
            }
            if known.is_none() {
                self.add_learner(id, member).await?;
            }
        }
        if learner {
            return Ok(());
        }
        // A voter joins once it has caught up; the wait holds no lock, so the member can be
        // removed meanwhile (a joiner that never catches up must not block every change).
        self.wait_caught_up(id).await?;
        let _one_change = self.inner.membership_lock.lock().await;
        match self.members().into_iter().find(|m| m.id == id) {
            None => Err(StoreError::MemberNotFound { id }),
            Some(info) if !info.is_learner => Ok(()),
            Some(_) => {
                self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
                    .await
            }
        }
    }

    /// Waits until learner `id` has replicated this leader's log as it is now (as openraft's
    /// blocking add_learner does), or was removed, or this member stopped leading.
    async fn wait_caught_up(&self, id: NodeId) -> Result<(), StoreError> {
        let target = self.inner.raft.metrics().borrow().last_log_index;
        let matched = |m: &openraft::RaftMetrics<NodeId, Member>| {
            m.replication
                .as_ref()
                .and_then(|replication| replication.get(&id).copied().flatten())
                .map(|log_id| log_id.index)
        };
        let seen = self
            .inner
            .raft
            .wait(None)
            .metrics(
                |m| {
                    m.state != ServerState::Leader
                        || m.membership_config.membership().get_node(&id).is_none()
                        || matched(m) >= target
                },
                "a joining member catching up",
            )
            .await
            .map_err(|_| StoreError::Stopped)?;
        if seen.state != ServerState::Leader {
            Err(StoreError::NoLeader)
        } else if seen.membership_config.membership().get_node(&id).is_none() {
            Err(StoreError::MemberNotFound { id })
        } else {
            Ok(())
        }
    }

    /// Only for a listed member: a removed one is never put back by its address update.
    pub(super) async fn set_member_local(
        &self,
        id: NodeId,
        member: Member,
    ) -> Result<(), StoreError> {
        let _one_change = self.inner.membership_lock.lock().await;
        if !self.members().iter().any(|m| m.id == id) {
            return Err(StoreError::MemberNotFound { id });
        }
        self.change(ChangeMembers::SetNodes(std::collections::BTreeMap::from([
            (id, member),
        ])))
        .await
    }

    /// Adds a learner without waiting for it to catch up (see `wait_caught_up`).
    async fn add_learner(&self, id: NodeId, member: Member) -> Result<(), StoreError> {
        if self.is_restoring() {
            return Err(StoreError::Restoring);
        }
        let raft = &self.inner.raft;
        self.one_change_at_a_time(|| raft.add_learner(id, member.clone(), false))
            .await
    }

    pub(super) async fn promote_local(&self, id: NodeId) -> Result<(), StoreError> {
        let _one_change = self.inner.membership_lock.lock().await;
        match self.members().into_iter().find(|m| m.id == id) {
            None => Err(StoreError::MemberNotFound { id }),
            Some(info) if !info.is_learner => Err(StoreError::NotLearner { id }),
            Some(_) => {
                self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
                    .await
            }
        }
    }

    /// Removes the member: a voter first stops voting, then it leaves the nodes. Each step
    /// is decided on this member's current view, until the member is gone from it (a run
    /// under load once left a removed voter listed as a learner).
    pub(super) async fn remove_local(&self, id: NodeId) -> Result<(), StoreError> {
        let _one_change = self.inner.membership_lock.lock().await;
        let listed = |store: &Self| store.members().into_iter().find(|m| m.id == id);
        if listed(self).is_none() {
            return Err(StoreError::MemberNotFound { id });
        }
        let ids = BTreeSet::from([id]);
        // Two steps; a few more rounds only if a view was behind.
        for _ in 0..4 {
            let Some(info) = listed(self) else {
                return Ok(());
            };
            let step = if info.is_learner {
                ChangeMembers::RemoveNodes(ids.clone())
            } else {
                ChangeMembers::RemoveVoters(ids.clone())
            };
            self.change(step).await?;
        }
        match listed(self) {
            None => Ok(()),
            Some(_) => Err(StoreError::NoLeader),
        }
    }

    async fn change(&self, change: ChangeMembers<NodeId, Member>) -> Result<(), StoreError> {
        let raft = &self.inner.raft;
        self.one_change_at_a_time(|| raft.change_membership(change.clone(), false))
            .await
    }

    /// Runs a membership call, waiting out a change still in progress: openraft runs one at a
    /// time, and members publish their addresses through such changes at start-up. Returns
    /// once this member's view of the membership (what `members()` reads) shows the change:
    /// the call itself returns at commit, and the view follows a moment later.
    async fn one_change_at_a_time<F, Fut>(&self, call: F) -> Result<(), StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<
            Output = Result<
                openraft::raft::ClientWriteResponse<crate::types::TypeConfig>,
                RaftError<NodeId, ClientWriteError<NodeId, Member>>,
            >,
        >,
    {
        // A stopping member (writes held) changes no membership either: an entry appended
        // during its handover would leave the follower it hands over to behind.
        if self.inner.proposer.is_held() {
            return Err(StoreError::NoLeader);
        }
        let deadline = Instant::now() + self.inner.options.request_timeout;
        loop {
            match call().await {
                Ok(response) => {
                    let changed = response.log_id;
                    let seen = self
                        .inner
                        .raft
                        .wait(Some(self.inner.options.request_timeout))
                        .metrics(
                            |m| m.membership_config.log_id().is_some_and(|id| id >= changed),
                            "the membership change in this member's view",
                        )
                        .await;
                    if seen.is_err() {
                        tracing::warn!(log_id = %changed, "a committed membership change is not in this member's view yet");
                    }
                    return Ok(());
                }
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                ))) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                    return Err(StoreError::NoLeader)
                }
                Err(error) => return Err(membership_error(error)),
            }
        }
    }
}

fn membership_error<E: std::fmt::Display>(error: RaftError<NodeId, E>) -> StoreError {
    match error {
        RaftError::Fatal(_) => StoreError::Stopped,
        RaftError::APIError(e) => StoreError::Membership {
            reason: e.to_string(),
        },
    }
}
