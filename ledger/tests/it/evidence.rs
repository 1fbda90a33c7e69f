//! Evidence bundles (every tampering named by its code), the bundle test vector, the JSONL
//! export (verified like the binary one) and split-view detection on a forked chain.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use tradeloop_crypto::{Hash, SigningKey};
use tradeloop_ledger::evidence::audit::verify_export;
use tradeloop_ledger::evidence::compare::{compare, Comparison, Side};
use tradeloop_ledger::evidence::proof::{
    event_bundle, trade_bundle, verify_bundle, EvidenceBundle,
};
use tradeloop_ledger::export::{open_export, ExportItem};
use tradeloop_ledger::model::block::CertifiedBlock;
use tradeloop_ledger::sample::{trade_events, Cast};
use tradeloop_ledger::{Genesis, Ledger, SignedEvent};

use crate::support::T0;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/evidence").join(name)
}

/// A 4-validator chain (power 10 each) of one sample trade, 3 events a block, each block
/// certified by validators 1..=3.
fn four_validator_chain() -> (Cast, tempfile::TempDir, Ledger) {
    let cast = Cast::deterministic(4, T0 - 1000).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("data"), cast.genesis.clone()).unwrap();
    let events = trade_events(&cast, 1, T0);
    for (i, chunk) in events.chunks(3).enumerate() {
        cast.commit(&mut ledger, chunk, T0 + 1000 * i as u64, 0, &[1, 2, 3]).unwrap();
    }
    (cast, dir, ledger)
}

fn codes(bundle: &EvidenceBundle, genesis: &Genesis) -> Vec<&'static str> {
    let report = verify_bundle(bundle.to_json().as_bytes(), genesis);
    let mut codes: Vec<&'static str> = report.failures.iter().map(|f| f.code).collect();
    codes.dedup();
    codes
}

#[test]
fn every_tampering_of_a_bundle_is_named() {
    let (cast, _dir, ledger) = four_validator_chain();
    let g = &cast.genesis;
    let events = trade_events(&cast, 1, T0);
    let good = event_bundle(&ledger, &events[4].id()).unwrap();
    assert_eq!(codes(&good, g), Vec::<&str>::new());
    let report = verify_bundle(good.to_json().as_bytes(), g);
    assert_eq!(report.events[0].kind, "shipment.booked");
    assert_eq!((report.events[0].height, report.events[0].index), (2, 1));

    // A changed field of the body: the id, the signature and the inclusion no longer hold.
    let mut b = good.clone();
    let text = String::from_utf8(b.events[0].body.clone()).unwrap();
    b.events[0].body = text.replace("\"packages\":400", "\"packages\":401").into_bytes();
    assert_eq!(codes(&b, g), ["EVENT_ID", "EVENT_SIGNATURE"]);
    // ... and with the id recomputed to match, the signature and the proof fail.
    b.events[0].id =
        SignedEvent { body: b.events[0].body.clone(), signature: b.events[0].signature }.id();
    assert_eq!(codes(&b, g), ["EVENT_SIGNATURE", "INCLUSION_PROOF"]);

    let mut b = good.clone();
    b.events[0].signature.0[10] ^= 1;
    assert_eq!(codes(&b, g), ["EVENT_SIGNATURE"]);

    // A dropped certificate signature leaves 20 of 40: no quorum.
    let mut b = good.clone();
    b.blocks[0].certificate.signatures.pop();
    assert_eq!(codes(&b, g), ["CERTIFICATE"]);
    // A signature replaced by a repeat of another signer's.
    let mut b = good.clone();
    b.blocks[0].certificate.signatures[2] = b.blocks[0].certificate.signatures[1].clone();
    assert_eq!(codes(&b, g), ["CERTIFICATE"]);
    // A stranger's signature.
    let mut b = good.clone();
    let stranger = SigningKey::from_seed_label("stranger");
    b.blocks[0].certificate.signatures[0].validator = stranger.public_key();
    b.blocks[0].certificate.signatures.sort_by_key(|s| s.validator);
    assert_eq!(codes(&b, g), ["CERTIFICATE"]);

    // A changed header field: it no longer hashes to what the certificate signs.
    let mut b = good.clone();
    b.blocks[0].header.time_ms += 1;
    assert_eq!(codes(&b, g), ["HEADER_HASH", "CERTIFICATE"]);
    let mut b = good.clone();
    b.blocks[0].header.validators_hash = Hash([9; 32]);
    assert!(codes(&b, g).starts_with(&["VALIDATOR_SET", "HEADER_HASH"]));

    // The proof of another event of the same block, passed off for this one.
    let other = event_bundle(&ledger, &events[3].id()).unwrap();
    let mut b = good.clone();
    b.events[0].proof = other.events[0].proof.clone();
    assert_eq!(codes(&b, g), ["INCLUSION_PROOF"]);
    // Another block's event with this block's proof and position.
    let far = event_bundle(&ledger, &events[10].id()).unwrap();
    let mut b = good.clone();
    b.events[0].id = far.events[0].id;
    b.events[0].body = far.events[0].body.clone();
    b.events[0].signature = far.events[0].signature;
    assert_eq!(codes(&b, g), ["INCLUSION_PROOF"]);
    // The block it names is left out.
    let mut b = good.clone();
    b.events[0].height = 3;
    assert_eq!(codes(&b, g), ["BLOCK_MISSING"]);

    // A foreign genesis: the same cast with another chain id.
    let mut doc = g.doc.clone();
    doc.chain_id = "another-chain".into();
    let foreign = Genesis::from_doc(doc).unwrap();
    assert!(codes(&good, &foreign).starts_with(&["FOREIGN_GENESIS"]));

    // Malformed and future bundles say so and never panic.
    let mut json: Json = serde_json::from_str(&good.to_json()).unwrap();
    json["version"] = 2.into();
    assert_eq!(verify_bundle(json.to_string().as_bytes(), g).failures[0].code, "BUNDLE_VERSION");
    json["version"] = 1.into();
    json["extra"] = true.into();
    assert_eq!(verify_bundle(json.to_string().as_bytes(), g).failures[0].code, "BUNDLE_MALFORMED");
    let text = good.to_json();
    for cut in [0, 1, text.len() / 2, text.len() - 3] {
        assert!(!verify_bundle(&text.as_bytes()[..cut], g).ok());
    }
}

