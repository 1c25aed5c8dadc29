//! `rudder describe`'s output for each kind, through [`describe`](super::describe::describe)
//! as a user sees it (alignment depends on the whole text, so each describer is tested
//! through the whole). Test-only; kept apart so that the describers need not import the
//! dispatcher that imports them.

/// Pods: the tests of describe_pod.rs.
mod pod {
    use super::super::describe::describe;
    use super::super::test_support::{assert_contains, kv, now, with_meta};
    use serde_json::json;

    #[test]
    fn a_crashing_terminating_pod_shows_both_states() {
        let mut pod = with_meta(
            "Pod",
            json!({
                "spec": {"initContainers": [{"name": "migrate", "image": "migrate:1"}],
                         "containers": [{"name": "kubia", "image": "luksa/kubia",
                                         "ports": [{"containerPort": 80},
                                                   {"containerPort": 53, "protocol": "UDP"}]}]},
                "status": {"phase": "Running", "containerStatuses": [{
                    "name": "kubia", "ready": false, "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"reason": "Error", "exitCode": 1,
                                                 "startedAt": "2024-06-01T11:50:00Z",
                                                 "finishedAt": "2024-06-01T11:55:00Z"}}}]}
            }),
        );
        pod["metadata"]["deletionTimestamp"] = json!("2024-06-01T11:59:30Z");
        let text = describe(&pod, &[], now());
        assert_contains(&text, &kv(20, "Node:", "<none>"));
        assert_contains(&text, &kv(20, "Status:", "Terminating (lasts 30s)"));
        assert_contains(&text, &kv(20, "IP:", "<none>"));
        let init = [
            "Init Containers:\n  migrate:\n".to_string(),
            kv(12, "    Image:", "migrate:1"),
            kv(12, "    Port:", "<none>"),
            "Containers:\n  kubia:\n".into(),
        ]
        .concat();
        assert_contains(&text, &init);
        let states = [
            kv(20, "    Ports:", "80/TCP, 53/UDP"),
            kv(20, "    State:", "Waiting"),
            kv(20, "      Reason:", "CrashLoopBackOff"),
            kv(20, "    Last State:", "Terminated"),
            kv(20, "      Reason:", "Error"),
            kv(20, "      Exit Code:", "1"),
            kv(20, "      Started:", "Sat, 01 Jun 2024 11:50:00 +0000"),
            kv(20, "      Finished:", "Sat, 01 Jun 2024 11:55:00 +0000"),
            kv(20, "    Ready:", "False"),
            kv(20, "    Restart Count:", "4"),
        ]
        .concat();
        assert_contains(&text, &states);
        assert!(!text.contains("Conditions:"));
    }
}

/// Deployments, ReplicaSets, Services, Nodes, Secrets, Namespaces: the tests of describe_kinds.rs.
mod kinds {
    use super::super::describe::describe;
    use super::super::test_support::{assert_contains, kv, now, with_meta};
    use serde_json::json;

