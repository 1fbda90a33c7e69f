//! `verify` names the first bad height for every kind of tampering, and passes the untouched
//! chain. The chain is certified by 3 of 4 validators, as a BFT network would.

use std::path::{Path, PathBuf};

use tradeloop_crypto::SigningKey;
use tradeloop_ledger::evidence::audit::{verify_data_dir, verify_export, AuditFailure};
use tradeloop_ledger::export::binary::{write_to, ExportReader};
use tradeloop_ledger::export::{ExportItem, ExportTrailer};
use tradeloop_ledger::model::block::{CertifiedBlock, CommitCertificate};
use tradeloop_ledger::model::genesis::ValidatorSet;
use tradeloop_ledger::sample::{trade_events, Cast};
use tradeloop_ledger::{encoding::codec, Ledger};

use crate::support::*;

const BLOCKS: u64 = 13;

struct Chain {
    cast: Cast,
    dir: tempfile::TempDir,
    blocks: Vec<CertifiedBlock>,
}

/// Builds a 4-validator chain of `BLOCKS` blocks (two sample trades, split over blocks) and
/// exports it.
fn chain() -> Chain {
    let cast = Cast::deterministic(4, T0 - 1000).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("data"), cast.genesis.clone()).unwrap();
    let mut events = trade_events(&cast, 1, T0);
    events.extend(trade_events(&cast, 2, T0));
    let per_block = 3;
    for (i, chunk) in events.chunks(per_block).enumerate() {
        cast.commit(&mut ledger, chunk, T0 + 1000 * i as u64, i % 4, &[1, 2, 3]).unwrap();
    }
    assert_eq!(ledger.tip().height, BLOCKS);
    tradeloop_ledger::export::binary::export(&ledger, &dir.path().join("chain.tlx")).unwrap();
    let blocks = (1..=BLOCKS).map(|h| ledger.block(h).unwrap()).collect();
    Chain { cast, dir, blocks }
}

impl Chain {
    fn export_path(&self) -> PathBuf {
        self.dir.path().join("chain.tlx")
    }

    /// Writes an export of `blocks` with a trailer that matches them (an attacker's best
    /// effort), returning its path.
    fn write_export(&self, name: &str, blocks: &[CertifiedBlock]) -> PathBuf {
        let path = self.dir.path().join(name);
        let mut out = Vec::new();
        write_to(&mut out, &self.cast.genesis, blocks.iter().cloned().map(Ok)).unwrap();
        std::fs::write(&path, out).unwrap();
        path
    }

    fn verify_export(&self, path: &Path) -> Result<u64, AuditFailure> {
        verify_export(path, &self.cast.genesis, &mut |_, _| {}).map(|r| r.blocks)
    }

    /// Re-signs a block's certificate with the given validator keys (after editing its header).
    fn recertify(&self, block: &mut CertifiedBlock, keys: &[&SigningKey]) {
        let h = block.block.header.height;
        block.certificate =
            CommitCertificate::sign(&self.cast.genesis.hash, h, 0, block.block.header.hash(), keys);
    }
}

fn assert_fails_at(result: Result<u64, AuditFailure>, height: u64, words: &str) {
    match result {
        Ok(n) => panic!("verify passed ({n} blocks) but should fail at height {height}"),
        Err(f) => {
            assert_eq!(f.height, height, "{f}");
            assert!(f.reason.contains(words), "expected \"{words}\" in: {f}");
        }
    }
}

#[test]
fn the_untouched_chain_passes_from_data_dir_and_export() {
    let c = chain();
    assert_eq!(c.verify_export(&c.export_path()).unwrap(), BLOCKS);
    let report =
        verify_data_dir(&c.dir.path().join("data"), &c.cast.genesis, &mut |_, _| {}).unwrap();
    assert_eq!(report.blocks, BLOCKS);
    assert_eq!(report.events, 38);
    // Rewriting the export unchanged also passes: the tamper helpers are not the failure.
    let same = c.write_export("same.tlx", &c.blocks);
    assert_eq!(c.verify_export(&same).unwrap(), BLOCKS);
}

