//! `rudder bench controllers`: how fast the controllers turn a spec into running pods, and
//! what a master holds in memory with many pods. Over a spawned cluster (each master runs the
//! controller manager and the scheduler; `--server` names a running one instead) and
//! `--nodes` hollow nodes:
//!
//! - ReplicaSet: create → `--replicas` pods Running (the controller creates, the scheduler
//!   binds, the hollow kubelets report Running), then delete (Background) → no pod left;
//! - Deployment: `--replicas` pods, then an image change → the rollout complete (updated =
//!   available = replicas, at the generation the change made);
//! - memory: each spawned master's RSS once a ReplicaSet of `--rss-pods` runs and its
//!   controller counts every pod ready, and again after `--rss-idle` with nothing to do.
//!
//! ```text
//! masters ─► hollow nodes Ready ─► warm-up (1 pod) ─► replicaset ─► deployment ─► memory
//!   (each phase followed by a watch, bounded by --timeout)   (read, idle --rss-idle, read)
//!   ─► summary table
//! ```
//!
//! Every wait follows a watch (node registration excepted) and fails past `--timeout` for its
//! phase; every process the run starts is ended by its PID, also when a phase fails.
//! `figures.rs` renders the table, `follow.rs` the watches, `hollow.rs` the hollow nodes,
//! `leaders.rs` which master leads what (named in each memory row).

mod figures;
mod follow;
mod hollow;
mod leaders;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use rudder_proto::api::{DeleteRequest, ListRequest};
use rudder_proto::client::ApiClient;
use serde_json::{json, Value};

use self::figures::{
    command_line, max_pods_per_node, memory_from_status, mib, render, rss_goal, running_goal,
    seconds, Memory, PodTally, Rollout, Row, ScaleMarks, HOLLOW_ADDRESSES_PER_NODE,
};
use self::follow::{follow_until, Deadline, Follow, Wait};
use self::hollow::HollowNodes;
use self::leaders::{leaders, leads_phrase};
use super::bench_cluster::SpawnArgs;
use crate::durations::{parse_flag_duration, parse_flag_duration_or_zero};

#[derive(Args, Debug)]
pub struct ControllersArgs {
    /// API servers of a running cluster: host:port,... (default: spawn --members masters,
    /// each with its controller manager and scheduler). Memory is then not measured.
    #[arg(long, value_delimiter = ',')]
    server: Vec<String>,
    /// Hollow nodes started for the run.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Replicas of the ReplicaSet and of the Deployment.
    #[arg(long, default_value_t = 1000)]
    replicas: usize,
    /// Pods running when the masters' memory is read.
    #[arg(long, default_value_t = 10_000)]
    rss_pods: usize,
    /// Skip the ReplicaSet's create → Running and delete → gone.
    #[arg(long)]
    skip_replicaset: bool,
    /// Skip the Deployment's create and rolling update.
    #[arg(long)]
    skip_deployment: bool,
    /// Skip the masters' memory with --rss-pods pods.
    #[arg(long)]
    skip_rss: bool,
    /// How long the masters idle, the pods still running, before their memory is read a
    /// second time (30s, 2m; 0s reads it once).
    #[arg(long, default_value = "30s")]
    rss_idle: String,
    /// The longest one phase may take (30s, 10m, 1h); a phase past it ends the run.
    #[arg(long, default_value = "10m")]
    timeout: String,
    /// The namespace the run works in (created; with --server deleted afterwards).
    #[arg(long, default_value = "bench-controllers")]
    namespace: String,
    #[command(flatten)]
    cluster: SpawnArgs,
}

impl ControllersArgs {
    /// The most pods the run has at once: what the nodes must hold.
    fn most_pods(&self, measures_memory: bool) -> usize {
        let mut most = 1;
        if !self.skip_replicaset {
            most = most.max(self.replicas);
        }
        if !self.skip_deployment {
            // A rolling update surges by 25% (rounded up), Kubernetes' default maxSurge.
            most = most.max(self.replicas + self.replicas.div_ceil(4));
        }
        if measures_memory {
            most = most.max(self.rss_pods);
        }
        most
    }
}

