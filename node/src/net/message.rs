//! What member nodes send each other (docs/formats.md, "Network messages").
//!
//! - **Consensus topic**: one [`ConsensusWire`] per gossip message. Votes, proposals and polka
//!   certificates use the fixed layouts of the WAL records (tags 1, 2 and 5, see
//!   [`crate::consensus::walrecord`]); a block travels as [`ProposalPart`]s (tag 32), each
//!   signed by the proposer's node key, so a part is checked before it is forwarded and a
//!   forged part cannot poison a block being reassembled.
//! - **Events topic**: an [`EventBatch`], the events' bincode form (docs/formats.md, "Events").
//! - **Request-response**: a [`Request`] and its [`Response`], bincode (the ledger's codec, with
//!   its size limit).
//!
//! Every decoder refuses trailing bytes and anything over its named bound.

use serde::{Deserialize, Serialize};
use tradeloop_crypto::{domain_hash, Hash, PublicKey, Signature, SigningKey};
use tradeloop_ledger::{Block, CertifiedBlock, SignedEvent};

use crate::consensus::context::TradeContext;
use crate::consensus::walrecord::WalRecord;
use malachite_core_consensus::{Input, SignedConsensusMsg};
use malachite_core_types::{PolkaCertificate, Round};

/// Bytes of block data in one proposal part: 1 MiB.
pub const MAX_PART_BYTES: usize = 1024 * 1024;
/// Most parts one block may be split into (a 32 MiB block, the block log's frame bound).
pub const MAX_PARTS: u32 = 32;
/// Most events in one gossip batch.
pub const MAX_BATCH_EVENTS: usize = 512;
/// Most event ids in one [`Request::Events`] (32 KiB of ids, within the request bound).
pub const MAX_FETCH_IDS: usize = 1024;
/// Most bytes of events in one [`Response::Events`]: 8 MiB (a response stops early at this
/// bound, and always carries at least one event it has).
pub const MAX_FETCH_RESPONSE_BYTES: u64 = 8 * 1024 * 1024;
/// Most blocks in one sync response.
pub const MAX_SYNC_BLOCKS: u32 = 64;
/// Most bytes of blocks in one sync response: 16 MiB (a response stops early at this bound,
/// and always carries at least one block).
pub const MAX_SYNC_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

const PART: u8 = 32;
const PART_DOMAIN: &[u8] = b"tradeloop/proposal-part/v2\0";

/// Why bytes from a peer are not a message.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not a message of this protocol version.
    #[error("malformed network message: {0}")]
    Malformed(String),
    /// Bytes that do not decode to the message they are framed as.
    #[error("malformed network message: {0}")]
    Decode(#[from] tradeloop_ledger::encoding::codec::DecodeError),
    /// A signed consensus message that does not decode.
    #[error("malformed consensus message: {0}")]
    Record(#[from] crate::consensus::walrecord::RecordError),
    /// Could not be encoded (a bound was exceeded).
    #[error("cannot encode network message: {0}")]
    Encode(String),
}

impl WireError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            WireError::Malformed(_) | WireError::Decode(_) | WireError::Record(_) => {
                "WIRE_MALFORMED"
            }
            WireError::Encode(_) => "WIRE_ENCODE",
        }
    }
}

/// A message on the consensus topic.
#[derive(Clone, Debug)]
pub enum ConsensusWire {
    /// A signed vote or proposal.
    Signed(SignedConsensusMsg<TradeContext>),
    /// A polka certificate (liveness: helps validators that missed prevotes).
    Polka(PolkaCertificate<TradeContext>),
    /// A part of a proposed block.
    Part(ProposalPart),
}

/// One part of a block proposed at `(height, round)`, signed by its proposer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposalPart {
    /// Height.
    pub height: u64,
    /// The round of the proposal.
    pub round: Round,
    /// Its proof-of-lock round (`Round::Nil` if none).
    pub valid_round: Round,
    /// The proposer's node key.
    pub proposer: PublicKey,
    /// The hash of the whole block.
    pub block_hash: Hash,
    /// This part's index, from 0.
    pub index: u32,
    /// How many parts the block has.
    pub count: u32,
    /// This part's bytes of the proposal's bincode encoding ([`CompactBlock`]).
    pub bytes: Vec<u8>,
    /// The proposer's signature over [`ProposalPart::signing_bytes`].
    pub signature: Signature,
}

