//! Every rule of the closed loop, positive and negative. The positive path of each rule is the
//! sample trade itself (`run_trade` asserts every step commits); each test below brings the
//! trade to the point where a rule applies and checks it refuses what it must, with its code.

use serde_json::json;
use tradeloop_ledger::sample::ids::*;

use crate::support::*;

fn order(id: &str, seller: &str) -> serde_json::Value {
    json!({"order_id": id, "seller": seller, "incoterm": "CIF", "currency": "USD", "amount": "1000.00",
        "lines": [{"sku": "A", "description": "goods", "hs_code": "940542", "quantity": "10", "unit": "PCE"}]})
}

#[test]
fn the_whole_sample_loop_commits_and_closes() {
    let mut f = Fixture::new(1);
    f.run_trade(1, usize::MAX);
    let status = f.ledger.trade_status("PO-1").unwrap();
    assert!(status.closed);
}

#[test]
fn trade_status_names_the_open_legs() {
    let mut f = Fixture::new(1);
    f.run_trade(1, Fixture::step("shipment.departed", None) + 1);
    let status = f.ledger.trade_status("PO-1").unwrap();
    assert!(!status.closed);
    assert_eq!(
        status.open_legs,
        vec!["arrived", "import_cleared", "delivered", "received", "paid"]
    );
}

#[test]
fn orders() {
    let mut f = Fixture::new(1);
    f.rejects("ROLE_NOT_PERMITTED", EXPORTER, "trade.order_placed", order("PO-9", EXPORTER));
    f.rejects("ROLE_NOT_PERMITTED", "auditor-kpmg", "trade.order_placed", order("PO-9", EXPORTER));
    f.rejects("UNKNOWN_PARTICIPANT", IMPORTER, "trade.order_placed", order("PO-9", "nobody"));
    f.rejects("SELLER_NOT_EXPORTER", IMPORTER, "trade.order_placed", order("PO-9", FORWARDER));
    f.ok(IMPORTER, "trade.order_placed", order("PO-9", EXPORTER));
    f.rejects(
        "DUPLICATE_ORDER",
        "de-importer-other",
        "trade.order_placed",
        order("PO-9", EXPORTER),
    );
    f.rejects("UNKNOWN_ORDER", EXPORTER, "trade.order_accepted", json!({"order_id": "PO-404"}));
    f.rejects(
        "NOT_ORDER_SELLER",
        "cn-exporter-other",
        "trade.order_accepted",
        json!({"order_id": "PO-9"}),
    );
    f.ok(EXPORTER, "trade.order_accepted", json!({"order_id": "PO-9"}));
    f.rejects(
        "ORDER_ALREADY_ACCEPTED",
        EXPORTER,
        "trade.order_accepted",
        json!({"order_id": "PO-9"}),
    );
}

#[test]
fn invoices() {
    let mut f = Fixture::new(1);
    f.ok(IMPORTER, "trade.order_placed", order("PO-9", EXPORTER));
    let inv = |id: &str, amount: &str, currency: &str| json!({"invoice_id": id, "order_id": "PO-9", "currency": currency, "amount": amount, "due_date": "2099-01-01"});
    f.rejects("ORDER_NOT_ACCEPTED", EXPORTER, "trade.invoice_issued", inv("I-1", "10.00", "USD"));
    f.ok(EXPORTER, "trade.order_accepted", json!({"order_id": "PO-9"}));
    f.rejects(
        "NOT_ORDER_SELLER",
        "cn-exporter-other",
        "trade.invoice_issued",
        inv("I-1", "10.00", "USD"),
    );
    f.rejects("CURRENCY_MISMATCH", EXPORTER, "trade.invoice_issued", inv("I-1", "10.00", "EUR"));
    f.rejects(
        "INVOICE_EXCEEDS_ORDER",
        EXPORTER,
        "trade.invoice_issued",
        inv("I-1", "1000.01", "USD"),
    );
    f.ok(EXPORTER, "trade.invoice_issued", inv("I-1", "600.00", "USD"));
    f.rejects("DUPLICATE_INVOICE", EXPORTER, "trade.invoice_issued", inv("I-1", "1.00", "USD"));
    f.rejects(
        "INVOICE_EXCEEDS_ORDER",
        EXPORTER,
        "trade.invoice_issued",
        inv("I-2", "400.01", "USD"),
    );
    f.ok(EXPORTER, "trade.invoice_issued", inv("I-2", "400.00", "USD"));
    f.rejects("UNKNOWN_ORDER", EXPORTER, "trade.invoice_issued",
        json!({"invoice_id": "I-3", "order_id": "PO-404", "currency": "USD", "amount": "1.00", "due_date": "2099-01-01"}));
}

