//! `tradeloop bench api`: the node's HTTP API against what the node does in-process, measured in
//! the same run.
//!
//! 1. Ingress: a member node (a process on loopback, no validator running, so nothing commits
//!    and the figure is admission alone) takes `--events` events from `--clients` concurrent
//!    HTTP connections, once one event per request and once in batches of `--batch`; beside it,
//!    the node's chain worker (`tradeloop_node::chain`, what the node runs behind its API) admits
//!    the same number of fresh events in-process, from as many concurrent callers and in the
//!    same shapes. The four phases run `--rounds` times, alternating, and the ratio reported is
//!    the median of the rounds'; each round also reports the CPU time per event of the node, of
//!    the load generator ([`super::load`], one thread for all connections) and in-process.
//!    Goal: HTTP >= 0.8 of in-process.
//! 2. Queries: a validator node on a chain of `--chain-events` events (built first, sample
//!    trades in blocks of 1,000) answers `GET /v1/events/{id}` and `GET /v1/trace/order:PO-n`
//!    for random ids and orders from `--clients` concurrent connections; p50, p99 and max
//!    latency of each. Goal: p99 <= 10 ms.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use rand::Rng;
use tradeloop_ledger::sample::{trade_steps, Cast};
use tradeloop_ledger::{Ledger, SignedEvent};

use super::cluster::sign_trades;
use super::load;
use crate::cmd::devnet::{self, DevnetNode};
use crate::cmd::now_ms;
use crate::output::{Diag, Out};

/// How long a node has to start answering.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Most concurrent clients.
pub const MAX_CLIENTS: u64 = 256;
/// Events per block of the query chain.
pub const CHAIN_BLOCK_EVENTS: usize = 1000;

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Events submitted in each ingress phase (single events, then batches).
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub events: u64,
    /// Concurrent HTTP clients (and in-process callers).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=MAX_CLIENTS))]
    pub clients: u64,
    /// Events per request of the batch phase (at most the node's max_events_per_request, 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(2..=1000))]
    pub batch: u64,
    /// Events on the chain the queries run against (0: no query phase).
    #[arg(long, default_value_t = 1_000_000)]
    pub chain_events: u64,
    /// Queries of each kind (event by id, trace of an order).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub queries: u64,
    /// Rounds of the four ingress phases (the ratios reported are the rounds' medians).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub rounds: u64,
    /// Keep the devnet (genesis, keys, configs, data dirs, logs) here; it must be empty or new.
    #[arg(long)]
    pub keep: Option<std::path::PathBuf>,
}

