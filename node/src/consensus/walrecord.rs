//! What goes into the consensus WAL: the inputs Malachite asks to persist (`Effect::WalAppend`)
//! and the blocks this validator built or received at the height, each as one record with a
//! fixed byte layout (docs/formats.md, "WAL records"). All integers big-endian.
//!
//! ```text
//! record = tag u8 || body
//!  1 vote            type u8 (1 prevote, 2 precommit) || height u64 || round i64
//!                    || value (0 nil | 1 || hash [32]) || validator [32] || signature [64]
//!  2 proposal        height u64 || round i64 || value [32] || pol_round i64 || proposer [32]
//!                    || signature [64]
//!  3 proposed value  height u64 || round i64 || valid_round i64 || proposer [32] || value [32]
//!                    || validity u8 (0 invalid, 1 valid) || origin u8 (0 consensus, 1 sync)
//!  4 timeout         kind u8 (1 propose, 2 prevote, 3 precommit, 4 rebroadcast, 5 finalize)
//!                    || round i64 || finalize delay ms u64 (0 unless kind 5)
//!  5 polka cert.     height u64 || round i64 || value [32] || count u32
//!                    || count x (validator [32] || signature [64])
//! 16 block           the block's bincode encoding (docs/formats.md, "Blocks")
//! ```
//!
//! Rounds are `i64` with -1 for "none" (Malachite's `Round::Nil`).

use malachite_core_consensus::Input;
use malachite_core_types::{
    NilOrVal, PolkaCertificate, PolkaSignature, Round, SignedMessage, Timeout, TimeoutKind,
    Validity, ValueOrigin, VoteType,
};
use tradeloop_crypto::{Hash, PublicKey, Signature};
use tradeloop_ledger::model::block::Block;

use super::context::{Address, BlockHash, Height, Proposal, TradeContext, Vote};

/// Most signatures a polka certificate record may hold (far above any validator set).
pub const MAX_CERT_SIGNATURES: usize = 10_000;

const VOTE: u8 = 1;
const PROPOSAL: u8 = 2;
const PROPOSED_VALUE: u8 = 3;
const TIMEOUT: u8 = 4;
const POLKA: u8 = 5;
const BLOCK: u8 = 16;

/// One WAL record.
// Records live one at a time between the file and Malachite; their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum WalRecord {
    /// A consensus input to feed again on replay.
    Input(Input<TradeContext>),
    /// A block of this height (built here or received), needed to act on a replayed decision.
    Block(Box<Block>),
}

/// Why a record could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Malachite asked to persist an input this codec does not know; nothing was written.
    #[error("WAL cannot persist this input: {0}")]
    Unsupported(&'static str),
    /// The bytes are not a record (the file passed its checksums, so this is a bug or a
    /// different version).
    #[error("WAL record malformed: {0}")]
    Malformed(String),
}

impl RecordError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            RecordError::Unsupported(_) => "WAL_UNSUPPORTED_INPUT",
            RecordError::Malformed(_) => "WAL_RECORD_MALFORMED",
        }
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn round(&mut self, r: Round) {
        self.0.extend_from_slice(&r.as_i64().to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Malformed("record ends early".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn round(&mut self) -> Result<Round, RecordError> {
        let r = i64::from_be_bytes(self.array()?);
        if r < -1 || r > i64::from(u32::MAX) {
            return Err(RecordError::Malformed(format!("round {r} out of range")));
        }
        Ok(Round::from(r))
    }
    fn hash(&mut self) -> Result<Hash, RecordError> {
        Ok(Hash(self.array()?))
    }
    fn key(&mut self) -> Result<PublicKey, RecordError> {
        PublicKey::from_bytes(self.array()?)
            .map_err(|e| RecordError::Malformed(format!("key: {e}")))
    }
    fn signature(&mut self) -> Result<Signature, RecordError> {
        Ok(Signature(self.array()?))
    }
    fn end(&self) -> Result<(), RecordError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(RecordError::Malformed(format!("{} bytes after the record", self.0.len())))
        }
    }
}

fn vote_type_byte(t: VoteType) -> u8 {
    match t {
        VoteType::Prevote => 1,
        VoteType::Precommit => 2,
    }
}

impl WalRecord {
    /// The bytes of `WalRecord::Block(block)`, without cloning the block into a record.
    pub fn encode_block(block: &Block) -> Result<Vec<u8>, RecordError> {
        let mut out = vec![BLOCK];
        tradeloop_ledger::encoding::codec::encode_into(&mut out, block)
            .map_err(|e| RecordError::Malformed(e.to_string()))?;
        Ok(out)
    }

