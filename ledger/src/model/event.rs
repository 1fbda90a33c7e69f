//! Signed events: the envelope, the signing bytes, the v1 catalogue and its stateless checks.
//!
//! ```text
//! envelope (JSON)   {"body": {...}, "signature": "<128 hex>"}
//! signing bytes     "tradeloop/event/v1\0" || JCS(body)
//! event_id          SHA-256(signing bytes)
//! signature         ed25519 over the signing bytes, checked with verify_strict
//! ```
//!
//! [`check_event`] does every check that needs no ledger state (syntax, chain, author, key,
//! signature, field formats), so it can run in parallel; [`crate::rules`] does the rest.

use serde::{Deserialize, Serialize};
use tradeloop_crypto::{
    domain_hash, finish_verify_batch, Hash, PendingSignature, PublicKey, Signature, SigningKey,
};

use crate::encoding::canonical::Value;
use crate::error::{reject, RejectCode, Rejection};
use crate::limits::MAX_EVENT_BYTES;
use crate::model::fields::{
    check_container, check_country, check_currency, check_flight, check_hs_code, check_imo,
    check_locode, parse_date, DecimalString, FieldError,
};
use crate::model::genesis::{Genesis, KeyEntry};

/// Domain tag of event signing bytes.
pub const EVENT_DOMAIN: &[u8] = b"tradeloop/event/v1\0";
/// Longest entity id (order, invoice, shipment, ...), in bytes.
pub const MAX_ENTITY_ID_BYTES: usize = 128;
/// Most entries in any list field (order lines, containers, HS codes, refs, doc ids).
pub const MAX_LIST_ITEMS: usize = 1000;
/// Longest free-text field, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;

/// An event as stored and gossiped: the canonical body bytes, unchanged, and the signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEvent {
    /// RFC 8785 canonical JSON of the body. (Serialized as bytes in one piece; the bincode
    /// layout is the same as a `Vec<u8>`'s: u64 length, then the bytes.)
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// ed25519 signature over [`SignedEvent::signing_bytes`].
    pub signature: Signature,
}

impl SignedEvent {
    /// Signs a body (any JSON object) with `key`. The body is canonicalised first.
    pub fn sign(body: &serde_json::Value, key: &SigningKey) -> Result<SignedEvent, Rejection> {
        let value = Value::from_json(body)
            .map_err(|e| Rejection::new(RejectCode::MalformedEvent, e.to_string()))?;
        let canonical = value.to_canonical();
        let signature = key.sign(&signing_bytes(&canonical));
        Ok(SignedEvent { body: canonical, signature })
    }

    /// Signs a strictly parsed body (see [`parse_body_json`]) with `key`, in its canonical form.
    pub fn sign_value(body: &Value, key: &SigningKey) -> SignedEvent {
        let canonical = body.to_canonical();
        let signature = key.sign(&signing_bytes(&canonical));
        SignedEvent { body: canonical, signature }
    }

    /// Parses an envelope `{"body": {...}, "signature": "<hex>"}`. The body is canonicalised,
    /// so the formatting of the submitted JSON does not matter.
    pub fn from_envelope_json(text: &[u8]) -> Result<SignedEvent, Rejection> {
        if text.len() > MAX_EVENT_BYTES as usize * 2 {
            return reject(
                RejectCode::EventTooLarge,
                format!("envelope is {} bytes; the limit is {}", text.len(), MAX_EVENT_BYTES * 2),
            );
        }
        let malformed = |m: String| Rejection::new(RejectCode::MalformedEvent, m);
        let value = Value::parse(text).map_err(|e| malformed(format!("not valid JSON: {e}")))?;
        let Value::Object(mut map) = value else {
            return Err(malformed("an envelope is a JSON object {\"body\", \"signature\"}".into()));
        };
        let body =
            map.remove("body").ok_or_else(|| malformed("envelope has no \"body\"".into()))?;
        let Some(Value::String(sig_hex)) = map.remove("signature") else {
            return Err(malformed("envelope has no \"signature\" hex string".into()));
        };
        if let Some(extra) = map.keys().next() {
            return Err(malformed(format!("envelope has unexpected field \"{extra}\"")));
        }
        if !matches!(body, Value::Object(_)) {
            return Err(malformed("\"body\" must be a JSON object".into()));
        }
        let signature =
            Signature::from_hex(&sig_hex).map_err(|e| malformed(format!("\"signature\": {e}")))?;
        Ok(SignedEvent { body: body.to_canonical(), signature })
    }

