//! Validation and defaulting of Kubernetes objects: pure functions over `k8s-openapi` types.
//!
//! Every problem is a [`FieldError`] naming the field by its JSON path, worded like the
//! Kubernetes API server's (`spec.replicas: Invalid value: -1: must be greater than or equal
//! to 0`), so users recognise the messages and can fix the field they name.

use std::fmt;

/// What is wrong with one field (Kubernetes' `field.ErrorType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// A required field is missing.
    Required,
    /// The value is malformed or out of range; carries the offending value as shown to users.
    Invalid { value: String },
    /// The value is not one of `allowed`.
    NotSupported { value: String, allowed: Vec<String> },
    /// The field may not be set (or changed) this way.
    Forbidden,
    /// The value repeats one already given.
    Duplicate { value: String },
    /// The value is longer than `max` (bytes or characters).
    TooLong { max: usize },
    /// The list has more than `max` items.
    TooMany { max: usize },
}

/// One invalid field: its JSON path (`spec.containers[0].name`), what kind of problem, and
/// a sentence saying what the field must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub kind: FieldErrorKind,
    pub detail: String,
}

impl FieldError {
    pub fn required(path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            kind: FieldErrorKind::Required,
            detail: detail.into(),
        }
    }

    pub fn invalid(
        path: impl Into<String>,
        value: impl fmt::Display,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            path: path.into(),
            kind: FieldErrorKind::Invalid {
                value: value.to_string(),
            },
            detail: detail.into(),
        }
    }

    pub fn forbidden(path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            kind: FieldErrorKind::Forbidden,
            detail: detail.into(),
        }
    }

    pub fn not_supported(
        path: impl Into<String>,
        value: impl fmt::Display,
        allowed: &[&str],
    ) -> Self {
        Self {
            path: path.into(),
            kind: FieldErrorKind::NotSupported {
                value: value.to_string(),
                allowed: allowed.iter().map(|a| a.to_string()).collect(),
            },
            detail: String::new(),
        }
    }

    pub fn duplicate(path: impl Into<String>, value: impl fmt::Display) -> Self {
        Self {
            path: path.into(),
            kind: FieldErrorKind::Duplicate {
                value: value.to_string(),
            },
            detail: String::new(),
        }
    }

    pub fn too_long(path: impl Into<String>, max: usize, detail: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            kind: FieldErrorKind::TooLong { max },
            detail: detail.into(),
        }
    }

    pub fn too_many(path: impl Into<String>, max: usize) -> Self {
        Self {
            path: path.into(),
            kind: FieldErrorKind::TooMany { max },
            detail: String::new(),
        }
    }

    /// The error for changing a field that cannot change after creation.
    pub fn immutable(path: impl Into<String>) -> Self {
        Self::forbidden(path, "field is immutable")
    }

    /// Kubernetes' reason string for this kind of problem (`FieldValueInvalid`, ...).
    pub fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid { .. } => "FieldValueInvalid",
            FieldErrorKind::NotSupported { .. } => "FieldValueNotSupported",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::Duplicate { .. } => "FieldValueDuplicate",
            FieldErrorKind::TooLong { .. } => "FieldValueTooLong",
            FieldErrorKind::TooMany { .. } => "FieldValueTooMany",
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path)?;
        match &self.kind {
            FieldErrorKind::Required => write!(f, "Required value")?,
            FieldErrorKind::Invalid { value } => write!(f, "Invalid value: {value:?}")?,
            FieldErrorKind::NotSupported { value, allowed } => {
                write!(f, "Unsupported value: {value:?}")?;
                if !allowed.is_empty() {
                    let quoted: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
                    write!(f, ": supported values: {}", quoted.join(", "))?;
                }
            }
            FieldErrorKind::Forbidden => write!(f, "Forbidden")?,
            FieldErrorKind::Duplicate { value } => write!(f, "Duplicate value: {value:?}")?,
            FieldErrorKind::TooLong { max } => write!(f, "Too long: may not be more than {max}")?,
            FieldErrorKind::TooMany { max } => {
                write!(f, "Too many: must have at most {max} items")?
            }
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

pub mod defaults;
pub mod kinds;
pub mod meta;
pub mod names;
pub use rudder_proto::objects::quantity;
pub mod selector;

/// Checks of one kind's own fields (metadata is checked by [`meta`]).
pub trait Validate {
    /// Problems with a new object.
    fn validate(&self) -> Vec<FieldError>;
    /// Problems with replacing `old` by `self`: everything `validate` checks, plus fields
    /// that may not change.
    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let _ = old;
        self.validate()
    }
}

/// Fills in what Kubernetes fills in when a field is left out (restart policy, protocol,
/// replicas, strategies, ...). Idempotent.
pub trait ApplyDefaults {
    fn apply_defaults(&mut self);

    /// What admission adds to a new object only (never on update), after the defaults.
    fn admit_new(&mut self) {}
}