#[test]
fn a_flipped_byte_in_the_block_log_is_caught_at_its_height() {
    let c = chain();
    let data = c.dir.path().join("data");
    let segment = data.join("blocks/blocks-00000000.log");
    let mut bytes = std::fs::read(&segment).unwrap();
    // Find block 5's frame: walk frames from the segment header.
    let mut offset = 8;
    for _ in 1..5 {
        let len = u32::from_be_bytes(bytes[offset + 1..offset + 5].try_into().unwrap()) as usize;
        offset += 9 + len;
    }
    bytes[offset + 9 + 40] ^= 0x01;
    std::fs::write(&segment, bytes).unwrap();
    let r = verify_data_dir(&data, &c.cast.genesis, &mut |_, _| {}).map(|r| r.blocks);
    assert_fails_at(r, 5, "CRC32C");
}

#[test]
fn an_edited_block_with_a_fixed_checksum_is_caught_by_hashes() {
    let c = chain();
    let mut blocks = c.blocks.clone();
    blocks[6].block.header.time_ms += 1;
    assert_fails_at(c.verify_export(&c.write_export("t.tlx", &blocks)), 7, "certificate");
}

#[test]
fn a_deleted_block_is_caught() {
    let c = chain();
    let mut blocks = c.blocks.clone();
    blocks.remove(3);
    assert_fails_at(c.verify_export(&c.write_export("t.tlx", &blocks)), 4, "height is 5");
}

#[test]
fn swapped_blocks_are_caught() {
    let c = chain();
    let mut blocks = c.blocks.clone();
    blocks.swap(7, 8);
    assert_fails_at(c.verify_export(&c.write_export("t.tlx", &blocks)), 8, "height is 9");
}

#[test]
fn a_duplicated_block_is_caught() {
    let c = chain();
    let mut blocks = c.blocks.clone();
    blocks.insert(5, blocks[4].clone());
    assert_fails_at(c.verify_export(&c.write_export("t.tlx", &blocks)), 6, "height is 5");
}

#[test]
fn a_certificate_signature_swapped_for_another_validators_is_caught() {
    let c = chain();
    let mut blocks = c.blocks.clone();
    let sigs = &mut blocks[2].certificate.signatures;
    let other = sigs[1].signature;
    sigs[0].signature = other;
    assert_fails_at(c.verify_export(&c.write_export("t.tlx", &blocks)), 3, "does not verify");
    // Naming an absent validator on a copied signature fails too.
    let mut blocks = c.blocks.clone();
    let absent = c.cast.validator_keys[0].public_key();
    let sigs = &mut blocks[2].certificate.signatures;
    sigs.retain(|s| s.validator != absent);
    sigs[0].validator = absent;
    sigs.sort_by_key(|s| s.validator);
    assert_fails_at(c.verify_export(&c.write_export("t2.tlx", &blocks)), 3, "does not verify");
    // Two signatures of one validator do not make a quorum.
    let mut blocks = c.blocks.clone();
    let sigs = &mut blocks[2].certificate.signatures;
    sigs.truncate(2);
    let dup = sigs[1].clone();
    sigs.push(dup);
    assert_fails_at(c.verify_export(&c.write_export("t3.tlx", &blocks)), 3, "ascending");
    // Too few signers.
    let mut blocks = c.blocks.clone();
    blocks[2].certificate.signatures.truncate(2);
    assert_fails_at(c.verify_export(&c.write_export("t4.tlx", &blocks)), 3, "more than 2/3");
}

#[test]
fn an_altered_event_signature_is_caught() {
    let c = chain();
    let mut blocks = c.blocks.clone();
    blocks[9].block.events[1].signature.0[0] ^= 0x80;
    assert_fails_at(c.verify_export(&c.write_export("t.tlx", &blocks)), 10, "BAD_SIGNATURE");
}

