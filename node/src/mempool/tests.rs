#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::strategy::Strategy;
use serde_json::json;
use tradeloop_ledger::sample::{ids, trade_events, Cast};
use tradeloop_ledger::{check_event, Ledger, RejectCode};

use super::*;

const T: u64 = 1_700_000_100_000;

struct Fixture {
    cast: Cast,
    ledger: Ledger,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let cast = Cast::deterministic(1, T - 10_000).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("data"), cast.genesis.clone()).unwrap();
    Fixture { cast, ledger, _dir: dir }
}

/// A small order `order_id` placed by the importer, with its own nonce.
fn small_order(cast: &Cast, order_id: &str, nonce: &str) -> SignedEvent {
    cast.sign(
        ids::IMPORTER,
        "trade.order_placed",
        json!({
            "order_id": order_id, "seller": ids::EXPORTER, "incoterm": "FOB", "currency": "USD",
            "amount": "1.00", "lines": [{"sku": "X", "description": "x", "hs_code": "940542",
            "quantity": "1", "unit": "PCE"}]
        }),
        T,
        nonce,
    )
}

/// A commit whose writes are not known: the full recheck.
const NO_WRITES: Option<WrittenKeys> = None;

fn limits() -> MempoolLimits {
    MempoolLimits { max_events: 1000, max_bytes: 10 * 1024 * 1024 }
}

fn admit(pool: &mut Mempool, f: &Fixture, e: &SignedEvent) -> Admission {
    let checked = check_event(&f.cast.genesis, e);
    pool.admit(&f.cast.genesis, &f.ledger, T, e.clone(), checked).unwrap()
}

#[test]
fn a_whole_trade_is_admitted_in_order_because_each_event_sees_the_pending_ones() {
    let f = fixture();
    let mut pool = Mempool::new(limits());
    let events = trade_events(&f.cast, 1, T);
    for e in &events {
        assert_eq!(admit(&mut pool, &f, e), Admission::Accepted);
    }
    assert_eq!(pool.len(), events.len());
    // The same envelope again: a lookup, not a second admission.
    assert_eq!(admit(&mut pool, &f, &events[0]), Admission::AlreadyPending);
    assert!(pool.contains(&events[3].id()));
    assert!(pool.checked(&events[3]).is_some(), "the verdict is kept for reuse");
    // A second order with the same id, pending-after the first: refused by the rules.
    let again = small_order(&f.cast, "PO-1", "other-nonce");
    let Admission::Rejected(r) = admit(&mut pool, &f, &again) else { panic!("accepted twice") };
    assert_eq!(r.code, RejectCode::DuplicateOrder);
    // An event out of order (the next trade's acceptance before its order): refused.
    let second = trade_events(&f.cast, 2, T);
    let Admission::Rejected(r) = admit(&mut pool, &f, &second[1]) else { panic!("accepted") };
    assert_eq!(r.code, RejectCode::UnknownOrder);
    // A damaged signature fails the stateless check.
    let mut bad = second[0].clone();
    bad.signature.0[5] ^= 1;
    let Admission::Rejected(r) = admit(&mut pool, &f, &bad) else { panic!("accepted") };
    assert_eq!(r.code, RejectCode::BadSignature);
    assert_eq!(pool.len(), events.len(), "refusals change nothing");
}

#[test]
fn a_full_pool_refuses_without_dropping_what_it_holds() {
    let f = fixture();
    let events = trade_events(&f.cast, 1, T);
    let mut by_count = Mempool::new(MempoolLimits { max_events: 3, ..limits() });
    for e in &events[..3] {
        assert_eq!(admit(&mut by_count, &f, e), Admission::Accepted);
    }
    assert_eq!(admit(&mut by_count, &f, &events[3]), Admission::Full);
    assert_eq!(relay(&mut by_count, &f, &events[3]), Admission::Full, "relayed: the same bounds");
    assert_eq!(by_count.len(), 3);
    let one = tradeloop_ledger::encoding::codec::encoded_len(&events[0]).unwrap();
    let mut by_bytes = Mempool::new(MempoolLimits { max_bytes: one, ..limits() });
    assert_eq!(admit(&mut by_bytes, &f, &events[0]), Admission::Accepted);
    assert_eq!(admit(&mut by_bytes, &f, &events[1]), Admission::Full);
    assert_eq!(by_bytes.bytes(), one);
    // Candidates respect the bounds they are given, in arrival order.
    let c = by_count.candidates(2, u64::MAX);
    let (signed, checked) = (c.signed, c.events);
    assert_eq!(signed, events[..2].to_vec());
    assert_eq!(
        checked.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![events[0].id(), events[1].id()]
    );
    assert!(by_count.candidates(10, one - 1).signed.is_empty());
}