fn booking(id: &str, orders: &[&str], forwarder: &str) -> serde_json::Value {
    json!({"shipment_id": id, "order_ids": orders, "forwarder": forwarder, "origin": "CNSZX",
        "destination": "DEHAM", "mode": "sea", "containers": ["CSQU3054383"], "packages": 10, "gross_kg": "100"})
}

#[test]
fn shipments_are_booked_for_accepted_orders_with_a_forwarder() {
    let mut f = Fixture::new(1);
    f.ok(IMPORTER, "trade.order_placed", order("PO-9", EXPORTER));
    f.rejects(
        "ORDER_NOT_ACCEPTED",
        EXPORTER,
        "shipment.booked",
        booking("S-1", &["PO-9"], FORWARDER),
    );
    f.ok(EXPORTER, "trade.order_accepted", json!({"order_id": "PO-9"}));
    f.rejects(
        "ROLE_NOT_PERMITTED",
        IMPORTER,
        "shipment.booked",
        booking("S-1", &["PO-9"], FORWARDER),
    );
    f.rejects(
        "UNKNOWN_FORWARDER",
        EXPORTER,
        "shipment.booked",
        booking("S-1", &["PO-9"], IMPORTER),
    );
    f.rejects("UNKNOWN_ORDER", EXPORTER, "shipment.booked", booking("S-1", &["PO-404"], FORWARDER));
    f.rejects(
        "NOT_ORDER_SELLER",
        "cn-exporter-other",
        "shipment.booked",
        booking("S-1", &["PO-9"], FORWARDER),
    );
    f.rejects(
        "NOT_BOOKED_FORWARDER",
        "forwarder-other",
        "shipment.booked",
        booking("S-1", &["PO-9"], FORWARDER),
    );
    f.rejects(
        "INVALID_FIELD",
        EXPORTER,
        "shipment.booked",
        booking("S-1", &["PO-9", "PO-9"], FORWARDER),
    );
    f.ok(FORWARDER, "shipment.booked", booking("S-1", &["PO-9"], FORWARDER));
    f.rejects(
        "DUPLICATE_SHIPMENT",
        EXPORTER,
        "shipment.booked",
        booking("S-1", &["PO-9"], FORWARDER),
    );
}

fn milestone(shipment: &str, location: &str) -> serde_json::Value {
    json!({"shipment_id": shipment, "location": location, "event_time_ms": 5})
}

