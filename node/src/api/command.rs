//! What the API asks of the runtime, and what the runtime answers.

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tradeloop_crypto::Hash;
use tradeloop_ledger::SignedEvent;

use crate::api::dto::EventResult;
use crate::chain::notice::Committed;
use crate::hex_hash;

/// A request from the API to the runtime, answered on its one-shot channel.
#[derive(Debug)]
pub enum ApiCommand {
    /// Admit events into the mempool; one result per event, in order.
    Submit {
        /// The parsed events, in request order.
        events: Vec<SignedEvent>,
        /// Exactly `events.len()` results, in the same order (never `Pending`: the API
        /// waits for commits itself).
        reply: oneshot::Sender<Vec<EventResult>>,
    },
    /// Where these events are committed, if they are (for wait=commit after a missed notice).
    Lookup {
        /// Event ids.
        ids: Vec<Hash>,
        /// Exactly `ids.len()` answers, in the same order.
        reply: oneshot::Sender<Vec<Option<Committed>>>,
    },
    /// The node's status.
    Status {
        /// The answer.
        reply: oneshot::Sender<NodeStatus>,
    },
}

/// What `GET /v1/status` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeStatus {
    /// The genesis file's chain id.
    pub chain_id: String,
    /// The genesis hash (names the chain).
    #[serde(with = "hex_hash")]
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub genesis_hash: Hash,
    /// Height of the last committed block (0 before the first).
    pub height: u64,
    /// Hash of the last committed block.
    #[serde(with = "hex_hash")]
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub tip_hash: Hash,
    /// Whether this node votes.
    pub validator: bool,
    /// The node's public key, hex.
    pub node_key: String,
    /// Peer ids of the connected peers.
    pub connected_peers: Vec<String>,
    /// Events in the mempool.
    pub mempool_events: u64,
    /// Bytes of those events.
    pub mempool_bytes: u64,
    /// Whether the node is catching up with its peers.
    pub syncing: bool,
    /// Connections refused since start (a peer not in the genesis, or over a connection
    /// limit).
    pub refused_connections: u64,
    /// Gossip messages rejected since start (undecodable, oversize, badly signed or from the
    /// wrong sender); their senders are penalised.
    pub rejected_gossip: u64,
}
