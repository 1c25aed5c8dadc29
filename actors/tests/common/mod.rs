//! An in-process control plane for the actors' tests: raftstore's test cluster with an API
//! server in each member's place ([`Masters`]), and a [`Proxy`] that can cut one client off
//! the API (every connection dropped, new ones refused) without stopping anything, and the
//! leader-elected components on threads of their own ([`Component`]).

#![allow(dead_code)]

use std::sync::Arc;

use rudder_actors::leader::ConfigError;
use rudder_actors::leader::ElectionConfig;
use rudder_actors::manager::{self, ManagerConfig};
use rudder_actors::scheduler::run::{self, SchedulerConfig};
use rudder_actors::selection::Selection;
use rudder_apiserver::test_support::{self, eventually, Masters};
use rudder_proto::client::ApiClient;
use rudder_raftstore::test_support::Cluster;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Plane {
    pub cluster: Cluster<Masters>,
    pub client: Arc<ApiClient>,
}

impl Plane {
    /// `size` masters, once `kube-system` exists.
    pub async fn start(size: usize) -> Self {
        let (cluster, client) = test_support::start(size).await;
        let client = Arc::new(client);
        eventually("kube-system is created", || async {
            client
                .get_object("namespaces", "", "kube-system")
                .await
                .is_ok()
        })
        .await;
        Self { cluster, client }
    }

    /// A client of its own (as another process would have).
    pub fn new_client(&self) -> Arc<ApiClient> {
        Arc::new(ApiClient::new(self.cluster.client_endpoints()))
    }

    pub async fn shutdown(self) {
        self.cluster.shutdown().await;
    }
}

/// A TCP proxy in front of one address; [`Proxy::block`] cuts every connection through it.
pub struct Proxy {
    pub address: String,
    blocked: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let (blocked, watching) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *watching.borrow() {
                    continue; // dropped: the client sees the connection fail
                }
                let target = target.clone();
                let mut watching = watching.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watching.wait_for(|blocked| *blocked) => {}
                    }
                });
            }
        });
        Self {
            address,
            blocked,
            task,
        }
    }

    pub fn block(&self) {
        self.blocked.send_replace(true);
    }

    pub fn unblock(&self) {
        self.blocked.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Short election timers for tests: lease 3 s, renew deadline 2 s, retry 250 ms.
fn quick(election: ElectionConfig) -> ElectionConfig {
    ElectionConfig {
        lease_duration: std::time::Duration::from_secs(3),
        renew_deadline: std::time::Duration::from_secs(2),
        retry_period: std::time::Duration::from_millis(250),
        ..election
    }
}

/// A leader-elected component (the controller manager, the scheduler) on a thread of its own
/// with [`quick`] election timers, against `client`.
pub struct Component {
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<Result<(), ConfigError>>,
}

impl Component {
    pub fn controller_manager(client: Arc<ApiClient>) -> Self {
        Self::controllers(client, "*")
    }

    /// The controller manager running only the `--controllers` `selection`.
    pub fn controllers(client: Arc<ApiClient>, selection: &str) -> Self {
        let defaults = ManagerConfig::new("test-master");
        let config = ManagerConfig {
            election: quick(defaults.election.clone()),
            controllers: Selection::parse(selection).expect("a valid --controllers"),
            ..defaults
        };
        let (stop, stopped) = watch::channel(false);
        let thread = manager::spawn_in_system(client, config, stopped).expect("a thread");
        Self { stop, thread }
    }

    /// The controller manager with `config` as a test made it (its election timers quick).
    pub fn controller_manager_with(client: Arc<ApiClient>, config: ManagerConfig) -> Self {
        let config = ManagerConfig {
            election: quick(config.election.clone()),
            ..config
        };
        let (stop, stopped) = watch::channel(false);
        let thread = manager::spawn_in_system(client, config, stopped).expect("a thread");
        Self { stop, thread }
    }

    pub fn scheduler(client: Arc<ApiClient>) -> Self {
        let defaults = SchedulerConfig::new("test-master");
        let config = SchedulerConfig {
            election: quick(defaults.election.clone()),
            ..defaults
        };
        let (stop, stopped) = watch::channel(false);
        let thread = run::spawn_in_system(client, config, stopped).expect("a thread");
        Self { stop, thread }
    }

    /// Stops it and waits for the thread.
    pub async fn stop(self) {
        self.stop.send(true).expect("the component listens");
        let thread = self.thread;
        let outcome = tokio::task::spawn_blocking(move || thread.join())
            .await
            .expect("joined");
        outcome
            .expect("the component's thread")
            .expect("a valid config");
    }
}