/// Latency figures of one kind of request.
struct Latency {
    count: usize,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn latency(mut samples: Vec<Duration>, wall: Duration) -> Latency {
    samples.sort_unstable();
    let at = |q: f64| {
        if samples.is_empty() {
            return 0.0;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // an index
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    Latency {
        count: samples.len(),
        rate: samples.len() as f64 / wall.as_secs_f64().max(1e-9),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}

pub fn run(args: ApiArgs) -> Result<()> {
    let (_temp, dir) = super::host::devnet_dir(args.keep.as_deref())?;
    let clients = usize::try_from(args.clients)?;
    let events = usize::try_from(args.events)?;
    let nodes = devnet::init(&devnet::InitArgs {
        validators: 1,
        full_nodes: 1,
        dir: dir.clone(),
        timeout_propose_ms: None,
        empty_block_wait_ms: None,
        base_port: None,
    })?;
    let (validator, member) = (&nodes[0], &nodes[1]);
    if !validator.validator || member.validator {
        bail!("devnet init wrote an unexpected cast: {nodes:?}");
    }
    let rounds = usize::try_from(args.rounds)?;
    make_room(member, events)?;
    let cast = devnet::load_cast(&dir)?;
    let per_trade = trade_steps(0).len();
    let trades_per_phase = events.div_ceil(per_trade) as u64;
    writeln!(
        Out,
        "bench api: {} cores, {clients} clients, {} events a phase ({trades_per_phase} trades of {per_trade}), {rounds} rounds",
        super::host::cores(),
        trades_per_phase * per_trade as u64
    )?;
    let ingress =
        IngressBench { cast: &cast, member, clients, batch: usize::try_from(args.batch)? };
    let ratios = ingress.rounds(rounds, trades_per_phase)?;
    report_ratios(ratios)?;
    if args.chain_events == 0 {
        return Ok(());
    }
    let first_trade = 4 * rounds as u64 * trades_per_phase + 1;
    let chain_trades = usize::try_from(args.chain_events)?.div_ceil(per_trade) as u64;
    let ids = build_query_chain(&cast, validator, &dir, first_trade, chain_trades)?;
    let queries = usize::try_from(args.queries)?;
    query_latency(validator, &ids, queries, clients, first_trade..first_trade + chain_trades)
}

/// Room in the member node's mempool for a phase.
fn make_room(member: &DevnetNode, events: usize) -> Result<()> {
    let room = events + 1000;
    let mut toml = std::fs::read_to_string(&member.config)?;
    toml.push_str(&format!(
        "\n[mempool]\nmax_events = {}\nmax_bytes = {}\n",
        room.clamp(1, 1_000_000),
        (room as u64).saturating_mul(4096).min(1 << 34)
    ));
    std::fs::write(&member.config, toml)?;
    Ok(())
}

/// The ingress phases' settings.
struct IngressBench<'a> {
    cast: &'a Cast,
    member: &'a DevnetNode,
    clients: usize,
    batch: usize,
}

impl IngressBench<'_> {
    /// Over HTTP: the member node alone, started afresh for each phase (an empty mempool, as
    /// the in-process phase has). In-process: the chain worker of a node on a fresh ledger of
    /// the same genesis. The phases alternate so that a slow spell of the machine falls on both
    /// sides alike. The HTTP / in-process ratios of each round, for single events and batches.
    fn rounds(&self, rounds: usize, trades_per_phase: u64) -> Result<[Vec<f64>; 2]> {
        let per_trade = trade_steps(0).len() as u64;
        let agent = status_agent();
        let mut ratios: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            writeln!(
                Diag,
                "round {}: signing {} events...",
                round + 1,
                4 * trades_per_phase * per_trade
            );
            let time = now_ms();
            // Four sets of fresh trades: in-process single, HTTP single, in-process and HTTP
            // batches.
            let sets: Vec<Vec<Vec<SignedEvent>>> = (0..4u64)
                .map(|k| {
                    let first = 1 + (4 * round as u64 + k) * trades_per_phase;
                    sign_trades(self.cast, first..=first + trades_per_phase - 1, time)
                })
                .collect();
            for (shape, per_request, what) in [(0, 1, "single events"), (1, self.batch, "batches")]
            {
                let pair = (&sets[2 * shape], &sets[2 * shape + 1]);
                let ratio = self.phase_pair(&agent, round, what, per_request, pair)?;
                ratios[shape].push(ratio);
            }
        }
        Ok(ratios)
    }

    /// One in-process phase and one over HTTP, of one request shape: the ratio of their rates.
    fn phase_pair(
        &self,
        agent: &ureq::Agent,
        round: usize,
        what: &str,
        per_request: usize,
        (inproc_set, http_set): (&Vec<Vec<SignedEvent>>, &Vec<Vec<SignedEvent>>),
    ) -> Result<f64> {
        let member = self.member;
        let inproc = in_process(self.cast, inproc_set, self.clients, per_request)?;
        let running = devnet::Running::start(std::slice::from_ref(member), "warn")?;
        wait_up(agent, member, START_TIMEOUT)?;
        let pid = running.children.first().map(|(_, c)| c.id()).context("no node process")?;
        let http = over_http(member, pid, http_set, self.clients, per_request)?;
        running.stop()?;
        let ratio = http.rate / inproc.rate;
        writeln!(
            Out,
            "  round {}, {what:<13} over HTTP {:>6.0} events/s, in-process admission {:>6.0} events/s: ratio {ratio:.2}; CPU per event: node {:.0} us over HTTP (load generator {:.0} us), {:.0} us in-process",
            round + 1,
            http.rate,
            inproc.rate,
            http.node_cpu_us,
            http.client_cpu_us.unwrap_or(0.0),
            inproc.node_cpu_us
        )?;
        if http.refused + inproc.refused > 0 {
            bail!(
                "events were not accepted: {} over HTTP, {} in-process (first: {})",
                http.refused,
                inproc.refused,
                http.first.as_deref().or(inproc.first.as_deref()).unwrap_or("-")
            );
        }
        Ok(ratio)
    }
}

/// The median ratio of the rounds, per request shape.
fn report_ratios(mut ratios: [Vec<f64>; 2]) -> Result<()> {
    for (shape, what) in [(0, "single events"), (1, "batches")] {
        let r = &mut ratios[shape];
        r.sort_by(f64::total_cmp);
        writeln!(
            Out,
            "  ingress, {what:<13} HTTP / in-process: median {:.2} of {} rounds (min {:.2}, max {:.2}; goal >= 0.8)",
            r[r.len() / 2],
            r.len(),
            r[0],
            r[r.len() - 1]
        )?;
    }
    Ok(())
}

/// Appends `chain_trades` trades from trade `first_trade` to the validator's data dir, in
/// blocks of [`CHAIN_BLOCK_EVENTS`]: the ids of their events.
fn build_query_chain(
    cast: &Cast,
    validator: &DevnetNode,
    dir: &std::path::Path,
    first_trade: u64,
    chain_trades: u64,
) -> Result<Vec<tradeloop_crypto::Hash>> {
    let per_trade = trade_steps(0).len() as u64;
    let data = validator.config.with_file_name("data");
    let key_file = dir.join("keys/nodes").join(format!("{}.json", validator.name));
    let validator_key = tradeloop_crypto::keyfile::read_key_file(&key_file)?;
    writeln!(
        Diag,
        "building a chain of {} events ({chain_trades} trades)...",
        chain_trades * per_trade
    );
    let built = Instant::now();
    let mut ids = Vec::new();
    let mut ledger = Ledger::open(&data, cast.genesis.clone())?;
    // Signed and appended a slice at a time, so memory holds one slice of events.
    const SLICE_TRADES: u64 = 20_000;
    let mut next = first_trade;
    let end = first_trade + chain_trades;
    let mut rejected = None;
    while next < end {
        let upto = (next + SLICE_TRADES).min(end);
        // Signed as they are appended: their time stays within the ledger's skew window.
        let signed: Vec<SignedEvent> =
            sign_trades(cast, next..=upto - 1, now_ms()).into_iter().flatten().collect();
        ids.extend(signed.iter().map(SignedEvent::id));
        ledger.append_local_stream(
            signed.chunks(CHAIN_BLOCK_EVENTS).map(<[SignedEvent]>::to_vec),
            &validator_key,
            &now_ms,
            &mut |_, _, r| {
                if rejected.is_none() {
                    rejected = r.into_iter().next();
                }
            },
        )?;
        next = upto;
    }
    if let Some((i, r)) = rejected {
        bail!("a chain event ({i}) was rejected: {r}");
    }
    writeln!(
        Diag,
        "chain built: {} events, height {}, in {:.0} s",
        ids.len(),
        ledger.tip().height,
        built.elapsed().as_secs_f64()
    );
    Ok(ids)
}

/// Queries served by the validator on its chain: events by id and traces of orders, at random.
fn query_latency(
    validator: &DevnetNode,
    ids: &[tradeloop_crypto::Hash],
    queries: usize,
    clients: usize,
    trades: std::ops::Range<u64>,
) -> Result<()> {
    let agent = status_agent();
    let running = devnet::Running::start(std::slice::from_ref(validator), "warn")?;
    wait_up(&agent, validator, START_TIMEOUT)?;
    let mut rng = rand::rng();
    let event_paths: Vec<String> = (0..queries)
        .map(|_| format!("/v1/events/{}", ids[rng.random_range(0..ids.len())].to_hex()))
        .collect();
    let trace_paths: Vec<String> = (0..queries)
        .map(|_| format!("/v1/trace/order:PO-{}", rng.random_range(trades.clone())))
        .collect();
    for (what, paths) in [("event by id", &event_paths), ("trace of an order", &trace_paths)] {
        let l = get_all(validator.api, paths, clients)?;
        writeln!(
            Out,
            "  query {what:<17} on {} events: p50 {:.2} ms  p99 {:.2} ms  max {:.1} ms  ({} requests, {:.0}/s; goal p99 <= 10 ms)",
            ids.len(), l.p50_ms, l.p99_ms, l.max_ms, l.count, l.rate
        )?;
    }
    running.stop()?;
    Ok(())
}

/// What an ingress phase did.
struct Ingress {
    /// Accepted events per second.
    rate: f64,
    /// Events not accepted.
    refused: usize,
    /// The first answer that did not accept an event.
    first: Option<String>,
    /// CPU time of the node per event (in-process: of the bench process, which then runs only
    /// the chain worker and its callers).
    node_cpu_us: f64,
    /// CPU time of the HTTP load generator per event (none in-process).
    client_cpu_us: Option<f64>,
}

/// Requests of `per_request` events, each client taking whole trades in turn (so a trade's
/// events arrive in order).
fn requests_of(
    trades: &[Vec<SignedEvent>],
    clients: usize,
    c: usize,
    per_request: usize,
) -> Vec<Vec<SignedEvent>> {
    let mine: Vec<SignedEvent> =
        trades.iter().skip(c).step_by(clients).flat_map(|t| t.iter().cloned()).collect();
    mine.chunks(per_request).map(<[SignedEvent]>::to_vec).collect()
}

fn in_process(
    cast: &Cast,
    trades: &[Vec<SignedEvent>],
    clients: usize,
    per_request: usize,
) -> Result<Ingress> {
    let dir = tempfile::tempdir()?;
    let ledger = Ledger::open(&dir.path().join("data"), cast.genesis.clone())?;
    let total: usize = trades.iter().map(Vec::len).sum();
    let limits =
        tradeloop_node::mempool::MempoolLimits { max_events: total + 1, max_bytes: u64::MAX };
    let (commits, _) = tokio::sync::broadcast::channel(16);
    let (stats, _) = tokio::sync::watch::channel(Default::default());
    let key = tradeloop_crypto::SigningKey::from_seed_label("bench-api-proposer");
    let metrics = std::sync::Arc::new(tradeloop_node::metrics::Metrics::new());
    let (chain, thread) = tradeloop_node::chain::spawn(
        ledger,
        limits,
        tradeloop_node::chain::Verifier::Cores,
        key,
        tradeloop_node::chain::WorkerReports {
            commits,
            stats,
            metrics,
            storage: tokio::sync::watch::channel(None).0,
        },
    )?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let per_client: Vec<Vec<Vec<SignedEvent>>> =
        (0..clients).map(|c| requests_of(trades, clients, c, per_request)).collect();
    let cpu_before = load::process_cpu(std::process::id())?;
    let started = Instant::now();
    let outcome: Result<Vec<(usize, Option<String>)>> = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for requests in per_client {
            let chain = chain.clone();
            tasks.spawn(async move {
                let mut refused = 0usize;
                let mut first = None;
                for events in requests {
                    let results =
                        chain.admit(events, now_ms()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                    for r in results {
                        if !r.is_accepted() {
                            refused += 1;
                            first.get_or_insert_with(|| format!("{r:?}"));
                        }
                    }
                }
                Ok::<_, anyhow::Error>((refused, first))
            });
        }
        let mut all = Vec::new();
        while let Some(done) = tasks.join_next().await {
            all.push(done.context("an in-process caller panicked")??);
        }
        Ok(all)
    });
    let secs = started.elapsed().as_secs_f64();
    let cpu = load::process_cpu(std::process::id())?.saturating_sub(cpu_before);
    drop(chain);
    drop(runtime);
    let _ = thread.join();
    let outcome = outcome?;
    let refused: usize = outcome.iter().map(|o| o.0).sum();
    let first = outcome.into_iter().find_map(|o| o.1);
    Ok(Ingress {
        rate: (total - refused) as f64 / secs,
        refused,
        first,
        node_cpu_us: per_event_us(cpu, total),
        client_cpu_us: None,
    })
}

