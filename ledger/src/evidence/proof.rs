//! Evidence bundles: a small JSON file a third party checks offline with the genesis alone.
//!
//! ```text
//! bundle = {format, version, chain, blocks: [{header, certificate}], events: [{height, index,
//!           id, body (hex of the canonical body), signature, proof: [hex, ...]}]}
//!
//! event:   signature (verify_strict) by a key the genesis lists for its author; id = SHA-256(
//!          "tradeloop/event/v1\0" || body)
//! proof:   RFC 9162 §2.1.3 inclusion of the id (leaf = the 32 id bytes) at `index` in a tree
//!          of `event_count` leaves whose root is the header's events_root
//! header:  block_hash = SHA-256("tradeloop/block/v1\0" || bincode(header)) is what the
//!          certificate signs; chain and validators_hash are the genesis's
//! cert.:   precommits over (chain, height, round, block_hash) by distinct genesis validators
//!          holding more than 2/3 of the voting power
//! ```
//!
//! [`event_bundle`] and [`trade_bundle`] build a bundle from a [`Ledger`] (the CLI's `proof`; an
//! HTTP endpoint can call the same functions); [`verify_bundle`] checks one (`verify-proof`).
//! The format is in docs/formats.md ("Evidence bundle").

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tradeloop_crypto::{merkle, Hash, Signature};

use crate::model::block::{CertifiedBlock, CommitCertificate, Header};
use crate::model::event::{check_event, SignedEvent};
use crate::model::genesis::Genesis;
use crate::query::ChainRead;
use crate::rules::state::{Entity, OrderState, ShipmentState};
use crate::{encoding::codec, LedgerError, RejectCode};

/// The `format` field of every bundle.
pub const BUNDLE_FORMAT: &str = "tradeloop/evidence";
/// The bundle format version this build writes and reads.
pub const BUNDLE_VERSION: u32 = 1;
/// Most events in one bundle.
pub const MAX_BUNDLE_EVENTS: usize = 10_000;
/// Largest bundle file a verifier reads, in bytes: 64 MiB.
pub const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;
/// Longest inclusion proof: a tree of at most 2^32 leaves has at most 32 levels.
pub const MAX_PROOF_HASHES: usize = 32;

/// An evidence bundle: events with their inclusion proofs, and the headers and certificates of
/// the blocks that hold them (one per block, shared by its events).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceBundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// Always [`BUNDLE_VERSION`].
    pub version: u32,
    /// The genesis hash of the chain.
    pub chain: Hash,
    /// The blocks, in ascending height, each once.
    pub blocks: Vec<BundleBlock>,
    /// The events, in ledger order.
    pub events: Vec<BundleEvent>,
}

/// A block of a bundle: its header and commit certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleBlock {
    /// The header (its fields; the verifier re-encodes it to hash it).
    pub header: Header,
    /// The commit certificate.
    pub certificate: CommitCertificate,
}

/// An event of a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleEvent {
    /// Height of its block.
    pub height: u64,
    /// Its position in the block (the leaf index).
    pub index: u32,
    /// The event id.
    pub id: Hash,
    /// The canonical body bytes exactly as signed, hex.
    #[serde(with = "hex_bytes")]
    pub body: Vec<u8>,
    /// The ed25519 signature.
    pub signature: Signature,
    /// The RFC 9162 audit path of the id, bottom first.
    pub proof: Vec<Hash>,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(text.as_ref()).map_err(serde::de::Error::custom)
    }
}

/// Why a bundle could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// No such event, order or entity on this ledger.
    #[error("{0} is not on this ledger; check the id (64 hex) or the order id, and that --data-dir and --genesis name the chain it was committed to")]
    NotFound(String),
    /// The bundle would hold more events than [`MAX_BUNDLE_EVENTS`].
    #[error("the trade has {0} events, more than a bundle holds ({MAX_BUNDLE_EVENTS}); bundle its events one by one")]
    TooManyEvents(usize),
    /// Reading the ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl ProofError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ProofError::NotFound(_) => "NOT_FOUND",
            ProofError::TooManyEvents(_) => "TOO_MANY_EVENTS",
            ProofError::Ledger(e) => e.code(),
        }
    }
}

