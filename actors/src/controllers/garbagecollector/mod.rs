//! The garbage collector, as Kubernetes': objects whose owners are gone are deleted, and
//! owners deleted with Foreground or Orphan propagation have their dependents deleted first
//! or released, then lose the finalizer that held them. It takes over what the API server
//! used to do inside the delete request, so a cascade a killed master interrupted completes
//! on the next leader (the graph is rebuilt from the lists; an owner found absent is acted
//! on whenever that is seen).
//!
//! - `graph.rs` (pure): the ownership graph by uid;
//! - `decide.rs` (pure): what to do about one owner or dependent, table-tested;
//! - `actor.rs`: metadata-only informers over every kind into the graph, the API reads
//!   that confirm an owner's absence, the fenced writes.

pub mod actor;
pub mod decide;
pub mod graph;