#[test]
fn transport_milestones_follow_clearance_and_order() {
    let mut f = Fixture::new(1);
    let filed = Fixture::step("customs.declaration_filed", Some(FORWARDER));
    f.run_trade(1, filed);
    f.rejects("UNKNOWN_SHIPMENT", FORWARDER, "shipment.picked_up", milestone("S-404", "CNSZX"));
    f.rejects(
        "NOT_BOOKED_FORWARDER",
        "forwarder-other",
        "shipment.picked_up",
        milestone("SHP-1", "CNSZX"),
    );
    f.rejects("ROLE_NOT_PERMITTED", EXPORTER, "shipment.picked_up", milestone("SHP-1", "CNSZX"));
    let (code, message) =
        f.rejection(FORWARDER, "shipment.arrived", milestone("SHP-1", "DEHAM")).unwrap();
    assert_eq!(code, "SHIPMENT_OUT_OF_ORDER");
    assert_eq!(
        message, "shipment SHP-1 is booked; shipment.arrived may come only when it is departed",
        "the statuses in words, not Rust's debug form"
    );
    f.ok(FORWARDER, "shipment.picked_up", milestone("SHP-1", "CNSZX"));
    f.rejects(
        "SHIPMENT_OUT_OF_ORDER",
        FORWARDER,
        "shipment.picked_up",
        milestone("SHP-1", "CNSZX"),
    );
    // An export shipment departs only after export clearance.
    f.rejects("EXPORT_NOT_CLEARED", FORWARDER, "shipment.departed", milestone("SHP-1", "CNYTN"));
    f.run_trade_steps(1, filed, filed + 2);
    f.ok(FORWARDER, "shipment.departed", milestone("SHP-1", "CNYTN"));
    f.ok(FORWARDER, "shipment.arrived", milestone("SHP-1", "SGSIN"));
    // Transshipment: a new leg departs from the hub.
    f.ok(FORWARDER, "shipment.departed", milestone("SHP-1", "SGSIN"));
    f.ok(FORWARDER, "shipment.arrived", milestone("SHP-1", "DEHAM"));
    // Delivered only after import clearance at the destination.
    f.rejects("IMPORT_NOT_CLEARED", FORWARDER, "shipment.delivered", milestone("SHP-1", "DEHAM"));
    f.rejects(
        "SHIPMENT_OUT_OF_ORDER",
        IMPORTER,
        "shipment.received",
        json!({"shipment_id": "SHP-1", "condition": "ok"}),
    );
    f.ok(FORWARDER, "shipment.exception", json!({"shipment_id": "SHP-1", "exception_type": "delay", "description": "port congestion"}));
    f.rejects(
        "NOT_BOOKED_FORWARDER",
        "forwarder-other",
        "shipment.exception",
        json!({"shipment_id": "SHP-1", "exception_type": "delay", "description": "x"}),
    );
    f.ok(IMPORTER, "customs.declaration_filed", import_decl("IMD-1", "SHP-1"));
    f.ok(DE_CUSTOMS, "customs.cleared", json!({"declaration_id": "IMD-1"}));
    f.ok(FORWARDER, "shipment.delivered", milestone("SHP-1", "DEHAM"));
    f.rejects(
        "NOT_ORDER_BUYER",
        "de-importer-other",
        "shipment.received",
        json!({"shipment_id": "SHP-1", "condition": "ok"}),
    );
    f.ok(
        IMPORTER,
        "shipment.received",
        json!({"shipment_id": "SHP-1", "condition": "damaged", "note": "2 cartons wet"}),
    );
    f.rejects(
        "SHIPMENT_OUT_OF_ORDER",
        IMPORTER,
        "shipment.received",
        json!({"shipment_id": "SHP-1", "condition": "ok"}),
    );
}

fn import_decl(id: &str, shipment: &str) -> serde_json::Value {
    json!({"declaration_id": id, "shipment_id": shipment, "direction": "import", "country": "DE",
        "declared_value": "48000.00", "currency": "USD", "hs_codes": ["940542"]})
}

fn export_decl(id: &str, country: &str) -> serde_json::Value {
    json!({"declaration_id": id, "shipment_id": "SHP-1", "direction": "export", "country": country,
        "declared_value": "48000.00", "currency": "USD", "hs_codes": ["940542"]})
}

