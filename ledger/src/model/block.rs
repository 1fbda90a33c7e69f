//! Blocks, headers and commit certificates (docs/formats.md, "Block header and block hash"
//! and "Votes and commit certificates").
//!
//! ```text
//! block_hash   = SHA-256("tradeloop/block/v1\0" || bincode(Header))
//! events_root  = RFC 6962 Merkle root of the event ids, in block order
//! vote bytes   = "tradeloop/vote/v1\0" || chain(32) || type(u8) || height(u64 BE)
//!                || round(u32 BE) || 0x00 | 0x01 || block_hash(32)
//! certificate  = precommits for (chain, height, round, block_hash) by > 2/3 of voting power
//! ```

use serde::{Deserialize, Serialize};
use tradeloop_crypto::{
    domain_hash, merkle, Hash, PublicKey, Signature, SigningKey, VerifiedSignatures,
};

use crate::encoding::codec;
use crate::limits::{MAX_BLOCK_BYTES, MAX_BLOCK_EVENTS, MAX_CERTIFICATE_SIGNATURES};
use crate::model::event::SignedEvent;
use crate::model::genesis::{Genesis, ValidatorSet};

/// Domain tag of the block hash.
pub const BLOCK_DOMAIN: &[u8] = b"tradeloop/block/v1\0";
/// Domain tag of consensus vote sign bytes.
pub const VOTE_DOMAIN: &[u8] = b"tradeloop/vote/v1\0";

/// A block header. Its bincode encoding is hashed; see docs/formats.md for the byte layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
// JSON (evidence bundles, the JSONL export) names every field once; bincode is unaffected.
#[serde(deny_unknown_fields)]
pub struct Header {
    /// The genesis hash.
    pub chain: Hash,
    /// Height, starting at 1.
    pub height: u64,
    /// Hash of the previous block; zero at height 1.
    pub prev_hash: Hash,
    /// Block time, Unix milliseconds; never decreases.
    pub time_ms: u64,
    /// Node key of the proposer.
    pub proposer: PublicKey,
    /// Merkle root of the event ids.
    pub events_root: Hash,
    /// Number of events.
    pub event_count: u32,
    /// State commitment after this block.
    pub app_hash: Hash,
    /// Hash of the validator set that certifies this block.
    pub validators_hash: Hash,
}

impl Header {
    /// The block hash.
    pub fn hash(&self) -> Hash {
        domain_hash(BLOCK_DOMAIN, &[&codec::encode_small(self)])
    }
}

/// A block: header and events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The header.
    pub header: Header,
    /// The events, in order.
    pub events: Vec<SignedEvent>,
}

/// The Merkle root of event ids.
pub fn events_root(ids: &[Hash]) -> Hash {
    merkle::root_of_leaf_hashes(ids.iter().map(|id| merkle::leaf_hash(&id.0)).collect())
}

/// Vote type in sign bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum VoteType {
    /// Tendermint prevote.
    Prevote = 1,
    /// Tendermint precommit.
    Precommit = 2,
}

/// The bytes a validator signs for a vote.
pub fn vote_sign_bytes(
    chain: &Hash,
    vote_type: VoteType,
    height: u64,
    round: u32,
    value: Option<&Hash>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(VOTE_DOMAIN.len() + 32 + 1 + 8 + 4 + 33);
    out.extend_from_slice(VOTE_DOMAIN);
    out.extend_from_slice(&chain.0);
    out.push(vote_type as u8);
    out.extend_from_slice(&height.to_be_bytes());
    out.extend_from_slice(&round.to_be_bytes());
    match value {
        None => out.push(0),
        Some(h) => {
            out.push(1);
            out.extend_from_slice(&h.0);
        }
    }
    out
}

/// One validator's precommit signature in a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
// JSON (evidence bundles, the JSONL export) names every field once; bincode is unaffected.
#[serde(deny_unknown_fields)]
pub struct CommitSig {
    /// The validator's node key.
    pub validator: PublicKey,
    /// Its signature over the precommit sign bytes.
    pub signature: Signature,
}

