//! kubectl's `get` tables: the columns of every kind, plain and `-o wide`.
//!
//! The column lists follow kubernetes `pkg/printers/internalversion/printers.go`
//! (`AddHandlers`); a column with `Priority: 1` there is a `wide` column here. Cells are computed
//! for every column and the wide ones dropped unless asked for, as kubectl filters by priority.

use serde_json::Value;

use super::fields::{age_at, is_cluster_scoped, name_of, one_line, text_or};
use super::{access, cells, network, pod, tabwriter, volumes, workloads};

/// How to print a table.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableOptions {
    /// `-o wide`: the extra columns.
    pub wide: bool,
    /// `-A`: a NAMESPACE column first.
    pub with_namespace: bool,
}

/// The column headers for `kind` (e.g. "Pod").
pub fn headers(kind: &str, options: TableOptions) -> Vec<String> {
    let table = table_of(kind);
    let namespace = shows_namespace(kind, options).then(|| "NAMESPACE".to_owned());
    let columns = table
        .columns
        .iter()
        .filter(|c| options.wide || !c.wide)
        .map(|c| c.name.to_owned());
    namespace.into_iter().chain(columns).collect()
}

/// One object's cells, in the order of [`headers`].
pub fn row(kind: &str, object: &Value, options: TableOptions, now: jiff::Timestamp) -> Vec<String> {
    let table = table_of(kind);
    let namespace = shows_namespace(kind, options)
        .then(|| text_or(object, &["metadata", "namespace"], "<none>").to_owned());
    let cells = (table.cells)(object, now);
    debug_assert_eq!(
        cells.len(),
        table.columns.len(),
        "{kind}: one cell per column"
    );
    let cells = table
        .columns
        .iter()
        .zip(cells)
        .filter(|(c, _)| options.wide || !c.wide)
        .map(|(_, cell)| cell);
    // A newline or tab inside a cell would break the alignment of the whole table.
    namespace
        .into_iter()
        .chain(cells)
        .map(|cell| {
            if cell.contains(['\t', '\n', '\r']) {
                one_line(&cell)
            } else {
                cell
            }
        })
        .collect()
}

/// A column as the API's server-side printing (a `meta.k8s.io/v1` Table) declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnDefinition {
    pub name: &'static str,
    /// Shown only with `-o wide` (a Table column of priority 1).
    pub wide: bool,
}

/// Every column of `kind`'s table, the wide ones too, without NAMESPACE (kubectl adds that
/// itself from each row's object, as it does for kube-apiserver's Tables).
pub fn column_definitions(kind: &str) -> Vec<ColumnDefinition> {
    table_of(kind)
        .columns
        .iter()
        .map(|c| ColumnDefinition {
            name: c.name,
            wide: c.wide,
        })
        .collect()
}

/// One object's cells for every column of [`column_definitions`].
pub fn all_cells(kind: &str, object: &Value, now: jiff::Timestamp) -> Vec<String> {
    let options = TableOptions {
        wide: true,
        with_namespace: false,
    };
    row(kind, object, options, now)
}

/// Aligns cells in columns as kubectl does (each column as wide as its widest cell, three
/// spaces between columns, no trailing spaces).
pub fn render(rows: &[Vec<String>]) -> String {
    tabwriter::align(rows, 3)
}

/// kubectl prints NAMESPACE only for namespaced kinds, even with `-A`.
fn shows_namespace(kind: &str, options: TableOptions) -> bool {
    options.with_namespace && !is_cluster_scoped(kind)
}

/// One column of a kind's table.
struct Column {
    name: &'static str,
    /// Shown only with `-o wide` (kubectl's `Priority: 1`).
    wide: bool,
}

const fn col(name: &'static str) -> Column {
    Column { name, wide: false }
}

const fn wide(name: &'static str) -> Column {
    Column { name, wide: true }
}

/// Computes one cell per column of a kind's table.
type CellsFn = fn(&Value, jiff::Timestamp) -> Vec<String>;

/// The columns of a kind and the function computing its cells.
struct Table {
    columns: &'static [Column],
    cells: CellsFn,
}

