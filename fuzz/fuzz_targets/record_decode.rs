//! The small stored records decoded with the binary codec: the index's tip record (`Tip`) and
//! block locations (`Location`) read back from sled, the export trailer (`ExportTrailer`) and
//! the sign-state record (`SignRecord`), all on the same bytes.
//!
//! Asserts: no panic; whatever decodes re-encodes to exactly the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};
use tradeloop_ledger::storage::blocklog::Location;
use tradeloop_ledger::encoding::codec;
use tradeloop_ledger::export::ExportTrailer;
use tradeloop_ledger::Tip;
use tradeloop_node::consensus::guard::SignRecord;

fn round_trip<T: Serialize + DeserializeOwned + std::fmt::Debug>(data: &[u8]) {
    if let Ok(value) = codec::decode::<T>(data) {
        assert_eq!(codec::encode(&value).unwrap(), data, "{value:?} re-encodes differently");
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Tip>(data);
    round_trip::<Location>(data);
    round_trip::<ExportTrailer>(data);
    round_trip::<SignRecord>(data);
});
