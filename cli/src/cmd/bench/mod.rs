//! `tradeloop bench`: throughput figures beside the machine's own limits, measured in the same
//! run.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Subcommand;
use rayon::prelude::*;
use tradeloop_crypto::SigningKey;
use tradeloop_ledger::sample::{trade_events, trade_steps, Cast};
use tradeloop_ledger::{Ledger, SignedEvent};

use crate::cmd::now_ms;
use crate::output::{Diag, Out};

mod api;
mod cluster;
mod load;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Audit throughput of `verify` (export and data dir) against raw ed25519 verification.
    Verify {
        /// Events in the chain (at least 1).
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
        events: u64,
        /// Events per block, 1 to the sample genesis's consensus.max_block_events.
        #[arg(long, default_value_t = 1000)]
        block_events: usize,
        /// Timed runs of each verify (every run is printed, then the median and the best; the
        /// raw rate it is compared with is a best of five).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
        runs: u32,
    },
    /// Durable append throughput of a one-validator chain (fsync per block).
    Append {
        /// Events to append (at least 1).
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
        events: u64,
        /// Events per block, 1 to the sample genesis's consensus.max_block_events.
        #[arg(long, default_value_t = 1000)]
        block_events: usize,
    },
    /// Committed events/s and submit-to-commit latency of a devnet of node processes on
    /// loopback (or, with `--events 0`, empty heights per second), beside the append rate.
    Cluster(cluster::ClusterArgs),
    /// Events/s accepted over the HTTP API (single events and batches) beside the node's
    /// in-process admission, and query latency on a large chain.
    Api(api::ApiArgs),
}

/// Raw `verify_strict` rate of one core: verifications per second of a 300-byte message with
/// an already parsed key, the best of five 400 ms runs (the least disturbed by other work).
fn raw_verify_rate() -> f64 {
    let key = SigningKey::from_seed_label("bench");
    let msg = vec![7u8; 300];
    let sig = key.sign(&msg);
    let pk = key.public_key();
    let mut best = 0.0f64;
    for _ in 0..5 {
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < Duration::from_millis(400) {
            for _ in 0..50 {
                if pk.verify(&msg, &sig).is_err() {
                    return 0.0;
                }
            }
            n += 50;
        }
        best = best.max(n as f64 / started.elapsed().as_secs_f64());
    }
    best
}

