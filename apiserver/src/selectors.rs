//! The label and field selectors of a list or watch request, parsed and checked against the
//! kind, and matched against objects. Pure.

use rudder_proto::objects::selector::{FieldSelector, LabelSelector};
use serde_json::Value;

use crate::error::ApiError;
use crate::kinds::KindInfo;
use crate::object;

/// Both selectors of a request, parsed and checked against the kind.
#[derive(Debug, Clone)]
pub struct Selectors {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selectors {
    pub fn parse(info: &KindInfo, labels: &str, fields: &str) -> Result<Self, ApiError> {
        let labels = LabelSelector::parse(labels)
            .map_err(|error| ApiError::bad_field("labelSelector", error.to_string()))?;
        let fields = FieldSelector::parse(fields)
            .map_err(|error| ApiError::bad_field("fieldSelector", error.to_string()))?;
        if let Some(unknown) = fields.fields().into_iter().find(|f| !info.selects_field(f)) {
            let mut supported = vec!["metadata.name", "metadata.namespace"];
            supported.extend(info.selectable_fields);
            return Err(ApiError::bad_field(
                "fieldSelector",
                format!(
                    "field label not supported: {unknown:?} ({} support {})",
                    info.qualified_resource(),
                    supported.join(", ")
                ),
            ));
        }
        Ok(Self { labels, fields })
    }

    pub fn is_everything(&self) -> bool {
        self.labels.is_everything() && self.fields.is_everything()
    }

    /// The value the field selector requires `field` to have, if it requires one.
    pub fn required_field(&self, field: &str) -> Option<&str> {
        self.fields.required(field)
    }

    pub fn matches(&self, object: &Value) -> bool {
        (self.labels.is_everything() || self.labels.matches(&object::labels(object)))
            && (self.fields.is_everything()
                || self
                    .fields
                    .matches(|path| object::field_value(object, path)))
    }
}
