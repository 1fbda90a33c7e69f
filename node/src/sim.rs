//! A deterministic, single-threaded simulation of n validators (TigerBeetle's VOPR, in small):
//! every validator runs its own `ConsensusCore`, sign-state guard and ledger; the network and
//! the clock are simulated from one seed, so any run replays exactly.
//!
//! Faults so far: message delay, loss and duplication before a global stabilisation time (GST).
//! Checks: agreement (no two different blocks decided at one height), validity (every decided
//! block commits through the ledger, which re-validates it and its certificate), liveness (all
//! validators reach the target height within the time bound).
//! Status (issue 3): partitions, crashes, byzantine validators and the negative controls are not
//! here yet; docs/consensus.md.

use std::collections::BTreeMap;

use malachite_core_consensus::SignedConsensusMsg;
use malachite_core_types::{Round, Timeout};
use tradeloop_crypto::{Hash, PublicKey, SigningKey};
use tradeloop_ledger::block::{Block, CertifiedBlock};
use tradeloop_ledger::sample::{trade_events, Cast};
use tradeloop_ledger::{Ledger, SignedEvent};

use crate::consensus::context::{TradeContext, Validators};
use crate::consensus::core::{
    from_peer, liveness_from_peer, propose, received_block, timeout_ms, Action, ConsensusCore,
};
use crate::consensus::guard::SignGuard;

/// Genesis time of simulated chains.
const T0: u64 = 1_780_000_000_000;
/// Events a proposer puts in a block.
const EVENTS_PER_BLOCK: usize = 10;
/// Bound on simulated events processed in one run (a run that needs more is a liveness failure).
const MAX_STEPS: usize = 2_000_000;
/// Most blocks in one sync response.
const MAX_SYNC_BLOCKS: u64 = 16;
/// A validator asks for sync at most this often, ms.
const SYNC_INTERVAL_MS: u64 = 500;

/// A run's parameters.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Validators (1 to 4 with the sample cast).
    pub validators: usize,
    /// The seed everything random derives from.
    pub seed: u64,
    /// Heights every validator must decide.
    pub target_height: u64,
    /// Global stabilisation time, ms: before it messages are lost, duplicated and delayed.
    pub gst_ms: u64,
    /// Loss probability before GST, in percent.
    pub loss_percent: u64,
    /// Duplication probability before GST, in percent.
    pub dup_percent: u64,
    /// Largest delay before GST, ms (after GST: up to 50 ms).
    pub max_delay_ms: u64,
    /// Liveness bound: virtual time by which every validator must reach the target, ms.
    pub deadline_ms: u64,
    /// Network partitions: during `[from_ms, to_ms)` only validators of one group talk.
    pub partitions: Vec<Partition>,
    /// Crashes: a validator stops at `at_ms` and restarts from its disk `down_ms` later.
    pub crashes: Vec<Crash>,
    /// Negative control: a restarted validator has lost its sign-state (and WAL). The
    /// equivocation checker must catch what it then signs.
    pub lose_sign_state_on_restart: bool,
}

/// A partition window.
#[derive(Clone, Debug)]
pub struct Partition {
    /// Start, ms.
    pub from_ms: u64,
    /// End, ms.
    pub to_ms: u64,
    /// Group of each validator, by index.
    pub groups: Vec<u8>,
}

/// A crash and restart.
#[derive(Clone, Debug)]
pub struct Crash {
    /// Which validator.
    pub node: usize,
    /// When it stops, ms.
    pub at_ms: u64,
    /// How long it stays down, ms.
    pub down_ms: u64,
}

/// The scenarios implemented so far.
pub const SCENARIOS: &[&str] =
    &["clean", "lossy", "isolate-one", "split-2-2", "rotating", "crash-restart"];

/// Negative controls: runs that must be caught by the checkers.
pub const CONTROLS: &[&str] = &["lost-wal"];

