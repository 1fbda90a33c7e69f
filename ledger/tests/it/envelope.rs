//! The signed envelope: canonical form, chain, key, signature, replay, nonce, skew, syntax.

use serde_json::json;
use tradeloop_crypto::SigningKey;
use tradeloop_ledger::sample::ids::*;
use tradeloop_ledger::sample::Cast;
use tradeloop_ledger::{check_event, SignedEvent};

use crate::support::*;

fn accept(id: &str) -> serde_json::Value {
    json!({"order_id": id})
}

fn body(
    f: &Fixture,
    author: &str,
    key: &SigningKey,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut b = json!({"chain": f.cast.genesis.hash.to_hex(), "author": author, "key": key.public_key().to_hex(),
        "kind": "trade.order_placed", "time_ms": f.time_ms + 1000, "nonce": "x1",
        "order_id": "PO-7", "seller": EXPORTER, "incoterm": "FOB", "currency": "USD", "amount": "5.00",
        "lines": [{"sku": "A", "description": "d", "hs_code": "940542", "quantity": "1", "unit": "PCE"}]});
    if let (Some(b), Some(extra)) = (b.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if v.is_null() {
                b.remove(k);
            } else {
                b.insert(k.clone(), v.clone());
            }
        }
    }
    b
}

fn code_of(f: &mut Fixture, event: SignedEvent) -> Option<String> {
    f.append(&[event]).first().map(|(_, r)| r.code.as_str())
}

#[test]
fn wrong_chain_wrong_key_and_bad_signature_are_rejected() {
    let mut f = Fixture::new(1);
    let importer = f.cast.keys[IMPORTER].clone();
    let exporter = f.cast.keys[EXPORTER].clone();
    // Signed for another chain.
    let other = Cast::deterministic(1, 5).unwrap();
    let e = SignedEvent::sign(
        &body(&f, IMPORTER, &importer, json!({"chain": other.genesis.hash.to_hex()})),
        &importer,
    )
    .unwrap();
    assert_eq!(code_of(&mut f, e).as_deref(), Some("WRONG_CHAIN"));
    // The exporter's key signing as the importer.
    let e = SignedEvent::sign(&body(&f, IMPORTER, &exporter, json!({})), &exporter).unwrap();
    assert_eq!(code_of(&mut f, e).as_deref(), Some("KEY_NOT_AUTHORIZED"));
    // The importer's key named, but the exporter signed.
    let e = SignedEvent::sign(&body(&f, IMPORTER, &importer, json!({})), &exporter).unwrap();
    assert_eq!(code_of(&mut f, e).as_deref(), Some("BAD_SIGNATURE"));
    // A flipped signature bit.
    let mut e = SignedEvent::sign(&body(&f, IMPORTER, &importer, json!({})), &importer).unwrap();
    e.signature.0[5] ^= 1;
    assert_eq!(code_of(&mut f, e).as_deref(), Some("BAD_SIGNATURE"));
    // An unknown author.
    let e = SignedEvent::sign(&body(&f, "ghost", &importer, json!({})), &importer).unwrap();
    assert_eq!(code_of(&mut f, e).as_deref(), Some("UNKNOWN_PARTICIPANT"));
    // And the genuine one commits.
    let e = SignedEvent::sign(&body(&f, IMPORTER, &importer, json!({})), &importer).unwrap();
    assert_eq!(code_of(&mut f, e), None);
}

#[test]
fn replay_and_reused_nonces_are_rejected() {
    let mut f = Fixture::new(1);
    f.run_trade(1, 1);
    let e = f.sign(EXPORTER, "trade.order_accepted", accept("PO-1"));
    // Twice in one block: the second is a replay.
    let rejected = f.append(&[e.clone(), e.clone()]);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].0, 1);
    assert_eq!(rejected[0].1.code.as_str(), "DUPLICATE_EVENT");
    // Again in a later block.
    assert_eq!(code_of(&mut f, e.clone()).as_deref(), Some("DUPLICATE_EVENT"));
    // The same nonce with a different body.
    let exporter = f.cast.keys[EXPORTER].clone();
    let mut b: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
    b["order_id"] = json!("PO-2");
    let again = SignedEvent::sign(&b, &exporter).unwrap();
    assert_eq!(code_of(&mut f, again).as_deref(), Some("DUPLICATE_NONCE"));
    // Integer 1 and string "1" are different nonces.
    f.ok(IMPORTER, "trade.order_placed", json!({"order_id": "PO-2", "seller": EXPORTER, "incoterm": "FOB",
        "currency": "USD", "amount": "5.00",
        "lines": [{"sku": "A", "description": "d", "hs_code": "940542", "quantity": "1", "unit": "PCE"}]}));
    let mk = |nonce: serde_json::Value, order: &str, f: &Fixture| {
        let mut b = json!({"chain": f.cast.genesis.hash.to_hex(), "author": EXPORTER, "key": exporter.public_key().to_hex(),
            "kind": "trade.order_accepted", "time_ms": f.time_ms + 1000, "order_id": order});
        b["nonce"] = nonce;
        SignedEvent::sign(&b, &exporter).unwrap()
    };
    let e1 = mk(json!(1), "PO-2", &f);
    assert_eq!(code_of(&mut f, e1), None);
    let e2 = mk(json!("1"), "PO-404", &f);
    assert_eq!(
        code_of(&mut f, e2).as_deref(),
        Some("UNKNOWN_ORDER"),
        "a string nonce \"1\" is not the integer 1"
    );
}

