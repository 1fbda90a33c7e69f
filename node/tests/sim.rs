//! The deterministic simulator in CI: every scenario that is claimed to work, over several
//! seeds, and the negative control that must be caught. `tradeloop sim --seeds N` runs more.

use tradeloop_node::sim::{run, SimConfig};

/// Every scenario of the simulator.
const PASSING: &[&str] =
    &["clean", "lossy", "isolate-one", "split-2-2", "rotating", "crash-restart"];

fn seeds() -> u64 {
    std::env::var("TRADELOOP_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(6)
}

#[test]
fn four_validators_agree_and_stay_live_in_every_claimed_scenario() {
    for scenario in PASSING {
        for seed in 1..=seeds() {
            let config = SimConfig::scenario(scenario, 4, seed).unwrap();
            let report = run(&config).unwrap_or_else(|e| panic!("{scenario} seed {seed}: {e}"));
            assert!(
                report.violation.is_none(),
                "{scenario} seed {seed}: {:?} (replay: tradeloop sim --validators 4 --scenario {scenario} --seed {seed})",
                report.violation
            );
            assert!(report.min_height >= config.target_height);
        }
    }
}

#[test]
fn fewer_validators_work_too() {
    for n in [1, 2, 3] {
        let config = SimConfig::scenario("lossy", n, 7).unwrap();
        let report = run(&config).unwrap();
        assert!(report.violation.is_none(), "n = {n}: {:?}", report.violation);
    }
}

#[test]
fn a_partition_without_quorum_commits_nothing_until_it_heals() {
    let config = SimConfig::scenario("split-2-2", 4, 3).unwrap();
    let report = run(&config).unwrap();
    assert!(report.violation.is_none(), "{:?}", report.violation);
    // The split lasts until 30 s; 30 heights cannot all be decided before it heals.
    assert!(
        report.time_ms > 30_000,
        "decided everything by {} ms despite a 30 s split",
        report.time_ms
    );
}

/// Negative control: validators that lose their sign-state on restart must be caught signing
/// twice by the equivocation checker in at least one of the seeds.
#[test]
fn the_lost_wal_control_is_caught_as_equivocation() {
    let caught = (1..=20).find_map(|seed| {
        let report = run(&SimConfig::control("lost-wal", 4, seed).unwrap()).unwrap();
        report.violation.filter(|(what, _)| what == "equivocation")
    });
    assert!(caught.is_some(), "the equivocation checker missed every lost-sign-state restart");
}
