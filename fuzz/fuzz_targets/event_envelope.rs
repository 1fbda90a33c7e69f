//! `SignedEvent::from_envelope_json` on arbitrary bytes, then `check_event` against the fixed
//! sample genesis.
//!
//! Asserts: no panic; a parsed envelope's body is canonical JSON (the fast canonical parser
//! reads it back) and the envelope re-serialises to JSON that parses to the same event;
//! `check_event` and `check_event_batch` give the same verdict, and an accepted event's id is
//! the signed event's id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tradeloop_ledger::encoding::canonical::Value;
use tradeloop_ledger::{check_event, check_event_batch, SignedEvent};

fuzz_target!(|data: &[u8]| {
    let Ok(signed) = SignedEvent::from_envelope_json(data) else {
        return;
    };
    assert!(
        Value::parse_canonical(&signed.body).is_some(),
        "an envelope's body is stored in canonical form"
    );
    let again = SignedEvent::from_envelope_json(signed.to_envelope_json().as_bytes());
    assert_eq!(again.as_ref().ok(), Some(&signed), "envelope JSON round trip");

    let genesis = &tradeloop_fuzz::cast().genesis;
    let one = check_event(genesis, &signed);
    let batch = check_event_batch(genesis, std::slice::from_ref(&signed));
    assert_eq!(batch.len(), 1);
    match (&one, &batch[0]) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            assert_eq!(a.id, signed.id());
        }
        (Err(a), Err(b)) => assert_eq!(a.code, b.code),
        _ => panic!("check_event and check_event_batch disagree"),
    }
});
