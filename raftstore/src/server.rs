//! Assembling and running one store member: database, Raft, peer and client ports, and the
//! background duties (lease expiry, publishing this member's client address).
//!
//! A fresh member either bootstraps with the others listed in `initial_cluster`, or, with
//! `join`, asks a running cluster to add it (as a learner that is promoted once caught up).
//! A member restarted on the same data directory resumes as it was. Its member id and
//! cluster id (see [`crate::identity`]) are kept in the data directory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{Config, SnapshotPolicy};
use rocksdb::WriteBatch;
use rudder_proto::raft::raft_peer_server::RaftPeerServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;

use crate::front_door::{self, ClientServices};

use crate::campaign::{Campaign, ElectionCounts};
use crate::compaction::{AutoCompactor, Retention};
use crate::db::{Db, CF_RAFT};
use crate::election::ElectionTimer;
use crate::identity::{Identity, InitialCluster};
use crate::keyspace::Keyspace;
use crate::log_store::LogStore;
use crate::metrics::{count_leader_changes, StoreMetrics};
use crate::network::{
    CallError, ForwardRequest, ForwardResponse, PeerClients, PeerNetwork, Rpc,
    PEER_MAX_MESSAGE_BYTES,
};
use crate::peer_service::PeerService;
use crate::state_machine::StateMachine;
use crate::store::figures::MemberFigures;
use crate::store::{Store, StoreError};
use crate::types::{Member, NodeId, Raft};
use crate::{codec, etcd};

pub use crate::member_config::{MemberConfig, RaftOptions, ServerError};

/// How long a stopping member lets requests in flight finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// How long a batch of entries sent to a member may go unanswered before it is sent again
/// (h2's keep-alive closes a connection to a stopped member after 5 s anyway).
const APPEND_LIMIT: Duration = Duration::from_secs(5);

/// Streams a peer may reset before the peer server accepted them, per connection, before
/// the connection is closed (h2's default is 20; see where the peer server is built). Still
/// bounded: the limit is h2's defence against reset floods (CVE-2023-26964), and until
/// issue 18's mTLS anyone who reaches the peer port gets this much.
const PEER_MAX_PENDING_ACCEPT_RESETS: usize = 500;

