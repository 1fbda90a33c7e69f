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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use malachite_core_consensus::{LivenessMsg, SignedConsensusMsg};
use malachite_core_types::{Round, Timeout};
use tokio::sync::{mpsc, watch};
use tradeloop_crypto::{Hash, PublicKey, SigningKey};
use tradeloop_ledger::{Block, CertifiedBlock, CommitCertificate, SignedEvent};

use crate::chain::{ChainHandle, MempoolStats, Resolved};
use crate::consensus::context::TradeContext;
use crate::consensus::core::{
    from_peer, propose, received_block, Action, ConsensusCore, CoreError,
};
use crate::consensus::parts::{Assembled, PartAssembler};
use crate::consensus::streamed::StreamedBlocks;
use crate::net::message::{split_proposal, CompactBlock, ConsensusWire, ProposalPart};
use crate::time::Clock;

/// Bound on inputs waiting for the driver.
pub const DRIVER_INPUT_CHANNEL: usize = 1024;
/// Bound on messages waiting to be published.
pub const OUTBOUND_CHANNEL: usize = 1024;
/// Most complete blocks of future heights kept until their height starts.
pub const MAX_EARLY_BLOCKS: usize = 16;
/// Most proposals whose missing events are being fetched at once.
pub const MAX_FETCHES_IN_FLIGHT: usize = 4;
/// How far ahead of this validator's clock a proposed block's time may be: far above the
/// clock error of synchronised hosts and the time a proposal takes to arrive.
pub const MAX_PROPOSAL_AHEAD_MS: u64 = 2_000;

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
    /// The answer to an [`Outbound::Fetch`]: the events the proposer sent (possibly none).
    Fetched {
        /// The proposal they were fetched for.
        assembled: Box<Assembled>,
        /// The events.
        events: Vec<SignedEvent>,
    },
}

