//! The tradeloop node: consensus, networking and the runtime.
//!
//! Today: the consensus sign-state guard ([`consensus::guard`]). The Malachite round logic, the
//! WAL, the deterministic simulator, networking and the HTTP API follow in later issues.

#![warn(missing_docs)]

pub mod consensus;
