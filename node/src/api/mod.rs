//! The node's HTTP ingress: integrations submit signed events and read the node's status.
//!
//! ```text
//!  client ──HTTP──▶ axum router ──ApiCommand (bounded mpsc)──▶ runtime (mempool, consensus)
//!                        ▲    ◀──────── oneshot reply ─────────┘
//!                        └──── CommitNotice (broadcast) ◀──── runtime, after each commit
//! ```
//!
//! The API owns no ledger state. It parses each envelope with the ledger's own parser
//! ([`SignedEvent::from_envelope_json`], on the element's exact bytes), hands the events to the
//! runtime as one [`ApiCommand::Submit`] and answers one verdict per event, in order. With
//! `?wait=commit` it subscribes to the commit broadcast *before* submitting, so no commit can
//! slip between the two, and falls back to [`ApiCommand::Lookup`] when it lagged behind the
//! broadcast. This is the rust-libp2p `Client`/`EventLoop` pattern: commands with one-shot
//! replies to the task that owns the state.
//!
//! Every resource is bounded ([`ApiLimits`]): body size, events per request, time waited for a
//! commit, time per request, requests in flight; the command channel is bounded by whoever
//! creates it (the node, with [`ApiLimits::command_channel`]). Whole-request errors are RFC 9457
//! `application/problem+json` with a stable `code` (`docs/api.md`).

pub mod auth;
pub mod command;
pub mod dto;
mod handlers;
pub mod limits;
pub mod openapi;
mod problem;
mod problems;
mod reads;
pub mod router;
mod scrape;
mod server;
pub mod state;
mod stream;

/// Fake runtimes and an empty ledger for the API's tests; only in test builds and with the
/// `testing` feature, never in a release build.
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use command::{ApiCommand, NodeStatus};
pub use dto::{
    BlockView, BlocksPage, CertificateView, CommitSigView, Envelope, EventResult, EventView,
    HeaderView, LegView, ParticipantView, ParticipantsView, StreamTooSlow, SubmitResponse,
    TraceView, TradeView, STREAM_EVENT_NAME, STREAM_TOO_SLOW_NAME,
};
pub use limits::*;
pub use problem::ProblemCode;
pub use router::{router, router_with_shared, serve};
pub use state::ApiShared;
