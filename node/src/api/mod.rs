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

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::MethodRouter;
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tradeloop_crypto::Hash;
use tradeloop_ledger::query::LedgerView;
use tradeloop_ledger::SignedEvent;

pub mod auth;
mod handlers;
pub mod hex_hash;
mod metrics;
pub mod openapi;
mod problem;
mod reads;
mod server;
mod stream;
mod wire;

#[doc(hidden)]
pub mod testing;

#[cfg(test)]
mod tests;

pub use problem::ProblemCode;
pub use stream::{EVENT_NAME as STREAM_EVENT_NAME, TOO_SLOW_NAME as STREAM_TOO_SLOW_NAME};
pub use wire::{
    BlockView, BlocksPage, CertificateView, CommitSigView, Envelope, EventResult, EventView,
    HeaderView, LegView, ParticipantView, ParticipantsView, StreamTooSlow, SubmitResponse,
    TraceView, TradeView,
};

/// A request from the API to the runtime, answered on its one-shot channel.
#[derive(Debug)]
pub enum ApiCommand {
    /// Admit events into the mempool; one verdict per event, in order.
    Submit {
        /// The parsed events, in request order.
        events: Vec<SignedEvent>,
        /// Exactly `events.len()` verdicts, in the same order.
        reply: oneshot::Sender<Vec<Verdict>>,
    },
    /// Where these events are committed, if they are (for wait=commit after a missed notice).
    Lookup {
        /// Event ids.
        ids: Vec<Hash>,
        /// Exactly `ids.len()` answers, in the same order.
        reply: oneshot::Sender<Vec<Option<Committed>>>,
    },
    /// The node's status.
    Status {
        /// The answer.
        reply: oneshot::Sender<NodeStatus>,
    },
}

/// The runtime's verdict on one submitted event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted into the mempool.
    Accepted {
        /// The event id.
        id: Hash,
    },
    /// Already on the chain (a resubmission): nothing was added.
    AlreadyCommitted {
        /// The event id.
        id: Hash,
        /// Where it is.
        at: Committed,
    },
    /// Refused by the checks or the rules; `code` is a stable [`tradeloop_ledger::RejectCode`]
    /// string.
    Rejected {
        /// The event id, when the event parsed far enough to have one.
        id: Option<Hash>,
        /// Stable machine-readable code, e.g. `BAD_SIGNATURE`.
        code: String,
        /// What was wrong and what to do, for a person.
        message: String,
    },
    /// The mempool has no room; submit again after `retry_after_ms`.
    MempoolFull {
        /// The event id.
        id: Hash,
        /// How long to wait before submitting again, in milliseconds.
        retry_after_ms: u64,
    },
}

/// Where an event is committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// Block height.
    pub height: u64,
    /// Hash of that block.
    #[serde(with = "hex_hash")]
    pub block_hash: Hash,
    /// Position of the event in the block, from 0.
    pub index: u32,
}

/// Broadcast by the runtime after each commit (`tokio::sync::broadcast`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitNotice {
    /// Height of the committed block.
    pub height: u64,
    /// Its hash.
    pub block_hash: Hash,
    /// The ids of its events, in block order (an event's position here is its index).
    pub event_ids: Vec<Hash>,
    /// Events this node had accepted that the rules refuse after this commit (a conflicting
    /// event won): they left the mempool and will never commit here. Waiters get `rejected`.
    pub evicted: Vec<Evicted>,
}

/// An accepted event evicted from the mempool by a commit, with the rules' verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evicted {
    /// Event id.
    pub id: Hash,
    /// Stable rejection code.
    pub code: String,
    /// What was wrong and what to do.
    pub message: String,
}

/// What `GET /v1/status` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeStatus {
    /// The genesis file's chain id.
    pub chain_id: String,
    /// The genesis hash (names the chain).
    #[serde(with = "hex_hash")]
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub genesis_hash: Hash,
    /// Height of the last committed block (0 before the first).
    pub height: u64,
    /// Hash of the last committed block.
    #[serde(with = "hex_hash")]
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub tip_hash: Hash,
    /// Whether this node votes.
    pub validator: bool,
    /// The node's public key, hex.
    pub node_key: String,
    /// Peer ids of the connected peers.
    pub connected_peers: Vec<String>,
    /// Events in the mempool.
    pub mempool_events: u64,
    /// Bytes of those events.
    pub mempool_bytes: u64,
    /// Whether the node is catching up with its peers.
    pub syncing: bool,
    /// Connections refused since start (a peer not in the genesis, or over a connection
    /// limit).
    pub refused_connections: u64,
    /// Gossip messages rejected since start (undecodable, oversize, badly signed or from the
    /// wrong sender); their senders are penalised.
    pub rejected_gossip: u64,
}

