//! The deterministic simulator: agreement, validity and liveness under loss, duplication and
//! delay before GST.

use tradeloop_node::sim::{run, SimConfig};

#[test]
fn four_validators_agree_and_stay_live_under_lossy_networks() {
    for seed in 1..=8 {
        let config = SimConfig::lossy(4, seed);
        let report = run(&config).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(
            report.violation.is_none(),
            "seed {seed}: {:?} (replay: tradeloop sim --seed {seed})",
            report.violation
        );
        assert_eq!(report.min_height, config.target_height);
    }
}

#[test]
fn a_clean_network_decides_quickly() {
    let mut config = SimConfig::lossy(4, 42);
    config.gst_ms = 0;
    let report = run(&config).unwrap();
    assert!(report.violation.is_none(), "{:?}", report.violation);
    assert!(report.time_ms < 60_000, "{} ms", report.time_ms);
}
