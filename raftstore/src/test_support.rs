//! An in-process cluster for tests (feature `test-support`): real members (RocksDB, Raft,
//! gRPC on loopback port 0) with their data under one temporary directory, removed when the
//! cluster is dropped. `rudder-raftstore`'s tests run bare store members in it ([`Bare`]);
//! `rudder-apiserver`'s run its `Master`s through their own [`Kind`].
//!
//! A stopped member's addresses stay reserved (bound, not listening: a peer's connection is
//! refused at once, as by a stopped process) until it restarts on them, so no other test's
//! member can take them meanwhile.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use rudder_proto::etcdserverpb as pb;
use rudder_proto::etcdserverpb::watch_client::WatchClient;
use tempfile::TempDir;
use tokio::net::{TcpListener, TcpSocket};
use tokio_stream::wrappers::ReceiverStream;

use crate::compaction::Retention;
use crate::server::{RaftOptions, ServerError};
use crate::store::Store;
use crate::{MemberConfig, RunningMember, StoreOptions};

/// Raft timings short enough for tests: elections in well under a second.
pub fn raft_options() -> RaftOptions {
    RaftOptions {
        heartbeat_interval: Duration::from_millis(50),
        election_timeout: Duration::from_millis(250),
        snapshot_entries: 10_000,
        keep_entries: 1_000,
    }
}

/// Store options for tests: watch progress notifications every 300 ms; a leader's quorum
/// lost after twice [`raft_options`]' election timeout, as `rudder server` sets it.
pub fn store_options() -> StoreOptions {
    StoreOptions {
        watch_progress_interval: Duration::from_millis(300),
        quorum_lost_after: 2 * raft_options().election_timeout,
        ..StoreOptions::default()
    }
}

/// A listener on a free loopback port.
pub async fn listen() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding loopback port 0")
}

/// A watch over the etcd API on `endpoint` (`host:port`), made by `create`; the sender keeps
/// the request stream, and so the watch, open.
pub async fn etcd_watch(
    endpoint: &str,
    create: pb::WatchCreateRequest,
) -> (
    tokio::sync::mpsc::Sender<pb::WatchRequest>,
    tonic::Streaming<pb::WatchResponse>,
) {
    let mut client = WatchClient::connect(format!("http://{endpoint}"))
        .await
        .expect("the client port answers");
    let (requests, outgoing) = tokio::sync::mpsc::channel(1);
    let union = pb::watch_request::RequestUnion::CreateRequest(create);
    requests
        .send(pb::WatchRequest {
            request_union: Some(union),
        })
        .await
        .expect("the request stream is open");
    let responses = client
        .watch(ReceiverStream::new(outgoing))
        .await
        .expect("the watch starts")
        .into_inner();
    (requests, responses)
}

/// What runs in each member's place: a store member alone ([`Bare`]), or a store member
/// with more on top of it (the API server's `Master`).
pub trait Kind {
    type Member: Send + 'static;

    /// Starts a member on listeners the cluster bound.
    fn start_on(
        config: MemberConfig,
        peer: TcpListener,
        client: TcpListener,
    ) -> impl Future<Output = Result<Self::Member, ServerError>> + Send + 'static;

    /// The store member inside.
    fn member(member: &Self::Member) -> &RunningMember;

    /// Stops it; returns once its database is closed.
    fn shutdown(member: Self::Member) -> impl Future<Output = ()> + Send;
}

/// Store members alone.
pub struct Bare;

impl Kind for Bare {
    type Member = RunningMember;

    fn start_on(
        config: MemberConfig,
        peer: TcpListener,
        client: TcpListener,
    ) -> impl Future<Output = Result<RunningMember, ServerError>> + Send + 'static {
        RunningMember::start_on(config, peer, client)
    }

    fn member(member: &RunningMember) -> &RunningMember {
        member
    }

    fn shutdown(member: RunningMember) -> impl Future<Output = ()> + Send {
        member.shutdown()
    }
}

/// How every member of a test cluster is configured.
#[derive(Debug, Clone)]
pub struct Options {
    pub raft: RaftOptions,
    pub store: StoreOptions,
    pub auto_compaction: Retention,
}

impl Default for Options {
    /// [`raft_options`], [`store_options`], no automatic compaction.
    fn default() -> Self {
        Self {
            raft: raft_options(),
            store: store_options(),
            auto_compaction: Retention::Off,
        }
    }
}

/// Holds an address without serving it: bound, never listening.
fn reserve(addr: SocketAddr) -> Option<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .ok()?;
    socket.set_reuseaddr(true).ok()?;
    socket.bind(addr).ok()?;
    Some(socket)
}

/// A listener on `addr`: from its reservation if there is one.
fn listen_on(reserved: Option<TcpSocket>, addr: SocketAddr) -> TcpListener {
    match reserved {
        Some(socket) => socket.listen(1024),
        None => std::net::TcpListener::bind(addr).and_then(|listener| {
            listener.set_nonblocking(true)?;
            TcpListener::from_std(listener)
        }),
    }
    .unwrap_or_else(|error| panic!("listening on {addr} again: {error}"))
}

/// Members `m1`, `m2`, ... with data in `dir/m1`, `dir/m2`, ...; `members[i]` is `None`
/// while member `i` is stopped.
pub struct Cluster<K: Kind = Bare> {
    pub dir: TempDir,
    pub configs: Vec<MemberConfig>,
    pub members: Vec<Option<K::Member>>,
    /// The peer and client addresses of each stopped member, held until it restarts.
    reserved: Vec<Option<(Option<TcpSocket>, Option<TcpSocket>)>>,
}

