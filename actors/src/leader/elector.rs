//! [`Elector`]: the shell that campaigns for a Lease through the API and publishes who leads
//! on a `watch` channel. Every round it reads the lease, asks [`decide`], and writes what that
//! returns compare-and-swap (create when absent); losing a race (Conflict, AlreadyExists) is
//! answered by reading again.
//!
//! ```text
//!   Following ── acquired (epoch + 1) ──► Leading { fence } ── renewed every retry period
//!       ▲                                      │
//!       └── someone else's / no renewal within the renew deadline (published first) ◄┘
//! ```
//!
//! A leader publishes `Following` before it writes anything that could start a new term, and
//! as soon as its renew deadline passes without a renewal: it stops acting while its lease
//! still holds. Its fenced writes are refused by the API server after that anyway.

use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use rudder_proto::api::Fence;
use rudder_proto::client::{ApiClient, ClientError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::config::{ConfigError, ElectionConfig};
use super::decide::{decide, release, Decision};

/// Who leads, as this elector knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// We lead: send every write under `fence` ([`ApiClient::fenced`]).
    Leading { fence: Fence },
    /// Someone else leads (`holder`), or nobody we know of (`None`: not read yet, or we
    /// stepped down without learning who took over).
    Following { holder: Option<String> },
}

impl Leadership {
    pub fn fence(&self) -> Option<&Fence> {
        match self {
            Self::Leading { fence } => Some(fence),
            Self::Following { .. } => None,
        }
    }

    pub fn is_leading(&self) -> bool {
        matches!(self, Self::Leading { .. })
    }
}

/// Why a round of the campaign failed (the next round tries again).
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error("reading the lease {namespace}/{name}")]
    Read {
        namespace: String,
        name: String,
        #[source]
        source: ClientError,
    },
    #[error("the lease {namespace}/{name} as read is not a Lease")]
    Decode {
        namespace: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing the lease {namespace}/{name}")]
    Write {
        namespace: String,
        name: String,
        #[source]
        source: ClientError,
    },
}

/// A campaign for one Lease, running on a tokio task until stopped or dropped.
pub struct Elector {
    identity: String,
    leadership: Arc<watch::Sender<Leadership>>,
    task: JoinHandle<()>,
    /// For [`Elector::release`].
    client: Arc<ApiClient>,
    config: ElectionConfig,
}

/// The longest a release may take (a store that answers gives it in milliseconds).
pub const RELEASE_AT_MOST: std::time::Duration = std::time::Duration::from_secs(2);

impl Elector {
    /// Starts campaigning as `identity` (see [`super::unique_identity`]) for the lease
    /// `config` names.
    pub fn start(
        client: Arc<ApiClient>,
        identity: String,
        config: ElectionConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let (sender, _) = watch::channel(Leadership::Following { holder: None });
        let leadership = Arc::new(sender);
        let campaign = Campaign {
            client: Arc::clone(&client),
            me: identity.clone(),
            config: config.clone(),
            leadership: Arc::clone(&leadership),
            term: None,
        };
        let task = tokio::spawn(campaign.run());
        Ok(Self {
            identity,
            leadership,
            task,
            client,
            config,
        })
    }

    /// This elector's holder identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Leadership as it changes (the current value first). The channel closes when the
    /// elector is dropped without [`Elector::stop`]: treat that as `Following`.
    pub fn subscribe(&self) -> watch::Receiver<Leadership> {
        self.leadership.subscribe()
    }

    /// The fence to write under now, if we lead.
    pub fn fence(&self) -> Option<Fence> {
        self.leadership.borrow().fence().cloned()
    }

    /// Stops campaigning and publishes `Following`. The lease is not released: it stays ours
    /// until it expires, as after a crash (a successor waits for the expiry); see
    /// [`Elector::release`] for a clean shutdown.
    pub async fn stop(mut self) {
        self.task.abort();
        // Aborted (or ended): either way the campaign publishes nothing more.
        let _ = (&mut self.task).await;
        self.leadership
            .send_replace(Leadership::Following { holder: None });
    }
}

