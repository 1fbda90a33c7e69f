//! Two copies of one chain: the same, one a prefix of the other, or a split view.
//!
//! ```text
//! for h = 1, 2, ...: hash(A_h) == hash(B_h)  -> go on
//!                    A or B ends              -> Same, or Prefix (which one is longer, how far)
//!                    the hashes differ        -> Split at h: both headers, and when both
//!                                                certificates verify, the validators that
//!                                                signed both (the equivocators)
//! ```
//!
//! Every block of both copies is checked for its structure on the way (chain, height, link to
//! the previous block, events root, the certificate signing that header) and the two blocks at
//! a split fully (certificates against the genesis). Comparing is not auditing: run
//! `tradeloop verify` on each copy for the full check of signatures and rules.
//!
//! Two different blocks certified at one height need more than 1/3 of the voting power to
//! precommit twice (two quorums of more than 2/3 overlap in more than 1/3), which honest
//! validators never do: the signatures of the validators in both certificates are the evidence.

use serde::Serialize;
use tradeloop_crypto::{Hash, PublicKey, Signature};

use crate::model::block::{events_root, CertifiedBlock, Header};
use crate::model::genesis::Genesis;

/// One of the two copies compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Side {
    /// The first copy named.
    A,
    /// The second copy named.
    B,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::A => "A",
            Side::B => "B",
        })
    }
}

/// Why two copies could not be compared.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompareError {
    /// A copy could not be read, or a block of it is not a well-formed block of this chain.
    #[error(
        "copy {side} at height {height}: {reason}. Run `tradeloop verify` on it for the full check"
    )]
    InvalidCopy {
        /// Which copy.
        side: Side,
        /// The first bad height (0: the copy as a whole, e.g. its genesis).
        height: u64,
        /// What is wrong.
        reason: String,
    },
}

impl CompareError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CompareError::InvalidCopy { .. } => "COPY_INVALID",
        }
    }
}

/// A header with its hash, as a report shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShownHeader {
    /// The block hash.
    pub hash: Hash,
    /// The header's fields.
    pub header: Header,
}

/// A validator's precommit in one certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Precommit {
    /// The certificate's round.
    pub round: u32,
    /// The block it commits.
    pub block_hash: Hash,
    /// The signature over the precommit sign bytes (docs/formats.md).
    pub signature: Signature,
}

/// A validator that precommitted both blocks of a split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Equivocator {
    /// Its node key.
    pub validator: PublicKey,
    /// The participant that runs it.
    pub participant: String,
    /// Its voting power.
    pub power: u64,
    /// Its precommit in copy A's certificate.
    pub in_a: Precommit,
    /// Its precommit in copy B's certificate.
    pub in_b: Precommit,
}

/// Two copies that hold different blocks at one height.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SplitView {
    /// The first height at which they differ.
    pub height: u64,
    /// Copy A's block there.
    pub a: ShownHeader,
    /// Copy B's block there.
    pub b: ShownHeader,
    /// `None` if copy A's certificate verifies against the genesis, else why not.
    pub a_certificate_error: Option<String>,
    /// The same for copy B.
    pub b_certificate_error: Option<String>,
    /// When both certificates verify: the validators that signed both, in key order.
    pub equivocators: Vec<Equivocator>,
    /// Their voting power together.
    pub equivocating_power: u64,
    /// The genesis validator set's total power.
    pub total_power: u64,
}

/// The outcome of a comparison.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Comparison {
    /// The same blocks, to the same tip.
    Same {
        /// The common tip height.
        height: u64,
        /// Its hash (the genesis's zero hash for empty copies).
        tip_hash: Hash,
    },
    /// The same blocks up to the shorter copy's tip; the other goes on.
    Prefix {
        /// The longer copy.
        longer: Side,
        /// The shorter copy's tip height (the last common block).
        common_height: u64,
        /// The longer copy's tip height.
        longer_height: u64,
        /// Hash of the last common block.
        common_hash: Hash,
    },
    /// Different blocks at one height.
    Split(Box<SplitView>),
}

/// A copy read block by block: `Ok(None)` at its end; an error names the height and why.
pub type Source<'s> = dyn FnMut() -> Result<Option<CertifiedBlock>, (u64, String)> + 's;

