//! What the network layer needs to start, and its bounds with their defaults.

use tradeloop_crypto::{Hash, PublicKey};

use libp2p::Multiaddr;

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
