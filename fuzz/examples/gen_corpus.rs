//! Writes the seed corpus of every fuzz target into `fuzz/corpus/<target>/` from a real sample
//! chain (the fixed cast of `tradeloop_fuzz::cast`): envelopes, event bodies, blocks, a block-log
//! segment, WAL records and a WAL file, a sign-state file, an export and the genesis, plus edge
//! cases. Deterministic: rerunning it rewrites the same files.
//!
//! Run from `fuzz/`: `cargo +nightly run --example gen_corpus` (scripts/fuzz-ci does not; the
//! corpus is committed).

use std::path::{Path, PathBuf};

use malachite_core_consensus::{Input, ProposedValue};
use malachite_core_types::{
    NilOrVal, PolkaCertificate, PolkaSignature, Round, SignedMessage, Timeout, TimeoutKind,
    Validity, ValueOrigin, VoteType,
};
use tradeloop_crypto::merkle;
use tradeloop_crypto::{Hash, Signature};
use tradeloop_ledger::sample::trade_events;
use tradeloop_ledger::encoding::{codec, frame};
use tradeloop_ledger::export::binary;
use tradeloop_ledger::{CertifiedBlock, Ledger, SignedEvent};
use tradeloop_node::consensus::context::{Address, BlockHash, Height, Proposal, Vote};
use tradeloop_node::consensus::guard::{Position, SignGuard, Step};
use tradeloop_node::consensus::wal::Wal;
use tradeloop_node::consensus::walrecord::WalRecord;
use tradeloop_node::net::message;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Corpus {
    root: PathBuf,
}

impl Corpus {
    fn put(&self, target: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
        Ok(())
    }
}

/// The sample chain every corpus is cut from.
struct Chain<'a> {
    cast: &'a tradeloop_ledger::sample::Cast,
    genesis: &'a tradeloop_ledger::Genesis,
    ledger: Ledger,
    events: Vec<SignedEvent>,
    blocks: Vec<CertifiedBlock>,
    scratch: tempfile::TempDir,
}

fn main() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let corpus = Corpus { root };
    let chain = sample_chain()?;
    event_corpus(&corpus, &chain)?;
    canonical_json_corpus(&corpus, &chain)?;
    block_corpus(&corpus, &chain)?;
    jsonl_and_bundle_corpus(&corpus, &chain)?;
    // Genesis: as written by `tradeloop genesis` (pretty) and canonical.
    corpus.put("genesis_parse", "pretty", &chain.genesis.doc.to_json_bytes())?;
    corpus.put("genesis_parse", "canonical", &chain.genesis.canonical)?;
    let records = wal_corpus(&corpus, &chain)?;
    let guard = sign_state_corpus(&corpus, &chain)?;
    record_corpus(&corpus, &chain, &guard)?;
    merkle_corpus(&corpus)?;
    peer_corpus(&corpus, &chain, &records)?;
    println!("corpus written to {}", corpus.root.display());
    Ok(())
}

/// A chain of three blocks holding sample trade 0 (19 events).
fn sample_chain() -> Result<Chain<'static>> {
    let cast = tradeloop_fuzz::cast();
    let genesis = &cast.genesis;
    let scratch = tempfile::tempdir()?;
    let mut ledger = Ledger::open(&scratch.path().join("data"), genesis.clone())?;
    let events = trade_events(cast, 0, tradeloop_fuzz::GENESIS_TIME_MS + 2000);
    let validator = &cast.validator_keys[0];
    let mut blocks: Vec<CertifiedBlock> = Vec::new();
    for (i, chunk) in events.chunks(8).enumerate() {
        let time = tradeloop_fuzz::GENESIS_TIME_MS + 3000 + i as u64 * 1000;
        let (block, rejected) = ledger.append_local(chunk, time, validator)?;
        if !rejected.is_empty() {
            return Err(format!("sample events rejected: {rejected:?}").into());
        }
        blocks.extend(block);
    }
    Ok(Chain { cast, genesis, ledger, events, blocks, scratch })
}

