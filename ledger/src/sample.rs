//! A realistic sample cast and closed-loop trade, used by `tradeloop demo`, the benchmarks and
//! the tests.
//!
//! The cast: an exporter in CN, an importer in DE, a forwarder, a bank on each side and the
//! customs of CN and DE. One trade runs order -> acceptance -> letter of credit -> invoice ->
//! booking -> export declaration and clearance -> pick-up -> departure -> import declaration,
//! duties and clearance -> arrival -> delivery -> receipt -> documents presented -> payment.

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};
use tradeloop_crypto::SigningKey;

use crate::model::event::SignedEvent;
use crate::model::fields::iso6346_check_digit;
use crate::model::genesis::{
    ConsensusParams, Genesis, GenesisDoc, MemberNode, Participant, Role, ValidatorEntry,
};
use crate::LedgerError;

/// Participant ids of the cast.
pub mod ids {
    /// Exporter (seller), CN.
    pub const EXPORTER: &str = "cn-exporter-bright";
    /// Importer (buyer), DE.
    pub const IMPORTER: &str = "de-importer-hanse";
    /// Freight forwarder.
    pub const FORWARDER: &str = "forwarder-pacific-link";
    /// The exporter's (advising) bank, CN.
    pub const EXPORTER_BANK: &str = "cn-bank-shenzhen";
    /// The importer's (issuing) bank, DE.
    pub const IMPORTER_BANK: &str = "de-bank-hanseatic";
    /// Customs of CN.
    pub const CN_CUSTOMS: &str = "cn-customs";
    /// Customs of DE.
    pub const DE_CUSTOMS: &str = "de-customs";
}

/// Who runs validators, in order: customs first, then banks.
pub const VALIDATOR_HOSTS: [&str; 7] = [
    ids::DE_CUSTOMS,
    ids::CN_CUSTOMS,
    ids::IMPORTER_BANK,
    ids::EXPORTER_BANK,
    ids::FORWARDER,
    ids::DE_CUSTOMS,
    ids::CN_CUSTOMS,
];

/// The cast: genesis and every key.
#[derive(Debug)]
pub struct Cast {
    /// The chain's genesis.
    pub genesis: Genesis,
    /// Event-signing key of each participant.
    pub keys: BTreeMap<String, SigningKey>,
    /// Validator node keys, in genesis order.
    pub validator_keys: Vec<SigningKey>,
    /// Non-voting member node keys with their participant, in genesis `member_nodes` order
    /// (empty unless built with [`Cast::networked`]).
    pub member_keys: Vec<(String, SigningKey)>,
}

impl Cast {
    /// Builds the cast with `validators` validators (1 to 7: the two customs, the two banks, the
    /// forwarder, then a second node of each customs authority).
    /// `key_for(label)` supplies every key: random for a demo, derived for tests.
    pub fn new(
        validators: usize,
        genesis_time_ms: u64,
        key_for: &mut dyn FnMut(&str) -> Result<SigningKey, LedgerError>,
    ) -> Result<Cast, LedgerError> {
        Cast::with_extra(validators, genesis_time_ms, &[], key_for)
    }

    /// [`Cast::new`] plus extra participants `(id, name, role, country)`.
    pub fn with_extra(
        validators: usize,
        genesis_time_ms: u64,
        extra: &[(&str, &str, Role, &str)],
        key_for: &mut dyn FnMut(&str) -> Result<SigningKey, LedgerError>,
    ) -> Result<Cast, LedgerError> {
        let base: [(&str, &str, Role, &str); 7] = [
            (ids::EXPORTER, "Shenzhen Bright Electronics Co., Ltd.", Role::Exporter, "CN"),
            (ids::IMPORTER, "Hanse Retail GmbH", Role::Importer, "DE"),
            (ids::FORWARDER, "Pacific Link Logistics Ltd.", Role::Forwarder, "HK"),
            (ids::EXPORTER_BANK, "Bank of Shenzhen Trade Finance", Role::Bank, "CN"),
            (ids::IMPORTER_BANK, "Hanseatic Handelsbank AG", Role::Bank, "DE"),
            (ids::CN_CUSTOMS, "China Customs, Shenzhen District", Role::Customs, "CN"),
            (ids::DE_CUSTOMS, "Hauptzollamt Hamburg", Role::Customs, "DE"),
        ];
        let mut keys = BTreeMap::new();
        let mut participants = Vec::new();
        for &(id, name, role, country) in base.iter().chain(extra) {
            let key = key_for(id)?;
            participants.push(Participant {
                id: id.into(),
                name: name.into(),
                role,
                country: country.into(),
                keys: vec![key.public_key()],
            });
            keys.insert(id.to_string(), key);
        }
        let count = validators.clamp(1, VALIDATOR_HOSTS.len());
        let mut validator_keys = Vec::new();
        let mut entries = Vec::new();
        for (i, host) in VALIDATOR_HOSTS[..count].iter().enumerate() {
            // A host's second node (validators 6 and 7) has its own key.
            let label = if VALIDATOR_HOSTS[..i].contains(host) {
                format!("{host}-node-2")
            } else {
                format!("{host}-node")
            };
            let key = key_for(&label)?;
            entries.push(ValidatorEntry {
                participant: (*host).into(),
                node_key: key.public_key(),
                power: 10,
            });
            validator_keys.push(key);
        }
        let doc = GenesisDoc {
            chain_id: "tradeloop-demo-cn-de".into(),
            genesis_time_ms,
            participants,
            validators: entries,
            member_nodes: Vec::new(),
            consensus: ConsensusParams::default(),
        };
        Ok(Cast { genesis: Genesis::from_doc(doc)?, keys, validator_keys, member_keys: Vec::new() })
    }