#[test]
fn a_trade_bundle_holds_each_block_once_and_every_event_of_the_trade() {
    let (cast, _dir, ledger) = four_validator_chain();
    let bundle = trade_bundle(&ledger, "PO-1").unwrap();
    let events = trade_events(&cast, 1, T0);
    assert_eq!(bundle.events.len(), events.len());
    let heights: BTreeSet<u64> = bundle.events.iter().map(|e| e.height).collect();
    assert_eq!(bundle.blocks.len(), heights.len());
    assert_eq!(bundle.blocks.len(), events.len().div_ceil(3));
    let report = verify_bundle(bundle.to_json().as_bytes(), &cast.genesis);
    assert!(report.ok(), "{:?}", report.failures);
    assert_eq!(report.events.len(), events.len());
    assert!(trade_bundle(&ledger, "PO-404").is_err());
}

/// The bundle of docs/formats.md: a one-validator chain of deterministic keys, the order
/// acceptance (event 1 of the first block of three). Regenerate with
/// `TRADELOOP_WRITE_VECTORS=1 cargo test -p tradeloop-ledger bundle_vector` (a format change).
#[test]
fn the_bundle_vector_is_stable_and_verifies() {
    let cast = Cast::deterministic(1, T0 - 1000).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("data"), cast.genesis.clone()).unwrap();
    let events = trade_events(&cast, 1, T0);
    ledger.append_local(&events[..3], T0 + 1000, &cast.validator_keys[0]).unwrap();
    let bundle = event_bundle(&ledger, &events[1].id()).unwrap();
    let genesis_json = cast.genesis.doc.to_json_bytes();
    if std::env::var_os("TRADELOOP_WRITE_VECTORS").is_some() {
        std::fs::create_dir_all(testdata("")).unwrap();
        std::fs::write(testdata("genesis.json"), &genesis_json).unwrap();
        std::fs::write(testdata("bundle-v1.json"), bundle.to_json()).unwrap();
    }
    assert_eq!(std::fs::read(testdata("genesis.json")).unwrap(), genesis_json);
    assert_eq!(std::fs::read_to_string(testdata("bundle-v1.json")).unwrap(), bundle.to_json());
    let genesis = Genesis::load(&testdata("genesis.json")).unwrap();
    let report = verify_bundle(&std::fs::read(testdata("bundle-v1.json")).unwrap(), &genesis);
    assert!(report.ok(), "{:?}", report.failures);
    assert_eq!(report.events[0].kind, "trade.order_accepted");
    assert_eq!(bundle.events[0].proof.len(), 2, "leaf 1 of 3: its sibling and the third leaf");
}