/// Events: envelopes, bodies re-signed by the event_fields target, canonical bodies.
fn event_corpus(corpus: &Corpus, chain: &Chain) -> Result<()> {
    let Chain { cast, genesis, events, .. } = chain;
    for (i, event) in events.iter().enumerate() {
        corpus.put(
            "event_envelope",
            &format!("trade0-{i:02}"),
            event.to_envelope_json().as_bytes(),
        )?;
        corpus.put("canonical_json", &format!("body-{i:02}"), &event.body)?;
        let checked = tradeloop_ledger::check_event(genesis, event)
            .map_err(|r| format!("sample event {i}: {}", r.message))?;
        let who = cast.keys.keys().position(|id| *id == checked.author).unwrap_or(0);
        let mut body: serde_json::Value = serde_json::from_slice(&event.body)?;
        if let Some(map) = body.as_object_mut() {
            for common in ["chain", "author", "key"] {
                map.remove(common);
            }
        }
        let mut bytes = vec![u8::try_from(who)?];
        bytes.extend(serde_json::to_vec(&body)?);
        corpus.put("event_fields", &format!("trade0-{i:02}"), &bytes)?;
    }
    let first = &events[0];
    let pretty = serde_json::to_vec_pretty(&serde_json::from_str::<serde_json::Value>(
        &first.to_envelope_json(),
    )?)?;
    corpus.put("event_envelope", "pretty", &pretty)?;
    let body = String::from_utf8_lossy(&first.body);
    let sig = first.signature.to_hex();
    for (name, text) in [
        ("extra-field", format!("{{\"body\":{body},\"signature\":\"{sig}\",\"x\":1}}")),
        ("short-signature", format!("{{\"body\":{body},\"signature\":\"{}\"}}", &sig[..126])),
        ("body-not-object", format!("{{\"body\":[1],\"signature\":\"{sig}\"}}")),
        ("duplicate-key", format!("{{\"body\":{body},\"body\":{{}},\"signature\":\"{sig}\"}}")),
        ("float", format!("{{\"body\":{{\"a\":1.5}},\"signature\":\"{sig}\"}}")),
    ] {
        corpus.put("event_envelope", name, text.as_bytes())?;
    }
    Ok(())
}

/// Canonical JSON edge cases.
fn canonical_json_corpus(corpus: &Corpus, chain: &Chain) -> Result<()> {
    let genesis = chain.genesis;
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    for (name, text) in [
        ("genesis", String::from_utf8_lossy(&genesis.canonical).into_owned()),
        ("depth-64", deep(64)),
        ("depth-65", deep(65)),
        ("utf16-order", "{\"\u{1f600}\":2,\"\u{fb01}\":1}".into()),
        ("utf8-order", "{\"\u{fb01}\":1,\"\u{1f600}\":2}".into()),
        ("escapes", "\"\\u0000\\u001f\\b\\f\\n\\r\\t\\\"\\\\\u{7f}é\u{2028}\"".into()),
        ("max-int", "[9007199254740991,-9007199254740991,0,-1]".into()),
        ("too-big", "9007199254740992".into()),
        ("minus-zero", "-0".into()),
        ("whitespace", "{ \"a\" : 1 }".into()),
    ] {
        corpus.put("canonical_json", name, text.as_bytes())?;
    }
    Ok(())
}