impl Cluster {
    /// `size` store members with the test timings, once they have elected a leader.
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
        let options = Options {
            raft,
            auto_compaction,
            ..Options::default()
        };
        let cluster = Self::start_kind(size, options).await;
        cluster.leader().await;
        cluster
    }
}

impl<K: Kind> Cluster<K> {
    /// Forms a cluster of `size` members of kind `K`, started all at once (each waits for
    /// the others to form the cluster); returns once every one has started.
    pub async fn start_kind(size: usize, options: Options) -> Self {
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
                initial_cluster_token: String::new(),
                join: None,
                raft: options.raft.clone(),
                store: options.store.clone(),
                auto_compaction: options.auto_compaction,
                metrics: Default::default(),
                peer_tls: None,
            };
            configs.push(config.clone());
            starting.push(tokio::spawn(K::start_on(config, peer, client)));
        }
        let mut members = Vec::new();
        for task in starting {
            members.push(Some(
                task.await.expect("start task").expect("member starts"),
            ));
        }
        let reserved = members.iter().map(|_| None).collect();
        Self {
            dir,
            configs,
            members,
            reserved,
        }
    }

    /// The store member of running member `i`.
    pub fn member(&self, i: usize) -> &RunningMember {
        K::member(self.members[i].as_ref().expect("member is running"))
    }

    pub fn store(&self, i: usize) -> &Store {
        &self.member(i).store
    }

    /// The client addresses (`host:port`) of every member, running or not.
    pub fn client_endpoints(&self) -> Vec<String> {
        self.configs
            .iter()
            .map(|config| config.listen_client.to_string())
            .collect()
    }

    /// Index of the current leader among running members, waiting up to 10 s for one.
    pub async fn leader(&self) -> usize {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            for member in self.members.iter().flatten().map(K::member) {
                let metrics = member.store.raft().metrics().borrow().clone();
                if let Some(leader) = metrics.current_leader {
                    let found = self
                        .members
                        .iter()
                        .position(|m| m.as_ref().is_some_and(|m| K::member(m).id == leader));
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

    /// Index of the leader once every running member follows it in the same term (none
    /// is still a candidate from the first elections), waiting up to 10 s.
    pub async fn settled_leader(&self) -> usize {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let leader = self.leader().await;
            let votes: Vec<_> = self
                .members
                .iter()
                .flatten()
                .map(|member| K::member(member).store.raft().metrics().borrow().vote)
                .collect();
            let leader_vote = self.store(leader).raft().metrics().borrow().vote;
            if votes
                .iter()
                .all(|vote| *vote == leader_vote && vote.is_committed())
            {
                return leader;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the members did not settle on one leader within 10 s: {votes:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn follower(&self, leader: usize) -> usize {
        (0..self.members.len())
            .find(|i| *i != leader && self.members[*i].is_some())
            .expect("a running follower")
    }

    /// Stops member `i`, keeping its addresses for its restart.
    pub async fn stop(&mut self, i: usize) {
        let member = self.members[i].take().expect("member is running");
        K::shutdown(member).await;
        let config = &self.configs[i];
        self.reserved[i] = Some((reserve(config.listen_peer), reserve(config.listen_client)));
    }

    /// Restarts a stopped member on the same data directory and addresses.
    pub async fn restart(&mut self, i: usize) {
        let config = self.configs[i].clone().with_fresh_metrics();
        let (peer, client) = self.reserved[i].take().unwrap_or((None, None));
        let peer = listen_on(peer, config.listen_peer);
        let client = listen_on(client, config.listen_client);
        let member = K::start_on(config, peer, client)
            .await
            .expect("member restarts");
        self.members[i] = Some(member);
    }

    /// Restarts a stopped member on the same data directory but new ports, as after a move.
    pub async fn restart_elsewhere(&mut self, i: usize) {
        // Its old addresses stay reserved: the others still list them until it publishes.
        let peer = listen().await;
        let client = listen().await;
        self.configs[i].listen_peer = peer.local_addr().unwrap();
        self.configs[i].listen_client = client.local_addr().unwrap();
        let member = K::start_on(self.configs[i].clone().with_fresh_metrics(), peer, client)
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
            initial_cluster_token: String::new(),
            join: Some(self.configs[0].listen_peer.to_string()),
            raft: self.configs[0].raft.clone(),
            store: self.configs[0].store.clone(),
            auto_compaction: Retention::Off,
            metrics: Default::default(),
            peer_tls: None,
        };
        let member = K::start_on(config.clone(), peer, client)
            .await
            .expect("the new member joins");
        self.configs.push(config);
        self.members.push(Some(member));
        self.reserved.push(None);
        self.members.len() - 1
    }

    /// Stops every running member, all at once: none lives on to call the others' addresses.
    pub async fn shutdown(self) {
        let stopping = self.members.into_iter().flatten().map(K::shutdown);
        futures::future::join_all(stopping).await;
    }

    /// Waits until every running member applied at least the leader's last log index.
    pub async fn converge(&self) {
        let leader = self.leader().await;
        let target = self.store(leader).raft().metrics().borrow().last_log_index;
        for member in self.members.iter().flatten().map(K::member) {
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