/// Default [`ApiLimits::max_body_bytes`]: 4 MiB, room for eight envelopes of the largest body
/// the ledger accepts (256 KiB canonical, up to twice that as submitted JSON).
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Default [`ApiLimits::max_events_per_request`].
pub const DEFAULT_MAX_EVENTS_PER_REQUEST: usize = 1000;
/// Default [`ApiLimits::max_wait_ms`]: 30 s.
pub const DEFAULT_MAX_WAIT_MS: u64 = 30_000;
/// Default [`ApiLimits::default_wait_ms`]: 10 s.
pub const DEFAULT_WAIT_MS: u64 = 10_000;
/// Default [`ApiLimits::request_timeout_ms`]: 40 s, longer than the longest wait.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 40_000;
/// Default [`ApiLimits::max_concurrent_requests`].
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 256;
/// Default [`ApiLimits::command_channel`].
pub const DEFAULT_COMMAND_CHANNEL: usize = 1024;
/// Default [`ApiLimits::max_streams`].
pub const DEFAULT_MAX_STREAMS: usize = 64;
/// Default [`ApiLimits::stream_buffer_events`].
pub const DEFAULT_STREAM_BUFFER_EVENTS: usize = 256;
/// Default [`ApiLimits::stream_stall_ms`]: 30 s.
pub const DEFAULT_STREAM_STALL_MS: u64 = 30_000;
/// Default [`ApiLimits::stream_heartbeat_ms`]: 15 s.
pub const DEFAULT_STREAM_HEARTBEAT_MS: u64 = 15_000;
/// A node more blocks than this behind the highest tip its peers report answers submissions 503
/// `NOT_SYNCED`: its rules would judge events against an old tip (an order it has not seen yet).
pub const NOT_SYNCED_LAG_BLOCKS: u64 = 10;
/// `Retry-After` of a `NOT_SYNCED` answer, ms.
pub const NOT_SYNCED_RETRY_MS: u64 = 2_000;
/// Default [`ApiLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default [`ApiLimits::header_timeout_ms`]: 10 s.
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
/// Default [`ApiLimits::max_page_blocks`].
pub const DEFAULT_MAX_PAGE_BLOCKS: usize = 1000;
/// Default [`ApiLimits::max_page_events`].
pub const DEFAULT_MAX_PAGE_EVENTS: usize = 1000;
/// Time kept free between the end of a commit wait and the request timeout, so a waiting
/// request answers `timed_out` itself instead of being cut off by the timeout layer: 2 s.
pub const WAIT_MARGIN_MS: u64 = 2_000;

/// The bounds of the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiLimits {
    /// Largest request body, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Most events in one `POST /v1/events` (413 above it).
    pub max_events_per_request: usize,
    /// Longest `?wait=commit` a client may ask for, in milliseconds (longer asks are capped).
    pub max_wait_ms: u64,
    /// The wait when `?wait=commit` names no `timeout_ms`, in milliseconds.
    pub default_wait_ms: u64,
    /// Longest time one request may take, in milliseconds (503 `TIMEOUT` after it). Must exceed
    /// `max_wait_ms` by at least [`WAIT_MARGIN_MS`].
    pub request_timeout_ms: u64,
    /// Requests handled at once; more are refused at once with 503 `OVERLOADED`.
    pub max_concurrent_requests: usize,
    /// Capacity the node gives the [`ApiCommand`] channel (the API only sends on it; a full
    /// channel answers 503 `NODE_BUSY`).
    pub command_channel: usize,
    /// Most headers in one `GET /v1/blocks` page (the default page size too).
    pub max_page_blocks: usize,
    /// Most events in one `GET /v1/trace/...` page (the default page size too).
    pub max_page_events: usize,
    /// `GET /v1/stream` connections open at once (503 `TOO_MANY_STREAMS` above).
    pub max_streams: usize,
    /// Events buffered for one stream client.
    pub stream_buffer_events: usize,
    /// How long a stream client's full buffer may go untaken before it is disconnected, ms.
    pub stream_stall_ms: u64,
    /// Interval of the stream's heartbeat comments, ms.
    pub stream_heartbeat_ms: u64,
    /// TCP connections open at once; a connection over it is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Time a connection has to deliver a whole request head (and the longest a keep-alive
    /// connection may sit idle), ms; then it is closed (slowloris).
    pub header_timeout_ms: u64,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_events_per_request: DEFAULT_MAX_EVENTS_PER_REQUEST,
            max_wait_ms: DEFAULT_MAX_WAIT_MS,
            default_wait_ms: DEFAULT_WAIT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            command_channel: DEFAULT_COMMAND_CHANNEL,
            max_page_blocks: DEFAULT_MAX_PAGE_BLOCKS,
            max_page_events: DEFAULT_MAX_PAGE_EVENTS,
            max_streams: DEFAULT_MAX_STREAMS,
            stream_buffer_events: DEFAULT_STREAM_BUFFER_EVENTS,
            stream_stall_ms: DEFAULT_STREAM_STALL_MS,
            stream_heartbeat_ms: DEFAULT_STREAM_HEARTBEAT_MS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout_ms: DEFAULT_HEADER_TIMEOUT_MS,
        }
    }
}

