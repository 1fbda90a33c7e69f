//! ed25519 edge cases (testdata/ed25519_edge_vectors.json): the "Taming the many EdDSAs" vectors,
//! malleated scalars of RFC 8032 TEST 1, and the ZIP 215 grid of small-order `A` and `R`
//! encodings. For each, `verify_strict` (as wrapped by `PublicKey::verify`), the prepared
//! verifier one at a time (`PreparedKey::verify_parts`) and in one batch (`start_verify` +
//! `finish_verify_batch`) must all give the vector's verdict. The properties each vector claims
//! (small order, non-canonical encodings, s >= L, ...) are checked from its bytes, and the verdict
//! is checked to follow from the strict rules, so the file cannot silently drift.

// Helpers outside #[test] functions panic on a malformed vectors file: that is the test failing.
#![allow(clippy::expect_used)]

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::Scalar;
use sha2::{Digest, Sha512};
use tradeloop_crypto::{finish_verify_batch, PreparedKey, PublicKey, Signature};

struct Vector {
    id: String,
    key: [u8; 32],
    message: Vec<u8>,
    signature: Signature,
    accept: bool,
    properties: Vec<String>,
}

fn hex_array<const N: usize>(text: &str) -> [u8; N] {
    let bytes = hex::decode(text).expect("hex");
    bytes.try_into().expect("length")
}

fn load() -> (Vec<Vector>, Vec<([u8; 32], bool)>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/ed25519_edge_vectors.json");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("read vectors")).expect("json");
    let vectors = doc["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .map(|v| Vector {
            id: v["id"].as_str().expect("id").to_string(),
            key: hex_array(v["pub_key"].as_str().expect("pub_key")),
            message: hex::decode(v["message"].as_str().expect("message")).expect("hex"),
            signature: Signature(hex_array(v["signature"].as_str().expect("signature"))),
            accept: match v["expected"].as_str().expect("expected") {
                "accept" => true,
                "reject" => false,
                other => panic!("verdict {other}"),
            },
            properties: v["properties"]
                .as_array()
                .expect("properties")
                .iter()
                .map(|p| p.as_str().expect("property").to_string())
                .collect(),
        })
        .collect();
    let encodings = doc["small_order_encodings"]
        .as_array()
        .expect("encodings")
        .iter()
        .map(|e| {
            (
                hex_array(e["encoding"].as_str().expect("encoding")),
                e["canonical"].as_bool().expect("canonical"),
            )
        })
        .collect();
    (vectors, encodings)
}

/// The properties of a point encoding, computed here.
fn point_properties(name: &str, bytes: &[u8; 32], out: &mut Vec<String>) -> Option<EdwardsPoint> {
    let point = CompressedEdwardsY(*bytes).decompress()?;
    if point.compress().to_bytes() != *bytes {
        out.push(format!("{name}_non_canonical"));
    }
    if point.is_small_order() {
        out.push(format!("{name}_small_order"));
    } else if !point.is_torsion_free() {
        out.push(format!("{name}_mixed_order"));
    }
    Some(point)
}

/// What the strict rules say, evaluated directly: s < L; R canonical, a point, not of small
/// order; A a point, not of small order; `[s]B == R + [k]A` with `k = SHA-512(R || A || M)`.
/// Also returns the properties found.
fn strict_rules(key: &[u8; 32], message: &[u8], signature: &Signature) -> (bool, Vec<String>) {
    let mut properties = Vec::new();
    let r_bytes: [u8; 32] = signature.0[..32].try_into().expect("R");
    let s_bytes: [u8; 32] = signature.0[32..].try_into().expect("s");
    if s_bytes == [0; 32] {
        properties.push("s_zero".to_string());
    }
    if s_bytes[31] & 0x80 != 0 {
        properties.push("s_high_bit".to_string());
    }
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes));
    if s.is_none() {
        properties.push("s_non_canonical".to_string());
    }
    let a = point_properties("A", key, &mut properties);
    let r = point_properties("R", &r_bytes, &mut properties);
    let refused = |p: &str| properties.iter().any(|q| q == p);
    let (Some(s), Some(a), Some(r)) = (s, a, r) else {
        return (false, properties);
    };
    if refused("R_non_canonical") || refused("R_small_order") || refused("A_small_order") {
        return (false, properties);
    }
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(key);
    h.update(message);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    (ED25519_BASEPOINT_POINT * s == r + a * k, properties)
}

