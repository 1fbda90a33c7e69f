//! What every handler shares, and what the API shares with the rest of the node.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tradeloop_ledger::query::LedgerView;

use crate::api::auth;
use crate::api::command::ApiCommand;
use crate::api::limits::ApiLimits;
use crate::chain::notice::CommitNotice;

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct ApiState {
    pub(crate) commands: mpsc::Sender<ApiCommand>,
    pub(crate) commits: broadcast::Sender<CommitNotice>,
    pub(crate) view: LedgerView,
    /// One permit per open `GET /v1/stream` (`max_streams`).
    pub(crate) streams: Arc<tokio::sync::Semaphore>,
    /// Set when the server shuts down: open streams end, so the graceful shutdown can finish.
    pub(crate) stopping: tokio::sync::watch::Receiver<bool>,
    pub(crate) limits: ApiLimits,
    /// The node's metrics (`GET /metrics`).
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// This node's OpenAPI document as JSON (`GET /v1/openapi.json`): it states the node's own
    /// limits and whether it checks tokens ([`openapi::document`]).
    pub(crate) document: Result<String, String>,
}

/// What the API shares with the rest of the node besides its channels.
#[derive(Clone, Debug, Default)]
pub struct ApiShared {
    /// Who may call it (bearer tokens and their scopes).
    pub access: auth::Access,
    /// The node's metrics: `GET /metrics` encodes them and every request is counted in them.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl ApiShared {
    /// No tokens (everything open) and metrics of its own.
    pub fn open() -> ApiShared {
        ApiShared::default()
    }
}
