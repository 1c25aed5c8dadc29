//! The keyspace's cases, each run on a [`Replica`] that persists and forgets as the state
//! machine does. Over 700 lines because it is one table of etcd behaviours over one state;
//! the shared harness is at the top.

use std::cell::Cell;

use super::*;

/// The keyspace as the state machine runs it: each applied command's versions persisted (to
/// [`Disk`], here a map), then the overwritten values forgotten, and reads of the past
/// answered from the disk. So every test below also checks what forgetting keeps readable.
#[derive(Debug, Default)]
struct Replica {
    mvcc: Mvcc,
    disk: Disk,
}

/// The database's `mvcc` family, as far as values go. Values are copied, as a database's are.
#[derive(Debug, Default)]
struct Disk {
    values: BTreeMap<Rev, Bytes>,
    reads: Cell<usize>,
}

impl History for Disk {
    fn value(&self, rev: Rev) -> Result<Bytes, KvError> {
        self.reads.set(self.reads.get() + 1);
        self.values
            .get(&rev)
            .cloned()
            .ok_or_else(|| KvError::HistoryUnreadable {
                revision: rev.main,
                sub: rev.sub,
                reason: "not on disk".into(),
            })
    }
}

impl Disk {
    fn persist(&mut self, effects: &Effects) {
        for (sub, event) in effects.events.iter().enumerate() {
            let rev = Rev {
                main: event.kv.mod_revision,
                sub: sub as u32,
            };
            let value = Bytes::copy_from_slice(&event.kv.value);
            self.values.insert(rev, value);
        }
        for rev in &effects.removed {
            self.values.remove(rev);
        }
    }
}

impl std::ops::Deref for Replica {
    type Target = Mvcc;
    fn deref(&self) -> &Mvcc {
        &self.mvcc
    }
}

impl Replica {
    fn restore(image: MvccImage) -> Self {
        let disk = Disk {
            values: image
                .versions
                .iter()
                .map(|(rev, version)| (*rev, Bytes::copy_from_slice(&version.kv.value)))
                .collect(),
            reads: Cell::new(0),
        };
        let mut mvcc = Mvcc::restore(image);
        mvcc.forget_overwritten_values();
        Self { mvcc, disk }
    }

    fn apply(&mut self, command: &Command) -> (Result<CommandResult, KvError>, Effects) {
        let (result, effects) = self.mvcc.apply(command, &self.disk);
        self.disk.persist(&effects);
        self.mvcc.forget_overwritten_values();
        (result, effects)
    }

    fn range(&self, req: &RangeRequest) -> Result<RangeResponse, KvError> {
        self.mvcc.range(req, &self.disk)
    }

    fn events_in(&self, from: Revision, to: Revision, range: &KeyRange, prev: bool) -> Vec<Event> {
        self.mvcc
            .events_in(from, to, range, prev, &self.disk)
            .expect("the disk holds every version")
    }

    fn hash(&self, at: Revision) -> Result<KeyspaceHash, KvError> {
        self.mvcc.check_readable(at)?;
        self.mvcc.freeze().hash(at, &self.disk)
    }

    fn image(&self) -> MvccImage {
        self.mvcc
            .freeze()
            .image(&self.disk)
            .expect("the disk holds every version")
    }
}

fn put(key: &str, value: &str) -> Command {
    Command::Put(PutRequest {
        key: key.into(),
        value: value.as_bytes().to_vec().into(),
        ..Default::default()
    })
}

fn put_leased(key: &str, lease: LeaseId) -> Command {
    Command::Put(PutRequest {
        key: key.into(),
        value: b"v".to_vec().into(),
        lease,
        ..Default::default()
    })
}

fn delete(range: KeyRange) -> Command {
    Command::DeleteRange(DeleteRangeRequest {
        range,
        prev_kv: true,
    })
}

fn get(mvcc: &Replica, key: &str, revision: Revision) -> Result<Option<KeyValue>, KvError> {
    let req = RangeRequest {
        range: KeyRange::single(key),
        revision,
        ..Default::default()
    };
    Ok(mvcc.range(&req)?.kvs.into_iter().next())
}

fn apply_ok(mvcc: &mut Replica, command: Command) -> (CommandResult, Effects) {
    let (result, effects) = mvcc.apply(&command);
    (result.expect("command should apply"), effects)
}

