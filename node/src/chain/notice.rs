//! What the chain worker tells the rest of the node after each commit: where events are
//! committed, and which accepted events the commit evicted.

use serde::{Deserialize, Serialize};
use tradeloop_crypto::Hash;

use crate::hex_hash;

/// Where an event is committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// Block height.
    pub height: u64,
    /// Hash of that block.
    #[serde(with = "hex_hash")]
    pub block_hash: Hash,
    /// Position of the event in the block, from 0.
    pub index: u32,
}

/// Broadcast by the runtime after each commit (`tokio::sync::broadcast`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitNotice {
    /// Height of the committed block.
    pub height: u64,
    /// Its hash.
    pub block_hash: Hash,
    /// The ids of its events, in block order (an event's position here is its index).
    pub event_ids: Vec<Hash>,
    /// Events this node had accepted that the rules refuse after this commit (a conflicting
    /// event won): they left the mempool and will never commit here. Waiters get `rejected`.
    pub evicted: Vec<Evicted>,
}

/// An accepted event evicted from the mempool by a commit, with the rules' verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evicted {
    /// Event id.
    pub id: Hash,
    /// Stable rejection code.
    pub code: String,
    /// What was wrong and what to do.
    pub message: String,
}