#[test]
fn a_forged_validator_set_is_caught() {
    let c = chain();
    let forged: Vec<SigningKey> =
        (0..4).map(|i| SigningKey::from_seed_label(&format!("forger-{i}"))).collect();
    let forged_refs: Vec<&SigningKey> = forged.iter().collect();
    // A block claiming a different validator set, certified by it.
    let mut blocks = c.blocks.clone();
    let set = ValidatorSet::new(forged.iter().map(|k| (k.public_key(), 10)).collect());
    blocks[4].block.header.validators_hash = set.hash;
    blocks[4].block.header.proposer = forged[0].public_key();
    c.recertify(&mut blocks[4], &forged_refs);
    assert_fails_at(c.verify_export(&c.write_export("t.tlx", &blocks)), 5, "validators_hash");
    // Keeping the genuine set hash but signing with forged keys.
    let mut blocks = c.blocks.clone();
    c.recertify(&mut blocks[4], &forged_refs);
    assert_fails_at(
        c.verify_export(&c.write_export("t2.tlx", &blocks)),
        5,
        "not in the validator set",
    );
}

#[test]
fn a_wrong_app_hash_is_caught_by_replaying_the_rules_even_with_a_valid_certificate() {
    let c = chain();
    let mut blocks = c.blocks.clone();
    blocks[3].block.header.app_hash.0[0] ^= 1;
    let keys: Vec<&SigningKey> = c.cast.validator_keys.iter().collect();
    c.recertify(&mut blocks[3], &keys);
    assert_fails_at(c.verify_export(&c.write_export("t.tlx", &blocks)), 4, "app_hash");
}

#[test]
fn truncation_is_caught() {
    let c = chain();
    // An export cut inside a frame, and one cut at a frame boundary (its trailer gone).
    let bytes = std::fs::read(c.export_path()).unwrap();
    let cut = c.dir.path().join("cut.tlx");
    std::fs::write(&cut, &bytes[..bytes.len() - 30]).unwrap();
    assert!(c.verify_export(&cut).is_err());
    let mut no_trailer = c.write_export("nt.tlx", &c.blocks[..8]);
    let b = std::fs::read(&no_trailer).unwrap();
    let trailer_len = 9 + codec::encode(&ExportTrailer {
        block_count: 0,
        tip_hash: Default::default(),
        app_hash: Default::default(),
    })
    .unwrap()
    .len();
    no_trailer = c.dir.path().join("nt2.tlx");
    std::fs::write(&no_trailer, &b[..b.len() - trailer_len]).unwrap();
    assert_fails_at(c.verify_export(&no_trailer), 9, "truncated");
    // A data dir whose log lost its last blocks at a frame boundary: the index knows better.
    let data = c.dir.path().join("data");
    let segment = data.join("blocks/blocks-00000000.log");
    let log = std::fs::read(&segment).unwrap();
    let mut offset = 8;
    for _ in 1..=10 {
        let len = u32::from_be_bytes(log[offset + 1..offset + 5].try_into().unwrap()) as usize;
        offset += 9 + len;
    }
    std::fs::write(&segment, &log[..offset]).unwrap();
    let r = verify_data_dir(&data, &c.cast.genesis, &mut |_, _| {}).map(|r| r.blocks);
    assert_fails_at(r, 11, "truncated");
    // ... and one cut inside a frame.
    std::fs::write(&segment, &log[..offset - 100]).unwrap();
    let r = verify_data_dir(&data, &c.cast.genesis, &mut |_, _| {}).map(|r| r.blocks);
    // (the index's committed height makes the cut frame damage, not an unfinished write)
    assert_fails_at(r, 10, "truncated");
}

#[test]
fn a_foreign_genesis_is_caught() {
    let c = chain();
    let other = Cast::deterministic(4, T0 - 999).unwrap();
    let r = verify_export(&c.export_path(), &other.genesis, &mut |_, _| {}).map(|r| r.blocks);
    assert_fails_at(r, 0, "foreign genesis");
    let r = verify_data_dir(&c.dir.path().join("data"), &other.genesis, &mut |_, _| {})
        .map(|r| r.blocks);
    assert_fails_at(r, 1, "belongs to chain");
}

#[test]
fn export_reader_reports_items_in_order() {
    let c = chain();
    let file = std::fs::File::open(c.export_path()).unwrap();
    let mut reader = ExportReader::new(file).unwrap();
    let mut n = 0;
    loop {
        match reader.next_item().unwrap() {
            ExportItem::Block(b) => {
                n += 1;
                assert_eq!(b.block.header.height, n);
            }
            ExportItem::End(t) => {
                assert_eq!(t.block_count, BLOCKS);
                break;
            }
        }
    }
}
