//! The simulator's runs: their parameters, the named scenarios and the negative controls.

use crate::chain::PlantedFaults;

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
    /// Pauses: a validator stops processing (a hung process, a frozen VM) and then takes up
    /// everything sent to it meanwhile, in order.
    pub pauses: Vec<Pause>,
    /// Each validator's clock offset from the simulation's time, ms (none: all agree).
    pub skews_ms: Vec<i64>,
    /// Trades (in 1 to 4) whose order a second client also places, at another validator: the
    /// rules let one of the two in, and every mempool must drop the other.
    pub rival_one_in: u64,
    /// Negative control: defects planted in every honest validator's chain worker.
    pub planted: PlantedFaults,
    /// Faults of validators' index storage, each at one operation after one of its boots.
    pub disk_faults: Vec<DiskFault>,
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
    /// The crash tears a block write: the block log ends in a frame cut short, which the
    /// restart must cut off (the block was never acknowledged; sync brings it back).
    pub torn_tail: bool,
}

/// A fault of one validator's index storage (`tradeloop_ledger::storage::index::FaultyIndex`).
#[derive(Clone, Copy, Debug)]
pub struct DiskFault {
    /// Which validator.
    pub node: usize,
    /// After which of its starts (0: the first; each crash or outage restarts it).
    pub boot: u32,
    /// The index write (counted from 1 after that start; one per committed block) it hits.
    pub write: u64,
    /// What happens to that write.
    pub kind: DiskFaultKind,
}

/// What a [`DiskFault`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFaultKind {
    /// The write fails (a full disk, a failing device): the validator stops and waits for its
    /// disk, as `tradeloop node` does, and starts again once it takes writes.
    WriteFails,
    /// The flush after the write fails: the same.
    FlushFails,
    /// The write is acknowledged but lost with the power: the validator goes down at once and
    /// its restart must rebuild the index from the block log.
    WriteLost,
}

/// A pause and resume.
#[derive(Clone, Debug)]
pub struct Pause {
    /// Which validator.
    pub node: usize,
    /// When it stops processing, ms.
    pub at_ms: u64,
    /// How long, ms.
    pub for_ms: u64,
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
    "pause-one",
    "clock-skew",
    "disk-faults",
];

/// Negative controls: runs that must be caught by the checkers.
pub const CONTROLS: &[&str] = &[
    "lost-wal",
    "byzantine-third",
    "majority-quorum",
    "skip-mempool-recheck",
    "vote-unchecked-proposals",
];

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
                crashes: vec![Crash {
                    node: victim,
                    at_ms: 100 + rng.below(400),
                    down_ms: 60_000,
                    torn_tail: false,
                }],
                ..clean
            }),
            // One validator hung for 10 s at a random point, then resumed: it takes up its
            // backlog and catches up.
            "pause-one" => Some(SimConfig {
                target_height: 30,
                pauses: vec![Pause { node: victim, at_ms: 200 + rng.below(2_000), for_ms: 10_000 }],
                ..clean
            }),
            // Clocks off by up to 1 s either way, so that any two are at most the 2 s apart a
            // proposal may run ahead of a validator's clock, on a lossy network. (Further apart,
            // a proposer whose clock is ahead of two validators' by more than 2 s has its blocks
            // refused by them, and its heights take another round: docs/consensus.md.)
            "clock-skew" => Some(SimConfig {
                target_height: 20,
                skews_ms: (0..n)
                    .map(|_| i64::try_from(rng.below(2_001)).unwrap_or(0) - 1_000)
                    .collect(),
                ..SimConfig::lossy(n, seed)
            }),
            // Three index storage faults (failed writes, failed flushes, writes lost with the
            // power) at random validators and heights, on a lossy network.
            "disk-faults" => Some(SimConfig {
                target_height: 30,
                disk_faults: random_disk_faults(&mut rng, n),
                ..SimConfig::lossy(n, seed)
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
                        torn_tail: false,
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
            // Every honest validator's chain worker skips the mempool's re-check after a commit:
            // a rival order that lost stays pending, which the mempool check finds.
            "skip-mempool-recheck" => Some(SimConfig {
                gst_ms: 0,
                target_height: 12,
                rival_one_in: 1,
                planted: PlantedFaults { skip_mempool_recheck: true, ..PlantedFaults::default() },
                ..SimConfig::lossy(n, seed)
            }),
            // Every honest driver votes for the proposals it can rebuild without asking the
            // chain worker whether they are valid, and f byzantine proposers send invalid ones:
            // a decided block the ledger refuses.
            "vote-unchecked-proposals" => Some(SimConfig {
                gst_ms: 0,
                target_height: 12,
                byzantine: last(n, max_faulty(n)),
                attack: Attack::InvalidBlocks,
                planted: PlantedFaults {
                    vote_unchecked_proposals: true,
                    ..PlantedFaults::default()
                },
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
            pauses: Vec::new(),
            skews_ms: Vec::new(),
            rival_one_in: 4,
            planted: PlantedFaults::default(),
            disk_faults: Vec::new(),
        }
    }
}

/// Three disk faults of random kinds at random validators, each at one of the first 20 index
/// writes of a start; a second fault on one validator hits its next start.
fn random_disk_faults(rng: &mut Rng, n: usize) -> Vec<DiskFault> {
    let mut boots = vec![0u32; n];
    (0..3)
        .map(|_| {
            let node = usize::try_from(rng.below(n as u64)).unwrap_or(0);
            let kind = match rng.below(3) {
                0 => DiskFaultKind::WriteFails,
                1 => DiskFaultKind::FlushFails,
                _ => DiskFaultKind::WriteLost,
            };
            let boot = boots[node];
            boots[node] += 1;
            DiskFault { node, boot, write: 1 + rng.below(20), kind }
        })
        .collect()
}

/// Three crashes within the first 3 s, each down for up to 1.5 s, half of them tearing a
/// block write.
fn random_crashes(rng: &mut Rng, n: usize) -> Vec<Crash> {
    (0..3)
        .map(|_| Crash {
            node: usize::try_from(rng.below(n as u64)).unwrap_or(0),
            at_ms: 100 + rng.below(3_000),
            down_ms: 50 + rng.below(1_500),
            torn_tail: rng.below(2) == 0,
        })
        .collect()
}

/// splitmix64: small, deterministic, good enough for fault injection.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The coordinated adversary's split of the validators other than `me`: (first half, second
/// half). Byzantine validators are always in the first half.
pub(super) fn halves(
    honest: &[usize],
    byzantine: &[usize],
    me: usize,
    attack: Attack,
) -> (Vec<usize>, Vec<usize>) {
    let second = match attack {
        Attack::Equivocate { small_minority: true } => 1.min(honest.len()),
        _ => honest.len() / 2,
    };
    let split = honest.len() - second;
    let mut first = honest[..split].to_vec();
    first.extend(byzantine.iter().copied().filter(|b| *b != me));
    (first, honest[split..].to_vec())
}
