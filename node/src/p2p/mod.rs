//! The libp2p network layer of the node, agnostic of ledger types: it moves opaque
//! bytes, and the runtime encodes, decodes and judges them.
//!
//! ```text
//!  runtime ──P2pHandle (cloneable)──► commands (bounded mpsc) ──► EventLoop ──► Swarm
//!     ▲                                                            (one task owns it)
//!     └────────── P2pEvent (bounded mpsc) ◄─────────────────────────────┘
//! ```
//!
//! **One task owns the [`libp2p::Swarm`].** [`spawn`] starts it; a [`P2pHandle`] sends it
//! commands with one-shot replies, and it hands [`P2pEvent`]s to the runtime. Both channels are
//! bounded ([`P2pLimits::command_channel`], [`P2pLimits::event_channel`]). The loop never waits
//! on the runtime: an event that does not fit in the event channel is dropped and counted
//! ([`P2pStats::dropped_events`]), a dropped gossip is reported `Ignore` (so it is not forwarded)
//! and a dropped request fails at the requester, so a runtime that calls the handle while it is
//! behind on events cannot deadlock the loop.
//!
//! **Transport.** TCP + Noise + Yamux; no QUIC (its feature pulls in a C build). The libp2p key
//! is the node's ed25519 key ([`P2pConfig::node_secret`]), so a member's [`PeerId`] follows from
//! its public key in the genesis ([`peer_id`], [`public_key`]).
//!
//! **Gating.** Only member keys may connect: `allow_block_list::Behaviour<AllowedPeers>` denies
//! any other peer id when the connection is established (after the Noise handshake proves the
//! key), inbound or outbound, so a stranger is never reported [`P2pEvent::Connected`] and none of
//! its bytes reach gossipsub or request-response. `connection_limits::Behaviour` caps the number
//! of established connections, per peer and in all, and of pending inbound ones.
//!
//! **Gossip.** Two gossipsub topics per chain, named from the genesis hash
//! (`tradeloop/<first 8 bytes of the hash, hex>/events/1` and `.../consensus/1`, [`Topic::name`]).
//! Messages carry no libp2p signature, author or sequence number
//! (`MessageAuthenticity::Anonymous`, `ValidationMode::Anonymous`, which also refuses messages
//! that do carry them): events and consensus messages are signed by their authors already, and
//! libp2p's signatures would cost a second verification per message (3-5x less throughput).
//! The message id is derived from the content, SHA-256 of `len(topic) as u32 BE ‖ topic ‖ data`
//! (the default id of an anonymous message is empty, which would make every message a
//! duplicate). With `validate_messages()` nothing is forwarded until the runtime reports
//! [`Verdict::Accept`] through [`P2pHandle::report`]; `Reject` removes the message and counts an
//! invalid delivery against the peer that sent it; `Ignore` removes it without penalty (use it
//! for messages that are merely late or duplicate).
//!
//! **Penalty for invalid messages.** Gossipsub peer scoring is on, with only the invalid-message
//! term (P4) weighted: a peer's topic score is `INVALID_MESSAGE_WEIGHT × n²` for `n` rejected
//! messages, `n` decaying by `INVALID_MESSAGE_DECAY` each second. With a weight of -1, four
//! recent rejects put a peer below the gossip threshold (-10: no IHAVE/IWANT with it), eight
//! below the publish threshold (-50) and nine below the graylist threshold (-80: everything it
//! sends is ignored until the count decays). The peer is not disconnected: it is a member and would
//! be redialled; ignoring it is the same effect without churn. IP colocation scoring is off (the
//! members are known; several may share a host), and so is the slow-peer penalty (a member
//! whose send queue is full is slow, not malicious; the publisher sees [`P2pError::QueuesFull`]),
//! and so are the behaviour penalties for broken IWANT promises and GRAFTs during a prune backoff
//! (a member behind a link that black-holed for a while breaks every promise it made; at
//! gossipsub's default weight three of them would graylist it, its own votes included).
//!
//! **Request-response.** One protocol, `/tradeloop/<chain>/rpc/1`, with a length-prefixed byte
//! codec that caps every read (`take(len)` after checking `len` against
//! [`P2pLimits::max_request_bytes`] / [`P2pLimits::max_response_bytes`]); requests time out after
//! [`P2pLimits::request_timeout_ms`], and a [`Responder`] not answered by then is dropped, which
//! fails the request at the requester.
//!
//! **Bootstrap.** Each [`P2pConfig::bootstrap`] address (with its `/p2p/<peer id>`) is dialled at
//! start and redialled with exponential backoff ([`P2pLimits::redial_initial_ms`] doubling up to
//! [`P2pLimits::redial_max_ms`]) while that peer is disconnected.
//!
//! **Backpressure.** [`P2pHandle::publish`] waits for room in the command channel; when every
//! peer's gossipsub send queue is full it fails with [`P2pError::QueuesFull`], as it fails with
//! [`P2pError::NoPeers`] before any member subscribed: neither is a reason to stop the caller.
//!
//! Bounds, all in [`P2pLimits`]: gossip payload bytes (per message, and twice that per stream
//! frame), request and response bytes, connections in all and per peer, pending inbound
//! connections, concurrent streams per connection, outstanding requests, queued gossip messages
//! per connection, the duplicate window, both channels, the request timeout and the
//! idle-connection timeout.

