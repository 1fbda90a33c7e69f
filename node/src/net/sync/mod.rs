//! Block sync: a node that is behind — restarted, started late, with a
//! wiped data dir, or not a validator at all — fetches `(block, certificate)` ranges from
//! peers by request-response and commits them through the chain worker, which checks every
//! certificate against the genesis validator set and re-executes every block. A peer's word
//! is never trusted: a block that fails is not committed and that peer is not asked again for
//! a while.
//!
//! It learns that it is behind from hints (a consensus message of a later height, a new
//! connection) and from a periodic status poll of the connected peers. One fetch at a time;
//! status queries run beside it with a short timeout, so a silent peer never delays a fetch
//! from a live one. A fetch whose peer has not answered within [`HEDGE_AFTER`] is hedged: other
//! connected peers are asked as well and the first to deliver wins, so a peer that falls silent
//! just as it is asked (paused, cut off) costs that delay, not the block request's timeout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tradeloop_crypto::{Hash, PublicKey};

pub mod decisions;

use crate::chain::{ChainError, ChainHandle};
use crate::net::message::{Request, Response, MAX_SYNC_BLOCKS};
use crate::net::p2p::{P2pHandle, PeerRequests};
use crate::runtime::driver::DriverInput;
use crate::time::Clock;
use tradeloop_ledger::CertifiedBlock;

/// How often connected peers are asked for their tip.
pub const STATUS_POLL_INTERVAL: Duration = Duration::from_millis(1000);
/// Bound on hints waiting for the sync task (a full channel drops hints: the poll catches up).
pub const SYNC_HINT_CHANNEL: usize = 64;
/// How long a peer that sent a bad block is not asked again.
pub const BAD_PEER_BACKOFF: Duration = Duration::from_secs(30);
/// How long a peer that did not answer a status query has before it counts as silent. Peers
/// on one network answer in milliseconds; a paused or cut-off one never does.
pub const STATUS_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long one block request may take (a full response is at most 64 blocks / 16 MiB).
pub const BLOCKS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a peer that left a block request unanswered is not asked again; others are asked.
pub const SLOW_PEER_BACKOFF: Duration = Duration::from_secs(5);
/// How long after a decision a peer that did not have the block yet is asked again.
pub const DECIDED_RETRY: Duration = Duration::from_millis(20);
/// How many times a peer is asked for a decided block before sync waits for other hints.
pub const DECIDED_RETRIES: u8 = 25;
/// How long a peer's reported tip is used to choose whom to ask.
pub const PEER_HEIGHT_FRESH: Duration = Duration::from_secs(5);
/// How long a block request may go unanswered before other peers are asked as well. Peers on
/// one network answer a block request in milliseconds; a full 64-block answer on a slow link
/// may take longer, and then the hedge only costs one duplicate request.
pub const HEDGE_AFTER: Duration = Duration::from_millis(500);
/// Most peers a hedged fetch asks besides the first.
pub const MAX_HEDGE_PEERS: usize = 3;

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
    /// More than 2/3 of the voting power precommitted a block at `height`
    /// ([`decisions::DecisionWatch`]): the validators are committing it now. `peer` relayed the
    /// last precommit; it is asked again every [`DECIDED_RETRY`] until it has the block, at most
    /// [`DECIDED_RETRIES`] times.
    Decided {
        /// The peer to ask.
        peer: PublicKey,
        /// The decided height.
        height: u64,
        /// How many times it was asked already.
        attempt: u8,
    },
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
///
/// Status queries never hold up a fetch: the poll and the question a new connection raises run
/// on their own tasks, each peer asked at once and given [`STATUS_TIMEOUT`], and report what
/// they learn back here as hints. A peer that is alive at the TCP level but silent above it (a
/// paused process, a black-holed link) thus costs one status timeout on a side task, never the
/// request timeout of the network layer on the path from a live peer's hint to a commit.
pub async fn run(
    ctx: SyncContext,
    mut hints: mpsc::Receiver<SyncHint>,
    mut stop: watch::Receiver<bool>,
) {
    let ctx = Arc::new(ctx);
    let (learned_tx, mut learned) = mpsc::channel::<SyncHint>(SYNC_HINT_CHANNEL);
    let poller = tokio::spawn(poll_peers(Arc::clone(&ctx), learned_tx.clone()));
    let mut peers = PeerStanding::default();
    loop {
        let hint = tokio::select! {
            _ = stop.changed() => {
                if *stop.borrow() { break; }
                continue;
            }
            Some(found) = learned.recv() => found,
            hint = hints.recv() => match hint {
                None => break,
                Some(hint) => hint,
            },
        };
        let (peer, height) = match hint {
            SyncHint::Ahead { peer: Some(p), height } => (p, height),
            SyncHint::Ahead { peer: None, height } => match peers.best_known(height) {
                Some(target) => target,
                None => continue,
            },
            SyncHint::Decided { peer, height, .. } => (peer, height),
            SyncHint::Connected(p) => {
                tokio::spawn(ask_status(Arc::clone(&ctx), p, learned_tx.clone()));
                continue;
            }
        };
        peers.heard(peer, height);
        if !peers.may_ask(peer) {
            continue;
        }
        let Ok(tip) = ctx.chain.tip().await else { break };
        if height <= tip.height {
            continue;
        }
        let others = peers.others(peer, ctx.p2p.peers().await.unwrap_or_default());
        let _ = ctx.syncing.send(true);
        let raced = race_with_hedge(
            fetch(&ctx, peer, height),
            fetch_from(&ctx, others, height),
            HEDGE_AFTER,
        )
        .await;
        let _ = ctx.syncing.send(false);
        let outcome = match raced {
            Raced::First(outcome) => outcome,
            Raced::Others => {
                tracing::debug!(%peer, "sync: another peer delivered first; asking others for {}s", SLOW_PEER_BACKOFF.as_secs());
                peers.set_aside(peer, SLOW_PEER_BACKOFF);
                Ok(())
            }
        };
        match outcome {
            Ok(()) => ask_again_if_decided(&ctx, hint, learned_tx.clone()).await,
            Err(FetchError::Stopped) => break,
            Err(e) => peers.fault(peer, &e),
        }
    }
    poller.abort();
}

