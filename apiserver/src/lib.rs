//! The API server: Kubernetes objects over Rudder's replicated store.
//!
//! - [`validation`]: pure checks and defaults per kind, with field-pathed errors.
pub mod validation;
