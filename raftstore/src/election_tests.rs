use super::*;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn log(term: u64, index: u64) -> Option<LogId> {
    Some(LogId::new(openraft::CommittedLeaderId::new(term, 1), index))
}

fn ids(ids: &[NodeId]) -> BTreeSet<NodeId> {
    ids.iter().copied().collect()
}

#[test]
fn the_next_try_waits_the_lease_after_a_leader_and_only_the_draw_after_a_try() {
    let timer = ElectionTimer::new(ms(150));
    assert_eq!(timer.spread, ms(30)..ms(150));
    let heard = Instant::now();
    let drawn = ms(40);
    let next =
        |knew_leader, last_try, alone| timer.next_try(heard, knew_leader, last_try, alone, drawn);
    // A leader heard: its voters refuse until the lease ends, then the draw.
    assert_eq!(next(true, None, false), heard + ms(190));
    assert_eq!(next(true, Some(heard - ms(500)), false), heard + ms(190));
    // Its own candidacy (an uncommitted vote), or none: the draw.
    assert_eq!(next(false, None, false), heard + ms(40));
    // A pre-vote lost after the lease: the draw again, not the lease again.
    let tried = heard + ms(200);
    assert_eq!(next(true, Some(tried), false), tried + ms(40));
    // Alone: at once after a word; after its own try, not before the draw.
    assert_eq!(next(true, None, true), heard);
    assert_eq!(next(false, Some(heard - ms(1)), true), heard + ms(39));
    assert_eq!(next(false, Some(heard - ms(100)), true), heard);
}

#[test]
fn draws_stay_in_the_spread_and_differ() {
    let timer = ElectionTimer::new(ms(150));
    let drawn: BTreeSet<Duration> = (0..200).map(|_| timer.draw()).collect();
    assert!(drawn.iter().all(|wait| timer.spread.contains(wait)));
    // Two members that drew alike once draw apart next time (openraft 0.9 drew once).
    assert!(drawn.len() > 50, "{} distinct draws of 200", drawn.len());
    assert_eq!(ElectionTimer::new(Duration::ZERO).draw(), Duration::ZERO);
}

#[test]
fn a_pre_vote_is_refused_by_a_leader_a_voter_that_heard_one_and_a_longer_log() {
    let lease = ms(150);
    let now = Instant::now();
    let request = PreVoteRequest {
        candidate: 2,
        last_log_id: log(3, 10),
    };
    let voter = |leading, heard_ago: Option<u64>, last_log_id| VoterState {
        leading,
        heard_at: heard_ago.map(|ago| now - ms(ago)),
        last_log_id,
    };
    let cases = [
        (voter(true, Some(1_000), log(3, 10)), PreVoteAnswer::Leading),
        (
            voter(false, Some(149), log(3, 10)),
            PreVoteAnswer::HeardLeader,
        ),
        (voter(false, Some(150), log(3, 10)), PreVoteAnswer::Granted),
        (voter(false, None, log(3, 10)), PreVoteAnswer::Granted),
        (voter(false, None, log(3, 9)), PreVoteAnswer::Granted),
        (voter(false, None, log(3, 11)), PreVoteAnswer::LogBehind),
        // A later term's shorter log is still the longer one.
        (voter(false, None, log(4, 2)), PreVoteAnswer::LogBehind),
        (voter(false, None, None), PreVoteAnswer::Granted),
    ];
    for (voter, expected) in cases {
        assert_eq!(
            answer_pre_vote(&voter, &request, lease, now),
            expected,
            "{voter:?}"
        );
    }
}

#[test]
fn a_quorum_is_a_majority_of_every_configuration() {
    let three = [ids(&[1, 2, 3])];
    assert!(!is_quorum(&three, &ids(&[1])));
    assert!(is_quorum(&three, &ids(&[1, 3])));
    // Votes from outside the configuration do not count.
    assert!(!is_quorum(&three, &ids(&[1, 7, 8])));
    let four = [ids(&[1, 2, 3, 4])];
    assert!(!is_quorum(&four, &ids(&[1, 2])));
    assert!(is_quorum(&four, &ids(&[1, 2, 3])));
    // Joint: a majority of the old and of the new.
    let joint = [ids(&[1, 2, 3]), ids(&[3, 4, 5])];
    assert!(!is_quorum(&joint, &ids(&[1, 2, 3])));
    assert!(is_quorum(&joint, &ids(&[1, 3, 4])));
    assert!(!is_quorum(&[], &ids(&[1])));
    assert!(is_quorum(&[ids(&[1])], &ids(&[1])));
}

#[test]
fn the_handover_goes_to_the_follower_furthest_along_and_never_to_a_learner() {
    let voters = ids(&[1, 2, 3]);
    let matched = BTreeMap::from([(2, log(5, 40)), (3, log(5, 41)), (9, log(5, 99))]);
    assert_eq!(handover_target(1, &voters, &matched), Some(3));
    let even = BTreeMap::from([(2, log(5, 41)), (3, log(5, 41))]);
    assert_eq!(handover_target(1, &voters, &even), Some(2));
    // A follower not heard of yet still counts, behind every other.
    let unheard = BTreeMap::from([(3, None)]);
    assert_eq!(handover_target(1, &voters, &unheard), Some(2));
    assert_eq!(handover_target(1, &ids(&[1]), &matched), None);
}
