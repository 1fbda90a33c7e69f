//! Our types behind Malachite's `Context` (docs/consensus.md): heights, block hashes as values,
//! ed25519 validator addresses, the genesis validator set, and domain-separated sign bytes that
//! include the genesis hash.
//!
//! Values are block hashes (`ValuePayload::ProposalAndParts`: the block itself travels as
//! proposal parts and its validity is reported by the ledger). Votes are signed over exactly
//! the ledger's vote sign bytes, so the precommits Malachite collects are the signatures of a
//! ledger `CommitCertificate`.

use std::fmt;
use std::sync::Arc;

use malachite_core_types as mc;
use mc::{NilOrVal, Round, VoteType};
use tradeloop_crypto::{Hash, PublicKey, Signature, SigningKey, VerifiedSignatures};
use tradeloop_ledger::model::block::{vote_sign_bytes, VoteType as LedgerVoteType};
use tradeloop_ledger::ValidatorSet as LedgerValidatorSet;

/// Domain tag of proposal sign bytes.
pub const PROPOSAL_DOMAIN: &[u8] = b"tradeloop/proposal/v1\0";

/// A validator's address: its node public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub PublicKey);

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", &self.0.to_hex()[..12])
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_hex())
    }
}

impl mc::Address for Address {}

/// A block height.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Height(pub u64);

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl mc::Height for Height {
    const ZERO: Self = Height(0);
    const INITIAL: Self = Height(1);
    fn increment_by(&self, n: u64) -> Self {
        Height(self.0.saturating_add(n))
    }
    fn decrement_by(&self, n: u64) -> Option<Self> {
        self.0.checked_sub(n).map(Height)
    }
    fn as_u64(&self) -> u64 {
        self.0
    }
}

/// A proposed value: the hash of a block (the block travels as proposal parts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockHash(pub Hash);

impl fmt::Display for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_hex())
    }
}

impl mc::Value for BlockHash {
    type Id = BlockHash;
    fn id(&self) -> BlockHash {
        *self
    }
}

/// A proposal: the block hash proposed at `(height, round)`, with its proof-of-lock round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// Height.
    pub height: Height,
    /// Round.
    pub round: Round,
    /// The proposed block hash.
    pub value: BlockHash,
    /// The POL round (`Round::Nil` if none).
    pub pol_round: Round,
    /// The proposer.
    pub proposer: Address,
}

impl mc::Proposal<TradeContext> for Proposal {
    fn height(&self) -> Height {
        self.height
    }
    fn round(&self) -> Round {
        self.round
    }
    fn value(&self) -> &BlockHash {
        &self.value
    }
    fn take_value(self) -> BlockHash {
        self.value
    }
    fn pol_round(&self) -> Round {
        self.pol_round
    }
    fn validator_address(&self) -> &Address {
        &self.proposer
    }
}

/// A part of a streamed block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockPart {
    /// Position in the stream.
    pub index: u32,
    /// Whether it is the last part.
    pub last: bool,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl mc::ProposalPart<TradeContext> for BlockPart {
    fn is_first(&self) -> bool {
        self.index == 0
    }
    fn is_last(&self) -> bool {
        self.last
    }
}

/// A prevote or precommit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    /// Prevote or precommit.
    pub vote_type: VoteType,
    /// Height.
    pub height: Height,
    /// Round.
    pub round: Round,
    /// The block hash voted for, or nil.
    pub value: NilOrVal<BlockHash>,
    /// The voter.
    pub validator: Address,
}

impl mc::Vote<TradeContext> for Vote {
    fn height(&self) -> Height {
        self.height
    }
    fn round(&self) -> Round {
        self.round
    }
    fn value(&self) -> &NilOrVal<BlockHash> {
        &self.value
    }
    fn take_value(self) -> NilOrVal<BlockHash> {
        self.value
    }
    fn vote_type(&self) -> VoteType {
        self.vote_type
    }
    fn validator_address(&self) -> &Address {
        &self.validator
    }
    fn extension(&self) -> Option<&mc::SignedExtension<TradeContext>> {
        None
    }
    fn take_extension(&mut self) -> Option<mc::SignedExtension<TradeContext>> {
        None
    }
    fn extend(self, _extension: mc::SignedExtension<TradeContext>) -> Self {
        // Vote extensions are disabled on this chain (VoteExtensionPolicy::Disabled).
        self
    }
}