    /// The record's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        let mut w = Writer(Vec::with_capacity(192));
        match self {
            WalRecord::Block(block) => return WalRecord::encode_block(block),
            WalRecord::Input(Input::Vote(signed)) => {
                let v = &signed.message;
                w.u8(VOTE);
                w.u8(vote_type_byte(v.vote_type));
                w.u64(v.height.0);
                w.round(v.round);
                match &v.value {
                    NilOrVal::Nil => w.u8(0),
                    NilOrVal::Val(h) => {
                        w.u8(1);
                        w.bytes(&h.0 .0);
                    }
                }
                w.bytes(v.validator.0.as_bytes());
                w.bytes(&signed.signature.0);
            }
            WalRecord::Input(Input::Proposal(signed)) => {
                let p = &signed.message;
                w.u8(PROPOSAL);
                w.u64(p.height.0);
                w.round(p.round);
                w.bytes(&p.value.0 .0);
                w.round(p.pol_round);
                w.bytes(p.proposer.0.as_bytes());
                w.bytes(&signed.signature.0);
            }
            WalRecord::Input(Input::ProposedValue(pv, origin)) => {
                w.u8(PROPOSED_VALUE);
                w.u64(pv.height.0);
                w.round(pv.round);
                w.round(pv.valid_round);
                w.bytes(pv.proposer.0.as_bytes());
                w.bytes(&pv.value.0 .0);
                w.u8(u8::from(pv.validity.is_valid()));
                w.u8(match origin {
                    ValueOrigin::Consensus => 0,
                    ValueOrigin::Sync => 1,
                });
            }
            WalRecord::Input(Input::TimeoutElapsed(t)) => {
                w.u8(TIMEOUT);
                let (kind, delay) = match t.kind {
                    TimeoutKind::Propose => (1, 0),
                    TimeoutKind::Prevote => (2, 0),
                    TimeoutKind::Precommit => (3, 0),
                    TimeoutKind::Rebroadcast => (4, 0),
                    TimeoutKind::FinalizeHeight(d) => {
                        (5, u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    }
                };
                w.u8(kind);
                w.round(t.round);
                w.u64(delay);
            }
            WalRecord::Input(Input::PolkaCertificate(c)) => {
                w.u8(POLKA);
                w.u64(c.height.0);
                w.round(c.round);
                w.bytes(&c.value_id.0 .0);
                let count = u32::try_from(c.polka_signatures.len())
                    .ok()
                    .filter(|n| (*n as usize) <= MAX_CERT_SIGNATURES)
                    .ok_or(RecordError::Unsupported("a certificate with too many signatures"))?;
                w.u32(count);
                for s in &c.polka_signatures {
                    w.bytes(s.address.0.as_bytes());
                    w.bytes(&s.signature.0);
                }
            }
            WalRecord::Input(_) => return Err(RecordError::Unsupported("not a WAL input")),
        }
        Ok(w.0)
    }

