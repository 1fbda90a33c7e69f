//! Integrity: a damaged byte never becomes a silently shorter ledger; read-only opens never
//! write; reindex refuses damage; restore brings a data dir back; faults at every durable step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tradeloop_ledger::evidence::audit::{verify_data_dir, verify_export};
use tradeloop_ledger::sample::trade_events;
use tradeloop_ledger::storage::index::{Fault, FaultPlan, FaultyIndex};
use tradeloop_ledger::storage::restore::restore;
use tradeloop_ledger::{Ledger, LedgerError};

use crate::support::*;

/// A closed data dir of one sample trade (19 blocks) and its genesis.
fn closed_data_dir() -> (tempfile::TempDir, PathBuf, tradeloop_ledger::Genesis) {
    let mut f = Fixture::new(1);
    f.run_trade(1, usize::MAX);
    let Fixture { cast, ledger, dir, .. } = f;
    assert_eq!(ledger.tip().height, 19);
    drop(ledger);
    let data = dir.path().join("data");
    (dir, data, cast.genesis)
}

fn segment(data: &Path) -> PathBuf {
    data.join("blocks/blocks-00000000.log")
}

/// Offsets of every frame of a segment.
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut offset = 8;
    while offset + 9 <= bytes.len() {
        out.push(offset);
        let len = u32::from_be_bytes(bytes[offset + 1..offset + 5].try_into().unwrap()) as usize;
        offset += 9 + len;
    }
    out
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// Opening must fail with a corrupt-log error at `height`, and change no byte.
fn assert_refused_unchanged(data: &Path, genesis: &tradeloop_ledger::Genesis, height: u64) {
    let before = snapshot(data);
    let log_before = snapshot(&data.join("blocks"));
    for writer in [false, true] {
        let result = if writer {
            Ledger::open(data, genesis.clone())
        } else {
            Ledger::open_read_only(data, genesis.clone())
        };
        match result {
            Err(LedgerError::CorruptLog { height: h, .. }) => assert_eq!(h, height),
            other => panic!(
                "expected damage at height {height}, got {:?}",
                other.map(|l| l.tip().clone())
            ),
        }
        // (a writer opens sled, which rewrites its own files; the block log is untouched)
        if writer {
            assert!(
                snapshot(&data.join("blocks")) == log_before,
                "a refused writer open changed the log"
            );
        } else {
            assert!(snapshot(data) == before, "a refused read-only open changed the data dir");
        }
    }
    let err = verify_data_dir(data, genesis, &mut |_, _| {}).unwrap_err();
    assert!(err.height <= height, "verify named {err} for damage at {height}");
    match Ledger::reindex(data, genesis.clone(), None) {
        Err(LedgerError::CorruptLog { height: h, .. }) => assert_eq!(h, height),
        other => panic!("reindex must refuse, got {:?}", other.map(|(l, _)| l.tip().clone())),
    }
    assert!(snapshot(&data.join("blocks")) == log_before, "a refused reindex changed the log");
}

#[test]
fn a_damaged_length_anywhere_but_an_unfinished_tail_is_refused_and_nothing_changes() {
    // A damaged length byte in the middle of the log, and its neighbours: the length made
    // larger or smaller, in the middle and in the frame before the last, and the last frame.
    let (_dir, data, genesis) = closed_data_dir();
    let original = std::fs::read(segment(&data)).unwrap();
    let offsets = frame_offsets(&original);
    assert_eq!(offsets.len(), 19);
    for (frame, height) in [(9usize, 10u64), (17, 18), (18, 19), (0, 1)] {
        for delta in [1i64, -1, 0x100, 0x10000, 0x1000000] {
            let mut bytes = original.clone();
            let at = offsets[frame] + 1;
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
            let damaged = (i64::from(len) + delta).clamp(0, i64::from(u32::MAX)) as u32;
            bytes[at..at + 4].copy_from_slice(&damaged.to_be_bytes());
            std::fs::write(segment(&data), &bytes).unwrap();
            assert_refused_unchanged(&data, &genesis, height);
        }
    }
    std::fs::write(segment(&data), &original).unwrap();
    assert_eq!(Ledger::open_read_only(&data, genesis).unwrap().tip().height, 19);
}