#[test]
fn a_commit_removes_its_events_and_evicts_the_ones_it_made_invalid() {
    let mut f = fixture();
    let mut pool = Mempool::new(limits());
    let trade = trade_events(&f.cast, 1, T);
    for e in &trade[..4] {
        assert_eq!(admit(&mut pool, &f, e), Admission::Accepted);
    }
    // Another node's block commits the first two events of the trade and a different order
    // with the id PO-2, while this pool holds trade 2's own order PO-2.
    let other = trade_events(&f.cast, 2, T);
    assert_eq!(admit(&mut pool, &f, &other[0]), Admission::Accepted);
    let rival = small_order(&f.cast, "PO-2", "rival");
    let key = f.cast.validator_keys[0].clone();
    let block = vec![trade[0].clone(), trade[1].clone(), rival];
    let (blocks, rejected) = f.ledger.append_local(&block, T, &key).unwrap();
    assert!(rejected.is_empty(), "{rejected:?}");
    let committed: Vec<Hash> = blocks[0].block.events.iter().map(SignedEvent::id).collect();
    let evicted = pool.on_commit(&f.cast.genesis, &f.ledger, T, &committed, NO_WRITES).unwrap();
    assert_eq!(evicted.len(), 1, "{evicted:?}");
    assert_eq!(evicted[0].0, other[0].id());
    assert_eq!(evicted[0].1.code, RejectCode::DuplicateOrder);
    assert_eq!(pool.len(), 2, "trade 1's events 3 and 4 stay");
    assert!(!pool.contains(&trade[0].id()) && !pool.contains(&other[0].id()));
    // The pool's view is the new tip plus what stays: the trade's next event is admitted.
    assert_eq!(admit(&mut pool, &f, &trade[4]), Admission::Accepted);
    let total: u64 = [&trade[2], &trade[3], &trade[4]]
        .iter()
        .map(|e| tradeloop_ledger::encoding::codec::encoded_len(*e).unwrap())
        .sum();
    assert_eq!(pool.bytes(), total);
}

fn relay(pool: &mut Mempool, f: &Fixture, e: &SignedEvent) -> Admission {
    let checked = check_event(&f.cast.genesis, e);
    pool.relay(&f.cast.genesis, &f.ledger, T, e.clone(), checked).unwrap()
}

/// Commits `events` as the next block (another node's, as far as the pool knows) and runs
/// the pool's commit step at `now`.
fn commit(f: &mut Fixture, pool: &mut Mempool, events: &[SignedEvent], now: u64) -> Vec<Hash> {
    let key = f.cast.validator_keys[0].clone();
    let (blocks, rejected) = f.ledger.append_local(events, T, &key).unwrap();
    assert!(rejected.is_empty(), "{rejected:?}");
    let ids: Vec<Hash> = blocks[0].block.events.iter().map(SignedEvent::id).collect();
    let evicted = pool.on_commit(&f.cast.genesis, &f.ledger, now, &ids, NO_WRITES).unwrap();
    evicted.into_iter().map(|(id, _)| id).collect()
}

