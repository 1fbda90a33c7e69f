//! The durable append rate of a one-validator chain, and the signature checks beneath it: the
//! reference figures the other benches print theirs beside.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rayon::prelude::*;
use tradeloop_crypto::SigningKey;
use tradeloop_ledger::sample::{trade_events, trade_steps, Cast};
use tradeloop_ledger::{Ledger, SignedEvent};

use crate::cmd::bench::host::cpu_seconds;
use crate::cmd::now_ms;

/// Raw `verify_strict` rate of one core: verifications per second of a 300-byte message with
/// an already parsed key, the best of five 400 ms runs (the least disturbed by other work).
pub(super) fn raw_verify_rate() -> f64 {
    let key = SigningKey::from_seed_label("bench");
    let msg = vec![7u8; 300];
    let sig = key.sign(&msg);
    let pk = key.public_key();
    let mut best = 0.0f64;
    for _ in 0..5 {
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < Duration::from_millis(400) {
            for _ in 0..50 {
                if pk.verify(&msg, &sig).is_err() {
                    return 0.0;
                }
            }
            n += 50;
        }
        best = best.max(n as f64 / started.elapsed().as_secs_f64());
    }
    best
}

/// Raw `verify_strict` rate of all cores together: one verifying thread per core, each on its own
/// key and message, the best of three 500 ms runs. This is what the machine can really do at
/// once (shared caches, frequency scaling, SMT siblings all show up here).
pub(super) fn raw_parallel_verify_rate(threads: usize) -> f64 {
    let mut best = 0.0f64;
    for _ in 0..3 {
        let started = Instant::now();
        let total: u64 = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || {
                        let key = SigningKey::from_seed_label(&format!("bench-{t}"));
                        let msg = t.to_be_bytes().repeat(38);
                        let sig = key.sign(&msg);
                        let pk = key.public_key();
                        let mut n = 0u64;
                        while started.elapsed() < Duration::from_millis(500) {
                            for _ in 0..50 {
                                if pk.verify(&msg, &sig).is_err() {
                                    return 0;
                                }
                            }
                            n += 50;
                        }
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        best = best.max(total as f64 / started.elapsed().as_secs_f64());
    }
    best
}

/// Signs enough sample trades for `count` events, in parallel.
pub(super) fn sample_events(cast: &Cast, count: usize) -> Vec<SignedEvent> {
    let per_trade = trade_steps(0).len();
    let trades = count.div_ceil(per_trade) as u64;
    let time = now_ms();
    let mut events: Vec<SignedEvent> =
        (1..=trades).into_par_iter().flat_map_iter(|n| trade_events(cast, n, time)).collect();
    events.truncate(count);
    events
}

/// The sample chain's genesis and `block_events` checked against its maximum: a block size of 0
/// or above the maximum would not measure what it says.
pub(super) fn sample_cast(events: u64, block_events: usize) -> Result<(Cast, usize)> {
    let cast = Cast::deterministic(1, now_ms() - 1000)?;
    let max = cast.genesis.doc.consensus.max_block_events as usize;
    if !(1..=max).contains(&block_events) {
        bail!("--block-events {block_events} is outside 1 to {max} (the sample genesis's consensus.max_block_events); give a value in that range");
    }
    let events = usize::try_from(events)
        .map_err(|_| anyhow::anyhow!("--events {events} does not fit this machine's memory"))?;
    Ok((cast, events))
}

pub(super) fn fill_chain(
    ledger: &mut Ledger,
    cast: &Cast,
    events: &[SignedEvent],
    block_events: usize,
) -> Result<Duration> {
    let started = Instant::now();
    let mut first_rejection = None;
    ledger.append_local_stream(
        events.chunks(block_events).map(<[SignedEvent]>::to_vec),
        &cast.validator_keys[0],
        &now_ms,
        &mut |_, _, rejected| {
            if first_rejection.is_none() {
                first_rejection = rejected.into_iter().next();
            }
        },
    )?;
    if let Some((i, r)) = first_rejection {
        bail!("sample event {i} rejected: {r}");
    }
    Ok(started.elapsed())
}

/// Signed sample events for measuring the durable append rate of a one-validator chain more
/// than once in one run (each measurement on a fresh ledger; the events are signed once).
pub(super) struct AppendBench {
    cast: Cast,
    signed: Vec<SignedEvent>,
    block_events: usize,
}

/// One append measurement: events/s, and this process's CPU time per event (µs, when `/proc`
/// tells it).
#[derive(Clone, Copy, Debug)]
pub(super) struct AppendRate {
    pub(super) rate: f64,
    pub(super) cpu_us: Option<f64>,
}

impl AppendBench {
    pub(super) fn new(events: u64, block_events: usize) -> Result<AppendBench> {
        let (cast, events) = sample_cast(events, block_events)?;
        let signed = sample_events(&cast, events);
        Ok(AppendBench { cast, signed, block_events })
    }

    /// Appends every event to a new ledger in blocks of `block_events` (fsync per block).
    pub(super) fn measure(&self) -> Result<AppendRate> {
        let dir = tempfile::tempdir()?;
        let mut ledger = Ledger::open(&dir.path().join("data"), self.cast.genesis.clone())?;
        let cpu0 = cpu_seconds("self");
        let took = fill_chain(&mut ledger, &self.cast, &self.signed, self.block_events)?;
        let cpu_us = match (cpu0, cpu_seconds("self")) {
            (Some(a), Some(b)) => Some((b - a) * 1e6 / self.signed.len() as f64),
            _ => None,
        };
        Ok(AppendRate { rate: self.signed.len() as f64 / took.as_secs_f64(), cpu_us })
    }
}
