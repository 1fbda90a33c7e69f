//! One simulated validator: the node's own consensus driver, chain worker (with its mempool),
//! block sync and proposal fetch, over a data dir on tmpfs and a virtual clock, polled by the
//! simulation instead of tokio.
//!
//! The driver's calls and the tasks (a sync, a fetch) are futures polled with a no-op waker:
//! when one waits for the chain worker, the worker serves what was asked and the future is
//! polled again; when one waits for a peer, it stays parked until the simulation delivers the
//! answer (or the timeout) and polls it again.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tradeloop_crypto::{Hash, PublicKey, SigningKey};
use tradeloop_ledger::model::genesis::ConsensusParams;
use tradeloop_ledger::storage::index::{Fault, FaultPlan, FaultyIndex};
use tradeloop_ledger::{Genesis, Ledger, SignedEvent};

use super::network::SimRequests;
use crate::chain::{self, ChainHandle, CommitNotice, LocalWorker, MempoolStats, PlantedFaults};
use crate::consensus::context::{TradeContext, Validators};
use crate::consensus::core::ConsensusCore;
use crate::consensus::guard::SignGuard;
use crate::consensus::parts::Assembled;
use crate::consensus::streamed::StreamedBlocks;
use crate::consensus::walrecord::WalRecord;
use crate::mempool::MempoolLimits;
use crate::net::sync::{self, SyncedTo};
use crate::runtime::driver::{
    self, Driver, DriverConfig, DriverError, DriverInput, DriverLinks, Outbound,
};
use crate::runtime::fetch::{self, FETCH_DEADLINE};
use crate::time::{Clock, VirtualClock};

/// Bound on a simulated validator's mempool (far above what a run submits).
const SIM_MEMPOOL: MempoolLimits = MempoolLimits { max_events: 100_000, max_bytes: 1 << 28 };
/// Commit notices kept for the simulation between two of its looks (it looks after every step).
const SIM_COMMIT_NOTICES: usize = 4096;

/// What every validator of a run shares.
#[derive(Clone, Debug)]
pub(super) struct Shared {
    pub genesis: Genesis,
    pub ctx: TradeContext,
    pub validators: Validators,
    pub params: ConsensusParams,
    pub quorum: Option<(u64, u64)>,
    pub planted: PlantedFaults,
}

/// A task of a validator that waits on its peers.
struct Task {
    /// The height it serves (a fetch of an older height is dropped when a newer one starts).
    height: u64,
    sync: bool,
    /// When it is given up on (virtual ms), and the driver's input then.
    deadline: Option<(u64, DriverInput)>,
    fut: Pin<Box<dyn Future<Output = ()>>>,
}

/// A validator process while it runs.
pub(super) struct Running {
    driver: Driver,
    worker: LocalWorker<FaultyIndex>,
    chain: ChainHandle,
    inputs_tx: mpsc::Sender<DriverInput>,
    inputs: mpsc::Receiver<DriverInput>,
    out: mpsc::Receiver<Outbound>,
    outbound: Vec<Outbound>,
    commits: broadcast::Receiver<CommitNotice>,
    streamed: StreamedBlocks,
    tasks: Vec<Task>,
    /// The driver's decisions already accounted for.
    decided_seen: u64,
    /// Why the chain worker could not write the data dir, once it could not.
    storage: watch::Receiver<Option<String>>,
    /// Faults the index injected since this start.
    injected: Arc<AtomicU64>,
    /// Whether this start's disk fault loses a write (rather than failing it).
    loses_write: bool,
}

/// How a validator's disk stopped it in the step just taken.
#[derive(Debug)]
pub(super) enum DiskStop {
    /// A write failed: the node stops and waits for its disk (`crate::outage`).
    Outage,
    /// A write was acknowledged and lost: the power went.
    PowerLoss,
}

