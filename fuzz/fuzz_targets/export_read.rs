//! The export reader: `ExportReader::new` and a `next_item` loop over the fuzz input as a
//! stream, then (when the export carries the fixed genesis) `audit::verify_export` on the same
//! bytes as a file against that genesis.
//!
//! Asserts: no panic and no unbounded allocation; the reader stops (each item consumes at least
//! one frame); nothing is read past the trailer; an export that `verify_export` accepts is one
//! the reader reads to its trailer with as many blocks as the audit verified, ending in the
//! audit's tip.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use tradeloop_ledger::evidence::audit;
use tradeloop_ledger::export::binary::ExportReader;
use tradeloop_ledger::export::ExportItem;
use tradeloop_ledger::encoding::frame::FRAME_HEADER_BYTES;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = ExportReader::new(Cursor::new(data)) else {
        return;
    };
    // Every item is a frame of at least FRAME_HEADER_BYTES + 1 bytes.
    let bound = data.len() / (FRAME_HEADER_BYTES + 1) + 1;
    let mut blocks = 0u64;
    let mut trailer = None;
    for _ in 0..=bound {
        match reader.next_item() {
            Ok(ExportItem::Block(_)) => blocks += 1,
            Ok(ExportItem::End(t)) => {
                trailer = Some(t);
                break;
            }
            Err(_) => break,
        }
    }
    assert!(blocks as usize <= bound, "the reader yielded more items than the input has frames");
    if trailer.is_some() {
        assert!(reader.next_item().is_err(), "an item after the trailer");
    }

    // The audit only goes past the embedded genesis if it is the auditor's own; parsing other
    // genesis documents is the genesis_parse target's job. (This did not make the target faster:
    // about 500 execs/s before and after; each audit's setup dominates.)
    let genesis = &tradeloop_fuzz::cast().genesis;
    if reader.genesis_json != genesis.canonical {
        return;
    }
    let scratch = tradeloop_fuzz::Scratch::new();
    let path = scratch.write("export.tlx", data);
    if let Ok(report) = audit::verify_export(&path, genesis, &mut |_, _| {}) {
        let Some(trailer) = trailer else {
            panic!("verify_export accepted an export the reader finds no trailer in");
        };
        assert_eq!(report.blocks, blocks);
        assert_eq!(trailer.block_count, blocks);
        assert_eq!(trailer.tip_hash, report.tip_hash);
        assert_eq!(report.chain, genesis.hash);
    }
});