/// What the driver asks of the network.
#[derive(Debug)]
pub enum Outbound {
    /// Publish on the consensus topic (already encoded).
    Consensus(Vec<u8>),
    /// A peer is at a later height than this node: sync from the network.
    Behind {
        /// The height seen.
        height: u64,
    },
    /// Fetch a proposal's missing events from its proposer ([`super::fetch`]) and answer with
    /// [`DriverInput::Fetched`].
    Fetch {
        /// The proposal.
        assembled: Box<Assembled>,
        /// The events it lacks here.
        missing: Vec<Hash>,
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
    /// Defects the simulator's negative controls plant; none in a node.
    pub planted: crate::chain::PlantedFaults,
}

/// What the driver works with: the chain worker and its mempool figures, where its messages
/// go, the blocks it streams (for peers' fetches), and its clock.
#[derive(Debug)]
pub struct DriverLinks {
    /// The chain worker.
    pub chain: ChainHandle,
    /// The mempool's figures (a waiting proposer builds when events arrive).
    pub mempool: watch::Receiver<MempoolStats>,
    /// Where messages to the network go.
    pub out: mpsc::Sender<Outbound>,
    /// The blocks this validator streamed, for peers to fetch from.
    pub streamed: StreamedBlocks,
    /// The time.
    pub clock: Clock,
}

/// Why the driver stopped.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The consensus core failed (the WAL or guard could not be written, Malachite refused).
    #[error("consensus: {0}")]
    Core(#[from] CoreError),
    /// The chain worker failed to commit a decided block.
    #[error("cannot commit the decided block at height {height}: {source}")]
    Commit {
        /// Height.
        height: u64,
        /// Why.
        #[source]
        source: crate::chain::ChainError,
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

/// The driver of one validator: its consensus core, timers and the blocks of its height. It
/// reacts to inputs ([`Driver::handle`]), to time ([`Driver::tick`], due at
/// [`Driver::next_wakeup`]) and to events arriving for a waiting proposer
/// ([`Driver::on_mempool_changed`]); [`run`] feeds it in a node, `crate::sim` in the simulator.
#[derive(Debug)]
pub struct Driver {
    config: DriverConfig,
    core: ConsensusCore,
    chain: ChainHandle,
    out: mpsc::Sender<Outbound>,
    mempool: watch::Receiver<MempoolStats>,
    clock: Clock,
    height: u64,
    timers: BTreeMap<(Instant, u64), Timeout>,
    timer_seq: u64,
    blocks: HashMap<Hash, Block>,
    early: Vec<Assembled>,
    assembler: PartAssembler,
    /// The blocks this validator streamed, for peers to fetch from.
    streamed: StreamedBlocks,
    /// Proposals (by block hash) whose missing events are being fetched, and their height.
    fetching: HashMap<Hash, u64>,
    pending_build: Option<PendingBuild>,
    /// The committed tip's block time: the earliest time a block of this height can have.
    parent_time_ms: u64,
    /// When the current height started (the proposer's linger counts from it).
    height_started: Instant,
    awaited: Option<AwaitedBlock>,
    /// Heights this validator decided and committed (for status and tests).
    decided: u64,
    /// Validators this one holds verified evidence of equivocation against (at most the
    /// validator set).
    equivocators: BTreeSet<PublicKey>,
}

/// Runs the driver until `inputs` closes or `stop` fires. `records` are the WAL's records for
/// replay.
pub async fn run(
    mut d: Driver,
    records: Vec<crate::consensus::walrecord::WalRecord>,
    mut inputs: mpsc::Receiver<DriverInput>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), DriverError> {
    d.recover(records).await?;
    loop {
        let wakeup = d.next_wakeup();
        tokio::select! {
            biased;
            _ = stop.changed() => {
                if *stop.borrow() {
                    tracing::info!(height = d.height, "consensus driver stopping");
                    return Ok(());
                }
            }
            _ = sleep_until(wakeup) => d.tick().await?,
            changed = d.mempool.changed(), if d.pending_build.is_some() => {
                if changed.is_ok() {
                    d.on_mempool_changed().await?;
                }
            }
            input = inputs.recv() => {
                let Some(input) = input else { return Ok(()) };
                d.handle(input).await?;
            }
        }
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
    /// A driver at `height` (the tip's next) over `core`, fresh as built by
    /// [`ConsensusCore::new`] with its WAL attached.
    pub fn new(
        config: DriverConfig,
        core: ConsensusCore,
        height: u64,
        links: DriverLinks,
    ) -> Driver {
        let DriverLinks { chain, mempool, out, streamed, clock } = links;
        let height_started = clock.now();
        Driver {
            config,
            core,
            chain,
            out,
            mempool,
            clock,
            height,
            timers: BTreeMap::new(),
            timer_seq: 0,
            blocks: HashMap::new(),
            early: Vec::new(),
            assembler: PartAssembler::new(),
            streamed,
            fetching: HashMap::new(),
            pending_build: None,
            height_started,
            parent_time_ms: 0,
            awaited: None,
            decided: 0,
            equivocators: BTreeSet::new(),
        }
    }

    /// The height being decided.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Heights this validator decided and committed since it started (not those sync brought).
    pub fn decided(&self) -> u64 {
        self.decided
    }

    /// Validators this one holds verified evidence of equivocation against.
    pub fn equivocators(&self) -> &BTreeSet<PublicKey> {
        &self.equivocators
    }

    /// When [`Driver::tick`] is next due: the earliest timer or the waiting proposer's build.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let timer = self.timers.keys().next().map(|(at, _)| *at);
        let build = self.pending_build.map(|b| b.deadline);
        match (timer, build) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a waiting proposer has mempool news to look at ([`Driver::on_mempool_changed`]).
    pub fn mempool_news(&self) -> bool {
        self.pending_build.is_some() && self.mempool.has_changed().unwrap_or(false)
    }

    /// Starts the height and replays the WAL (a restart resumes the round, lock and votes it
    /// had), then re-sends the last vote the sign-state holds.
    pub async fn recover(
        &mut self,
        records: Vec<crate::consensus::walrecord::WalRecord>,
    ) -> Result<(), DriverError> {
        let tip = self.chain.tip().await.map_err(|_| DriverError::ChainStopped)?;
        self.parent_time_ms = tip.time_ms;
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

    /// Handles one input, then commits what it decided.
    pub async fn handle(&mut self, input: DriverInput) -> Result<(), DriverError> {
        match input {
            DriverInput::Synced { height } => {
                if height >= self.height {
                    self.start_height(height + 1).await?;
                }
            }
            DriverInput::Consensus(msg) => self.on_consensus(*msg).await?,
            DriverInput::Fetched { assembled, events } => {
                self.fetching.remove(&assembled.proposal.header.hash());
                self.config.metrics.proposal_events_fetched.inc_by(events.len() as u64);
                self.resolve(*assembled, Some(events)).await?;
            }
        }
        self.settle().await
    }

    /// Fires the timers that are due and a build whose wait is over.
    pub async fn tick(&mut self) -> Result<(), DriverError> {
        let now = self.clock.now();
        let due: Vec<(Instant, u64)> =
            self.timers.range(..=(now, u64::MAX)).map(|(k, _)| *k).collect();
        for key in due {
            if let Some(timeout) = self.timers.remove(&key) {
                self.feed(malachite_core_consensus::Input::TimeoutElapsed(timeout)).await?;
            }
        }
        if self.pending_build.is_some_and(|b| b.deadline <= now) {
            self.build_now().await?;
        }
        self.settle().await
    }

    /// Events arrived for a waiting proposer: it builds now if the block is full or the linger
    /// is over, else at the linger's end (not later than already planned).
    pub async fn on_mempool_changed(&mut self) -> Result<(), DriverError> {
        let events = self.mempool.borrow_and_update().events;
        if self.pending_build.is_none() || events == 0 {
            return Ok(());
        }
        let wait = self.build_delay();
        if wait.is_zero() {
            self.build_now().await?;
        } else if let Some(pending) = self.pending_build.as_mut() {
            pending.deadline = pending.deadline.min(self.clock.now() + wait);
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
        match crate::net::message::encode_consensus(&msg) {
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
                let at = self.clock.now() + Duration::from_millis(duration_ms);
                self.timers.insert((at, self.timer_seq), timeout);
            }
            Action::CancelTimeout(timeout) => self.timers.retain(|_, t| *t != timeout),
            Action::CancelAllTimeouts => self.timers.clear(),
            Action::BuildBlock { height, round } => {
                let wait = self.build_delay();
                self.pending_build =
                    Some(PendingBuild { height, round, deadline: self.clock.now() + wait });
                if wait.is_zero() {
                    return self.build(height, round).await;
                }
            }
            Action::Evidence(evidence) => self.on_evidence(&evidence),
            // Committed by `settle`, after the input that led to it is fully handled.
            Action::Decided { height, block_hash, certificate } => {
                self.awaited = Some(AwaitedBlock { height, block_hash, certificate });
            }
        }
        Ok(None)
    }

    fn on_evidence(&mut self, evidence: &crate::consensus::core::Evidence) {
        if !evidence.verify(&self.config.ctx) {
            return;
        }
        let (height, round, step) = evidence.position();
        tracing::warn!(validator = %evidence.validator(), height, round, step, "validator equivocated (evidence verified)");
        self.equivocators.insert(evidence.validator());
    }

    /// How long from now the proposer waits before building ([`build_delay`]).
    fn build_delay(&self) -> Duration {
        build_delay(
            self.mempool.borrow().events,
            self.config.full_block_events,
            self.clock.now().saturating_duration_since(self.height_started),
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
        let block = match self.chain.build(self.clock.unix_ms()).await {
            Ok(block) => block,
            Err(e) => {
                tracing::error!(height, "cannot build a block: {e}");
                return Ok(None);
            }
        };
        // The chain worker builds on its tip, which sync may have moved past this height
        // before the driver heard of it: such a block is another height's, and its parts,
        // signed as this round's proposer, would be refused by every peer (each refusal
        // counts against this node, and enough of them make peers ignore all it sends).
        if block.header.height != height {
            tracing::debug!(height, built = block.header.height, "not proposing: the tip moved on");
            return Ok(None);
        }
        self.core.persist_block(&block)?;
        let hash = block.header.hash();
        self.publish_parts(&block, round, Round::Nil).await;
        tracing::debug!(height, round = round.as_i64(), events = block.events.len(), "proposing");
        self.blocks.insert(hash, block);
        Ok(Some(propose(height, round, hash)))
    }

    async fn on_consensus(&mut self, msg: ConsensusWire) -> Result<(), DriverError> {
        match msg {
            ConsensusWire::Signed(m) => {
                let h = match &m {
                    SignedConsensusMsg::Vote(v) => v.message.height.0,
                    SignedConsensusMsg::Proposal(p) => p.message.height.0,
                };
                if h > self.height {
                    let _ = self.out.try_send(Outbound::Behind { height: h });
                }
                self.feed(from_peer(m)).await
            }
            ConsensusWire::Polka(c) => {
                self.feed(malachite_core_consensus::Input::PolkaCertificate(c)).await
            }
            ConsensusWire::Part(part) => self.on_part(part).await,
        }
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
            Ok(Resolved::Block { block, .. }) if self.config.planted.vote_unchecked_proposals => {
                (*block, true)
            }
            Ok(Resolved::Block { block, verdict }) => {
                let valid = match verdict {
                    Ok(h) => {
                        let floor = self.parent_time_ms;
                        h == hash && timely(&block.header, a.proposer, self.clock.unix_ms(), floor)
                    }
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

    /// Asks for a proposal's missing events from its proposer ([`Outbound::Fetch`]); the
    /// answer comes back as [`DriverInput::Fetched`]. At the bound of
    /// [`MAX_FETCHES_IN_FLIGHT`] the proposal is not fetched and gets no vote (a later round
    /// proposes again).
    fn fetch(&mut self, a: Assembled, missing: Vec<Hash>) {
        let hash = a.proposal.header.hash();
        let height = a.proposal.header.height;
        if self.fetching.contains_key(&hash) || self.fetching.len() >= MAX_FETCHES_IN_FLIGHT {
            tracing::debug!(height, "not fetching: already fetching or at the bound");
            return;
        }
        tracing::debug!(height, missing = missing.len(), proposer = %a.proposer, "fetching a proposal's missing events");
        let ask = Outbound::Fetch { assembled: Box::new(a), missing };
        if self.out.try_send(ask).is_ok() {
            self.fetching.insert(hash, height);
        }
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
        match self.chain.commit(certified, self.clock.unix_ms()).await {
            Ok(_) => {}
            Err(crate::chain::ChainError::Stopped) => return Err(DriverError::ChainStopped),
            Err(source) => {
                // The sync task may have committed this height first.
                let tip = self.chain.tip().await.map_err(|_| DriverError::ChainStopped)?;
                if tip.height < height {
                    return Err(DriverError::Commit { height, source });
                }
            }
        }
        self.decided += 1;
        tracing::debug!(height, "decided and committed");
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
        self.parent_time_ms = tip.time_ms;
        self.height_started = self.clock.now();
        self.timers.clear();
        self.blocks.clear();
        self.pending_build = None;
        self.awaited = None;
        self.assembler.prune_below(height);
        self.streamed.prune_below(height);
        // Their answers, if any still come, are for a height gone by and are dropped.
        self.fetching.retain(|_, h| *h >= height);
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

/// Whether a proposed block's time is not in this validator's future by more than
/// [`MAX_PROPOSAL_AHEAD_MS`], counting from the later of its clock and the parent block's time.
/// A block's time is its proposer's clock, and block times never go back, so one block from a
/// proposer whose clock runs ahead would hold every later block's time ahead too, and with it
/// the window in which events' times are accepted: a correct validator votes against it. The
/// proposer's operator sees its clock reported off (`clock_offset_ms`). What the chain already
/// decided is not judged again: a block at its parent's time (`parent_time_ms`), built by a
/// proposer whose clock is behind that time, is timely (otherwise one block near the window's
/// edge would make every validator whose clock is behind vote against the next blocks too, and
/// heights would need extra rounds until the clocks catch up with it). Only proposals are
/// judged by the clock; a decided block is committed whatever its time.
fn timely(
    header: &tradeloop_ledger::Header,
    proposer: PublicKey,
    now_ms: u64,
    parent_time_ms: u64,
) -> bool {
    let ahead = header.time_ms.saturating_sub(now_ms.max(parent_time_ms));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_judged_timely_from_the_later_of_the_clock_and_its_parents_time() {
        let proposer = tradeloop_crypto::SigningKey::from_seed_label("proposer").public_key();
        let header = |time_ms| tradeloop_ledger::Header {
            chain: Hash::ZERO,
            height: 2,
            prev_hash: Hash::ZERO,
            time_ms,
            proposer,
            events_root: Hash::ZERO,
            event_count: 0,
            app_hash: Hash::ZERO,
            validators_hash: Hash::ZERO,
        };
        let (now, ahead) = (100_000, MAX_PROPOSAL_AHEAD_MS);
        // Against this validator's clock alone.
        assert!(timely(&header(now + ahead), proposer, now, 0));
        assert!(!timely(&header(now + ahead + 1), proposer, now, 0));
        // The parent's time, agreed already, is ahead of this clock by 3 s: a block at that
        // time, or within the window after it, is timely; beyond the window it is not.
        let parent = now + 3_000;
        assert!(timely(&header(parent), proposer, now, parent));
        assert!(timely(&header(parent + ahead), proposer, now, parent));
        assert!(!timely(&header(parent + ahead + 1), proposer, now, parent));
    }

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