impl SimConfig {
    /// The named scenario with the given seed.
    pub fn scenario(name: &str, validators: usize, seed: u64) -> Option<SimConfig> {
        let n = validators.max(1);
        let clean = SimConfig { gst_ms: 0, ..SimConfig::lossy(n, seed) };
        let mut rng = Rng(seed ^ 0x5EED);
        let victim = usize::try_from(seed % n as u64).unwrap_or(0);
        let groups_isolating = |k: usize| (0..n).map(|i| u8::from(i == k)).collect::<Vec<u8>>();
        match name {
            "clean" => Some(clean),
            "lossy" => Some(SimConfig::lossy(n, seed)),
            // One validator cut off for 30 s, then healed; it must catch up.
            "isolate-one" => Some(SimConfig {
                partitions: vec![Partition {
                    from_ms: 0,
                    to_ms: 30_000,
                    groups: groups_isolating(victim),
                }],
                ..clean
            }),
            // No quorum on either side for 30 s: nothing may be decided, then it resumes.
            "split-2-2" => Some(SimConfig {
                target_height: 30,
                partitions: vec![Partition {
                    from_ms: rng.below(1_000),
                    to_ms: 30_000,
                    groups: (0..n).map(|i| u8::from(i >= n / 2)).collect(),
                }],
                ..clean
            }),
            // Each validator isolated in turn for 8 s.
            "rotating" => Some(SimConfig {
                target_height: 30,
                partitions: (0..n)
                    .map(|k| Partition {
                        from_ms: k as u64 * 8_000,
                        to_ms: (k as u64 + 1) * 8_000,
                        groups: groups_isolating(k),
                    })
                    .collect(),
                ..clean
            }),
            // Three crashes of random validators at random points, restarted from disk.
            "crash-restart" => {
                Some(SimConfig { target_height: 30, crashes: random_crashes(&mut rng, n), ..clean })
            }
            _ => None,
        }
    }

    /// A negative control: a run the checkers must flag.
    pub fn control(name: &str, validators: usize, seed: u64) -> Option<SimConfig> {
        let n = validators.max(1);
        let mut rng = Rng(seed ^ 0xC0DE);
        match name {
            "lost-wal" => Some(SimConfig {
                gst_ms: 0,
                target_height: 30,
                crashes: (0..6)
                    .map(|_| Crash {
                        node: usize::try_from(rng.below(n as u64)).unwrap_or(0),
                        at_ms: 50 + rng.below(2_500),
                        down_ms: 1 + rng.below(100),
                    })
                    .collect(),
                lose_sign_state_on_restart: true,
                ..SimConfig::lossy(n, seed)
            }),
            _ => None,
        }
    }

    /// A lossy run with the given seed.
    pub fn lossy(validators: usize, seed: u64) -> SimConfig {
        SimConfig {
            validators,
            seed,
            target_height: 5,
            gst_ms: 20_000,
            loss_percent: 20,
            dup_percent: 10,
            max_delay_ms: 2_000,
            deadline_ms: 600_000,
            partitions: Vec::new(),
            crashes: Vec::new(),
            lose_sign_state_on_restart: false,
        }
    }
}

/// Three crashes within the first 3 s (a clean 30-height run takes about 3 s), each down for
/// up to 1.5 s.
fn random_crashes(rng: &mut Rng, n: usize) -> Vec<Crash> {
    (0..3)
        .map(|_| Crash {
            node: usize::try_from(rng.below(n as u64)).unwrap_or(0),
            at_ms: 100 + rng.below(3_000),
            down_ms: 50 + rng.below(1_500),
        })
        .collect()
}

/// What a run found.
#[derive(Debug)]
pub struct SimReport {
    /// Heights decided by the slowest validator.
    pub min_height: u64,
    /// Virtual time at the end, ms.
    pub time_ms: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Signatures the sign-state guard refused (a restarted validator asked to sign differently).
    pub guard_refusals: u64,
    /// A violated property, if any: its name and what happened.
    pub violation: Option<(String, String)>,
}

