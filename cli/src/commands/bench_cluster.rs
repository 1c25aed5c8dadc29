//! The local clusters `rudder bench` spawns (or the endpoints it is given instead), shared by
//! every benchmark.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use rudder_chaos::cluster::ProcessCluster;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Store {
    Rudder,
    Etcd,
}

/// How to start a fresh local cluster for a benchmark.
#[derive(Args, Debug, Clone)]
pub struct SpawnArgs {
    /// Members of a spawned cluster.
    #[arg(long, default_value_t = 3)]
    pub members: usize,
    /// The etcd binary (Debian's etcd-server).
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd_binary: PathBuf,
    /// Extra flags for spawned `rudder server` members (e.g. "--election-timeout-ms=300").
    #[arg(long, allow_hyphen_values = true, value_delimiter = ' ')]
    pub rudder_flags: Vec<String>,
}

impl SpawnArgs {
    /// The given endpoints, or (none given) a spawned Rudder cluster's, with the cluster so
    /// it lives as long as the run.
    pub async fn rudder_unless_given(
        &self,
        given: &[String],
    ) -> anyhow::Result<(Option<ProcessCluster>, Vec<String>)> {
        if !given.is_empty() {
            return Ok((None, given.to_vec()));
        }
        let cluster = self.spawn(Store::Rudder).await?;
        let endpoints = cluster.endpoints();
        Ok((Some(cluster), endpoints))
    }

    pub async fn spawn(&self, store: Store) -> anyhow::Result<ProcessCluster> {
        Ok(match store {
            Store::Rudder => {
                let binary = std::env::current_exe().context("locating the rudder binary")?;
                ProcessCluster::start_rudder(&binary, self.members, &self.rudder_flags)?
            }
            Store::Etcd => ProcessCluster::start_etcd(&self.etcd_binary, self.members, &[]).await?,
        })
    }
}