/// The bundle of events at `positions` (height, index) of the given blocks: each block's
/// header and certificate once, each event with its inclusion proof, in ledger order.
pub fn bundle_of(
    genesis: &Genesis,
    blocks: &BTreeMap<u64, CertifiedBlock>,
    positions: &BTreeSet<(u64, u32)>,
) -> Result<EvidenceBundle, LedgerError> {
    let mut events = Vec::with_capacity(positions.len());
    let mut used = BTreeSet::new();
    for &(height, index) in positions {
        let certified =
            blocks.get(&height).ok_or_else(|| LedgerError::NotFound(format!("block {height}")))?;
        let leaves: Vec<[u8; 32]> = certified.block.events.iter().map(|e| e.id().0).collect();
        let signed = certified
            .block
            .events
            .get(index as usize)
            .ok_or_else(|| LedgerError::NotFound(format!("event {index} of block {height}")))?;
        let proof = merkle::inclusion_proof(&leaves, index as usize)
            .ok_or_else(|| LedgerError::NotFound(format!("event {index} of block {height}")))?;
        events.push(BundleEvent {
            height,
            index,
            id: signed.id(),
            body: signed.body.clone(),
            signature: signed.signature,
            proof,
        });
        used.insert(height);
    }
    let blocks = used
        .iter()
        .filter_map(|h| blocks.get(h))
        .map(|b| BundleBlock { header: b.block.header.clone(), certificate: b.certificate.clone() })
        .collect();
    Ok(EvidenceBundle {
        format: BUNDLE_FORMAT.into(),
        version: BUNDLE_VERSION,
        chain: genesis.hash,
        blocks,
        events,
    })
}

fn bundle_from_ledger<R: ChainRead>(
    ledger: &R,
    positions: &BTreeSet<(u64, u32)>,
) -> Result<EvidenceBundle, ProofError> {
    if positions.len() > MAX_BUNDLE_EVENTS {
        return Err(ProofError::TooManyEvents(positions.len()));
    }
    let mut blocks = BTreeMap::new();
    for &(height, _) in positions {
        if let std::collections::btree_map::Entry::Vacant(slot) = blocks.entry(height) {
            slot.insert(ledger.block(height)?);
        }
    }
    Ok(bundle_of(ledger.genesis(), &blocks, positions)?)
}

/// The bundle of one committed event.
pub fn event_bundle<R: ChainRead>(ledger: &R, id: &Hash) -> Result<EvidenceBundle, ProofError> {
    let record = crate::query::event(ledger, id)?
        .ok_or_else(|| ProofError::NotFound(format!("event {id}")))?;
    bundle_from_ledger(ledger, &BTreeSet::from([(record.height, record.index)]))
}

/// The bundle of every event of the trade of order `order_id`: the order's own events, those of
/// its invoices, letters of credit, shipments and their customs declarations, and the documents
/// and payments that refer to them.
pub fn trade_bundle<R: ChainRead>(
    ledger: &R,
    order_id: &str,
) -> Result<EvidenceBundle, ProofError> {
    let order_key = Entity::Order.key(order_id);
    let order: OrderState = match crate::rules::state::StateRead::get_state(ledger, &order_key)? {
        Some(bytes) => codec::decode(&bytes).map_err(|e| {
            LedgerError::IndexInconsistent(format!(
                "state of order {order_id} does not decode: {e}"
            ))
        })?,
        None => return Err(ProofError::NotFound(format!("order {order_id}"))),
    };
    let mut keys = vec![order_key];
    keys.extend(order.invoices.iter().map(|i| Entity::Invoice.key(i)));
    keys.extend(order.lcs.iter().map(|l| Entity::Lc.key(l)));
    for shipment in &order.shipments {
        let key = Entity::Shipment.key(shipment);
        if let Some(bytes) = crate::rules::state::StateRead::get_state(ledger, &key)? {
            let state: ShipmentState = codec::decode(&bytes).map_err(|e| {
                LedgerError::IndexInconsistent(format!(
                    "state of shipment {shipment} does not decode: {e}"
                ))
            })?;
            keys.extend(state.declarations.iter().map(|d| Entity::Declaration.key(d)));
        }
        keys.push(key);
    }
    let mut positions = BTreeSet::new();
    for key in &keys {
        positions.extend(crate::query::positions_of(ledger, key)?);
    }
    bundle_from_ledger(ledger, &positions)
}

impl EvidenceBundle {
    /// The bundle as pretty JSON (what `tradeloop proof` writes), ending in a newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// One thing found wrong with a bundle. `code` is stable; `what` names the block or event and
/// says what failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProofFailure {
    /// One of `BUNDLE_MALFORMED`, `BUNDLE_VERSION`, `FOREIGN_GENESIS`, `VALIDATOR_SET`,
    /// `HEADER_HASH`, `CERTIFICATE`, `BLOCK_MISSING`, `EVENT_ID`, `EVENT_SIGNATURE`,
    /// `EVENT_KEY`, `EVENT_MALFORMED`, `INCLUSION_PROOF` (docs/formats.md).
    pub code: &'static str,
    /// What failed, for a person.
    pub what: String,
}

