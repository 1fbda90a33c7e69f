//! The closed-loop trade rules: deterministic functions of (state, event).
//!
//! [`BlockExecutor`] applies checked events one by one over an overlay of the committed state.
//! Each rule validates fully and only then returns its writes, so a rejected event leaves no
//! trace. The writes of a block are committed together and folded into the block's `app_hash`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};

use serde::{de::DeserializeOwned, Serialize};
use tradeloop_crypto::{Hash, HashWriter};

use crate::error::{RejectCode, Rejection};
use crate::event::{parse_ref, Direction, Event, Payload, RefKind};
use crate::fields::{day_of_ms, parse_date, Decimal};
use crate::genesis::{Genesis, Role};
use crate::state::*;
use crate::{codec, LedgerError};

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

/// Whether a role may emit a kind: the permission matrix of docs/events.md.
pub fn role_permits(role: Role, kind: &str) -> bool {
    use Role::*;
    match kind {
        "trade.order_placed" | "shipment.received" => role == Importer,
        "trade.order_accepted" | "trade.invoice_issued" => role == Exporter,
        "shipment.booked" => matches!(role, Exporter | Forwarder),
        "shipment.picked_up" | "shipment.departed" | "shipment.arrived" | "shipment.delivered"
        | "shipment.exception" => role == Forwarder,
        "document.anchored" => role != Auditor,
        "customs.declaration_filed" => matches!(role, Exporter | Importer | Forwarder),
        "customs.cleared" | "customs.held" | "customs.duties_assessed" => role == Customs,
        "payment.lc_issued" | "payment.settled" => role == Bank,
        "payment.documents_presented" => matches!(role, Exporter | Bank),
        _ => false,
    }
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

    /// Applies one event checked by [`crate::event::check_event`]. On rejection nothing changes.
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
        if !role_permits(role, kind) {
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
            Payload::OrderPlaced(p) => {
                let key = entity_key("order", &p.order_id);
                if self.exists(&key)? {
                    return rej(
                        RejectCode::DuplicateOrder,
                        format!("order {} already exists", p.order_id),
                    );
                }
                match self.role_of(&p.seller) {
                    Some(Role::Exporter) => {}
                    Some(r) => {
                        return rej(
                            RejectCode::SellerNotExporter,
                            format!("seller {} is a {}, not an exporter", p.seller, r.as_str()),
                        )
                    }
                    None => {
                        return rej(
                            RejectCode::UnknownParticipant,
                            format!("seller {} is not a participant", p.seller),
                        )
                    }
                }
                let order = OrderState {
                    buyer: author.into(),
                    seller: p.seller.clone(),
                    currency: p.currency.clone(),
                    amount: p.amount.value,
                    accepted: false,
                    invoiced: Decimal::default(),
                    invoices: vec![],
                    shipments: vec![],
                    lcs: vec![],
                };
                fx.put(key.clone(), &order);
                fx.refer(key);
            }
            Payload::OrderAccepted(p) => {
                let key = entity_key("order", &p.order_id);
                let mut order: OrderState =
                    self.need(&key, RejectCode::UnknownOrder, "order", &p.order_id)?;
                if order.seller != author {
                    return rej(
                        RejectCode::NotOrderSeller,
                        format!("only the seller {} may accept order {}", order.seller, p.order_id),
                    );
                }
                if order.accepted {
                    return rej(
                        RejectCode::OrderAlreadyAccepted,
                        format!("order {} is already accepted", p.order_id),
                    );
                }
                order.accepted = true;
                fx.put(key.clone(), &order);
                fx.refer(key);
            }
            Payload::InvoiceIssued(p) => {
                let okey = entity_key("order", &p.order_id);
                let ikey = entity_key("invoice", &p.invoice_id);
                let mut order: OrderState =
                    self.need(&okey, RejectCode::UnknownOrder, "order", &p.order_id)?;
                if self.exists(&ikey)? {
                    return rej(
                        RejectCode::DuplicateInvoice,
                        format!("invoice {} already exists", p.invoice_id),
                    );
                }
                if order.seller != author {
                    return rej(
                        RejectCode::NotOrderSeller,
                        format!(
                            "only the seller {} may invoice order {}",
                            order.seller, p.order_id
                        ),
                    );
                }
                if !order.accepted {
                    return rej(
                        RejectCode::OrderNotAccepted,
                        format!(
                            "order {} is not accepted yet; accept it before invoicing",
                            p.order_id
                        ),
                    );
                }
                if order.currency != p.currency {
                    return rej(
                        RejectCode::CurrencyMismatch,
                        format!(
                            "invoice is in {} but order {} is in {}",
                            p.currency, p.order_id, order.currency
                        ),
                    );
                }
                let invoiced = order.invoiced.plus(p.amount.value);
                if invoiced > order.amount {
                    return rej(
                        RejectCode::InvoiceExceedsOrder,
                        format!(
                            "invoices would total {invoiced} {} but order {} is for {} {}",
                            order.currency, p.order_id, order.amount, order.currency
                        ),
                    );
                }
                order.invoiced = invoiced;
                order.invoices.push(p.invoice_id.clone());
                let invoice = InvoiceState {
                    order_id: p.order_id.clone(),
                    issuer: author.into(),
                    currency: p.currency.clone(),
                    amount: p.amount.value,
                    settled: Decimal::default(),
                };
                fx.put(okey.clone(), &order);
                fx.put(ikey.clone(), &invoice);
                fx.refer(ikey);
                fx.refer(okey);
            }
            Payload::ShipmentBooked(p) => self.shipment_booked(e, p, &mut fx)?,
            Payload::ShipmentPickedUp(m)
            | Payload::ShipmentDeparted(m)
            | Payload::ShipmentArrived(m)
            | Payload::ShipmentDelivered(m) => {
                let key = entity_key("shipment", &m.shipment_id);
                let mut s: ShipmentState =
                    self.need(&key, RejectCode::UnknownShipment, "shipment", &m.shipment_id)?;
                if s.forwarder != author {
                    return rej(
                        RejectCode::NotBookedForwarder,
                        format!(
                            "shipment {} is booked with {}, not {author}",
                            m.shipment_id, s.forwarder
                        ),
                    );
                }
                use ShipmentStatus::*;
                let (allowed, next): (&[ShipmentStatus], ShipmentStatus) = match &e.payload {
                    Payload::ShipmentPickedUp(_) => (&[Booked], PickedUp),
                    Payload::ShipmentDeparted(_) => (&[Booked, PickedUp, Arrived], Departed),
                    Payload::ShipmentArrived(_) => (&[Departed], Arrived),
                    _ => (&[Arrived], Delivered),
                };
                if !allowed.contains(&s.status) {
                    return rej(
                        RejectCode::ShipmentOutOfOrder,
                        format!(
                            "shipment {} is {}; {} may come only when it is {}",
                            m.shipment_id,
                            s.status,
                            e.payload.kind(),
                            allowed.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(" or ")
                        ),
                    );
                }
                if next == Departed && !s.export_cleared {
                    return rej(
                        RejectCode::ExportNotCleared,
                        format!(
                        "shipment {} has no export clearance from customs of {}; it may not depart",
                        m.shipment_id, s.export_country()),
                    );
                }
                if next == Delivered && !s.import_cleared {
                    return rej(RejectCode::ImportNotCleared, format!(
                        "shipment {} has no import clearance from customs of {}; it may not be delivered",
                        m.shipment_id, s.import_country()));
                }
                s.status = next;
                fx.put(key.clone(), &s);
                fx.refer(key);
            }
            Payload::ShipmentReceived(r) => {
                let key = entity_key("shipment", &r.shipment_id);
                let mut s: ShipmentState =
                    self.need(&key, RejectCode::UnknownShipment, "shipment", &r.shipment_id)?;
                if s.buyer != author {
                    return rej(
                        RejectCode::NotOrderBuyer,
                        format!(
                            "only the consignee {} may confirm receipt of shipment {}",
                            s.buyer, r.shipment_id
                        ),
                    );
                }
                if s.status != ShipmentStatus::Delivered {
                    return rej(
                        RejectCode::ShipmentOutOfOrder,
                        format!(
                            "shipment {} is {}; it can be received only after delivery",
                            r.shipment_id, s.status
                        ),
                    );
                }
                s.status = ShipmentStatus::Received;
                s.condition = Some(r.condition);
                fx.put(key.clone(), &s);
                fx.refer(key);
            }
            Payload::ShipmentException(x) => {
                let key = entity_key("shipment", &x.shipment_id);
                let mut s: ShipmentState =
                    self.need(&key, RejectCode::UnknownShipment, "shipment", &x.shipment_id)?;
                if s.forwarder != author {
                    return rej(
                        RejectCode::NotBookedForwarder,
                        format!(
                            "shipment {} is booked with {}, not {author}",
                            x.shipment_id, s.forwarder
                        ),
                    );
                }
                s.exceptions = s.exceptions.saturating_add(1);
                fx.put(key.clone(), &s);
                fx.refer(key);
            }
            Payload::DocumentAnchored(d) => self.document_anchored(author, d, &mut fx)?,
            Payload::DeclarationFiled(d) => self.declaration_filed(author, d, &mut fx)?,
            Payload::CustomsCleared(c) | Payload::CustomsHeld(c) => {
                let key = entity_key("declaration", &c.declaration_id);
                let mut d = self.customs_declaration(author, &key, &c.declaration_id)?;
                match (&e.payload, d.status) {
                    (_, DeclarationStatus::Cleared) => {
                        return rej(RejectCode::DeclarationAlreadyDecided, format!(
                            "declaration {} is already cleared", c.declaration_id))
                    }
                    (Payload::CustomsCleared(_), DeclarationStatus::Held) => {
                        return rej(RejectCode::DeclarationHeld, format!(
                            "declaration {} is held; it needs a new filing before it can be cleared",
                            c.declaration_id))
                    }
                    (Payload::CustomsHeld(_), DeclarationStatus::Held) => {
                        return rej(RejectCode::DeclarationAlreadyDecided, format!(
                            "declaration {} is already held", c.declaration_id))
                    }
                    _ => {}
                }
                let skey = entity_key("shipment", &d.shipment_id);
                if matches!(e.payload, Payload::CustomsCleared(_)) {
                    d.status = DeclarationStatus::Cleared;
                    let mut s: ShipmentState =
                        self.need(&skey, RejectCode::UnknownShipment, "shipment", &d.shipment_id)?;
                    match d.direction {
                        Direction::Export => s.export_cleared = true,
                        Direction::Import => s.import_cleared = true,
                    }
                    fx.put(skey.clone(), &s);
                } else {
                    d.status = DeclarationStatus::Held;
                }
                fx.put(key.clone(), &d);
                fx.refer(key);
                fx.refer(skey);
            }
            Payload::DutiesAssessed(a) => {
                let key = entity_key("declaration", &a.declaration_id);
                let mut d = self.customs_declaration(author, &key, &a.declaration_id)?;
                match d.duties.iter_mut().find(|(c, _)| *c == a.currency) {
                    Some((_, total)) => *total = total.plus(a.amount.value),
                    None => d.duties.push((a.currency.clone(), a.amount.value)),
                }
                let skey = entity_key("shipment", &d.shipment_id);
                fx.put(key.clone(), &d);
                fx.refer(key);
                fx.refer(skey);
            }
            Payload::LcIssued(l) => {
                let key = entity_key("lc", &l.lc_id);
                if self.exists(&key)? {
                    return rej(
                        RejectCode::DuplicateLc,
                        format!("letter of credit {} already exists", l.lc_id),
                    );
                }
                let okey = entity_key("order", &l.order_id);
                let mut order: OrderState =
                    self.need(&okey, RejectCode::UnknownOrder, "order", &l.order_id)?;
                if l.applicant != order.buyer || l.beneficiary != order.seller {
                    return rej(RejectCode::LcPartyMismatch, format!(
                        "order {} is from {} to {}; the credit names applicant {} and beneficiary {}",
                        l.order_id, order.buyer, order.seller, l.applicant, l.beneficiary));
                }
                if l.currency != order.currency {
                    return rej(
                        RejectCode::CurrencyMismatch,
                        format!(
                            "credit is in {} but order {} is in {}",
                            l.currency, l.order_id, order.currency
                        ),
                    );
                }
                let expiry_day = parse_date(&l.expiry)
                    .map_err(|m| Rejection::new(RejectCode::InvalidField, m))?;
                order.lcs.push(l.lc_id.clone());
                let lc = LcState {
                    order_id: l.order_id.clone(),
                    issuing_bank: author.into(),
                    applicant: l.applicant.clone(),
                    beneficiary: l.beneficiary.clone(),
                    currency: l.currency.clone(),
                    amount: l.amount.value,
                    expiry_day,
                    presented: false,
                    settled: Decimal::default(),
                };
                fx.put(key.clone(), &lc);
                fx.put(okey.clone(), &order);
                fx.refer(key);
                fx.refer(okey);
            }
            Payload::DocumentsPresented(p) => {
                let key = entity_key("lc", &p.lc_id);
                let mut lc: LcState =
                    self.need(&key, RejectCode::UnknownLc, "letter of credit", &p.lc_id)?;
                let allowed = author == lc.beneficiary
                    || (self.role_of(author) == Some(Role::Bank)
                        && author != lc.issuing_bank
                        && self.country_of(author) == self.country_of(&lc.beneficiary));
                if !allowed {
                    return rej(
                        RejectCode::NotAParty,
                        format!(
                            "documents under {} are presented by the beneficiary {} or its bank",
                            p.lc_id, lc.beneficiary
                        ),
                    );
                }
                if day_of_ms(e.time_ms) > lc.expiry_day {
                    return rej(
                        RejectCode::LcExpired,
                        format!("letter of credit {} has expired", p.lc_id),
                    );
                }
                for doc in &p.doc_ids {
                    if !self.exists(&entity_key("document", doc))? {
                        return rej(RejectCode::UnknownDocument, format!(
                            "document {doc} is not anchored; anchor it with document.anchored first"));
                    }
                }
                lc.presented = true;
                fx.put(key.clone(), &lc);
                fx.refer(key);
                fx.refer(entity_key("order", &lc.order_id));
            }
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

    fn shipment_booked(
        &self,
        e: &Event,
        p: &crate::event::ShipmentBooked,
        fx: &mut Effects,
    ) -> Result<(), ApplyError> {
        let author = e.author.as_str();
        let key = entity_key("shipment", &p.shipment_id);
        if self.exists(&key)? {
            return rej(
                RejectCode::DuplicateShipment,
                format!("shipment {} already exists", p.shipment_id),
            );
        }
        if self.role_of(&p.forwarder) != Some(Role::Forwarder) {
            return rej(
                RejectCode::UnknownForwarder,
                format!("{} is not a forwarder on this chain", p.forwarder),
            );
        }
        if self.role_of(author) == Some(Role::Forwarder) && author != p.forwarder {
            return rej(
                RejectCode::NotBookedForwarder,
                format!("a forwarder books shipments with itself; {author} named {}", p.forwarder),
            );
        }
        let mut seen = HashSet::new();
        let mut parties: Option<(String, String)> = None;
        let mut orders = Vec::new();
        for id in &p.order_ids {
            if !seen.insert(id) {
                return rej(RejectCode::InvalidField, format!("order {id} is listed twice"));
            }
            let okey = entity_key("order", id);
            let order: OrderState = self.need(&okey, RejectCode::UnknownOrder, "order", id)?;
            if !order.accepted {
                return rej(
                    RejectCode::OrderNotAccepted,
                    format!("order {id} is not accepted yet"),
                );
            }
            if self.role_of(author) == Some(Role::Exporter) && order.seller != author {
                return rej(
                    RejectCode::NotOrderSeller,
                    format!("{author} is not the seller of order {id}"),
                );
            }
            match &parties {
                None => parties = Some((order.buyer.clone(), order.seller.clone())),
                Some((b, s)) if *b != order.buyer || *s != order.seller => {
                    return rej(
                        RejectCode::InvalidField,
                        "one shipment carries orders of one buyer and one seller",
                    );
                }
                Some(_) => {}
            }
            orders.push((okey, order));
        }
        let Some((buyer, seller)) = parties else {
            return rej(RejectCode::InvalidField, "order_ids is empty");
        };
        for (okey, mut order) in orders {
            order.shipments.push(p.shipment_id.clone());
            fx.put(okey.clone(), &order);
            fx.refer(okey);
        }
        let shipment = ShipmentState {
            order_ids: p.order_ids.clone(),
            booked_by: author.into(),
            forwarder: p.forwarder.clone(),
            buyer,
            seller,
            origin: p.origin.clone(),
            destination: p.destination.clone(),
            status: ShipmentStatus::Booked,
            export_cleared: false,
            import_cleared: false,
            condition: None,
            declarations: vec![],
            exceptions: 0,
        };
        fx.put(key.clone(), &shipment);
        fx.refer(key);
        Ok(())
    }

    fn customs_declaration(
        &self,
        author: &str,
        key: &[u8],
        id: &str,
    ) -> Result<DeclarationState, ApplyError> {
        let d: DeclarationState =
            self.need(key, RejectCode::UnknownDeclaration, "declaration", id)?;
        if self.country_of(author) != d.country {
            return rej(
                RejectCode::CustomsWrongCountry,
                format!(
                    "declaration {id} is filed in {}; customs of {} cannot act on it",
                    d.country,
                    self.country_of(author)
                ),
            );
        }
        Ok(d)
    }

    fn declaration_filed(
        &self,
        author: &str,
        d: &crate::event::DeclarationFiled,
        fx: &mut Effects,
    ) -> Result<(), ApplyError> {
        let skey = entity_key("shipment", &d.shipment_id);
        let mut s: ShipmentState =
            self.need(&skey, RejectCode::UnknownShipment, "shipment", &d.shipment_id)?;
        let declarant_ok = match self.role_of(author) {
            Some(Role::Exporter) => d.direction == Direction::Export && s.seller == author,
            Some(Role::Importer) => d.direction == Direction::Import && s.buyer == author,
            Some(Role::Forwarder) => s.forwarder == author,
            _ => false,
        };
        if !declarant_ok {
            return rej(RejectCode::NotDeclarant, format!(
                "{author} may not declare shipment {}: the seller files exports, the buyer imports, \
                 the booked forwarder either as broker", d.shipment_id));
        }
        let country = match d.direction {
            Direction::Export => s.export_country(),
            Direction::Import => s.import_country(),
        };
        if d.country != country {
            return rej(
                RejectCode::DeclarationCountryMismatch,
                format!(
                    "an {:?} declaration for shipment {} belongs in {country}, not {}",
                    d.direction, d.shipment_id, d.country
                ),
            );
        }
        let key = entity_key("declaration", &d.declaration_id);
        let refiling = match self.get::<DeclarationState>(&key)? {
            None => false,
            Some(old)
                if old.status == DeclarationStatus::Held
                    && old.shipment_id == d.shipment_id
                    && old.direction == d.direction =>
            {
                true
            }
            Some(_) => {
                return rej(RejectCode::DuplicateDeclaration, format!(
                    "declaration {} exists and is not held; only a held declaration may be filed again",
                    d.declaration_id));
            }
        };
        // One live (filed or cleared) declaration per shipment and direction.
        for other in &s.declarations {
            if *other == d.declaration_id {
                continue;
            }
            let od: DeclarationState = self.need(
                &entity_key("declaration", other),
                RejectCode::UnknownDeclaration,
                "declaration",
                other,
            )?;
            if od.direction == d.direction && od.status != DeclarationStatus::Held {
                return rej(
                    RejectCode::DeclarationExists,
                    format!(
                        "shipment {} already has {:?} declaration {other} ({:?})",
                        d.shipment_id, d.direction, od.status
                    ),
                );
            }
        }
        let state = DeclarationState {
            shipment_id: d.shipment_id.clone(),
            direction: d.direction,
            country: d.country.clone(),
            declarant: author.into(),
            status: DeclarationStatus::Filed,
            duties: vec![],
        };
        if !refiling {
            s.declarations.push(d.declaration_id.clone());
            fx.put(skey.clone(), &s);
        }
        fx.put(key.clone(), &state);
        fx.refer(key);
        fx.refer(skey);
        Ok(())
    }

    fn document_anchored(
        &self,
        author: &str,
        d: &crate::event::DocumentAnchored,
        fx: &mut Effects,
    ) -> Result<(), ApplyError> {
        let key = entity_key("document", &d.doc_id);
        if self.exists(&key)? {
            return rej(
                RejectCode::DuplicateDocument,
                format!("document {} is already anchored", d.doc_id),
            );
        }
        let mut is_party = false;
        let mut ref_keys = Vec::new();
        for r in &d.refs {
            let (kind, id) =
                parse_ref(r).map_err(|m| Rejection::new(RejectCode::InvalidField, m))?;
            let (prefix, parties): (&str, Vec<String>) = match kind {
                RefKind::Order => {
                    let o: Option<OrderState> = self.get(&entity_key("order", id))?;
                    ("order", o.map(|o| vec![o.buyer, o.seller]).unwrap_or_default())
                }
                RefKind::Invoice => {
                    let i: Option<InvoiceState> = self.get(&entity_key("invoice", id))?;
                    let o: Option<OrderState> = match &i {
                        Some(i) => self.get(&entity_key("order", &i.order_id))?,
                        None => None,
                    };
                    (
                        "invoice",
                        o.filter(|_| i.is_some())
                            .map(|o| vec![o.buyer, o.seller])
                            .unwrap_or_default(),
                    )
                }
                RefKind::Shipment => {
                    let s: Option<ShipmentState> = self.get(&entity_key("shipment", id))?;
                    (
                        "shipment",
                        s.map(|s| vec![s.buyer, s.seller, s.forwarder]).unwrap_or_default(),
                    )
                }
                RefKind::Declaration => {
                    let dc: Option<DeclarationState> = self.get(&entity_key("declaration", id))?;
                    let mut parties = Vec::new();
                    if let Some(dc) = &dc {
                        if let Some(s) =
                            self.get::<ShipmentState>(&entity_key("shipment", &dc.shipment_id))?
                        {
                            parties = vec![s.buyer, s.seller, s.forwarder];
                        }
                        if self.role_of(author) == Some(Role::Customs)
                            && self.country_of(author) == dc.country
                        {
                            parties.push(author.into());
                        }
                    }
                    ("declaration", parties)
                }
                RefKind::Lc => {
                    let l: Option<LcState> = self.get(&entity_key("lc", id))?;
                    let mut parties = l
                        .map(|l| vec![l.applicant, l.beneficiary, l.issuing_bank])
                        .unwrap_or_default();
                    if !parties.is_empty() && self.role_of(author) == Some(Role::Bank) {
                        // The beneficiary's (advising) bank acts for it.
                        if self.country_of(author) == self.country_of(&parties[1]) {
                            parties.push(author.into());
                        }
                    }
                    ("lc", parties)
                }
            };
            if parties.is_empty() {
                return rej(
                    RejectCode::UnknownReference,
                    format!("{r} does not exist on the ledger"),
                );
            }
            is_party |= parties.iter().any(|p| p == author);
            ref_keys.push(entity_key(prefix, id));
        }
        if !is_party {
            return rej(RejectCode::NotAParty, format!(
                "{author} is not a party to any of {}; only parties to a trade anchor its documents",
                // Joined, not `{:?}`: Debug escapes some non-ASCII (combining marks) in ids.
                d.refs.join(", ")));
        }
        let doc = DocumentState {
            author: author.into(),
            doc_type: d.doc_type,
            sha256: d.sha256.to_ascii_lowercase(),
            refs: d.refs.clone(),
        };
        fx.put(key.clone(), &doc);
        fx.refer(key);
        for k in ref_keys {
            fx.refer(k);
        }
        Ok(())
    }

    fn payment_settled(
        &self,
        author: &str,
        p: &crate::event::PaymentSettled,
        fx: &mut Effects,
    ) -> Result<(), ApplyError> {
        let pkey = entity_key("payment", &p.payment_id);
        if self.exists(&pkey)? {
            return rej(
                RejectCode::DuplicatePayment,
                format!("payment {} is already recorded", p.payment_id),
            );
        }
        let ikey = entity_key("invoice", &p.invoice_id);
        let mut invoice: InvoiceState =
            self.need(&ikey, RejectCode::UnknownInvoice, "invoice", &p.invoice_id)?;
        let okey = entity_key("order", &invoice.order_id);
        let order: OrderState =
            self.need(&okey, RejectCode::UnknownOrder, "order", &invoice.order_id)?;
        if p.payer != order.buyer || p.payee != order.seller {
            return rej(
                RejectCode::PaymentPartyMismatch,
                format!(
                    "invoice {} is owed by {} to {}; the payment names payer {} and payee {}",
                    p.invoice_id, order.buyer, order.seller, p.payer, p.payee
                ),
            );
        }
        if p.currency != invoice.currency {
            return rej(
                RejectCode::CurrencyMismatch,
                format!(
                    "payment is in {} but invoice {} is in {}",
                    p.currency, p.invoice_id, invoice.currency
                ),
            );
        }
        let settled = invoice.settled.plus(p.amount.value);
        if settled > invoice.amount {
            return rej(
                RejectCode::Overpayment,
                format!(
                    "invoice {} is for {} {}, {} already settled; {} more would overpay it",
                    p.invoice_id, invoice.amount, invoice.currency, invoice.settled, p.amount.value
                ),
            );
        }
        if let Some(lc_id) = &p.lc_id {
            let lkey = entity_key("lc", lc_id);
            let mut lc: LcState =
                self.need(&lkey, RejectCode::UnknownLc, "letter of credit", lc_id)?;
            if lc.order_id != invoice.order_id {
                return rej(
                    RejectCode::LcPartyMismatch,
                    format!(
                        "credit {lc_id} secures order {}, not {}",
                        lc.order_id, invoice.order_id
                    ),
                );
            }
            if lc.issuing_bank != author {
                return rej(
                    RejectCode::NotIssuingBank,
                    format!("only the issuing bank {} pays under credit {lc_id}", lc.issuing_bank),
                );
            }
            if !lc.presented {
                return rej(
                    RejectCode::LcDocumentsNotPresented,
                    format!(
                    "no documents were presented under credit {lc_id}; it cannot be honoured yet"),
                );
            }
            let lc_settled = lc.settled.plus(p.amount.value);
            if lc_settled > lc.amount {
                return rej(
                    RejectCode::LcOverdrawn,
                    format!(
                        "credit {lc_id} is for {} {}; {} would overdraw it",
                        lc.amount, lc.currency, lc_settled
                    ),
                );
            }
            lc.settled = lc_settled;
            fx.put(lkey.clone(), &lc);
            fx.refer(lkey);
        } else if self.country_of(author) != self.country_of(&order.buyer) {
            // Open account: the payer's bank executes the payment.
            return rej(
                RejectCode::PaymentPartyMismatch,
                format!(
                    "an open-account payment is reported by the payer's bank (in {}), not {author}",
                    self.country_of(&order.buyer)
                ),
            );
        }
        invoice.settled = settled;
        fx.put(ikey.clone(), &invoice);
        fx.put(pkey.clone(), &p.invoice_id);
        fx.refer(pkey);
        fx.refer(ikey);
        fx.refer(okey);
        Ok(())
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
    use crate::event::check_event;
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