// Simulation-internal messages and events live briefly in one queue; their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum Msg {
    Consensus(Box<SignedConsensusMsg<TradeContext>>),
    Liveness(Box<malachite_core_consensus::LivenessMsg<TradeContext>>),
    Block {
        round: Round,
        valid_round: Round,
        proposer: PublicKey,
        block: Box<Block>,
    },
    /// "Send me your committed blocks from this height."
    SyncRequest {
        height: u64,
    },
    /// Committed blocks with their certificates, consecutive.
    SyncResponse {
        blocks: Vec<CertifiedBlock>,
    },
}

/// A unit of work for one validator: an input for its core, or actions to carry out.
// Lives only inside one `drive` call's queue; its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Work {
    Input(malachite_core_consensus::Input<TradeContext>),
    Actions(Vec<Action>),
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Ev {
    Deliver {
        from: usize,
        to: usize,
        msg: Msg,
    },
    Timer {
        node: usize,
        height: u64,
        timeout: Timeout,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    /// Start the next height (scheduled just after a commit, so the run loop sees every
    /// decision and a lone validator cannot run away inside one step).
    NextHeight {
        node: usize,
        height: u64,
    },
}

struct Node {
    key: SigningKey,
    core: ConsensusCore,
    ledger: Ledger,
    height: u64,
    timers: Vec<Timeout>,
    blocks: BTreeMap<Hash, Block>,
    early: Vec<Msg>,
    decided: BTreeMap<u64, Hash>,
    last_sync_request_ms: Option<u64>,
    up: bool,
    base: std::path::PathBuf,
}

/// splitmix64: small, deterministic, good enough for fault injection.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Sim {
    config: SimConfig,
    nodes: Vec<Node>,
    events: Vec<SignedEvent>,
    queue: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    now: u64,
    rng: Rng,
    delivered: u64,
    guard_refusals: u64,
    /// Everything each validator broadcast a signature for: (validator, height, round, kind)
    /// -> value. Two different values at one key is equivocation.
    signed: BTreeMap<(usize, u64, i64, u8), Option<Hash>>,
    equivocation: Option<(String, String)>,
    ctx: TradeContext,
    validators: Validators,
    genesis: tradeloop_ledger::Genesis,
    _dir: tempfile::TempDir,
}

/// Runs one simulation.
pub fn run(config: &SimConfig) -> Result<SimReport, String> {
    let mut sim = Sim::new(config.clone())?;
    sim.run()
}