mod codec;
mod event_loop;
#[cfg(test)]
mod tests;

use libp2p::gossipsub::{MessageId, TopicHash};
pub use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot, watch};
use tradeloop_crypto::{Hash, PublicKey};

use event_loop::Command;

/// Default [`P2pLimits::max_gossip_bytes`]: 1 MiB of payload per gossip message.
pub const DEFAULT_MAX_GOSSIP_BYTES: usize = 1 << 20;
/// Default [`P2pLimits::max_request_bytes`]: 64 KiB per request.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 << 10;
/// Default [`P2pLimits::max_response_bytes`]: 16 MiB per response (a range of blocks).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Default [`P2pLimits::max_established_connections`]: 64 connections in all.
pub const DEFAULT_MAX_ESTABLISHED_CONNECTIONS: u32 = 64;
/// Default [`P2pLimits::max_connections_per_peer`]: 2 (two members may dial each other at once).
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: u32 = 2;
/// Default [`P2pLimits::max_pending_incoming_connections`]: 16 handshakes in progress.
pub const DEFAULT_MAX_PENDING_INCOMING_CONNECTIONS: u32 = 16;
/// Default [`P2pLimits::max_concurrent_streams`]: 64 request-response streams per connection.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: usize = 64;
/// Default [`P2pLimits::max_pending_requests`]: 256 outbound requests awaiting a response.
pub const DEFAULT_MAX_PENDING_REQUESTS: usize = 256;
/// Default [`P2pLimits::max_queued_messages_per_connection`]: 5,000 gossipsub messages.
pub const DEFAULT_MAX_QUEUED_MESSAGES_PER_CONNECTION: usize = 5000;
/// Default [`P2pLimits::duplicate_window_ms`]: 60 s (gossipsub's default).
pub const DEFAULT_DUPLICATE_WINDOW_MS: u64 = 60_000;
/// Default [`P2pLimits::command_channel`]: 1,024 commands queued for the event loop.
pub const DEFAULT_COMMAND_CHANNEL: usize = 1024;
/// Default [`P2pLimits::event_channel`]: 4,096 events queued for the runtime.
pub const DEFAULT_EVENT_CHANNEL: usize = 4096;
/// Default [`P2pLimits::request_timeout_ms`]: 10 s.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Default [`P2pLimits::idle_connection_timeout_ms`]: 60 s.
pub const DEFAULT_IDLE_CONNECTION_TIMEOUT_MS: u64 = 60_000;
/// Default [`P2pLimits::redial_initial_ms`]: 250 ms.
pub const DEFAULT_REDIAL_INITIAL_MS: u64 = 250;
/// Default [`P2pLimits::redial_max_ms`]: 30 s.
pub const DEFAULT_REDIAL_MAX_MS: u64 = 30_000;

