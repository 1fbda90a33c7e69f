#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_possible_truncation)]

use malachite_core_types::{NilOrVal, SignedMessage, VoteType};
use tradeloop_ledger::Header;

use super::*;
use crate::consensus::context::{Address, BlockHash, Height, Proposal, Vote};
use crate::consensus::parts::PartAssembler;

const CHAIN: Hash = Hash([9; 32]);

fn key(label: &str) -> SigningKey {
    SigningKey::from_seed_label(label)
}

/// A block of `height` whose one event carries `body_bytes` bytes (not a valid event: the
/// wire layer does not look inside).
fn block(height: u64, body_bytes: usize, proposer: &SigningKey) -> Block {
    let header = Header {
        chain: CHAIN,
        height,
        prev_hash: Hash([1; 32]),
        time_ms: 1_700_000_000_000,
        proposer: proposer.public_key(),
        events_root: Hash([2; 32]),
        event_count: 1,
        app_hash: Hash([3; 32]),
        validators_hash: Hash([4; 32]),
    };
    let event = SignedEvent { body: vec![b'x'; body_bytes], signature: Signature([5; 64]) };
    Block { header, events: vec![event] }
}

/// A block of `height` with `n` small events: its proposal holds `n` ids (32 bytes each).
fn block_of(height: u64, n: usize, proposer: &SigningKey) -> Block {
    let mut b = block(height, 10, proposer);
    b.events = (0..n)
        .map(|i| SignedEvent {
            body: (i as u64).to_be_bytes().to_vec(),
            signature: Signature([5; 64]),
        })
        .collect();
    b
}

/// Events whose ids fill about `bytes` of a proposal.
fn ids_for(bytes: usize) -> usize {
    bytes / 32 + 1
}

fn vote(k: &SigningKey, value: Option<Hash>) -> SignedConsensusMsg<TradeContext> {
    let ctx = TradeContext::new(CHAIN);
    let v = Vote {
        vote_type: VoteType::Precommit,
        height: Height(7),
        round: Round::new(2),
        value: value.map_or(NilOrVal::Nil, |h| NilOrVal::Val(BlockHash(h))),
        validator: Address(k.public_key()),
    };
    let sig = k.sign(&ctx.vote_bytes(&v));
    SignedConsensusMsg::Vote(SignedMessage::new(v, sig))
}

fn same(a: &ConsensusWire, b: &ConsensusWire) -> bool {
    encode_consensus(a).unwrap() == encode_consensus(b).unwrap()
}

#[test]
fn votes_proposals_and_parts_round_trip() {
    let k = key("v1");
    let ctx = TradeContext::new(CHAIN);
    let p = Proposal {
        height: Height(7),
        round: Round::new(1),
        value: BlockHash(Hash([6; 32])),
        pol_round: Round::Nil,
        proposer: Address(k.public_key()),
    };
    let proposal = SignedConsensusMsg::Proposal(SignedMessage::new(
        p.clone(),
        k.sign(&ctx.proposal_bytes(&p)),
    ));
    let parts = split_block(&block(7, 100, &k), Round::new(1), Round::Nil, &k, &CHAIN).unwrap();
    let messages = vec![
        ConsensusWire::Signed(vote(&k, Some(Hash([8; 32])))),
        ConsensusWire::Signed(vote(&k, None)),
        ConsensusWire::Signed(proposal),
        ConsensusWire::Part(parts[0].clone()),
    ];
    for m in &messages {
        let bytes = encode_consensus(m).unwrap();
        let back = decode_consensus(&bytes).unwrap();
        assert!(same(m, &back), "{m:?}");
        // Every strict prefix is refused, never a panic.
        for cut in 0..bytes.len() {
            assert!(decode_consensus(&bytes[..cut]).is_err(), "prefix {cut} of {m:?}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_consensus(&longer).is_err(), "trailing byte after {m:?}");
    }
}

#[test]
fn garbage_is_refused_without_a_panic() {
    let mut state = 0x1234_5678_9abc_def0u64;
    for _ in 0..20_000 {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let len = (state >> 52) as usize;
        let bytes: Vec<u8> = (0..len).map(|i| (state >> (i % 56)) as u8).collect();
        let _ = decode_consensus(&bytes);
        let _ = EventBatch::decode(&bytes);
        let _ = Request::decode(&bytes);
        let _ = Response::decode(&bytes);
    }
    assert!(decode_consensus(&[]).is_err());
    assert!(decode_consensus(&[PART, 1, 2]).is_err());
}

#[test]
fn a_large_block_is_split_signed_and_reassembled_in_any_order() {
    let k = key("proposer");
    let b = block_of(5, ids_for(3 * MAX_PART_BYTES), &k);
    let parts = split_block(&b, Round::new(0), Round::Nil, &k, &CHAIN).unwrap();
    assert_eq!(parts.len(), 4);
    assert!(parts.iter().all(|p| p.verify(&CHAIN) && p.count == 4));
    // Another chain, a changed byte or another signer: the signature does not hold.
    assert!(!parts[0].verify(&Hash([0; 32])));
    let mut changed = parts[1].clone();
    changed.bytes[10] ^= 1;
    assert!(!changed.verify(&CHAIN));
    let mut forged = parts[2].clone();
    forged.proposer = key("other").public_key();
    assert!(!forged.verify(&CHAIN));
    // Reassembly: reversed order with duplicates; the block comes out once, whole.
    let mut assembler = PartAssembler::new();
    let mut out = Vec::new();
    for p in parts.iter().rev().chain(parts.iter().take(2)) {
        out.extend(assembler.add(5, p.clone()));
    }
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].proposal, CompactBlock::of(&b));
    assert_eq!(out[0].proposal.ids[7], b.events[7].id());
    assert_eq!(out[0].proposer, k.public_key());
    assert!(assembler.is_empty());
}

