//! The event correlator: what keeps a component's events from flooding the API server, with
//! client-go's `EventCorrelator` semantics (`tools/record/events_cache.go`). Pure: the time and
//! the name suffix are arguments, so a test replays any sequence exactly.
//!
//! Each occurrence passes three stages, in client-go's order:
//!
//! 1. **Aggregate**: occurrences alike but for the message (same object, type, reason) are
//!    counted by distinct message; once [`AGGREGATE_MAX_EVENTS`] distinct messages are seen
//!    with no gap over [`AGGREGATE_WINDOW`], each further new message is reported as one
//!    combined event, `(combined from similar events): <message>`.
//! 2. **Count**: an event identical to one already written (or the combined event of its
//!    group) becomes a patch of that Event object: `count` + 1, a new `lastTimestamp`.
//! 3. **Filter spam**: a token bucket per object, [`SPAM_BURST`] deep, one token back every
//!    [`SPAM_REFILL`]; an occurrence finding it empty is dropped. As in client-go the first two
//!    stages have already counted it, so the next admitted patch's count includes it.
//!
//! Every cache holds at most [`CACHE_ENTRIES`] records, forgetting the least recently used.
//! One correlator serves one source (component and host), so the source, part of every
//! client-go key, is implicit in these.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::bounded::BoundedMap;

/// Records per cache (client-go's `maxLruCacheEntries`).
pub const CACHE_ENTRIES: usize = 4096;
/// Distinct messages in one group before they are combined.
pub const AGGREGATE_MAX_EVENTS: usize = 10;
/// A group starts afresh once no similar occurrence came for longer than this.
pub const AGGREGATE_WINDOW: SignedDuration = SignedDuration::from_mins(10);
/// Events an object may have in a burst.
pub const SPAM_BURST: u32 = 25;
/// How long the bucket takes to earn back one event (client-go's qps of 1/300).
pub const SPAM_REFILL: SignedDuration = SignedDuration::from_mins(5);
/// What a combined event's message starts with.
pub const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// An event's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One thing a component reports about an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Occurrence {
    pub involved: ObjectReference,
    pub type_: EventType,
    /// Short and UpperCamelCase (`SuccessfulCreate`, `FailedScheduling`).
    pub reason: String,
    pub message: String,
}

/// What to write for an occurrence.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// A new Event object.
    Create(Event),
    /// A JSON merge patch of the Event already written: `count`, `lastTimestamp`, `message`.
    Patch {
        namespace: String,
        name: String,
        count: i32,
        last_timestamp: Timestamp,
        message: String,
        /// The whole event as it now stands: what to create instead when the patch finds the
        /// object gone (events expire on the server).
        event: Event,
    },
    /// Nothing: the object's spam budget is spent.
    Drop,
}

/// The involved object's identity: the spam filter's key (client-go's `getSpamKey`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ObjectId {
    api_version: Option<String>,
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
}

impl ObjectId {
    fn of(object: &ObjectReference) -> Self {
        Self {
            api_version: object.api_version.clone(),
            kind: object.kind.clone(),
            namespace: object.namespace.clone(),
            name: object.name.clone(),
            uid: object.uid.clone(),
        }
    }
}

/// Occurrences alike but for the message: the aggregator's group (client-go's
/// `EventAggregatorByReasonFunc`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    object: ObjectId,
    type_: EventType,
    reason: String,
}

/// Which Event object an occurrence counts toward.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum LogKey {
    /// Its own (client-go's `getEventKey`, which adds the field path and the message).
    Exact {
        group: GroupKey,
        field_path: Option<String>,
        message: String,
    },
    /// Its group's combined event.
    Combined(GroupKey),
}

/// A token bucket kept in nanoseconds of refill time, so refilling is exact: a token is
/// worth [`SPAM_REFILL`].
#[derive(Debug)]
struct Bucket {
    credit: i128,
    last: Timestamp,
}

impl Bucket {
    fn full(now: Timestamp) -> Self {
        Self {
            credit: i128::from(SPAM_BURST) * SPAM_REFILL.as_nanos(),
            last: now,
        }
    }

    /// Refills for the time since the last call and takes a token if there is one.
    fn take(&mut self, now: Timestamp) -> bool {
        let token = SPAM_REFILL.as_nanos();
        // A clock stepping back earns nothing (and is not charged either).
        let earned = now.duration_since(self.last).as_nanos().max(0);
        self.credit = (self.credit + earned).min(i128::from(SPAM_BURST) * token);
        self.last = self.last.max(now);
        if self.credit >= token {
            self.credit -= token;
            true
        } else {
            false
        }
    }
}

/// A group's distinct messages, oldest first, and when one was last seen.
#[derive(Debug)]
struct Group {
    messages: Vec<String>,
    last: Timestamp,
}

/// An Event object written (or about to be): what a patch of it needs.
#[derive(Debug, Clone)]
struct Logged {
    name: String,
    count: i32,
    first: Timestamp,
}