    /// The envelope as one line of JSON.
    pub fn to_envelope_json(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        format!("{{\"body\":{body},\"signature\":\"{}\"}}", self.signature.to_hex())
    }

    /// `"tradeloop/event/v1\0" || body`.
    pub fn signing_bytes(&self) -> Vec<u8> {
        signing_bytes(&self.body)
    }

    /// `SHA-256(signing bytes)`.
    pub fn id(&self) -> Hash {
        domain_hash(EVENT_DOMAIN, &[&self.body])
    }
}

fn signing_bytes(canonical_body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(EVENT_DOMAIN.len() + canonical_body.len());
    out.extend_from_slice(EVENT_DOMAIN);
    out.extend_from_slice(canonical_body);
    out
}

/// A nonce: unique per author; a string or an integer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Nonce {
    /// An integer below 2^53.
    Int(u64),
    /// A string.
    Text(String),
}

impl Nonce {
    /// Appends the nonce's part of its state key (`i:<n>` or `s:<text>`: `1` and `"1"` differ).
    pub fn write_state_key(&self, out: &mut Vec<u8>) {
        match self {
            Nonce::Int(n) => {
                out.extend_from_slice(b"i:");
                out.extend_from_slice(n.to_string().as_bytes());
            }
            Nonce::Text(s) => {
                out.extend_from_slice(b"s:");
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

/// A checked event: its id, the common body fields and the typed payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The event id.
    pub id: Hash,
    /// The author (participant id).
    pub author: String,
    /// The signing key.
    pub key: PublicKey,
    /// The author's clock, Unix milliseconds.
    pub time_ms: u64,
    /// The nonce.
    pub nonce: Nonce,
    /// The kind and its fields.
    pub payload: Payload,
}

macro_rules! kinds {
    ($( $variant:ident($ty:ident) = $name:literal ),* $(,)?) => {
        /// The kind of an event and its fields: the v1 catalogue (docs/events.md).
        #[derive(Clone, Debug, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum Payload { $( $variant($ty), )* }

        /// Every kind name of the v1 catalogue.
        pub const KINDS: &[&str] = &[$( $name, )*];

        /// An event kind of the v1 catalogue as a type; [`Kind::name`] is its name on the wire.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(missing_docs)]
        pub enum Kind { $( $variant, )* }

        impl Kind {
            /// Every kind of the v1 catalogue, in catalogue order.
            pub const ALL: &[Kind] = &[$( Kind::$variant, )*];

            /// The kind's name, e.g. `shipment.departed`.
            pub fn name(self) -> &'static str {
                match self { $( Kind::$variant => $name, )* }
            }

            /// The kind of a name; `None` for a name outside the catalogue.
            pub fn from_name(name: &str) -> Option<Kind> {
                match name { $( $name => Some(Kind::$variant), )* _ => None }
            }
        }

        impl Payload {
            /// The kind name, e.g. `shipment.departed`.
            pub fn kind(&self) -> &'static str {
                self.event_kind().name()
            }

            /// The kind as a type.
            pub fn event_kind(&self) -> Kind {
                match self { $( Payload::$variant(_) => Kind::$variant, )* }
            }

            fn from_fields(kind: &str, fields: Value) -> Result<Payload, Rejection> {
                let parse_err = |e: serde::de::value::Error| Rejection::new(
                    RejectCode::InvalidField, format!("{kind}: {e}"));
                match kind {
                    $( $name => Ok(Payload::$variant(Deserialize::deserialize(fields).map_err(parse_err)?)), )*
                    other => reject(RejectCode::UnknownKind, format!(
                        "kind \"{other}\" is not in the v1 catalogue; see docs/events.md")),
                }
            }
        }
    };
}

kinds! {
    OrderPlaced(OrderPlaced) = "trade.order_placed",
    OrderAccepted(OrderRef) = "trade.order_accepted",
    InvoiceIssued(InvoiceIssued) = "trade.invoice_issued",
    ShipmentBooked(ShipmentBooked) = "shipment.booked",
    ShipmentPickedUp(Milestone) = "shipment.picked_up",
    ShipmentDeparted(Milestone) = "shipment.departed",
    ShipmentArrived(Milestone) = "shipment.arrived",
    ShipmentDelivered(Milestone) = "shipment.delivered",
    ShipmentReceived(ShipmentReceived) = "shipment.received",
    ShipmentException(ShipmentException) = "shipment.exception",
    DocumentAnchored(DocumentAnchored) = "document.anchored",
    DeclarationFiled(DeclarationFiled) = "customs.declaration_filed",
    CustomsCleared(CustomsDecision) = "customs.cleared",
    CustomsHeld(CustomsDecision) = "customs.held",
    DutiesAssessed(DutiesAssessed) = "customs.duties_assessed",
    LcIssued(LcIssued) = "payment.lc_issued",
    DocumentsPresented(DocumentsPresented) = "payment.documents_presented",
    PaymentSettled(PaymentSettled) = "payment.settled",
}

/// Incoterms 2020.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs, clippy::upper_case_acronyms)]
pub enum Incoterm {
    EXW,
    FCA,
    FAS,
    FOB,
    CFR,
    CIF,
    CPT,
    CIP,
    DAP,
    DPU,
    DDP,
}

/// One order line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    /// Seller's article number (or GTIN).
    pub sku: String,
    /// Description of the goods.
    pub description: String,
    /// Harmonized System code, 6-10 digits.
    pub hs_code: String,
    /// Quantity as a decimal string.
    pub quantity: DecimalString,
    /// Unit of measure (UN/ECE Rec 20 code such as `PCE`, `KGM`).
    pub unit: String,
}

