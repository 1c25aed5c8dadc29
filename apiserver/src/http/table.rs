//! Server-side printing (pure): objects as a `meta.k8s.io/v1` Table with kubectl's columns
//! for their kind (`rudder-printers`, the CLI's own), which `kubectl get` asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`. Wide columns have priority 1.

use rudder_printers::table::{all_cells, column_definitions};
use serde_json::{json, Value};

/// The content type of a Table response.
pub const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// Whether an `Accept` header asks for a Table (of `meta.k8s.io` v1 or v1beta1, both
/// answered with v1 as kube-apiserver does).
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let parameters: Vec<&str> = media.split(';').map(str::trim).collect();
        parameters.contains(&"as=Table") && parameters.contains(&"g=meta.k8s.io")
    })
}

/// What each row carries besides its cells (the `includeObject` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    /// A `PartialObjectMetadata` (the default): kubectl reads namespaces and labels there.
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(text: Option<&str>) -> Self {
        match text {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

/// A Table of `items` of `kind`. `list_metadata`: the list's resourceVersion and continue.
/// `with_columns`: false for every watch event after the first, as kube-apiserver sends.
pub fn table(
    kind: &str,
    items: &[&Value],
    list_metadata: Value,
    include: IncludeObject,
    with_columns: bool,
    now: jiff::Timestamp,
) -> Value {
    let mut table = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "rows": items.iter().map(|item| row(kind, item, include, now)).collect::<Vec<_>>(),
    });
    if with_columns {
        table["columnDefinitions"] = columns(kind);
    }
    table
}

fn columns(kind: &str) -> Value {
    column_definitions(kind)
        .into_iter()
        .enumerate()
        .map(|(index, column)| {
            json!({
                "name": column.name,
                "type": "string",
                "format": if index == 0 && column.name == "NAME" { "name" } else { "" },
                "description": "",
                "priority": i32::from(column.wide),
            })
        })
        .collect()
}

fn row(kind: &str, object: &Value, include: IncludeObject, now: jiff::Timestamp) -> Value {
    let mut row = json!({ "cells": all_cells(kind, object, now) });
    match include {
        IncludeObject::None => {}
        IncludeObject::Object => row["object"] = object.clone(),
        IncludeObject::Metadata => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": object["metadata"],
            })
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_s_accept_header_asks_for_a_table() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,\
                       application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert!(wants_table(kubectl));
        assert!(!wants_table("application/json"));
        assert!(!wants_table("application/vnd.kubernetes.protobuf, */*"));
    }

    #[test]
    fn a_pod_table_has_kubectl_s_columns_and_wide_ones_at_priority_one() {
        let pod = json!({ "metadata": { "name": "web", "namespace": "ns",
                                        "creationTimestamp": "2026-01-01T00:00:00Z" },
                          "spec": { "containers": [{ "name": "c" }], "nodeName": "n1" },
                          "status": { "phase": "Pending" } });
        let now: jiff::Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let table = table(
            "Pod",
            &[&pod],
            json!({ "resourceVersion": "7" }),
            IncludeObject::Metadata,
            true,
            now,
        );
        let columns = table["columnDefinitions"].as_array().unwrap();
        assert_eq!(columns[0]["name"], "NAME");
        assert_eq!(columns[0]["format"], "name");
        let node = columns.iter().position(|c| c["name"] == "NODE").unwrap();
        assert_eq!(columns[node]["priority"], 1);
        let row = &table["rows"][0];
        assert_eq!(row["cells"][0], "web");
        assert_eq!(row["cells"][node], "n1");
        assert_eq!(row["cells"].as_array().unwrap().len(), columns.len());
        assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(row["object"]["metadata"]["namespace"], "ns");
        assert_eq!(table["metadata"]["resourceVersion"], "7");

        let later = super::table("Pod", &[&pod], json!({}), IncludeObject::None, false, now);
        assert!(later.get("columnDefinitions").is_none());
        assert!(later["rows"][0].get("object").is_none());
    }
}
