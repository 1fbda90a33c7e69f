//! The tradeloop node: consensus, networking and the runtime.
//!
//! Today: [`consensus`] (Malachite embedded behind our context and adapter, the sign-state
//! guard, the WAL), the simulator, [`p2p`] (the libp2p network layer), [`api`] (the HTTP
//! ingress), the [`mempool`], the [`chain`] worker, block [`sync`], and the [`runtime`] that wires
//! them into a member node.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod chain;
pub mod clock;
pub mod config;
pub mod consensus;
pub mod hex_hash;
pub mod mempool;
pub mod metrics;
pub mod net;
pub mod outage;
pub mod runtime;
pub mod sim;
pub mod time;