impl Sim {
    fn new(config: SimConfig) -> Result<Sim, String> {
        let cast = Cast::deterministic(config.validators, T0 - 1000).map_err(|e| e.to_string())?;
        // The simulation exercises the real ledger and guard code, but needs no durability:
        // on tmpfs their fsyncs cost nothing, which makes runs ~10x faster.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }
            .map_err(|e| e.to_string())?;
        let ctx = TradeContext { chain: cast.genesis.hash };
        let validators = Validators::from_ledger(&cast.genesis.validators);
        let mut nodes = Vec::new();
        for (i, key) in cast.validator_keys.iter().enumerate() {
            let base = dir.path().join(format!("node{i}"));
            let ledger = Ledger::open(&base.join("data"), cast.genesis.clone())
                .map_err(|e| e.to_string())?;
            let guard =
                SignGuard::open(&base.join("sign-state.bin"), cast.genesis.hash, key.public_key())
                    .map_err(|e| e.to_string())?;
            let core = ConsensusCore::new(ctx.clone(), key.clone(), guard, validators.clone(), 1);
            nodes.push(Node {
                key: key.clone(),
                core,
                ledger,
                height: 1,
                timers: Vec::new(),
                blocks: BTreeMap::new(),
                early: Vec::new(),
                decided: BTreeMap::new(),
                last_sync_request_ms: None,
                up: true,
                base,
            });
        }
        let events = (1..=config.target_height).flat_map(|n| trade_events(&cast, n, T0)).collect();
        let rng = Rng(config.seed);
        let mut sim = Sim {
            nodes,
            events,
            queue: BTreeMap::new(),
            seq: 0,
            now: 0,
            rng,
            delivered: 0,
            guard_refusals: 0,
            signed: BTreeMap::new(),
            equivocation: None,
            ctx,
            validators,
            genesis: cast.genesis.clone(),
            _dir: dir,
            config,
        };
        for crash in sim.config.crashes.clone() {
            if crash.node < sim.nodes.len() {
                sim.schedule(crash.at_ms, Ev::Crash { node: crash.node });
                sim.schedule(crash.at_ms + crash.down_ms, Ev::Restart { node: crash.node });
            }
        }
        Ok(sim)
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    fn run(&mut self) -> Result<SimReport, String> {
        for i in 0..self.nodes.len() {
            let input = self.nodes[i].core.start_height(1);
            self.feed(i, input)?;
        }
        let mut steps = 0;
        while let Some(((at, _), ev)) = self.queue.pop_first() {
            steps += 1;
            if steps > MAX_STEPS || at > self.config.deadline_ms {
                break;
            }
            self.now = at;
            match ev {
                Ev::Deliver { from, to, msg } => {
                    if self.nodes[to].up {
                        self.delivered += 1;
                        self.deliver(from, to, msg)?;
                    }
                }
                Ev::Crash { node } => self.crash(node),
                Ev::NextHeight { node, height } => {
                    let n = &self.nodes[node];
                    if n.up && n.height == height {
                        let input = n.core.start_height(height);
                        self.feed(node, input)?;
                        self.feed_early_blocks(node, height)?;
                    }
                }
                Ev::Restart { node } => self.restart(node)?,
                Ev::Timer { node, height, timeout } => {
                    let n = &mut self.nodes[node];
                    if n.up && n.height == height && n.timers.contains(&timeout) {
                        n.timers.retain(|t| *t != timeout);
                        self.feed(node, malachite_core_consensus::Input::TimeoutElapsed(timeout))?;
                    }
                }
            }
            if let Some(v) = self.equivocation.clone().or_else(|| self.agreement_violation()) {
                return Ok(self.report(Some(v)));
            }
            if self.nodes.iter().all(|n| n.decided.len() as u64 >= self.config.target_height) {
                return Ok(self.report(None));
            }
        }
        let min = self.min_height();
        if std::env::var_os("SIM_DEBUG").is_some() {
            for (i, n) in self.nodes.iter().enumerate() {
                eprintln!("node {i}: {:?} timers {:?} blocks {}", n.core, n.timers, n.blocks.len());
            }
            eprintln!("queue {} events, steps {steps}", self.queue.len());
        }
        Ok(self.report(Some((
            "liveness".into(),
            format!(
                "after {} ms the slowest validator decided {min} of {} heights",
                self.now, self.config.target_height
            ),
        ))))
    }

    fn min_height(&self) -> u64 {
        self.nodes.iter().map(|n| n.decided.len() as u64).min().unwrap_or(0)
    }

    fn report(&self, violation: Option<(String, String)>) -> SimReport {
        SimReport {
            min_height: self.min_height(),
            time_ms: self.now,
            delivered: self.delivered,
            guard_refusals: self.guard_refusals,
            violation,
        }
    }

    fn agreement_violation(&self) -> Option<(String, String)> {
        let mut seen: BTreeMap<u64, (usize, Hash)> = BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for (h, hash) in &n.decided {
                match seen.get(h) {
                    Some((j, other)) if other != hash => {
                        return Some(("agreement".into(), format!("height {h}: validator {j} decided {other}, validator {i} decided {hash}")));
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(*h, (i, *hash));
                    }
                }
            }
        }
        None
    }

    fn partitioned(&self, a: usize, b: usize) -> bool {
        self.config
            .partitions
            .iter()
            .any(|p| (p.from_ms..p.to_ms).contains(&self.now) && p.groups.get(a) != p.groups.get(b))
    }

    fn crash(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.up = false;
        n.timers.clear();
        n.blocks.clear();
        n.early.clear();
    }

