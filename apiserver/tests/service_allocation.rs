//! Services take their cluster IP, node ports and load-balancer address when they are
//! written, through the real API of three masters: unique under concurrent creates, asked-for
//! values honoured or refused with the reason, released on delete and on a type change.

mod common;

use std::collections::BTreeSet;

use common::Plane;
use rudder_proto::api as pb;
use rudder_proto::objects::cidr::Ipv4Cidr;
use serde_json::{json, Value};

fn service(name: &str, spec: Value) -> Value {
    json!({ "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": name, "namespace": "default" }, "spec": spec })
}

fn node_ports(service: &Value) -> Vec<i64> {
    service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_i64())
        .collect()
}

async fn delete(plane: &Plane, name: &str) {
    plane
        .client
        .delete_object(pb::DeleteRequest {
            resource: "services".into(),
            namespace: "default".into(),
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_services_get_distinct_addresses_and_node_ports() {
    let plane = Plane::start(3).await;
    let creates = (0..20).map(|i| {
        let client = &plane.client;
        async move {
            let spec = json!({ "type": "LoadBalancer", "selector": { "app": "web" },
                               "ports": [{ "name": "http", "port": 80 }, { "name": "https", "port": 443 }] });
            client
                .create_object("services", "default", &service(&format!("web-{i}"), spec))
                .await
                .unwrap()
        }
    });
    let created = futures::future::join_all(creates).await;
    let ips: BTreeSet<_> = created
        .iter()
        .map(|s| s["spec"]["clusterIP"].as_str().unwrap().to_string())
        .collect();
    let ports: BTreeSet<_> = created.iter().flat_map(node_ports).collect();
    let external: BTreeSet<_> = created
        .iter()
        .map(|s| {
            s["status"]["loadBalancer"]["ingress"][0]["ip"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ips.len(), 20, "{ips:?}");
    assert_eq!(ports.len(), 40, "{ports:?}");
    assert_eq!(external.len(), 20, "{external:?}");
    let range = Ipv4Cidr::parse("10.96.0.0/12").unwrap();
    assert!(ips.iter().all(|ip| range.contains(ip.parse().unwrap())));
    assert!(ports.iter().all(|p| (30000..=32767).contains(p)));
    assert!(external.iter().all(|ip| ip.starts_with("10.112.0.")));
    // What was stored is what was answered.
    let stored = plane
        .client
        .get_object("services", "default", "web-7")
        .await
        .unwrap();
    assert_eq!(stored["spec"]["clusterIP"], created[7]["spec"]["clusterIP"]);
    assert_eq!(node_ports(&stored), node_ports(&created[7]));
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn asked_for_values_are_honoured_refused_when_taken_and_freed_on_delete() {
    let plane = Plane::start(1).await;
    let asked = json!({ "type": "NodePort", "clusterIP": "10.96.0.50",
                        "ports": [{ "port": 80, "nodePort": 30080 }] });
    let first = plane
        .client
        .create_object("services", "default", &service("first", asked.clone()))
        .await
        .unwrap();
    assert_eq!(first["spec"]["clusterIP"], "10.96.0.50");
    assert_eq!(first["spec"]["clusterIPs"], json!(["10.96.0.50"]));
    assert_eq!(node_ports(&first), [30080]);

    let error = plane
        .client
        .create_object("services", "default", &service("second", asked.clone()))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(
            "spec.clusterIP: Invalid value: \"10.96.0.50\": failed to allocate IP 10.96.0.50: \
             provided IP is already allocated"
        ) && message.contains(
            "spec.ports[0].nodePort: Invalid value: \"30080\": provided port is already allocated"
        ),
        "{message}"
    );
    let outside = json!({ "clusterIP": "192.168.7.7", "ports": [{ "port": 80 }] });
    let error = plane
        .client
        .create_object("services", "default", &service("outside", outside))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("The range of valid IPs is 10.96.0.0/12"),
        "{error}"
    );

    delete(&plane, "first").await;
    let second = plane
        .client
        .create_object("services", "default", &service("second", asked))
        .await
        .expect("the deleted Service's values are free again");
    assert_eq!(second["spec"]["clusterIP"], "10.96.0.50");
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_update_keeps_allocated_values_and_a_type_change_gives_them_back() {
    let plane = Plane::start(1).await;
    let spec = json!({ "type": "NodePort", "ports": [{ "port": 80 }] });
    let created = plane
        .client
        .create_object("services", "default", &service("web", spec.clone()))
        .await
        .unwrap();
    let (ip, port) = (created["spec"]["clusterIP"].clone(), node_ports(&created));

    // A manifest replaced as written (without the allocated values) keeps them.
    let replaced = plane
        .client
        .update_object("services", "default", "web", &service("web", spec), false)
        .await
        .unwrap();
    assert_eq!(replaced["spec"]["clusterIP"], ip);
    assert_eq!(node_ports(&replaced), port);

    // Back to ClusterIP: the node port is given back and another Service may ask for it.
    let mut cluster_ip = replaced.clone();
    cluster_ip["spec"]["type"] = json!("ClusterIP");
    let changed = plane
        .client
        .update_object("services", "default", "web", &cluster_ip, false)
        .await
        .unwrap();
    assert_eq!(node_ports(&changed), Vec::<i64>::new());
    assert_eq!(changed["spec"]["clusterIP"], ip);
    let asks = json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": port[0] }] });
    plane
        .client
        .create_object("services", "default", &service("other", asks))
        .await
        .expect("the node port was given back");

    // To LoadBalancer: an address from the pool; back to ClusterIP: it is given back.
    let mut balanced = changed.clone();
    balanced["spec"]["type"] = json!("LoadBalancer");
    let balanced = plane
        .client
        .update_object("services", "default", "web", &balanced, false)
        .await
        .unwrap();
    let address = balanced["status"]["loadBalancer"]["ingress"][0]["ip"].clone();
    assert!(
        address.as_str().unwrap().starts_with("10.112.0."),
        "{balanced}"
    );
    let mut back = balanced.clone();
    back["spec"]["type"] = json!("ClusterIP");
    let back = plane
        .client
        .update_object("services", "default", "web", &back, false)
        .await
        .unwrap();
    assert_eq!(back["status"]["loadBalancer"], Value::Null, "{back}");
    let asks =
        json!({ "type": "LoadBalancer", "loadBalancerIP": address, "ports": [{ "port": 80 }] });
    let third = plane
        .client
        .create_object("services", "default", &service("third", asks))
        .await
        .expect("the load-balancer address was given back");
    assert_eq!(third["status"]["loadBalancer"]["ingress"][0]["ip"], address);
    plane.shutdown().await;
}
