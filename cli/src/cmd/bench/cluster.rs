//! `tradeloop bench cluster`: a devnet of node processes on loopback, driven over HTTP by
//! concurrent clients, beside the single-validator append rate measured in the same run.
//!
//! Two phases with `--events N > 0`:
//! 1. saturation: `--clients` threads each submit their share of the sample trades in batches of
//!    whole trades (`?wait=commit`), one request in flight per client; committed events/s is
//!    the events over the time from the first submit to the last commit;
//! 2. half rate: trades of 19 events are offered on a fixed schedule at half the committed rate
//!    of phase 1 for [`HALF_RATE_SECS`]; a trade's latency runs from its scheduled time (not the
//!    time a thread got to it), so a backlog shows up in the figures.
//!
//! With `--events 0` the nodes propose empty blocks without waiting and the bench counts
//! heights per second.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use tradeloop_ledger::sample::{trade_events, trade_steps, Cast};
use tradeloop_ledger::{Ledger, SignedEvent};
use tradeloop_node::api::{EventResult, SubmitResponse};

use crate::cmd::devnet::{self, DevnetNode};
use crate::cmd::now_ms;
use crate::output::{Diag, Out};

/// How long the nodes have to start and connect.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The commit wait of each request, ms (the node caps it at its `max_wait_ms`, 30 s).
pub const WAIT_MS: u64 = 30_000;
/// Length of the half-rate phase.
pub const HALF_RATE_SECS: u64 = 15;
/// Threads offering trades in the half-rate phase (each trade is one request; a thread whose
/// request is still waiting cannot start the next, so there are many).
pub const HALF_RATE_THREADS: usize = 64;
/// Length of the empty-heights measurement (`--events 0`), after a warm-up of 2 s.
pub const EMPTY_SECS: u64 = 10;
/// Malachite's own test app on this machine: 30.8-35.8 heights/s (docs/performance.md).
pub const MALACHITE_HEIGHTS_PER_SEC: (f64, f64) = (30.8, 35.8);
/// Most concurrent clients.
pub const MAX_CLIENTS: usize = 64;

#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Validators (1 to 7).
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Non-validating member nodes beside them (they receive and verify every block too).
    #[arg(long, default_value_t = 0)]
    pub full_nodes: usize,
    /// Events of the saturation phase; 0 measures empty heights per second instead.
    #[arg(long, default_value_t = 50_000)]
    pub events: u64,
    /// Concurrent clients of the saturation phase (client i submits to node i mod nodes).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=MAX_CLIENTS as u64))]
    pub clients: u64,
    /// Most events per request of the saturation phase (whole trades of 19 events; at most the
    /// node's `api.max_events_per_request`, 1000).
    #[arg(long, default_value_t = 475, value_parser = clap::value_parser!(u64).range(19..=1000))]
    pub batch: u64,
    /// Keep the devnet (genesis, keys, node configs, data dirs, logs) here instead of a
    /// temporary directory; it must be empty or not exist.
    #[arg(long)]
    pub keep: Option<std::path::PathBuf>,
    /// The nodes' log filter (`RUST_LOG` syntax), e.g. `info` to see every commit in each
    /// node's `node.log` (with `--keep`).
    #[arg(long, default_value = "warn")]
    pub node_log: String,
}

/// How many times the single-validator append rate is measured (its median is the reference).
const APPEND_RUNS: usize = 3;

/// What one request saw.
struct Sample {
    events: usize,
    committed: usize,
    /// From the start (its scheduled time in the half-rate phase) to the answer.
    latency: Duration,
    answered: Instant,
    first_problem: Option<String>,
}

