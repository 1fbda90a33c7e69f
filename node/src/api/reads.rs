//! The read endpoints: committed events and their proofs, blocks, traces, trades and the
//! participants. They read the ledger through a [`LedgerView`] on the blocking pool, beside
//! the runtime's commits (never through the runtime's command queue), and each answer is of
//! one tip ([`tradeloop_ledger::query`]).

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tradeloop_crypto::Hash;
use tradeloop_ledger::evidence::proof::{event_bundle, trade_bundle, ProofError};
use tradeloop_ledger::query::{CommittedEvent, LedgerView, ViewAt};
use tradeloop_ledger::LedgerError;
use utoipa::IntoParams;

use super::problem::{Problem, ProblemCode};
use crate::api::dto::EvidenceBundle;
use crate::api::dto::{
    BlockView, BlocksPage, EventView, ParticipantView, ParticipantsView, TraceView, TradeView,
};
use crate::api::problems::{
    BlockProblems, BlocksProblems, EventProblems, EventProofProblems, ParticipantsProblems,
    TraceProblems, TradeProblems, TradeProofProblems,
};
use crate::api::state::ApiState;

/// Runs `f` on the blocking pool against the view at the current tip.
pub(super) async fn read<T: Send + 'static>(
    state: &ApiState,
    f: impl FnOnce(&ViewAt<'_>) -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    let view: LedgerView = state.view.clone();
    tokio::task::spawn_blocking(move || f(&view.at_tip().map_err(storage)?))
        .await
        .map_err(|e| Problem::new(ProblemCode::Internal, format!("a read task failed: {e}")))?
}

/// A ledger error that is the node's (its storage), not the request's.
pub(super) fn storage(e: LedgerError) -> Problem {
    Problem::new(
        ProblemCode::Storage,
        format!(
            "the node could not read its ledger ({}: {e}); the operator should check the node's \
             log and run `tradeloop verify` on its data dir",
            e.code()
        ),
    )
}

/// The path's parameter, or a 400 that says what the path takes.
fn path<T>(path: Result<Path<T>, PathRejection>, what: &str) -> Result<T, Problem> {
    path.map(|Path(value)| value).map_err(|e| {
        Problem::new(ProblemCode::BadPath, format!("{}; the path takes {what}", e.body_text()))
    })
}

/// The query, or a 400 that names the parameters.
fn query<T>(query: Result<Query<T>, QueryRejection>, parameters: &str) -> Result<T, Problem> {
    query.map(|Query(value)| value).map_err(|e| {
        Problem::new(
            ProblemCode::BadQuery,
            format!("{}; the parameters are {parameters}", e.body_text()),
        )
    })
}

/// A page's size: `limit` up to `cap` (the default); `limit=0` is refused.
fn page_limit(limit: Option<usize>, cap: usize) -> Result<usize, Problem> {
    match limit {
        None => Ok(cap),
        Some(0) => {
            Err(Problem::new(ProblemCode::BadQuery, "limit=0 asks for nothing; give 1 or more"))
        }
        Some(n) => Ok(n.min(cap)),
    }
}

/// The event id of the path.
fn event_id_path(id: Result<Path<String>, PathRejection>) -> Result<Hash, Problem> {
    event_id(&path(id, "an event id (64 hex characters)")?)
}

/// A 404 for a name no committed event carries; the name is cut at 200 characters.
fn not_on_ledger(name: &str, what_to_do: &str) -> Problem {
    Problem::new(
        ProblemCode::NotOnLedger,
        format!(
            "{} is not on this ledger: {what_to_do}",
            name.chars().take(200).collect::<String>()
        ),
    )
}

fn event_id(text: &str) -> Result<Hash, Problem> {
    Hash::from_hex(text).map_err(|_| {
        Problem::new(
            ProblemCode::BadPath,
            format!(
                "`{}` is not an event id: give the 64 lower-case hex characters of the id that \
                 POST /v1/events answered",
                text.chars().take(80).collect::<String>()
            ),
        )
    })
}

