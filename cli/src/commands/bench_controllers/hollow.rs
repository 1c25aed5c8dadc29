//! The hollow nodes of a `rudder bench controllers` run: one `rudder node --hollow --count N`
//! process, waited for until every node is Ready, ended by its PID, and (against a cluster
//! the run did not start) its Node objects and Leases removed afterwards.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rudder_proto::api::{DeleteRequest, ListRequest};
use rudder_proto::client::ApiClient;
use serde_json::Value;

use super::figures::seconds;

/// The nodes are `bench-ctl-0` ... `bench-ctl-(N-1)`, labelled `rudder.dev/hollow=true`.
const NODE_PREFIX: &str = "bench-ctl";
const HOLLOW_SELECTOR: &str = "rudder.dev/hollow=true";

pub struct HollowNodes {
    child: tokio::process::Child,
    /// The process's stderr, shown when it exits early.
    log: PathBuf,
    count: usize,
}

impl HollowNodes {
    /// Starts `count` hollow nodes of `max_pods` each against `endpoints`, logging to a file
    /// in `scratch`.
    pub fn start(
        endpoints: &[String],
        count: usize,
        max_pods: usize,
        scratch: &Path,
    ) -> anyhow::Result<Self> {
        let binary = std::env::current_exe().context("locating the rudder binary")?;
        let log = scratch.join("hollow-nodes.log");
        let stderr = std::fs::File::create(&log).with_context(|| format!("creating {log:?}"))?;
        let child = tokio::process::Command::new(binary)
            .args(["node", "--name", NODE_PREFIX, "--hollow", "--count"])
            .arg(count.to_string())
            .arg("--max-pods")
            .arg(max_pods.to_string())
            .arg("--server")
            .arg(endpoints.join(","))
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .context("starting the hollow nodes")?;
        Ok(Self { child, log, count })
    }

    fn names(&self) -> impl Iterator<Item = String> {
        (0..self.count).map(|i| format!("{NODE_PREFIX}-{i}"))
    }

    /// Waits up to `limit` for every node to be registered and Ready (polled: this is setup,
    /// not measured).
    pub async fn await_ready(&mut self, client: &ApiClient, limit: Duration) -> anyhow::Result<()> {
        let wanted: BTreeSet<String> = self.names().collect();
        let started = Instant::now();
        let mut reported = Instant::now();
        loop {
            self.ensure_running()?;
            let listed = client
                .list(ListRequest {
                    resource: "nodes".into(),
                    label_selector: HOLLOW_SELECTOR.into(),
                    ..Default::default()
                })
                .await
                .context("listing the nodes")?;
            let ready = listed
                .items
                .iter()
                .filter_map(|item| serde_json::from_slice::<Value>(item).ok())
                .filter(|node| {
                    node["metadata"]["name"]
                        .as_str()
                        .is_some_and(|name| wanted.contains(name))
                        && node["status"]["conditions"].as_array().is_some_and(|all| {
                            all.iter()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                        })
                })
                .count();
            if ready == wanted.len() {
                eprintln!(
                    "{ready} hollow nodes Ready in {}",
                    seconds(started.elapsed())
                );
                return Ok(());
            }
            anyhow::ensure!(
                started.elapsed() < limit,
                "only {ready} of {} hollow nodes were Ready within {limit:?} (--timeout)",
                wanted.len()
            );
            if reported.elapsed() >= Duration::from_secs(1) {
                eprintln!("  nodes: {ready} of {} Ready", wanted.len());
                reported = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Fails if the process has exited, with the end of its log.
    fn ensure_running(&mut self) -> anyhow::Result<()> {
        let exited = self
            .child
            .try_wait()
            .context("checking on the hollow nodes' process")?;
        if let Some(status) = exited {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            bail!("the hollow nodes' process exited ({status}); the end of its log:\n{tail}");
        }
        Ok(())
    }

    /// SIGKILL to its PID, then reaps it.
    pub async fn stop(&mut self) {
        if let Err(error) = self.child.kill().await {
            eprintln!("warning: stopping the hollow nodes' process: {error}");
        }
    }

    /// Once stopped: removes the nodes' Node objects and Leases, so a cluster the run did not
    /// start is left as it was (failures are only reported).
    pub async fn remove_from(&self, client: &ApiClient) {
        for node in self.names() {
            for (resource, namespace) in [("nodes", ""), ("leases", "kube-node-lease")] {
                let deleted = client
                    .delete_object(DeleteRequest {
                        resource: resource.into(),
                        namespace: namespace.into(),
                        name: node.clone(),
                        ..Default::default()
                    })
                    .await;
                if let Err(error) = deleted {
                    if !error.is_not_found() {
                        eprintln!("warning: deleting {resource} {node}: {error}");
                    }
                }
            }
        }
    }
}
