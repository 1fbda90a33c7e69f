//! Faults a BFT network of 4 validators promises to ride through, on real `tradeloop node`
//! processes on loopback, under a steady load from one client per node (validators and the
//! member node alike): a paused node, isolated nodes, a 2+2 split, a ring, slow links.
//!
//! These are the short versions, for `cargo test`; `scripts/faults` runs the long ones with a
//! seed and prints the latency figures (docs/operations.md, "Faults").
//!
//! Every scenario ends with the checker: `verify` on every copy, every acknowledged event once
//! at its height everywhere, `compare` between every pair of copies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tradeloop_tests::cluster::{check_chains_agree, Cluster};
use tradeloop_tests::load::{Latencies, Load, Report};
use tradeloop_tests::proxy::LinkFault;

/// One scenario at a time: their latency bounds assume the machine runs one cluster.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The seed of the proxies' delays (`TRADELOOP_FAULT_SEED`), printed so a run can be repeated.
fn seed() -> u64 {
    let seed =
        std::env::var("TRADELOOP_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(28);
    eprintln!("seed {seed}");
    seed
}

/// The cluster harness's `timeout_propose` (`devnet init --timeout-propose-ms 1000`).
const TIMEOUT_PROPOSE: Duration = Duration::from_millis(1000);
/// How long each fault lasts in these short versions.
fn phase() -> Duration {
    Duration::from_secs(
        std::env::var("TRADELOOP_FAULT_PHASE_S").ok().and_then(|s| s.parse().ok()).unwrap_or(4),
    )
}
/// How long a healed node has to reach the others' height.
const CATCH_UP: Duration = Duration::from_secs(20);
/// How long commits have to resume after a split heals.
const RESUME: Duration = Duration::from_secs(30);

/// The bound every submission to a live node must meet while one node is faulty: the
/// protocol's price when the faulty node is the proposer (`timeout_propose` + 1 s), with room
/// for a 2-core machine running five nodes and five clients.
fn single_fault_bound() -> Duration {
    TIMEOUT_PROPOSE + Duration::from_secs(3)
}

/// Lets the submissions sent during one fault finish before the next fault begins (each is
/// judged by the fault it was sent under).
fn settle() {
    std::thread::sleep(single_fault_bound());
}

fn tip(cluster: &Cluster, i: usize) -> u64 {
    cluster.status(i).ok().and_then(|s| s["height"].as_u64()).unwrap_or(0)
}

fn highest_tip(cluster: &Cluster, except: usize) -> u64 {
    (0..cluster.nodes.len()).filter(|&i| i != except).map(|i| tip(cluster, i)).max().unwrap_or(0)
}

/// Waits until node `i` reaches `height`; how long it took.
fn wait_for_height(cluster: &Cluster, i: usize, height: u64, within: Duration) -> Duration {
    let started = Instant::now();
    while tip(cluster, i) < height {
        assert!(
            started.elapsed() < within,
            "{} is at {} after {within:?}, not {height}\n{}",
            cluster.nodes[i].name,
            tip(cluster, i),
            cluster.log(i)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

/// Fails the test, keeping the nodes' logs (under the target dir) for the reader.
fn failed(cluster: &Cluster, why: &str) -> ! {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "../target".into());
    let dest = std::path::Path::new(&target).join("fault-logs");
    let kept = cluster.save_logs(&dest).map(|p| p.display().to_string()).unwrap_or_default();
    panic!("{why}\n(the nodes' logs are in {kept})");
}

/// Applies a fault to each of `nodes` in turn for [`phase`], heals it, waits until that node is
/// level with the others and lets the submissions settle; each fault's `(node, from, to)`.
fn each_in_turn(
    cluster: &Cluster,
    nodes: std::ops::Range<usize>,
    apply: impl Fn(usize),
    heal: impl Fn(usize),
) -> Vec<(usize, Instant, Instant)> {
    let mut windows = Vec::new();
    for node in nodes {
        apply(node);
        let from = Instant::now();
        std::thread::sleep(phase());
        let to = Instant::now();
        heal(node);
        let target = highest_tip(cluster, node);
        let took = wait_for_height(cluster, node, target, CATCH_UP);
        eprintln!("{} healed: at height {target} {took:?} later", cluster.nodes[node].name);
        windows.push((node, from, to));
        settle();
    }
    windows
}

/// Checks that, while each node of `windows` was faulty, every other node's clients saw their
/// events committed within the single-fault bound; prints their figures.
fn judge_each(
    cluster: &Cluster,
    report: &Report,
    windows: &[(usize, Instant, Instant)],
    what: &str,
) {
    for &(faulty, from, to) in windows {
        let others: Vec<usize> = (0..cluster.nodes.len()).filter(|&i| i != faulty).collect();
        let scenario = format!("{} {what}", cluster.nodes[faulty].name);
        let figures = report
            .expect_committed(&others, from, to, single_fault_bound())
            .unwrap_or_else(|e| failed(cluster, &format!("{scenario}: {e:#}")));
        print_latencies(&scenario, &figures);
    }
}

fn print_latencies(scenario: &str, figures: &[Latencies]) {
    for l in figures {
        eprintln!("{scenario}: {l}");
    }
}

fn finish(mut cluster: Cluster, report: &Report) {
    let acknowledged = report.acknowledged();
    assert!(!acknowledged.is_empty(), "nothing was committed");
    cluster.stop_all_synced(&acknowledged).unwrap();
    check_chains_agree(&cluster, &acknowledged).unwrap_or_else(|e| panic!("{e:#}"));
}

/// One node paused (SIGSTOP: alive at the TCP level, silent above it), then resumed, for each of
/// the four validators and the member node: every other node's clients see their events
/// committed within the bound, and the paused node catches up once resumed.
#[test]
fn a_paused_node_slows_no_other_node_and_catches_up_when_resumed() {
    let _one = one_at_a_time();
    let cluster = Cluster::start(4, 1).unwrap();
    let load = Load::start(&cluster.urls(), cluster.signer(), 1);
    wait_for_height(&cluster, 4, 3, Duration::from_secs(30));
    let windows = each_in_turn(
        &cluster,
        0..cluster.nodes.len(),
        |i| cluster.pause(i).unwrap(),
        |i| cluster.resume(i).unwrap(),
    );
    let report = load.stop();
    judge_each(&cluster, &report, &windows, "paused");
    finish(cluster, &report);
}

/// Links cut while every process runs: each validator isolated in turn (the others commit, it
/// catches up when healed), then a 2+2 split of the validators with the member node on one side
/// (no side has a quorum: nothing commits; commits resume after healing, with no fork), then a
/// ring in which each node reaches only its two neighbours (gossip relays: commits continue).
#[test]
fn isolated_nodes_a_split_and_a_ring_lose_nothing_and_fork_nothing() {
    let _one = one_at_a_time();
    let cluster = Cluster::start_proxied(4, 1, seed()).unwrap();
    let load = Load::start(&cluster.urls(), cluster.signer(), 1);
    wait_for_height(&cluster, 4, 3, Duration::from_secs(30));

    let windows = each_in_turn(
        &cluster,
        0..4,
        |i| cluster.isolate(i).unwrap(),
        |_| cluster.set_every_link(LinkFault::None),
    );

    cluster.partition(&[&[0, 1, 4], &[2, 3]]).unwrap();
    // Nothing is decided past what was decided before the cut. A node that was behind may
    // still receive a block decided before it (from a peer on its side), so the property is
    // on the highest height, not on each node's.
    std::thread::sleep(Duration::from_secs(2));
    let split: Vec<u64> = (0..cluster.nodes.len()).map(|i| tip(&cluster, i)).collect();
    let decided = split.iter().copied().max().unwrap_or(0);
    std::thread::sleep(phase());
    let after: Vec<u64> = (0..cluster.nodes.len()).map(|i| tip(&cluster, i)).collect();
    assert!(
        after.iter().all(|h| *h <= decided),
        "a side without a quorum committed: heights {split:?} at the cut, {after:?} after"
    );
    cluster.set_every_link(LinkFault::None);
    let resumed = after.iter().max().unwrap() + 2;
    for i in 0..cluster.nodes.len() {
        wait_for_height(&cluster, i, resumed, RESUME);
    }

    // A ring 0-1-2-3-4-0: every chord cut.
    let ring = |a: usize, b: usize| (a + 1) % 5 == b || (b + 1) % 5 == a;
    for a in 0..5 {
        for b in (a + 1)..5 {
            let fault = if ring(a, b) { LinkFault::None } else { LinkFault::Cut };
            cluster.set_link(a, b, fault).unwrap();
        }
    }
    let before_ring = highest_tip(&cluster, usize::MAX);
    for i in 0..cluster.nodes.len() {
        wait_for_height(&cluster, i, before_ring + 3, RESUME);
    }
    cluster.set_every_link(LinkFault::None);

    let report = load.stop();
    judge_each(&cluster, &report, &windows, "isolated");
    finish(cluster, &report);
}

/// 200 ± 100 ms added to every link, each way: commits continue at every node.
#[test]
fn slow_links_everywhere_still_commit() {
    let _one = one_at_a_time();
    let cluster = Cluster::start_proxied(4, 1, seed()).unwrap();
    let load = Load::start(&cluster.urls(), cluster.signer(), 1);
    wait_for_height(&cluster, 4, 3, Duration::from_secs(30));
    cluster.set_every_link(LinkFault::Delay {
        base: Duration::from_millis(200),
        jitter: Duration::from_millis(100),
    });
    // Let the submissions sent before the change finish first.
    std::thread::sleep(Duration::from_secs(2));
    let from = Instant::now();
    std::thread::sleep(phase() * 2);
    let to = Instant::now();
    cluster.set_every_link(LinkFault::None);
    let report = load.stop();
    let all: Vec<usize> = (0..cluster.nodes.len()).collect();
    // Each height takes several link crossings of up to 300 ms, plus timeouts that grow.
    let figures = report
        .expect_committed(&all, from, to, tradeloop_tests::load::WAIT_COMMIT)
        .unwrap_or_else(|e| panic!("slow links: {e:#}"));
    print_latencies("200 ± 100 ms links", &figures);
    finish(cluster, &report);
}

/// Two validators' clocks off: one 20 s ahead from the start, one that jumps back 60 s while it
/// runs. Events stamped by the clients' (correct) clocks commit at every node; no block time is
/// ever ahead of the correct clocks (a validator votes against a proposal from its future);
/// block times never go back (`verify`); each skewed node reports its clock in its log and in
/// `tradeloop_clock_offset_ms`, and a correct node does not.
#[test]
fn clocks_off_by_seconds_are_ridden_through_and_reported() {
    let _one = one_at_a_time();
    let library = tradeloop_tests::fakeclock::library().unwrap();
    let mut cluster = Cluster::init(4, 1).unwrap();
    let ahead = cluster.dir.join("clock-ahead");
    let jumping = cluster.dir.join("clock-jumping");
    tradeloop_tests::fakeclock::set_offset(&ahead, 20).unwrap();
    tradeloop_tests::fakeclock::set_offset(&jumping, 0).unwrap();
    cluster.nodes[1].env = tradeloop_tests::fakeclock::env(&library, &ahead);
    cluster.nodes[2].env = tradeloop_tests::fakeclock::env(&library, &jumping);
    cluster.start_all().unwrap();
    let load = Load::start(&cluster.urls(), cluster.signer(), 1);
    wait_for_height(&cluster, 4, 3, Duration::from_secs(30));
    std::thread::sleep(phase());
    tradeloop_tests::fakeclock::set_offset(&jumping, -60).unwrap();
    let from = Instant::now() + Duration::from_secs(2);
    std::thread::sleep(phase() + Duration::from_secs(2));
    let to = Instant::now();
    let report = load.stop();

    let offset = |i: usize| cluster.metric(i, "tradeloop_clock_offset_ms").unwrap();
    assert!(offset(1) > 15_000.0, "the +20 s node reports {}", offset(1));
    assert!(offset(2) < -50_000.0, "the jumping node reports {}", offset(2));
    for i in [0, 3, 4] {
        assert!(offset(i).abs() < 5_000.0, "{} reports {}", cluster.nodes[i].name, offset(i));
    }
    assert!(cluster.log(1).contains("clock is 20 s ahead of"), "{}", cluster.log(1));
    assert!(cluster.log(2).contains("s behind the block times"), "{}", cluster.log(2));
    assert!(!cluster.log(0).contains("this node's clock is"), "{}", cluster.log(0));

    let all: Vec<usize> = (0..cluster.nodes.len()).collect();
    let figures = report
        .expect_committed(&all, from, to, single_fault_bound())
        .unwrap_or_else(|e| panic!("skewed clocks: {e:#}"));
    print_latencies("skewed clocks", &figures);

    let latest_correct_time = tradeloop_tests::cluster::now_ms();
    let mut cluster = cluster;
    cluster.stop_all().unwrap();
    let ledger =
        tradeloop_ledger::Ledger::open_read_only(&cluster.data_dir(0), cluster.genesis.clone())
            .unwrap();
    for h in 1..=ledger.tip().height {
        let time = ledger.block(h).unwrap().block.header.time_ms;
        assert!(time <= latest_correct_time, "block {h}'s time {time} is in the future");
    }
    drop(ledger);
    finish(cluster, &report);
}

/// Strangers flood a validator with connections (1,000 a second: TCP opened, a few bytes that
/// are no handshake, closed), and strangers with keys outside the genesis redial it as fast as
/// they are refused: the node's open descriptors stay within its connection limits and every
/// node's clients, its own included, see their events committed.
#[test]
fn a_flood_of_stranger_connections_changes_nothing_for_members() {
    use tradeloop_node::net::p2p::{self, P2pConfig, P2pLimits};
    let _one = one_at_a_time();
    let cluster = Cluster::start(4, 1).unwrap();
    let load = Load::start(&cluster.urls(), cluster.signer(), 1);
    wait_for_height(&cluster, 4, 3, Duration::from_secs(30));
    let target = 0;
    let pid = cluster.pid(target).unwrap();
    let baseline = tradeloop_tests::flood::open_fds(pid);
    let port = cluster.p2p_port(target).unwrap();

    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let members: Vec<_> = cluster.genesis.member_nodes().iter().map(|m| m.node_key).collect();
    let key = cluster.genesis.member_nodes()[target].node_key;
    let address: p2p::Multiaddr =
        format!("/ip4/127.0.0.1/tcp/{port}/p2p/{}", p2p::peer_id(&key)).parse().unwrap();
    let strangers: Vec<_> = (0..4)
        .map(|n| {
            let secret = tradeloop_crypto::SigningKey::from_seed_label(&format!("stranger {n}"));
            let _guard = runtime.enter();
            p2p::spawn(P2pConfig {
                node_secret: secret.secret_bytes(),
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                bootstrap: vec![address.clone()],
                members: members.clone(),
                chain: cluster.genesis.hash,
                limits: P2pLimits {
                    redial_initial_ms: 10,
                    redial_max_ms: 50,
                    ..P2pLimits::default()
                },
            })
            .unwrap()
        })
        .collect();
    let refused_before = cluster.status(target).unwrap()["refused_connections"].as_u64().unwrap();
    let flood = tradeloop_tests::flood::Flood::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        1_000,
    );
    let from = Instant::now();
    let mut most_fds = baseline;
    while from.elapsed() < phase() * 2 {
        most_fds = most_fds.max(tradeloop_tests::flood::open_fds(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    let to = Instant::now();
    let attempts = flood.stop();
    for (handle, _, _) in &strangers {
        runtime.block_on(handle.shutdown());
    }
    let refused = cluster.status(target).unwrap()["refused_connections"].as_u64().unwrap();
    eprintln!(
        "flood: {attempts} connections in {:?}; descriptors {baseline} before, at most {most_fds} \
         during; {} stranger handshakes refused",
        to - from,
        refused - refused_before
    );
    assert!(attempts as f64 >= 500.0 * (to - from).as_secs_f64(), "the flood ran at {attempts}");
    assert!(refused > refused_before, "no stranger was refused");
    // Established (64) and pending (16) connections, and room for the node's own files.
    let limit = baseline + 64 + 16;
    assert!(most_fds <= limit, "{most_fds} descriptors open during the flood, limit {limit}");

    let report = load.stop();
    let all: Vec<usize> = (0..cluster.nodes.len()).collect();
    let figures = report
        .expect_committed(&all, from, to, single_fault_bound())
        .unwrap_or_else(|e| panic!("flood: {e:#}"));
    print_latencies("flood", &figures);
    drop(strangers);
    finish(cluster, &report);
}

/// A validator's disk fills up while the network runs: it stops voting without dying or
/// damaging its copy, says why in its log and status, the others go on committing; once space
/// is freed it recovers by itself and catches up, and its copy verifies with nothing lost.
#[test]
fn a_full_disk_stops_one_validator_cleanly_and_it_recovers_when_space_is_freed() {
    let _one = one_at_a_time();
    let mut cluster = Cluster::init(4, 1).unwrap();
    let full = 3;
    let data = cluster.small_disk(full, 64).unwrap();
    cluster.start_all().unwrap();
    let load = Load::start(&cluster.urls(), cluster.signer(), 1);
    wait_for_height(&cluster, 4, 3, Duration::from_secs(30));

    let filler = tradeloop_tests::disk::fill(&data).unwrap();
    let from = Instant::now();
    // The node stops at its next write (letting open requests finish, at most the API's
    // shutdown grace of 10 s) and then answers with the reason.
    let status = loop {
        let status = cluster.status_answer(full).ok();
        if let Some(s) = status.filter(|s| s["storage"].is_string()) {
            break s;
        }
        assert!(
            from.elapsed() < Duration::from_secs(30),
            "no storage status\n{}",
            cluster.log(full)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("full disk: {:?} after filling, status {status}", from.elapsed());
    assert!(
        status["storage"].as_str().is_some_and(|s| s.contains("No space left")),
        "status does not say why: {status}"
    );
    assert!(cluster.is_running(full));
    std::thread::sleep(phase());
    let to = Instant::now();
    assert!(cluster.log(full).contains("No space left on device"), "{}", cluster.log(full));

    std::fs::remove_file(&filler).unwrap();
    let target = highest_tip(&cluster, full);
    let took = wait_for_height(&cluster, full, target, CATCH_UP);
    eprintln!("full disk: space freed, at height {target} {took:?} later");
    assert!(cluster.status(full).unwrap()["storage"].is_null());

    let report = load.stop();
    let others: Vec<usize> = (0..cluster.nodes.len()).filter(|&i| i != full).collect();
    let figures = report
        .expect_committed(&others, from, to, single_fault_bound())
        .unwrap_or_else(|e| panic!("full disk: {e:#}"));
    print_latencies("full disk", &figures);
    finish(cluster, &report);
}