/// Blocks: header, block, certified block; frames; the segment; the export.
fn block_corpus(corpus: &Corpus, chain: &Chain) -> Result<()> {
    let Chain { genesis, ledger, blocks, scratch, .. } = chain;
    for (i, b) in blocks.iter().enumerate() {
        corpus.put(
            "block_decode",
            &format!("header-{i}"),
            &codec::encode(&b.block.header).map_err(|e| e.to_string())?,
        )?;
        corpus.put(
            "block_decode",
            &format!("block-{i}"),
            &codec::encode(&b.block).map_err(|e| e.to_string())?,
        )?;
        corpus.put(
            "block_decode",
            &format!("certified-{i}"),
            &codec::encode(b).map_err(|e| e.to_string())?,
        )?;
    }
    let segment = std::fs::read(scratch.path().join("data/blocks/blocks-00000000.log"))?;
    corpus.put("blocklog_segment", "three-blocks", &segment)?;
    corpus.put("blocklog_segment", "torn-tail", &segment[..segment.len() - 100])?;
    let mut zero_tail = segment.clone();
    zero_tail.extend([0u8; 64]);
    corpus.put("blocklog_segment", "zero-tail", &zero_tail)?;
    corpus.put("blocklog_segment", "magic-only", b"TLBLOG01")?;
    corpus.put("blocklog_segment", "torn-magic", b"TLBL")?;
    corpus.put("frame_read", "segment-frames", &segment[8..])?;
    corpus.put(
        "frame_read",
        "two-frames",
        &[frame::encode(1, b"a"), frame::encode(3, b"bc")].concat(),
    )?;
    corpus.put("frame_read", "zeros", &[0u8; 32])?;
    corpus.put("frame_read", "length-too-big", &[2, 0x04, 0, 0, 1, 0, 0, 0, 0, 7])?;

    let export_path = scratch.path().join("chain.tlx");
    binary::export(ledger, &export_path)?;
    let exported = std::fs::read(&export_path)?;
    tradeloop_ledger::evidence::audit::verify_export(&export_path, genesis, &mut |_, _| {})
        .map_err(|f| format!("the sample export does not verify: {}", f.reason))?;
    corpus.put("export_read", "three-blocks", &exported)?;
    corpus.put("export_read", "truncated", &exported[..exported.len() - 20])?;
    corpus.put("frame_read", "export-frames", &exported[12..])?;
    let empty_path = scratch.path().join("empty.tlx");
    let empty = Ledger::open(&scratch.path().join("empty"), (*genesis).clone())?;
    binary::export(&empty, &empty_path)?;
    corpus.put("export_read", "no-blocks", &std::fs::read(&empty_path)?)?;
    Ok(())
}

/// The same chains as JSONL exports, and evidence bundles of one event and of the trade.
fn jsonl_and_bundle_corpus(corpus: &Corpus, chain: &Chain) -> Result<()> {
    let Chain { genesis, ledger, events, scratch, .. } = chain;
    let empty = Ledger::open(&scratch.path().join("empty-jsonl"), (*genesis).clone())?;
    let jsonl_path = scratch.path().join("chain.jsonl");
    tradeloop_ledger::export::jsonl::export_jsonl(ledger, &jsonl_path)?;
    let jsonl = std::fs::read(&jsonl_path)?;
    corpus.put("jsonl_read", "three-blocks", &jsonl)?;
    corpus.put("jsonl_read", "truncated", &jsonl[..jsonl.len() - 20])?;
    let empty_jsonl = scratch.path().join("empty.jsonl");
    tradeloop_ledger::export::jsonl::export_jsonl(&empty, &empty_jsonl)?;
    corpus.put("jsonl_read", "no-blocks", &std::fs::read(&empty_jsonl)?)?;
    let bundle = tradeloop_ledger::evidence::proof::event_bundle(ledger, &events[1].id())?;
    corpus.put("evidence_bundle", "event-1", bundle.to_json().as_bytes())?;
    let trade = tradeloop_ledger::evidence::proof::trade_bundle(ledger, "PO-0")?;
    corpus.put("evidence_bundle", "trade-0", trade.to_json().as_bytes())?;
    Ok(())
}