/// The API's view of a committed event; a body that is not JSON is damage to the node's log.
pub(super) fn view_of(committed: CommittedEvent) -> Result<EventView, Problem> {
    let height = committed.height;
    EventView::try_from(committed).map_err(|e| {
        storage(LedgerError::CorruptLog {
            location: format!("height {height}"),
            height,
            detail: format!("an event body is not JSON: {e}"),
        })
    })
}

fn reply<T: serde::Serialize>(result: Result<T, Problem>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// A committed event
///
/// The envelope as signed, with where it is committed: height, index, block hash and time.
#[utoipa::path(
    get,
    path = "/v1/events/{id}",
    tag = "reads",
    params(("id" = String, Path, description = "Event id: the 64 hex characters that `POST /v1/events` answered (it answers lower-case; either case is read)", pattern = "^[0-9a-fA-F]{64}$", example = "5c2d6a0f8e3b47a1c9d0e2f4b6a8c0d1e3f5a7b9c1d3e5f7a9b1c3d5e7f9a1b3")),
    responses(
        (status = 200, description = "The committed event", body = EventView),
        EventProblems,
    ),
    security(("bearer" = ["read"])),
)]
pub async fn get_event(
    State(state): State<Arc<ApiState>>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        let id = event_id_path(id)?;
        read(&state, move |at| match at.committed_event(&id).map_err(storage)? {
            Some(committed) => view_of(committed),
            None => Err(event_not_found(&id, at)),
        })
        .await
    };
    reply(result.await)
}

fn event_not_found(id: &Hash, at: &ViewAt<'_>) -> Problem {
    Problem::new(
        ProblemCode::EventNotFound,
        format!(
            "event {id} is not committed on this chain (height {}); an event that was just \
             accepted commits within a few blocks: ask again, or submit with ?wait=commit",
            at.tip().height
        ),
    )
}

/// An event's evidence bundle
///
/// `GET /v1/events/{id}/proof`: the event's evidence bundle (docs/formats.md, "Evidence
/// bundle"), which `tradeloop verify-proof` checks offline against the genesis.
#[utoipa::path(
    get,
    path = "/v1/events/{id}/proof",
    tag = "reads",
    params(("id" = String, Path, description = "Event id: the 64 hex characters that `POST /v1/events` answered (it answers lower-case; either case is read)", pattern = "^[0-9a-fA-F]{64}$", example = "5c2d6a0f8e3b47a1c9d0e2f4b6a8c0d1e3f5a7b9c1d3e5f7a9b1c3d5e7f9a1b3")),
    responses(
        (status = 200, description = "The event's evidence bundle", body = EvidenceBundle),
        EventProofProblems,
    ),
    security(("bearer" = ["read"])),
)]
pub async fn get_event_proof(
    State(state): State<Arc<ApiState>>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        let id = event_id_path(id)?;
        read(&state, move |at| match event_bundle(at, &id) {
            Ok(bundle) => Ok(bundle.to_json()),
            Err(ProofError::NotFound(_)) => Err(event_not_found(&id, at)),
            Err(e) => Err(proof_problem(e)),
        })
        .await
    };
    json_text(result.await)
}

fn proof_problem(e: ProofError) -> Problem {
    match e {
        ProofError::Ledger(e) => storage(e),
        ProofError::TooManyEvents(n) => Problem::new(
            ProblemCode::TooManyEvents,
            format!(
                "the bundle would hold {n} events, more than a bundle may; ask for single events"
            ),
        ),
        ProofError::NotFound(what) => {
            Problem::new(ProblemCode::NotOnLedger, format!("{what} is not on this ledger"))
        }
    }
}

/// A JSON text made elsewhere (the bundle's own serialisation) as the answer.
fn json_text(result: Result<String, Problem>) -> Response {
    match result {
        Ok(text) => {
            let mut response = text.into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(problem) => problem.into_response(),
    }
}

/// A trade's evidence bundle
///
/// `GET /v1/trades/{order_id}/proof`: the evidence bundle of every event of a trade.
#[utoipa::path(
    get,
    path = "/v1/trades/{order_id}/proof",
    tag = "reads",
    params(("order_id" = String, Path, description = "Order id: the `order_id` of the trade's `trade.order_placed` event", min_length = 1, example = "PO-1")),
    responses(
        (status = 200, description = "The evidence bundle of every event of the trade", body = EvidenceBundle),
        TradeProofProblems,
    ),
    security(("bearer" = ["read"])),
)]
pub async fn get_trade_proof(
    State(state): State<Arc<ApiState>>,
    order: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        let order = path(order, "an order id")?;
        read(&state, move |at| match trade_bundle(at, &order) {
            Ok(bundle) => Ok(bundle.to_json()),
            Err(ProofError::NotFound(_)) => Err(order_not_found(&order)),
            Err(e) => Err(proof_problem(e)),
        })
        .await
    };
    json_text(result.await)
}

