//! The genesis file: chain id, participants, validators and consensus parameters.
//!
//! `genesis_hash = SHA-256("tradeloop/genesis/v1\0" || RFC 8785 form of the genesis JSON)`
//! names the chain; every signature in the system is domain-separated with it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use tradeloop_crypto::{domain_hash, Hash, PreparedKey, PublicKey};

use crate::encoding::canonical::Value;
use crate::model::fields::{check_country, FieldError};
use crate::{encoding::codec, LedgerError};

/// Domain tag of the genesis hash.
pub const GENESIS_DOMAIN: &[u8] = b"tradeloop/genesis/v1\0";
/// Domain tag of the validator-set hash in block headers.
pub const VALIDATORS_DOMAIN: &[u8] = b"tradeloop/validators/v1\0";
/// Longest participant id, in bytes.
pub const MAX_ID_BYTES: usize = 64;
/// Largest genesis file accepted, in bytes.
pub const MAX_GENESIS_BYTES: usize = 4 * 1024 * 1024;

/// What a participant is, which decides which event kinds it may emit (docs/events.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Role {
    Exporter,
    Importer,
    Forwarder,
    Bank,
    Customs,
    Auditor,
}

impl Role {
    /// The lower-case name used in JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Exporter => "exporter",
            Role::Importer => "importer",
            Role::Forwarder => "forwarder",
            Role::Bank => "bank",
            Role::Customs => "customs",
            Role::Auditor => "auditor",
        }
    }
}

/// An organisation on the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Participant {
    /// Stable id, e.g. `cn-exporter-acme` (lower-case letters, digits, `-`, `.`, `_`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// ISO 3166-1 alpha-2 country; for customs, its jurisdiction.
    pub country: String,
    /// Event-signing public keys (hex).
    pub keys: Vec<PublicKey>,
}

/// A validator: a participant's node with voting power.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorEntry {
    /// The participant running it.
    pub participant: String,
    /// The node's consensus public key (hex).
    pub node_key: PublicKey,
    /// Voting power (> 0).
    pub power: u64,
}

/// Consensus and validation parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusParams {
    /// Most events in one block.
    #[serde(default = "default_max_block_events")]
    pub max_block_events: u32,
    /// Largest canonical event body, in bytes.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: u32,
    /// Largest encoded block (header and events, without its certificate), in bytes; at most
    /// [`crate::limits::MAX_BLOCK_BYTES`]. Left out of the file when it is the default, so
    /// genesis files written before the field existed keep their hash.
    #[serde(
        default = "default_max_block_bytes",
        skip_serializing_if = "is_default_max_block_bytes"
    )]
    pub max_block_bytes: u32,
    /// How far an event's `time_ms` may lie from its block's time, in milliseconds.
    #[serde(default = "default_max_time_skew_ms")]
    pub max_time_skew_ms: u64,
    /// Propose timeout of round 0, in milliseconds.
    #[serde(default = "default_timeout_propose_ms")]
    pub timeout_propose_ms: u64,
    /// Prevote timeout of round 0, in milliseconds.
    #[serde(default = "default_timeout_vote_ms")]
    pub timeout_prevote_ms: u64,
    /// Precommit timeout of round 0, in milliseconds.
    #[serde(default = "default_timeout_vote_ms")]
    pub timeout_precommit_ms: u64,
}

fn default_max_block_events() -> u32 {
    1000
}
fn default_max_event_bytes() -> u32 {
    64 * 1024
}
fn default_max_block_bytes() -> u32 {
    8 * 1024 * 1024
}
fn is_default_max_block_bytes(v: &u32) -> bool {
    *v == default_max_block_bytes()
}
fn default_max_time_skew_ms() -> u64 {
    10 * 60 * 1000
}
fn default_timeout_propose_ms() -> u64 {
    3000
}
fn default_timeout_vote_ms() -> u64 {
    1000
}

impl Default for ConsensusParams {
    fn default() -> Self {
        ConsensusParams {
            max_block_events: default_max_block_events(),
            max_event_bytes: default_max_event_bytes(),
            max_block_bytes: default_max_block_bytes(),
            max_time_skew_ms: default_max_time_skew_ms(),
            timeout_propose_ms: default_timeout_propose_ms(),
            timeout_prevote_ms: default_timeout_vote_ms(),
            timeout_precommit_ms: default_timeout_vote_ms(),
        }
    }
}

