//! The node's Prometheus metrics (`GET /metrics`, docs/operations.md "Metrics").
//!
//! One [`Metrics`] per node, shared by the tasks that update it: the chain worker (height,
//! commit latency, rounds per height), the runtime's API task (events accepted and rejected by
//! code), sync (the highest tip a peer reported), and the API (requests by route and status).
//! Gauges that describe the node as a whole (peers, mempool, syncing) are set when `/metrics` is
//! scraped, from the same status that `GET /v1/status` answers, so the two never disagree.
//!
//! Every label has a bounded set of values: rejection codes are the ledger's stable codes, routes
//! are the router's path templates (`/v1/events/{id}`, never a concrete id) or `unmatched`, and
//! statuses are HTTP status codes.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, linear_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::encode`]'s text (OpenMetrics, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label of a rejection: its stable code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// e.g. `BAD_SIGNATURE`.
    pub code: String,
}

/// Labels of an API request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// The route's path template, or `unmatched`.
    pub route: String,
    /// HTTP status code.
    pub status: u16,
}

/// The node's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Height of the last committed block.
    pub height: Gauge,
    /// Connected peers.
    pub peers: Gauge,
    /// Events in the mempool.
    pub mempool_events: Gauge,
    /// Bytes of those events.
    pub mempool_bytes: Gauge,
    /// 1 while the node is fetching blocks from a peer.
    pub syncing: Gauge,
    /// Blocks between the highest tip a peer reported and this node's tip (0 when level).
    pub sync_lag: Gauge,
    /// Events this node's API admitted into the mempool.
    pub events_accepted: Counter,
    /// Events this node's API refused, by the ledger's rejection code.
    pub events_rejected: Family<CodeLabels, Counter>,
    /// Time to commit a decided block: block log append with fsync, index batch, mempool
    /// recheck.
    pub block_commit_seconds: Histogram,
    /// Rounds each committed height took (1 = decided in its first round).
    pub rounds_per_height: Histogram,
    /// Events per committed block.
    pub block_events: Histogram,
    /// API requests by method, route and status.
    pub api_requests: Family<RequestLabels, Counter>,
    /// Events of proposals this validator lacked and fetched from their proposer.
    pub proposal_events_fetched: Counter,
    /// Proposals whose missing events their proposer did not supply (no vote was given).
    pub proposals_incomplete: Counter,
    /// This node's clock minus the block times of the network, in ms (median over proposers,
    /// of blocks committed at the tip; docs/operations.md, "Clock").
    pub clock_offset_ms: Gauge,
    /// The highest tip a peer reported (not exported; sync lag is derived from it).
    highest_peer_height: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered under the `tradeloop_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tradeloop");
        let height = Gauge::default();
        let peers = Gauge::default();
        let mempool_events = Gauge::default();
        let mempool_bytes = Gauge::default();
        let syncing = Gauge::default();
        let sync_lag = Gauge::default();
        let events_accepted = Counter::default();
        let events_rejected = Family::<CodeLabels, Counter>::default();
        // 1 ms to ~16 s.
        let block_commit_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let rounds_per_height = Histogram::new(linear_buckets(1.0, 1.0, 8));
        // 1 to 32,768 events.
        let block_events = Histogram::new(exponential_buckets(1.0, 2.0, 16));
        let api_requests = Family::<RequestLabels, Counter>::default();
        let proposal_events_fetched = Counter::default();
        let proposals_incomplete = Counter::default();
        let clock_offset_ms = Gauge::default();
        registry.register(
            "clock_offset_ms",
            "This node's clock minus the network's block times, median over proposers, in ms",
            clock_offset_ms.clone(),
        );
        registry.register(
            "proposal_events_fetched",
            "Events of proposals this validator lacked and fetched from their proposer",
            proposal_events_fetched.clone(),
        );
        registry.register(
            "proposals_incomplete",
            "Proposals whose missing events their proposer did not supply",
            proposals_incomplete.clone(),
        );
        registry.register("height", "Height of the last committed block", height.clone());
        registry.register("peers", "Connected peers", peers.clone());
        registry.register("mempool_events", "Events in the mempool", mempool_events.clone());
        registry.register(
            "mempool_bytes",
            "Bytes of the events in the mempool",
            mempool_bytes.clone(),
        );
        registry.register(
            "syncing",
            "1 while the node fetches blocks from a peer",
            syncing.clone(),
        );
        registry.register(
            "sync_lag_blocks",
            "Blocks between the highest tip a peer reported and this node's tip",
            sync_lag.clone(),
        );
        registry.register(
            "events_accepted",
            "Events this node's API admitted into the mempool",
            events_accepted.clone(),
        );
        registry.register(
            "events_rejected",
            "Events this node's API refused, by rejection code",
            events_rejected.clone(),
        );
        registry.register(
            "block_commit_seconds",
            "Time to commit a decided block (log append with fsync, index, mempool recheck)",
            block_commit_seconds.clone(),
        );
        registry.register(
            "rounds_per_height",
            "Consensus rounds each committed height took",
            rounds_per_height.clone(),
        );
        registry.register("block_events", "Events per committed block", block_events.clone());
        registry.register(
            "api_requests",
            "HTTP API requests by method, route and status",
            api_requests.clone(),
        );
        Metrics {
            registry,
            height,
            peers,
            mempool_events,
            mempool_bytes,
            syncing,
            sync_lag,
            events_accepted,
            events_rejected,
            block_commit_seconds,
            rounds_per_height,
            block_events,
            api_requests,
            proposal_events_fetched,
            proposals_incomplete,
            clock_offset_ms,
            highest_peer_height: AtomicU64::new(0),
        }
    }

    /// Records a committed block.
    pub fn on_commit(&self, height: u64, round: u32, events: usize, seconds: f64) {
        self.height.set(gauge_value(height));
        self.rounds_per_height.observe(f64::from(round) + 1.0);
        self.block_events.observe(events as f64);
        self.block_commit_seconds.observe(seconds);
        self.update_lag();
    }

    /// Records a tip a peer reported.
    pub fn on_peer_height(&self, height: u64) {
        self.highest_peer_height.fetch_max(height, Ordering::Relaxed);
        self.update_lag();
    }

    /// Records the highest tip of one poll of every peer: it replaces what earlier polls and
    /// reports said, so a height no peer reports any more stops counting.
    pub fn on_poll(&self, highest: u64) {
        self.highest_peer_height.store(highest, Ordering::Relaxed);
        self.update_lag();
    }

    /// Blocks between the highest tip peers reported and this node's tip.
    pub fn sync_lag(&self) -> u64 {
        u64::try_from(self.sync_lag.get()).unwrap_or(0)
    }

    /// Records the verdict on one event submitted through the API: `None` for admitted, else
    /// its rejection code.
    pub fn on_submitted(&self, rejected: Option<&str>) {
        match rejected {
            None => {
                self.events_accepted.inc();
            }
            Some(code) => {
                self.events_rejected.get_or_create(&CodeLabels { code: code.to_owned() }).inc();
            }
        }
    }

    /// Records one API request.
    pub fn on_request(&self, method: &str, route: &str, status: u16) {
        self.api_requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
    }

    fn update_lag(&self) {
        let ours = u64::try_from(self.height.get()).unwrap_or(0);
        let theirs = self.highest_peer_height.load(Ordering::Relaxed);
        self.sync_lag.set(gauge_value(theirs.saturating_sub(ours)));
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// A count as a gauge value (gauges are `i64`).
pub fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_with_their_names_labels_and_values() {
        let m = Metrics::new();
        m.on_commit(7, 1, 120, 0.004);
        m.on_peer_height(10);
        m.on_submitted(None);
        m.on_submitted(None);
        m.on_submitted(Some("BAD_SIGNATURE"));
        m.on_request("GET", "/v1/events/{id}", 404);
        let text = m.encode().unwrap();
        for line in [
            "tradeloop_height 7",
            "tradeloop_sync_lag_blocks 3",
            "tradeloop_events_accepted_total 2",
            "tradeloop_events_rejected_total{code=\"BAD_SIGNATURE\"} 1",
            "tradeloop_rounds_per_height_bucket{le=\"1.0\"} 0",
            "tradeloop_rounds_per_height_bucket{le=\"2.0\"} 1",
            "tradeloop_block_events_count 1",
            "tradeloop_block_commit_seconds_count 1",
            "tradeloop_api_requests_total{method=\"GET\",route=\"/v1/events/{id}\",status=\"404\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        // The peer moving on, then this node catching up, moves the lag both ways.
        m.on_commit(10, 0, 1, 0.001);
        assert!(m.encode().unwrap().lines().any(|l| l == "tradeloop_sync_lag_blocks 0"));
    }
}
