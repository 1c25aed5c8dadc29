//! Workload controllers inside real masters (`rudder server` processes) over hollow nodes,
//! checked by watches at every event:
//!
//! - The fence, where a kill cannot test it: the master holding the controller lease is
//!   paused (SIGSTOP) past its lease in the middle of a ReplicaSet's scale from 0 to 100;
//!   another master takes over and creates pods; the paused one is resumed (SIGCONT) while
//!   the new leader is still at it. A watch opened before the scale never sees more live
//!   pods than the set wants, and the set ends with exactly that many.
//! - A Deployment of 20 rolls out a new image within maxSurge 25% / maxUnavailable 25% at
//!   every event, keeps both revisions in its history, and `rollout undo` brings the first
//!   back (within the same bounds); one whose pods fit no node ends in
//!   ProgressDeadlineExceeded.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rudder_proto::api::ListRequest;
use rudder_proto::client::ApiClient;
use rudder_tests::{
    hollow_nodes, is_live, is_ready, late_step_down_flags, lease_holder, live_pods, member_log,
    revision, rudder_binary_beside_tests, rudder_cli, short_lease_flags, wait_for,
    wait_for_default_namespace, wait_for_nodes, Follow, Holder, ProcessCluster, Watch,
    CONTROLLER_LEASE,
};
use serde_json::{json, Value};

/// The set's size after the scale: large enough that the new leader is still creating (in
/// slow-start batches of 1, 2, 4, ... 32) when the paused master resumes.
const REPLICAS: usize = 100;
/// The lease duration of [`short_lease_flags`].
const LEASE: Duration = Duration::from_secs(3);
/// What the controller manager logs when a term ends (`leader/term.rs`).
const STEPPED_DOWN: &str = "controller-manager no longer leading: stopping";

/// What the watch on the set's pods saw.
#[derive(Default)]
struct Census {
    /// The most live pods at once, after any event.
    most: usize,
    /// The first event after which more than `REPLICAS` were live.
    over: Option<String>,
    /// The revision at which each pod was created (its ADDED event).
    created: Vec<u64>,
}

/// The first holder of the controller lease other than `from`, as the lease's watch showed
/// it: its revision is the takeover's.
struct Takeover {
    from: String,
    to: Option<Holder>,
}