#[test]
fn a_jsonl_export_verifies_like_the_binary_one_and_fails_the_same_way() {
    let (cast, dir, ledger) = four_validator_chain();
    let binary = dir.path().join("chain.tlx");
    let jsonl = dir.path().join("chain.jsonl");
    tradeloop_ledger::export::binary::export(&ledger, &binary).unwrap();
    tradeloop_ledger::export::jsonl::export_jsonl(&ledger, &jsonl).unwrap();
    let g = &cast.genesis;
    let a = verify_export(&binary, g, &mut |_, _| {}).unwrap();
    let b = verify_export(&jsonl, g, &mut |_, _| {}).unwrap();
    assert_eq!(
        (a.blocks, a.events, a.tip_hash, a.app_hash),
        (b.blocks, b.events, b.tip_hash, b.app_hash)
    );
    // Both formats read back to the same blocks.
    let mut x = open_export(&binary).unwrap();
    let mut y = open_export(&jsonl).unwrap();
    assert_eq!((x.format(), y.format()), ("binary", "jsonl"));
    loop {
        match (x.next_item().unwrap(), y.next_item().unwrap()) {
            (ExportItem::Block(p), ExportItem::Block(q)) => assert_eq!(p, q),
            (ExportItem::End(p), ExportItem::End(q)) => {
                assert_eq!(p, q);
                break;
            }
            _ => panic!("the formats disagree"),
        }
    }
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let write = |name: &str, lines: &[String]| {
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    };
    let owned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let fail = |path: &Path| verify_export(path, g, &mut |_, _| {}).unwrap_err();
    // A changed certificate signature at height 2: the same message as for the binary format.
    let mut bad = owned.clone();
    let mut block: Json = serde_json::from_str(&bad[2]).unwrap();
    let sig = block["certificate"]["signatures"][0]["signature"].as_str().unwrap().to_string();
    let flipped = format!("{}{}", if sig.starts_with('0') { "1" } else { "0" }, &sig[1..]);
    block["certificate"]["signatures"][0]["signature"] = flipped.into();
    bad[2] = block.to_string();
    let f = fail(&write("sig.jsonl", &bad));
    assert_eq!(f.height, 2);
    assert!(f.reason.contains("does not verify"), "{f}");
    // A dropped block line.
    let mut bad = owned.clone();
    bad.remove(3);
    let f = fail(&write("gap.jsonl", &bad));
    assert_eq!(f.height, 3, "{f}");
    // Cut before the trailer: the same words as for a truncated binary export.
    let f = fail(&write("cut.jsonl", &owned[..owned.len() - 1]));
    assert!(f.reason.contains("without its trailer: it was truncated"), "{f}");
    // Re-indenting a block line with a JSON tool changes nothing that is checked.
    let mut pretty = owned.clone();
    let v: Json = serde_json::from_str(&pretty[1]).unwrap();
    pretty[1] = serde_json::to_string(&v).unwrap();
    assert!(verify_export(&write("re.jsonl", &pretty), g, &mut |_, _| {}).is_ok());
    // A file that is neither format.
    let f = fail(&write("junk.txt", &["hello".to_string()]));
    assert!(f.reason.contains("neither the binary format"), "{f}");
}

/// A genesis in which one validator holds more than 1/3 of the power (15 of 35): it and either
/// other validator make a quorum, so by signing twice it certifies two different blocks.
fn fork_cast() -> Cast {
    let mut cast = Cast::deterministic(3, T0 - 1000).unwrap();
    let mut doc = cast.genesis.doc.clone();
    doc.validators[2].power = 15;
    cast.genesis = Genesis::from_doc(doc).unwrap();
    cast
}