/// `trade.order_placed`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderPlaced {
    /// The order's id (unique on the chain).
    pub order_id: String,
    /// The seller's participant id.
    pub seller: String,
    /// Incoterm 2020.
    pub incoterm: Incoterm,
    /// ISO 4217 currency.
    pub currency: String,
    /// Order total.
    pub amount: DecimalString,
    /// Lines.
    pub lines: Vec<OrderLine>,
    /// WCO Unique Consignment Reference (optional).
    #[serde(default)]
    pub ucr: Option<String>,
}

/// `trade.order_accepted`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRef {
    /// The order.
    pub order_id: String,
}

/// `trade.invoice_issued`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvoiceIssued {
    /// The invoice's id.
    pub invoice_id: String,
    /// The order it bills.
    pub order_id: String,
    /// ISO 4217 currency (the order's).
    pub currency: String,
    /// Amount.
    pub amount: DecimalString,
    /// Due date, `YYYY-MM-DD`.
    pub due_date: String,
}

/// Transport mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum TransportMode {
    Sea,
    Air,
    Road,
    Rail,
}

/// `shipment.booked`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipmentBooked {
    /// The shipment's id (e.g. the carrier booking reference).
    pub shipment_id: String,
    /// Orders this shipment carries.
    pub order_ids: Vec<String>,
    /// The forwarder's participant id.
    pub forwarder: String,
    /// Place of receipt, UN/LOCODE; its country is the export country.
    pub origin: String,
    /// Place of delivery, UN/LOCODE; its country is the import country.
    pub destination: String,
    /// Transport mode.
    pub mode: TransportMode,
    /// ISO 6346 container numbers (may be empty for air/loose cargo).
    #[serde(default)]
    pub containers: Vec<String>,
    /// Number of packages.
    pub packages: u64,
    /// Gross weight in kilograms, decimal string.
    pub gross_kg: DecimalString,
}

