//! The mempool: events accepted by this node and not yet in a block (DESIGN §6, "From submit
//! to commit").
//!
//! Admission is the stateless check (signature, envelope, fields) plus the rules against the
//! tip and every pending event before it, so that a block built from the pool in arrival order
//! is valid as a whole. An event's signature is verified once per node: the checked event is
//! kept beside the envelope and reused when this node builds or validates a block that holds
//! it. Bounds by count and bytes; a full pool answers "full" and the caller says "retry" — an
//! accepted event is never dropped silently, only by a commit that includes it or makes it
//! invalid (reported by [`Mempool::on_commit`]).
//!
//! Each pending event keeps its [`Footprint`]: the state keys its admission read and what it
//! wrote. After a commit, only the events that read or wrote a key the block (or an event
//! evicted or changed before them) wrote, or whose time left the skew window, are run through
//! the rules again; the others replay their recorded writes. The rules are deterministic, so
//! this gives exactly the verdicts of re-running every pending event (the full recheck, kept
//! for a commit whose writes are not known, and checked against it by a property test).
//!
//! Pure and synchronous: the chain worker owns it next to the ledger.

use std::collections::{BTreeMap, HashMap, HashSet};

use tradeloop_crypto::Hash;
use tradeloop_ledger::rules::{ApplyError, BlockExecutor, Footprint, PendingWrites};
use tradeloop_ledger::state::StateRead;
use tradeloop_ledger::{Event, Genesis, LedgerError, Rejection, SignedEvent};

/// Bounds of one mempool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MempoolLimits {
    /// Most events pending.
    pub max_events: usize,
    /// Most bytes of pending events (their encoded size).
    pub max_bytes: u64,
}

/// What admission decided for one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// In the pool now.
    Accepted,
    /// Already in the pool (accepted earlier, by this node or through gossip).
    AlreadyPending,
    /// The pool is at its bound; the event was not taken and may be sent again later.
    Full,
    /// Refused by the checks or the rules.
    Rejected(Rejection),
}

#[derive(Debug)]
struct Entry {
    signed: SignedEvent,
    event: Event,
    bytes: u64,
    /// What the rules read and wrote for it, against the tip and the events before it.
    footprint: Footprint,
}

/// The pending events of one node.
#[derive(Debug)]
pub struct Mempool {
    limits: MempoolLimits,
    /// Arrival order: sequence number -> entry.
    order: BTreeMap<u64, Entry>,
    by_id: HashMap<Hash, u64>,
    next_seq: u64,
    bytes: u64,
    /// The state writes of every pending event, in order, over the committed tip.
    pending: PendingWrites,
}

impl Mempool {
    /// An empty pool.
    pub fn new(limits: MempoolLimits) -> Mempool {
        Mempool {
            limits,
            order: BTreeMap::new(),
            by_id: HashMap::new(),
            next_seq: 0,
            bytes: 0,
            pending: PendingWrites::default(),
        }
    }

    /// Events pending.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is pending.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Bytes of the pending events.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether an event with this id is pending (checked before any cryptography, so a
    /// duplicate from gossip costs a lookup).
    pub fn contains(&self, id: &Hash) -> bool {
        self.by_id.contains_key(id)
    }

    /// The checked form of a pending event, if `signed` is exactly the pending envelope (same
    /// body and signature): its verdict is reused instead of verifying it again.
    pub fn checked(&self, signed: &SignedEvent) -> Option<&Event> {
        let id = signed.id();
        let entry = self.by_id.get(&id).and_then(|seq| self.order.get(seq))?;
        (entry.signed == *signed).then_some(&entry.event)
    }