    #[test]
    fn a_deployment_shows_replicas_template_and_conditions() {
        let deployment = with_meta(
            "Deployment",
            json!({
                "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "kubia"}},
                         "template": {"metadata": {"labels": {"app": "kubia"}},
                                      "spec": {"containers": [{
                                          "name": "kubia", "image": "luksa/kubia:v1",
                                          "ports": [{"containerPort": 8080}]}]}}},
                "status": {"replicas": 3, "updatedReplicas": 3, "availableReplicas": 2,
                           "unavailableReplicas": 1,
                           "conditions": [{"type": "Available", "status": "True",
                                           "reason": "MinimumReplicasAvailable"}]}
            }),
        );
        let text = describe(&deployment, &[], now());
        let condition = |a: &str, b: &str, c: &str| format!("{a:<14}{b:<8}{c}\n");
        let expected = [
            kv(20, "CreationTimestamp:", "Sat, 01 Jun 2024 11:00:00 +0000"),
            kv(20, "Selector:", "app=kubia"),
            kv(
                20,
                "Replicas:",
                "3 desired | 3 updated | 3 total | 2 available | 1 unavailable",
            ),
            kv(20, "StrategyType:", "RollingUpdate"),
            kv(20, "MinReadySeconds:", "0"),
            "Pod Template:\n".into(),
            kv(11, "  Labels:", "app=kubia"),
            "  Containers:\n".into(),
            "   kubia:\n".into(),
            kv(12, "    Image:", "luksa/kubia:v1"),
            kv(12, "    Port:", "8080/TCP"),
            "Conditions:\n".into(),
            condition("  Type", "Status", "Reason"),
            condition("  ----", "------", "------"),
            condition("  Available", "True", "MinimumReplicasAvailable"),
            "Events:  <none>\n".into(),
        ]
        .concat();
        assert_contains(&text, &expected);
    }

    #[test]
    fn replica_sets_and_controllers_show_current_over_desired() {
        let mut rs = with_meta(
            "ReplicaSet",
            json!({"spec": {"replicas": 3, "selector": {"matchLabels": {"app": "kubia"}}},
                   "status": {"replicas": 2}}),
        );
        rs["metadata"]["ownerReferences"] =
            json!([{"kind": "Deployment", "name": "kubia", "controller": true}]);
        let text = describe(&rs, &[], now());
        assert_contains(&text, &kv(20, "Selector:", "app=kubia"));
        assert_contains(&text, &kv(20, "Controlled By:", "Deployment/kubia"));
        assert_contains(&text, &kv(20, "Replicas:", "2 current / 3 desired"));
        let rc = with_meta(
            "ReplicationController",
            json!({"spec": {"selector": {"app": "kubia"}}}),
        );
        let text = describe(&rc, &[], now());
        assert_contains(&text, &kv(20, "Selector:", "app=kubia"));
        assert_contains(&text, &kv(20, "Replicas:", "0 current / 1 desired"));
    }

    #[test]
    fn a_service_lists_each_port_with_target_and_node_port() {
        let service = with_meta(
            "Service",
            json!({"spec": {"type": "NodePort", "clusterIP": "10.111.254.223",
                            "clusterIPs": ["10.111.254.223"], "selector": {"app": "kubia"},
                            "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                                       "nodePort": 30123, "protocol": "TCP"}]}}),
        );
        let expected = [
            kv(20, "Selector:", "app=kubia"),
            kv(20, "Type:", "NodePort"),
            kv(20, "IP:", "10.111.254.223"),
            kv(20, "Port:", "http  80/TCP"),
            kv(20, "TargetPort:", "8080/TCP"),
            kv(20, "NodePort:", "http  30123/TCP"),
            kv(20, "Session Affinity:", "None"),
            kv(20, "Events:", "<none>"),
        ]
        .concat();
        assert_contains(&describe(&service, &[], now()), &expected);
    }

    #[test]
    fn a_load_balancer_shows_its_ingress_and_external_ips() {
        let service = with_meta(
            "Service",
            json!({"spec": {"type": "LoadBalancer", "externalIPs": ["5.6.7.8"],
                            "ports": [{"port": 443, "targetPort": "https"}]},
                   "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"},
                                                           {"hostname": "lb.example.com"}]}}}),
        );
        let text = describe(&service, &[], now());
        assert_contains(&text, &kv(23, "IP:", "<none>"));
        assert_contains(&text, &kv(23, "External IPs:", "5.6.7.8"));
        assert_contains(
            &text,
            &kv(23, "LoadBalancer Ingress:", "1.2.3.4, lb.example.com"),
        );
        assert_contains(&text, &kv(23, "Port:", "<unset>  443/TCP"));
        assert_contains(&text, &kv(23, "TargetPort:", "https/TCP"));
    }

    #[test]
    fn a_node_shows_roles_taints_conditions_addresses_and_capacity() {
        let node = json!({
            "kind": "Node",
            "metadata": {"name": "node-1", "labels": {"node-role.kubernetes.io/worker": ""}},
            "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                                {"key": "x", "effect": "NoExecute"}]},
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "kubelet is posting ready status",
                                "lastHeartbeatTime": "2024-06-01T11:59:00Z",
                                "lastTransitionTime": "2024-06-01T10:00:00Z"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                              {"type": "Hostname", "address": "node-1"}],
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "nodeInfo": {"kubeletVersion": "v1.34.0", "architecture": "amd64"}
            }
        });
        let text = describe(&node, &[], now());
        let top = [
            kv(20, "Roles:", "worker"),
            kv(20, "Taints:", "dedicated=gpu:NoSchedule"),
            kv(20, "", "x:NoExecute"),
            kv(20, "Unschedulable:", "false"),
        ]
        .concat();
        assert_contains(&text, &top);
        assert_contains(
            &text,
            "  Ready   True    Sat, 01 Jun 2024 11:59:00 +0000   Sat, 01 Jun 2024 10:00:00 +0000",
        );
        let addresses = [
            "Addresses:\n".to_string(),
            kv(15, "  InternalIP:", "10.0.0.1"),
            kv(15, "  Hostname:", "node-1"),
            "Capacity:\n".into(),
            kv(11, "  cpu:", "4"),
            kv(11, "  memory:", "8Gi"),
            kv(11, "  pods:", "110"),
            "System Info:\n".into(),
        ]
        .concat();
        assert_contains(&text, &addresses);
        assert_contains(&text, &kv(30, "  Kubelet Version:", "v1.34.0"));
    }

    #[test]
    fn a_secret_shows_sizes_not_values() {
        let secret = with_meta(
            "Secret",
            json!({"type": "Opaque",
                   "data": {"password": "MWYyZDFlMmU2N2Rm", "username": "YWRtaW4="}}),
        );
        let text = describe(&secret, &[], now());
        let expected = [
            kv(20, "Type:", "Opaque"),
            "\nData\n====\n".into(),
            kv(11, "password:", "12 bytes"),
            kv(11, "username:", "5 bytes"),
            kv(11, "Events:", "<none>"),
        ]
        .concat();
        assert_contains(&text, &expected);
        assert!(!text.contains("MWYy"));
    }

    #[test]
    fn a_namespace_shows_its_phase() {
        let ns = json!({"kind": "Namespace", "metadata": {"name": "prod"}});
        assert_contains(&describe(&ns, &[], now()), &kv(20, "Status:", "Active"));
    }
}