#[test]
fn a_committed_last_frame_with_a_bad_checksum_is_damage_not_a_torn_tail() {
    let (_dir, data, genesis) = closed_data_dir();
    let mut bytes = std::fs::read(segment(&data)).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0x01;
    std::fs::write(segment(&data), &bytes).unwrap();
    assert_refused_unchanged(&data, &genesis, 19);
    // A flipped kind byte of a middle frame, and a damaged segment header, too.
    let (_dir2, data2, genesis2) = closed_data_dir();
    let original = std::fs::read(segment(&data2)).unwrap();
    let mut bytes = original.clone();
    bytes[frame_offsets(&original)[5]] = 3;
    std::fs::write(segment(&data2), &bytes).unwrap();
    assert_refused_unchanged(&data2, &genesis2, 6);
    let mut bytes = original;
    bytes[2] ^= 0x20;
    std::fs::write(segment(&data2), &bytes).unwrap();
    assert_refused_unchanged(&data2, &genesis2, 1);
}

#[test]
fn only_the_writer_cuts_an_unfinished_write_and_says_what_it_removed() {
    let (_dir, data, genesis) = closed_data_dir();
    let original = std::fs::read(segment(&data)).unwrap();
    let mut torn = original.clone();
    // The first 300 bytes of a frame: what a crash in the middle of an append leaves.
    let first = frame_offsets(&original)[0];
    torn.extend_from_slice(&original[first..first + 300]);
    std::fs::write(segment(&data), &torn).unwrap();
    let reader = Ledger::open_read_only(&data, genesis.clone()).unwrap();
    let found = reader.torn_tail.clone().expect("the read-only open reports the torn tail");
    assert_eq!((found.height, found.bytes, found.offset), (20, 300, original.len() as u64));
    assert_eq!(reader.tip().height, 19);
    drop(reader);
    assert_eq!(std::fs::read(segment(&data)).unwrap(), torn, "a reader never truncates");
    verify_data_dir(&data, &genesis, &mut |_, _| {}).expect("an unfinished write is not a finding");
    let writer = Ledger::open(&data, genesis).unwrap();
    assert_eq!(writer.torn_tail.as_ref().map(|t| t.bytes), Some(300));
    assert_eq!(writer.torn_tail_truncated, 300);
    assert_eq!(std::fs::read(segment(&data)).unwrap(), original);
}

#[test]
fn read_commands_never_write_and_a_mistyped_data_dir_is_an_error() {
    let (dir, data, genesis) = closed_data_dir();
    // An auditor's read-only copy.
    let before = snapshot(&data);
    let mut perms_stack = vec![data.clone()];
    while let Some(d) = perms_stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                perms_stack.push(path.clone());
            }
            let mut p = std::fs::metadata(&path).unwrap().permissions();
            p.set_readonly(true);
            std::fs::set_permissions(&path, p).unwrap();
        }
    }
    let ledger = Ledger::open_read_only(&data, genesis.clone()).unwrap();
    assert!(ledger.trade_status("PO-1").unwrap().closed);
    assert_eq!(ledger.trace("shipment:SHP-1").unwrap().len(), 12);
    let export = dir.path().join("chain.tlx");
    assert_eq!(tradeloop_ledger::export::binary::export(&ledger, &export).unwrap(), 19);
    drop(ledger);
    verify_data_dir(&data, &genesis, &mut |_, _| {}).unwrap();
    assert!(snapshot(&data) == before, "a read command changed the data dir");
    // A typo: refused, and nothing is created.
    let typo = dir.path().join("dta");
    assert!(matches!(
        Ledger::open_read_only(&typo, genesis.clone()),
        Err(LedgerError::NotADataDir(_))
    ));
    assert!(verify_data_dir(&typo, &genesis, &mut |_, _| {}).is_err());
    assert!(matches!(Ledger::reindex(&typo, genesis, None), Err(LedgerError::NotADataDir(_))));
    assert!(!typo.exists());
}

#[test]
fn reindex_discards_only_what_it_is_told_and_keeps_the_bytes() {
    let (_dir, data, genesis) = closed_data_dir();
    let original = std::fs::read(segment(&data)).unwrap();
    let offsets = frame_offsets(&original);
    let mut bytes = original.clone();
    bytes[offsets[12] + 40] ^= 0xff; // block 13's payload
    std::fs::write(segment(&data), &bytes).unwrap();
    let err = Ledger::reindex(&data, genesis.clone(), None).unwrap_err();
    assert!(err.to_string().contains("--discard-from 13"), "{err}");
    // Discarding from above the damage cannot hide it.
    assert!(Ledger::reindex(&data, genesis.clone(), Some(15)).is_err());
    let (ledger, report) = Ledger::reindex(&data, genesis.clone(), Some(13)).unwrap();
    assert_eq!(ledger.tip().height, 12);
    let d = report.discarded.unwrap();
    assert_eq!((d.from_height, d.intact_blocks, d.damaged_bytes_removed), (13, 0, true));
    assert_eq!(std::fs::read(&d.saved_to).unwrap(), &bytes[offsets[12]..]);
    drop(ledger);
    verify_data_dir(&data, &genesis, &mut |_, _| {}).unwrap();
}