pub fn run(args: ClusterArgs) -> Result<()> {
    let (_temp, dir) = super::host::devnet_dir(args.keep.as_deref())?;
    // The reference is measured three times: once before the network starts and twice after
    // it stops, on fresh ledgers, and its median used. One run of a few seconds moved by
    // +-20% on this machine from one minute to the next; the network's phases take a minute.
    let append = if args.events > 0 {
        let n = args.events.max(20_000);
        writeln!(
            Diag,
            "measuring the single-validator append rate ({n} events, run 1 of {APPEND_RUNS})..."
        );
        let bench = super::append::AppendBench::new(n, 1000)?;
        let first = bench.measure()?;
        Some((n, bench, first))
    } else {
        None
    };
    let nodes = devnet::init(&devnet::InitArgs {
        validators: args.validators,
        full_nodes: args.full_nodes,
        dir: dir.clone(),
        timeout_propose_ms: None,
        empty_block_wait_ms: (args.events == 0).then_some(1),
        base_port: None,
    })?;
    let cast = devnet::load_cast(&dir)?;
    let running = devnet::Running::start(&nodes, &args.node_log)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_millis(WAIT_MS + 10_000)))
        .build()
        .into();
    devnet::wait_connected(&agent, &nodes, START_TIMEOUT)?;
    writeln!(
        Out,
        "bench cluster: {} validators + {} member nodes as processes on loopback, {} cores",
        args.validators,
        args.full_nodes,
        super::host::cores()
    )?;
    if args.events == 0 {
        empty_heights(&agent, &nodes)?;
        return running.stop();
    }
    let bench = Bench { args: &args, cast: &cast, nodes: &nodes, agent: &agent };
    let measured = bench.phases(&running)?;
    running.stop()?;
    measured.report(&bench, append)
}

/// Heights per second of empty blocks proposed without waiting, beside Malachite's test app.
fn empty_heights(agent: &ureq::Agent, nodes: &[DevnetNode]) -> Result<()> {
    std::thread::sleep(Duration::from_secs(2));
    let h0 = height(agent, &nodes[0])?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(EMPTY_SECS));
    let h1 = height(agent, &nodes[0])?;
    let secs = started.elapsed().as_secs_f64();
    let rate = (h1 - h0) as f64 / secs;
    let (lo, hi) = MALACHITE_HEIGHTS_PER_SEC;
    writeln!(Out, "  empty heights:      {rate:>8.1} heights/s ({} heights in {secs:.1} s, {:.1} ms a height)", h1 - h0, 1000.0 / rate.max(f64::MIN_POSITIVE))?;
    writeln!(Out, "  Malachite test app: {lo:.1}-{hi:.1} heights/s on this machine (docs/performance.md); ratio {:.2}-{:.2}", rate / hi, rate / lo)?;
    Ok(())
}

/// A running devnet and the bench's settings.
struct Bench<'a> {
    args: &'a ClusterArgs,
    cast: &'a Cast,
    nodes: &'a [DevnetNode],
    agent: &'a ureq::Agent,
}

/// What the two phases measured.
struct Measured {
    saturated: Summary,
    halfway: Summary,
    /// Heights of node 0 before, between and after the phases.
    heights: (u64, u64, u64),
    /// P2p bytes sent by all nodes, before and after.
    wire: (Option<u64>, Option<u64>),
    /// Node CPU seconds before and after the saturation phase, and this process's in it.
    cpu: (Option<f64>, Option<f64>, Option<f64>),
    /// Host ticks at the start, between the phases and at the end.
    host: [Option<super::host::HostTicks>; 3],
}

