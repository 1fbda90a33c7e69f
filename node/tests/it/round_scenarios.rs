//! Named regression tests for the round logic, after the cases of Algorithm 1
//! (arXiv:1807.04938) that Malachite's Quint tests exercise: line 26 (locked: prevote nil for a
//! new value), line 28 (a proof of lock from a later round unlocks), line 32 (a proof of lock
//! older than the lock does not), line 42 (a polka seen after precommitting nil updates the valid
//! value, which the validator later re-proposes), a hidden lock, and a decision for a past round.
//!
//! One validator under test (`T`) runs its real `ConsensusCore`; the other three are scripted:
//! their proposals and votes are signed with their real keys and fed in a chosen order, and
//! timeouts fire when the script says. Four validators of equal power: a quorum is 3 votes.
//! Values are block hashes; the blocks themselves are reported valid (`received_block`).

// A test crate: its helpers may panic on setup failures too.
#![allow(clippy::unwrap_used)]

use malachite_core_consensus::SignedConsensusMsg;
use malachite_core_types::{NilOrVal, Round, SignedMessage, Timeout, TimeoutKind, VoteType};
use tradeloop_crypto::{Hash, SigningKey};
use tradeloop_ledger::sample::Cast;
use tradeloop_node::consensus::context::{
    Address, BlockHash, Height, Proposal, TradeContext, Validators, Vote,
};
use tradeloop_node::consensus::core::{from_peer, received_block, Action, ConsensusCore, Evidence};
use tradeloop_node::consensus::guard::SignGuard;

const BLUE: Hash = Hash([0xb1; 32]);
const RED: Hash = Hash([0xed; 32]);
const H: u64 = 1;

struct Script {
    ctx: TradeContext,
    /// Keys in validator-set order (index i is validator i).
    keys: Vec<SigningKey>,
    me: usize,
    core: ConsensusCore,
    /// Everything the core asked for, in order.
    log: Vec<Action>,
    _dir: tempfile::TempDir,
}

fn r(n: u32) -> Round {
    Round::new(n)
}

impl Script {
    /// `T` is validator `me`; the height is started.
    fn new(me: usize) -> Script {
        let cast = Cast::deterministic(4, 1_780_000_000_000).unwrap();
        let validators = Validators::from_ledger(&cast.genesis.validators);
        let keys: Vec<SigningKey> = validators
            .0
            .iter()
            .map(|v| {
                cast.validator_keys.iter().find(|k| k.public_key() == v.public_key).unwrap().clone()
            })
            .collect();
        let ctx = TradeContext::new(cast.genesis.hash);
        let dir = tempfile::tempdir().unwrap();
        let guard = SignGuard::open(
            &dir.path().join("sign-state.bin"),
            cast.genesis.hash,
            keys[me].public_key(),
        )
        .unwrap();
        let core = ConsensusCore::new(
            ctx.clone(),
            keys[me].clone(),
            guard,
            validators,
            &cast.genesis.doc.consensus,
            H,
        );
        let mut s = Script { ctx, keys, me, core, log: Vec::new(), _dir: dir };
        let start = s.core.start_height(H);
        s.feed(start);
        s
    }

    /// The proposer of `round` at height 1 (round-robin over height + round).
    fn proposer(round: u32) -> usize {
        ((H + u64::from(round)) % 4) as usize
    }

    fn feed(&mut self, input: malachite_core_consensus::Input<TradeContext>) {
        let actions = self.core.handle(input).unwrap();
        self.log.extend(actions);
    }

    /// The round's proposer proposes `value` (with proof-of-lock round `pol`, -1 for none) and
    /// `T` receives both the signed proposal and the (valid) block.
    fn proposal(&mut self, round: u32, value: Hash, pol: i64) {
        let p = Script::proposer(round);
        assert_ne!(p, self.me, "the script proposes for T");
        let proposal = Proposal {
            height: Height(H),
            round: r(round),
            value: BlockHash(value),
            pol_round: Round::from(pol),
            proposer: Address(self.keys[p].public_key()),
        };
        let signature = self.keys[p].sign(&self.ctx.proposal_bytes(&proposal));
        self.feed(from_peer(SignedConsensusMsg::Proposal(SignedMessage::new(proposal, signature))));
        let proposer = self.keys[p].public_key();
        self.feed(received_block(H, r(round), Round::from(pol), proposer, value, true));
    }

    /// Validator `who` votes.
    fn vote(&mut self, who: usize, vote_type: VoteType, round: u32, value: Option<Hash>) {
        assert_ne!(who, self.me, "the script votes for T");
        let vote = Vote {
            vote_type,
            height: Height(H),
            round: r(round),
            value: value.map_or(NilOrVal::Nil, |h| NilOrVal::Val(BlockHash(h))),
            validator: Address(self.keys[who].public_key()),
        };
        let signature = self.keys[who].sign(&self.ctx.vote_bytes(&vote));
        self.feed(from_peer(SignedConsensusMsg::Vote(SignedMessage::new(vote, signature))));
    }