impl ProposalPart {
    /// `SHA-256(domain || chain || height || round || valid_round || block_hash || index ||
    /// count || SHA-256(bytes))`, the bytes the proposer signs (integers big-endian, rounds as
    /// i64 with -1 for none).
    pub fn signing_bytes(&self, chain: &Hash) -> Vec<u8> {
        let data_hash = Hash::sha256(&self.bytes);
        domain_hash(
            PART_DOMAIN,
            &[
                &chain.0,
                &self.height.to_be_bytes(),
                &self.round.as_i64().to_be_bytes(),
                &self.valid_round.as_i64().to_be_bytes(),
                &self.block_hash.0,
                &self.index.to_be_bytes(),
                &self.count.to_be_bytes(),
                &data_hash.0,
            ],
        )
        .0
        .to_vec()
    }

    /// Whether the proposer's signature holds.
    pub fn verify(&self, chain: &Hash) -> bool {
        self.proposer.verify(&self.signing_bytes(chain), &self.signature).is_ok()
    }
}

/// A block as its proposal carries it: the header and the ids of its events, in order. The
/// validators hold most events already (gossip brought them to every mempool), so each event
/// crosses the network once; a validator fetches the ones it lacks from the proposer
/// ([`Request::Events`]). The header commits to the ids (its events root), so a proposal is
/// only valid with exactly these events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactBlock {
    /// The block's header.
    pub header: tradeloop_ledger::Header,
    /// Its events' ids, in block order.
    pub ids: Vec<Hash>,
}

impl CompactBlock {
    /// The compact form of `block`.
    pub fn of(block: &Block) -> CompactBlock {
        CompactBlock {
            header: block.header.clone(),
            ids: block.events.iter().map(SignedEvent::id).collect(),
        }
    }
}

/// Splits a block's proposal ([`CompactBlock::of`]) into signed parts.
pub fn split_block(
    block: &Block,
    round: Round,
    valid_round: Round,
    key: &SigningKey,
    chain: &Hash,
) -> Result<Vec<ProposalPart>, WireError> {
    split_proposal(&CompactBlock::of(block), round, valid_round, key, chain)
}

/// Splits a proposal into signed parts for `(round, valid_round)`.
pub fn split_proposal(
    proposal: &CompactBlock,
    round: Round,
    valid_round: Round,
    key: &SigningKey,
    chain: &Hash,
) -> Result<Vec<ProposalPart>, WireError> {
    let bytes = tradeloop_ledger::encoding::codec::encode(proposal)
        .map_err(|e| WireError::Encode(e.to_string()))?;
    let block_hash = proposal.header.hash();
    let chunks: Vec<&[u8]> = bytes.chunks(MAX_PART_BYTES).collect();
    let count = u32::try_from(chunks.len()).ok().filter(|c| *c <= MAX_PARTS).ok_or_else(|| {
        WireError::Encode(format!("a proposal of {} bytes is over {MAX_PARTS} parts", bytes.len()))
    })?;
    let mut parts = Vec::with_capacity(chunks.len());
    for (index, chunk) in (0u32..).zip(chunks) {
        let mut part = ProposalPart {
            height: proposal.header.height,
            round,
            valid_round,
            proposer: key.public_key(),
            block_hash,
            index,
            count,
            bytes: chunk.to_vec(),
            signature: Signature([0; 64]),
        };
        part.signature = key.sign(&part.signing_bytes(chain));
        parts.push(part);
    }
    Ok(parts)
}

