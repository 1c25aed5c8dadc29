//! What [`super::messages`] describes: each message's fields, their wire kinds and JSON
//! names.

/// What a field holds, on the wire and in JSON.
#[derive(Debug)]
pub enum Kind {
    String,
    Bool,
    Int32,
    Int64,
    Bytes,
    /// A message, by name (`api.apps.v1.DeploymentSpec`).
    Message(&'static str),
    /// A message whose fields are the parent's in JSON (a Go embedded struct).
    Inline(&'static str),
    /// A map from strings to this kind.
    Map(&'static Kind),
}

#[derive(Debug)]
pub struct Field {
    pub tag: u32,
    /// The JSON name ("" for [`Kind::Inline`]).
    pub json: &'static str,
    pub kind: Kind,
    pub repeated: bool,
    /// Whether an empty value ("", 0, `false`) is a value. Go writes every non-pointer
    /// field; where its empty value means "unset" (JSON's `omitempty`) it is left out.
    pub keep_empty: bool,
}

#[derive(Debug)]
pub struct Message {
    pub name: &'static str,
    /// In tag order.
    pub fields: &'static [Field],
}
