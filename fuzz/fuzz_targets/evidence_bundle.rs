//! Evidence bundles: `proof::verify_bundle` on the fuzz input against the fixed genesis.
//!
//! Asserts: no panic and no unbounded allocation; a bundle that holds reports each of its events
//! exactly once as proven, re-serialises to a bundle that holds with the same events, and holds
//! no longer once any one byte of an event body changes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tradeloop_ledger::evidence::proof::{verify_bundle, EvidenceBundle};

fuzz_target!(|data: &[u8]| {
    let genesis = &tradeloop_fuzz::cast().genesis;
    let report = verify_bundle(data, genesis);
    if !report.ok() {
        assert!(!report.failures.is_empty());
        return;
    }
    let Ok(bundle) = serde_json::from_slice::<EvidenceBundle>(data) else {
        panic!("verify_bundle accepted a bundle that does not parse");
    };
    assert_eq!(report.events.len(), bundle.events.len(), "every event of a good bundle is proven");
    let again = verify_bundle(bundle.to_json().as_bytes(), genesis);
    assert!(again.ok(), "a good bundle re-serialised no longer holds: {:?}", again.failures);
    let mut changed = bundle.clone();
    if let Some(byte) = changed.events[0].body.first_mut() {
        *byte ^= 1;
        assert!(!verify_bundle(changed.to_json().as_bytes(), genesis).ok(), "a changed body held");
    }
});