impl std::fmt::Display for ProofFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.what)
    }
}

/// An event whose every check passed.
#[derive(Clone, Debug, Serialize)]
pub struct ProvenEvent {
    /// The event id.
    pub id: Hash,
    /// Its block's height.
    pub height: u64,
    /// Its position in the block.
    pub index: u32,
    /// The block's time, Unix milliseconds.
    pub block_time_ms: u64,
    /// The block's hash.
    pub block_hash: Hash,
    /// The event's kind.
    pub kind: String,
    /// Its author.
    pub author: String,
    /// The body as signed.
    pub body: serde_json::Value,
}

/// A certified block of a bundle.
#[derive(Clone, Debug, Serialize)]
pub struct ProvenBlock {
    /// Height.
    pub height: u64,
    /// Block hash.
    pub hash: Hash,
    /// Block time, Unix milliseconds.
    pub time_ms: u64,
    /// The certificate's round.
    pub round: u32,
    /// Validators that signed the certificate.
    pub signers: usize,
    /// Their voting power.
    pub signed_power: u64,
    /// The genesis validator set's total power.
    pub total_power: u64,
}

/// What [`verify_bundle`] found: the events and blocks that hold, and every failure.
/// The bundle holds only if `failures` is empty.
#[derive(Clone, Debug, Serialize)]
pub struct BundleReport {
    /// The genesis hash the bundle was checked against.
    pub chain: Hash,
    /// Events whose every check passed.
    pub events: Vec<ProvenEvent>,
    /// Blocks whose header and certificate passed.
    pub blocks: Vec<ProvenBlock>,
    /// Everything that failed.
    pub failures: Vec<ProofFailure>,
}

