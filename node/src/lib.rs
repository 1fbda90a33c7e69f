//! The tradeloop node: consensus, networking and the runtime.
//!
//! Today: [`consensus`] (Malachite embedded behind our context and adapter, the sign-state
//! guard, the WAL). The simulator, networking and the HTTP API follow.

#![warn(missing_docs)]

pub mod consensus;
pub mod p2p;
pub mod sim;