#[test]
fn a_relayed_event_gets_the_stateless_check_and_its_rules_run_on_the_block() {
    let mut f = fixture();
    let mut pool = Mempool::new(limits());
    let trade = trade_events(&f.cast, 1, T);
    // A peer relays the acceptance before the order it accepts: taken (the rules wait for
    // the block), where a client's submit of it is refused at once.
    assert_eq!(relay(&mut pool, &f, &trade[1]), Admission::Accepted);
    let mut client = Mempool::new(limits());
    let Admission::Rejected(r) = admit(&mut client, &f, &trade[1]) else { panic!("accepted") };
    assert_eq!(r.code, RejectCode::UnknownOrder);
    // The stateless check still runs: a damaged signature is refused, and so is a time
    // outside the skew window, with the rules' own code.
    let mut bad = trade[2].clone();
    bad.signature.0[5] ^= 1;
    let Admission::Rejected(r) = relay(&mut pool, &f, &bad) else { panic!("accepted") };
    assert_eq!(r.code, RejectCode::BadSignature);
    let skew = f.cast.genesis.doc.consensus.max_time_skew_ms;
    let stale = f.cast.sign(
        ids::IMPORTER,
        "trade.order_placed",
        json!({"order_id": "PO-9", "seller": ids::EXPORTER, "incoterm": "FOB",
               "currency": "USD", "amount": "1.00", "lines": [{"sku": "X", "description": "x",
               "hs_code": "940542", "quantity": "1", "unit": "PCE"}]}),
        T - skew - 1,
        "stale",
    );
    let Admission::Rejected(r) = relay(&mut pool, &f, &stale) else { panic!("accepted") };
    assert_eq!(r.code, RejectCode::TimeSkew);
    assert_eq!(relay(&mut pool, &f, &trade[1]), Admission::AlreadyPending);
    // The order comes after it; a client's event after both sees only the checked ones.
    assert_eq!(relay(&mut pool, &f, &trade[0]), Admission::Accepted);
    assert_eq!(pool.unchecked(), 2);
    let c = pool.candidates(10, u64::MAX);
    assert_eq!(c.footprints, vec![None, None], "no evaluation to reuse");
    // A proposer's build runs the rules in arrival order: the acceptance is refused (its
    // order is not yet there), the order is taken; the pool evicts the refused relayed event.
    let key = f.cast.validator_keys[0].clone();
    let (block, _prepared, refused) = f
        .ledger
        .prepare_block(&c.signed, c.events.into_iter().map(Ok).collect(), &c.footprints, T, &key)
        .unwrap();
    assert_eq!(block.events, vec![trade[0].clone()]);
    let refused: Vec<_> = refused.into_iter().map(|(i, r)| (c.signed[i].id(), r)).collect();
    assert_eq!(refused.len(), 1);
    let code = refused[0].1.clone();
    assert_eq!(pool.evict_refused(refused), 1);
    assert_eq!(pool.len(), 1);
    assert_eq!(pool.unchecked(), 1);
    assert_eq!(pool.bytes(), tradeloop_ledger::encoding::codec::encoded_len(&trade[0]).unwrap());
    // A checked event the build refused stays for the recheck after a commit to decide.
    let own = small_order(&f.cast, "PO-7", "own");
    assert_eq!(admit(&mut pool, &f, &own), Admission::Accepted);
    assert_eq!(pool.evict_refused(vec![(own.id(), code)]), 0);
    assert!(pool.contains(&own.id()));
    // The eviction is reported with the next commit's (whose block holds the order).
    let evicted = commit(&mut f, &mut pool, &trade[..1], T);
    assert_eq!(evicted, vec![trade[1].id()]);
    assert_eq!((pool.len(), pool.unchecked()), (1, 0));
}

#[test]
fn a_clients_event_sees_the_relayed_events_it_depends_on() {
    let mut f = fixture();
    let mut pool = Mempool::new(limits());
    let trade = trade_events(&f.cast, 1, T);
    // The importer placed the order at its own node a moment ago; it reached this node by
    // gossip, unchecked, after a rival order with the same id (refused by the rules once
    // they run), and an unrelated relayed order.
    let rival = small_order(&f.cast, "PO-1", "rival");
    let unrelated = small_order(&f.cast, "PO-8", "unrelated");
    assert_eq!(relay(&mut pool, &f, &rival), Admission::Accepted);
    assert_eq!(relay(&mut pool, &f, &unrelated), Admission::Accepted);
    assert_eq!(relay(&mut pool, &f, &trade[0]), Admission::Accepted);
    // A client of this node accepts it: refused against the checked events alone (no order
    // PO-1), so the pool checks its relayed events and evaluates it again.
    let verdict = admit(&mut pool, &f, &trade[1]);
    assert_eq!(pool.unchecked(), 0, "every relayed event is checked now");
    // The rival came first, so trade 1's own order is refused in its place...
    assert!(!pool.contains(&trade[0].id()));
    assert!(pool.contains(&rival.id()) && pool.contains(&unrelated.id()));
    // ...and the acceptance is evaluated over every pending event, as if each had been
    // admitted with the rules on arrival.
    let mut reference = Mempool::new(limits());
    for e in [&rival, &unrelated] {
        assert_eq!(admit(&mut reference, &f, e), Admission::Accepted);
    }
    let Admission::Rejected(r) = admit(&mut reference, &f, &trade[0]) else { panic!("taken") };
    assert_eq!(r.code, RejectCode::DuplicateOrder);
    assert_eq!(verdict, admit(&mut reference, &f, &trade[1]));
    // The relayed order the check refused is reported with the next commit.
    let evicted = commit(&mut f, &mut pool, std::slice::from_ref(&unrelated), T);
    assert_eq!(evicted, vec![trade[0].id()]);
    // Without a rival, the same client event is accepted over the relayed order.
    let mut clean = Mempool::new(limits());
    let trade2 = trade_events(&f.cast, 2, T);
    assert_eq!(relay(&mut clean, &f, &trade2[0]), Admission::Accepted);
    assert_eq!(admit(&mut clean, &f, &trade2[1]), Admission::Accepted);
    assert_eq!(clean.unchecked(), 0);
}

