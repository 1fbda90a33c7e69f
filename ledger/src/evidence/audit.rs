//! The auditor's check: from the genesis alone, re-verify a whole chain.
//!
//! For every block, in order: the hash link, height, time, validator set, proposer,
//! `events_root`, the commit certificate (> 2/3 of voting power, known validators, no
//! duplicates, valid signatures), every event's canonical form, chain, key and signature, and a
//! replay of every rule that recomputes `app_hash`. The first failure is reported with its
//! height. Signature checks of the next batch of blocks run in parallel with the rule replay of
//! the current one, so the audit runs near the machine's signature-verification limit.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use tradeloop_crypto::Hash;

use crate::execute::{check_events, validate_checked, Refs};
use crate::export::ExportItem;
use crate::model::block::{CertifiedBlock, Tip};
use crate::model::event::Event;
use crate::model::genesis::Genesis;
use crate::rules::state::StateRead;
use crate::storage::blocklog::BlockLog;
use crate::storage::index::{IndexStore, SledIndex};
use crate::{encoding::codec, LedgerError, Rejection};

/// Blocks are checked in batches of about this many events.
pub const AUDIT_BATCH_EVENTS: usize = 4096;
/// ... or this many blocks, whichever comes first.
pub const AUDIT_BATCH_BLOCKS: usize = 256;
/// Checked batches waiting for the rule replay (bounds the audit's memory).
pub const AUDIT_PIPELINE_BATCHES: usize = 2;

/// A chain that verified.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AuditReport {
    /// The chain (genesis hash).
    pub chain: Hash,
    /// Blocks verified.
    pub blocks: u64,
    /// Events verified.
    pub events: u64,
    /// The last block.
    pub tip_hash: Hash,
    /// The state commitment after the last block.
    pub app_hash: Hash,
}

/// The first thing found wrong.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditFailure {
    /// The first bad height (0: the file or genesis itself).
    pub height: u64,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for AuditFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.height == 0 {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "height {}: {}", self.height, self.reason)
        }
    }
}

fn fail<T>(height: u64, reason: impl Into<String>) -> Result<T, AuditFailure> {
    Err(AuditFailure { height, reason: reason.into() })
}

/// In-memory state for replay. foldhash (seeded per process, so keys chosen by a chain's
/// authors cannot be aimed at collisions) instead of SipHash: hashing is a visible share of the
/// replay.
#[derive(Debug, Default)]
struct MemState {
    state: HashMap<Vec<u8>, Vec<u8>, foldhash::fast::RandomState>,
}

impl StateRead for MemState {
    fn get_state(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.state.get(key).cloned())
    }
    fn with_state<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, LedgerError> {
        Ok(f(self.state.get(key).map(Vec::as_slice)))
    }
    fn has_state(&self, key: &[u8]) -> Result<bool, LedgerError> {
        Ok(self.state.contains_key(key))
    }
}

type CheckedBatch = Vec<(CertifiedBlock, Vec<Result<Event, Rejection>>)>;

/// Replays a chain block by block.
#[derive(Debug)]
pub struct Auditor<'g> {
    genesis: &'g Genesis,
    state: MemState,
    tip: Tip,
    events: u64,
}

impl<'g> Auditor<'g> {
    /// An auditor at the genesis.
    pub fn new(genesis: &'g Genesis) -> Self {
        Auditor { genesis, state: MemState::default(), tip: Tip::genesis(genesis), events: 0 }
    }

