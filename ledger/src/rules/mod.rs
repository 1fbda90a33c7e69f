//! The closed-loop trade rules: deterministic functions of (state, event).
//!
//! [`BlockExecutor`] applies checked events one by one over an overlay of the committed state.
//! Each rule validates fully and only then returns its writes, so a rejected event leaves no
//! trace. The writes of a block are committed together and folded into the block's `app_hash`.
//!
//! This file holds the executor (overlay, recorded reads, the checks every event passes:
//! replay, nonce, time window, role); each domain's rules are in a file of their own
//! (`orders`, `shipments`, `customs`, `documents`, `payments`), and the role permission matrix
//! in `permissions`.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::{de::DeserializeOwned, Serialize};
use tradeloop_crypto::{Hash, HashWriter};

use crate::error::{RejectCode, Rejection};
use crate::model::event::{Event, Payload};
use crate::model::genesis::{Genesis, Role};
use crate::rules::state::*;
use crate::{encoding::codec, LedgerError};

mod customs;
mod documents;
mod orders;
mod payments;
mod permissions;
mod shipments;
pub mod state;

pub use permissions::role_permits;

/// Domain tag of the app hash.
pub const APP_DOMAIN: &[u8] = b"tradeloop/app/v1\0";
/// Domain tag of the digest of a block's state writes.
pub const WRITES_DOMAIN: &[u8] = b"tradeloop/writes/v1\0";

/// Why an event could not be applied.
#[derive(Debug)]
pub enum ApplyError {
    /// The rules reject it.
    Rejected(Rejection),
    /// Reading state failed.
    Store(LedgerError),
}

impl From<Rejection> for ApplyError {
    fn from(r: Rejection) -> Self {
        ApplyError::Rejected(r)
    }
}

impl From<LedgerError> for ApplyError {
    fn from(e: LedgerError) -> Self {
        ApplyError::Store(e)
    }
}

fn rej<T>(code: RejectCode, message: impl Into<String>) -> Result<T, ApplyError> {
    Err(ApplyError::Rejected(Rejection::new(code, message)))
}

/// What applying one event changes.
#[derive(Debug, Default)]
struct Effects {
    writes: Vec<(Vec<u8>, Vec<u8>)>,
    /// Entity keys this event belongs to, for trace queries.
    refs: Vec<Vec<u8>>,
    /// Whether `refs` is wanted (the index needs it; the audit's replay does not).
    track_refs: bool,
}

impl Effects {
    fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) {
        // State values are bounded by the rules' list and text limits, far below the codec's.
        self.writes.push((key, codec::encode_small(value)));
    }
    fn refer(&mut self, key: Vec<u8>) {
        if self.track_refs && !self.refs.contains(&key) {
            self.refs.push(key);
        }
    }
}

/// The result of executing a block's events.
#[derive(Debug)]
pub struct BlockOutcome {
    /// All state writes, sorted by key.
    pub writes: BTreeMap<Vec<u8>, Vec<u8>>,
    /// For each applied event, in order: its entity refs (empty lists if the executor was
    /// made [`BlockExecutor::without_refs`]).
    pub refs: Vec<Vec<Vec<u8>>>,
    /// The state commitment after this block.
    pub app_hash: Hash,
}

/// What applying one event read and wrote, as [`BlockExecutor::apply_recorded`] returns it:
/// a mempool's record of a pending event. The rules are deterministic, so the event's verdict
/// and writes depend only on the values under these keys (present or absent) and on whether
/// its time is within the skew of the block time ([`BlockExecutor::time_in_window`]); while
/// none of those values change, its verdict and writes stay as recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    reads: Vec<(Vec<u8>, Read)>,
    writes: Vec<(Vec<u8>, Vec<u8>)>,
    /// The event's entity refs (empty if the executor did not track them).
    refs: Vec<Vec<u8>>,
}

/// What one state read of an evaluation saw.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Read {
    /// The value under the key (`None`: absent).
    Value(Option<Vec<u8>>),
    /// Only whether the key was present.
    Exists(bool),
}

