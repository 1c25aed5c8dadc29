//! Label selectors (`app=web,tier in (a,b),!canary`) and field selectors
//! (`spec.nodeName=n1,status.phase!=Running`): parsing and matching.
//!
//! Both follow apimachinery (`pkg/labels/selector.go`, `pkg/fields/selector.go`), so a
//! selector kubectl sends is accepted, matches the same objects and prints the same here:
//!
//! ```text
//! "tier in (b,a), app = web"  --parse-->  [app = web, tier in {a,b}]  --Display-->
//! "app=web,tier in (a,b)"                 (requirements sorted by key, values sorted)
//! ```
//!
//! - [`LabelSelector`] (`label.rs`): requirements, matching against a label map, the
//!   canonical text. Built from text by `parse.rs` over `lexer.rs`'s tokens, or from a
//!   workload's `metav1.LabelSelector` (matchLabels, matchExpressions) by `object.rs`
//!   (a nil one selects nothing), or from a plain label map (`LabelSelector::from_set`).
//! - [`FieldSelector`] (`field.rs`): `field=value` terms, matched through a lookup.
//! - [`SelectorError`] (`error.rs`): why a text form did not parse;
//!   [`SelectorProblem`]: what is wrong with a `metav1.LabelSelector`, field by field.

mod error;
mod field;
mod label;
mod lexer;
mod object;
mod parse;
#[cfg(test)]
mod testing;

pub use error::SelectorError;
pub use field::FieldSelector;
pub use label::LabelSelector;
pub use object::{ProblemKind, SelectorProblem};