    /// Parses a record.
    pub fn decode(bytes: &[u8]) -> Result<WalRecord, RecordError> {
        let mut r = Reader(bytes);
        let record = match r.u8()? {
            BLOCK => {
                let block: Block = tradeloop_ledger::encoding::codec::decode(r.0)
                    .map_err(|e| RecordError::Malformed(format!("block: {e}")))?;
                return Ok(WalRecord::Block(Box::new(block)));
            }
            VOTE => {
                let vote_type = match r.u8()? {
                    1 => VoteType::Prevote,
                    2 => VoteType::Precommit,
                    t => return Err(RecordError::Malformed(format!("vote type {t}"))),
                };
                let height = Height(r.u64()?);
                let round = r.round()?;
                let value = match r.u8()? {
                    0 => NilOrVal::Nil,
                    1 => NilOrVal::Val(BlockHash(r.hash()?)),
                    t => return Err(RecordError::Malformed(format!("vote value tag {t}"))),
                };
                let validator = Address(r.key()?);
                let signature = r.signature()?;
                let vote = Vote { vote_type, height, round, value, validator };
                Input::Vote(SignedMessage::new(vote, signature))
            }
            PROPOSAL => {
                let height = Height(r.u64()?);
                let round = r.round()?;
                let value = BlockHash(r.hash()?);
                let pol_round = r.round()?;
                let proposer = Address(r.key()?);
                let signature = r.signature()?;
                let proposal = Proposal { height, round, value, pol_round, proposer };
                Input::Proposal(SignedMessage::new(proposal, signature))
            }
            PROPOSED_VALUE => {
                let height = Height(r.u64()?);
                let round = r.round()?;
                let valid_round = r.round()?;
                let proposer = Address(r.key()?);
                let value = BlockHash(r.hash()?);
                let validity = match r.u8()? {
                    0 => Validity::Invalid,
                    1 => Validity::Valid,
                    t => return Err(RecordError::Malformed(format!("validity {t}"))),
                };
                let origin = match r.u8()? {
                    0 => ValueOrigin::Consensus,
                    1 => ValueOrigin::Sync,
                    t => return Err(RecordError::Malformed(format!("origin {t}"))),
                };
                Input::ProposedValue(
                    malachite_core_consensus::ProposedValue {
                        height,
                        round,
                        valid_round,
                        proposer,
                        value,
                        validity,
                    },
                    origin,
                )
            }
            TIMEOUT => {
                let kind = r.u8()?;
                let round = r.round()?;
                let delay = r.u64()?;
                // The delay field is 0 for every kind but 5; anything else would give one
                // timeout two encodings (found by the wal_record fuzz target).
                if kind != 5 && delay != 0 {
                    return Err(RecordError::Malformed(format!(
                        "timeout kind {kind} carries a finalize delay of {delay} ms"
                    )));
                }
                let kind = match kind {
                    1 => TimeoutKind::Propose,
                    2 => TimeoutKind::Prevote,
                    3 => TimeoutKind::Precommit,
                    4 => TimeoutKind::Rebroadcast,
                    5 => TimeoutKind::FinalizeHeight(std::time::Duration::from_millis(delay)),
                    t => return Err(RecordError::Malformed(format!("timeout kind {t}"))),
                };
                Input::TimeoutElapsed(Timeout { kind, round })
            }
            POLKA => {
                let height = Height(r.u64()?);
                let round = r.round()?;
                let value_id = BlockHash(r.hash()?);
                let count = r.u32()? as usize;
                if count > MAX_CERT_SIGNATURES {
                    return Err(RecordError::Malformed(format!("{count} signatures")));
                }
                let mut polka_signatures = Vec::with_capacity(count);
                for _ in 0..count {
                    let address = Address(r.key()?);
                    polka_signatures.push(PolkaSignature::new(address, r.signature()?));
                }
                Input::PolkaCertificate(PolkaCertificate {
                    height,
                    round,
                    value_id,
                    polka_signatures,
                })
            }
            tag => return Err(RecordError::Malformed(format!("unknown record tag {tag}"))),
        };
        r.end()?;
        Ok(WalRecord::Input(record))
    }
}

#[cfg(test)]
mod tests {
    use tradeloop_crypto::SigningKey;

    use super::*;

    fn roundtrip(record: &WalRecord) -> Vec<u8> {
        let bytes = record.encode().unwrap();
        let again = WalRecord::decode(&bytes).unwrap();
        assert_eq!(again.encode().unwrap(), bytes, "{record:?}");
        bytes
    }

    /// A block record is its kind byte then the block's codec encoding (docs/formats.md), and
    /// decodes to the same block.
    #[test]
    fn a_block_record_is_its_kind_then_the_block_encoding() {
        use tradeloop_ledger::sample::{trade_events, Cast};
        let t = 1_780_000_000_000;
        let cast = Cast::deterministic(1, t - 1000).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ledger = tradeloop_ledger::Ledger::open(dir.path(), cast.genesis.clone()).unwrap();
        let events = trade_events(&cast, 1, t);
        let built = ledger.build_block(&events[..3], t + 1000, &cast.validator_keys[0]).unwrap();
        let bytes = WalRecord::encode_block(&built.block).unwrap();
        let encoded = tradeloop_ledger::encoding::codec::encode(&built.block).unwrap();
        assert_eq!(bytes, [vec![BLOCK], encoded].concat());
        assert_eq!(WalRecord::Block(Box::new(built.block.clone())).encode().unwrap(), bytes);
        match WalRecord::decode(&bytes).unwrap() {
            WalRecord::Block(block) => assert_eq!(block.header.hash(), built.hash),
            other => panic!("decoded {other:?}"),
        }
    }

