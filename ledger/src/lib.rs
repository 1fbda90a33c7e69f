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

pub mod block;
pub mod canonical;
pub mod codec;
pub mod error;
pub mod event;
pub mod fields;
pub mod genesis;
pub mod rules;
pub mod sample;
pub mod state;

pub use error::{LedgerError, RejectCode, Rejection};
pub use event::{check_event, check_event_batch, Event, Payload, SignedEvent};
pub use genesis::{Genesis, GenesisDoc, KeyEntry, Participant, Role, ValidatorEntry, ValidatorSet};
pub mod blocklog;
pub mod execute;
pub mod failpoint;
pub mod frame;
pub mod index;
pub mod restore;
pub mod store;

pub use block::{Block, CertifiedBlock, CommitCertificate, Header, Tip};
pub use store::Ledger;
pub mod audit;
pub mod compare;
pub mod epcis;
pub mod export;
pub mod jsonl;
pub mod proof;
pub mod query;