fn over_http(
    node: &DevnetNode,
    pid: u32,
    trades: &[Vec<SignedEvent>],
    clients: usize,
    per_request: usize,
) -> Result<Ingress> {
    let addr = node.api;
    let per_connection: Vec<Vec<load::Call>> = (0..clients)
        .map(|c| {
            requests_of(trades, clients, c, per_request)
                .into_iter()
                .map(|events| {
                    let body = if per_request == 1 {
                        events[0].to_envelope_json()
                    } else {
                        let parts: Vec<String> =
                            events.iter().map(SignedEvent::to_envelope_json).collect();
                        format!("[{}]", parts.join(","))
                    };
                    load::Call { path: "/v1/events".into(), body: Some(body.into()) }
                })
                .collect()
        })
        .collect();
    let total: usize = trades.iter().map(Vec::len).sum();
    let node_before = load::process_cpu(pid)?;
    let run = load::run(addr, per_connection, refused_of)?;
    let node_cpu = load::process_cpu(pid)?.saturating_sub(node_before);
    let mut refused = 0;
    let mut first = None;
    for (status, _, (n, text)) in run.seen.into_iter().flatten() {
        if n > 0 {
            refused += n;
            first.get_or_insert_with(|| format!("HTTP {status}: {text}"));
        }
    }
    Ok(Ingress {
        rate: total.saturating_sub(refused) as f64 / run.wall.as_secs_f64(),
        refused,
        first,
        node_cpu_us: per_event_us(node_cpu, total),
        client_cpu_us: Some(per_event_us(run.client_cpu, total)),
    })
}