fn order_not_found(order: &str) -> Problem {
    not_on_ledger(
        &format!("order {order}"),
        "check the id (the `order_id` of its trade.order_placed event)",
    )
}

/// Query of `GET /v1/blocks`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BlocksQuery {
    /// First height (default 1).
    from: Option<u64>,
    /// Most headers (default and cap: `max_page_blocks`).
    #[param(minimum = 1)]
    limit: Option<usize>,
}

/// Block headers, one page
///
/// `GET /v1/blocks?from=H&limit=N`: headers in height order, one bounded page.
#[utoipa::path(
    get,
    path = "/v1/blocks",
    tag = "reads",
    params(BlocksQuery),
    responses(
        (status = 200, description = "Headers in height order", body = BlocksPage),
        BlocksProblems,
    ),
    security(("bearer" = ["read"])),
)]
pub async fn list_blocks(
    State(state): State<Arc<ApiState>>,
    query: Result<Query<BlocksQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let query = self::query(query, "from=HEIGHT and limit=N")?;
        let limit = page_limit(query.limit, state.limits.max_page_blocks)?;
        let from = query.from.unwrap_or(1).max(1);
        read(&state, move |at| {
            let headers = at.headers(from, limit).map_err(storage)?;
            let last = headers.last().map(|h| h.height);
            Ok(BlocksPage {
                height: at.tip().height,
                next_from: last.filter(|h| *h < at.tip().height).map(|h| h + 1),
                blocks: headers.iter().map(Into::into).collect(),
            })
        })
        .await
    };
    reply(result.await)
}

/// A block
///
/// `GET /v1/blocks/{height}`: header, certificate and event ids.
#[utoipa::path(
    get,
    path = "/v1/blocks/{height}",
    tag = "reads",
    params(("height" = u64, Path, description = "Block height, from 1", minimum = 1, example = 1)),
    responses(
        (status = 200, description = "The block's header, certificate and event ids", body = BlockView),
        BlockProblems,
    ),
    security(("bearer" = ["read"])),
)]
pub async fn get_block(
    State(state): State<Arc<ApiState>>,
    height: Result<Path<u64>, PathRejection>,
) -> Response {
    let result = async {
        let height = path(height, "a block height (1 or more)")?;
        read(&state, move |at| {
            if height == 0 || height > at.tip().height {
                return Err(Problem::new(
                    ProblemCode::BlockNotFound,
                    format!(
                        "there is no block {height}: this node's chain has heights 1 to {}",
                        at.tip().height
                    ),
                ));
            }
            at.block(height).map(|b| BlockView::from(&b)).map_err(storage)
        })
        .await
    };
    reply(result.await)
}

/// Query of `GET /v1/trace/{reference}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TraceQuery {
    /// Skip this many events (from a previous page's `next_offset`).
    offset: Option<usize>,
    /// Most events (default and cap: `max_page_events`).
    #[param(minimum = 1)]
    limit: Option<usize>,
}

