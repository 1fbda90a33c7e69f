//! Consensus: Malachite's Tendermint round logic behind our [`context`], driven by
//! the sans-IO [`core::ConsensusCore`]; the [`guard`] that makes double-signing impossible across
//! restarts; the per-height [`wal`]. Status and what is missing: docs/consensus.md.

pub mod context;
pub mod core;
pub mod guard;
pub mod inbound;
pub mod parts;
pub mod streamed;
pub mod wal;
pub mod walrecord;
