//! `drain NODE`: cordon the node, then evict (or, with `--disable-eviction`, delete) every
//! pod on it and wait until each is gone, as `kubectl drain` (v1.32) does: evictions honour
//! the pods' PodDisruptionBudgets (a refused one is retried every 5 s), and drain refuses to
//! start while the node has pods whose loss cannot be undone — pods no controller manages
//! (unless `--force`), DaemonSet pods (unless `--ignore-daemonsets`; they are never
//! evicted), pods with emptyDir data (unless `--delete-emptydir-data`). Mirror pods are left
//! alone. `--timeout` bounds the whole wait.
//!
//! ```text
//!  cordon ─► list pods (spec.nodeName=NODE) ─► plan: evict / skip / warn / refuse
//!        ─► each pod at once: evict it (with its uid) ─ 429 / 504 ─► wait 5 s, again
//!                                                    ─ conflict ─► another pod under its
//!                                                      name, or none: done
//!                                                    ─ ok ─► wait until gone
//!        ─► node/NODE drained
//! ```
//!
//! Every decision and every line drain prints is `plan.rs`'s (pure); this file does the I/O.
//! Unlike kubectl, each eviction carries the pod's uid, so a pod made again under the same
//! name (a StatefulSet's) is never evicted in its predecessor's place, and a budget that
//! kept changing (504) is retried, not fatal.

mod plan;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use rudder_proto::api as pb;
use rudder_proto::objects::selector::LabelSelector;
use serde_json::Value;
use tokio::time::Instant;

use crate::commands::cordon::set_unschedulable;
use crate::commands::get::list_matching;
use crate::session::{Session, Target};
use plan::{
    after_eviction_error, daemon_set_of, eviction_failed, eviction_timed_out, failure_report,
    name_of, namespace_of, parse_timeout, pending_pods, server_message, uid_of, wait_failed,
    AfterEviction, DaemonSetLookup, Failure, Filters, Plan, DEADLINE_EXCEEDED, DELETION_POLL,
    EVICTION_RETRY,
};

#[derive(Args, Debug)]
pub struct DrainArgs {
    /// The node.
    node: String,
    /// Continue even if there are pods not managed by a ReplicationController, ReplicaSet,
    /// Job, DaemonSet or StatefulSet.
    #[arg(long)]
    force: bool,
    /// Ignore DaemonSet-managed pods.
    #[arg(long)]
    ignore_daemonsets: bool,
    /// Continue even if there are pods using emptyDir (local data that will be deleted when
    /// the node is drained).
    #[arg(long)]
    delete_emptydir_data: bool,
    /// Period of time in seconds given to each pod to terminate gracefully. If negative, the
    /// default value specified in the pod will be used.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    grace_period: i64,
    /// The length of time to wait before giving up (e.g. 90s, 5m); zero means infinite.
    #[arg(long, default_value = "0s")]
    timeout: String,
    /// Force drain to use delete, even if eviction is supported. This will bypass checking
    /// PodDisruptionBudgets, use with caution.
    #[arg(long)]
    disable_eviction: bool,
    /// Label selector to filter pods on the node.
    #[arg(long)]
    pod_selector: Option<String>,
    #[command(flatten)]
    target: Target,
}