    /// Restarts a validator as a new process would: ledger and sign-state reopened from disk,
    /// a fresh consensus state at the ledger's next height. (Replaying the WAL into Malachite is
    /// not wired yet, so the sign-state guard alone keeps it from signing twice.)
    fn restart(&mut self, i: usize) -> Result<(), String> {
        if self.nodes[i].up {
            return Ok(());
        }
        let base = self.nodes[i].base.clone();
        let key = self.nodes[i].key.clone();
        let guard_path = base.join("sign-state.bin");
        if self.config.lose_sign_state_on_restart {
            let _ = std::fs::remove_file(&guard_path);
        }
        // Drop the old ledger (closing sled) before reopening it.
        let placeholder =
            Ledger::open(&base.join(format!("scratch-{}", self.now)), self.genesis.clone())
                .map_err(|e| e.to_string())?;
        drop(std::mem::replace(&mut self.nodes[i].ledger, placeholder));
        let ledger = reopen_ledger(&base.join("data"), &self.genesis)
            .map_err(|e| format!("validator {i} restart: {e}"))?;
        let guard = SignGuard::open(&guard_path, self.genesis.hash, key.public_key())
            .map_err(|e| e.to_string())?;
        let height = ledger.tip().height + 1;
        let core =
            ConsensusCore::new(self.ctx.clone(), key, guard, self.validators.clone(), height);
        let n = &mut self.nodes[i];
        n.ledger = ledger;
        n.core = core;
        n.height = height;
        n.up = true;
        n.last_sync_request_ms = None;
        let input = n.core.start_height(height);
        self.feed(i, input)?;
        // Resume the last vote this validator signed before the crash (from its sign-state).
        let restored = match self.nodes[i].core.restore_last_vote(height) {
            Ok(actions) => actions,
            Err(crate::consensus::core::CoreError::Guard(_)) => {
                self.guard_refusals += 1;
                Vec::new()
            }
            Err(e) => return Err(format!("validator {i} restore: {e}")),
        };
        self.carry_out(i, restored)
    }

    /// Records a signed proposal or vote broadcast by validator `i`; a second, different value
    /// at the same (height, round, kind) is equivocation.
    fn record_signed(&mut self, i: usize, msg: &SignedConsensusMsg<TradeContext>) {
        let (key, value) = match msg {
            SignedConsensusMsg::Vote(v) => {
                let m = &v.message;
                let kind = match m.vote_type {
                    malachite_core_types::VoteType::Prevote => 1,
                    malachite_core_types::VoteType::Precommit => 2,
                };
                let value = match &m.value {
                    malachite_core_types::NilOrVal::Nil => None,
                    malachite_core_types::NilOrVal::Val(h) => Some(h.0),
                };
                ((i, m.height.0, m.round.as_i64(), kind), value)
            }
            SignedConsensusMsg::Proposal(p) => {
                let m = &p.message;
                ((i, m.height.0, m.round.as_i64(), 0), Some(m.value.0))
            }
        };
        match self.signed.get(&key) {
            Some(previous) if *previous != value => {
                if self.equivocation.is_none() {
                    let kind = ["proposal", "prevote", "precommit"][usize::from(key.3)];
                    self.equivocation = Some((
                        "equivocation".into(),
                        format!("validator {i} signed two different {kind}s at height {} round {}: {previous:?} and {value:?}", key.1, key.2),
                    ));
                }
            }
            Some(_) => {}
            None => {
                self.signed.insert(key, value);
            }
        }
    }

