//! Leader election against in-process API servers: one leader among competitors, a leader
//! cut off from the API steps down before its lease expires and is succeeded at a higher
//! epoch, a restarted holder name waits for its past life's lease, a released lease is taken
//! at once, and the API server refuses the deposed leader's fenced writes while it accepts
//! the new leader's.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Plane, Proxy};
use k8s_openapi::api::coordination::v1::Lease;
use rudder_actors::leader::decide::expiry;
use rudder_actors::leader::{unique_identity, ElectionConfig, Elector, Fence, Leadership};
use rudder_proto::client::ApiClient;
use serde_json::json;
use tokio::sync::watch;

/// Short timers, so that expiries happen within a test: lease 3 s, renew deadline 2 s,
/// retry 250 ms.
fn config() -> ElectionConfig {
    ElectionConfig {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(250),
        ..ElectionConfig::for_lease("kube-system", "test-election")
    }
}

fn start(client: Arc<ApiClient>, name: &str) -> Elector {
    Elector::start(client, unique_identity(name), config()).expect("valid config")
}

/// Waits (at most 20 s) until `leadership` satisfies `what`; returns it.
async fn wait_until(
    leadership: &mut watch::Receiver<Leadership>,
    why: &str,
    what: impl FnMut(&Leadership) -> bool,
) -> Leadership {
    let seen = tokio::time::timeout(Duration::from_secs(20), leadership.wait_for(what))
        .await
        .map(|seen| seen.map(|seen| seen.clone()));
    match seen {
        Ok(seen) => seen.expect("the elector publishes"),
        Err(_) => panic!("not {why} within 20 s: {:?}", *leadership.borrow()),
    }
}

async fn wait_to_lead(elector: &Elector) -> Fence {
    let mut leadership = elector.subscribe();
    let leading = wait_until(&mut leadership, "leading", Leadership::is_leading).await;
    leading.fence().cloned().expect("a fence")
}

async fn read_lease(client: &ApiClient) -> Lease {
    let json = client
        .get_object("leases", "kube-system", "test-election")
        .await
        .expect("the lease");
    serde_json::from_value(json).expect("a Lease")
}

fn config_map(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": name, "namespace": "default" },
        "data": { "by": name }
    })
}