/// `shipment.picked_up` / `.departed` / `.arrived` / `.delivered`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Milestone {
    /// The shipment.
    pub shipment_id: String,
    /// Where, UN/LOCODE.
    pub location: String,
    /// When it actually happened, Unix milliseconds (DCSA ACT).
    pub event_time_ms: u64,
    /// Vessel IMO number, for sea legs.
    #[serde(default)]
    pub vessel_imo: Option<String>,
    /// Voyage number.
    #[serde(default)]
    pub voyage: Option<String>,
    /// Flight number, for air legs.
    #[serde(default)]
    pub flight: Option<String>,
}

/// Condition of received goods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Condition {
    Ok,
    Damaged,
    Short,
}

/// `shipment.received`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipmentReceived {
    /// The shipment.
    pub shipment_id: String,
    /// Condition of the goods.
    pub condition: Condition,
    /// Free text.
    #[serde(default)]
    pub note: Option<String>,
}

/// Kind of a transport exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum ExceptionType {
    Delay,
    Damage,
    Loss,
}

/// `shipment.exception` (its type is named `exception_type`, not `kind`, because `kind` is the
/// envelope's event kind).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipmentException {
    /// The shipment.
    pub shipment_id: String,
    /// delay, damage or loss.
    pub exception_type: ExceptionType,
    /// What happened.
    pub description: String,
}

/// Trade document types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum DocType {
    BillOfLading,
    CertificateOfOrigin,
    PackingList,
    CommercialInvoice,
    Insurance,
    Inspection,
}

/// `document.anchored`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentAnchored {
    /// Document type.
    pub doc_type: DocType,
    /// The document's id (unique on the chain).
    pub doc_id: String,
    /// SHA-256 of the document file, hex; the file itself stays off-chain.
    pub sha256: String,
    /// What it belongs to: `order:ID`, `invoice:ID`, `shipment:ID`, `declaration:ID`, `lc:ID`.
    pub refs: Vec<String>,
}

/// Customs direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Direction {
    Export,
    Import,
}

/// `customs.declaration_filed`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclarationFiled {
    /// The declaration's id (e.g. the MRN).
    pub declaration_id: String,
    /// The shipment declared.
    pub shipment_id: String,
    /// export or import.
    pub direction: Direction,
    /// Country of the customs office, ISO 3166-1 alpha-2.
    pub country: String,
    /// Declared customs value.
    pub declared_value: DecimalString,
    /// Its currency.
    pub currency: String,
    /// HS codes declared.
    pub hs_codes: Vec<String>,
}

/// `customs.cleared` / `customs.held`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomsDecision {
    /// The declaration.
    pub declaration_id: String,
    /// Why (required for `held`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `customs.duties_assessed`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DutiesAssessed {
    /// The declaration.
    pub declaration_id: String,
    /// Duties and taxes due.
    pub amount: DecimalString,
    /// Their currency.
    pub currency: String,
}

/// `payment.lc_issued`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LcIssued {
    /// The letter of credit's id.
    pub lc_id: String,
    /// The order it secures.
    pub order_id: String,
    /// The applicant (the order's buyer).
    pub applicant: String,
    /// The beneficiary (the order's seller).
    pub beneficiary: String,
    /// Currency (the order's).
    pub currency: String,
    /// Amount.
    pub amount: DecimalString,
    /// Expiry date, `YYYY-MM-DD`.
    pub expiry: String,
}

/// `payment.documents_presented`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentsPresented {
    /// The letter of credit.
    pub lc_id: String,
    /// Anchored documents presented.
    pub doc_ids: Vec<String>,
}

/// `payment.settled`. `invoice_id` is always required (not "an invoice or a credit") and `lc_id`
/// is added when paying under a letter of credit, because a payment under an LC still settles a
/// presented commercial invoice; this keeps "settled never exceeds the invoice" checkable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentSettled {
    /// The payment's id (e.g. the ISO 20022 UETR or end-to-end id).
    pub payment_id: String,
    /// The invoice settled.
    pub invoice_id: String,
    /// The letter of credit paid under, if any.
    #[serde(default)]
    pub lc_id: Option<String>,
    /// Payer (the buyer).
    pub payer: String,
    /// Payee (the seller).
    pub payee: String,
    /// Currency (the invoice's).
    pub currency: String,
    /// Amount.
    pub amount: DecimalString,
    /// Exchange rate applied to the payer's account, informational.
    #[serde(default)]
    pub fx_rate: Option<DecimalString>,
}

