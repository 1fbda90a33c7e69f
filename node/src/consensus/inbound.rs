//! The stateless checks of a consensus message from a peer, made before it is forwarded or
//! given to the driver: by the node's network task and by the simulator alike.

use malachite_core_consensus::SignedConsensusMsg;
use tradeloop_crypto::PublicKey;

use super::context::{TradeContext, Validators};
use crate::net::message::ConsensusWire;

/// The stateless checks of a consensus message, before it is forwarded: its signer is a
/// validator (for a part, the round's proposer) and its signature holds.
pub fn check_consensus(
    ctx: &TradeContext,
    validators: &Validators,
    msg: ConsensusWire,
) -> Result<ConsensusWire, String> {
    use malachite_core_types::Context as _;
    let is_validator = |k: &PublicKey| validators.0.iter().any(|v| v.public_key == *k);
    match &msg {
        ConsensusWire::Signed(SignedConsensusMsg::Vote(v)) => {
            let who = v.message.validator.0;
            if !is_validator(&who) {
                return Err(format!("vote from {who}, not a validator"));
            }
            if !ctx.verify(&who, &ctx.vote_bytes(&v.message), &v.signature) {
                return Err("vote signature invalid".into());
            }
        }
        ConsensusWire::Signed(SignedConsensusMsg::Proposal(p)) => {
            let who = p.message.proposer.0;
            if !is_validator(&who) {
                return Err(format!("proposal from {who}, not a validator"));
            }
            if !ctx.verify(&who, &ctx.proposal_bytes(&p.message), &p.signature) {
                return Err("proposal signature invalid".into());
            }
        }
        ConsensusWire::Polka(c) => {
            // Every signature is checked before the certificate is forwarded, so that a forged
            // one is not spread to every node (the core checks the quorum again).
            for s in &c.polka_signatures {
                let who = s.address.0;
                if !is_validator(&who) {
                    return Err(format!("polka certificate signed by {who}, not a validator"));
                }
                let vote = crate::consensus::context::Vote {
                    vote_type: malachite_core_types::VoteType::Prevote,
                    height: c.height,
                    round: c.round,
                    value: malachite_core_types::NilOrVal::Val(c.value_id),
                    validator: s.address,
                };
                if !ctx.verify(&who, &ctx.vote_bytes(&vote), &s.signature) {
                    return Err(format!("polka certificate: signature of {who} invalid"));
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
                return Err(format!(
                    "part from {}, not the proposer of height {} round {}",
                    part.proposer,
                    part.height,
                    part.round.as_i64()
                ));
            }
            if !part.verify(&ctx.chain) {
                return Err("proposal part signature invalid".into());
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