    #[test]
    fn every_record_kind_roundtrips_with_a_pinned_layout() {
        let key = SigningKey::from_seed_label("wal-record");
        let who = Address(key.public_key());
        let h = BlockHash(Hash([0xab; 32]));
        let sig = Signature([0x5a; 64]);
        let vote = Vote {
            vote_type: VoteType::Precommit,
            height: Height(7),
            round: Round::new(2),
            value: NilOrVal::Val(h),
            validator: who,
        };
        let bytes = roundtrip(&WalRecord::Input(Input::Vote(SignedMessage::new(vote, sig))));
        // tag, type, height, round, value tag, value, validator, signature
        assert_eq!(bytes.len(), 1 + 1 + 8 + 8 + 1 + 32 + 32 + 64);
        assert_eq!(&bytes[..18], &[1, 2, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 2]);
        let nil = Vote {
            vote_type: VoteType::Prevote,
            height: Height(7),
            round: Round::new(0),
            value: NilOrVal::Nil,
            validator: who,
        };
        roundtrip(&WalRecord::Input(Input::Vote(SignedMessage::new(nil, sig))));
        let proposal = Proposal {
            height: Height(7),
            round: Round::new(3),
            value: h,
            pol_round: Round::Nil,
            proposer: who,
        };
        let bytes =
            roundtrip(&WalRecord::Input(Input::Proposal(SignedMessage::new(proposal, sig))));
        // pol_round -1 after tag, height, round, value
        assert_eq!(&bytes[49..57], &[0xff; 8]);
        let pv = malachite_core_consensus::ProposedValue {
            height: Height(7),
            round: Round::new(1),
            valid_round: Round::new(0),
            proposer: who,
            value: h,
            validity: Validity::Valid,
        };
        roundtrip(&WalRecord::Input(Input::ProposedValue(pv, ValueOrigin::Consensus)));
        for kind in [
            TimeoutKind::Propose,
            TimeoutKind::Prevote,
            TimeoutKind::Precommit,
            TimeoutKind::Rebroadcast,
            TimeoutKind::FinalizeHeight(std::time::Duration::from_millis(1500)),
        ] {
            roundtrip(&WalRecord::Input(Input::TimeoutElapsed(Timeout {
                kind,
                round: Round::new(4),
            })));
        }
        let cert = PolkaCertificate {
            height: Height(7),
            round: Round::new(1),
            value_id: h,
            polka_signatures: vec![PolkaSignature::new(who, sig), PolkaSignature::new(who, sig)],
        };
        let bytes = roundtrip(&WalRecord::Input(Input::PolkaCertificate(cert)));
        assert_eq!(bytes.len(), 1 + 8 + 8 + 32 + 4 + 2 * 96);
    }

    #[test]
    fn malformed_records_are_refused_not_panicked_on() {
        let key = SigningKey::from_seed_label("wal-record");
        let vote = Vote {
            vote_type: VoteType::Prevote,
            height: Height(1),
            round: Round::new(0),
            value: NilOrVal::Nil,
            validator: Address(key.public_key()),
        };
        let good = WalRecord::Input(Input::Vote(SignedMessage::new(vote, Signature([1; 64]))))
            .encode()
            .unwrap();
        for cut in 0..good.len() {
            assert!(WalRecord::decode(&good[..cut]).is_err(), "prefix of {cut} bytes accepted");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(WalRecord::decode(&long).is_err());
        for (at, bad) in [(0, 99u8), (1, 3), (18, 2)] {
            let mut b = good.clone();
            b[at] = bad;
            assert!(WalRecord::decode(&b).is_err(), "byte {at} = {bad} accepted");
        }
        assert!(WalRecord::decode(&[BLOCK, 1, 2, 3]).is_err());
    }

    /// Found by the `wal_record` fuzz target (fuzz/corpus/wal_record/regression-timeout-delay):
    /// a propose timeout with a non-zero delay field decoded, then re-encoded with delay 0, so
    /// one record had two encodings.
    #[test]
    fn a_delay_on_a_timeout_other_than_finalize_is_refused() {
        let mut bytes = vec![TIMEOUT, 1];
        bytes.extend_from_slice(&0i64.to_be_bytes());
        bytes.extend_from_slice(&(1u64 << 56).to_be_bytes());
        assert!(WalRecord::decode(&bytes).is_err());
        for kind in 1..=4u8 {
            bytes[1] = kind;
            assert!(WalRecord::decode(&bytes).is_err(), "kind {kind}");
        }
        bytes[1] = 5;
        let record = WalRecord::decode(&bytes).unwrap();
        assert_eq!(record.encode().unwrap(), bytes);
        bytes[1] = 1;
        bytes[10..].copy_from_slice(&0u64.to_be_bytes());
        assert_eq!(WalRecord::decode(&bytes).unwrap().encode().unwrap(), bytes);
    }
}