pub async fn run(args: ControllersArgs) -> anyhow::Result<()> {
    let timeout = parse_flag_duration("--timeout", &args.timeout, "s")?;
    let rss_idle = parse_flag_duration_or_zero("--rss-idle", &args.rss_idle, "s")?;
    anyhow::ensure!(args.nodes > 0, "--nodes must be at least 1");
    let spawns = args.server.is_empty();
    let most = args.most_pods(spawns && !args.skip_rss);
    let max_pods = max_pods_per_node(most, args.nodes);
    anyhow::ensure!(
        max_pods <= HOLLOW_ADDRESSES_PER_NODE,
        "{most} pods over {} hollow nodes need {max_pods} a node, more than the \
         {HOLLOW_ADDRESSES_PER_NODE} addresses a hollow node's /24 holds: raise --nodes",
        args.nodes
    );
    let (cluster, endpoints) = args.cluster.rudder_unless_given(&args.server).await?;
    let masters: Vec<Spawned> = cluster
        .iter()
        .flat_map(|cluster| &cluster.members)
        .filter_map(|member| {
            Some(Spawned {
                name: member.name.clone(),
                pid: member.pid()?,
                endpoint: member.client_addr.clone(),
            })
        })
        .collect();
    println!(
        "bench controllers: {} hollow nodes (maxPods {max_pods}), {}",
        args.nodes,
        match &cluster {
            Some(cluster) => format!("{} spawned masters", cluster.members.len()),
            None => format!("the masters at {}", endpoints.join(",")),
        }
    );
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let mut hollow = HollowNodes::start(&endpoints, args.nodes, max_pods, scratch.path())?;
    let mut bench = Bench {
        client: Arc::new(ApiClient::new(endpoints)),
        args: &args,
        timeout,
        rss_idle,
        masters,
        idle: HashMap::new(),
        rows: Vec::new(),
    };
    let outcome = tokio::select! {
        outcome = bench.measure(&mut hollow) => outcome,
        Ok(()) = tokio::signal::ctrl_c() => Err(anyhow::anyhow!(
            "interrupted: stopping the processes the run started"
        )),
    };
    if !spawns {
        // The kubelets confirm the pods' deletions, so they stay until the namespace is gone
        // (a second Ctrl-C stops waiting: ours is the only SIGINT handler now).
        tokio::select! {
            deleted = bench.delete_namespace() => {
                if let Err(error) = deleted {
                    eprintln!("warning: {error:#}");
                }
            }
            Ok(()) = tokio::signal::ctrl_c() => {
                eprintln!("warning: namespace {} is left deleting", args.namespace);
            }
        }
    }
    hollow.stop().await;
    if !spawns {
        hollow.remove_from(&bench.client).await;
    }
    // Ends the masters by their PIDs.
    drop(cluster);
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    println!("\n{}\n", command_line(&arguments));
    print!("{}", render(&bench.rows));
    outcome
}

/// The pods' template: on hollow nodes only (a --server cluster may have real ones), which
/// run nothing, so any image does.
fn template(app: &str, image: &str) -> Value {
    json!({
        "metadata": { "labels": { "app": app } },
        "spec": { "nodeSelector": { "rudder.dev/hollow": "true" },
                  "containers": [{ "name": "app", "image": image }] }
    })
}

/// A ReplicaSet or Deployment named and labelled `name`, selecting its own pods.
fn workload(kind: &str, name: &str, namespace: &str, replicas: usize) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": kind,
        "metadata": { "name": name, "namespace": namespace, "labels": { "app": name } },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": name } },
                  "template": template(name, "kubia:v1") }
    })
}

/// A master this run started.
struct Spawned {
    name: String,
    pid: u32,
    /// Its client address (`host:port`).
    endpoint: String,
}

struct Bench<'a> {
    client: Arc<ApiClient>,
    args: &'a ControllersArgs,
    timeout: Duration,
    /// How long the masters idle before their memory is read again (`--rss-idle`).
    rss_idle: Duration,
    /// The spawned masters (none with --server).
    masters: Vec<Spawned>,
    /// Their memory once the nodes were up, before any workload.
    idle: HashMap<String, Memory>,
    rows: Vec<Row>,
}