/// What the network layer needs to start.
#[derive(Clone)]
pub struct P2pConfig {
    /// The ed25519 seed of this node's key (a `tradeloop_crypto::SigningKey` secret); the libp2p
    /// identity derives from it, so this node's [`PeerId`] is `peer_id(&its public key)`.
    pub node_secret: [u8; 32],
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/7000` (port 0 picks a free port; read the
    /// bound address with [`P2pHandle::listen_addrs`]).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and to redial with backoff while disconnected; each address ends
    /// with `/p2p/<peer id>` and names a member.
    pub bootstrap: Vec<Multiaddr>,
    /// The allow-list: the ed25519 node keys of the member nodes (from the genesis). This node's
    /// own key may be in it.
    pub members: Vec<PublicKey>,
    /// The genesis hash; topic and protocol names derive from it.
    pub chain: Hash,
    /// Bounds.
    pub limits: P2pLimits,
}

impl std::fmt::Debug for P2pConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P2pConfig")
            .field("node_secret", &"<redacted>")
            .field("listen", &self.listen)
            .field("bootstrap", &self.bootstrap)
            .field("members", &self.members)
            .field("chain", &self.chain)
            .field("limits", &self.limits)
            .finish()
    }
}

/// Every bound of the network layer; [`Default`] gives the `DEFAULT_*` constants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct P2pLimits {
    /// Largest gossip payload published or accepted, in bytes. Gossipsub's per-message bound is
    /// this plus [`GOSSIP_FRAMING_BYTES`] for the topic and protobuf framing; a larger message
    /// is dropped as invalid (and charged to its sender). A stream frame may be twice that; a
    /// larger frame resets that peer's stream (what it had queued behind it is lost).
    pub max_gossip_bytes: usize,
    /// Largest request body sent or accepted, in bytes.
    pub max_request_bytes: usize,
    /// Largest response body sent or accepted, in bytes.
    pub max_response_bytes: usize,
    /// Established connections in all.
    pub max_established_connections: u32,
    /// Established connections with one peer.
    pub max_connections_per_peer: u32,
    /// Inbound connections still in their handshake.
    pub max_pending_incoming_connections: u32,
    /// Concurrent request-response streams per connection.
    pub max_concurrent_streams: usize,
    /// Outbound requests awaiting their response; beyond it [`P2pHandle::request`] fails with
    /// [`P2pError::Busy`].
    pub max_pending_requests: usize,
    /// Gossipsub messages queued for sending on one connection; when every subscribed peer's
    /// queue is full, [`P2pHandle::publish`] fails with [`P2pError::QueuesFull`].
    pub max_queued_messages_per_connection: usize,
    /// How long a message id is remembered to drop duplicates, in milliseconds: within it, the
    /// same bytes on the same topic are neither received twice nor published twice.
    pub duplicate_window_ms: u64,
    /// Commands queued from handles to the event loop.
    pub command_channel: usize,
    /// Events queued from the event loop to the runtime.
    pub event_channel: usize,
    /// Time for a request to be answered (and for a [`Responder`] to answer), in milliseconds.
    pub request_timeout_ms: u64,
    /// A connection with no stream open for this long is closed, in milliseconds.
    pub idle_connection_timeout_ms: u64,
    /// First redial delay of a disconnected bootstrap peer, in milliseconds.
    pub redial_initial_ms: u64,
    /// Largest redial delay (the delay doubles after every failed attempt), in milliseconds.
    pub redial_max_ms: u64,
}

/// Bytes gossipsub's transmit bound allows beyond [`P2pLimits::max_gossip_bytes`]: the topic
/// name and the protobuf framing of the message and of its RPC.
pub const GOSSIP_FRAMING_BYTES: usize = 1024;

impl Default for P2pLimits {
    fn default() -> Self {
        P2pLimits {
            max_gossip_bytes: DEFAULT_MAX_GOSSIP_BYTES,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_established_connections: DEFAULT_MAX_ESTABLISHED_CONNECTIONS,
            max_connections_per_peer: DEFAULT_MAX_CONNECTIONS_PER_PEER,
            max_pending_incoming_connections: DEFAULT_MAX_PENDING_INCOMING_CONNECTIONS,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_pending_requests: DEFAULT_MAX_PENDING_REQUESTS,
            max_queued_messages_per_connection: DEFAULT_MAX_QUEUED_MESSAGES_PER_CONNECTION,
            duplicate_window_ms: DEFAULT_DUPLICATE_WINDOW_MS,
            command_channel: DEFAULT_COMMAND_CHANNEL,
            event_channel: DEFAULT_EVENT_CHANNEL,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            idle_connection_timeout_ms: DEFAULT_IDLE_CONNECTION_TIMEOUT_MS,
            redial_initial_ms: DEFAULT_REDIAL_INITIAL_MS,
            redial_max_ms: DEFAULT_REDIAL_MAX_MS,
        }
    }
}

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
    message_id: MessageId,
    source: PeerId,
}

impl GossipId {
    /// The message id bytes: SHA-256 of `len(topic) as u32 BE ‖ topic ‖ data`.
    pub fn message_id(&self) -> &[u8] {
        &self.message_id.0
    }
}

/// The runtime's judgement of a gossip message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
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
    /// A gossip message awaiting a [`Verdict`] (nothing is forwarded before `Accept`).
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
    reply: oneshot::Sender<Vec<u8>>,
    max_response_bytes: usize,
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
    /// The configuration cannot be used.
    #[error("invalid network configuration: {0}; fix the node's network settings")]
    Config(String),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}; check the address and that the port is free")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// The transport or a protocol could not be set up.
    #[error("cannot start the network layer: {0}")]
    Setup(String),
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
            P2pError::Config(_) => "P2P_CONFIG",
            P2pError::Listen { .. } => "P2P_LISTEN",
            P2pError::Setup(_) => "P2P_SETUP",
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
    commands: mpsc::Sender<Command>,
    stats: watch::Receiver<P2pStats>,
    members: std::sync::Arc<std::collections::HashSet<PublicKey>>,
    limits: std::sync::Arc<P2pLimits>,
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
    pub fn report(&self, id: GossipId, verdict: Verdict) {
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

/// Starts the network layer on the current tokio runtime: builds the swarm, binds the listen
/// addresses, subscribes to both topics, dials the bootstrap peers and spawns the event loop.
/// Returns the handle, the receiver of events (bounded by [`P2pLimits::event_channel`]) and the
/// task, which ends after [`P2pHandle::shutdown`] or when every handle is dropped.
pub fn spawn(
    config: P2pConfig,
) -> Result<(P2pHandle, mpsc::Receiver<P2pEvent>, tokio::task::JoinHandle<()>), P2pError> {
    event_loop::spawn(config)
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
fn topic_of(hash: &TopicHash, topics: &[(Topic, TopicHash); 2]) -> Option<Topic> {
    topics.iter().find(|(_, h)| h == hash).map(|(t, _)| *t)
}