    /// Verifies blocks from `source` until it yields `None`. `progress(height)` is called as
    /// blocks pass.
    ///
    /// Two stages run at once: a producer thread reads batches and runs their stateless checks
    /// (in parallel, mostly signatures) while this thread replays the rules of the batches
    /// already checked. At most [`AUDIT_PIPELINE_BATCHES`] checked batches wait between them.
    pub fn run(
        &mut self,
        mut source: impl FnMut() -> Result<Option<CertifiedBlock>, AuditFailure> + Send,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<AuditReport, AuditFailure> {
        let genesis = self.genesis;
        // Called from a worker of a rayon pool (the simulator verifies its chains from its
        // parallel runs), this thread blocks on the channel below while holding that worker:
        // the producer's parallel checks could then wait for a worker that never frees up. It
        // checks on its own thread instead.
        let in_pool = rayon::current_thread_index().is_some();
        let (tx, rx) = std::sync::mpsc::sync_channel::<CheckedBatch>(AUDIT_PIPELINE_BATCHES);
        std::thread::scope(|scope| {
            let producer = scope.spawn(move || -> Result<(), AuditFailure> {
                loop {
                    let mut batch = Vec::new();
                    let mut batch_events = 0;
                    let mut error = None;
                    while batch.len() < AUDIT_BATCH_BLOCKS && batch_events < AUDIT_BATCH_EVENTS {
                        match source() {
                            Ok(Some(block)) => {
                                batch_events += block.block.events.len();
                                batch.push(block);
                            }
                            Ok(None) => break,
                            Err(e) => {
                                error = Some(e);
                                break;
                            }
                        }
                    }
                    let last = batch.is_empty() || error.is_some();
                    let checked: CheckedBatch = batch
                        .into_iter()
                        .map(|b| {
                            let checks = if in_pool {
                                crate::check_event_batch(genesis, &b.block.events)
                                    .into_iter()
                                    .collect()
                            } else {
                                check_events(genesis, &b.block.events)
                            };
                            (b, checks)
                        })
                        .collect();
                    // A closed receiver means the replay already failed: stop reading.
                    if !checked.is_empty() && tx.send(checked).is_err() {
                        return Ok(());
                    }
                    if let Some(e) = error {
                        return Err(e);
                    }
                    if last {
                        return Ok(());
                    }
                }
            });
            let mut replayed = Ok(());
            for batch in rx.iter() {
                replayed = self.replay(batch, progress);
                if replayed.is_err() {
                    break;
                }
            }
            drop(rx);
            let produced = producer.join().unwrap_or_else(|_| {
                fail(self.tip.height + 1, "the audit's reader thread panicked")
            });
            // An earlier height's failure (from the replay) comes first.
            replayed?;
            produced
        })?;
        Ok(self.report())
    }

    fn replay(
        &mut self,
        batch: CheckedBatch,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(), AuditFailure> {
        for (certified, checks) in batch {
            let height = self.tip.height + 1;
            let validated = validate_checked(
                self.genesis,
                &self.state,
                &self.tip,
                &certified,
                checks,
                Refs::Skip,
            )
            .map_err(|e| AuditFailure { height, reason: describe(&e) })?;
            self.state.state.extend(validated.outcome.writes);
            self.events += validated.events.len() as u64;
            let h = &certified.block.header;
            self.tip =
                Tip { height, hash: validated.hash, time_ms: h.time_ms, app_hash: h.app_hash };
            progress(height);
        }
        Ok(())
    }

    fn report(&self) -> AuditReport {
        AuditReport {
            chain: self.genesis.hash,
            blocks: self.tip.height,
            events: self.events,
            tip_hash: self.tip.hash,
            app_hash: self.tip.app_hash,
        }
    }
}

fn describe(e: &LedgerError) -> String {
    match e {
        LedgerError::InvalidBlock { detail, .. } => detail.clone(),
        LedgerError::RejectedEvent { index, rejection, .. } => {
            format!("event {index}: {rejection}")
        }
        other => other.to_string(),
    }
}

/// Verifies a data dir's block log, and that the log is not shorter than its index says.
/// Reads only: nothing in `dir` is written (the index is read from a private copy).
/// `progress(height, total)`.
pub fn verify_data_dir(
    dir: &Path,
    genesis: &Genesis,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<AuditReport, AuditFailure> {
    crate::storage::store::check_data_dir(dir)
        .map_err(|e| AuditFailure { height: 0, reason: e.to_string() })?;
    let (log, report, damage) = BlockLog::open_for_audit(&dir.join("blocks"))
        .map_err(|e| AuditFailure { height: 0, reason: e.to_string() })?;
    let total = log.len();
    let mut next = 1u64;
    let mut auditor = Auditor::new(genesis);
    // Reading the index's tip takes a moment (a copy, and sled recovers its own log); it runs
    // beside the audit and is judged after it, so an earlier bad height still comes first.
    let (result, index_tip) = std::thread::scope(|scope| {
        let index_tip = scope.spawn(|| index_tip(dir));
        let result = auditor.run(
            || {
                if next > total {
                    return Ok(None);
                }
                let block = log
                    .read(next)
                    .map_err(|e| AuditFailure { height: next, reason: e.to_string() })?;
                next += 1;
                Ok(Some(block))
            },
            &mut |h| progress(h, total),
        );
        let index_tip = index_tip
            .join()
            .unwrap_or_else(|_| fail(total + 1, "the thread reading the index tip panicked"));
        (result, index_tip)
    });
    let result = result?;
    if let Some(damage) = damage {
        return fail(total + 1, damage.to_string());
    }
    let committed = index_tip?;
    if let Some(tip) = &committed {
        check_index_tip(&log, total, tip)?;
    }
    if let Some(torn) = &report.torn_tail {
        // An unfinished write is not part of the chain, unless the index says it was committed.
        if committed.as_ref().is_some_and(|t| t.height >= torn.height) {
            return fail(
                torn.height,
                format!(
                    "block {} was committed but its frame is damaged ({torn}); restore the data \
                     dir from an export (`tradeloop restore`) or resync it from peers",
                    torn.height
                ),
            );
        }
    }
    Ok(result)
}

/// The tip the index records (None: no index, or no block committed yet). An index that cannot
/// be read or whose tip does not decode is a finding: the audit cannot confirm the log is whole.
fn index_tip(dir: &Path) -> Result<Option<Tip>, AuditFailure> {
    let index = dir.join("index");
    if !index.exists() {
        return Ok(None);
    }
    let unreadable = |e: LedgerError| AuditFailure {
        height: 0,
        reason: format!(
            "cannot read the index to confirm the block log is complete: {e}; or verify an export"
        ),
    };
    let snapshot = crate::storage::store::snapshot_index(&index).map_err(unreadable)?;
    let db = SledIndex::open(snapshot.path()).map_err(unreadable)?;
    let Some(bytes) = db.get(crate::storage::schema::META_TIP_KEY).map_err(unreadable)? else {
        return Ok(None);
    };
    codec::decode::<Tip>(&bytes).map(Some).map_err(|e| AuditFailure {
        height: 0,
        reason: format!(
            "the index's tip record does not decode ({e}): the audit cannot confirm the block \
             log is complete. Verify an export, or rebuild the index with `tradeloop reindex`"
        ),
    })
}

/// The sled index records the tip it committed; a log shorter than that lost blocks.
fn check_index_tip(log: &BlockLog, total: u64, tip: &Tip) -> Result<(), AuditFailure> {
    if tip.height > total {
        return fail(
            total + 1,
            format!(
                "the block log ends at height {total} but the node committed up to height {}: the log was truncated. Restore the data dir from an export (`tradeloop restore`) or resync it from peers",
                tip.height
            ),
        );
    }
    if tip.height > 0 {
        let block = log
            .read(tip.height)
            .map_err(|e| AuditFailure { height: tip.height, reason: e.to_string() })?;
        if block.block.header.hash() != tip.hash {
            return fail(
                tip.height,
                "the block in the log differs from the one the node committed; restore the data dir from an export (`tradeloop restore`) or resync it from peers",
            );
        }
    }
    Ok(())
}

/// Verifies an export file (binary or JSONL, told apart by its content) against the auditor's
/// genesis.
pub fn verify_export(
    path: &Path,
    genesis: &Genesis,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<AuditReport, AuditFailure> {
    let mut reader = crate::export::open_export(path)
        .map_err(|e| AuditFailure { height: 0, reason: e.to_string() })?;
    let embedded = Genesis::from_json_bytes(reader.genesis_json()).map_err(|e| AuditFailure {
        height: 0,
        reason: format!("the export's genesis is invalid: {e}"),
    })?;
    if embedded.hash != genesis.hash {
        return fail(
            0,
            format!(
                "the export is for chain {}, but your genesis names chain {}: a foreign genesis",
                embedded.hash, genesis.hash
            ),
        );
    }
    let mut trailer = None;
    let mut auditor = Auditor::new(genesis);
    let report = auditor.run(
        || {
            if trailer.is_some() {
                return Ok(None);
            }
            match reader.next_item() {
                Ok(ExportItem::Block(b)) => Ok(Some(*b)),
                Ok(ExportItem::End(t)) => {
                    trailer = Some(t);
                    Ok(None)
                }
                Err((height, reason)) => fail(height, reason),
            }
        },
        &mut |h| progress(h, 0),
    )?;
    let Some(trailer) = trailer else {
        return fail(report.blocks + 1, "the export ends without its trailer: it was truncated");
    };
    if trailer.block_count != report.blocks
        || trailer.tip_hash != report.tip_hash
        || trailer.app_hash != report.app_hash
    {
        return fail(
            report.blocks + 1,
            format!(
                "the trailer promises {} blocks ending in {}, the file holds {} ending in {}",
                trailer.block_count, trailer.tip_hash, report.blocks, report.tip_hash
            ),
        );
    }
    Ok(report)
}
