//! The consensus driver: the tokio task that owns a validator's [`ConsensusCore`] and its
//! timers, and carries out what the core asks (docs/consensus.md, "Consensus over the
//! network").
//!
//! ```text
//!  gossip (checked) --DriverInput--> [driver] --Outbound--> gossip
//!                                      |  owns ConsensusCore (guard + WAL), timers, the
//!                                      |  blocks of the height, the part assembler
//!                                      +--build / resolve / commit--> chain worker
//!                                      +--fetch missing events (request-response)--> proposer
//! ```
//!
//! A proposal travels compact (the header and the event ids, [`CompactBlock`]): the chain
//! worker rebuilds the block from its mempool; events it lacks are fetched from the proposer
//! by a spawned task (at most [`MAX_FETCHES_IN_FLIGHT`]), whose answer comes back to the
//! driver and is resolved again. A block still incomplete after its fetch is not voted
//! for (the round moves on, as for a block that never arrived).
//!
//! Order of durability: the core fsyncs its WAL and sign-state guard before it returns a
//! signed message, so anything in [`Outbound`] is already durable; a block this validator
//! builds or finds valid is written to the WAL before it is proposed or voted for
//! ([`ConsensusCore::persist_block`]). A decided block is committed (block log fsync, index)
//! before the next height starts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use malachite_core_consensus::{LivenessMsg, SignedConsensusMsg};
use malachite_core_types::{Round, Timeout};
use tokio::sync::{mpsc, watch};
use tradeloop_crypto::{Hash, PublicKey, SigningKey};
use tradeloop_ledger::{Block, CertifiedBlock, CommitCertificate, SignedEvent};

use super::context::TradeContext;
use super::core::{from_peer, propose, received_block, Action, ConsensusCore, CoreError};
use super::parts::{Assembled, PartAssembler};
use super::streamed::StreamedBlocks;
use crate::chain::{ChainHandle, MempoolStats, Resolved};
use crate::p2p::P2pHandle;
use crate::wire::{split_proposal, CompactBlock, ConsensusWire, ProposalPart, Request, Response};

/// Bound on inputs waiting for the driver.
pub const DRIVER_INPUT_CHANNEL: usize = 1024;
/// Bound on messages waiting to be published.
pub const OUTBOUND_CHANNEL: usize = 1024;
/// Most complete blocks of future heights kept until their height starts.
pub const MAX_EARLY_BLOCKS: usize = 16;
/// Most proposals whose missing events are being fetched at once.
pub const MAX_FETCHES_IN_FLIGHT: usize = 4;
/// Most fetch requests for one proposal (each answers up to [`crate::wire::MAX_FETCH_IDS`]
/// events, or fewer when its byte bound stops it).
pub const MAX_FETCH_REQUESTS: usize = 64;
/// How far ahead of this validator's clock a proposed block's time may be: far above the
/// clock error of synchronised hosts and the time a proposal takes to arrive.
pub const MAX_PROPOSAL_AHEAD_MS: u64 = 2_000;
/// How long one proposal's fetch may take in all; then what it has is given up on, and the
/// proposal gets no vote. Fetches of a height are also aborted when the next height starts.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(5);

/// Events fetched for a proposal, back from the fetch task.
#[derive(Debug)]
struct Fetched {
    assembled: Assembled,
    events: Vec<SignedEvent>,
}

/// What the driver is told.
#[derive(Debug)]
pub enum DriverInput {
    /// A consensus message from a peer, already checked for syntax and signature.
    Consensus(Box<ConsensusWire>),
    /// The sync task committed blocks up to `height`: move on to the next height.
    Synced {
        /// The new tip height.
        height: u64,
    },
}

/// What the driver asks the network to send.
#[derive(Debug)]
pub enum Outbound {
    /// Publish on the consensus topic (already encoded).
    Consensus(Vec<u8>),
    /// A peer is at a later height than this node: sync from the network.
    Behind {
        /// The height seen.
        height: u64,
    },
}