const POD: &[Column] = &[
    col("NAME"),
    col("READY"),
    col("STATUS"),
    col("RESTARTS"),
    col("AGE"),
    wide("IP"),
    wide("NODE"),
    wide("NOMINATED NODE"),
    wide("READINESS GATES"),
];
const NODE: &[Column] = &[
    col("NAME"),
    col("STATUS"),
    col("ROLES"),
    col("AGE"),
    col("VERSION"),
    wide("INTERNAL-IP"),
    wide("EXTERNAL-IP"),
    wide("OS-IMAGE"),
    wide("KERNEL-VERSION"),
    wide("CONTAINER-RUNTIME"),
];
const SERVICE: &[Column] = &[
    col("NAME"),
    col("TYPE"),
    col("CLUSTER-IP"),
    col("EXTERNAL-IP"),
    col("PORT(S)"),
    col("AGE"),
    wide("SELECTOR"),
];
const ENDPOINTS: &[Column] = &[col("NAME"), col("ENDPOINTS"), col("AGE")];
const ENDPOINT_SLICE: &[Column] = &[
    col("NAME"),
    col("ADDRESSTYPE"),
    col("PORTS"),
    col("ENDPOINTS"),
    col("AGE"),
];
const NAMESPACE: &[Column] = &[col("NAME"), col("STATUS"), col("AGE")];
/// ReplicationController and ReplicaSet.
const REPLICAS: &[Column] = &[
    col("NAME"),
    col("DESIRED"),
    col("CURRENT"),
    col("READY"),
    col("AGE"),
    wide("CONTAINERS"),
    wide("IMAGES"),
    wide("SELECTOR"),
];
const EVENT: &[Column] = &[
    col("LAST SEEN"),
    col("TYPE"),
    col("REASON"),
    col("OBJECT"),
    wide("SUBOBJECT"),
    wide("SOURCE"),
    col("MESSAGE"),
    wide("FIRST SEEN"),
    wide("COUNT"),
    wide("NAME"),
];
const CONFIG_MAP: &[Column] = &[col("NAME"), col("DATA"), col("AGE")];
const SECRET: &[Column] = &[col("NAME"), col("TYPE"), col("DATA"), col("AGE")];
const SERVICE_ACCOUNT: &[Column] = &[col("NAME"), col("SECRETS"), col("AGE")];
const PERSISTENT_VOLUME: &[Column] = &[
    col("NAME"),
    col("CAPACITY"),
    col("ACCESS MODES"),
    col("RECLAIM POLICY"),
    col("STATUS"),
    col("CLAIM"),
    col("STORAGECLASS"),
    col("VOLUMEATTRIBUTESCLASS"),
    col("REASON"),
    col("AGE"),
    wide("VOLUMEMODE"),
];
const PERSISTENT_VOLUME_CLAIM: &[Column] = &[
    col("NAME"),
    col("STATUS"),
    col("VOLUME"),
    col("CAPACITY"),
    col("ACCESS MODES"),
    col("STORAGECLASS"),
    col("VOLUMEATTRIBUTESCLASS"),
    col("AGE"),
    wide("VOLUMEMODE"),
];
const DEPLOYMENT: &[Column] = &[
    col("NAME"),
    col("READY"),
    col("UP-TO-DATE"),
    col("AVAILABLE"),
    col("AGE"),
    wide("CONTAINERS"),
    wide("IMAGES"),
    wide("SELECTOR"),
];
const DAEMON_SET: &[Column] = &[
    col("NAME"),
    col("DESIRED"),
    col("CURRENT"),
    col("READY"),
    col("UP-TO-DATE"),
    col("AVAILABLE"),
    col("NODE SELECTOR"),
    col("AGE"),
    wide("CONTAINERS"),
    wide("IMAGES"),
    wide("SELECTOR"),
];
const STATEFUL_SET: &[Column] = &[
    col("NAME"),
    col("READY"),
    col("AGE"),
    wide("CONTAINERS"),
    wide("IMAGES"),
];
const CONTROLLER_REVISION: &[Column] =
    &[col("NAME"), col("CONTROLLER"), col("REVISION"), col("AGE")];
