//! A validator that crashes in the middle of a height replays its WAL into a fresh Malachite
//! state: it keeps the block it proposed, does not build another one, and re-sends exactly the
//! votes it had signed. Without the WAL the same restart would ask for a new block, which the
//! sign-state guard must then refuse.

// A test crate: its helpers may panic on setup failures too.
#![allow(clippy::unwrap_used)]

use malachite_core_consensus::SignedConsensusMsg;
use malachite_core_types::{NilOrVal, Round, VoteType};
use tradeloop_ledger::sample::{trade_events, Cast};
use tradeloop_ledger::Ledger;
use tradeloop_node::consensus::context::{BlockHash, TradeContext, Validators};
use tradeloop_node::consensus::core::{propose, Action, ConsensusCore};
use tradeloop_node::consensus::guard::SignGuard;
use tradeloop_node::consensus::walrecord::WalRecord;

const T0: u64 = 1_780_000_000_000;

pub(crate) struct Setup {
    pub(crate) cast: Cast,
    pub(crate) dir: tempfile::TempDir,
    /// Index of the validator that proposes at height 1, round 0.
    pub(crate) proposer: usize,
}

pub(crate) fn core(s: &Setup, wal: bool) -> (ConsensusCore, Vec<WalRecord>) {
    let key = s.cast.validator_keys[s.proposer].clone();
    let guard = SignGuard::open(
        &s.dir.path().join("sign-state.bin"),
        s.cast.genesis.hash,
        key.public_key(),
    )
    .unwrap();
    let core = ConsensusCore::new(
        TradeContext::new(s.cast.genesis.hash),
        key,
        guard,
        Validators::from_ledger(&s.cast.genesis.validators),
        &s.cast.genesis.doc.consensus,
        1,
    );
    if wal {
        core.with_wal(&s.dir.path().join("wal")).unwrap()
    } else {
        (core, Vec::new())
    }
}

pub(crate) fn setup() -> Setup {
    let cast = Cast::deterministic(4, T0 - 1000).unwrap();
    // Find the proposer of (1, 0): the validator whose core asks for a block.
    for proposer in 0..4 {
        let s = Setup {
            cast: Cast::deterministic(4, T0 - 1000).unwrap(),
            dir: tempfile::tempdir().unwrap(),
            proposer,
        };
        let (mut c, _) = core(&s, false);
        let actions = c.handle(c.start_height(1)).unwrap();
        if build_round(&actions).is_some() {
            return Setup { cast, dir: tempfile::tempdir().unwrap(), proposer };
        }
    }
    panic!("no validator proposes at height 1 round 0");
}

/// The round of the first block the core asks for, if it asks.
pub(crate) fn build_round(actions: &[Action]) -> Option<Round> {
    actions.iter().find_map(|a| match a {
        Action::BuildBlock { round, .. } => Some(*round),
        _ => None,
    })
}

fn prevotes(actions: &[Action]) -> Vec<NilOrVal<BlockHash>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Broadcast(m) => match m.as_ref() {
                SignedConsensusMsg::Vote(v) if v.message.vote_type == VoteType::Prevote => {
                    Some(v.message.value)
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn a_restarted_proposer_replays_its_wal_and_keeps_its_block_and_vote() {
    let s = setup();
    let key = s.cast.validator_keys[s.proposer].clone();
    let ledger = Ledger::open(&s.dir.path().join("data"), s.cast.genesis.clone()).unwrap();
    let events = trade_events(&s.cast, 1, T0);
    let built = ledger.build_block(&events[..3], T0 + 1000, &key).unwrap();
    let round = {
        let (mut c, records) = core(&s, true);
        assert!(records.is_empty());
        let actions = c.handle(c.start_height(1)).unwrap();
        let round = build_round(&actions).unwrap();
        c.persist_block(&built.block).unwrap();
        let actions = c.handle(propose(1, round, built.hash)).unwrap();
        // It proposed and prevoted for its block; the other three are silent, so no decision.
        assert_eq!(prevotes(&actions), vec![NilOrVal::Val(BlockHash(built.hash))]);
        round
    }; // crash

    let (mut c, records) = core(&s, true);
    assert!(records.iter().any(|r| matches!(r, WalRecord::Block(_))));
    assert!(records.len() >= 3, "block, proposed value, proposal/vote: {records:?}");
    let (actions, blocks) = c.recover(1, records).unwrap();
    assert_eq!(blocks.iter().map(|b| b.header.hash()).collect::<Vec<_>>(), vec![built.hash]);
    assert!(
        !actions.iter().any(|a| matches!(a, Action::BuildBlock { round: r, .. } if *r == round)),
        "asked to build a second block for a round it already proposed in: {actions:?}"
    );
    // Its prevote is re-sent unchanged (the guard permits the identical vote); never nil.
    let resent = prevotes(&actions);
    assert!(resent.iter().all(|v| *v == NilOrVal::Val(BlockHash(built.hash))), "{resent:?}");
    assert!(!resent.is_empty(), "the replayed state did not reach its prevote: {actions:?}");
}

/// The control: the same crash with the WAL discarded. The fresh state asks for a block again,
/// and proposing a different one is refused by the guard.
#[test]
fn without_the_wal_the_restart_asks_for_a_new_block_and_the_guard_refuses_it() {
    let s = setup();
    let key = s.cast.validator_keys[s.proposer].clone();
    let ledger = Ledger::open(&s.dir.path().join("data"), s.cast.genesis.clone()).unwrap();
    let events = trade_events(&s.cast, 1, T0);
    let first = ledger.build_block(&events[..3], T0 + 1000, &key).unwrap();
    let second = ledger.build_block(&events[..2], T0 + 1000, &key).unwrap();
    {
        let (mut c, _) = core(&s, false);
        let actions = c.handle(c.start_height(1)).unwrap();
        let round = build_round(&actions).unwrap();
        c.handle(propose(1, round, first.hash)).unwrap();
    }
    let (mut c, _) = core(&s, false);
    let actions = c.handle(c.start_height(1)).unwrap();
    let round = build_round(&actions).expect("a fresh state asks for a block again");
    assert!(c.handle(propose(1, round, second.hash)).is_err());
}
