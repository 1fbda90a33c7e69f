//! The stateless event check past the signature: the fuzz input is an event body (any JSON),
//! which this target completes with the fixed chain, a participant's id and key, and signs with
//! that participant's key, so that `check_event` reaches the payload and field checks
//! (catalogue, field syntax, limits) on fuzz-chosen fields.
//!
//! Asserts: no panic; the event is never refused for its chain, author, key or signature (they
//! are right by construction); an accepted event carries the author, key, time and id signed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use tradeloop_ledger::encoding::canonical::Value;
use tradeloop_ledger::{check_event, RejectCode, SignedEvent};

fuzz_target!(|data: &[u8]| {
    let Some((&who, body)) = data.split_first() else {
        return;
    };
    let Ok(value) = Value::parse(body) else {
        return;
    };
    let serde_json::Value::Object(mut map) = value.into_json() else {
        return;
    };
    let cast = tradeloop_fuzz::cast();
    let Some((author, key)) = cast.keys.iter().nth(usize::from(who) % cast.keys.len()) else {
        return;
    };
    map.insert("chain".into(), json!(cast.genesis.hash.to_hex()));
    map.insert("author".into(), json!(author));
    map.insert("key".into(), json!(key.public_key().to_hex()));
    map.entry("kind").or_insert_with(|| json!("trade.order_accepted"));
    map.entry("time_ms").or_insert_with(|| json!(tradeloop_fuzz::GENESIS_TIME_MS));
    map.entry("nonce").or_insert_with(|| json!(1));
    let Ok(signed) = SignedEvent::sign(&serde_json::Value::Object(map), key) else {
        return;
    };
    match check_event(&cast.genesis, &signed) {
        Ok(event) => {
            assert_eq!(&event.author, author);
            assert_eq!(event.key, key.public_key());
            assert_eq!(event.id, signed.id());
        }
        Err(r) => assert!(
            !matches!(
                r.code,
                RejectCode::WrongChain
                    | RejectCode::UnknownParticipant
                    | RejectCode::KeyNotAuthorized
                    | RejectCode::BadSignature
            ),
            "a correctly signed event was refused with {:?}: {}",
            r.code,
            r.message
        ),
    }
});
