//! `tradeloop bench`: throughput figures beside the machine's own limits, measured in the same
//! run.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Subcommand;
use tradeloop_ledger::Ledger;

use crate::output::{Diag, Out};
use append::{fill_chain, raw_parallel_verify_rate, raw_verify_rate, sample_cast, sample_events};
use host::cores;

mod api;
mod append;
mod cluster;
mod host;
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
