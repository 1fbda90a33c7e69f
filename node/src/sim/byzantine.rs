//! Byzantine validators: they run the node's own code, and what it sends is rewritten on its
//! way out, signed with their own keys: equivocation (two blocks, two versions of every vote,
//! one to each half of the honest validators), blocks that must be refused, and votes for
//! far-future rounds and heights.

use std::collections::BTreeMap;

use malachite_core_consensus::SignedConsensusMsg;
use malachite_core_types::{NilOrVal, Round, SignedMessage, VoteType};
use tradeloop_crypto::{Hash, SigningKey};

use super::config::{Attack, Rng};
use crate::consensus::context::{BlockHash, Height, Proposal, TradeContext, Vote};
use crate::consensus::parts::PartAssembler;
use crate::net::message::{encode_consensus, split_proposal, CompactBlock, ConsensusWire};

/// Where a rewritten message goes.
pub(super) enum To {
    /// Every other validator.
    All,
    /// These validators.
    Some(Vec<usize>),
}

/// One byzantine validator's rewriting of its outbound messages.
pub(super) struct Adversary {
    attack: Attack,
    key: SigningKey,
    ctx: TradeContext,
    /// The honest validators the equivocator splits: (first half, second half).
    halves: (Vec<usize>, Vec<usize>),
    /// Its own proposals, put together from the parts its driver streams.
    parts: PartAssembler,
}

/// What the byzantine validators plan together: (height, round) -> the block sent to the first
/// half and the one sent to the second (equivocation), or the proposed block and the one sent
/// instead (invalid blocks).
pub(super) type Forks = BTreeMap<(u64, i64), (Hash, Hash)>;

impl Adversary {
    pub(super) fn new(
        attack: Attack,
        key: SigningKey,
        ctx: TradeContext,
        halves: (Vec<usize>, Vec<usize>),
    ) -> Adversary {
        Adversary { attack, key, ctx, halves, parts: PartAssembler::new() }
    }

    /// What goes out instead of the encoded message `bytes`.
    pub(super) fn rewrite(
        &mut self,
        bytes: Vec<u8>,
        forks: &mut Forks,
        rng: &mut Rng,
    ) -> Vec<(To, Vec<u8>)> {
        let Ok(msg) = crate::net::message::decode_consensus(&bytes) else { return Vec::new() };
        match msg {
            ConsensusWire::Part(part) => match self.parts.add(part.height, part) {
                Some(a) => self.own_block(a.proposal, a.round, a.valid_round, forks, rng),
                // Held until the proposal is whole.
                None => Vec::new(),
            },
            ConsensusWire::Signed(SignedConsensusMsg::Proposal(p)) => {
                self.proposal(p.message, forks)
            }
            ConsensusWire::Signed(SignedConsensusMsg::Vote(v)) => self.vote(v.message, forks, rng),
            ConsensusWire::Polka(_) => vec![(To::All, bytes)],
        }
    }

    /// The byzantine proposer's block, as it streams it.
    fn own_block(
        &mut self,
        x: CompactBlock,
        round: Round,
        valid_round: Round,
        forks: &mut Forks,
        rng: &mut Rng,
    ) -> Vec<(To, Vec<u8>)> {
        let key = (x.header.height, round.as_i64());
        let other = match self.attack {
            // A second valid block: the same events a millisecond later.
            Attack::Equivocate { .. } => {
                let mut y = x.clone();
                y.header.time_ms += 1;
                y
            }
            Attack::InvalidBlocks => invalid(&x, rng),
            Attack::FutureRounds | Attack::None => {
                return self.stream(&x, round, valid_round, To::All)
            }
        };
        forks.insert(key, (x.header.hash(), other.header.hash()));
        if let Attack::Equivocate { .. } = self.attack {
            let (first, second) = self.halves.clone();
            let mut out = self.stream(&x, round, valid_round, To::Some(first));
            out.extend(self.stream(&other, round, valid_round, To::Some(second)));
            out
        } else {
            self.stream(&other, round, valid_round, To::All)
        }
    }

