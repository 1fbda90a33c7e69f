//! How a member node that does not vote learns at once that a height was decided: it counts
//! the precommits it sees on the consensus topic (each already checked: signer in the set,
//! signature valid), and more than 2/3 of the voting power precommitting one block at one
//! (height, round) decides that block. The validators commit it a moment later, so the node
//! asks one of them for it then, rather than waiting for the next height's first message (a
//! proposer with nothing to propose waits `empty_block_wait_ms` before it sends one).
//!
//! Pure and bounded: no I/O, at most [`MAX_TALLIES`] tallies.

use std::collections::{BTreeMap, BTreeSet};

use malachite_core_types::{NilOrVal, VoteType};
use tradeloop_crypto::{Hash, PublicKey};

use crate::consensus::context::{Validators, Vote};

/// Most (height, round, block) tallies kept; beyond it the lowest heights are dropped.
pub const MAX_TALLIES: usize = 256;
/// Heights above the highest decided one that are tallied (a precommit far ahead is a
/// validator's fault or a peer of another moment; sync learns of those by status).
pub const MAX_HEIGHTS_AHEAD: u64 = 64;

/// Precommit tallies of the heights not yet known decided.
#[derive(Debug)]
pub struct DecisionWatch {
    validators: Validators,
    tallies: BTreeMap<(u64, u32, Hash), BTreeSet<PublicKey>>,
    decided: u64,
}

impl DecisionWatch {
    /// A watch over `validators`, knowing heights up to `decided` decided.
    pub fn new(validators: Validators, decided: u64) -> DecisionWatch {
        DecisionWatch { validators, tallies: BTreeMap::new(), decided }
    }

    /// Counts a checked vote; the height it decides, the first time more than 2/3 of the
    /// power has precommitted one block there.
    pub fn on_vote(&mut self, vote: &Vote) -> Option<u64> {
        let NilOrVal::Val(block) = vote.value else { return None };
        let height = vote.height.0;
        if vote.vote_type != VoteType::Precommit
            || height <= self.decided
            || height > self.decided.saturating_add(MAX_HEIGHTS_AHEAD)
        {
            return None;
        }
        let round = u32::try_from(vote.round.as_i64()).ok()?;
        let voters = self.tallies.entry((height, round, block.0)).or_default();
        voters.insert(vote.validator.0);
        let validators = &self.validators;
        let power: u64 = voters.iter().map(|k| power_of(validators, k)).sum();
        if power.saturating_mul(3) > self.total_power().saturating_mul(2) {
            self.decided = height;
            self.tallies.retain(|(h, _, _), _| *h > height);
            return Some(height);
        }
        while self.tallies.len() > MAX_TALLIES {
            self.tallies.pop_first();
        }
        None
    }

    /// The node committed up to `height` (by any path): nothing at or below it is tallied.
    pub fn committed(&mut self, height: u64) {
        if height > self.decided {
            self.decided = height;
            self.tallies.retain(|(h, _, _), _| *h > height);
        }
    }

    fn total_power(&self) -> u64 {
        self.validators.0.iter().map(|v| v.power).sum()
    }
}

fn power_of(validators: &Validators, key: &PublicKey) -> u64 {
    validators.0.iter().find(|v| v.public_key == *key).map_or(0, |v| v.power)
}

#[cfg(test)]
mod tests {
    use malachite_core_types::Round;
    use tradeloop_crypto::SigningKey;

    use super::*;
    use crate::consensus::context::{Address, BlockHash, Height, Validator};

    fn set(n: usize) -> (Validators, Vec<PublicKey>) {
        let keys: Vec<PublicKey> = (0..n)
            .map(|i| SigningKey::from_seed_label(&format!("validator {i}")).public_key())
            .collect();
        let validators = keys
            .iter()
            .map(|k| Validator { address: Address(*k), public_key: *k, power: 1 })
            .collect();
        (Validators(validators), keys)
    }

    fn precommit(who: PublicKey, height: u64, round: u32, block: u8) -> Vote {
        Vote {
            vote_type: VoteType::Precommit,
            height: Height(height),
            round: Round::new(round),
            value: NilOrVal::Val(BlockHash(Hash([block; 32]))),
            validator: Address(who),
        }
    }

    #[test]
    fn more_than_two_thirds_of_the_power_on_one_block_decides_its_height_once() {
        let (validators, keys) = set(4);
        let mut watch = DecisionWatch::new(validators, 4);
        assert_eq!(watch.on_vote(&precommit(keys[0], 5, 0, 7)), None);
        assert_eq!(watch.on_vote(&precommit(keys[0], 5, 0, 7)), None, "a repeat counts once");
        assert_eq!(watch.on_vote(&precommit(keys[1], 5, 0, 7)), None);
        assert_eq!(watch.on_vote(&precommit(keys[2], 5, 0, 7)), Some(5));
        assert_eq!(watch.on_vote(&precommit(keys[3], 5, 0, 7)), None, "decided already");
    }

    #[test]
    fn split_votes_nil_prevotes_and_old_heights_decide_nothing() {
        let (validators, keys) = set(4);
        let mut watch = DecisionWatch::new(validators, 4);
        // Exactly 2/3 is not more than 2/3: 2 of 3 on one block.
        let (three, _) = set(3);
        let mut small = DecisionWatch::new(three, 0);
        assert_eq!(small.on_vote(&precommit(keys[0], 1, 0, 1)), None);
        assert_eq!(small.on_vote(&precommit(keys[1], 1, 0, 1)), None);
        assert_eq!(small.on_vote(&precommit(keys[2], 1, 0, 1)), Some(1));
        // Two blocks, two rounds: no quorum on any one.
        watch.on_vote(&precommit(keys[0], 5, 0, 1));
        watch.on_vote(&precommit(keys[1], 5, 0, 2));
        assert_eq!(watch.on_vote(&precommit(keys[2], 5, 1, 1)), None);
        let mut prevote = precommit(keys[3], 5, 0, 1);
        prevote.vote_type = VoteType::Prevote;
        assert_eq!(watch.on_vote(&prevote), None);
        let mut nil = precommit(keys[3], 5, 0, 1);
        nil.value = NilOrVal::Nil;
        assert_eq!(watch.on_vote(&nil), None);
        watch.committed(5);
        for k in &keys {
            assert_eq!(watch.on_vote(&precommit(*k, 5, 0, 1)), None, "height 5 is committed");
        }
    }

    #[test]
    fn the_tallies_stay_bounded() {
        let (validators, keys) = set(4);
        let mut watch = DecisionWatch::new(validators, 0);
        for round in 0..10_000u32 {
            watch.on_vote(&precommit(keys[0], 1 + u64::from(round) % 64, round, 1));
        }
        assert!(watch.tallies.len() <= MAX_TALLIES);
        assert_eq!(watch.on_vote(&precommit(keys[0], 1_000, 0, 1)), None, "too far ahead");
    }
}
