//! The endpoints: `POST /v1/events` (with an optional commit wait) and `GET /v1/status`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::{timeout_at, Duration, Instant};
use tradeloop_crypto::Hash;
use tradeloop_ledger::{Rejection, SignedEvent};
use utoipa::IntoParams;

use axum::http::{header, HeaderValue};

use super::problem::{retry_after_seconds, Problem, ProblemCode};
use crate::api::command::{ApiCommand, NodeStatus};
use crate::api::dto::SubmitBody;
use crate::api::dto::{EventResult, SubmitResponse};
use crate::api::limits::{NOT_SYNCED_LAG_BLOCKS, NOT_SYNCED_RETRY_MS};
use crate::api::problems::{DocumentProblems, StatusProblems, SubmitProblems};
use crate::api::state::ApiState;
use crate::chain::notice::{CommitNotice, Committed};

/// How long the last `Lookup` may take when a wait ends with a lookup still owed: 1 s.
const FINAL_LOOKUP_MS: u64 = 1_000;

/// Query of `POST /v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitQuery {
    /// `commit` to wait for the events to be committed; `none` (the default) not to.
    wait: Option<String>,
    /// How long to wait, in milliseconds (capped by `max_wait_ms`); only with `wait=commit`.
    timeout_ms: Option<u64>,
}

/// Documented as one parameter: the two fields depend on each other (see
/// [`crate::api::dto::submit_query_parameter`]).
impl IntoParams for SubmitQuery {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        vec![crate::api::dto::submit_query_parameter()]
    }
}

/// Submit signed events
///
/// The body is one event envelope or a JSON array of them. The answer has one result per event,
/// in request order; an event refused by the checks is a `rejected` result, not a request error.
/// With `wait=commit` the answer waits until every accepted event is committed or the wait ends.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    params(SubmitQuery),
    request_body(
        content = SubmitBody,
        description = "One envelope, or an array of 1 to `max_events_per_request` envelopes",
    ),
    responses(
        (status = 200, description = "One result per event, in request order", body = SubmitResponse),
        SubmitProblems,
    ),
    security(("bearer" = ["submit"])),
)]
pub async fn submit_events(
    State(state): State<Arc<ApiState>>,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match submit(&state, query, body).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

async fn submit(
    state: &ApiState,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let wait_ms = wait_ms(state, query)?;
    let lag = state.metrics.sync_lag();
    if lag > NOT_SYNCED_LAG_BLOCKS {
        return Err(Problem::new(
            ProblemCode::NotSynced,
            format!(
                "this node is {lag} blocks behind its peers and is catching up; it would judge \
                 events against an old tip: nothing was submitted, send them again shortly (or \
                 to another node)"
            ),
        )
        .retry_after_ms(NOT_SYNCED_RETRY_MS));
    }
    let body = body.map_err(|e| body_problem(state, e))?;
    let elements = split_envelopes(&body, state.limits.max_events_per_request)?;
    let parsed: Vec<Result<SignedEvent, Rejection>> =
        elements.iter().map(|raw| SignedEvent::from_envelope_json(raw.get().as_bytes())).collect();
    drop(elements);

    // Subscribe before submitting: a commit that happens between the two is then not missed.
    let commits = wait_ms.map(|_| state.commits.subscribe());
    let deadline = wait_ms.map(|ms| Instant::now() + Duration::from_millis(ms));

    let (events, slots): (Vec<SignedEvent>, Vec<usize>) = parsed
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.as_ref().ok().map(|e| (e.clone(), i)))
        .unzip();
    let verdicts =
        if events.is_empty() { Vec::new() } else { submit_to_runtime(state, events).await? };
    if verdicts.len() != slots.len() {
        return Err(Problem::new(
            ProblemCode::Internal,
            format!(
                "the node's runtime answered {} verdicts for {} events; this is a bug in the node",
                verdicts.len(),
                slots.len()
            ),
        ));
    }

    let mut results: Vec<EventResult> = parsed
        .into_iter()
        .map(|p| match p {
            Ok(_) => EventResult::Pending { id: Hash::ZERO }, // replaced by its verdict below
            Err(r) => EventResult::Rejected { id: None, code: r.code.as_str(), message: r.message },
        })
        .collect();
    let admitted = verdicts.iter().any(|v| matches!(v, EventResult::Accepted { .. }));
    let longest_full = verdicts
        .iter()
        .filter_map(|v| match v {
            EventResult::Full { retry_after_ms, .. } => Some(*retry_after_ms),
            _ => None,
        })
        .max();
    for (slot, verdict) in slots.into_iter().zip(verdicts) {
        if let Some(result) = results.get_mut(slot) {
            *result = verdict;
        }
    }
    if !admitted {
        return Err(nothing_admitted(results, longest_full));
    }

    let mut timed_out = None;
    if let (Some(commits), Some(deadline)) = (commits, deadline) {
        timed_out = Some(wait_for_commits(state, commits, deadline, &mut results).await);
    }
    Ok(Json(SubmitResponse { results, timed_out }).into_response())
}