/// How a hedged fetch ended.
#[derive(Debug)]
enum Raced {
    /// The fetch from the first peer ended (before the others delivered, or after they failed).
    First(Result<(), FetchError>),
    /// The other peers delivered while the first had still not answered.
    Others,
}

/// Runs `first`; if it has not ended within `after`, runs `others` beside it. Ends with the
/// first to succeed, or with `first` if `others` fails.
async fn race_with_hedge(
    first: impl std::future::Future<Output = Result<(), FetchError>>,
    others: impl std::future::Future<Output = Result<(), FetchError>>,
    after: Duration,
) -> Raced {
    tokio::pin!(first);
    tokio::select! {
        outcome = &mut first => return Raced::First(outcome),
        () = tokio::time::sleep(after) => {}
    }
    tokio::pin!(others);
    let mut others_failed = false;
    loop {
        tokio::select! {
            outcome = &mut first => return Raced::First(outcome),
            outcome = &mut others, if !others_failed => match outcome {
                Ok(()) => return Raced::Others,
                Err(_) => others_failed = true,
            },
        }
    }
}

/// Fetches up to `target` from `peers` in turn until one brings the tip there, and again every
/// [`DECIDED_RETRY`] (a decided block reaches the peers' chains a moment after the decision), at
/// most [`DECIDED_RETRIES`] rounds.
async fn fetch_from(
    ctx: &SyncContext,
    peers: Vec<PublicKey>,
    target: u64,
) -> Result<(), FetchError> {
    if peers.is_empty() {
        return Err(FetchError::Unreachable("no other peer to ask".into()));
    }
    for _ in 0..DECIDED_RETRIES {
        for &peer in &peers {
            match fetch(ctx, peer, target).await {
                Err(FetchError::Stopped) => return Err(FetchError::Stopped),
                Err(e) => tracing::debug!(%peer, "sync: hedged fetch: {e}"),
                Ok(()) => {}
            }
            if ctx.chain.tip().await.map_err(|_| FetchError::Stopped)?.height >= target {
                return Ok(());
            }
        }
        tokio::time::sleep(DECIDED_RETRY).await;
    }
    Err(FetchError::Unreachable(format!("no other peer had height {target}")))
}