fn field_err(kind: &str, e: impl std::fmt::Display) -> Rejection {
    Rejection::new(RejectCode::InvalidField, format!("{kind}: {e}"))
}

fn check_id(kind: &str, field: &str, id: &str) -> Result<(), Rejection> {
    if id.is_empty() || id.len() > MAX_ENTITY_ID_BYTES || id.chars().any(char::is_control) {
        return Err(field_err(
            kind,
            format!("{field} must be 1 to {MAX_ENTITY_ID_BYTES} bytes without control characters"),
        ));
    }
    Ok(())
}

fn check_text(kind: &str, field: &str, text: &str) -> Result<(), Rejection> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(field_err(kind, format!("{field} is longer than {MAX_TEXT_BYTES} bytes")));
    }
    Ok(())
}

fn check_list<T>(kind: &str, field: &str, items: &[T], allow_empty: bool) -> Result<(), Rejection> {
    if (!allow_empty && items.is_empty()) || items.len() > MAX_LIST_ITEMS {
        let least = if allow_empty { 0 } else { 1 };
        return Err(field_err(
            kind,
            format!("{field} must have {least} to {MAX_LIST_ITEMS} items"),
        ));
    }
    Ok(())
}

fn check_positive(kind: &str, field: &str, amount: &DecimalString) -> Result<(), Rejection> {
    if amount.value.is_zero() {
        return Err(field_err(kind, format!("{field} must be greater than zero")));
    }
    Ok(())
}

/// The fields of an order: its id, currency, a positive amount, and each line.
fn check_order_placed(k: &'static str, o: &OrderPlaced) -> Result<(), Rejection> {
    let f = |r: Result<(), FieldError>| r.map_err(|e| field_err(k, e));
    check_id(k, "order_id", &o.order_id)?;
    f(check_currency(&o.currency))?;
    check_positive(k, "amount", &o.amount)?;
    check_list(k, "lines", &o.lines, false)?;
    for line in &o.lines {
        check_id(k, "lines[].sku", &line.sku)?;
        check_text(k, "lines[].description", &line.description)?;
        f(check_hs_code(&line.hs_code))?;
        check_positive(k, "lines[].quantity", &line.quantity)?;
        check_id(k, "lines[].unit", &line.unit)?;
    }
    if let Some(ucr) = &o.ucr {
        check_id(k, "ucr", ucr)?;
    }
    Ok(())
}

/// The fields of a transport milestone: shipment, location, and the voyage, vessel (IMO check
/// digit) or flight (IATA form) when given.
fn check_milestone(k: &'static str, m: &Milestone) -> Result<(), Rejection> {
    let f = |r: Result<(), FieldError>| r.map_err(|e| field_err(k, e));
    check_id(k, "shipment_id", &m.shipment_id)?;
    f(check_locode("location", &m.location))?;
    if let Some(v) = &m.voyage {
        check_id(k, "voyage", v)?;
    }
    if let Some(imo) = &m.vessel_imo {
        f(check_imo(imo))?;
    }
    if let Some(flight) = &m.flight {
        f(check_flight(flight))?;
    }
    Ok(())
}