/// A running member. Dropping it does not stop it: call [`RunningMember::shutdown`].
pub struct RunningMember {
    pub id: NodeId,
    pub store: Store,
    pub client_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    identity: Arc<Identity>,
    raft: Raft,
    db: Db,
    campaign: Campaign,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl RunningMember {
    /// Binds `listen_peer` and `listen_client`, then starts.
    pub async fn start(config: MemberConfig) -> Result<Self, ServerError> {
        let peer_listener = bind("peer", config.listen_peer).await?;
        let client_listener = bind("client", config.listen_client).await?;
        Self::start_on(config, peer_listener, client_listener).await
    }

    /// Starts on listeners the caller bound (tests bind port 0 first to learn the addresses).
    pub async fn start_on(
        config: MemberConfig,
        peer_listener: TcpListener,
        client_listener: TcpListener,
    ) -> Result<Self, ServerError> {
        Self::start_serving(config, peer_listener, client_listener, |grpc, _| {
            ClientServices {
                grpc,
                http: None,
                tls: None,
                tokens: Default::default(),
                open_methods: &[],
            }
        })
        .await
    }

    /// Like [`RunningMember::start_on`], with more on the client port: `mount` adds gRPC
    /// services to the routes of the etcd API and may add an HTTP service beside them (the
    /// API server does both; see `front_door.rs`).
    pub async fn start_serving(
        config: MemberConfig,
        peer_listener: TcpListener,
        client_listener: TcpListener,
        mount: impl FnOnce(Routes, &Store) -> ClientServices,
    ) -> Result<Self, ServerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let db = Db::open(&config.data_dir.join("db"))?;
        crate::format::open(&db)?;
        let peer_addr = peer_listener
            .local_addr()
            .map_err(|source| ServerError::Bind {
                what: "peer",
                addr: config.listen_peer,
                source,
            })?;
        let client_addr = client_listener
            .local_addr()
            .map_err(|source| ServerError::Bind {
                what: "client",
                addr: config.listen_client,
                source,
            })?;

        let me = Member {
            name: config.name.clone(),
            peer_addr: peer_addr.to_string(),
            client_addr: client_addr.to_string(),
        };
        let metrics = StoreMetrics::registered(&config.metrics);
        let (state_machine, keyspace) = StateMachine::open(db.clone(), metrics.clone())?;
        let restoration = crate::restore::restoration(&db)?;
        let unsettled = restoration.as_ref().is_some_and(|r| !r.settled);
        if unsettled && config.join.is_some() {
            return Err(ServerError::RestoredJoin {
                path: config.data_dir.clone(),
            });
        }
        let initial = initial_cluster(&config, &me, restoration.as_ref())?;
        let identity = Arc::new(identity(&db, &config, initial.as_ref(), &keyspace)?);
        let id = identity.member();
        let (heartbeat, lease) = raft_timers(&config.raft)?;
        let raft_config = Config {
            cluster_name: "rudder".into(),
            heartbeat_interval: heartbeat,
            // Elections are `campaign.rs`'s: openraft's timer is off, and its maximum
            // timeout is only the lease every voter checks; its minimum is the time a vote
            // request may take.
            enable_elect: false,
            election_timeout_min: lease - 1,
            election_timeout_max: lease,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.raft.snapshot_entries),
            max_in_snapshot_log_to_keep: config.raft.keep_entries,
            purge_batch_size: 256,
            ..Config::default()
        }
        .validate()?;
        let peers = PeerClients::new(
            identity.clone(),
            config.peer_tls.as_ref().map(|tls| tls.client.clone()),
        );
        let raft = Raft::new(
            id,
            Arc::new(raft_config),
            PeerNetwork {
                clients: peers.clone(),
                retry_after: config.raft.heartbeat_interval,
                append_limit: APPEND_LIMIT,
                snapshots_sent: metrics.snapshots_sent.clone(),
            },
            LogStore::new(db.clone(), metrics.clone()),
            state_machine,
        )
        .await?;
        let campaign = Campaign::new(
            id,
            raft.clone(),
            peers.clone(),
            ElectionTimer::new(config.raft.election_timeout),
        );
        let store = Store::new(
            id,
            raft.clone(),
            keyspace,
            config.store.clone(),
            peers,
            db.clone(),
            metrics.clone(),
        );
        // Before anything serves: no member is added until a restored keyspace is settled.
        store.set_restoring(unsettled);
        config
            .metrics
            .register_collector(MemberFigures::new(&store));

        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let peer_service = RaftPeerServer::new(PeerService::new(
            raft.clone(),
            store.clone(),
            identity.clone(),
            campaign.clone(),
        ))
        .max_decoding_message_size(PEER_MAX_MESSAGE_BYTES)
        .max_encoding_message_size(PEER_MAX_MESSAGE_BYTES);
        // openraft abandons an RPC its heartbeat interval left unanswered, which resets the
        // HTTP/2 stream; on a loaded member many are reset before the server accepted them,
        // and past h2's limit of 20 such streams the whole connection was torn down, taking
        // forwarded client writes and votes with it. Peers reset streams as a matter of
        // course, so the limit is raised here (the client port keeps h2's default).
        let peer_server = tonic::transport::Server::builder()
            .http2_max_pending_accept_reset_streams(Some(PEER_MAX_PENDING_ACCEPT_RESETS))
            .add_service(peer_service);
        use futures::FutureExt;
        let until_stopped = until(stopped.clone());
        let peer_server = match &config.peer_tls {
            None => peer_server
                .serve_with_incoming_shutdown(accepted_without_nagle(peer_listener), until_stopped)
                .boxed(),
            Some(tls) => peer_server
                .serve_with_incoming_shutdown(
                    rudder_proto::masters_only::accepted_from_masters(
                        peer_listener,
                        tls.server.clone(),
                        "peer",
                    ),
                    until_stopped,
                )
                .boxed(),
        };
        tasks.spawn(async move {
            if let Err(error) = peer_server.await {
                tracing::error!(%error, "peer server failed");
            }
        });
        let services = mount(etcd::routes(store.clone(), &config.store.limits), &store);
        tasks.spawn(front_door::serve(
            client_listener,
            services,
            config.store.limits.max_concurrent_streams,
            stopped.clone(),
        ));
        tasks.spawn(expire_leases(store.clone(), stopped.clone()));
        tasks.spawn(watch_space(store.clone(), stopped.clone()));
        tasks.spawn(auto_compact(
            store.clone(),
            config.auto_compaction,
            stopped.clone(),
        ));
        tasks.spawn(store.clone().publish_self(me.clone(), stopped.clone()));
        tasks.spawn(campaign.clone().run(stopped.clone()));
        if unsettled {
            tasks.spawn(crate::restore::settle(
                raft.clone(),
                db.clone(),
                store.clone(),
                stopped.clone(),
            ));
        }
        tasks.spawn(count_leader_changes(
            raft.server_metrics(),
            metrics.leader_changes.clone(),
        ));