/// The classic Job columns; newer kubectl also prints a STATUS column after NAME.
const JOB: &[Column] = &[
    col("NAME"),
    col("COMPLETIONS"),
    col("DURATION"),
    col("AGE"),
    wide("CONTAINERS"),
    wide("IMAGES"),
    wide("SELECTOR"),
];
const CRON_JOB: &[Column] = &[
    col("NAME"),
    col("SCHEDULE"),
    col("TIMEZONE"),
    col("SUSPEND"),
    col("ACTIVE"),
    col("LAST SCHEDULE"),
    col("AGE"),
    wide("CONTAINERS"),
    wide("IMAGES"),
    wide("SELECTOR"),
];
const LEASE: &[Column] = &[col("NAME"), col("HOLDER"), col("AGE")];
const POD_DISRUPTION_BUDGET: &[Column] = &[
    col("NAME"),
    col("MIN AVAILABLE"),
    col("MAX UNAVAILABLE"),
    col("ALLOWED DISRUPTIONS"),
    col("AGE"),
];
const ROLE: &[Column] = &[col("NAME"), col("CREATED AT")];
const BINDING: &[Column] = &[
    col("NAME"),
    col("ROLE"),
    col("AGE"),
    wide("USERS"),
    wide("GROUPS"),
    wide("SERVICEACCOUNTS"),
];
const OTHER: &[Column] = &[col("NAME"), col("AGE")];

fn table_of(kind: &str) -> Table {
    let (columns, cells): (&'static [Column], CellsFn) = match kind {
        "Pod" => (POD, pod::cells),
        "Node" => (NODE, cells::node),
        "Service" => (SERVICE, network::service),
        "Endpoints" => (ENDPOINTS, network::endpoints),
        "EndpointSlice" => (ENDPOINT_SLICE, network::endpoint_slice),
        "Namespace" => (NAMESPACE, cells::namespace),
        "Event" => (EVENT, cells::event),
        "ConfigMap" => (CONFIG_MAP, cells::config_map),
        "Secret" => (SECRET, cells::secret),
        "ServiceAccount" => (SERVICE_ACCOUNT, cells::service_account),
        "PersistentVolume" => (PERSISTENT_VOLUME, volumes::persistent_volume),
        "PersistentVolumeClaim" => (PERSISTENT_VOLUME_CLAIM, volumes::persistent_volume_claim),
        "Lease" => (LEASE, cells::lease),
        "ReplicationController" => (REPLICAS, workloads::replication_controller),
        "ReplicaSet" => (REPLICAS, workloads::replica_set),
        "Deployment" => (DEPLOYMENT, workloads::deployment),
        "DaemonSet" => (DAEMON_SET, workloads::daemon_set),
        "StatefulSet" => (STATEFUL_SET, workloads::stateful_set),
        "ControllerRevision" => (CONTROLLER_REVISION, workloads::controller_revision),
        "Job" => (JOB, workloads::job),
        "CronJob" => (CRON_JOB, workloads::cron_job),
        "PodDisruptionBudget" => (POD_DISRUPTION_BUDGET, workloads::pod_disruption_budget),
        "Role" | "ClusterRole" => (ROLE, access::role),
        "RoleBinding" | "ClusterRoleBinding" => (BINDING, access::binding),
        _ => (OTHER, other),
    };
    Table { columns, cells }
}