pub async fn drain(args: DrainArgs) -> anyhow::Result<()> {
    let timeout = parse_timeout(&args.timeout)?;
    let pod_selector = args.pod_selector.clone().unwrap_or_default();
    if LabelSelector::parse(&pod_selector).is_err() {
        bail!("--pod-selector=<pod_selector> must be a valid label selector");
    }
    let session = Session::connect(&args.target).await?;
    let node = args.node.as_str();
    // The node must exist (kubectl resolves it first); a failed cordon is reported and the
    // drain goes on, as kubectl's does.
    session.client.get_object("nodes", "", node).await?;
    match set_unschedulable(&session, node, true).await {
        Ok(line) => println!("{line}"),
        Err(error) => eprintln!("error: {error:#}"),
    }
    let drainer = Drainer {
        session: &session,
        node,
        filters: Filters {
            force: args.force,
            ignore_daemonsets: args.ignore_daemonsets,
            delete_emptydir_data: args.delete_emptydir_data,
        },
        pod_selector: &pod_selector,
        grace: (args.grace_period >= 0).then_some(args.grace_period),
        timeout,
        deadline: timeout.map(|t| Instant::now() + t),
        evict: !args.disable_eviction,
    };
    match drainer.run().await {
        Ok(()) => {
            println!("node/{node} drained");
            Ok(())
        }
        Err(failure) => {
            // kubectl ends with the errors themselves, an aggregate's one a line without the
            // `error: ` the CLI would put before a returned error: printed here whole, then
            // kubectl's exit code.
            eprint!("{}", failure_report(node, &failure));
            std::process::exit(1);
        }
    }
}

/// One node's drain.
struct Drainer<'a> {
    session: &'a Session,
    node: &'a str,
    filters: Filters,
    pod_selector: &'a str,
    grace: Option<i64>,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    evict: bool,
}

