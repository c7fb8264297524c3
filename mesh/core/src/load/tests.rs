use proptest::prelude::*;

use super::*;

fn orch(n: u32) -> OrchestratorId {
    OrchestratorId::parse(&format!("orch-{n}.example:8935")).unwrap()
}

fn node(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

fn totals(board: &LoadBoard) -> Vec<(OrchestratorId, u32)> {
    let mut t: Vec<_> = board.totals().map(|(o, n)| (o.clone(), n)).collect();
    t.sort();
    t
}

#[test]
fn changes_reach_the_board_as_absolute_counts() {
    let mut ledger = LoadLedger::new(7);
    let mut board = LoadBoard::default();
    let peer = node("fra-1");
    ledger.set(&orch(1), 2);
    ledger.set(&orch(2), 1);
    // The first announcement of a busy ledger is the whole table.
    let first = ledger.announcement(5_000).unwrap();
    assert!(first.complete);
    board.apply(&peer, &first, 5_000).unwrap();
    assert_eq!(board.in_flight(&orch(1)), 2);
    assert_eq!(board.in_flight(&orch(2)), 1);
    assert!(ledger.announcement(5_001).is_none(), "nothing changed");

    ledger.set(&orch(1), 1);
    ledger.set(&orch(2), 0);
    let delta = ledger.announcement(5_002).unwrap();
    assert!(!delta.complete);
    assert_eq!(delta.counts, vec![(orch(1), 1), (orch(2), 0)]);
    board.apply(&peer, &delta, 5_002).unwrap();
    assert_eq!(totals(&board), vec![(orch(1), 1)]);
}

#[test]
fn setting_the_same_count_announces_nothing() {
    let mut ledger = LoadLedger::new(1);
    ledger.set(&orch(1), 1);
    let _ = ledger.announcement(10_000);
    ledger.set(&orch(1), 1);
    assert!(!ledger.has_changes());
    assert!(ledger.announcement(10_001).is_none());
}

#[test]
fn totals_sum_over_peers() {
    let mut board = LoadBoard::default();
    for (i, name) in ["fra-1", "fra-2", "lax-1"].iter().enumerate() {
        let a = LoadAnnouncement {
            generation: 1,
            seq: 1,
            complete: true,
            counts: vec![(orch(1), i as u32 + 1)],
        };
        board.apply(&node(name), &a, 0).unwrap();
    }
    assert_eq!(board.in_flight(&orch(1)), 6);
    assert_eq!(board.peer_in_flight(&node("fra-2"), &orch(1)), 2);
    // Added to this node's own counts, as routing sees them.
    let mut in_flight = HashMap::from([(orch(1), 1), (orch(2), 2)]);
    board.add_to(&mut in_flight);
    assert_eq!(in_flight, HashMap::from([(orch(1), 7), (orch(2), 2)]));
    board.forget(&node("fra-2"));
    assert_eq!(board.in_flight(&orch(1)), 4);
    board.retain_peers(|n| n.as_str() == "lax-1");
    assert_eq!(board.in_flight(&orch(1)), 3);
    assert_eq!(board.peers(), 1);
}

#[test]
fn a_lost_change_is_repaired_by_the_next_complete_table() {
    let mut ledger = LoadLedger::new(1);
    let mut board = LoadBoard::default();
    let peer = node("fra-1");
    ledger.set(&orch(1), 3);
    board
        .apply(&peer, &ledger.announcement(1_000).unwrap(), 1_000)
        .unwrap();
    ledger.set(&orch(1), 0);
    ledger.set(&orch(2), 1);
    let _lost = ledger.announcement(1_100).unwrap();
    assert_eq!(
        board.in_flight(&orch(1)),
        3,
        "the board is wrong until the refresh"
    );
    assert!(ledger.announcement(1_999).is_none());
    let refresh = ledger.announcement(2_000).unwrap();
    assert!(refresh.complete);
    board.apply(&peer, &refresh, 2_000).unwrap();
    assert_eq!(totals(&board), vec![(orch(2), 1)]);
}

#[test]
fn an_idle_ledger_sends_one_last_table_then_stays_quiet() {
    let mut ledger = LoadLedger::new(1);
    ledger.set(&orch(1), 1);
    assert!(ledger.announcement(1_000).unwrap().complete);
    ledger.set(&orch(1), 0);
    assert!(!ledger.announcement(1_010).unwrap().complete);
    let last = ledger.announcement(2_000).unwrap();
    assert!(last.complete && last.counts.is_empty());
    assert!(ledger.announcement(3_000).is_none());
    assert!(ledger.announcement(60_000).is_none());
}

#[test]
fn reordered_announcements_do_not_undo_newer_counts() {
    let mut board = LoadBoard::default();
    let peer = node("fra-1");
    let older = LoadAnnouncement {
        generation: 1,
        seq: 4,
        complete: false,
        counts: vec![(orch(1), 5)],
    };
    let newer = LoadAnnouncement {
        generation: 1,
        seq: 5,
        complete: false,
        counts: vec![(orch(1), 0), (orch(2), 2)],
    };
    board.apply(&peer, &newer, 10).unwrap();
    board.apply(&peer, &older, 11).unwrap();
    assert_eq!(totals(&board), vec![(orch(2), 2)]);
    // An older complete table does not remove a newer count either.
    let old_table = LoadAnnouncement {
        generation: 1,
        seq: 3,
        complete: true,
        counts: vec![],
    };
    board.apply(&peer, &old_table, 12).unwrap();
    assert_eq!(totals(&board), vec![(orch(2), 2)]);
}

#[test]
fn a_new_generation_replaces_the_old_table_and_old_ones_are_ignored() {
    let mut board = LoadBoard::default();
    let peer = node("fra-1");
    let before = LoadAnnouncement {
        generation: 1,
        seq: 90,
        complete: true,
        counts: vec![(orch(1), 4)],
    };
    board.apply(&peer, &before, 0).unwrap();
    let restarted = LoadAnnouncement {
        generation: 2,
        seq: 1,
        complete: false,
        counts: vec![(orch(2), 1)],
    };
    board.apply(&peer, &restarted, 1).unwrap();
    assert_eq!(totals(&board), vec![(orch(2), 1)]);
    assert_eq!(board.apply(&peer, &before, 2), Ok(LoadApplied::Stale));
    assert_eq!(totals(&board), vec![(orch(2), 1)]);
}

#[test]
fn a_silent_busy_peer_is_forgotten_an_idle_one_is_kept() {
    let mut board = LoadBoard::new(3_000);
    let busy = LoadAnnouncement {
        generation: 1,
        seq: 1,
        complete: true,
        counts: vec![(orch(1), 2)],
    };
    let idle = LoadAnnouncement {
        generation: 1,
        seq: 1,
        complete: true,
        counts: vec![],
    };
    board.apply(&node("fra-1"), &busy, 1_000).unwrap();
    board.apply(&node("fra-2"), &idle, 1_000).unwrap();
    assert_eq!(board.expire(4_000), 0, "3 s of silence is allowed");
    assert_eq!(board.expire(4_001), 1);
    assert_eq!(board.in_flight(&orch(1)), 0);
    assert_eq!(board.peers(), 1, "the idle peer owes no refresh");
}

#[test]
fn bounds_are_enforced() {
    let mut board = LoadBoard::default();
    let huge = LoadAnnouncement {
        generation: 1,
        seq: 1,
        complete: true,
        counts: (0..=MAX_LOAD_ENTRIES as u32)
            .map(|i| (orch(i), 1))
            .collect(),
    };
    assert_eq!(
        board.apply(&node("fra-1"), &huge, 0),
        Err(LoadError::TooManyEntries(MAX_LOAD_ENTRIES + 1))
    );
    assert!(matches!(huge.encode(), Err(LoadError::TooManyEntries(_))));
    let small = LoadAnnouncement {
        generation: 1,
        seq: 1,
        complete: true,
        counts: vec![(orch(1), 1)],
    };
    for i in 0..MAX_LOAD_PEERS {
        board.apply(&node(&format!("n-{i}")), &small, 0).unwrap();
    }
    assert_eq!(
        board.apply(&node("one-too-many"), &small, 0),
        Err(LoadError::TooManyPeers)
    );
    assert_eq!(board.in_flight(&orch(1)), MAX_LOAD_PEERS as u32);
}

#[test]
fn encoding_round_trips_and_bad_bytes_are_errors() {
    let a = LoadAnnouncement {
        generation: 3,
        seq: 9,
        complete: false,
        counts: vec![(orch(1), 2), (orch(2), 0)],
    };
    let bytes = a.encode().unwrap();
    assert_eq!(LoadAnnouncement::decode(&bytes), Ok(a));
    assert_eq!(LoadAnnouncement::decode(&[]), Err(LoadError::Empty));
    assert_eq!(
        LoadAnnouncement::decode(&[9, 0]),
        Err(LoadError::UnknownVersion(9))
    );
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        LoadAnnouncement::decode(&trailing),
        Err(LoadError::TrailingBytes(1))
    );
    // An orchestrator id that does not parse is refused by the decoder.
    let bad = postcard::to_extend(
        &(3u64, 9u64, false, vec![("not a uri".to_owned(), 1u32)]),
        vec![LOAD_FORMAT_VERSION],
    )
    .unwrap();
    assert!(matches!(
        LoadAnnouncement::decode(&bad),
        Err(LoadError::Codec(_))
    ));
}

