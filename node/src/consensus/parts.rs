//! Reassembles blocks from [`ProposalPart`]s, within bounds.
//!
//! Parts arrive through gossip in any order, possibly duplicated, possibly for a height this
//! node has not reached yet. Each part was checked before it got here (a known validator, the
//! expected proposer of its round, its signature); the assembler checks that the parts of one
//! stream agree, and that the whole decodes to a proposal ([`CompactBlock`]: the header and
//! the event ids) with the announced hash.

use std::collections::{BTreeMap, BTreeSet};

use tradeloop_crypto::{Hash, PublicKey};

use crate::net::message::{CompactBlock, ProposalPart, MAX_PARTS};
use malachite_core_types::Round;

/// Most streams being reassembled at once (rounds of the current and the next heights).
pub const MAX_STREAMS: usize = 64;
/// Most bytes held by unfinished streams: 96 MiB.
pub const MAX_ASSEMBLY_BYTES: usize = 96 * 1024 * 1024;
/// Finished streams remembered, so that their duplicates are dropped.
pub const MAX_DONE_REMEMBERED: usize = 256;
/// How far ahead of the current height a stream is kept.
pub const MAX_HEIGHTS_AHEAD: u64 = 2;

/// A whole proposal from its parts.
#[derive(Clone, Debug)]
pub struct Assembled {
    /// The round it was proposed at.
    pub round: Round,
    /// Its proof-of-lock round.
    pub valid_round: Round,
    /// The proposer.
    pub proposer: PublicKey,
    /// The proposal (its header hash is the announced one).
    pub proposal: CompactBlock,
}

type StreamKey = (u64, i64, Hash);

#[derive(Debug)]
struct Stream {
    proposer: PublicKey,
    valid_round: Round,
    round: Round,
    parts: Vec<Option<Vec<u8>>>,
    received: u32,
    bytes: usize,
}

/// Streams being reassembled.
#[derive(Debug, Default)]
pub struct PartAssembler {
    streams: BTreeMap<StreamKey, Stream>,
    bytes: usize,
    /// Streams finished (or found bad), so their late duplicates start nothing.
    done: BTreeSet<StreamKey>,
}

impl PartAssembler {
    /// An empty assembler.
    pub fn new() -> PartAssembler {
        PartAssembler::default()
    }

    /// Adds a part received while deciding `current_height`; returns the proposal once it is
    /// whole. Parts of past heights, too far ahead, inconsistent with their stream, or over the
    /// bounds are dropped.
    pub fn add(&mut self, current_height: u64, part: ProposalPart) -> Option<Assembled> {
        if part.height < current_height
            || part.height > current_height.saturating_add(MAX_HEIGHTS_AHEAD)
        {
            return None;
        }
        if part.count == 0 || part.count > MAX_PARTS || part.index >= part.count {
            return None;
        }
        let key = (part.height, part.round.as_i64(), part.block_hash);
        if self.done.contains(&key) {
            return None;
        }
        if !self.streams.contains_key(&key) {
            if self.streams.len() >= MAX_STREAMS {
                return None;
            }
            self.streams.insert(
                key,
                Stream {
                    proposer: part.proposer,
                    valid_round: part.valid_round,
                    round: part.round,
                    parts: vec![None; part.count as usize],
                    received: 0,
                    bytes: 0,
                },
            );
        }
        let stream = self.streams.get_mut(&key)?;
        if stream.proposer != part.proposer
            || stream.valid_round != part.valid_round
            || stream.parts.len() != part.count as usize
        {
            return None;
        }
        let slot = stream.parts.get_mut(part.index as usize)?;
        if slot.is_some() {
            return None;
        }
        if self.bytes + part.bytes.len() > MAX_ASSEMBLY_BYTES {
            return None;
        }
        self.bytes += part.bytes.len();
        stream.bytes += part.bytes.len();
        *slot = Some(part.bytes);
        stream.received += 1;
        if stream.received as usize != stream.parts.len() {
            return None;
        }
        let stream = self.streams.remove(&key)?;
        self.bytes -= stream.bytes;
        if self.done.len() >= MAX_DONE_REMEMBERED {
            self.done.pop_first();
        }
        self.done.insert(key);
        let mut whole = Vec::with_capacity(stream.bytes);
        for p in stream.parts.into_iter().flatten() {
            whole.extend_from_slice(&p);
        }
        let proposal: CompactBlock = tradeloop_ledger::encoding::codec::decode(&whole).ok()?;
        if proposal.header.hash() != key.2 || proposal.header.height != key.0 {
            return None;
        }
        Some(Assembled {
            round: stream.round,
            valid_round: stream.valid_round,
            proposer: stream.proposer,
            proposal,
        })
    }

    /// Drops every stream below `height` (it is decided).
    pub fn prune_below(&mut self, height: u64) {
        let keep = self.streams.split_off(&(height, i64::MIN, Hash::ZERO));
        for stream in self.streams.values() {
            self.bytes -= stream.bytes;
        }
        self.streams = keep;
        self.done = self.done.split_off(&(height, i64::MIN, Hash::ZERO));
    }

    /// Streams held.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}