impl Bench<'_> {
    /// Saturation, then half rate, with the figures taken around them from `running`.
    fn phases(&self, running: &devnet::Running) -> Result<Measured> {
        let per_trade = trade_steps(0).len() as u64;
        let trades = self.args.events.div_ceil(per_trade);
        writeln!(Diag, "signing {} events ({trades} trades)...", trades * per_trade);
        let signed: Vec<Vec<SignedEvent>> = sign_trades(self.cast, 1..=trades, now_ms());
        let wire0 = wire_bytes(self.nodes);
        let h_start = height(self.agent, &self.nodes[0])?;
        let cpu0 = nodes_cpu(running);
        let bench_cpu0 = super::host::cpu_seconds("self");
        let host0 = super::host::HostTicks::now();
        let saturated = self.saturation(&signed)?;
        let cpu1 = nodes_cpu(running);
        let bench_cpu = super::host::cpu_seconds("self").zip(bench_cpu0).map(|(b, a)| b - a);
        let host1 = super::host::HostTicks::now();
        if saturated.committed == 0 {
            bail!("nothing committed in the saturation phase: {}", saturated.problem);
        }
        let h_mid = height(self.agent, &self.nodes[0])?;
        let halfway = self.half_rate(saturated.rate / 2.0, trades + 1)?;
        let host2 = super::host::HostTicks::now();
        let wire1 = wire_bytes(self.nodes);
        let h_end = height(self.agent, &self.nodes[0])?;
        Ok(Measured {
            saturated,
            halfway,
            heights: (h_start, h_mid, h_end),
            wire: (wire0, wire1),
            cpu: (cpu0, cpu1, bench_cpu),
            host: [host0, host1, host2],
        })
    }

    /// Every client submits its share of the trades, one request in flight each.
    fn saturation(&self, signed: &[Vec<SignedEvent>]) -> Result<Summary> {
        let args = self.args;
        writeln!(
            Diag,
            "saturation: {} clients, batches of up to {} events...",
            args.clients, args.batch
        );
        let clients = usize::try_from(args.clients).context("--clients")?;
        let batch = usize::try_from(args.batch).unwrap_or(usize::MAX);
        let bodies = client_bodies(signed, clients, batch);
        let started = Instant::now();
        let samples = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for (c, requests) in bodies.iter().enumerate() {
                let (agent, nodes, samples) = (self.agent, self.nodes, &samples);
                scope.spawn(move || {
                    let node = &nodes[c % nodes.len()];
                    for (body, events) in requests {
                        let sent = Instant::now();
                        let s = submit_body(agent, node, body, *events, sent);
                        samples.lock().unwrap_or_else(|e| e.into_inner()).push(s);
                    }
                });
            }
        });
        let samples = samples.into_inner().unwrap_or_else(|e| e.into_inner());
        let end = samples.iter().map(|s| s.answered).max().unwrap_or(started);
        let saturated = summarize(&samples, end.duration_since(started));
        saturated.print("saturation")?;
        Ok(saturated)
    }

    /// One trade per request, offered on a fixed schedule at `rate` events/s, from trade
    /// number `first` on.
    fn half_rate(&self, rate: f64, first: u64) -> Result<Summary> {
        let per_trade = trade_steps(0).len() as u64;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a small positive count
        let half_trades =
            ((rate * HALF_RATE_SECS as f64) / per_trade as f64).ceil().max(1.0) as u64;
        let signed = sign_trades(self.cast, first..=first + half_trades - 1, now_ms());
        let interval = Duration::from_secs_f64(per_trade as f64 / rate.max(1.0));
        writeln!(Diag, "half rate: {rate:.0} events/s offered ({half_trades} trades of {per_trade}, one every {:.1} ms)...", interval.as_secs_f64() * 1000.0);
        let samples = Mutex::new(Vec::new());
        let started = Instant::now() + Duration::from_millis(100);
        std::thread::scope(|scope| {
            for t in 0..HALF_RATE_THREADS {
                let (agent, nodes, signed, samples) = (self.agent, self.nodes, &signed, &samples);
                scope.spawn(move || {
                    for (j, trade) in signed.iter().enumerate().skip(t).step_by(HALF_RATE_THREADS) {
                        let due = started + interval.mul_f64(j as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let node = &nodes[j % nodes.len()];
                        let refs: Vec<&SignedEvent> = trade.iter().collect();
                        let s = submit(agent, node, &refs, due);
                        samples.lock().unwrap_or_else(|e| e.into_inner()).push(s);
                    }
                });
            }
        });
        let samples = samples.into_inner().unwrap_or_else(|e| e.into_inner());
        let end = samples.iter().map(|s| s.answered).max().unwrap_or(started);
        let halfway = summarize(&samples, end.duration_since(started));
        halfway.print("half rate")?;
        Ok(halfway)
    }
}

