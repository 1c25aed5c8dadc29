//! `/openapi/v2`: one Swagger 2.0 document with the definitions of every served kind, as
//! kube-apiserver serves it: JSON, or (what client-go's `OpenAPISchema` asks for, and all
//! it reads) gnostic's protobuf form, [`PROTOBUF`]. Older kubectl validates and explains from it, and today's kubectl with
//! `explain --output=plaintext-openapiv2`.
//!
//! The definitions are openapi.rs' (k8s-openapi's schemas with the kinds' group-version-kind
//! and patch markers), rewritten for Swagger 2.0: references into `#/definitions/`, a
//! reference with a description (`allOf` of one) as a plain reference, IntOrString and
//! Quantity as Kubernetes writes them in v2 (`string`, the first with format
//! `int-or-string`). Clients read kinds from
//! the definitions; `paths` is left empty (the v3 documents describe the operations).
//!
//! The protobuf messages are the few of gnostic's `openapi_v2` (OpenAPIv2.proto) a document
//! of definitions needs, with their field numbers; vendor extensions and examples are
//! carried as gnostic carries them, as YAML text (JSON is YAML). Built once.

use std::sync::LazyLock;

use prost::Message;
use serde_json::{json, Map, Value};

use super::{discovery, openapi};

/// What client-go asks for.
const PROTOBUF_ASKED: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The protobuf form's content type, as kube-apiserver answers (an `@` is not allowed in a
/// media type: Go's parser, which kubectl uses, refuses the asked-for spelling), and the
/// other spelling clients ask for.
pub const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The document, in both forms.
pub struct DocumentV2 {
    pub json: bytes::Bytes,
    pub protobuf: bytes::Bytes,
}

pub static DOCUMENT: LazyLock<DocumentV2> = LazyLock::new(|| {
    let document = document();
    DocumentV2 {
        json: bytes::Bytes::from(document.to_string()),
        protobuf: bytes::Bytes::from(proto::document(&document).encode_to_vec()),
    }
});