/// The commit wait asked for, in milliseconds, or `None` for no wait.
fn wait_ms(
    state: &ApiState,
    query: Result<Query<SubmitQuery>, QueryRejection>,
) -> Result<Option<u64>, Problem> {
    let Query(query) = query.map_err(|e| {
        Problem::new(
            ProblemCode::BadQuery,
            format!("{}; the parameters are wait=commit and timeout_ms=N", e.body_text()),
        )
    })?;
    match query.wait.as_deref() {
        None | Some("none") => {
            if query.timeout_ms.is_some() {
                return Err(Problem::new(
                    ProblemCode::BadQuery,
                    "timeout_ms is the length of a commit wait: give it with wait=commit",
                ));
            }
            Ok(None)
        }
        Some("commit") => {
            let asked = query.timeout_ms.unwrap_or(state.limits.default_wait_ms);
            Ok(Some(asked.min(state.limits.wait_cap_ms())))
        }
        Some(other) => Err(Problem::new(
            ProblemCode::BadQuery,
            format!("wait={other} is not understood; use wait=commit or leave wait out"),
        )),
    }
}

fn body_problem(state: &ApiState, e: BytesRejection) -> Problem {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Problem::new(
            ProblemCode::BodyTooLarge,
            format!(
                "the body is larger than {} bytes (max_body_bytes); send fewer events per request",
                state.limits.max_body_bytes
            ),
        );
    }
    Problem::new(
        ProblemCode::MalformedJson,
        format!("the body could not be read: {}", e.body_text()),
    )
}

/// The envelopes of a body: one object, or an array of at most `max` of them. Each element is
/// kept as its exact bytes, for the ledger's own parser.
fn split_envelopes(body: &[u8], max: usize) -> Result<Vec<&RawValue>, Problem> {
    let whole: &RawValue = serde_json::from_slice(body).map_err(|e| {
        Problem::new(
            ProblemCode::MalformedJson,
            format!("the body is not valid JSON ({e}); send one envelope or a JSON array of them"),
        )
    })?;
    let elements = match whole.get().as_bytes().first() {
        Some(b'{') => vec![whole],
        Some(b'[') => {
            let mut deserializer = serde_json::Deserializer::from_str(whole.get());
            let exceeded = std::cell::Cell::new(false);
            let seed = BoundedArray { max, exceeded: &exceeded };
            // Stopping early leaves the array unfinished, which serde_json reports as an error:
            // `exceeded` says why it stopped.
            match serde::de::DeserializeSeed::deserialize(seed, &mut deserializer) {
                _ if exceeded.get() => return Err(too_many_events(max)),
                Ok(elements) => elements,
                Err(e) => {
                    return Err(Problem::new(
                        ProblemCode::MalformedJson,
                        format!("the body is not valid JSON ({e})"),
                    ))
                }
            }
        }
        _ => {
            return Err(Problem::new(
                ProblemCode::NotEvents,
                "the body must be an envelope {\"body\": {...}, \"signature\": \"...\"} or a JSON array of them",
            ))
        }
    };
    if elements.is_empty() {
        return Err(Problem::new(
            ProblemCode::NoEvents,
            "the array is empty; send at least one envelope",
        ));
    }
    Ok(elements)
}

fn too_many_events(max: usize) -> Problem {
    Problem::new(
        ProblemCode::TooManyEvents,
        format!("the request holds more than {max} events (max_events_per_request): split it"),
    )
}

/// The elements of a JSON array; stops (setting `exceeded`) as soon as there are more than
/// `max`, so a body of many tiny elements costs at most `max` of them in memory.
struct BoundedArray<'a> {
    max: usize,
    exceeded: &'a std::cell::Cell<bool>,
}

impl<'de> serde::de::DeserializeSeed<'de> for BoundedArray<'_> {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for BoundedArray<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of event envelopes")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut elements = Vec::with_capacity(self.max.min(64));
        while let Some(element) = seq.next_element::<&'de RawValue>()? {
            if elements.len() == self.max {
                self.exceeded.set(true);
                return Ok(elements);
            }
            elements.push(element);
        }
        Ok(elements)
    }
}