    /// Sends one message (with the same faults as a broadcast).
    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        if self.partitioned(from, to) {
            return;
        }
        let before_gst = self.now < self.config.gst_ms;
        if before_gst && self.rng.below(100) < self.config.loss_percent {
            return;
        }
        let max = if before_gst { self.config.max_delay_ms } else { 50 };
        let at = self.now + 1 + self.rng.below(max);
        self.schedule(at, Ev::Deliver { from, to, msg });
    }

    /// A message from a later height says this validator fell behind: ask the sender for the
    /// blocks it missed, at most every SYNC_INTERVAL_MS.
    fn maybe_sync(&mut self, from: usize, to: usize, their_height: u64) {
        let n = &mut self.nodes[to];
        if their_height <= n.height {
            return;
        }
        if n.last_sync_request_ms.is_some_and(|t| self.now < t + SYNC_INTERVAL_MS) {
            return;
        }
        n.last_sync_request_ms = Some(self.now);
        let height = n.height;
        self.send(to, from, Msg::SyncRequest { height });
    }

    fn broadcast(&mut self, from: usize, msg: Msg) {
        for to in 0..self.nodes.len() {
            if to == from || self.partitioned(from, to) {
                continue;
            }
            let before_gst = self.now < self.config.gst_ms;
            if before_gst && self.rng.below(100) < self.config.loss_percent {
                continue;
            }
            let copies =
                if before_gst && self.rng.below(100) < self.config.dup_percent { 2 } else { 1 };
            for _ in 0..copies {
                let max = if before_gst { self.config.max_delay_ms } else { 50 };
                let at = self.now + 1 + self.rng.below(max);
                self.schedule(at, Ev::Deliver { from, to, msg: msg.clone() });
            }
        }
    }

    fn deliver(&mut self, from: usize, to: usize, msg: Msg) -> Result<(), String> {
        match msg {
            Msg::Consensus(m) => {
                let their_height = match m.as_ref() {
                    SignedConsensusMsg::Vote(v) => v.message.height.0,
                    SignedConsensusMsg::Proposal(p) => p.message.height.0,
                };
                self.maybe_sync(from, to, their_height);
                self.feed(to, from_peer(*m))
            }
            Msg::Liveness(m) => self.feed(to, liveness_from_peer(*m)),
            Msg::SyncRequest { height } => {
                let n = &self.nodes[to];
                let tip = n.ledger.tip().height;
                let mut blocks = Vec::new();
                for h in height..=tip.min(height + MAX_SYNC_BLOCKS - 1) {
                    blocks.push(n.ledger.block(h).map_err(|e| e.to_string())?);
                }
                if !blocks.is_empty() {
                    self.send(to, from, Msg::SyncResponse { blocks });
                }
                Ok(())
            }
            Msg::SyncResponse { blocks } => self.apply_sync(to, blocks),
            Msg::Block { round, valid_round, proposer, block } => {
                let height = block.header.height;
                let node = &mut self.nodes[to];
                if height > node.height {
                    node.early.push(Msg::Block { round, valid_round, proposer, block });
                    return Ok(());
                }
                if height < node.height {
                    return Ok(());
                }
                let valid = node.ledger.validate_proposal(&block);
                let hash = block.header.hash();
                let ok = valid.as_ref().is_ok_and(|h| *h == hash);
                node.blocks.insert(hash, *block);
                self.feed(to, received_block(height, round, valid_round, proposer, hash, ok))
            }
        }
    }

    /// Feeds the blocks that arrived early for `height`, now that it has started.
    fn feed_early_blocks(&mut self, i: usize, height: u64) -> Result<(), String> {
        let n = &mut self.nodes[i];
        let mut inputs = Vec::new();
        for msg in std::mem::take(&mut n.early) {
            if let Msg::Block { round, valid_round, proposer, block } = msg {
                match block.header.height.cmp(&height) {
                    std::cmp::Ordering::Equal => {
                        let hash = block.header.hash();
                        let ok = n.ledger.validate_proposal(&block).is_ok_and(|h| h == hash);
                        n.blocks.insert(hash, *block);
                        inputs.push(received_block(height, round, valid_round, proposer, hash, ok));
                    }
                    std::cmp::Ordering::Greater => {
                        n.early.push(Msg::Block { round, valid_round, proposer, block })
                    }
                    std::cmp::Ordering::Less => {}
                }
            }
        }
        for input in inputs {
            self.feed(i, input)?;
        }
        Ok(())
    }

    /// Commits synced blocks (the ledger verifies each certificate and re-executes each block;
    /// a peer's word is never trusted) and restarts consensus at the new height.
    fn apply_sync(&mut self, i: usize, blocks: Vec<CertifiedBlock>) -> Result<(), String> {
        let n = &mut self.nodes[i];
        let before = n.height;
        for certified in blocks {
            let height = certified.block.header.height;
            if height != n.ledger.tip().height + 1 {
                continue;
            }
            let hash = n.ledger.commit_block(&certified).map_err(|e| {
                format!("validity: validator {i} rejected a synced block at height {height}: {e}")
            })?;
            n.decided.insert(height, hash);
            n.height = height + 1;
        }
        if n.height == before {
            return Ok(());
        }
        n.timers.clear();
        n.blocks.clear();
        n.early.retain(|m| matches!(m, Msg::Block { block, .. } if block.header.height >= before));
        let input = n.core.start_height(n.height);
        self.feed(i, input)
    }

    /// Feeds an input to a validator and carries out every action, including the inputs those
    /// actions produce, until none is left.
    fn feed(
        &mut self,
        i: usize,
        input: malachite_core_consensus::Input<TradeContext>,
    ) -> Result<(), String> {
        self.drive(i, Work::Input(input))
    }

    /// Carries out actions the adapter returned outside `handle`, and what follows from them.
    fn carry_out(&mut self, i: usize, actions: Vec<Action>) -> Result<(), String> {
        self.drive(i, Work::Actions(actions))
    }

    fn drive(&mut self, i: usize, first: Work) -> Result<(), String> {
        // In order: a height must start before the blocks that arrived early for it are fed.
        let mut pending = std::collections::VecDeque::from([first]);
        while let Some(work) = pending.pop_front() {
            let input = match work {
                Work::Input(input) => input,
                Work::Actions(actions) => {
                    for action in actions {
                        self.act(i, action, &mut pending)?;
                    }
                    continue;
                }
            };
            let trace = std::env::var_os("SIM_TRACE").is_some();
            if trace {
                eprintln!(
                    "t={} node {i} h={} input {}",
                    self.now,
                    self.nodes[i].height,
                    input_name(&input)
                );
            }
            let actions = match self.nodes[i].core.handle(input) {
                Ok(actions) => actions,
                // The guard refused to sign: the validator stays silent for that step, as a real
                // one would, and carries on.
                Err(crate::consensus::core::CoreError::Guard(_)) => {
                    self.guard_refusals += 1;
                    continue;
                }
                Err(e) => return Err(format!("validator {i}: {e}")),
            };
            if trace {
                for a in &actions {
                    eprintln!("    -> {}", action_name(a));
                }
            }
            for action in actions {
                self.act(i, action, &mut pending)?;
            }
        }
        Ok(())
    }

    /// Carries out one action of validator `i`; inputs it produces go to `pending`.
    fn act(
        &mut self,
        i: usize,
        action: Action,
        pending: &mut std::collections::VecDeque<Work>,
    ) -> Result<(), String> {
        match action {
            Action::Broadcast(m) => {
                self.record_signed(i, &m);
                self.broadcast(i, Msg::Consensus(m));
            }
            Action::Liveness(m) => self.broadcast(i, Msg::Liveness(m)),
            Action::Restream { height, round, valid_round, block_hash } => {
                let n = &self.nodes[i];
                if let Some(block) = n.blocks.get(&block_hash).filter(|b| b.header.height == height)
                {
                    let msg = Msg::Block {
                        round,
                        valid_round,
                        proposer: n.key.public_key(),
                        block: Box::new(block.clone()),
                    };
                    self.broadcast(i, msg);
                }
            }
            Action::ScheduleTimeout(t) => {
                let n = &mut self.nodes[i];
                n.timers.push(t);
                let height = n.height;
                let at = self.now + timeout_ms(t);
                self.schedule(at, Ev::Timer { node: i, height, timeout: t });
            }
            Action::CancelTimeout(t) => self.nodes[i].timers.retain(|x| *x != t),
            Action::CancelAllTimeouts => self.nodes[i].timers.clear(),
            Action::BuildBlock { height, round } => {
                let n = &mut self.nodes[i];
                let committed =
                    usize::try_from(n.ledger.tip().height).unwrap_or(0) * EVENTS_PER_BLOCK;
                let end = (committed + EVENTS_PER_BLOCK).min(self.events.len());
                let candidates = &self.events[committed.min(end)..end];
                let built = n
                    .ledger
                    .build_block(candidates, T0 + self.now, &n.key)
                    .map_err(|e| e.to_string())?;
                if !built.rejected.is_empty() {
                    return Err(format!(
                        "validator {i}: sample events rejected: {:?}",
                        built.rejected
                    ));
                }
                let hash = built.hash;
                n.blocks.insert(hash, built.block.clone());
                let proposer = n.key.public_key();
                self.broadcast(
                    i,
                    Msg::Block {
                        round,
                        valid_round: Round::Nil,
                        proposer,
                        block: Box::new(built.block),
                    },
                );
                pending.push_back(Work::Input(propose(height, round, hash)));
            }
            Action::Decided { height, block_hash, certificate } => {
                let n = &mut self.nodes[i];
                let Some(block) = n.blocks.get(&block_hash).cloned() else {
                    return Err(format!("validator {i}: decided block {block_hash} at height {height} was never received (sync is not wired yet)"));
                };
                n.ledger
                    .commit_block(&CertifiedBlock { block, certificate })
                    .map_err(|e| format!("validity: validator {i} cannot commit its decision at height {height}: {e}"))?;
                n.decided.insert(height, block_hash);
                n.timers.clear();
                n.blocks.clear();
                n.height = height + 1;
                // Validators go on past the target (with empty blocks once the sample
                // events run out), as a live network would, so laggards can still sync.
                let at = self.now + 1;
                self.schedule(at, Ev::NextHeight { node: i, height: height + 1 });
            }
        }
        Ok(())
    }
}