/// What a validator did in one step, for the simulation to carry out and check.
#[derive(Debug, Default)]
pub(super) struct Effects {
    /// Consensus messages to gossip (encoded).
    pub consensus: Vec<Vec<u8>>,
    /// The highest height it learned it is behind of.
    pub behind: Option<u64>,
    /// Its commits.
    pub notices: Vec<CommitNotice>,
    /// Blocks it committed from sync rather than by deciding them.
    pub synced: u64,
}

/// One simulated validator, up or down.
pub(super) struct SimNode {
    pub key: SigningKey,
    pub base: PathBuf,
    pub clock: VirtualClock,
    pub requests: SimRequests,
    pub run: Option<Running>,
    /// Until when (virtual ms) it is paused.
    pub paused_until: Option<u64>,
    /// Every block it committed: height -> (block hash, event ids). Kept across restarts.
    pub committed: BTreeMap<u64, (Hash, Vec<Hash>)>,
    /// The ids of every event in `committed`.
    pub ids: std::collections::HashSet<Hash>,
    /// A peer seen at a later height than this validator's, and that height.
    pub ahead: Option<(usize, u64)>,
    /// When it last started a sync.
    pub last_sync_ms: Option<u64>,
    /// The earliest tick already scheduled.
    pub tick_at: Option<u64>,
    pub effects: Effects,
    /// How many times it was started.
    pub boots: u32,
}

/// A driver call, for [`Running::call`].
enum Call {
    Recover(Vec<WalRecord>),
    Handle(DriverInput),
    Tick,
    MempoolChanged,
}

/// Polls `fut` to completion, serving the chain worker whenever it waits; `None` if it waits
/// on something else (a peer), which nothing here can give it.
fn complete<F: Future>(
    fut: F,
    worker: &mut LocalWorker<FaultyIndex>,
    out: &mut mpsc::Receiver<Outbound>,
    outbound: &mut Vec<Outbound>,
) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Some(v);
        }
        let mut progress = worker.serve_waiting() > 0;
        while let Ok(o) = out.try_recv() {
            outbound.push(o);
            progress = true;
        }
        if !progress {
            return None;
        }
    }
}

impl SimNode {
    pub(super) fn new(key: SigningKey, base: PathBuf, clock: VirtualClock) -> SimNode {
        SimNode {
            key,
            base,
            clock,
            requests: SimRequests::default(),
            run: None,
            paused_until: None,
            committed: BTreeMap::new(),
            ids: std::collections::HashSet::new(),
            ahead: None,
            last_sync_ms: None,
            tick_at: None,
            effects: Effects::default(),
            boots: 0,
        }
    }