impl BundleReport {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

fn failure(code: &'static str, what: impl Into<String>) -> ProofFailure {
    ProofFailure { code, what: what.into() }
}

/// Checks a bundle (the bytes of the file) against the genesis the relying party trusts.
/// Every block and event is checked and every failure reported; nothing here panics on any
/// input.
pub fn verify_bundle(bytes: &[u8], genesis: &Genesis) -> BundleReport {
    let mut report =
        BundleReport { chain: genesis.hash, events: vec![], blocks: vec![], failures: vec![] };
    if bytes.len() > MAX_BUNDLE_BYTES {
        report.failures.push(failure(
            "BUNDLE_MALFORMED",
            format!("the bundle is {} bytes; the limit is {MAX_BUNDLE_BYTES}", bytes.len()),
        ));
        return report;
    }
    // The format and version first, so a bundle of a later version is named as such.
    #[derive(Deserialize)]
    struct Version {
        format: Option<String>,
        version: Option<u64>,
    }
    match serde_json::from_slice::<Version>(bytes) {
        Ok(Version { format: Some(f), version: Some(v) })
            if f == BUNDLE_FORMAT && v == u64::from(BUNDLE_VERSION) => {}
        Ok(Version { format: Some(f), version: Some(v) }) if f == BUNDLE_FORMAT => {
            report.failures.push(failure(
                "BUNDLE_VERSION",
                format!("bundle version {v} is not supported (this build reads version {BUNDLE_VERSION}); use a newer tradeloop"),
            ));
            return report;
        }
        Ok(_) => {
            report.failures.push(failure(
                "BUNDLE_MALFORMED",
                format!("not an evidence bundle: \"format\" must be \"{BUNDLE_FORMAT}\" and \"version\" a number; give a file written by `tradeloop proof`"),
            ));
            return report;
        }
        Err(e) => {
            report.failures.push(failure(
                "BUNDLE_MALFORMED",
                format!(
                    "not a readable JSON object (a bundle is written by `tradeloop proof`): {e}"
                ),
            ));
            return report;
        }
    }
    let bundle: EvidenceBundle = match serde_json::from_slice(bytes) {
        Ok(b) => b,
        Err(e) => {
            report.failures.push(failure(
                "BUNDLE_MALFORMED",
                format!("the bundle does not have the layout of docs/formats.md: {e}"),
            ));
            return report;
        }
    };
    check_bundle(&bundle, genesis, &mut report);
    report
}

fn fail(report: &mut BundleReport, code: &'static str, what: String) {
    report.failures.push(failure(code, what));
}

fn check_bundle(bundle: &EvidenceBundle, genesis: &Genesis, report: &mut BundleReport) {
    if bundle.chain != genesis.hash {
        fail(
            report,
            "FOREIGN_GENESIS",
            format!(
                "the bundle is for chain {}, but your genesis names chain {}: it is evidence of another chain, or you hold the wrong genesis file",
                bundle.chain, genesis.hash
            ),
        );
    }
    if bundle.events.is_empty() || bundle.events.len() > MAX_BUNDLE_EVENTS {
        fail(
            report,
            "BUNDLE_MALFORMED",
            format!(
                "a bundle holds 1 to {MAX_BUNDLE_EVENTS} events, this one {}",
                bundle.events.len()
            ),
        );
        return;
    }
    if bundle.blocks.len() > bundle.events.len() {
        fail(report, "BUNDLE_MALFORMED", "the bundle has more blocks than events".into());
        return;
    }
    let Some(good_blocks) = check_blocks(bundle, genesis, report) else { return };
    let heights: BTreeSet<u64> = bundle.blocks.iter().map(|b| b.header.height).collect();
    let mut seen = BTreeSet::new();
    for (n, event) in bundle.events.iter().enumerate() {
        let name = format!("event {n} ({})", event.id);
        if !seen.insert(event.id) {
            fail(report, "BUNDLE_MALFORMED", format!("{name} appears twice"));
            continue;
        }
        if !heights.contains(&event.height) {
            fail(
                report,
                "BLOCK_MISSING",
                format!("{name} names block {}, which the bundle does not hold", event.height),
            );
            continue;
        }
        check_bundled_event(bundle, event, &name, genesis, &good_blocks, report);
    }
}

/// The blocks whose checks pass, by height, with their hashes: `None` if the blocks are not in
/// strictly ascending height (nothing more is checked then).
fn check_blocks<'b>(
    bundle: &'b EvidenceBundle,
    genesis: &Genesis,
    report: &mut BundleReport,
) -> Option<BTreeMap<u64, (Hash, &'b Header)>> {
    let mut good_blocks = BTreeMap::new();
    let mut previous: Option<u64> = None;
    for block in &bundle.blocks {
        let height = block.header.height;
        if previous.is_some_and(|p| p >= height) {
            fail(
                report,
                "BUNDLE_MALFORMED",
                format!(
                    "blocks must be in strictly ascending height; block {height} follows {}",
                    previous.unwrap_or(0)
                ),
            );
            return None;
        }
        previous = Some(height);
        if let Some(hash) = check_block(block, genesis, report) {
            good_blocks.insert(height, (hash, &block.header));
        }
    }
    Some(good_blocks)
}

/// One block: bound to the genesis, its header hash, its certificate. Its hash if all hold
/// (and the block is then reported as proven).
fn check_block(block: &BundleBlock, genesis: &Genesis, report: &mut BundleReport) -> Option<Hash> {
    let h = &block.header;
    let height = h.height;
    let before = report.failures.len();
    if h.chain != genesis.hash {
        fail(
            report,
            "FOREIGN_GENESIS",
            format!(
                "block {height}'s header names chain {}, your genesis names {}",
                h.chain, genesis.hash
            ),
        );
    }
    if h.validators_hash != genesis.validators.hash {
        fail(
            report,
            "VALIDATOR_SET",
            format!(
                "block {height}'s header names validator set {}, the genesis set is {}",
                h.validators_hash, genesis.validators.hash
            ),
        );
    }
    let hash = h.hash();
    if block.certificate.block_hash != hash || block.certificate.height != height {
        fail(
            report,
            "HEADER_HASH",
            format!(
                "block {height}'s header hashes to {hash}, but its certificate signs block {} at height {}: the header was changed, or the certificate is another block's",
                block.certificate.block_hash, block.certificate.height
            ),
        );
    } else if let Err(e) =
        block.certificate.verify(&genesis.hash, &genesis.validators, height, &hash)
    {
        fail(report, "CERTIFICATE", format!("block {height}'s commit certificate: {e}"));
    }
    if report.failures.len() != before {
        return None;
    }
    let signed_power = block
        .certificate
        .signatures
        .iter()
        .filter_map(|s| genesis.validators.power_of(&s.validator))
        .sum();
    report.blocks.push(ProvenBlock {
        height,
        hash,
        time_ms: h.time_ms,
        round: block.certificate.round,
        signers: block.certificate.signatures.len(),
        signed_power,
        total_power: genesis.validators.total_power,
    });
    Some(hash)
}