/// other kinds (spec and data as YAML-ish lines): the tests of yaml.rs.
mod generic {
    use super::super::describe::describe;
    use super::super::test_support::{kv, now};
    use serde_json::json;

    #[test]
    fn other_kinds_print_spec_and_data_as_yaml_ish_lines() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "fortune-config", "namespace": "default"},
                        "data": {"sleep-interval": "25",
                                 "my-nginx-config.conf": "server {\n  listen 80;\n}\n"}});
        let text = describe(&cm, &[], now());
        let expected = [
            "Data:\n".to_string(),
            kv(25, "  my-nginx-config.conf:", "|"),
            "    server {\n".into(),
            "      listen 80;\n".into(),
            "    }\n".into(),
            kv(19, "  sleep-interval:", "25"),
        ]
        .concat();
        assert!(text.contains(&expected), "{text}");
    }

    #[test]
    fn lists_in_the_generic_view_use_dashes() {
        let sts = json!({"kind": "StatefulSet", "metadata": {"name": "kubia"},
                         "spec": {"replicas": 2, "serviceName": "kubia", "selector": {},
                                  "ports": [], "args": ["--v", 2],
                                  "containers": [{"name": "kubia", "image": "luksa/kubia-pet"}]},
                         "status": {"replicas": 2}});
        let text = describe(&sts, &[], now());
        let expected = [
            "Spec:\n".to_string(),
            "  args:\n".into(),
            "    - --v\n".into(),
            "    - 2\n".into(),
            "  containers:\n".into(),
            // The list item's fields and the fields after it form one column block.
            kv(16, "    - image:", "luksa/kubia-pet"),
            kv(16, "      name:", "kubia"),
            kv(16, "  ports:", "[]"),
            kv(16, "  replicas:", "2"),
            kv(16, "  selector:", "{}"),
            kv(16, "  serviceName:", "kubia"),
            "Status:\n".into(),
            kv(13, "  replicas:", "2"),
        ]
        .concat();
        assert!(text.contains(&expected), "{text}");
    }
}