#[test]
fn a_log_shorter_than_the_index_is_refused_by_reindex_too() {
    let (_dir, data, genesis) = closed_data_dir();
    let original = std::fs::read(segment(&data)).unwrap();
    let offsets = frame_offsets(&original);
    std::fs::write(segment(&data), &original[..offsets[15]]).unwrap();
    for result in [
        Ledger::open(&data, genesis.clone()).map(|_| ()),
        Ledger::open_read_only(&data, genesis.clone()).map(|_| ()),
        Ledger::reindex(&data, genesis.clone(), None).map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(LedgerError::LogTruncated { log_height: 15, committed: 19 })),
            "{result:?}"
        );
    }
}

#[test]
fn restore_writes_a_verified_data_dir_and_never_overwrites_one() {
    let (dir, data, genesis) = closed_data_dir();
    let export = dir.path().join("backup.tlx");
    let ledger = Ledger::open_read_only(&data, genesis.clone()).unwrap();
    let tip = ledger.tip().clone();
    tradeloop_ledger::export::binary::export(&ledger, &export).unwrap();
    drop(ledger);
    // Damage the data dir, then restore a new one from the backup.
    let mut bytes = std::fs::read(segment(&data)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(segment(&data), &bytes).unwrap();
    assert!(verify_data_dir(&data, &genesis, &mut |_, _| {}).is_err());
    let err = restore(&export, &genesis, &data, &mut |_| {}).unwrap_err();
    assert_eq!(err.code(), "DATA_DIR_NOT_EMPTY");
    let fresh = dir.path().join("restored");
    let report = restore(&export, &genesis, &fresh, &mut |_| {}).unwrap();
    assert_eq!((report.blocks, report.tip_hash), (19, tip.hash));
    let verified = verify_data_dir(&fresh, &genesis, &mut |_, _| {}).unwrap();
    assert_eq!(verified.tip_hash, tip.hash);
    assert!(
        Ledger::open_read_only(&fresh, genesis.clone())
            .unwrap()
            .trade_status("PO-1")
            .unwrap()
            .closed
    );
    // A tampered export restores nothing.
    let mut bad = std::fs::read(&export).unwrap();
    let at = bad.len() / 2;
    bad[at] ^= 0x01;
    let bad_path = dir.path().join("bad.tlx");
    std::fs::write(&bad_path, &bad).unwrap();
    assert!(verify_export(&bad_path, &genesis, &mut |_, _| {}).is_err());
    let target = dir.path().join("from-bad");
    assert!(restore(&bad_path, &genesis, &target, &mut |_| {}).is_err());
    assert!(!target.exists());
    assert!(!dir.path().join(".from-bad.restoring").exists());
}

#[test]
fn events_that_do_not_fit_one_block_go_into_the_next_never_away() {
    let mut cast = tradeloop_ledger::sample::Cast::with_extra(1, T0 - 1000, EXTRA, &mut |l| {
        Ok(tradeloop_crypto::SigningKey::from_seed_label(l))
    })
    .unwrap();
    let mut doc = cast.genesis.doc.clone();
    // The default bound is left out of the file, so older genesis files keep their hash.
    assert!(!String::from_utf8(doc.to_json_bytes()).unwrap().contains("max_block_bytes"));
    doc.consensus.max_event_bytes = 4096;
    for bad in [4096 + 100, tradeloop_ledger::limits::MAX_BLOCK_BYTES + 1] {
        let mut d = doc.clone();
        d.consensus.max_block_bytes = bad;
        assert!(tradeloop_ledger::Genesis::from_doc(d).is_err(), "{bad} accepted");
    }
    doc.consensus.max_block_bytes = 4096 + 64 * 1024;
    cast.genesis = tradeloop_ledger::Genesis::from_doc(doc).unwrap();
    let events: Vec<_> = (1..=20).flat_map(|n| trade_events(&cast, n, T0)).collect();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut ledger = Ledger::open(&data, cast.genesis.clone()).unwrap();
    let (blocks, rejected) =
        ledger.append_local(&events, T0 + 1000, &cast.validator_keys[0]).unwrap();
    assert!(rejected.is_empty(), "{:?}", rejected.first());
    assert!(blocks.len() >= 3, "{} blocks", blocks.len());
    assert_eq!(blocks.iter().map(|b| b.block.events.len()).sum::<usize>(), events.len());
    for b in &blocks {
        let n = tradeloop_ledger::encoding::codec::encoded_len(&b.block).unwrap();
        assert!(n <= u64::from(cast.genesis.doc.consensus.max_block_bytes), "{n}");
    }
    drop(ledger);
    let audit = verify_data_dir(&data, &cast.genesis, &mut |_, _| {}).unwrap();
    assert_eq!(audit.events, events.len() as u64);
}

#[test]
fn a_fault_at_every_index_step_leaves_the_state_before_or_after_the_block() {
    let faults = [
        FaultPlan { apply: Some((3, Fault::Error)), ..FaultPlan::default() },
        FaultPlan { apply: Some((3, Fault::LostWrite)), ..FaultPlan::default() },
        FaultPlan { flush: Some(3), ..FaultPlan::default() },
        FaultPlan { apply: Some((6, Fault::LostWrite)), ..FaultPlan::default() },
    ];
    for plan in faults {
        let f = Fixture::new(1);
        let Fixture { cast, ledger, dir, .. } = f;
        drop(ledger);
        let data = dir.path().join("data");
        let index = FaultyIndex::open(&data.join("index"), plan.clone()).unwrap();
        let injected = index.injected.clone();
        let mut ledger = Ledger::open_with_index(&data, cast.genesis.clone(), index).unwrap();
        let events = trade_events(&cast, 1, T0);
        let key = cast.validator_keys[0].clone();
        let mut committed = 0u64;
        for (i, e) in events.iter().enumerate() {
            let result = ledger.append_local(std::slice::from_ref(e), T0 + 1000 * i as u64, &key);
            if injected.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                // The fault hit this block; the process is taken to crash here.
                if !plan.apply.is_some_and(|(_, f)| f == Fault::LostWrite) {
                    // A failed commit poisons the ledger: nothing more is built on it.
                    assert!(result.is_err());
                    let more =
                        ledger.append_local(&events[i + 1..i + 2], T0 + 1000 * i as u64, &key);
                    assert!(more.is_err(), "{plan:?}: a commit after a failed one was accepted");
                }
                break;
            }
            committed += result.unwrap().0.len() as u64;
        }
        assert_eq!(injected.load(std::sync::atomic::Ordering::SeqCst), 1, "{plan:?}");
        drop(ledger);
        // Reopened with the real index: the block log is the truth, the index catches up.
        let reopened = Ledger::open(&data, cast.genesis.clone()).unwrap();
        let height = reopened.tip().height;
        assert!(
            height == committed || height == committed + 1,
            "{plan:?}: {height} vs {committed}"
        );
        drop(reopened);
        let audit = verify_data_dir(&data, &cast.genesis, &mut |_, _| {}).unwrap();
        assert_eq!(audit.blocks, height, "{plan:?}");
    }
}

