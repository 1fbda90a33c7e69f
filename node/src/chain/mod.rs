//! The chain worker: one OS thread that owns the [`Ledger`] and the [`Mempool`] and does all of
//! their synchronous work (sled, the block log's fsync, signature checks on rayon), so that no
//! tokio worker ever blocks on storage. The rest of the node talks to it through
//! [`ChainHandle`], a bounded command channel with one-shot replies.
//!
//! ```text
//! API / gossip --Admit--> [chain worker] <--Build/Validate/Commit-- consensus driver
//!                              |  owns Ledger (block log + index) and Mempool
//!                              +--CommitNotice--> broadcast (API waiters, stream)
//! ```
//!
//! Commands are served one at a time, in arrival order: the ledger has one writer, and a commit
//! and an admission never interleave, so the mempool's view is always the tip plus its events.

use std::collections::{HashMap, VecDeque};

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::clock::{ClockChange, ClockWatch};
use tradeloop_crypto::{Hash, SigningKey};
use tradeloop_ledger::execute::{check_events, CHECK_CHUNK_EVENTS};
use tradeloop_ledger::model::block::Tip;
use tradeloop_ledger::storage::index::{IndexStore, SledIndex};
use tradeloop_ledger::storage::store::Prepared;
use tradeloop_ledger::{
    Block, CertifiedBlock, Event, Genesis, Ledger, LedgerError, RejectCode, Rejection, SignedEvent,
};

use crate::mempool::{Admission, Mempool, MempoolLimits, WrittenKeys};
use crate::net::message::CompactBlock;

/// Bound on commands other than admissions waiting for the chain worker (consensus, sync and
/// reads; served first).
pub const CHAIN_COMMAND_CHANNEL: usize = 256;
/// Bound on admissions waiting for the chain worker (served when no other command waits).
pub const CHAIN_ADMISSION_CHANNEL: usize = 256;
/// Executed blocks kept for their commit (the proposals seen at the current height).
pub const PREPARED_BLOCKS_KEPT: usize = 16;
/// Rounds of epoch garbage collection after each commit ([`collect_index_garbage`]).
pub const GARBAGE_COLLECT_ROUNDS: usize = 4;

/// Runs the destructors of the index pages a commit replaced on this thread, the one that allocated
/// them. sled frees a replaced page through crossbeam's epoch collector, which runs such
/// destructors on whichever thread next pins an epoch: in a node mostly sled's I/O threads, so
/// every page was freed across threads, the allocator's slow path, and the next commit's index
/// write on this thread paid for collecting them (docs/performance.md, "sled's replaced pages freed
/// on the chain worker"). Each round moves this thread's deferred frees to the global queue and
/// runs up to crossbeam's batch of the expired ones.
fn collect_index_garbage() {
    for _ in 0..GARBAGE_COLLECT_ROUNDS {
        crossbeam_epoch::pin().flush();
    }
}

pub mod notice;

pub use notice::{CommitNotice, Committed, Evicted};

/// Where the chain worker runs the stateless checks (signature included) of the events it
/// has not checked before (`[runtime] verify_threads`, docs/operations.md).
#[derive(Debug)]
pub enum Verifier {
    /// rayon's global pool: one thread per core (`verify_threads = 0`).
    Cores,
    /// On the chain worker itself, with no hand-off (`verify_threads = 1`): where several
    /// nodes share a machine's cores, a pool's threads only wait for work and wake each other.
    Inline,
    /// A pool of its own of that many threads.
    Pool(rayon::ThreadPool),
}

impl Verifier {
    /// The verifier for `[runtime] verify_threads = threads`.
    pub fn new(threads: usize) -> std::io::Result<Verifier> {
        Ok(match threads {
            0 => Verifier::Cores,
            1 => Verifier::Inline,
            n => Verifier::Pool(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("verify-{i}"))
                    .build()
                    .map_err(std::io::Error::other)?,
            ),
        })
    }

    /// The stateless check of each of `events`, in order.
    pub fn check(
        &self,
        genesis: &Genesis,
        events: &[SignedEvent],
    ) -> Vec<Result<Event, Rejection>> {
        match self {
            Verifier::Cores => check_events(genesis, events),
            Verifier::Inline => events
                .chunks(CHECK_CHUNK_EVENTS)
                .flat_map(|chunk| tradeloop_ledger::check_event_batch(genesis, chunk))
                .collect(),
            Verifier::Pool(pool) => pool.install(|| check_events(genesis, events)),
        }
    }
}

/// What admission said about one event, for the caller to answer and gossip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// The event's id.
    pub id: Hash,
    /// The verdict: `Accepted` is newly in this node's mempool (gossip it).
    pub admission: Admission,
}

