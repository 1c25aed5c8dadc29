use super::*;
use serde_json::json;

fn service(spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": { "name": "web", "namespace": "default", "uid": "svc-uid",
                      "labels": { "app": "web" } },
        "spec": spec
    }))
    .unwrap()
}

fn web() -> Service {
    service(
        json!({ "selector": { "app": "web" }, "clusterIP": "10.96.1.1",
                    "ports": [{ "name": "http", "port": 80, "targetPort": "http", "protocol": "TCP" }] }),
    )
}

fn pod(
    name: &str,
    ip: Option<&str>,
    ready: bool,
    change: impl FnOnce(&mut serde_json::Value),
) -> Arc<Pod> {
    let mut value = json!({
        "metadata": { "name": name, "namespace": "default", "uid": format!("{name}-uid"),
                      "labels": { "app": "web" } },
        "spec": { "nodeName": "node-1", "containers": [{ "name": "app", "image": "kubia",
                  "ports": [{ "name": "http", "containerPort": 8080 }] }] },
        "status": { "phase": "Running", "podIP": ip,
                    "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }] }
    });
    change(&mut value);
    Arc::new(serde_json::from_value(value).unwrap())
}

fn ips(addresses: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
    addresses.iter().flatten().map(|a| a.ip.as_str()).collect()
}

#[test]
fn selected_pods_with_an_address_stand_behind_the_service_ready_or_not() {
    let pods = [
        pod("b", Some("10.244.1.3"), true, |_| {}),
        pod("a", Some("10.244.1.2"), false, |_| {}),
        pod("no-ip", None, true, |_| {}),
        pod("other", Some("10.244.1.9"), true, |p| {
            p["metadata"]["labels"]["app"] = json!("db")
        }),
        pod("done", Some("10.244.1.8"), true, |p| {
            p["status"]["phase"] = json!("Succeeded")
        }),
    ];
    let backends = backends(&web(), &pods).unwrap();
    let endpoints = endpoints(&web(), &backends);
    let subsets = endpoints.subsets.unwrap();
    assert_eq!(subsets.len(), 1);
    assert_eq!(ips(&subsets[0].addresses), ["10.244.1.3"]);
    assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.244.1.2"]);
    let port = &subsets[0].ports.as_ref().unwrap()[0];
    // The named target port resolves to the container's port.
    assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));
    let address = &subsets[0].addresses.as_ref().unwrap()[0];
    assert_eq!(address.node_name.as_deref(), Some("node-1"));
    assert_eq!(
        address.target_ref.as_ref().unwrap().name.as_deref(),
        Some("b")
    );
    assert_eq!(endpoints.metadata.labels.unwrap()["app"], "web");
}

#[test]
fn a_service_without_a_selector_is_left_to_its_user() {
    let manual = service(json!({ "ports": [{ "port": 80 }] }));
    assert_eq!(
        backends(&manual, &[pod("a", Some("10.244.1.2"), true, |_| {})]),
        None
    );
}

#[test]
fn terminating_pods_leave_endpoints_but_stay_in_slices_marked() {
    let pods = [
        pod("a", Some("10.244.1.2"), true, |_| {}),
        pod("going", Some("10.244.1.3"), true, |p| {
            p["metadata"]["deletionTimestamp"] = json!("2026-12-04T10:00:00Z")
        }),
    ];
    let backends = backends(&web(), &pods).unwrap();
    let subsets = endpoints(&web(), &backends).subsets.unwrap();
    assert_eq!(ips(&subsets[0].addresses), ["10.244.1.2"]);
    assert_eq!(ips(&subsets[0].not_ready_addresses), Vec::<&str>::new());

    let slices = slices(&web(), &backends);
    assert_eq!(slices.len(), 1);
    let conditions: Vec<_> = slices[0]
        .endpoints
        .iter()
        .map(|e| e.conditions.clone().unwrap())
        .map(|c| (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap()))
        .collect();
    assert_eq!(conditions, [(true, true, false), (false, true, true)]);
}

#[test]
fn published_not_ready_addresses_count_as_ready() {
    let svc = service(
        json!({ "selector": { "app": "web" }, "publishNotReadyAddresses": true,
                              "ports": [{ "port": 80, "targetPort": 8080 }] }),
    );
    let backends = backends(&svc, &[pod("a", Some("10.244.1.2"), false, |_| {})]).unwrap();
    let subsets = endpoints(&svc, &backends).subsets.unwrap();
    assert_eq!(ips(&subsets[0].addresses), ["10.244.1.2"]);
    assert_eq!(
        slices(&svc, &backends)[0].endpoints[0]
            .conditions
            .as_ref()
            .unwrap()
            .ready,
        Some(true)
    );
}

