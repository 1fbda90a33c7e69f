//! Exports of either format through `export::AnyExport` (the JSONL reader for input starting
//! with `{`), `next_item` to the end; then `audit::verify_export` on the same bytes as a file
//! when the export carries the fixed genesis.
//!
//! Asserts: no panic and no unbounded allocation; the reader stops (each item consumes at least
//! one line or frame); nothing is read past the trailer; an export the audit accepts is one the
//! reader reads to a trailer with the audit's block count and tip.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use tradeloop_ledger::evidence::audit;
use tradeloop_ledger::export::{AnyExport, ExportItem};

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = AnyExport::new(Cursor::new(data)) else {
        return;
    };
    // Every item is at least one byte of input (a line ending, or a frame).
    let bound = data.len() + 1;
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
    assert!(blocks as usize <= bound, "the reader yielded more items than the input has bytes");
    if trailer.is_some() {
        assert!(reader.next_item().is_err(), "an item after the trailer");
    }
    let genesis = &tradeloop_fuzz::cast().genesis;
    match tradeloop_ledger::Genesis::from_json_bytes(reader.genesis_json()) {
        Ok(g) if g.hash == genesis.hash => {}
        _ => return,
    }
    let scratch = tradeloop_fuzz::Scratch::new();
    let path = scratch.write("export", data);
    if let Ok(report) = audit::verify_export(&path, genesis, &mut |_, _| {}) {
        let Some(trailer) = trailer else {
            panic!("verify_export accepted an export the reader finds no trailer in");
        };
        assert_eq!(report.blocks, blocks);
        assert_eq!(trailer.block_count, blocks);
        assert_eq!(trailer.tip_hash, report.tip_hash);
    }
});
