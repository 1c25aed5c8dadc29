//! The store's own record of what happened under a prefix, read back from a healed cluster:
//! where its members agree the writes ended, and every change from revision 1 to there (a
//! watch, before any compaction). The reference the watch and at-most-once checks compare
//! what clients saw with.

use std::time::{Duration, Instant};

use rudder_proto::etcdserverpb::request_op::Request as TxnOp;
use rudder_proto::etcdserverpb::response_op::Response as TxnAnswer;
use rudder_proto::etcdserverpb::watch_request::RequestUnion;
use rudder_proto::etcdserverpb::{
    PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
};

use crate::check::watch::Change;
use crate::client::{absent, kv, revision_now, watch};
use crate::cluster::ProcessCluster;

/// The end of the key range of every key starting with `prefix` (etcd's `--prefix`).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The value of the runner's own last write under a prefix ([`mark_end`]).
pub const END_MARK: &str = "end-of-run";

/// Writes the runner's own last write under `prefix` once the workload has stopped:
/// `<prefix>~end` created (a compare on its creation makes a retry after no answer
/// harmless: it reads what the first attempt wrote). Its value and revision. The workload
/// deletes keys, and a deleted key leaves no revision for [`settled`] to read: this one
/// stays, so where the writes ended is found. Tries each running member in turn for up to
/// `limit`.
pub async fn mark_end(
    cluster: &ProcessCluster,
    prefix: &str,
    limit: Duration,
) -> Result<(String, i64), String> {
    let key = format!("{prefix}~end").into_bytes();
    let create = TxnRequest {
        compare: vec![absent(&key)],
        success: vec![RequestOp {
            request: Some(TxnOp::RequestPut(PutRequest {
                key: key.clone(),
                value: END_MARK.into(),
                ..Default::default()
            })),
        }],
        failure: vec![RequestOp {
            request: Some(TxnOp::RequestRange(RangeRequest {
                key,
                ..Default::default()
            })),
        }],
    };
    let deadline = Instant::now() + limit;
    let mut last = String::from("no member running");
    for member in cluster.endpoints().iter().cycle() {
        if Instant::now() > deadline {
            break;
        }
        let answered = tokio::time::timeout(Duration::from_secs(2), async {
            let mut client = kv(member).await.map_err(|e| e.to_string())?;
            let answer = client
                .txn(create.clone())
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(answer.into_inner())
        });
        match answered.await {
            Ok(Ok(answer)) if answer.succeeded => {
                let revision = answer.header.map_or(0, |header| header.revision);
                return Ok((END_MARK.to_string(), revision));
            }
            Ok(Ok(answer)) => {
                let written = answer
                    .responses
                    .into_iter()
                    .find_map(|op| match op.response {
                        Some(TxnAnswer::ResponseRange(range)) => range.kvs.into_iter().next(),
                        _ => None,
                    });
                match written {
                    Some(kv) => return Ok((END_MARK.to_string(), kv.mod_revision)),
                    None => last = "the end mark was neither created nor there".into(),
                }
            }
            Ok(Err(why)) => last = why,
            Err(_) => last = format!("{member} did not answer in 2 s"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "writing the end mark under {prefix} within {limit:?}: {last}"
    ))
}

/// The revision of the last write under `prefix`, once every running member reads the
/// same (linearizably: each catches up with the leader first); waits up to `limit`.
pub async fn settled(
    cluster: &ProcessCluster,
    prefix: &str,
    limit: Duration,
) -> Result<i64, String> {
    let deadline = Instant::now() + limit;
    loop {
        let mut seen = Vec::new();
        for member in cluster.members.iter().filter(|m| m.is_running()) {
            let read = RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix),
                keys_only: true,
                ..Default::default()
            };
            let answered = tokio::time::timeout(Duration::from_secs(2), async {
                kv(&member.client_addr).await.ok()?.range(read).await.ok()
            });
            if let Ok(Some(response)) = answered.await {
                let kvs = response.into_inner().kvs;
                seen.push(kvs.iter().map(|kv| kv.mod_revision).max().unwrap_or(0));
            }
        }
        let running = cluster.members.iter().filter(|m| m.is_running()).count();
        if seen.len() == running && seen.windows(2).all(|pair| pair[0] == pair[1]) {
            return Ok(seen.first().copied().unwrap_or(0));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the members never agreed on the last write in {limit:?}: {seen:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every change under `prefix` from revision 1 through `through`, as the member at `addr`
/// has them.
pub async fn changes(addr: &str, prefix: &str, through: i64) -> Result<Vec<Change>, String> {
    changes_in(addr, (prefix.as_bytes(), &prefix_end(prefix)), through).await
}

/// Every change in the key range `[from, end)` from revision 1 through `through` (which
/// must be a revision in that range, or the watch waits for it).
async fn changes_in(
    addr: &str,
    (from, end): (&[u8], &[u8]),
    through: i64,
) -> Result<Vec<Change>, String> {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let create = WatchCreateRequest {
        key: from.to_vec(),
        range_end: end.to_vec(),
        start_revision: 1,
        ..Default::default()
    };
    let request = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(create)),
    };
    sender.send(request).await.map_err(|e| e.to_string())?;
    let mut responses = watch(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?
        .watch(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .map_err(|e| format!("watching {addr}: {e}"))?
        .into_inner();
    let mut changes = Vec::new();
    let mut reached = 0;
    while reached < through {
        let message = tokio::time::timeout(Duration::from_secs(20), responses.message())
            .await
            .map_err(|_| format!("{addr} sent nothing for 20 s, at revision {reached}"))?
            .map_err(|e| format!("the watch on {addr} broke: {e}"))?
            .ok_or_else(|| format!("the watch on {addr} ended at revision {reached}"))?;
        if message.canceled {
            return Err(format!(
                "the watch on {addr} was canceled: {}",
                message.cancel_reason
            ));
        }
        for event in message.events {
            let Some(kv) = event.kv else { continue };
            reached = reached.max(kv.mod_revision);
            changes.push(change_of(event.r#type, kv));
        }
    }
    drop(sender);
    Ok(changes)
}

/// The objects the Kubernetes invariants judge ([`crate::check::kube`]).
const OBJECT_PREFIXES: [&str; 5] = [
    "/registry/pods/",
    "/registry/replicasets/",
    "/registry/deployments/",
    "/registry/nodes/",
    "/registry/leases/",
];

/// Every change of the pods, ReplicaSets, Deployments, Nodes and the leader-elected
/// components' Leases (every Lease: a fence may name any) from revision 1 through the
/// store's revision now (read linearizably), in revision order, as the member at `addr`
/// has them; and that revision. The whole keyspace is watched, since every revision is a
/// change somewhere in it, and then filtered.
pub async fn objects(addr: &str) -> Result<(i64, Vec<Change>), String> {
    let now = revision_now(addr, Duration::from_secs(20)).await?;
    // `[\0, \0)`: every key (etcd's "from the first key on").
    let everything = changes_in(addr, (&[0], &[0]), now).await?;
    let objects = everything
        .into_iter()
        .filter(|change| change.revision <= now)
        .filter(|change| OBJECT_PREFIXES.iter().any(|p| change.key.starts_with(p)))
        .collect();
    Ok((now, objects))
}

/// A watch event as a [`Change`]: a put's value, or `None` for a deletion.
pub fn change_of(event_type: i32, kv: rudder_proto::mvccpb::KeyValue) -> Change {
    let deleted = event_type == rudder_proto::mvccpb::event::EventType::Delete as i32;
    Change {
        revision: kv.mod_revision,
        key: String::from_utf8_lossy(&kv.key).into_owned(),
        value: (!deleted).then(|| String::from_utf8_lossy(&kv.value).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_where_etcd_ends_it() {
        assert_eq!(prefix_end("chaos/"), b"chaos0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
    }
}