impl Payload {
    /// Field-level syntax checks that need no state.
    fn check_fields(&self) -> Result<(), Rejection> {
        let k = self.kind();
        let f = |r: Result<(), FieldError>| r.map_err(|e| field_err(k, e));
        match self {
            Payload::OrderPlaced(o) => check_order_placed(k, o)?,
            Payload::OrderAccepted(o) => check_id(k, "order_id", &o.order_id)?,
            Payload::InvoiceIssued(i) => {
                check_id(k, "invoice_id", &i.invoice_id)?;
                check_id(k, "order_id", &i.order_id)?;
                f(check_currency(&i.currency))?;
                check_positive(k, "amount", &i.amount)?;
                f(parse_date(&i.due_date).map(|_| ()))?;
            }
            Payload::ShipmentBooked(s) => {
                check_id(k, "shipment_id", &s.shipment_id)?;
                check_list(k, "order_ids", &s.order_ids, false)?;
                for id in &s.order_ids {
                    check_id(k, "order_ids[]", id)?;
                }
                f(check_locode("origin", &s.origin))?;
                f(check_locode("destination", &s.destination))?;
                check_list(k, "containers", &s.containers, true)?;
                for c in &s.containers {
                    f(check_container(c))?;
                }
            }
            Payload::ShipmentPickedUp(m)
            | Payload::ShipmentDeparted(m)
            | Payload::ShipmentArrived(m)
            | Payload::ShipmentDelivered(m) => check_milestone(k, m)?,
            Payload::ShipmentReceived(r) => {
                check_id(k, "shipment_id", &r.shipment_id)?;
                check_text(k, "note", r.note.as_deref().unwrap_or(""))?;
            }
            Payload::ShipmentException(e) => {
                check_id(k, "shipment_id", &e.shipment_id)?;
                check_text(k, "description", &e.description)?;
            }
            Payload::DocumentAnchored(d) => {
                check_id(k, "doc_id", &d.doc_id)?;
                if d.sha256.len() != 64 || !d.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(field_err(k, "sha256 must be 64 hex characters"));
                }
                check_list(k, "refs", &d.refs, false)?;
                for r in &d.refs {
                    parse_ref(r).map_err(|e| field_err(k, e))?;
                }
            }
            Payload::DeclarationFiled(d) => {
                check_id(k, "declaration_id", &d.declaration_id)?;
                check_id(k, "shipment_id", &d.shipment_id)?;
                f(check_country(&d.country))?;
                f(check_currency(&d.currency))?;
                check_list(k, "hs_codes", &d.hs_codes, false)?;
                for h in &d.hs_codes {
                    f(check_hs_code(h))?;
                }
            }
            Payload::CustomsCleared(c) | Payload::CustomsHeld(c) => {
                check_id(k, "declaration_id", &c.declaration_id)?;
                check_text(k, "reason", c.reason.as_deref().unwrap_or(""))?;
                if matches!(self, Payload::CustomsHeld(_))
                    && c.reason.as_deref().is_none_or(str::is_empty)
                {
                    return Err(field_err(k, "a hold needs a reason"));
                }
            }
            Payload::DutiesAssessed(d) => {
                check_id(k, "declaration_id", &d.declaration_id)?;
                f(check_currency(&d.currency))?;
            }
            Payload::LcIssued(l) => {
                check_id(k, "lc_id", &l.lc_id)?;
                check_id(k, "order_id", &l.order_id)?;
                f(check_currency(&l.currency))?;
                check_positive(k, "amount", &l.amount)?;
                f(parse_date(&l.expiry).map(|_| ()))?;
            }
            Payload::DocumentsPresented(p) => {
                check_id(k, "lc_id", &p.lc_id)?;
                check_list(k, "doc_ids", &p.doc_ids, false)?;
                for d in &p.doc_ids {
                    check_id(k, "doc_ids[]", d)?;
                }
            }
            Payload::PaymentSettled(p) => {
                check_id(k, "payment_id", &p.payment_id)?;
                check_id(k, "invoice_id", &p.invoice_id)?;
                if let Some(lc) = &p.lc_id {
                    check_id(k, "lc_id", lc)?;
                }
                f(check_currency(&p.currency))?;
                check_positive(k, "amount", &p.amount)?;
            }
        }
        Ok(())
    }
}

/// An entity a document refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum RefKind {
    Order,
    Invoice,
    Shipment,
    Declaration,
    Lc,
}