/// The lease holder is paused longer than its lease (3 s) while it scales a ReplicaSet from 0
/// to 100 (as its first pods appear). Another master takes the lease at a higher epoch and
/// creates pods (some created after the takeover's revision); then the paused master is
/// resumed while the new leader is still creating. The resumed master stops its controllers
/// (its renew deadline is long past by its own clock), nothing of it lands: a watch opened
/// before the scale never sees more than 100 live pods, and the set ends with exactly 100.
///
/// Its writes that reach the API after the takeover are refused by the fence; the API server
/// logs each refusal ("fenced write refused ... <holder> (epoch N) is no longer the leader of
/// lease kube-system/rudder-controller-manager") in the resumed master's log, where the test
/// counts them and requires some. Left alone, the resumed elector steps down at its first
/// poll after SIGCONT, before its controllers write (0 refusals in each of 5 runs); the
/// `leader-steps-down-late` failpoint keeps it acting for 8 s more, as a process stalled
/// just after its check would, so the fence is what stops its writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_leader_paused_past_its_lease_and_resumed_mid_takeover_adds_no_pod() {
    let flags = [short_lease_flags(), late_step_down_flags()].concat();
    let cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 3, &flags).unwrap();
    let client = ApiClient::new(cluster.endpoints());
    wait_for_default_namespace(&client).await;
    let mut hollow = hollow_nodes(&cluster.endpoints().join(","), "fence", 5);
    wait_for_nodes(&client, 5, Duration::from_secs(60)).await;
    let set = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": { "name": "fence", "namespace": "default" },
        "spec": { "replicas": 0, "selector": { "matchLabels": { "app": "fence" } },
                  "template": { "metadata": { "labels": { "app": "fence" } },
                                "spec": { "containers": [{ "name": "c", "image": "kubia" }] } } }
    });
    client
        .create_object("replicasets", "default", &set)
        .await
        .expect("creating the set");

    let leader = wait_for(
        "a controller lease holder",
        Duration::from_secs(30),
        async || {
            lease_holder(&client, CONTROLLER_LEASE)
                .await
                .ok_or_else(|| "no holder yet".to_string())
        },
    )
    .await;
    let paused = cluster
        .members
        .iter()
        .position(|m| m.name == leader.master())
        .expect("the holder is a master");
    let survivors: Vec<String> = cluster
        .members
        .iter()
        .filter(|m| m.name != leader.master())
        .map(|m| m.client_addr.clone())
        .collect();
    let survivors_client = ApiClient::new(survivors.clone());
    let pods = Watch::start(
        survivors.clone(),
        Follow::pods("default", "app=fence"),
        Census::default(),
        |census, kind, pod, shown| {
            if kind == "ADDED" {
                census.created.push(revision(pod));
            }
            let live = shown.values().filter(|p| is_live(p)).count();
            census.most = census.most.max(live);
            if live > REPLICAS && census.over.is_none() {
                census.over = Some(format!(
                    "{live} live pods after {kind} of {} at revision {}",
                    pod["metadata"]["name"],
                    revision(pod)
                ));
            }
        },
    )
    .await;
    let lease = Watch::start(
        survivors.clone(),
        Follow::lease(CONTROLLER_LEASE),
        Takeover {
            from: leader.identity.clone(),
            to: None,
        },
        |takeover, _, lease, _| {
            if takeover.to.is_none() {
                takeover.to = Holder::of(lease).filter(|now| now.identity != takeover.from);
            }
        },
    )
    .await;
    let log = || member_log(&cluster.members[paused]);
    let stepped_down_before = log().matches(STEPPED_DOWN).count();

    survivors_client
        .patch_object(
            "replicasets",
            "default",
            "fence",
            &json!({ "spec": { "replicas": REPLICAS } }),
            false,
        )
        .await
        .expect("scaling the set");
    // Each wait on a watch answers at the event itself: the pause and the resume below land
    // while the leader at hand is still creating.
    pods.wait_for(
        "the first pods (the leader is still creating the rest)",
        Duration::from_secs(60),
        |shown, _| match shown.values().filter(|p| is_live(p)).count() {
            0 => Err("no pod yet".to_string()),
            _ => Ok(()),
        },
    )
    .await;
    cluster.members[paused].pause();
    let paused_at = Instant::now();
    // (Not listed now: while the paused master led the store too, a read can wait out its
    // 7 s request timeout. That the leader had not finished shows below, when its successor
    // still has pods to make.)
    let at_pause = pods.with(|shown, _| shown.values().filter(|p| is_live(p)).count());

    let takeover = lease
        .wait_for(
            "another master takes the controller lease",
            LEASE * 4,
            |_, takeover| {
                takeover
                    .to
                    .clone()
                    .ok_or_else(|| format!("still {}", leader.identity))
            },
        )
        .await;
    assert_ne!(takeover.master(), leader.master());
    assert!(
        takeover.epoch > leader.epoch,
        "the takeover's epoch {} is not above the paused holder's {}",
        takeover.epoch,
        leader.epoch
    );
    pods.wait_for(
        "the new leader creates pods (the paused one had not made them all)",
        Duration::from_secs(30),
        |shown, census| {
            if census.created.iter().any(|at| *at > takeover.revision) {
                Ok(())
            } else {
                Err(format!(
                    "{} live pods, none created after the takeover at revision {}",
                    shown.values().filter(|p| is_live(p)).count(),
                    takeover.revision
                ))
            }
        },
    )
    .await;
    cluster.members[paused].resume();
    let paused_for = paused_at.elapsed();
    let at_resume = wait_for("the pods listed", Duration::from_secs(30), async || {
        live_pods(&survivors_client, "app=fence").await
    })
    .await
    .len();
    assert!(
        at_resume < REPLICAS,
        "the new leader had made all {REPLICAS} pods before the paused master resumed: it \
         did not resume mid-action"
    );

    wait_for(
        "the resumed master stops its controllers",
        Duration::from_secs(15),
        async || match log().matches(STEPPED_DOWN).count() {
            now if now > stepped_down_before => Ok(()),
            now => Err(format!("{now} step-downs logged, as before the pause")),
        },
    )
    .await;
    let everyone = ApiClient::new(cluster.endpoints());
    wait_for(
        &format!("{REPLICAS} pods, listed, watched and in the set's status"),
        Duration::from_secs(60),
        async || {
            let listed = live_pods(&everyone, "app=fence").await?.len();
            let set = everyone
                .get_object("replicasets", "default", "fence")
                .await
                .map_err(|error| error.to_string())?;
            let watched = pods.with(|shown, _| shown.values().filter(|p| is_live(p)).count());
            let status = &set["status"];
            if listed == REPLICAS
                && watched == REPLICAS
                && status["replicas"] == REPLICAS
                && status["observedGeneration"] == set["metadata"]["generation"]
            {
                Ok(())
            } else {
                Err(format!(
                    "{listed} listed, {watched} watched, status {status}"
                ))
            }
        },
    )
    .await;
    pods.stop();
    lease.stop();
    let (most, over) = pods.with(|_, census| (census.most, census.over.clone()));
    assert!(
        most <= REPLICAS && over.is_none(),
        "a watch saw {most} live pods at once (the set wants {REPLICAS}): {over:?}"
    );

    let deposed = format!(
        "{} (epoch {}) is no longer the leader of lease kube-system/{CONTROLLER_LEASE}",
        leader.identity, leader.epoch
    );
    let resumed_log = log();
    let refused = resumed_log
        .lines()
        .filter(|line| line.contains("fenced write refused") && line.contains(&deposed))
        .count();
    let seen_refused = resumed_log
        .matches("the controller lease is lost; this write was refused")
        .count();
    println!(
        "paused {paused_for:?} (the watch showed {at_pause} pods then); {} took over at epoch \
         {}; resumed at {at_resume} pods; the resumed master's writes refused by the fence: \
         {refused} (its controllers saw {seen_refused} refusals)",
        takeover.identity, takeover.epoch
    );
    assert!(
        refused > 0,
        "the resumed master made no write the fence had to refuse: the test did not test it"
    );
    hollow.kill().await.expect("stopping the hollow nodes");
    drop(cluster);
}

