//! EPCIS 2.0 JSON-LD export of the shipment and customs events (docs/events.md, "EPCIS 2.0").
//!
//! ```text
//! blocks (a ledger or an export) --> per event: kind -> ObjectEvent | TransactionEvent
//!   what   epcList: shipment URI + urn:epc:id:bic: per container
//!   when   eventTime (event_time_ms, else time_ms), recordTime (block time), +00:00
//!   where  readPoint / bizLocation: https://vocabulary.uncefact.org/unlocode#<LOCODE>
//!   why    bizStep, disposition (CBV), bizTransactionList (po, inv, declaration, document)
//!   who    sourceList / destinationList (seller -> buyer) on booked, first outbound, received
//!   proof  tl:eventId, tl:blockHeight, tl:eventIndex, tl:kind (our extension namespace)
//! ```
//!
//! The mapping follows GS1's EPCIS 2.0 and CBV 2.0, field by field as docs/events.md gives it;
//! `scripts/epcis-validate` checks the output against GS1's EPCIS 2.0 JSON Schema.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value as Json};

use crate::model::block::CertifiedBlock;
use crate::model::event::{check_unsigned_body, Condition, DocType, ExceptionType, Payload};
use crate::model::fields::rfc3339_ms;
use crate::model::genesis::Genesis;

/// The EPCIS 2.0 JSON-LD context.
pub const EPCIS_CONTEXT: &str = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld";
/// Our extension namespace (prefix `tl:`). Fixed: consumers key on it.
pub const TL_NAMESPACE: &str = "https://ns.example.org/tradeloop/epcis/";
/// Base of UN/LOCODE URIs (UN/CEFACT's linked-data vocabulary).
pub const UNLOCODE_BASE: &str = "https://vocabulary.uncefact.org/unlocode#";

/// Which events to export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EpcisFilter {
    /// Every shipment of the chain.
    All,
    /// One shipment.
    Shipment(String),
    /// The shipments booked for one order.
    Trade(String),
}

/// Why an EPCIS export could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EpcisError {
    /// The base URI is not an absolute `https://` URI ending in `/`.
    #[error("--base-uri {0:?} must be an https:// URI of ASCII characters without spaces, ending in '/', e.g. https://id.example.org/tradeloop/demo/")]
    BadBase(String),
    /// Nothing matched the filter.
    #[error("{0} is not on this chain (no shipment.booked names it); check the id")]
    NotFound(String),
}

impl EpcisError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            EpcisError::BadBase(_) => "EPCIS_BAD_BASE_URI",
            EpcisError::NotFound(_) => "NOT_FOUND",
        }
    }
}

/// The default base URI of a chain's identifiers: `https://id.example.org/tradeloop/<chain id>/`.
/// Operators should pass a base under a domain they control.
pub fn default_base(genesis: &Genesis) -> String {
    format!("https://id.example.org/tradeloop/{}/", percent_encode(&genesis.doc.chain_id))
}

/// Percent-encodes an id as UTF-8, leaving only `A-Z a-z 0-9 - . _ ~`.
pub fn percent_encode(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, Default)]
struct Shipment {
    order_ids: Vec<String>,
    containers: Vec<String>,
    origin: String,
    destination: String,
    buyer: String,
    seller: String,
    outbound_reported: bool,
}

/// Builds EPCIS documents from blocks in height order.
#[derive(Debug)]
pub struct EpcisBuilder<'g> {
    genesis: &'g Genesis,
    base: String,
    filter: EpcisFilter,
    orders: BTreeMap<String, (String, String)>,
    invoices: BTreeMap<String, Vec<String>>,
    shipments: BTreeMap<String, Shipment>,
    declarations: BTreeMap<String, String>,
    events: Vec<Json>,
    matched: bool,
}