impl Admitted {
    /// Whether the event is newly in this node's mempool.
    pub fn is_accepted(&self) -> bool {
        self.admission == Admission::Accepted
    }
}

/// A proposal rebuilt from its compact form ([`ChainHandle::resolve`]).
#[derive(Debug)]
pub enum Resolved {
    /// The whole block, and whether it is valid on the tip (its hash if so).
    Block {
        /// The block.
        block: Box<Block>,
        /// Its hash if valid, else why not.
        verdict: Result<Hash, LedgerError>,
    },
    /// Events of the proposal neither in the mempool nor fetched: ask the proposer.
    Missing(Vec<Hash>),
}

/// Mempool figures for status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MempoolStats {
    /// Events pending.
    pub events: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// Why a chain command failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The ledger refused or failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The worker has stopped (the node is shutting down, or it failed).
    #[error("the chain worker has stopped; the node is shutting down or failed (see its log)")]
    Stopped,
}

impl ChainError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ChainError::Ledger(e) => e.code(),
            ChainError::Stopped => "CHAIN_STOPPED",
        }
    }
}

type Reply<T> = oneshot::Sender<T>;

enum Command {
    Admit {
        events: Vec<SignedEvent>,
        now_ms: u64,
        /// From a peer (the rules wait for the block) rather than this node's clients.
        relayed: bool,
        reply: Reply<Result<Vec<Admitted>, LedgerError>>,
    },
    Build {
        time_ms: u64,
        reply: Reply<Result<Block, LedgerError>>,
    },
    Resolve {
        proposal: Box<CompactBlock>,
        fetched: Vec<SignedEvent>,
        reply: Reply<Result<Resolved, LedgerError>>,
    },
    Commit {
        certified: Box<CertifiedBlock>,
        now_ms: u64,
        reply: Reply<Result<Hash, LedgerError>>,
    },
    Tip {
        reply: Reply<Tip>,
    },
    Blocks {
        from: u64,
        count: u32,
        max_bytes: u64,
        reply: Reply<Result<Vec<CertifiedBlock>, LedgerError>>,
    },
    Lookup {
        ids: Vec<Hash>,
        reply: Reply<Result<Vec<Option<Committed>>, LedgerError>>,
    },
    Stats {
        reply: Reply<MempoolStats>,
    },
}

/// The cloneable way to the chain worker.
#[derive(Clone, Debug)]
pub struct ChainHandle {
    /// Consensus, sync and reads.
    commands: mpsc::Sender<Command>,
    /// Admissions: a flood of submitted or gossiped events never delays a proposal's
    /// validation or a commit behind it.
    admissions: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("chain command")
    }
}

impl ChainHandle {
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ChainError> {
        let (tx, rx) = oneshot::channel();
        let command = make(tx);
        let lane = if matches!(command, Command::Admit { .. }) {
            &self.admissions
        } else {
            &self.commands
        };
        lane.send(command).await.map_err(|_| ChainError::Stopped)?;
        rx.await.map_err(|_| ChainError::Stopped)
    }

    /// Admits events this node's clients submitted to the mempool (signatures checked in
    /// parallel, rules against the tip and the checked pending events), one result per event
    /// in order.
    pub async fn admit(
        &self,
        events: Vec<SignedEvent>,
        now_ms: u64,
    ) -> Result<Vec<Admitted>, ChainError> {
        Ok(self.ask(|reply| Command::Admit { events, now_ms, relayed: false, reply }).await??)
    }

    /// Admits events a peer relayed: the stateless checks only ([`Mempool::relay`]; the rules
    /// run on the block that holds them), one result per event in order.
    pub async fn relay(
        &self,
        events: Vec<SignedEvent>,
        now_ms: u64,
    ) -> Result<Vec<Admitted>, ChainError> {
        Ok(self.ask(|reply| Command::Admit { events, now_ms, relayed: true, reply }).await??)
    }

    /// Builds the next block from the mempool, as `proposer`, at `time_ms`.
    pub async fn build(&self, time_ms: u64) -> Result<Block, ChainError> {
        Ok(self.ask(|reply| Command::Build { time_ms, reply }).await??)
    }

    /// Rebuilds a proposed block from its compact form, taking each event from the mempool
    /// or from `fetched` (events a peer sent for it, checked here like any other), and
    /// validates it against the tip; or says which events are missing.
    pub async fn resolve(
        &self,
        proposal: CompactBlock,
        fetched: Vec<SignedEvent>,
    ) -> Result<Resolved, ChainError> {
        Ok(self
            .ask(|reply| Command::Resolve { proposal: Box::new(proposal), fetched, reply })
            .await??)
    }

