//! Member nodes on libp2p (issue 10): real `tradeloop node` processes on loopback.
//!
//! After every test: every acknowledged event (its `?wait=commit` answered committed) is in
//! every node's chain exactly once, all chains are identical, and `tradeloop verify` passes on
//! each node's data dir.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use tradeloop_crypto::Hash;
use tradeloop_ledger::Ledger;
use tradeloop_tests::cluster::{committed_ids, Cluster};

/// The checks every cluster test ends with; the nodes must be stopped.
fn assert_chains_agree(cluster: &Cluster, acknowledged: &[(Hash, u64)]) {
    let mut tips = BTreeMap::new();
    for i in 0..cluster.nodes.len() {
        let report = cluster.verify(i).unwrap_or_else(|e| panic!("{e}"));
        assert!(report.contains("OK"), "{report}");
        let ledger = Ledger::open_read_only(&cluster.data_dir(i), cluster.genesis.clone()).unwrap();
        for (id, height) in acknowledged {
            let record = ledger.event(id).unwrap().unwrap_or_else(|| {
                panic!("{}: acknowledged event {id} is missing", cluster.nodes[i].name)
            });
            assert_eq!(record.height, *height, "{}: event {id}", cluster.nodes[i].name);
        }
        tips.insert(cluster.nodes[i].name.clone(), ledger.tip().clone());
    }
    // Identical chains: the shortest is a prefix of every other (same hash at its height).
    let lowest = tips.values().map(|t| t.height).min().unwrap();
    let mut at_lowest = Vec::new();
    for i in 0..cluster.nodes.len() {
        let ledger = Ledger::open_read_only(&cluster.data_dir(i), cluster.genesis.clone()).unwrap();
        at_lowest.push(ledger.block(lowest).unwrap().block.header.hash());
    }
    assert!(
        at_lowest.windows(2).all(|w| w[0] == w[1]),
        "chains differ at height {lowest}: {tips:?}"
    );
}

#[test]
fn four_validators_and_a_member_node_commit_events_submitted_to_any_node() {
    let mut cluster = Cluster::start(4, 1).unwrap();
    assert_eq!(cluster.nodes.len(), 5);
    assert!(!cluster.nodes[4].validator);
    let events = cluster.trade_events(1);
    let mut acknowledged = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    for event in &events {
        let author = event_author(event);
        let node = cluster.node_for(&author);
        used.insert(node);
        let answer = cluster.submit_wait(node, std::slice::from_ref(event)).unwrap();
        let committed = committed_ids(&answer);
        assert_eq!(
            committed.len(),
            1,
            "{author} via {}: {answer}\n{}",
            cluster.nodes[node].name,
            cluster.log(node)
        );
        acknowledged.extend(committed);
    }
    assert!(used.contains(&4), "the member node took its party's events");
    assert!(used.len() >= 3, "events went to several nodes: {used:?}");
    let top = acknowledged.iter().map(|(_, h)| *h).max().unwrap();
    cluster.wait_height(top, Duration::from_secs(30)).unwrap();
    let statuses = cluster.stop_all().unwrap();
    assert!(statuses.iter().all(|s| s.success()), "every node exits 0 when stopped: {statuses:?}");
    assert_chains_agree(&cluster, &acknowledged);
}

fn event_author(event: &tradeloop_ledger::SignedEvent) -> String {
    let body: serde_json::Value = serde_json::from_slice(&event.body).unwrap();
    body["author"].as_str().unwrap().to_string()
}