/// WAL records of every kind, and a WAL file holding them; returns the records.
fn wal_corpus(corpus: &Corpus, chain: &Chain) -> Result<Vec<(&'static str, WalRecord)>> {
    let Chain { cast, blocks, scratch, .. } = chain;
    let validator = &cast.validator_keys[0];
    let who = Address(validator.public_key());
    let h = BlockHash(Hash([0xab; 32]));
    let sig = Signature([0x5a; 64]);
    let vote = |vote_type, value| Vote {
        vote_type,
        height: Height(1),
        round: Round::new(0),
        value,
        validator: who,
    };
    let proposal = Proposal {
        height: Height(1),
        round: Round::new(1),
        value: h,
        pol_round: Round::Nil,
        proposer: who,
    };
    let proposed = ProposedValue {
        height: Height(1),
        round: Round::new(1),
        valid_round: Round::Nil,
        proposer: who,
        value: h,
        validity: Validity::Valid,
    };
    let mut records = vec![
        (
            "prevote-nil",
            WalRecord::Input(Input::Vote(SignedMessage::new(
                vote(VoteType::Prevote, NilOrVal::Nil),
                sig,
            ))),
        ),
        (
            "precommit",
            WalRecord::Input(Input::Vote(SignedMessage::new(
                vote(VoteType::Precommit, NilOrVal::Val(h)),
                sig,
            ))),
        ),
        ("proposal", WalRecord::Input(Input::Proposal(SignedMessage::new(proposal, sig)))),
        ("proposed-value", WalRecord::Input(Input::ProposedValue(proposed, ValueOrigin::Sync))),
        (
            "timeout-propose",
            WalRecord::Input(Input::TimeoutElapsed(Timeout {
                kind: TimeoutKind::Propose,
                round: Round::new(2),
            })),
        ),
        (
            "timeout-finalize",
            WalRecord::Input(Input::TimeoutElapsed(Timeout {
                kind: TimeoutKind::FinalizeHeight(std::time::Duration::from_millis(1500)),
                round: Round::new(0),
            })),
        ),
        (
            "polka",
            WalRecord::Input(Input::PolkaCertificate(PolkaCertificate {
                height: Height(1),
                round: Round::new(0),
                value_id: h,
                polka_signatures: vec![PolkaSignature::new(who, sig)],
            })),
        ),
    ];
    if let Some(b) = blocks.first() {
        records.push(("block", WalRecord::Block(Box::new(b.block.clone()))));
    }
    let wal_dir = scratch.path().join("wal");
    let (mut wal, _) = Wal::open(&wal_dir, 1)?;
    for (name, record) in &records {
        let bytes = record.encode()?;
        corpus.put("wal_record", name, &bytes)?;
        wal.append(&bytes)?;
    }
    drop(wal);
    let wal_file = std::fs::read(wal_dir.join(format!("wal-{:020}.log", 1)))?;
    corpus.put("wal_file", "all-kinds", &wal_file)?;
    corpus.put("wal_file", "torn", &wal_file[..wal_file.len() - 7])?;
    corpus.put("wal_file", "header-only", &wal_file[..16])?;
    Ok(records)
}

/// The sign-state file after a precommit at height 3; returns the guard.
fn sign_state_corpus(corpus: &Corpus, chain: &Chain) -> Result<SignGuard> {
    let Chain { cast, genesis, scratch, .. } = chain;
    let validator = &cast.validator_keys[0];
    let guard_path = scratch.path().join("sign-state.bin");
    let mut guard = SignGuard::open(&guard_path, genesis.hash, validator.public_key())?;
    guard.permit(Position { height: 3, round: 1, step: Step::Precommit }, Some(Hash([9; 32])))?;
    corpus.put("sign_state", "precommit", &std::fs::read(&guard_path)?)?;
    guard.permit(Position { height: 4, round: 0, step: Step::Prevote }, None)?;
    corpus.put("sign_state", "prevote-nil", &std::fs::read(&guard_path)?)?;
    Ok(guard)
}

/// Small stored records: the tip, a block location, the export trailer, a sign record.
fn record_corpus(corpus: &Corpus, chain: &Chain, guard: &SignGuard) -> Result<()> {
    let ledger = &chain.ledger;
    let tip = ledger.tip().clone();
    corpus.put("record_decode", "tip", &codec::encode(&tip).map_err(|e| e.to_string())?)?;
    if let Some(location) = ledger.log().location(1) {
        corpus.put(
            "record_decode",
            "location",
            &codec::encode(&location).map_err(|e| e.to_string())?,
        )?;
    }
    let trailer = tradeloop_ledger::export::ExportTrailer {
        block_count: tip.height,
        tip_hash: tip.hash,
        app_hash: tip.app_hash,
    };
    corpus.put("record_decode", "trailer", &codec::encode(&trailer).map_err(|e| e.to_string())?)?;
    if let Some(record) = guard.last() {
        corpus.put(
            "record_decode",
            "sign-record",
            &codec::encode(record).map_err(|e| e.to_string())?,
        )?;
    }
    Ok(())
}