    fn stream(
        &self,
        block: &CompactBlock,
        round: Round,
        valid_round: Round,
        to: To,
    ) -> Vec<(To, Vec<u8>)> {
        let parts = split_proposal(block, round, valid_round, &self.key, &self.ctx.chain)
            .unwrap_or_default();
        let targets = match to {
            To::All => None,
            To::Some(v) => Some(v),
        };
        parts
            .into_iter()
            .filter_map(|p| encode_consensus(&ConsensusWire::Part(p)).ok())
            .map(|b| (targets.clone().map_or(To::All, To::Some), b))
            .collect()
    }

    fn proposal(&self, p: Proposal, forks: &Forks) -> Vec<(To, Vec<u8>)> {
        let Some((x, y)) = forks.get(&(p.height.0, p.round.as_i64())).copied() else {
            return vec![(To::All, self.sign_proposal(p))];
        };
        match self.attack {
            Attack::Equivocate { .. } => {
                let (first, second) = self.halves.clone();
                vec![
                    (
                        To::Some(first),
                        self.sign_proposal(Proposal { value: BlockHash(x), ..p.clone() }),
                    ),
                    (To::Some(second), self.sign_proposal(Proposal { value: BlockHash(y), ..p })),
                ]
            }
            _ => vec![(To::All, self.sign_proposal(Proposal { value: BlockHash(y), ..p }))],
        }
    }

    fn vote(&self, vote: Vote, forks: &Forks, rng: &mut Rng) -> Vec<(To, Vec<u8>)> {
        match self.attack {
            Attack::Equivocate { .. } => {
                let fork = forks.get(&(vote.height.0, vote.round.as_i64())).copied();
                let (x, y) = match (fork, &vote.value) {
                    (Some((x, y)), _) => (NilOrVal::Val(BlockHash(x)), NilOrVal::Val(BlockHash(y))),
                    (None, NilOrVal::Val(h)) => (NilOrVal::Val(*h), NilOrVal::Nil),
                    (None, NilOrVal::Nil) => {
                        let fake: [u8; 32] =
                            rng.next().to_be_bytes().repeat(4).try_into().unwrap_or([7; 32]);
                        (NilOrVal::Nil, NilOrVal::Val(BlockHash(Hash(fake))))
                    }
                };
                let (first, second) = self.halves.clone();
                vec![
                    (To::Some(first), self.sign_vote(Vote { value: x, ..vote.clone() })),
                    (To::Some(second), self.sign_vote(Vote { value: y, ..vote })),
                ]
            }
            Attack::FutureRounds => {
                let far_round = Round::new(
                    vote.round.as_u32().unwrap_or(0)
                        + 1_000
                        + u32::try_from(rng.below(1_000_000)).unwrap_or(0),
                );
                let spam = [
                    Vote { round: far_round, ..vote.clone() },
                    Vote { height: Height(vote.height.0 + 1 + rng.below(1_000)), ..vote.clone() },
                    Vote { vote_type: VoteType::Precommit, round: far_round, ..vote.clone() },
                    vote,
                ];
                spam.into_iter().map(|v| (To::All, self.sign_vote(v))).collect()
            }
            Attack::InvalidBlocks | Attack::None => vec![(To::All, self.sign_vote(vote))],
        }
    }

    fn sign_vote(&self, vote: Vote) -> Vec<u8> {
        let signature = self.key.sign(&self.ctx.vote_bytes(&vote));
        let msg = SignedConsensusMsg::Vote(SignedMessage::new(vote, signature));
        encode_consensus(&ConsensusWire::Signed(msg)).unwrap_or_default()
    }

    fn sign_proposal(&self, proposal: Proposal) -> Vec<u8> {
        let signature = self.key.sign(&self.ctx.proposal_bytes(&proposal));
        let msg = SignedConsensusMsg::Proposal(SignedMessage::new(proposal, signature));
        encode_consensus(&ConsensusWire::Signed(msg)).unwrap_or_default()
    }
}

/// A block honest validators must refuse, in turn: a wrong app hash, or an event twice (its
/// header commits to the ids it carries, so only the rules can catch the replay).
fn invalid(x: &CompactBlock, rng: &mut Rng) -> CompactBlock {
    let mut y = x.clone();
    if rng.below(2) == 0 || y.ids.is_empty() {
        y.header.app_hash.0[0] ^= 1;
    } else {
        y.ids.push(y.ids[0]);
        y.header.events_root = tradeloop_ledger::model::block::events_root(&y.ids);
        y.header.event_count = u32::try_from(y.ids.len()).unwrap_or(u32::MAX);
    }
    y
}
