//! The tradeloop node: consensus, networking and the runtime.
//!
//! Today: [`consensus`] (Malachite embedded behind our context and adapter, the sign-state
//! guard, the WAL), the simulator, and [`p2p`] (the libp2p network layer, moving opaque bytes
//! for the runtime). The runtime and the HTTP API follow.

#![warn(missing_docs)]

pub mod chain;
pub mod config;
pub mod consensus;
pub mod mempool;
pub mod p2p;
pub mod runtime;
pub mod sim;
pub mod sync;
pub mod wire;