    /// Commits a certified block (checks it fully, log fsync, index), then updates the mempool
    /// and broadcasts a [`CommitNotice`].
    pub async fn commit(&self, certified: CertifiedBlock, now_ms: u64) -> Result<Hash, ChainError> {
        Ok(self
            .ask(|reply| Command::Commit { certified: Box::new(certified), now_ms, reply })
            .await??)
    }

    /// The committed tip.
    pub async fn tip(&self) -> Result<Tip, ChainError> {
        self.ask(|reply| Command::Tip { reply }).await
    }

    /// Committed blocks from `from`, at most `count` and `max_bytes` (at least one block if
    /// `from` is committed).
    pub async fn blocks(
        &self,
        from: u64,
        count: u32,
        max_bytes: u64,
    ) -> Result<Vec<CertifiedBlock>, ChainError> {
        Ok(self.ask(|reply| Command::Blocks { from, count, max_bytes, reply }).await??)
    }

    /// Where each event is committed, if it is.
    pub async fn lookup(&self, ids: Vec<Hash>) -> Result<Vec<Option<Committed>>, ChainError> {
        Ok(self.ask(|reply| Command::Lookup { ids, reply }).await??)
    }

    /// Mempool figures.
    pub async fn stats(&self) -> Result<MempoolStats, ChainError> {
        self.ask(|reply| Command::Stats { reply }).await
    }
}

/// Whether a ledger error means the data dir could not be read or written (rather than bad
/// input or a damaged copy): the node then stops and waits for its disk (`crate::outage`).
pub fn is_storage_failure(e: &LedgerError) -> bool {
    matches!(e, LedgerError::Io { .. } | LedgerError::Store(_) | LedgerError::Index(_))
}

/// Where the chain worker reports what it does.
#[derive(Debug)]
pub struct WorkerReports {
    /// A notice of every commit.
    pub commits: broadcast::Sender<CommitNotice>,
    /// The mempool's figures, after every change.
    pub stats: watch::Sender<MempoolStats>,
    /// Height, commit latency, rounds per height, events per block, clock offset.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Why a commit could not be written to the data dir, once one could not.
    pub storage: watch::Sender<Option<String>>,
}

/// Starts the worker thread over an opened ledger. `proposer` is this node's key (the header's
/// proposer field of the blocks it builds). The thread ends when every handle is dropped.
pub fn spawn(
    ledger: Ledger,
    limits: MempoolLimits,
    verifier: Verifier,
    proposer: SigningKey,
    reports: WorkerReports,
) -> std::io::Result<(ChainHandle, std::thread::JoinHandle<()>)> {
    let (handle, lanes) = lanes();
    let worker = Worker::new(ledger, limits, verifier, proposer, reports, PlantedFaults::default());
    start(worker, lanes).map(|thread| (handle, thread))
}

/// A chain worker without a thread, for the simulator: the caller serves what its handles
/// asked ([`LocalWorker::serve_waiting`]) between polls of the futures that asked it.
pub fn local<S: IndexStore>(
    ledger: Ledger<S>,
    limits: MempoolLimits,
    proposer: SigningKey,
    reports: WorkerReports,
    faults: PlantedFaults,
) -> (ChainHandle, LocalWorker<S>) {
    let (handle, lanes) = lanes();
    let worker = Worker::new(ledger, limits, Verifier::Inline, proposer, reports, faults);
    (handle, LocalWorker { worker, lanes })
}

/// A chain worker served by its caller ([`local`]).
pub struct LocalWorker<S: IndexStore = SledIndex> {
    worker: Worker<S>,
    lanes: Lanes,
}

impl<S: IndexStore> std::fmt::Debug for LocalWorker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalWorker")
    }
}

impl<S: IndexStore> LocalWorker<S> {
    /// Serves every command waiting, commands before admissions as the thread does; how many.
    pub fn serve_waiting(&mut self) -> usize {
        let mut served = 0;
        while let Some(command) = self.lanes.try_next() {
            self.worker.serve(command);
            served += 1;
        }
        served
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger<S> {
        &self.worker.ledger
    }

    /// The pending events the rules refuse after a full re-check against the tip at `now_ms`
    /// ([`Mempool::stale`]): none unless the re-check after a commit missed one.
    pub fn stale_pending(&self, now_ms: u64) -> Result<Vec<Hash>, LedgerError> {
        let w = &self.worker;
        let stale = w.mempool.stale(w.ledger.genesis(), &w.ledger, now_ms)?;
        Ok(stale.into_iter().map(|(id, _)| id).collect())
    }
}

fn start(worker: Worker, lanes: Lanes) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("chain".into()).spawn(move || worker.run(lanes))
}

