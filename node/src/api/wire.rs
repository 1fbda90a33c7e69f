//! The JSON of the API's answers, shared with the CLI so both ends read one definition, and
//! described by the OpenAPI document ([`super::openapi`]) through `ToSchema`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tradeloop_crypto::Hash;
use tradeloop_ledger::query::CommittedEvent;
use utoipa::ToSchema;

use super::{hex_hash, Committed, Verdict};

/// The body of a 200 answer to `POST /v1/events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubmitResponse {
    /// One result per submitted event, in request order.
    pub results: Vec<EventResult>,
    /// With `?wait=commit`: whether the wait ended before every accepted event was committed
    /// (those are `pending`). Absent without a wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub timed_out: Option<bool>,
}

/// What became of one event of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EventResult {
    /// In the mempool.
    Accepted {
        /// Event id.
        #[serde(with = "hex_hash")]
        #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
        id: Hash,
    },
    /// On the chain.
    Committed {
        /// Event id.
        #[serde(with = "hex_hash")]
        #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
        id: Hash,
        /// Block height.
        height: u64,
        /// Block hash.
        #[serde(with = "hex_hash")]
        #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
        block_hash: Hash,
        /// Position in the block.
        index: u32,
    },
    /// Refused; `code` is stable.
    Rejected {
        /// Event id, when the envelope parsed far enough to have one.
        #[serde(default, with = "hex_hash::option", skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>, nullable = false, pattern = "^[0-9a-f]{64}$")]
        id: Option<Hash>,
        /// Stable code, e.g. `MALFORMED_EVENT`.
        code: String,
        /// What was wrong and what to do.
        message: String,
    },
    /// The mempool had no room: submit it again after `retry_after_ms`.
    Full {
        /// Event id.
        #[serde(with = "hex_hash")]
        #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
        id: Hash,
        /// Wait before resubmitting, in milliseconds.
        retry_after_ms: u64,
    },
    /// Accepted, not committed when the `?wait=commit` wait ended.
    Pending {
        /// Event id.
        #[serde(with = "hex_hash")]
        #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
        id: Hash,
    },
}

impl EventResult {
    /// The result for a committed event.
    pub fn committed(id: Hash, at: Committed) -> EventResult {
        EventResult::Committed { id, height: at.height, block_hash: at.block_hash, index: at.index }
    }
}

impl From<Verdict> for EventResult {
    fn from(verdict: Verdict) -> EventResult {
        match verdict {
            Verdict::Accepted { id } => EventResult::Accepted { id },
            Verdict::AlreadyCommitted { id, at } => EventResult::committed(id, at),
            Verdict::Rejected { id, code, message } => EventResult::Rejected { id, code, message },
            Verdict::MempoolFull { id, retry_after_ms } => EventResult::Full { id, retry_after_ms },
        }
    }
}

/// A committed event (`GET /v1/events/{id}`, and each event of a trace or of the stream).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// Event id.
    #[serde(with = "hex_hash")]
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub id: Hash,
    /// Height of its block.
    pub height: u64,
    /// Position in the block, from 0.
    pub index: u32,
    /// Hash of its block.
    #[serde(with = "hex_hash")]
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub block_hash: Hash,
    /// The block's time, Unix milliseconds.
    pub block_time_ms: u64,
    /// Event kind, e.g. `trade.order_placed`.
    pub kind: String,
    /// Participant id of the author.
    pub author: String,
    /// The envelope as signed: `body` (its canonical JSON is what the signature covers) and
    /// `signature`; it can be checked, and resubmitted, as it is.
    pub envelope: Envelope,
}

/// An event envelope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Envelope {
    /// The event body, a JSON object (docs/formats.md): its canonical JSON, exactly the bytes
    /// the signature covers.
    #[schema(value_type = Object)]
    pub body: Body,
    /// ed25519 signature, 128 hex characters (the node answers lower-case; it reads either).
    #[schema(pattern = "^[0-9a-fA-F]{128}$")]
    pub signature: String,
}

