//! What `rudder bench controllers` observes and prints, pure: pods as a watch shows them, a
//! ReplicaSet's or Deployment's status read for "done", a process's memory from the text of
//! `/proc/<pid>/status`, and the summary table.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use rudder_printers::table;

/// A hollow node's pods get addresses from its /24, which holds 253 (the network address,
/// the bridge and the broadcast address are never handed out).
pub const HOLLOW_ADDRESSES_PER_NODE: usize = 253;
/// A node's `maxPods` unless the run needs more (the kubelet's default).
const DEFAULT_MAX_PODS: usize = 110;
/// The issue's goal: 1,000 pods Running in at most this long, on 100 hollow nodes.
const RUNNING_GOAL: Duration = Duration::from_secs(3);
/// The issue's goal: under this many MiB per master with 10,000 pods.
const RSS_GOAL_MIB: u64 = 300;

/// One pod as the watch last showed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PodState {
    bound: bool,
    running: bool,
    terminating: bool,
}

/// The pods a watch has shown, by name: how many exist, are bound, run, are being deleted.
/// Applying the same event twice changes nothing (a reopened watch may repeat some).
#[derive(Debug, Default)]
pub struct PodTally {
    pods: HashMap<String, PodState>,
}

impl PodTally {
    /// Applies one watch event: `ADDED` and `MODIFIED` record the pod as it is now,
    /// `DELETED` forgets it, anything else (`BOOKMARK`) changes nothing.
    pub fn apply(&mut self, kind: &str, pod: &Value) {
        let Some(name) = pod["metadata"]["name"].as_str() else {
            return;
        };
        match kind {
            "DELETED" => {
                self.pods.remove(name);
            }
            "ADDED" | "MODIFIED" => {
                let state = PodState {
                    bound: pod["spec"]["nodeName"]
                        .as_str()
                        .is_some_and(|node| !node.is_empty()),
                    running: pod["status"]["phase"] == "Running",
                    terminating: !pod["metadata"]["deletionTimestamp"].is_null(),
                };
                self.pods.insert(name.to_string(), state);
            }
            _ => {}
        }
    }

    /// Pods that exist, being deleted or not.
    pub fn existing(&self) -> usize {
        self.pods.len()
    }

    pub fn bound(&self) -> usize {
        self.count(|pod| pod.bound)
    }

    /// Pods Running and not being deleted.
    pub fn running(&self) -> usize {
        self.count(|pod| pod.running && !pod.terminating)
    }

    /// Pods with a deletionTimestamp, still there.
    pub fn terminating(&self) -> usize {
        self.count(|pod| pod.terminating)
    }

    fn count(&self, test: impl Fn(&PodState) -> bool) -> usize {
        self.pods.values().filter(|pod| test(pod)).count()
    }

    pub fn progress(&self) -> String {
        format!(
            "{} pods, {} bound, {} Running, {} terminating",
            self.existing(),
            self.bound(),
            self.running(),
            self.terminating()
        )
    }
}

/// When a scale-out first had every pod created, bound and Running, from its create.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScaleMarks {
    pub created: Option<Duration>,
    pub bound: Option<Duration>,
    pub running: Option<Duration>,
}

impl ScaleMarks {
    /// Records `at` for each count that reached `target` for the first time.
    pub fn note(&mut self, tally: &PodTally, target: usize, at: Duration) {
        let mark = |slot: &mut Option<Duration>, count: usize| {
            if slot.is_none() && count >= target {
                *slot = Some(at);
            }
        };
        mark(&mut self.created, tally.existing());
        mark(&mut self.bound, tally.bound());
        mark(&mut self.running, tally.running());
    }
}

/// A ReplicaSet's or Deployment's spec and status, as far as "done" needs them (absent
/// counts are 0, as Kubernetes omits them; absent `spec.replicas` is Kubernetes' 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rollout {
    pub generation: i64,
    pub observed_generation: i64,
    pub desired: i64,
    pub replicas: i64,
    pub updated: i64,
    pub ready: i64,
    pub available: i64,
}

impl Rollout {
    pub fn of(object: &Value) -> Self {
        let count = |value: &Value| value.as_i64().unwrap_or(0);
        let status = &object["status"];
        Self {
            generation: count(&object["metadata"]["generation"]),
            observed_generation: count(&status["observedGeneration"]),
            desired: object["spec"]["replicas"].as_i64().unwrap_or(1),
            replicas: count(&status["replicas"]),
            updated: count(&status["updatedReplicas"]),
            ready: count(&status["readyReplicas"]),
            available: count(&status["availableReplicas"]),
        }
    }