impl Footprint {
    /// Every state key the event read or wrote.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.reads.iter().map(|(k, _)| k.as_slice()).chain(self.write_keys())
    }

    /// The state keys the event wrote.
    pub fn write_keys(&self) -> impl Iterator<Item = &[u8]> {
        self.writes.iter().map(|(k, _)| k.as_slice())
    }

    /// The keys and values the event wrote, in the order it wrote them.
    pub fn writes(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.writes.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// Whether `other` wrote exactly the same keys and values, in the same order.
    pub fn same_writes(&self, other: &Footprint) -> bool {
        self.writes == other.writes
    }
}

/// Applies events of one block over committed state.
#[derive(Debug)]
pub struct BlockExecutor<'a, S: StateRead> {
    genesis: &'a Genesis,
    base: &'a S,
    block_time_ms: u64,
    overlay: BTreeMap<Vec<u8>, Vec<u8>>,
    refs: Vec<Vec<Vec<u8>>>,
    track_refs: bool,
    /// The keys read by the event being evaluated, while [`BlockExecutor::apply_recorded`]
    /// runs (`None` otherwise: nothing is recorded).
    reads: RefCell<Option<Reads>>,
}

/// The reads of one evaluation, in order: each key with what it saw.
type Reads = Vec<(Vec<u8>, Read)>;

impl<'a, S: StateRead> BlockExecutor<'a, S> {
    /// Starts a block with the given block time.
    pub fn new(genesis: &'a Genesis, base: &'a S, block_time_ms: u64) -> Self {
        BlockExecutor {
            genesis,
            base,
            block_time_ms,
            overlay: BTreeMap::new(),
            refs: Vec::new(),
            track_refs: true,
            reads: RefCell::new(None),
        }
    }

    /// The same executor without entity refs (trace-query keys): the outcome's `refs` lists
    /// stay empty. For the audit's replay, which keeps no index; writes and `app_hash` are
    /// unchanged.
    pub fn without_refs(mut self) -> Self {
        self.track_refs = false;
        self
    }

    /// An executor for a mempool: it checks pending events one at a time against `base`
    /// (the tip under the writes of the events pending before them, which the caller's
    /// [`StateRead`] supplies). Entity refs are tracked, so that a block holding the event can
    /// reuse the whole evaluation ([`BlockExecutor::apply_remembered`]).
    pub fn for_pool(genesis: &'a Genesis, base: &'a S, block_time_ms: u64) -> Self {
        BlockExecutor::new(genesis, base, block_time_ms)
    }

    /// Number of events applied so far.
    pub fn applied(&self) -> usize {
        self.refs.len()
    }

    /// Applies one event checked by [`crate::model::event::check_event`]. On rejection nothing changes.
    pub fn apply(&mut self, event: &Event) -> Result<(), ApplyError> {
        let effects = self.evaluate(event)?;
        for (key, value) in effects.writes {
            self.overlay.insert(key, value);
        }
        self.refs.push(effects.refs);
        Ok(())
    }

    /// [`BlockExecutor::apply`], also returning what the event read and wrote.
    pub fn apply_recorded(&mut self, event: &Event) -> Result<Footprint, ApplyError> {
        *self.reads.borrow_mut() = Some(Vec::new());
        let evaluated = self.evaluate(event);
        let reads = self.reads.borrow_mut().take().unwrap_or_default();
        let effects = evaluated?;
        let footprint =
            Footprint { reads, writes: effects.writes.clone(), refs: effects.refs.clone() };
        for (key, value) in effects.writes {
            self.overlay.insert(key, value);
        }
        self.refs.push(effects.refs);
        Ok(footprint)
    }

    /// [`BlockExecutor::apply`] for an event whose evaluation was recorded earlier
    /// ([`BlockExecutor::record`], by this node's mempool over its own view of the pending
    /// events): if every state read of that evaluation sees the same value here (same value,
    /// or same presence for an existence test) and the event's time is within this block's
    /// window, the rules, being deterministic functions of exactly those inputs, would give
    /// the same verdict, writes and refs, so the recorded ones are applied without evaluating
    /// the event again. Otherwise the event is evaluated as by [`BlockExecutor::apply`].
    /// `footprint` must be a record of this `event` (the caller keeps them together).
    pub fn apply_remembered(
        &mut self,
        event: &Event,
        footprint: &Footprint,
    ) -> Result<(), ApplyError> {
        if !self.time_in_window(event) || !self.reads_unchanged(footprint)? {
            return self.apply(event);
        }
        for (key, value) in &footprint.writes {
            self.overlay.insert(key.clone(), value.clone());
        }
        self.refs.push(if self.track_refs { footprint.refs.clone() } else { Vec::new() });
        Ok(())
    }

