//! What the network layer speaks of: the chain's topics, gossip ids and verdicts, the events
//! it delivers, its counters and errors, and peer ids of node keys.

use libp2p::gossipsub::{MessageId, TopicHash};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;
use tradeloop_crypto::{Hash, PublicKey};

/// A gossip topic of the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Batches of signed ledger events.
    Events,
    /// Consensus messages (proposals, proposal parts, votes).
    Consensus,
}

impl Topic {
    /// Both topics.
    pub const ALL: [Topic; 2] = [Topic::Events, Topic::Consensus];

    /// The gossipsub topic name: `tradeloop/<first 8 bytes of chain, hex>/<events|consensus>/1`.
    pub fn name(self, chain: &Hash) -> String {
        let kind = match self {
            Topic::Events => "events",
            Topic::Consensus => "consensus",
        };
        format!("tradeloop/{}/{kind}/1", hex::encode(&chain.as_bytes()[..8]))
    }
}

/// Identifies a received gossip message for [`P2pHandle::report`]: its content-derived message
/// id and the peer it came from (the one a `Reject` penalises).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GossipId {
    pub(crate) message_id: MessageId,
    pub(crate) source: PeerId,
}

impl GossipId {
    /// The message id bytes: SHA-256 of `len(topic) as u32 BE ‖ topic ‖ data`.
    pub fn message_id(&self) -> &[u8] {
        &self.message_id.0
    }
}

/// The runtime's judgement of a gossip message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GossipVerdict {
    /// Valid: forward it to the mesh.
    Accept,
    /// Invalid (bad signature or syntax): drop it and penalise the peer that sent it.
    Reject,
    /// Not forwarded, no penalty (late, duplicate, or not judged in time).
    Ignore,
}

/// What the network layer tells the runtime.
#[derive(Debug)]
pub enum P2pEvent {
    /// A gossip message awaiting a [`GossipVerdict`] (nothing is forwarded before `Accept`).
    Gossip {
        /// The topic it arrived on.
        topic: Topic,
        /// The member that forwarded it to us (the propagation source, not necessarily the
        /// author: messages carry no libp2p author; the payload's own signature names that).
        from: PublicKey,
        /// Pass it to [`P2pHandle::report`].
        id: GossipId,
        /// The payload.
        data: Vec<u8>,
    },
    /// A request from a member; answer through `reply`.
    Request {
        /// The member asking.
        from: PublicKey,
        /// The request body.
        data: Vec<u8>,
        /// Answers it; dropping it (or not answering within the request timeout) fails the
        /// request at the requester.
        reply: Responder,
    },
    /// The first connection with a member was established.
    Connected(PublicKey),
    /// The last connection with a member closed.
    Disconnected(PublicKey),
}

/// Answers one inbound request through the event loop.
#[derive(Debug)]
pub struct Responder {
    pub(crate) reply: oneshot::Sender<Vec<u8>>,
    pub(crate) max_response_bytes: usize,
}

impl Responder {
    /// Sends the response. Never blocks. Fails with [`P2pError::TooLarge`] above
    /// [`P2pLimits::max_response_bytes`] (nothing is sent and the request fails at the requester)
    /// and with [`P2pError::Stopped`] if the request is gone (timed out, or the node stopped).
    pub fn send(self, data: Vec<u8>) -> Result<(), P2pError> {
        if data.len() > self.max_response_bytes {
            return Err(P2pError::TooLarge {
                what: "response",
                bytes: data.len(),
                max: self.max_response_bytes,
            });
        }
        self.reply.send(data).map_err(|_| P2pError::Stopped)
    }
}

/// Counters and gauges of the network layer, published by the event loop through a
/// [`watch`] channel ([`P2pHandle::stats`]) so metrics and tests can wait on a condition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct P2pStats {
    /// Members with at least one established connection.
    pub connected_members: usize,
    /// Connected peers subscribed to the events topic.
    pub events_topic_peers: usize,
    /// Peers in this node's gossipsub mesh for the events topic.
    pub events_mesh_peers: usize,
    /// Connected peers subscribed to the consensus topic.
    pub consensus_topic_peers: usize,
    /// Peers in this node's gossipsub mesh for the consensus topic.
    pub consensus_mesh_peers: usize,
    /// Connections refused by gating or by a connection limit, inbound and outbound.
    pub refused_connections: u64,
    /// Gossip messages the runtime rejected.
    pub rejected_messages: u64,
    /// Events dropped because the runtime's event channel was full.
    pub dropped_events: u64,
}