/// Writes under `fence` (a create and a patch); returns how many the API refused for the
/// fence, failing on any other error.
async fn fenced_writes(client: &ApiClient, fence: &Fence, name: &str) -> usize {
    let fenced = client.fenced(fence);
    let mut refused = 0;
    let outcomes = [
        fenced
            .create_object("configmaps", "default", &config_map(name))
            .await,
        fenced
            .patch_object(
                "configmaps",
                "default",
                "shared",
                &json!({ "data": { "last": name } }),
                false,
            )
            .await,
    ];
    for outcome in outcomes {
        match outcome {
            Ok(_) => {}
            Err(error) if error.is_fence_refused() => refused += 1,
            Err(error) => panic!("a fenced write failed otherwise: {error}"),
        }
    }
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_competing_electors_exactly_one_leads_and_the_other_follows_it() {
    let plane = Plane::start(3).await;
    let first = start(plane.new_client(), "m1");
    let second = start(plane.new_client(), "m2");
    let (mut one, mut two) = (first.subscribe(), second.subscribe());
    let fence = tokio::select! {
        leading = wait_until(&mut one, "leading", Leadership::is_leading) => leading,
        leading = wait_until(&mut two, "leading", Leadership::is_leading) => leading,
    }
    .fence()
    .cloned()
    .expect("a fence");
    let (leader, follower) = if fence.holder == first.identity() {
        (&first, &second)
    } else {
        (&second, &first)
    };
    assert_eq!(fence.holder, leader.identity());
    assert_eq!(fence.epoch, 1, "the first acquisition");
    let mut following = follower.subscribe();
    wait_until(&mut following, "following the leader", |now| {
        *now == Leadership::Following {
            holder: Some(fence.holder.clone()),
        }
    })
    .await;
    // Through several renewals the leader keeps its term and the follower follows.
    tokio::time::sleep(config().lease_duration).await;
    assert_eq!(leader.fence(), Some(fence.clone()));
    assert_eq!(follower.fence(), None);
    let lease = read_lease(&plane.client).await.spec.expect("a spec");
    assert_eq!(
        lease.holder_identity.as_deref(),
        Some(fence.holder.as_str())
    );
    assert_eq!(lease.lease_transitions, Some(1));
    first.stop().await;
    second.stop().await;
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_cut_off_steps_down_before_its_lease_expires_and_its_successor_alone_writes() {
    let plane = Plane::start(3).await;
    let proxy = Proxy::start(plane.cluster.client_endpoints()[0].clone()).await;
    let cut_off = start(Arc::new(ApiClient::new(vec![proxy.address.clone()])), "m1");
    let deposed = wait_to_lead(&cut_off).await;
    let successor = start(plane.new_client(), "m2");
    let mut successors = successor.subscribe();
    wait_until(&mut successors, "following the first leader", |now| {
        *now == Leadership::Following {
            holder: Some(deposed.holder.clone()),
        }
    })
    .await;
    plane
        .client
        .create_object("configmaps", "default", &config_map("shared"))
        .await
        .expect("a config map to patch");

    proxy.block();
    let mut cut_offs = cut_off.subscribe();
    wait_until(&mut cut_offs, "stepping down", |now| !now.is_leading()).await;
    let stepped_down_at = jiff::Timestamp::now();
    let lease = read_lease(&plane.client).await;
    let expires = expiry(&lease).expect("a renewed lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(deposed.holder.as_str()),
        "nobody took over before the lease expired"
    );
    assert!(
        stepped_down_at < expires,
        "stepped down at {stepped_down_at}, after the lease expired at {expires}"
    );

    let fence = wait_to_lead(&successor).await;
    assert!(
        jiff::Timestamp::now() > expires,
        "took over before the lease expired"
    );
    assert!(fence.epoch > deposed.epoch, "{fence:?} after {deposed:?}");
    // The deposed leader's writes are refused, every one; the successor's land.
    assert_eq!(
        fenced_writes(&plane.client, &deposed, "by-deposed").await,
        2
    );
    assert_eq!(
        fenced_writes(&plane.client, &fence, "by-successor").await,
        0
    );
    let not_written = plane
        .client
        .get_object("configmaps", "default", "by-deposed")
        .await
        .expect_err("the deposed leader's create landed");
    assert!(not_written.is_not_found(), "{not_written}");
    let shared = plane
        .client
        .get_object("configmaps", "default", "shared")
        .await
        .expect("the shared config map");
    assert_eq!(shared["data"]["last"], "by-successor");

    // Reconnected, the deposed leader follows its successor.
    proxy.unblock();
    wait_until(&mut cut_offs, "following the successor", |now| {
        *now == Leadership::Following {
            holder: Some(fence.holder.clone()),
        }
    })
    .await;
    assert_eq!(successor.fence(), Some(fence));
    cut_off.stop().await;
    successor.stop().await;
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_holder_name_waits_out_its_past_lifes_lease_and_leads_at_the_next_epoch() {
    let plane = Plane::start(3).await;
    let past_life = start(plane.new_client(), "m1");
    let old = wait_to_lead(&past_life).await;
    past_life.stop().await;
    let expires = expiry(&read_lease(&plane.client).await).expect("a renewed lease");

    let restarted = start(plane.new_client(), "m1");
    assert_ne!(
        restarted.identity(),
        old.holder,
        "a new life is a new holder"
    );
    assert!(restarted.identity().starts_with("m1_"));
    let fence = wait_to_lead(&restarted).await;
    assert!(
        jiff::Timestamp::now() > expires,
        "took its past life's lease before it expired"
    );
    assert_eq!(fence.epoch, old.epoch + 1);
    plane
        .client
        .create_object("configmaps", "default", &config_map("shared"))
        .await
        .expect("a config map to patch");
    assert_eq!(fenced_writes(&plane.client, &old, "by-past-life").await, 2);
    assert_eq!(
        fenced_writes(&plane.client, &fence, "by-restarted").await,
        0
    );
    restarted.stop().await;
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_released_lease_is_taken_by_the_follower_at_once_and_ends_the_old_fence() {
    let plane = Plane::start(3).await;
    let first = start(plane.new_client(), "m1");
    let old = wait_to_lead(&first).await;
    let second = start(plane.new_client(), "m2");
    let mut following = second.subscribe();
    wait_until(&mut following, "following", |now| {
        *now == Leadership::Following {
            holder: Some(old.holder.clone()),
        }
    })
    .await;
    plane
        .client
        .create_object("configmaps", "default", &config_map("shared"))
        .await
        .expect("a config map to patch");
    let released_at = tokio::time::Instant::now();
    first.release().await;
    assert_eq!(
        fenced_writes(&plane.client, &old, "after-release").await,
        2,
        "the released term's fence passes no more"
    );
    let fence = wait_to_lead(&second).await;
    let waited = released_at.elapsed();
    assert!(
        waited < config().lease_duration,
        "the follower waited {waited:?}, as long as an expiry"
    );
    assert_eq!(fence.epoch, old.epoch + 1);
    assert_eq!(
        fenced_writes(&plane.client, &fence, "by-successor").await,
        0
    );
    second.stop().await;
    plane.shutdown().await;
}
