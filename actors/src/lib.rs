//! `rudder-actors`: what keeps the cluster in its desired state. It talks to the API server
//! only through `rudder-proto`'s client (never to the store), like every component in the
//! seeds.
//!
//! ```text
//!  API ── list + watch ──► informer (reflector ─► cache with indexes) ─► handlers
//!                                                          │                 │ keys
//!                                                          ▼                 ▼
//!                       controller actor: work queue ─► reconcile (pure) ─► actions ─► API
//!                                                           (writes carry the leader's Fence)
//! ```
//!
//! - [`informer`]: list, watch from the list's revision, resume a broken stream from the last
//!   revision seen (on any master), relist on 410; a shared cache per resource with indexes
//!   (owner uid, node name, pluggable) and selector queries; subscribers receive
//!   Added/Updated/Deleted/Synced as a stream an actor adds with `ctx.add_message_stream`.

pub mod informer;
