//! Which problems each operation can answer, as OpenAPI responses: one response per HTTP
//! status, each naming its codes (docs/api.md).

use std::collections::BTreeMap;

use utoipa::openapi::{ContentBuilder, HeaderBuilder, Object, Ref, RefOr, ResponseBuilder, Type};

use crate::api::problem::ProblemCode;

/// Codes every operation can answer: the token check, the concurrency limit, the timeout and a
/// failure inside the node.
const COMMON: &[ProblemCode] = &[
    ProblemCode::Unauthorized,
    ProblemCode::Forbidden,
    ProblemCode::Overloaded,
    ProblemCode::Timeout,
    ProblemCode::Internal,
];

/// The problem answers of an operation that can answer `codes` (and [`COMMON`]), one response
/// per HTTP status, each naming its codes.
fn problem_responses(codes: &[ProblemCode]) -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    let mut by_status: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
    for code in codes.iter().chain(COMMON) {
        let names = by_status.entry(code.status().as_u16()).or_default();
        if !names.contains(&code.as_str()) {
            names.push(code.as_str());
        }
    }
    by_status
        .into_iter()
        .map(|(status, mut names)| {
            names.sort_unstable();
            let list = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
            let description = if status == 422 {
                format!(
                    "No event was admitted and the ledger's checks or rules refused at least one; \
                     `code` is that rejection code (docs/events.md) when every refused event has \
                     the same one, else {list}; `results` has each event's result"
                )
            } else if names.len() == 1 {
                format!("A problem with `code` {list}")
            } else {
                format!("A problem; `code` is one of {list}")
            };
            let content =
                ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
            let mut response = ResponseBuilder::new()
                .description(description)
                .content("application/problem+json", content);
            if status == 401 {
                response = response.header(
                    "WWW-Authenticate",
                    HeaderBuilder::new()
                        .schema(Some(Object::with_type(Type::String)))
                        .description(Some("`Bearer`"))
                        .build(),
                );
            }
            if status == 429 || status == 503 {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(Some(Object::with_type(Type::Integer)))
                        .description(Some(
                            "Seconds to wait before retrying, when the node knows (whole \
                             seconds, rounded up, at least 1)",
                        ))
                        .build(),
                );
            }
            (status.to_string(), RefOr::T(response.build()))
        })
        .collect()
}

/// Declares a type whose `IntoResponses` are the problem answers of some codes.
macro_rules! problems {
    ($($(#[$doc:meta])* $name:ident: [$($code:ident),* $(,)?];)*) => {$(
        $(#[$doc])*
        pub(crate) struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
                problem_responses(&[$(ProblemCode::$code),*])
            }
        }
    )*};
}

problems! {
    /// Problems of `POST /v1/events`.
    SubmitProblems: [MalformedJson, NotEvents, NoEvents, BadQuery, AlreadyCommitted,
        EventsRejected, BodyTooLarge, TooManyEvents, MempoolFull, NodeUnavailable, NodeBusy,
        NotSynced];
    /// Problems of `GET /v1/status`.
    StatusProblems: [NodeUnavailable, NodeBusy];
    /// Problems of `GET /v1/events/{id}`.
    EventProblems: [BadPath, EventNotFound, Storage];
    /// Problems of `GET /v1/events/{id}/proof`.
    EventProofProblems: [BadPath, EventNotFound, NotOnLedger, TooManyEvents, Storage];
    /// Problems of `GET /v1/blocks`.
    BlocksProblems: [BadQuery, Storage];
    /// Problems of `GET /v1/blocks/{height}`.
    BlockProblems: [BadPath, BlockNotFound, Storage];
    /// Problems of `GET /v1/trace/{reference}`.
    TraceProblems: [BadPath, BadQuery, NotOnLedger, Storage];
    /// Problems of `GET /v1/trades/{order_id}`.
    TradeProblems: [BadPath, NotOnLedger, Storage];
    /// Problems of `GET /v1/trades/{order_id}/proof`.
    TradeProofProblems: [BadPath, NotOnLedger, TooManyEvents, Storage];
    /// Problems of `GET /v1/participants`.
    ParticipantsProblems: [];
    /// Problems of `GET /v1/stream`.
    StreamProblems: [BadQuery, TooManyStreams, Storage];
    /// Problems of `GET /v1/openapi.json`.
    DocumentProblems: [];
    /// Problems of `GET /metrics`.
    MetricsProblems: [NodeUnavailable];
}