/// Merkle: a valid proof for each verifier's "arbitrary" mode (even first byte) and shapes
/// for the property mode (odd first byte: leaf count, index or old size, flip, leaf length).
fn merkle_corpus(corpus: &Corpus) -> Result<()> {
    let leaves: Vec<Vec<u8>> = (0u8..7).map(|i| vec![i; 3]).collect();
    let mut inclusion = vec![0u8, 3];
    inclusion.extend_from_slice(&leaves[5]);
    inclusion.extend_from_slice(&5u64.to_be_bytes());
    inclusion.extend_from_slice(&7u64.to_be_bytes());
    inclusion.extend_from_slice(&merkle::root(&leaves).0);
    for p in merkle::inclusion_proof(&leaves, 5).unwrap_or_default() {
        inclusion.extend_from_slice(&p.0);
    }
    corpus.put("merkle_inclusion", "valid-5-of-7", &inclusion)?;
    let mut consistency = vec![0u8];
    consistency.extend_from_slice(&3u64.to_be_bytes());
    consistency.extend_from_slice(&7u64.to_be_bytes());
    consistency.extend_from_slice(&merkle::root(&leaves[..3]).0);
    consistency.extend_from_slice(&merkle::root(&leaves).0);
    for p in merkle::consistency_proof(&leaves, 3).unwrap_or_default() {
        consistency.extend_from_slice(&p.0);
    }
    corpus.put("merkle_consistency", "valid-3-to-7", &consistency)?;
    for (name, shape) in
        [("tree-1", [1u8, 0, 0, 0, 0, 0, 0]), ("tree-300", [1, 1, 43, 0, 150, 9, 6])]
    {
        let mut bytes = shape.to_vec();
        bytes.extend((0u8..=255).cycle().take(400));
        corpus.put("merkle_inclusion", name, &bytes)?;
        corpus.put("merkle_consistency", name, &bytes)?;
    }
    Ok(())
}

/// What peers send: consensus messages framed for gossip (the WAL's votes, proposal and polka
/// certificate; a block's proposal parts), event batches, requests and responses.
fn peer_corpus(
    corpus: &Corpus,
    chain: &Chain,
    records: &[(&'static str, WalRecord)],
) -> Result<()> {
    let frame = |counter: u64, message: &[u8]| message::gossip_frame(counter, message);
    for (name, record) in records {
        let message = record.encode()?;
        if message::decode_consensus(&message).is_ok() {
            corpus.put("peer_consensus", name, &frame(7, &message))?;
        }
    }
    let validator = &chain.cast.validator_keys[0];
    for (i, b) in chain.blocks.iter().enumerate() {
        let parts =
            message::split_block(&b.block, Round::new(0), Round::Nil, validator, &chain.genesis.hash)?;
        for part in &parts {
            let message = message::encode_consensus(&message::ConsensusWire::Part(part.clone()))?;
            corpus.put(
                "peer_consensus",
                &format!("part-{i}-{}", part.index),
                &frame(1, &message),
            )?;
        }
    }
    corpus.put("peer_consensus", "counter-only", &frame(3, &[]))?;
    for (i, events) in chain.events.chunks(8).enumerate() {
        let batch = message::EventBatch { events: events.to_vec() };
        corpus.put("peer_events", &format!("batch-{i}"), &batch.encode()?)?;
    }
    let tip = chain.ledger.tip();
    let ids = chain.events.iter().take(3).map(SignedEvent::id).collect();
    let requests = [
        ("status", message::Request::Status),
        ("blocks", message::Request::Blocks { from: 1, count: message::MAX_SYNC_BLOCKS }),
        ("events", message::Request::Events { ids }),
    ];
    for (name, request) in requests {
        corpus.put(
            "peer_request",
            &format!("request-{name}"),
            &[&[0], &request.encode()?[..]].concat(),
        )?;
    }
    let responses = [
        (
            "status",
            message::Response::Status {
                chain: chain.genesis.hash,
                height: tip.height,
                tip_hash: tip.hash,
            },
        ),
        ("blocks", message::Response::Blocks(chain.blocks.iter().take(2).cloned().collect())),
        ("events", message::Response::Events(chain.events.iter().take(3).cloned().collect())),
        ("error", message::Response::Error("no such height".into())),
    ];
    for (name, response) in responses {
        corpus.put(
            "peer_request",
            &format!("response-{name}"),
            &[&[1], &response.encode()?[..]].concat(),
        )?;
    }
    Ok(())
}
