//! Building and validating blocks: stateless checks in parallel, rules in order.

use rayon::prelude::*;
use tradeloop_crypto::{Hash, SigningKey};

use crate::model::block::{events_root, Block, CertifiedBlock, Header, Tip};
use crate::model::event::{check_event_batch, Event, SignedEvent};
use crate::model::genesis::Genesis;
use crate::rules::state::StateRead;
use crate::rules::{ApplyError, BlockExecutor, BlockOutcome};
use crate::{LedgerError, Rejection};

/// Events checked together by one thread ([`check_event_batch`]: their signatures share one
/// field inversion).
pub const CHECK_CHUNK_EVENTS: usize = 64;

/// Runs [`crate::model::event::check_event`] on every event, in parallel chunks of
/// [`CHECK_CHUNK_EVENTS`]; results in order.
pub fn check_events(genesis: &Genesis, events: &[SignedEvent]) -> Vec<Result<Event, Rejection>> {
    events
        .par_chunks(CHECK_CHUNK_EVENTS)
        .flat_map_iter(|chunk| check_event_batch(genesis, chunk))
        .collect()
}

/// Encoded bytes of a [`Header`] (docs/formats.md).
const HEADER_BYTES: u64 = 212;

/// A block built from candidate events by a proposer.
#[derive(Debug)]
pub struct BuiltBlock {
    /// The block (not yet certified).
    pub block: Block,
    /// Its hash.
    pub hash: Hash,
    /// The ids of its events, in order.
    pub ids: Vec<Hash>,
    /// The execution result.
    pub outcome: BlockOutcome,
    /// Candidates left out, by index into the candidate list, with the reason.
    pub rejected: Vec<(usize, Rejection)>,
    /// Candidates not considered because the block was full (its event count or byte bound),
    /// by index, in order: they are for the next block.
    pub deferred: Vec<usize>,
}

/// Builds the next block from `candidates`: every candidate is checked and applied in order;
/// rejected ones are left out and reported. At most `max_block_events` events and
/// `max_block_bytes` bytes are included; the candidates that did not fit are returned in
/// [`BuiltBlock::deferred`], never dropped.
pub fn build_block<S: StateRead>(
    genesis: &Genesis,
    state: &S,
    tip: &Tip,
    candidates: &[SignedEvent],
    time_ms: u64,
    proposer: &SigningKey,
) -> Result<BuiltBlock, LedgerError> {
    let checked = check_events(genesis, candidates);
    build_block_checked(genesis, state, tip, candidates, checked, &[], time_ms, proposer)
}

/// An event's earlier evaluation that a block may reuse instead of evaluating it again
/// (`memos[i]` belongs to event `i`; a shorter list or `None` means "evaluate"): see
/// [`BlockExecutor::apply_remembered`] for when it is reused. A node passes the footprints its
/// mempool recorded at admission.
pub type Memos<'a> = [Option<&'a crate::rules::Footprint>];

fn apply_with<S: StateRead>(
    executor: &mut BlockExecutor<'_, S>,
    event: &Event,
    memo: Option<&crate::rules::Footprint>,
) -> Result<(), ApplyError> {
    match memo {
        Some(footprint) => executor.apply_remembered(event, footprint),
        None => executor.apply(event),
    }
}

/// [`build_block`] for candidates whose stateless checks already ran (`checked[i]` belongs to
/// `candidates[i]`), so a caller can check the next block while the previous one commits;
/// `memos` are earlier evaluations of the candidates ([`Memos`]).
#[allow(clippy::too_many_arguments)]
pub fn build_block_checked<S: StateRead>(
    genesis: &Genesis,
    state: &S,
    tip: &Tip,
    candidates: &[SignedEvent],
    checked: Vec<Result<Event, Rejection>>,
    memos: &Memos<'_>,
    time_ms: u64,
    proposer: &SigningKey,
) -> Result<BuiltBlock, LedgerError> {
    let time_ms = time_ms.max(tip.time_ms);
    let height = tip.height + 1;
    let mut executor = BlockExecutor::new(genesis, state, time_ms);
    let mut included = Vec::new();
    let mut ids = Vec::new();
    let mut rejected = Vec::new();
    let mut deferred = Vec::new();
    let limit = genesis.doc.consensus.max_block_events as usize;
    let max_bytes = u64::from(genesis.doc.consensus.max_block_bytes);
    // The header and the event list's length prefix.
    let mut block_bytes = HEADER_BYTES + 8;
    for (i, result) in checked.into_iter().enumerate() {
        let event = match result {
            Ok(e) => e,
            Err(r) => {
                rejected.push((i, r));
                continue;
            }
        };
        let event_bytes = crate::encoding::codec::encoded_len(&candidates[i]).unwrap_or(u64::MAX);
        // Once one event does not fit, the rest wait too: a later event may depend on it.
        if !deferred.is_empty()
            || included.len() >= limit
            || block_bytes.saturating_add(event_bytes) > max_bytes
        {
            deferred.push(i);
            continue;
        }
        match apply_with(&mut executor, &event, memos.get(i).copied().flatten()) {
            Ok(()) => {
                ids.push(event.id);
                included.push(candidates[i].clone());
                block_bytes += event_bytes;
            }
            Err(ApplyError::Rejected(r)) => rejected.push((i, r)),
            Err(ApplyError::Store(e)) => return Err(e),
        }
    }
    let outcome = executor.finish(&tip.app_hash, height);
    let header = Header {
        chain: genesis.hash,
        height,
        prev_hash: tip.hash,
        time_ms,
        proposer: proposer.public_key(),
        events_root: events_root(&ids),
        event_count: u32::try_from(included.len()).unwrap_or(u32::MAX),
        app_hash: outcome.app_hash,
        validators_hash: genesis.validators.hash,
    };
    let hash = header.hash();
    Ok(BuiltBlock {
        block: Block { header, events: included },
        hash,
        ids,
        outcome,
        rejected,
        deferred,
    })
}