/// Checks a block's structure against its predecessor in the same copy.
fn check_structure(
    genesis: &Genesis,
    side: Side,
    expected_height: u64,
    prev_hash: &Hash,
    block: &CertifiedBlock,
) -> Result<Hash, CompareError> {
    let invalid =
        |reason: String| CompareError::InvalidCopy { side, height: expected_height, reason };
    let h = &block.block.header;
    if h.chain != genesis.hash {
        return Err(invalid(format!(
            "the block is of chain {}, your genesis names chain {}",
            h.chain, genesis.hash
        )));
    }
    if h.height != expected_height {
        return Err(invalid(format!("the block has height {}", h.height)));
    }
    if h.prev_hash != *prev_hash {
        return Err(invalid("the block does not link to the copy's previous block".into()));
    }
    let ids: Vec<Hash> = block.block.events.iter().map(|e| e.id()).collect();
    if ids.len() != h.event_count as usize || events_root(&ids) != h.events_root {
        return Err(invalid("the events do not match the header's events root".into()));
    }
    let hash = h.hash();
    if block.certificate.block_hash != hash || block.certificate.height != h.height {
        return Err(invalid("the certificate is for another block".into()));
    }
    Ok(hash)
}

fn read(side: Side, source: &mut Source<'_>) -> Result<Option<CertifiedBlock>, CompareError> {
    source().map_err(|(height, reason)| CompareError::InvalidCopy { side, height, reason })
}

/// Compares two copies of the chain of `genesis`.
pub fn compare(
    genesis: &Genesis,
    a: &mut Source<'_>,
    b: &mut Source<'_>,
) -> Result<Comparison, CompareError> {
    let mut height = 0u64;
    let mut tip = Hash::ZERO;
    loop {
        let next = height + 1;
        let block_a = read(Side::A, a)?;
        let block_b = read(Side::B, b)?;
        let (block_a, block_b) = match (block_a, block_b) {
            (None, None) => return Ok(Comparison::Same { height, tip_hash: tip }),
            (Some(first), None) => {
                return prefix(genesis, Side::A, height, tip, first, a);
            }
            (None, Some(first)) => {
                return prefix(genesis, Side::B, height, tip, first, b);
            }
            (Some(x), Some(y)) => (x, y),
        };
        let hash_a = check_structure(genesis, Side::A, next, &tip, &block_a)?;
        let hash_b = check_structure(genesis, Side::B, next, &tip, &block_b)?;
        if hash_a != hash_b {
            return Ok(Comparison::Split(Box::new(split(genesis, &block_a, &block_b))));
        }
        height = next;
        tip = hash_a;
    }
}

/// The longer copy's remaining blocks are checked for structure as far as they go.
fn prefix(
    genesis: &Genesis,
    longer: Side,
    common_height: u64,
    common_hash: Hash,
    first: CertifiedBlock,
    source: &mut Source<'_>,
) -> Result<Comparison, CompareError> {
    let mut height = common_height + 1;
    let mut prev = check_structure(genesis, longer, height, &common_hash, &first)?;
    while let Some(block) = read(longer, source)? {
        height += 1;
        prev = check_structure(genesis, longer, height, &prev, &block)?;
    }
    Ok(Comparison::Prefix { longer, common_height, longer_height: height, common_hash })
}

fn split(genesis: &Genesis, a: &CertifiedBlock, b: &CertifiedBlock) -> SplitView {
    let height = a.block.header.height;
    let verify = |block: &CertifiedBlock| {
        block
            .certificate
            .verify(&genesis.hash, &genesis.validators, height, &block.block.header.hash())
            .err()
            .map(|e| e.to_string())
    };
    let a_certificate_error = verify(a);
    let b_certificate_error = verify(b);
    let mut equivocators = Vec::new();
    if a_certificate_error.is_none() && b_certificate_error.is_none() {
        for sig_a in &a.certificate.signatures {
            let Some(sig_b) =
                b.certificate.signatures.iter().find(|s| s.validator == sig_a.validator)
            else {
                continue;
            };
            let participant = genesis
                .doc
                .validators
                .iter()
                .find(|v| v.node_key == sig_a.validator)
                .map(|v| v.participant.clone())
                .unwrap_or_default();
            equivocators.push(Equivocator {
                validator: sig_a.validator,
                participant,
                power: genesis.validators.power_of(&sig_a.validator).unwrap_or(0),
                in_a: Precommit {
                    round: a.certificate.round,
                    block_hash: a.certificate.block_hash,
                    signature: sig_a.signature,
                },
                in_b: Precommit {
                    round: b.certificate.round,
                    block_hash: b.certificate.block_hash,
                    signature: sig_b.signature,
                },
            });
        }
    }
    let equivocating_power = equivocators.iter().map(|e| e.power).sum();
    SplitView {
        height,
        a: ShownHeader { hash: a.block.header.hash(), header: a.block.header.clone() },
        b: ShownHeader { hash: b.block.header.hash(), header: b.block.header.clone() },
        a_certificate_error,
        b_certificate_error,
        equivocators,
        equivocating_power,
        total_power: genesis.validators.total_power,
    }
}