/// A member node that does not vote: it receives, verifies and keeps every block and serves its
/// participant's systems. (Validators' nodes are member nodes too, listed under `validators`.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberNode {
    /// The participant running it.
    pub participant: String,
    /// The node's public key (hex); its libp2p peer id derives from it.
    pub node_key: PublicKey,
}

/// Most member nodes (validators included) a genesis may list.
pub const MAX_MEMBER_NODES: usize = 1024;

/// The genesis document as written in the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisDoc {
    /// Human-readable chain id, e.g. `tradeloop-asia-eu`.
    pub chain_id: String,
    /// Genesis time, Unix milliseconds.
    pub genesis_time_ms: u64,
    /// Participants.
    pub participants: Vec<Participant>,
    /// Validators.
    pub validators: Vec<ValidatorEntry>,
    /// Member nodes that do not vote. Absent (and left out when written) when there are none,
    /// so a genesis written before this field existed keeps its hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_nodes: Vec<MemberNode>,
    /// Consensus parameters.
    #[serde(default)]
    pub consensus: ConsensusParams,
}

/// A validator set with voting power; the order is the genesis order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorSet {
    /// `(node key, power)` in genesis order.
    pub validators: Vec<(PublicKey, u64)>,
    /// Sum of voting power.
    pub total_power: u64,
    /// `SHA-256("tradeloop/validators/v1\0" || bincode(validators))`.
    pub hash: Hash,
}

impl ValidatorSet {
    /// Builds a set (callers validate uniqueness and power bounds).
    pub fn new(validators: Vec<(PublicKey, u64)>) -> ValidatorSet {
        let total_power = validators.iter().map(|(_, p)| *p).sum();
        let hash = domain_hash(VALIDATORS_DOMAIN, &[&codec::encode_small(&validators)]);
        ValidatorSet { validators, total_power, hash }
    }

    /// The power of a validator, if it is one.
    pub fn power_of(&self, key: &PublicKey) -> Option<u64> {
        self.validators.iter().find(|(k, _)| k == key).map(|(_, p)| *p)
    }

    /// Whether `power` is more than two thirds of the total: `3 * power > 2 * total`.
    pub fn is_quorum(&self, power: u64) -> bool {
        u128::from(power) * 3 > u128::from(self.total_power) * 2
    }
}

/// A parsed, checked genesis with lookup tables.
#[derive(Clone, Debug)]
pub struct Genesis {
    /// The document.
    pub doc: GenesisDoc,
    /// The chain's name: the genesis hash.
    pub hash: Hash,
    /// The validator set.
    pub validators: ValidatorSet,
    /// The RFC 8785 form of the genesis JSON (what the hash covers; carried in exports).
    pub canonical: Vec<u8>,
    /// `hash` in lowercase hex, as events name their chain.
    hash_hex: String,
    participants: BTreeMap<String, Participant>,
    /// Raw key bytes -> the key's entry: event keys are looked up without decompression.
    key_owner: HashMap<[u8; 32], KeyEntry>,
}

/// A participant's signing key, as the genesis lists it.
#[derive(Clone, Debug)]
pub struct KeyEntry {
    /// The parsed key.
    pub key: PublicKey,
    /// The participant it belongs to.
    pub owner: String,
    /// Its verification tables, built on first use (about 20 KiB each, so a genesis with many
    /// keys pays only for those that sign).
    prepared: Arc<OnceLock<PreparedKey>>,
}

impl KeyEntry {
    /// The key prepared for fast verification (`verify_strict` semantics).
    pub fn prepared(&self) -> &PreparedKey {
        self.prepared.get_or_init(|| PreparedKey::new(&self.key))
    }
}