/// Encodes a consensus message.
pub fn encode_consensus(msg: &ConsensusWire) -> Result<Vec<u8>, WireError> {
    let record =
        |input| WalRecord::Input(input).encode().map_err(|e| WireError::Encode(e.to_string()));
    match msg {
        ConsensusWire::Signed(SignedConsensusMsg::Vote(v)) => record(Input::Vote(v.clone())),
        ConsensusWire::Signed(SignedConsensusMsg::Proposal(p)) => {
            record(Input::Proposal(p.clone()))
        }
        ConsensusWire::Polka(c) => record(Input::PolkaCertificate(c.clone())),
        ConsensusWire::Part(p) => {
            let mut out = Vec::with_capacity(p.bytes.len() + 200);
            out.push(PART);
            out.extend_from_slice(&p.height.to_be_bytes());
            out.extend_from_slice(&p.round.as_i64().to_be_bytes());
            out.extend_from_slice(&p.valid_round.as_i64().to_be_bytes());
            out.extend_from_slice(p.proposer.as_bytes());
            out.extend_from_slice(&p.block_hash.0);
            out.extend_from_slice(&p.index.to_be_bytes());
            out.extend_from_slice(&p.count.to_be_bytes());
            out.extend_from_slice(&p.signature.0);
            let len = u32::try_from(p.bytes.len())
                .map_err(|_| WireError::Encode("part too large".into()))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&p.bytes);
            Ok(out)
        }
    }
}

/// Decodes a consensus message (syntax only: signatures are checked by the caller).
pub fn decode_consensus(bytes: &[u8]) -> Result<ConsensusWire, WireError> {
    let malformed = |d: &str| WireError::Malformed(d.to_string());
    match bytes.first() {
        None => Err(malformed("empty message")),
        Some(&PART) => decode_part(&bytes[1..]),
        Some(_) => match WalRecord::decode(bytes)? {
            WalRecord::Input(Input::Vote(v)) => {
                Ok(ConsensusWire::Signed(SignedConsensusMsg::Vote(v)))
            }
            WalRecord::Input(Input::Proposal(p)) => {
                Ok(ConsensusWire::Signed(SignedConsensusMsg::Proposal(p)))
            }
            WalRecord::Input(Input::PolkaCertificate(c)) => Ok(ConsensusWire::Polka(c)),
            _ => Err(malformed("not a consensus message kind")),
        },
    }
}

fn decode_part(mut b: &[u8]) -> Result<ConsensusWire, WireError> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], WireError> {
        if b.len() < n {
            return Err(WireError::Malformed("proposal part cut short".into()));
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Ok(head)
    }
    let u64_of = |s: &[u8]| u64::from_be_bytes(s.try_into().unwrap_or([0; 8]));
    let u32_of = |s: &[u8]| u32::from_be_bytes(s.try_into().unwrap_or([0; 4]));
    let round_of = |v: i64| -> Result<Round, WireError> {
        match v {
            -1 => Ok(Round::Nil),
            r if (0..=i64::from(u32::MAX)).contains(&r) => {
                Ok(Round::new(u32::try_from(r).unwrap_or(0)))
            }
            r => Err(WireError::Malformed(format!("round {r} out of range"))),
        }
    };
    let height = u64_of(take(&mut b, 8)?);
    let round = round_of(u64_of(take(&mut b, 8)?) as i64)?;
    let valid_round = round_of(u64_of(take(&mut b, 8)?) as i64)?;
    let proposer = PublicKey::from_bytes(take(&mut b, 32)?.try_into().unwrap_or([0; 32]))
        .map_err(|e| WireError::Malformed(format!("proposer key: {e}")))?;
    let block_hash = Hash(take(&mut b, 32)?.try_into().unwrap_or([0; 32]));
    let index = u32_of(take(&mut b, 4)?);
    let count = u32_of(take(&mut b, 4)?);
    let signature = Signature(take(&mut b, 64)?.try_into().unwrap_or([0; 64]));
    let len = u32_of(take(&mut b, 4)?) as usize;
    if len == 0 || len > MAX_PART_BYTES {
        return Err(WireError::Malformed(format!("part of {len} bytes (1..={MAX_PART_BYTES})")));
    }
    if count == 0 || count > MAX_PARTS || index >= count {
        return Err(WireError::Malformed(format!("part {index} of {count} (at most {MAX_PARTS})")));
    }
    let data = take(&mut b, len)?.to_vec();
    if !b.is_empty() {
        return Err(WireError::Malformed("trailing bytes after a proposal part".into()));
    }
    Ok(ConsensusWire::Part(ProposalPart {
        height,
        round,
        valid_round,
        proposer,
        block_hash,
        index,
        count,
        bytes: data,
        signature,
    }))
}

