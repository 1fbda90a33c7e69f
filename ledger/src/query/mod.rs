//! Reading the chain: events, traces, trade status and blocks, for the writing
//! [`Ledger`](crate::Ledger) ([`read`]) and for read views that answer beside it ([`view`]).

pub mod read;
pub mod record;
pub mod view;

pub use read::{
    committed_event, event, positions_of, trace, trace_committed, trace_entity, trade_status,
    ChainRead,
};
pub use record::{record_from, record_of, CommittedEvent, EventRecord, Leg, TradeStatus};
pub use view::{LedgerView, ViewAt, ViewIndex, MAX_FRAME_MAP_BYTES};