#[test]
fn each_write_takes_the_next_revision_and_counts_versions() {
    let mut mvcc = Replica::default();
    apply_ok(&mut mvcc, put("a", "1"));
    apply_ok(&mut mvcc, put("a", "2"));
    apply_ok(&mut mvcc, put("b", "1"));
    assert_eq!(mvcc.revision(), 3);
    let a = get(&mvcc, "a", 0).unwrap().unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (1, 2, 2));
    assert_eq!(a.value, &b"2"[..]);
}

#[test]
fn reads_at_a_past_revision_see_the_past() {
    let mut mvcc = Replica::default();
    apply_ok(&mut mvcc, put("a", "1"));
    apply_ok(&mut mvcc, put("a", "2"));
    apply_ok(&mut mvcc, delete(KeyRange::single("a")));
    assert_eq!(get(&mvcc, "a", 1).unwrap().unwrap().value, &b"1"[..]);
    assert_eq!(get(&mvcc, "a", 2).unwrap().unwrap().value, &b"2"[..]);
    assert_eq!(get(&mvcc, "a", 3).unwrap(), None);
    assert_eq!(
        get(&mvcc, "a", 4),
        Err(KvError::FutureRevision {
            requested: 4,
            current: 3
        })
    );
}

#[test]
fn a_key_recreated_after_delete_starts_a_new_generation() {
    let mut mvcc = Replica::default();
    apply_ok(&mut mvcc, put("a", "1"));
    apply_ok(&mut mvcc, delete(KeyRange::single("a")));
    apply_ok(&mut mvcc, put("a", "again"));
    let a = get(&mvcc, "a", 0).unwrap().unwrap();
    assert_eq!((a.create_revision, a.version), (3, 1));
}

#[test]
fn deleting_nothing_uses_no_revision() {
    let mut mvcc = Replica::default();
    apply_ok(&mut mvcc, put("a", "1"));
    let (result, effects) = apply_ok(&mut mvcc, delete(KeyRange::single("zzz")));
    assert_eq!(
        result,
        CommandResult::DeleteRange(DeleteRangeResponse::default())
    );
    assert!(effects.events.is_empty());
    assert_eq!(mvcc.revision(), 1);
}

#[test]
fn prefix_and_open_ranges_cover_the_right_keys() {
    let mut mvcc = Replica::default();
    for key in ["a", "ab", "abc", "b", "c"] {
        apply_ok(&mut mvcc, put(key, "v"));
    }
    let keys = |range: KeyRange, limit: i64| {
        let resp = mvcc
            .range(&RangeRequest {
                range,
                limit,
                ..Default::default()
            })
            .unwrap();
        let keys: Vec<String> = resp
            .kvs
            .iter()
            .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
            .collect();
        (keys, resp.count, resp.more)
    };
    assert_eq!(keys(KeyRange::prefix("ab"), 0).0, ["ab", "abc"]);
    assert_eq!(
        keys(
            KeyRange {
                key: b"b".to_vec(),
                range_end: vec![0]
            },
            0
        )
        .0,
        ["b", "c"]
    );
    assert_eq!(
        keys(
            KeyRange {
                key: vec![0],
                range_end: vec![0]
            },
            2
        ),
        (vec!["a".into(), "ab".into()], 5, true)
    );
}

#[test]
fn sorting_and_filters_follow_etcd() {
    let mut mvcc = Replica::default();
    apply_ok(&mut mvcc, put("a", "3"));
    apply_ok(&mut mvcc, put("b", "1"));
    apply_ok(&mut mvcc, put("c", "2"));
    let req = RangeRequest {
        range: KeyRange::prefix(""),
        sort_target: SortTarget::Value,
        sort_order: SortOrder::Descend,
        ..Default::default()
    };
    let values: Vec<_> = mvcc
        .range(&req)
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.value)
        .collect();
    assert_eq!(values, [b"3".to_vec(), b"2".to_vec(), b"1".to_vec()]);
    let req = RangeRequest {
        range: KeyRange::prefix(""),
        min_mod_revision: 2,
        ..Default::default()
    };
    assert_eq!(mvcc.range(&req).unwrap().count, 2);
    let req = RangeRequest {
        range: KeyRange::prefix(""),
        count_only: true,
        ..Default::default()
    };
    let resp = mvcc.range(&req).unwrap();
    assert_eq!((resp.count, resp.kvs.len()), (3, 0));
}