proptest! {
    #[test]
    fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut with_version = vec![LOAD_FORMAT_VERSION];
        with_version.extend_from_slice(&bytes);
        for input in [&bytes, &with_version] {
            if let Ok(a) = LoadAnnouncement::decode(input) {
                let mut board = LoadBoard::default();
                let _ = board.apply(&node("peer"), &a, 0);
            }
        }
    }

    /// Whatever is lost or reordered, the board agrees with the ledger once
    /// a complete table arrives after the last change.
    #[test]
    fn the_board_converges_after_loss_and_reordering(
        ops in proptest::collection::vec((0u32..6, 0u32..4, any::<bool>(), any::<bool>()), 1..60),
    ) {
        let mut ledger = LoadLedger::new(1);
        let mut board = LoadBoard::default();
        let peer = node("fra-1");
        let mut held: Vec<LoadAnnouncement> = Vec::new();
        let mut now = 10_000u64;
        for (o, n, lose, hold) in ops {
            ledger.set(&orch(o), n);
            now += 10;
            if let Some(a) = ledger.announcement(now) {
                if hold {
                    held.push(a);
                } else if !lose {
                    board.apply(&peer, &a, now).unwrap();
                }
            }
        }
        // Late (reordered) announcements arrive, then a refresh.
        for a in held.iter().rev() {
            board.apply(&peer, a, now).unwrap();
        }
        now += ledger.refresh_interval_ms();
        if let Some(refresh) = ledger.announcement(now) {
            prop_assert!(refresh.complete);
            board.apply(&peer, &refresh, now).unwrap();
        }
        for o in 0..6 {
            prop_assert_eq!(board.in_flight(&orch(o)), ledger.get(&orch(o)));
        }
    }
}