/// The worker's two receiving ends.
struct Lanes {
    commands: mpsc::Receiver<Command>,
    admissions: mpsc::Receiver<Command>,
}

impl Lanes {
    /// A waiting command, else a waiting admission, if any.
    fn try_next(&mut self) -> Option<Command> {
        self.commands.try_recv().or_else(|_| self.admissions.try_recv()).ok()
    }
}

fn lanes() -> (ChainHandle, Lanes) {
    let (commands, commands_rx) = mpsc::channel(CHAIN_COMMAND_CHANNEL);
    let (admissions, admissions_rx) = mpsc::channel(CHAIN_ADMISSION_CHANNEL);
    (
        ChainHandle { commands, admissions },
        Lanes { commands: commands_rx, admissions: admissions_rx },
    )
}

struct Worker<S: IndexStore = SledIndex> {
    ledger: Ledger<S>,
    mempool: Mempool,
    verifier: Verifier,
    proposer: SigningKey,
    commits: broadcast::Sender<CommitNotice>,
    /// The mempool's figures, published after every change (the proposer waits on it).
    stats: watch::Sender<MempoolStats>,
    /// Executions of recently validated or built blocks on the current tip, for their commit
    /// (a round can see several proposals; the decided one is committed without executing it
    /// again).
    prepared: VecDeque<Prepared>,
    /// Height, commit latency, rounds per height, events per block.
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// This node's clock against the block times it commits at the network's tip.
    clock: ClockWatch,
    /// Set when a commit could not be written to the data dir: the runtime then stops.
    storage: watch::Sender<Option<String>>,
    /// Defects planted by the simulator's negative controls; none in a node.
    faults: PlantedFaults,
}

/// Defects the simulator's negative controls plant in the chain worker, to show that its
/// checkers catch them (`crate::sim`). A node never sets any.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlantedFaults {
    /// After a commit, remove the block's events from the mempool but do not re-check the
    /// others against the new tip.
    pub skip_mempool_recheck: bool,
    /// The consensus driver votes for every proposal it can rebuild, without the chain
    /// worker's verdict on it.
    pub vote_unchecked_proposals: bool,
}

impl<S: IndexStore> Worker<S> {
    fn new(
        ledger: Ledger<S>,
        limits: MempoolLimits,
        verifier: Verifier,
        proposer: SigningKey,
        reports: WorkerReports,
        faults: PlantedFaults,
    ) -> Worker<S> {
        let WorkerReports { commits, stats, metrics, storage } = reports;
        Worker {
            ledger,
            mempool: Mempool::new(limits),
            verifier,
            proposer,
            commits,
            stats,
            prepared: VecDeque::new(),
            metrics,
            clock: ClockWatch::default(),
            storage,
            faults,
        }
    }

    /// Serves commands until every handle is dropped: any waiting command before any waiting
    /// admission.
    fn run(mut self, lanes: Lanes) {
        let mut lanes = lanes;
        loop {
            let next = match lanes.try_next() {
                Some(command) => Some(command),
                None => futures::executor::block_on(async {
                    tokio::select! {
                        biased;
                        c = lanes.commands.recv() => c,
                        c = lanes.admissions.recv() => c,
                    }
                }),
            };
            // Both lanes close together, when the last handle is dropped.
            let Some(command) = next else { return };
            self.serve(command);
        }
    }

    fn serve(&mut self, command: Command) {
        // A reply nobody waits for any more is not an error.
        match command {
            Command::Admit { events, now_ms, relayed, reply } => {
                let _ = reply.send(self.admit(events, now_ms, relayed));
                self.publish_stats();
            }
            Command::Build { time_ms, reply } => {
                let _ = reply.send(self.build(time_ms));
            }
            Command::Resolve { proposal, fetched, reply } => {
                let _ = reply.send(self.resolve(*proposal, fetched));
            }
            Command::Commit { certified, now_ms, reply } => {
                let committed = self.commit(*certified, now_ms);
                if let Err(e) = &committed {
                    if is_storage_failure(e) {
                        self.storage.send_replace(Some(e.to_string()));
                    }
                }
                let _ = reply.send(committed);
                self.publish_stats();
            }
            Command::Tip { reply } => {
                let _ = reply.send(self.ledger.tip().clone());
            }
            Command::Blocks { from, count, max_bytes, reply } => {
                let _ = reply.send(self.blocks(from, count, max_bytes));
            }
            Command::Lookup { ids, reply } => {
                let _ = reply.send(ids.iter().map(|id| self.committed(id)).collect());
            }
            Command::Stats { reply } => {
                let _ = reply
                    .send(MempoolStats { events: self.mempool.len(), bytes: self.mempool.bytes() });
            }
        }
    }

