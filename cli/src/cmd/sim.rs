//! `tradeloop sim`: the deterministic consensus simulator.

use std::process::ExitCode;

use crate::output::Out;
use anyhow::{bail, Result};
use clap::Args;
use rayon::prelude::*;

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Validators (1 to 7 with the sample cast).
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Seeds per scenario (1..=N); at least 1: a run that checks nothing is not a pass.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub seeds: u64,
    /// Run only this seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Heights every validator must decide in each run, instead of the scenario's own target
    /// (5 to 120); with it, runs are longer and the liveness deadline stays 600 s of virtual
    /// time. Scenarios only.
    #[arg(long, conflicts_with = "control", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub heights: Option<u64>,
    /// Run only this scenario (clean, lossy, isolate-one, split-2-2, rotating, crash-restart,
    /// offline-many-heights, byzantine-equivocate, byzantine-invalid-blocks,
    /// byzantine-future-rounds, pause-one, clock-skew, disk-faults).
    #[arg(long, conflicts_with = "control")]
    pub scenario: Option<String>,
    /// Run a negative control instead (lost-wal, byzantine-third, majority-quorum,
    /// skip-mempool-recheck, vote-unchecked-proposals): exits 1
    /// naming the violation it caught, as it must; 2 if the checkers missed it.
    #[arg(long)]
    pub control: Option<String>,
}

/// Runs the named scenario or control (`make` builds its config) for every seed, in parallel:
/// seeds are independent and each run is deterministic. Results are in seed order.
fn run_seeds(
    seeds: &[u64],
    make: impl Fn(u64) -> Option<tradeloop_node::sim::SimConfig> + Sync,
) -> Vec<Result<tradeloop_node::sim::SimReport, String>> {
    seeds
        .par_iter()
        .map(|&seed| {
            make(seed).ok_or_else(|| "unknown scenario".to_string()).and_then(|config| {
                tradeloop_node::sim::run(&config)
                    .map_err(|e| format!("{:#}", anyhow::Error::from(e)))
            })
        })
        .collect()
}

fn sim_control(args: &SimArgs, control: &str, seeds: &[u64]) -> Result<ExitCode> {
    use tradeloop_node::sim::{SimConfig, CONTROLS};
    if !CONTROLS.contains(&control) {
        bail!("unknown control {control}; the controls are {}", CONTROLS.join(", "));
    }
    let mut caught = 0;
    let reports = run_seeds(seeds, |seed| SimConfig::control(control, args.validators, seed));
    for (&seed, report) in seeds.iter().zip(reports) {
        let report = report.map_err(anyhow::Error::msg)?;
        if let Some((what, detail)) = report.violation {
            if what != "liveness" {
                caught += 1;
                if caught == 1 {
                    writeln!(Out, "control {control} seed {seed}: caught {what}: {detail}")?;
                    writeln!(
                        Out,
                        "  replay: tradeloop sim --validators {} --control {control} --seed {seed}",
                        args.validators
                    )?;
                }
            }
        }
    }
    if caught == 0 {
        writeln!(Out, "control {control} passed clean over {} seeds: the checkers missed it (a bug in the checkers)", seeds.len())?;
        // Neither 0 (nothing succeeded) nor 1 (the control was caught, as it must be).
        return Ok(ExitCode::from(2));
    }
    writeln!(Out, "control {control}: violations caught in {caught} of {} seeds", seeds.len())?;
    Ok(ExitCode::FAILURE)
}

pub fn sim(args: SimArgs) -> Result<ExitCode> {
    use tradeloop_node::sim::{SimConfig, SCENARIOS};
    if !(1..=7).contains(&args.validators) {
        bail!("--validators must be 1 to 7 (the sample cast hosts seven validators)");
    }
    let seeds: Vec<u64> = match args.seed {
        Some(s) => vec![s],
        None => (1..=args.seeds).collect(),
    };
    if let Some(control) = &args.control {
        return sim_control(&args, control, &seeds);
    }
    let scenarios: Vec<&str> = match &args.scenario {
        Some(s) if SCENARIOS.contains(&s.as_str()) => vec![s.as_str()],
        Some(s) => bail!("unknown scenario {s}; the scenarios are {}", SCENARIOS.join(", ")),
        None => SCENARIOS.to_vec(),
    };
    let heights = args.heights.map(|h| format!(" --heights {h}")).unwrap_or_default();
    let mut failures = 0;
    for scenario in scenarios {
        let (mut ok, mut total_ms, mut evidence, mut disk_stops) = (0u64, 0u64, 0usize, 0u64);
        let reports = run_seeds(&seeds, |seed| {
            SimConfig::scenario(scenario, args.validators, seed).map(|config| SimConfig {
                target_height: args.heights.unwrap_or(config.target_height),
                ..config
            })
        });
        for (&seed, result) in seeds.iter().zip(reports) {
            if let Ok(report) = &result {
                evidence += report.evidence.len();
                disk_stops += report.disk_stops;
            }
            match result {
                Ok(report) if report.violation.is_none() => {
                    ok += 1;
                    total_ms += report.time_ms;
                }
                Ok(report) => {
                    failures += 1;
                    let (what, detail) = report.violation.unwrap_or_default();
                    writeln!(Out, "FAIL {scenario} seed {seed}: {what}: {detail}")?;
                    writeln!(Out, "  replay: tradeloop sim --validators {} --scenario {scenario} --seed {seed}{heights}", args.validators)?;
                }
                Err(e) => {
                    failures += 1;
                    writeln!(Out, "FAIL {scenario} seed {seed}: {e}")?;
                    writeln!(Out, "  replay: tradeloop sim --validators {} --scenario {scenario} --seed {seed}{heights}", args.validators)?;
                }
            }
        }
        let mean = total_ms.checked_div(ok).unwrap_or(0);
        writeln!(Out,
            "{scenario:<24} {ok}/{} seeds passed (n = {}; mean virtual time to target {mean} ms; equivocators proven by honest validators' evidence: {evidence}; validators stopped by their disk: {disk_stops})",
            seeds.len(),
            args.validators
        )?;
    }
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