#[test]
fn a_transaction_is_one_revision_and_reads_its_own_writes() {
    let mut mvcc = Replica::default();
    apply_ok(&mut mvcc, put("a", "1"));
    let txn = TxnRequest {
        compare: vec![Compare {
            range: KeyRange::single("a"),
            result: CompareResult::Equal,
            target: CompareTarget::Value(b"1".to_vec()),
        }],
        success: vec![
            RequestOp::Put(PutRequest {
                key: b"b".to_vec(),
                value: b"2".to_vec().into(),
                ..Default::default()
            }),
            RequestOp::Range(RangeRequest {
                range: KeyRange::single("b"),
                ..Default::default()
            }),
            RequestOp::DeleteRange(DeleteRangeRequest {
                range: KeyRange::single("a"),
                prev_kv: false,
            }),
        ],
        failure: vec![],
    };
    let (result, effects) = apply_ok(&mut mvcc, Command::Txn(txn));
    let CommandResult::Txn(response) = result else {
        panic!("not a txn response")
    };
    assert!(response.succeeded);
    let ResponseOp::Range(read) = &response.responses[1] else {
        panic!("not a range")
    };
    assert_eq!(read.kvs[0].value, &b"2"[..]);
    assert_eq!(mvcc.revision(), 2);
    assert_eq!(effects.events.len(), 2);
    assert!(effects.events.iter().all(|e| e.kv.mod_revision == 2));
}

#[test]
fn a_failed_compare_runs_the_failure_branch() {
    let mut mvcc = Replica::default();
    let txn = TxnRequest {
        compare: vec![Compare {
            range: KeyRange::single("missing"),
            result: CompareResult::Greater,
            target: CompareTarget::Version(0),
        }],
        success: vec![RequestOp::Put(PutRequest {
            key: b"s".to_vec(),
            ..Default::default()
        })],
        failure: vec![RequestOp::Put(PutRequest {
            key: b"f".to_vec(),
            ..Default::default()
        })],
    };
    let (result, _) = apply_ok(&mut mvcc, Command::Txn(txn));
    assert!(matches!(
        result,
        CommandResult::Txn(TxnResponse {
            succeeded: false,
            ..
        })
    ));
    assert!(get(&mvcc, "f", 0).unwrap().is_some());
    assert!(get(&mvcc, "s", 0).unwrap().is_none());
}

#[test]
fn a_transaction_writing_a_key_twice_is_refused_and_changes_nothing() {
    let mut mvcc = Replica::default();
    let write = |key: &str| {
        RequestOp::Put(PutRequest {
            key: key.into(),
            ..Default::default()
        })
    };
    let txn = TxnRequest {
        compare: vec![],
        success: vec![write("x"), write("x")],
        failure: vec![],
    };
    let (result, effects) = mvcc.apply(&Command::Txn(txn));
    assert_eq!(result, Err(KvError::DuplicateKey { key: "x".into() }));
    assert_eq!(effects, Effects::default());
    assert_eq!(mvcc.revision(), 0);
}

#[test]
fn keys_go_with_their_revoked_lease_in_one_revision() {
    let mut mvcc = Replica::default();
    apply_ok(&mut mvcc, Command::LeaseGrant { id: 7, ttl: 10 });
    apply_ok(&mut mvcc, put_leased("a", 7));
    apply_ok(&mut mvcc, put_leased("b", 7));
    apply_ok(&mut mvcc, put("c", "stays"));
    assert_eq!(mvcc.lease_keys(7), [b"a".to_vec(), b"b".to_vec()]);
    let (_, effects) = apply_ok(&mut mvcc, Command::LeaseRevoke { id: 7 });
    assert_eq!(effects.events.len(), 2);
    assert_eq!(mvcc.revision(), 4);
    assert!(get(&mvcc, "a", 0).unwrap().is_none());
    assert!(get(&mvcc, "c", 0).unwrap().is_some());
    assert_eq!(mvcc.lease(7), None);
}