    fn publish_stats(&self) {
        let now = MempoolStats { events: self.mempool.len(), bytes: self.mempool.bytes() };
        self.stats.send_if_modified(|s| {
            let changed = *s != now;
            *s = now;
            changed
        });
    }

    fn committed(&self, id: &Hash) -> Result<Option<Committed>, LedgerError> {
        let Some(record) = self.ledger.event(id)? else { return Ok(None) };
        let block_hash = self.ledger.block(record.height)?.block.header.hash();
        Ok(Some(Committed { height: record.height, block_hash, index: record.index }))
    }

    fn admit(
        &mut self,
        events: Vec<SignedEvent>,
        now_ms: u64,
        relayed: bool,
    ) -> Result<Vec<Admitted>, LedgerError> {
        let mut results: Vec<Option<Admitted>> = vec![None; events.len()];
        // Pending duplicates first, before any cryptography. A committed event is found by
        // the rules' replay check (one state read, which admission makes anyway), and only
        // then located in the index: a fresh event costs no index read.
        let mut fresh = Vec::new();
        let mut candidates = Vec::new();
        for (i, e) in events.into_iter().enumerate() {
            let id = e.id();
            if self.mempool.contains(&id) {
                results[i] = Some(Admitted { id, admission: Admission::AlreadyPending });
            } else {
                fresh.push((i, id));
                candidates.push(e);
            }
        }
        let checks = self.verifier.check(self.ledger.genesis(), &candidates);
        let genesis = self.ledger.genesis().clone();
        for (((i, id), signed), check) in fresh.into_iter().zip(candidates).zip(checks) {
            let admission = if relayed {
                self.mempool.relay(&genesis, &self.ledger, now_ms, signed, check)?
            } else {
                self.mempool.admit(&genesis, &self.ledger, now_ms, signed, check)?
            };
            let admission = match admission {
                Admission::Rejected(r) if r.code == RejectCode::DuplicateEvent => {
                    match self.committed(&id)? {
                        Some(at) => Admission::AlreadyCommitted(at),
                        None => Admission::Rejected(r),
                    }
                }
                other => other,
            };
            results[i] = Some(Admitted { id, admission });
        }
        Ok(results.into_iter().map(|r| r.unwrap_or_else(unreachable_result)).collect())
    }

    fn build(&mut self, time_ms: u64) -> Result<Block, LedgerError> {
        let c = &self.ledger.genesis().doc.consensus;
        let candidates =
            self.mempool.candidates(c.max_block_events as usize, u64::from(c.max_block_bytes));
        // Each candidate's evaluation at admission is reused where it still holds.
        let (block, prepared, refused) = self.ledger.prepare_block(
            &candidates.signed,
            candidates.events.into_iter().map(Ok).collect(),
            &candidates.footprints,
            time_ms,
            &self.proposer,
        )?;
        // Relayed events the rules refuse leave the pool now (as admission would have refused
        // them); their verdicts go out with the next commit notice.
        let refused = refused.into_iter().map(|(i, r)| (candidates.signed[i].id(), r)).collect();
        self.mempool.evict_refused(refused);
        self.keep(prepared);
        Ok(block)
    }

    /// The stateless checks of a block's events: the mempool's verdicts where it has them,
    /// a fresh check (signature included) for the others.
    fn checks_for(&self, block: &Block) -> Vec<Result<Event, Rejection>> {
        let reused =
            block.events.iter().map(|e| self.mempool.checked(e).cloned().map(Ok)).collect();
        self.complete_checks(&block.events, reused)
    }

    /// `reused[i]` is event `i`'s verdict where this node has one; the others are checked
    /// here (signature included), in parallel.
    fn complete_checks(
        &self,
        events: &[SignedEvent],
        mut reused: Vec<Option<Result<Event, Rejection>>>,
    ) -> Vec<Result<Event, Rejection>> {
        let missing: Vec<usize> = (0..events.len()).filter(|&i| reused[i].is_none()).collect();
        let unseen: Vec<SignedEvent> = missing.iter().map(|&i| events[i].clone()).collect();
        for (i, check) in
            missing.into_iter().zip(self.verifier.check(self.ledger.genesis(), &unseen))
        {
            reused[i] = Some(check);
        }
        reused
            .into_iter()
            .map(|c| {
                c.unwrap_or_else(|| Err(Rejection::new(RejectCode::MalformedEvent, "not checked")))
            })
            .collect()
    }

    fn keep(&mut self, prepared: Prepared) {
        if self.prepared.len() >= PREPARED_BLOCKS_KEPT {
            self.prepared.pop_front();
        }
        self.prepared.push_back(prepared);
    }