/// The rolled-out Deployment's size.
const WEB: usize = 20;
/// `replicas + maxSurge`: 25% of 20 rounds up to 5.
const MOST_LIVE: usize = 25;
/// `replicas - maxUnavailable`: 25% of 20 rounds down to 5.
const LEAST_AVAILABLE: usize = 15;

/// What the watch on the Deployment's pods saw: live and available pods after each event.
#[derive(Default)]
struct Bounds {
    events: usize,
    most_live: usize,
    least_available: Option<usize>,
    /// The first events after which a bound was broken.
    broken: Vec<String>,
}

fn web(image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": { "replicas": WEB, "minReadySeconds": 0,
                  "strategy": { "type": "RollingUpdate",
                                "rollingUpdate": { "maxSurge": "25%", "maxUnavailable": "25%" } },
                  "selector": { "matchLabels": { "app": "web" } },
                  "template": { "metadata": { "labels": { "app": "web" } },
                                "spec": { "containers": [{ "name": "c", "image": image }] } } }
    })
}

/// Whether the Deployment has rolled out `image`: its status (for its latest generation)
/// and `pods` both show exactly 20 live pods, all ready on `image`. `Err` says what is there.
fn rolled_out<'a>(
    deployment: &Value,
    pods: impl IntoIterator<Item = &'a Value>,
    image: &str,
) -> Result<(), String> {
    let status = &deployment["status"];
    let live: Vec<&Value> = pods.into_iter().filter(|p| is_live(p)).collect();
    let current = live
        .iter()
        .filter(|p| p["spec"]["containers"][0]["image"] == image && is_ready(p))
        .count();
    let done = status["observedGeneration"] == deployment["metadata"]["generation"]
        && status["replicas"] == WEB
        && status["updatedReplicas"] == WEB
        && status["availableReplicas"] == WEB
        && live.len() == WEB
        && current == WEB;
    if done {
        return Ok(());
    }
    Err(format!(
        "generation {} (observed {}): replicas {}, updated {}, available {}; {} live pods, \
         {current} ready on {image}",
        deployment["metadata"]["generation"],
        status["observedGeneration"],
        status["replicas"],
        status["updatedReplicas"],
        status["availableReplicas"],
        live.len()
    ))
}