#[test]
fn a_put_with_an_unknown_lease_is_refused() {
    let mut mvcc = Replica::default();
    let (result, _) = mvcc.apply(&put_leased("a", 99));
    assert_eq!(result, Err(KvError::LeaseNotFound { id: 99 }));
    assert_eq!(mvcc.revision(), 0);
}

#[test]
fn overwriting_a_leased_key_without_lease_detaches_it() {
    let mut mvcc = Replica::default();
    apply_ok(&mut mvcc, Command::LeaseGrant { id: 1, ttl: 10 });
    apply_ok(&mut mvcc, put_leased("a", 1));
    apply_ok(&mut mvcc, put("a", "free"));
    apply_ok(&mut mvcc, Command::LeaseRevoke { id: 1 });
    assert!(get(&mvcc, "a", 0).unwrap().is_some());
}

#[test]
fn compaction_keeps_what_later_reads_need() {
    let mut mvcc = Replica::default();
    apply_ok(&mut mvcc, put("a", "1")); // 1
    apply_ok(&mut mvcc, put("a", "2")); // 2
    apply_ok(&mut mvcc, put("gone", "x")); // 3
    apply_ok(&mut mvcc, delete(KeyRange::single("gone"))); // 4
    apply_ok(&mut mvcc, put("a", "3")); // 5
    let (_, effects) = apply_ok(&mut mvcc, Command::Compact { revision: 4 });
    // a@1 is superseded by a@2; gone@3 is superseded by its tombstone at 4, which is kept
    // because it sits exactly at the compact revision.
    assert_eq!(
        effects.removed,
        [Rev { main: 1, sub: 0 }, Rev { main: 3, sub: 0 }]
    );
    assert_eq!(get(&mvcc, "a", 4).unwrap().unwrap().value, &b"2"[..]);
    assert_eq!(
        get(&mvcc, "a", 3),
        Err(KvError::Compacted {
            requested: 3,
            compact_revision: 4
        })
    );
    let events = mvcc.events_in(4, Revision::MAX, &KeyRange::prefix(""), false);
    assert_eq!(
        events.iter().map(|e| e.kv.mod_revision).collect::<Vec<_>>(),
        [4, 5]
    );
    let (_, effects) = apply_ok(&mut mvcc, Command::Compact { revision: 5 });
    assert_eq!(
        effects.removed,
        [Rev { main: 2, sub: 0 }, Rev { main: 4, sub: 0 }]
    );
}

#[test]
fn compaction_outside_the_history_is_refused() {
    let mut mvcc = Replica::default();
    apply_ok(&mut mvcc, put("a", "1"));
    apply_ok(&mut mvcc, put("a", "2"));
    let (beyond, _) = mvcc.apply(&Command::Compact { revision: 3 });
    assert_eq!(
        beyond,
        Err(KvError::FutureRevision {
            requested: 3,
            current: 2
        })
    );
    apply_ok(&mut mvcc, Command::Compact { revision: 2 });
    let (again, _) = mvcc.apply(&Command::Compact { revision: 1 });
    assert_eq!(
        again,
        Err(KvError::Compacted {
            requested: 1,
            compact_revision: 2
        })
    );
}

#[test]
fn history_events_carry_the_previous_version() {
    let mut mvcc = Replica::default();
    apply_ok(&mut mvcc, put("a", "1"));
    apply_ok(&mut mvcc, put("a", "2"));
    apply_ok(&mut mvcc, delete(KeyRange::single("a")));
    let events = mvcc.events_in(2, Revision::MAX, &KeyRange::single("a"), true);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].prev_kv.as_ref().unwrap().value, &b"1"[..]);
    assert_eq!(events[1].kind, EventKind::Delete);
    assert_eq!(events[1].prev_kv.as_ref().unwrap().value, &b"2"[..]);
}

#[test]
fn live_effects_match_history_replay() {
    let mut mvcc = Replica::default();
    let mut live = Vec::new();
    for command in [
        put("a", "1"),
        put("b", "1"),
        put("a", "2"),
        delete(KeyRange::prefix("")),
    ] {
        live.extend(apply_ok(&mut mvcc, command).1.events);
    }
    assert_eq!(
        live,
        mvcc.events_in(1, Revision::MAX, &KeyRange::prefix(""), true)
    );
}

