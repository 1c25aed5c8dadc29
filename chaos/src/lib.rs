//! `rudder-chaos`: drives clusters under test and measures them.
//!
//! - [`cluster`]: start, kill (by PID), restart real member processes — Rudder's or etcd's
//!   ([`cluster_error`]: what can go wrong);
//!   [`network`]: the members each in a network namespace of their own, for
//!   [`partition`]s (which links a partition's shape cuts; pure) and [`delay`]s (packets
//!   held on a member's links); [`disk`]: disk faults
//!   as failpoints in Rudder's log store, and what they must do (pure); [`nodes`]: hollow
//!   worker nodes beside Rudder's masters, a few per process, for node loss.
//! - [`client`]: etcd v3 gRPC clients; everything here speaks only that API, so the same
//!   code measures Rudder and etcd side by side.
//! - [`bench`]: load generators (`rudder bench kv ...`), failover measurement, and the pure
//!   statistics they report.
//!
//! - [`check`]: pure checkers of recorded histories ([`check::once`]: nothing applied
//!   twice, nothing acknowledged lost; [`check::linear`]: linearizability, key by key;
//!   [`check::watch`]: watches against the store's history; [`check::serializable`]:
//!   serializable reads against it; [`check::kube`]: Kubernetes' invariants over the
//!   objects' record); [`recovery`]: how soon writes
//!   were answered again after each kind of fault (a figure, not a check); [`durability`]:
//!   the whole cluster killed at once and restarted, and its replicas' hashes compared.
//!
//! - [`workload`]: client loads that record every operation for the checkers
//!   ([`workload::kv`]: puts, deletes, reads, swaps and leases through the etcd API;
//!   [`workload::objects`]: ConfigMaps swapped through the Rudder API; [`workload::pods`]:
//!   ReplicaSets, Deployments and a StatefulSet on hollow nodes; [`workload::watchers`]:
//!   watches that resume across faults); [`history`]: the store's own record of the
//!   changes, read back from the healed cluster.
//!
//! The runner of DESIGN.md §8 (`rudder chaos run`):
//! - [`schedule`]: the faults a seed draws (pure); [`inject`]: carrying them out on a
//!   [`cluster::ProcessCluster`], each healed, recorded as it happened;
//! - [`run`]: cluster, workload, faults, checks ([`live`]: its counts as it goes, for a
//!   progress line); [`report`]: what a run did and found, its
//!   verdict and its text (pure); [`timeline`]: the report as an HTML page (pure).

pub mod bench;
pub mod check;
pub mod client;
pub mod cluster;
pub mod cluster_error;
pub mod delay;
pub mod disk;
pub mod durability;
pub mod history;
pub mod inject;
pub mod live;
pub mod network;
pub mod nodes;
pub mod partition;
pub mod recovery;
pub mod report;
pub mod run;
pub mod schedule;
pub mod timeline;
pub mod workload;