impl ApiLimits {
    /// Refuses limits that cannot work, naming the field.
    pub fn check(&self) -> std::io::Result<()> {
        let invalid = |m: String| Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, m));
        let zero = [
            ("max_body_bytes", self.max_body_bytes == 0),
            ("max_events_per_request", self.max_events_per_request == 0),
            ("max_concurrent_requests", self.max_concurrent_requests == 0),
            ("command_channel", self.command_channel == 0),
            ("request_timeout_ms", self.request_timeout_ms == 0),
            ("max_page_blocks", self.max_page_blocks == 0),
            ("max_page_events", self.max_page_events == 0),
            ("max_streams", self.max_streams == 0),
            ("stream_buffer_events", self.stream_buffer_events == 0),
            ("stream_stall_ms", self.stream_stall_ms == 0),
            ("stream_heartbeat_ms", self.stream_heartbeat_ms == 0),
            ("max_connections", self.max_connections == 0),
            ("header_timeout_ms", self.header_timeout_ms == 0),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, is_zero)| *is_zero) {
            return invalid(format!("api limit {name} is 0; it must be at least 1"));
        }
        if self.request_timeout_ms < self.max_wait_ms.saturating_add(WAIT_MARGIN_MS) {
            return invalid(format!(
                "api limit request_timeout_ms ({}) must exceed max_wait_ms ({}) by at least {WAIT_MARGIN_MS} ms",
                self.request_timeout_ms, self.max_wait_ms
            ));
        }
        if self.default_wait_ms > self.max_wait_ms {
            return invalid(format!(
                "api limit default_wait_ms ({}) is more than max_wait_ms ({})",
                self.default_wait_ms, self.max_wait_ms
            ));
        }
        Ok(())
    }

    /// The longest commit wait actually granted: `max_wait_ms`, shortened if needed so the wait
    /// ends [`WAIT_MARGIN_MS`] before the request timeout.
    fn wait_cap_ms(&self) -> u64 {
        self.max_wait_ms.min(self.request_timeout_ms.saturating_sub(WAIT_MARGIN_MS))
    }
}

/// What every handler shares.
#[derive(Debug)]
struct ApiState {
    commands: mpsc::Sender<ApiCommand>,
    commits: broadcast::Sender<CommitNotice>,
    view: LedgerView,
    /// One permit per open `GET /v1/stream` (`max_streams`).
    streams: Arc<tokio::sync::Semaphore>,
    /// Set when the server shuts down: open streams end, so the graceful shutdown can finish.
    stopping: tokio::sync::watch::Receiver<bool>,
    limits: ApiLimits,
    /// The node's metrics (`GET /metrics`).
    metrics: Arc<crate::metrics::Metrics>,
    /// This node's OpenAPI document as JSON (`GET /v1/openapi.json`): it states the node's own
    /// limits and whether it checks tokens ([`openapi::document`]).
    document: Result<String, String>,
}

/// The API's routes with every bound applied (for tests and for [`serve`]).
pub fn router(
    commands: mpsc::Sender<ApiCommand>,
    commits: broadcast::Sender<CommitNotice>,
    view: LedgerView,
    limits: ApiLimits,
) -> Router {
    // Never set: a router without `serve` has no shutdown of its own.
    let (_never, stopping) = tokio::sync::watch::channel(false);
    router_with(commands, commits, view, limits, ApiShared::open(), stopping)
}