#[test]
fn a_height_known_committed_from_elsewhere_is_never_a_torn_tail() {
    // The index lost its last blocks (it is behind the log), but the node's sign-state shows
    // that height 19 was committed: a damaged last frame is then corruption, not a tail to cut.
    let (_dir, data, genesis) = closed_data_dir();
    let mut bytes = std::fs::read(segment(&data)).unwrap();
    std::fs::remove_dir_all(data.join("index")).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0x01;
    std::fs::write(segment(&data), &bytes).unwrap();
    let log_before = snapshot(&data.join("blocks"));
    match Ledger::open_known_committed(&data, genesis.clone(), 19) {
        Err(LedgerError::CorruptLog { height, .. }) => assert_eq!(height, 19),
        other => panic!("expected damage at 19, got {:?}", other.map(|l| l.tip().clone())),
    }
    assert!(snapshot(&data.join("blocks")) == log_before, "nothing was cut");
    // A log shorter than what is known committed is refused too, naming both heights.
    let offsets = frame_offsets(&bytes);
    std::fs::write(segment(&data), &bytes[..offsets[18]]).unwrap();
    match Ledger::open_known_committed(&data, genesis.clone(), 19) {
        Err(LedgerError::LogTruncated { log_height, committed }) => {
            assert_eq!((log_height, committed), (18, 19))
        }
        other => panic!("expected LOG_TRUNCATED, got {:?}", other.map(|l| l.tip().clone())),
    }
    // Without that knowledge the same bytes are a whole chain of 18 (the writer's usual rule).
    let ledger = Ledger::open_known_committed(&data, genesis, 0).unwrap();
    assert_eq!(ledger.tip().height, 18);
}