#[test]
fn customs_declarations_and_decisions() {
    let mut f = Fixture::new(1);
    f.run_trade(1, Fixture::step("customs.declaration_filed", Some(FORWARDER)));
    f.rejects("UNKNOWN_SHIPMENT", FORWARDER, "customs.declaration_filed",
        json!({"declaration_id": "X", "shipment_id": "S-404", "direction": "export", "country": "CN",
            "declared_value": "1.00", "currency": "USD", "hs_codes": ["940542"]}));
    f.rejects("NOT_DECLARANT", IMPORTER, "customs.declaration_filed", export_decl("EXD-9", "CN"));
    f.rejects(
        "NOT_DECLARANT",
        "forwarder-other",
        "customs.declaration_filed",
        export_decl("EXD-9", "CN"),
    );
    f.rejects(
        "DECLARATION_COUNTRY_MISMATCH",
        EXPORTER,
        "customs.declaration_filed",
        export_decl("EXD-9", "DE"),
    );
    f.rejects(
        "ROLE_NOT_PERMITTED",
        CN_CUSTOMS,
        "customs.declaration_filed",
        export_decl("EXD-9", "CN"),
    );
    f.ok(EXPORTER, "customs.declaration_filed", export_decl("EXD-9", "CN"));
    f.rejects(
        "DECLARATION_EXISTS",
        FORWARDER,
        "customs.declaration_filed",
        export_decl("EXD-10", "CN"),
    );
    f.rejects(
        "DUPLICATE_DECLARATION",
        EXPORTER,
        "customs.declaration_filed",
        export_decl("EXD-9", "CN"),
    );
    // Customs act only in their own country.
    f.rejects(
        "CUSTOMS_WRONG_COUNTRY",
        DE_CUSTOMS,
        "customs.cleared",
        json!({"declaration_id": "EXD-9"}),
    );
    f.rejects(
        "ROLE_NOT_PERMITTED",
        EXPORTER,
        "customs.cleared",
        json!({"declaration_id": "EXD-9"}),
    );
    f.rejects(
        "UNKNOWN_DECLARATION",
        CN_CUSTOMS,
        "customs.cleared",
        json!({"declaration_id": "EXD-404"}),
    );
    f.rejects("INVALID_FIELD", CN_CUSTOMS, "customs.held", json!({"declaration_id": "EXD-9"}));
    f.ok(
        CN_CUSTOMS,
        "customs.held",
        json!({"declaration_id": "EXD-9", "reason": "HS code 940542 undervalued"}),
    );
    f.rejects(
        "DECLARATION_ALREADY_DECIDED",
        CN_CUSTOMS,
        "customs.held",
        json!({"declaration_id": "EXD-9", "reason": "again"}),
    );
    // A held declaration is not cleared without a new filing.
    f.rejects(
        "DECLARATION_HELD",
        CN_CUSTOMS,
        "customs.cleared",
        json!({"declaration_id": "EXD-9"}),
    );
    f.rejects("EXPORT_NOT_CLEARED", FORWARDER, "shipment.departed", milestone("SHP-1", "CNYTN"));
    f.ok(EXPORTER, "customs.declaration_filed", export_decl("EXD-9", "CN"));
    f.ok(
        CN_CUSTOMS,
        "customs.duties_assessed",
        json!({"declaration_id": "EXD-9", "amount": "12.00", "currency": "CNY"}),
    );
    f.ok(CN_CUSTOMS, "customs.cleared", json!({"declaration_id": "EXD-9"}));
    f.rejects(
        "DECLARATION_ALREADY_DECIDED",
        CN_CUSTOMS,
        "customs.cleared",
        json!({"declaration_id": "EXD-9"}),
    );
    f.rejects(
        "DECLARATION_ALREADY_DECIDED",
        CN_CUSTOMS,
        "customs.held",
        json!({"declaration_id": "EXD-9", "reason": "late"}),
    );
    f.rejects(
        "CUSTOMS_WRONG_COUNTRY",
        DE_CUSTOMS,
        "customs.duties_assessed",
        json!({"declaration_id": "EXD-9", "amount": "1.00", "currency": "EUR"}),
    );
    f.ok(FORWARDER, "shipment.picked_up", milestone("SHP-1", "CNSZX"));
    f.ok(FORWARDER, "shipment.departed", milestone("SHP-1", "CNYTN"));
    // A new declaration id after a hold is allowed too (and only one live one per direction).
    f.ok(IMPORTER, "customs.declaration_filed", import_decl("IMD-1", "SHP-1"));
    f.ok(DE_CUSTOMS, "customs.held", json!({"declaration_id": "IMD-1", "reason": "inspection"}));
    f.ok(FORWARDER, "customs.declaration_filed", import_decl("IMD-2", "SHP-1"));
    f.rejects(
        "DECLARATION_EXISTS",
        IMPORTER,
        "customs.declaration_filed",
        import_decl("IMD-3", "SHP-1"),
    );
    f.ok(DE_CUSTOMS, "customs.cleared", json!({"declaration_id": "IMD-2"}));
}

fn doc(id: &str, refs: &[&str]) -> serde_json::Value {
    json!({"doc_type": "packing_list", "doc_id": id, "sha256": "ab".repeat(32), "refs": refs})
}

