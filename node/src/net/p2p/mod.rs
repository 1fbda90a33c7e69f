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
//! [`GossipVerdict::Accept`] through [`P2pHandle::report`]; `Reject` removes the message and counts an
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
mod command;
pub mod config;
mod event_loop;
pub mod handle;
pub mod protocol;
#[cfg(test)]
mod tests;

pub use config::*;
pub use handle::{P2pHandle, PeerRequests};
pub use libp2p::{Multiaddr, PeerId};
pub use protocol::{
    peer_id, public_key, GossipId, GossipVerdict, P2pError, P2pEvent, P2pStats, Responder, Topic,
};
use tokio::sync::mpsc;

/// Starts the network layer on the current tokio runtime: builds the swarm, binds the listen
/// addresses, subscribes to both topics, dials the bootstrap peers and spawns the event loop.
/// Returns the handle, the receiver of events (bounded by [`P2pLimits::event_channel`]) and the
/// task, which ends after [`P2pHandle::shutdown`] or when every handle is dropped.
pub fn spawn(
    config: P2pConfig,
) -> Result<(P2pHandle, mpsc::Receiver<P2pEvent>, tokio::task::JoinHandle<()>), P2pError> {
    event_loop::spawn(config)
}