#[test]
fn an_unchecked_relayed_event_is_checked_after_it_has_waited_its_commits() {
    let mut f = fixture();
    let mut pool = Mempool::new(limits());
    let trade = trade_events(&f.cast, 1, T);
    let other = trade_events(&f.cast, 2, T);
    // A valid relayed event, and one the rules refuse (a second order PO-1) that this node,
    // never proposing, would otherwise hold for ever.
    assert_eq!(relay(&mut pool, &f, &trade[1]), Admission::Accepted);
    let rival = small_order(&f.cast, "PO-1", "rival");
    assert_eq!(relay(&mut pool, &f, &rival), Admission::Accepted);
    // The first commit holds trade 1's order: neither is checked yet.
    assert!(commit(&mut f, &mut pool, &trade[..1], T).is_empty());
    assert_eq!(pool.unchecked(), 2);
    // Commits of trade 2's events, one a block, up to the bound: at the last, both are run
    // through the rules.
    let waited = usize::try_from(RELAYED_CHECK_AFTER_COMMITS).unwrap();
    assert!(other.len() >= waited - 1, "trade 2 has {} events", other.len());
    for (i, e) in other[..waited - 1].iter().enumerate() {
        let evicted = commit(&mut f, &mut pool, std::slice::from_ref(e), T);
        if i + 2 == waited {
            assert_eq!(evicted, vec![rival.id()], "refused: PO-1 is committed");
        } else {
            assert!(evicted.is_empty(), "commit {}: {evicted:?}", i + 2);
            assert_eq!(pool.unchecked(), 2, "commit {}", i + 2);
        }
    }
    assert_eq!(pool.len(), 1);
    assert_eq!(pool.unchecked(), 0, "the acceptance is checked now, with its footprint");
    let (_, _, footprint) = pool.pending(&trade[1].id()).unwrap();
    assert!(footprint.is_some());
    // Its time leaving the window gets a relayed event checked at the next commit too.
    let mut late = Mempool::new(limits());
    assert_eq!(relay(&mut late, &f, &trade[2]), Admission::Accepted);
    let skew = f.cast.genesis.doc.consensus.max_time_skew_ms;
    let evicted = commit(&mut f, &mut late, &trade[1..2], T + skew + 1);
    assert_eq!(evicted, vec![trade[2].id()]);
}

/// The universe of the property test: three whole trades, and a rival of trade 2 (the same
/// entities with other nonces and amounts) whose events conflict with it.
fn universe(cast: &Cast) -> Vec<SignedEvent> {
    let mut events: Vec<SignedEvent> = (1..=3).flat_map(|n| trade_events(cast, n, T)).collect();
    for (i, (author, kind, fields)) in
        tradeloop_ledger::sample::trade_steps(2).into_iter().enumerate()
    {
        events.push(cast.sign(author, kind, fields, T, &format!("rival-{i}")));
    }
    events.push(small_order(cast, "PO-3", "rival-small"));
    events
}