    /// Admits one event whose stateless check already ran (`checked`), against `state` (the
    /// committed tip) and the pending events, at block time `now_ms`.
    pub fn admit<S: StateRead>(
        &mut self,
        genesis: &Genesis,
        state: &S,
        now_ms: u64,
        signed: SignedEvent,
        checked: Result<Event, Rejection>,
    ) -> Result<Admission, LedgerError> {
        let event = match checked {
            Ok(event) => event,
            Err(rejection) => return Ok(Admission::Rejected(rejection)),
        };
        if self.by_id.contains_key(&event.id) {
            return Ok(Admission::AlreadyPending);
        }
        let bytes = tradeloop_ledger::codec::encoded_len(&signed).unwrap_or(u64::MAX);
        if self.order.len() >= self.limits.max_events
            || self.bytes.saturating_add(bytes) > self.limits.max_bytes
        {
            return Ok(Admission::Full);
        }
        let pending = std::mem::take(&mut self.pending);
        let mut executor = BlockExecutor::with_pending(genesis, state, now_ms, pending);
        let applied = executor.apply_recorded(&event);
        self.pending = executor.into_pending();
        let footprint = match applied {
            Ok(footprint) => footprint,
            Err(ApplyError::Rejected(rejection)) => return Ok(Admission::Rejected(rejection)),
            Err(ApplyError::Store(e)) => return Err(e),
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_id.insert(event.id, seq);
        self.order.insert(seq, Entry { signed, event, bytes, footprint });
        self.bytes += bytes;
        Ok(Admission::Accepted)
    }

    /// Up to `max_events` pending events of at most `max_bytes` in all, in arrival order, with
    /// their checked forms: a proposer's candidates.
    pub fn candidates(&self, max_events: usize, max_bytes: u64) -> (Vec<SignedEvent>, Vec<Event>) {
        let mut signed = Vec::new();
        let mut events = Vec::new();
        let mut bytes = 0u64;
        for entry in self.order.values() {
            if signed.len() >= max_events || bytes.saturating_add(entry.bytes) > max_bytes {
                break;
            }
            bytes += entry.bytes;
            signed.push(entry.signed.clone());
            events.push(entry.event.clone());
        }
        (signed, events)
    }

    /// After a block is committed: removes its events (`committed`), then re-checks the
    /// other pending events, in order, against the new tip (`state`), evicting those the block
    /// made invalid. Returns the evicted events' ids with the reason.
    ///
    /// `written` is every state key the block wrote, when the caller knows it (the kept
    /// execution of the block): then only the pending events whose footprint meets a changed
    /// key are run through the rules again. Without it, or when the block holds an event this
    /// pool did not have, every pending event is.
    pub fn on_commit<'k, S: StateRead>(
        &mut self,
        genesis: &Genesis,
        state: &S,
        now_ms: u64,
        committed: &[Hash],
        written: Option<impl IntoIterator<Item = &'k [u8]>>,
    ) -> Result<Vec<(Hash, Rejection)>, LedgerError> {
        let mut changed: Option<HashSet<Vec<u8>>> =
            written.map(|keys| keys.into_iter().map(<[u8]>::to_vec).collect());
        for id in committed {
            let removed = self.by_id.remove(id).and_then(|seq| self.order.remove(&seq));
            match removed {
                Some(entry) => {
                    self.bytes -= entry.bytes;
                    // Later events saw this one's pending writes; the block may have written
                    // other values (another order, another time), or not these keys at all.
                    if let Some(changed) = changed.as_mut() {
                        changed.extend(entry.footprint.write_keys().map(<[u8]>::to_vec));
                    }
                }
                // Its writes are known only from `written`, but its effect on the pending
                // events' view is not: check them all.
                None => changed = None,
            }
        }
        self.recheck(genesis, state, now_ms, changed)
    }

    /// Re-checks the pending events in order over `state`: all of them when `changed` is
    /// `None`, else those that meet a key in `changed` (which grows by the writes of every
    /// event evicted or re-checked with other writes) or whose time left the window.
    fn recheck<S: StateRead>(
        &mut self,
        genesis: &Genesis,
        state: &S,
        now_ms: u64,
        mut changed: Option<HashSet<Vec<u8>>>,
    ) -> Result<Vec<(Hash, Rejection)>, LedgerError> {
        let mut executor =
            BlockExecutor::with_pending(genesis, state, now_ms, PendingWrites::default());
        let mut evicted = Vec::new();
        let mut gone = Vec::new();
        for (seq, entry) in &mut self.order {
            let stale = match &changed {
                None => true,
                Some(changed) => {
                    !executor.time_in_window(&entry.event)
                        || entry.footprint.keys().any(|k| changed.contains(k))
                }
            };
            if !stale {
                executor.replay(&entry.footprint);
                continue;
            }
            match executor.apply_recorded(&entry.event) {
                Ok(footprint) => {
                    if let Some(changed) = changed.as_mut() {
                        if !footprint.same_writes(&entry.footprint) {
                            changed.extend(entry.footprint.write_keys().map(<[u8]>::to_vec));
                            changed.extend(footprint.write_keys().map(<[u8]>::to_vec));
                        }
                    }
                    entry.footprint = footprint;
                }
                Err(ApplyError::Rejected(rejection)) => {
                    if let Some(changed) = changed.as_mut() {
                        changed.extend(entry.footprint.write_keys().map(<[u8]>::to_vec));
                    }
                    evicted.push((entry.event.id, rejection));
                    gone.push(*seq);
                }
                Err(ApplyError::Store(e)) => return Err(e),
            }
        }
        self.pending = executor.into_pending();
        for seq in gone {
            if let Some(entry) = self.order.remove(&seq) {
                self.by_id.remove(&entry.event.id);
                self.bytes -= entry.bytes;
            }
        }
        Ok(evicted)
    }
}

#[cfg(test)]
mod tests;