/// Two data dirs of `fork_cast`'s chain, the same for `common` blocks and then different.
pub fn forked_chains(cast: &Cast, root: &Path, common: usize) -> (PathBuf, PathBuf) {
    let a_dir = root.join("a");
    let b_dir = root.join("b");
    let mut a = Ledger::open(&a_dir, cast.genesis.clone()).unwrap();
    let mut b = Ledger::open(&b_dir, cast.genesis.clone()).unwrap();
    let events = trade_events(cast, 1, T0);
    for (i, chunk) in events[..common * 2].chunks(2).enumerate() {
        for ledger in [&mut a, &mut b] {
            cast.commit(ledger, chunk, T0 + 1000 * i as u64, 0, &[0, 2]).unwrap();
        }
    }
    // The shared key signs both sides of the fork: A with validator 0, B with validator 1.
    let next = &events[common * 2..common * 2 + 2];
    cast.commit(&mut a, next, T0 + 100_000, 0, &[0, 2]).unwrap();
    cast.commit(&mut b, &next[..1], T0 + 100_000, 0, &[1, 2]).unwrap();
    (a_dir, b_dir)
}

fn blocks_of(dir: &Path, genesis: &Genesis) -> Vec<CertifiedBlock> {
    let ledger = Ledger::open_read_only(dir, genesis.clone()).unwrap();
    (1..=ledger.tip().height).map(|h| ledger.block(h).unwrap()).collect()
}

fn run_compare(genesis: &Genesis, a: &[CertifiedBlock], b: &[CertifiedBlock]) -> Comparison {
    let mut ia = a.iter().cloned();
    let mut ib = b.iter().cloned();
    compare(genesis, &mut || Ok(ia.next()), &mut || Ok(ib.next())).unwrap()
}

#[test]
fn compare_finds_same_prefix_and_a_split_view_naming_the_equivocator() {
    let cast = fork_cast();
    let root = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = forked_chains(&cast, root.path(), 3);
    let g = &cast.genesis;
    let a = blocks_of(&a_dir, g);
    let b = blocks_of(&b_dir, g);
    assert_eq!((a.len(), b.len()), (4, 4));
    assert!(matches!(run_compare(g, &a, &a), Comparison::Same { height: 4, .. }));
    match run_compare(g, &a[..2], &a) {
        Comparison::Prefix { longer: Side::B, common_height: 2, longer_height: 4, .. } => {}
        other => panic!("{other:?}"),
    }
    let Comparison::Split(split) = run_compare(g, &a, &b) else { panic!("no split found") };
    assert_eq!(split.height, 4);
    assert_ne!(split.a.hash, split.b.hash);
    assert_eq!(
        (split.a_certificate_error.clone(), split.b_certificate_error.clone()),
        (None, None)
    );
    let shared = cast.validator_keys[2].public_key();
    assert_eq!(split.equivocators.len(), 1);
    let e = &split.equivocators[0];
    assert_eq!(
        (e.validator, e.power, split.equivocating_power, split.total_power),
        (shared, 15, 15, 35)
    );
    assert_eq!(e.participant, g.doc.validators[2].participant);
    assert!(3 * split.equivocating_power > split.total_power, "a fork needs more than 1/3");
    // The signatures are the evidence: each verifies over its own block's precommit.
    for (p, header) in [(&e.in_a, &split.a.header), (&e.in_b, &split.b.header)] {
        let bytes = tradeloop_ledger::model::block::vote_sign_bytes(
            &g.hash,
            tradeloop_ledger::model::block::VoteType::Precommit,
            header.height,
            p.round,
            Some(&header.hash()),
        );
        assert!(e.validator.verify(&bytes, &p.signature).is_ok());
    }
    // A copy whose block at the split is not validly certified is named, with no equivocator.
    let mut forged = b.clone();
    forged[3].certificate.signatures.pop();
    let Comparison::Split(split) = run_compare(g, &a, &forged) else { panic!() };
    assert!(split.b_certificate_error.is_some() && split.equivocators.is_empty());
    // A copy that is not well formed is refused, naming the copy and height.
    let mut broken = a.clone();
    broken[1].block.events.pop();
    let mut ia = a.iter().cloned();
    let mut ib = broken.iter().cloned();
    let err = compare(g, &mut || Ok(ia.next()), &mut || Ok(ib.next())).unwrap_err();
    assert!(err.to_string().starts_with("copy B at height 2"), "{err}");
}
