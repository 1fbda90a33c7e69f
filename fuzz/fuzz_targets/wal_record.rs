//! Consensus WAL records: `WalRecord::decode` on arbitrary bytes.
//!
//! Asserts: no panic and no allocation beyond the record's own bounds; every record that
//! decodes re-encodes to exactly the input (one record, one encoding: replay must not depend on
//! which of two encodings was written).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tradeloop_node::consensus::walrecord::WalRecord;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = WalRecord::decode(data) else {
        return;
    };
    match record.encode() {
        Ok(bytes) => assert_eq!(bytes, data, "{record:?} re-encodes differently"),
        Err(e) => panic!("a decoded record does not encode: {e} ({record:?})"),
    }
});