impl Drainer<'_> {
    /// kubectl's `deleteOrEvictPodsSimple`.
    async fn run(&self) -> Result<(), Failure> {
        let plan = self
            .plan()
            .await
            .map_err(|error| Failure::Aggregate(vec![format!("{error:#}")]))?;
        if !plan.errors.is_empty() {
            return Err(Failure::Aggregate(plan.errors));
        }
        if !plan.warnings.is_empty() {
            eprintln!("Warning: {}", plan.warnings);
        }
        let outcome = if self.evict {
            self.evict_all(&plan.evict).await
        } else {
            self.delete_all(&plan.evict).await
        };
        let Err(failure) = outcome else {
            return Ok(());
        };
        // What is still there, as kubectl lists it before giving up.
        if let Ok(pending) = self.plan().await {
            eprint!("{}", pending_pods(self.node, &failure, &pending.evict));
        }
        Err(failure)
    }

    /// The node's pods (matching `--pod-selector`), judged.
    async fn plan(&self) -> anyhow::Result<Plan> {
        let pods_kind = self.session.kind("pods")?.clone();
        let fields = format!("spec.nodeName={}", self.node);
        let (pods, _) = list_matching(
            self.session,
            &pods_kind,
            "",
            self.pod_selector,
            &fields,
            500,
        )
        .await?;
        let mut daemon_sets = BTreeMap::new();
        for owner in pods.iter().filter_map(daemon_set_of) {
            if daemon_sets.contains_key(&owner) {
                continue;
            }
            let (namespace, name) = &owner;
            let found = self
                .session
                .client
                .get_object("daemonsets", namespace, name)
                .await;
            let lookup = match found {
                Ok(_) => DaemonSetLookup::Found,
                Err(error) if error.is_not_found() => {
                    DaemonSetLookup::NotFound(server_message(&error))
                }
                Err(error) => DaemonSetLookup::Failed(server_message(&error)),
            };
            daemon_sets.insert(owner, lookup);
        }
        Ok(plan::plan(&pods, self.filters, &daemon_sets))
    }

    /// Time left before `--timeout`; `None` without one.
    fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    fn timed_out(&self) -> bool {
        self.remaining().is_some_and(|left| left.is_zero())
    }

    /// A pause of `pause`, cut short by `--timeout`.
    async fn sleep(&self, pause: Duration) {
        let pause = self.remaining().map_or(pause, |left| left.min(pause));
        tokio::time::sleep(pause).await;
    }

    /// kubectl's `evictPods`: every pod at once; the errors together.
    async fn evict_all(&self, pods: &[Value]) -> Result<(), Failure> {
        let outcomes = futures::future::join_all(pods.iter().map(|pod| self.evict_one(pod))).await;
        let errors: Vec<String> = outcomes.into_iter().filter_map(Result::err).collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Failure::Aggregate(errors))
        }
    }

    /// Evicts one pod (as listed: at its uid), again every 5 s while its disruption budget
    /// refuses, then waits until it is gone.
    async fn evict_one(&self, pod: &Value) -> Result<(), String> {
        let (namespace, name) = (namespace_of(pod), name_of(pod));
        loop {
            println!("evicting pod {namespace}/{name}");
            if self.timed_out() {
                let timeout = self.timeout.unwrap_or_default();
                return Err(eviction_timed_out(namespace, name, timeout));
            }
            let request = pb::EvictRequest {
                namespace: namespace.into(),
                name: name.into(),
                grace_period_seconds: self.grace,
                precondition_uid: uid_of(pod).into(),
                ..Default::default()
            };
            let error = match self.session.client.evict(request).await {
                Ok(_) => break,
                Err(error) => error,
            };
            match after_eviction_error(namespace, name, &error) {
                AfterEviction::Gone => return Ok(()),
                AfterEviction::Retry(line) => {
                    eprintln!("{line}");
                    self.sleep(EVICTION_RETRY).await;
                }
                // The uid no longer holds: done if the pod drain meant is gone.
                AfterEviction::LookAgain => {
                    if self.is_gone(pod).await? {
                        return Ok(());
                    }
                    return Err(eviction_failed(namespace, name, &server_message(&error)));
                }
                AfterEviction::Fail(message) => return Err(message),
            }
        }
        self.wait_until_gone(pod, "evicted")
            .await
            .map_err(|failure| wait_failed(namespace, name, &failure.text()))
    }

    /// Whether the pod as listed is gone: none has its name now, or one of another uid.
    async fn is_gone(&self, pod: &Value) -> Result<bool, String> {
        let (namespace, name) = (namespace_of(pod), name_of(pod));
        match self
            .session
            .client
            .get_object("pods", namespace, name)
            .await
        {
            Ok(current) => Ok(uid_of(&current) != uid_of(pod)),
            Err(error) if error.is_not_found() => Ok(true),
            Err(error) => Err(eviction_failed(namespace, name, &server_message(&error))),
        }
    }

    /// kubectl's `deletePods`: every pod deleted, then waited for.
    async fn delete_all(&self, pods: &[Value]) -> Result<(), Failure> {
        for pod in pods {
            let request = pb::DeleteRequest {
                resource: "pods".into(),
                namespace: namespace_of(pod).into(),
                name: name_of(pod).into(),
                grace_period_seconds: self.grace,
                ..Default::default()
            };
            match self.session.client.delete_object(request).await {
                Ok(_) => {}
                Err(error) if error.is_not_found() => {}
                Err(error) => return Err(Failure::server(&error)),
            }
        }
        let waits = pods.iter().map(|pod| self.wait_until_gone(pod, "deleted"));
        let first_error = futures::future::join_all(waits)
            .await
            .into_iter()
            .find_map(Result::err);
        match first_error {
            None => Ok(()),
            Some(failure) => Err(failure),
        }
    }

    /// Waits until `pod` is gone (or another pod took its name: a different uid), checking
    /// every second; prints `pod/NAME <verb>` then.
    async fn wait_until_gone(&self, pod: &Value, verb: &str) -> Result<(), Failure> {
        let (namespace, name) = (namespace_of(pod), name_of(pod));
        loop {
            match self
                .session
                .client
                .get_object("pods", namespace, name)
                .await
            {
                Err(error) if error.is_not_found() => break,
                Ok(current) if uid_of(&current) != uid_of(pod) => break,
                Ok(_) => {}
                Err(error) => return Err(Failure::server(&error)),
            }
            if self.timed_out() {
                return Err(Failure::single(DEADLINE_EXCEEDED));
            }
            self.sleep(DELETION_POLL).await;
        }
        println!("pod/{name} {verb}");
        Ok(())
    }
}
