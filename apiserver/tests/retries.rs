//! A client request sent again with the same number (`rudder-request-id`, as `ApiClient`
//! does after a lost answer) is answered as its first attempt was: never refused because of
//! its own earlier application, never applied twice. Without a number, the same request is
//! a new one and is refused as usual.

mod common;

use common::Plane;
use rudder_proto::api as pb;
use rudder_proto::api::resources_client::ResourcesClient;
use rudder_proto::request_ids::REQUEST_ID_HEADER;
use serde_json::{json, Value};
use tonic::transport::Channel;
use tonic::Code;

async fn client(plane: &Plane) -> ResourcesClient<Channel> {
    let addr = &plane.client.endpoints()[0];
    ResourcesClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to the master")
}

/// `message` as request number `seq` of one client (`None`: unnumbered).
fn numbered<M>(message: M, seq: Option<u64>) -> tonic::Request<M> {
    let mut request = tonic::Request::new(message);
    if let Some(seq) = seq {
        let value = format!("5eed-{seq}-{seq}").parse().unwrap();
        request.metadata_mut().insert(REQUEST_ID_HEADER, value);
    }
    request
}

fn json_of(object: pb::Object) -> Value {
    serde_json::from_slice(&object.json).unwrap()
}

fn create(resource: &str, object: &Value) -> pb::CreateRequest {
    pb::CreateRequest {
        resource: resource.into(),
        namespace: "default".into(),
        json: object.to_string().into_bytes(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_numbered_request_sent_again_is_answered_as_the_first_time() {
    let plane = Plane::start(1).await;
    let mut api = client(&plane).await;
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "once"}, "data": {"a": "1"}});

    // Create: the second attempt answers with the object the first created.
    let first = json_of(
        api.create(numbered(create("configmaps", &config), Some(1)))
            .await
            .unwrap()
            .into_inner(),
    );
    let again = json_of(
        api.create(numbered(create("configmaps", &config), Some(1)))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(again["metadata"]["uid"], first["metadata"]["uid"]);
    assert_eq!(
        again["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );
    let fresh = api
        .create(numbered(create("configmaps", &config), Some(2)))
        .await;
    assert_eq!(
        fresh.unwrap_err().code(),
        Code::AlreadyExists,
        "a new request is refused"
    );

    // Update with a resourceVersion: the second attempt is not a conflict with itself.
    let mut changed = first.clone();
    changed["data"]["a"] = json!("2");
    let update = pb::UpdateRequest {
        resource: "configmaps".into(),
        namespace: "default".into(),
        name: "once".into(),
        json: changed.to_string().into_bytes(),
        ..Default::default()
    };
    let updated = json_of(
        api.update(numbered(update.clone(), Some(3)))
            .await
            .unwrap()
            .into_inner(),
    );
    let again = json_of(
        api.update(numbered(update.clone(), Some(3)))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(
        again["metadata"]["resourceVersion"],
        updated["metadata"]["resourceVersion"]
    );
    assert_eq!(again["data"]["a"], "2");
    let stale = api.update(numbered(update, Some(4))).await.unwrap_err();
    assert_eq!(
        stale.code(),
        Code::Aborted,
        "a new request with the old version conflicts"
    );

    // Bind: the second attempt is not "already assigned".
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    api.create(numbered(create("pods", &pod), Some(5)))
        .await
        .unwrap();
    let bind = pb::BindRequest {
        namespace: "default".into(),
        name: "p".into(),
        node_name: "node-1".into(),
        ..Default::default()
    };
    let bound = json_of(
        api.bind(numbered(bind.clone(), Some(6)))
            .await
            .unwrap()
            .into_inner(),
    );
    let again = json_of(
        api.bind(numbered(bind.clone(), Some(6)))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(again["spec"]["nodeName"], "node-1");
    assert_eq!(
        again["metadata"]["resourceVersion"],
        bound["metadata"]["resourceVersion"]
    );
    let rebind = api.bind(numbered(bind, Some(7))).await.unwrap_err();
    assert_eq!(
        rebind.code(),
        Code::Aborted,
        "a new bind of a bound pod conflicts"
    );

    // Delete: the second attempt answers "deleted" with the object, not NotFound.
    let delete = pb::DeleteRequest {
        resource: "configmaps".into(),
        namespace: "default".into(),
        name: "once".into(),
        ..Default::default()
    };
    let deleted = api
        .delete(numbered(delete.clone(), Some(8)))
        .await
        .unwrap()
        .into_inner();
    let again = api
        .delete(numbered(delete.clone(), Some(8)))
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.deleted && again.deleted);
    let gone: Value = serde_json::from_slice(&again.json).unwrap();
    assert_eq!(gone["data"]["a"], "2", "the object as the delete found it");
    let missing = api.delete(numbered(delete, Some(9))).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_request_number_is_refused_naming_the_header() {
    let plane = Plane::start(1).await;
    let mut api = client(&plane).await;
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    let mut request = tonic::Request::new(create("configmaps", &config));
    request
        .metadata_mut()
        .insert(REQUEST_ID_HEADER, "not-a-number".parse().unwrap());
    let refused = api.create(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains(REQUEST_ID_HEADER),
        "{}",
        refused.message()
    );
}