    /// Whether every read of `footprint` sees what it saw then, over this block's overlay and
    /// the base state.
    fn reads_unchanged(&self, footprint: &Footprint) -> Result<bool, ApplyError> {
        for (key, read) in &footprint.reads {
            let same = match (read, self.overlay.get(key)) {
                (Read::Value(was), Some(now)) => was.as_deref() == Some(now.as_slice()),
                (Read::Exists(was), Some(_)) => *was,
                (Read::Value(was), None) => {
                    self.base.with_state(key, |now| was.as_deref() == now)?
                }
                (Read::Exists(was), None) => *was == self.base.has_state(key)?,
            };
            if !same {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// What applying `event` would read and write, without applying it: for a mempool,
    /// which evaluates each pending event on its own over a view of the events before it.
    pub fn record(&self, event: &Event) -> Result<Footprint, ApplyError> {
        *self.reads.borrow_mut() = Some(Vec::new());
        let evaluated = self.evaluate(event);
        let reads = self.reads.borrow_mut().take().unwrap_or_default();
        let effects = evaluated?;
        Ok(Footprint { reads, writes: effects.writes, refs: effects.refs })
    }

    /// Whether the event's `time_ms` is within the chain's clock skew of this block's time
    /// (the one rule that depends on the block time).
    pub fn time_in_window(&self, event: &Event) -> bool {
        event.time_ms.abs_diff(self.block_time_ms) <= self.genesis.doc.consensus.max_time_skew_ms
    }

    /// Records a read when reads are being recorded ([`BlockExecutor::record`]); `read` is
    /// only called then, so an unrecorded read copies nothing.
    fn record_read(&self, key: &[u8], read: impl FnOnce() -> Read) {
        if let Some(reads) = self.reads.borrow_mut().as_mut() {
            reads.push((key.to_vec(), read()));
        }
    }

    /// Finishes the block: the sorted writes and `app_hash = H(APP || prev || height || H(writes))`.
    pub fn finish(self, prev_app_hash: &Hash, height: u64) -> BlockOutcome {
        let app_hash = app_hash(prev_app_hash, height, &self.overlay);
        BlockOutcome { writes: self.overlay, refs: self.refs, app_hash }
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, ApplyError> {
        let decode = |raw: Option<&[u8]>| match raw {
            None => Ok(None),
            Some(bytes) => codec::decode(bytes).map(Some).map_err(|e| {
                ApplyError::Store(LedgerError::IndexInconsistent(format!(
                    "state value under {} does not decode: {e}",
                    String::from_utf8_lossy(key)
                )))
            }),
        };
        let seen = |raw: Option<&[u8]>| {
            self.record_read(key, || Read::Value(raw.map(<[u8]>::to_vec)));
            decode(raw)
        };
        match self.overlay.get(key) {
            Some(v) => seen(Some(v)),
            None => self.base.with_state(key, seen)?,
        }
    }

    fn exists(&self, key: &[u8]) -> Result<bool, ApplyError> {
        let present = self.overlay.contains_key(key) || self.base.has_state(key)?;
        self.record_read(key, || Read::Exists(present));
        Ok(present)
    }

    fn role_of(&self, id: &str) -> Option<Role> {
        self.genesis.participant(id).map(|p| p.role)
    }

    fn country_of(&self, id: &str) -> &str {
        self.genesis.participant(id).map(|p| p.country.as_str()).unwrap_or("")
    }

    fn evaluate(&self, event: &Event) -> Result<Effects, ApplyError> {
        // The nonce entry holds the id of the event that used it, and an event's id fixes its
        // author and nonce, so "this event is already on the ledger (or earlier in this
        // block: the overlay)" is "its nonce entry holds its id": one state read answers both
        // the replay and the nonce check.
        let nonce_key = nonce_key(&event.author, &event.nonce);
        let nonce_holder: Option<Hash> = self.get(&nonce_key)?;
        if nonce_holder == Some(event.id) {
            return rej(
                RejectCode::DuplicateEvent,
                format!("event {} is already on the ledger; events cannot be replayed", event.id),
            );
        }
        let skew = self.genesis.doc.consensus.max_time_skew_ms;
        if !self.time_in_window(event) {
            return rej(
                RejectCode::TimeSkew,
                format!(
                    "time_ms {} is more than {skew} ms from the block time {}; check the signer's clock",
                    event.time_ms, self.block_time_ms
                ),
            );
        }
        let role = self
            .role_of(&event.author)
            .ok_or_else(|| Rejection::new(RejectCode::UnknownParticipant, "unknown author"))?;
        let kind = event.payload.kind();
        if !role_permits(role, event.payload.event_kind()) {
            return rej(
                RejectCode::RoleNotPermitted,
                format!(
                    "{} is a {}; a {} may not emit {kind}",
                    event.author,
                    role.as_str(),
                    role.as_str()
                ),
            );
        }
        if nonce_holder.is_some() {
            return rej(
                RejectCode::DuplicateNonce,
                format!(
                    "{} already used this nonce; every event of an author needs a new nonce",
                    event.author
                ),
            );
        }
        let mut fx = self.evaluate_kind(event)?;
        fx.put(nonce_key, &event.id);
        Ok(fx)
    }

    fn evaluate_kind(&self, e: &Event) -> Result<Effects, ApplyError> {
        let author = e.author.as_str();
        let mut fx = Effects { track_refs: self.track_refs, ..Effects::default() };
        match &e.payload {
            Payload::OrderPlaced(p) => self.order_placed(e, p, &mut fx)?,
            Payload::OrderAccepted(p) => self.order_accepted(e, p, &mut fx)?,
            Payload::InvoiceIssued(p) => self.invoice_issued(e, p, &mut fx)?,
            Payload::ShipmentBooked(p) => self.shipment_booked(e, p, &mut fx)?,
            Payload::ShipmentPickedUp(m)
            | Payload::ShipmentDeparted(m)
            | Payload::ShipmentArrived(m)
            | Payload::ShipmentDelivered(m) => self.shipment_milestone(e, m, &mut fx)?,
            Payload::ShipmentReceived(r) => self.shipment_received(e, r, &mut fx)?,
            Payload::ShipmentException(x) => self.shipment_exception(e, x, &mut fx)?,
            Payload::DocumentAnchored(d) => self.document_anchored(author, d, &mut fx)?,
            Payload::DeclarationFiled(d) => self.declaration_filed(author, d, &mut fx)?,
            Payload::CustomsCleared(c) | Payload::CustomsHeld(c) => {
                self.customs_decision(e, c, &mut fx)?
            }
            Payload::DutiesAssessed(a) => self.duties_assessed(e, a, &mut fx)?,
            Payload::LcIssued(l) => self.lc_issued(e, l, &mut fx)?,
            Payload::DocumentsPresented(p) => self.documents_presented(e, p, &mut fx)?,
            Payload::PaymentSettled(p) => self.payment_settled(author, p, &mut fx)?,
        }
        Ok(fx)
    }

    fn need<T: DeserializeOwned>(
        &self,
        key: &[u8],
        code: RejectCode,
        what: &str,
        id: &str,
    ) -> Result<T, ApplyError> {
        match self.get(key)? {
            Some(v) => Ok(v),
            None => rej(code, format!("{what} {id} does not exist on the ledger")),
        }
    }
}

/// `app_hash = SHA-256(APP_DOMAIN || prev_app_hash || height_be || writes_digest)` where
/// `writes_digest = SHA-256(WRITES_DOMAIN || (len_be32 key || len_be32 value)*)` over the
/// block's writes sorted by key.
pub fn app_hash(prev: &Hash, height: u64, writes: &BTreeMap<Vec<u8>, Vec<u8>>) -> Hash {
    let mut w = HashWriter::new(WRITES_DOMAIN);
    for (k, v) in writes {
        w.update_prefixed(k);
        w.update_prefixed(v);
    }
    let digest = w.finish();
    tradeloop_crypto::domain_hash(APP_DOMAIN, &[&prev.0, &height.to_be_bytes(), &digest.0])
}

#[cfg(test)]
mod remembered_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::model::event::check_event;
    use crate::sample::{trade_events, Cast};

    /// Committed state for the tests: a map.
    #[derive(Default)]
    struct Map(BTreeMap<Vec<u8>, Vec<u8>>);

    impl StateRead for Map {
        fn get_state(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
            Ok(self.0.get(key).cloned())
        }
    }

    const T: u64 = 1_700_000_000_000;

    fn setup() -> (Cast, Vec<Event>) {
        let cast = Cast::deterministic(1, T - 10_000).unwrap();
        let events = trade_events(&cast, 1, T)
            .iter()
            .map(|e| check_event(&cast.genesis, e).unwrap())
            .collect();
        (cast, events)
    }

    /// The outcome of a block, for comparison.
    fn outcome<S: StateRead>(x: BlockExecutor<'_, S>) -> (Hash, Vec<Vec<Vec<u8>>>) {
        let o = x.finish(&Hash::ZERO, 1);
        (o.app_hash, o.refs)
    }

    fn wrote<S: StateRead>(x: BlockExecutor<'_, S>, key: &[u8]) -> bool {
        x.finish(&Hash::ZERO, 1).writes.contains_key(key)
    }

    /// A record whose reads all still hold is applied as recorded (a record altered here, to
    /// show which path ran, lands in the block as altered); one whose read changed, or whose
    /// event left the block's time window, is evaluated again.
    #[test]
    fn a_record_is_reused_only_while_its_reads_and_window_hold() {
        let (cast, events) = setup();
        let g = &cast.genesis;
        let base = Map::default();
        // Event 0 places an order; event 1 accepts it (reads the order event 0 writes).
        let order = BlockExecutor::for_pool(g, &base, T).record(&events[0]).unwrap();
        let mut pool = BlockExecutor::for_pool(g, &base, T);
        pool.apply(&events[0]).unwrap();
        let accept = pool.record(&events[1]).unwrap();
        assert!(!accept.refs.is_empty(), "the pool tracks refs for reuse");

        // Same block as the pool's order: both records hold; the block equals a fresh run.
        let mut fresh = BlockExecutor::new(g, &base, T);
        fresh.apply(&events[0]).unwrap();
        fresh.apply(&events[1]).unwrap();
        let mut reused = BlockExecutor::new(g, &base, T);
        reused.apply_remembered(&events[0], &order).unwrap();
        reused.apply_remembered(&events[1], &accept).unwrap();
        assert_eq!(outcome(reused), outcome(fresh));

        // The record is what is applied when its reads hold.
        let mut altered = order.clone();
        altered.writes.push((b"marker".to_vec(), b"reused".to_vec()));
        let mut x = BlockExecutor::new(g, &base, T);
        x.apply_remembered(&events[0], &altered).unwrap();
        assert!(wrote(x, b"marker"));

        // A read that changed: the accept's record saw the order; without it in the block,
        // the event is evaluated and refused, not applied from the record.
        let mut x = BlockExecutor::new(g, &base, T);
        let refused = x.apply_remembered(&events[1], &accept);
        assert!(
            matches!(refused, Err(ApplyError::Rejected(r)) if r.code == RejectCode::UnknownOrder)
        );
        // An existence read that changed: the order placed twice.
        let mut altered = order.clone();
        altered.writes.push((b"marker".to_vec(), b"reused".to_vec()));
        let mut x = BlockExecutor::new(g, &base, T);
        x.apply(&events[0]).unwrap();
        let refused = x.apply_remembered(&events[0], &altered);
        assert!(matches!(refused, Err(ApplyError::Rejected(_))), "{refused:?}");

        // Out of the block's time window: evaluated, so refused for its time.
        let late = T + g.doc.consensus.max_time_skew_ms + 1;
        let mut x = BlockExecutor::new(g, &base, late);
        let refused = x.apply_remembered(&events[0], &altered);
        assert!(matches!(refused, Err(ApplyError::Rejected(r)) if r.code == RejectCode::TimeSkew));
    }
}