/// A validator with voting power.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator {
    /// Address (= node key).
    pub address: Address,
    /// Node key.
    pub public_key: PublicKey,
    /// Voting power.
    pub power: u64,
}

impl mc::Validator<TradeContext> for Validator {
    fn address(&self) -> &Address {
        &self.address
    }
    fn public_key(&self) -> &PublicKey {
        &self.public_key
    }
    fn voting_power(&self) -> u64 {
        self.power
    }
}

/// The validator set, in genesis order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validators(pub Vec<Validator>);

impl Validators {
    /// From the ledger's validator set.
    pub fn from_ledger(set: &LedgerValidatorSet) -> Validators {
        Validators(
            set.validators
                .iter()
                .map(|(key, power)| Validator {
                    address: Address(*key),
                    public_key: *key,
                    power: *power,
                })
                .collect(),
        )
    }
}

impl mc::ValidatorSet<TradeContext> for Validators {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn total_voting_power(&self) -> u64 {
        self.0.iter().map(|v| v.power).sum()
    }
    fn get_by_address(&self, address: &Address) -> Option<&Validator> {
        self.0.iter().find(|v| v.address == *address)
    }
    fn get_by_index(&self, index: usize) -> Option<&Validator> {
        self.0.get(index)
    }
}

/// No vote extensions on this chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoExtension;

impl mc::Extension for NoExtension {
    fn size_bytes(&self) -> usize {
        0
    }
}

/// ed25519 with `verify_strict`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ed25519;

/// `bytes` as an array of exactly `N` bytes; `what` names them in the error.
fn fixed_bytes<const N: usize>(
    bytes: &[u8],
    what: &'static str,
) -> Result<[u8; N], tradeloop_crypto::CryptoError> {
    bytes.try_into().map_err(|_| tradeloop_crypto::CryptoError::Length {
        what,
        expected: N,
        found: bytes.len(),
    })
}

impl mc::SigningScheme for Ed25519 {
    type DecodingError = tradeloop_crypto::CryptoError;
    type Signature = Signature;
    type PublicKey = PublicKey;
    type PrivateKey = SigningKey;

    fn decode_signature(bytes: &[u8]) -> Result<Signature, Self::DecodingError> {
        fixed_bytes(bytes, "a signature").map(Signature)
    }
    fn encode_signature(signature: &Signature) -> Vec<u8> {
        signature.0.to_vec()
    }
    fn decode_public_key(bytes: &[u8]) -> Result<PublicKey, Self::DecodingError> {
        PublicKey::from_bytes(fixed_bytes(bytes, "a public key")?)
    }
    fn encode_public_key(public_key: &PublicKey) -> Vec<u8> {
        public_key.as_bytes().to_vec()
    }
}

/// The consensus context of one chain.
#[derive(Clone, Debug)]
pub struct TradeContext {
    /// The genesis hash; part of every sign-bytes domain.
    pub chain: Hash,
    /// The consensus signatures this node has verified: a vote is checked before gossip
    /// forwards it, and the core and the commit certificate find it here instead of verifying
    /// it again (shared by every clone of the context, and with the ledger).
    pub verified: Arc<VerifiedSignatures>,
}

impl mc::Context for TradeContext {
    type Address = Address;
    type Height = Height;
    type ProposalPart = BlockPart;
    type Proposal = Proposal;
    type Validator = Validator;
    type ValidatorSet = Validators;
    type Timeouts = mc::LinearTimeouts;
    type Value = BlockHash;
    type Vote = Vote;
    type Extension = NoExtension;
    type SigningScheme = Ed25519;