    fn resolve(
        &mut self,
        proposal: CompactBlock,
        fetched: Vec<SignedEvent>,
    ) -> Result<Resolved, LedgerError> {
        // A proposal whose id list disagrees with its header, or is over the chain's bound,
        // is refused before anything is looked up or fetched for it.
        let n = proposal.ids.len();
        let max = self.ledger.genesis().doc.consensus.max_block_events as usize;
        if n != proposal.header.event_count as usize || n > max {
            return Err(LedgerError::InvalidBlock {
                height: proposal.header.height,
                detail: format!(
                    "the proposal lists {n} event ids; its header says {} (at most {max})",
                    proposal.header.event_count
                ),
            });
        }
        let fetched: HashMap<Hash, SignedEvent> =
            fetched.into_iter().map(|e| (e.id(), e)).collect();
        let mut events = Vec::with_capacity(n);
        let mut checks: Vec<Option<Result<Event, Rejection>>> = Vec::with_capacity(n);
        let mut memos = Vec::with_capacity(n);
        let mut missing = Vec::new();
        for id in &proposal.ids {
            if let Some((signed, event, footprint)) = self.mempool.pending(id) {
                events.push(signed.clone());
                // The verdict of this node's own admission: no signature is verified again,
                // and its evaluation (if it had one) is reused where every state value it read
                // is the same.
                checks.push(Some(Ok(event.clone())));
                memos.push(footprint);
            } else if let Some(signed) = fetched.get(id) {
                events.push(signed.clone());
                checks.push(None);
                memos.push(None);
            } else {
                missing.push(*id);
            }
        }
        if !missing.is_empty() {
            return Ok(Resolved::Missing(missing));
        }
        let block = Block { header: proposal.header, events };
        let hash = block.header.hash();
        if self.prepared.iter().any(|p| p.hash() == hash) {
            return Ok(Resolved::Block { block: Box::new(block), verdict: Ok(hash) });
        }
        let checks = self.complete_checks(&block.events, checks);
        let verdict = match self.ledger.prepare_proposal(&block, checks, &memos) {
            Ok(prepared) => {
                self.keep(prepared);
                Ok(hash)
            }
            Err(e) => Err(e),
        };
        Ok(Resolved::Block { block: Box::new(block), verdict })
    }

    fn commit(&mut self, certified: CertifiedBlock, now_ms: u64) -> Result<Hash, LedgerError> {
        let started = std::time::Instant::now();
        let block_hash = certified.block.header.hash();
        let tip = self.ledger.tip().clone();
        let kept = self.prepared.iter().position(|p| p.hash() == block_hash && *p.parent() == tip);
        // What the block wrote, when its execution was kept: the mempool then re-checks only
        // the pending events that meet it.
        let mut written: Option<WrittenKeys> = None;
        let (hash, ids) = match kept.and_then(|i| self.prepared.remove(i)) {
            Some(prepared) => {
                written = Some(WrittenKeys::of(prepared.written_keys()));
                let ids = prepared.ids().to_vec();
                (self.ledger.commit_prepared(&certified, prepared)?, ids)
            }
            None => {
                let checks = self.checks_for(&certified.block);
                let hash = self.ledger.commit_block_checked(&certified, checks)?;
                (hash, certified.block.events.iter().map(SignedEvent::id).collect())
            }
        };
        collect_index_garbage();
        let genesis = self.ledger.genesis().clone();
        // Evicted events were accepted once; the rules now refuse them (a conflicting event
        // won). The notice carries the verdicts, so their waiters answer `rejected`.
        let evicted = if self.faults.skip_mempool_recheck {
            self.mempool.on_commit_without_recheck(&ids);
            Vec::new()
        } else {
            self.mempool.on_commit(&genesis, &self.ledger, now_ms, &ids, written)?
        };
        if !evicted.is_empty() {
            tracing::info!(
                height = certified.block.header.height,
                count = evicted.len(),
                "accepted events evicted: the rules refuse them after this commit"
            );
        }
        let evicted = evicted
            .into_iter()
            .map(|(id, r)| Evicted { id, code: r.code.as_str().to_string(), message: r.message })
            .collect();
        self.prepared.clear();
        self.metrics.on_commit(
            certified.block.header.height,
            certified.certificate.round,
            ids.len(),
            started.elapsed().as_secs_f64(),
        );
        self.watch_clock(&certified.block.header, now_ms);
        tracing::info!(
            height = certified.block.header.height,
            round = certified.certificate.round,
            events = ids.len(),
            block = %hash,
            "committed"
        );
        let _ = self.commits.send(CommitNotice {
            height: certified.block.header.height,
            block_hash: hash,
            event_ids: ids,
            evicted,
        });
        Ok(hash)
    }