/// Parses `order:ID`, `invoice:ID`, `shipment:ID`, `declaration:ID` or `lc:ID`.
pub fn parse_ref(text: &str) -> Result<(RefKind, &str), FieldError> {
    let (kind, id) = text.split_once(':').ok_or_else(|| FieldError::Ref(text.into()))?;
    let kind = match kind {
        "order" => RefKind::Order,
        "invoice" => RefKind::Invoice,
        "shipment" => RefKind::Shipment,
        "declaration" => RefKind::Declaration,
        "lc" => RefKind::Lc,
        other => return Err(FieldError::RefKind(other.into())),
    };
    if id.is_empty() || id.len() > MAX_ENTITY_ID_BYTES {
        return Err(FieldError::RefId(text.into()));
    }
    Ok((kind, id))
}

/// Every check of an event that needs no ledger state: size, canonical form, common fields,
/// chain, author, key ownership, signature (`verify_strict`) and field syntax.
pub fn check_event(genesis: &Genesis, signed: &SignedEvent) -> Result<Event, Rejection> {
    check_event_batch(genesis, std::slice::from_ref(signed))
        .pop()
        .unwrap_or_else(|| Err(bad_signature()))
}

/// [`check_event`] of each event, in order, with the same result for each; the signatures of
/// the batch share one field inversion ([`tradeloop_crypto::finish_verify_batch`]), which makes
/// a signature about a tenth cheaper than checking events one by one.
pub fn check_event_batch(
    genesis: &Genesis,
    signed: &[SignedEvent],
) -> Vec<Result<Event, Rejection>> {
    let partial: Vec<Result<PartlyChecked, Rejection>> =
        signed.iter().map(|s| check_until_signature(genesis, s)).collect();
    let pending: Vec<PendingSignature> =
        partial.iter().filter_map(|p| p.as_ref().ok().map(|p| p.pending)).collect();
    let mut verdicts = finish_verify_batch(&pending).into_iter();
    partial
        .into_iter()
        .map(|p| {
            let p = p?;
            match verdicts.next() {
                // A bad signature is reported before any field error, as one by one.
                Some(Ok(())) => p.rest,
                _ => Err(bad_signature()),
            }
        })
        .collect()
}

fn bad_signature() -> Rejection {
    Rejection::new(
        RejectCode::BadSignature,
        "signature does not verify over the body's signing bytes with the named key",
    )
}

/// An event checked up to its signature, which is half verified.
struct PartlyChecked {
    pending: PendingSignature,
    /// The remaining checks' result, reported only if the signature verifies.
    rest: Result<Event, Rejection>,
}

fn check_until_signature(
    genesis: &Genesis,
    signed: &SignedEvent,
) -> Result<PartlyChecked, Rejection> {
    let body = check_common(genesis, &signed.body)?;
    // `verify_strict` semantics with the key's precomputed tables (see tradeloop_crypto::prepared).
    let pending = body
        .entry
        .prepared()
        .start_verify(&[EVENT_DOMAIN, &signed.body], &signed.signature)
        .map_err(|_| bad_signature())?;
    let rest = body.finish(signed.id());
    Ok(PartlyChecked { pending, rest })
}

/// Every check [`check_event`] makes except the signature, on a canonical body that is about to
/// be signed: a signer (`tradeloop event sign`) refuses exactly what the ledger would refuse,
/// with the same rejection codes, before it signs anything.
pub fn check_unsigned_body(genesis: &Genesis, canonical_body: &[u8]) -> Result<Event, Rejection> {
    let id = domain_hash(EVENT_DOMAIN, &[canonical_body]);
    check_common(genesis, canonical_body)?.finish(id)
}

/// Parses a body a signer was given, as strictly as the ledger parses an envelope (duplicate
/// keys, fractions and unsafe integers are refused), into its object members.
pub fn parse_body_json(
    text: &[u8],
) -> Result<std::collections::BTreeMap<String, Value>, Rejection> {
    if text.len() > MAX_EVENT_BYTES as usize * 2 {
        return reject(
            RejectCode::EventTooLarge,
            format!("body is {} bytes; the limit is {}", text.len(), MAX_EVENT_BYTES * 2),
        );
    }
    let malformed = |m: String| Rejection::new(RejectCode::MalformedEvent, m);
    match Value::parse(text).map_err(|e| malformed(format!("not valid JSON: {e}")))? {
        Value::Object(map) => Ok(map),
        _ => Err(malformed("body must be a JSON object".into())),
    }
}