/// Proof that more than 2/3 of voting power precommitted a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
// JSON (evidence bundles, the JSONL export) names every field once; bincode is unaffected.
#[serde(deny_unknown_fields)]
pub struct CommitCertificate {
    /// Height.
    pub height: u64,
    /// The round in which the block was decided.
    pub round: u32,
    /// The certified block.
    pub block_hash: Hash,
    /// Signatures, in strictly ascending order of validator key (so none repeats).
    pub signatures: Vec<CommitSig>,
}

impl CommitCertificate {
    /// Builds a certificate from precommit signatures, sorting them canonically.
    pub fn from_signatures(
        height: u64,
        round: u32,
        block_hash: Hash,
        mut signatures: Vec<CommitSig>,
    ) -> Self {
        signatures.sort_by_key(|s| s.validator);
        signatures.dedup_by(|a, b| a.validator == b.validator);
        CommitCertificate { height, round, block_hash, signatures }
    }

    /// Signs a certificate with the given validator keys (a local chain, or tests).
    pub fn sign(
        chain: &Hash,
        height: u64,
        round: u32,
        block_hash: Hash,
        keys: &[&SigningKey],
    ) -> Self {
        let bytes = vote_sign_bytes(chain, VoteType::Precommit, height, round, Some(&block_hash));
        let sigs = keys
            .iter()
            .map(|k| CommitSig { validator: k.public_key(), signature: k.sign(&bytes) })
            .collect();
        CommitCertificate::from_signatures(height, round, block_hash, sigs)
    }

    /// Checks the certificate for `(chain, height, block_hash)` against a validator set: known
    /// validators only, no duplicates, every signature valid, more than 2/3 of voting power.
    pub fn verify(
        &self,
        chain: &Hash,
        validators: &ValidatorSet,
        height: u64,
        block_hash: &Hash,
    ) -> Result<(), CertificateError> {
        self.verify_with(chain, validators, height, block_hash, None)
    }

    /// [`CommitCertificate::verify`], with each signature checked through `memo` when given:
    /// a node's precommits were verified when they arrived as votes, and are not again.
    pub fn verify_with(
        &self,
        chain: &Hash,
        validators: &ValidatorSet,
        height: u64,
        block_hash: &Hash,
        memo: Option<&VerifiedSignatures>,
    ) -> Result<(), CertificateError> {
        if self.height != height {
            return Err(CertificateError::Height { certified: self.height, block: height });
        }
        if self.block_hash != *block_hash {
            return Err(CertificateError::Block { certified: self.block_hash, block: *block_hash });
        }
        if self.signatures.len() > MAX_CERTIFICATE_SIGNATURES {
            return Err(CertificateError::TooManySignatures(self.signatures.len()));
        }
        let bytes =
            vote_sign_bytes(chain, VoteType::Precommit, height, self.round, Some(block_hash));
        let mut power: u64 = 0;
        let mut previous: Option<&PublicKey> = None;
        for sig in &self.signatures {
            if previous.is_some_and(|p| *p >= sig.validator) {
                return Err(CertificateError::Order(Box::new(sig.validator)));
            }
            previous = Some(&sig.validator);
            let Some(p) = validators.power_of(&sig.validator) else {
                return Err(CertificateError::NotValidator(Box::new(sig.validator)));
            };
            let verified = match memo {
                Some(memo) => memo.verify(&sig.validator, &bytes, &sig.signature),
                None => sig.validator.verify(&bytes, &sig.signature),
            };
            verified.map_err(|source| CertificateError::Signature {
                validator: Box::new(sig.validator),
                source,
            })?;
            power = power.saturating_add(p);
        }
        if !validators.is_quorum(power) {
            return Err(CertificateError::NoQuorum { power, total: validators.total_power });
        }
        Ok(())
    }
}