    /// Starts the validator as `tradeloop node` would: ledger, sign-state and WAL opened from
    /// its data dir, the WAL replayed, the last vote resumed. Its index injects the faults of
    /// `disk` until the next start. A disk that fails while the data dir is opened leaves it
    /// down.
    pub(super) fn boot(&mut self, shared: &Shared, disk: FaultPlan) -> Result<(), String> {
        self.boots += 1;
        let loses_write = matches!(disk.apply, Some((_, Fault::LostWrite)));
        let (ledger, injected) = match reopen_ledger(&self.base.join("data"), &shared.genesis, disk)
        {
            Ok(opened) => opened,
            // The node waits for its disk (`crate::outage`): it stays down until started again.
            Err(e) if chain::is_storage_failure(&e) => return Ok(()),
            Err(e) => return Err(format!("ledger: {e}")),
        };
        let guard = SignGuard::open(
            &self.base.join("sign-state.bin"),
            shared.genesis.hash,
            self.key.public_key(),
        )
        .map_err(|e| format!("sign-state: {e}"))?;
        let height = ledger.tip().height + 1;
        let mut core = ConsensusCore::new(
            shared.ctx.clone(),
            self.key.clone(),
            guard,
            shared.validators.clone(),
            &shared.params,
            height,
        );
        if let Some((numerator, denominator)) = shared.quorum {
            core = core.with_quorum(numerator, denominator);
        }
        let (core, records) = core.with_wal(&self.base.join("wal")).map_err(|e| e.to_string())?;
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let (commits_tx, commits) = broadcast::channel(SIM_COMMIT_NOTICES);
        let (stats_tx, stats) = watch::channel(MempoolStats::default());
        let (storage_tx, storage) = watch::channel(None);
        let reports = chain::WorkerReports {
            commits: commits_tx,
            stats: stats_tx,
            metrics: metrics.clone(),
            storage: storage_tx,
        };
        let (chain, worker) =
            chain::local(ledger, SIM_MEMPOOL, self.key.clone(), reports, shared.planted);
        let (out_tx, out) = mpsc::channel(driver::OUTBOUND_CHANNEL);
        let (inputs_tx, inputs) = mpsc::channel(driver::DRIVER_INPUT_CHANNEL);
        let streamed = StreamedBlocks::new();
        let config = DriverConfig {
            key: self.key.clone(),
            ctx: shared.ctx.clone(),
            empty_block_wait: Duration::from_millis(crate::config::DEFAULT_EMPTY_BLOCK_WAIT_MS),
            block_linger: Duration::from_millis(crate::config::DEFAULT_BLOCK_LINGER_MS),
            full_block_events: shared.genesis.doc.consensus.max_block_events as usize,
            metrics,
            planted: shared.planted,
        };
        let links = DriverLinks {
            chain: chain.clone(),
            mempool: stats,
            out: out_tx,
            streamed: streamed.clone(),
            clock: Clock::Virtual(self.clock.clone()),
        };
        self.run = Some(Running {
            driver: Driver::new(config, core, height, links),
            worker,
            chain,
            inputs_tx,
            inputs,
            out,
            outbound: Vec::new(),
            commits,
            streamed,
            tasks: Vec::new(),
            decided_seen: 0,
            storage,
            injected,
            loses_write,
        });
        self.ahead = None;
        self.last_sync_ms = None;
        self.call(Call::Recover(records))
    }

    /// Stops the process: everything in memory is gone (the mempool too); the data dir stays.
    pub(super) fn crash(&mut self) {
        self.run = None;
        self.requests.clear();
        self.tick_at = None;
        self.effects = Effects::default();
    }

    /// Whether its disk stopped it in the step just taken: a storage failure reported by the
    /// chain worker (the node's runtime stops on it), or a write lost with the power.
    pub(super) fn disk_stop(&self) -> Option<DiskStop> {
        let r = self.run.as_ref()?;
        if r.storage.borrow().is_some() {
            return Some(DiskStop::Outage);
        }
        (r.loses_write && r.injected.load(Ordering::SeqCst) > 0).then_some(DiskStop::PowerLoss)
    }

    pub(super) fn up(&self) -> bool {
        self.run.is_some()
    }

    /// The height its driver is deciding (0 while down).
    pub(super) fn height(&self) -> u64 {
        self.run.as_ref().map_or(0, |r| r.driver.height())
    }

    /// The chain worker (while up).
    pub(super) fn worker(&self) -> Option<&LocalWorker<FaultyIndex>> {
        self.run.as_ref().map(|r| &r.worker)
    }

    /// The validators it holds verified evidence of equivocation against.
    pub(super) fn equivocators(&self) -> Vec<PublicKey> {
        self.run.as_ref().map_or(Vec::new(), |r| r.driver.equivocators().iter().copied().collect())
    }

    /// A consensus message from a peer, already checked.
    pub(super) fn consensus(
        &mut self,
        msg: crate::net::message::ConsensusWire,
    ) -> Result<(), String> {
        self.call(Call::Handle(DriverInput::Consensus(Box::new(msg))))
    }

    /// Fires due timers and builds.
    pub(super) fn tick(&mut self) -> Result<(), String> {
        self.call(Call::Tick)
    }

    /// Events from this validator's clients (`relayed` false) or a peer: the verdicts.
    pub(super) fn admit(
        &mut self,
        events: Vec<SignedEvent>,
        relayed: bool,
    ) -> Result<Vec<chain::Admitted>, String> {
        let now = Clock::Virtual(self.clock.clone()).unix_ms();
        let Some(r) = self.run.as_mut() else { return Ok(Vec::new()) };
        let chain = r.chain.clone();
        let asked = async {
            if relayed {
                chain.relay(events, now).await
            } else {
                chain.admit(events, now).await
            }
        };
        let verdicts = complete(asked, &mut r.worker, &mut r.out, &mut r.outbound)
            .ok_or("the chain worker did not answer an admission")?
            .map_err(|e| e.to_string())?;
        self.settle()?;
        Ok(verdicts)
    }