#[test]
fn documents_are_anchored_by_parties_to_existing_entities() {
    let mut f = Fixture::new(1);
    f.run_trade(1, Fixture::step("customs.declaration_filed", Some(FORWARDER)) + 1);
    f.rejects("UNKNOWN_REFERENCE", EXPORTER, "document.anchored", doc("D-1", &["order:PO-404"]));
    f.rejects("INVALID_FIELD", EXPORTER, "document.anchored", doc("D-1", &["ship:SHP-1"]));
    f.rejects("NOT_A_PARTY", EXPORTER_BANK, "document.anchored", doc("D-1", &["order:PO-1"]));
    f.rejects(
        "NOT_A_PARTY",
        "forwarder-other",
        "document.anchored",
        doc("D-1", &["shipment:SHP-1"]),
    );
    f.rejects(
        "ROLE_NOT_PERMITTED",
        "auditor-kpmg",
        "document.anchored",
        doc("D-1", &["order:PO-1"]),
    );
    f.ok(FORWARDER, "document.anchored", doc("D-1", &["shipment:SHP-1"]));
    f.ok(CN_CUSTOMS, "document.anchored", doc("D-2", &["declaration:EXD-CN-1"]));
    f.ok(EXPORTER_BANK, "document.anchored", doc("D-3", &["lc:LC-1"]));
    f.ok(IMPORTER, "document.anchored", doc("D-4", &["invoice:INV-1"]));
    f.rejects("DUPLICATE_DOCUMENT", IMPORTER, "document.anchored", doc("D-4", &["order:PO-1"]));
    let trace = f.ledger.trace("shipment:SHP-1").unwrap();
    assert!(
        trace.iter().any(|r| r.body["doc_id"] == "D-1"),
        "documents show in the shipment's trace"
    );
}

fn lc(
    id: &str,
    applicant: &str,
    beneficiary: &str,
    currency: &str,
    amount: &str,
    expiry: &str,
) -> serde_json::Value {
    json!({"lc_id": id, "order_id": "PO-1", "applicant": applicant, "beneficiary": beneficiary,
        "currency": currency, "amount": amount, "expiry": expiry})
}

fn pay(id: &str, lc: Option<&str>, amount: &str) -> serde_json::Value {
    let mut p = json!({"payment_id": id, "invoice_id": "INV-1", "payer": IMPORTER, "payee": EXPORTER,
        "currency": "USD", "amount": amount});
    if let Some(lc) = lc {
        p["lc_id"] = json!(lc);
    }
    p
}

