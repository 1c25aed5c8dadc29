//! In-process masters for the integration tests of crates that talk to the API (actors,
//! node): raftstore's test cluster ([`Cluster`]) with a [`Master`] in each member's place.

use std::future::Future;
use std::time::Duration;

use rudder_proto::client::ApiClient;
use rudder_raftstore::compaction::Retention;
use rudder_raftstore::server::{MemberConfig, RaftOptions, RunningMember, ServerError};
use rudder_raftstore::test_support::{Cluster, Kind, Options};
use rudder_raftstore::{Store, StoreOptions};
use tokio::net::TcpListener;

use crate::master::Master;

/// Masters in the members' places of a [`Cluster`].
pub struct Masters;

impl Kind for Masters {
    type Member = Master;

    fn start_on(
        config: MemberConfig,
        peer: TcpListener,
        client: TcpListener,
    ) -> impl Future<Output = Result<Master, ServerError>> + Send + 'static {
        Master::start_on(config, peer, client)
    }

    fn member(master: &Master) -> &RunningMember {
        &master.member
    }

    fn shutdown(master: Master) -> impl Future<Output = ()> + Send {
        master.shutdown()
    }
}

/// `size` masters with default options (no automatic compaction) and a client of them,
/// once the `default` namespace exists.
pub async fn start(size: usize) -> (Cluster<Masters>, ApiClient) {
    let options = Options {
        raft: RaftOptions::default(),
        store: StoreOptions::default(),
        auto_compaction: Retention::Off,
    };
    let cluster = Cluster::<Masters>::start_kind(size, options).await;
    let client = ApiClient::new(cluster.client_endpoints());
    eventually("the default namespace is created", || async {
        client.get_object("namespaces", "", "default").await.is_ok()
    })
    .await;
    (cluster, client)
}

/// Waits for `condition`, checking every 20 ms; fails the test after 30 s.
pub async fn eventually<F, Fut>(what: &str, condition: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A linearizable read through `store`; returns the store's revision (every write committed
/// before the call is then applied on that member).
pub async fn revision(store: &Store) -> i64 {
    let (header, _) = store
        .range(rudder_raftstore::kv::RangeRequest {
            range: rudder_raftstore::kv::KeyRange::single(b"/".to_vec()),
            ..Default::default()
        })
        .await
        .expect("a linearizable read");
    header.revision
}