/// Why a commit certificate does not certify a block.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// It certifies another height.
    #[error("certificate is for height {certified}, not {block}")]
    Height {
        /// The height it certifies.
        certified: u64,
        /// The block's.
        block: u64,
    },
    /// It certifies another block.
    #[error("certificate is for block {certified}, not {block}")]
    Block {
        /// The block it certifies.
        certified: Hash,
        /// This block's hash.
        block: Hash,
    },
    /// More signatures than any validator set has.
    #[error("certificate has {0} signatures, more than the {MAX_CERTIFICATE_SIGNATURES} allowed")]
    TooManySignatures(usize),
    /// A signer out of order (listed twice, or the list reordered).
    #[error(
        "signatures are not in strictly ascending validator order at {0} (duplicate or reordered)"
    )]
    Order(Box<PublicKey>),
    /// A signer outside the validator set.
    #[error("signer {0} is not in the validator set")]
    NotValidator(Box<PublicKey>),
    /// A precommit signature that does not verify.
    #[error("precommit signature of validator {validator} does not verify")]
    Signature {
        /// The validator.
        validator: Box<PublicKey>,
        /// The verifier's reason.
        #[source]
        source: tradeloop_crypto::CryptoError,
    },
    /// Signers holding 2/3 of the power or less.
    #[error("signers hold {power} of {total} voting power; more than 2/3 is required")]
    NoQuorum {
        /// Their power.
        power: u64,
        /// The validator set's.
        total: u64,
    },
}

/// Why a block's header does not follow its parent under the genesis
/// ([`check_block_header`]).
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// Another chain's block.
    #[error("block belongs to chain {block}, the genesis names chain {genesis}")]
    Chain {
        /// The header's chain.
        block: Hash,
        /// The genesis hash.
        genesis: Hash,
    },
    /// Not the height after the parent's.
    #[error("height is {height} but {} was expected after {parent}", parent + 1)]
    Height {
        /// The header's height.
        height: u64,
        /// The parent's.
        parent: u64,
    },
    /// Not linked to the parent.
    #[error("prev_hash {prev_hash} does not match the previous block's hash {parent}")]
    PrevHash {
        /// The header's link.
        prev_hash: Hash,
        /// The parent's hash.
        parent: Hash,
    },
    /// Earlier than the parent.
    #[error("time_ms {time_ms} is before the previous block's {parent}")]
    Time {
        /// The header's time.
        time_ms: u64,
        /// The parent's.
        parent: u64,
    },
    /// Another validator set.
    #[error("validators_hash {header} is not the genesis validator set {genesis}")]
    Validators {
        /// The header's.
        header: Hash,
        /// The genesis set's.
        genesis: Hash,
    },
    /// A proposer outside the validator set.
    #[error("proposer {0} is not a validator")]
    Proposer(Box<PublicKey>),
    /// A count that is not the events carried, or above the limit.
    #[error("event_count {count} does not match the {carried} events carried (limit {limit})")]
    EventCount {
        /// The header's count.
        count: u32,
        /// The events carried.
        carried: usize,
        /// The limit.
        limit: u32,
    },
    /// Larger than the limit.
    #[error("the block is {bytes} bytes; the limit is {max}")]
    TooLarge {
        /// Its encoded size.
        bytes: u64,
        /// The limit.
        max: u32,
    },
    /// Not encodable.
    #[error("the block cannot be encoded")]
    Encode(#[source] crate::encoding::codec::EncodeError),
    /// A root that is not the events'.
    #[error("events_root {header} does not match the events carried ({carried})")]
    EventsRoot {
        /// The header's.
        header: Hash,
        /// The events'.
        carried: Hash,
    },
}

/// A block with its certificate: one record of the block log and of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertifiedBlock {
    /// The block.
    pub block: Block,
    /// Its commit certificate.
    pub certificate: CommitCertificate,
}

/// What the chain needs to know about its tip to check the next block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tip {
    /// Height of the last block (0 before the first).
    pub height: u64,
    /// Its hash (zero before the first).
    pub hash: Hash,
    /// Its time (the genesis time before the first).
    pub time_ms: u64,
    /// The app hash after it (zero before the first).
    pub app_hash: Hash,
}

impl Tip {
    /// The tip before any block.
    pub fn genesis(genesis: &Genesis) -> Tip {
        Tip {
            height: 0,
            hash: Hash::ZERO,
            time_ms: genesis.doc.genesis_time_ms,
            app_hash: Hash::ZERO,
        }
    }
}

