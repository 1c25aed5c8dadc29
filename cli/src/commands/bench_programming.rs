//! `rudder bench programming`: network programming latency, as kube-proxy's
//! `network_programming_duration` means it — from an endpoint change written to the API
//! to the rule for it in a node's nftables table. Against a running cluster with at least
//! one real node on this machine (`rudder up`, as root): the bench makes a Service without
//! a selector and an EndpointSlice of its own, moves the slice's one endpoint to a new
//! address N times, and watches `nft monitor rules` for the rule that sends traffic there
//! (no traffic is sent). Everything it made is deleted at the end, and `nft monitor` is
//! ended by its PID.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use rudder_chaos::bench::stats::summarize;
use rudder_proto::api::DeleteRequest;
use rudder_proto::client::ApiClient;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

#[derive(Args, Debug)]
pub struct ProgrammingArgs {
    /// API servers of the running cluster: host:port,...
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// Endpoint changes to time.
    #[arg(long, default_value_t = 200)]
    changes: usize,
    /// Milliseconds from one change to the next: changes spaced wider than the proxy's
    /// coalescing each wait for a sync of their own, as an isolated change does.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Seconds one change may take to reach the table before the bench gives up.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

const NAME: &str = "bench-programming";
const NAMESPACE: &str = "default";
const WARM_UP_ATTEMPTS: usize = 30;
const WARM_UP_WAIT: Duration = Duration::from_secs(2);

pub async fn run(args: ProgrammingArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(args.endpoints.clone());
    let mut monitor = Command::new("nft")
        .args(["monitor", "rules"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running nft monitor (as root, with the nftables package)")?;
    let mut lines = BufReader::new(monitor.stdout.take().expect("stdout is piped")).lines();
    let outcome = measure(&client, &mut lines, &args).await;
    let _ = monitor.kill().await;
    let cleanup = cleanup(&client).await;
    let summary = outcome?;
    cleanup?;
    println!("{summary}");
    Ok(())
}

async fn measure(
    client: &ApiClient,
    lines: &mut Lines<BufReader<ChildStdout>>,
    args: &ProgrammingArgs,
) -> anyhow::Result<rudder_chaos::bench::stats::Summary> {
    client
        .create_object(
            "services",
            NAMESPACE,
            &json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": NAME, "namespace": NAMESPACE },
                "spec": { "ports": [{ "name": "http", "port": 80, "targetPort": 8080 }] }
            }),
        )
        .await
        .context("creating the bench's Service (is one left from an earlier run? delete service bench-programming)")?;
    client
        .create_object("endpointslices", NAMESPACE, &slice("10.250.255.1"))
        .await
        .context("creating the bench's EndpointSlice")?;
    // nft monitor hears nothing until it has read the ruleset, seconds with thousands of
    // Services: move the endpoint until a move is heard, then measure.
    let mut heard = false;
    for attempt in 0..WARM_UP_ATTEMPTS {
        let address = format!("10.250.254.{}", attempt + 1);
        if move_endpoint(client, lines, &address, WARM_UP_WAIT).await? {
            heard = true;
            break;
        }
    }
    if !heard {
        bail!(
            "no rule for the bench's Service in any node's table after {} s: is a node with \
             the proxy running on this machine?",
            WARM_UP_ATTEMPTS as u64 * WARM_UP_WAIT.as_secs()
        );
    }
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(args.changes);
    let interval = Duration::from_millis(args.interval_ms);
    let mut next = Instant::now();
    for change in 0..args.changes {
        tokio::time::sleep_until(next.into()).await;
        next = Instant::now() + interval;
        // Addresses no packet is sent to: only the rule naming them is waited for.
        let address = format!("10.250.{}.{}", change / 250, change % 250 + 1);
        let began = Instant::now();
        if !move_endpoint(client, lines, &address, Duration::from_secs(args.timeout)).await? {
            bail!(
                "no rule for {address} in the node's table after {} s",
                args.timeout
            );
        }
        latencies.push(began.elapsed());
    }
    Ok(summarize(
        "endpoint change → rule in place",
        latencies,
        0,
        started.elapsed(),
    ))
}

/// Moves the bench's endpoint to `address` and waits up to `wait` for nft monitor to show
/// the rule sending traffic there: whether it did.
async fn move_endpoint(
    client: &ApiClient,
    lines: &mut Lines<BufReader<ChildStdout>>,
    address: &str,
    wait: Duration,
) -> anyhow::Result<bool> {
    let rule = format!("dnat to {address}:8080");
    let deadline = Instant::now() + wait;
    client
        .patch_object(
            "endpointslices",
            NAMESPACE,
            NAME,
            &json!({ "endpoints": slice(address)["endpoints"] }),
            false,
        )
        .await
        .context("moving the endpoint")?;
    loop {
        match tokio::time::timeout_at(deadline.into(), lines.next_line()).await {
            Err(_) => return Ok(false),
            Ok(line) => match line.context("reading nft monitor")? {
                Some(line) if line.contains(&rule) => return Ok(true),
                Some(_) => continue,
                None => bail!("nft monitor ended"),
            },
        }
    }
}

/// The bench's slice: one ready endpoint at `address`, managed by the bench (the
/// endpoints controller leaves a Service without a selector to its user).
fn slice(address: &str) -> serde_json::Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": NAME, "namespace": NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": NAME,
                "endpointslice.kubernetes.io/managed-by": "rudder-bench"
            }
        },
        "addressType": "IPv4",
        "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }],
        "endpoints": [{ "addresses": [address], "conditions": { "ready": true } }]
    })
}

async fn cleanup(client: &ApiClient) -> anyhow::Result<()> {
    for resource in ["endpointslices", "services"] {
        let deleted = client
            .delete_object(DeleteRequest {
                resource: resource.into(),
                namespace: NAMESPACE.into(),
                name: NAME.into(),
                ..Default::default()
            })
            .await;
        match deleted {
            Err(error) if !error.is_not_found() => {
                return Err(error).with_context(|| format!("deleting the bench's {resource}"))
            }
            _ => {}
        }
    }
    Ok(())
}