impl Bench<'_> {
    async fn measure(&mut self, hollow: &mut HollowNodes) -> anyhow::Result<()> {
        self.create_namespace().await?;
        hollow.await_ready(&self.client, self.timeout).await?;
        for master in &self.masters {
            self.idle
                .insert(master.name.clone(), read_memory(master.pid)?);
        }
        let warm = Instant::now();
        let deadline = Deadline::after(self.timeout);
        self.scale_out("bench-warmup", 1, deadline).await?;
        eprintln!(
            "warm-up: a ReplicaSet of 1 ran and went in {} (controllers and scheduler lead)",
            seconds(warm.elapsed())
        );
        if !self.args.skip_replicaset {
            self.replica_set().await?;
        }
        if !self.args.skip_deployment {
            self.deployment().await?;
        }
        if !self.args.skip_rss {
            self.memory().await?;
        }
        Ok(())
    }

    fn row(&mut self, measure: String, value: String, goal: String, detail: String) {
        eprintln!("  measured: {measure}: {value}");
        self.rows.push(Row {
            measure,
            value,
            goal,
            detail,
        });
    }

    /// Creates the run's namespace (the masters may still be starting: tried for up to
    /// 30 s) and makes sure no earlier run left pods in it.
    async fn create_namespace(&self) -> anyhow::Result<()> {
        let namespace = &self.args.namespace;
        let object = json!({ "apiVersion": "v1", "kind": "Namespace",
                             "metadata": { "name": namespace } });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.client.create_object("namespaces", "", &object).await {
                Ok(_) => break,
                Err(error) if error.reason() == "AlreadyExists" => break,
                Err(error) if Instant::now() > deadline => {
                    return Err(error).with_context(|| format!("creating namespace {namespace}"))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        let left = self
            .client
            .list(ListRequest {
                resource: "pods".into(),
                namespace: namespace.clone(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("listing the pods in {namespace}"))?;
        anyhow::ensure!(
            left.items.is_empty(),
            "namespace {namespace} holds {} pods of an earlier run: delete it (`rudder delete \
             namespace {namespace}`) or pass another --namespace",
            left.items.len()
        );
        Ok(())
    }

    /// Creates ReplicaSet `name` of `replicas`, follows its pods until every one runs, then
    /// deletes it (Background) and follows them until none is left. Returns when the pods
    /// were all created, bound and Running (from the create), and when they were all marked
    /// for deletion and all gone (from the delete).
    async fn scale_out(
        &self,
        name: &str,
        replicas: usize,
        deadline: Deadline,
    ) -> anyhow::Result<(ScaleMarks, Option<Duration>, Duration)> {
        let namespace = &self.args.namespace;
        let selector = format!("app={name}");
        let mut pods = Follow::open(&self.client, "pods", namespace, &selector).await?;
        let mut state = (PodTally::default(), ScaleMarks::default());
        let created = Instant::now();
        self.client
            .create_object(
                "replicasets",
                namespace,
                &workload("ReplicaSet", name, namespace, replicas),
            )
            .await
            .with_context(|| format!("creating ReplicaSet {name}"))?;
        let wait = Wait {
            what: format!("replicaset {name} → {replicas} Running"),
            started: created,
            deadline,
        };
        follow_until(
            wait,
            &mut pods,
            &mut state,
            |(tally, marks), kind, pod| {
                tally.apply(kind, pod);
                marks.note(tally, replicas, created.elapsed());
            },
            |(_, marks)| marks.running.is_some(),
            |(tally, _)| tally.progress(),
        )
        .await?;
        let (tally, marks) = state;
        let (marked, gone) = self
            .delete_and_drain("replicasets", name, &mut pods, tally, deadline)
            .await?;
        Ok((marks, marked, gone))
    }

    /// Deletes `resource` `name` (Background: the garbage collector removes its pods) and
    /// follows its pods (`tally` as `pods` has shown them) until none is left. Returns when
    /// every pod was first marked for deletion, and when the last one went.
    async fn delete_and_drain(
        &self,
        resource: &str,
        name: &str,
        pods: &mut Follow,
        tally: PodTally,
        deadline: Deadline,
    ) -> anyhow::Result<(Option<Duration>, Duration)> {
        let namespace = &self.args.namespace;
        let deleted = Instant::now();
        self.client
            .delete_object(DeleteRequest {
                resource: resource.into(),
                namespace: namespace.clone(),
                name: name.into(),
                propagation_policy: "Background".into(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("deleting {resource} {name}"))?;
        let mut state: (PodTally, Option<Duration>) = (tally, None);
        let wait = Wait {
            what: format!("{resource} {name} deleted → no pod left"),
            started: deleted,
            deadline,
        };
        let gone = follow_until(
            wait,
            pods,
            &mut state,
            |(tally, marked), kind, pod| {
                tally.apply(kind, pod);
                if marked.is_none() && tally.terminating() == tally.existing() {
                    *marked = Some(deleted.elapsed());
                }
            },
            |(tally, _)| tally.existing() == 0,
            |(tally, _)| tally.progress(),
        )
        .await?;
        // The watch says none is left: a fresh list must agree.
        let listed = self
            .client
            .list(ListRequest {
                resource: "pods".into(),
                namespace: namespace.clone(),
                label_selector: pods.selector().into(),
                ..Default::default()
            })
            .await
            .context("listing the pods left")?;
        anyhow::ensure!(
            listed.items.is_empty(),
            "the watch showed every pod of {resource} {name} gone, but a list still finds {}",
            listed.items.len()
        );
        Ok((state.1, gone))
    }

    async fn replica_set(&mut self) -> anyhow::Result<()> {
        let replicas = self.args.replicas;
        let deadline = Deadline::after(self.timeout);
        let (marks, marked, gone) = self.scale_out("bench-rs", replicas, deadline).await?;
        let (Some(created), Some(bound), Some(running)) =
            (marks.created, marks.bound, marks.running)
        else {
            bail!("replicaset bench-rs: done without every pod created, bound and Running");
        };
        self.row(
            format!("replicaset create → {replicas} Running"),
            seconds(running),
            running_goal(replicas, self.args.nodes, running),
            format!(
                "all created {}, all bound {}",
                seconds(created),
                seconds(bound)
            ),
        );
        self.row(
            format!("replicaset delete → 0 of {replicas} left"),
            seconds(gone),
            String::new(),
            match marked {
                Some(marked) => format!("all marked for deletion {}", seconds(marked)),
                None => String::new(),
            },
        );
        Ok(())
    }

    async fn deployment(&mut self) -> anyhow::Result<()> {
        let name = "bench-deploy";
        let namespace = self.args.namespace.clone();
        let replicas = self.args.replicas;
        let deadline = Deadline::after(self.timeout);
        let mut sets = Follow::open(
            &self.client,
            "deployments",
            &namespace,
            &format!("app={name}"),
        )
        .await?;
        let created = Instant::now();
        let object = self
            .client
            .create_object(
                "deployments",
                &namespace,
                &workload("Deployment", name, &namespace, replicas),
            )
            .await
            .with_context(|| format!("creating Deployment {name}"))?;
        let generation = Rollout::of(&object).generation;
        let took = self
            .await_rollout(&mut sets, name, generation, created, deadline)
            .await?;
        self.row(
            format!("deployment create → {replicas} available"),
            seconds(took),
            String::new(),
            String::new(),
        );
        let patch = json!({ "spec": { "template": template(name, "kubia:v2") } });
        let updated = Instant::now();
        let object = self
            .client
            .patch_object("deployments", &namespace, name, &patch, false)
            .await
            .with_context(|| format!("changing Deployment {name}'s image"))?;
        let generation = Rollout::of(&object).generation;
        let took = self
            .await_rollout(&mut sets, name, generation, updated, deadline)
            .await?;
        self.row(
            format!("deployment image change → {replicas} updated"),
            seconds(took),
            String::new(),
            "rolling update, maxSurge 25%, maxUnavailable 25%".into(),
        );
        drop(sets);
        // Its pods are followed from now on: the list shows those that exist.
        let mut pods =
            Follow::open(&self.client, "pods", &namespace, &format!("app={name}")).await?;
        let (_, gone) = self
            .delete_and_drain(
                "deployments",
                name,
                &mut pods,
                PodTally::default(),
                deadline,
            )
            .await?;
        self.row(
            format!("deployment delete → 0 of {replicas} left"),
            seconds(gone),
            String::new(),
            String::new(),
        );
        Ok(())
    }

    /// Follows Deployment `name` until its rollout of `generation` is complete.
    async fn await_rollout(
        &self,
        sets: &mut Follow,
        name: &str,
        generation: i64,
        started: Instant,
        deadline: Deadline,
    ) -> anyhow::Result<Duration> {
        let wait = Wait {
            what: format!("deployment {name} generation {generation}"),
            started,
            deadline,
        };
        follow_until(
            wait,
            sets,
            &mut Rollout::default(),
            |rollout, kind, object| {
                if kind != "DELETED" && object["metadata"]["name"] == name {
                    *rollout = Rollout::of(object);
                }
            },
            |rollout| rollout.deployment_complete(generation),
            Rollout::progress,
        )
        .await
    }

    /// Each spawned master's memory once a ReplicaSet of `--rss-pods` runs and its
    /// controller counts every pod ready (its caches hold them all).
    async fn memory(&mut self) -> anyhow::Result<()> {
        if self.masters.is_empty() {
            self.row(
                "master RSS".into(),
                "not measured".into(),
                String::new(),
                "the masters were not started by this run (--server)".into(),
            );
            return Ok(());
        }
        let name = "bench-rss";
        let namespace = self.args.namespace.clone();
        let pods_wanted = self.args.rss_pods;
        let deadline = Deadline::after(self.timeout);
        let selector = format!("app={name}");
        let mut pods = Follow::open(&self.client, "pods", &namespace, &selector).await?;
        let created = Instant::now();
        self.client
            .create_object(
                "replicasets",
                &namespace,
                &workload("ReplicaSet", name, &namespace, pods_wanted),
            )
            .await
            .with_context(|| format!("creating ReplicaSet {name}"))?;
        let wait = Wait {
            what: format!("replicaset {name} → {pods_wanted} Running"),
            started: created,
            deadline,
        };
        let running = follow_until(
            wait,
            &mut pods,
            &mut PodTally::default(),
            |tally, kind, pod| tally.apply(kind, pod),
            |tally| tally.running() >= pods_wanted,
            PodTally::progress,
        )
        .await?;
        drop(pods);
        // Opened now (not while the pods were followed, so it never waited unread): the
        // watch starts with the ReplicaSet as it is.
        let mut sets = Follow::open(&self.client, "replicasets", &namespace, &selector).await?;
        let wait = Wait {
            what: format!("replicaset {name} status"),
            started: created,
            deadline,
        };
        let settled = follow_until(
            wait,
            &mut sets,
            &mut Rollout::default(),
            |rollout, kind, object| {
                if kind != "DELETED" && object["metadata"]["name"] == name {
                    *rollout = Rollout::of(object);
                }
            },
            |rollout| rollout.desired == pods_wanted as i64 && rollout.replica_set_settled(),
            Rollout::progress,
        )
        .await?;
        let mut read = Vec::new();
        for master in &self.masters {
            read.push((master.name.clone(), read_memory(master.pid)?));
        }
        let endpoints: Vec<(String, String)> = self
            .masters
            .iter()
            .map(|m| (m.name.clone(), m.endpoint.clone()))
            .collect();
        let leaders = leaders(&self.client, &endpoints).await;
        // The first reading comes at the end of a burst of writes; the second shows what the
        // masters keep of it when the pods run on and nothing changes. A master gone by then
        // says so in its row; the first readings still count.
        let mut after_idle = HashMap::new();
        if !self.rss_idle.is_zero() {
            eprintln!(
                "memory read; the masters idle {} before it is read again",
                self.args.rss_idle
            );
            tokio::time::sleep(self.rss_idle).await;
            for master in &self.masters {
                after_idle.insert(master.name.clone(), read_memory(master.pid));
            }
        }
        self.row(
            format!("replicaset create → {pods_wanted} Running"),
            seconds(running),
            String::new(),
            format!("its status counts all ready {}", seconds(settled)),
        );
        for (master, memory) in read {
            let idle = match self.idle.get(&master) {
                Some(idle) => format!(", {} before any workload", mib(idle.rss_kib)),
                None => String::new(),
            };
            let later = match after_idle.get(&master) {
                Some(Ok(later)) => {
                    format!(", {} after {} idle", mib(later.rss_kib), self.args.rss_idle)
                }
                Some(Err(error)) => format!(", not read again ({error:#})"),
                None => String::new(),
            };
            let leads = leads_phrase(&master, &leaders);
            self.row(
                format!("master {master} RSS, {pods_wanted} pods"),
                mib(memory.rss_kib),
                rss_goal(pods_wanted, memory.rss_kib),
                format!("peak {}{later}{idle}{leads}", mib(memory.peak_kib)),
            );
        }
        Ok(())
    }

    /// With --server: deletes the run's namespace and waits (up to --timeout) for it to go.
    async fn delete_namespace(&self) -> anyhow::Result<()> {
        let namespace = &self.args.namespace;
        let deleted = self
            .client
            .delete_object(DeleteRequest {
                resource: "namespaces".into(),
                name: namespace.clone(),
                ..Default::default()
            })
            .await;
        match deleted {
            Err(error) if error.is_not_found() => return Ok(()),
            Err(error) => return Err(error).with_context(|| format!("deleting {namespace}")),
            Ok(_) => {}
        }
        let started = Instant::now();
        loop {
            match self.client.get_object("namespaces", "", namespace).await {
                Err(error) if error.is_not_found() => return Ok(()),
                _ if started.elapsed() > self.timeout => bail!(
                    "namespace {namespace} was still there {:?} (--timeout) after its delete",
                    self.timeout
                ),
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

/// A process's memory from `/proc/<pid>/status`.
fn read_memory(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {path}: has the master exited?"))?;
    memory_from_status(&text).with_context(|| format!("no VmRSS or VmHWM line in {path}"))
}
