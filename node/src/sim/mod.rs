//! A deterministic, single-threaded simulation of 1 to 7 validators running the node's own
//! code (TigerBeetle's VOPR, FoundationDB's simulation, in small): each runs the consensus
//! driver, the chain worker with its mempool, block sync and the proposal fetch of
//! `tradeloop node`, over a data dir on tmpfs; the network, the clocks and the clients are
//! simulated from one seed, so any run replays exactly.
//!
//! ```text
//!   workload (signed trades, rival orders) --admit--> validator i --gossip--> validators
//!   validator i: Driver + LocalWorker (ledger, mempool) + sync/fetch tasks   (node.rs)
//!   network: loss, duplication, delay, partitions, pauses                    (network.rs)
//!   byzantine validators: their own code, their messages rewritten           (byzantine.rs)
//!   checker: agreement, equivocation, durability, exactly-once, mempool, audit (checks.rs)
//! ```
//!
//! Faults: loss, duplication and delay before a global stabilisation time (GST), partitions,
//! pauses, clocks off by seconds, crashes and restarts from disk (a torn block write among
//! them), byzantine validators. Negative controls must be caught. docs/consensus.md.

mod byzantine;
mod checks;
mod config;
mod network;
mod node;
mod workload;

use std::collections::{BTreeMap, BTreeSet};

use tradeloop_crypto::PublicKey;
use tradeloop_ledger::sample::Cast;

pub use config::{
    max_faulty, Attack, Crash, DiskFault, DiskFaultKind, Partition, Pause, SimConfig, CONTROLS,
    SCENARIOS,
};
pub use network::NetError;

use byzantine::{Adversary, Forks, To};
use checks::{Checker, Violation};
use config::Rng;
use network::Msg;
use node::{DiskStop, Shared, SimNode};
use tradeloop_ledger::storage::index::{Fault, FaultPlan};
use workload::{Workload, RETRY_MS};

/// Genesis time of simulated chains.
const T0: u64 = 1_780_000_000_000;
/// Bound on simulated events processed in one run (a run that needs more is a liveness failure).
const MAX_STEPS: usize = 3_000_000;
/// A validator starts a sync at most this often, ms.
const SYNC_INTERVAL_MS: u64 = 500;
/// Largest delay after GST, ms.
const STABLE_DELAY_MS: u64 = 50;
/// How long a validator whose disk failed waits before it starts again, ms: the node's probe
/// interval (`crate::outage::PROBE_INTERVAL`).
const OUTAGE_MS: u64 = 2_000;
/// How long a validator that lost its power stays down, ms.
const POWER_LOSS_DOWN_MS: u64 = 1_000;
/// How long a run goes on after an honest validator equivocated, for honest peers to record
/// the evidence, ms.
const EVIDENCE_GRACE_MS: u64 = 5_000;

/// What a run found.
#[derive(Debug)]
pub struct SimReport {
    /// Height committed by the slowest honest validator.
    pub min_height: u64,
    /// Virtual time at the end, ms.
    pub time_ms: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Blocks validators committed from sync (catch-up) rather than by deciding them.
    pub synced_blocks: u64,
    /// Trades every honest validator holds.
    pub trades_settled: usize,
    /// Equivocations proven by evidence that honest validators recorded: (accused validator,
    /// honest validators that recorded it).
    pub evidence: Vec<(usize, Vec<usize>)>,
    /// Times a validator's disk stopped it (a failed write or flush, a write lost with the
    /// power).
    pub disk_stops: u64,
    /// A violated property, if any: its name and what happened.
    pub violation: Option<(String, String)>,
}

#[derive(Debug)]
enum Ev {
    Deliver { from: usize, to: usize, msg: Msg },
    Tick { node: usize },
    Timeout { node: usize, id: u64 },
    Crash { node: usize, torn_tail: bool },
    Restart { node: usize },
    Pause { node: usize, until: u64 },
    Submit { trade: usize, rival: bool, node: usize },
    Retry { trade: usize },
}

impl Ev {
    /// The validator that must be running, and not paused, to take it.
    fn target(&self) -> Option<usize> {
        match self {
            Ev::Deliver { to, .. } => Some(*to),
            Ev::Tick { node } | Ev::Timeout { node, .. } => Some(*node),
            _ => None,
        }
    }
}