    /// Answers a peer's request with the node's own answer.
    pub(super) fn answer(&mut self, genesis_hash: Hash, data: &[u8]) -> Option<Vec<u8>> {
        let r = self.run.as_mut()?;
        let asked = crate::net::serve::answer(&r.chain, &r.streamed, genesis_hash, data);
        let response = complete(asked, &mut r.worker, &mut r.out, &mut r.outbound)?;
        response.encode().ok()
    }

    /// Starts a sync from `peer` up to `target`, unless one runs.
    pub(super) fn start_sync(&mut self, peer: PublicKey, target: u64) -> Result<(), String> {
        let clock = Clock::Virtual(self.clock.clone());
        let requests = self.requests.clone();
        let Some(r) = self.run.as_mut() else { return Ok(()) };
        if r.tasks.iter().any(|t| t.sync) {
            return Ok(());
        }
        let (chain, driver) = (r.chain.clone(), r.inputs_tx.clone());
        let fut = async move {
            let to = SyncedTo { chain: &chain, driver: Some(&driver), clock: &clock };
            let _ = sync::fetch_blocks(&requests, &to, peer, target).await;
        };
        r.tasks.push(Task { height: target, sync: true, deadline: None, fut: Box::pin(fut) });
        self.settle()
    }

    /// The earliest instant (virtual ms) the validator wants to act at by itself: its driver's
    /// next timer or build, or a task's deadline.
    pub(super) fn next_wakeup_ms(&self) -> Option<u64> {
        let r = self.run.as_ref()?;
        let timer = r.driver.next_wakeup().map(|at| self.clock.ms_at(at));
        let deadline = r.tasks.iter().filter_map(|t| t.deadline.as_ref().map(|d| d.0)).min();
        [timer, deadline].into_iter().flatten().min()
    }

    /// Polls what waits, after an answer from a peer or a deadline.
    pub(super) fn poll(&mut self) -> Result<(), String> {
        self.settle()
    }

    fn call(&mut self, call: Call) -> Result<(), String> {
        let Some(r) = self.run.as_mut() else { return Ok(()) };
        let Running { driver, worker, out, outbound, .. } = r;
        let done = match call {
            Call::Recover(records) => complete(driver.recover(records), worker, out, outbound),
            Call::Handle(input) => complete(driver.handle(input), worker, out, outbound),
            Call::Tick => complete(driver.tick(), worker, out, outbound),
            Call::MempoolChanged => complete(driver.on_mempool_changed(), worker, out, outbound),
        };
        match done {
            None => {
                Err("the consensus driver waited on something other than its chain worker".into())
            }
            Some(Err(e)) => Err(driver_failure(&e)),
            Some(Ok(())) => self.settle(),
        }
    }

    /// Carries out what the driver asked and what its tasks produced, until nothing moves.
    fn settle(&mut self) -> Result<(), String> {
        let now = self.clock.elapsed_ms();
        loop {
            let Some(r) = self.run.as_mut() else { return Ok(()) };
            let mut progress = r.worker.serve_waiting() > 0;
            while let Ok(o) = r.out.try_recv() {
                r.outbound.push(o);
            }
            for o in std::mem::take(&mut r.outbound) {
                progress = true;
                match o {
                    Outbound::Consensus(bytes) => self.effects.consensus.push(bytes),
                    Outbound::Behind { height } => {
                        self.effects.behind = self.effects.behind.max(Some(height));
                    }
                    Outbound::Fetch { assembled, missing } => {
                        start_fetch(r, &self.requests, *assembled, missing, now);
                    }
                }
            }
            progress |= poll_tasks(r, now);
            if let Ok(input) = r.inputs.try_recv() {
                self.call(Call::Handle(input))?;
                progress = true;
            }
            let Some(r) = self.run.as_mut() else { return Ok(()) };
            if r.driver.mempool_news() {
                self.call(Call::MempoolChanged)?;
                progress = true;
            }
            if !progress {
                break;
            }
        }
        if let Some(r) = self.run.as_mut() {
            let mut notices = 0;
            while let Ok(notice) = r.commits.try_recv() {
                self.effects.notices.push(notice);
                notices += 1;
            }
            // Commits the driver did not decide came from sync.
            let decided =
                r.driver.decided() - std::mem::replace(&mut r.decided_seen, r.driver.decided());
            self.effects.synced += notices - decided.min(notices);
        }
        Ok(())
    }
}