/// An event body as JSON text, passed through as it is: the node answers with the canonical
/// bytes it holds, never re-serialized.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Body(pub Box<RawValue>);

impl PartialEq for Body {
    fn eq(&self, other: &Body) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Body {
    /// The body parsed.
    pub fn to_value(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::from_str(self.0.get())
    }
}

impl TryFrom<CommittedEvent> for EventView {
    type Error = serde_json::Error;

    /// Fails only if the body is not JSON (a damaged log; the ledger's checks make every body
    /// canonical JSON).
    fn try_from(c: CommittedEvent) -> serde_json::Result<EventView> {
        /// The two fields of a body the view shows beside it.
        #[derive(Deserialize)]
        struct Head<'a> {
            #[serde(borrow, default)]
            kind: std::borrow::Cow<'a, str>,
            #[serde(borrow, default)]
            author: std::borrow::Cow<'a, str>,
        }
        let text = String::from_utf8(c.event.body).map_err(serde::de::Error::custom)?;
        let head: Head<'_> = serde_json::from_str(&text)?;
        let (kind, author) = (head.kind.into_owned(), head.author.into_owned());
        Ok(EventView {
            id: c.id,
            height: c.height,
            index: c.index,
            block_hash: c.block_hash,
            block_time_ms: c.block_time_ms,
            kind,
            author,
            envelope: Envelope {
                body: Body(RawValue::from_string(text)?),
                signature: c.event.signature.to_hex(),
            },
        })
    }
}

/// A block header (`GET /v1/blocks`, `GET /v1/blocks/{height}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeaderView {
    /// Height.
    pub height: u64,
    /// The block hash (docs/formats.md, "Block header").
    #[serde(with = "hex_hash")]
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub hash: Hash,
    /// Hash of the previous block (zeros at height 1).
    #[serde(with = "hex_hash")]
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub prev_hash: Hash,
    /// Block time, Unix milliseconds.
    pub time_ms: u64,
    /// Node key of the proposer, hex.
    pub proposer: String,
    /// Merkle root of the event ids.
    #[serde(with = "hex_hash")]
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub events_root: Hash,
    /// Number of events.
    pub event_count: u32,
    /// State commitment after the block.
    #[serde(with = "hex_hash")]
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub app_hash: Hash,
    /// Hash of the validator set that certifies it.
    #[serde(with = "hex_hash")]
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub validators_hash: Hash,
}

impl From<&tradeloop_ledger::Header> for HeaderView {
    fn from(h: &tradeloop_ledger::Header) -> HeaderView {
        HeaderView {
            height: h.height,
            hash: h.hash(),
            prev_hash: h.prev_hash,
            time_ms: h.time_ms,
            proposer: h.proposer.to_hex(),
            events_root: h.events_root,
            event_count: h.event_count,
            app_hash: h.app_hash,
            validators_hash: h.validators_hash,
        }
    }
}

/// One page of headers (`GET /v1/blocks`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlocksPage {
    /// The chain's height when the page was read.
    pub height: u64,
    /// Headers in height order.
    pub blocks: Vec<HeaderView>,
    /// `from` of the next page, if there are blocks after this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_from: Option<u64>,
}

/// A block with its certificate (`GET /v1/blocks/{height}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlockView {
    /// The header.
    pub header: HeaderView,
    /// The commit certificate.
    pub certificate: CertificateView,
    /// The event ids, in block order (an event's position is its index).
    pub event_ids: Vec<String>,
}

/// A commit certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CertificateView {
    /// The round the block was decided in.
    pub round: u32,
    /// The validators' precommit signatures.
    pub signatures: Vec<CommitSigView>,
}

/// One validator's precommit signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CommitSigView {
    /// The validator's node key, hex.
    pub validator: String,
    /// Its signature, hex.
    pub signature: String,
}