    /// [`Cast::new`] plus `member_nodes` non-voting member nodes, listed in the genesis
    /// `member_nodes`: one for each party that hosts no validator (the exporter, importer and
    /// forwarder first), then second nodes of the same parties in turn (key labels
    /// `<participant>-node`, `<participant>-node-2`, ...). With one member node per such party,
    /// each party of the trade submits to its own node.
    pub fn networked(
        validators: usize,
        member_nodes: usize,
        genesis_time_ms: u64,
        key_for: &mut dyn FnMut(&str) -> Result<SigningKey, LedgerError>,
    ) -> Result<Cast, LedgerError> {
        let mut cast = Cast::new(validators, genesis_time_ms, key_for)?;
        let mut doc = cast.genesis.doc.clone();
        let hosts: Vec<String> = doc.validators.iter().map(|v| v.participant.clone()).collect();
        let parties: Vec<String> = doc
            .participants
            .iter()
            .map(|p| p.id.clone())
            .filter(|id| !hosts.contains(id))
            .collect();
        for i in 0..member_nodes.min(crate::model::genesis::MAX_MEMBER_NODES) {
            let Some(party) = parties.get(i % parties.len().max(1)) else { break };
            let round = i / parties.len().max(1);
            let label = if round == 0 {
                format!("{party}-node")
            } else {
                format!("{party}-node-{}", round + 1)
            };
            let key = key_for(&label)?;
            doc.member_nodes
                .push(MemberNode { participant: party.clone(), node_key: key.public_key() });
            cast.member_keys.push((party.clone(), key));
        }
        cast.genesis = Genesis::from_doc(doc)?;
        Ok(cast)
    }

    /// A short name for each node, in [`Cast::node_keys`] order: `<participant>-node` or
    /// `<participant>-node-N` for a participant's N-th node.
    pub fn node_names(&self) -> Vec<String> {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        let hosts = self.genesis.doc.validators.iter().map(|v| v.participant.as_str());
        let members = self.member_keys.iter().map(|(p, _)| p.as_str());
        hosts
            .chain(members)
            .map(|p| {
                let n = seen.entry(p).or_insert(0);
                *n += 1;
                if *n == 1 {
                    format!("{p}-node")
                } else {
                    format!("{p}-node-{n}")
                }
            })
            .collect()
    }

    /// The node that serves `participant`'s systems: its member node, or else the first
    /// validator it hosts. An index into [`Cast::node_keys`].
    pub fn node_of(&self, participant: &str) -> Option<usize> {
        let validators = &self.genesis.doc.validators;
        if let Some(i) = self.member_keys.iter().position(|(p, _)| p == participant) {
            return Some(validators.len() + i);
        }
        validators.iter().position(|v| v.participant == participant)
    }

    /// Every node key, validators first (genesis order), then the member nodes.
    pub fn node_keys(&self) -> Vec<&SigningKey> {
        self.validator_keys.iter().chain(self.member_keys.iter().map(|(_, k)| k)).collect()
    }

    /// A cast with keys derived from labels (deterministic; for tests and benchmarks only).
    pub fn deterministic(validators: usize, genesis_time_ms: u64) -> Result<Cast, LedgerError> {
        Cast::new(validators, genesis_time_ms, &mut |label| Ok(SigningKey::from_seed_label(label)))
    }

