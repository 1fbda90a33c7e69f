//! Whole-request errors as RFC 9457 problem details (`application/problem+json`), each with a
//! stable `code` (documented in `docs/api.md`; never rename one, only add).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::BoxError;
use serde_json::json;

/// Stable codes of whole-request errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemCode {
    /// 400: the body is not JSON.
    MalformedJson,
    /// 400: the body is JSON but neither an envelope object nor an array of them.
    NotEvents,
    /// 400: an empty array.
    NoEvents,
    /// 400: a query parameter is unknown or has a bad value.
    BadQuery,
    /// 400: a path segment is malformed (an event id that is not 64 hex characters, a height
    /// that is not a number).
    BadPath,
    /// 401: no bearer token, or one the node does not know.
    Unauthorized,
    /// 403: the token lacks the scope the request needs.
    Forbidden,
    /// 404: no such endpoint.
    NotFound,
    /// 404: no committed event has this id.
    EventNotFound,
    /// 404: no block at this height.
    BlockNotFound,
    /// 404: the order, shipment, declaration, credit or invoice is not on the ledger.
    NotOnLedger,
    /// 409: every event of the request is on the chain already (`results` says where).
    AlreadyCommitted,
    /// 413: the body is larger than `max_body_bytes`.
    BodyTooLarge,
    /// 413: more events than `max_events_per_request`.
    TooManyEvents,
    /// 422: no event of the request was admitted and at least one was refused by the ledger's
    /// checks or rules (`results` has each event's code). The answer's `code` is the ledger's
    /// rejection code when every refused event has the same one (e.g. `EXPORT_NOT_CLEARED`).
    EventsRejected,
    /// 429: the mempool had room for none of the events.
    MempoolFull,
    /// 503: the node's runtime is not running (stopped or stopping).
    NodeUnavailable,
    /// 503: the runtime's command queue is full.
    NodeBusy,
    /// 503: the node is catching up with its peers (more than [`super::NOT_SYNCED_LAG_BLOCKS`]
    /// behind): its verdicts would be against an old tip.
    NotSynced,
    /// 503: more requests in flight than `max_concurrent_requests`.
    Overloaded,
    /// 503: the request took longer than `request_timeout_ms`.
    Timeout,
    /// 503: `max_streams` streams are open already.
    TooManyStreams,
    /// 500: the runtime broke its contract (a bug in the node, not in the request).
    Internal,
    /// 500: the node could not read its own ledger (damaged or unreadable storage).
    Storage,
}

impl ProblemCode {
    /// The stable string form, e.g. `MALFORMED_JSON`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ProblemCode::MalformedJson => "MALFORMED_JSON",
            ProblemCode::NotEvents => "NOT_EVENTS",
            ProblemCode::NoEvents => "NO_EVENTS",
            ProblemCode::BadQuery => "BAD_QUERY",
            ProblemCode::BadPath => "BAD_PATH",
            ProblemCode::Unauthorized => "UNAUTHORIZED",
            ProblemCode::Forbidden => "FORBIDDEN",
            ProblemCode::NotFound => "NOT_FOUND",
            ProblemCode::EventNotFound => "EVENT_NOT_FOUND",
            ProblemCode::BlockNotFound => "BLOCK_NOT_FOUND",
            ProblemCode::NotOnLedger => "NOT_ON_LEDGER",
            ProblemCode::AlreadyCommitted => "ALREADY_COMMITTED",
            ProblemCode::EventsRejected => "EVENTS_REJECTED",
            ProblemCode::BodyTooLarge => "BODY_TOO_LARGE",
            ProblemCode::TooManyEvents => "TOO_MANY_EVENTS",
            ProblemCode::MempoolFull => "MEMPOOL_FULL",
            ProblemCode::NodeUnavailable => "NODE_UNAVAILABLE",
            ProblemCode::NodeBusy => "NODE_BUSY",
            ProblemCode::NotSynced => "NOT_SYNCED",
            ProblemCode::Overloaded => "OVERLOADED",
            ProblemCode::Timeout => "TIMEOUT",
            ProblemCode::TooManyStreams => "TOO_MANY_STREAMS",
            ProblemCode::Internal => "INTERNAL",
            ProblemCode::Storage => "STORAGE",
        }
    }

    /// The HTTP status it is sent with.
    pub fn status(&self) -> StatusCode {
        match self {
            ProblemCode::MalformedJson
            | ProblemCode::NotEvents
            | ProblemCode::NoEvents
            | ProblemCode::BadQuery
            | ProblemCode::BadPath => StatusCode::BAD_REQUEST,
            ProblemCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ProblemCode::Forbidden => StatusCode::FORBIDDEN,
            ProblemCode::NotFound
            | ProblemCode::EventNotFound
            | ProblemCode::BlockNotFound
            | ProblemCode::NotOnLedger => StatusCode::NOT_FOUND,
            ProblemCode::AlreadyCommitted => StatusCode::CONFLICT,
            ProblemCode::EventsRejected => StatusCode::UNPROCESSABLE_ENTITY,
            ProblemCode::BodyTooLarge | ProblemCode::TooManyEvents => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemCode::MempoolFull => StatusCode::TOO_MANY_REQUESTS,
            ProblemCode::NodeUnavailable
            | ProblemCode::NodeBusy
            | ProblemCode::NotSynced
            | ProblemCode::Overloaded
            | ProblemCode::Timeout
            | ProblemCode::TooManyStreams => StatusCode::SERVICE_UNAVAILABLE,
            ProblemCode::Internal | ProblemCode::Storage => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short summary that does not change from occurrence to occurrence (RFC 9457 `title`).
    fn title(&self) -> &'static str {
        match self {
            ProblemCode::MalformedJson => "The request body is not valid JSON",
            ProblemCode::NotEvents => {
                "The request body is not an event envelope or an array of them"
            }
            ProblemCode::NoEvents => "The request holds no events",
            ProblemCode::BadQuery => "A query parameter is not understood",
            ProblemCode::BadPath => "A path segment is malformed",
            ProblemCode::AlreadyCommitted => "The events are already committed",
            ProblemCode::EventsRejected => {
                "The events were refused by the ledger's checks or rules"
            }
            ProblemCode::Unauthorized => "A valid bearer token is required",
            ProblemCode::Forbidden => "The token does not allow this request",
            ProblemCode::NotFound => "No such endpoint",
            ProblemCode::EventNotFound => "No such committed event",
            ProblemCode::BlockNotFound => "No block at this height",
            ProblemCode::NotOnLedger => "Not on this ledger",
            ProblemCode::BodyTooLarge => "The request body is too large",
            ProblemCode::TooManyEvents => "Too many events in one request",
            ProblemCode::MempoolFull => "The mempool is full",
            ProblemCode::NodeUnavailable => "The node is not running",
            ProblemCode::NodeBusy => "The node is busy",
            ProblemCode::NotSynced => "The node is catching up with its peers",
            ProblemCode::Overloaded => "Too many requests in flight",
            ProblemCode::Timeout => "The request took too long",
            ProblemCode::TooManyStreams => "Too many streams open",
            ProblemCode::Internal => "The node failed to answer correctly",
            ProblemCode::Storage => "The node could not read its ledger",
        }
    }
}