/// After a fetch for a [`SyncHint::Decided`] that left the tip below the decided height (the
/// peer had not committed it yet), asks the same peer again a moment later.
async fn ask_again_if_decided(ctx: &SyncContext, hint: SyncHint, learned: mpsc::Sender<SyncHint>) {
    let SyncHint::Decided { peer, height, attempt } = hint else { return };
    if attempt >= DECIDED_RETRIES || ctx.chain.tip().await.is_ok_and(|t| t.height >= height) {
        return;
    }
    tokio::spawn(async move {
        tokio::time::sleep(DECIDED_RETRY).await;
        let _ = learned.try_send(SyncHint::Decided { peer, height, attempt: attempt + 1 });
    });
}

/// Why a sync fetch ended early.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The chain worker stopped.
    #[error("the chain worker stopped")]
    Stopped,
    /// The peer sent a block that does not verify, or an answer that makes no sense.
    #[error("the peer sent a bad block or answer: {0}")]
    BadPeer(String),
    /// The peer did not answer (in time).
    #[error("the peer did not answer: {0}")]
    Unreachable(String),
}

/// What this task knows of its peers: the highest tip each reported lately, and the peers set
/// aside (a bad block, or no answer) until an instant.
#[derive(Default)]
struct PeerStanding {
    heights: HashMap<PublicKey, (u64, Instant)>,
    aside: HashMap<PublicKey, Instant>,
}

impl PeerStanding {
    fn heard(&mut self, peer: PublicKey, height: u64) {
        let entry = self.heights.entry(peer).or_insert((height, Instant::now()));
        *entry = (entry.0.max(height), Instant::now());
    }

    fn may_ask(&mut self, peer: PublicKey) -> bool {
        let now = Instant::now();
        self.aside.retain(|_, until| *until > now);
        !self.aside.contains_key(&peer)
    }

    fn set_aside(&mut self, peer: PublicKey, how_long: Duration) {
        self.aside.insert(peer, Instant::now() + how_long);
    }

    /// Sets `peer` aside for what its fetch did wrong.
    fn fault(&mut self, peer: PublicKey, error: &FetchError) {
        match error {
            FetchError::BadPeer(detail) => {
                tracing::warn!(%peer, "sync: peer sent a block that does not verify ({detail}); not asking it for {}s", BAD_PEER_BACKOFF.as_secs());
                self.set_aside(peer, BAD_PEER_BACKOFF);
            }
            FetchError::Unreachable(detail) => {
                tracing::debug!(%peer, "sync: {detail}; asking others for {}s", SLOW_PEER_BACKOFF.as_secs());
                self.set_aside(peer, SLOW_PEER_BACKOFF);
            }
            FetchError::Stopped => {}
        }
    }

    /// The peers of `connected` a hedged fetch from `first` asks besides it: not set aside,
    /// highest recently reported tip first (unknown tips last), at most [`MAX_HEDGE_PEERS`].
    fn others(&mut self, first: PublicKey, connected: Vec<PublicKey>) -> Vec<PublicKey> {
        let now = Instant::now();
        self.aside.retain(|_, until| *until > now);
        let mut others: Vec<(Option<u64>, PublicKey)> = connected
            .into_iter()
            .filter(|p| *p != first && !self.aside.contains_key(p))
            .map(|p| {
                let fresh = self
                    .heights
                    .get(&p)
                    .filter(|(_, at)| now.duration_since(*at) < PEER_HEIGHT_FRESH);
                (fresh.map(|(h, _)| *h), p)
            })
            .collect();
        others.sort_by_key(|(height, _)| std::cmp::Reverse(*height));
        others.into_iter().take(MAX_HEDGE_PEERS).map(|(_, p)| p).collect()
    }

