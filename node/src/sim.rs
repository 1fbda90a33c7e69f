//! A deterministic, single-threaded simulation of n validators (TigerBeetle's VOPR, in small):
//! every validator runs its own `ConsensusCore`, sign-state guard and ledger; the network and
//! the clock are simulated from one seed, so any run replays exactly.
//!
//! Faults: message delay, loss and duplication before a global stabilisation time (GST),
//! partitions, crashes and restarts from disk, byzantine validators (equivocation, invalid
//! blocks, far-future rounds). Checks, over honest validators: agreement, validity (every
//! decided block commits through the ledger, which re-validates it and its certificate),
//! equivocation, liveness; honest validators' evidence is verified and reported. Negative
//! controls must be caught. docs/consensus.md.

use std::collections::BTreeMap;

use malachite_core_consensus::SignedConsensusMsg;
use malachite_core_types::{NilOrVal, Round, Timeout, VoteType};
use tradeloop_crypto::{Hash, PublicKey, SigningKey};
use tradeloop_ledger::block::{Block, CertifiedBlock};
use tradeloop_ledger::sample::{trade_events, Cast};
use tradeloop_ledger::{Ledger, SignedEvent};

use crate::consensus::context::{BlockHash, Height, Proposal, TradeContext, Validators, Vote};
use crate::consensus::core::{
    from_peer, liveness_from_peer, propose, received_block, Action, ConsensusCore,
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
    /// Validators (1 to 7 with the sample cast; `tradeloop sim` checks that bound).
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
    /// Byzantine validators (indices) and what they do. The checkers judge honest ones only.
    pub byzantine: Vec<usize>,
    /// The byzantine validators' attack.
    pub attack: Attack,
    /// Negative control: the quorum threshold `(numerator, denominator)` every validator uses
    /// instead of 2/3.
    pub quorum: Option<(u64, u64)>,
    /// Also leave the audited export of the longest honest chain here (for tests that tamper
    /// with it).
    pub export_to: Option<std::path::PathBuf>,
}

/// What byzantine validators do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    /// Nothing (no byzantine validators).
    None,
    /// Equivocate, coordinated: as proposer, two different valid blocks, one to each half of the
    /// honest validators; every vote in two versions, one per half (for the two blocks of a
    /// forked round, else for the value and nil).
    Equivocate {
        /// The second half is a single honest validator (the split that a quorum too low
        /// cannot survive).
        small_minority: bool,
    },
    /// As proposer, blocks that must be refused: a forged event signature, an event that
    /// breaks a rule, or a wrong app hash (in turn).
    InvalidBlocks,
    /// Votes for far-future rounds and heights, a burst with every message sent.
    FutureRounds,
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
pub const SCENARIOS: &[&str] = &[
    "clean",
    "lossy",
    "isolate-one",
    "split-2-2",
    "rotating",
    "crash-restart",
    "offline-many-heights",
    "byzantine-equivocate",
    "byzantine-invalid-blocks",
    "byzantine-future-rounds",
];

/// Negative controls: runs that must be caught by the checkers.
pub const CONTROLS: &[&str] = &["lost-wal", "byzantine-third", "majority-quorum"];

/// The most validators that may be byzantine: `f` with `n >= 3f + 1`.
pub fn max_faulty(n: usize) -> usize {
    n.saturating_sub(1) / 3
}

