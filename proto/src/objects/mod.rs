//! Pure helpers over Kubernetes objects that every side needs: the API server to validate
//! and list, the controllers and the scheduler to match, the CLI to print. No I/O, no clock.
//!
//! - [`selector`]: label selectors (text form, `metav1.LabelSelector`, matching a label map)
//!   and field selectors.
//! - [`disruption`]: PodDisruptionBudgets: which budgets guard a pod, pod readiness, the
//!   `DisruptionAllowed` condition (the eviction subresource and the disruption controller),
//!   and the `DisruptionTarget` pod condition (the eviction subresource, PodGC).
//! - [`deletion`]: the finalizers that carry Foreground and Orphan deletion and a
//!   namespace's emptying between the API server and the controllers.
//! - [`kubelet`]: where a node's streaming endpoint is (logs, exec).
//! - [`names`]: the syntax of names, label keys and values (`IsDNS1123Label`,
//!   `IsQualifiedName`, ...), worded like apimachinery.
//! - [`quantity`]: resource quantities (`500m`, `64Mi`), parsed exactly; the API server
//!   validates them, the node turns limits into cgroup values.
//! - [`taints`]: taints and tolerations with Kubernetes' semantics, the well-known node
//!   taints, and the DefaultTolerationSeconds admission (the API server applies it; the
//!   scheduler, the DaemonSet and node lifecycle controllers match with it).
//! - [`priority`]: PriorityClasses: the built-in `system-node-critical` and
//!   `system-cluster-critical`, and the priority a new pod gets from its class (the API
//!   server's Priority admission; the scheduler's preemption reads the policy names).
//! - [`storage`]: StorageClasses (the built-in default `local-path`, which class is the
//!   default) and the annotations that bind claims, volumes and nodes (DefaultStorageClass
//!   admission, the scheduler's VolumeBinding, the PersistentVolume controller).

pub mod cidr;
pub mod deletion;
pub mod disruption;
pub mod kubelet;
pub mod names;
pub mod priority;
pub mod quantity;
pub mod selector;
pub mod storage;
pub mod taints;