impl Genesis {
    /// Parses and checks genesis JSON bytes.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Genesis, LedgerError> {
        if bytes.len() > MAX_GENESIS_BYTES {
            return Err(LedgerError::Genesis(format!(
                "file is {} bytes; the limit is {MAX_GENESIS_BYTES}",
                bytes.len()
            )));
        }
        let value = Value::parse(bytes).map_err(|e| LedgerError::Genesis(e.to_string()))?;
        let doc: GenesisDoc = serde_json::from_value(value.to_json())
            .map_err(|e| LedgerError::Genesis(e.to_string()))?;
        let canonical = value.to_canonical();
        let hash = domain_hash(GENESIS_DOMAIN, &[&canonical]);
        Genesis::from_doc_with_hash(doc, hash, canonical)
    }

    /// Reads and checks a genesis file. At most [`MAX_GENESIS_BYTES`] + 1 bytes are read, so an
    /// oversized (or endless) file is refused without being read whole.
    pub fn load(path: &Path) -> Result<Genesis, LedgerError> {
        Genesis::from_json_bytes(&read_genesis_bytes(path)?)
    }

    /// Checks a document built in code and computes its hash.
    pub fn from_doc(doc: GenesisDoc) -> Result<Genesis, LedgerError> {
        Genesis::from_json_bytes(&doc.to_json_bytes())
    }

    fn from_doc_with_hash(
        doc: GenesisDoc,
        hash: Hash,
        canonical: Vec<u8>,
    ) -> Result<Genesis, LedgerError> {
        let (participants, key_owner, set) = check_doc(&doc, true)?;
        Ok(Genesis {
            validators: ValidatorSet::new(set),
            doc,
            hash_hex: hash.to_hex(),
            hash,
            canonical,
            participants,
            key_owner,
        })
    }

    /// The genesis hash in lowercase hex: the `chain` field of this chain's events.
    pub fn hash_hex(&self) -> &str {
        &self.hash_hex
    }

    /// A participant by id.
    pub fn participant(&self, id: &str) -> Option<&Participant> {
        self.participants.get(id)
    }

    /// The participant that owns an event-signing key.
    pub fn key_owner(&self, key: &PublicKey) -> Option<&str> {
        self.key_owner.get(key.as_bytes()).map(|e| e.owner.as_str())
    }

    /// The genesis entry of a signing key, by its raw bytes.
    pub fn signing_key_entry(&self, bytes: &[u8; 32]) -> Option<&KeyEntry> {
        self.key_owner.get(bytes)
    }

    /// All participants, by id.
    pub fn participants(&self) -> impl Iterator<Item = &Participant> {
        self.participants.values()
    }

    /// Every member node, validators first (genesis order), then the non-voting member nodes:
    /// the peers allowed to connect.
    pub fn member_nodes(&self) -> Vec<MemberNodeInfo<'_>> {
        let validators = self.doc.validators.iter().map(|v| MemberNodeInfo {
            node_key: v.node_key,
            participant: &v.participant,
            power: v.power,
        });
        let others = self.doc.member_nodes.iter().map(|m| MemberNodeInfo {
            node_key: m.node_key,
            participant: &m.participant,
            power: 0,
        });
        validators.chain(others).collect()
    }

    /// The member node with this key, if any.
    pub fn member_node(&self, key: &PublicKey) -> Option<MemberNodeInfo<'_>> {
        self.member_nodes().into_iter().find(|m| m.node_key == *key)
    }
}

/// A member node as [`Genesis::member_nodes`] lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberNodeInfo<'a> {
    /// Its node key.
    pub node_key: PublicKey,
    /// The participant running it.
    pub participant: &'a str,
    /// Its voting power; 0 for a node that does not vote.
    pub power: u64,
}

type CheckedDoc =
    (BTreeMap<String, Participant>, HashMap<[u8; 32], KeyEntry>, Vec<(PublicKey, u64)>);