    /// The askable peer heard from within [`PEER_HEIGHT_FRESH`] with the highest tip, if that
    /// tip is at least `height`.
    fn best_known(&mut self, height: u64) -> Option<(PublicKey, u64)> {
        let now = Instant::now();
        self.heights.retain(|_, (_, at)| now.duration_since(*at) < PEER_HEIGHT_FRESH);
        self.aside.retain(|_, until| *until > now);
        self.heights
            .iter()
            .filter(|(p, (h, _))| *h >= height && !self.aside.contains_key(*p))
            .max_by_key(|(_, (h, _))| *h)
            .map(|(p, (h, _))| (*p, *h))
    }
}

/// Every [`STATUS_POLL_INTERVAL`], asks every connected peer for its tip at once and reports
/// the highest (the metrics get every answer).
async fn poll_peers(ctx: Arc<SyncContext>, learned: mpsc::Sender<SyncHint>) {
    let mut poll = tokio::time::interval(STATUS_POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        poll.tick().await;
        let Ok(peers) = ctx.p2p.peers().await else { return };
        let answers = futures::future::join_all(peers.into_iter().map(|peer| {
            let ctx = Arc::clone(&ctx);
            async move { status_of(&ctx, peer).await.map(|h| (peer, h)) }
        }))
        .await;
        let best = answers.into_iter().flatten().max_by_key(|(_, h)| *h);
        if let Some((peer, height)) = best {
            ctx.metrics.on_poll(height);
            // A full channel drops this poll's answer; the next poll asks again.
            let _ = learned.try_send(SyncHint::Ahead { peer: Some(peer), height });
        }
    }
}

/// Asks one peer for its tip and reports it.
async fn ask_status(ctx: Arc<SyncContext>, peer: PublicKey, learned: mpsc::Sender<SyncHint>) {
    if let Some(height) = status_of(&ctx, peer).await {
        let _ = learned.try_send(SyncHint::Ahead { peer: Some(peer), height });
    }
}

async fn status_of(ctx: &SyncContext, peer: PublicKey) -> Option<u64> {
    let asked = peer_height(&ctx.p2p, ctx.chain_id, peer);
    let height = tokio::time::timeout(STATUS_TIMEOUT, asked).await.ok()??;
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
    let to = SyncedTo { chain: &ctx.chain, driver: ctx.driver.as_ref(), clock: &Clock::System };
    fetch_blocks(&ctx.p2p, &to, peer, target).await
}

/// Where synced blocks go: the chain worker commits them (at the clock's time), and the
/// consensus driver, if any, hears of the new tip.
#[derive(Clone, Copy, Debug)]
pub struct SyncedTo<'a> {
    /// The chain worker.
    pub chain: &'a ChainHandle,
    /// The driver (validators only).
    pub driver: Option<&'a mpsc::Sender<DriverInput>>,
    /// The time.
    pub clock: &'a Clock,
}

/// Fetches blocks from `peer` by request-response, [`MAX_SYNC_BLOCKS`] at a time, and commits
/// each through the chain worker (which verifies its certificate and re-executes it), until the
/// tip reaches `target` or the peer has no more. The node's sync task and the simulator both
/// run it.
pub async fn fetch_blocks<R: PeerRequests>(
    peers: &R,
    to: &SyncedTo<'_>,
    peer: PublicKey,
    target: u64,
) -> Result<(), FetchError> {
    loop {
        let tip = to.chain.tip().await.map_err(|_| FetchError::Stopped)?;
        if tip.height >= target {
            return Ok(());
        }
        let blocks = request_blocks(peers, peer, tip.height + 1).await?;
        if blocks.is_empty() {
            return Ok(());
        }
        let committed = commit_blocks(to, tip.height, blocks).await?;
        tracing::info!(height = committed, from = %peer, "synced");
        if let Some(driver) = to.driver {
            let _ = driver.send(DriverInput::Synced { height: committed }).await;
        }
    }
}