        let member = Self {
            id,
            store,
            client_addr,
            peer_addr,
            identity,
            raft,
            db,
            campaign,
            stop,
            tasks,
        };
        member.form_cluster(&config, initial, me).await?;
        tracing::info!(name = %config.name, id = format_args!("{id:x}"), %client_addr, %peer_addr, "member started");
        Ok(member)
    }

    async fn form_cluster(
        &self,
        config: &MemberConfig,
        initial: Option<InitialCluster>,
        me: Member,
    ) -> Result<(), ServerError> {
        if self.raft.is_initialized().await? {
            return Ok(());
        }
        if let Some(endpoint) = &config.join {
            // Learn the cluster first: its leader replicates to this member as soon as it is
            // added, before the answer to Join arrives, and this member must admit that.
            let deadline = tokio::time::Instant::now() + config.store.request_timeout * 4;
            let peers = self.store.peers();
            let cluster_id = ask(endpoint, peers, &ForwardRequest::Hello, deadline).await?;
            save_identity(&self.db, self.id, cluster_id)?;
            self.identity.learn(cluster_id);
            let join = ForwardRequest::Join {
                id: self.id,
                member: me,
            };
            ask(endpoint, peers, &join, deadline).await?;
            return Ok(());
        }
        let Some(initial) = initial else {
            return Err(ServerError::NoClusterToForm);
        };
        // Every initial member must propose exactly the same membership: openraft treats the
        // initial entries as one log entry, so any difference (say, each member filling in its
        // own client address) would leave replicas with different contents at the same log id.
        // Client addresses are published afterwards through the log (see `publish_self`).
        // A cluster of one proposes alone, so it can list its real (bound) addresses: a
        // bootstrap on port 0 is then reachable before it publishes itself.
        let alone = initial.members.len() == 1;
        let members: BTreeMap<NodeId, Member> = if alone {
            // Its id as first stored (a restart draws a new random token).
            BTreeMap::from([(self.id, me)])
        } else {
            initial
                .members
                .into_iter()
                .map(|(id, (name, peer_addr))| {
                    let member = Member {
                        name,
                        peer_addr,
                        client_addr: String::new(),
                    };
                    (id, member)
                })
                .collect()
        };
        // Every initial member proposes the same membership; whichever lands first wins and
        // the others' attempts are refused harmlessly.
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                tracing::debug!("cluster already initialized by a peer");
                Ok(())
            }
            Err(RaftError::APIError(InitializeError::NotInMembers(_))) => {
                Err(ServerError::InitialClusterChanged {
                    name: config.name.clone(),
                })
            }
            Err(RaftError::Fatal(fatal)) => Err(ServerError::Raft(fatal)),
        }
    }

    /// The cluster this member belongs to (`None` while it is joining).
    pub fn cluster_id(&self) -> Option<u64> {
        self.identity.cluster()
    }

    /// How many peer messages this member refused (from another cluster, or meant for
    /// another member) since it started.
    pub fn refused_peer_messages(&self) -> u64 {
        self.identity.refused()
    }

    /// Failpoint: every later disk write of this member fails (for fault tests and chaos).
    pub fn inject_disk_failure(&self) {
        self.db.inject_write_failure();
    }

    /// Resolves when Raft stopped on its own (a storage failure): the process should exit.
    pub async fn failed(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "raft stopped".into();
            }
        }
    }

    /// How this member's elections began since it started.
    pub fn elections(&self) -> ElectionCounts {
        self.campaign.counts()
    }

    /// Stops serving and shuts Raft down; the data directory stays consistent. A leader
    /// first hands leadership over, so the cluster does not wait out an election timeout.
    pub async fn shutdown(mut self) {
        self.store.hold_writes();
        self.campaign.retire();
        // Writes taken before the hold reach the log first: the follower handed over to
        // must hold them when it asks for votes, or the old leader refuses its vote.
        self.store.writes_drained(self.campaign.lease()).await;
        if let Some(target) = self.campaign.hand_over().await {
            tracing::info!(to = format_args!("{target:x}"), "leadership handed over");
        }
        let _ = self.stop.send(true);
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "raft shutdown");
        }
        // Servers finish the requests in flight, but one waiting on Raft (a forwarded write,
        // a read index) would wait out its whole request timeout now that Raft has stopped:
        // give them a moment, then end them.
        let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::debug!("ending requests still in flight at shutdown");
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        // RocksDB closes (and frees its directory lock) when its last owner lets go; Raft's
        // storage tasks may still be finishing. Wait for them a moment, so that the
        // directory can be opened again — in this process too — once this returns.
        let Self {
            store, raft, db, ..
        } = self;
        drop((store, raft));
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while db.owners() > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if db.owners() > 1 {
            tracing::warn!(
                owners = db.owners(),
                "the store database is still in use after shutdown"
            );
        }
    }
}

