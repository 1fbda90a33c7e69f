//! `GET /v1/stream`: committed events in chain order as server-sent events.
//!
//! ```text
//!  CommitNotice (broadcast) ──wakes──▶ producer task ──bounded mpsc (stream_buffer_events)──▶ SSE body
//!                                        │ reads blocks through the LedgerView
//! ```
//!
//! Each client has a producer task of its own that reads the committed blocks from the
//! [`LedgerView`](tradeloop_ledger::query::LedgerView), from where the client asked to start,
//! and puts their events into the client's bounded buffer; a commit notice only wakes it. The
//! stream is therefore gap-free and duplicate-free by construction (it is the block log, read in
//! order), a lagging broadcast loses nothing, and no client can slow a commit: the runtime never
//! waits on a stream. A client that takes nothing for `stream_stall_ms` while its buffer is full
//! is too slow: it gets a final `too_slow` event naming where to resume, and is disconnected.
//!
//! Where to start: `Last-Event-ID: H:I` (the id of the last event the client received) resumes
//! right after that event; otherwise `?from=H` starts at the first event of height `H`; otherwise
//! the stream starts with the next block committed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit};
use tradeloop_ledger::query::CommittedEvent;
use utoipa::IntoParams;

use super::problem::{Problem, ProblemCode};
use super::reads::{storage, view_of};
use crate::api::dto::{EventView, StreamTooSlow};
use crate::api::dto::{StreamEvent, STREAM_EVENT_NAME, STREAM_TOO_SLOW_NAME};
use crate::api::problems::StreamProblems;
use crate::api::state::ApiState;
use crate::chain::notice::CommitNotice;

/// Query of `GET /v1/stream`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// First height to send (ignored when the request has `Last-Event-ID`).
    from: Option<u64>,
}

/// A position in the chain: the next event to send is event `index` of block `height`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    height: u64,
    index: u32,
}

/// Most digits of the height in an event id: every such number is a `u64`.
const MAX_HEIGHT_DIGITS: usize = 19;
/// Most digits of the index in an event id: every such number is a `u32`.
const MAX_INDEX_DIGITS: usize = 9;

/// Parses an SSE event id `H:I` (the position of an event): exactly what the document's
/// pattern for `Last-Event-ID` takes, digits only (no sign) and few enough of them to fit, so
/// no id the pattern allows is refused. Whitespace around it is HTTP's, not the id's.
fn parse_event_id(text: &str) -> Option<(u64, u32)> {
    let (h, i) = text.trim().split_once(':')?;
    Some((digits(h, MAX_HEIGHT_DIGITS)?, digits(i, MAX_INDEX_DIGITS)?))
}

/// `text` as a number if it is 1 to `most` ASCII digits.
fn digits<T: std::str::FromStr>(text: &str, most: usize) -> Option<T> {
    let plain = !text.is_empty() && text.len() <= most && text.bytes().all(|b| b.is_ascii_digit());
    plain.then(|| text.parse().ok()).flatten()
}

/// Committed events as server-sent events
///
/// `GET /v1/stream[?from=H]`: every committed event in chain order, as SSE events named
/// `event` whose `id` is `HEIGHT:INDEX` and whose `data` is an `EventView` (JSON). A client too
/// slow to take its events gets a last event `too_slow` (data: `StreamTooSlow`) and is
/// disconnected. A comment `heartbeat` is sent every `stream_heartbeat_ms`. Resume with
/// `Last-Event-ID` set to the id of the last event received.
#[utoipa::path(
    get,
    path = "/v1/stream",
    tag = "stream",
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, nullable = false, description = "Id (`HEIGHT:INDEX`) of the last event received: the stream resumes right after it (`from` is then ignored)", pattern = "^[0-9]{1,19}:[0-9]{1,9}$", example = "12:4"),
    ),
    responses(
        (status = 200, description = "A `text/event-stream` of committed events in chain order: SSE event `event` (data: an `EventView`, id `HEIGHT:INDEX`), and at most one last event `too_slow` (data: a `StreamTooSlow`); the schema is each event's", body = StreamEvent, content_type = "text/event-stream"),
        StreamProblems,
    ),
    security(("bearer" = ["read"])),
)]
pub(super) async fn stream(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Response {
    match open(state, &headers, query).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

async fn open(
    state: Arc<ApiState>,
    headers: &HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|e| {
        Problem::new(
            ProblemCode::BadQuery,
            format!("{}; the parameter is from=HEIGHT (or send Last-Event-ID)", e.body_text()),
        )
    })?;
    let last_id = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(value.to_str().ok().and_then(parse_event_id).ok_or_else(|| {
            Problem::new(
                ProblemCode::BadQuery,
                "Last-Event-ID must be the id of an event of this stream, HEIGHT:INDEX (e.g. 12:4)",
            )
        })?),
    };
    let permit: OwnedSemaphorePermit = state.streams.clone().try_acquire_owned().map_err(|_| {
        Problem::new(
            ProblemCode::TooManyStreams,
            format!(
                "this node already serves {} streams (max_streams); close one or retry later",
                state.limits.max_streams
            ),
        )
        .retry_after_ms(5_000)
    })?;
    // Subscribe before reading the tip: a commit between the two then still wakes the producer.
    let commits = state.commits.subscribe();
    let tip = super::reads::read(&state, |at| Ok(at.tip().height)).await?;
    let start = match (last_id, query.from) {
        (Some((height, index)), _) => Cursor { height, index: index.saturating_add(1) },
        (None, Some(from)) => Cursor { height: from.max(1), index: 0 },
        (None, None) => Cursor { height: tip.saturating_add(1), index: 0 },
    };
    let (tx, rx) = mpsc::channel::<Event>(state.limits.stream_buffer_events);
    let last_word: LastWord = Arc::new(Mutex::new(None));
    tokio::spawn(produce(state.clone(), commits, start, tx, last_word.clone(), permit));
    // The buffered events, then (if the producer left one) its last word, then the end.
    let body = futures::stream::unfold(Some((rx, last_word)), |open| async move {
        let (mut rx, last_word) = open?;
        match rx.recv().await {
            Some(event) => {
                Some((Ok::<Event, std::convert::Infallible>(event), Some((rx, last_word))))
            }
            None => {
                let word =
                    last_word.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
                word.map(|event| (Ok(event), None))
            }
        }
    });
    let keep_alive = KeepAlive::new()
        .interval(Duration::from_millis(state.limits.stream_heartbeat_ms))
        .text("heartbeat");
    Ok(Sse::new(body).keep_alive(keep_alive).into_response())
}

