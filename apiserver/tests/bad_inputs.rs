//! Bad input never reaches the store: a table of malformed, invalid and forbidden requests,
//! each refused with an error naming the field (or part of the request) that is wrong,
//! while the cluster's revision does not move and the server keeps serving. The same table
//! goes through gRPC and through the Kubernetes HTTP API, which must answer alike.

mod common;

use common::{bind, create_raw, list_page, open_watch, update_raw, Plane};
use rudder_proto::api as pb;
use rudder_proto::client::ClientError;
use serde_json::{json, Value};

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name },
        "spec": { "containers": [{ "name": "app", "image": "busybox" }] }
    })
}

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "app", "image": "nginx:1.25" }] }
            }
        }
    })
}

fn with(mut object: Value, path: &[&str], value: Value) -> Value {
    let mut target = &mut object;
    for part in &path[..path.len() - 1] {
        target = match part.parse::<usize>() {
            Ok(index) => &mut target[index],
            Err(_) => &mut target[*part],
        };
    }
    target[path[path.len() - 1]] = value;
    object
}

/// One bad request.
enum Bad {
    Create(&'static str, &'static str, String),
    Update(&'static str, &'static str, &'static str, String),
    UpdateStatus(&'static str, &'static str, &'static str, String),
    Patch(&'static str, &'static str, String),
    List(&'static str, &'static str, &'static str, i64, &'static str),
    Delete(pb::DeleteRequest),
    Bind(&'static str, &'static str),
    Watch(&'static str, &'static str),
}

async fn send(plane: &Plane, bad: &Bad) -> Result<(), ClientError> {
    match bad {
        Bad::Create(resource, namespace, body) => {
            create_raw(&plane.client, resource, namespace, body.as_bytes(), None)
                .await
                .map(drop)
        }
        Bad::Update(resource, namespace, name, body) => update_raw(
            &plane.client,
            resource,
            namespace,
            name,
            body.as_bytes(),
            false,
            None,
        )
        .await
        .map(drop),
        Bad::UpdateStatus(resource, namespace, name, body) => update_raw(
            &plane.client,
            resource,
            namespace,
            name,
            body.as_bytes(),
            true,
            None,
        )
        .await
        .map(drop),
        Bad::Patch(resource, name, patch) => {
            let request = pb::PatchRequest {
                resource: resource.to_string(),
                namespace: "default".into(),
                name: name.to_string(),
                patch: patch.clone().into_bytes(),
                fence: None,
                status: false,
            };
            plane
                .client
                .call(|mut c| {
                    let request = request.clone();
                    async move { c.patch(request).await }
                })
                .await
                .map(drop)
        }
        Bad::List(resource, labels, fields, limit, continue_token) => list_page(
            &plane.client,
            resource,
            "default",
            labels,
            fields,
            *limit,
            continue_token,
        )
        .await
        .map(drop),
        Bad::Delete(request) => plane.client.delete_object(request.clone()).await.map(drop),
        Bad::Bind(name, node) => bind(&plane.client, "default", name, node).await.map(drop),
        Bad::Watch(resource, version) => open_watch(
            &plane.client,
            pb::WatchRequest {
                resource: resource.to_string(),
                namespace: "default".into(),
                resource_version: version.to_string(),
                ..Default::default()
            },
        )
        .await
        .map(drop),
    }
}

/// The HTTP path of `resource`'s collection in `namespace`; `None` for resources no kind
/// has (those paths are not served at all).
fn collection(resource: &str, namespace: &str) -> Option<String> {
    let info = rudder_apiserver::kinds::resolve(resource)?;
    let root = if info.group.is_empty() {
        format!("/api/{}", info.version)
    } else {
        format!("/apis/{}/{}", info.group, info.version)
    };
    Some(if info.namespaced {
        format!("{root}/namespaces/{namespace}/{}", info.resource)
    } else {
        format!("{root}/{}", info.resource)
    })
}

/// The bad request as the HTTP API takes it: method, path and query, content type, body.
/// Writes ask for strict field validation, as kubectl does (the gRPC API always validates
/// strictly). `None`: the request names no resource (the gRPC API reads the kind from the
/// body; a path always names one).
fn over_http(bad: &Bad) -> Option<(&'static str, String, &'static str, String)> {
    const JSON: &str = "application/json";
    const STRICT: &str = "?fieldValidation=Strict";
    Some(match bad {
        Bad::Create("", ..) => return None,
        Bad::Create(resource, namespace, body) => (
            "POST",
            format!("{}{STRICT}", collection(resource, namespace)?),
            JSON,
            body.clone(),
        ),
        Bad::Update(resource, namespace, name, body) => (
            "PUT",
            format!("{}/{name}{STRICT}", collection(resource, namespace)?),
            JSON,
            body.clone(),
        ),
        Bad::UpdateStatus(resource, namespace, name, body) => (
            "PUT",
            format!("{}/{name}/status{STRICT}", collection(resource, namespace)?),
            JSON,
            body.clone(),
        ),
        Bad::Patch(resource, name, patch) => (
            "PATCH",
            format!("{}/{name}{STRICT}", collection(resource, "default")?),
            "application/merge-patch+json",
            patch.clone(),
        ),
        Bad::List(resource, labels, fields, limit, continue_token) => {
            let query = serde_urlencoded::to_string([
                ("labelSelector", labels.to_string()),
                ("fieldSelector", fields.to_string()),
                ("limit", limit.to_string()),
                ("continue", continue_token.to_string()),
            ])
            .unwrap();
            let path = collection(resource, "default")
                .unwrap_or_else(|| format!("/api/v1/namespaces/default/{resource}"));
            ("GET", format!("{path}?{query}"), JSON, String::new())
        }
        Bad::Delete(request) => {
            let mut options = json!({ "kind": "DeleteOptions", "apiVersion": "v1" });
            if let Some(seconds) = request.grace_period_seconds {
                options["gracePeriodSeconds"] = json!(seconds);
            }
            if !request.propagation_policy.is_empty() {
                options["propagationPolicy"] = json!(request.propagation_policy);
            }
            if !request.precondition_uid.is_empty() {
                options["preconditions"] = json!({ "uid": request.precondition_uid });
            }
            let path = collection(&request.resource, &request.namespace)?;
            (
                "DELETE",
                format!("{path}/{}", request.name),
                JSON,
                options.to_string(),
            )
        }
        Bad::Bind(name, node) => (
            "POST",
            format!("/api/v1/namespaces/default/pods/{name}/binding"),
            JSON,
            json!({ "apiVersion": "v1", "kind": "Binding", "metadata": { "name": name },
                    "target": { "kind": "Node", "name": node } })
            .to_string(),
        ),
        Bad::Watch(resource, version) => (
            "GET",
            format!(
                "{}?watch=true&resourceVersion={version}",
                collection(resource, "default")?
            ),
            JSON,
            String::new(),
        ),
    })
}

/// One HTTP/1.1 request on its own connection; the status code and the body.
async fn http(
    address: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (code, body.to_owned())
}

fn s(value: Value) -> String {
    value.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_inputs_are_refused_with_the_field_named_and_nothing_is_written() {
    let plane = Plane::start(3).await;
    // Objects the update cases work on.
    plane
        .client
        .create_object("deployments", "default", &deployment("web"))
        .await
        .unwrap();
    plane
        .client
        .create_object("pods", "default", &pod("p"))
        .await
        .unwrap();
    let service = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": { "name": "svc" },
        "spec": { "clusterIP": "10.96.0.100", "selector": { "app": "web" }, "ports": [{ "port": 80 }] }
    });
    plane
        .client
        .create_object("services", "default", &service)
        .await
        .unwrap();
    let frozen = json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "frozen" },
        "immutable": true, "data": { "a": "1" }
    });
    plane
        .client
        .create_object("configmaps", "default", &frozen)
        .await
        .unwrap();
    // A namespace that stays terminating: its `kubernetes` finalizer waits for the namespace
    // controller, which does not run here.
    plane
        .client
        .create_object(
            "namespaces",
            "",
            &json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "closing" } }),
        )
        .await
        .unwrap();
    let closing = plane
        .client
        .delete_object(pb::DeleteRequest {
            resource: "namespaces".into(),
            name: "closing".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!closing.deleted, "the namespace stays terminating");
    let web = plane
        .client
        .get_object("deployments", "default", "web")
        .await
        .unwrap();
    let svc = plane
        .client
        .get_object("services", "default", "svc")
        .await
        .unwrap();
    let p = plane
        .client
        .get_object("pods", "default", "p")
        .await
        .unwrap();
    let frozen = plane
        .client
        .get_object("configmaps", "default", "frozen")
        .await
        .unwrap();
    let long = "a".repeat(254);
    let owner = |uid: &str| json!({ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid });

    let cases: Vec<(&str, Bad, &str, &str)> = vec![
        // Names and metadata.
        (
            "uppercase name",
            Bad::Create("pods", "default", s(pod("Web"))),
            "Invalid",
            "metadata.name",
        ),
        (
            "underscore in name",
            Bad::Create("pods", "default", s(pod("my_pod"))),
            "Invalid",
            "metadata.name",
        ),
        (
            "name ..",
            Bad::Create("pods", "default", s(pod(".."))),
            "Invalid",
            "metadata.name",
        ),
        (
            "slash in name",
            Bad::Create("pods", "default", s(pod("a/b"))),
            "Invalid",
            "metadata.name",
        ),
        (
            "over-long name",
            Bad::Create(
                "configmaps",
                "default",
                s(json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": long } })),
            ),
            "Invalid",
            "metadata.name",
        ),
        (
            "namespace name over 63",
            Bad::Create(
                "namespaces",
                "",
                s(
                    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "n".repeat(64) } }),
                ),
            ),
            "Invalid",
            "metadata.name",
        ),
        (
            "service name starting with a digit",
            Bad::Create(
                "services",
                "default",
                s(with(service.clone(), &["metadata", "name"], json!("1svc"))),
            ),
            "Invalid",
            "metadata.name",
        ),
        (
            "no name and no generateName",
            Bad::Create(
                "pods",
                "default",
                s(with(pod("x"), &["metadata"], json!({}))),
            ),
            "Invalid",
            "metadata.name",
        ),
        (
            "label key with a space",
            Bad::Create(
                "pods",
                "default",
                s(with(
                    pod("x"),
                    &["metadata", "labels"],
                    json!({ "bad key": "v" }),
                )),
            ),
            "Invalid",
            "metadata.labels",
        ),
        (
            "label value over 63",
            Bad::Create(
                "pods",
                "default",
                s(with(
                    pod("x"),
                    &["metadata", "labels"],
                    json!({ "k": "v".repeat(64) }),
                )),
            ),
            "Invalid",
            "metadata.labels",
        ),
        (
            "label key with a bad prefix",
            Bad::Create(
                "pods",
                "default",
                s(with(
                    pod("x"),
                    &["metadata", "labels"],
                    json!({ "Bad_Prefix/x": "v" }),
                )),
            ),
            "Invalid",
            "metadata.labels",
        ),
        (
            "annotations over 256 KiB",
            Bad::Create(
                "pods",
                "default",
                s(with(
                    pod("x"),
                    &["metadata", "annotations"],
                    json!({ "big": "x".repeat(300 * 1024) }),
                )),
            ),
            "Invalid",
            "metadata.annotations",
        ),
        (
            "bad finalizer",
            Bad::Create(
                "pods",
                "default",
                s(with(
                    pod("x"),
                    &["metadata", "finalizers"],
                    json!(["bad finalizer!"]),
                )),
            ),
            "Invalid",
            "metadata.finalizers",
        ),
        (
            "owner reference without uid",
            Bad::Create(
                "pods",
                "default",
                s(with(
                    pod("x"),
                    &["metadata", "ownerReferences"],
                    json!([owner("")]),
                )),
            ),
            "Invalid",
            "metadata.ownerReferences[0].uid",
        ),
        (
            "two controllers",
            Bad::Create(
                "pods",
                "default",
                s(with(
                    pod("x"),
                    &["metadata", "ownerReferences"],
                    json!([
                        with(owner("u1"), &["controller"], json!(true)),
                        with(owner("u2"), &["controller"], json!(true))
                    ]),
                )),
            ),
            "Invalid",
            "metadata.ownerReferences",
        ),
        // Bodies.
        (
            "invalid JSON",
            Bad::Create("pods", "default", "{\"apiVersion\": ".into()),
            "BadRequest",
            "not valid JSON",
        ),
        (
            "invalid YAML",
            Bad::Create("pods", "default", "kind: Pod\nmetadata: [\n".into()),
            "BadRequest",
            "YAML",
        ),
        (
            "body is a list",
            Bad::Create("pods", "default", "[1, 2]".into()),
            "BadRequest",
            "JSON object",
        ),
        (
            "unknown kind",
            Bad::Create(
                "",
                "default",
                s(json!({ "apiVersion": "v1", "kind": "Gizmo", "metadata": { "name": "g" } })),
            ),
            "BadRequest",
            "Gizmo",
        ),
        (
            "kind under the wrong apiVersion",
            Bad::Create(
                "",
                "default",
                s(with(deployment("d"), &["apiVersion"], json!("v1"))),
            ),
            "BadRequest",
            "apps/v1",
        ),
        (
            "no kind at all",
            Bad::Create("", "default", s(json!({ "metadata": { "name": "x" } }))),
            "BadRequest",
            "Kind",
        ),
        (
            "body kind differs from the resource",
            Bad::Create("deployments", "default", s(pod("x"))),
            "BadRequest",
            "kind",
        ),
        (
            "unknown resource type",
            Bad::List("gizmos", "", "", 0, ""),
            "BadRequest",
            "gizmos",
        ),
        (
            "misspelt field",
            Bad::Create(
                "deployments",
                "default",
                s(with(deployment("d"), &["spec", "replica"], json!(3))),
            ),
            "Invalid",
            "spec.replica",
        ),
        (
            "wrong type",
            Bad::Create(
                "deployments",
                "default",
                s(with(deployment("d"), &["spec", "replicas"], json!("three"))),
            ),
            "Invalid",
            "spec.replicas",
        ),
        (
            "oversized object",
            Bad::Create(
                "configmaps",
                "default",
                s(
                    json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "big" }, "data": { "x": "y".repeat(1600 * 1024) } }),
                ),
            ),
            "RequestEntityTooLarge",
            "too large",
        ),
        // The kinds' own rules.
        (
            "negative deployment replicas",
            Bad::Create(
                "deployments",
                "default",
                s(with(deployment("d"), &["spec", "replicas"], json!(-1))),
            ),
            "Invalid",
            "spec.replicas",
        ),
        (
            "negative rc replicas",
            Bad::Create(
                "rc",
                "default",
                s(
                    json!({ "apiVersion": "v1", "kind": "ReplicationController", "metadata": { "name": "rc" }, "spec": { "replicas": -3, "selector": { "app": "a" }, "template": { "metadata": { "labels": { "app": "a" } }, "spec": { "containers": [{ "name": "c", "image": "i" }] } } } }),
                ),
            ),
            "Invalid",
            "spec.replicas",
        ),
        (
            "selector not matching template labels",
            Bad::Create(
                "deployments",
                "default",
                s(with(
                    deployment("d"),
                    &["spec", "selector", "matchLabels"],
                    json!({ "app": "other" }),
                )),
            ),
            "Invalid",
            "spec.template.metadata.labels",
        ),
        (
            "deployment without selector",
            Bad::Create(
                "deployments",
                "default",
                s(with(deployment("d"), &["spec", "selector"], json!(null))),
            ),
            "Invalid",
            "spec.selector",
        ),
        (
            "pod without containers",
            Bad::Create(
                "pods",
                "default",
                s(with(pod("x"), &["spec", "containers"], json!([]))),
            ),
            "Invalid",
            "spec.containers",
        ),
        (
            "container without image",
            Bad::Create(
                "pods",
                "default",
                s(with(
                    pod("x"),
                    &["spec", "containers", "0", "image"],
                    json!(""),
                )),
            ),
            "Invalid",
            "spec.containers[0].image",
        ),
        (
            "container name invalid",
            Bad::Create(
                "pods",
                "default",
                s(with(
                    pod("x"),
                    &["spec", "containers", "0", "name"],
                    json!("App_1"),
                )),
            ),
            "Invalid",
            "spec.containers[0].name",
        ),
        (
            "duplicate container names",
            Bad::Create(
                "pods",
                "default",
                s(with(
                    pod("x"),
                    &["spec", "containers"],
                    json!([{ "name": "a", "image": "i" }, { "name": "a", "image": "i" }]),
                )),
            ),
            "Invalid",
            "spec.containers[1].name",
        ),
        (
            "container port out of range",
            Bad::Create(
                "pods",
                "default",
                s(with(
                    pod("x"),
                    &["spec", "containers", "0", "ports"],
                    json!([{ "containerPort": 70000 }]),
                )),
            ),
            "Invalid",
            "spec.containers[0].ports[0].containerPort",
        ),
        (
            "unknown restart policy",
            Bad::Create(
                "pods",
                "default",
                s(with(
                    pod("x"),
                    &["spec", "restartPolicy"],
                    json!("Sometimes"),
                )),
            ),
            "Invalid",
            "spec.restartPolicy",
        ),
        (
            "deployment pods that never restart",
            Bad::Create(
                "deployments",
                "default",
                s(with(
                    deployment("d"),
                    &["spec", "template", "spec", "restartPolicy"],
                    json!("Never"),
                )),
            ),
            "Invalid",
            "spec.template.spec.restartPolicy",
        ),
        (
            "job pods that always restart",
            Bad::Create(
                "jobs",
                "default",
                s(
                    json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": "j" }, "spec": { "template": { "spec": { "restartPolicy": "Always", "containers": [{ "name": "c", "image": "i" }] } } } }),
                ),
            ),
            "Invalid",
            "spec.template.spec.restartPolicy",
        ),
        (
            "bad cron schedule",
            Bad::Create(
                "cronjobs",
                "default",
                s(
                    json!({ "apiVersion": "batch/v1", "kind": "CronJob", "metadata": { "name": "cj" }, "spec": { "schedule": "every minute", "jobTemplate": { "spec": { "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "i" }] } } } } } }),
                ),
            ),
            "Invalid",
            "spec.schedule",
        ),
        (
            "unknown service type",
            Bad::Create(
                "services",
                "default",
                s(with(
                    with(service.clone(), &["metadata", "name"], json!("s2")),
                    &["spec", "type"],
                    json!("Magic"),
                )),
            ),
            "Invalid",
            "spec.type",
        ),
        (
            "service port zero",
            Bad::Create(
                "services",
                "default",
                s(with(
                    with(service.clone(), &["metadata", "name"], json!("s3")),
                    &["spec", "ports"],
                    json!([{ "port": 0 }]),
                )),
            ),
            "Invalid",
            "spec.ports[0].port",
        ),
        (
            "node port out of range",
            Bad::Create(
                "services",
                "default",
                s(with(
                    with(
                        with(service.clone(), &["metadata", "name"], json!("s4")),
                        &["spec", "type"],
                        json!("NodePort"),
                    ),
                    &["spec", "ports"],
                    json!([{ "port": 80, "nodePort": 80 }]),
                )),
            ),
            "Invalid",
            "spec.ports[0].nodePort",
        ),
        (
            "config map key with a space",
            Bad::Create(
                "configmaps",
                "default",
                s(
                    json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c" }, "data": { "a b": "1" } }),
                ),
            ),
            "Invalid",
            "data",
        ),
        (
            "secret key with a slash",
            Bad::Create(
                "secrets",
                "default",
                s(
                    json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "s" }, "stringData": { "a/b": "1" }, "data": { "a/b": "MQ==" } }),
                ),
            ),
            "Invalid",
            "data",
        ),
        (
            "memory request above its limit",
            Bad::Create(
                "pods",
                "default",
                s(with(
                    pod("x"),
                    &["spec", "containers", "0", "resources"],
                    json!({ "requests": { "memory": "2Gi" }, "limits": { "memory": "1Gi" } }),
                )),
            ),
            "Invalid",
            "spec.containers[0].resources.requests",
        ),
        (
            "mount of an unknown volume",
            Bad::Create(
                "pods",
                "default",
                s(with(
                    pod("x"),
                    &["spec", "containers", "0", "volumeMounts"],
                    json!([{ "name": "nope", "mountPath": "/data" }]),
                )),
            ),
            "Invalid",
            "spec.containers[0].volumeMounts[0].name",
        ),
        (
            "lease of negative duration",
            Bad::Create(
                "leases",
                "default",
                s(
                    json!({ "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": { "name": "l" }, "spec": { "leaseDurationSeconds": -5 } }),
                ),
            ),
            "Invalid",
            "spec.leaseDurationSeconds",
        ),
        // Namespaces.
        (
            "body and request disagree on the namespace",
            Bad::Create(
                "pods",
                "other",
                s(with(pod("x"), &["metadata", "namespace"], json!("default"))),
            ),
            "BadRequest",
            "metadata.namespace",
        ),
        (
            "missing namespace",
            Bad::Create("pods", "nowhere", s(pod("x"))),
            "NotFound",
            "namespaces \"nowhere\"",
        ),
        (
            "terminating namespace",
            Bad::Create("pods", "closing", s(pod("x"))),
            "Forbidden",
            "being terminated",
        ),
        (
            "namespace on a cluster-scoped kind",
            Bad::Create(
                "nodes",
                "",
                s(
                    json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n1", "namespace": "default" } }),
                ),
            ),
            "BadRequest",
            "metadata.namespace",
        ),
        // Updates.
        (
            "status written through update",
            Bad::Update(
                "deployments",
                "default",
                "web",
                s(with(web.clone(), &["status"], json!({ "replicas": 5 }))),
            ),
            "Invalid",
            "status",
        ),
        (
            "changed immutable selector",
            Bad::Update(
                "deployments",
                "default",
                "web",
                s(with(
                    with(
                        web.clone(),
                        &["spec", "selector", "matchLabels"],
                        json!({ "app": "web", "v": "2" }),
                    ),
                    &["spec", "template", "metadata", "labels"],
                    json!({ "app": "web", "v": "2" }),
                )),
            ),
            "Invalid",
            "spec.selector",
        ),
        (
            "changed cluster IP",
            Bad::Update(
                "services",
                "default",
                "svc",
                s(with(
                    svc.clone(),
                    &["spec", "clusterIP"],
                    json!("10.0.0.11"),
                )),
            ),
            "Invalid",
            "spec.clusterIP",
        ),
        (
            "changed data of an immutable config map",
            Bad::Update(
                "configmaps",
                "default",
                "frozen",
                s(with(frozen.clone(), &["data", "a"], json!("2"))),
            ),
            "Invalid",
            "data",
        ),
        (
            "changed pod spec",
            Bad::Update(
                "pods",
                "default",
                "p",
                s(with(
                    p.clone(),
                    &["spec", "containers", "0", "name"],
                    json!("other"),
                )),
            ),
            "Invalid",
            "spec",
        ),
        (
            "body names another object",
            Bad::Update(
                "deployments",
                "default",
                "web",
                s(with(web.clone(), &["metadata", "name"], json!("other"))),
            ),
            "BadRequest",
            "metadata.name",
        ),
        (
            "resourceVersion that is not a number",
            Bad::Update(
                "deployments",
                "default",
                "web",
                s(with(
                    web.clone(),
                    &["metadata", "resourceVersion"],
                    json!("abc"),
                )),
            ),
            "BadRequest",
            "metadata.resourceVersion",
        ),
        (
            "status of a kind without status",
            Bad::UpdateStatus("configmaps", "default", "frozen", s(frozen.clone())),
            "BadRequest",
            "status",
        ),
        (
            "changed uid",
            Bad::Update(
                "deployments",
                "default",
                "web",
                s(with(
                    web.clone(),
                    &["metadata", "uid"],
                    json!("00000000-0000-0000-0000-000000000000"),
                )),
            ),
            "Invalid",
            "metadata.uid",
        ),
        (
            "patch that renames",
            Bad::Patch(
                "deployments",
                "web",
                s(json!({ "metadata": { "name": "other" } })),
            ),
            "BadRequest",
            "metadata.name",
        ),
        (
            "patch that is not an object",
            Bad::Patch("deployments", "web", "[]".into()),
            "BadRequest",
            "JSON object",
        ),
        (
            "patch to negative replicas",
            Bad::Patch(
                "deployments",
                "web",
                s(json!({ "spec": { "replicas": -2 } })),
            ),
            "Invalid",
            "spec.replicas",
        ),
        // Selectors, paging, delete, bind, watch.
        (
            "unfinished set selector",
            Bad::List("pods", "a in (", "", 0, ""),
            "BadRequest",
            "labelSelector",
        ),
        (
            "selector key with a space",
            Bad::List("pods", "Bad Key=x", "", 0, ""),
            "BadRequest",
            "labelSelector",
        ),
        (
            "unsupported field selector",
            Bad::List("pods", "", "spec.foo=bar", 0, ""),
            "BadRequest",
            "field label not supported",
        ),
        (
            "negative limit",
            Bad::List("pods", "", "", -1, ""),
            "BadRequest",
            "limit",
        ),
        (
            "garbage continue token",
            Bad::List("pods", "", "", 10, "garbage!"),
            "BadRequest",
            "continue",
        ),
        (
            "unknown propagation policy",
            Bad::Delete(pb::DeleteRequest {
                resource: "deployments".into(),
                namespace: "default".into(),
                name: "web".into(),
                propagation_policy: "Sideways".into(),
                ..Default::default()
            }),
            "BadRequest",
            "propagationPolicy",
        ),
        (
            "negative grace period",
            Bad::Delete(pb::DeleteRequest {
                resource: "pods".into(),
                namespace: "default".into(),
                name: "p".into(),
                grace_period_seconds: Some(-1),
                ..Default::default()
            }),
            "BadRequest",
            "gracePeriodSeconds",
        ),
        (
            "stale delete precondition",
            Bad::Delete(pb::DeleteRequest {
                resource: "pods".into(),
                namespace: "default".into(),
                name: "p".into(),
                precondition_uid: "not-the-uid".into(),
                ..Default::default()
            }),
            "Conflict",
            "Precondition failed",
        ),
        (
            "deleting a system namespace",
            Bad::Delete(pb::DeleteRequest {
                resource: "namespaces".into(),
                name: "default".into(),
                ..Default::default()
            }),
            "Forbidden",
            "system namespace",
        ),
        (
            "watch from a negative version",
            Bad::Watch("pods", "-5"),
            "BadRequest",
            "resourceVersion",
        ),
        (
            "bind to an invalid node name",
            Bad::Bind("p", "Node_1"),
            "Invalid",
            "target.name",
        ),
        (
            "watch from a made-up version",
            Bad::Watch("pods", "abc"),
            "BadRequest",
            "resourceVersion",
        ),
    ];
    assert!(cases.len() >= 60, "the table has {} cases", cases.len());

    let before = plane.revision().await;
    let mut failures = Vec::new();
    for (name, bad, reason, text) in &cases {
        match send(&plane, bad).await {
            Ok(()) => failures.push(format!("{name}: accepted")),
            Err(ClientError::Api {
                reason: got,
                message,
                status,
                ..
            }) => {
                if got != *reason || !(message.contains(text) || status.contains(text)) {
                    failures.push(format!(
                        "{name}: expected {reason} naming {text:?}, got {got}: {message}"
                    ));
                }
            }
            Err(other) => failures.push(format!("{name}: {other}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(
        plane.revision().await,
        before,
        "a refused request wrote to the store"
    );

    // The same table over HTTP: the same reason, the same words, a Status with the code.
    let address = plane.cluster.client_endpoints()[0].clone();
    let mut sent = 0;
    for (name, bad, reason, text) in &cases {
        let Some((method, path, content_type, body)) = over_http(bad) else {
            continue;
        };
        sent += 1;
        let (reason, text) = match bad {
            // A path naming no kind is not served: kube-apiserver's bare 404.
            Bad::List(resource, ..) if collection(resource, "default").is_none() => {
                ("NotFound", "could not find the requested resource")
            }
            // So is the status of a kind that has none.
            Bad::UpdateStatus(resource, ..)
                if !rudder_apiserver::kinds::resolve(resource).is_some_and(|k| k.has_status) =>
            {
                ("NotFound", "could not find the requested resource")
            }
            _ => (*reason, *text),
        };
        let (code, answer) = http(&address, method, &path, content_type, &body).await;
        let status: Value = serde_json::from_str(&answer).unwrap_or_default();
        let got = status["reason"].as_str().unwrap_or_default();
        if status["kind"] != "Status"
            || status["code"] != code
            || got != reason
            || !(status["message"]
                .as_str()
                .unwrap_or_default()
                .contains(text)
                || answer.contains(text))
        {
            failures.push(format!(
                "{name} over HTTP ({method} {path}): expected {reason} naming {text:?}, got \
                 {code} {answer}"
            ));
        }
    }
    assert!(sent >= 55, "only {sent} cases went over HTTP");
    assert!(
        failures.is_empty(),
        "{} of {sent} cases failed over HTTP:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        plane.revision().await,
        before,
        "a refused HTTP request wrote to the store"
    );
    // Still healthy: a good request goes through.
    plane
        .client
        .create_object("pods", "default", &pod("fine"))
        .await
        .expect("a valid pod is created");
    plane.shutdown().await;
}
