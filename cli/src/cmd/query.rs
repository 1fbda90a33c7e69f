//! The read commands: `trace`, `trade`. (`export` is in `evidence`.)

use std::process::ExitCode;

use anyhow::Result;
use tradeloop_ledger::store::EventRecord;

use super::{open_ledger_read_only, ChainArgs};
use crate::output::{Out, StdoutError};

pub fn print_trace(records: &[EventRecord]) -> Result<(), StdoutError> {
    for r in records {
        let body = &r.body;
        let pick = |k: &str| body.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let detail =
            ["location", "condition", "declaration_id", "invoice_id", "doc_id", "lc_id", "amount"]
                .iter()
                .filter_map(|k| pick(k).map(|v| format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join(" ");
        writeln!(Out, "  h{:<5} {:<30} {:<24} {}", r.height, r.kind, r.author, detail)?;
    }
    Ok(())
}

pub fn trace(chain: &ChainArgs, reference: &str, json: bool) -> Result<ExitCode> {
    let ledger = open_ledger_read_only(chain)?;
    let records = ledger.trace(reference)?;
    if json {
        writeln!(Out, "{}", serde_json::to_string_pretty(&records)?)?;
    } else {
        writeln!(Out, "{reference}: {} events", records.len())?;
        print_trace(&records)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn print_trade(status: &tradeloop_ledger::store::TradeStatus) -> Result<(), StdoutError> {
    writeln!(
        Out,
        "trade {} ({} -> {}): {}",
        status.order_id,
        status.buyer,
        status.seller,
        if status.closed {
            "CLOSED".to_string()
        } else {
            format!("open legs: {}", status.open_legs.join(", "))
        }
    )?;
    for leg in &status.legs {
        writeln!(Out, "  [{}] {:<16} {}", if leg.done { "x" } else { " " }, leg.leg, leg.detail)?;
    }
    Ok(())
}

pub fn trade(chain: &ChainArgs, order_id: &str, json: bool) -> Result<ExitCode> {
    let ledger = open_ledger_read_only(chain)?;
    let status = ledger.trade_status(order_id)?;
    if json {
        writeln!(Out, "{}", serde_json::to_string_pretty(&status)?)?;
    } else {
        print_trade(&status)?;
    }
    Ok(ExitCode::SUCCESS)
}