/// The message a producer leaves for after the buffer (it cannot be buffered: the buffer is full).
type LastWord = Arc<Mutex<Option<Event>>>;

/// Reads blocks from `cursor` on and sends their events, until the client goes away or is too
/// slow. Holds the stream's `permit` while it runs.
async fn produce(
    state: Arc<ApiState>,
    mut commits: broadcast::Receiver<CommitNotice>,
    mut cursor: Cursor,
    tx: mpsc::Sender<Event>,
    last_word: LastWord,
    _permit: OwnedSemaphorePermit,
) {
    let stall = Duration::from_millis(state.limits.stream_stall_ms);
    let mut stopping = state.stopping.clone();
    loop {
        if *stopping.borrow() {
            return;
        }
        let Ok(tip) = super::reads::read(&state, |at| Ok(at.tip().height)).await else { return };
        while cursor.height <= tip {
            let at = cursor;
            let events = super::reads::read(&state, move |view| {
                let block = view.block(at.height).map_err(storage)?;
                let header = &block.block.header;
                let block_hash = header.hash();
                block
                    .block
                    .events
                    .into_iter()
                    .zip(0u32..)
                    .skip(at.index as usize)
                    .map(|(event, index)| {
                        view_of(CommittedEvent {
                            id: event.id(),
                            height: header.height,
                            index,
                            block_hash,
                            block_time_ms: header.time_ms,
                            event,
                        })
                    })
                    .collect::<Result<Vec<EventView>, Problem>>()
            })
            .await;
            let Ok(events) = events else { return };
            for view in events {
                let id = format!("{}:{}", view.height, view.index);
                let Ok(event) = Event::default().id(id).event(STREAM_EVENT_NAME).json_data(&view)
                else {
                    return;
                };
                let sent = tokio::select! {
                    sent = tokio::time::timeout(stall, tx.send(event)) => sent,
                    Ok(()) = stopping.changed() => return,
                };
                match sent {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return, // the client went away
                    Err(_) => {
                        let word = too_slow_word(&view, stall);
                        *last_word.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Some(word);
                        return;
                    }
                }
            }
            cursor = Cursor { height: cursor.height.saturating_add(1), index: 0 };
        }
        tokio::select! {
            notice = commits.recv() => match notice {
                // A lagged receiver only missed wake-ups: the log has every block.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = tx.closed() => return,
            // Err: the server has no shutdown signal (a bare router); nothing to wait for.
            Ok(()) = stopping.changed() => return,
        }
    }
}

/// The client's buffer stayed full for `stall`: the last message it gets says so and where to
/// resume (the event that did not fit), then the stream ends.
fn too_slow_word(next: &EventView, stall: Duration) -> Event {
    let word = StreamTooSlow {
        code: "STREAM_TOO_SLOW".into(),
        detail: format!(
            "this client took no event for {} ms while its buffer was full, so the node ended \
             the stream; reconnect with Last-Event-ID set to the id of the last event received \
             (the stream resumes right after it) and read faster",
            stall.as_millis()
        ),
        next_event: format!("{}:{}", next.height, next.index),
    };
    Event::default()
        .event(STREAM_TOO_SLOW_NAME)
        .json_data(&word)
        .unwrap_or_else(|_| Event::default().event(STREAM_TOO_SLOW_NAME).data("STREAM_TOO_SLOW"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_parse_as_height_and_index() {
        assert_eq!(parse_event_id("12:4"), Some((12, 4)));
        assert_eq!(parse_event_id(" 1:0 "), Some((1, 0)));
        assert_eq!(
            parse_event_id("9999999999999999999:999999999"),
            Some((9_999_999_999_999_999_999, 999_999_999))
        );
        for bad in [
            "",
            "12",
            "12:",
            ":4",
            "a:b",
            "1:2:3",
            "-1:0",
            "+1:0",
            "1:+0",
            "18446744073709551616:0",
            "10000000000000000000:0",
            "1:1000000000",
        ] {
            assert_eq!(parse_event_id(bad), None, "{bad}");
        }
    }
}