/// The connections a listener accepts, with Nagle's algorithm off. tonic's own `tcp_nodelay`
/// applies only to listeners it binds itself; left on, small replies wait for the peer's
/// delayed ACK (about 40 ms on Linux) — on every linearizable read and many writes.
fn accepted_without_nagle(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

/// openraft's heartbeat interval and lease (milliseconds), once they make sense together.
fn raft_timers(options: &RaftOptions) -> Result<(u64, u64), ServerError> {
    let heartbeat_ms = options.heartbeat_interval.as_millis() as u64;
    let election_ms = options.election_timeout.as_millis() as u64;
    if heartbeat_ms == 0 || election_ms < heartbeat_ms * 3 {
        return Err(ServerError::RaftTimers {
            heartbeat_ms,
            election_ms,
        });
    }
    Ok((heartbeat_ms, election_ms))
}

/// Binds a listener, naming which address failed.
pub async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { what, addr, source })
}

async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// The cluster `config` bootstraps, if it bootstraps one. A cluster of one lists its bound
/// peer address (its configured one may be port 0, which would make every such cluster
/// look alike).
fn initial_cluster(
    config: &MemberConfig,
    me: &Member,
    restoration: Option<&crate::restore::Restoration>,
) -> Result<Option<InitialCluster>, ServerError> {
    if config.join.is_some() || config.initial_cluster.is_empty() {
        return Ok(None);
    }
    // A cluster of one agrees with nobody: without a token it takes a random one, so that
    // two such clusters never share an identity (its ids are kept from the first start).
    let token = match config.initial_cluster.as_slice() {
        [_] if config.initial_cluster_token.is_empty() => format!("{:x}", rand::random::<u64>()),
        _ => crate::restore::cluster_token(&config.initial_cluster_token, restoration),
    };
    let entries = match config.initial_cluster.as_slice() {
        [(name, _)] if *name == config.name => vec![(name.clone(), me.peer_addr.clone())],
        entries => entries.to_vec(),
    };
    Ok(Some(InitialCluster::new(&token, &entries)?))
}

/// This member's id and cluster id, as stored in the data directory; chosen and stored on
/// the first start. An initial member derives both from the initial cluster; a joining
/// member picks a random id (the cluster refuses used ones) and learns the cluster id when
/// it is admitted. A data directory from before cluster ids were stored takes the one its
/// state machine derived.
fn identity(
    db: &Db,
    config: &MemberConfig,
    initial: Option<&InitialCluster>,
    keyspace: &Keyspace,
) -> Result<Identity, ServerError> {
    if let Some(id) = db.get::<NodeId>(CF_RAFT, "member_id")? {
        let mut cluster = db.get::<u64>(CF_RAFT, "cluster_id")?;
        if cluster.is_none() {
            let derived = keyspace.read().meta.cluster_id;
            if derived != 0 {
                save_identity(db, id, derived)?;
                cluster = Some(derived);
            }
        }
        return Ok(Identity::new(id, cluster));
    }
    if config.join.is_some() {
        let id = (rand::random::<u64>() >> 1).max(1);
        let mut batch = WriteBatch::default();
        db.put_in(&mut batch, CF_RAFT, "member_id", &id)?;
        db.write_synced(batch)?;
        return Ok(Identity::new(id, None));
    }
    let Some(initial) = initial else {
        return Err(ServerError::NoClusterToForm);
    };
    let Some(id) = initial.id_of(&config.name) else {
        return Err(ServerError::NotInInitialCluster {
            name: config.name.clone(),
        });
    };
    save_identity(db, id, initial.cluster_id)?;
    Ok(Identity::new(id, Some(initial.cluster_id)))
}