#[test]
fn the_assembler_drops_what_does_not_belong() {
    let k = key("proposer");
    let b = block_of(5, ids_for(MAX_PART_BYTES), &k);
    let parts = split_block(&b, Round::new(0), Round::Nil, &k, &CHAIN).unwrap();
    assert_eq!(parts.len(), 2);
    let mut assembler = PartAssembler::new();
    // A past height, and one too far ahead.
    assert!(assembler.add(6, parts[0].clone()).is_none());
    assert!(assembler.add(1, parts[0].clone()).is_none());
    assert!(assembler.is_empty());
    // A part claiming another proposer for the same stream is ignored; the right one completes.
    assert!(assembler.add(5, parts[0].clone()).is_none());
    let mut other = parts[1].clone();
    other.proposer = key("other").public_key();
    assert!(assembler.add(5, other).is_none());
    assert!(assembler.add(5, parts[1].clone()).is_some());
    // A part of a block already reassembled (gossip duplicates) starts nothing new.
    assert!(assembler.add(5, parts[0].clone()).is_none());
    assert!(assembler.is_empty());
    // Parts whose bytes do not hash to the announced block give nothing, and are dropped.
    let mut wrong = split_block(&b, Round::new(1), Round::Nil, &k, &CHAIN).unwrap();
    wrong[0].bytes[3] ^= 0xff;
    for p in wrong {
        assert!(assembler.add(5, p).is_none());
    }
    assert!(assembler.is_empty());
    // Unfinished streams of decided heights go.
    let next = split_block(
        &block_of(6, ids_for(MAX_PART_BYTES), &k),
        Round::new(0),
        Round::Nil,
        &k,
        &CHAIN,
    )
    .unwrap();
    assert!(assembler.add(5, next[0].clone()).is_none());
    assert_eq!(assembler.len(), 1);
    assembler.prune_below(7);
    assert!(assembler.is_empty());
}

/// A part at the largest height, added at that height (a peer's word on the height is any
/// u64): the window ahead stops at the top instead of overflowing (found by `peer_consensus`).
#[test]
fn a_part_at_the_last_height_is_taken_without_overflow() {
    let k = key("proposer");
    let b = block_of(u64::MAX, 1, &k);
    let parts = split_block(&b, Round::new(0), Round::Nil, &k, &CHAIN).unwrap();
    let mut assembler = PartAssembler::new();
    let whole = parts.into_iter().find_map(|p| assembler.add(u64::MAX, p));
    assert_eq!(whole.map(|w| w.proposal.header.height), Some(u64::MAX));
}

#[test]
fn batches_and_requests_round_trip_within_their_bounds() {
    let events: Vec<SignedEvent> = (0..3)
        .map(|i| SignedEvent { body: vec![b'a' + i; 40], signature: Signature([i; 64]) })
        .collect();
    let batch = EventBatch { events: events.clone() };
    assert_eq!(EventBatch::decode(&batch.encode().unwrap()).unwrap(), batch);
    assert!(EventBatch::decode(&EventBatch { events: vec![] }.encode().unwrap()).is_err());
    let many = EventBatch { events: vec![events[0].clone(); MAX_BATCH_EVENTS + 1] };
    assert!(many.encode().is_err());
    let ids: Vec<Hash> = events.iter().map(SignedEvent::id).collect();
    let most = Request::Events { ids: vec![Hash([7; 32]); MAX_FETCH_IDS] };
    assert!(
        most.encode().unwrap().len() <= crate::net::p2p::DEFAULT_MAX_REQUEST_BYTES,
        "a fetch of MAX_FETCH_IDS ids fits the request bound"
    );
    for r in [Request::Status, Request::Blocks { from: 3, count: 9 }, Request::Events { ids }, most]
    {
        assert_eq!(Request::decode(&r.encode().unwrap()).unwrap(), r);
    }
    let status = Response::Status { chain: CHAIN, height: 4, tip_hash: Hash([1; 32]) };
    assert_eq!(Response::decode(&status.encode().unwrap()).unwrap(), status);
    let fetched = Response::Events(events);
    assert_eq!(Response::decode(&fetched.encode().unwrap()).unwrap(), fetched);
}