/// A block that passed every check, with what it does to state.
#[derive(Debug)]
pub struct ValidatedBlock {
    /// The block hash.
    pub hash: Hash,
    /// The checked events, in order.
    pub events: Vec<Event>,
    /// The execution result (its app hash equals the header's).
    pub outcome: BlockOutcome,
}

/// Validates a proposed block (no certificate yet) against the tip and state: everything
/// [`validate_block`] checks except the certificate. A validator prevotes for a block only if
/// this passes (immediate execution: the app hash is recomputed and must match).
pub fn validate_proposal<S: StateRead>(
    genesis: &Genesis,
    state: &S,
    tip: &Tip,
    block: &Block,
) -> Result<ValidatedBlock, LedgerError> {
    let checks = check_events(genesis, &block.events);
    validate_body(genesis, state, tip, block, None, checks, &[], Refs::Track)
}

/// [`validate_proposal`] for a block whose events' stateless checks already ran (`checks[i]`
/// belongs to event `i`): a node reuses the verdicts of the events it admitted to its mempool
/// instead of verifying their signatures again, and their recorded evaluations (`memos`,
/// [`Memos`]) where every state value they read is the same in this block.
pub fn validate_proposal_checked<S: StateRead>(
    genesis: &Genesis,
    state: &S,
    tip: &Tip,
    block: &Block,
    checks: Vec<Result<Event, Rejection>>,
    memos: &Memos<'_>,
) -> Result<ValidatedBlock, LedgerError> {
    validate_body(genesis, state, tip, block, None, checks, memos, Refs::Track)
}

/// Validates a certified block fully against the tip and state: the header checks of
/// [`crate::model::block::check_block_header`], the commit certificate, every event's stateless checks,
/// every rule, and the app hash.
pub fn validate_block<S: StateRead>(
    genesis: &Genesis,
    state: &S,
    tip: &Tip,
    certified: &CertifiedBlock,
) -> Result<ValidatedBlock, LedgerError> {
    let checked = check_events(genesis, &certified.block.events);
    validate_checked(genesis, state, tip, certified, checked, Refs::Track)
}

/// Whether a validation records each event's entity refs (trace-query keys) in its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refs {
    /// Record them: the index needs them.
    Track,
    /// Leave the outcome's ref lists empty: the audit's replay keeps no index. Writes and
    /// `app_hash` are the same either way.
    Skip,
}

/// [`validate_block`] for a block whose events' stateless checks already ran (`checks[i]`
/// belongs to event `i`). Block-level checks come first, so a foreign or misplaced block is
/// named as such rather than by its first event.
pub fn validate_checked<S: StateRead>(
    genesis: &Genesis,
    state: &S,
    tip: &Tip,
    certified: &CertifiedBlock,
    checks: Vec<Result<Event, Rejection>>,
    refs: Refs,
) -> Result<ValidatedBlock, LedgerError> {
    let certificate = Some(&certified.certificate);
    validate_body(genesis, state, tip, &certified.block, certificate, checks, &[], refs)
}

/// The one validation path: header (and certificate, when there is one), then every event's
/// checks and rules in order (reusing `memos` where they hold), then the app hash.
#[allow(clippy::too_many_arguments)]
fn validate_body<S: StateRead>(
    genesis: &Genesis,
    state: &S,
    tip: &Tip,
    block: &Block,
    certificate: Option<&crate::model::block::CommitCertificate>,
    checks: Vec<Result<Event, Rejection>>,
    memos: &Memos<'_>,
    refs: Refs,
) -> Result<ValidatedBlock, LedgerError> {
    let header = &block.header;
    let height = header.height;
    let invalid = |detail: String| LedgerError::InvalidBlock { height, detail };
    let ids: Vec<Hash> = checks
        .iter()
        .zip(&block.events)
        .map(|(check, signed)| check.as_ref().map_or_else(|_| signed.id(), |e| e.id))
        .collect();
    let hash = crate::model::block::check_block_header(genesis, tip, block, &ids)
        .map_err(|e| invalid(e.to_string()))?;
    if let Some(certificate) = certificate {
        certificate
            .verify(&genesis.hash, &genesis.validators, height, &hash)
            .map_err(|e| invalid(format!("commit certificate invalid: {e}")))?;
    }
    let mut executor = BlockExecutor::new(genesis, state, header.time_ms);
    if refs == Refs::Skip {
        executor = executor.without_refs();
    }
    let mut events = Vec::with_capacity(checks.len());
    for (index, check) in checks.into_iter().enumerate() {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let event =
            check.map_err(|rejection| LedgerError::RejectedEvent { height, index, rejection })?;
        let memo = memos.get(index as usize).copied().flatten();
        match apply_with(&mut executor, &event, memo) {
            Ok(()) => events.push(event),
            Err(ApplyError::Rejected(rejection)) => {
                return Err(LedgerError::RejectedEvent { height, index, rejection })
            }
            Err(ApplyError::Store(e)) => return Err(e),
        }
    }
    let outcome = executor.finish(&tip.app_hash, height);
    if outcome.app_hash != header.app_hash {
        return Err(invalid(format!(
            "app_hash {} does not match the state after replaying the rules ({})",
            header.app_hash, outcome.app_hash
        )));
    }
    Ok(ValidatedBlock { hash, events, outcome })
}