/// Reopens a ledger in the same process. sled's I/O threads may hold the old directory lock for
/// a moment after the previous handle is dropped (a real restart is a new process), so retry
/// briefly; this waits on wall-clock time only and cannot change the simulated outcome.
fn reopen_ledger(
    dir: &std::path::Path,
    genesis: &tradeloop_ledger::Genesis,
) -> Result<Ledger, tradeloop_ledger::LedgerError> {
    let mut attempt = 0;
    loop {
        match Ledger::open(dir, genesis.clone()) {
            Ok(ledger) => return Ok(ledger),
            Err(e) if attempt < 200 && e.to_string().contains("could not acquire lock") => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

fn input_name(input: &malachite_core_consensus::Input<TradeContext>) -> String {
    use malachite_core_consensus::Input;
    match input {
        Input::StartHeight(h, ..) => format!("StartHeight({h})"),
        Input::Vote(v) => format!(
            "Vote({:?} h={} r={:?} {:?})",
            v.message.vote_type,
            v.message.height,
            v.message.round,
            v.message.value.is_val()
        ),
        Input::Proposal(p) => format!("Proposal(h={} r={:?})", p.message.height, p.message.round),
        Input::Propose(v) => format!("Propose(h={} r={:?})", v.height, v.round),
        Input::TimeoutElapsed(t) => format!("Timeout({t:?})"),
        Input::ProposedValue(v, _) => {
            format!("ProposedValue(h={} r={:?} {:?})", v.height, v.round, v.validity)
        }
        _ => "other".into(),
    }
}

fn action_name(a: &Action) -> String {
    match a {
        Action::Broadcast(_) => "Broadcast".into(),
        Action::Liveness(_) => "Liveness".into(),
        Action::Restream { .. } => "Restream".into(),
        Action::ScheduleTimeout(t) => format!("Schedule({t:?})"),
        Action::CancelTimeout(t) => format!("Cancel({t:?})"),
        Action::CancelAllTimeouts => "CancelAll".into(),
        Action::BuildBlock { height, round } => format!("BuildBlock(h={height} r={round:?})"),
        Action::Decided { height, .. } => format!("Decided(h={height})"),
    }
}