/// Settings of the driver.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// This validator's key.
    pub key: SigningKey,
    /// The chain's consensus context (its genesis hash and the node's verified signatures).
    pub ctx: TradeContext,
    /// How long a proposer with an empty mempool waits for an event before proposing an
    /// empty block.
    pub empty_block_wait: Duration,
    /// How long after its height started a proposer with some events, but fewer than a full
    /// block's, waits for more before building.
    pub block_linger: Duration,
    /// Events in a full block (the genesis `max_block_events`): built at once.
    pub full_block_events: usize,
    /// The node's metrics (events fetched for proposals).
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// Why the driver stopped.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The consensus core failed (the WAL or guard could not be written, Malachite refused).
    #[error("consensus: {0}")]
    Core(#[from] CoreError),
    /// The chain worker failed to commit a decided block.
    #[error("cannot commit the decided block at height {height}: {detail}")]
    Commit {
        /// Height.
        height: u64,
        /// Why.
        detail: String,
    },
    /// The chain worker stopped.
    #[error("the chain worker stopped")]
    ChainStopped,
}

impl DriverError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            DriverError::Core(e) => e.code(),
            DriverError::Commit { .. } => "COMMIT_FAILED",
            DriverError::ChainStopped => "CHAIN_STOPPED",
        }
    }
}

/// A build the proposer is waiting to make (for events, or until the wait ends).
#[derive(Clone, Copy, Debug)]
struct PendingBuild {
    height: u64,
    round: Round,
    deadline: Instant,
}

/// A decision whose block has not arrived yet.
#[derive(Debug)]
struct AwaitedBlock {
    height: u64,
    block_hash: Hash,
    certificate: CommitCertificate,
}

struct Driver {
    config: DriverConfig,
    core: ConsensusCore,
    chain: ChainHandle,
    out: mpsc::Sender<Outbound>,
    mempool: watch::Receiver<MempoolStats>,
    height: u64,
    timers: BTreeMap<(Instant, u64), Timeout>,
    timer_seq: u64,
    blocks: HashMap<Hash, Block>,
    early: Vec<Assembled>,
    assembler: PartAssembler,
    /// The network, to fetch a proposal's missing events from its proposer.
    p2p: P2pHandle,
    /// The blocks this validator streamed, for peers to fetch from.
    streamed: StreamedBlocks,
    /// Proposals (by block hash) whose missing events are being fetched: their height and
    /// the fetch task, aborted when the next height starts.
    fetching: HashMap<Hash, (u64, tokio::task::AbortHandle)>,
    fetched_tx: mpsc::Sender<Fetched>,
    pending_build: Option<PendingBuild>,
    /// When the current height started (the proposer's linger counts from it).
    height_started: Instant,
    awaited: Option<AwaitedBlock>,
    /// Heights this validator decided and committed (for status and tests).
    decided: u64,
}

/// Runs the driver until `inputs` closes or `stop` fires. `core` is fresh (as built by
/// [`ConsensusCore::new`] at the tip's next height) with its WAL attached; `records` are the
/// WAL's records for replay. The network is where messages go out, the p2p handle (to fetch a
/// proposal's missing events) and the store of blocks this validator streams.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    config: DriverConfig,
    core: ConsensusCore,
    records: Vec<super::walrecord::WalRecord>,
    height: u64,
    chain: ChainHandle,
    mempool: watch::Receiver<MempoolStats>,
    mut inputs: mpsc::Receiver<DriverInput>,
    (out, p2p, streamed): (mpsc::Sender<Outbound>, P2pHandle, StreamedBlocks),
    mut stop: watch::Receiver<bool>,
) -> Result<(), DriverError> {
    let (fetched_tx, mut fetched_rx) = mpsc::channel(MAX_FETCHES_IN_FLIGHT);
    let mut d = Driver {
        config,
        core,
        chain,
        out,
        mempool,
        height,
        timers: BTreeMap::new(),
        timer_seq: 0,
        blocks: HashMap::new(),
        early: Vec::new(),
        assembler: PartAssembler::new(),
        p2p,
        streamed,
        fetching: HashMap::new(),
        fetched_tx,
        pending_build: None,
        height_started: Instant::now(),
        awaited: None,
        decided: 0,
    };
    d.recover(records).await?;
    loop {
        let next_timer = d.timers.keys().next().map(|(at, _)| *at);
        let build_at = d.pending_build.map(|b| b.deadline);
        tokio::select! {
            biased;
            _ = stop.changed() => {
                if *stop.borrow() {
                    tracing::info!(height = d.height, "consensus driver stopping");
                    return Ok(());
                }
            }
            _ = sleep_until(next_timer) => {
                d.fire_timers().await?;
            }
            _ = sleep_until(build_at) => {
                d.build_now().await?;
            }
            changed = d.mempool.changed(), if d.pending_build.is_some() => {
                if changed.is_ok() && d.mempool.borrow().events > 0 {
                    // Events arrived: build now if the block is full or the linger is over,
                    // else at the linger's end (not later than already planned).
                    let wait = d.build_delay();
                    if wait.is_zero() {
                        d.build_now().await?;
                    } else if let Some(pending) = d.pending_build.as_mut() {
                        pending.deadline = pending.deadline.min(Instant::now() + wait);
                    }
                }
            }
            input = inputs.recv() => {
                let Some(input) = input else { return Ok(()) };
                d.on_input(input).await?;
            }
            Some(fetched) = fetched_rx.recv() => {
                d.on_fetched(fetched).await?;
            }
        }
        d.settle().await?;
    }
}

