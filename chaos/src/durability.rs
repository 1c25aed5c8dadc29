//! The end of a run: every member killed at the same moment and restarted on its data (a
//! whole-cluster crash; the machine's page cache survives it, so a lost fsync does not show
//! here: the disk faults test that), before the store's record is read back, so the at-most-once
//! check also proves that no acknowledged write was lost to the whole cluster's crash; then
//! each member's hash of the keyspace at one revision, which must agree (the replicas
//! converged). [`agree`] judges the hashes (pure); the rest is the shell.

use std::time::Duration;

use rudder_proto::etcdserverpb::HashKvRequest;
use serde::{Deserialize, Serialize};

use crate::client::{maintenance, revision_now};
use crate::cluster::{ClusterError, ProcessCluster};

/// One member's hash of the keyspace at a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberHash {
    pub member: String,
    pub hash: u32,
    /// The revision it hashed at (etcd answers with the revision it used).
    pub revision: i64,
}

/// SIGKILLs every member (all signalled before any is waited for), then restarts them.
/// etcd's members serve only once a quorum is back, so theirs wait together; Rudder's print
/// their ready line without one, and start one after another.
pub async fn crash_everyone(cluster: &mut ProcessCluster) -> Result<(), ClusterError> {
    for member in &cluster.members {
        member.sigkill();
    }
    for member in &mut cluster.members {
        member.kill();
    }
    let restarts = cluster.members.iter_mut().map(|member| member.restart());
    futures::future::join_all(restarts)
        .await
        .into_iter()
        .collect()
}

/// Each member's hash at the revision the leader has now, each member first brought up to
/// the leader's commit by a linearizable read; waits up to `limit` for each to answer.
pub async fn hashes(cluster: &ProcessCluster, limit: Duration) -> Result<Vec<MemberHash>, String> {
    let leader = cluster.leader().await.map_err(|e| e.to_string())?;
    let revision = revision_now(&cluster.members[leader].client_addr, limit).await?;
    let mut hashes = Vec::new();
    for member in &cluster.members {
        revision_now(&member.client_addr, limit).await?;
        let asked = HashKvRequest { revision };
        let answer = tokio::time::timeout(limit, async {
            maintenance(&member.client_addr)
                .await
                .map_err(|e| e.to_string())?
                .hash_kv(asked)
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|_| format!("{} gave no hash within {limit:?}", member.name))?
        .map_err(|e| format!("{}'s hash at revision {revision}: {e}", member.name))?
        .into_inner();
        hashes.push(MemberHash {
            member: member.name.clone(),
            hash: answer.hash,
            revision: answer.hash_revision,
        });
    }
    Ok(hashes)
}

/// Whether the members' hashes agree: the disagreements, each naming the member and what
/// it hashed, against the first member's. Pure.
pub fn agree(hashes: &[MemberHash]) -> Vec<String> {
    let Some(first) = hashes.first() else {
        return vec!["no member gave a hash".into()];
    };
    hashes[1..]
        .iter()
        .filter(|other| (other.hash, other.revision) != (first.hash, first.revision))
        .map(|other| {
            format!(
                "{} hashed {:08x} at revision {}, {} {:08x} at revision {}",
                other.member, other.hash, other.revision, first.member, first.hash, first.revision
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(member: &str, hash: u32, revision: i64) -> MemberHash {
        MemberHash {
            member: member.into(),
            hash,
            revision,
        }
    }

    #[test]
    fn members_agree_only_on_the_same_hash_at_the_same_revision() {
        let same = [hash("m1", 7, 40), hash("m2", 7, 40), hash("m3", 7, 40)];
        assert_eq!(agree(&same), Vec::<String>::new());
        let differs = [hash("m1", 7, 40), hash("m2", 8, 40), hash("m3", 7, 39)];
        assert_eq!(
            agree(&differs),
            vec![
                "m2 hashed 00000008 at revision 40, m1 00000007 at revision 40".to_string(),
                "m3 hashed 00000007 at revision 39, m1 00000007 at revision 40".to_string(),
            ]
        );
        assert_eq!(agree(&[]), vec!["no member gave a hash".to_string()]);
    }
}