    /// Builds a block of `events` at `time_ms`, proposed by validator `proposer`, and commits
    /// it to `ledger` with a commit certificate signed by the validators `signers` (indexes into
    /// [`Cast::validator_keys`]): the chain a network of these validators writes, for tests and
    /// benchmarks. Every event must pass the rules; the first refused one is the error. The
    /// block's hash.
    pub fn commit(
        &self,
        ledger: &mut crate::Ledger,
        events: &[SignedEvent],
        time_ms: u64,
        proposer: usize,
        signers: &[usize],
    ) -> Result<tradeloop_crypto::Hash, LedgerError> {
        let built = ledger.build_block(events, time_ms, &self.validator_keys[proposer])?;
        let height = built.block.header.height;
        if let Some((index, rejection)) = built.rejected.into_iter().next() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            return Err(LedgerError::RejectedEvent { height, index, rejection });
        }
        let keys: Vec<&SigningKey> = signers.iter().map(|&i| &self.validator_keys[i]).collect();
        let certificate =
            crate::CommitCertificate::sign(&self.genesis.hash, height, 0, built.hash, &keys);
        ledger.commit_block(&crate::CertifiedBlock { block: built.block, certificate })?;
        Ok(built.hash)
    }

    /// Signs an event of `kind` by `author` with the given kind fields.
    pub fn sign(
        &self,
        author: &str,
        kind: &str,
        fields: Json,
        time_ms: u64,
        nonce: &str,
    ) -> SignedEvent {
        let key = &self.keys[author];
        let mut body = match fields {
            Json::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        body.insert("chain".into(), json!(self.genesis.hash.to_hex()));
        body.insert("author".into(), json!(author));
        body.insert("key".into(), json!(key.public_key().to_hex()));
        body.insert("kind".into(), json!(kind));
        body.insert("time_ms".into(), json!(time_ms));
        body.insert("nonce".into(), json!(nonce));
        // Sample bodies are well-formed by construction.
        SignedEvent::sign(&Json::Object(body), key).unwrap_or_else(|_| SignedEvent {
            body: Vec::new(),
            signature: tradeloop_crypto::Signature([0; 64]),
        })
    }
}

/// A valid ISO 6346 container number for a serial.
pub fn container_number(serial: u64) -> String {
    let base = format!("TLPU{:06}", serial % 1_000_000);
    let digit = iso6346_check_digit(base.as_bytes());
    format!("{base}{digit}")
}

/// One step of the sample trade: author, kind and fields.
pub type Step = (&'static str, &'static str, Json);

/// The references of sample trade number `n`: its order, invoice, shipment, letter of credit,
/// declarations and documents.
struct TradeRefs {
    n: u64,
    po: String,
    inv: String,
    shp: String,
    lc: String,
    exp: String,
    imp: String,
    bl: String,
    ci: String,
}

impl TradeRefs {
    fn new(n: u64) -> TradeRefs {
        TradeRefs {
            n,
            po: format!("PO-{n}"),
            inv: format!("INV-{n}"),
            shp: format!("SHP-{n}"),
            lc: format!("LC-{n}"),
            exp: format!("EXD-CN-{n}"),
            imp: format!("IMD-DE-{n}"),
            bl: format!("BL-{n}"),
            ci: format!("CI-{n}"),
        }
    }
}

/// The steps of sample trade number `n`, in an order the rules accept.
pub fn trade_steps(n: u64) -> Vec<Step> {
    let refs = TradeRefs::new(n);
    let mut steps = contract_steps(&refs);
    steps.extend(export_steps(&refs));
    steps.extend(import_and_payment_steps(&refs));
    steps
}

/// The order, its acceptance, the letter of credit, the invoice, the booking and the
/// commercial invoice.
fn contract_steps(r: &TradeRefs) -> Vec<Step> {
    use ids::*;
    let TradeRefs { n, po, inv, shp, lc, ci, .. } = r;
    let n = *n;
    vec![
        (
            IMPORTER,
            "trade.order_placed",
            json!({
                "order_id": po, "seller": EXPORTER, "incoterm": "FOB", "currency": "USD", "amount": "48000.00",
                "lines": [
                    {"sku": "BR-LED-40", "description": "LED panel 40W", "hs_code": "940542", "quantity": "2000", "unit": "PCE"},
                    {"sku": "BR-DRV-40", "description": "LED driver 40W", "hs_code": "850440", "quantity": "2000", "unit": "PCE"}
                ],
                "ucr": format!("6DE123456789-{n}")
            }),
        ),
        (EXPORTER, "trade.order_accepted", json!({"order_id": po})),
        (
            IMPORTER_BANK,
            "payment.lc_issued",
            json!({
                "lc_id": lc, "order_id": po, "applicant": IMPORTER, "beneficiary": EXPORTER,
                "currency": "USD", "amount": "48000.00", "expiry": "2099-12-31"
            }),
        ),
        (
            EXPORTER,
            "trade.invoice_issued",
            json!({
                "invoice_id": inv, "order_id": po, "currency": "USD", "amount": "48000.00", "due_date": "2099-06-30"
            }),
        ),
        (
            EXPORTER,
            "shipment.booked",
            json!({
                "shipment_id": shp, "order_ids": [po], "forwarder": FORWARDER, "origin": "CNSZX",
                "destination": "DEHAM", "mode": "sea", "containers": [container_number(n)],
                "packages": 400, "gross_kg": "6120.5"
            }),
        ),
        (
            EXPORTER,
            "document.anchored",
            json!({
                "doc_type": "commercial_invoice", "doc_id": ci,
                "sha256": tradeloop_crypto::Hash::sha256(ci.as_bytes()).to_hex(),
                "refs": [format!("order:{po}"), format!("invoice:{inv}")]
            }),
        ),
    ]
}

