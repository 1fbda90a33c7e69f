//! The block log's segment reader: the fuzz input is written as `blocks-00000000.log` and the
//! log opened read-only with `BlockLog::open(dir, Access::ReadOnly, 0)`.
//!
//! Asserts: no panic, Ok or Err; a read-only open never changes the file; every frame of a log
//! that opens can be read back by height (its checksum was verified on open, so only the
//! block's decoding may still fail, as a corruption error), and heights 0 and past the end are
//! not found.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tradeloop_ledger::storage::blocklog::{Access, BlockLog};
use tradeloop_ledger::LedgerError;

fuzz_target!(|data: &[u8]| {
    let scratch = tradeloop_fuzz::Scratch::new();
    let path = scratch.write("blocks/blocks-00000000.log", data);
    let dir = scratch.path().join("blocks");
    let opened = BlockLog::open(&dir, Access::ReadOnly, 0);
    match std::fs::read(&path) {
        Ok(after) => assert_eq!(after, data, "a read-only open changed the segment"),
        Err(e) => panic!("the segment vanished: {e}"),
    }
    let Ok((log, _report)) = opened else {
        return;
    };
    for height in 1..=log.len() {
        match log.read(height) {
            Ok(_) | Err(LedgerError::CorruptLog { .. }) => {}
            Err(e) => panic!("block {height} of a log that opened cannot be read: {e}"),
        }
    }
    assert!(log.read(log.len() + 1).is_err());
    assert!(log.read(0).is_err());
});
