//! What can go wrong starting, faulting and healing a [`crate::cluster::ProcessCluster`].

use std::path::PathBuf;
use std::time::Duration;

use crate::network::PartitionError;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("starting {program:?}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("member {name} did not start: {detail}")]
    NotReady { name: String, detail: String },
    #[error("the pods workload could not start: {0}")]
    PodsWorkload(String),
    #[error("creating a scratch directory")]
    Scratch(#[source] std::io::Error),
    #[error("no leader within {0:?}")]
    NoLeader(Duration),
    #[error(transparent)]
    Partition(#[from] PartitionError),
    #[error("writing a member's failpoints file")]
    Failpoints(#[source] std::io::Error),
    #[error("worker nodes run only beside Rudder's masters")]
    NotRudder,
    #[error("node-loss faults need worker nodes (the pods workload starts them)")]
    NoNodes,
    #[error("partition faults need the members in namespaces of their own (the run starts them so when --faults names partition)")]
    NotPartitionable,
}
