//! Test vectors for signing from other languages (testdata/event_vectors.json, quoted in
//! docs/signing.md). Regenerate with `TRADELOOP_WRITE_VECTORS=1 cargo test -p tradeloop-ledger
//! --test it vectors` only when the format deliberately changes.

use serde_json::{json, Value};
use tradeloop_crypto::SigningKey;
use tradeloop_ledger::SignedEvent;

fn path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/event_vectors.json")
}

fn compute() -> Value {
    let chain = "3f1c2a5e9b7d4c6a8e0f1b2d3c4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60";
    let cases = [
        (
            "order_accepted",
            "vector-exporter",
            json!({
            "chain": chain, "author": "cn-exporter-bright", "kind": "trade.order_accepted",
            "time_ms": 1_780_000_000_000u64, "nonce": "a1", "order_id": "PO-1"}),
        ),
        (
            "order_placed_unicode",
            "vector-importer",
            json!({
            "chain": chain, "author": "de-importer-hanse", "kind": "trade.order_placed",
            "time_ms": 1_780_000_000_001u64, "nonce": 42, "order_id": "PO-ü-1", "seller": "cn-exporter-bright",
            "incoterm": "FOB", "currency": "USD", "amount": "48000.00",
            "lines": [{"sku": "BR-LED-40", "description": "LED \"panel\"\t40W — 灯", "hs_code": "940542",
                "quantity": "2000", "unit": "PCE"}]}),
        ),
        (
            "shipment_departed",
            "vector-forwarder",
            json!({
            "chain": chain, "author": "forwarder-pacific-link", "kind": "shipment.departed",
            "time_ms": 1_780_000_000_002u64, "nonce": "d-7", "shipment_id": "SHP-1", "location": "CNYTN",
            "event_time_ms": 1_779_999_990_000u64, "vessel_imo": "9811000", "voyage": "045W"}),
        ),
    ];
    let mut out = Vec::new();
    for (name, label, mut body) in cases {
        let key = SigningKey::from_seed_label(label);
        body["key"] = json!(key.public_key().to_hex());
        let signed = SignedEvent::sign(&body, &key).unwrap();
        out.push(json!({
            "name": name,
            "secret_key": hex::encode(key.secret_bytes()),
            "public_key": key.public_key().to_hex(),
            "body": body,
            "canonical": String::from_utf8(signed.body.clone()).unwrap(),
            "canonical_hex": hex::encode(&signed.body),
            "signing_bytes_hex": hex::encode(signed.signing_bytes()),
            "event_id": signed.id().to_hex(),
            "signature": signed.signature.to_hex(),
        }));
    }
    Value::Array(out)
}

#[test]
fn vectors_match_the_committed_file() {
    let computed = compute();
    if std::env::var_os("TRADELOOP_WRITE_VECTORS").is_some() {
        std::fs::write(path(), serde_json::to_string_pretty(&computed).unwrap() + "\n").unwrap();
    }
    let text = std::fs::read_to_string(path()).expect("testdata/event_vectors.json");
    let committed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(committed, computed, "the signing format changed: this breaks every integration");
}