#[test]
fn time_skew_is_bounded() {
    let mut f = Fixture::new(1);
    let importer = f.cast.keys[IMPORTER].clone();
    let skew = f.cast.genesis.doc.consensus.max_time_skew_ms;
    let e = SignedEvent::sign(
        &body(&f, IMPORTER, &importer, json!({"time_ms": f.time_ms + 1000 + skew + 1})),
        &importer,
    )
    .unwrap();
    assert_eq!(code_of(&mut f, e).as_deref(), Some("TIME_SKEW"));
    let e = SignedEvent::sign(
        &body(&f, IMPORTER, &importer, json!({"time_ms": f.time_ms + 1000 - skew - 1})),
        &importer,
    )
    .unwrap();
    assert_eq!(code_of(&mut f, e).as_deref(), Some("TIME_SKEW"));
    let e = SignedEvent::sign(
        &body(&f, IMPORTER, &importer, json!({"time_ms": f.time_ms + 1000 - skew})),
        &importer,
    )
    .unwrap();
    assert_eq!(code_of(&mut f, e), None);
}

#[test]
fn malformed_bodies_and_fields_are_rejected_with_codes() {
    let f = Fixture::new(1);
    let key = f.cast.keys[IMPORTER].clone();
    let g = &f.cast.genesis;
    let check = |b: serde_json::Value| -> String {
        match SignedEvent::sign(&b, &key) {
            Err(r) => r.code.as_str(),
            Ok(e) => check_event(g, &e).err().map(|r| r.code.as_str()).unwrap_or_default(),
        }
    };
    assert_eq!(
        check(body(&f, IMPORTER, &key, json!({"kind": "trade.order_cancelled"}))),
        "UNKNOWN_KIND"
    );
    assert_eq!(check(body(&f, IMPORTER, &key, json!({"nonce": null}))), "MALFORMED_EVENT");
    assert_eq!(check(body(&f, IMPORTER, &key, json!({"time_ms": "now"}))), "MALFORMED_EVENT");
    assert_eq!(check(body(&f, IMPORTER, &key, json!({"amount": 5}))), "INVALID_FIELD");
    assert_eq!(check(body(&f, IMPORTER, &key, json!({"amount": "5.0000001"}))), "INVALID_FIELD");
    assert_eq!(check(body(&f, IMPORTER, &key, json!({"currency": "usd"}))), "INVALID_FIELD");
    assert_eq!(check(body(&f, IMPORTER, &key, json!({"incoterm": "XYZ"}))), "INVALID_FIELD");
    assert_eq!(
        check(body(&f, IMPORTER, &key, json!({"amout": "5.00"}))),
        "INVALID_FIELD",
        "unknown fields are refused"
    );
    assert_eq!(check(body(&f, IMPORTER, &key, json!({"seller": null}))), "INVALID_FIELD");
    assert_eq!(check(body(&f, IMPORTER, &key, json!({"lines": []}))), "INVALID_FIELD");
    assert_eq!(
        check(body(&f, IMPORTER, &key, json!({"nonce": 9_007_199_254_740_992u64}))),
        "MALFORMED_EVENT"
    );
    let big = "x".repeat(70_000);
    assert_eq!(check(body(&f, IMPORTER, &key, json!({"ucr": big}))), "EVENT_TOO_LARGE");

    // Envelope JSON: duplicate keys, fractions, big integers and junk.
    let good = SignedEvent::sign(&body(&f, IMPORTER, &key, json!({})), &key).unwrap();
    let sig = good.signature.to_hex();
    let text = String::from_utf8(good.body.clone()).unwrap();
    for bad in [
        format!("{{\"body\":{},\"signature\":\"{sig}\",\"signature\":\"{sig}\"}}", text),
        format!(
            "{{\"body\":{},\"signature\":\"{sig}\"}}",
            text.replacen("{", "{\"nonce\":\"a\",", 1)
        ),
        format!(
            "{{\"body\":{},\"signature\":\"{sig}\"}}",
            text.replace("\"time_ms\":", "\"time_ms\":1.5,\"t\":")
        ),
        "[1,2]".to_string(),
        "{\"body\":{},\"signature\":\"zz\"}".to_string(),
        "not json".to_string(),
    ] {
        let r = SignedEvent::from_envelope_json(bad.as_bytes());
        assert_eq!(r.err().map(|r| r.code.as_str()).as_deref(), Some("MALFORMED_EVENT"), "{bad}");
    }
    // Stored bodies must be canonical: a re-spaced body with the same signature is refused.
    let spaced =
        SignedEvent { body: text.replace(",", ", ").into_bytes(), signature: good.signature };
    assert_eq!(
        check_event(g, &spaced).err().map(|r| r.code.as_str()).as_deref(),
        Some("MALFORMED_EVENT")
    );
}

