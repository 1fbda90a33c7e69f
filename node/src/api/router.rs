//! The API's routes, with every bound applied, and serving them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::MethodRouter;
use axum::Router;
use tokio::sync::{broadcast, mpsc};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tradeloop_ledger::query::LedgerView;

use crate::api::command::ApiCommand;
use crate::api::limits::ApiLimits;
use crate::api::state::{ApiShared, ApiState};
use crate::api::{auth, handlers, openapi, problem, reads, scrape, server, stream};
use crate::chain::notice::CommitNotice;

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

/// The API's routes, each recorded with its method as it is added, so the list of what the
/// router serves cannot differ from what it serves (the OpenAPI test compares it with the
/// document).
pub(crate) struct Routes {
    pub(crate) router: Router<Arc<ApiState>>,
    pub(crate) served: Vec<(Method, &'static str)>,
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
pub(crate) fn routes() -> Routes {
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
        .get("/v1/openapi.json", handlers::openapi_json)
        .get("/metrics", scrape::metrics)
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
        .layer(axum::middleware::from_fn_with_state(metrics, scrape::count))
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