/// How long from now a proposer waits before building its block: not at all when a full
/// block's events wait or the linger since the height started is over; until the linger's end
/// when fewer events wait; the empty-block wait when none do (events arriving meanwhile bring
/// the build forward).
fn build_delay(
    events: usize,
    full_block_events: usize,
    since_height_start: Duration,
    linger: Duration,
    empty_block_wait: Duration,
) -> Duration {
    if events == 0 {
        empty_block_wait
    } else if events >= full_block_events {
        Duration::ZERO
    } else {
        linger.saturating_sub(since_height_start)
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    /// Starts the height and replays the WAL (a restart resumes the round, lock and votes it
    /// had), then re-sends the last vote the sign-state holds.
    async fn recover(
        &mut self,
        records: Vec<super::walrecord::WalRecord>,
    ) -> Result<(), DriverError> {
        let (actions, blocks) = self.core.recover(self.height, records)?;
        self.streamed.prune_below(self.height);
        let me = self.config.key.public_key();
        for block in blocks {
            // A block this validator proposed before it restarted: peers may still fetch its
            // events from here (its mempool starts empty).
            if block.header.proposer == me {
                self.streamed.add(&block, &CompactBlock::of(&block).ids);
            }
            self.blocks.insert(block.header.hash(), block);
        }
        self.carry_out(actions).await?;
        match self.core.restore_last_vote(self.height) {
            Ok(actions) => self.carry_out(actions).await?,
            Err(CoreError::Guard(e)) => {
                tracing::warn!(code = e.code(), "not re-sending the last vote: {e}");
            }
            Err(e) => return Err(e.into()),
        }
        self.settle().await
    }

    async fn feed(
        &mut self,
        input: malachite_core_consensus::Input<TradeContext>,
    ) -> Result<(), DriverError> {
        let mut queue = std::collections::VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            let actions = match self.core.handle(input) {
                Ok(actions) => actions,
                // The sign-state file could not be written: nothing was signed, and nothing
                // will be until it is re-read; the node stops (and starts again once its disk
                // takes writes: crate::outage).
                Err(CoreError::Guard(e)) if e.is_io() => return Err(CoreError::Guard(e).into()),
                // The guard refused to sign: this validator stays silent for that step.
                Err(CoreError::Guard(e)) => {
                    tracing::warn!(code = e.code(), "sign-state guard refused: {e}");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for next in self.act_all(actions).await? {
                queue.push_back(next);
            }
        }
        Ok(())
    }

    async fn carry_out(&mut self, actions: Vec<Action>) -> Result<(), DriverError> {
        for input in self.act_all(actions).await? {
            self.feed(input).await?;
        }
        Ok(())
    }

    /// Carries out actions; returns the inputs they produce.
    async fn act_all(
        &mut self,
        actions: Vec<Action>,
    ) -> Result<Vec<malachite_core_consensus::Input<TradeContext>>, DriverError> {
        let mut inputs = Vec::new();
        for action in actions {
            if let Some(input) = self.act(action).await? {
                inputs.push(input);
            }
        }
        Ok(inputs)
    }

    async fn publish(&self, msg: ConsensusWire) {
        match crate::wire::encode_consensus(&msg) {
            Ok(bytes) => {
                // The network task being gone means the node is stopping.
                let _ = self.out.send(Outbound::Consensus(bytes)).await;
            }
            Err(e) => tracing::error!("cannot encode a consensus message: {e}"),
        }
    }

    /// Streams `block` as its compact proposal, and keeps it for peers that lack some of its
    /// events.
    async fn publish_parts(&self, block: &Block, round: Round, valid_round: Round) {
        let proposal = CompactBlock::of(block);
        self.streamed.add(block, &proposal.ids);
        match split_proposal(
            &proposal,
            round,
            valid_round,
            &self.config.key,
            &self.config.ctx.chain,
        ) {
            Ok(parts) => {
                for part in parts {
                    self.publish(ConsensusWire::Part(part)).await;
                }
            }
            Err(e) => tracing::error!("cannot split the block for streaming: {e}"),
        }
    }

    async fn act(
        &mut self,
        action: Action,
    ) -> Result<Option<malachite_core_consensus::Input<TradeContext>>, DriverError> {
        match action {
            Action::Broadcast(msg) => self.publish(ConsensusWire::Signed(*msg)).await,
            Action::Liveness(msg) => match *msg {
                LivenessMsg::Vote(v) => {
                    self.publish(ConsensusWire::Signed(SignedConsensusMsg::Vote(v))).await
                }
                LivenessMsg::PolkaCertificate(c) => self.publish(ConsensusWire::Polka(c)).await,
                // Round certificates are not sent (docs/consensus.md): the rebroadcast votes
                // carry the same information to validators that missed a round.
                LivenessMsg::SkipRoundCertificate(_) => {}
            },
            Action::Restream { height, round, valid_round, block_hash } => {
                if let Some(block) =
                    self.blocks.get(&block_hash).filter(|b| b.header.height == height).cloned()
                {
                    self.publish_parts(&block, round, valid_round).await;
                }
            }
            Action::ScheduleTimeout { timeout, duration_ms } => {
                self.timers.retain(|_, t| *t != timeout);
                self.timer_seq += 1;
                let at = Instant::now() + Duration::from_millis(duration_ms);
                self.timers.insert((at, self.timer_seq), timeout);
            }
            Action::CancelTimeout(timeout) => self.timers.retain(|_, t| *t != timeout),
            Action::CancelAllTimeouts => self.timers.clear(),
            Action::BuildBlock { height, round } => {
                let wait = self.build_delay();
                self.pending_build =
                    Some(PendingBuild { height, round, deadline: Instant::now() + wait });
                if wait.is_zero() {
                    return self.build(height, round).await;
                }
            }
            Action::Evidence(evidence) => {
                if evidence.verify(&self.config.ctx) {
                    let (height, round, step) = evidence.position();
                    tracing::warn!(validator = %evidence.validator(), height, round, step, "validator equivocated (evidence verified)");
                }
            }
            // Committed by `settle`, after the input that led to it is fully handled.
            Action::Decided { height, block_hash, certificate } => {
                self.awaited = Some(AwaitedBlock { height, block_hash, certificate });
            }
        }
        Ok(None)
    }

    /// How long from now the proposer waits before building ([`build_delay`]).
    fn build_delay(&self) -> Duration {
        build_delay(
            self.mempool.borrow().events,
            self.config.full_block_events,
            self.height_started.elapsed(),
            self.config.block_linger,
            self.config.empty_block_wait,
        )
    }

    async fn build_now(&mut self) -> Result<(), DriverError> {
        let Some(pending) = self.pending_build else { return Ok(()) };
        if let Some(input) = self.build(pending.height, pending.round).await? {
            self.feed(input).await?;
        }
        Ok(())
    }

    async fn build(
        &mut self,
        height: u64,
        round: Round,
    ) -> Result<Option<malachite_core_consensus::Input<TradeContext>>, DriverError> {
        self.pending_build = None;
        if height != self.height {
            return Ok(None);
        }
        let block = match self.chain.build(now_ms()).await {
            Ok(block) => block,
            Err(e) => {
                tracing::error!(height, "cannot build a block: {e}");
                return Ok(None);
            }
        };
        self.core.persist_block(&block)?;
        let hash = block.header.hash();
        self.publish_parts(&block, round, Round::Nil).await;
        tracing::debug!(height, round = round.as_i64(), events = block.events.len(), "proposing");
        self.blocks.insert(hash, block);
        Ok(Some(propose(height, round, hash)))
    }

    async fn fire_timers(&mut self) -> Result<(), DriverError> {
        let now = Instant::now();
        let due: Vec<(Instant, u64)> =
            self.timers.range(..=(now, u64::MAX)).map(|(k, _)| *k).collect();
        for key in due {
            if let Some(timeout) = self.timers.remove(&key) {
                self.feed(malachite_core_consensus::Input::TimeoutElapsed(timeout)).await?;
            }
        }
        Ok(())
    }

    async fn on_input(&mut self, input: DriverInput) -> Result<(), DriverError> {
        match input {
            DriverInput::Synced { height } => {
                if height >= self.height {
                    self.start_height(height + 1).await?;
                }
            }
            DriverInput::Consensus(msg) => match *msg {
                ConsensusWire::Signed(m) => {
                    let h = match &m {
                        SignedConsensusMsg::Vote(v) => v.message.height.0,
                        SignedConsensusMsg::Proposal(p) => p.message.height.0,
                    };
                    if h > self.height {
                        let _ = self.out.try_send(Outbound::Behind { height: h });
                    }
                    self.feed(from_peer(m)).await?;
                }
                ConsensusWire::Polka(c) => {
                    self.feed(malachite_core_consensus::Input::PolkaCertificate(c)).await?;
                }
                ConsensusWire::Part(part) => self.on_part(part).await?,
            },
        }
        Ok(())
    }

    async fn on_part(&mut self, part: ProposalPart) -> Result<(), DriverError> {
        let Some(assembled) = self.assembler.add(self.height, part) else { return Ok(()) };
        if assembled.proposal.header.height > self.height {
            if self.early.len() < MAX_EARLY_BLOCKS {
                self.early.push(assembled);
            }
            return Ok(());
        }
        self.on_block(assembled).await
    }

    /// A whole proposal: rebuilt from the mempool (or from the block already held, when a
    /// later round proposes it again), or its missing events fetched first.
    async fn on_block(&mut self, a: Assembled) -> Result<(), DriverError> {
        let held = self.blocks.get(&a.proposal.header.hash()).map(|b| b.events.clone());
        self.resolve(a, held).await
    }

    async fn on_fetched(&mut self, f: Fetched) -> Result<(), DriverError> {
        self.fetching.remove(&f.assembled.proposal.header.hash());
        self.config.metrics.proposal_events_fetched.inc_by(f.events.len() as u64);
        self.resolve(f.assembled, Some(f.events)).await
    }

    /// Rebuilds and validates a proposal; `fetched` is `Some` once a fetch was made (or the
    /// block is held already): events still missing then are not fetched again.
    async fn resolve(
        &mut self,
        a: Assembled,
        fetched: Option<Vec<SignedEvent>>,
    ) -> Result<(), DriverError> {
        let height = a.proposal.header.height;
        if height != self.height {
            return Ok(());
        }
        let hash = a.proposal.header.hash();
        let after_fetch = fetched.is_some();
        let fetched = fetched.unwrap_or_default();
        let (block, valid) = match self.chain.resolve(a.proposal.clone(), fetched).await {
            Ok(Resolved::Block { block, verdict }) => {
                let valid = match verdict {
                    Ok(h) => h == hash && timely(&block.header, a.proposer, now_ms()),
                    Err(e) => {
                        tracing::warn!(height, proposer = %a.proposer, "proposed block is invalid: {e}");
                        false
                    }
                };
                (*block, valid)
            }
            Ok(Resolved::Missing(ids)) => {
                if after_fetch {
                    // The proposer did not send them all: this block cannot be checked, so it
                    // gets no vote from here (as if it never arrived).
                    self.config.metrics.proposals_incomplete.inc();
                    tracing::warn!(height, proposer = %a.proposer, missing = ids.len(), "proposal's events not available from its proposer");
                } else {
                    self.fetch(a, ids);
                }
                return Ok(());
            }
            Err(crate::chain::ChainError::Stopped) => return Err(DriverError::ChainStopped),
            Err(e) => {
                tracing::warn!(height, proposer = %a.proposer, "cannot rebuild the proposed block: {e}");
                return Ok(());
            }
        };
        if valid {
            self.core.persist_block(&block)?;
        }
        self.blocks.insert(hash, block);
        self.feed(received_block(height, a.round, a.valid_round, a.proposer, hash, valid)).await
    }

    /// Fetches a proposal's missing events from its proposer on a task of its own (within
    /// [`FETCH_DEADLINE`]); the answer comes back as a `Fetched`. At the bound of
    /// [`MAX_FETCHES_IN_FLIGHT`] the proposal is not fetched and gets no vote (a later round
    /// proposes again).
    fn fetch(&mut self, a: Assembled, missing: Vec<Hash>) {
        let hash = a.proposal.header.hash();
        if self.fetching.contains_key(&hash) || self.fetching.len() >= MAX_FETCHES_IN_FLIGHT {
            tracing::debug!(
                height = a.proposal.header.height,
                "not fetching: already fetching or at the bound"
            );
            return;
        }
        tracing::debug!(height = a.proposal.header.height, missing = missing.len(), proposer = %a.proposer, "fetching a proposal's missing events");
        let p2p = self.p2p.clone();
        let done = self.fetched_tx.clone();
        let height = a.proposal.header.height;
        let task = tokio::spawn(async move {
            let events = tokio::time::timeout(FETCH_DEADLINE, fetch_events(&p2p, &a, missing))
                .await
                .unwrap_or_default();
            // The driver being gone means the node is stopping.
            let _ = done.send(Fetched { assembled: a, events }).await;
        });
        self.fetching.insert(hash, (height, task.abort_handle()));
    }

    /// After each input: while a decision's block is here, commits it and starts the next
    /// height (whose early blocks may decide it at once, hence the loop).
    async fn settle(&mut self) -> Result<(), DriverError> {
        while self.try_commit_awaited().await? {}
        Ok(())
    }

    /// Commits the decided block if it is here, then starts the next height; whether it did.
    async fn try_commit_awaited(&mut self) -> Result<bool, DriverError> {
        let Some(awaited) = self.awaited.take() else { return Ok(false) };
        if awaited.height != self.height {
            return Ok(false);
        }
        let Some(block) = self.blocks.get(&awaited.block_hash).cloned() else {
            tracing::info!(
                height = awaited.height,
                "decided a block not received yet; waiting for it or for sync"
            );
            let _ = self.out.try_send(Outbound::Behind { height: awaited.height });
            self.awaited = Some(awaited);
            return Ok(false);
        };
        let height = awaited.height;
        let certified = CertifiedBlock { block, certificate: awaited.certificate };
        match self.chain.commit(certified, now_ms()).await {
            Ok(_) => {}
            Err(crate::chain::ChainError::Stopped) => return Err(DriverError::ChainStopped),
            Err(e) => {
                // The sync task may have committed this height first.
                let tip = self.chain.tip().await.map_err(|_| DriverError::ChainStopped)?;
                if tip.height < height {
                    return Err(DriverError::Commit { height, detail: e.to_string() });
                }
            }
        }
        self.decided += 1;
        tracing::info!(height, "committed");
        self.start_height(height + 1).await?;
        Ok(true)
    }

    async fn start_height(&mut self, height: u64) -> Result<(), DriverError> {
        let tip = self.chain.tip().await.map_err(|_| DriverError::ChainStopped)?;
        // Whatever the caller says, consensus runs on the block after the committed tip.
        let height = height.max(tip.height + 1);
        if height <= self.height && tip.height < self.height {
            return Ok(());
        }
        self.height = height;
        self.height_started = Instant::now();
        self.timers.clear();
        self.blocks.clear();
        self.pending_build = None;
        self.awaited = None;
        self.assembler.prune_below(height);
        self.streamed.prune_below(height);
        self.fetching.retain(|_, (h, task)| {
            let keep = *h >= height;
            if !keep {
                task.abort();
            }
            keep
        });
        let early = std::mem::take(&mut self.early);
        let input = self.core.start_height(height);
        self.feed(input).await?;
        for a in early {
            match a.proposal.header.height.cmp(&height) {
                std::cmp::Ordering::Equal => self.on_block(a).await?,
                std::cmp::Ordering::Greater => self.early.push(a),
                std::cmp::Ordering::Less => {}
            }
        }
        Ok(())
    }
}

/// Asks the proposer of `a` for the `missing` events, [`crate::wire::MAX_FETCH_IDS`] at a
/// time, until it has sent them all, stops sending any, or [`MAX_FETCH_REQUESTS`] were made.
/// Only events with a wanted id are kept (the chain worker checks them like any other).
async fn fetch_events(p2p: &P2pHandle, a: &Assembled, missing: Vec<Hash>) -> Vec<SignedEvent> {
    let mut wanted: Vec<Hash> = missing;
    let mut got = Vec::new();
    for _ in 0..MAX_FETCH_REQUESTS {
        if wanted.is_empty() {
            break;
        }
        let ask = wanted[..wanted.len().min(crate::wire::MAX_FETCH_IDS)].to_vec();
        let Ok(request) = (Request::Events { ids: ask.clone() }).encode() else { break };
        let answer = match p2p.request(a.proposer, request).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::debug!(proposer = %a.proposer, "event fetch failed: {e}");
                break;
            }
        };
        let events = match Response::decode(&answer) {
            Ok(Response::Events(events)) => events,
            _ => break,
        };
        let asked: HashSet<Hash> = ask.into_iter().collect();
        let mut progress = false;
        for e in events {
            let id = e.id();
            if asked.contains(&id) {
                wanted.retain(|w| *w != id);
                got.push(e);
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    got
}

/// Whether a proposed block's time is not in this validator's future by more than
/// [`MAX_PROPOSAL_AHEAD_MS`]. A block's time is its proposer's clock, and block times never go
/// back, so one block from a proposer whose clock runs ahead would hold every later block's time
/// ahead too, and with it the window in which events' times are accepted: a correct validator
/// votes against it. The proposer's operator sees its clock reported off (`clock_offset_ms`).
/// Only proposals are judged by the clock; a decided block is committed whatever its time.
fn timely(header: &tradeloop_ledger::Header, proposer: PublicKey, now_ms: u64) -> bool {
    let ahead = header.time_ms.saturating_sub(now_ms);
    if ahead > MAX_PROPOSAL_AHEAD_MS {
        tracing::warn!(
            height = header.height,
            %proposer,
            ahead_ms = ahead,
            "proposed block's time is {ahead} ms ahead of this node's clock: voting against it \
             (the proposer's clock, or this node's, is wrong)"
        );
        return false;
    }
    true
}

/// Wall-clock Unix milliseconds (block and admission times).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proposer_builds_a_full_block_at_once_and_lingers_for_a_partial_one() {
        let ms = Duration::from_millis;
        let (full, linger, empty) = (1000, ms(50), ms(1000));
        // A full block's events: at once, however young the height.
        assert_eq!(build_delay(1000, full, ms(0), linger, empty), ms(0));
        assert_eq!(build_delay(5000, full, ms(3), linger, empty), ms(0));
        // Some events: until the linger since the height started is over.
        assert_eq!(build_delay(10, full, ms(20), linger, empty), ms(30));
        assert_eq!(build_delay(10, full, ms(50), linger, empty), ms(0));
        assert_eq!(build_delay(10, full, ms(900), linger, empty), ms(0));
        // No linger configured: at once.
        assert_eq!(build_delay(1, full, ms(0), ms(0), empty), ms(0));
        // None: the empty-block wait.
        assert_eq!(build_delay(0, full, ms(20), linger, empty), empty);
    }
}
