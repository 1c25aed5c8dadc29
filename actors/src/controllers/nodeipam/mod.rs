//! The node IPAM controller (kube-controller-manager's range allocator): a node registered
//! without a pod range gets the next free block of `--cluster-cidr` in `spec.podCIDR`, and
//! its kubelet builds the pod network on it.
//!
//! - `allocate.rs`: the lowest free block for each node without one, pure.
//! - `actor.rs`: the shell: node events to one cluster-wide pass, assignments written under
//!   the fence and held as taken until the cache shows them.

pub mod actor;
pub mod allocate;