    /// Round-robin by height and round over the genesis order (Tendermint's weighted rotation
    /// is a later refinement; any deterministic choice is safe).
    fn select_proposer<'a>(
        &self,
        validators: &'a Validators,
        height: Height,
        round: Round,
    ) -> &'a Validator {
        let n = validators.0.len().max(1) as u64;
        let r = u64::try_from(round.as_i64().max(0)).unwrap_or(0);
        let index = usize::try_from(height.0.wrapping_add(r) % n).unwrap_or(0);
        &validators.0[index]
    }

    fn new_proposal(
        &self,
        height: Height,
        round: Round,
        value: BlockHash,
        pol_round: Round,
        address: Address,
    ) -> Proposal {
        Proposal { height, round, value, pol_round, proposer: address }
    }

    fn new_prevote(
        &self,
        height: Height,
        round: Round,
        value_id: NilOrVal<BlockHash>,
        address: Address,
    ) -> Vote {
        Vote { vote_type: VoteType::Prevote, height, round, value: value_id, validator: address }
    }

    fn new_precommit(
        &self,
        height: Height,
        round: Round,
        value_id: NilOrVal<BlockHash>,
        address: Address,
    ) -> Vote {
        Vote { vote_type: VoteType::Precommit, height, round, value: value_id, validator: address }
    }
}

impl TradeContext {
    /// The context of the chain whose genesis hash is `chain`, with an empty signature memory.
    pub fn new(chain: Hash) -> TradeContext {
        TradeContext { chain, verified: Arc::new(VerifiedSignatures::new()) }
    }

    /// Whether `signature` by `key` over `message` holds, answered from
    /// [`TradeContext::verified`] when this node verified exactly these before.
    pub fn verify(&self, key: &PublicKey, message: &[u8], signature: &Signature) -> bool {
        self.verified.verify(key, message, signature).is_ok()
    }

    /// The bytes a validator signs for a vote: the ledger's vote sign bytes.
    pub fn vote_bytes(&self, vote: &Vote) -> Vec<u8> {
        let vote_type = match vote.vote_type {
            VoteType::Prevote => LedgerVoteType::Prevote,
            VoteType::Precommit => LedgerVoteType::Precommit,
        };
        let round = vote.round.as_u32().unwrap_or(u32::MAX);
        let value = match &vote.value {
            NilOrVal::Nil => None,
            NilOrVal::Val(h) => Some(&h.0),
        };
        vote_sign_bytes(&self.chain, vote_type, vote.height.0, round, value)
    }

    /// The bytes a proposer signs: `"tradeloop/proposal/v1\0" || chain || height u64 ||
    /// round u32 || pol_round i64 || block_hash || proposer`.
    pub fn proposal_bytes(&self, p: &Proposal) -> Vec<u8> {
        let mut out = Vec::with_capacity(PROPOSAL_DOMAIN.len() + 32 + 8 + 4 + 8 + 32 + 32);
        out.extend_from_slice(PROPOSAL_DOMAIN);
        out.extend_from_slice(&self.chain.0);
        out.extend_from_slice(&p.height.0.to_be_bytes());
        out.extend_from_slice(&p.round.as_u32().unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&p.pol_round.as_i64().to_be_bytes());
        out.extend_from_slice(&p.value.0 .0);
        out.extend_from_slice(p.proposer.0.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mc::SigningScheme as _;

    #[test]
    fn signatures_and_keys_of_the_wrong_length_say_so() {
        let key = SigningKey::from_seed_label("validator").public_key();
        let bytes = Ed25519::encode_public_key(&key);
        assert_eq!(Ed25519::decode_public_key(&bytes).unwrap(), key);
        let short = Ed25519::decode_public_key(&bytes[..31]).unwrap_err();
        assert_eq!(short.code(), "BAD_LENGTH");
        assert_eq!(short.to_string(), "a public key is 32 bytes, not 31");
        let long = Ed25519::decode_signature(&[0; 65]).unwrap_err();
        assert_eq!(long.to_string(), "a signature is 64 bytes, not 65");
        assert_eq!(Ed25519::decode_signature(&[7; 64]).unwrap(), Signature([7; 64]));
    }
}