/// Every client's request bodies, built before the clock starts: the load generator shares the
/// nodes' cores, and its JSON encoding is not part of what is measured. Client `c` takes every
/// `clients`-th trade from trade `c`, in batches of whole trades of up to `batch` events.
fn client_bodies(
    signed: &[Vec<SignedEvent>],
    clients: usize,
    batch: usize,
) -> Vec<Vec<(String, usize)>> {
    (0..clients)
        .map(|c| {
            let mut requests = Vec::new();
            let mut request: Vec<&SignedEvent> = Vec::new();
            for trade in signed.iter().skip(c).step_by(clients) {
                if !request.is_empty() && request.len() + trade.len() > batch {
                    requests.push((request_body(&request), request.len()));
                    request.clear();
                }
                request.extend(trade.iter());
            }
            if !request.is_empty() {
                requests.push((request_body(&request), request.len()));
            }
            requests
        })
        .collect()
}

/// The single-validator append bench: its event count, the bench and its first run.
type AppendRef = Option<(u64, super::append::AppendBench, super::append::AppendRate)>;

impl Measured {
    /// Blocks, p2p bytes, steal, CPU, and the reference (the append rate measured again).
    fn report(&self, bench: &Bench, append: AppendRef) -> Result<()> {
        let (saturated, halfway) = (&self.saturated, &self.halfway);
        let (h_start, h_mid, h_end) = self.heights;
        let ledger = Ledger::open_read_only(
            &bench.nodes[0].config.with_file_name("data"),
            bench.cast.genesis.clone(),
        )?;
        for (what, from, to) in
            [("saturation", h_start + 1, h_mid), ("half rate", h_mid + 1, h_end)]
        {
            let blocks = blocks_between(&ledger, from, to)?;
            writeln!(Out, "  blocks ({what}):{blocks}")?;
        }
        let committed = (saturated.committed + halfway.committed) as f64;
        match self.wire {
            (Some(a), Some(b)) if b >= a => writeln!(Out, "  p2p bytes sent, all nodes: {:.0} bytes/event ({:.1} MB for {committed:.0} committed events; TCP payload, from `ss`)", (b - a) as f64 / committed, (b - a) as f64 / 1e6)?,
            _ => writeln!(Out, "  p2p bytes sent: not measured (`ss -tinH` gave no byte counters)")?,
        }
        // A VM's hypervisor may run other guests on its cores: time this machine did not get.
        let steal = |from: Option<super::host::HostTicks>, to: Option<super::host::HostTicks>| {
            from.zip(to)
                .and_then(|(a, b)| b.steal_since(a))
                .map_or_else(|| "not measured".to_string(), |s| format!("{:.0}%", s * 100.0))
        };
        let [host0, host1, host2] = self.host;
        writeln!(Out, "  host: CPU time taken by the hypervisor (steal, /proc/stat): {} in the saturation phase, {} at half rate", steal(host0, host1), steal(host1, host2))?;
        let node_cpu = self.node_cpu(bench)?;
        if let Some((n, append, first)) = append {
            report_reference(bench.args, saturated, halfway, node_cpu, n, &append, first)?;
        }
        Ok(())
    }

    /// Node CPU per committed event in the saturation phase (a node's share), printed with
    /// the bench's own beside it.
    fn node_cpu(&self, bench: &Bench) -> Result<Option<f64>> {
        let saturated = &self.saturated;
        let (Some(a), Some(b), bench_cpu) = self.cpu else { return Ok(None) };
        if saturated.committed == 0 {
            return Ok(None);
        }
        let per_event = (b - a) * 1e6 / saturated.committed as f64;
        let per_node = per_event / bench.nodes.len() as f64;
        writeln!(Out, "  node CPU (saturation): {per_event:.0} us per committed event, all nodes; {per_node:.0} us a node")?;
        if let Some(own) = bench_cpu {
            let secs = saturated.secs;
            writeln!(Out, "  beside them: this process (the {} HTTP clients) {:.0} us per committed event; {:.0}% of the cores' time in the phase", bench.args.clients, own * 1e6 / saturated.committed as f64, own * 100.0 / (secs * super::host::cores() as f64))?;
        }
        Ok(Some(per_node))
    }
}

