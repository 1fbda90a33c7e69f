//! The JSON of the API's answers, shared with the CLI so both ends read one definition, and
//! described by the OpenAPI document ([`super::openapi`]) through `ToSchema`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tradeloop_crypto::Hash;
use tradeloop_ledger::query::CommittedEvent;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle};
use utoipa::openapi::schema::{
    AdditionalProperties, AnyOfBuilder, ObjectBuilder, OneOfBuilder, Schema,
};
use utoipa::openapi::{Ref, RefOr, Required, Type};
use utoipa::ToSchema;

use crate::chain::notice::Committed;
use crate::hex_hash;

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
    pub fn new(s: tradeloop_ledger::query::TradeStatus, height: u64) -> TradeView {
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

/// The SSE event name of a committed event on `GET /v1/stream`.
pub const STREAM_EVENT_NAME: &str = "event";
/// The SSE event name of the last message of a stream that fell behind.
pub const STREAM_TOO_SLOW_NAME: &str = "too_slow";

/// An RFC 9457 problem, the body of every whole-request error (`application/problem+json`).
#[derive(ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)] // a schema only: `Problem` writes the same members
pub(crate) struct ProblemDetails {
    /// `urn:tradeloop:problem:CODE`.
    #[serde(rename = "type")]
    #[schema(example = "urn:tradeloop:problem:TOO_MANY_EVENTS")]
    kind: String,
    /// A short summary of the code, the same for every occurrence.
    #[schema(example = "Too many events in one request")]
    title: String,
    /// The HTTP status.
    #[schema(example = 413)]
    status: u16,
    /// What was wrong in this request and what to do.
    detail: String,
    /// The stable code (docs/api.md); codes are never renamed, only added.
    #[schema(example = "TOO_MANY_EVENTS")]
    code: String,
    /// How long to wait before retrying, in milliseconds (with `MEMPOOL_FULL`).
    #[schema(nullable = false)]
    retry_after_ms: Option<u64>,
    /// With a `POST /v1/events` that admitted no event (409, 422, 429): one result per event,
    /// in request order, as a 200 answer has them.
    #[schema(nullable = false)]
    results: Option<Vec<EventResult>>,
}

/// The body of `POST /v1/events`.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // a schema only: the handler reads each element's exact bytes
pub(crate) enum SubmitBody {
    /// One envelope.
    One(Envelope),
    /// An array of envelopes, answered in order.
    Many(Vec<Envelope>),
}

/// An evidence bundle (docs/formats.md, "Evidence bundle"): one event, or every event of a
/// trade, with the block headers and commit certificates that let a third party check it
/// offline with the genesis alone (`tradeloop verify-proof`). Every byte string is lower-case
/// hex; every object has exactly the fields the format names.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only: the ledger writes the bundle (`EvidenceBundle::to_json`)
pub(crate) struct EvidenceBundle {
    /// `tradeloop/evidence`.
    #[schema(example = "tradeloop/evidence")]
    format: String,
    /// The format's version.
    #[schema(example = 1)]
    version: u32,
    /// The genesis hash.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    chain: String,
    /// Each block holding an event of the bundle, once, by height: `header` and `certificate`.
    #[schema(value_type = Vec<Object>)]
    blocks: Vec<serde_json::Value>,
    /// The events in ledger order: height, index, id, body (hex of the canonical bytes),
    /// signature and Merkle proof.
    #[schema(value_type = Vec<Object>)]
    events: Vec<serde_json::Value>,
}

/// One server-sent event of `GET /v1/stream`, as OpenAPI 3.1 tools read a `text/event-stream`
/// answer's schema (each event's fields; OpenAPI 3.2 calls it `itemSchema`): an `event` with an
/// `EventView` as JSON data and its position as id, or the last `too_slow` with a
/// `StreamTooSlow`. Heartbeats are comments, not events.
pub(crate) struct StreamEvent;

impl utoipa::PartialSchema for StreamEvent {
    fn schema() -> RefOr<Schema> {
        let json = |schema: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("application/json")
                .content_schema(Some(Ref::from_schema_name(schema)))
        };
        let name =
            |name: &str| ObjectBuilder::new().schema_type(Type::String).enum_values(Some([name]));
        let event = ObjectBuilder::new()
            .schema_type(Type::Object)
            .title(Some("A committed event"))
            .property("event", name(STREAM_EVENT_NAME))
            .required("event")
            .property(
                "id",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[0-9]+:[0-9]+$"))
                    .description(Some("`HEIGHT:INDEX`, for `Last-Event-ID`")),
            )
            .required("id")
            .property("data", json("EventView"))
            .required("data");
        let too_slow = ObjectBuilder::new()
            .schema_type(Type::Object)
            .title(Some("The last event to a client too slow to take its events"))
            .property("event", name(STREAM_TOO_SLOW_NAME))
            .required("event")
            .property("data", json("StreamTooSlow"))
            .required("data");
        RefOr::T(Schema::OneOf(OneOfBuilder::new().item(event).item(too_slow).build()))
    }
}

impl ToSchema for StreamEvent {}

/// The query of `POST /v1/events` as one parameter whose properties are the query's parameters
/// (`style: form`, `explode: true`). OpenAPI cannot tie two parameters together, and the node
/// does: `timeout_ms` is the length of a commit wait, so it comes only with `wait=commit` (400
/// `BAD_QUERY` otherwise); `wait=none`, or no query, waits for nothing.
pub(crate) fn submit_query_parameter() -> Parameter {
    let wait = |value: &str, description: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some([value]))
            .description(Some(description))
    };
    let commit = ObjectBuilder::new()
        .schema_type(Type::Object)
        .title(Some("Wait for the commit"))
        .property(
            "wait",
            wait("commit", "Wait until every accepted event is committed, or the wait ends."),
        )
        .required("wait")
        .property(
            "timeout_ms",
            unsigned(0).description(Some(
                "How long to wait, in milliseconds (default `default_wait_ms`, capped by \
                 `max_wait_ms`).",
            )),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    let no_wait = ObjectBuilder::new()
        .schema_type(Type::Object)
        .title(Some("No wait"))
        .property("wait", wait("none", "Answer once the events are admitted (the default)."))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    let query = AnyOfBuilder::new().schema_type(Type::Object).item(commit).item(no_wait);
    ParameterBuilder::new()
        .name("wait")
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .style(Some(ParameterStyle::Form))
        .explode(Some(true))
        .description(Some(
            "`wait=commit` to wait for the events to be committed, with `timeout_ms=N` to bound \
             the wait; `wait=none` (the default) not to. `timeout_ms` without `wait=commit` is \
             400 `BAD_QUERY`; so is any other parameter.",
        ))
        .schema(Some(query))
        .example(Some(serde_json::json!({"wait": "commit", "timeout_ms": 5000})))
        .build()
}

/// The largest value of an integer parameter: the handlers read each into a `u64` or `usize`.
pub const PARAMETER_MAX: u64 = u64::MAX;

/// An unsigned integer of `minimum` to [`PARAMETER_MAX`].
pub(crate) fn unsigned(minimum: u64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(minimum))
        .maximum(Some(PARAMETER_MAX))
}
