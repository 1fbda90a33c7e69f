//! The binary codec of blocks: `codec::decode::<CertifiedBlock>`, `::<Block>` and `::<Header>`
//! on the same bytes.
//!
//! Asserts: no panic and no allocation beyond the codec's limit; whatever decodes re-encodes to
//! exactly the input (the encoding is canonical, which the block hash relies on: one header, one
//! hash); a decoded header's hash is the hash of the input bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tradeloop_crypto::domain_hash;
use tradeloop_ledger::model::block::BLOCK_DOMAIN;
use tradeloop_ledger::encoding::codec;
use tradeloop_ledger::{Block, CertifiedBlock, Header};

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = codec::decode::<Header>(data) {
        assert_eq!(codec::encode(&header).unwrap(), data, "header re-encodes differently");
        assert_eq!(header.hash(), domain_hash(BLOCK_DOMAIN, &[data]));
    }
    if let Ok(block) = codec::decode::<Block>(data) {
        assert_eq!(codec::encode(&block).unwrap(), data, "block re-encodes differently");
    }
    if let Ok(certified) = codec::decode::<CertifiedBlock>(data) {
        assert_eq!(
            codec::encode(&certified).unwrap(),
            data,
            "certified block re-encodes differently"
        );
    }
});