    /// Compares this node's clock with the time of a block committed at the network's tip (a
    /// block fetched while catching up is old by nature); says so when it drifts too far.
    fn watch_clock(&mut self, header: &tradeloop_ledger::Header, now_ms: u64) {
        if self.metrics.sync_lag() > 0 {
            return;
        }
        let change = self.clock.observe(header.proposer, header.time_ms, now_ms);
        if let Some(offset) = self.clock.offset_ms() {
            self.metrics.clock_offset_ms.set(offset);
        }
        match change {
            ClockChange::Same => {}
            ClockChange::Off(offset) => tracing::warn!(
                offset_ms = offset,
                "this node's clock is {} s {} the block times of the network; fix its time \
                 synchronisation (NTP): events it admits and blocks it proposes carry its clock",
                offset.unsigned_abs() / 1000,
                if offset > 0 { "ahead of" } else { "behind" },
            ),
            ClockChange::BackInLine(offset) => {
                tracing::info!(
                    offset_ms = offset,
                    "this node's clock agrees with the network again"
                )
            }
        }
    }

    fn blocks(
        &self,
        from: u64,
        count: u32,
        max_bytes: u64,
    ) -> Result<Vec<CertifiedBlock>, LedgerError> {
        let tip = self.ledger.tip().height;
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let last = tip.min(from.saturating_add(u64::from(count)).saturating_sub(1));
        for h in from.max(1)..=last {
            let block = self.ledger.block(h)?;
            let size = tradeloop_ledger::encoding::codec::encoded_len(&block).unwrap_or(u64::MAX);
            if !out.is_empty() && bytes.saturating_add(size) > max_bytes {
                break;
            }
            bytes = bytes.saturating_add(size);
            out.push(block);
        }
        Ok(out)
    }
}

