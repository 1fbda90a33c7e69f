//! The blocks this validator has streamed as proposals, kept so that a validator missing
//! some of a proposal's events can fetch them from its proposer ([`crate::net::message::Request::Events`]).
//!
//! A proposal carries event ids ([`crate::net::message::CompactBlock`]); the events travel once, by
//! mempool gossip. A validator that did not get some of them (it restarted with an empty
//! mempool, or gossip lost them) asks the proposer, which answers from here: the driver adds
//! every block it streams (built, re-proposed from its lock, or recovered from its WAL), and
//! drops them when the height is decided. Shared between the driver and the request handler.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tradeloop_crypto::Hash;
use tradeloop_ledger::{Block, SignedEvent};

/// Most streamed blocks kept (the proposals of the current height; a height rarely needs
/// more than one or two rounds).
pub const MAX_STREAMED_BLOCKS: usize = 8;

#[derive(Debug)]
struct Streamed {
    hash: Hash,
    height: u64,
    events: HashMap<Hash, SignedEvent>,
}

/// The blocks this validator streamed (a cheap clone: one shared store).
#[derive(Clone, Debug, Default)]
pub struct StreamedBlocks(Arc<Mutex<VecDeque<Streamed>>>);

impl StreamedBlocks {
    /// An empty store.
    pub fn new() -> StreamedBlocks {
        StreamedBlocks::default()
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Streamed>> {
        // Every change is one push, pop or retain: a panic cannot leave it half-written.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `block` (whose events have the ids `ids`, in order) for peers to fetch from.
    pub fn add(&self, block: &Block, ids: &[Hash]) {
        let hash = block.header.hash();
        let mut blocks = self.lock();
        if blocks.iter().any(|b| b.hash == hash) {
            return;
        }
        if blocks.len() >= MAX_STREAMED_BLOCKS {
            blocks.pop_front();
        }
        let events = ids.iter().copied().zip(block.events.iter().cloned()).collect();
        blocks.push_back(Streamed { hash, height: block.header.height, events });
    }

    /// The events with these ids that a kept block holds, in the order asked, stopping before
    /// `max_bytes` of event bodies and signatures (but always giving the first one found).
    pub fn events(&self, ids: &[Hash], max_bytes: u64) -> Vec<SignedEvent> {
        let blocks = self.lock();
        let mut found = Vec::new();
        let mut bytes = 0u64;
        for id in ids {
            let Some(event) = blocks.iter().find_map(|b| b.events.get(id)) else { continue };
            let size = (event.body.len() + event.signature.0.len()) as u64;
            if !found.is_empty() && bytes.saturating_add(size) > max_bytes {
                break;
            }
            bytes = bytes.saturating_add(size);
            found.push(event.clone());
        }
        found
    }

    /// Drops the blocks below `height` (decided).
    pub fn prune_below(&self, height: u64) {
        self.lock().retain(|b| b.height >= height);
    }

    /// Blocks kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

    use super::*;
    use tradeloop_crypto::Signature;
    use tradeloop_ledger::Header;

    fn block(height: u64, n: u8) -> (Block, Vec<Hash>) {
        let header = Header {
            chain: Hash([9; 32]),
            height,
            prev_hash: Hash([1; 32]),
            time_ms: 1,
            proposer: tradeloop_crypto::SigningKey::from_seed_label("p").public_key(),
            events_root: Hash([2; 32]),
            event_count: u32::from(n),
            app_hash: Hash([3; 32]),
            validators_hash: Hash([4; 32]),
        };
        let events: Vec<SignedEvent> = (0..n)
            .map(|i| SignedEvent {
                // An event's id is its body's hash: distinct bodies across blocks.
                body: vec![i.wrapping_add((height as u8).wrapping_mul(16)); 100],
                signature: Signature([height as u8; 64]),
            })
            .collect();
        let ids = events.iter().map(SignedEvent::id).collect();
        (Block { header, events }, ids)
    }

    #[test]
    fn it_answers_from_kept_blocks_within_its_bounds() {
        let store = StreamedBlocks::new();
        let (a, a_ids) = block(5, 3);
        let (b, b_ids) = block(6, 2);
        store.add(&a, &a_ids);
        store.add(&a, &a_ids);
        store.add(&b, &b_ids);
        assert_eq!(store.len(), 2, "a block is kept once");
        let wanted = vec![b_ids[1], Hash([7; 32]), a_ids[0]];
        assert_eq!(store.events(&wanted, u64::MAX), vec![b.events[1].clone(), a.events[0].clone()]);
        // The byte bound stops early but always gives one.
        assert_eq!(store.events(&wanted, 1), vec![b.events[1].clone()]);
        store.prune_below(6);
        assert!(store.events(&a_ids, u64::MAX).is_empty());
        assert_eq!(store.events(&b_ids, u64::MAX).len(), 2);
        for h in 10..10 + MAX_STREAMED_BLOCKS as u64 {
            let (c, c_ids) = block(h, 1);
            store.add(&c, &c_ids);
        }
        assert_eq!(store.len(), MAX_STREAMED_BLOCKS, "the oldest go first");
        assert!(store.events(&b_ids, u64::MAX).is_empty());
    }
}
