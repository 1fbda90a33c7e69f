//! Events, traces and trade status, read from any [`ChainRead`]: the writing
//! [`Ledger`] or a [`crate::query::view::ViewAt`].

use tradeloop_crypto::Hash;

use crate::model::block::{CertifiedBlock, Header};
use crate::model::event::SignedEvent;
use crate::model::event::{parse_ref, RefKind};
use crate::model::genesis::Genesis;
use crate::query::record::{trade_status_of, CommittedEvent, EventRecord, TradeStatus};
use crate::rules::state::{Entity, InvoiceState, OrderState, ShipmentState, StateRead};
use crate::storage::index::IndexStore;
use crate::storage::schema::{decode_position, ref_prefix, table_key, tables};
use crate::storage::store::Ledger;
use crate::{encoding::codec, LedgerError};

/// What the queries need of a ledger: its genesis, its index, its blocks, and the highest
/// height it answers for.
pub trait ChainRead: StateRead {
    /// The index engine.
    type Index: IndexStore;
    /// The chain's genesis.
    fn genesis(&self) -> &Genesis;
    /// The index.
    fn index(&self) -> &Self::Index;
    /// The certified block at `height` (`NotFound` above [`ChainRead::visible_height`]).
    fn block(&self, height: u64) -> Result<CertifiedBlock, LedgerError>;
    /// The highest height whose blocks and events this reader answers with.
    fn visible_height(&self) -> u64;
    /// The header of the block at `height` and its events at `indexes` (ascending, no
    /// repeats). A reader that can skip the other events overrides this.
    fn events_at(
        &self,
        height: u64,
        indexes: &[u32],
    ) -> Result<(Header, Vec<SignedEvent>), LedgerError> {
        let block = self.block(height)?;
        let events = indexes
            .iter()
            .map(|&i| {
                block.block.events.get(i as usize).cloned().ok_or_else(|| {
                    LedgerError::IndexInconsistent(format!(
                        "index points at event {i} of block {height}, which has fewer"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok((block.block.header, events))
    }
}

/// An event by id (`None` if it is not committed at or below the visible height).
pub fn event<R: ChainRead>(r: &R, id: &Hash) -> Result<Option<EventRecord>, LedgerError> {
    committed_event(r, id)?.map(|c| c.record()).transpose()
}

/// An event by id as the log holds it (`None` if it is not committed at or below the visible
/// height).
pub fn committed_event<R: ChainRead>(
    r: &R,
    id: &Hash,
) -> Result<Option<CommittedEvent>, LedgerError> {
    let Some(position) = r.index().get(&table_key(tables::EVENTS, &id.0))? else {
        return Ok(None);
    };
    let (height, index) = decode_position(position.as_ref())?;
    if height > r.visible_height() {
        return Ok(None);
    }
    let mut found = committed_at(r, vec![(height, index)])?;
    let committed = found.pop().ok_or_else(|| {
        LedgerError::IndexInconsistent(format!("no event {index} read from block {height}"))
    })?;
    if committed.id != *id {
        // The log is the truth: an index entry pointing elsewhere is damage, not an answer.
        return Err(LedgerError::IndexInconsistent(format!(
            "the index places event {id} at height {height} index {index}, which holds event {}",
            committed.id
        )));
    }
    Ok(Some(committed))
}

/// The (height, index) of every event that touches an entity key, in ledger order.
pub fn positions_of<R: ChainRead>(r: &R, entity: &[u8]) -> Result<Vec<(u64, u32)>, LedgerError> {
    let mut out = Vec::new();
    for item in r.index().scan_prefix(&table_key(tables::REFS, &ref_prefix(entity))) {
        let (key, _) = item?;
        let position = key.len().checked_sub(12).map(|at| &key[at..]).unwrap_or(&key[..]);
        let (height, index) = decode_position(position)?;
        if height <= r.visible_height() {
            out.push((height, index));
        }
    }
    Ok(out)
}

/// Every event that touches an entity (`order`, `invoice`, `shipment`, `declaration`, `lc`,
/// `document`, `payment`), in ledger order.
pub fn trace_entity<R: ChainRead>(r: &R, entity: &[u8]) -> Result<Vec<EventRecord>, LedgerError> {
    committed_at(r, positions_of(r, entity)?)?.iter().map(CommittedEvent::record).collect()
}

/// The events at `positions`, in ledger order, each once.
fn committed_at<R: ChainRead>(
    r: &R,
    mut positions: Vec<(u64, u32)>,
) -> Result<Vec<CommittedEvent>, LedgerError> {
    positions.sort_unstable();
    positions.dedup();
    let mut out = Vec::with_capacity(positions.len());
    // One read per block, of just the events wanted.
    for group in positions.chunk_by(|a, b| a.0 == b.0) {
        let height = group[0].0;
        let indexes: Vec<u32> = group.iter().map(|p| p.1).collect();
        let (header, events) = r.events_at(height, &indexes)?;
        let block_hash = header.hash();
        for (index, event) in indexes.into_iter().zip(events) {
            out.push(CommittedEvent {
                id: event.id(),
                height,
                index,
                block_hash,
                block_time_ms: header.time_ms,
                event,
            });
        }
    }
    Ok(out)
}

/// A trace by reference `shipment:ID`, `order:ID`, `declaration:ID`, `lc:ID` or `invoice:ID`.
/// An order's trace includes the events of its shipments and declarations, so it shows the
/// whole closed loop.
pub fn trace<R: ChainRead>(r: &R, reference: &str) -> Result<Vec<EventRecord>, LedgerError> {
    trace_committed(r, reference)?.iter().map(CommittedEvent::record).collect()
}

/// [`trace`], the events as the log holds them.
pub fn trace_committed<R: ChainRead>(
    r: &R,
    reference: &str,
) -> Result<Vec<CommittedEvent>, LedgerError> {
    let (kind, id) = parse_ref(reference).map_err(|e| LedgerError::NotFound(e.to_string()))?;
    let key = Entity::from(kind).key(id);
    let Some(state) = r.get_state(&key)? else {
        return Err(LedgerError::NotFound(format!("{reference} on this ledger")));
    };
    let mut positions = positions_of(r, &key)?;
    if kind == RefKind::Order {
        // The order's and its shipments' events, each read once.
        let order: OrderState = codec::decode(&state).map_err(|e| {
            LedgerError::IndexInconsistent(format!("state value does not decode: {e}"))
        })?;
        for shipment in &order.shipments {
            positions.extend(positions_of(r, &Entity::Shipment.key(shipment))?);
        }
    }
    committed_at(r, positions)
}

/// A state value, decoded; `NotFound` when absent.
pub(crate) fn load<R: StateRead, T: serde::de::DeserializeOwned>(
    r: &R,
    key: &[u8],
) -> Result<T, LedgerError> {
    let bytes = r
        .get_state(key)?
        .ok_or_else(|| LedgerError::NotFound(String::from_utf8_lossy(key).into_owned()))?;
    codec::decode(&bytes)
        .map_err(|e| LedgerError::IndexInconsistent(format!("state value does not decode: {e}")))
}

/// Where the trade of an order stands: which legs of the closed loop are done.
pub fn trade_status<R: ChainRead>(r: &R, order_id: &str) -> Result<TradeStatus, LedgerError> {
    let order: OrderState = load(r, &Entity::Order.key(order_id))?;
    let mut invoices = Vec::new();
    for id in &order.invoices {
        invoices.push((id.clone(), load::<_, InvoiceState>(r, &Entity::Invoice.key(id))?));
    }
    let mut shipments = Vec::new();
    for id in &order.shipments {
        shipments.push((id.clone(), load::<_, ShipmentState>(r, &Entity::Shipment.key(id))?));
    }
    Ok(trade_status_of(order_id, &order, &invoices, &shipments))
}

impl<S: IndexStore> Ledger<S> {
    /// An event by id.
    pub fn event(&self, id: &Hash) -> Result<Option<EventRecord>, LedgerError> {
        event(self, id)
    }

    /// Every event that touches an entity (`order`, `invoice`, `shipment`, `declaration`,
    /// `lc`, `document`, `payment`), in ledger order.
    pub fn trace_entity(&self, entity: &[u8]) -> Result<Vec<EventRecord>, LedgerError> {
        trace_entity(self, entity)
    }

    /// A trace by reference `shipment:ID`, `order:ID`, `declaration:ID`, `lc:ID` or
    /// `invoice:ID`. An order's trace includes the events of its shipments and declarations, so
    /// it shows the whole closed loop.
    pub fn trace(&self, reference: &str) -> Result<Vec<EventRecord>, LedgerError> {
        trace(self, reference)
    }

    /// Where the trade of an order stands: which legs of the closed loop are done.
    pub fn trade_status(&self, order_id: &str) -> Result<TradeStatus, LedgerError> {
        trade_status(self, order_id)
    }
}

impl<S: IndexStore> ChainRead for Ledger<S> {
    type Index = S;
    fn genesis(&self) -> &Genesis {
        Ledger::genesis(self)
    }
    fn index(&self) -> &S {
        Ledger::index(self)
    }
    fn block(&self, height: u64) -> Result<CertifiedBlock, LedgerError> {
        Ledger::block(self, height)
    }
    fn visible_height(&self) -> u64 {
        self.tip().height
    }
}
