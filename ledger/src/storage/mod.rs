//! The ledger on disk: the block log (the source of truth), the index behind its trait, the
//! [`store::Ledger`] that builds, validates, commits and reads blocks over both, and restore.

pub mod blocklog;
pub mod failpoint;
pub mod index;
pub mod restore;
pub mod schema;
pub mod store;
