//! The finalizers through which deletion reaches dependents, as Kubernetes names them: the
//! API server adds them when a delete asks for Foreground or Orphan propagation (or when a
//! namespace is created), and the garbage collector and the namespace controller remove them
//! once their work is done.

/// Held by an owner deleted with Foreground propagation until its blocking dependents
/// (`blockOwnerDeletion: true`) are gone.
pub const FOREGROUND_DELETION: &str = "foregroundDeletion";
/// Held by an owner deleted with Orphan propagation until its dependents no longer name it.
pub const ORPHAN: &str = "orphan";
/// A namespace's `spec.finalizers` entry, removed by the namespace controller once the
/// namespace is empty (through the `finalize` subresource).
pub const NAMESPACE_CONTENTS: &str = "kubernetes";