/// Raw `verify_strict` rate of all cores together: one verifying thread per core, each on its own
/// key and message, the best of three 500 ms runs. This is what the machine can really do at
/// once (shared caches, frequency scaling, SMT siblings all show up here).
fn raw_parallel_verify_rate(threads: usize) -> f64 {
    let mut best = 0.0f64;
    for _ in 0..3 {
        let started = Instant::now();
        let total: u64 = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || {
                        let key = SigningKey::from_seed_label(&format!("bench-{t}"));
                        let msg = t.to_be_bytes().repeat(38);
                        let sig = key.sign(&msg);
                        let pk = key.public_key();
                        let mut n = 0u64;
                        while started.elapsed() < Duration::from_millis(500) {
                            for _ in 0..50 {
                                if pk.verify(&msg, &sig).is_err() {
                                    return 0;
                                }
                            }
                            n += 50;
                        }
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        best = best.max(total as f64 / started.elapsed().as_secs_f64());
    }
    best
}

/// Where a bench writes its devnet: `keep`, or `net/` in a temporary directory that lives as
/// long as the returned guard.
fn devnet_dir(
    keep: Option<&std::path::Path>,
) -> Result<(Option<tempfile::TempDir>, std::path::PathBuf)> {
    match keep {
        Some(d) => Ok((None, d.to_path_buf())),
        None => {
            let temp = tempfile::tempdir()?;
            let dir = temp.path().join("net");
            Ok((Some(temp), dir))
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Signs enough sample trades for `count` events, in parallel.
fn sample_events(cast: &Cast, count: usize) -> Vec<SignedEvent> {
    let per_trade = trade_steps(0).len();
    let trades = count.div_ceil(per_trade) as u64;
    let time = now_ms();
    let mut events: Vec<SignedEvent> =
        (1..=trades).into_par_iter().flat_map_iter(|n| trade_events(cast, n, time)).collect();
    events.truncate(count);
    events
}

/// The sample chain's genesis and `block_events` checked against its maximum: a block size of 0
/// or above the maximum would not measure what it says.
fn sample_cast(events: u64, block_events: usize) -> Result<(Cast, usize)> {
    let cast = Cast::deterministic(1, now_ms() - 1000)?;
    let max = cast.genesis.doc.consensus.max_block_events as usize;
    if !(1..=max).contains(&block_events) {
        bail!("--block-events {block_events} is outside 1 to {max} (the sample genesis's consensus.max_block_events); give a value in that range");
    }
    let events = usize::try_from(events)
        .map_err(|_| anyhow::anyhow!("--events {events} does not fit this machine's memory"))?;
    Ok((cast, events))
}

fn fill_chain(
    ledger: &mut Ledger,
    cast: &Cast,
    events: &[SignedEvent],
    block_events: usize,
) -> Result<Duration> {
    let started = Instant::now();
    let mut first_rejection = None;
    ledger.append_local_stream(
        events.chunks(block_events).map(<[SignedEvent]>::to_vec),
        &cast.validator_keys[0],
        &now_ms,
        &mut |_, _, rejected| {
            if first_rejection.is_none() {
                first_rejection = rejected.into_iter().next();
            }
        },
    )?;
    if let Some((i, r)) = first_rejection {
        bail!("sample event {i} rejected: {r}");
    }
    Ok(started.elapsed())
}

/// Signed sample events for measuring the durable append rate of a one-validator chain more
/// than once in one run (each measurement on a fresh ledger; the events are signed once).
struct AppendBench {
    cast: Cast,
    signed: Vec<SignedEvent>,
    block_events: usize,
}

/// One append measurement: events/s, and this process's CPU time per event (µs, when `/proc`
/// tells it).
#[derive(Clone, Copy, Debug)]
struct AppendRate {
    rate: f64,
    cpu_us: Option<f64>,
}

impl AppendBench {
    fn new(events: u64, block_events: usize) -> Result<AppendBench> {
        let (cast, events) = sample_cast(events, block_events)?;
        let signed = sample_events(&cast, events);
        Ok(AppendBench { cast, signed, block_events })
    }

    /// Appends every event to a new ledger in blocks of `block_events` (fsync per block).
    fn measure(&self) -> Result<AppendRate> {
        let dir = tempfile::tempdir()?;
        let mut ledger = Ledger::open(&dir.path().join("data"), self.cast.genesis.clone())?;
        let cpu0 = cpu_seconds("self");
        let took = fill_chain(&mut ledger, &self.cast, &self.signed, self.block_events)?;
        let cpu_us = match (cpu0, cpu_seconds("self")) {
            (Some(a), Some(b)) => Some((b - a) * 1e6 / self.signed.len() as f64),
            _ => None,
        };
        Ok(AppendRate { rate: self.signed.len() as f64 / took.as_secs_f64(), cpu_us })
    }
}

/// Clock ticks a second of `/proc/PID/stat`'s times (`USER_HZ`, 100 on every Linux ABI).
const USER_HZ: f64 = 100.0;

/// The machine's CPU ticks so far, all of them and those the hypervisor gave to other guests
/// (steal), from the first line of `/proc/stat`
/// (`cpu user nice system idle iowait irq softirq steal ...`).
#[derive(Clone, Copy, Debug)]
struct HostTicks {
    total: u64,
    steal: u64,
}

impl HostTicks {
    fn now() -> Option<HostTicks> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().next()?;
        let ticks: Vec<u64> =
            line.split_whitespace().skip(1).take(8).filter_map(|t| t.parse().ok()).collect();
        (ticks.len() == 8).then(|| HostTicks { total: ticks.iter().sum(), steal: ticks[7] })
    }

    /// The share (0-1) of the machine's CPU time stolen since `before`.
    fn steal_since(self, before: HostTicks) -> Option<f64> {
        let total = self.total.checked_sub(before.total)?;
        let steal = self.steal.checked_sub(before.steal)?;
        (total > 0).then(|| steal as f64 / total as f64)
    }
}

/// User + system CPU seconds of a process (`pid` or "self") so far, from `/proc`.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

pub fn run(command: BenchCommand) -> Result<ExitCode> {
    let cores = cores();
    match command {
        BenchCommand::Cluster(args) => cluster::run(args)?,
        BenchCommand::Api(args) => api::run(args)?,
        BenchCommand::Append { events, block_events } => {
            let (cast, events) = sample_cast(events, block_events)?;
            let dir = tempfile::tempdir()?;
            writeln!(Diag, "signing {events} sample events...");
            let signed = sample_events(&cast, events);
            let mut ledger = Ledger::open(&dir.path().join("data"), cast.genesis.clone())?;
            writeln!(Diag, "appending in blocks of {block_events} (fsync per block)...");
            let took = fill_chain(&mut ledger, &cast, &signed, block_events)?;
            let rate = signed.len() as f64 / took.as_secs_f64();
            let raw = raw_verify_rate();
            writeln!(
                Out,
                "bench append: {} events in {} blocks of {block_events} in {:.2} s",
                signed.len(),
                ledger.tip().height,
                took.as_secs_f64()
            )?;
            writeln!(Out, "  durable append:         {rate:>10.0} events/s")?;
            writeln!(Out, "  raw verify_strict/core: {raw:>10.0} sig/s   cores: {cores}")?;
            writeln!(Out, "  append / (cores x raw): {:>10.2}", rate / (raw * cores as f64))?;
        }
        BenchCommand::Verify { events, block_events, runs } => {
            let (cast, events) = sample_cast(events, block_events)?;
            let dir = tempfile::tempdir()?;
            writeln!(Diag, "building a chain of {events} events...");
            let signed = sample_events(&cast, events);
            let mut ledger = Ledger::open(&dir.path().join("data"), cast.genesis.clone())?;
            fill_chain(&mut ledger, &cast, &signed, block_events)?;
            let export = dir.path().join("chain.tlx");
            tradeloop_ledger::export::binary::export(&ledger, &export)?;
            drop(ledger);
            let raw = raw_verify_rate();
            let limit = raw * cores as f64;
            writeln!(Out, "bench verify: {} events in blocks of {block_events}", signed.len())?;
            let all = raw_parallel_verify_rate(cores);
            writeln!(Out, "  raw verify_strict/core: {raw:>10.0} sig/s   cores: {cores}   limit (cores x raw): {limit:.0}/s")?;
            writeln!(Out, "  raw verify_strict, all {cores} cores at once: {all:.0} sig/s ({:.2} x the cores x raw limit)", all / limit)?;
            let started = Instant::now();
            let checked = tradeloop_ledger::execute::check_events(&cast.genesis, &signed);
            let secs = started.elapsed().as_secs_f64();
            if checked.iter().any(Result::is_err) {
                bail!("a sample event failed its checks");
            }
            writeln!(Out, "  stateless checks alone  {:>10.0} events/s ({secs:.2} s, parallel; signature, JSON, fields)", signed.len() as f64 / secs)?;
            for (what, d, e) in [
                ("export", None, Some(export.as_path())),
                ("data dir", Some(dir.path().join("data")), None),
            ] {
                // Each run is compared with the raw rate measured just before it: this shared
                // machine's speed drifts by 10-20% over a minute.
                let mut runs_seen = Vec::new();
                for run in 1..=runs {
                    let run_limit = raw_verify_rate() * cores as f64;
                    let started = Instant::now();
                    let report = crate::cmd::audit::run_verify(d.as_deref(), e, &cast.genesis)
                        .map_err(|f| anyhow::anyhow!("verify failed at {f}"))?;
                    let secs = started.elapsed().as_secs_f64();
                    let rate = report.events as f64 / secs;
                    let ratio = rate / run_limit;
                    writeln!(Out, "  verify {what:<9} run {run}  {rate:>10.0} events/s ({secs:.2} s)   limit just before: {run_limit:.0}/s   ratio: {ratio:.2}")?;
                    runs_seen.push((ratio, rate));
                }
                runs_seen.sort_by(|a, b| a.0.total_cmp(&b.0));
                let (median_ratio, median_rate) = runs_seen[runs_seen.len() / 2];
                let (low_ratio, _) = runs_seen[0];
                writeln!(Out, "  verify {what:<9} median run: {median_rate:.0} events/s, ratio {median_ratio:.2} (lowest ratio {low_ratio:.2})")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