impl<'g> EpcisBuilder<'g> {
    /// A builder for the chain of `genesis`, identifiers under `base`.
    pub fn new(genesis: &'g Genesis, base: &str, filter: EpcisFilter) -> Result<Self, EpcisError> {
        let ok = base.starts_with("https://")
            && base.len() > "https://".len() + 1
            && base.ends_with('/')
            && base.bytes().all(|b| b.is_ascii_graphic() && !b"\"<>\\^`{|}#?".contains(&b));
        if !ok {
            return Err(EpcisError::BadBase(base.into()));
        }
        Ok(EpcisBuilder {
            genesis,
            base: base.into(),
            filter,
            orders: BTreeMap::new(),
            invoices: BTreeMap::new(),
            shipments: BTreeMap::new(),
            declarations: BTreeMap::new(),
            events: Vec::new(),
            matched: false,
        })
    }

    fn uri(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}/{}", self.base, percent_encode(id))
    }

    fn selected(&self, shipment_id: &str) -> bool {
        match &self.filter {
            EpcisFilter::All => true,
            EpcisFilter::Shipment(s) => s == shipment_id,
            EpcisFilter::Trade(order) => self
                .shipments
                .get(shipment_id)
                .is_some_and(|s| s.order_ids.iter().any(|o| o == order)),
        }
    }

    /// Takes the next block (heights in order from 1).
    pub fn add_block(&mut self, certified: &CertifiedBlock) {
        let header = &certified.block.header;
        let parsed: Vec<Option<(crate::Event, Json)>> = certified
            .block
            .events
            .iter()
            .map(|e| {
                let event = check_unsigned_body(self.genesis, &e.body).ok()?;
                let body = serde_json::from_slice(&e.body).ok()?;
                Some((event, body))
            })
            .collect();
        // Invoices recorded in this block count for every event of it (MAPPING.md §1).
        for (event, _) in parsed.iter().flatten() {
            if let Payload::InvoiceIssued(i) = &event.payload {
                self.invoices.entry(i.order_id.clone()).or_default().push(i.invoice_id.clone());
            }
        }
        for (index, item) in parsed.iter().enumerate() {
            let Some((event, body)) = item else { continue };
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            self.add_event(event, body, header.height, index, header.time_ms);
        }
    }

    fn epc_list(&self, shipment_ids: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for id in shipment_ids {
            out.push(self.uri("shipment", id));
            if let Some(s) = self.shipments.get(id) {
                for c in &s.containers {
                    out.push(format!("urn:epc:id:bic:{c}"));
                }
            }
        }
        let mut seen = BTreeSet::new();
        out.retain(|u| seen.insert(u.clone()));
        out
    }

    fn biz_transactions(&self, shipment_ids: &[String]) -> Vec<Json> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for id in shipment_ids {
            let Some(s) = self.shipments.get(id) else { continue };
            for order in &s.order_ids {
                if seen.insert(("po", order.clone())) {
                    out.push(json!({"type": "po", "bizTransaction": self.uri("order", order)}));
                }
                for invoice in self.invoices.get(order).into_iter().flatten() {
                    if seen.insert(("inv", invoice.clone())) {
                        out.push(
                            json!({"type": "inv", "bizTransaction": self.uri("invoice", invoice)}),
                        );
                    }
                }
            }
        }
        out
    }

    fn parties(&self, event: &mut Map<String, Json>, shipment_id: &str) {
        let Some(s) = self.shipments.get(shipment_id) else { return };
        let side = |party: &str, place: &str, key: &str| {
            json!([
                {"type": "owning_party", key: self.uri("participant", party)},
                {"type": "possessing_party", key: self.uri("participant", party)},
                {"type": "location", key: format!("{UNLOCODE_BASE}{place}")},
            ])
        };
        event.insert("sourceList".into(), side(&s.seller, &s.origin, "source"));
        event.insert("destinationList".into(), side(&s.buyer, &s.destination, "destination"));
    }

    fn add_event(
        &mut self,
        event: &crate::Event,
        body: &Json,
        height: u64,
        index: u32,
        block_ms: u64,
    ) {
        self.learn(event);
        let Some(shipments) = self.shipments_of(&event.payload) else { return };
        let shipments: Vec<String> = shipments.into_iter().filter(|s| self.selected(s)).collect();
        if shipments.is_empty() {
            return;
        }
        self.matched = true;
        let mut e = self.event_head(event, &shipments, block_ms);
        let mut transactions = self.biz_transactions(&shipments);
        let first = shipments[0].clone();
        match &event.payload {
            Payload::ShipmentBooked(b) => {
                self.parties(&mut e, &first);
                e.insert("tl:packages".into(), json!(b.packages));
                e.insert("tl:grossKg".into(), json!(b.gross_kg.text));
                e.insert("tl:mode".into(), body.get("mode").cloned().unwrap_or(Json::Null));
            }
            Payload::ShipmentPickedUp(m)
            | Payload::ShipmentDeparted(m)
            | Payload::ShipmentArrived(m)
            | Payload::ShipmentDelivered(m) => self.milestone(&mut e, &event.payload, m, &first),
            Payload::ShipmentReceived(r) => self.received(&mut e, r, &first),
            Payload::ShipmentException(x) => exception(&mut e, x, body),
            Payload::DeclarationFiled(d) => {
                transactions.push(declaration_entry(&self.uri("declaration", &d.declaration_id)));
                e.insert(
                    "tl:direction".into(),
                    body.get("direction").cloned().unwrap_or(Json::Null),
                );
                e.insert("tl:country".into(), json!(d.country));
                e.insert("tl:hsCodes".into(), json!(d.hs_codes));
            }
            Payload::CustomsHeld(c) | Payload::CustomsCleared(c) => {
                if matches!(event.payload, Payload::CustomsHeld(_)) {
                    step_disposition(&mut e, "holding", Some("non_sellable_other"));
                } else {
                    step_disposition(&mut e, "inspecting", Some("conformant"));
                }
                transactions.push(declaration_entry(&self.uri("declaration", &c.declaration_id)));
                if let Some(reason) = &c.reason {
                    e.insert("tl:reason".into(), json!(reason));
                }
            }
            Payload::DocumentAnchored(d) => {
                transactions.push(json!({
                    "type": document_transaction_type(d.doc_type),
                    "bizTransaction": self.uri("document", &d.doc_id)
                }));
                e.insert("tl:docType".into(), body.get("doc_type").cloned().unwrap_or(Json::Null));
                e.insert("tl:sha256".into(), json!(d.sha256));
            }
            _ => {}
        }
        if !transactions.is_empty() {
            e.insert("bizTransactionList".into(), Json::Array(transactions));
        }
        e.insert("tl:eventId".into(), json!(event.id.to_hex()));
        e.insert("tl:blockHeight".into(), json!(height));
        e.insert("tl:eventIndex".into(), json!(index));
        e.insert("tl:kind".into(), json!(event.payload.kind()));
        self.events.push(Json::Object(e));
    }

    /// Learns what later events need (orders' parties, shipments, declarations), whatever the
    /// filter.
    fn learn(&mut self, event: &crate::Event) {
        match &event.payload {
            Payload::OrderPlaced(o) => {
                self.orders.insert(o.order_id.clone(), (event.author.clone(), o.seller.clone()));
            }
            Payload::ShipmentBooked(b) => {
                let (buyer, seller) = b
                    .order_ids
                    .first()
                    .and_then(|o| self.orders.get(o))
                    .cloned()
                    .unwrap_or_default();
                self.shipments.insert(
                    b.shipment_id.clone(),
                    Shipment {
                        order_ids: b.order_ids.clone(),
                        containers: b.containers.clone(),
                        origin: b.origin.clone(),
                        destination: b.destination.clone(),
                        buyer,
                        seller,
                        outbound_reported: false,
                    },
                );
            }
            Payload::DeclarationFiled(d) => {
                self.declarations.insert(d.declaration_id.clone(), d.shipment_id.clone());
            }
            _ => {}
        }
    }

    /// The fields every EPCIS event has: type, id, times, action, the shipments' EPCs.
    fn event_head(
        &self,
        event: &crate::Event,
        shipments: &[String],
        block_ms: u64,
    ) -> Map<String, Json> {
        let mut e = Map::new();
        let event_time_ms = match &event.payload {
            Payload::ShipmentPickedUp(m)
            | Payload::ShipmentDeparted(m)
            | Payload::ShipmentArrived(m)
            | Payload::ShipmentDelivered(m) => m.event_time_ms,
            _ => event.time_ms,
        };
        let transaction = matches!(
            event.payload,
            Payload::ShipmentBooked(_)
                | Payload::DeclarationFiled(_)
                | Payload::DocumentAnchored(_)
        );
        e.insert(
            "type".into(),
            json!(if transaction { "TransactionEvent" } else { "ObjectEvent" }),
        );
        e.insert("eventID".into(), json!(self.uri("event", &event.id.to_hex())));
        e.insert("eventTime".into(), json!(rfc3339_ms(event_time_ms)));
        e.insert("eventTimeZoneOffset".into(), json!("+00:00"));
        e.insert("recordTime".into(), json!(rfc3339_ms(block_ms)));
        e.insert("action".into(), json!(if transaction { "ADD" } else { "OBSERVE" }));
        e.insert("epcList".into(), json!(self.epc_list(shipments)));
        e
    }

    /// A transport milestone: its business step and disposition, where it happened, the
    /// parties on the first outbound milestone, the vessel, voyage or flight.
    fn milestone(
        &mut self,
        e: &mut Map<String, Json>,
        payload: &Payload,
        m: &crate::model::event::Milestone,
        first: &str,
    ) {
        let (step, read_point_only) = match payload {
            Payload::ShipmentPickedUp(_) => ("shipping", true),
            Payload::ShipmentDeparted(_) => ("departing", true),
            Payload::ShipmentArrived(_) => ("arriving", false),
            _ => ("unloading", false),
        };
        let disposition = if step == "unloading" { "in_progress" } else { "in_transit" };
        step_disposition(e, step, Some(disposition));
        e.insert("readPoint".into(), place(&m.location));
        if !read_point_only {
            e.insert("bizLocation".into(), place(&m.location));
        }
        let outbound =
            matches!(payload, Payload::ShipmentPickedUp(_) | Payload::ShipmentDeparted(_));
        if outbound && self.shipments.get(first).is_some_and(|s| !s.outbound_reported) {
            self.parties(e, first);
            if let Some(s) = self.shipments.get_mut(first) {
                s.outbound_reported = true;
            }
        }
        if let Some(imo) = &m.vessel_imo {
            e.insert("tl:vessel".into(), json!(format!("urn:epc:id:imovn:{imo}")));
        }
        if let Some(v) = &m.voyage {
            e.insert("tl:voyage".into(), json!(v));
        }
        if let Some(f) = &m.flight {
            e.insert("tl:flight".into(), json!(f));
        }
    }

    /// The consignee's receipt: its condition as a disposition, at the destination.
    fn received(
        &self,
        e: &mut Map<String, Json>,
        r: &crate::model::event::ShipmentReceived,
        first: &str,
    ) {
        let disposition = match r.condition {
            Condition::Damaged => "damaged",
            Condition::Ok | Condition::Short => "in_progress",
        };
        step_disposition(e, "receiving", Some(disposition));
        if r.condition == Condition::Short {
            e.insert("persistentDisposition".into(), json!({"set": ["mismatch_quantity"]}));
        }
        let destination =
            self.shipments.get(first).map(|s| s.destination.clone()).unwrap_or_default();
        e.insert("readPoint".into(), place(&destination));
        e.insert("bizLocation".into(), place(&destination));
        self.parties(e, first);
        if let Some(note) = &r.note {
            e.insert("tl:note".into(), json!(note));
        }
    }

    /// The shipments an event is about, or `None` for kinds that give no EPCIS event.
    fn shipments_of(&self, payload: &Payload) -> Option<Vec<String>> {
        let known = |id: &String| self.shipments.contains_key(id).then(|| vec![id.clone()]);
        match payload {
            Payload::ShipmentBooked(b) => known(&b.shipment_id),
            Payload::ShipmentPickedUp(m)
            | Payload::ShipmentDeparted(m)
            | Payload::ShipmentArrived(m)
            | Payload::ShipmentDelivered(m) => known(&m.shipment_id),
            Payload::ShipmentReceived(r) => known(&r.shipment_id),
            Payload::ShipmentException(x) => known(&x.shipment_id),
            Payload::DeclarationFiled(d) => known(&d.shipment_id),
            Payload::CustomsHeld(c) | Payload::CustomsCleared(c) => {
                self.declarations.get(&c.declaration_id).and_then(known)
            }
            Payload::DocumentAnchored(d) => {
                let mut out = Vec::new();
                for r in &d.refs {
                    let shipment = match crate::model::event::parse_ref(r) {
                        Ok((crate::model::event::RefKind::Shipment, id)) => Some(id.to_string()),
                        Ok((crate::model::event::RefKind::Declaration, id)) => {
                            self.declarations.get(id).cloned()
                        }
                        _ => None,
                    };
                    if let Some(s) = shipment.filter(|s| self.shipments.contains_key(s)) {
                        if !out.contains(&s) {
                            out.push(s);
                        }
                    }
                }
                (!out.is_empty()).then_some(out)
            }
            _ => None,
        }
    }

    /// The EPCISDocument of the events taken so far; `creation_ms` is its `creationDate`.
    /// Fails when a shipment or trade filter matched nothing.
    pub fn finish(self, creation_ms: u64) -> Result<Json, EpcisError> {
        match &self.filter {
            EpcisFilter::Shipment(s) if !self.matched => {
                return Err(EpcisError::NotFound(format!("shipment {s}")))
            }
            EpcisFilter::Trade(o) if !self.matched => {
                return Err(EpcisError::NotFound(format!("a shipment of order {o}")))
            }
            _ => {}
        }
        Ok(json!({
            "@context": [EPCIS_CONTEXT, {"tl": TL_NAMESPACE, "tl:vessel": {"@type": "@id"}}],
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": rfc3339_ms(creation_ms),
            "tl:chain": self.genesis.hash_hex(),
            "epcisBody": {"eventList": self.events},
        }))
    }
}

