//! What a query answers: an event as found on the ledger, and where a trade stands.

use serde::Serialize;
use tradeloop_crypto::Hash;

use crate::model::block::CertifiedBlock;
use crate::model::event::SignedEvent;
use crate::rules::state::*;
use crate::LedgerError;

/// An event as found on the ledger.
#[derive(Clone, Debug, Serialize)]
pub struct EventRecord {
    /// Event id.
    pub id: Hash,
    /// Block height.
    pub height: u64,
    /// Position in the block.
    pub index: u32,
    /// Hash of the block.
    pub block_hash: Hash,
    /// The block's time.
    pub block_time_ms: u64,
    /// Kind.
    pub kind: String,
    /// Author.
    pub author: String,
    /// The body as signed (canonical JSON).
    pub body: serde_json::Value,
    /// Signature (hex).
    pub signature: String,
}

/// One leg of a trade's closed loop.
#[derive(Clone, Debug, Serialize)]
pub struct Leg {
    /// Leg name, e.g. `export_cleared`.
    pub leg: &'static str,
    /// Whether it is done.
    pub done: bool,
    /// Detail for a person.
    pub detail: String,
}

/// Where a trade (an order and everything hanging off it) stands.
#[derive(Clone, Debug, Serialize)]
pub struct TradeStatus {
    /// The order.
    pub order_id: String,
    /// Buyer.
    pub buyer: String,
    /// Seller.
    pub seller: String,
    /// Whether the loop is closed: goods received, import cleared, invoices fully settled.
    pub closed: bool,
    /// Every leg in order.
    pub legs: Vec<Leg>,
    /// Names of legs still open.
    pub open_legs: Vec<&'static str>,
}

pub(crate) fn trade_status_of(
    order_id: &str,
    order: &OrderState,
    invoices: &[(String, InvoiceState)],
    shipments: &[(String, ShipmentState)],
) -> TradeStatus {
    use ShipmentStatus::*;
    let all = |f: &dyn Fn(&ShipmentState) -> bool| {
        !shipments.is_empty() && shipments.iter().all(|(_, s)| f(s))
    };
    let reached = |s: &ShipmentState, at: &[ShipmentStatus]| at.contains(&s.status);
    let names = |f: &dyn Fn(&ShipmentState) -> bool| -> String {
        let open: Vec<&str> =
            shipments.iter().filter(|(_, s)| !f(s)).map(|(id, _)| id.as_str()).collect();
        if shipments.is_empty() {
            "no shipment booked".into()
        } else if open.is_empty() {
            format!("all {} shipment(s)", shipments.len())
        } else {
            format!("open: {}", open.join(", "))
        }
    };
    let settled_all = !invoices.is_empty() && invoices.iter().all(|(_, i)| i.settled == i.amount);
    let settled: crate::model::fields::Decimal =
        invoices.iter().fold(Default::default(), |a, (_, i)| a.plus(i.settled));
    let mut legs = vec![
        Leg {
            leg: "order_placed",
            done: true,
            detail: format!(
                "{} {} from {} to {}",
                order.amount, order.currency, order.buyer, order.seller
            ),
        },
        Leg {
            leg: "order_accepted",
            done: order.accepted,
            detail: if order.accepted {
                "accepted by the seller".into()
            } else {
                "awaiting the seller".into()
            },
        },
        Leg {
            leg: "invoiced",
            done: !invoices.is_empty(),
            detail: format!("{} of {} {} invoiced", order.invoiced, order.amount, order.currency),
        },
        Leg {
            leg: "booked",
            done: !shipments.is_empty(),
            detail: format!("{} shipment(s)", shipments.len()),
        },
    ];
    type LegTest<'t> = &'t dyn Fn(&ShipmentState) -> bool;
    let shipment_legs: [(&'static str, LegTest<'_>); 6] = [
        ("export_cleared", &|s| s.export_cleared),
        ("departed", &|s| reached(s, &[Departed, Arrived, Delivered, Received])),
        ("arrived", &|s| reached(s, &[Arrived, Delivered, Received])),
        ("import_cleared", &|s| s.import_cleared),
        ("delivered", &|s| reached(s, &[Delivered, Received])),
        ("received", &|s| s.status == Received),
    ];
    for (leg, f) in shipment_legs {
        legs.push(Leg { leg, done: all(f), detail: names(f) });
    }
    legs.push(Leg {
        leg: "paid",
        done: settled_all,
        detail: if invoices.is_empty() {
            "nothing invoiced yet".into()
        } else {
            format!("{settled} of {} {} invoiced settled", order.invoiced, order.currency)
        },
    });
    let closed = all(&|s| s.status == Received) && all(&|s| s.import_cleared) && settled_all;
    let open_legs = legs.iter().filter(|l| !l.done).map(|l| l.leg).collect();
    TradeStatus {
        order_id: order_id.into(),
        buyer: order.buyer.clone(),
        seller: order.seller.clone(),
        closed,
        legs,
        open_legs,
    }
}

/// A committed event as the log holds it: the event as signed, and where it is. What the
/// node's API answers with (the body as signed, not re-serialized); [`CommittedEvent::record`]
/// is the decoded form the CLI prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedEvent {
    /// Event id.
    pub id: Hash,
    /// Height of its block.
    pub height: u64,
    /// Position in the block.
    pub index: u32,
    /// Hash of its block.
    pub block_hash: Hash,
    /// The block's time.
    pub block_time_ms: u64,
    /// The event as signed.
    pub event: SignedEvent,
}

impl CommittedEvent {
    /// The record of this event (its body parsed).
    pub fn record(&self) -> Result<EventRecord, LedgerError> {
        let height = self.height;
        let body: serde_json::Value =
            serde_json::from_slice(&self.event.body).map_err(|e| LedgerError::CorruptLog {
                location: format!("height {height}"),
                height,
                detail: e.to_string(),
            })?;
        let text = |k: &str| body.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
        Ok(EventRecord {
            id: self.id,
            height,
            index: self.index,
            block_hash: self.block_hash,
            block_time_ms: self.block_time_ms,
            kind: text("kind"),
            author: text("author"),
            signature: self.event.signature.to_hex(),
            body,
        })
    }
}

/// An event of a block as a record for display.
pub fn record_of(block: &CertifiedBlock, index: u32) -> Result<EventRecord, LedgerError> {
    let height = block.block.header.height;
    let signed = block.block.events.get(index as usize).ok_or_else(|| {
        LedgerError::IndexInconsistent(format!(
            "index points at event {index} of block {height}, which has fewer"
        ))
    })?;
    record_from(&block.block.header, signed, index)
}

/// The record of event `signed` at position `index` of the block with `header`.
pub fn record_from(
    header: &crate::model::block::Header,
    signed: &SignedEvent,
    index: u32,
) -> Result<EventRecord, LedgerError> {
    CommittedEvent {
        id: signed.id(),
        height: header.height,
        index,
        block_hash: header.hash(),
        block_time_ms: header.time_ms,
        event: signed.clone(),
    }
    .record()
}