#[test]
fn a_pod_without_the_named_port_is_left_out_of_endpoints_and_sliced_apart() {
    let pods = [
        pod("a", Some("10.244.1.2"), true, |_| {}),
        pod("plain", Some("10.244.1.3"), true, |p| {
            p["spec"]["containers"][0]["ports"] = json!([]);
        }),
    ];
    let backends = backends(&web(), &pods).unwrap();
    let subsets = endpoints(&web(), &backends).subsets.unwrap();
    assert_eq!(
        subsets.len(),
        1,
        "the pod without the port is not an endpoint of it"
    );
    assert_eq!(ips(&subsets[0].addresses), ["10.244.1.2"]);
    let slices = slices(&web(), &backends);
    assert_eq!(slices.len(), 2);
    assert_ne!(slices[0].metadata.name, slices[1].metadata.name);
}

#[test]
fn headless_services_list_their_pods_with_hostnames_and_the_headless_label() {
    let svc = service(json!({ "selector": { "app": "web" }, "clusterIP": "None" }));
    let pods = [pod("web-0", Some("10.244.1.2"), true, |p| {
        p["spec"]["hostname"] = json!("web-0");
        p["spec"]["subdomain"] = json!("web");
    })];
    let backends = backends(&svc, &pods).unwrap();
    let endpoints = endpoints(&svc, &backends);
    assert!(endpoints
        .metadata
        .labels
        .as_ref()
        .unwrap()
        .contains_key(HEADLESS_LABEL));
    let subset = &endpoints.subsets.unwrap()[0];
    assert_eq!(subset.ports, None);
    assert_eq!(
        subset.addresses.as_ref().unwrap()[0].hostname.as_deref(),
        Some("web-0")
    );
    let slice = &slices(&svc, &backends)[0];
    assert_eq!(slice.endpoints[0].hostname.as_deref(), Some("web-0"));
    assert_eq!(
        slice.metadata.labels.as_ref().unwrap()[SERVICE_NAME_LABEL],
        "web"
    );
}

#[test]
fn slices_hold_at_most_a_hundred_endpoints_and_a_service_without_pods_has_one_empty_slice() {
    let pods: Vec<_> = (0..250)
        .map(|i| {
            pod(
                &format!("p{i}"),
                Some(&format!("10.244.{}.{}", i / 200, i % 200 + 2)),
                true,
                |_| {},
            )
        })
        .collect();
    let backends = backends(&web(), &pods).unwrap();
    let slices = slices(&web(), &backends);
    let sizes: Vec<_> = slices.iter().map(|s| s.endpoints.len()).collect();
    assert_eq!(sizes, [100, 100, 50]);
    let owner = &slices[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Service", "svc-uid", Some(true))
    );

    let empty = super::slices(&web(), &[]);
    assert_eq!(empty.len(), 1);
    assert!(empty[0].endpoints.is_empty());
    assert_eq!(
        empty[0].ports.as_ref().unwrap()[0].name.as_deref(),
        Some("http")
    );
}

#[test]
fn the_slice_plan_creates_updates_and_deletes_only_what_differs() {
    let pods = [pod("a", Some("10.244.1.2"), true, |_| {})];
    let desired = slices(&web(), &backends(&web(), &pods).unwrap());
    let name = desired[0].metadata.name.clone().unwrap();
    let plan = plan_slices(desired.clone(), &[]);
    assert_eq!(plan.create.len(), 1);

    let same = Arc::new(desired[0].clone());
    assert_eq!(plan_slices(desired.clone(), &[same]), SlicePlan::default());

    let mut stale = desired[0].clone();
    stale.endpoints.clear();
    let mut leftover = desired[0].clone();
    leftover.metadata.name = Some("web-old-0".into());
    let plan = plan_slices(desired, &[Arc::new(stale), Arc::new(leftover)]);
    assert_eq!(plan.update.len(), 1);
    assert_eq!(plan.update[0].metadata.name.as_deref(), Some(name.as_str()));
    assert_eq!(plan.delete, ["web-old-0"]);
}
