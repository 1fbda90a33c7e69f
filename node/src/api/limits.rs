//! Every bound of the API, with its default ([`ApiLimits`]).

/// Default [`ApiLimits::max_body_bytes`]: 8 MiB, room for sixteen envelopes of the largest body
/// the ledger accepts (256 KiB canonical, up to twice that as submitted JSON), and for a full
/// batch of [`DEFAULT_MAX_EVENTS_PER_REQUEST`] events of a few KiB each.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
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
    pub(crate) fn wait_cap_ms(&self) -> u64 {
        self.max_wait_ms.min(self.request_timeout_ms.saturating_sub(WAIT_MARGIN_MS))
    }
}