#[test]
fn letters_of_credit_and_payments() {
    let mut f = Fixture::new(1);
    f.run_trade(1, 2); // order placed and accepted
    f.rejects(
        "ROLE_NOT_PERMITTED",
        IMPORTER,
        "payment.lc_issued",
        lc("LC-9", IMPORTER, EXPORTER, "USD", "100.00", "2099-01-01"),
    );
    f.rejects(
        "LC_PARTY_MISMATCH",
        IMPORTER_BANK,
        "payment.lc_issued",
        lc("LC-9", "de-importer-other", EXPORTER, "USD", "100.00", "2099-01-01"),
    );
    f.rejects(
        "CURRENCY_MISMATCH",
        IMPORTER_BANK,
        "payment.lc_issued",
        lc("LC-9", IMPORTER, EXPORTER, "EUR", "100.00", "2099-01-01"),
    );
    f.ok(
        IMPORTER_BANK,
        "payment.lc_issued",
        lc("LC-9", IMPORTER, EXPORTER, "USD", "100.00", "2099-01-01"),
    );
    f.rejects(
        "DUPLICATE_LC",
        IMPORTER_BANK,
        "payment.lc_issued",
        lc("LC-9", IMPORTER, EXPORTER, "USD", "100.00", "2099-01-01"),
    );
    f.ok(
        IMPORTER_BANK,
        "payment.lc_issued",
        lc("LC-OLD", IMPORTER, EXPORTER, "USD", "48000.00", "2000-01-01"),
    );
    f.run_trade_steps(1, 2, Fixture::step("document.anchored", Some(EXPORTER)) + 1);
    f.rejects(
        "UNKNOWN_LC",
        EXPORTER_BANK,
        "payment.documents_presented",
        json!({"lc_id": "LC-404", "doc_ids": ["CI-1"]}),
    );
    f.rejects(
        "UNKNOWN_DOCUMENT",
        EXPORTER_BANK,
        "payment.documents_presented",
        json!({"lc_id": "LC-1", "doc_ids": ["CI-404"]}),
    );
    f.rejects(
        "NOT_A_PARTY",
        "us-bank-other",
        "payment.documents_presented",
        json!({"lc_id": "LC-1", "doc_ids": ["CI-1"]}),
    );
    f.rejects(
        "NOT_A_PARTY",
        IMPORTER_BANK,
        "payment.documents_presented",
        json!({"lc_id": "LC-1", "doc_ids": ["CI-1"]}),
    );
    f.rejects(
        "LC_EXPIRED",
        EXPORTER,
        "payment.documents_presented",
        json!({"lc_id": "LC-OLD", "doc_ids": ["CI-1"]}),
    );
    // Payment under a credit needs presented documents, the issuing bank, and headroom.
    f.rejects(
        "LC_DOCUMENTS_NOT_PRESENTED",
        IMPORTER_BANK,
        "payment.settled",
        pay("P-1", Some("LC-1"), "10.00"),
    );
    f.ok(EXPORTER, "payment.documents_presented", json!({"lc_id": "LC-9", "doc_ids": ["CI-1"]}));
    f.ok(
        EXPORTER_BANK,
        "payment.documents_presented",
        json!({"lc_id": "LC-1", "doc_ids": ["CI-1"]}),
    );
    f.rejects(
        "NOT_ISSUING_BANK",
        EXPORTER_BANK,
        "payment.settled",
        pay("P-1", Some("LC-1"), "10.00"),
    );
    f.rejects("LC_OVERDRAWN", IMPORTER_BANK, "payment.settled", pay("P-1", Some("LC-9"), "100.01"));
    f.rejects("UNKNOWN_LC", IMPORTER_BANK, "payment.settled", pay("P-1", Some("LC-404"), "1.00"));
    f.rejects("UNKNOWN_INVOICE", IMPORTER_BANK, "payment.settled",
        json!({"payment_id": "P-1", "invoice_id": "INV-404", "payer": IMPORTER, "payee": EXPORTER, "currency": "USD", "amount": "1.00"}));
    f.rejects("PAYMENT_PARTY_MISMATCH", IMPORTER_BANK, "payment.settled",
        json!({"payment_id": "P-1", "invoice_id": "INV-1", "payer": "de-importer-other", "payee": EXPORTER, "currency": "USD", "amount": "1.00"}));
    f.rejects("CURRENCY_MISMATCH", IMPORTER_BANK, "payment.settled",
        json!({"payment_id": "P-1", "invoice_id": "INV-1", "payer": IMPORTER, "payee": EXPORTER, "currency": "EUR", "amount": "1.00"}));
    // Open account: reported by the payer's bank.
    f.rejects("PAYMENT_PARTY_MISMATCH", EXPORTER_BANK, "payment.settled", pay("P-1", None, "1.00"));
    f.rejects("ROLE_NOT_PERMITTED", IMPORTER, "payment.settled", pay("P-1", None, "1.00"));
    f.ok(IMPORTER_BANK, "payment.settled", pay("P-1", Some("LC-9"), "100.00"));
    f.rejects("DUPLICATE_PAYMENT", IMPORTER_BANK, "payment.settled", pay("P-1", None, "1.00"));
    f.ok(IMPORTER_BANK, "payment.settled", pay("P-2", None, "47000.00"));
    // Settled amounts never exceed the invoice.
    f.rejects("OVERPAYMENT", IMPORTER_BANK, "payment.settled", pay("P-3", None, "900.01"));
    f.ok(IMPORTER_BANK, "payment.settled", pay("P-3", None, "900.00"));
    f.rejects("OVERPAYMENT", IMPORTER_BANK, "payment.settled", pay("P-4", None, "0.01"));
    let status = f.ledger.trade_status("PO-1").unwrap();
    assert!(status.legs.iter().any(|l| l.leg == "paid" && l.done));
}