/// The events of a trace, one page
///
/// `GET /v1/trace/{reference}`: the events of `shipment:ID`, `order:ID`, `declaration:ID`,
/// `lc:ID` or `invoice:ID` in ledger order, as `tradeloop trace` prints them.
#[utoipa::path(
    get,
    path = "/v1/trace/{reference}",
    tag = "reads",
    params(
        ("reference" = String, Path, description = "`KIND:ID` with KIND one of order, shipment, declaration, lc, invoice and ID not empty (an id longer than the ledger's 128 bytes is on no ledger: 404)", pattern = "^(order|invoice|shipment|declaration|lc):.+$", example = "order:PO-1"),
        TraceQuery,
    ),
    responses(
        (status = 200, description = "The trace's events in ledger order", body = TraceView),
        TraceProblems,
    ),
    security(("bearer" = ["read"])),
)]
pub async fn get_trace(
    State(state): State<Arc<ApiState>>,
    reference: Result<Path<String>, PathRejection>,
    query: Result<Query<TraceQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let reference = path(reference, "a reference such as order:PO-1 or shipment:SHP-1")?;
        let query = self::query(query, "offset=N and limit=N")?;
        let limit = page_limit(query.limit, state.limits.max_page_events)?;
        let offset = query.offset.unwrap_or(0);
        check_reference(&reference)?;
        read(&state, move |at| {
            let records = at.trace_committed(&reference).map_err(|e| match e {
                LedgerError::NotFound(_) => {
                    not_on_ledger(&reference, "no committed event names it; check the id")
                }
                other => storage(other),
            })?;
            let total = records.len();
            let events: Vec<EventView> = records
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(view_of)
                .collect::<Result<_, Problem>>()?;
            let end = offset.saturating_add(events.len());
            Ok(TraceView {
                reference,
                height: at.tip().height,
                total,
                next_offset: (end < total).then_some(end),
                events,
            })
        })
        .await
    };
    reply(result.await)
}

/// The kinds of reference a trace takes (the ledger's `parse_ref`); the document's pattern for
/// `{reference}` names the same.
const REFERENCE_KINDS: [&str; 5] = ["order", "invoice", "shipment", "declaration", "lc"];

/// Refuses (400) what the document's pattern refuses: no known kind, or no id. Any id after a
/// known kind is a lookup: one too long for the ledger's ids is on no ledger (404), like any
/// other id that is not there, rather than a malformed path the document cannot describe
/// (its limit counts bytes, a JSON Schema length counts characters).
fn check_reference(reference: &str) -> Result<(), Problem> {
    let well_formed = reference
        .split_once(':')
        .is_some_and(|(kind, id)| REFERENCE_KINDS.contains(&kind) && !id.is_empty());
    if well_formed {
        return Ok(());
    }
    Err(Problem::new(
        ProblemCode::BadPath,
        format!(
            "reference \"{}\" must look like KIND:ID with KIND one of {}",
            reference.chars().take(200).collect::<String>(),
            REFERENCE_KINDS.join(", ")
        ),
    ))
}

/// Where a trade stands
///
/// `GET /v1/trades/{order_id}`: whether the trade's loop is closed, each leg, the open ones.
#[utoipa::path(
    get,
    path = "/v1/trades/{order_id}",
    tag = "reads",
    params(("order_id" = String, Path, description = "Order id: the `order_id` of the trade's `trade.order_placed` event", min_length = 1, example = "PO-1")),
    responses(
        (status = 200, description = "The trade's legs and whether its loop is closed", body = TradeView),
        TradeProblems,
    ),
    security(("bearer" = ["read"])),
)]
pub async fn get_trade(
    State(state): State<Arc<ApiState>>,
    order: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        let order = path(order, "an order id")?;
        read(&state, move |at| match at.trade_status(&order) {
            Ok(status) => Ok(TradeView::new(status, at.tip().height)),
            Err(LedgerError::NotFound(_)) => Err(order_not_found(&order)),
            Err(e) => Err(storage(e)),
        })
        .await
    };
    reply(result.await)
}

/// The chain's participants
///
/// `GET /v1/participants`: the genesis file's participants.
#[utoipa::path(
    get,
    path = "/v1/participants",
    tag = "reads",
    responses(
        (status = 200, description = "The genesis participants", body = ParticipantsView),
        ParticipantsProblems,
    ),
    security(("bearer" = ["read"])),
)]
pub async fn participants(State(state): State<Arc<ApiState>>) -> Response {
    let genesis = state.view.genesis();
    Json(ParticipantsView {
        chain_id: genesis.doc.chain_id.clone(),
        genesis_hash: genesis.hash,
        participants: genesis.doc.participants.iter().map(ParticipantView::from).collect(),
    })
    .into_response()
}
