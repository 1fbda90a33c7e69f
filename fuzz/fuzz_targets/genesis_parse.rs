//! The genesis parser: `Genesis::from_json_bytes` on arbitrary bytes.
//!
//! Asserts: no panic; an accepted genesis keeps its canonical bytes, which parse again to the
//! same genesis hash (the chain id of every event and block); every participant's keys are
//! owned by that participant.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tradeloop_ledger::Genesis;

fuzz_target!(|data: &[u8]| {
    let Ok(genesis) = Genesis::from_json_bytes(data) else {
        return;
    };
    match Genesis::from_json_bytes(&genesis.canonical) {
        Ok(again) => {
            assert_eq!(again.hash, genesis.hash);
            assert_eq!(again.canonical, genesis.canonical);
        }
        Err(e) => panic!("the canonical form of an accepted genesis is refused: {e}"),
    }
    for p in genesis.participants() {
        for key in &p.keys {
            assert_eq!(genesis.key_owner(key), Some(p.id.as_str()));
        }
    }
});
