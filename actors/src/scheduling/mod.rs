//! Where a pod may run, as Kubernetes decides it; shared by the DaemonSet controller, the node
//! lifecycle controller (eviction), the PersistentVolume controller, the scheduler and the
//! API server's admission. Pure.
//!
//! - [`taints`] (from `rudder_proto::objects`, the API server's admission uses it too):
//!   taints and tolerations (`ToleratesTaint`, the untolerated taint of a set of
//!   effects, the tolerations a pod uses), the well-known node taints, and the
//!   DefaultTolerationSeconds admission.
//! - [`node_affinity`]: `nodeSelector` and required node affinity (`nodeSelectorTerms` ORed,
//!   `matchExpressions` and `matchFields` ANDed) against a node.
//! - [`volumes`]: which PersistentVolume a claim may use and on which node (a volume's node
//!   affinity, `FindMatchingVolume`), shared by the scheduler's VolumeBinding and the
//!   PersistentVolume controller.

pub mod node_affinity;
pub mod volumes;
pub use rudder_proto::objects::taints;