/// Events an answer to `POST /v1/events` did not accept, and the start of the answer if any.
fn refused_of(status: u16, body: &[u8]) -> (usize, String) {
    #[derive(serde::Deserialize)]
    struct Answer {
        results: Vec<Result>,
    }
    #[derive(serde::Deserialize)]
    struct Result {
        status: String,
    }
    let refused = match serde_json::from_slice::<Answer>(body) {
        Ok(a) if !a.results.is_empty() => {
            a.results.iter().filter(|r| r.status != "accepted").count()
        }
        _ => 1,
    };
    let text = if refused > 0 {
        String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
    } else {
        String::new()
    };
    debug_assert!(status != 0);
    (refused, text)
}

fn per_event_us(cpu: Duration, events: usize) -> f64 {
    cpu.as_secs_f64() * 1e6 / events.max(1) as f64
}

fn get_all(addr: std::net::SocketAddr, paths: &[String], clients: usize) -> Result<Latency> {
    let per_connection: Vec<Vec<load::Call>> = (0..clients)
        .map(|c| {
            paths
                .iter()
                .skip(c)
                .step_by(clients)
                .map(|p| load::Call { path: p.clone(), body: None })
                .collect()
        })
        .collect();
    let run = load::run(addr, per_connection, |status, body| {
        (status != 200).then(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned())
    })?;
    let mut samples = Vec::with_capacity(paths.len());
    for (status, took, problem) in run.seen.into_iter().flatten() {
        if let Some(text) = problem {
            bail!("a query failed: {status} {text}");
        }
        samples.push(took);
    }
    Ok(latency(samples, run.wall))
}

/// The blocking client of the bench's status polls.
fn status_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// Waits until `node` answers its status.
fn wait_up(agent: &ureq::Agent, node: &DevnetNode, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while devnet::status(agent, node).is_err() {
        if Instant::now() > deadline {
            bail!(
                "node {} did not answer within {}s; see {}",
                node.name,
                within.as_secs(),
                node.config.with_file_name("node.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