/// The checks of [`Genesis::from_doc`]; `require_validator: false` lets a genesis being built
/// (`tradeloop genesis init`, then `add` of participants before their validators) pass.
fn check_doc(doc: &GenesisDoc, require_validator: bool) -> Result<CheckedDoc, LedgerError> {
    let bad = |m: String| Err(LedgerError::Genesis(m));
    if doc.chain_id.is_empty() || doc.chain_id.len() > MAX_ID_BYTES {
        return bad(format!("chain_id must be 1 to {MAX_ID_BYTES} bytes"));
    }
    let mut participants = BTreeMap::new();
    let mut key_owner = HashMap::new();
    for p in &doc.participants {
        check_participant_id(&p.id).map_err(|e| LedgerError::Genesis(e.to_string()))?;
        check_country(&p.country)
            .map_err(|e| LedgerError::Genesis(format!("participant {}: {e}", p.id)))?;
        if p.keys.is_empty() && p.role != Role::Auditor {
            return bad(format!("participant {} has no signing keys", p.id));
        }
        for key in &p.keys {
            let entry = KeyEntry { key: *key, owner: p.id.clone(), prepared: Arc::default() };
            if let Some(other) = key_owner.insert(*key.as_bytes(), entry) {
                let other = other.owner;
                return bad(format!("key {key} is listed for both {other} and {}", p.id));
            }
        }
        if participants.insert(p.id.clone(), p.clone()).is_some() {
            return bad(format!("participant id {} appears twice", p.id));
        }
    }
    if require_validator && doc.validators.is_empty() {
        return bad("at least one validator is required".into());
    }
    let mut set = Vec::new();
    for v in &doc.validators {
        if !participants.contains_key(&v.participant) {
            return bad(format!("validator names unknown participant {}", v.participant));
        }
        if v.power == 0 || v.power > (1 << 40) {
            return bad(format!("validator {} power must be 1..=2^40", v.node_key));
        }
        if set.iter().any(|(k, _)| *k == v.node_key) {
            return bad(format!("validator node key {} appears twice", v.node_key));
        }
        set.push((v.node_key, v.power));
    }
    if doc.validators.len() + doc.member_nodes.len() > MAX_MEMBER_NODES {
        return bad(format!("at most {MAX_MEMBER_NODES} member nodes (validators included)"));
    }
    let mut nodes: Vec<PublicKey> = set.iter().map(|(k, _)| *k).collect();
    for m in &doc.member_nodes {
        if !participants.contains_key(&m.participant) {
            return bad(format!("member node names unknown participant {}", m.participant));
        }
        if nodes.contains(&m.node_key) {
            return bad(format!(
                "member node key {} appears twice (a validator's node is a member already)",
                m.node_key
            ));
        }
        if key_owner.contains_key(m.node_key.as_bytes()) {
            return bad(format!(
                "member node key {} is also an event-signing key; give the node its own key",
                m.node_key
            ));
        }
        nodes.push(m.node_key);
    }
    let c = &doc.consensus;
    if c.max_block_events == 0 || c.max_block_events > crate::limits::MAX_BLOCK_EVENTS {
        return bad(format!(
            "consensus.max_block_events must be 1..={}",
            crate::limits::MAX_BLOCK_EVENTS
        ));
    }
    for (name, ms) in [
        ("timeout_propose_ms", c.timeout_propose_ms),
        ("timeout_prevote_ms", c.timeout_prevote_ms),
        ("timeout_precommit_ms", c.timeout_precommit_ms),
    ] {
        if ms == 0 || ms > MAX_TIMEOUT_MS {
            return bad(format!("consensus.{name} must be 1..={MAX_TIMEOUT_MS} (milliseconds)"));
        }
    }
    if c.max_event_bytes < 256 || c.max_event_bytes > crate::limits::MAX_EVENT_BYTES {
        return bad(format!(
            "consensus.max_event_bytes must be 256..={}",
            crate::limits::MAX_EVENT_BYTES
        ));
    }
    // A block's frame must hold the largest block plus its certificate; the smallest bound must
    // still fit one largest event.
    let min_block_bytes = c.max_event_bytes.saturating_add(64 * 1024);
    if c.max_block_bytes < min_block_bytes || c.max_block_bytes > crate::limits::MAX_BLOCK_BYTES {
        return bad(format!(
            "consensus.max_block_bytes must be {min_block_bytes}..={} (room for one event of \
             max_event_bytes, and a block log frame must hold the block and its certificate)",
            crate::limits::MAX_BLOCK_BYTES
        ));
    }
    Ok((participants, key_owner, set))
}

