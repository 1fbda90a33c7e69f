//! Block sync (DESIGN §4, "Sync"): a node that is behind — restarted, started late, with a
//! wiped data dir, or not a validator at all — fetches `(block, certificate)` ranges from
//! peers by request-response and commits them through the chain worker, which checks every
//! certificate against the genesis validator set and re-executes every block. A peer's word
//! is never trusted: a block that fails is not committed and that peer is not asked again for
//! a while.
//!
//! It learns that it is behind from hints (a consensus message of a later height, a new
//! connection) and from a periodic status poll of the connected peers. One fetch at a time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tradeloop_crypto::{Hash, PublicKey};

use crate::chain::{ChainError, ChainHandle};
use crate::consensus::driver::{now_ms, DriverInput};
use crate::p2p::P2pHandle;
use crate::wire::{Request, Response, MAX_SYNC_BLOCKS};

/// How often connected peers are asked for their tip.
pub const STATUS_POLL_INTERVAL: Duration = Duration::from_millis(1000);
/// Bound on hints waiting for the sync task (a full channel drops hints: the poll catches up).
pub const SYNC_HINT_CHANNEL: usize = 64;
/// How long a peer that sent a bad block is not asked again.
pub const BAD_PEER_BACKOFF: Duration = Duration::from_secs(30);

/// Something that suggests this node is behind.
#[derive(Clone, Copy, Debug)]
pub enum SyncHint {
    /// A peer (if known) has committed at least `height`.
    Ahead {
        /// The peer.
        peer: Option<PublicKey>,
        /// Its committed height, at least.
        height: u64,
    },
    /// A peer connected: ask it for its tip.
    Connected(PublicKey),
}

/// What sync needs.
#[derive(Debug)]
pub struct SyncContext {
    /// The network.
    pub p2p: P2pHandle,
    /// The chain worker.
    pub chain: ChainHandle,
    /// The chain (genesis hash): peers of another chain are ignored.
    pub chain_id: Hash,
    /// Tells the consensus driver (validators only) that the tip moved.
    pub driver: Option<mpsc::Sender<DriverInput>>,
    /// Whether a fetch is running (for status).
    pub syncing: watch::Sender<bool>,
    /// The highest tip a peer reported (sync lag).
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// Runs until `stop` turns true.
pub async fn run(
    ctx: SyncContext,
    mut hints: mpsc::Receiver<SyncHint>,
    mut stop: watch::Receiver<bool>,
) {
    let mut poll = tokio::time::interval(STATUS_POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut bad: HashMap<PublicKey, Instant> = HashMap::new();
    loop {
        let target = tokio::select! {
            _ = stop.changed() => {
                if *stop.borrow() { return; }
                continue;
            }
            _ = poll.tick() => best_peer(&ctx).await,
            hint = hints.recv() => match hint {
                None => return,
                Some(SyncHint::Ahead { peer: Some(p), height }) => Some((p, height)),
                Some(SyncHint::Ahead { peer: None, .. }) => best_peer(&ctx).await,
                Some(SyncHint::Connected(p)) => status_of(&ctx, p).await.map(|h| (p, h)),
            },
        };
        let Some((peer, height)) = target else { continue };
        bad.retain(|_, since| since.elapsed() < BAD_PEER_BACKOFF);
        if bad.contains_key(&peer) {
            continue;
        }
        let Ok(tip) = ctx.chain.tip().await else { return };
        if height <= tip.height {
            continue;
        }
        let _ = ctx.syncing.send(true);
        match fetch(&ctx, peer, height).await {
            Ok(()) => {}
            Err(FetchError::Stopped) => return,
            Err(FetchError::BadPeer(detail)) => {
                tracing::warn!(%peer, "sync: peer sent a block that does not verify ({detail}); not asking it for {}s", BAD_PEER_BACKOFF.as_secs());
                bad.insert(peer, Instant::now());
            }
            Err(FetchError::Unreachable(detail)) => tracing::debug!(%peer, "sync: {detail}"),
        }
        let _ = ctx.syncing.send(false);
    }
}

enum FetchError {
    Stopped,
    BadPeer(String),
    Unreachable(String),
}

/// The connected peer with the highest tip above ours, if any.
async fn best_peer(ctx: &SyncContext) -> Option<(PublicKey, u64)> {
    let peers = ctx.p2p.peers().await.ok()?;
    let mut best: Option<(PublicKey, u64)> = None;
    for peer in peers {
        if let Some(h) = status_of(ctx, peer).await {
            if best.is_none_or(|(_, b)| h > b) {
                best = Some((peer, h));
            }
        }
    }
    if let Some((_, h)) = best {
        ctx.metrics.on_poll(h);
    }
    best
}

async fn status_of(ctx: &SyncContext, peer: PublicKey) -> Option<u64> {
    let height = peer_height(&ctx.p2p, ctx.chain_id, peer).await?;
    ctx.metrics.on_peer_height(height);
    Some(height)
}

/// A peer's committed height, if it answers and is of this chain.
pub async fn peer_height(p2p: &P2pHandle, chain_id: Hash, peer: PublicKey) -> Option<u64> {
    let bytes = Request::Status.encode().ok()?;
    let answer = p2p.request(peer, bytes).await.ok()?;
    match Response::decode(&answer).ok()? {
        Response::Status { chain, height, .. } if chain == chain_id => Some(height),
        _ => None,
    }
}

/// Fetches and commits blocks from `peer` until our tip reaches `target` or the peer has no
/// more.
async fn fetch(ctx: &SyncContext, peer: PublicKey, target: u64) -> Result<(), FetchError> {
    loop {
        let tip = ctx.chain.tip().await.map_err(|_| FetchError::Stopped)?;
        if tip.height >= target {
            return Ok(());
        }
        let request = Request::Blocks { from: tip.height + 1, count: MAX_SYNC_BLOCKS }
            .encode()
            .map_err(|e| FetchError::Unreachable(e.to_string()))?;
        let answer = ctx
            .p2p
            .request(peer, request)
            .await
            .map_err(|e| FetchError::Unreachable(e.to_string()))?;
        let blocks = match Response::decode(&answer) {
            Ok(Response::Blocks(blocks)) => blocks,
            Ok(Response::Error(e)) => {
                return Err(FetchError::Unreachable(format!("peer could not answer: {e}")))
            }
            Ok(_) => {
                return Err(FetchError::BadPeer(
                    "answered a block request with something else".into(),
                ))
            }
            Err(e) => return Err(FetchError::BadPeer(e.to_string())),
        };
        if blocks.is_empty() {
            return Ok(());
        }
        let mut committed = tip.height;
        for certified in blocks {
            let height = certified.block.header.height;
            if height != committed + 1 {
                // The consensus driver committed it meanwhile, or the peer skipped one.
                if height <= committed {
                    continue;
                }
                return Err(FetchError::BadPeer(format!("sent height {height} after {committed}")));
            }
            match ctx.chain.commit(certified, now_ms()).await {
                Ok(_) => committed = height,
                Err(ChainError::Stopped) => return Err(FetchError::Stopped),
                Err(e) => {
                    // Committed meanwhile by the driver: fine; anything else is the peer's fault.
                    let tip = ctx.chain.tip().await.map_err(|_| FetchError::Stopped)?;
                    if tip.height >= height {
                        committed = tip.height;
                        continue;
                    }
                    return Err(FetchError::BadPeer(format!("height {height}: {e}")));
                }
            }
        }
        tracing::info!(height = committed, from = %peer, "synced");
        if let Some(driver) = &ctx.driver {
            let _ = driver.send(DriverInput::Synced { height: committed }).await;
        }
    }
}
