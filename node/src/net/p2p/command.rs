//! What a handle asks of the event loop, with its one-shot reply.

use tokio::sync::oneshot;
use tradeloop_crypto::PublicKey;

use crate::net::p2p::protocol::{GossipId, GossipVerdict, P2pError, Topic};
use libp2p::Multiaddr;

/// A handle's request to the event loop, with its one-shot reply.
#[derive(Debug)]
#[allow(missing_docs)]
pub(crate) enum Command {
    Publish { topic: Topic, data: Vec<u8>, reply: oneshot::Sender<Result<(), P2pError>> },
    Request { peer: PublicKey, data: Vec<u8>, reply: oneshot::Sender<Result<Vec<u8>, P2pError>> },
    Report { id: GossipId, verdict: GossipVerdict },
    Peers(oneshot::Sender<Vec<PublicKey>>),
    PeerScore { peer: PublicKey, reply: oneshot::Sender<Option<f64>> },
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Shutdown(oneshot::Sender<()>),
}