/// One problem answer.
#[derive(Debug)]
pub struct Problem {
    code: ProblemCode,
    detail: String,
    retry_after_ms: Option<u64>,
    /// The `code` member when it is more precise than `code`'s own name: the ledger's rejection
    /// code of a refused event (with [`ProblemCode::EventsRejected`]).
    ledger_code: Option<String>,
    /// Per-event results of a submit that admitted nothing (409, 422, 429).
    results: Option<serde_json::Value>,
}

impl Problem {
    /// A problem with a sentence saying what was wrong and what to do.
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> Problem {
        Problem {
            code,
            detail: detail.into(),
            retry_after_ms: None,
            ledger_code: None,
            results: None,
        }
    }

    /// Its stable code.
    #[cfg(test)]
    pub fn code(&self) -> ProblemCode {
        self.code
    }

    /// Sends `code` (a ledger rejection code) as the `code` member and in `type`.
    pub fn ledger_code(mut self, code: impl Into<String>) -> Problem {
        self.ledger_code = Some(code.into());
        self
    }

    /// Adds a `results` member: one result per event of the request, as a `200` would have it.
    pub fn results(mut self, results: serde_json::Value) -> Problem {
        self.results = Some(results);
        self
    }

    /// Adds a `Retry-After` header (whole seconds, rounded up) and a `retry_after_ms` member.
    pub fn retry_after_ms(mut self, ms: u64) -> Problem {
        self.retry_after_ms = Some(ms);
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let code = self.ledger_code.as_deref().unwrap_or(self.code.as_str());
        let mut body = json!({
            "type": format!("urn:tradeloop:problem:{code}"),
            "title": self.code.title(),
            "status": status.as_u16(),
            "detail": self.detail,
            "code": code,
        });
        if let Some(map) = body.as_object_mut() {
            if let Some(ms) = self.retry_after_ms {
                map.insert("retry_after_ms".into(), ms.into());
            }
            if let Some(results) = self.results {
                map.insert("results".into(), results);
            }
        }
        let mut response = (status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(ms) = self.retry_after_ms {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds(ms)));
        }
        response
    }
}

/// `Retry-After` counts whole seconds: round up, and never 0 (which invites a busy loop).
pub fn retry_after_seconds(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

/// Errors of the tower layers (load shedding, timeout) as problems.
pub async fn from_layer_error(error: BoxError) -> Problem {
    if error.is::<tower::load_shed::error::Overloaded>() {
        return Problem::new(
            ProblemCode::Overloaded,
            "the node is handling as many requests as it allows (max_concurrent_requests); retry shortly",
        )
        .retry_after_ms(1000);
    }
    if error.is::<tower::timeout::error::Elapsed>() {
        return Problem::new(
            ProblemCode::Timeout,
            "the node did not answer within request_timeout_ms; it may be overloaded or stuck; \
             events of this request may still have been admitted: submit them again (a \
             resubmission of a known event answers `committed` or DUPLICATE_EVENT)",
        );
    }
    Problem::new(ProblemCode::Internal, format!("the request failed inside the node: {error}"))
}
