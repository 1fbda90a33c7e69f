//! The block log as the source of truth; sled as a rebuildable index.

use std::path::Path;

use tradeloop_ledger::evidence::audit::verify_data_dir;
use tradeloop_ledger::sample::trade_events;
use tradeloop_ledger::{Ledger, LedgerError};

use crate::support::*;

fn segment(data: &Path) -> std::path::PathBuf {
    data.join("blocks/blocks-00000000.log")
}

/// A fixture with one sample trade committed in 19 blocks, closed.
fn committed() -> Fixture {
    let mut f = Fixture::new(1);
    f.run_trade(1, usize::MAX);
    f
}

fn reopen(f: &Fixture) -> Result<Ledger, LedgerError> {
    Ledger::open(&f.data(), f.cast.genesis.clone())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_torn_tail_is_truncated_on_open_and_the_chain_goes_on() {
    let mut f = committed();
    let tip = f.ledger.tip().clone();
    let (ledger, _) = (
        std::mem::replace(
            &mut f.ledger,
            Ledger::open(&f.dir.path().join("other"), f.cast.genesis.clone()).unwrap(),
        ),
        (),
    );
    drop(ledger);
    let seg = segment(&f.data());
    let clean_len = std::fs::metadata(&seg).unwrap().len();
    // Half of a frame, as a crash mid-write leaves it.
    let last = std::fs::read(&seg).unwrap();
    let mut torn = last.clone();
    torn.extend_from_slice(&last[8..8 + 200]);
    std::fs::write(&seg, &torn).unwrap();
    let ledger = reopen(&f).unwrap();
    assert!(ledger.torn_tail_truncated > 0);
    assert_eq!(ledger.tip(), &tip);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), clean_len);
    drop(ledger);
    // A zero-filled tail (preallocated blocks after a crash) too.
    let mut zeros = last.clone();
    zeros.extend_from_slice(&[0u8; 4096]);
    std::fs::write(&seg, &zeros).unwrap();
    let mut ledger = reopen(&f).unwrap();
    assert_eq!(ledger.tip(), &tip);
    // And the chain continues and verifies.
    let key = f.cast.validator_keys[0].clone();
    let more = trade_events(&f.cast, 2, T0 + 60_000);
    let (block, rejected) = ledger.append_local(&more[..3], T0 + 60_000, &key).unwrap();
    assert!(rejected.is_empty() && block.len() == 1);
    drop(ledger);
    verify_data_dir(&f.data(), &f.cast.genesis, &mut |_, _| {}).unwrap();
}

#[test]
fn damage_inside_the_log_is_refused_with_its_height() {
    let f = committed();
    let data = f.data();
    let Fixture { ledger, .. } = f;
    drop(ledger);
    let seg = segment(&data);
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let cast = tradeloop_ledger::sample::Cast::with_extra(1, T0 - 1000, EXTRA, &mut |l| {
        Ok(tradeloop_crypto::SigningKey::from_seed_label(l))
    })
    .unwrap();
    match Ledger::open(&data, cast.genesis) {
        Err(LedgerError::CorruptLog { height, .. }) => {
            assert!(height > 1 && height < 19, "{height}")
        }
        other => panic!("expected a corrupt log error, got {other:?}"),
    }
}

#[test]
fn an_index_behind_the_log_is_caught_up_on_open() {
    let mut f = Fixture::new(1);
    f.run_trade(1, 10);
    let data = f.data();
    let genesis = f.cast.genesis.clone();
    // Snapshot the index at height 10 (close the ledger first so sled is quiescent).
    let placeholder = Ledger::open(&f.dir.path().join("other"), genesis.clone()).unwrap();
    drop(std::mem::replace(&mut f.ledger, placeholder));
    copy_dir(&data.join("index"), &f.dir.path().join("index-at-10"));
    f.ledger = Ledger::open(&data, genesis.clone()).unwrap();
    f.run_trade_steps(1, 10, 19);
    let tip = f.ledger.tip().clone();
    let placeholder = Ledger::open(&f.dir.path().join("other2"), genesis.clone()).unwrap();
    drop(std::mem::replace(&mut f.ledger, placeholder));
    // The crash: the log has 19 blocks, the index only 10.
    std::fs::remove_dir_all(data.join("index")).unwrap();
    copy_dir(&f.dir.path().join("index-at-10"), &data.join("index"));
    let ledger = Ledger::open(&data, genesis).unwrap();
    assert_eq!(ledger.caught_up_on_open, 9);
    assert_eq!(ledger.tip(), &tip);
    assert!(ledger.trade_status("PO-1").unwrap().closed, "caught-up state answers queries");
}