impl Elector {
    /// Stops campaigning and, if this elector leads, gives the lease up at once (client-go's
    /// ReleaseOnCancel, for a clean shutdown): a successor takes it without waiting for it
    /// to expire, and this term's fence stops passing. Call it once whatever ran under the
    /// fence has stopped. The release is one compare-and-swap write bounded by the renew
    /// deadline and [`RELEASE_AT_MOST`] — a courtesy that must not hold a shutdown up when
    /// the store has no quorum (all masters stopping at once); if it fails the lease simply
    /// expires, as after a crash.
    pub async fn release(self) {
        let fence = self.fence();
        let (client, config, identity) = (
            Arc::clone(&self.client),
            self.config.clone(),
            self.identity.clone(),
        );
        self.stop().await;
        let Some(fence) = fence else {
            return;
        };
        let (namespace, name) = (&config.lease_namespace, &config.lease_name);
        let released = tokio::time::timeout(config.renew_deadline.min(RELEASE_AT_MOST), async {
            let json = client.get_object("leases", namespace, name).await?;
            let lease = match serde_json::from_value::<Lease>(json) {
                Ok(lease) => lease,
                Err(error) => {
                    tracing::warn!(%error, "the lease {namespace}/{name} is not a Lease");
                    return Ok(false);
                }
            };
            let Some(released) = release(&lease, &identity, fence.epoch) else {
                return Ok(false);
            };
            let mut json = serde_json::to_value(&released).unwrap_or_default();
            json["apiVersion"] = "coordination.k8s.io/v1".into();
            json["kind"] = "Lease".into();
            client
                .update_object("leases", namespace, name, &json, false)
                .await
                .map(|_| true)
        })
        .await;
        match released {
            Ok(Ok(true)) => tracing::info!(%identity, epoch = fence.epoch, "released the lease"),
            Ok(Ok(false)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%identity, %error, "releasing the lease; it will expire")
            }
            Err(_) => tracing::warn!(%identity, "releasing the lease timed out; it will expire"),
        }
    }
}

impl Drop for Elector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The term we lead: its epoch, and when the renewal (or acquisition) that keeps it was
/// decided, by the monotonic clock.
#[derive(Debug, Clone, Copy)]
struct Term {
    epoch: i32,
    renewed: Instant,
}

/// How a round ended.
enum Outcome {
    Leading(Term),
    Following {
        holder: String,
    },
    /// Someone wrote the lease between our read and our write: read again now.
    LostRace,
}

struct Campaign {
    client: Arc<ApiClient>,
    me: String,
    config: ElectionConfig,
    leadership: Arc<watch::Sender<Leadership>>,
    term: Option<Term>,
}