/// Reads at most [`MAX_GENESIS_BYTES`] + 1 bytes of a genesis file.
pub fn read_genesis_bytes(path: &Path) -> Result<Vec<u8>, LedgerError> {
    let context = || format!("cannot read genesis {}", path.display());
    let file = std::fs::File::open(path).map_err(|e| LedgerError::io(context(), e))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_GENESIS_BYTES as u64 + 1),
        &mut bytes,
    )
    .map_err(|e| LedgerError::io(context(), e))?;
    if bytes.len() > MAX_GENESIS_BYTES {
        return Err(LedgerError::Genesis(format!(
            "{} is larger than the limit of {MAX_GENESIS_BYTES} bytes (MAX_GENESIS_BYTES)",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Longest round-0 consensus timeout a genesis may set: 10 minutes. (Later rounds grow from it;
/// see the node's `Timeouts`.)
pub const MAX_TIMEOUT_MS: u64 = 600_000;

/// Latest genesis time a new genesis may have: 9999-12-31T23:59:59.999Z, in Unix milliseconds
/// (it also fits the signed 64-bit millisecond range every other tool uses).
pub const MAX_GENESIS_TIME_MS: u64 = 253_402_300_799_999;
/// Earliest genesis time a new genesis may have: 2000-01-01T00:00:00Z. An earlier one is almost
/// certainly seconds given as milliseconds, or a mistake.
pub const MIN_GENESIS_TIME_MS: u64 = 946_684_800_000;

impl GenesisDoc {
    /// Parses a genesis file's bytes as strictly as [`Genesis::from_json_bytes`] does (duplicate
    /// keys refused, at most [`MAX_GENESIS_BYTES`]), without requiring it to be complete.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<GenesisDoc, LedgerError> {
        if bytes.len() > MAX_GENESIS_BYTES {
            return Err(LedgerError::Genesis(format!(
                "file is {} bytes; the limit is {MAX_GENESIS_BYTES}",
                bytes.len()
            )));
        }
        let value = Value::parse(bytes).map_err(|e| LedgerError::Genesis(e.to_string()))?;
        serde_json::from_value(value.to_json()).map_err(|e| LedgerError::Genesis(e.to_string()))
    }

    /// The checks for a genesis being written (`tradeloop genesis init|add`): every check of
    /// [`Genesis::from_doc`] except that validators may still be missing, plus bounds that a
    /// loaded genesis is not held to (so existing chains keep loading): a chain id of
    /// `a-z 0-9 - . _` (1 to [`MAX_ID_BYTES`]) and a genesis time from
    /// [`MIN_GENESIS_TIME_MS`] to [`MAX_GENESIS_TIME_MS`]. A document with validators must also
    /// pass [`Genesis::from_doc`] in full.
    pub fn check_for_write(&self) -> Result<(), LedgerError> {
        let ok_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b);
        if self.chain_id.is_empty()
            || self.chain_id.len() > MAX_ID_BYTES
            || !self.chain_id.bytes().all(ok_char)
        {
            return Err(LedgerError::Genesis(format!(
                "chain id \"{}\" must be 1 to {MAX_ID_BYTES} characters of a-z, 0-9, '-', '.', '_'",
                self.chain_id
            )));
        }
        if !(MIN_GENESIS_TIME_MS..=MAX_GENESIS_TIME_MS).contains(&self.genesis_time_ms) {
            return Err(LedgerError::Genesis(format!(
                "genesis time {} ms is outside {MIN_GENESIS_TIME_MS} (2000-01-01) to {MAX_GENESIS_TIME_MS} (9999-12-31) Unix milliseconds",
                self.genesis_time_ms
            )));
        }
        check_doc(self, false)?;
        if !self.validators.is_empty() {
            Genesis::from_doc(self.clone())?;
        }
        Ok(())
    }
}

impl GenesisDoc {
    /// Pretty JSON, as written by `tradeloop genesis`.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// Participant ids: 1..=64 bytes of `a-z 0-9 - . _`.
pub fn check_participant_id(id: &str) -> Result<(), FieldError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(FieldError::ParticipantId(id.into()))
    }
}