#[test]
fn formatting_does_not_change_the_event_id() {
    let f = Fixture::new(1);
    let key = f.cast.keys[IMPORTER].clone();
    let e = SignedEvent::sign(&body(&f, IMPORTER, &key, json!({})), &key).unwrap();
    let text = String::from_utf8(e.body.clone()).unwrap();
    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(&text).unwrap())
            .unwrap();
    let envelope =
        format!("{{ \"signature\": \"{}\",\n  \"body\": {pretty} }}", e.signature.to_hex());
    let parsed = SignedEvent::from_envelope_json(envelope.as_bytes()).unwrap();
    assert_eq!(parsed.id(), e.id());
    assert!(check_event(&f.cast.genesis, &parsed).is_ok());
}

/// What a signer checks before signing (`check_unsigned_body`, used by `tradeloop event sign`)
/// is what the ledger checks after: the same verdict and code on every body, good or bad.
#[test]
fn checks_before_signing_agree_with_the_ledger() {
    use tradeloop_ledger::model::event::check_unsigned_body;
    let f = Fixture::new(1);
    let key = f.cast.keys[IMPORTER].clone();
    let other = f.cast.keys[EXPORTER].clone();
    let g = &f.cast.genesis;
    let bodies = [
        json!({}),
        json!({"kind": "trade.order_cancelled"}),
        json!({"nonce": null}),
        json!({"time_ms": "now"}),
        json!({"amount": "5.0000001"}),
        json!({"amount": "12,5"}),
        json!({"amout": "5.00"}),
        json!({"lines": []}),
        json!({"ucr": "x".repeat(70_000)}),
        json!({"chain": "00".repeat(32)}),
        json!({"author": "nobody"}),
        json!({"key": other.public_key().to_hex()}),
        json!({"author": EXPORTER}),
    ];
    for extra in bodies {
        let b = body(&f, IMPORTER, &key, extra.clone());
        let signed = SignedEvent::sign(&b, &key).unwrap();
        let after = check_event(g, &signed).err().map(|r| r.code.as_str());
        let before = check_unsigned_body(g, &signed.body).err().map(|r| r.code.as_str());
        assert_eq!(before, after, "{extra}");
    }
    // Strict parsing before signing refuses duplicate keys as the envelope parser does.
    let r =
        tradeloop_ledger::model::event::parse_body_json(br#"{"amount":"1.00","amount":"9.00"}"#);
    assert_eq!(r.err().map(|r| r.code.as_str()).as_deref(), Some("MALFORMED_EVENT"));
}

/// A booking's bad origin or destination is reported under its own name.
#[test]
fn a_bad_origin_is_named_origin() {
    let f = Fixture::new(1);
    let (author, kind, mut fields) = tradeloop_ledger::sample::trade_steps(1)
        .into_iter()
        .find(|(_, kind, _)| *kind == "shipment.booked")
        .unwrap();
    fields["origin"] = json!("Shanghai");
    let e = f.cast.sign(author, kind, fields, f.time_ms + 1000, "b1");
    let r = check_event(&f.cast.genesis, &e).unwrap_err();
    assert_eq!(r.code.as_str(), "INVALID_FIELD");
    assert!(r.message.contains("origin \"Shanghai\""), "{}", r.message);
}

/// A milestone's vessel and flight are checked by their forms: an IMO number by its check
/// digit, a flight by the IATA designator's shape.
#[test]
fn vessel_imo_numbers_and_flights_are_checked() {
    let f = Fixture::new(1);
    let g = &f.cast.genesis;
    let milestone = |extra: serde_json::Value| {
        let mut fields =
            json!({"shipment_id": "SHP-1", "location": "CNYTN", "event_time_ms": f.time_ms});
        if let (Some(m), Some(extra)) = (fields.as_object_mut(), extra.as_object()) {
            m.extend(extra.clone());
        }
        let e = f.cast.sign(FORWARDER, "shipment.departed", fields, f.time_ms + 1000, "m1");
        check_event(g, &e).err().map(|r| (r.code.as_str(), r.message))
    };
    assert_eq!(milestone(json!({"vessel_imo": "9811000", "voyage": "045W"})), None);
    let (_, message) = milestone(json!({"location": "hamburg"})).expect("refused");
    assert!(message.contains("location \"hamburg\""), "{message}");
    assert_eq!(milestone(json!({"flight": "LH400"})), None);
    for (extra, says) in [
        (json!({"vessel_imo": "abc"}), "not an IMO number"),
        (json!({"vessel_imo": "9811001"}), "wrong check digit"),
        (json!({"flight": "not a flight !!"}), "not an IATA flight designator"),
    ] {
        let (code, message) = milestone(extra.clone()).expect("refused");
        assert_eq!(code, "INVALID_FIELD", "{extra}");
        assert!(message.contains(says), "{extra}: {message}");
    }
}
