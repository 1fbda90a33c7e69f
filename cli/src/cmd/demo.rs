//! `tradeloop demo`: a sample closed-loop trade on a local chain, then its audit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use tradeloop_crypto::keyfile::write_key_file;
use tradeloop_crypto::SigningKey;
use tradeloop_ledger::sample::{ids, trade_steps, Cast};
use tradeloop_ledger::Ledger;

use crate::cmd::audit::run_verify;
use crate::cmd::now_ms;
use crate::cmd::query::{print_trace, print_trade};
use crate::output::{Out, StdoutError};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the genesis, key files (DIR/keys/<participant>.json), events (DIR/events.jsonl),
    /// data dir (DIR/data) and export (DIR/chain.tlx) here. It must be empty or not exist.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    let temp;
    let dir: PathBuf = match &args.out {
        Some(d) => {
            if d.exists() && std::fs::read_dir(d)?.next().is_some() {
                bail!("{} is not empty; give a new or empty directory to --out", d.display());
            }
            d.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(dir.join("keys"))?;
    let cast = Cast::new(1, now_ms(), &mut |_| Ok(SigningKey::generate()?))?;
    for (id, key) in &cast.keys {
        write_key_file(&dir.join("keys").join(format!("{id}.json")), key)?;
    }
    for (i, key) in cast.validator_keys.iter().enumerate() {
        let host = tradeloop_ledger::sample::VALIDATOR_HOSTS[i];
        write_key_file(&dir.join("keys").join(format!("{host}-node.json")), key)?;
    }
    std::fs::write(dir.join("genesis.json"), cast.genesis.doc.to_json_bytes())?;
    writeln!(Out, "tradeloop demo: chain {} ({})", cast.genesis.doc.chain_id, cast.genesis.hash)?;
    writeln!(
        Out,
        "  participants: {}",
        cast.genesis
            .participants()
            .map(|p| format!("{} ({})", p.id, p.role.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(Out, "  validator: {} node\n", tradeloop_ledger::sample::VALIDATOR_HOSTS[0])?;

    let mut ledger = Ledger::open(&dir.join("data"), cast.genesis.clone())?;
    let validator = cast.validator_keys[0].clone();
    let mut journal = String::new();
    writeln!(Out, "closed-loop trade PO-1: one block per event as the parties report them")?;
    for (i, (author, kind, fields)) in trade_steps(1).into_iter().enumerate() {
        if kind == "customs.declaration_filed" && author == ids::FORWARDER {
            // Show the rules at work: the ship cannot leave before export clearance.
            let early = cast.sign(
                ids::FORWARDER,
                "shipment.departed",
                serde_json::json!({
                "shipment_id": "SHP-1", "location": "CNYTN", "event_time_ms": now_ms()}),
                now_ms(),
                "early-departure",
            );
            let (_, rejected) = ledger.append_local(&[early], now_ms(), &validator)?;
            match rejected.first() {
                Some((_, r)) => writeln!(
                    Out,
                    "  rejected   {:<30} {:<24} {}",
                    "shipment.departed",
                    ids::FORWARDER,
                    r
                )?,
                None => bail!("the rules accepted a departure before export clearance"),
            }
        }
        let event = cast.sign(author, kind, fields, now_ms(), &format!("demo-{i}"));
        journal.push_str(&event.to_envelope_json());
        journal.push('\n');
        let (block, rejected) =
            ledger.append_local(std::slice::from_ref(&event), now_ms(), &validator)?;
        if let Some((_, r)) = rejected.first() {
            bail!("step {i} ({kind}) was rejected: {r}");
        }
        let height = block.last().map(|b| b.block.header.height).unwrap_or_default();
        writeln!(Out, "  h{height:<8} {kind:<30} {author}")?;
    }
    std::fs::write(dir.join("events.jsonl"), journal)?;

    writeln!(Out, "\ntrace of shipment SHP-1:")?;
    print_trace(&ledger.trace("shipment:SHP-1")?)?;
    writeln!(Out)?;
    let status = ledger.trade_status("PO-1")?;
    print_trade(&status)?;
    if !status.closed {
        bail!("the sample trade did not close: open legs {:?}", status.open_legs);
    }
    let export = dir.join("chain.tlx");
    tradeloop_ledger::export::export(&ledger, &export)?;
    let tip = ledger.tip().clone();
    drop(ledger);

    writeln!(Out, "\naudit from the genesis file alone:")?;
    let genesis = crate::cmd::load_genesis(&dir.join("genesis.json"))?;
    for (what, data_dir, export_file) in
        [("data dir", Some(dir.join("data")), None), ("export", None, Some(export.clone()))]
    {
        match run_verify(data_dir.as_deref(), export_file.as_deref(), &genesis) {
            Ok(r) if r.tip_hash == tip.hash => writeln!(
                Out,
                "  {what:<8} OK: {} blocks, {} events, tip {}",
                r.blocks, r.events, r.tip_hash
            )?,
            Ok(r) => bail!("{what} verified but ends at {} instead of {}", r.tip_hash, tip.hash),
            Err(f) => bail!("{what} failed verification at {f}"),
        }
    }
    if let Some(out) = &args.out {
        print_kept(out)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_kept(out: &Path) -> Result<(), StdoutError> {
    let d = out.display();
    writeln!(Out, "\nkept in {d}: genesis.json, keys/, events.jsonl, data/, chain.tlx. Try:")?;
    writeln!(Out, "  tradeloop trade --data-dir {d}/data --genesis {d}/genesis.json PO-1")?;
    writeln!(
        Out,
        "  tradeloop trace --data-dir {d}/data --genesis {d}/genesis.json shipment:SHP-1"
    )?;
    writeln!(Out, "  tradeloop verify --export {d}/chain.tlx --genesis {d}/genesis.json")?;
    Ok(())
}