/// A fetch of a proposal's missing events from its proposer, given up on at [`FETCH_DEADLINE`];
/// fetches of older heights are dropped, as the node's `Fetches` does.
fn start_fetch(
    r: &mut Running,
    requests: &SimRequests,
    assembled: Assembled,
    missing: Vec<Hash>,
    now: u64,
) {
    let height = assembled.proposal.header.height;
    r.tasks.retain(|t| t.sync || t.height >= height);
    if r.tasks.iter().filter(|t| !t.sync).count() >= driver::MAX_FETCHES_IN_FLIGHT {
        return;
    }
    let given_up =
        DriverInput::Fetched { assembled: Box::new(assembled.clone()), events: Vec::new() };
    let (requests, driver) = (requests.clone(), r.inputs_tx.clone());
    let fut = async move {
        let input = fetch::fetched(&requests, assembled, missing).await;
        let _ = driver.send(input).await;
    };
    let deadline_ms = now + u64::try_from(FETCH_DEADLINE.as_millis()).unwrap_or(u64::MAX);
    r.tasks.push(Task {
        height,
        sync: false,
        deadline: Some((deadline_ms, given_up)),
        fut: Box::pin(fut),
    });
}

/// Polls every task once (dropping finished ones, and expired ones after sending their
/// give-up input); whether any moved.
fn poll_tasks(r: &mut Running, now: u64) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let mut progress = false;
    let mut i = 0;
    while i < r.tasks.len() {
        let expired = r.tasks[i].deadline.as_ref().is_some_and(|(at, _)| *at <= now);
        if expired {
            let task = r.tasks.swap_remove(i);
            if let Some((_, input)) = task.deadline {
                let _ = r.inputs_tx.try_send(input);
            }
            progress = true;
            continue;
        }
        if r.tasks[i].fut.as_mut().poll(&mut cx).is_ready() {
            r.tasks.swap_remove(i);
            progress = true;
            continue;
        }
        i += 1;
    }
    progress
}

/// A driver error as the simulation reports it: a decided block the ledger refuses is the
/// validity property failing, not a harness error.
fn driver_failure(e: &DriverError) -> String {
    match e {
        DriverError::Commit { .. } => format!("validity: {e}"),
        other => other.to_string(),
    }
}

/// Reopens a ledger in the same process. sled's I/O threads may hold the old directory lock
/// for a moment after the previous handle is dropped (a real restart is a new process), so
/// retry briefly; this waits on wall-clock time only and cannot change the simulated outcome.
/// The index injects the faults of `disk`; the counter of injected faults comes with it.
fn reopen_ledger(
    dir: &std::path::Path,
    genesis: &Genesis,
    disk: FaultPlan,
) -> Result<(Ledger<FaultyIndex>, Arc<AtomicU64>), tradeloop_ledger::LedgerError> {
    let mut attempt = 0;
    loop {
        let opened = FaultyIndex::open(&dir.join("index"), disk.clone()).and_then(|index| {
            let injected = index.injected.clone();
            Ledger::open_with_index(dir, genesis.clone(), index).map(|l| (l, injected))
        });
        match opened {
            Ok(opened) => return Ok(opened),
            Err(e) if attempt < 200 && e.to_string().contains("could not acquire lock") => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}