/// A body whose common fields are checked; the kind's fields are not yet.
struct CommonChecked<'g> {
    entry: &'g KeyEntry,
    author: String,
    time_ms: u64,
    nonce: Nonce,
    kind: String,
    rest: std::collections::BTreeMap<String, Value>,
}

impl CommonChecked<'_> {
    fn finish(self, id: Hash) -> Result<Event, Rejection> {
        let CommonChecked { entry, author, time_ms, nonce, kind, rest } = self;
        let payload = Payload::from_fields(&kind, Value::Object(rest))?;
        payload.check_fields()?;
        Ok(Event { id, author, key: entry.key, time_ms, nonce, payload })
    }
}

fn check_common<'g>(genesis: &'g Genesis, body: &[u8]) -> Result<CommonChecked<'g>, Rejection> {
    let limit = genesis.doc.consensus.max_event_bytes.min(MAX_EVENT_BYTES) as usize;
    if body.len() > limit {
        return reject(
            RejectCode::EventTooLarge,
            format!("body is {} bytes; this chain's limit is {limit}", body.len()),
        );
    }
    let malformed = |m: String| Rejection::new(RejectCode::MalformedEvent, m);
    // Stored bodies must already be canonical: one logical event has exactly one encoding.
    // The one-pass canonical parser accepts exactly those; anything else takes the general
    // parser, which says what is wrong.
    let value = match Value::parse_canonical(body) {
        Some(value) => value,
        None => {
            let value = Value::parse(body).map_err(|e| malformed(format!("body: {e}")))?;
            if value.to_canonical() != body {
                return Err(malformed("body bytes are not in RFC 8785 canonical form".into()));
            }
            value
        }
    };
    let Value::Object(mut map) = value else {
        return Err(malformed("body must be a JSON object".into()));
    };
    let mut take_str = |name: &str| -> Result<String, Rejection> {
        match map.remove(name) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(malformed(format!("\"{name}\" must be a string"))),
            None => Err(malformed(format!("body has no \"{name}\" field"))),
        }
    };
    let chain = take_str("chain")?;
    let author = take_str("author")?;
    let key_hex = take_str("key")?;
    let kind = take_str("kind")?;
    let time_ms = match map.remove("time_ms") {
        Some(Value::Int(n)) if n >= 0 => n.unsigned_abs(),
        Some(_) => return Err(malformed("\"time_ms\" must be a non-negative integer".into())),
        None => return Err(malformed("body has no \"time_ms\" field".into())),
    };
    let nonce = match map.remove("nonce") {
        Some(Value::Int(n)) if n >= 0 => Nonce::Int(n.unsigned_abs()),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ENTITY_ID_BYTES => Nonce::Text(s),
        Some(_) => {
            return Err(malformed(format!(
                "\"nonce\" must be a non-negative integer or a string of 1 to {MAX_ENTITY_ID_BYTES} bytes"
            )))
        }
        None => return Err(malformed("body has no \"nonce\" field".into())),
    };
    if chain != genesis.hash_hex() {
        return reject(
            RejectCode::WrongChain,
            format!("event is for chain {chain}, this chain is {}", genesis.hash),
        );
    }
    if genesis.participant(&author).is_none() {
        return reject(
            RejectCode::UnknownParticipant,
            format!("author \"{author}\" is not a participant in the genesis"),
        );
    }
    let key_bytes = tradeloop_crypto::decode_hex_array::<32>("key", &key_hex)
        .map_err(|e| malformed(format!("\"key\": {e}")))?;
    let entry = match genesis.signing_key_entry(&key_bytes) {
        Some(entry) if entry.owner == author => entry,
        _ => {
            return reject(
                RejectCode::KeyNotAuthorized,
                format!("key {key_hex} is not one of {author}'s signing keys"),
            )
        }
    };
    Ok(CommonChecked { entry, author, time_ms, nonce, kind, rest: map })
}