/// Checks everything about a block that needs no state and no certificate: chain, height, link,
/// time, validator set, proposer, event count and root. Returns the block hash. (The
/// certificate is checked by `execute::validate_block`.)
pub fn check_block_header(
    genesis: &Genesis,
    parent: &Tip,
    block: &Block,
    event_ids: &[Hash],
) -> Result<Hash, HeaderError> {
    let h = &block.header;
    if h.chain != genesis.hash {
        return Err(HeaderError::Chain { block: h.chain, genesis: genesis.hash });
    }
    if h.height != parent.height + 1 {
        return Err(HeaderError::Height { height: h.height, parent: parent.height });
    }
    if h.prev_hash != parent.hash {
        return Err(HeaderError::PrevHash { prev_hash: h.prev_hash, parent: parent.hash });
    }
    if h.time_ms < parent.time_ms {
        return Err(HeaderError::Time { time_ms: h.time_ms, parent: parent.time_ms });
    }
    if h.validators_hash != genesis.validators.hash {
        let (header, genesis) = (h.validators_hash, genesis.validators.hash);
        return Err(HeaderError::Validators { header, genesis });
    }
    if genesis.validators.power_of(&h.proposer).is_none() {
        return Err(HeaderError::Proposer(Box::new(h.proposer)));
    }
    let limit = genesis.doc.consensus.max_block_events.min(MAX_BLOCK_EVENTS);
    if block.events.len() != h.event_count as usize || h.event_count > limit {
        let carried = block.events.len();
        return Err(HeaderError::EventCount { count: h.event_count, carried, limit });
    }
    let max = genesis.doc.consensus.max_block_bytes.min(MAX_BLOCK_BYTES);
    let bytes = crate::encoding::codec::encoded_len(block).map_err(HeaderError::Encode)?;
    if bytes > u64::from(max) {
        return Err(HeaderError::TooLarge { bytes, max });
    }
    let carried = events_root(event_ids);
    if carried != h.events_root {
        return Err(HeaderError::EventsRoot { header: h.events_root, carried });
    }
    Ok(h.hash())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header of docs/formats.md's vector: every field a distinct, recognisable value.
    pub(crate) fn vector_header() -> Header {
        Header {
            chain: Hash([0x11; 32]),
            height: 7,
            prev_hash: Hash([0x22; 32]),
            time_ms: 1_780_000_000_000,
            proposer: SigningKey::from_seed_label("vector-validator").public_key(),
            events_root: Hash([0x33; 32]),
            event_count: 2,
            app_hash: Hash([0x44; 32]),
            validators_hash: Hash([0x55; 32]),
        }
    }

    #[test]
    fn header_vector() {
        let h = vector_header();
        let bytes = codec::encode(&h).unwrap();
        assert_eq!(bytes.len(), 212);
        // These values are quoted in docs/formats.md; changing them is a format change.
        assert_eq!(
            hex::encode(&bytes),
            "1111111111111111111111111111111111111111111111111111111111111111\
             0000000000000007\
             2222222222222222222222222222222222222222222222222222222222222222\
             0000019e70448800\
             093fc8e56cb727d4f5462f5a81f79e3a4d35417417c683789798cbfa61561927\
             3333333333333333333333333333333333333333333333333333333333333333\
             00000002\
             4444444444444444444444444444444444444444444444444444444444444444\
             5555555555555555555555555555555555555555555555555555555555555555"
        );
        assert_eq!(
            h.hash().to_hex(),
            "04b1895f42b4b57b7ded6e9f5bac668b6be7df621b1a03982fa95ec6c455878c"
        );
        let vote = vote_sign_bytes(&h.chain, VoteType::Precommit, 7, 1, Some(&Hash([0x66; 32])));
        assert_eq!(
            hex::encode(&vote),
            "74726164656c6f6f702f766f74652f763100\
             1111111111111111111111111111111111111111111111111111111111111111\
             02\
             0000000000000007\
             00000001\
             01\
             6666666666666666666666666666666666666666666666666666666666666666"
        );
        let nil = vote_sign_bytes(&h.chain, VoteType::Prevote, 7, 0, None);
        assert_eq!(
            hex::encode(&nil),
            "74726164656c6f6f702f766f74652f763100\
             1111111111111111111111111111111111111111111111111111111111111111\
             01\
             0000000000000007\
             00000000\
             00"
        );
        assert_eq!(
            events_root(&[Hash([1; 32]), Hash([2; 32])]).to_hex(),
            "3a066e0f40c6a1981ebfa60d2411625d0517ae22c2fc8c7c1784ff8a75c78565"
        );
    }
}