    /// A Deployment's rollout is complete, as `kubectl rollout status` decides: the
    /// controller has seen generation `since` (the one our write made) or later, and every
    /// replica runs the new template and is available, none of an old one left.
    pub fn deployment_complete(&self, since: i64) -> bool {
        self.observed_generation >= since.max(self.generation)
            && self.updated == self.desired
            && self.replicas == self.desired
            && self.available == self.desired
    }

    /// A ReplicaSet's controller has seen its spec and counts every replica, all ready.
    pub fn replica_set_settled(&self) -> bool {
        self.observed_generation >= self.generation
            && self.replicas == self.desired
            && self.ready == self.desired
    }

    pub fn progress(&self) -> String {
        format!(
            "{} of {} updated, {} ready, {} available, {} in all; generation {} observed {}",
            self.updated,
            self.desired,
            self.ready,
            self.available,
            self.replicas,
            self.generation,
            self.observed_generation
        )
    }
}

/// A process's resident memory now and at its peak, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

/// `VmRSS` and `VmHWM` from the text of `/proc/<pid>/status` (lines like `VmRSS:\t  5120 kB`).
pub fn memory_from_status(text: &str) -> Option<Memory> {
    Some(Memory {
        rss_kib: status_kib(text, "VmRSS")?,
        peak_kib: status_kib(text, "VmHWM")?,
    })
}

fn status_kib(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        let mut words = value.split_whitespace();
        let kib = words.next()?.parse().ok()?;
        (words.next()? == "kB").then_some(kib)
    })
}

pub fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

pub fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

/// The `maxPods` each of `nodes` hollow nodes gets so `pods` fit with a tenth to spare (the
/// scheduler need not spread them evenly): the kubelet's 110 unless that is too few.
pub fn max_pods_per_node(pods: usize, nodes: usize) -> usize {
    let nodes = nodes.max(1);
    let wanted = (pods * 11).div_ceil(10 * nodes);
    wanted.max(DEFAULT_MAX_PODS)
}

/// The issue's goal for create → Running, judged only on its own setup (1,000 pods over 100
/// nodes); "" for any other.
pub fn running_goal(replicas: usize, nodes: usize, took: Duration) -> String {
    if replicas == 1000 && nodes == 100 {
        verdict("≤ 3 s", took <= RUNNING_GOAL)
    } else {
        String::new()
    }
}

/// The issue's memory goal per master, judged only with its 10,000 pods; "" otherwise.
pub fn rss_goal(pods: usize, rss_kib: u64) -> String {
    if pods == 10_000 {
        verdict("< 300 MiB", rss_kib < RSS_GOAL_MIB * 1024)
    } else {
        String::new()
    }
}

fn verdict(goal: &str, met: bool) -> String {
    format!("{goal} ({})", if met { "met" } else { "missed" })
}

/// One line of the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub measure: String,
    pub value: String,
    pub goal: String,
    pub detail: String,
}

/// The summary as kubectl prints a table: a header, columns aligned, three spaces apart.
pub fn render(rows: &[Row]) -> String {
    let mut lines = vec![vec![
        "MEASURE".to_string(),
        "VALUE".into(),
        "GOAL".into(),
        "DETAIL".into(),
    ]];
    lines.extend(rows.iter().map(|row| {
        vec![
            row.measure.clone(),
            row.value.clone(),
            row.goal.clone(),
            row.detail.clone(),
        ]
    }));
    table::render(&lines)
}