/// An EPCIS location by its UN/LOCODE.
fn place(code: &str) -> Json {
    json!({"id": format!("{UNLOCODE_BASE}{code}")})
}

/// Sets the business step and, if any, the disposition.
fn step_disposition(e: &mut Map<String, Json>, step: &str, disposition: Option<&str>) {
    e.insert("bizStep".into(), json!(step));
    if let Some(d) = disposition {
        e.insert("disposition".into(), json!(d));
    }
}

/// A forwarder's exception: damage is an inspection finding, loss and delay are transport's.
fn exception(e: &mut Map<String, Json>, x: &crate::model::event::ShipmentException, body: &Json) {
    let (step, disposition) = match x.exception_type {
        ExceptionType::Damage => ("inspecting", Some("damaged")),
        ExceptionType::Loss => ("transporting", Some("unknown")),
        ExceptionType::Delay => ("transporting", None),
    };
    step_disposition(e, step, disposition);
    e.insert("tl:exceptionType".into(), body.get("exception_type").cloned().unwrap_or(Json::Null));
    e.insert("tl:description".into(), json!(x.description));
}

/// The EPCIS business transaction type of an anchored document (CBV's, or ours for insurance).
fn document_transaction_type(doc_type: DocType) -> &'static str {
    match doc_type {
        DocType::BillOfLading => "bol",
        DocType::CertificateOfOrigin => "cert",
        DocType::CommercialInvoice => "inv",
        DocType::PackingList => "desadv",
        DocType::Inspection => "testres",
        DocType::Insurance => "tl:insuranceCertificate",
    }
}

fn declaration_entry(uri: &str) -> Json {
    json!({"type": "tl:customsDeclaration", "bizTransaction": uri})
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_percent_encoded_and_bases_checked() {
        assert_eq!(percent_encode("PO-1_a.b~"), "PO-1_a.b~");
        assert_eq!(percent_encode("a b/ü#"), "a%20b%2F%C3%BC%23");
        let genesis = crate::sample::Cast::deterministic(1, 1_780_000_000_000).unwrap().genesis;
        for bad in ["http://x/", "https://x", "https://a b/", "https:///", "https://x/#/"] {
            assert!(EpcisBuilder::new(&genesis, bad, EpcisFilter::All).is_err(), "{bad}");
        }
        assert!(EpcisBuilder::new(&genesis, &default_base(&genesis), EpcisFilter::All).is_ok());
    }
}
