//! The consensus WAL file reader: the fuzz input is written as the WAL of height 1
//! (`wal-00000000000000000001.log`) and opened with `Wal::open(dir, 1)`.
//!
//! Asserts: no panic, Ok or Err; the records of a file that opens each decode to Ok or Err
//! (`WalRecord::decode`), never a panic; opening is idempotent: a second open (after the first
//! truncated any torn tail) finds the same records and leaves the file as the first did.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tradeloop_node::consensus::wal::Wal;
use tradeloop_node::consensus::walrecord::WalRecord;

const HEIGHT: u64 = 1;

fuzz_target!(|data: &[u8]| {
    let scratch = tradeloop_fuzz::Scratch::new();
    let dir = scratch.path().join("wal");
    let path = scratch.write(&format!("wal/wal-{HEIGHT:020}.log"), data);
    let Ok((wal, records)) = Wal::open(&dir, HEIGHT) else {
        return;
    };
    assert_eq!(wal.height(), HEIGHT);
    drop(wal);
    for record in &records {
        assert!(!record.is_empty(), "a WAL record is at least one byte");
        let _ = WalRecord::decode(record);
    }
    let after_first = std::fs::read(&path).unwrap_or_default();
    match Wal::open(&dir, HEIGHT) {
        Ok((_, again)) => assert_eq!(again, records, "a second open found other records"),
        Err(e) => panic!("a WAL that opened once does not open again: {e}"),
    }
    assert_eq!(std::fs::read(&path).unwrap_or_default(), after_first);
});