    fn prevote(&mut self, who: usize, round: u32, value: Option<Hash>) {
        self.vote(who, VoteType::Prevote, round, value);
    }

    fn precommit(&mut self, who: usize, round: u32, value: Option<Hash>) {
        self.vote(who, VoteType::Precommit, round, value);
    }

    /// A timeout fires (it must have been scheduled).
    fn fire(&mut self, kind: TimeoutKind, round: u32) {
        let t = Timeout { kind, round: r(round) };
        assert!(
            self.log
                .iter()
                .any(|a| matches!(a, Action::ScheduleTimeout { timeout, .. } if *timeout == t)),
            "{kind:?} of round {round} was never scheduled"
        );
        self.feed(malachite_core_consensus::Input::TimeoutElapsed(t));
    }

    /// T's own votes of one type and round, in the order it broadcast them.
    fn my_votes(&self, vote_type: VoteType, round: u32) -> Vec<Option<Hash>> {
        let me = Address(self.keys[self.me].public_key());
        self.log
            .iter()
            .filter_map(|a| match a {
                Action::Broadcast(m) => match m.as_ref() {
                    SignedConsensusMsg::Vote(v)
                        if v.message.validator == me
                            && v.message.vote_type == vote_type
                            && v.message.round == r(round) =>
                    {
                        Some(match v.message.value {
                            NilOrVal::Nil => None,
                            NilOrVal::Val(h) => Some(h.0),
                        })
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn decided(&self) -> Option<(Hash, u32)> {
        self.log.iter().find_map(|a| match a {
            Action::Decided { block_hash, certificate, .. } => {
                Some((*block_hash, certificate.round))
            }
            _ => None,
        })
    }

    fn round(&self) -> String {
        format!("{:?}", self.core)
    }
}

/// Round 0 with T = validator 0: blue is proposed, T prevotes it, sees a polka for blue and
/// locks on it (line 36), precommits blue, then times out into round 1 (no precommit quorum).
fn locked_on_blue_in_round_0() -> Script {
    let mut s = Script::new(0);
    s.proposal(0, BLUE, -1);
    assert_eq!(s.my_votes(VoteType::Prevote, 0), vec![Some(BLUE)]);
    s.prevote(1, 0, Some(BLUE));
    s.prevote(2, 0, Some(BLUE));
    assert_eq!(s.my_votes(VoteType::Precommit, 0), vec![Some(BLUE)], "line 36: lock + precommit");
    s.precommit(1, 0, None);
    s.precommit(2, 0, None);
    s.fire(TimeoutKind::Precommit, 0);
    s
}

/// Line 26: locked on blue, a new value (no proof of lock) gets a nil prevote.
#[test]
fn line_26_a_locked_validator_prevotes_nil_for_a_new_value() {
    let mut s = locked_on_blue_in_round_0();
    s.proposal(1, RED, -1);
    assert_eq!(s.my_votes(VoteType::Prevote, 1), vec![None], "{}", s.round());
}

/// Locked on blue, the locked value itself re-proposed is prevoted (line 28 with
/// `lockedValue = v`).
#[test]
fn line_28_a_locked_validator_prevotes_its_locked_value_when_re_proposed() {
    let mut s = locked_on_blue_in_round_0();
    s.proposal(1, BLUE, 0);
    assert_eq!(s.my_votes(VoteType::Prevote, 1), vec![Some(BLUE)], "{}", s.round());
}

/// Line 28: locked on red in round 0, T sees in round 2 a re-proposal of blue whose proof of
/// lock is from round 1 (later than its lock): it prevotes blue.
#[test]
fn line_28_a_proof_of_lock_later_than_the_lock_unlocks() {
    let mut s = Script::new(0);
    // Round 0: lock on red.
    s.proposal(0, RED, -1);
    s.prevote(1, 0, Some(RED));
    s.prevote(2, 0, Some(RED));
    assert_eq!(s.my_votes(VoteType::Precommit, 0), vec![Some(RED)]);
    s.precommit(1, 0, None);
    s.precommit(2, 0, None);
    s.fire(TimeoutKind::Precommit, 0);
    // Round 1: blue is proposed afresh; T, locked on red, prevotes nil (line 26). Two others
    // prevote blue (T does not yet see the third), so T times out to precommit nil and round 2.
    s.proposal(1, BLUE, -1);
    assert_eq!(s.my_votes(VoteType::Prevote, 1), vec![None]);
    s.prevote(2, 1, Some(BLUE));
    s.prevote(3, 1, Some(BLUE));
    s.fire(TimeoutKind::Prevote, 1);
    assert_eq!(s.my_votes(VoteType::Precommit, 1), vec![None]);
    s.precommit(2, 1, None);
    s.precommit(3, 1, None);
    s.fire(TimeoutKind::Precommit, 1);
    // Round 2: blue re-proposed with POL round 1, and the missing third prevote arrives.
    s.proposal(2, BLUE, 1);
    s.prevote(1, 1, Some(BLUE));
    assert_eq!(s.my_votes(VoteType::Prevote, 2), vec![Some(BLUE)], "{}", s.round());
}

/// Line 32: locked on red in round 1, a re-proposal of blue with a proof of lock from round 0
/// (older than the lock) gets a nil prevote.
#[test]
fn line_32_a_proof_of_lock_older_than_the_lock_does_not_unlock() {
    let mut s = Script::new(0);
    // Round 0: blue proposed; T prevotes it but sees no polka (one blue, one nil), times out.
    s.proposal(0, BLUE, -1);
    s.prevote(1, 0, Some(BLUE));
    s.prevote(2, 0, None);
    s.fire(TimeoutKind::Prevote, 0);
    assert_eq!(s.my_votes(VoteType::Precommit, 0), vec![None]);
    s.precommit(1, 0, None);
    s.precommit(2, 0, None);
    s.fire(TimeoutKind::Precommit, 0);
    // Round 1: red proposed; polka for red; T locks on red.
    s.proposal(1, RED, -1);
    assert_eq!(s.my_votes(VoteType::Prevote, 1), vec![Some(RED)]);
    s.prevote(2, 1, Some(RED));
    s.prevote(3, 1, Some(RED));
    assert_eq!(s.my_votes(VoteType::Precommit, 1), vec![Some(RED)]);
    s.precommit(2, 1, None);
    s.precommit(3, 1, None);
    s.fire(TimeoutKind::Precommit, 1);
    // Round 2: blue with POL round 0; the third blue prevote of round 0 arrives, making the
    // proof valid, but it is older than T's lock.
    s.prevote(3, 0, Some(BLUE));
    s.proposal(2, BLUE, 0);
    // Malachite 0.8.2 does not prevote on this proposal at once (with the same inputs but no
    // lock it prevotes blue at once: the next test): it waits, and its propose timeout
    // (L57) gives the nil prevote that L32 prescribes. Blue is never prevoted.
    assert!(s.my_votes(VoteType::Prevote, 2).iter().all(Option::is_none), "{}", s.round());
    if s.my_votes(VoteType::Prevote, 2).is_empty() {
        s.fire(TimeoutKind::Propose, 2);
    }
    assert_eq!(s.my_votes(VoteType::Prevote, 2), vec![None], "{}", s.round());
}

/// Line 42: T precommitted nil after its prevote timeout, then sees the polka for blue of that
/// round: it does not lock, but blue becomes its valid value, and as proposer of round 1 it
/// re-proposes blue with POL round 0 instead of building a new block.
#[test]
fn line_42_a_late_polka_sets_the_valid_value_that_the_next_proposal_reuses() {
    // T = validator 2: not the proposer of round 0 (validator 1), the proposer of round 1.
    let mut s = Script::new(2);
    s.proposal(0, BLUE, -1);
    assert_eq!(s.my_votes(VoteType::Prevote, 0), vec![Some(BLUE)]);
    s.prevote(0, 0, None);
    s.prevote(1, 0, Some(BLUE));
    s.fire(TimeoutKind::Prevote, 0);
    assert_eq!(s.my_votes(VoteType::Precommit, 0), vec![None]);
    s.prevote(3, 0, Some(BLUE)); // the polka, seen in the precommit step
    assert_eq!(s.my_votes(VoteType::Precommit, 0), vec![None], "no second precommit");
    s.precommit(0, 0, None);
    s.precommit(1, 0, None);
    s.fire(TimeoutKind::Precommit, 0);
    let restream = s.log.iter().find_map(|a| match a {
        Action::Restream { round, valid_round, block_hash, .. } if *round == r(1) => {
            Some((*valid_round, *block_hash))
        }
        _ => None,
    });
    assert_eq!(
        restream,
        Some((r(0), BLUE)),
        "{:?}",
        s.log.iter().rev().take(6).collect::<Vec<_>>()
    );
    assert!(
        !s.log.iter().any(|a| matches!(a, Action::BuildBlock { round, .. } if *round == r(1))),
        "built a new block instead of re-proposing the valid value"
    );
}

/// Hidden lock: in round 0 validator 3 locked on blue but T and the others did not see the
/// polka (T saw only part of it). In round 2 validator 3 proposes blue again with POL round 0
/// and the full proof; T prevotes it, and the round decides blue.
#[test]
fn hidden_lock_is_revealed_by_its_proof_and_decided() {
    let mut s = Script::new(0);
    // Round 0: T never receives the proposal; it prevotes nil on its propose timeout.
    s.fire(TimeoutKind::Propose, 0);
    assert_eq!(s.my_votes(VoteType::Prevote, 0), vec![None]);
    s.prevote(1, 0, Some(BLUE));
    s.prevote(2, 0, Some(BLUE));
    s.fire(TimeoutKind::Prevote, 0);
    s.precommit(1, 0, None);
    s.precommit(2, 0, None);
    s.fire(TimeoutKind::Precommit, 0);
    // Round 1: validator 2 proposes red afresh; validator 3 (locked on blue) prevotes nil.
    s.proposal(1, RED, -1);
    s.prevote(3, 1, None);
    s.prevote(1, 1, None);
    s.fire(TimeoutKind::Prevote, 1);
    s.precommit(3, 1, None);
    s.precommit(1, 1, None);
    s.fire(TimeoutKind::Precommit, 1);
    // Round 2: validator 3 re-proposes blue with POL round 0; its own round-0 prevote, which T
    // had not seen, completes the proof.
    s.proposal(2, BLUE, 0);
    s.prevote(3, 0, Some(BLUE));
    assert_eq!(s.my_votes(VoteType::Prevote, 2), vec![Some(BLUE)], "{}", s.round());
    s.prevote(3, 2, Some(BLUE));
    s.prevote(1, 2, Some(BLUE));
    assert_eq!(s.my_votes(VoteType::Precommit, 2), vec![Some(BLUE)]);
    s.precommit(3, 2, Some(BLUE));
    s.precommit(1, 2, Some(BLUE));
    assert_eq!(s.decided(), Some((BLUE, 2)));
}

/// Decide in a past round (line 49 holds for any round): T moved on to round 1 after its
/// precommit timeout, and the round-0 precommits for blue that complete a quorum arrive late.
/// T decides blue with a round-0 certificate. Validator 3 sent T a nil precommit and the others
/// a blue one; when its blue precommit reaches T too, T records the equivocation and does not
/// count it; validator 2's precommit completes the quorum.
#[test]
fn a_decision_for_a_past_round_is_taken_and_the_equivocator_is_recorded() {
    let mut s = Script::new(0);
    s.proposal(0, BLUE, -1);
    s.prevote(1, 0, Some(BLUE));
    s.prevote(2, 0, Some(BLUE));
    assert_eq!(s.my_votes(VoteType::Precommit, 0), vec![Some(BLUE)]);
    s.precommit(1, 0, Some(BLUE));
    s.precommit(3, 0, None);
    s.fire(TimeoutKind::Precommit, 0);
    assert!(s.decided().is_none());
    assert!(
        s.round().contains("round: Round(1)") || s.round().contains("Some(1)"),
        "{}",
        s.round()
    );
    // Validator 3's second, conflicting precommit is evidence, not a vote: still no quorum.
    s.precommit(3, 0, Some(BLUE));
    assert!(s.decided().is_none(), "an equivocator's second vote was counted");
    s.precommit(2, 0, Some(BLUE));
    assert_eq!(s.decided(), Some((BLUE, 0)), "{}", s.round());
    let evidence: Vec<&Evidence> = s
        .log
        .iter()
        .filter_map(|a| match a {
            Action::Evidence(e) => Some(e.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(evidence.len(), 1);
    assert_eq!(evidence[0].validator(), s.keys[3].public_key());
    assert_eq!(evidence[0].position(), (H, 0, 2));
    assert!(evidence[0].verify(&s.ctx));
}

/// The same round-2 re-proposal of blue with a round-0 proof, for a validator that is not
/// locked: it prevotes blue at once (L28-L30 with no lock).
#[test]
fn line_28_an_unlocked_validator_prevotes_a_proof_two_rounds_old() {
    let mut s = Script::new(0);
    s.proposal(0, BLUE, -1);
    s.prevote(1, 0, Some(BLUE));
    s.prevote(2, 0, None);
    s.fire(TimeoutKind::Prevote, 0);
    s.precommit(1, 0, None);
    s.precommit(2, 0, None);
    s.fire(TimeoutKind::Precommit, 0);
    s.fire(TimeoutKind::Propose, 1);
    s.prevote(2, 1, None);
    s.prevote(3, 1, None);
    s.precommit(2, 1, None);
    s.precommit(3, 1, None);
    s.fire(TimeoutKind::Precommit, 1);
    s.prevote(3, 0, Some(BLUE));
    s.proposal(2, BLUE, 0);
    assert_eq!(s.my_votes(VoteType::Prevote, 2), vec![Some(BLUE)], "{}", s.round());
}