async fn replica_sets(client: &ApiClient, selector: &str) -> Vec<Value> {
    let listed = client
        .list(ListRequest {
            resource: "replicasets".into(),
            namespace: "default".into(),
            label_selector: selector.into(),
            ..Default::default()
        })
        .await
        .expect("listing ReplicaSets");
    listed
        .items
        .iter()
        .map(|item| serde_json::from_slice(item).expect("a ReplicaSet"))
        .collect()
}

fn revision_of(object: &Value) -> Option<&str> {
    object["metadata"]["annotations"]["deployment.kubernetes.io/revision"].as_str()
}

/// The REVISION column of `rollout history`'s table.
fn listed_revisions(table: &str) -> Vec<String> {
    table
        .lines()
        .skip_while(|line| !line.starts_with("REVISION"))
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .map(String::from)
        .collect()
}

/// A Deployment of 20 on hollow nodes (their pods turn Ready once running; minReadySeconds
/// 0, so Ready is available) gets a new image with maxSurge 25% / maxUnavailable 25%: a
/// watch opened before the update sees, after every event, at most 25 live pods (pods being
/// deleted not counted) and at least 15 available. `rollout history` then lists revisions 1
/// and 2, and `rollout undo` puts the first template back: its ReplicaSet becomes the new
/// one at revision 3 with 20 pods, within the same bounds. A second Deployment, whose pods
/// fit no node (a nodeSelector nothing has), makes no progress and ends Progressing=False
/// with reason ProgressDeadlineExceeded after its 10 s deadline (it runs beside the first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_rolls_out_and_back_within_its_bounds_and_a_stuck_one_exceeds_its_deadline() {
    let cluster = ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 1, &[]).unwrap();
    let servers = cluster.endpoints().join(",");
    let client = ApiClient::new(cluster.endpoints());
    wait_for_default_namespace(&client).await;
    let mut hollow = hollow_nodes(&servers, "roll", 5);
    wait_for_nodes(&client, 5, Duration::from_secs(60)).await;

    let stuck = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "stuck", "namespace": "default" },
        "spec": { "replicas": 2, "progressDeadlineSeconds": 10,
                  "selector": { "matchLabels": { "app": "stuck" } },
                  "template": { "metadata": { "labels": { "app": "stuck" } },
                                "spec": { "nodeSelector": { "rudder.dev/pool": "nowhere" },
                                          "containers": [{ "name": "c", "image": "web:v1" }] } } }
    });
    client
        .create_object("deployments", "default", &stuck)
        .await
        .expect("creating the stuck Deployment");
    client
        .create_object("deployments", "default", &web("web:v1"))
        .await
        .expect("creating the Deployment");
    let created = Instant::now();
    wait_for(
        "web: 20 pods available on web:v1",
        Duration::from_secs(60),
        async || {
            let deployment = client
                .get_object("deployments", "default", "web")
                .await
                .map_err(|error| error.to_string())?;
            let listed = live_pods(&client, "app=web").await?;
            rolled_out(&deployment, &listed, "web:v1")
        },
    )
    .await;
    let first_rollout = created.elapsed();

    let pods = Watch::start(
        cluster.endpoints(),
        Follow::pods("default", "app=web"),
        Bounds::default(),
        |bounds, kind, pod, shown| {
            bounds.events += 1;
            let live = shown.values().filter(|p| is_live(p)).count();
            let available = shown.values().filter(|p| is_live(p) && is_ready(p)).count();
            bounds.most_live = bounds.most_live.max(live);
            bounds.least_available = Some(
                bounds
                    .least_available
                    .map_or(available, |least| least.min(available)),
            );
            if (live > MOST_LIVE || available < LEAST_AVAILABLE) && bounds.broken.len() < 10 {
                bounds.broken.push(format!(
                    "after {kind} of {} at revision {}: {live} live, {available} available \
                     (it: phase {}, node {}, deleting {}, conditions {})",
                    pod["metadata"]["name"],
                    revision(pod),
                    pod["status"]["phase"],
                    pod["spec"]["nodeName"],
                    pod["metadata"]["deletionTimestamp"],
                    pod["status"]["conditions"],
                ));
            }
        },
    )
    .await;
    let at_start = pods.with(|shown, _| {
        let live: Vec<&Value> = shown.values().filter(|p| is_live(p)).collect();
        (live.len(), live.iter().filter(|p| is_ready(p)).count())
    });
    assert_eq!(
        at_start,
        (WEB, WEB),
        "the watch starts from 20 available pods"
    );

    let v2 = json!({ "spec": { "template": { "spec": {
        "containers": [{ "name": "c", "image": "web:v2" }] } } } });
    client
        .patch_object("deployments", "default", "web", &v2, false)
        .await
        .expect("changing the image");
    let updating = Instant::now();
    wait_for(
        "web rolled out to web:v2",
        Duration::from_secs(90),
        async || {
            let deployment = client
                .get_object("deployments", "default", "web")
                .await
                .map_err(|error| error.to_string())?;
            pods.with(|shown, _| rolled_out(&deployment, shown.values(), "web:v2"))
        },
    )
    .await;
    let update_took = updating.elapsed();

    let sets = replica_sets(&client, "app=web").await;
    let first = sets
        .iter()
        .find(|s| revision_of(s) == Some("1"))
        .unwrap_or_else(|| panic!("no ReplicaSet at revision 1: {sets:?}"))
        .clone();
    let second = sets
        .iter()
        .find(|s| revision_of(s) == Some("2"))
        .unwrap_or_else(|| panic!("no ReplicaSet at revision 2: {sets:?}"))
        .clone();
    assert_eq!(first["spec"]["replicas"], 0, "{first}");
    assert_eq!(second["spec"]["replicas"], WEB, "{second}");
    let first_name = first["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_string();
    let second_name = second["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_string();
    let first_hash = first["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .expect("revision 1's template hash")
        .to_string();
    let history = rudder_cli(&servers, &["rollout", "history", "deployment/web"]).await;
    assert!(history.ok, "{}", history.stderr);
    assert_eq!(
        listed_revisions(&history.stdout),
        ["1", "2"],
        "{}",
        history.stdout
    );

    let undo = rudder_cli(&servers, &["rollout", "undo", "deployment/web"]).await;
    assert!(undo.ok, "{}", undo.stderr);
    assert_eq!(undo.stdout.trim(), "deployment.apps/web rolled back");
    let undoing = Instant::now();
    wait_for(
        "web rolled back to web:v1",
        Duration::from_secs(90),
        async || {
            let deployment = client
                .get_object("deployments", "default", "web")
                .await
                .map_err(|error| error.to_string())?;
            pods.with(|shown, _| rolled_out(&deployment, shown.values(), "web:v1"))
        },
    )
    .await;
    let undo_took = undoing.elapsed();
    pods.stop();

    // Revision 1's ReplicaSet is the new one again, at the next revision (as Kubernetes
    // does: the history then lists 2 and 3), and every pod is of its template.
    let sets = replica_sets(&client, "app=web").await;
    let back = sets
        .iter()
        .find(|s| s["metadata"]["name"] == first_name.as_str())
        .unwrap_or_else(|| panic!("{first_name} is gone: {sets:?}"));
    assert_eq!(back["spec"]["replicas"], WEB, "{back}");
    assert_eq!(revision_of(back), Some("3"), "{back}");
    let undone = sets
        .iter()
        .find(|s| s["metadata"]["name"] == second_name.as_str())
        .unwrap_or_else(|| panic!("{second_name} is gone: {sets:?}"));
    assert_eq!(undone["spec"]["replicas"], 0, "{undone}");
    let deployment = client
        .get_object("deployments", "default", "web")
        .await
        .expect("the Deployment");
    assert_eq!(revision_of(&deployment), Some("3"), "{deployment}");
    let hashes: BTreeSet<String> = pods.with(|shown, _| {
        shown
            .values()
            .filter(|p| is_live(p))
            .filter_map(|p| p["metadata"]["labels"]["pod-template-hash"].as_str())
            .map(String::from)
            .collect()
    });
    assert_eq!(hashes, BTreeSet::from([first_hash]));
    let history = rudder_cli(&servers, &["rollout", "history", "deployment/web"]).await;
    assert!(history.ok, "{}", history.stderr);
    assert_eq!(
        listed_revisions(&history.stdout),
        ["2", "3"],
        "{}",
        history.stdout
    );

    let (events, most_live, least_available, broken) = pods.with(|_, bounds| {
        (
            bounds.events,
            bounds.most_live,
            bounds.least_available,
            bounds.broken.clone(),
        )
    });
    if !broken.is_empty() {
        // What the Deployment controller did, in its own words, to tell which step broke them.
        let events = client
            .list(rudder_proto::api::ListRequest {
                resource: "events".into(),
                namespace: "default".into(),
                field_selector: "reason=ScalingReplicaSet".into(),
                ..Default::default()
            })
            .await
            .map(|listed| {
                listed
                    .items
                    .iter()
                    .filter_map(|item| serde_json::from_slice::<Value>(item).ok())
                    .map(|event| format!("{} x{}", event["message"], event["count"]))
                    .collect::<Vec<_>>()
            });
        panic!(
            "the rollouts broke their bounds (at most {MOST_LIVE} live, at least \
             {LEAST_AVAILABLE} available): {broken:#?}\nthe Deployment's scaling: {events:#?}"
        );
    }
    println!(
        "20 available after {first_rollout:?}; rolled out in {update_took:?} and back in \
         {undo_took:?}; over {events} events: at most {most_live} live, at least \
         {least_available:?} available"
    );

    let progressing = wait_for(
        "stuck: Progressing=False with reason ProgressDeadlineExceeded",
        Duration::from_secs(60),
        async || {
            let deployment = client
                .get_object("deployments", "default", "stuck")
                .await
                .map_err(|error| error.to_string())?;
            let progressing = deployment["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Progressing")
                .cloned();
            match progressing {
                Some(c) if c["status"] == "False" && c["reason"] == "ProgressDeadlineExceeded" => {
                    Ok(c)
                }
                other => Err(format!("Progressing: {other:?}")),
            }
        },
    )
    .await;
    assert!(
        progressing["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("ReplicaSet \"stuck-")
                && m.ends_with("has timed out progressing.")),
        "{progressing}"
    );
    let status = rudder_cli(&servers, &["rollout", "status", "deployment/stuck"]).await;
    assert!(
        !status.ok
            && status
                .stderr
                .contains("deployment \"stuck\" exceeded its progress deadline"),
        "{status:?}"
    );
    println!(
        "stuck exceeded its deadline; checked {:?} after its creation",
        created.elapsed()
    );
    hollow.kill().await.expect("stopping the hollow nodes");
    drop(cluster);
}