/// The single-validator append rate, measured again twice (its median is the reference), and
/// the committed rate and half-rate p99 against it.
fn report_reference(
    args: &ClusterArgs,
    saturated: &Summary,
    halfway: &Summary,
    node_cpu: Option<f64>,
    n: u64,
    bench: &super::append::AppendBench,
    first: super::append::AppendRate,
) -> Result<()> {
    let mut runs = vec![first];
    for i in 2..=APPEND_RUNS {
        writeln!(
            Diag,
            "measuring the single-validator append rate ({n} events, run {i} of {APPEND_RUNS})..."
        );
        runs.push(bench.measure()?);
    }
    let shown: Vec<String> = runs.iter().map(|r| format!("{:.0}", r.rate)).collect();
    runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    let median = runs[runs.len() / 2];
    if let (Some(node), Some(append)) = (node_cpu, median.cpu_us) {
        writeln!(Out, "  CPU per event: a node {node:.0} us, single-validator append {append:.0} us (ratio {:.2})", node / append)?;
    }
    let rate = median.rate;
    let reference = rate / args.validators as f64;
    writeln!(Out, "  single-validator append ({n} events, same run; before the network and twice after it): {} events/s", shown.join(" / "))?;
    writeln!(
        Out,
        "  reference (median append {rate:.0} / {}): {reference:.0} events/s",
        args.validators
    )?;
    writeln!(
        Out,
        "  committed / reference: {:.2} (goal >= 0.8); p99 at half rate {:.0} ms (goal <= 500)",
        saturated.rate / reference,
        halfway.p99_ms
    )?;
    Ok(())
}

/// CPU seconds used so far by all node processes.
fn nodes_cpu(running: &devnet::Running) -> Option<f64> {
    running
        .children
        .iter()
        .map(|(_, child)| super::host::cpu_seconds(&child.id().to_string()))
        .sum()
}

/// The sample trades numbered `range`, signed in parallel.
pub(super) fn sign_trades(
    cast: &Cast,
    range: std::ops::RangeInclusive<u64>,
    time: u64,
) -> Vec<Vec<SignedEvent>> {
    use rayon::prelude::*;
    range.into_par_iter().map(|n| trade_events(cast, n, time)).collect()
}

fn height(agent: &ureq::Agent, node: &DevnetNode) -> Result<u64> {
    Ok(devnet::status(agent, node).with_context(|| format!("status of {}", node.name))?.height)
}

/// Submits `events` as one request with `?wait=commit`.
fn submit(
    agent: &ureq::Agent,
    node: &DevnetNode,
    events: &[&SignedEvent],
    from: Instant,
) -> Sample {
    submit_body(agent, node, &request_body(events), events.len(), from)
}

/// The JSON array of `events`' envelopes.
fn request_body(events: &[&SignedEvent]) -> String {
    let mut body = String::from("[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&e.to_envelope_json());
    }
    body.push(']');
    body
}

/// Submits a request body of `events` events with `?wait=commit`.
fn submit_body(
    agent: &ureq::Agent,
    node: &DevnetNode,
    body: &str,
    events: usize,
    from: Instant,
) -> Sample {
    let url = format!("http://{}/v1/events?wait=commit&timeout_ms={WAIT_MS}", node.api);
    let answer = agent
        .post(&url)
        .header("content-type", "application/json")
        .send(body)
        .map_err(anyhow::Error::from)
        .and_then(|mut r| {
            let code = r.status().as_u16();
            let text = r.body_mut().read_to_string()?;
            // 409, 422 and 429 answer a request that admitted nothing, with its results.
            if !matches!(code, 200 | 409 | 422 | 429) {
                bail!("{} answered {code}: {text}", node.name);
            }
            Ok(serde_json::from_str::<SubmitResponse>(&text)?)
        });
    let answered = Instant::now();
    let latency = answered.saturating_duration_since(from);
    match answer {
        Ok(r) => {
            let committed =
                r.results.iter().filter(|x| matches!(x, EventResult::Committed { .. })).count();
            let first_problem = r
                .results
                .iter()
                .find(|x| !matches!(x, EventResult::Committed { .. }))
                .map(|x| format!("{x:?}"));
            Sample { events, committed, latency, answered, first_problem }
        }
        Err(e) => {
            Sample { events, committed: 0, latency, answered, first_problem: Some(e.to_string()) }
        }
    }
}