/// The correlator of one source's events; see the module docs.
#[derive(Debug)]
pub struct Correlator {
    component: String,
    /// `None` for "": client-go leaves an empty host out of the event.
    host: Option<String>,
    spam: BoundedMap<ObjectId, Bucket>,
    groups: BoundedMap<GroupKey, Group>,
    log: BoundedMap<LogKey, Logged>,
}

impl Correlator {
    /// The correlator for `component` (`replicaset-controller`, `default-scheduler`) on `host`
    /// ("" for none, as controllers report).
    pub fn new(component: &str, host: &str) -> Self {
        Self {
            component: component.to_string(),
            host: (!host.is_empty()).then(|| host.to_string()),
            spam: BoundedMap::new(CACHE_ENTRIES),
            groups: BoundedMap::new(CACHE_ENTRIES),
            log: BoundedMap::new(CACHE_ENTRIES),
        }
    }

    /// Decides what to write for `occurrence`, seen at `now`. A new Event object is named
    /// `<involved name>.<suffix in hex>`; the caller makes `suffix` unique (client-go uses
    /// the time in nanoseconds).
    pub fn correlate(&mut self, occurrence: Occurrence, now: Timestamp, suffix: u64) -> Decision {
        let object = ObjectId::of(&occurrence.involved);
        let (event, key) = self.aggregate(occurrence, now, suffix);
        let decision = self.count(event, key, now);
        let bucket = self.spam.get_or_insert_with(object, || Bucket::full(now));
        if bucket.take(now) {
            decision
        } else {
            Decision::Drop
        }
    }

    /// Stage 1: the event to record (the occurrence's own or its group's combined one) and
    /// the key it is counted under.
    fn aggregate(
        &mut self,
        occurrence: Occurrence,
        now: Timestamp,
        suffix: u64,
    ) -> (Event, LogKey) {
        let key = GroupKey {
            object: ObjectId::of(&occurrence.involved),
            type_: occurrence.type_,
            reason: occurrence.reason.clone(),
        };
        let group = self.groups.get_or_insert_with(key.clone(), || Group {
            messages: Vec::new(),
            last: now,
        });
        if now.duration_since(group.last) > AGGREGATE_WINDOW {
            group.messages.clear();
        }
        if !group.messages.contains(&occurrence.message) {
            group.messages.push(occurrence.message.clone());
        }
        group.last = now;
        if group.messages.len() < AGGREGATE_MAX_EVENTS {
            let own = LogKey::Exact {
                group: key,
                field_path: occurrence.involved.field_path.clone(),
                message: occurrence.message.clone(),
            };
            return (self.event(occurrence, now, suffix), own);
        }
        // The group stays at most this size: the oldest message makes way (client-go drops
        // an arbitrary one).
        group.messages.remove(0);
        let combined = Occurrence {
            message: [COMBINED_PREFIX, occurrence.message.as_str()].concat(),
            ..occurrence
        };
        (self.event(combined, now, suffix), LogKey::Combined(key))
    }

    /// Stage 2: a create the first time `key` is seen, else a patch of the event written then.
    fn count(&mut self, mut event: Event, key: LogKey, now: Timestamp) -> Decision {
        let Some(seen) = self.log.get(&key).cloned() else {
            let logged = Logged {
                name: event.metadata.name.clone().unwrap_or_default(),
                count: 1,
                first: now,
            };
            self.log.insert(key, logged);
            return Decision::Create(event);
        };
        let count = seen.count.saturating_add(1);
        event.metadata.name = Some(seen.name.clone());
        event.first_timestamp = Some(Time(seen.first));
        event.count = Some(count);
        let logged = Logged {
            name: seen.name.clone(),
            count,
            first: seen.first,
        };
        self.log.insert(key, logged);
        Decision::Patch {
            namespace: event.metadata.namespace.clone().unwrap_or_default(),
            name: seen.name,
            count,
            last_timestamp: now,
            message: event.message.clone().unwrap_or_default(),
            event,
        }
    }

    /// The Event object for `occurrence` as client-go's recorder fills it.
    fn event(&self, occurrence: Occurrence, now: Timestamp, suffix: u64) -> Event {
        let Occurrence {
            involved,
            type_,
            reason,
            message,
        } = occurrence;
        let object_name = involved.name.as_deref().unwrap_or_default();
        let name = format!("{object_name}.{suffix:x}");
        // Events about cluster-scoped objects (nodes) live in "default", as in Kubernetes.
        let namespace = match involved.namespace.as_deref() {
            None | Some("") => "default".to_string(),
            Some(namespace) => namespace.to_string(),
        };
        Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace),
                ..ObjectMeta::default()
            },
            involved_object: involved,
            type_: Some(type_.as_str().to_string()),
            reason: Some(reason),
            message: Some(message),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: self.host.clone(),
            ..Event::default()
        }
    }
}

#[cfg(test)]
#[path = "correlator_tests.rs"]
mod tests;