/// One pool's observable state: every entry in order with its footprint, the pending writes
/// by key and version, and the bytes.
fn snapshot(pool: &Mempool) -> (Vec<(Hash, Option<Footprint>)>, Versions, u64) {
    let entries = pool.order.values().map(|e| (e.event.id, e.footprint.clone())).collect();
    (entries, pool.versions.clone(), pool.bytes)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(40))]

    /// After any commits, the footprint recheck leaves the pool exactly as re-running every
    /// pending event would: the same evictions with the same codes, the same entries with the
    /// same footprints, the same pending writes.
    #[test]
    fn the_footprint_recheck_equals_the_full_recheck(
        arrival in proptest::sample::subsequence((0..80usize).collect::<Vec<_>>(), 20..80)
            .prop_shuffle(),
        relayed in proptest::collection::vec(proptest::bool::weighted(0.3), 80),
        blocks in proptest::collection::vec(
            (proptest::sample::subsequence((0..80usize).collect::<Vec<_>>(), 0..40).prop_shuffle(),
             0..4usize, proptest::bool::weighted(0.15)),
            1..5),
    ) {

        let mut f = fixture();
        let all = universe(&f.cast);
        let checks: Vec<_> = all.iter().map(|e| check_event(&f.cast.genesis, e)).collect();
        let genesis = f.cast.genesis.clone();
        let skew = genesis.doc.consensus.max_time_skew_ms;
        let (mut footprints, mut full) = (Mempool::new(limits()), Mempool::new(limits()));
        let mut cursor = 0;
        let mut admit_next = |a: &mut Mempool, b: &mut Mempool, ledger: &Ledger, n: usize| {
            for &i in arrival.iter().skip(cursor).take(n) {
                if i >= all.len() { continue; }
                let (e, c) = (all[i].clone(), checks[i].clone());
                let (x, y) = if relayed[i] {
                    (a.relay(&genesis, ledger, T, e.clone(), c.clone()).unwrap(),
                     b.relay(&genesis, ledger, T, e, c).unwrap())
                } else {
                    (a.admit(&genesis, ledger, T, e.clone(), c.clone()).unwrap(),
                     b.admit(&genesis, ledger, T, e, c).unwrap())
                };
                assert_eq!(x, y);
            }
            cursor += n;
        };
        admit_next(&mut footprints, &mut full, &f.ledger, 40);
        let key = f.cast.validator_keys[0].clone();
        for (candidates, admit_after, late) in blocks {
            let candidates: Vec<usize> = candidates.into_iter().filter(|&i| i < all.len()).collect();
            let signed: Vec<SignedEvent> = candidates.iter().map(|&i| all[i].clone()).collect();
            let checked: Vec<_> = candidates.iter().map(|&i| checks[i].clone()).collect();
            // The pool's records, reused where their reads hold (the block's order is random,
            // so some hold and some do not): the same block and execution as without them,
            // for the proposer and for a validator.
            let memos_of = |events: &[SignedEvent]| -> Vec<Option<&Footprint>> {
                events.iter().map(|e| footprints.pending(&e.id()).and_then(|(_, _, fp)| fp)).collect()
            };
            let memos = memos_of(&signed);
            let (block, prepared, _) =
                f.ledger.prepare_block(&signed, checked.clone(), &memos, T, &key).unwrap();
            let (plain, plain_prepared, _) =
                f.ledger.prepare_block(&signed, checked, &[], T, &key).unwrap();
            proptest::prop_assert_eq!(&block, &plain);
            proptest::prop_assert_eq!(format!("{prepared:?}"), format!("{plain_prepared:?}"));
            let vchecks = block.events.iter().map(|e| check_event(&genesis, e)).collect();
            let validated = f.ledger.prepare_proposal(&block, vchecks, &memos_of(&block.events));
            proptest::prop_assert_eq!(format!("{:?}", validated.unwrap()), format!("{prepared:?}"));
            if block.events.is_empty() { continue; }
            let written = WrittenKeys::of(prepared.written_keys());
            let hash = block.header.hash();
            let certificate = tradeloop_ledger::CommitCertificate::sign(
                &genesis.hash, block.header.height, 0, hash, &[&key]);
            let certified = tradeloop_ledger::CertifiedBlock { block, certificate };
            f.ledger.commit_prepared(&certified, prepared).unwrap();
            let ids: Vec<Hash> = certified.block.events.iter().map(SignedEvent::id).collect();
            // Now and then the commit comes after the pending events' skew window.
            let now = if late { T + skew + 1 } else { T };
            let a = footprints
                .on_commit(&genesis, &f.ledger, now, &ids, Some(written))
                .unwrap();
            let b = full.on_commit(&genesis, &f.ledger, now, &ids, NO_WRITES).unwrap();
            let codes = |v: &[(Hash, Rejection)]| v.iter().map(|(id, r)| (*id, r.code)).collect::<Vec<_>>();
            proptest::prop_assert_eq!(codes(&a), codes(&b));
            proptest::prop_assert_eq!(snapshot(&footprints), snapshot(&full));
            // And both are what one executor gives applying the pool's checked events in
            // arrival order over the tip: the definition, independent of the versioned
            // pending writes. (An unchecked relayed event is not in anyone's view.)
            let mut executor = BlockExecutor::for_pool(&genesis, &f.ledger, now);
            for entry in footprints.order.values().filter(|e| e.footprint.is_some()) {
                let footprint = executor.apply_recorded(&entry.event);
                proptest::prop_assert_eq!(footprint.as_ref().ok(), entry.footprint.as_ref());
            }
            admit_next(&mut footprints, &mut full, &f.ledger, admit_after * 10);
        }
    }
}
