//! What the ledger records: signed events and their fields, blocks with their commit
//! certificates, and the genesis that fixes the participants and validators.

pub mod block;
pub mod event;
pub mod fields;
pub mod genesis;
