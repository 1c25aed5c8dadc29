//! `rudder-tests`: end-to-end tests against the real `rudder` binary.
//!
//! [`ProcessCluster`] starts `rudder server` processes on loopback (port 0, addresses read
//! from each member's ready line), kills them by PID (SIGKILL for crash tests), restarts them
//! on the same data directory and ports, and kills every process it started when dropped —
//! also when a test fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rudder_proto::etcdserverpb::kv_client::KvClient;
use rudder_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use rudder_proto::etcdserverpb::StatusRequest;
use tempfile::TempDir;
use tonic::transport::Channel;

/// The `rudder` binary: `$RUDDER_BIN`, or the one built alongside the tests
/// (`target/<profile>/rudder`).
pub fn rudder_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("RUDDER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let binary = profile_dir.join("rudder");
    assert!(
        binary.exists(),
        "{binary:?} is missing: build it with `cargo build -p rudder-cli`"
    );
    binary
}

/// One `rudder server` process.
pub struct ServerProcess {
    pub name: String,
    pub data_dir: PathBuf,
    pub client_addr: String,
    pub peer_addr: String,
    pub id: u64,
    child: Option<Child>,
}

impl ServerProcess {
    /// Starts a member and waits for its ready line.
    pub fn start(
        name: &str,
        data_dir: &Path,
        client: &str,
        peer: &str,
        cluster_flag: &[String],
    ) -> Self {
        let log = std::fs::File::create(data_dir.with_extension("log")).expect("a log file");
        let mut child = Command::new(rudder_binary())
            .args(["server", "--name", name, "--data-dir"])
            .arg(data_dir)
            .args(["--listen-client", client, "--listen-peer", peer])
            .args(cluster_flag)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starting rudder server");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the ready line");
        // "rudder server NAME ready: client ADDR peer ADDR id HEX"
        let words: Vec<&str> = line.split_whitespace().collect();
        let ready = words.len() == 10 && words[3] == "ready:";
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default();
            panic!("member {name} did not start: {line:?}\n{log}");
        }
        Self {
            name: name.into(),
            data_dir: data_dir.into(),
            client_addr: words[5].into(),
            peer_addr: words[7].into(),
            id: u64::from_str_radix(words[9], 16).expect("hex member id"),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Restarts on the same data directory and addresses.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill the member before restarting it");
        let again = Self::start(
            &self.name,
            &self.data_dir,
            &self.client_addr,
            &self.peer_addr,
            &[],
        );
        assert_eq!(again.id, self.id, "a restarted member keeps its id");
        *self = again;
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct ProcessCluster {
    pub dir: TempDir,
    pub members: Vec<ServerProcess>,
}

impl ProcessCluster {
    /// The first member bootstraps a one-member cluster; the others join it.
    pub fn start(size: usize) -> Self {
        let dir = TempDir::new().expect("a temporary directory");
        let any = "127.0.0.1:0";
        let first_dir = dir.path().join("m1");
        let first = ServerProcess::start(
            "m1",
            &first_dir,
            any,
            any,
            &["--initial-cluster".into(), "m1=127.0.0.1:0".into()],
        );
        let join = vec!["--join".to_string(), first.peer_addr.clone()];
        let mut members = vec![first];
        for n in 2..=size {
            let name = format!("m{n}");
            members.push(ServerProcess::start(
                &name,
                &dir.path().join(&name),
                any,
                any,
                &join,
            ));
        }
        Self { dir, members }
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_addr.clone()).collect()
    }

    /// The index of the member the running members agree leads, waiting up to 10 s.
    pub async fn leader(&self) -> usize {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            for member in self.members.iter().filter(|m| m.is_running()) {
                if let Ok(mut client) = maintenance(&member.client_addr).await {
                    if let Ok(status) = client.status(StatusRequest {}).await {
                        let leader = status.into_inner().leader;
                        if let Some(i) = self
                            .members
                            .iter()
                            .position(|m| m.id == leader && m.is_running())
                        {
                            return i;
                        }
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no leader within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub async fn channel(addr: &str) -> Result<Channel, tonic::transport::Error> {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
}

pub async fn kv(addr: &str) -> Result<KvClient<Channel>, tonic::transport::Error> {
    Ok(KvClient::new(channel(addr).await?))
}

pub async fn maintenance(
    addr: &str,
) -> Result<MaintenanceClient<Channel>, tonic::transport::Error> {
    Ok(MaintenanceClient::new(channel(addr).await?))
}