/// Any kind without its own printer: NAME AGE.
fn other(object: &Value, now: jiff::Timestamp) -> Vec<String> {
    vec![
        name_of(object),
        age_at(object, &["metadata", "creationTimestamp"], now),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::test_support::now;
    use super::*;
    use serde_json::json;

    const KINDS: &[&str] = &[
        "Pod",
        "Node",
        "Service",
        "Endpoints",
        "Namespace",
        "ReplicationController",
        "Event",
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "ReplicaSet",
        "Deployment",
        "DaemonSet",
        "StatefulSet",
        "ControllerRevision",
        "Job",
        "CronJob",
        "Lease",
        "PodDisruptionBudget",
        "Widget",
    ];

    fn plain() -> TableOptions {
        TableOptions::default()
    }

    fn wide_options() -> TableOptions {
        TableOptions {
            wide: true,
            with_namespace: false,
        }
    }

    fn all_namespaces() -> TableOptions {
        TableOptions {
            wide: false,
            with_namespace: true,
        }
    }

    fn header_line(kind: &str, options: TableOptions) -> String {
        headers(kind, options).join(" | ")
    }

    #[test]
    fn each_kind_has_kubectls_default_headers() {
        let expected = [
            ("Pod", "NAME | READY | STATUS | RESTARTS | AGE"),
            ("Node", "NAME | STATUS | ROLES | AGE | VERSION"),
            (
                "Service",
                "NAME | TYPE | CLUSTER-IP | EXTERNAL-IP | PORT(S) | AGE",
            ),
            ("Endpoints", "NAME | ENDPOINTS | AGE"),
            ("Namespace", "NAME | STATUS | AGE"),
            (
                "ReplicationController",
                "NAME | DESIRED | CURRENT | READY | AGE",
            ),
            ("Event", "LAST SEEN | TYPE | REASON | OBJECT | MESSAGE"),
            ("ConfigMap", "NAME | DATA | AGE"),
            ("Secret", "NAME | TYPE | DATA | AGE"),
            ("ServiceAccount", "NAME | SECRETS | AGE"),
            (
                "PersistentVolume",
                "NAME | CAPACITY | ACCESS MODES | RECLAIM POLICY | STATUS | CLAIM | \
                 STORAGECLASS | VOLUMEATTRIBUTESCLASS | REASON | AGE",
            ),
            (
                "PersistentVolumeClaim",
                "NAME | STATUS | VOLUME | CAPACITY | ACCESS MODES | STORAGECLASS | \
                 VOLUMEATTRIBUTESCLASS | AGE",
            ),
            ("ReplicaSet", "NAME | DESIRED | CURRENT | READY | AGE"),
            ("Deployment", "NAME | READY | UP-TO-DATE | AVAILABLE | AGE"),
            (
                "DaemonSet",
                "NAME | DESIRED | CURRENT | READY | UP-TO-DATE | AVAILABLE | NODE SELECTOR | AGE",
            ),
            ("StatefulSet", "NAME | READY | AGE"),
            ("ControllerRevision", "NAME | CONTROLLER | REVISION | AGE"),
            ("Job", "NAME | COMPLETIONS | DURATION | AGE"),
            (
                "CronJob",
                "NAME | SCHEDULE | TIMEZONE | SUSPEND | ACTIVE | LAST SCHEDULE | AGE",
            ),
            ("Lease", "NAME | HOLDER | AGE"),
            (
                "PodDisruptionBudget",
                "NAME | MIN AVAILABLE | MAX UNAVAILABLE | ALLOWED DISRUPTIONS | AGE",
            ),
            ("Widget", "NAME | AGE"),
        ];
        for (kind, line) in expected {
            assert_eq!(header_line(kind, plain()), line, "{kind}");
        }
    }

    #[test]
    fn wide_adds_kubectls_priority_one_columns() {
        let expected = [
            (
                "Pod",
                "NAME | READY | STATUS | RESTARTS | AGE | IP | NODE | NOMINATED NODE | \
                 READINESS GATES",
            ),
            (
                "Node",
                "NAME | STATUS | ROLES | AGE | VERSION | INTERNAL-IP | EXTERNAL-IP | OS-IMAGE | \
                 KERNEL-VERSION | CONTAINER-RUNTIME",
            ),
            (
                "Service",
                "NAME | TYPE | CLUSTER-IP | EXTERNAL-IP | PORT(S) | AGE | SELECTOR",
            ),
            (
                "Event",
                "LAST SEEN | TYPE | REASON | OBJECT | SUBOBJECT | SOURCE | MESSAGE | FIRST SEEN | \
                 COUNT | NAME",
            ),
            (
                "ReplicaSet",
                "NAME | DESIRED | CURRENT | READY | AGE | CONTAINERS | IMAGES | SELECTOR",
            ),
            (
                "Deployment",
                "NAME | READY | UP-TO-DATE | AVAILABLE | AGE | CONTAINERS | IMAGES | SELECTOR",
            ),
            ("StatefulSet", "NAME | READY | AGE | CONTAINERS | IMAGES"),
            (
                "Job",
                "NAME | COMPLETIONS | DURATION | AGE | CONTAINERS | IMAGES | SELECTOR",
            ),
            ("Lease", "NAME | HOLDER | AGE"),
        ];
        for (kind, line) in expected {
            assert_eq!(header_line(kind, wide_options()), line, "{kind}");
        }
        assert!(header_line("PersistentVolumeClaim", wide_options()).ends_with("| VOLUMEMODE"));
    }

    #[test]
    fn all_namespaces_puts_namespace_first_for_namespaced_kinds() {
        assert_eq!(
            header_line("Pod", all_namespaces()),
            "NAMESPACE | NAME | READY | STATUS | RESTARTS | AGE"
        );
        let pod = json!({"metadata": {"name": "web", "namespace": "prod"}});
        let cells = row("Pod", &pod, all_namespaces(), now());
        assert_eq!(cells[..2], ["prod".to_string(), "web".to_string()]);
    }

    #[test]
    fn all_namespaces_leaves_cluster_scoped_kinds_alone() {
        for kind in ["Node", "Namespace", "PersistentVolume"] {
            assert!(
                !header_line(kind, all_namespaces()).contains("NAMESPACE"),
                "{kind}"
            );
        }
    }

    #[test]
    fn every_row_matches_its_headers_in_every_mode() {
        let object = json!({"metadata": {"name": "x", "namespace": "default"}});
        for kind in KINDS {
            for options in [plain(), wide_options(), all_namespaces()] {
                let cells = row(kind, &object, options, now());
                assert_eq!(
                    cells.len(),
                    headers(kind, options).len(),
                    "{kind} {options:?}"
                );
            }
        }
    }

    #[test]
    fn malformed_objects_do_not_panic() {
        let malformed = [
            json!(null),
            json!("a pod"),
            json!([1, 2]),
            json!({"metadata": "x", "spec": 3, "status": []}),
            json!({"metadata": {"name": 5, "creationTimestamp": "soon", "labels": [1]},
                   "spec": {"containers": {"a": 1}, "ports": "80", "replicas": "three",
                            "selector": {"matchExpressions": [{"operator": 1}]}},
                   "status": {"containerStatuses": [null, 1, {"state": "running"}],
                              "conditions": "ready", "loadBalancer": {"ingress": [7]}}}),
        ];
        for kind in KINDS {
            for object in &malformed {
                for options in [plain(), wide_options(), all_namespaces()] {
                    let cells = row(kind, object, options, now());
                    assert_eq!(cells.len(), headers(kind, options).len(), "{kind}");
                }
            }
        }
    }

    #[test]
    fn a_missing_name_or_time_reads_unknown() {
        let cells = row("Widget", &json!({}), plain(), now());
        assert_eq!(cells, ["<unknown>", "<unknown>"]);
    }

    #[test]
    fn other_kinds_show_name_and_age() {
        let object =
            json!({"metadata": {"name": "w", "creationTimestamp": "2024-06-01T11:55:00Z"}});
        assert_eq!(row("Widget", &object, plain(), now()), ["w", "5m"]);
    }

    #[test]
    fn newlines_inside_cells_are_flattened() {
        let event = json!({"message": "line one\nline two", "involvedObject": {"kind": "Pod"}});
        let cells = row("Event", &event, plain(), now());
        assert_eq!(cells[4], "line one line two");
    }

    #[test]
    fn render_pads_each_column_to_its_widest_cell_plus_three() {
        let rows = vec![
            vec!["NAME".into(), "READY".into(), "STATUS".into(), "AGE".into()],
            vec![
                "kubia-4jfyf".into(),
                "1/1".into(),
                "Running".into(),
                "7s".into(),
            ],
            vec![
                "web".into(),
                "0/1".into(),
                "CrashLoopBackOff".into(),
                "119s".into(),
            ],
        ];
        assert_eq!(
            render(&rows),
            "NAME          READY   STATUS             AGE\n\
             kubia-4jfyf   1/1     Running            7s\n\
             web           0/1     CrashLoopBackOff   119s\n"
        );
    }

    #[test]
    fn render_leaves_no_trailing_spaces_after_an_empty_last_cell() {
        let rows = vec![
            vec!["NAME".into(), "HOLDER".into()],
            vec!["lease-a".into(), String::new()],
        ];
        assert_eq!(render(&rows), "NAME      HOLDER\nlease-a\n");
    }

    #[test]
    fn render_of_nothing_is_empty() {
        assert_eq!(render(&[]), "");
    }

    #[test]
    fn a_full_pod_table_renders_like_kubectl() {
        let pod = json!({
            "metadata": {"name": "kubia-4jfyf", "namespace": "default",
                         "creationTimestamp": "2024-06-01T11:47:00Z"},
            "spec": {"containers": [{"name": "kubia"}]},
            "status": {"phase": "Running",
                       "containerStatuses": [{"name": "kubia", "ready": true, "restartCount": 0,
                                              "state": {"running": {}}}]}
        });
        let table = vec![headers("Pod", plain()), row("Pod", &pod, plain(), now())];
        assert_eq!(
            render(&table),
            "NAME          READY   STATUS    RESTARTS   AGE\n\
             kubia-4jfyf   1/1     Running   0          13m\n"
        );
    }
}