/// [`router`] with bearer tokens and metrics as `shared` says.
pub fn router_with_shared(
    commands: mpsc::Sender<ApiCommand>,
    commits: broadcast::Sender<CommitNotice>,
    view: LedgerView,
    limits: ApiLimits,
    shared: ApiShared,
) -> Router {
    let (_never, stopping) = tokio::sync::watch::channel(false);
    router_with(commands, commits, view, limits, shared, stopping)
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

/// The API's routes, each recorded with its method as it is added, so the list of what the
/// router serves cannot differ from what it serves (the OpenAPI test compares it with the
/// document).
struct Routes {
    router: Router<Arc<ApiState>>,
    served: Vec<(Method, &'static str)>,
}

impl Routes {
    fn get<H: Handler<T, Arc<ApiState>>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add(Method::GET, path, axum::routing::get(handler))
    }

    fn post<H: Handler<T, Arc<ApiState>>, T: 'static>(
        self,
        path: &'static str,
        handler: H,
    ) -> Self {
        self.add(Method::POST, path, axum::routing::post(handler))
    }

    fn add(
        mut self,
        method: Method,
        path: &'static str,
        route: MethodRouter<Arc<ApiState>>,
    ) -> Self {
        self.router = self.router.route(path, route);
        self.served.push((method, path));
        self
    }
}

/// Every route of the API (the fallback answers the rest).
fn routes() -> Routes {
    Routes { router: Router::new(), served: Vec::new() }
        .post("/v1/events", handlers::submit_events)
        .get("/v1/status", handlers::status)
        .get("/v1/events/{id}", reads::get_event)
        .get("/v1/events/{id}/proof", reads::get_event_proof)
        .get("/v1/blocks", reads::list_blocks)
        .get("/v1/blocks/{height}", reads::get_block)
        .get("/v1/trace/{reference}", reads::get_trace)
        .get("/v1/trades/{order_id}", reads::get_trade)
        .get("/v1/trades/{order_id}/proof", reads::get_trade_proof)
        .get("/v1/participants", reads::participants)
        .get("/v1/stream", stream::stream)
        .get("/v1/openapi.json", openapi::openapi_json)
        .get("/metrics", metrics::metrics)
}

fn router_with(
    commands: mpsc::Sender<ApiCommand>,
    commits: broadcast::Sender<CommitNotice>,
    view: LedgerView,
    limits: ApiLimits,
    shared: ApiShared,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Router {
    let timeout = Duration::from_millis(limits.request_timeout_ms);
    let concurrency = limits.max_concurrent_requests.max(1);
    let body_limit = limits.max_body_bytes;
    let streams = Arc::new(tokio::sync::Semaphore::new(limits.max_streams));
    let ApiShared { access, metrics } = shared;
    let tokens = if access.tokens.is_empty() {
        openapi::Tokens::NoneConfigured
    } else {
        openapi::Tokens::Required
    };
    let document = openapi::served_text(&limits, tokens);
    let state = Arc::new(ApiState {
        commands,
        commits,
        view,
        streams,
        stopping,
        limits,
        metrics: metrics.clone(),
        document,
    });
    // Outermost first: overload and timeout errors become problem+json; a request over the
    // concurrency limit is shed at once rather than queued without bound. `Router::layer` wraps
    // each route separately, so the limit is the global one (one semaphore for every route);
    // `concurrency_limit` would give each route a limit of its own.
    let bounds = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(problem::from_layer_error))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(concurrency))
        .timeout(timeout);
    routes()
        .router
        .fallback(handlers::not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        // A body declared larger than the limit is refused before a byte of it is read.
        .layer(axum::middleware::from_fn_with_state(body_limit, handlers::declared_length))
        .layer(bounds)
        // Outermost: a request without the token it needs is refused before it takes a place.
        .layer(axum::middleware::from_fn_with_state(Arc::new(access), auth::require))
        // Outside the token check: refused requests are counted too.
        .layer(axum::middleware::from_fn_with_state(metrics, metrics::count))
}

/// Serves the API on `listener` until `shutdown` completes, then lets requests in flight finish
/// (each is bounded by `request_timeout_ms`). Connections are bounded by `max_connections` and
/// each must deliver its request heads within `header_timeout_ms` (server.rs).
pub async fn serve(
    listener: tokio::net::TcpListener,
    commands: mpsc::Sender<ApiCommand>,
    commits: broadcast::Sender<CommitNotice>,
    view: LedgerView,
    limits: ApiLimits,
    shared: ApiShared,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    limits.check()?;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        // Streams never end by themselves; the graceful shutdown waits for every connection.
        let _ = stop.send(true);
    };
    let server_limits = server::ServerLimits {
        max_connections: limits.max_connections,
        header_timeout: Duration::from_millis(limits.header_timeout_ms),
    };
    let router = router_with(commands, commits, view, limits, shared, stopping);
    server::serve(listener, router, server_limits, shutdown).await
}