/// Why a network operation failed. [`P2pError::code`] gives a stable code.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    /// A limit that must be at least 1 is 0.
    #[error("invalid network configuration: limits.{0} must be at least 1; fix the node's network settings")]
    ZeroLimit(&'static str),
    /// A bootstrap address without the peer id.
    #[error("invalid network configuration: bootstrap address {0} does not end with /p2p/<peer id>; fix the node's network settings")]
    BootstrapAddress(Multiaddr),
    /// A bootstrap peer that is not a member (it would be refused).
    #[error("invalid network configuration: bootstrap peer {0} is not a member key; it would be refused; fix the node's network settings")]
    BootstrapNotMember(PeerId),
    /// The node's secret is not an ed25519 secret key.
    #[error("invalid network configuration: the node secret is not an ed25519 secret key; check the node's key file")]
    NodeSecret(#[source] libp2p::identity::DecodingError),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}; check the address and that the port is free")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// The transport or a protocol could not be set up.
    #[error("cannot start the network layer: {what} failed")]
    Setup {
        /// The part that failed.
        what: &'static str,
        /// libp2p's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No connected member subscribes to the topic yet, so nothing was sent. Not a failure of
    /// the message: retry after a peer connects (or rely on the next publish).
    #[error("no connected member subscribes to {topic:?} yet; nothing was sent, retry once a peer is connected")]
    NoPeers {
        /// The topic.
        topic: Topic,
    },
    /// The same payload was published on this topic within [`P2pLimits::duplicate_window_ms`]
    /// (message ids are content-derived); a re-broadcast must differ in its bytes.
    #[error("this payload was already published on {topic:?}; nothing was sent again")]
    Duplicate {
        /// The topic.
        topic: Topic,
    },
    /// A payload above its bound.
    #[error("{what} of {bytes} bytes exceeds the bound of {max} bytes; split it or raise the limit on every node")]
    TooLarge {
        /// "gossip", "request" or "response".
        what: &'static str,
        /// Its size.
        bytes: usize,
        /// The bound.
        max: usize,
    },
    /// Every subscribed peer's send queue is full: the network is slower than the publisher.
    /// Nothing was sent, and gossipsub has already recorded the message id, so publishing the
    /// same bytes again reports [`P2pError::Duplicate`] within the duplicate window: back off
    /// and send the content in a new batch (this is the publish path's backpressure).
    #[error("the send queues of all {peers} subscribed peers are full; nothing was sent, slow down and resend in a new batch")]
    QueuesFull {
        /// Peers whose queue was full.
        peers: usize,
    },
    /// Gossipsub refused the message for another reason.
    #[error("gossipsub refused the message: {0}")]
    Publish(String),
    /// The peer is not a member, so it is never connected.
    #[error("{0:?} is not a member of this chain; requests go only to member nodes")]
    NotMember(Box<PublicKey>),
    /// The peer could not be dialled.
    #[error("cannot reach {peer:?}: {reason}; it may be down, retry later")]
    Unreachable {
        /// The peer.
        peer: Box<PublicKey>,
        /// Why.
        reason: String,
    },
    /// The request was not answered in time.
    #[error("{peer:?} did not answer within the request timeout; retry or ask another member")]
    Timeout {
        /// The peer.
        peer: Box<PublicKey>,
    },
    /// The request failed after it was sent (connection closed, the peer refused or dropped it,
    /// or a frame exceeded a bound).
    #[error("request to {peer:?} failed: {reason}; retry or ask another member")]
    RequestFailed {
        /// The peer.
        peer: Box<PublicKey>,
        /// Why.
        reason: String,
    },
    /// Too many requests are outstanding.
    #[error("{0} requests are already outstanding; wait for some to finish")]
    Busy(usize),
    /// The event loop has stopped.
    #[error("the network layer has stopped; restart the node")]
    Stopped,
}

impl P2pError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            P2pError::ZeroLimit(_)
            | P2pError::BootstrapAddress(_)
            | P2pError::BootstrapNotMember(_)
            | P2pError::NodeSecret(_) => "P2P_CONFIG",
            P2pError::Listen { .. } => "P2P_LISTEN",
            P2pError::Setup { .. } => "P2P_SETUP",
            P2pError::NoPeers { .. } => "P2P_NO_PEERS",
            P2pError::Duplicate { .. } => "P2P_DUPLICATE",
            P2pError::TooLarge { .. } => "P2P_TOO_LARGE",
            P2pError::QueuesFull { .. } => "P2P_QUEUES_FULL",
            P2pError::Publish(_) => "P2P_PUBLISH",
            P2pError::NotMember(_) => "P2P_NOT_MEMBER",
            P2pError::Unreachable { .. } => "P2P_UNREACHABLE",
            P2pError::Timeout { .. } => "P2P_TIMEOUT",
            P2pError::RequestFailed { .. } => "P2P_REQUEST_FAILED",
            P2pError::Busy(_) => "P2P_BUSY",
            P2pError::Stopped => "P2P_STOPPED",
        }
    }
}

/// The libp2p peer id of a node key (ed25519 peer ids embed the key).
pub fn peer_id(key: &PublicKey) -> PeerId {
    match libp2p::identity::ed25519::PublicKey::try_from_bytes(key.as_bytes()) {
        Ok(ed25519) => libp2p::identity::PublicKey::from(ed25519).to_peer_id(),
        // A tradeloop PublicKey is a checked curve point, which libp2p accepts by the same check.
        Err(_) => unreachable!("a parsed PublicKey is a valid ed25519 key"),
    }
}

/// The node key embedded in an ed25519 peer id; `None` for any other kind of peer id.
pub fn public_key(peer: &PeerId) -> Option<PublicKey> {
    /// Multihash code of the identity hash, used for ed25519 peer ids (the key is inline).
    const IDENTITY_MULTIHASH: u64 = 0x00;
    let multihash: &libp2p::multihash::Multihash<64> = peer.as_ref();
    if multihash.code() != IDENTITY_MULTIHASH {
        return None;
    }
    let key = libp2p::identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    let ed25519 = key.try_into_ed25519().ok()?;
    PublicKey::from_bytes(ed25519.to_bytes()).ok()
}

/// The topic of a topic hash, if it is one of this chain's.
pub(crate) fn topic_of(hash: &TopicHash, topics: &[(Topic, TopicHash); 2]) -> Option<Topic> {
    topics.iter().find(|(_, h)| h == hash).map(|(t, _)| *t)
}
