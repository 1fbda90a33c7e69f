//! The read commands: `trace`, `trade` (and `event show`'s printing). Each reads a data dir
//! offline or asks a running node (`--node`); both print the same. (`export` is in `evidence`.)

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tradeloop_ledger::query::EventRecord;
use tradeloop_node::api::{EventView, TraceView, TradeView};

use super::client::{Client, REQUEST_TIMEOUT_MS};
use super::{open_ledger_read_only, Source};
use crate::output::{Out, StdoutError};

/// Most events a `trace --node` gathers over all its pages (1,000,000); a longer trace is an
/// error that says so rather than an unbounded read.
pub const MAX_REMOTE_TRACE_EVENTS: usize = 1_000_000;

/// Characters kept as they are in a path segment: RFC 3986 unreserved, plus `:` and `@`.
const SEGMENT: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b':').remove(b'@');

/// `text` as one URL path segment.
pub fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// An event as the node's API shows it, as the ledger's record.
pub fn record_of(v: EventView) -> Result<EventRecord> {
    let body = v.envelope.body.to_value().context("an event body from the node is not JSON")?;
    Ok(EventRecord {
        id: v.id,
        height: v.height,
        index: v.index,
        block_hash: v.block_hash,
        block_time_ms: v.block_time_ms,
        kind: v.kind,
        author: v.author,
        body,
        signature: v.envelope.signature,
    })
}

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

/// Every event of `reference`'s trace from a node, page by page (bounded).
pub fn remote_trace(client: &Client, reference: &str) -> Result<Vec<EventRecord>> {
    let mut records = Vec::new();
    let mut offset = 0usize;
    loop {
        let path = format!("/v1/trace/{}?offset={offset}", segment(reference));
        let page: TraceView = client.get_json(&path, &format!("the trace of {reference}"))?;
        for view in page.events {
            records.push(record_of(view)?);
        }
        match page.next_offset {
            Some(next) if next > offset => offset = next,
            Some(_) => bail!(
                "the node at {} answered a trace page that does not move forward; it may be a \
                 different version than this client",
                client.base()
            ),
            None => return Ok(records),
        }
        if records.len() > MAX_REMOTE_TRACE_EVENTS {
            bail!(
                "the trace of {reference} holds more than {MAX_REMOTE_TRACE_EVENTS} events \
                 (MAX_REMOTE_TRACE_EVENTS); read it from a data dir, or page through \
                 GET /v1/trace yourself"
            );
        }
    }
}

pub fn trace(source: &Source, reference: &str, json: bool) -> Result<ExitCode> {
    let records = match source {
        Source::Local(chain) => open_ledger_read_only(chain)?.trace(reference)?,
        Source::Remote(node) => {
            remote_trace(&Client::for_node(node, REQUEST_TIMEOUT_MS)?, reference)?
        }
    };
    if json {
        writeln!(Out, "{}", serde_json::to_string_pretty(&records)?)?;
    } else {
        writeln!(Out, "{reference}: {} events", records.len())?;
        print_trace(&records)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn print_trade(status: &TradeView) -> Result<(), StdoutError> {
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

/// A trade's status with the height it was read at, from a data dir or a node.
pub fn trade_view(source: &Source, order_id: &str) -> Result<TradeView> {
    match source {
        Source::Local(chain) => {
            let ledger = open_ledger_read_only(chain)?;
            let height = ledger.tip().height;
            Ok(TradeView::new(ledger.trade_status(order_id)?, height))
        }
        Source::Remote(node) => Client::for_node(node, REQUEST_TIMEOUT_MS)?
            .get_json(&format!("/v1/trades/{}", segment(order_id)), &format!("trade {order_id}")),
    }
}

pub fn trade(source: &Source, order_id: &str, json: bool) -> Result<ExitCode> {
    let status = trade_view(source, order_id)?;
    if json {
        writeln!(Out, "{}", serde_json::to_string_pretty(&status)?)?;
    } else {
        print_trade(&status)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::segment;

    #[test]
    fn references_become_one_path_segment() {
        assert_eq!(segment("shipment:SHP-1"), "shipment:SHP-1");
        assert_eq!(segment("order:PO 1/2?x#y%"), "order:PO%201%2F2%3Fx%23y%25");
        assert_eq!(segment("lc:Ü"), "lc:%C3%9C");
    }
}