/// Export clearance, pick-up, departure and the bill of lading.
fn export_steps(r: &TradeRefs) -> Vec<Step> {
    use ids::*;
    let TradeRefs { shp, exp, bl, .. } = r;
    vec![
        (
            FORWARDER,
            "customs.declaration_filed",
            json!({
                "declaration_id": exp, "shipment_id": shp, "direction": "export", "country": "CN",
                "declared_value": "48000.00", "currency": "USD", "hs_codes": ["940542", "850440"]
            }),
        ),
        (CN_CUSTOMS, "customs.cleared", json!({"declaration_id": exp})),
        (
            FORWARDER,
            "shipment.picked_up",
            json!({"shipment_id": shp, "location": "CNSZX", "event_time_ms": 1}),
        ),
        (
            FORWARDER,
            "shipment.departed",
            json!({
                "shipment_id": shp, "location": "CNYTN", "event_time_ms": 2, "vessel_imo": "9811000", "voyage": "045W"
            }),
        ),
        (
            FORWARDER,
            "document.anchored",
            json!({
                "doc_type": "bill_of_lading", "doc_id": bl,
                "sha256": tradeloop_crypto::Hash::sha256(bl.as_bytes()).to_hex(),
                "refs": [format!("shipment:{shp}")]
            }),
        ),
    ]
}

/// Import clearance, arrival, delivery, receipt, and payment under the letter of credit.
fn import_and_payment_steps(r: &TradeRefs) -> Vec<Step> {
    use ids::*;
    let TradeRefs { n, inv, shp, lc, imp, bl, ci, .. } = r;
    let n = *n;
    vec![
        (
            IMPORTER,
            "customs.declaration_filed",
            json!({
                "declaration_id": imp, "shipment_id": shp, "direction": "import", "country": "DE",
                "declared_value": "48000.00", "currency": "USD", "hs_codes": ["940542", "850440"]
            }),
        ),
        (
            DE_CUSTOMS,
            "customs.duties_assessed",
            json!({"declaration_id": imp, "amount": "1795.20", "currency": "EUR"}),
        ),
        (DE_CUSTOMS, "customs.cleared", json!({"declaration_id": imp})),
        (
            FORWARDER,
            "shipment.arrived",
            json!({"shipment_id": shp, "location": "DEHAM", "event_time_ms": 3, "vessel_imo": "9811000", "voyage": "045W"}),
        ),
        (
            FORWARDER,
            "shipment.delivered",
            json!({"shipment_id": shp, "location": "DEHAM", "event_time_ms": 4}),
        ),
        (
            IMPORTER,
            "shipment.received",
            json!({"shipment_id": shp, "condition": "ok", "note": "400 packages, seals intact"}),
        ),
        (EXPORTER_BANK, "payment.documents_presented", json!({"lc_id": lc, "doc_ids": [bl, ci]})),
        (
            IMPORTER_BANK,
            "payment.settled",
            json!({
                "payment_id": format!("UETR-{n}"), "invoice_id": inv, "lc_id": lc, "payer": IMPORTER,
                "payee": EXPORTER, "currency": "USD", "amount": "48000.00"
            }),
        ),
    ]
}

/// Signs every step of trade `n` with nonces `t<n>-<step>`.
pub fn trade_events(cast: &Cast, n: u64, time_ms: u64) -> Vec<SignedEvent> {
    trade_steps(n)
        .into_iter()
        .enumerate()
        .map(|(i, (author, kind, fields))| {
            cast.sign(author, kind, fields, time_ms, &format!("t{n}-{i}"))
        })
        .collect()
}
