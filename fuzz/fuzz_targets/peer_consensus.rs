//! The consensus topic as a peer sends it: `message::gossip_unframe`, then
//! `message::decode_consensus` (votes, proposals and polka certificates in the WAL records'
//! layouts; proposal parts in their own), then a decoded part through a `PartAssembler`.
//!
//! Asserts: no panic and no allocation beyond the message bounds; whatever decodes re-encodes to
//! exactly the message (one message, one encoding: a relayed message is the bytes received); a
//! part the assembler completes into a proposal carries the announced block hash and height.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tradeloop_node::consensus::parts::PartAssembler;
use tradeloop_node::net::message::{self, ConsensusWire};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = message::gossip_unframe(data) else {
        return;
    };
    let Ok(decoded) = message::decode_consensus(message) else {
        return;
    };
    match message::encode_consensus(&decoded) {
        Ok(bytes) => assert_eq!(bytes, message, "{decoded:?} re-encodes differently"),
        Err(e) => panic!("a decoded message does not encode: {e} ({decoded:?})"),
    }
    if let ConsensusWire::Part(part) = decoded {
        let (height, hash) = (part.height, part.block_hash);
        if let Some(whole) = PartAssembler::new().add(height, part) {
            assert_eq!(whole.proposal.header.hash(), hash);
            assert_eq!(whole.proposal.header.height, height);
        }
    }
});