impl Campaign {
    async fn run(mut self) {
        let mut raced = false;
        loop {
            // A leader's round may take only what is left of its renew deadline.
            let limit = match self.term {
                Some(term) => (term.renewed + self.config.renew_deadline)
                    .saturating_duration_since(Instant::now()),
                None => self.config.renew_deadline,
            };
            match tokio::time::timeout(limit, self.round()).await {
                Ok(Ok(Outcome::Leading(term))) => self.on_leading(term),
                Ok(Ok(Outcome::Following { holder })) => {
                    if self.term.is_some() {
                        stepping_down_late().await;
                    }
                    self.on_following(Some(holder));
                }
                Ok(Ok(Outcome::LostRace)) if !raced => {
                    raced = true;
                    continue;
                }
                Ok(Ok(Outcome::LostRace)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(identity = %self.me, error = %error_chain(&error), "leader election round failed");
                }
                Err(_) => tracing::warn!(
                    identity = %self.me,
                    "leader election round did not finish within the renew deadline"
                ),
            }
            raced = false;
            if let Some(term) = self.term {
                if Instant::now() >= term.renewed + self.config.renew_deadline {
                    tracing::warn!(identity = %self.me, epoch = term.epoch, "not renewed within the renew deadline: stepping down");
                    stepping_down_late().await;
                    self.on_following(None);
                }
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Reads the lease, decides, and writes.
    async fn round(&mut self) -> Result<Outcome, RoundError> {
        let namespace = self.config.lease_namespace.clone();
        let name = self.config.lease_name.clone();
        let observed = match self.client.get_object("leases", &namespace, &name).await {
            Ok(json) => Some(serde_json::from_value::<Lease>(json).map_err(|source| {
                RoundError::Decode {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    source,
                }
            })?),
            Err(error) if error.is_not_found() => None,
            Err(source) => {
                return Err(RoundError::Read {
                    namespace,
                    name,
                    source,
                })
            }
        };
        let decided_at = Instant::now();
        let leading = self.term.map(|term| term.epoch);
        let decision = decide(
            observed.as_ref(),
            &self.me,
            leading,
            jiff::Timestamp::now(),
            &self.config,
        );
        let (lease, epoch) = match decision {
            Decision::Follow { holder, .. } => return Ok(Outcome::Following { holder }),
            Decision::Renew { lease } => (lease, leading.unwrap_or_default()),
            Decision::Acquire { lease, epoch } => {
                // A new term: whatever we did in the last one stops before it starts.
                if self.term.is_some() {
                    self.on_following(None);
                }
                (lease, epoch)
            }
        };
        match self.write(&lease).await {
            Ok(()) => Ok(Outcome::Leading(Term {
                epoch,
                renewed: decided_at,
            })),
            Err(error) if matches!(error.reason(), "Conflict" | "AlreadyExists") => {
                Ok(Outcome::LostRace)
            }
            Err(source) => Err(RoundError::Write {
                namespace,
                name,
                source,
            }),
        }
    }

    /// Creates `lease` when it has no resourceVersion, else replaces it compare-and-swap.
    async fn write(&self, lease: &Lease) -> Result<(), ClientError> {
        let (namespace, name) = (&self.config.lease_namespace, &self.config.lease_name);
        // A Lease always serializes; a failure would be a k8s-openapi bug, caught at the API.
        let mut json = serde_json::to_value(lease).unwrap_or_default();
        json["apiVersion"] = "coordination.k8s.io/v1".into();
        json["kind"] = "Lease".into();
        if lease.metadata.resource_version.is_some() {
            self.client
                .update_object("leases", namespace, name, &json, false)
                .await?;
        } else {
            self.client
                .create_object("leases", namespace, &json)
                .await?;
        }
        Ok(())
    }

    fn on_leading(&mut self, term: Term) {
        let new_term = self.term.map(|t| t.epoch) != Some(term.epoch);
        self.term = Some(term);
        if new_term {
            tracing::info!(identity = %self.me, epoch = term.epoch, "acquired the lease: leading");
            self.leadership.send_replace(Leadership::Leading {
                fence: Fence {
                    lease_namespace: self.config.lease_namespace.clone(),
                    lease_name: self.config.lease_name.clone(),
                    holder: self.me.clone(),
                    epoch: term.epoch,
                },
            });
        }
    }

    fn on_following(&mut self, holder: Option<String>) {
        self.term = None;
        let following = Leadership::Following { holder };
        self.leadership.send_if_modified(|now| {
            let changed = *now != following;
            *now = following;
            changed
        });
    }
}

/// Fault injection: with the failpoint `leader-steps-down-late` set to `return(MS)`, a
/// leader that has found it must step down goes on publishing that it leads for MS
/// milliseconds first — as a process stalled right after its check would (a long pause, a
/// slow clock). The end-to-end fence tests turn it on so that a deposed leader really writes
/// after the takeover: every such write must be refused by the API's fence.
async fn stepping_down_late() {
    let late = rudder_proto::failpoints::eval("leader-steps-down-late", |millis| {
        millis.and_then(|m| m.parse::<u64>().ok()).unwrap_or(0)
    });
    if let Some(millis) = late.filter(|m| *m > 0) {
        tracing::warn!(
            millis,
            "failpoint leader-steps-down-late: still acting as the leader"
        );
        tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
    }
}

/// `error` and its causes, for a log line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}
