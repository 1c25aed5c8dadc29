//! [`Masters`]: raftstore's in-process test cluster with a [`Master`] in each member's place,
//! for this crate's tests and for the tests of components that talk to the API (actors).
//! Built only with the feature `test-support`.

use std::future::Future;

use rudder_raftstore::compaction::Retention;
use rudder_raftstore::server::{RaftOptions, ServerError};
use rudder_raftstore::test_support::{Cluster, Kind, Options};
use rudder_raftstore::{MemberConfig, RunningMember, StoreOptions};
use tokio::net::TcpListener;

use crate::Master;

/// Masters in the members' places: `Cluster::<Masters>::start_kind(..)`.
pub struct Masters;

impl Masters {
    /// `size` masters with the default options and no automatic compaction, once elected.
    pub async fn start(size: usize) -> Cluster<Masters> {
        let options = Options {
            raft: RaftOptions::default(),
            store: StoreOptions::default(),
            auto_compaction: Retention::Off,
        };
        Cluster::<Masters>::start_kind(size, options).await
    }
}

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