/// The last `k` validators.
fn last(n: usize, k: usize) -> Vec<usize> {
    (n.saturating_sub(k)..n).collect()
}

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
            // One validator down for 60 s while the others decide (50 to 80 heights); it
            // restarts from disk (a stale WAL of its old height) and must catch up by sync.
            "offline-many-heights" => Some(SimConfig {
                target_height: 120,
                crashes: vec![Crash { node: victim, at_ms: 100 + rng.below(400), down_ms: 60_000 }],
                ..clean
            }),
            // f byzantine validators, on a lossy network until GST.
            "byzantine-equivocate" | "byzantine-invalid-blocks" | "byzantine-future-rounds" => {
                let attack = match name {
                    "byzantine-equivocate" => Attack::Equivocate { small_minority: false },
                    "byzantine-invalid-blocks" => Attack::InvalidBlocks,
                    _ => Attack::FutureRounds,
                };
                Some(SimConfig {
                    target_height: 12,
                    gst_ms: 5_000,
                    byzantine: last(n, max_faulty(n)),
                    attack,
                    ..SimConfig::lossy(n, seed)
                })
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
            // f + 1 coordinated equivocators: more than the protocol tolerates.
            "byzantine-third" => Some(SimConfig {
                gst_ms: 0,
                target_height: 12,
                byzantine: last(n, max_faulty(n) + 1),
                attack: Attack::Equivocate { small_minority: false },
                ..SimConfig::lossy(n, seed)
            }),
            // A quorum of a simple majority with f + 1 equivocators, one honest validator on the
            // far side (with n = 7, 2/3 would survive this split; > 1/2 does not).
            "majority-quorum" => Some(SimConfig {
                gst_ms: 0,
                target_height: 12,
                byzantine: last(n, max_faulty(n) + 1),
                attack: Attack::Equivocate { small_minority: true },
                quorum: Some((1, 2)),
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
            byzantine: Vec::new(),
            attack: Attack::None,
            quorum: None,
            export_to: None,
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
    /// Blocks validators committed from sync responses (catch-up) rather than by deciding.
    pub synced_blocks: u64,
    /// Signatures the sign-state guard refused (a restarted validator asked to sign differently).
    pub guard_refusals: u64,
    /// Equivocations proven by evidence that honest validators recorded: (accused validator,
    /// honest validators that recorded it).
    pub evidence: Vec<(usize, Vec<usize>)>,
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

impl Node {
    /// Keeps a block of the current height in memory and, if it may be voted for (valid, or
    /// our own), durably in the WAL first.
    fn keep_block(&mut self, block: Block, persist: bool) -> Result<Hash, String> {
        let hash = block.header.hash();
        if persist {
            self.core.persist_block(&block).map_err(|e| e.to_string())?;
        }
        self.blocks.insert(hash, block);
        Ok(hash)
    }
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
    synced_blocks: u64,
    /// Everything each validator broadcast a signature for: (validator, height, round, kind)
    /// -> value. Two different values at one key is equivocation.
    signed: BTreeMap<(usize, u64, i64, u8), Option<Hash>>,
    equivocation: Option<(String, String)>,
    /// When an honest validator was seen equivocating: (validator, when); the run goes on a
    /// little so that honest peers can record the evidence.
    equivocated_at: Option<(usize, u64)>,
    /// Verified evidence recorded by honest validators: accused -> reporters.
    evidence: BTreeMap<usize, std::collections::BTreeSet<usize>>,
    /// The coordinated adversary's forked rounds: (height, round) -> (block for the first half,
    /// block for the second half).
    forks: BTreeMap<(u64, i64), (Hash, Hash)>,
    ctx: TradeContext,
    validators: Validators,
    genesis: tradeloop_ledger::Genesis,
    _dir: tempfile::TempDir,
}

/// Runs one simulation.
pub fn run(config: &SimConfig) -> Result<SimReport, String> {
    let mut sim = Sim::new(config.clone())?;
    match sim.run() {
        // The ledger refused what consensus decided: a checked property, not a harness error.
        Err(e) if e.starts_with("validity: ") => {
            let detail = e.trim_start_matches("validity: ").to_string();
            Ok(sim.report(Some(("validity".into(), detail))))
        }
        other => other,
    }
}

impl Sim {
    fn new(config: SimConfig) -> Result<Sim, String> {
        let cast = Cast::deterministic(config.validators, T0 - 1000).map_err(|e| e.to_string())?;
        // The simulation exercises the real ledger and guard code, but needs no durability:
        // on tmpfs their fsyncs cost nothing, which makes runs ~10x faster.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }
            .map_err(|e| e.to_string())?;
        let ctx = TradeContext::new(cast.genesis.hash);
        let validators = Validators::from_ledger(&cast.genesis.validators);
        let mut nodes = Vec::new();
        for (i, key) in cast.validator_keys.iter().enumerate() {
            let base = dir.path().join(format!("node{i}"));
            let ledger = Ledger::open(&base.join("data"), cast.genesis.clone())
                .map_err(|e| e.to_string())?;
            let guard =
                SignGuard::open(&base.join("sign-state.bin"), cast.genesis.hash, key.public_key())
                    .map_err(|e| e.to_string())?;
            let mut core = ConsensusCore::new(
                ctx.clone(),
                key.clone(),
                guard,
                validators.clone(),
                &cast.genesis.doc.consensus,
                1,
            );
            if let Some((numerator, denominator)) = config.quorum {
                core = core.with_quorum(numerator, denominator);
            }
            let (core, _) = core.with_wal(&base.join("wal")).map_err(|e| e.to_string())?;
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
            synced_blocks: 0,
            signed: BTreeMap::new(),
            equivocation: None,
            equivocated_at: None,
            evidence: BTreeMap::new(),
            forks: BTreeMap::new(),
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
            if let Some(v) = self.agreement_violation() {
                return Ok(self.report(Some(v)));
            }
            if let Some((who, at)) = self.equivocated_at {
                // Stop once an honest peer holds the evidence, or 5 s after the fact.
                if self.evidence.contains_key(&who) || self.now > at + 5_000 {
                    let mut v = self.equivocation.clone().unwrap_or_default();
                    match self.evidence.get(&who) {
                        Some(by) => v.1.push_str(&format!(
                            "; evidence recorded by honest validators {:?}",
                            by.iter().collect::<Vec<_>>()
                        )),
                        None => v.1.push_str("; no honest peer recorded evidence within 5 s"),
                    }
                    return Ok(self.report(Some(v)));
                }
            }
            if self
                .honest()
                .all(|i| self.nodes[i].decided.len() as u64 >= self.config.target_height)
            {
                let audit = self.audit_longest_chain()?;
                return Ok(self.report(audit));
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

    /// The auditor's check on every successful run: the longest honest chain is exported and
    /// verified offline from the genesis alone (every certificate, every event, every rule).
    fn audit_longest_chain(&self) -> Result<Option<(String, String)>, String> {
        let Some(i) = self.honest().max_by_key(|i| self.nodes[*i].ledger.tip().height) else {
            return Ok(None);
        };
        let path = self._dir.path().join(format!("audit-{i}.tlx"));
        tradeloop_ledger::export::export(&self.nodes[i].ledger, &path)
            .map_err(|e| format!("export of validator {i}'s chain: {e}"))?;
        let verdict = tradeloop_ledger::audit::verify_export(&path, &self.genesis, &mut |_, _| {});
        if let Some(keep) = &self.config.export_to {
            std::fs::copy(&path, keep).map_err(|e| format!("copy the export: {e}"))?;
        }
        let _ = std::fs::remove_file(&path);
        Ok(verdict.err().map(|failure| {
            ("audit".to_string(), format!("validator {i}'s chain fails verification: {failure}"))
        }))
    }

    fn min_height(&self) -> u64 {
        self.honest().map(|i| self.nodes[i].decided.len() as u64).min().unwrap_or(0)
    }

    /// Which sample events validator `i` puts in its next block: the next `EVENTS_PER_BLOCK`
    /// after those its chain holds (none once they run out).
    fn candidates(&self, i: usize) -> std::ops::Range<usize> {
        let committed =
            usize::try_from(self.nodes[i].ledger.tip().height).unwrap_or(0) * EVENTS_PER_BLOCK;
        let end = (committed + EVENTS_PER_BLOCK).min(self.events.len());
        committed.min(end)..end
    }

    fn is_byzantine(&self, i: usize) -> bool {
        self.config.byzantine.contains(&i)
    }

    /// The honest validators.
    fn honest(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|i| !self.is_byzantine(*i))
    }

    fn report(&self, violation: Option<(String, String)>) -> SimReport {
        SimReport {
            min_height: self.min_height(),
            time_ms: self.now,
            delivered: self.delivered,
            guard_refusals: self.guard_refusals,
            synced_blocks: self.synced_blocks,
            evidence: self
                .evidence
                .iter()
                .map(|(k, v)| (*k, v.iter().copied().collect()))
                .collect(),
            violation,
        }
    }

    fn agreement_violation(&self) -> Option<(String, String)> {
        let mut seen: BTreeMap<u64, (usize, Hash)> = BTreeMap::new();
        for i in self.honest() {
            for (h, hash) in &self.nodes[i].decided {
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

    /// Restarts a validator as a new process would: ledger, sign-state and WAL reopened from
    /// disk, the height started afresh and the WAL replayed into it, then the last signed vote
    /// resumed from the sign-state.
    fn restart(&mut self, i: usize) -> Result<(), String> {
        if self.nodes[i].up {
            return Ok(());
        }
        let base = self.nodes[i].base.clone();
        let key = self.nodes[i].key.clone();
        let guard_path = base.join("sign-state.bin");
        if self.config.lose_sign_state_on_restart {
            let _ = std::fs::remove_file(&guard_path);
            let _ = std::fs::remove_dir_all(base.join("wal"));
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
        let mut core = ConsensusCore::new(
            self.ctx.clone(),
            key,
            guard,
            self.validators.clone(),
            &self.genesis.doc.consensus,
            height,
        );
        if let Some((numerator, denominator)) = self.config.quorum {
            core = core.with_quorum(numerator, denominator);
        }
        let (mut core, records) =
            core.with_wal(&base.join("wal")).map_err(|e| format!("validator {i} restart: {e}"))?;
        let (actions, blocks) =
            core.recover(height, records).map_err(|e| format!("validator {i} WAL replay: {e}"))?;
        let n = &mut self.nodes[i];
        n.ledger = ledger;
        n.core = core;
        n.height = height;
        n.up = true;
        n.last_sync_request_ms = None;
        for block in blocks {
            n.blocks.insert(block.header.hash(), block);
        }
        self.carry_out(i, actions)?;
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
        if self.is_byzantine(i) {
            return;
        }
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
                    self.equivocated_at = Some((i, self.now));
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
                let ok = valid.as_ref().is_ok_and(|h| *h == block.header.hash());
                let hash = node.keep_block(*block, ok)?;
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
                        let ok = n
                            .ledger
                            .validate_proposal(&block)
                            .is_ok_and(|h| h == block.header.hash());
                        let hash = n.keep_block(*block, ok)?;
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
            self.synced_blocks += 1;
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
            Action::Broadcast(m) if self.is_byzantine(i) => self.byzantine_broadcast(i, *m),
            Action::Broadcast(m) => {
                self.record_signed(i, &m);
                self.broadcast(i, Msg::Consensus(m));
            }
            Action::Evidence(evidence) => {
                if !self.is_byzantine(i) && evidence.verify(&self.ctx) {
                    let accused = evidence.validator();
                    if let Some(j) = self.nodes.iter().position(|n| n.key.public_key() == accused) {
                        self.evidence.entry(j).or_default().insert(i);
                    }
                }
            }
            Action::BuildBlock { height, round }
                if self.is_byzantine(i) && self.config.attack != Attack::None =>
            {
                let hash = self.byzantine_build(i, height, round)?;
                pending.push_back(Work::Input(propose(height, round, hash)));
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
            Action::ScheduleTimeout { timeout: t, duration_ms } => {
                let n = &mut self.nodes[i];
                n.timers.push(t);
                let height = n.height;
                let at = self.now + duration_ms;
                self.schedule(at, Ev::Timer { node: i, height, timeout: t });
            }
            Action::CancelTimeout(t) => self.nodes[i].timers.retain(|x| *x != t),
            Action::CancelAllTimeouts => self.nodes[i].timers.clear(),
            Action::BuildBlock { height, round } => {
                let range = self.candidates(i);
                let candidates = &self.events[range];
                let n = &mut self.nodes[i];
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
                let hash = n.keep_block(built.block.clone(), true)?;
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
                    return Err(format!("validator {i}: decided block {block_hash} at height {height} was never received"));
                };
                // Agreement is judged on the decision itself, before the ledger re-checks it
                // (with a lowered quorum, the ledger would refuse the certificate first).
                n.decided.insert(height, block_hash);
                if self.agreement_violation().is_some() {
                    return Ok(());
                }
                let n = &mut self.nodes[i];
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

impl Sim {
    /// The coordinated adversary's split of the other validators: (first half, second half).
    /// Byzantine validators are always in the first half.
    fn halves(&self, me: usize) -> (Vec<usize>, Vec<usize>) {
        let honest: Vec<usize> = self.honest().collect();
        let second = match self.config.attack {
            Attack::Equivocate { small_minority: true } => 1.min(honest.len()),
            _ => honest.len() / 2,
        };
        let split = honest.len() - second;
        let mut first: Vec<usize> = honest[..split].to_vec();
        first.extend(self.config.byzantine.iter().copied().filter(|b| *b != me));
        (first, honest[split..].to_vec())
    }

    fn sign_vote(&self, i: usize, vote: Vote) -> SignedConsensusMsg<TradeContext> {
        let signature = self.nodes[i].key.sign(&self.ctx.vote_bytes(&vote));
        SignedConsensusMsg::Vote(malachite_core_types::SignedMessage::new(vote, signature))
    }

    fn sign_proposal(&self, i: usize, proposal: Proposal) -> SignedConsensusMsg<TradeContext> {
        let signature = self.nodes[i].key.sign(&self.ctx.proposal_bytes(&proposal));
        SignedConsensusMsg::Proposal(malachite_core_types::SignedMessage::new(proposal, signature))
    }

    /// What a byzantine validator sends instead of an honest broadcast.
    fn byzantine_broadcast(&mut self, i: usize, msg: SignedConsensusMsg<TradeContext>) {
        match self.config.attack {
            Attack::Equivocate { .. } => {
                let (first, second) = self.halves(i);
                let (a, b) = match &msg {
                    SignedConsensusMsg::Vote(v) => {
                        let vote = v.message.clone();
                        let fork = self.forks.get(&(vote.height.0, vote.round.as_i64())).copied();
                        let (x, y) = match (fork, &vote.value) {
                            (Some((x, y)), _) => {
                                (NilOrVal::Val(BlockHash(x)), NilOrVal::Val(BlockHash(y)))
                            }
                            (None, NilOrVal::Val(h)) => (NilOrVal::Val(*h), NilOrVal::Nil),
                            (None, NilOrVal::Nil) => {
                                let fake = Hash(
                                    self.rng
                                        .next()
                                        .to_be_bytes()
                                        .repeat(4)
                                        .try_into()
                                        .unwrap_or([7; 32]),
                                );
                                (NilOrVal::Nil, NilOrVal::Val(BlockHash(fake)))
                            }
                        };
                        (
                            self.sign_vote(i, Vote { value: x, ..vote.clone() }),
                            self.sign_vote(i, Vote { value: y, ..vote }),
                        )
                    }
                    SignedConsensusMsg::Proposal(p) => {
                        let proposal = p.message.clone();
                        match self.forks.get(&(proposal.height.0, proposal.round.as_i64())).copied()
                        {
                            Some((x, y)) => (
                                self.sign_proposal(
                                    i,
                                    Proposal { value: BlockHash(x), ..proposal.clone() },
                                ),
                                self.sign_proposal(i, Proposal { value: BlockHash(y), ..proposal }),
                            ),
                            None => (msg.clone(), msg.clone()),
                        }
                    }
                };
                for to in first {
                    self.send(i, to, Msg::Consensus(Box::new(a.clone())));
                }
                for to in second {
                    self.send(i, to, Msg::Consensus(Box::new(b.clone())));
                }
            }
            Attack::FutureRounds => {
                if let SignedConsensusMsg::Vote(v) = &msg {
                    let vote = v.message.clone();
                    let far_round = Round::new(
                        vote.round.as_u32().unwrap_or(0)
                            + 1_000
                            + u32::try_from(self.rng.below(1_000_000)).unwrap_or(0),
                    );
                    let spam = [
                        Vote { round: far_round, ..vote.clone() },
                        Vote {
                            height: Height(vote.height.0 + 1 + self.rng.below(1_000)),
                            ..vote.clone()
                        },
                        Vote { vote_type: VoteType::Precommit, round: far_round, ..vote },
                    ];
                    for vote in spam {
                        let signed = self.sign_vote(i, vote);
                        self.broadcast(i, Msg::Consensus(Box::new(signed)));
                    }
                }
                self.broadcast(i, Msg::Consensus(Box::new(msg)));
            }
            Attack::InvalidBlocks | Attack::None => {
                self.broadcast(i, Msg::Consensus(Box::new(msg)));
            }
        }
    }

    /// A byzantine proposer's block(s); returns the hash its own core proposes.
    fn byzantine_build(&mut self, i: usize, height: u64, round: Round) -> Result<Hash, String> {
        let candidates = self.events[self.candidates(i)].to_vec();
        let n = &mut self.nodes[i];
        let built =
            n.ledger.build_block(&candidates, T0 + self.now, &n.key).map_err(|e| e.to_string())?;
        let proposer = n.key.public_key();
        let mut block = built.block;
        match self.config.attack {
            Attack::Equivocate { .. } => {
                // Two valid blocks that differ only in their time.
                let n = &mut self.nodes[i];
                let other = n
                    .ledger
                    .build_block(&candidates, T0 + self.now + 1, &n.key)
                    .map_err(|e| e.to_string())?
                    .block;
                let (x, y) = (block.header.hash(), other.header.hash());
                n.blocks.insert(x, block.clone());
                n.blocks.insert(y, other.clone());
                self.forks.insert((height, round.as_i64()), (x, y));
                let (first, second) = self.halves(i);
                for (to, b) in
                    first.iter().map(|t| (*t, &block)).chain(second.iter().map(|t| (*t, &other)))
                {
                    let msg = Msg::Block {
                        round,
                        valid_round: Round::Nil,
                        proposer,
                        block: Box::new(b.clone()),
                    };
                    self.send(i, to, msg);
                }
                return Ok(x);
            }
            Attack::InvalidBlocks => {
                let kind = self.rng.below(3);
                match (kind, block.events.is_empty()) {
                    (1, false) => block.events[0].signature.0[0] ^= 1,
                    (2, false) => {
                        // An event twice: the second is a replay the rules refuse. The header
                        // commits to the events it carries, so only the rules can catch it.
                        let again = block.events[0].clone();
                        block.events.push(again);
                        let ids: Vec<Hash> = block.events.iter().map(|e| e.id()).collect();
                        block.header.events_root = tradeloop_ledger::block::events_root(&ids);
                        block.header.event_count = u32::try_from(ids.len()).unwrap_or(u32::MAX);
                    }
                    _ => block.header.app_hash.0[0] ^= 1,
                }
            }
            Attack::FutureRounds | Attack::None => {}
        }
        let hash = self.nodes[i].keep_block(block.clone(), true)?;
        self.broadcast(
            i,
            Msg::Block { round, valid_round: Round::Nil, proposer, block: Box::new(block) },
        );
        Ok(hash)
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
        Action::ScheduleTimeout { timeout, duration_ms } => {
            format!("Schedule({timeout:?}, {duration_ms} ms)")
        }
        Action::CancelTimeout(t) => format!("Cancel({t:?})"),
        Action::CancelAllTimeouts => "CancelAll".into(),
        Action::BuildBlock { height, round } => format!("BuildBlock(h={height} r={round:?})"),
        Action::Decided { height, .. } => format!("Decided(h={height})"),
        Action::Evidence(e) => format!("Evidence({:?})", e.position()),
    }
}
