//! Watchers beside a workload: each follows a prefix from a start revision on one member,
//! and when its stream breaks (a member killed or paused) resumes on the next member from
//! the revision after its last event, as a client-go reflector or etcd's clientv3 does. What
//! each saw goes to [`crate::check::watch`]; a resumption that lost or replayed an event
//! shows there.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rudder_proto::etcdserverpb::watch_request::RequestUnion;
use rudder_proto::etcdserverpb::{WatchCreateRequest, WatchRequest};

use crate::check::watch::Watcher;
use crate::client::watch;
use crate::history::{change_of, prefix_end};

/// How long a stream may stay silent before the watcher tries another member (a paused
/// member's stream never breaks by itself).
const SILENCE: Duration = Duration::from_secs(3);

/// When watchers stop: once `through` is set (nonzero) and each has seen it, or `stop`.
#[derive(Clone, Default)]
pub struct Finish {
    /// The last revision every watcher must reach.
    pub through: Arc<AtomicI64>,
    /// Give up now.
    pub stop: Arc<AtomicBool>,
}

/// Runs `count` watchers of `prefix` from `from`, the first on `endpoints[0]`, the next on
/// `endpoints[1]`, ...; what each saw once `finish` says, or why a watcher was lost.
pub async fn run(
    count: usize,
    prefix: &str,
    endpoints: Vec<String>,
    from: i64,
    finish: Finish,
) -> Vec<Result<Watcher, String>> {
    let tasks: Vec<_> = (0..count)
        .map(|n| {
            let (prefix, endpoints, finish) =
                (prefix.to_string(), endpoints.clone(), finish.clone());
            tokio::spawn(follow(n, prefix, endpoints, from, finish))
        })
        .collect();
    let mut watchers = Vec::new();
    for (n, task) in tasks.into_iter().enumerate() {
        watchers.push(
            task.await
                .map_err(|error| format!("watcher {n} failed: {error}")),
        );
    }
    watchers
}

async fn follow(
    n: usize,
    prefix: String,
    endpoints: Vec<String>,
    from: i64,
    finish: Finish,
) -> Watcher {
    let mut watcher = Watcher {
        name: format!("watcher {n}"),
        prefix: prefix.clone(),
        from,
        through: from - 1,
        events: Vec::new(),
    };
    let mut member = n % endpoints.len();
    let done = |watcher: &Watcher| {
        let through = finish.through.load(Ordering::Relaxed);
        finish.stop.load(Ordering::Relaxed) || (through > 0 && watcher.through >= through)
    };
    while !done(&watcher) {
        // Errors only end this stream: the next member is tried from where it stopped.
        let _ = stream(&endpoints[member], &mut watcher, &done).await;
        member = (member + 1) % endpoints.len();
        if !done(&watcher) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    watcher
}

/// One stream on `addr`, from the revision after what `watcher` has, until `done` or the
/// stream breaks or falls silent.
async fn stream(
    addr: &str,
    watcher: &mut Watcher,
    done: &impl Fn(&Watcher) -> bool,
) -> Result<(), String> {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let create = WatchCreateRequest {
        key: watcher.prefix.as_bytes().to_vec(),
        range_end: prefix_end(&watcher.prefix),
        start_revision: watcher.through + 1,
        ..Default::default()
    };
    let request = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(create)),
    };
    sender.send(request).await.map_err(|e| e.to_string())?;
    let opened = tokio::time::timeout(SILENCE, async {
        watch(addr)
            .await
            .map_err(|e| e.to_string())?
            .watch(tokio_stream::wrappers::ReceiverStream::new(receiver))
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|_| format!("{addr} did not open a watch"))??;
    let mut responses = opened.into_inner();
    while !done(watcher) {
        let message = match tokio::time::timeout(SILENCE, responses.message()).await {
            Ok(Ok(Some(message))) => message,
            Ok(Ok(None)) => return Err("the stream ended".into()),
            Ok(Err(error)) => return Err(error.to_string()),
            // Silent: a paused member, or nothing to say; another member will tell.
            Err(_) => return Err("silent".into()),
        };
        if message.canceled {
            return Err(format!("canceled: {}", message.cancel_reason));
        }
        for event in message.events {
            if let Some(kv) = event.kv {
                let change = change_of(event.r#type, kv);
                watcher.through = watcher.through.max(change.revision);
                watcher.events.push(change);
            }
        }
    }
    drop(sender);
    Ok(())
}