async fn submit_to_runtime(
    state: &ApiState,
    events: Vec<SignedEvent>,
) -> Result<Vec<EventResult>, Problem> {
    let (reply, answer) = oneshot::channel();
    send_command(&state.commands, ApiCommand::Submit { events, reply })?;
    answer.await.map_err(|_| runtime_gone())
}

/// Sends without waiting: a full queue is an answer (503 `NODE_BUSY`), not a reason to hold the
/// request.
fn send_command(commands: &mpsc::Sender<ApiCommand>, command: ApiCommand) -> Result<(), Problem> {
    commands.try_send(command).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => {
            Problem::new(ProblemCode::NodeBusy, "the node's command queue is full; retry shortly")
                .retry_after_ms(1000)
        }
        mpsc::error::TrySendError::Closed(_) => runtime_gone(),
    })
}

fn runtime_gone() -> Problem {
    Problem::new(
        ProblemCode::NodeUnavailable,
        "the node's runtime is not running (it stopped or is stopping); nothing was submitted by this request; check the node's log and submit again once it runs",
    )
}

/// The answer to a request that admitted no event, with every event's result in `results`:
/// 422 if the checks or rules refused one (its code as the answer's `code` when every refused
/// event has the same one), else 429 if the mempool had no room for one (`Retry-After`), else
/// 409: every event is on the chain already.
fn nothing_admitted(results: Vec<EventResult>, longest_full_ms: Option<u64>) -> Problem {
    let total = results.len();
    let mut codes: Vec<&str> = Vec::new();
    let mut first_message = None;
    let mut first_committed = None;
    let mut rejected = 0usize;
    for result in &results {
        match result {
            EventResult::Rejected { code, message, .. } => {
                rejected += 1;
                first_message.get_or_insert(message.as_str());
                if !codes.contains(&code.as_str()) {
                    codes.push(code);
                }
            }
            EventResult::Committed { id, height, block_hash, index } => {
                first_committed.get_or_insert((*id, *height, *block_hash, *index));
            }
            _ => {}
        }
    }
    let committed = results.iter().filter(|r| matches!(r, EventResult::Committed { .. })).count();
    let full = total - rejected - committed;
    let problem = if rejected > 0 {
        let detail = match (total, first_message) {
            (1, Some(message)) => format!("{message}; nothing was admitted"),
            _ => format!(
                "no event of the request was admitted: {rejected} refused ({}), {committed}                  already committed, {full} without room in the mempool; `results` has each                  event's code and message",
                codes.join(", ")
            ),
        };
        let problem = Problem::new(ProblemCode::EventsRejected, detail);
        match codes.as_slice() {
            [only] => problem.ledger_code(*only),
            _ => problem,
        }
    } else if let Some(ms) = longest_full_ms {
        Problem::new(
            ProblemCode::MempoolFull,
            format!(
                "the mempool has no room for {full} of these {total} events ({committed} already                  committed); nothing was admitted: submit them again after {} s",
                retry_after_seconds(ms)
            ),
        )
        .retry_after_ms(ms)
    } else {
        let detail = match (total, first_committed) {
            (1, Some((id, height, block, index))) => format!(
                "event {id} is already committed at height {height} (block {block}, index                  {index}); nothing was added"
            ),
            _ => format!(
                "all {total} events are already committed; nothing was added; `results` says                  where each is"
            ),
        };
        Problem::new(ProblemCode::AlreadyCommitted, detail)
    };
    problem.results(serde_json::to_value(&results).unwrap_or_default())
}

