//! An in-process cluster of real members (RocksDB, Raft, gRPC on loopback port 0).

#![allow(dead_code)]

use std::time::Duration;

use rudder_raftstore::compaction::Retention;
use rudder_raftstore::server::RaftOptions;
use rudder_raftstore::store::Store;
use rudder_raftstore::{MemberConfig, RunningMember, StoreOptions};
use tempfile::TempDir;
use tokio::net::TcpListener;

pub struct Cluster {
    pub dir: TempDir,
    pub configs: Vec<MemberConfig>,
    pub members: Vec<Option<RunningMember>>,
}

pub fn raft_options() -> RaftOptions {
    RaftOptions {
        heartbeat_interval: Duration::from_millis(50),
        election_timeout: Duration::from_millis(250),
        snapshot_entries: 10_000,
        keep_entries: 1_000,
    }
}

pub fn store_options() -> StoreOptions {
    StoreOptions {
        watch_progress_interval: Duration::from_millis(300),
        ..StoreOptions::default()
    }
}

async fn listen() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding loopback port 0")
}

impl Cluster {
    pub async fn start(size: usize) -> Self {
        Self::start_with(size, raft_options()).await
    }

    pub async fn start_with(size: usize, raft: RaftOptions) -> Self {
        Self::start_configured(size, raft, Retention::Off).await
    }

    pub async fn start_configured(
        size: usize,
        raft: RaftOptions,
        auto_compaction: Retention,
    ) -> Self {
        let dir = TempDir::new().expect("a temporary directory");
        let mut peers = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..size {
            peers.push(listen().await);
            clients.push(listen().await);
        }
        let initial: Vec<(String, String)> = peers
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("m{}", i + 1), l.local_addr().unwrap().to_string()))
            .collect();
        let mut configs = Vec::new();
        let mut starting = Vec::new();
        for (i, (peer, client)) in peers.into_iter().zip(clients).enumerate() {
            let config = MemberConfig {
                name: format!("m{}", i + 1),
                data_dir: dir.path().join(format!("m{}", i + 1)),
                listen_client: client.local_addr().unwrap(),
                listen_peer: peer.local_addr().unwrap(),
                initial_cluster: initial.clone(),
                join: None,
                raft: raft.clone(),
                store: store_options(),
                auto_compaction,
            };
            configs.push(config.clone());
            starting.push(tokio::spawn(RunningMember::start_on(config, peer, client)));
        }
        let mut members = Vec::new();
        for task in starting {
            members.push(Some(
                task.await.expect("start task").expect("member starts"),
            ));
        }
        let cluster = Self {
            dir,
            configs,
            members,
        };
        cluster.leader().await;
        cluster
    }

    pub fn store(&self, i: usize) -> &Store {
        &self.members[i].as_ref().expect("member is running").store
    }

    /// Index of the current leader among running members, waiting up to 10 s for one.
    pub async fn leader(&self) -> usize {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            for member in self.members.iter().flatten() {
                let metrics = member.store.raft().metrics().borrow().clone();
                if let Some(leader) = metrics.current_leader {
                    let found = self
                        .members
                        .iter()
                        .position(|m| m.as_ref().is_some_and(|m| m.id == leader));
                    if let Some(index) = found {
                        if self.store(index).raft().metrics().borrow().state
                            == openraft::ServerState::Leader
                        {
                            return index;
                        }
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no leader elected within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn follower(&self, leader: usize) -> usize {
        (0..self.members.len())
            .find(|i| *i != leader && self.members[*i].is_some())
            .expect("a running follower")
    }

    pub async fn stop(&mut self, i: usize) {
        let member = self.members[i].take().expect("member is running");
        member.shutdown().await;
    }

    /// Restarts a stopped member on the same data directory and addresses.
    pub async fn restart(&mut self, i: usize) {
        let config = self.configs[i].clone();
        let member = RunningMember::start(config).await.expect("member restarts");
        self.members[i] = Some(member);
    }

    /// Restarts a stopped member on the same data directory but new ports, as after a move.
    pub async fn restart_elsewhere(&mut self, i: usize) {
        let peer = listen().await;
        let client = listen().await;
        self.configs[i].listen_peer = peer.local_addr().unwrap();
        self.configs[i].listen_client = client.local_addr().unwrap();
        let member = RunningMember::start_on(self.configs[i].clone(), peer, client)
            .await
            .expect("member restarts");
        self.members[i] = Some(member);
    }

    /// Starts one more member that joins through member 0's peer address; returns its index.
    pub async fn join_new_member(&mut self) -> usize {
        let n = self.members.len() + 1;
        let peer = listen().await;
        let client = listen().await;
        let config = MemberConfig {
            name: format!("m{n}"),
            data_dir: self.dir.path().join(format!("m{n}")),
            listen_client: client.local_addr().unwrap(),
            listen_peer: peer.local_addr().unwrap(),
            initial_cluster: Vec::new(),
            join: Some(self.configs[0].listen_peer.to_string()),
            raft: self.configs[0].raft.clone(),
            store: store_options(),
            auto_compaction: Retention::Off,
        };
        let member = RunningMember::start_on(config.clone(), peer, client)
            .await
            .expect("the new member joins");
        self.configs.push(config);
        self.members.push(Some(member));
        self.members.len() - 1
    }

    pub async fn shutdown(mut self) {
        for i in 0..self.members.len() {
            if self.members[i].is_some() {
                self.stop(i).await;
            }
        }
    }

    /// Waits until every running member applied at least the leader's last log index.
    pub async fn converge(&self) {
        let leader = self.leader().await;
        let target = self.store(leader).raft().metrics().borrow().last_log_index;
        for member in self.members.iter().flatten() {
            member
                .store
                .raft()
                .wait(Some(Duration::from_secs(20)))
                .applied_index_at_least(target, "converge")
                .await
                .expect("member catches up");
        }
    }
}