/// The command line as a shell would take it back: `rudder` and the arguments, those with
/// spaces or quotes single-quoted.
pub fn command_line(arguments: &[String]) -> String {
    let mut words = vec!["rudder".to_string()];
    for argument in arguments {
        let plain = !argument.is_empty()
            && argument
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=.,:/@%+".contains(c));
        words.push(if plain {
            argument.clone()
        } else {
            format!("'{}'", argument.replace('\'', r"'\''"))
        });
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, phase: &str, deleting: bool) -> Value {
        let mut pod = json!({
            "metadata": { "name": name },
            "spec": { "nodeName": node },
            "status": { "phase": phase }
        });
        if deleting {
            pod["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        }
        pod
    }

    #[test]
    fn the_tally_follows_a_pod_from_created_to_deleted() {
        let mut tally = PodTally::default();
        tally.apply("ADDED", &pod("a", "", "Pending", false));
        assert_eq!(
            (tally.existing(), tally.bound(), tally.running()),
            (1, 0, 0)
        );
        tally.apply("MODIFIED", &pod("a", "n-1", "Pending", false));
        assert_eq!((tally.bound(), tally.running()), (1, 0));
        tally.apply("MODIFIED", &pod("a", "n-1", "Running", false));
        assert_eq!(tally.running(), 1);
        tally.apply("MODIFIED", &pod("a", "n-1", "Running", true));
        assert_eq!(
            (tally.existing(), tally.running(), tally.terminating()),
            (1, 0, 1)
        );
        tally.apply("DELETED", &pod("a", "n-1", "Running", true));
        assert_eq!((tally.existing(), tally.terminating()), (0, 0));
    }

    #[test]
    fn a_repeated_event_counts_once_and_bookmarks_and_nameless_objects_count_nothing() {
        let mut tally = PodTally::default();
        tally.apply("ADDED", &pod("a", "n-1", "Running", false));
        tally.apply("ADDED", &pod("a", "n-1", "Running", false));
        tally.apply("BOOKMARK", &json!({ "metadata": { "name": "b" } }));
        tally.apply("ADDED", &json!({ "metadata": {} }));
        assert_eq!((tally.existing(), tally.running()), (1, 1));
        assert_eq!(
            tally.progress(),
            "1 pods, 1 bound, 1 Running, 0 terminating"
        );
    }

    #[test]
    fn scale_marks_keep_the_first_time_each_count_reached_the_target() {
        let mut tally = PodTally::default();
        let mut marks = ScaleMarks::default();
        tally.apply("ADDED", &pod("a", "", "Pending", false));
        tally.apply("ADDED", &pod("b", "n-1", "Pending", false));
        marks.note(&tally, 2, Duration::from_millis(100));
        tally.apply("MODIFIED", &pod("a", "n-2", "Running", false));
        marks.note(&tally, 2, Duration::from_millis(200));
        tally.apply("MODIFIED", &pod("b", "n-1", "Running", false));
        marks.note(&tally, 2, Duration::from_millis(300));
        marks.note(&tally, 2, Duration::from_millis(400));
        assert_eq!(
            marks,
            ScaleMarks {
                created: Some(Duration::from_millis(100)),
                bound: Some(Duration::from_millis(200)),
                running: Some(Duration::from_millis(300)),
            }
        );
    }

    fn deployment(generation: i64, observed: i64, status: Value) -> Value {
        let mut status = status;
        status["observedGeneration"] = json!(observed);
        json!({ "metadata": { "generation": generation }, "spec": { "replicas": 4 },
                "status": status })
    }

    #[test]
    fn a_rollout_is_complete_only_at_the_generation_our_update_made() {
        let done = json!({ "replicas": 4, "updatedReplicas": 4, "availableReplicas": 4 });
        // The watch may still deliver the Deployment as it was before the update: done, but
        // for the old template.
        assert!(!Rollout::of(&deployment(1, 1, done.clone())).deployment_complete(2));
        // Updated, the controller has not looked yet.
        assert!(!Rollout::of(&deployment(2, 1, done.clone())).deployment_complete(2));
        assert!(Rollout::of(&deployment(2, 2, done)).deployment_complete(2));
    }

    #[test]
    fn a_rollout_with_old_pods_left_or_new_ones_unavailable_is_not_complete() {
        let surging = json!({ "replicas": 5, "updatedReplicas": 4, "availableReplicas": 4 });
        assert!(!Rollout::of(&deployment(2, 2, surging)).deployment_complete(2));
        let starting = json!({ "replicas": 4, "updatedReplicas": 4, "availableReplicas": 3 });
        assert!(!Rollout::of(&deployment(2, 2, starting)).deployment_complete(2));
        // Kubernetes omits zero counts: an empty status is all zeros, not done.
        assert!(!Rollout::of(&deployment(2, 2, json!({}))).deployment_complete(2));
    }

    #[test]
    fn a_replica_set_settles_when_its_controller_counts_every_replica_ready() {
        let set = |observed: i64, replicas: i64, ready: i64| {
            json!({ "metadata": { "generation": 3 }, "spec": { "replicas": 2 },
                    "status": { "observedGeneration": observed, "replicas": replicas,
                                "readyReplicas": ready } })
        };
        assert!(Rollout::of(&set(3, 2, 2)).replica_set_settled());
        assert!(!Rollout::of(&set(2, 2, 2)).replica_set_settled());
        assert!(!Rollout::of(&set(3, 2, 1)).replica_set_settled());
        assert!(!Rollout::of(&set(3, 1, 1)).replica_set_settled());
        let unset = json!({ "metadata": { "generation": 1 }, "status": {
            "observedGeneration": 1, "replicas": 1, "readyReplicas": 1 } });
        assert_eq!(Rollout::of(&unset).desired, 1);
    }

    const STATUS: &str = "Name:\trudder\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmPeak:\t 2150400 kB\nVmSize:\t 2150000 kB\nVmHWM:\t  262144 kB\n\
        VmRSS:\t  217088 kB\nRssAnon:\t  200000 kB\nThreads:\t12\n";

    #[test]
    fn memory_is_read_from_vmrss_and_vmhwm_not_their_lookalikes() {
        assert_eq!(
            memory_from_status(STATUS),
            Some(Memory {
                rss_kib: 217_088,
                peak_kib: 262_144
            })
        );
        assert_eq!(mib(217_088), "212 MiB");
    }

    #[test]
    fn a_status_without_memory_lines_or_with_another_unit_gives_none() {
        // A kernel thread has no VmRSS line.
        assert_eq!(memory_from_status("Name:\tkthreadd\nState:\tS\n"), None);
        assert_eq!(memory_from_status("VmRSS:\t 12 MB\nVmHWM:\t 12 kB\n"), None);
        assert_eq!(
            memory_from_status("VmRSS:\t lots kB\nVmHWM:\t 12 kB\n"),
            None
        );
    }

    #[test]
    fn nodes_get_the_kubelet_default_unless_the_pods_need_more() {
        assert_eq!(max_pods_per_node(1250, 100), 110);
        // 10,000 pods with a tenth to spare over 100 nodes: 110.
        assert_eq!(max_pods_per_node(10_000, 100), 110);
        assert_eq!(max_pods_per_node(10_001, 100), 111);
        assert_eq!(max_pods_per_node(10_000, 50), 220);
        assert_eq!(max_pods_per_node(10, 0), 110);
    }

    #[test]
    fn goals_are_judged_only_on_the_issues_own_setup() {
        assert_eq!(
            running_goal(1000, 100, Duration::from_millis(2900)),
            "≤ 3 s (met)"
        );
        assert_eq!(
            running_goal(1000, 100, Duration::from_millis(3001)),
            "≤ 3 s (missed)"
        );
        assert_eq!(running_goal(1000, 10, Duration::from_millis(1)), "");
        assert_eq!(running_goal(500, 100, Duration::from_millis(1)), "");
        assert_eq!(rss_goal(10_000, 299 * 1024), "< 300 MiB (met)");
        assert_eq!(rss_goal(10_000, 300 * 1024), "< 300 MiB (missed)");
        assert_eq!(rss_goal(1_000, 1), "");
    }

    #[test]
    fn the_summary_is_a_kubectl_like_table() {
        let row = |measure: &str, value: &str, goal: &str, detail: &str| Row {
            measure: measure.into(),
            value: value.into(),
            goal: goal.into(),
            detail: detail.into(),
        };
        let rows = [
            row(
                "replicaset create → 1000 Running",
                &seconds(Duration::from_millis(2414)),
                "≤ 3 s (met)",
                "all created 0.91 s",
            ),
            row("master m1 RSS, 10000 pods", "212 MiB", "", ""),
        ];
        assert_eq!(
            render(&rows),
            "MEASURE                            VALUE     GOAL          DETAIL\n\
             replicaset create → 1000 Running   2.41 s    ≤ 3 s (met)   all created 0.91 s\n\
             master m1 RSS, 10000 pods          212 MiB\n"
        );
    }

    #[test]
    fn the_command_line_quotes_only_what_a_shell_would_split() {
        let arguments = [
            "bench",
            "controllers",
            "--rudder-flags",
            "--a=1 --b=2",
            "--server",
            "x:1,y:2",
            "it's",
        ];
        let arguments: Vec<String> = arguments.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            command_line(&arguments),
            r"rudder bench controllers --rudder-flags '--a=1 --b=2' --server x:1,y:2 'it'\''s'"
        );
    }
}
