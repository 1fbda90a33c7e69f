//! The handle the rest of the node holds on the network layer.

use tokio::sync::{mpsc, oneshot, watch};
use tradeloop_crypto::PublicKey;

use crate::net::p2p::command::Command;
use crate::net::p2p::config::P2pLimits;
use crate::net::p2p::protocol::{GossipId, GossipVerdict, P2pError, P2pStats, Topic};
use libp2p::Multiaddr;

/// The one network operation the consensus driver's fetches and block sync need: a request to
/// a peer and its answer, within `timeout`. [`P2pHandle`] sends it over libp2p; the simulator
/// (`crate::sim`) over its simulated network.
pub trait PeerRequests: Clone + Send + Sync + 'static {
    /// Why a request got no answer.
    type Error: std::fmt::Display + Send;

    /// Sends `data` to `peer` and waits at most `timeout` for its answer.
    fn request(
        &self,
        peer: PublicKey,
        data: Vec<u8>,
        timeout: std::time::Duration,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, Self::Error>> + Send;
}

impl PeerRequests for P2pHandle {
    type Error = P2pError;

    async fn request(
        &self,
        peer: PublicKey,
        data: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<Vec<u8>, P2pError> {
        tokio::time::timeout(timeout, P2pHandle::request(self, peer, data))
            .await
            .unwrap_or(Err(P2pError::Timeout { peer: Box::new(peer) }))
    }
}

/// A cloneable handle to the event loop.
#[derive(Clone, Debug)]
pub struct P2pHandle {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) stats: watch::Receiver<P2pStats>,
    pub(crate) members: std::sync::Arc<std::collections::HashSet<PublicKey>>,
    pub(crate) limits: std::sync::Arc<P2pLimits>,
}

impl P2pHandle {
    /// Publishes `data` on `topic` to the connected members (this node does not receive its own
    /// message back). [`P2pError::NoPeers`] (no member subscribed yet) and
    /// [`P2pError::Duplicate`] mean nothing was sent and are not failures of the caller;
    /// [`P2pError::QueuesFull`] asks the caller to slow down; [`P2pError::TooLarge`] above
    /// [`P2pLimits::max_gossip_bytes`].
    pub async fn publish(&self, topic: Topic, data: Vec<u8>) -> Result<(), P2pError> {
        let max = self.limits.max_gossip_bytes;
        if data.len() > max {
            return Err(P2pError::TooLarge { what: "gossip", bytes: data.len(), max });
        }
        self.call(|reply| Command::Publish { topic, data, reply }).await?
    }

    /// Sends a request to a member and waits for its response (at most
    /// [`P2pLimits::request_timeout_ms`]).
    pub async fn request(&self, peer: PublicKey, data: Vec<u8>) -> Result<Vec<u8>, P2pError> {
        if !self.members.contains(&peer) {
            return Err(P2pError::NotMember(Box::new(peer)));
        }
        let max = self.limits.max_request_bytes;
        if data.len() > max {
            return Err(P2pError::TooLarge { what: "request", bytes: data.len(), max });
        }
        self.call(|reply| Command::Request { peer, data, reply }).await?
    }

    /// Reports the verdict on a gossip message; `Accept` forwards it, `Reject` drops it and
    /// penalises its sender. Never blocks: if the command channel is full the report is dropped
    /// and the message, never accepted, is not forwarded (it expires from gossipsub's cache).
    /// Report within a few seconds: gossipsub keeps an unjudged message for its message-cache
    /// history (5 heartbeats of 1 s); a later `Accept` finds nothing to forward.
    pub fn report(&self, id: GossipId, verdict: GossipVerdict) {
        // Dropping is safe in the direction that matters: an unreported message is never
        // forwarded.
        let _ = self.commands.try_send(Command::Report { id, verdict });
    }

    /// The members with at least one established connection.
    pub async fn peers(&self) -> Result<Vec<PublicKey>, P2pError> {
        self.call(Command::Peers).await
    }

    /// The addresses this node listens on. Waits until at least one configured listener has
    /// bound its address (so a port-0 listener reports its real port).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, P2pError> {
        self.call(Command::ListenAddrs).await
    }

    /// The gossipsub peer score this node gives a member, for diagnostics and metrics. Only
    /// rejected messages move it (module doc): 0 for a member that sent nothing invalid, `-n²`
    /// for `n` recent rejects (also 0 for a peer never seen). `None` only if peer scoring were
    /// off, which this configuration never does.
    pub async fn peer_score(&self, peer: PublicKey) -> Result<Option<f64>, P2pError> {
        self.call(|reply| Command::PeerScore { peer, reply }).await
    }

    /// The network layer's counters, as a [`watch`] receiver (`borrow()` for the current value,
    /// `wait_for(..)` to wait on a condition).
    pub fn stats(&self) -> watch::Receiver<P2pStats> {
        self.stats.clone()
    }

    /// Stops the event loop and waits until the swarm (and with it every connection and listener)
    /// is dropped. Returns at once if it already stopped.
    pub async fn shutdown(&self) {
        let _ = self.call(Command::Shutdown).await;
    }

    async fn call<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, P2pError> {
        let (reply, response) = oneshot::channel();
        self.commands.send(command(reply)).await.map_err(|_| P2pError::Stopped)?;
        response.await.map_err(|_| P2pError::Stopped)
    }
}