struct Summary {
    events: usize,
    committed: usize,
    rate: f64,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    problem: String,
}

/// Rates and per-event latency percentiles (each event has its request's latency).
fn summarize(samples: &[Sample], took: Duration) -> Summary {
    let mut latencies: Vec<(Duration, usize)> =
        samples.iter().map(|s| (s.latency, s.committed)).collect();
    latencies.sort();
    let committed: usize = samples.iter().map(|s| s.committed).sum();
    let at = |q: f64| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // q in [0, 1]
        let target = (q * committed as f64).ceil() as usize;
        let mut seen = 0;
        for (l, n) in &latencies {
            seen += n;
            if seen >= target.max(1) {
                return l.as_secs_f64() * 1000.0;
            }
        }
        0.0
    };
    let secs = took.as_secs_f64().max(f64::MIN_POSITIVE);
    Summary {
        events: samples.iter().map(|s| s.events).sum(),
        committed,
        rate: committed as f64 / secs,
        secs,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: latencies.last().map(|l| l.0.as_secs_f64() * 1000.0).unwrap_or(0.0),
        problem: samples
            .iter()
            .find_map(|s| s.first_problem.clone())
            .unwrap_or_else(|| "none".into()),
    }
}

impl Summary {
    fn print(&self, what: &str) -> Result<()> {
        writeln!(
            Out,
            "  {what:<11} {:>6} of {:>6} events committed in {:>6.2} s: {:>7.0} events/s; submit-to-commit p50 {:>5.0} ms, p99 {:>5.0} ms, max {:>5.0} ms",
            self.committed, self.events, self.secs, self.rate, self.p50_ms, self.p99_ms, self.max_ms
        )?;
        if self.committed < self.events {
            writeln!(
                Out,
                "  {what:<11} not committed: {}; first: {}",
                self.events - self.committed,
                self.problem
            )?;
        }
        Ok(())
    }
}

/// Mean events per block and block interval over `from..=to` (blocks with events).
fn blocks_between(ledger: &Ledger, from: u64, to: u64) -> Result<String> {
    let mut times = Vec::new();
    let mut events = 0u64;
    let mut largest = 0u32;
    for h in from..=to {
        let header = ledger.block(h)?.block.header;
        events += u64::from(header.event_count);
        largest = largest.max(header.event_count);
        times.push(header.time_ms);
    }
    let blocks = times.len() as u64;
    if blocks == 0 {
        return Ok(" none".into());
    }
    let span = times.last().copied().unwrap_or(0).saturating_sub(times[0]);
    let interval = if blocks > 1 { span as f64 / (blocks - 1) as f64 } else { 0.0 };
    Ok(format!(
        " {blocks} blocks, {:.0} events a block on average (largest {largest}), one every {interval:.0} ms",
        events as f64 / blocks as f64
    ))
}

/// Bytes sent so far on the TCP connections between the nodes' p2p ports (both ends of every
/// connection are on loopback, so this is everything every node sent), from `ss -tinH`.
fn wire_bytes(nodes: &[DevnetNode]) -> Option<u64> {
    let ports: BTreeSet<String> = nodes
        .iter()
        .filter_map(|n| n.p2p.split('/').nth(4).map(|p| format!("127.0.0.1:{p}")))
        .collect();
    let out = std::process::Command::new("ss").args(["-tinH"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut total = 0u64;
    let mut seen = false;
    let mut ours = false;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            // A socket line: state, queues, local address, peer address.
            let cols: Vec<&str> = line.split_whitespace().collect();
            ours = cols.len() >= 5 && (ports.contains(cols[3]) || ports.contains(cols[4]));
        } else if ours {
            if let Some(v) = line
                .split_whitespace()
                .find_map(|f| f.strip_prefix("bytes_sent:"))
                .and_then(|v| v.parse::<u64>().ok())
            {
                total += v;
                seen = true;
            }
        }
    }
    seen.then_some(total)
}
