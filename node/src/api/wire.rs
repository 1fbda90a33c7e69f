//! The JSON of `POST /v1/events` answers, shared with the CLI so both ends read one definition.

use serde::{Deserialize, Serialize};
use tradeloop_crypto::Hash;

use super::{hex_hash, Committed, Verdict};

/// The body of a 200 answer to `POST /v1/events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// One result per submitted event, in request order.
    pub results: Vec<EventResult>,
    /// With `?wait=commit`: whether the wait ended before every accepted event was committed
    /// (those are `pending`). Absent without a wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timed_out: Option<bool>,
}

/// What became of one event of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EventResult {
    /// In the mempool.
    Accepted {
        /// Event id.
        #[serde(with = "hex_hash")]
        id: Hash,
    },
    /// On the chain.
    Committed {
        /// Event id.
        #[serde(with = "hex_hash")]
        id: Hash,
        /// Block height.
        height: u64,
        /// Block hash.
        #[serde(with = "hex_hash")]
        block_hash: Hash,
        /// Position in the block.
        index: u32,
    },
    /// Refused; `code` is stable.
    Rejected {
        /// Event id, when the envelope parsed far enough to have one.
        #[serde(default, with = "hex_hash::option", skip_serializing_if = "Option::is_none")]
        id: Option<Hash>,
        /// Stable code, e.g. `MALFORMED_EVENT`.
        code: String,
        /// What was wrong and what to do.
        message: String,
    },
    /// The mempool had no room: submit it again after `retry_after_ms`.
    Full {
        /// Event id.
        #[serde(with = "hex_hash")]
        id: Hash,
        /// Wait before resubmitting, in milliseconds.
        retry_after_ms: u64,
    },
    /// Accepted, not committed when the `?wait=commit` wait ended.
    Pending {
        /// Event id.
        #[serde(with = "hex_hash")]
        id: Hash,
    },
}

impl EventResult {
    /// The result for a committed event.
    pub fn committed(id: Hash, at: Committed) -> EventResult {
        EventResult::Committed { id, height: at.height, block_hash: at.block_hash, index: at.index }
    }
}

impl From<Verdict> for EventResult {
    fn from(verdict: Verdict) -> EventResult {
        match verdict {
            Verdict::Accepted { id } => EventResult::Accepted { id },
            Verdict::AlreadyCommitted { id, at } => EventResult::committed(id, at),
            Verdict::Rejected { id, code, message } => EventResult::Rejected { id, code, message },
            Verdict::MempoolFull { id, retry_after_ms } => EventResult::Full { id, retry_after_ms },
        }
    }
}