/// Asks `peer` for the committed blocks from `from`.
async fn request_blocks<R: PeerRequests>(
    peers: &R,
    peer: PublicKey,
    from: u64,
) -> Result<Vec<CertifiedBlock>, FetchError> {
    let request = Request::Blocks { from, count: MAX_SYNC_BLOCKS }
        .encode()
        .map_err(|e| FetchError::Unreachable(e.to_string()))?;
    let answer = peers
        .request(peer, request, BLOCKS_TIMEOUT)
        .await
        .map_err(|e| FetchError::Unreachable(e.to_string()))?;
    match Response::decode(&answer) {
        Ok(Response::Blocks(blocks)) => Ok(blocks),
        Ok(Response::Error(e)) => {
            Err(FetchError::Unreachable(format!("peer could not answer: {e}")))
        }
        Ok(_) => Err(FetchError::BadPeer("answered a block request with something else".into())),
        Err(e) => Err(FetchError::BadPeer(e.to_string())),
    }
}

/// Commits `blocks`, consecutive after `tip`; the height reached.
async fn commit_blocks(
    to: &SyncedTo<'_>,
    tip: u64,
    blocks: Vec<CertifiedBlock>,
) -> Result<u64, FetchError> {
    let mut committed = tip;
    for certified in blocks {
        let height = certified.block.header.height;
        if height != committed + 1 {
            // The consensus driver committed it meanwhile, or the peer skipped one.
            if height <= committed {
                continue;
            }
            return Err(FetchError::BadPeer(format!("sent height {height} after {committed}")));
        }
        match to.chain.commit(certified, to.clock.unix_ms()).await {
            Ok(_) => committed = height,
            Err(ChainError::Stopped) => return Err(FetchError::Stopped),
            Err(e) => {
                // Committed meanwhile by the driver: fine; anything else is the peer's fault.
                let tip = to.chain.tip().await.map_err(|_| FetchError::Stopped)?;
                if tip.height >= height {
                    committed = tip.height;
                    continue;
                }
                return Err(FetchError::BadPeer(format!("height {height}: {e}")));
            }
        }
    }
    Ok(committed)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ok_after(ms: u64) -> Result<(), FetchError> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(())
    }

    async fn fails_after(ms: u64) -> Result<(), FetchError> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Err(FetchError::Unreachable("no answer".into()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_peer_that_answers_in_time_is_not_hedged() {
        let asked_others = std::sync::atomic::AtomicBool::new(false);
        let others = async {
            asked_others.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        };
        let raced = race_with_hedge(ok_after(100), others, HEDGE_AFTER).await;
        assert!(matches!(raced, Raced::First(Ok(()))), "{raced:?}");
        assert!(!asked_others.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_first_peer_costs_the_hedge_delay_not_its_timeout() {
        let started = tokio::time::Instant::now();
        let silent = fails_after(5_000);
        let raced = race_with_hedge(silent, ok_after(10), HEDGE_AFTER).await;
        assert!(matches!(raced, Raced::Others), "{raced:?}");
        assert_eq!(started.elapsed(), HEDGE_AFTER + Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn when_the_others_fail_the_first_peer_is_waited_for() {
        let raced = race_with_hedge(ok_after(2000), fails_after(10), HEDGE_AFTER).await;
        assert!(matches!(raced, Raced::First(Ok(()))), "{raced:?}");
        let raced = race_with_hedge(fails_after(2000), fails_after(10), HEDGE_AFTER).await;
        assert!(matches!(raced, Raced::First(Err(FetchError::Unreachable(_)))), "{raced:?}");
    }

    #[test]
    fn hedged_fetches_ask_fresh_high_peers_first_and_skip_those_set_aside() {
        let key = |b: u8| tradeloop_crypto::SigningKey::from_secret([b; 32]).public_key();
        let (first, high, low, unknown, aside) = (key(1), key(2), key(3), key(4), key(5));
        let mut standing = PeerStanding::default();
        standing.heard(high, 90);
        standing.heard(low, 40);
        standing.heard(aside, 99);
        standing.set_aside(aside, SLOW_PEER_BACKOFF);
        let others = standing.others(first, vec![unknown, low, first, aside, high]);
        assert_eq!(others, vec![high, low, unknown]);
    }
}