#[test]
fn replicas_with_the_same_history_hash_alike_and_restore_exactly() {
    let commands = [
        Command::LeaseGrant { id: 3, ttl: 5 },
        put_leased("a", 3),
        put("b", "x"),
        delete(KeyRange::single("b")),
        Command::Compact { revision: 2 },
    ];
    let mut one = Replica::default();
    let mut two = Replica::default();
    for command in &commands {
        apply_ok(&mut one, command.clone());
        apply_ok(&mut two, command.clone());
    }
    assert_eq!(one.hash(0), two.hash(0));
    let restored = Replica::restore(one.image());
    assert_eq!(restored.hash(0), one.hash(0));
    assert_eq!(restored.lease_keys(3), [b"a".to_vec()]);
    apply_ok(&mut two, put("c", "diverge"));
    assert_ne!(one.hash(0).unwrap().hash, two.hash(0).unwrap().hash);
    assert_eq!(one.hash(3), two.hash(3));
}

#[test]
fn lease_ttl_must_be_positive_and_ids_unique() {
    let mut mvcc = Replica::default();
    assert_eq!(
        mvcc.apply(&Command::LeaseGrant { id: 1, ttl: -5 }).0,
        Err(KvError::InvalidTtl { ttl: -5 })
    );
    apply_ok(&mut mvcc, Command::LeaseGrant { id: 1, ttl: 5 });
    assert_eq!(
        mvcc.apply(&Command::LeaseGrant { id: 1, ttl: 5 }).0,
        Err(KvError::LeaseExists { id: 1 })
    );
    assert_eq!(
        mvcc.apply(&Command::LeaseRevoke { id: 2 }).0,
        Err(KvError::LeaseNotFound { id: 2 })
    );
}

#[test]
fn a_standing_no_space_alarm_refuses_puts_and_grants_and_travels_in_the_image() {
    let mut mvcc = Replica::default();
    apply_ok(&mut mvcc, put("a", "1"));
    let alarm = Alarm {
        member: 7,
        kind: AlarmKind::NoSpace,
    };
    let raise = Command::Alarm { alarm, raise: true };
    let (result, effects) = apply_ok(&mut mvcc, raise.clone());
    assert_eq!(result, CommandResult::Alarmed(Some(alarm)));
    assert_eq!(effects.alarms, Some(vec![alarm]), "the shell persists them");
    let (again, effects) = apply_ok(&mut mvcc, raise);
    assert_eq!(again, CommandResult::Alarmed(None), "already standing");
    assert_eq!(effects.alarms, None, "nothing new to persist");
    assert_eq!(mvcc.revision(), 1, "alarms take no revision");

    for adding in [put("b", "2"), Command::LeaseGrant { id: 3, ttl: 10 }] {
        let (result, effects) = mvcc.apply(&adding);
        assert_eq!(result, Err(KvError::NoSpace), "{adding:?}");
        assert_eq!(effects, Effects::default());
    }
    assert_eq!(mvcc.revision(), 1, "refused writes take no revision");
    apply_ok(&mut mvcc, delete(KeyRange::single("a")));
    assert_eq!(
        mvcc.revision(),
        2,
        "a delete frees space, so it goes through"
    );

    // A replica that installs a snapshot refuses the same writes.
    let mut restored = Replica::restore(mvcc.image());
    assert_eq!(restored.alarms(), vec![alarm]);
    assert_eq!(restored.apply(&put("b", "2")).0, Err(KvError::NoSpace));

    let (disarmed, effects) = apply_ok(
        &mut mvcc,
        Command::Alarm {
            alarm,
            raise: false,
        },
    );
    assert_eq!(disarmed, CommandResult::Alarmed(Some(alarm)));
    assert_eq!(effects.alarms, Some(Vec::new()));
    apply_ok(&mut mvcc, put("b", "2"));
    assert_eq!(mvcc.revision(), 3);
}

