//! `GET /metrics` (Prometheus, OpenMetrics text) and the count of API requests by route and
//! status (crate::metrics).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

use super::problem::{Problem, ProblemCode};
use crate::api::command::ApiCommand;
use crate::api::state::ApiState;
use crate::metrics::{gauge_value, Metrics, CONTENT_TYPE};

/// How long a scrape waits for the runtime's status before answering with the gauges it last
/// had (a scrape never hangs on a busy node).
pub const SCRAPE_STATUS_WAIT: Duration = Duration::from_millis(500);

/// `GET /metrics`: the node-wide gauges are refreshed from the runtime's status, then every
/// metric is encoded.
pub(super) async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    let (reply, answer) = oneshot::channel();
    if state.commands.try_send(ApiCommand::Status { reply }).is_ok() {
        if let Ok(Ok(status)) = tokio::time::timeout(SCRAPE_STATUS_WAIT, answer).await {
            let m = &state.metrics;
            m.peers.set(gauge_value(status.connected_peers.len() as u64));
            m.mempool_events.set(gauge_value(status.mempool_events));
            m.mempool_bytes.set(gauge_value(status.mempool_bytes));
            m.syncing.set(i64::from(status.syncing));
        }
    }
    match state.metrics.encode() {
        Ok(text) => {
            ([(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))], text).into_response()
        }
        Err(_) => Problem::new(ProblemCode::NodeUnavailable, "the metrics could not be encoded")
            .into_response(),
    }
}

/// Counts every request by method, route template and status (after every other layer, so
/// refusals by the token check, the limits and the timeout count too).
pub(super) async fn count(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    // Only the standard methods get a label of their own: a label set stays bounded whatever
    // a client sends.
    let method = if method.as_str().len() <= 7 && is_standard(&method) {
        method.as_str().to_owned()
    } else {
        "OTHER".to_owned()
    };
    metrics.on_request(&method, &route, status_code(status));
    response
}

fn is_standard(m: &axum::http::Method) -> bool {
    use axum::http::Method;
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
    ]
    .contains(m)
}

fn status_code(s: StatusCode) -> u16 {
    s.as_u16()
}