/// One event of the bundle, whose block the bundle holds: its id, signature and fields, its
/// inclusion in its block's events root, and its block's certificate. Reported as proven if
/// all hold.
fn check_bundled_event(
    bundle: &EvidenceBundle,
    event: &BundleEvent,
    name: &str,
    genesis: &Genesis,
    good_blocks: &BTreeMap<u64, (Hash, &Header)>,
    report: &mut BundleReport,
) {
    let before = report.failures.len();
    let signed = SignedEvent { body: event.body.clone(), signature: event.signature };
    let id = signed.id();
    if id != event.id {
        fail(
            report,
            "EVENT_ID",
            format!("{name}: the body hashes to id {id}, not the id the bundle names: the body or the id was changed"),
        );
    }
    let checked = check_event(genesis, &signed);
    if let Err(r) = &checked {
        let code = match r.code {
            RejectCode::BadSignature => "EVENT_SIGNATURE",
            RejectCode::UnknownParticipant | RejectCode::KeyNotAuthorized => "EVENT_KEY",
            RejectCode::WrongChain => "FOREIGN_GENESIS",
            _ => "EVENT_MALFORMED",
        };
        fail(report, code, format!("{name}: {r}"));
    }
    let Some(block) = bundle.blocks.iter().find(|b| b.header.height == event.height) else {
        return;
    };
    check_inclusion(event, &block.header, name, report);
    let Some((block_hash, header)) = good_blocks.get(&event.height) else {
        fail(
            report,
            "CERTIFICATE",
            format!("{name}: its block {} is not validly certified (above)", event.height),
        );
        return;
    };
    if report.failures.len() != before {
        return;
    }
    let body: serde_json::Value = serde_json::from_slice(&event.body).unwrap_or_default();
    if let Ok(e) = checked {
        report.events.push(ProvenEvent {
            id: event.id,
            height: event.height,
            index: event.index,
            block_time_ms: header.time_ms,
            block_hash: *block_hash,
            kind: e.payload.kind().to_string(),
            author: e.author,
            body,
        });
    }
}

/// The event's inclusion proof against its block header's events root.
fn check_inclusion(event: &BundleEvent, h: &Header, name: &str, report: &mut BundleReport) {
    if event.proof.len() > MAX_PROOF_HASHES {
        fail(
            report,
            "INCLUSION_PROOF",
            format!(
                "{name}: the proof has {} hashes, more than {MAX_PROOF_HASHES}",
                event.proof.len()
            ),
        );
    } else if let Err(e) = merkle::verify_inclusion(
        &event.id.0,
        u64::from(event.index),
        u64::from(h.event_count),
        &event.proof,
        &h.events_root,
    ) {
        fail(
            report,
            "INCLUSION_PROOF",
            format!(
                "{name}: not event {} of the {} in block {}'s events root ({e})",
                event.index, h.event_count, event.height
            ),
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::sample::{trade_events, Cast};
    use crate::Ledger;

    #[test]
    fn a_bundle_of_each_event_of_a_block_verifies_and_a_changed_one_does_not() {
        let cast = Cast::deterministic(1, 1_780_000_000_000).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(&dir.path().join("d"), cast.genesis.clone()).unwrap();
        let events = trade_events(&cast, 1, 1_780_000_001_000);
        ledger.append_local(&events[..7], 1_780_000_002_000, &cast.validator_keys[0]).unwrap();
        for e in &events[..7] {
            let bundle = event_bundle(&ledger, &e.id()).unwrap();
            let report = verify_bundle(bundle.to_json().as_bytes(), &cast.genesis);
            assert!(report.ok(), "{:?}", report.failures);
            assert_eq!(report.events.len(), 1);
        }
        let mut bundle = event_bundle(&ledger, &events[3].id()).unwrap();
        bundle.events[0].index = 4;
        let report = verify_bundle(bundle.to_json().as_bytes(), &cast.genesis);
        assert_eq!(report.failures.iter().map(|f| f.code).collect::<Vec<_>>(), ["INCLUSION_PROOF"]);
        assert!(matches!(event_bundle(&ledger, &Hash([7; 32])), Err(ProofError::NotFound(_))));
        let junk: [&[u8]; 5] = [
            b"",
            b"[]",
            b"{\"format\":1}",
            b"{\"format\":\"tradeloop/evidence\",\"version\":2}",
            &[0xff; 3],
        ];
        for junk in junk {
            let report = verify_bundle(junk, &cast.genesis);
            assert!(!report.ok());
        }
    }
}