#[test]
fn a_value_is_shared_by_its_version_and_events_until_overwritten_then_left_to_the_history() {
    let mut mvcc = Replica::default();
    let (_, first) = apply_ok(&mut mvcc, put("a", "1"));
    let newest = get(&mvcc, "a", 0).unwrap().unwrap();
    // One buffer, whoever holds it: the keyspace's version, the event published for
    // watchers, and the previous value the next write's event carries.
    assert_eq!(first.events[0].kv.value.as_ptr(), newest.value.as_ptr());
    let (_, second) = apply_ok(&mut mvcc, put("a", "2"));
    let previous = second.events[0].prev_kv.as_ref().unwrap();
    assert_eq!(previous.value.as_ptr(), newest.value.as_ptr());
    // Persisted and overwritten, it is no longer the keyspace's to hold: a read of the past
    // gets it back from the disk.
    assert_eq!(mvcc.forgotten_values(), 1);
    let reads = mvcc.disk.reads.get();
    let past = get(&mvcc, "a", 1).unwrap().unwrap();
    assert_eq!((past.value, past.mod_revision), (Bytes::from("1"), 1));
    assert_eq!(mvcc.disk.reads.get(), reads + 1);
}

#[test]
fn values_are_forgotten_only_once_the_shell_says_they_are_persisted() {
    let mut mvcc = Mvcc::new();
    let apply = |mvcc: &mut Mvcc, command: Command| mvcc.apply(&command, &NoHistory).0.unwrap();
    for value in ["1", "2", "3"] {
        apply(&mut mvcc, put("a", value));
    }
    apply(&mut mvcc, put("b", "1"));
    apply(&mut mvcc, delete(KeyRange::single("b")));
    let at = |revision| RangeRequest {
        range: KeyRange::single("a"),
        revision,
        ..Default::default()
    };
    assert_eq!(mvcc.forgotten_values(), 0);
    assert_eq!(mvcc.range(&at(1), &NoHistory).unwrap().kvs[0].value, "1");

    mvcc.forget_overwritten_values();
    // a@1, a@2 and b@4; the newest a and b's tombstone have nothing to forget.
    assert_eq!(mvcc.forgotten_values(), 3);
    assert!(matches!(
        mvcc.range(&at(1), &NoHistory),
        Err(KvError::HistoryUnreadable {
            revision: 1,
            sub: 0,
            ..
        })
    ));
    // The newest versions need no history: reads now, compares and writes.
    assert_eq!(mvcc.range(&at(0), &NoHistory).unwrap().kvs[0].value, "3");
    let compare_and_put = Command::Txn(TxnRequest {
        compare: vec![Compare {
            range: KeyRange::single("a"),
            target: CompareTarget::Value(b"3".to_vec()),
            result: CompareResult::Equal,
        }],
        success: vec![RequestOp::Put(PutRequest {
            key: b"a".to_vec(),
            value: Bytes::from("4"),
            prev_kv: true,
            ..Default::default()
        })],
        failure: Vec::new(),
    });
    let CommandResult::Txn(txn) = apply(&mut mvcc, compare_and_put) else {
        panic!("a transaction answers a transaction");
    };
    let ResponseOp::Put(put) = &txn.responses[0] else {
        panic!("the put's answer");
    };
    assert!(txn.succeeded);
    assert_eq!(put.prev_kv.as_ref().unwrap().value, "3");
}

#[test]
fn a_read_of_the_past_reads_back_only_the_values_it_answers_with() {
    let mut mvcc = Replica::default();
    for value in ["1", "2"] {
        for key in ["a", "b", "c", "d"] {
            apply_ok(&mut mvcc, put(key, value));
        }
    }
    let read = |change: &dyn Fn(&mut RangeRequest)| {
        let mut req = RangeRequest {
            range: KeyRange::prefix(""),
            revision: 4,
            ..Default::default()
        };
        change(&mut req);
        let before = mvcc.disk.reads.get();
        let response = mvcc.range(&req).unwrap();
        (response, mvcc.disk.reads.get() - before)
    };
    let (counted, reads) = read(&|req| req.count_only = true);
    assert_eq!((counted.count, counted.kvs.len(), reads), (4, 0, 0));
    let (keys, reads) = read(&|req| req.keys_only = true);
    assert_eq!(reads, 0);
    assert!(keys.kvs.iter().all(|kv| kv.value.is_empty()));
    assert_eq!(keys.kvs.len(), 4);
    let (limited, reads) = read(&|req| req.limit = 2);
    assert_eq!((limited.kvs.len(), limited.more, reads), (2, true, 2));
    assert!(limited.kvs.iter().all(|kv| kv.value == "1"));
    // Sorting by value needs every value first.
    let (by_value, reads) = read(&|req| {
        req.limit = 2;
        req.sort_target = SortTarget::Value;
        req.sort_order = SortOrder::Descend;
    });
    assert_eq!((by_value.kvs.len(), reads), (2, 4));
    // Keys only, still sorted by value; a count answers no kvs, so nothing more.
    let (keys_by_value, _) = read(&|req| {
        req.limit = 2;
        req.keys_only = true;
        req.sort_target = SortTarget::Value;
    });
    assert!(keys_by_value.kvs.iter().all(|kv| kv.value.is_empty()));
    let (counted, _) = read(&|req| {
        req.limit = 2;
        req.count_only = true;
    });
    assert_eq!(
        (counted.count, counted.kvs.len(), counted.more),
        (4, 0, false)
    );
}

