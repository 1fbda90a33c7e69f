//! A steady load for fault scenarios: one client per node, each submitting the events of sample
//! trades one at a time to its own node with `?wait=commit`, and recording how long each took
//! and how it ended.
//!
//! A client keeps to its node for a whole trade (a trade's events depend on each other, and a
//! client that changes nodes may meet one that has not yet committed the step before); so every
//! node, validators and member nodes alike, takes submissions all the time, and a node that
//! learns of commits late shows in its own clients' latencies.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::Value;
use tradeloop_crypto::Hash;
use tradeloop_ledger::sample::{trade_events, Cast};
use tradeloop_ledger::SignedEvent;

use crate::cluster::{committed_ids, now_ms};

/// How long a node may hold one `?wait=commit` submission before it answers `pending`.
pub const WAIT_COMMIT: Duration = Duration::from_secs(8);
/// How much longer than [`WAIT_COMMIT`] a client waits for the answer (a paused node never
/// answers).
pub const CLIENT_GRACE: Duration = Duration::from_secs(4);
/// Trade numbers of client `c` start at `first_trade + c * TRADES_PER_CLIENT`.
pub const TRADES_PER_CLIENT: u64 = 1_000_000;

/// How one submission ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Committed at this height (acknowledged).
    Committed(Hash, u64),
    /// Answered, but not committed (pending, refused); the answer.
    NotCommitted(String),
    /// No answer (timeout, connection refused).
    NoAnswer(String),
}

/// One submission.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The node it went to.
    pub node: usize,
    /// When it was sent.
    pub sent: Instant,
    /// How long its answer took.
    pub latency: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

/// Clients running against a cluster.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Vec<Sample>>>,
}

impl Load {
    /// One client for each of `urls` (node `i` at `urls[i]`), signing with `cast`.
    pub fn start(urls: &[String], cast: Arc<Cast>, first_trade: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = urls
            .iter()
            .enumerate()
            .map(|(node, url)| {
                let (url, cast, stop) = (url.clone(), Arc::clone(&cast), Arc::clone(&stop));
                let first = first_trade + node as u64 * TRADES_PER_CLIENT;
                std::thread::spawn(move || client(node, &url, &cast, first, &stop))
            })
            .collect();
        Load { stop, clients }
    }

    /// Stops every client after its submission in flight; every sample.
    pub fn stop(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut samples = Vec::new();
        for client in self.clients {
            samples.extend(client.join().unwrap_or_default());
        }
        samples.sort_by_key(|s| s.sent);
        Report { samples }
    }
}

fn client(node: usize, url: &str, cast: &Cast, first_trade: u64, stop: &AtomicBool) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut trade = first_trade;
    while !stop.load(Ordering::Relaxed) {
        for event in trade_events(cast, trade, now_ms()) {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let sent = Instant::now();
            let outcome = submit(url, &event);
            let committed = matches!(outcome, Outcome::Committed(..));
            samples.push(Sample { node, sent, latency: sent.elapsed(), outcome });
            if !committed {
                // The trade's next step depends on this one: start a new trade. Wait a little
                // first, so that a client of a node that is down does not spin.
                std::thread::sleep(Duration::from_millis(200));
                break;
            }
        }
        trade += 1;
    }
    samples
}

fn submit(url: &str, event: &SignedEvent) -> Outcome {
    let url = format!("{url}/v1/events?wait=commit&timeout_ms={}", WAIT_COMMIT.as_millis());
    let answer = ureq::post(&url)
        .config()
        .timeout_global(Some(WAIT_COMMIT + CLIENT_GRACE))
        .http_status_as_error(false)
        .build()
        .header("content-type", "application/json")
        .send(format!("[{}]", event.to_envelope_json()).as_str());
    let text = match answer.and_then(|a| a.into_body().read_to_string()) {
        Ok(text) => text,
        Err(e) => return Outcome::NoAnswer(e.to_string()),
    };
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match committed_ids(&value).first() {
        Some((id, height)) => Outcome::Committed(*id, *height),
        None => Outcome::NotCommitted(text),
    }
}

/// What the clients saw.
#[derive(Debug)]
pub struct Report {
    /// Every submission, in the order sent.
    pub samples: Vec<Sample>,
}

impl Report {
    /// The acknowledged `(id, height)`s.
    pub fn acknowledged(&self) -> Vec<(Hash, u64)> {
        self.samples
            .iter()
            .filter_map(|s| match s.outcome {
                Outcome::Committed(id, h) => Some((id, h)),
                _ => None,
            })
            .collect()
    }

    /// The submissions to `node` sent within `[from, to)` or still waiting for their answer at
    /// `from` (a fault that begins while a submission waits is that submission's fault too).
    pub fn of(&self, node: usize, from: Instant, to: Instant) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.node == node && s.sent < to && s.sent + s.latency > from)
            .collect()
    }

    /// Checks that every submission to the nodes in `nodes` sent within `[from, to)`, or waiting
    /// at `from`, was committed within `bound`, and that there was at least one; the per-node
    /// summaries.
    pub fn expect_committed(
        &self,
        nodes: &[usize],
        from: Instant,
        to: Instant,
        bound: Duration,
    ) -> Result<Vec<Latencies>> {
        let mut summaries = Vec::new();
        for &node in nodes {
            let samples = self.of(node, from, to);
            if samples.is_empty() {
                bail!("node {node}: no submission in the window");
            }
            if let Some(bad) = samples
                .iter()
                .find(|s| !matches!(s.outcome, Outcome::Committed(..)) || s.latency > bound)
            {
                bail!(
                    "node {node}: a submission sent {} ms into the window was not committed \
                     within {bound:?}: {:?} after {:?}",
                    offset_ms(from, bad.sent),
                    bad.outcome,
                    bad.latency
                );
            }
            summaries.push(Latencies::of(node, &samples));
        }
        Ok(summaries)
    }
}

/// Milliseconds from `from` to `at`, negative if `at` is earlier.
fn offset_ms(from: Instant, at: Instant) -> i128 {
    match at.checked_duration_since(from) {
        Some(after) => after.as_millis() as i128,
        None => -(from.duration_since(at).as_millis() as i128),
    }
}

/// Latency figures of one node's submissions.
#[derive(Clone, Copy, Debug)]
pub struct Latencies {
    /// The node.
    pub node: usize,
    /// How many.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

impl Latencies {
    /// The figures of `samples` (not empty).
    pub fn of(node: usize, samples: &[&Sample]) -> Latencies {
        let mut l: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
        l.sort();
        // The sample at rank ⌈q·n⌉ (nearest rank), q = num / 100.
        let at = |num: usize| l[(l.len() * num).div_ceil(100).clamp(1, l.len()) - 1];
        Latencies { node, count: l.len(), p50: at(50), p99: at(99), max: at(100) }
    }
}

impl std::fmt::Display for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node {}: {} committed, p50 {} ms, p99 {} ms, max {} ms",
            self.node,
            self.count,
            self.p50.as_millis(),
            self.p99.as_millis(),
            self.max.as_millis()
        )
    }
}
