//! The checker, over honest validators: agreement (no two blocks at one height),
//! no key signs two different votes or proposals for one (height, round, step), every block
//! committed survives a crash, every event is committed at most once, the mempool's re-check
//! after a commit misses nothing, and the longest chain verifies offline from the genesis.

use std::collections::{BTreeMap, HashMap};

use malachite_core_consensus::SignedConsensusMsg;
use malachite_core_types::{NilOrVal, VoteType};
use tradeloop_crypto::Hash;

use super::node::SimNode;
use crate::net::message::ConsensusWire;

/// A violated property: its name and what happened.
pub(super) type Violation = (String, String);

/// What the checker remembers across a run.
#[derive(Debug, Default)]
pub(super) struct Checker {
    /// Every signed proposal and vote an honest validator sent: (validator, height, round,
    /// step) -> value.
    signed: BTreeMap<(usize, u64, i64, u8), Option<Hash>>,
    /// The first equivocation seen, and when.
    pub equivocation: Option<(usize, u64, Violation)>,
    /// The block each height was first committed with, and by whom.
    decided: BTreeMap<u64, (usize, Hash)>,
}

impl Checker {
    /// Records a consensus message an honest validator sent.
    pub(super) fn sent(&mut self, i: usize, bytes: &[u8], now: u64) {
        let Ok(ConsensusWire::Signed(msg)) = crate::net::message::decode_consensus(bytes) else {
            return;
        };
        let (key, value) = match &msg {
            SignedConsensusMsg::Vote(v) => {
                let m = &v.message;
                let step = match m.vote_type {
                    VoteType::Prevote => 1,
                    VoteType::Precommit => 2,
                };
                let value = match &m.value {
                    NilOrVal::Nil => None,
                    NilOrVal::Val(h) => Some(h.0),
                };
                ((i, m.height.0, m.round.as_i64(), step), value)
            }
            SignedConsensusMsg::Proposal(p) => {
                ((i, p.message.height.0, p.message.round.as_i64(), 0), Some(p.message.value.0))
            }
        };
        match self.signed.get(&key) {
            Some(previous) if *previous != value && self.equivocation.is_none() => {
                let step = ["proposal", "prevote", "precommit"][usize::from(key.3)];
                let detail = format!(
                    "validator {i} signed two different {step}s at height {} round {}: {previous:?} and {value:?}",
                    key.1, key.2
                );
                self.equivocation = Some((i, now, ("equivocation".into(), detail)));
            }
            Some(_) => {}
            None => {
                self.signed.insert(key, value);
            }
        }
    }

    /// Records validator `i`'s commit of `hash` at `height`: a different block at a height
    /// another honest validator committed breaks agreement.
    pub(super) fn committed(&mut self, i: usize, height: u64, hash: Hash) -> Option<Violation> {
        match self.decided.get(&height) {
            Some((j, other)) if *other != hash => Some((
                "agreement".into(),
                format!("height {height}: validator {j} committed {other}, validator {i} committed {hash}"),
            )),
            Some(_) => None,
            None => {
                self.decided.insert(height, (i, hash));
                None
            }
        }
    }
}

/// A validator restarted from its data dir with fewer blocks than it had committed.
pub(super) fn durability(i: usize, node: &SimNode) -> Option<Violation> {
    let tip = node.worker()?.ledger().tip().height;
    let had = node.committed.keys().next_back().copied().unwrap_or(0);
    (tip < had).then(|| {
        (
            "durability".into(),
            format!("validator {i} restarted at height {tip} after committing {had}"),
        )
    })
}

/// After a commit, the pending events a full re-check refuses: none, unless the mempool's
/// re-check missed one.
pub(super) fn mempool(i: usize, node: &SimNode) -> Option<Violation> {
    let worker = node.worker()?;
    let now = crate::time::Clock::Virtual(node.clock.clone()).unix_ms();
    match worker.stale_pending(now) {
        Ok(stale) if stale.is_empty() => None,
        Ok(stale) => Some((
            "mempool".into(),
            format!(
                "validator {i} keeps {} pending event(s) the rules refuse after its commit at height {} (first {})",
                stale.len(),
                worker.ledger().tip().height,
                stale[0]
            ),
        )),
        Err(e) => Some(("mempool".into(), format!("validator {i}: cannot re-check: {e}"))),
    }
}

/// Every event at most once in each validator's chain.
pub(super) fn exactly_once(i: usize, node: &SimNode) -> Option<Violation> {
    let mut seen: HashMap<Hash, u64> = HashMap::new();
    for (height, (_, ids)) in &node.committed {
        for id in ids {
            if let Some(first) = seen.insert(*id, *height) {
                return Some((
                    "exactly-once".into(),
                    format!("validator {i} committed event {id} at heights {first} and {height}"),
                ));
            }
        }
    }
    None
}

/// The auditor's check: `node`'s chain exported and verified offline from the genesis alone
/// (every certificate, every event, every rule).
pub(super) fn audit(
    i: usize,
    node: &SimNode,
    genesis: &tradeloop_ledger::Genesis,
    dir: &std::path::Path,
    keep: Option<&std::path::Path>,
) -> Result<Option<Violation>, String> {
    let Some(worker) = node.worker() else { return Ok(None) };
    let path = dir.join(format!("audit-{i}.tlx"));
    tradeloop_ledger::export::binary::export(worker.ledger(), &path)
        .map_err(|e| format!("export of validator {i}'s chain: {e}"))?;
    let verdict = tradeloop_ledger::evidence::audit::verify_export(&path, genesis, &mut |_, _| {});
    if let Some(keep) = keep {
        std::fs::copy(&path, keep).map_err(|e| format!("copy the export: {e}"))?;
    }
    let _ = std::fs::remove_file(&path);
    Ok(verdict
        .err()
        .map(|f| ("audit".to_string(), format!("validator {i}'s chain fails verification: {f}"))))
}