/// Whether an `Accept` header asks for the protobuf form (pure); `q=0` refuses it.
pub fn wants_protobuf(accept: &str) -> bool {
    accept.split(',').any(|item| {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim();
        let refused = parts.any(|parameter| {
            let parameter = parameter.trim();
            parameter
                .strip_prefix("q=")
                .and_then(|q| q.parse::<f64>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !refused
            && (media.eq_ignore_ascii_case(PROTOBUF_ASKED) || media.eq_ignore_ascii_case(PROTOBUF))
    })
}

/// The definition Kubernetes' v2 document marks with format `int-or-string` (Quantity,
/// which k8s-openapi marks int-or-string too, is a plain string there).
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";

fn document() -> Value {
    let definitions: Map<String, Value> = openapi::all_definitions()
        .into_iter()
        .map(|(name, schema)| {
            let mut schema = to_v2(schema);
            if name == INT_OR_STRING {
                schema["format"] = json!("int-or-string");
            }
            (name, schema)
        })
        .collect();
    json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": format!("v1.{}.0", discovery::KUBERNETES_MINOR) },
        "paths": {},
        "definitions": definitions,
    })
}

/// A v3 schema (openapi.rs') as Swagger 2.0 writes it (pure).
fn to_v2(schema: Value) -> Value {
    let Value::Object(mut map) = schema else {
        return schema;
    };
    if map.remove("x-kubernetes-int-or-string") == Some(Value::Bool(true)) {
        map.remove("oneOf");
        map.remove("anyOf");
        map.insert("type".into(), json!("string"));
    }
    // `allOf` of one reference: v3's way to give a reference its own description.
    if let Some(Value::Array(all_of)) = map.get("allOf") {
        if let [only] = all_of.as_slice() {
            if let Some(reference) = only.get("$ref").cloned() {
                map.remove("allOf");
                map.insert("$ref".into(), reference);
            }
        }
    }
    // v3 only: nothing in Swagger 2.0 says them.
    for key in ["nullable", "oneOf", "anyOf"] {
        map.remove(key);
    }
    let map = map
        .into_iter()
        .map(|(key, value)| {
            let value = match (key.as_str(), value) {
                ("$ref", Value::String(reference)) => {
                    Value::String(reference.replacen("#/components/schemas/", "#/definitions/", 1))
                }
                ("properties", Value::Object(properties)) => Value::Object(
                    properties
                        .into_iter()
                        .map(|(name, schema)| (name, to_v2(schema)))
                        .collect(),
                ),
                ("items" | "additionalProperties", schema @ Value::Object(_)) => to_v2(schema),
                ("items" | "allOf", Value::Array(schemas)) => {
                    Value::Array(schemas.into_iter().map(to_v2).collect())
                }
                (_, value) => value,
            };
            (key, value)
        })
        .collect();
    Value::Object(map)
}

/// gnostic's `openapi.v2` messages, as far as a document of definitions uses them.
mod proto {
    use serde_json::{Map, Value};

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Document {
        #[prost(string, tag = "1")]
        pub swagger: String,
        #[prost(message, optional, tag = "2")]
        pub info: Option<Info>,
        #[prost(message, optional, tag = "8")]
        pub paths: Option<Paths>,
        #[prost(message, optional, tag = "9")]
        pub definitions: Option<Definitions>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Info {
        #[prost(string, tag = "1")]
        pub title: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Paths {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Definitions {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedSchema {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Schema>,
    }

    /// gnostic's `Any`: a value as YAML text.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "2")]
        pub yaml: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedAny {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Any>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeItem {
        #[prost(string, repeated, tag = "1")]
        pub value: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ItemsItem {
        #[prost(message, repeated, tag = "1")]
        pub schema: Vec<Schema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Properties {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Additional {
        #[prost(message, tag = "1")]
        Schema(Box<Schema>),
        #[prost(bool, tag = "2")]
        Boolean(bool),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AdditionalPropertiesItem {
        #[prost(oneof = "Additional", tags = "1, 2")]
        pub oneof: Option<Additional>,
    }

    /// A JSON Schema object, with gnostic's field numbers.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Schema {
        #[prost(string, tag = "1")]
        pub reference: String,
        #[prost(string, tag = "2")]
        pub format: String,
        #[prost(string, tag = "3")]
        pub title: String,
        #[prost(string, tag = "4")]
        pub description: String,
        #[prost(message, optional, tag = "5")]
        pub default: Option<Any>,
        #[prost(double, tag = "7")]
        pub maximum: f64,
        #[prost(double, tag = "9")]
        pub minimum: f64,
        #[prost(int64, tag = "11")]
        pub max_length: i64,
        #[prost(int64, tag = "12")]
        pub min_length: i64,
        #[prost(string, tag = "13")]
        pub pattern: String,
        #[prost(int64, tag = "14")]
        pub max_items: i64,
        #[prost(int64, tag = "15")]
        pub min_items: i64,
        #[prost(bool, tag = "16")]
        pub unique_items: bool,
        #[prost(string, repeated, tag = "19")]
        pub required: Vec<String>,
        #[prost(message, repeated, tag = "20")]
        pub r#enum: Vec<Any>,
        #[prost(message, optional, boxed, tag = "21")]
        pub additional_properties: Option<Box<AdditionalPropertiesItem>>,
        #[prost(message, optional, tag = "22")]
        pub r#type: Option<TypeItem>,
        #[prost(message, optional, tag = "23")]
        pub items: Option<ItemsItem>,
        #[prost(message, repeated, tag = "24")]
        pub all_of: Vec<Schema>,
        #[prost(message, optional, tag = "25")]
        pub properties: Option<Properties>,
        #[prost(bool, tag = "27")]
        pub read_only: bool,
        #[prost(message, optional, tag = "30")]
        pub example: Option<Any>,
        #[prost(message, repeated, tag = "31")]
        pub vendor_extension: Vec<NamedAny>,
    }

    fn any(value: &Value) -> Any {
        Any {
            yaml: value.to_string(),
        }
    }

    fn named(schemas: &Map<String, Value>) -> Vec<NamedSchema> {
        schemas
            .iter()
            .map(|(name, schema)| NamedSchema {
                name: name.clone(),
                value: Some(schema_of(schema)),
            })
            .collect()
    }

    /// A Swagger 2.0 schema as gnostic's message (pure). Keys it has no field for are
    /// left out, as gnostic leaves them out.
    pub fn schema_of(value: &Value) -> Schema {
        let mut schema = Schema::default();
        let Value::Object(map) = value else {
            return schema;
        };
        let text = |key: &str| {
            map.get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let integer = |key: &str| map.get(key).and_then(Value::as_i64).unwrap_or(0);
        let number = |key: &str| map.get(key).and_then(Value::as_f64).unwrap_or(0.0);
        schema.reference = text("$ref");
        schema.format = text("format");
        schema.title = text("title");
        schema.description = text("description");
        schema.pattern = text("pattern");
        schema.maximum = number("maximum");
        schema.minimum = number("minimum");
        schema.max_length = integer("maxLength");
        schema.min_length = integer("minLength");
        schema.max_items = integer("maxItems");
        schema.min_items = integer("minItems");
        schema.unique_items = map.get("uniqueItems") == Some(&Value::Bool(true));
        schema.read_only = map.get("readOnly") == Some(&Value::Bool(true));
        schema.default = map.get("default").map(any);
        schema.example = map.get("example").map(any);
        schema.r#enum = map
            .get("enum")
            .and_then(Value::as_array)
            .map(|values| values.iter().map(any).collect())
            .unwrap_or_default();
        schema.required = map
            .get("required")
            .and_then(Value::as_array)
            .map(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        schema.r#type = match map.get("type") {
            Some(Value::String(kind)) => Some(TypeItem {
                value: vec![kind.clone()],
            }),
            Some(Value::Array(kinds)) => Some(TypeItem {
                value: kinds
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            }),
            _ => None,
        };
        schema.items = match map.get("items") {
            Some(Value::Array(items)) => Some(ItemsItem {
                schema: items.iter().map(schema_of).collect(),
            }),
            Some(item @ Value::Object(_)) => Some(ItemsItem {
                schema: vec![schema_of(item)],
            }),
            _ => None,
        };
        schema.additional_properties = match map.get("additionalProperties") {
            Some(Value::Bool(allowed)) => Some(Box::new(AdditionalPropertiesItem {
                oneof: Some(Additional::Boolean(*allowed)),
            })),
            Some(item @ Value::Object(_)) => Some(Box::new(AdditionalPropertiesItem {
                oneof: Some(Additional::Schema(Box::new(schema_of(item)))),
            })),
            _ => None,
        };
        schema.all_of = map
            .get("allOf")
            .and_then(Value::as_array)
            .map(|schemas| schemas.iter().map(schema_of).collect())
            .unwrap_or_default();
        schema.properties = map
            .get("properties")
            .and_then(Value::as_object)
            .map(|properties| Properties {
                additional_properties: named(properties),
            });
        schema.vendor_extension = map
            .iter()
            .filter(|(key, _)| key.starts_with("x-"))
            .map(|(key, value)| NamedAny {
                name: key.clone(),
                value: Some(any(value)),
            })
            .collect();
        schema
    }

    /// The whole Swagger 2.0 document (openapi_v2.rs' JSON) as gnostic's message.
    pub fn document(document: &Value) -> Document {
        let text = |value: &Value| value.as_str().unwrap_or("").to_owned();
        Document {
            swagger: text(&document["swagger"]),
            info: Some(Info {
                title: text(&document["info"]["title"]),
                version: text(&document["info"]["version"]),
            }),
            paths: Some(Paths {}),
            definitions: Some(Definitions {
                additional_properties: document["definitions"]
                    .as_object()
                    .map(named)
                    .unwrap_or_default(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definitions() -> Value {
        serde_json::from_slice::<Value>(&DOCUMENT.json).unwrap()["definitions"].clone()
    }

    #[test]
    fn every_reference_points_into_the_definitions_and_names_one() {
        let definitions = definitions();
        let text = definitions.to_string();
        assert!(!text.contains("#/components/"), "a v3 reference is left");
        let mut references = Vec::new();
        fn collect(value: &Value, into: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(reference)) = map.get("$ref") {
                        into.push(reference.clone());
                    }
                    map.values().for_each(|v| collect(v, into));
                }
                Value::Array(items) => items.iter().for_each(|v| collect(v, into)),
                _ => {}
            }
        }
        collect(&definitions, &mut references);
        assert!(references.len() > 100, "{}", references.len());
        for reference in references {
            let name = reference.strip_prefix("#/definitions/").unwrap();
            assert!(definitions.get(name).is_some(), "{reference} names nothing");
        }
    }

    #[test]
    fn kinds_carry_their_group_version_kind_and_lists_their_patch_strategy() {
        let definitions = definitions();
        let deployment = &definitions["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{ "group": "apps", "version": "v1", "kind": "Deployment" }])
        );
        let pod_spec = &definitions["io.k8s.api.core.v1.PodSpec"]["properties"];
        assert_eq!(
            pod_spec["containers"]["x-kubernetes-patch-merge-key"],
            "name"
        );
        // A described reference is a plain reference, its description beside it.
        let metadata = &definitions["io.k8s.api.core.v1.Pod"]["properties"]["metadata"];
        assert_eq!(
            metadata["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert!(metadata.get("allOf").is_none() && metadata.get("description").is_some());
        assert_eq!(definitions[INT_OR_STRING]["format"], "int-or-string");
        let quantity = &definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"];
        assert_eq!(quantity["type"], "string");
        assert!(quantity.get("format").is_none(), "{quantity}");
    }

    #[test]
    fn the_protobuf_form_reads_back_as_the_same_definitions() {
        let document = proto::Document::decode(DOCUMENT.protobuf.as_ref()).unwrap();
        assert_eq!(document.swagger, "2.0");
        let definitions = document.definitions.unwrap().additional_properties;
        assert_eq!(
            definitions.len(),
            definitions_count(),
            "every definition is in the protobuf form"
        );
        let pod = definitions
            .iter()
            .find(|d| d.name == "io.k8s.api.core.v1.Pod")
            .and_then(|d| d.value.clone())
            .unwrap();
        let gvk = pod
            .vendor_extension
            .iter()
            .find(|e| e.name == "x-kubernetes-group-version-kind")
            .and_then(|e| e.value.clone())
            .unwrap();
        let gvk: Value = serde_yaml::from_str(&gvk.yaml).unwrap();
        assert_eq!(
            gvk,
            json!([{ "group": "", "version": "v1", "kind": "Pod" }])
        );
        let properties = pod.properties.unwrap().additional_properties;
        let spec = properties.iter().find(|p| p.name == "spec").unwrap();
        assert_eq!(
            spec.value.as_ref().unwrap().reference,
            "#/definitions/io.k8s.api.core.v1.PodSpec"
        );
        let labels = definitions
            .iter()
            .find(|d| d.name == "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
            .and_then(|d| d.value.clone())
            .and_then(|meta| meta.properties)
            .and_then(|p| {
                p.additional_properties
                    .into_iter()
                    .find(|p| p.name == "labels")
            })
            .and_then(|labels| labels.value)
            .unwrap();
        assert_eq!(labels.r#type.unwrap().value, ["object"]);
        let Some(proto::Additional::Schema(values)) = labels.additional_properties.unwrap().oneof
        else {
            panic!("labels' values have a schema");
        };
        assert_eq!(values.r#type.unwrap().value, ["string"]);
    }

    fn definitions_count() -> usize {
        definitions().as_object().unwrap().len()
    }

    #[test]
    fn protobuf_is_served_only_to_who_asks_for_it() {
        assert!(wants_protobuf(PROTOBUF_ASKED));
        assert!(wants_protobuf(&format!("{PROTOBUF}, application/json")));
        assert!(wants_protobuf(&format!(
            "application/json;q=0.9,{PROTOBUF_ASKED};q=1"
        )));
        assert!(!wants_protobuf("application/json"));
        assert!(!wants_protobuf(&format!(
            "{PROTOBUF};q=0, application/json"
        )));
        assert!(!wants_protobuf("*/*"));
    }
}