#[test]
fn a_damaged_index_is_detected_and_rebuilt_by_reindex() {
    let mut f = committed();
    let data = f.data();
    let genesis = f.cast.genesis.clone();
    let tip = f.ledger.tip().clone();
    let placeholder = Ledger::open(&f.dir.path().join("other"), genesis.clone()).unwrap();
    drop(std::mem::replace(&mut f.ledger, placeholder));
    // Logical damage: the index's tip record points at another block.
    {
        let db = sled::open(data.join("index")).unwrap();
        let tree = db.open_tree(tradeloop_ledger::storage::index::INDEX_TREE).unwrap();
        let mut wrong = tip.clone();
        wrong.hash.0[0] ^= 1;
        tree.insert(
            tradeloop_ledger::storage::schema::META_TIP_KEY,
            tradeloop_ledger::encoding::codec::encode(&wrong).unwrap(),
        )
        .unwrap();
        db.flush().unwrap();
    }
    match Ledger::open(&data, genesis.clone()) {
        Err(e @ LedgerError::IndexInconsistent(_)) => assert!(e.to_string().contains("reindex")),
        other => panic!("expected an inconsistent index, got {other:?}"),
    }
    let (ledger, _) = Ledger::reindex(&data, genesis.clone(), None).unwrap();
    assert_eq!(ledger.tip(), &tip);
    assert!(ledger.trade_status("PO-1").unwrap().closed);
    drop(ledger);
    // Physical damage: sled's files overwritten with garbage.
    for entry in std::fs::read_dir(data.join("index")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let len = std::fs::metadata(&path).unwrap().len() as usize;
            std::fs::write(&path, vec![0xA5u8; len.max(64)]).unwrap();
        }
    }
    let reopened = Ledger::open(&data, genesis.clone());
    assert!(reopened.is_err(), "a garbage index must not open as if it were fine");
    let (ledger, _) = Ledger::reindex(&data, genesis, None).unwrap();
    assert_eq!(ledger.tip(), &tip);
    assert_eq!(ledger.trace("shipment:SHP-1").unwrap().len(), 12);
}

#[test]
fn an_index_ahead_of_the_log_is_refused() {
    let mut f = committed();
    let data = f.data();
    let genesis = f.cast.genesis.clone();
    let placeholder = Ledger::open(&f.dir.path().join("other"), genesis.clone()).unwrap();
    drop(std::mem::replace(&mut f.ledger, placeholder));
    let seg = segment(&data);
    let bytes = std::fs::read(&seg).unwrap();
    let mut offset = 8;
    for _ in 0..5 {
        let len = u32::from_be_bytes(bytes[offset + 1..offset + 5].try_into().unwrap()) as usize;
        offset += 9 + len;
    }
    std::fs::write(&seg, &bytes[..offset]).unwrap();
    match Ledger::open(&data, genesis) {
        Err(e @ LedgerError::LogTruncated { log_height: 5, committed: 19 }) => {
            assert!(e.to_string().contains("missing"), "{e}")
        }
        other => panic!("expected the lost blocks to be reported, got {other:?}"),
    }
}

#[test]
fn a_data_dir_of_another_chain_is_refused() {
    let mut f = committed();
    let other = tradeloop_ledger::sample::Cast::deterministic(1, 42).unwrap();
    let placeholder = Ledger::open(&f.dir.path().join("other"), f.cast.genesis.clone()).unwrap();
    drop(std::mem::replace(&mut f.ledger, placeholder));
    match Ledger::open(&f.data(), other.genesis) {
        Err(LedgerError::WrongChain { .. }) => {}
        other => panic!("expected WrongChain, got {other:?}"),
    }
}

#[test]
fn verify_refuses_an_index_in_use_and_waits_for_a_dropped_one() {
    let f = committed();
    let data = f.data();
    // The fixture's ledger still holds the index: the audit cannot confirm the log's end and
    // says what to do, and so does a second open (not "reindex", which would be wrong here).
    let err = verify_data_dir(&data, &f.cast.genesis, &mut |_, _| {}).unwrap_err();
    assert!(err.reason.contains("in use by another process"), "{err}");
    assert!(
        err.reason.contains("stop the node") && err.reason.contains("verify an export"),
        "{err}"
    );
    let err = Ledger::open(&data, f.cast.genesis.clone()).err().map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("in use by another process") && !e.contains("reindex")),
        "{err:?}"
    );
    let Fixture { cast, ledger, dir: _dir, .. } = f;
    drop(ledger);
    // Dropped in this process and verified at once: sled lets go of its lock a moment after
    // the drop, and the audit waits for it (this raced before, under a loaded machine).
    for _ in 0..5 {
        let ledger = Ledger::open(&data, cast.genesis.clone()).unwrap();
        drop(ledger);
        verify_data_dir(&data, &cast.genesis, &mut |_, _| {}).unwrap();
    }
}
