//! Faults on a process cluster of store members, for the tests that check what clients
//! saw through them: who leads, and a schedule of leader kills (with restarts) and pauses.

use std::time::{Duration, Instant};

use rudder_proto::etcdserverpb::StatusRequest;

use crate::{maintenance, ProcessCluster};

/// The member that leads, asking each running member with a short timeout (a paused one
/// never answers); `None` while there is none.
pub async fn leader(cluster: &ProcessCluster, paused: Option<usize>) -> Option<usize> {
    for (i, member) in cluster.members.iter().enumerate() {
        if !member.is_running() || Some(i) == paused {
            continue;
        }
        let status = tokio::time::timeout(Duration::from_millis(500), async {
            maintenance(&member.client_addr)
                .await
                .ok()?
                .status(StatusRequest {})
                .await
                .ok()
        })
        .await;
        let Ok(Some(status)) = status else { continue };
        let leader = status.into_inner().leader;
        if let Some(found) = cluster.members.iter().position(|m| m.id == leader) {
            return Some(found);
        }
    }
    None
}

/// What the faults did, for the report and for "the run exercised its faults".
#[derive(Debug, Default)]
pub struct Faults {
    pub kills: usize,
    pub pauses: usize,
}

/// For `duration`: every 4 s `kill -9` the leader and restart it; every 7 s SIGSTOP the
/// leader for 2 s. Ends with every member running and resumed.
pub async fn inject_faults(cluster: &mut ProcessCluster, duration: Duration) -> Faults {
    let start = Instant::now();
    let mut faults = Faults::default();
    let (mut next_kill, mut next_pause) = (Duration::from_secs(4), Duration::from_secs(7));
    let mut paused: Option<(usize, Duration)> = None;
    while start.elapsed() < duration {
        let now = start.elapsed();
        if let Some((member, until)) = paused {
            if now >= until {
                cluster.members[member].resume();
                paused = None;
            }
        }
        if now >= next_kill {
            next_kill += Duration::from_secs(4);
            if let Some(victim) = leader(cluster, paused.map(|p| p.0)).await {
                cluster.members[victim].kill();
                faults.kills += 1;
                cluster.members[victim]
                    .restart()
                    .await
                    .expect("a killed member restarts");
            }
        }
        if now >= next_pause && paused.is_none() {
            next_pause += Duration::from_secs(7);
            if let Some(victim) = leader(cluster, None).await {
                cluster.members[victim].pause();
                faults.pauses += 1;
                paused = Some((victim, now + Duration::from_secs(2)));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some((member, _)) = paused {
        cluster.members[member].resume();
    }
    faults
}
