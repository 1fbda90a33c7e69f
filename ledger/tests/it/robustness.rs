//! Bad input never panics: random and mutated bytes through every decoder and check.

use proptest::prelude::*;
use tradeloop_ledger::model::block::CertifiedBlock;
use tradeloop_ledger::sample::{trade_events, Cast};
use tradeloop_ledger::{
    check_event, check_event_batch, encoding::codec, encoding::frame, Genesis, SignedEvent,
};

use crate::support::T0;

fn cast() -> &'static Cast {
    static CAST: std::sync::OnceLock<Cast> = std::sync::OnceLock::new();
    CAST.get_or_init(|| Cast::deterministic(1, T0).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic_any_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = SignedEvent::from_envelope_json(&bytes);
        let _ = codec::decode::<CertifiedBlock>(&bytes);
        let _ = frame::read(&bytes, 0);
        let _ = frame::read_stream(&mut &bytes[..]);
        let _ = Genesis::from_json_bytes(&bytes);
        let _ = tradeloop_ledger::encoding::canonical::Value::parse(&bytes);
        let _ = check_event(&cast().genesis, &SignedEvent { body: bytes.clone(), signature: tradeloop_crypto::Signature([0; 64]) });
    }

    #[test]
    fn mutated_events_are_rejected_not_panicked_on(
        which in 0usize..19,
        at in any::<usize>(),
        byte in any::<u8>(),
    ) {
        let events = trade_events(cast(), 1, T0);
        let mut e = events[which].clone();
        let at = at % e.body.len();
        let changed = e.body[at] != byte;
        e.body[at] = byte;
        let verdict = check_event(&cast().genesis, &e);
        if changed {
            prop_assert!(verdict.is_err(), "a changed body byte must not pass: the signature covers it");
        }
        let envelope = e.to_envelope_json();
        let _ = SignedEvent::from_envelope_json(envelope.as_bytes());
    }

    #[test]
    fn mutated_blocks_never_panic_decoding(at in any::<usize>(), byte in any::<u8>()) {
        let events = trade_events(cast(), 2, T0);
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = tradeloop_ledger::Ledger::open(dir.path(), cast().genesis.clone()).unwrap();
        let (blocks, _) = ledger.append_local(&events[..3], T0 + 1, &cast().validator_keys[0]).unwrap();
        let mut bytes = codec::encode(&blocks[0]).unwrap();
        let at = at % bytes.len();
        bytes[at] = byte;
        let _ = codec::decode::<CertifiedBlock>(&bytes);
    }

    /// Batched checking (signatures sharing one inversion, in parallel chunks) gives every
    /// event exactly the verdict it gets alone: damaged bodies, damaged signatures, and
    /// correctly signed bodies with a bad field (the field error must surface, not a signature
    /// error), mixed in one batch.
    #[test]
    fn a_batch_gives_each_event_its_lone_verdict(
        damage in proptest::collection::vec((0u8..4, any::<usize>(), any::<u8>()), 19),
    ) {
        let mut events = trade_events(cast(), 2, T0);
        for (e, (how, at, byte)) in events.iter_mut().zip(&damage) {
            match how {
                1 => {
                    let at = at % e.body.len();
                    e.body[at] ^= byte | 1;
                }
                2 => e.signature.0[at % 64] ^= byte | 1,
                3 => {
                    let mut body: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
                    body["zz_unknown"] = serde_json::json!(1);
                    let author = body["author"].as_str().unwrap().to_owned();
                    *e = SignedEvent::sign(&body, &cast().keys[&author]).unwrap();
                }
                _ => {}
            }
        }
        let alone: Vec<_> = events.iter().map(|e| check_event(&cast().genesis, e)).collect();
        let batched = check_event_batch(&cast().genesis, &events);
        let parallel = tradeloop_ledger::execute::check_events(&cast().genesis, &events);
        for (i, a) in alone.iter().enumerate() {
            let lone = a.as_ref().map(|e| e.id).map_err(|r| r.code);
            prop_assert_eq!(&lone, &batched[i].as_ref().map(|e| e.id).map_err(|r| r.code), "event {}", i);
            prop_assert_eq!(&lone, &parallel[i].as_ref().map(|e| e.id).map_err(|r| r.code), "event {}", i);
            if damage[i].0 == 3 {
                // Signed correctly, so the field check (after the signature) must speak.
                let code = a.as_ref().err().map(|r| r.code);
                prop_assert!(code.is_some() && code != Some(tradeloop_ledger::RejectCode::BadSignature), "{:?}", code);
            }
            if damage[i].0 == 2 {
                prop_assert!(a.is_err());
            }
        }
    }
}