/// Waits until every accepted event of `results` is committed or `deadline` passes; the events
/// still waiting become `pending`. Returns whether the wait timed out.
async fn wait_for_commits(
    state: &ApiState,
    mut commits: broadcast::Receiver<CommitNotice>,
    deadline: Instant,
    results: &mut [EventResult],
) -> bool {
    let mut waiting: HashMap<Hash, Vec<usize>> = HashMap::new();
    for (slot, result) in results.iter().enumerate() {
        if let EventResult::Accepted { id } = result {
            waiting.entry(*id).or_default().push(slot);
        }
    }
    let mut lookup_owed = false;
    let mut timed_out = false;
    while !waiting.is_empty() {
        match timeout_at(deadline, commits.recv()).await {
            Err(_elapsed) => {
                timed_out = true;
                break;
            }
            Ok(Ok(notice)) => {
                for (index, id) in notice.event_ids.iter().enumerate() {
                    if let Some(slots) = waiting.remove(id) {
                        let index = u32::try_from(index).unwrap_or(u32::MAX);
                        let at = Committed {
                            height: notice.height,
                            block_hash: notice.block_hash,
                            index,
                        };
                        mark(results, &slots, *id, at);
                    }
                }
                for gone in &notice.evicted {
                    for slot in waiting.remove(&gone.id).unwrap_or_default() {
                        if let Some(result) = results.get_mut(slot) {
                            *result = EventResult::Rejected {
                                id: Some(gone.id),
                                code: gone.code.clone(),
                                message: format!(
                                    "accepted, then evicted at height {}: {}",
                                    notice.height, gone.message
                                ),
                            };
                        }
                    }
                }
            }
            // Notices were dropped before we read them: ask the runtime where the events are.
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                lookup_owed = !lookup(state, &mut waiting, results, deadline).await;
            }
            Ok(Err(broadcast::error::RecvError::Closed)) => {
                lookup_owed = true;
                break;
            }
        }
    }
    if lookup_owed && !waiting.is_empty() {
        let last = Instant::now() + Duration::from_millis(FINAL_LOOKUP_MS);
        lookup(state, &mut waiting, results, last).await;
    }
    for (id, slots) in waiting {
        for slot in slots {
            if let Some(result) = results.get_mut(slot) {
                *result = EventResult::Pending { id };
            }
        }
    }
    timed_out
}

/// Asks the runtime where the waiting events are and marks the committed ones. Returns whether
/// the runtime answered by `deadline`.
async fn lookup(
    state: &ApiState,
    waiting: &mut HashMap<Hash, Vec<usize>>,
    results: &mut [EventResult],
    deadline: Instant,
) -> bool {
    let ids: Vec<Hash> = waiting.keys().copied().collect();
    let (reply, answer) = oneshot::channel();
    let sent =
        timeout_at(deadline, state.commands.send(ApiCommand::Lookup { ids: ids.clone(), reply }));
    if !matches!(sent.await, Ok(Ok(()))) {
        return false;
    }
    let Ok(Ok(found)) = timeout_at(deadline, answer).await else { return false };
    for (id, at) in ids.into_iter().zip(found) {
        let Some(at) = at else { continue };
        if let Some(slots) = waiting.remove(&id) {
            mark(results, &slots, id, at);
        }
    }
    true
}

fn mark(results: &mut [EventResult], slots: &[usize], id: Hash, at: Committed) {
    for slot in slots {
        if let Some(result) = results.get_mut(*slot) {
            *result = EventResult::committed(id, at);
        }
    }
}

/// The node's status
///
/// Chain, height and tip, whether the node votes, its peers, its mempool and whether it is
/// catching up.
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "node",
    responses(
        (status = 200, description = "The node's status", body = NodeStatus),
        StatusProblems,
    ),
    security(("bearer" = ["read"])),
)]
pub async fn status(State(state): State<Arc<ApiState>>) -> Response {
    let (reply, answer) = oneshot::channel();
    if let Err(problem) = send_command(&state.commands, ApiCommand::Status { reply }) {
        return problem.into_response();
    }
    match answer.await {
        Ok(status) => Json(status).into_response(),
        Err(_) => runtime_gone().into_response(),
    }
}

/// Refuses a request whose `Content-Length` is over `max_body_bytes` at once (413), rather
/// than reading that much only to refuse it.
pub async fn declared_length(
    State(max): State<usize>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > max as u64 => Problem::new(
            ProblemCode::BodyTooLarge,
            format!(
                "the body is declared as {n} bytes, more than {max} (max_body_bytes); send fewer \
                 events per request"
            ),
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

pub async fn not_found() -> Problem {
    Problem::new(
        ProblemCode::NotFound,
        "no such endpoint; GET /v1/openapi.json describes every endpoint of this API (docs/api.md)",
    )
}

/// This document
///
/// The API's OpenAPI 3.1 document, generated from the node's own types.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "node",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", body = Object),
        DocumentProblems,
    ),
    security(("bearer" = ["read"])),
)]
pub(crate) async fn openapi_json(State(state): State<Arc<ApiState>>) -> Response {
    let text = match &state.document {
        Ok(text) => text,
        Err(e) => {
            return Problem::new(
                ProblemCode::Internal,
                format!("the OpenAPI document could not be serialised: {e}"),
            )
            .into_response()
        }
    };
    let mut response = text.clone().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
