//! The deterministic simulator in CI: every scenario over 64 seeds with four validators (13
//! scenarios, 832 runs of 5 to 120 heights each), every scenario over 4 seeds with seven, and
//! every negative control, which must be caught. `TRADELOOP_SIM_SEEDS=N` or
//! `tradeloop sim --seeds N [--heights H]` runs more; `scripts/sim-long` is the long run
//! (1,000 seeds x 200 heights), too long for CI (docs/consensus.md).

use rayon::prelude::*;
use tradeloop_node::sim::{
    run, DiskFault, DiskFaultKind, SimConfig, SimError, SimReport, CONTROLS, SCENARIOS,
};

/// Seeds per scenario with n = 4: 13 scenarios x 64 = 832 runs.
fn seeds_n4() -> u64 {
    std::env::var("TRADELOOP_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(64)
}

fn scenario(name: &str, n: usize, seed: u64) -> SimConfig {
    SimConfig::scenario(name, n, seed).unwrap_or_else(|| panic!("no scenario {name}"))
}

/// Runs `scenario` for `seeds` seeds with `n` validators, in parallel; panics with the replay
/// command of the first failing seed.
fn all_pass(name: &str, n: usize, seeds: std::ops::RangeInclusive<u64>) -> Vec<SimReport> {
    let results: Vec<(u64, Result<SimReport, SimError>)> =
        seeds.into_par_iter().map(|seed| (seed, run(&scenario(name, n, seed)))).collect();
    results
        .into_iter()
        .map(|(seed, result)| {
            let replay = format!("tradeloop sim --validators {n} --scenario {name} --seed {seed}");
            let report = result.unwrap_or_else(|e| panic!("{name} seed {seed}: {e} ({replay})"));
            assert!(
                report.violation.is_none(),
                "{name} seed {seed}: {:?} ({replay})",
                report.violation
            );
            let target = scenario(name, n, seed).target_height;
            assert!(report.min_height >= target, "{name} seed {seed}: below target ({replay})");
            // One trade per target height; each is in every honest chain.
            assert_eq!(report.trades_settled as u64, target, "{name} seed {seed} ({replay})");
            report
        })
        .collect()
}

#[test]
fn four_validators_64_seeds_of_every_scenario() {
    for scenario in SCENARIOS {
        all_pass(scenario, 4, 1..=seeds_n4());
    }
}

#[test]
fn seven_validators_every_scenario() {
    for scenario in SCENARIOS {
        all_pass(scenario, 7, 1..=4);
    }
}

#[test]
fn equivocating_byzantine_validators_are_proven_by_honest_evidence() {
    // Each run has one equivocator (f = 1 of 4); honest validators that receive both of its
    // versions of a vote record verified evidence against it, and only against it.
    let reports = all_pass("byzantine-equivocate", 4, 1..=8);
    for report in &reports {
        for (accused, by) in &report.evidence {
            assert_eq!(*accused, 3, "evidence against an honest validator: {:?}", report.evidence);
            assert!(!by.contains(&3));
        }
    }
    assert!(reports.iter().any(|r| !r.evidence.is_empty()), "no run recorded any evidence");
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

/// The violations a control's seeds were caught with (seeds 1..=20).
fn caught(control: &str, n: usize) -> Vec<(String, String)> {
    (1..=20u64)
        .into_par_iter()
        .filter_map(|seed| {
            let config = SimConfig::control(control, n, seed)
                .unwrap_or_else(|| panic!("no control {control}"));
            run(&config).unwrap_or_else(|e| panic!("{control} seed {seed}: {e}")).violation
        })
        .filter(|(what, _)| what != "liveness")
        .collect()
}

#[test]
fn every_control_is_caught() {
    for control in CONTROLS {
        assert!(!caught(control, 4).is_empty(), "control {control} passed clean with n = 4");
    }
}

/// Losing the sign-state on restart makes a validator sign twice; the checker catches it and an
/// honest peer holds verified evidence of it.
#[test]
fn the_lost_wal_control_is_caught_with_honest_evidence() {
    let found = caught("lost-wal", 4);
    assert!(found.iter().any(|(what, _)| what == "equivocation"));
    assert!(
        found.iter().any(|(_, detail)| detail.contains("evidence recorded by honest validators")),
        "no honest validator recorded evidence: {found:?}"
    );
}

/// f + 1 coordinated equivocators split the honest validators onto two blocks.
#[test]
fn a_byzantine_third_forks_and_the_agreement_checker_says_so() {
    for n in [4, 7] {
        let found = caught("byzantine-third", n);
        assert!(found.iter().any(|(what, _)| what == "agreement"), "n = {n}: {found:?}");
    }
}

/// A quorum of a simple majority: with n = 4 it equals 2/3 in votes and the f + 1 equivocators
/// fork the chain (agreement); with n = 7 the decisions carry 4 of 7 signatures, which the
/// ledger's certificate check refuses (validity).
#[test]
fn a_majority_quorum_is_caught() {
    assert!(caught("majority-quorum", 4).iter().any(|(what, _)| what == "agreement"));
    assert!(caught("majority-quorum", 7).iter().any(|(what, _)| what == "validity"));
}

/// A validator down for 60 s misses many heights (about 40 at the node's pace: an empty block
/// a second once the trades are in, and the propose timeout at each height the downed
/// validator would have proposed) and catches up by sync, committing what it missed only after
/// the ledger verified each certificate and re-executed each block.
#[test]
fn a_validator_offline_for_many_heights_catches_up_by_sync() {
    for report in all_pass("offline-many-heights", 4, 1..=4) {
        assert!(report.synced_blocks >= 30, "only {} blocks synced", report.synced_blocks);
    }
}

/// A run replays exactly from its seed: the same messages delivered, at the same virtual times.
#[test]
fn a_run_replays_exactly_from_its_seed() {
    for name in ["lossy", "crash-restart", "byzantine-equivocate"] {
        let config = scenario(name, 4, 9);
        let (a, b) = (run(&config).unwrap(), run(&config).unwrap());
        assert_eq!(
            (a.time_ms, a.delivered, a.min_height, a.synced_blocks, a.evidence),
            (b.time_ms, b.delivered, b.min_height, b.synced_blocks, b.evidence),
            "{name}"
        );
    }
}

/// The chain worker's mempool, not the consensus core, is broken: it removes committed events
/// but does not re-check the others. A rival order that lost stays pending; the mempool check
/// after each commit finds it.
#[test]
fn skipping_the_mempools_recheck_is_caught() {
    let found = caught("skip-mempool-recheck", 4);
    assert!(found.iter().any(|(what, _)| what == "mempool"), "{found:?}");
}

/// The consensus driver, not the core, is broken: it votes for proposals without the chain
/// worker's verdict. The invalid blocks of a byzantine proposer are then decided, and the
/// ledger refuses to commit them.
#[test]
fn voting_for_unchecked_proposals_is_caught() {
    for n in [4, 7] {
        let found = caught("vote-unchecked-proposals", n);
        assert!(found.iter().any(|(what, _)| what == "validity"), "n = {n}: {found:?}");
    }
}

/// Crashes that tear a block write: each restart cuts the torn frame off and keeps every block
/// it had committed (durability), then catches up.
#[test]
fn torn_block_writes_are_cut_off_at_restart() {
    let mut torn = 0;
    for seed in 1..=8 {
        let config = scenario("crash-restart", 4, seed);
        torn += config.crashes.iter().filter(|c| c.torn_tail).count();
        let report = run(&config).unwrap();
        assert!(report.violation.is_none(), "seed {seed}: {:?}", report.violation);
    }
    assert!(torn > 0, "no crash tore a write");
}

/// Each kind of index fault at one validator stops it, as the node stops for its disk, and its
/// restart recovers: nothing it committed is lost (a write lost with the power is rebuilt from
/// the block log), and every trade settles everywhere.
#[test]
fn a_disk_fault_stops_a_validator_and_its_restart_recovers() {
    let kinds = [DiskFaultKind::WriteFails, DiskFaultKind::FlushFails, DiskFaultKind::WriteLost];
    for kind in kinds {
        for seed in 1..=6u64 {
            let node = usize::try_from(seed % 4).unwrap();
            let fault = DiskFault { node, boot: 0, write: 2 + seed, kind };
            let config = SimConfig { disk_faults: vec![fault], ..scenario("disk-faults", 4, seed) };
            let report = run(&config).unwrap();
            assert!(report.violation.is_none(), "{kind:?} seed {seed}: {:?}", report.violation);
            assert_eq!(report.disk_stops, 1, "{kind:?} seed {seed}: the fault did not stop it");
            assert_eq!(report.trades_settled as u64, config.target_height);
        }
    }
}

/// Every validator's disk fails at the same height: nothing more is decided until they start
/// again, and then the chain goes on with nothing lost.
#[test]
fn every_disk_failing_at_once_halts_the_chain_until_they_recover() {
    for seed in 1..=4 {
        let disk_faults = (0..4)
            .map(|node| DiskFault { node, boot: 0, write: 5, kind: DiskFaultKind::WriteFails })
            .collect();
        let config = SimConfig { disk_faults, ..scenario("disk-faults", 4, seed) };
        let report = run(&config).unwrap();
        assert!(report.violation.is_none(), "seed {seed}: {:?}", report.violation);
        assert_eq!(report.disk_stops, 4, "seed {seed}");
        assert!(report.min_height >= config.target_height);
    }
}

/// Clocks at most the proposal window apart cost nothing over 200 heights (seed 41 of the long
/// run, whose clocks were once drawn further apart, included).
#[test]
fn skewed_clocks_within_the_window_keep_200_heights_live() {
    for seed in [41, 3] {
        let config = SimConfig { target_height: 200, ..scenario("clock-skew", 4, seed) };
        let report = run(&config).unwrap();
        assert!(report.violation.is_none(), "seed {seed}: {:?}", report.violation);
    }
}

/// Clocks further apart than the window: the two validators whose clocks run ahead have their
/// blocks refused by the two behind (more than 2 s in their future), so their heights take
/// another round; nothing is unsafe and the chain goes on.
#[test]
fn clocks_further_apart_than_the_window_cost_rounds_not_safety() {
    let skews_ms = vec![1_400, 1_300, -900, -1_000];
    let config = SimConfig { target_height: 60, skews_ms, ..scenario("clock-skew", 4, 41) };
    let report = run(&config).unwrap();
    assert!(report.violation.is_none(), "{:?}", report.violation);
    let even = SimConfig { skews_ms: vec![0; 4], ..config.clone() };
    let baseline = run(&even).unwrap();
    assert!(baseline.violation.is_none(), "{:?}", baseline.violation);
    assert!(
        report.time_ms > baseline.time_ms,
        "skewed {} ms, even {} ms: refused blocks should cost rounds",
        report.time_ms,
        baseline.time_ms
    );
}

/// Every successful run exports the longest honest chain and verifies it offline from the
/// genesis alone (Malachite's certificates in the ledger's format). A tampered certificate in
/// such a chain is caught at its height.
#[test]
fn a_simulated_chain_verifies_offline_and_a_tampered_certificate_does_not() {
    use tradeloop_ledger::evidence::audit::verify_export;
    use tradeloop_ledger::export::binary::{write_to, ExportReader};
    use tradeloop_ledger::export::ExportItem;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.tlx");
    let config = SimConfig { export_to: Some(path.clone()), ..scenario("lossy", 4, 5) };
    let report = run(&config).unwrap();
    assert!(report.violation.is_none(), "{:?}", report.violation);
    let cast = tradeloop_ledger::sample::Cast::deterministic(4, 1_780_000_000_000 - 1000).unwrap();
    let verified = verify_export(&path, &cast.genesis, &mut |_, _| {}).unwrap();
    assert!(verified.blocks >= 5);
    // Read the blocks back, swap one signature of block 3's certificate for another signer's.
    let mut reader = ExportReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let mut blocks = Vec::new();
    while let ExportItem::Block(b) = reader.next_item().unwrap() {
        blocks.push(*b);
    }
    let sigs = &mut blocks[2].certificate.signatures;
    assert!(sigs.len() >= 3, "a 4-validator certificate has at least 3 signers");
    sigs[0].signature = sigs[1].signature;
    let tampered = dir.path().join("tampered.tlx");
    let mut out = Vec::new();
    write_to(&mut out, &cast.genesis, blocks.into_iter().map(Ok)).unwrap();
    std::fs::write(&tampered, out).unwrap();
    let failure = verify_export(&tampered, &cast.genesis, &mut |_, _| {}).unwrap_err();
    assert_eq!(failure.height, 3, "{failure}");
    assert!(failure.reason.contains("certificate"), "{failure}");
}