#[test]
fn a_transaction_that_cannot_read_its_past_fails_before_it_writes() {
    let mut mvcc = Replica::default();
    apply_ok(&mut mvcc, put("a", "1"));
    apply_ok(&mut mvcc, put("a", "2"));
    let txn = Command::Txn(TxnRequest {
        compare: Vec::new(),
        success: vec![
            RequestOp::Put(PutRequest {
                key: b"b".to_vec(),
                value: Bytes::from("x"),
                ..Default::default()
            }),
            RequestOp::Range(RangeRequest {
                range: KeyRange::single("a"),
                revision: 1,
                ..Default::default()
            }),
            RequestOp::Range(RangeRequest {
                range: KeyRange::single("b"),
                ..Default::default()
            }),
        ],
        failure: Vec::new(),
    });
    let (result, effects) = mvcc.mvcc.apply(&txn, &NoHistory);
    assert!(matches!(
        result,
        Err(KvError::HistoryUnreadable { revision: 1, .. })
    ));
    assert_eq!(effects, Effects::default());
    assert_eq!(mvcc.revision(), 2);
    assert_eq!(get(&mvcc, "b", 0), Ok(None));

    // With its history it reads the past, and its own write, in order.
    let (CommandResult::Txn(answer), _) = apply_ok(&mut mvcc, txn) else {
        panic!("a transaction answers a transaction");
    };
    let values: Vec<_> = answer.responses[1..]
        .iter()
        .map(|op| match op {
            ResponseOp::Range(range) => range.kvs[0].value.clone(),
            other => panic!("a range's answer, not {other:?}"),
        })
        .collect();
    assert_eq!(values, ["1", "x"]);
}

#[test]
fn a_restored_keyspace_holds_its_values_until_told_they_are_persisted() {
    let mut one = Replica::default();
    for value in ["1", "2", "3"] {
        apply_ok(&mut one, put("a", value));
    }
    let mut restored = Mvcc::restore(one.image());
    assert_eq!(restored.forgotten_values(), 0);
    restored.forget_overwritten_values();
    assert_eq!(restored.forgotten_values(), 2);
    assert_eq!(restored.freeze().hash(0, &one.disk), one.hash(0));
}

#[test]
fn a_frozen_keyspace_streams_the_bytes_of_its_image_reading_back_what_it_forgot() {
    let mut mvcc = Replica::default();
    apply_ok(&mut mvcc, Command::LeaseGrant { id: 3, ttl: 5 });
    apply_ok(&mut mvcc, put_leased("a", 3));
    for value in ["1", "2", "3"] {
        apply_ok(&mut mvcc, put("b", value));
    }
    apply_ok(&mut mvcc, delete(KeyRange::single("a")));
    let frozen = mvcc.freeze();
    // Written after it was frozen: not in what it streams.
    apply_ok(&mut mvcc, put("c", "later"));
    let before = mvcc.disk.reads.get();
    let streamed = crate::codec::encode(&frozen.streamed(&mvcc.disk)).unwrap();
    assert_eq!(
        mvcc.disk.reads.get() - before,
        3,
        "the values of a@1, b@2 and b@3"
    );
    let mut expected = mvcc.image();
    expected.revision -= 1;
    expected.versions.pop();
    assert_eq!(streamed, crate::codec::encode(&expected).unwrap());
    // A value the history cannot give back fails the encoding, naming it.
    let failed = crate::codec::encode(&frozen.streamed(&NoHistory)).unwrap_err();
    assert!(failed.to_string().contains("revision 1 "), "{failed}");
}