impl From<&tradeloop_ledger::CertifiedBlock> for BlockView {
    fn from(b: &tradeloop_ledger::CertifiedBlock) -> BlockView {
        BlockView {
            header: (&b.block.header).into(),
            certificate: CertificateView {
                round: b.certificate.round,
                signatures: b
                    .certificate
                    .signatures
                    .iter()
                    .map(|s| CommitSigView {
                        validator: s.validator.to_hex(),
                        signature: s.signature.to_hex(),
                    })
                    .collect(),
            },
            event_ids: b.block.events.iter().map(|e| e.id().to_hex()).collect(),
        }
    }
}

/// The events of a trace (`GET /v1/trace/{reference}`), one page of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TraceView {
    /// The reference asked for, e.g. `order:PO-1`.
    pub reference: String,
    /// The chain's height the trace was read at.
    pub height: u64,
    /// Events of the whole trace.
    pub total: usize,
    /// This page's events, in ledger order.
    pub events: Vec<EventView>,
    /// `offset` of the next page, if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_offset: Option<usize>,
}

/// Where a trade stands (`GET /v1/trades/{order_id}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TradeView {
    /// The order.
    pub order_id: String,
    /// The chain's height the status was read at.
    pub height: u64,
    /// Buyer's participant id.
    pub buyer: String,
    /// Seller's participant id.
    pub seller: String,
    /// `CLOSED` when every leg is done, else `OPEN`.
    pub state: String,
    /// Whether the loop is closed: goods received, import cleared, invoices settled.
    pub closed: bool,
    /// Every leg, in the order of the loop.
    pub legs: Vec<LegView>,
    /// Names of the legs still open.
    pub open_legs: Vec<String>,
}

/// One leg of a trade.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LegView {
    /// Leg name, e.g. `export_cleared`.
    pub leg: String,
    /// Whether it is done.
    pub done: bool,
    /// Detail for a person.
    pub detail: String,
}

impl TradeView {
    /// The view of a trade status read at `height`.
    pub fn new(s: tradeloop_ledger::storage::store::TradeStatus, height: u64) -> TradeView {
        TradeView {
            order_id: s.order_id,
            height,
            buyer: s.buyer,
            seller: s.seller,
            state: if s.closed { "CLOSED" } else { "OPEN" }.into(),
            closed: s.closed,
            legs: s
                .legs
                .into_iter()
                .map(|l| LegView { leg: l.leg.into(), done: l.done, detail: l.detail })
                .collect(),
            open_legs: s.open_legs.into_iter().map(Into::into).collect(),
        }
    }
}

/// The chain's participants (`GET /v1/participants`), from its genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ParticipantsView {
    /// The genesis chain id.
    pub chain_id: String,
    /// The genesis hash.
    #[serde(with = "hex_hash")]
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub genesis_hash: Hash,
    /// Every participant.
    pub participants: Vec<ParticipantView>,
}

/// One participant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ParticipantView {
    /// Stable id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Role: exporter, importer, forwarder, bank, customs or auditor.
    pub role: String,
    /// ISO 3166-1 alpha-2 country (for customs, its jurisdiction).
    pub country: String,
    /// Event-signing public keys, hex.
    pub keys: Vec<String>,
}

impl From<&tradeloop_ledger::Participant> for ParticipantView {
    fn from(p: &tradeloop_ledger::Participant) -> ParticipantView {
        ParticipantView {
            id: p.id.clone(),
            name: p.name.clone(),
            role: p.role.as_str().into(),
            country: p.country.clone(),
            keys: p.keys.iter().map(|k| k.to_hex()).collect(),
        }
    }
}

/// The last message of a stream whose client was too slow (SSE event `too_slow`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StreamTooSlow {
    /// `STREAM_TOO_SLOW`.
    pub code: String,
    /// What happened and what to do.
    pub detail: String,
    /// Id (`HEIGHT:INDEX`) of the first event the client did not get.
    pub next_event: String,
}
