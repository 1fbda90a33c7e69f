//! Bad input never panics: random and mutated bytes through every decoder and check.

use proptest::prelude::*;
use tradeloop_ledger::block::CertifiedBlock;
use tradeloop_ledger::sample::{trade_events, Cast};
use tradeloop_ledger::{check_event, codec, frame, Genesis, SignedEvent};

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
        let _ = tradeloop_ledger::canonical::Value::parse(&bytes);
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
        let (block, _) = ledger.append_local(&events[..3], T0 + 1, &cast().validator_keys[0]).unwrap();
        let mut bytes = codec::encode(&block.unwrap());
        let at = at % bytes.len();
        bytes[at] = byte;
        let _ = codec::decode::<CertifiedBlock>(&bytes);
    }
}