fn unreachable_result() -> Admitted {
    let admission = Admission::Rejected(Rejection::new(RejectCode::MalformedEvent, "not checked"));
    Admitted { id: Hash::ZERO, admission }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A failing disk stops the node to wait for it, whichever layer reports it: the block
    /// log (I/O), sled (its own error) or an injected fault.
    #[test]
    fn every_kind_of_disk_failure_is_a_storage_failure() {
        let full = || std::io::Error::from(std::io::ErrorKind::StorageFull);
        let context = "writing the block log".to_string();
        assert!(is_storage_failure(&LedgerError::Io { context, error: full() }));
        assert!(is_storage_failure(&LedgerError::Index(sled::Error::Io(full()))));
        assert!(is_storage_failure(&LedgerError::Store("injected fault".into())));
        assert!(!is_storage_failure(&LedgerError::NotFound("order:PO-1".into())));
    }
    use tradeloop_ledger::sample::{trade_events, Cast};

    fn worker(cast: &Cast, dir: &std::path::Path) -> ChainHandle {
        let ledger = Ledger::open(dir, cast.genesis.clone()).unwrap();
        let limits = MempoolLimits { max_events: 1000, max_bytes: 1 << 24 };
        let (commits, _) = broadcast::channel(4);
        let (stats, _) = watch::channel(MempoolStats::default());
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        let key = cast.validator_keys[0].clone();
        let storage = watch::channel(None).0;
        let reports = WorkerReports { commits, stats, metrics, storage };
        spawn(ledger, limits, Verifier::Inline, key, reports).unwrap().0
    }

    /// Every `verify_threads` setting gives the same verdicts, in the same order, as the
    /// ledger's own check: valid events, a forged signature and a mangled body among them, in
    /// more than one chunk.
    #[test]
    fn every_verifier_gives_the_ledgers_verdicts() {
        let t = crate::time::now_ms();
        let cast = Cast::deterministic(1, t - 10_000).unwrap();
        let mut events: Vec<SignedEvent> =
            (1..=8).flat_map(|n| trade_events(&cast, n, t)).collect();
        assert!(events.len() > 2 * CHECK_CHUNK_EVENTS, "{} events", events.len());
        let other = trade_events(&cast, 9, t);
        events[5].signature = other[5].signature;
        events[CHECK_CHUNK_EVENTS + 3].body[0] = b'[';
        let expected: Vec<_> =
            events.iter().map(|e| tradeloop_ledger::check_event(&cast.genesis, e)).collect();
        assert!(expected[5].is_err() && expected[CHECK_CHUNK_EVENTS + 3].is_err());
        assert_eq!(expected.iter().filter(|r| r.is_ok()).count(), events.len() - 2);
        for threads in [0, 1, 3] {
            let verifier = Verifier::new(threads).unwrap();
            assert_eq!(
                verifier.check(&cast.genesis, &events),
                expected,
                "verify_threads = {threads}"
            );
        }
    }

    /// A command that waits is served before admissions that were queued ahead of it: a flood
    /// of submitted or gossiped events does not hold up a proposal's validation or a commit.
    #[tokio::test]
    async fn waiting_commands_are_served_before_waiting_admissions() {
        let t = crate::time::now_ms();
        let cast = Cast::deterministic(1, t - 10_000).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path(), cast.genesis.clone()).unwrap();
        let reports = WorkerReports {
            commits: broadcast::channel(4).0,
            stats: watch::channel(MempoolStats::default()).0,
            metrics: std::sync::Arc::new(crate::metrics::Metrics::new()),
            storage: watch::channel(None).0,
        };
        let limits = MempoolLimits { max_events: 1000, max_bytes: 1 << 24 };
        let key = cast.validator_keys[0].clone();
        let worker =
            Worker::new(ledger, limits, Verifier::Inline, key, reports, PlantedFaults::default());
        let (handle, lanes) = lanes();
        // Three admissions, then a read, all queued before the worker starts.
        let events = trade_events(&cast, 1, t);
        let mut admitted = Vec::new();
        for e in &events[..3] {
            let (reply, answer) = oneshot::channel();
            let events = vec![e.clone()];
            handle
                .admissions
                .try_send(Command::Admit { events, now_ms: t, relayed: false, reply })
                .unwrap();
            admitted.push(answer);
        }
        let (reply, read) = oneshot::channel();
        handle.commands.try_send(Command::Stats { reply }).unwrap();
        let thread = start(worker, lanes).unwrap();
        assert_eq!(read.await.unwrap().events, 0, "the read was served before the admissions");
        for answer in admitted {
            let results = answer.await.unwrap().unwrap();
            assert!(matches!(&results[..], [a] if a.is_accepted()), "{results:?}");
        }
        assert_eq!(handle.stats().await.unwrap().events, 3);
        drop(handle);
        tokio::task::spawn_blocking(move || thread.join().unwrap()).await.unwrap();
    }

    /// A validator rebuilds a compact proposal from its mempool, says which events it lacks,
    /// and checks fetched events like any other: a forged signature (same body, so same id)
    /// makes the block invalid.
    #[tokio::test]
    async fn a_compact_proposal_is_rebuilt_from_the_mempool_and_fetched_events() {
        let t = crate::time::now_ms();
        let cast = Cast::deterministic(1, t - 10_000).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (proposer, validator) =
            (worker(&cast, &dir.path().join("a")), worker(&cast, &dir.path().join("b")));
        let events = trade_events(&cast, 1, t);
        let admitted = proposer.admit(events.clone(), t).await.unwrap();
        assert!(admitted.iter().all(Admitted::is_accepted), "{admitted:?}");
        let block = proposer.build(t).await.unwrap();
        assert_eq!(block.events, events);
        let proposal = CompactBlock::of(&block);
        let hash = block.header.hash();

        let Resolved::Missing(all) = validator.resolve(proposal.clone(), vec![]).await.unwrap()
        else {
            panic!("an empty mempool has none of the events")
        };
        assert_eq!(all, proposal.ids);
        validator.admit(events[..5].to_vec(), t).await.unwrap();
        let Resolved::Missing(rest) = validator.resolve(proposal.clone(), vec![]).await.unwrap()
        else {
            panic!("five of the events are pending, not all")
        };
        assert_eq!(rest, proposal.ids[5..].to_vec());

        let mut forged = events[5..].to_vec();
        forged[3].signature.0[7] ^= 1;
        let Resolved::Block { block: rebuilt, verdict } =
            validator.resolve(proposal.clone(), forged).await.unwrap()
        else {
            panic!("every id was given")
        };
        assert_eq!(rebuilt.header.hash(), hash);
        assert!(
            verdict.is_err(),
            "a fetched event with a forged signature is checked: {verdict:?}"
        );

        let Resolved::Block { block: rebuilt, verdict } =
            validator.resolve(proposal, events[5..].to_vec()).await.unwrap()
        else {
            panic!("every id was given")
        };
        assert_eq!(*rebuilt, block);
        assert_eq!(verdict.unwrap(), hash);

        // An id list that disagrees with the header's count is refused before any lookup.
        let mut short = CompactBlock::of(&block);
        short.ids.pop();
        let refused = validator.resolve(short, vec![]).await;
        assert!(matches!(refused, Err(ChainError::Ledger(LedgerError::InvalidBlock { .. }))));
    }
}
