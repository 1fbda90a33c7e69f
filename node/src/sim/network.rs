//! The simulated network: what travels between validators, and the requests a validator's own
//! code makes of its peers (sync's block requests, a proposal's event fetch), which the
//! simulation carries with its faults and answers with the peer's own code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tradeloop_crypto::PublicKey;
use tradeloop_ledger::SignedEvent;

use crate::net::p2p::PeerRequests;

/// What one validator sends another.
#[derive(Clone, Debug)]
pub(super) enum Msg {
    /// Gossip on the consensus topic: an encoded [`crate::net::message::ConsensusWire`].
    Consensus(Vec<u8>),
    /// Gossip on the events topic: events a client submitted to the sender.
    Events(Vec<SignedEvent>),
    /// A request ([`crate::net::message::Request`], encoded).
    Request {
        /// The requester's id for it.
        id: u64,
        /// The request.
        data: Vec<u8>,
    },
    /// The answer to a request ([`crate::net::message::Response`], encoded).
    Response {
        /// The requester's id for it.
        id: u64,
        /// The answer.
        data: Vec<u8>,
    },
}

/// A request a validator's code made, for the simulation to carry.
#[derive(Debug)]
pub(super) struct Asked {
    /// The requester's id for it.
    pub id: u64,
    /// To whom.
    pub peer: PublicKey,
    /// The request.
    pub data: Vec<u8>,
    /// When the requester gives up on it, from now.
    pub timeout_ms: u64,
}

/// Why a simulated request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The peer did not answer in time (lost, cut off, paused or down).
    #[error("no answer within the timeout")]
    Timeout,
    /// The requesting node restarted.
    #[error("the request was dropped")]
    Dropped,
}

type Waiting = HashMap<u64, oneshot::Sender<Result<Vec<u8>, NetError>>>;

/// One validator's [`PeerRequests`] in the simulation: requests wait in `asked` until the
/// simulation takes them, and their futures complete when it answers them.
#[derive(Clone, Debug, Default)]
pub(super) struct SimRequests {
    inner: Arc<Mutex<Requests>>,
}

#[derive(Debug, Default)]
struct Requests {
    next_id: u64,
    asked: Vec<Asked>,
    waiting: Waiting,
}

impl SimRequests {
    fn lock(&self) -> std::sync::MutexGuard<'_, Requests> {
        // Single-threaded: the lock is never held across a panic that matters.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The requests made since the last call.
    pub(super) fn take_asked(&self) -> Vec<Asked> {
        std::mem::take(&mut self.lock().asked)
    }

    /// Completes request `id` (if still waiting); whether it was.
    pub(super) fn complete(&self, id: u64, result: Result<Vec<u8>, NetError>) -> bool {
        match self.lock().waiting.remove(&id) {
            Some(reply) => reply.send(result).is_ok(),
            None => false,
        }
    }

    /// Forgets every request (the node crashed).
    pub(super) fn clear(&self) {
        let mut r = self.lock();
        r.asked.clear();
        r.waiting.clear();
    }
}

impl PeerRequests for SimRequests {
    type Error = NetError;

    fn request(
        &self,
        peer: PublicKey,
        data: Vec<u8>,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, NetError>> + Send {
        let (reply, answer) = oneshot::channel();
        {
            let mut r = self.lock();
            r.next_id += 1;
            let id = r.next_id;
            let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            r.asked.push(Asked { id, peer, data, timeout_ms });
            r.waiting.insert(id, reply);
        }
        async move { answer.await.unwrap_or(Err(NetError::Dropped)) }
    }
}
