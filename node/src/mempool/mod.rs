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
//! Pure and synchronous: the chain worker owns it next to the ledger.

use std::collections::{BTreeMap, HashMap};

use tradeloop_crypto::Hash;
use tradeloop_ledger::rules::{ApplyError, BlockExecutor, PendingWrites};
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
        let applied = executor.apply(&event);
        self.pending = executor.into_pending();
        match applied {
            Ok(()) => {}
            Err(ApplyError::Rejected(rejection)) => return Ok(Admission::Rejected(rejection)),
            Err(ApplyError::Store(e)) => return Err(e),
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_id.insert(event.id, seq);
        self.order.insert(seq, Entry { signed, event, bytes });
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

    /// After a block is committed: removes its events (`committed`), then re-checks every
    /// other pending event, in order, against the new tip (`state`), evicting those the block
    /// made invalid. Returns the evicted events' ids with the reason.
    pub fn on_commit<S: StateRead>(
        &mut self,
        genesis: &Genesis,
        state: &S,
        now_ms: u64,
        committed: &[Hash],
    ) -> Result<Vec<(Hash, Rejection)>, LedgerError> {
        for id in committed {
            if let Some(seq) = self.by_id.remove(id) {
                if let Some(entry) = self.order.remove(&seq) {
                    self.bytes -= entry.bytes;
                }
            }
        }
        let mut executor =
            BlockExecutor::with_pending(genesis, state, now_ms, PendingWrites::default());
        let mut evicted = Vec::new();
        let mut gone = Vec::new();
        for (seq, entry) in &self.order {
            match executor.apply(&entry.event) {
                Ok(()) => {}
                Err(ApplyError::Rejected(rejection)) => {
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
