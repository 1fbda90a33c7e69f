//! The tradeloop ledger: events, rules, blocks, certificates, storage, audit and export.
//!
//! ```text
//!  envelope JSON --check_event--> Event --BlockExecutor (rules)--> writes + app_hash
//!        |                                                              |
//!        v                                                              v
//!  Block { Header, events } + CommitCertificate --> BlockLog (fsync) --> sled index
//!                                                        |
//!                             audit::verify  <-----------+----> export file
//! ```
//!
//! No networking, no async: the auditor's path is small, synchronous and deterministic.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod encoding;
pub mod error;
pub mod evidence;
pub mod execute;
pub mod export;
pub mod limits;
pub mod model;
pub mod query;
pub mod rules;
pub mod sample;
pub mod storage;

pub use error::{LedgerError, RejectCode, Rejection};
pub use model::block::{Block, CertifiedBlock, CommitCertificate, Header, Tip};
pub use model::event::{check_event, check_event_batch, Event, Payload, SignedEvent};
pub use model::genesis::{
    Genesis, GenesisDoc, KeyEntry, Participant, Role, ValidatorEntry, ValidatorSet,
};
pub use storage::store::Ledger;