fn save_identity(db: &Db, id: NodeId, cluster_id: u64) -> Result<(), ServerError> {
    let mut batch = WriteBatch::default();
    db.put_in(&mut batch, CF_RAFT, "member_id", &id)?;
    db.put_in(&mut batch, CF_RAFT, "cluster_id", &cluster_id)?;
    db.write_synced(batch)?;
    Ok(())
}

/// Sends a joining member's `request` to whoever is at `endpoint`, again until `deadline`
/// while the cluster is not ready; returns the id of the cluster that answered.
async fn ask(
    endpoint: &str,
    peers: &PeerClients,
    request: &ForwardRequest,
    deadline: tokio::time::Instant,
) -> Result<u64, ServerError> {
    let error = |source| ServerError::Join {
        endpoint: endpoint.to_owned(),
        source,
    };
    let data = codec::encode(request).map_err(|e| {
        error(StoreError::UnexpectedReply {
            detail: e.to_string(),
        })
    })?;
    loop {
        let reply = peers.call(Rpc::Forward, endpoint, 0, data.clone()).await;
        let outcome = match reply {
            Ok(reply) => codec::decode::<Result<ForwardResponse, StoreError>>(&reply.data)
                .map_err(|e| StoreError::UnexpectedReply {
                    detail: e.to_string(),
                })
                .and_then(|result| result)
                .map(|_| reply.envelope.cluster_id),
            // This data directory already belongs to another cluster: retrying cannot help.
            Err(foreign @ CallError::Foreign { .. }) => {
                return Err(error(StoreError::Membership {
                    reason: foreign.to_string(),
                }))
            }
            Err(call) => Err(StoreError::LeaderUnreachable {
                leader: endpoint.into(),
                reason: match call {
                    CallError::Status { status, .. } => status.message().into(),
                    other => other.to_string(),
                },
            }),
        };
        match outcome {
            Ok(0) => {
                return Err(error(StoreError::UnexpectedReply {
                    detail: "the member that admitted this one named no cluster".into(),
                }))
            }
            Ok(cluster_id) => return Ok(cluster_id),
            Err(fatal @ (StoreError::MemberIdUsed { .. } | StoreError::Membership { .. })) => {
                return Err(error(fatal))
            }
            Err(retry) if tokio::time::Instant::now() < deadline => {
                tracing::info!(error = %retry, "cluster not ready to add this member yet; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(last) => return Err(error(last)),
        }
    }
}

/// This member's space, measured ten times a second for the quota ([`Store::watch_space`]).
async fn watch_space(store: Store, mut stopped: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => store.watch_space().await,
            _ = stopped.changed() => return,
        }
    }
}

/// The leader's lease duty, a few times per second; idle on followers.
async fn expire_leases(store: Store, mut stopped: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = ticker.tick() => store.expire_leases().await,
            _ = stopped.changed() => return,
        }
    }
}

/// The leader's automatic compaction; idle on followers and when retention is off.
async fn auto_compact(store: Store, retention: Retention, mut stopped: watch::Receiver<bool>) {
    let mut compactor = AutoCompactor::new(retention);
    if retention == Retention::Off {
        return;
    }
    let mut ticker = tokio::time::interval(compactor.interval());
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.changed() => return,
        }
        if !store.is_leader() {
            compactor.reset();
            continue;
        }
        let (current, compacted) = store.revisions();
        if let Some(target) = compactor.step(std::time::Instant::now(), current, compacted) {
            match store.compact(target).await {
                Ok(_) => tracing::info!(revision = target, "compacted history by retention"),
                Err(error) => tracing::debug!(%error, "automatic compaction skipped"),
            }
        }
    }
}
