//! The stateless checks of a consensus message from a peer, made before it is forwarded or
//! given to the driver: by the node's network task and by the simulator alike.

use malachite_core_consensus::SignedConsensusMsg;
use tradeloop_crypto::PublicKey;

use super::context::{TradeContext, Validators};
use crate::net::message::{ConsensusWire, WireError};

/// Why a consensus message from a peer is refused (and its sender penalised).
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// The bytes are not a consensus message.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Signed by a key that is not a validator's.
    #[error("{what} signed by {who}, not a validator")]
    NotAValidator {
        /// `vote`, `proposal` or `polka certificate`.
        what: &'static str,
        /// The signer.
        who: Box<PublicKey>,
    },
    /// A signature that does not hold.
    #[error("{what}: the signature of {who} is invalid")]
    BadSignature {
        /// `vote`, `proposal`, `polka certificate` or `proposal part`.
        what: &'static str,
        /// The signer named by the message.
        who: Box<PublicKey>,
    },
    /// A proposal part from a validator that is not the round's proposer.
    #[error("part from {from}, not the proposer of height {height} round {round}")]
    NotTheProposer {
        /// The part's signer.
        from: Box<PublicKey>,
        /// The part's height.
        height: u64,
        /// The part's round.
        round: i64,
    },
}

/// The stateless checks of a consensus message, before it is forwarded: its signer is a
/// validator (for a part, the round's proposer) and its signature holds.
pub fn check_consensus(
    ctx: &TradeContext,
    validators: &Validators,
    msg: ConsensusWire,
) -> Result<ConsensusWire, InboundError> {
    use malachite_core_types::Context as _;
    let is_validator = |k: &PublicKey| validators.0.iter().any(|v| v.public_key == *k);
    match &msg {
        ConsensusWire::Signed(SignedConsensusMsg::Vote(v)) => {
            let who = v.message.validator.0;
            if !is_validator(&who) {
                return Err(InboundError::NotAValidator { what: "vote", who: Box::new(who) });
            }
            if !ctx.verify(&who, &ctx.vote_bytes(&v.message), &v.signature) {
                return Err(InboundError::BadSignature { what: "vote", who: Box::new(who) });
            }
        }
        ConsensusWire::Signed(SignedConsensusMsg::Proposal(p)) => {
            let who = p.message.proposer.0;
            if !is_validator(&who) {
                return Err(InboundError::NotAValidator { what: "proposal", who: Box::new(who) });
            }
            if !ctx.verify(&who, &ctx.proposal_bytes(&p.message), &p.signature) {
                return Err(InboundError::BadSignature { what: "proposal", who: Box::new(who) });
            }
        }
        ConsensusWire::Polka(c) => {
            // Every signature is checked before the certificate is forwarded, so that a forged
            // one is not spread to every node (the core checks the quorum again).
            for s in &c.polka_signatures {
                let who = s.address.0;
                if !is_validator(&who) {
                    let what = "polka certificate";
                    return Err(InboundError::NotAValidator { what, who: Box::new(who) });
                }
                let vote = crate::consensus::context::Vote {
                    vote_type: malachite_core_types::VoteType::Prevote,
                    height: c.height,
                    round: c.round,
                    value: malachite_core_types::NilOrVal::Val(c.value_id),
                    validator: s.address,
                };
                if !ctx.verify(&who, &ctx.vote_bytes(&vote), &s.signature) {
                    let what = "polka certificate";
                    return Err(InboundError::BadSignature { what, who: Box::new(who) });
                }
            }
        }
        ConsensusWire::Part(part) => {
            let expected = ctx.select_proposer(
                validators,
                crate::consensus::context::Height(part.height),
                part.round,
            );
            if expected.public_key != part.proposer {
                return Err(InboundError::NotTheProposer {
                    from: Box::new(part.proposer),
                    height: part.height,
                    round: part.round.as_i64(),
                });
            }
            if !part.verify(&ctx.chain) {
                let who = Box::new(part.proposer);
                return Err(InboundError::BadSignature { what: "proposal part", who });
            }
        }
    }
    Ok(msg)
}

/// The height a consensus message is for.
pub fn consensus_height(msg: &ConsensusWire) -> Option<u64> {
    match msg {
        ConsensusWire::Signed(SignedConsensusMsg::Vote(v)) => Some(v.message.height.0),
        ConsensusWire::Signed(SignedConsensusMsg::Proposal(p)) => Some(p.message.height.0),
        ConsensusWire::Polka(c) => Some(c.height.0),
        ConsensusWire::Part(p) => Some(p.height),
    }
}
