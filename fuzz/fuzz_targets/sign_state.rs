//! The sign-state (double-sign guard) file: the fuzz input is written as the guard file and
//! opened with `SignGuard::open` for the fixed chain and validator 0 of the sample cast.
//!
//! Asserts: no panic, Ok or Err; a file that opens holds a record for exactly this chain and
//! validator (anything else is refused as foreign), and that record is the file's frame payload
//! decoded, re-encoding to exactly the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tradeloop_ledger::encoding::codec;
use tradeloop_ledger::encoding::frame;
use tradeloop_node::consensus::guard::SignGuard;

fuzz_target!(|data: &[u8]| {
    let cast = tradeloop_fuzz::cast();
    let chain = cast.genesis.hash;
    let validator = cast.validator_keys[0].public_key();
    let scratch = tradeloop_fuzz::Scratch::new();
    let path = scratch.write("sign-state.bin", data);
    let Ok(guard) = SignGuard::open(&path, chain, validator) else {
        return;
    };
    let Some(last) = guard.last() else {
        panic!("the file exists, so an opened guard has a last record");
    };
    assert_eq!(last.chain, chain);
    assert_eq!(last.validator, validator);
    assert_eq!(frame::encode(frame::kind::SIGN_STATE, &codec::encode(last).unwrap()), data);
});
