//! `tradeloop demo`: a network of member nodes on loopback (4 validators and the trade parties'
//! own nodes) runs a sample closed-loop trade, each party submitting its events to its own node;
//! then every node's copy is audited offline from the genesis and the copies compared.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use tradeloop_ledger::sample::{ids, trade_steps};
use tradeloop_ledger::{Ledger, SignedEvent};
use tradeloop_node::api::{EventResult, SubmitResponse};

use crate::cmd::devnet;

use crate::cmd::audit::run_verify;
use crate::cmd::now_ms;
use crate::cmd::query::{print_trace, print_trade};
use crate::output::{Out, StdoutError};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the network (DIR/net: genesis, keys, each node's node.toml, data dir and log), the
    /// events (DIR/events.jsonl) and an export (DIR/chain.tlx) here. It must be empty or not
    /// exist.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// How long the demo's nodes have to come up and connect.
pub const DEMO_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one event of the demo has to commit.
pub const DEMO_COMMIT_TIMEOUT_MS: u64 = 20_000;
/// Validators of the demo network (the customs authorities and the banks).
pub const DEMO_VALIDATORS: usize = 4;
/// Non-voting member nodes (the exporter's, the importer's and the forwarder's).
pub const DEMO_MEMBER_NODES: usize = 3;

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    let (dir, _temp) = out_dir(args.out.as_deref())?;
    let net = dir.join("net");
    let nodes = devnet::init(&devnet::InitArgs {
        validators: DEMO_VALIDATORS,
        full_nodes: DEMO_MEMBER_NODES,
        dir: net.clone(),
        timeout_propose_ms: Some(1000),
        empty_block_wait_ms: None,
        base_port: None,
    })?;
    let cast = devnet::load_cast(&net)?;
    print_network(&cast, &nodes)?;
    let running = devnet::Running::start(&nodes, "info,libp2p=warn")?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_millis(DEMO_COMMIT_TIMEOUT_MS + 10_000)))
        .build()
        .into();
    devnet::wait_connected(&agent, &nodes, DEMO_START_TIMEOUT)?;
    let top = run_trade(&agent, &nodes, &cast, &dir)?;
    wait_all_at(&agent, &nodes, top)?;
    running.stop()?;

    let first = &nodes[node_of(&nodes, ids::EXPORTER)];
    let export = show_trade(first, &cast.genesis, &dir)?;
    audit_copies(&nodes, &cast.genesis, &export)?;
    if let Some(out) = &args.out {
        print_kept(out, &first.name)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The directory the demo keeps its network in: `--out` (new or empty), else a temporary one
/// (removed when the returned guard is dropped).
fn out_dir(out: Option<&Path>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    match out {
        Some(d) => {
            if d.exists() && std::fs::read_dir(d)?.next().is_some() {
                bail!("{} is not empty; give a new or empty directory to --out", d.display());
            }
            Ok((d.to_path_buf(), None))
        }
        None => {
            let temp = tempfile::tempdir()?;
            Ok((temp.path().to_path_buf(), Some(temp)))
        }
    }
}

fn print_network(
    cast: &tradeloop_ledger::sample::Cast,
    nodes: &[devnet::DevnetNode],
) -> Result<()> {
    let genesis = &cast.genesis;
    writeln!(Out, "tradeloop demo: chain {} ({})", genesis.doc.chain_id, genesis.hash)?;
    writeln!(
        Out,
        "  {} member nodes on loopback (libp2p), each party submitting to its own node:",
        nodes.len()
    )?;
    for n in nodes {
        writeln!(
            Out,
            "    {:<30} {:<9} api http://{}",
            n.name,
            if n.validator { "validator" } else { "member" },
            n.api
        )?;
    }
    Ok(())
}

/// The node a party submits to: its own member node, else any node it runs.
fn node_of(nodes: &[devnet::DevnetNode], author: &str) -> usize {
    nodes
        .iter()
        .position(|n| n.participant == author && !n.validator)
        .or_else(|| nodes.iter().position(|n| n.participant == author))
        .unwrap_or(0)
}

/// Runs sample trade PO-1, each event committed before the next (and, before the export
/// declaration, a departure the rules refuse); writes the events to DIR/events.jsonl. The
/// highest height committed.
fn run_trade(
    agent: &ureq::Agent,
    nodes: &[devnet::DevnetNode],
    cast: &tradeloop_ledger::sample::Cast,
    dir: &Path,
) -> Result<u64> {
    writeln!(
        Out,
        "\nclosed-loop trade PO-1, each event committed by the network before the next:"
    )?;
    let mut journal = String::new();
    let mut top = 0;
    for (i, (author, kind, fields)) in trade_steps(1).into_iter().enumerate() {
        if kind == "customs.declaration_filed" && author == ids::FORWARDER {
            early_departure_refused(agent, nodes, cast)?;
        }
        let event = cast.sign(author, kind, fields, now_ms(), &format!("demo-{i}"));
        journal.push_str(&event.to_envelope_json());
        journal.push('\n');
        let node = &nodes[node_of(nodes, author)];
        match submit(agent, node, &event)? {
            EventResult::Committed { height, .. } => {
                top = top.max(height);
                writeln!(Out, "  h{height:<8} {kind:<30} {author:<24} via {}", node.name)?;
            }
            other => {
                bail!("step {i} ({kind}) by {author} via {} did not commit: {other:?}", node.name)
            }
        }
    }
    std::fs::write(dir.join("events.jsonl"), journal)?;
    Ok(top)
}

/// The rules at work: the ship cannot leave before export clearance.
fn early_departure_refused(
    agent: &ureq::Agent,
    nodes: &[devnet::DevnetNode],
    cast: &tradeloop_ledger::sample::Cast,
) -> Result<()> {
    let early = cast.sign(
        ids::FORWARDER,
        "shipment.departed",
        serde_json::json!({"shipment_id": "SHP-1", "location": "CNYTN", "event_time_ms": now_ms()}),
        now_ms(),
        "early-departure",
    );
    let node = &nodes[node_of(nodes, ids::FORWARDER)];
    match submit(agent, node, &early)? {
        EventResult::Rejected { code, message, .. } => writeln!(
            Out,
            "  rejected   {:<30} {:<24} {code}: {message}",
            "shipment.departed",
            ids::FORWARDER
        )?,
        other => bail!("the network accepted a departure before export clearance: {other:?}"),
    }
    Ok(())
}

/// Waits until every node reaches height `top` (then all can stop cleanly).
fn wait_all_at(agent: &ureq::Agent, nodes: &[devnet::DevnetNode], top: u64) -> Result<()> {
    let deadline = Instant::now() + DEMO_START_TIMEOUT;
    for n in nodes {
        while devnet::status(agent, n).map(|s| s.height).unwrap_or(0) < top {
            if Instant::now() > deadline {
                bail!("node {} did not reach height {top}", n.name);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

fn data_dir(n: &devnet::DevnetNode) -> PathBuf {
    n.config.with_file_name("data")
}

/// Prints the shipment's trace and the trade's status from `node`'s copy (the trade must be
/// closed) and exports that copy to DIR/chain.tlx: the export's path.
fn show_trade(
    node: &devnet::DevnetNode,
    genesis: &tradeloop_ledger::Genesis,
    dir: &Path,
) -> Result<PathBuf> {
    let ledger = Ledger::open_read_only(&data_dir(node), genesis.clone())?;
    writeln!(Out, "\ntrace of shipment SHP-1 (from {}):", node.name)?;
    print_trace(&ledger.trace("shipment:SHP-1")?)?;
    writeln!(Out)?;
    let trade =
        tradeloop_node::api::TradeView::new(ledger.trade_status("PO-1")?, ledger.tip().height);
    print_trade(&trade)?;
    if !trade.closed {
        bail!("the sample trade did not close: open legs {:?}", trade.open_legs);
    }
    let export = dir.join("chain.tlx");
    tradeloop_ledger::export::binary::export(&ledger, &export)?;
    Ok(export)
}

/// Verifies every node's copy and the export from the genesis alone, and checks that the
/// copies are one chain.
fn audit_copies(
    nodes: &[devnet::DevnetNode],
    genesis: &tradeloop_ledger::Genesis,
    export: &Path,
) -> Result<()> {
    writeln!(Out, "\naudit of every node's copy from the genesis file alone:")?;
    let mut tips = Vec::new();
    for n in nodes {
        match run_verify(Some(&data_dir(n)), None, genesis) {
            Ok(r) => {
                writeln!(
                    Out,
                    "  {:<30} OK: {} blocks, {} events, tip {}",
                    n.name, r.blocks, r.events, r.tip_hash
                )?;
                tips.push((n.name.clone(), r.blocks, r.tip_hash));
            }
            Err(f) => bail!("the copy of {} failed verification at {f}", n.name),
        }
    }
    // Nodes may have gone on to empty blocks past the trade; compare at the shortest tip.
    let shortest = tips.iter().map(|t| t.1).min().unwrap_or(0);
    let mut at_shortest = std::collections::BTreeSet::new();
    for n in nodes {
        let ledger = Ledger::open_read_only(&data_dir(n), genesis.clone())?;
        at_shortest.insert(ledger.block(shortest)?.block.header.hash());
    }
    if at_shortest.len() != 1 {
        bail!("the copies differ at height {shortest}: {tips:?}");
    }
    writeln!(
        Out,
        "  all {} copies are the same chain (block {shortest} is {} on every node)",
        nodes.len(),
        at_shortest.iter().next().map(|h| h.to_hex()).unwrap_or_default()
    )?;
    match run_verify(None, Some(export), genesis) {
        Ok(r) => writeln!(
            Out,
            "  export   OK: {} blocks, {} events, tip {}",
            r.blocks, r.events, r.tip_hash
        )?,
        Err(f) => bail!("the export failed verification at {f}"),
    }
    Ok(())
}

/// Submits one event with `?wait=commit`; its result.
fn submit(
    agent: &ureq::Agent,
    node: &devnet::DevnetNode,
    event: &SignedEvent,
) -> Result<EventResult> {
    let url =
        format!("http://{}/v1/events?wait=commit&timeout_ms={DEMO_COMMIT_TIMEOUT_MS}", node.api);
    let mut reply = agent
        .post(&url)
        .header("content-type", "application/json")
        .send(event.to_envelope_json())?;
    let code = reply.status().as_u16();
    let body = reply.body_mut().read_to_string()?;
    // 409, 422 and 429 answer a request that admitted nothing; they carry its results too.
    if !matches!(code, 200 | 409 | 422 | 429) {
        bail!("node {} answered {code}: {body}", node.name);
    }
    let answer: SubmitResponse = serde_json::from_str(&body)?;
    answer.results.into_iter().next().context("the node answered no result")
}

fn print_kept(out: &Path, node: &str) -> Result<(), StdoutError> {
    let d = out.display();
    writeln!(Out, "\nkept in {d}: net/ (genesis, keys, every node's config, data and log), events.jsonl, chain.tlx. Try:")?;
    writeln!(Out, "  tradeloop devnet run --dir {d}/net")?;
    writeln!(Out, "  tradeloop trade --data-dir {d}/net/nodes/{node}/data --genesis {d}/net/genesis.json PO-1")?;
    writeln!(Out, "  tradeloop verify --export {d}/chain.tlx --genesis {d}/net/genesis.json")?;
    Ok(())
}