/// The three verifiers' verdicts on one vector: verify_strict, verify_parts (message split in
/// two), and start_verify alone (None when it already refuses; the batch completes the rest).
fn verdicts(v: &Vector) -> (bool, bool, Option<tradeloop_crypto::PendingSignature>) {
    let Ok(key) = PublicKey::from_bytes(v.key) else {
        // Not a point: no key, so nothing can verify under it.
        return (false, false, None);
    };
    let strict = key.verify(&v.message, &v.signature).is_ok();
    let prepared = PreparedKey::new(&key);
    let half = v.message.len() / 2;
    let parts = prepared.verify_parts(&[&v.message[..half], &v.message[half..]], &v.signature);
    let pending = prepared.start_verify(&[&v.message], &v.signature).ok();
    (strict, parts.is_ok(), pending)
}

fn check_all(vectors: &[Vector]) {
    let mut pending = Vec::new();
    for v in vectors {
        let (rules, properties) = strict_rules(&v.key, &v.message, &v.signature);
        for claimed in &v.properties {
            assert!(properties.contains(claimed), "{}: claims {claimed}, has {properties:?}", v.id);
        }
        assert_eq!(rules, v.accept, "{}: the strict rules give {rules}", v.id);
        let (strict, parts, started) = verdicts(v);
        assert_eq!(strict, v.accept, "{}: verify_strict", v.id);
        assert_eq!(parts, v.accept, "{}: PreparedKey::verify_parts", v.id);
        if let Some(p) = started {
            pending.push((v, p));
        } else {
            assert!(!v.accept, "{}: start_verify refused a valid signature", v.id);
        }
    }
    let items: Vec<_> = pending.iter().map(|(_, p)| *p).collect();
    let batch = finish_verify_batch(&items);
    assert_eq!(batch.len(), items.len());
    for ((v, _), verdict) in pending.iter().zip(batch) {
        assert_eq!(verdict.is_ok(), v.accept, "{}: start_verify + finish_verify_batch", v.id);
    }
}

#[test]
fn published_and_derived_edge_vectors() {
    let (vectors, _) = load();
    assert_eq!(vectors.iter().filter(|v| v.id.starts_with("speccheck-")).count(), 15);
    assert!(vectors.iter().any(|v| v.accept) && vectors.iter().any(|v| !v.accept));
    check_all(&vectors);
}

/// ZIP 215 accepts every (A, R) pair of small-order encodings with s = 0 (the cofactored
/// equation holds trivially); strict verification must refuse all 196, and so must we.
#[test]
fn zip215_small_order_grid_is_refused() {
    let (_, encodings) = load();
    assert_eq!(encodings.len(), 14);
    for (bytes, canonical) in &encodings {
        let point = CompressedEdwardsY(*bytes).decompress().expect("a point");
        assert!(point.is_small_order(), "{}", hex::encode(bytes));
        assert_eq!(point.compress().to_bytes() == *bytes, *canonical, "{}", hex::encode(bytes));
    }
    let mut grid = Vec::new();
    for (a, _) in &encodings {
        for (r, _) in &encodings {
            let mut signature = Signature([0; 64]);
            signature.0[..32].copy_from_slice(r);
            grid.push(Vector {
                id: format!("zip215 A={} R={}", hex::encode(a), hex::encode(r)),
                key: *a,
                message: b"Zcash".to_vec(),
                signature,
                accept: false,
                properties: vec!["A_small_order".into(), "R_small_order".into(), "s_zero".into()],
            });
        }
    }
    assert_eq!(grid.len(), 196);
    check_all(&grid);
}
