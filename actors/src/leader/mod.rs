//! Leader election with fencing: one member at a time acts for a Lease
//! (`kube-system/rudder-controller-manager` by default; the scheduler has its own), and
//! every write it makes carries the [`Fence`] the API server checks, so a deposed leader's
//! writes are refused even while it still believes it leads.
//!
//! ```text
//!   Elector (shell) ── get lease ──► decide (pure) ── Acquire/Renew ──► update CAS / create
//!        │                                        └── Follow (until it expires)
//!        └── watch::Sender<Leadership> ──► controllers: act under Leading { fence }, stop on
//!                                          Following
//! ```
//!
//! - [`decide`]: the pure core (acquire a free or expired lease at epoch + 1, renew ours,
//!   follow someone else's until its expiry).
//! - [`elector`]: [`Elector`], the campaign on a tokio task, publishing [`Leadership`].
//! - [`config`]: [`ElectionConfig`], the lease's name and timers (15 s / 10 s / 2 s).
//! - [`term`]: [`while_leading`], what runs for each term of leadership, started with its
//!   fence and stopped before the next.
//! - [`identity`]: holder identities unique per process (`<name>_<uuid>`).

pub mod config;
pub mod decide;
pub mod elector;
pub mod identity;
pub mod term;

pub use config::{ConfigError, ElectionConfig};
pub use decide::{decide, Decision};
pub use elector::{Elector, Leadership};
pub use identity::unique_identity;
pub use rudder_proto::api::Fence;
pub use term::{spawn_while_leading, while_leading, Campaign, Term};