struct Sim {
    config: SimConfig,
    shared: Shared,
    nodes: Vec<SimNode>,
    keys: Vec<PublicKey>,
    adversaries: BTreeMap<usize, Adversary>,
    forks: Forks,
    workload: Workload,
    queue: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    now: u64,
    rng: Rng,
    delivered: u64,
    synced_blocks: u64,
    disk_stops: u64,
    checker: Checker,
    violation: Option<Violation>,
    /// Verified evidence recorded by honest validators: accused -> reporters.
    evidence: BTreeMap<usize, BTreeSet<usize>>,
    dir: tempfile::TempDir,
}

/// Why a simulation could not run to its end. What it finds in the node's code is not an error:
/// it is the report's [`Violation`].
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The cast of validators could not be made.
    #[error("the simulation's validators could not be made")]
    Cast(#[source] tradeloop_ledger::LedgerError),
    /// The scratch directory for the validators' data could not be made.
    #[error("the simulation's scratch directory could not be made (in /dev/shm, or the system's temporary directory)")]
    Scratch(#[source] std::io::Error),
    /// A validator's code stopped in a way the simulation cannot go on from (a chain worker or
    /// driver that failed to start or answer); the message names the validator and the failure.
    #[error("the simulation stopped: {0}")]
    Stopped(String),
}

/// Runs one simulation.
pub fn run(config: &SimConfig) -> Result<SimReport, SimError> {
    let mut sim = Sim::new(config.clone())?;
    let violation = sim.run().map_err(SimError::Stopped)?;
    Ok(sim.report(violation))
}

impl Sim {
    fn new(config: SimConfig) -> Result<Sim, SimError> {
        let n = config.validators;
        let cast = Cast::deterministic(n, T0 - 1000).map_err(SimError::Cast)?;
        // The simulation exercises the real ledger and guard code but needs no durability
        // against power loss: on tmpfs their fsyncs cost nothing.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }
            .map_err(SimError::Scratch)?;
        let ctx = crate::consensus::context::TradeContext::new(cast.genesis.hash);
        let validators =
            crate::consensus::context::Validators::from_ledger(&cast.genesis.validators);
        let shared = Shared {
            genesis: cast.genesis.clone(),
            ctx: ctx.clone(),
            validators,
            params: cast.genesis.doc.consensus.clone(),
            quorum: config.quorum,
            planted: config.planted,
        };
        let mut rng = Rng(config.seed);
        let nodes: Vec<SimNode> = cast
            .validator_keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let skew = config.skews_ms.get(i).copied().unwrap_or(0);
                let start = T0.saturating_add_signed(skew);
                let clock = crate::time::VirtualClock::new(start);
                SimNode::new(key.clone(), dir.path().join(format!("node{i}")), clock)
            })
            .collect();
        let keys = cast.validator_keys.iter().map(|k| k.public_key()).collect();
        let honest: Vec<usize> = (0..n).filter(|i| !config.byzantine.contains(i)).collect();
        let adversaries = config
            .byzantine
            .iter()
            .filter(|b| **b < n)
            .map(|&b| {
                let halves = config::halves(&honest, &config.byzantine, b, config.attack);
                let key = cast.validator_keys[b].clone();
                (b, Adversary::new(config.attack, key, ctx.clone(), halves))
            })
            .collect();
        let trades = config.target_height;
        let workload = Workload::new(&cast, T0, trades, config.rival_one_in, &mut rng);
        Ok(Sim {
            shared,
            nodes,
            keys,
            adversaries,
            forks: Forks::new(),
            workload,
            queue: BTreeMap::new(),
            seq: 0,
            now: 0,
            rng,
            delivered: 0,
            synced_blocks: 0,
            disk_stops: 0,
            checker: Checker::default(),
            violation: None,
            evidence: BTreeMap::new(),
            dir,
            config,
        })
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    fn is_byzantine(&self, i: usize) -> bool {
        self.adversaries.contains_key(&i)
    }

    /// The honest validators.
    fn honest(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|i| !self.is_byzantine(*i))
    }

    fn plan(&mut self) {
        for c in self.config.crashes.clone() {
            if c.node < self.nodes.len() {
                self.schedule(c.at_ms, Ev::Crash { node: c.node, torn_tail: c.torn_tail });
                self.schedule(c.at_ms + c.down_ms, Ev::Restart { node: c.node });
            }
        }
        for p in self.config.pauses.clone() {
            if p.node < self.nodes.len() {
                self.schedule(p.at_ms, Ev::Pause { node: p.node, until: p.at_ms + p.for_ms });
            }
        }
        let honest: Vec<usize> = self.honest().collect();
        for t in 0..self.workload.trades.len() {
            let at = Workload::submit_at(t as u64 + 1);
            let pick = |rng: &mut Rng| {
                honest[usize::try_from(rng.below(honest.len() as u64)).unwrap_or(0)]
            };
            let node = pick(&mut self.rng);
            self.schedule(at, Ev::Submit { trade: t, rival: false, node });
            if self.workload.trades[t].rival.is_some() {
                let other = pick(&mut self.rng);
                self.schedule(at, Ev::Submit { trade: t, rival: true, node: other });
            }
            self.schedule(at + RETRY_MS, Ev::Retry { trade: t });
        }
    }

    /// Runs to the end: the violation found, if any.
    fn run(&mut self) -> Result<Option<Violation>, String> {
        for i in 0..self.nodes.len() {
            let disk = self.disk_plan(i);
            self.nodes[i].boot(&self.shared, disk).map_err(|e| format!("validator {i}: {e}"))?;
            self.down_for_disk(i);
            self.after_step(i)?;
        }
        self.plan();
        let mut steps = 0;
        while let Some(((at, _), ev)) = self.queue.pop_first() {
            steps += 1;
            if steps > MAX_STEPS || at > self.config.deadline_ms {
                break;
            }
            self.now = at;
            for n in &self.nodes {
                n.clock.advance_to(at);
            }
            if let Some(i) = ev.target() {
                if let Some(until) = self.nodes[i].paused_until.filter(|u| *u > at) {
                    self.schedule(until, ev);
                    continue;
                }
                if !self.nodes[i].up() {
                    continue;
                }
            }
            self.dispatch(ev)?;
            if let Some(v) = self.violation.take() {
                return Ok(Some(v));
            }
            if let Some(v) = self.equivocation_found() {
                return Ok(Some(v));
            }
            if self.done() {
                return self.final_checks();
            }
        }
        Ok(Some(self.liveness_failure()))
    }

    fn dispatch(&mut self, ev: Ev) -> Result<(), String> {
        match ev {
            Ev::Deliver { from, to, msg } => {
                self.delivered += 1;
                self.deliver(from, to, msg)
            }
            Ev::Tick { node } => {
                if self.nodes[node].tick_at == Some(self.now) {
                    self.nodes[node].tick_at = None;
                }
                let r = self.nodes[node].tick();
                self.finish(node, r)
            }
            Ev::Timeout { node, id } => {
                if self.nodes[node].requests.complete(id, Err(NetError::Timeout)) {
                    let r = self.nodes[node].poll();
                    return self.finish(node, r);
                }
                Ok(())
            }
            Ev::Crash { node, torn_tail } => {
                self.nodes[node].crash();
                if torn_tail {
                    tear_block_log(&self.nodes[node].base.join("data"), &mut self.rng)?;
                }
                Ok(())
            }
            Ev::Restart { node } => self.restart(node),
            Ev::Pause { node, until } => {
                self.nodes[node].paused_until = Some(until);
                Ok(())
            }
            Ev::Submit { trade, rival, node } => self.submit(trade, rival, node),
            Ev::Retry { trade } => self.retry(trade),
        }
    }

    fn restart(&mut self, i: usize) -> Result<(), String> {
        if self.nodes[i].up() {
            return Ok(());
        }
        if self.config.lose_sign_state_on_restart {
            let base = &self.nodes[i].base;
            let _ = std::fs::remove_file(base.join("sign-state.bin"));
            let _ = std::fs::remove_dir_all(base.join("wal"));
        }
        let disk = self.disk_plan(i);
        let r = self.nodes[i].boot(&self.shared, disk);
        self.down_for_disk(i);
        if let Some(v) = checks::durability(i, &self.nodes[i]) {
            self.violation = Some(v);
        }
        self.recovered(i)?;
        self.finish(i, r)
    }

    /// The index faults of validator `i`'s next start.
    fn disk_plan(&self, i: usize) -> FaultPlan {
        let boot = self.nodes[i].boots;
        let mut plan = FaultPlan::default();
        for f in self.config.disk_faults.iter().filter(|f| f.node == i && f.boot == boot) {
            match f.kind {
                DiskFaultKind::WriteFails => plan.apply = Some((f.write, Fault::Error)),
                DiskFaultKind::WriteLost => plan.apply = Some((f.write, Fault::LostWrite)),
                DiskFaultKind::FlushFails => plan.flush = Some(f.write),
            }
        }
        plan
    }

    /// Blocks a restarted validator holds that the simulation never saw it commit (it went down
    /// before it could tell, or committed them as it opened its data dir): checked as commits.
    fn recovered(&mut self, i: usize) -> Result<(), String> {
        let Some(worker) = self.nodes[i].worker() else { return Ok(()) };
        let tip = worker.ledger().tip().height;
        let mut notices = Vec::new();
        for height in 1..=tip {
            if self.nodes[i].committed.contains_key(&height) {
                continue;
            }
            let block = worker.ledger().block(height).map_err(|e| format!("validator {i}: {e}"))?;
            notices.push(crate::chain::CommitNotice {
                height,
                block_hash: block.block.header.hash(),
                event_ids: block.block.events.iter().map(|e| e.id()).collect(),
                evicted: Vec::new(),
            });
        }
        for notice in notices {
            self.on_commit(i, notice);
        }
        Ok(())
    }

    /// A validator whose disk failed as it started stays down and is started again after
    /// [`OUTAGE_MS`].
    fn down_for_disk(&mut self, i: usize) {
        if !self.nodes[i].up() {
            self.disk_stops += 1;
            self.schedule(self.now + OUTAGE_MS, Ev::Restart { node: i });
        }
    }

    /// Stops validator `i` if its disk failed in the step just taken, as the node does, and
    /// starts it again later: after [`OUTAGE_MS`] for a failed write (the node probes its disk
    /// and starts again), after [`POWER_LOSS_DOWN_MS`] for a write lost with the power.
    fn disk_stopped(&mut self, i: usize) -> bool {
        let Some(stop) = self.nodes[i].disk_stop() else { return false };
        self.nodes[i].crash();
        self.disk_stops += 1;
        let down = match stop {
            DiskStop::Outage => OUTAGE_MS,
            DiskStop::PowerLoss => POWER_LOSS_DOWN_MS,
        };
        self.schedule(self.now + down, Ev::Restart { node: i });
        true
    }

    /// Takes the result of validator `i`'s step: a validator whose disk failed stops (whatever
    /// the step returned); a refused decision is the validity property failing; any other
    /// error stops the run.
    fn finish(&mut self, i: usize, result: Result<(), String>) -> Result<(), String> {
        if self.disk_stopped(i) {
            return Ok(());
        }
        match result {
            Ok(()) => self.after_step(i),
            Err(e) if e.starts_with("validity: ") => {
                let detail = format!("validator {i}: {}", e.trim_start_matches("validity: "));
                self.violation = Some(("validity".into(), detail));
                Ok(())
            }
            Err(e) => Err(format!("validator {i} at {} ms: {e}", self.now)),
        }
    }

    fn deliver(&mut self, from: usize, to: usize, msg: Msg) -> Result<(), String> {
        let result = match msg {
            Msg::Consensus(bytes) => {
                let checked = crate::net::message::decode_consensus(&bytes)
                    .map_err(crate::consensus::inbound::InboundError::from)
                    .and_then(|m| {
                        crate::consensus::inbound::check_consensus(
                            &self.shared.ctx,
                            &self.shared.validators,
                            m,
                        )
                    });
                let msg = match checked {
                    Ok(msg) => msg,
                    Err(e) => {
                        self.refused_from(from, &e);
                        return Ok(());
                    }
                };
                let height = crate::consensus::inbound::consensus_height(&msg).unwrap_or(0);
                let node = &mut self.nodes[to];
                if height > node.height() && node.ahead.is_none_or(|(_, h)| height >= h) {
                    node.ahead = Some((from, height));
                }
                node.consensus(msg)
            }
            Msg::Events(events) => self.nodes[to].admit(events, true).map(|_| ()),
            Msg::Request { id, data } => {
                let hash = self.shared.genesis.hash;
                if let Some(answer) = self.nodes[to].answer(hash, &data) {
                    self.send(to, from, Msg::Response { id, data: answer });
                }
                Ok(())
            }
            Msg::Response { id, data } => {
                if !self.nodes[to].requests.complete(id, Ok(data)) {
                    return Ok(());
                }
                self.nodes[to].poll()
            }
        };
        self.finish(to, result)
    }

    /// A consensus message from `from` that the receiver refuses: a byzantine validator's may
    /// be; an honest validator's never (a node penalises the sender of each, and enough of them
    /// make its peers ignore everything it sends, its votes included).
    fn refused_from(&mut self, from: usize, error: &crate::consensus::inbound::InboundError) {
        if !self.is_byzantine(from) && self.violation.is_none() {
            let detail =
                format!("validator {from} sent a consensus message its peers refuse: {error}");
            self.violation = Some(("honest messages".into(), detail));
        }
    }

    /// Carries out what validator `i` did: its messages (rewritten if it is byzantine), its
    /// requests, a sync if it is behind; checks its commits; wakes it when it asks.
    fn after_step(&mut self, i: usize) -> Result<(), String> {
        loop {
            if self.disk_stopped(i) {
                return Ok(());
            }
            let effects = std::mem::take(&mut self.nodes[i].effects);
            let asked = self.nodes[i].requests.take_asked();
            if effects.consensus.is_empty()
                && effects.behind.is_none()
                && effects.notices.is_empty()
                && asked.is_empty()
            {
                break;
            }
            self.synced_blocks += effects.synced;
            for bytes in effects.consensus {
                self.publish(i, bytes);
            }
            for notice in effects.notices {
                self.on_commit(i, notice);
            }
            for a in asked {
                self.schedule(self.now + a.timeout_ms, Ev::Timeout { node: i, id: a.id });
                if let Some(j) = self.keys.iter().position(|k| *k == a.peer) {
                    self.send(i, j, Msg::Request { id: a.id, data: a.data });
                }
            }
            if let Some(height) = effects.behind {
                let r = self.sync(i, height);
                if let Err(e) = r {
                    return Err(format!("validator {i}: {e}"));
                }
            }
        }
        self.note_evidence(i);
        self.wake(i);
        Ok(())
    }

    fn publish(&mut self, i: usize, bytes: Vec<u8>) {
        let Some(adversary) = self.adversaries.get_mut(&i) else {
            self.checker.sent(i, &bytes, self.now);
            return self.broadcast(i, &Msg::Consensus(bytes));
        };
        for (to, bytes) in adversary.rewrite(bytes, &mut self.forks, &mut self.rng) {
            match to {
                To::All => self.broadcast(i, &Msg::Consensus(bytes)),
                To::Some(targets) => {
                    for j in targets {
                        self.send(i, j, Msg::Consensus(bytes.clone()));
                    }
                }
            }
        }
    }

    fn on_commit(&mut self, i: usize, notice: crate::chain::CommitNotice) {
        let node = &mut self.nodes[i];
        node.ids.extend(notice.event_ids.iter().copied());
        node.committed.insert(notice.height, (notice.block_hash, notice.event_ids));
        if self.is_byzantine(i) || self.violation.is_some() {
            return;
        }
        self.violation = self
            .checker
            .committed(i, notice.height, notice.block_hash)
            .or_else(|| checks::mempool(i, &self.nodes[i]))
            .or_else(|| checks::exactly_once(i, &self.nodes[i]));
    }

    /// A validator behind starts a sync from the peer it saw ahead (or any other), at most
    /// every [`SYNC_INTERVAL_MS`].
    fn sync(&mut self, i: usize, height: u64) -> Result<(), String> {
        let now = self.now;
        let node = &self.nodes[i];
        if node.last_sync_ms.is_some_and(|t| now < t + SYNC_INTERVAL_MS) {
            return Ok(());
        }
        let n = self.nodes.len() as u64;
        let peer = match node.ahead {
            Some((p, _)) => p,
            None if n > 1 => {
                usize::try_from((i as u64 + 1 + self.rng.below(n - 1)) % n).unwrap_or(0)
            }
            None => return Ok(()),
        };
        self.nodes[i].ahead = None;
        self.nodes[i].last_sync_ms = Some(now);
        let key = self.keys[peer];
        self.nodes[i].start_sync(key, height)
    }

    fn note_evidence(&mut self, i: usize) {
        if self.is_byzantine(i) {
            return;
        }
        for accused in self.nodes[i].equivocators() {
            if let Some(j) = self.keys.iter().position(|k| *k == accused) {
                self.evidence.entry(j).or_default().insert(i);
            }
        }
    }

    /// Schedules validator `i`'s next tick, unless one is due no later.
    fn wake(&mut self, i: usize) {
        let Some(at) = self.nodes[i].next_wakeup_ms() else { return };
        let at = at.max(self.now);
        let node = &mut self.nodes[i];
        if node.tick_at.is_some_and(|t| t <= at && t >= self.now) {
            return;
        }
        node.tick_at = Some(at);
        self.schedule(at, Ev::Tick { node: i });
    }

    fn submit(&mut self, t: usize, rival: bool, node: usize) -> Result<(), String> {
        let Some(i) = self.reachable(node) else {
            return Ok(());
        };
        let trade = &self.workload.trades[t];
        let events = match (rival, &trade.rival) {
            (true, Some(r)) => vec![r.clone()],
            (true, None) => return Ok(()),
            (false, _) => self.workload.missing(t, &self.nodes[i].ids),
        };
        let verdicts = self.nodes[i].admit(events.clone(), false);
        let verdicts = match verdicts {
            Ok(v) => v,
            Err(e) => return self.finish(i, Err(e)),
        };
        let accepted: Vec<_> = events
            .into_iter()
            .zip(verdicts)
            .filter(|(_, v)| v.is_accepted())
            .map(|(e, _)| e)
            .collect();
        if !accepted.is_empty() {
            self.broadcast(i, &Msg::Events(accepted));
        }
        self.after_step(i)
    }

    /// A client whose trade is not yet in its validator's chain submits what is missing again.
    fn retry(&mut self, t: usize) -> Result<(), String> {
        let honest: Vec<usize> = self.honest().collect();
        if honest.iter().all(|&i| self.workload.settled(t, &self.nodes[i].ids)) {
            return Ok(());
        }
        let node = honest[usize::try_from(self.rng.below(honest.len() as u64)).unwrap_or(0)];
        self.schedule(self.now + RETRY_MS, Ev::Retry { trade: t });
        self.submit(t, false, node)
    }

    /// `node` if it is up and not paused, else another honest validator that is.
    fn reachable(&self, node: usize) -> Option<usize> {
        let ok = |i: usize| {
            self.nodes[i].up() && self.nodes[i].paused_until.is_none_or(|u| u <= self.now)
        };
        if ok(node) {
            return Some(node);
        }
        self.honest().find(|i| ok(*i))
    }

    fn partitioned(&self, a: usize, b: usize) -> bool {
        self.config
            .partitions
            .iter()
            .any(|p| (p.from_ms..p.to_ms).contains(&self.now) && p.groups.get(a) != p.groups.get(b))
    }

    /// Sends one message, with the network's faults: none across a partition; before GST lost,
    /// duplicated and delayed at random.
    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        if from == to || self.partitioned(from, to) {
            return;
        }
        let before_gst = self.now < self.config.gst_ms;
        if before_gst && self.rng.below(100) < self.config.loss_percent {
            return;
        }
        let copies =
            if before_gst && self.rng.below(100) < self.config.dup_percent { 2 } else { 1 };
        let max = if before_gst { self.config.max_delay_ms } else { STABLE_DELAY_MS };
        for _ in 0..copies {
            let at = self.now + 1 + self.rng.below(max);
            self.schedule(at, Ev::Deliver { from, to, msg: msg.clone() });
        }
    }

    fn broadcast(&mut self, from: usize, msg: &Msg) {
        for to in 0..self.nodes.len() {
            self.send(from, to, msg.clone());
        }
    }

    /// An honest validator signed twice: the run ends once an honest peer holds the evidence,
    /// or [`EVIDENCE_GRACE_MS`] after the fact.
    fn equivocation_found(&self) -> Option<Violation> {
        let (who, at, v) = self.checker.equivocation.as_ref()?;
        let by = self.evidence.get(who);
        if by.is_none() && self.now <= at + EVIDENCE_GRACE_MS {
            return None;
        }
        let mut v = v.clone();
        match by {
            Some(by) => v.1.push_str(&format!(
                "; evidence recorded by honest validators {:?}",
                by.iter().collect::<Vec<_>>()
            )),
            None => v.1.push_str("; no honest peer recorded evidence within 5 s"),
        }
        Some(v)
    }

    fn min_height(&self) -> u64 {
        self.honest()
            .map(|i| self.nodes[i].committed.keys().next_back().copied().unwrap_or(0))
            .min()
            .unwrap_or(0)
    }

    fn trades_settled(&self) -> usize {
        (0..self.workload.trades.len())
            .filter(|t| self.honest().all(|i| self.workload.settled(*t, &self.nodes[i].ids)))
            .count()
    }

    /// Every honest validator is up, at the target height, and holds every trade.
    fn done(&self) -> bool {
        self.honest().all(|i| self.nodes[i].up())
            && self.min_height() >= self.config.target_height
            && self.trades_settled() == self.workload.trades.len()
    }

    /// The checks of a finished run: exactly-once on every honest chain, and the longest one
    /// verified offline.
    fn final_checks(&self) -> Result<Option<Violation>, String> {
        let honest: Vec<usize> = self.honest().collect();
        if let Some(v) = honest.iter().find_map(|&i| checks::exactly_once(i, &self.nodes[i])) {
            return Ok(Some(v));
        }
        let Some(&i) = honest.iter().max_by_key(|i| self.nodes[**i].committed.len()) else {
            return Ok(None);
        };
        let keep = self.config.export_to.as_deref();
        checks::audit(i, &self.nodes[i], &self.shared.genesis, self.dir.path(), keep)
    }

    fn liveness_failure(&self) -> Violation {
        let detail = format!(
            "after {} ms the slowest honest validator committed {} of {} heights; {} of {} trades settled everywhere",
            self.now,
            self.min_height(),
            self.config.target_height,
            self.trades_settled(),
            self.workload.trades.len()
        );
        let each: Vec<String> = self
            .honest()
            .map(|i| {
                let n = &self.nodes[i];
                let committed = n.committed.keys().next_back().copied().unwrap_or(0);
                let state = if n.up() { format!("deciding {}", n.height()) } else { "down".into() };
                format!("{i}: {committed} ({state})")
            })
            .collect();
        ("liveness".into(), format!("{detail}; committed by validator: {}", each.join(", ")))
    }

    fn report(&self, violation: Option<Violation>) -> SimReport {
        SimReport {
            min_height: self.min_height(),
            time_ms: self.now,
            delivered: self.delivered,
            synced_blocks: self.synced_blocks,
            disk_stops: self.disk_stops,
            trades_settled: self.trades_settled(),
            evidence: self
                .evidence
                .iter()
                .map(|(k, v)| (*k, v.iter().copied().collect()))
                .collect(),
            violation,
        }
    }
}

/// A crash in the middle of a block write: the last segment of the block log ends in the first
/// bytes of a frame (the log's first one, copied), which the restart must find and cut off.
fn tear_block_log(data: &std::path::Path, rng: &mut Rng) -> Result<(), String> {
    let dir = data.join("blocks");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
    let mut segments: Vec<std::path::PathBuf> = entries.flatten().map(|e| e.path()).collect();
    segments.sort();
    let (Some(first), Some(last)) = (segments.first(), segments.last()) else { return Ok(()) };
    let bytes = std::fs::read(first).map_err(|e| e.to_string())?;
    let magic = tradeloop_ledger::storage::blocklog::SEGMENT_MAGIC.len();
    if bytes.len() <= magic + 16 {
        return Ok(());
    }
    let cut = 1 + usize::try_from(rng.below(12)).unwrap_or(0);
    let torn = &bytes[magic..magic + cut];
    use std::io::Write;
    let mut file =
        std::fs::OpenOptions::new().append(true).open(last).map_err(|e| e.to_string())?;
    file.write_all(torn).map_err(|e| e.to_string())
}