/// Prefixes a consensus message with the publisher's counter for the consensus topic. Gossip
/// suppresses repeated bytes for a while, but Tendermint needs a vote sent again after a
/// timeout to arrive again (its gossip assumption): the counter makes each publication new,
/// while relays forward the same bytes, so gossip's dedup of one publication still works.
pub fn gossip_frame(counter: u64, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + message.len());
    out.extend_from_slice(&counter.to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The consensus message inside a [`gossip_frame`].
pub fn gossip_unframe(data: &[u8]) -> Result<&[u8], WireError> {
    data.get(8..)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| WireError::Malformed("consensus gossip shorter than its counter".into()))
}

/// Events gossiped together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBatch {
    /// The events, as their authors signed them.
    pub events: Vec<SignedEvent>,
}

impl EventBatch {
    /// The batch's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        if self.events.len() > MAX_BATCH_EVENTS {
            return Err(WireError::Encode(format!(
                "more than {MAX_BATCH_EVENTS} events in a batch"
            )));
        }
        tradeloop_ledger::encoding::codec::encode(self)
            .map_err(|e| WireError::Encode(e.to_string()))
    }

    /// Parses a batch.
    pub fn decode(bytes: &[u8]) -> Result<EventBatch, WireError> {
        let batch: EventBatch =
            tradeloop_ledger::encoding::codec::decode(bytes).map_err(WireError::Decode)?;
        if batch.events.is_empty() || batch.events.len() > MAX_BATCH_EVENTS {
            return Err(WireError::Malformed(format!(
                "a batch holds 1..={MAX_BATCH_EVENTS} events, this one {}",
                batch.events.len()
            )));
        }
        Ok(batch)
    }
}

/// A request to a peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// "What is your tip?"
    Status,
    /// "Send me your committed blocks from `from`, at most `count`."
    Blocks {
        /// First height wanted.
        from: u64,
        /// Most blocks wanted (at most [`MAX_SYNC_BLOCKS`]).
        count: u32,
    },
    /// "Send me these events of a block you proposed" (at most [`MAX_FETCH_IDS`]).
    Events {
        /// The ids wanted.
        ids: Vec<Hash>,
    },
}

/// A peer's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Its tip.
    Status {
        /// The chain (genesis hash): a peer of another chain is ignored.
        chain: Hash,
        /// Its committed height.
        height: u64,
        /// Its tip block hash.
        tip_hash: Hash,
    },
    /// Consecutive committed blocks from the height asked, with their certificates.
    Blocks(Vec<CertifiedBlock>),
    /// The request could not be answered.
    Error(String),
    /// Those of the events asked for that the peer has (within [`MAX_FETCH_RESPONSE_BYTES`]).
    Events(Vec<SignedEvent>),
}

impl Request {
    /// The request's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        tradeloop_ledger::encoding::codec::encode(self)
            .map_err(|e| WireError::Encode(e.to_string()))
    }
    /// Parses a request.
    pub fn decode(bytes: &[u8]) -> Result<Request, WireError> {
        tradeloop_ledger::encoding::codec::decode(bytes).map_err(WireError::Decode)
    }
}

impl Response {
    /// The response's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        tradeloop_ledger::encoding::codec::encode(self)
            .map_err(|e| WireError::Encode(e.to_string()))
    }
    /// Parses a response.
    pub fn decode(bytes: &[u8]) -> Result<Response, WireError> {
        tradeloop_ledger::encoding::codec::decode(bytes).map_err(WireError::Decode)
    }
}

#[cfg(test)]
mod tests;
