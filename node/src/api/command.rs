//! What the API asks of the runtime, and what the runtime answers.

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tradeloop_crypto::Hash;
use tradeloop_ledger::SignedEvent;

use crate::chain::notice::Committed;
use crate::hex_hash;

/// A request from the API to the runtime, answered on its one-shot channel.
#[derive(Debug)]
pub enum ApiCommand {
    /// Admit events into the mempool; one verdict per event, in order.
    Submit {
        /// The parsed events, in request order.
        events: Vec<SignedEvent>,
        /// Exactly `events.len()` verdicts, in the same order.
        reply: oneshot::Sender<Vec<Verdict>>,
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

/// The runtime's verdict on one submitted event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted into the mempool.
    Accepted {
        /// The event id.
        id: Hash,
    },
    /// Already on the chain (a resubmission): nothing was added.
    AlreadyCommitted {
        /// The event id.
        id: Hash,
        /// Where it is.
        at: Committed,
    },
    /// Refused by the checks or the rules; `code` is a stable [`tradeloop_ledger::RejectCode`]
    /// string.
    Rejected {
        /// The event id, when the event parsed far enough to have one.
        id: Option<Hash>,
        /// Stable machine-readable code, e.g. `BAD_SIGNATURE`.
        code: String,
        /// What was wrong and what to do, for a person.
        message: String,
    },
    /// The mempool has no room; submit again after `retry_after_ms`.
    MempoolFull {
        /// The event id.
        id: Hash,
        /// How long to wait before submitting again, in milliseconds.
        retry_after_ms: u64,
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
