//! The events topic as a peer sends it: `EventBatch::decode`.
//!
//! Asserts: no panic and no allocation beyond the codec's limit; a decoded batch holds 1 to
//! `MAX_BATCH_EVENTS` events and re-encodes to exactly the input (a relayed batch is the bytes
//! received, and each event keeps the bytes its author signed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tradeloop_node::net::message::{EventBatch, MAX_BATCH_EVENTS};

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = EventBatch::decode(data) else {
        return;
    };
    assert!((1..=MAX_BATCH_EVENTS).contains(&batch.events.len()));
    match batch.encode() {
        Ok(bytes) => assert_eq!(bytes, data, "the batch re-encodes differently"),
        Err(e) => panic!("a decoded batch does not encode: {e}"),
    }
});
