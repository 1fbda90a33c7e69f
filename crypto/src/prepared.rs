//! A verifier for one known key, with precomputed tables: the same verdict as
//! `verify_strict`, faster.
//!
//! A ledger verifies many signatures by few keys (the keys in its genesis). For each such key
//! this module precomputes width-8 NAF tables of both `B` and `-A` (about 20 KiB), so computing
//! `R' = [s]B + [k](-A)` needs no per-signature table and fewer point additions. `R'` is then
//! compressed and compared with the signature's `R` bytes, and many signatures share one field
//! inversion for that ([`finish_verify_batch`]); `verify_strict` spends a square root (to
//! decompress `R`) and an inversion per signature. The verdict is exactly `verify_strict`'s:
//! `s` canonical (`< l`), `R` a canonical encoding of a point that is not of small order, `A`
//! not of small order, and `R == [s]B - [k]A` with `k = SHA-512(R || A || M) mod l` (RFC 8032,
//! cofactorless). Property tests compare it with `verify_strict` on valid, mangled and crafted
//! signatures, one at a time and in batches.

use std::fmt;
use std::sync::OnceLock;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint, VartimeEdwardsPrecomputation};
use curve25519_dalek::traits::VartimePrecomputedMultiscalarMul;
use curve25519_dalek::Scalar;
use sha2::{Digest, Sha512};

use crate::{CryptoError, PublicKey, Signature};

/// A public key prepared for fast repeated verification.
pub struct PreparedKey {
    bytes: [u8; 32],
    /// Tables of `[B, -A]`.
    tables: VartimeEdwardsPrecomputation,
    small_order: bool,
}

impl fmt::Debug for PreparedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PreparedKey({})", hex::encode(self.bytes))
    }
}

impl PreparedKey {
    /// Precomputes the tables for `key` (about 30 µs).
    pub fn new(key: &PublicKey) -> PreparedKey {
        let bytes = *key.as_bytes();
        // The key parsed, so it decompresses; the fallback is the identity, which is of small
        // order and so never verifies.
        let a = CompressedEdwardsY(bytes).decompress().unwrap_or_default();
        PreparedKey {
            bytes,
            tables: VartimeEdwardsPrecomputation::new([ED25519_BASEPOINT_POINT, -a]),
            small_order: a.is_small_order(),
        }
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Verifies `signature` over the message `parts` concatenated, with `verify_strict`'s
    /// semantics.
    pub fn verify_parts(&self, parts: &[&[u8]], signature: &Signature) -> Result<(), CryptoError> {
        let pending = self.start_verify(parts, signature)?;
        finish_verify_batch(std::slice::from_ref(&pending))
            .pop()
            .unwrap_or(Err(CryptoError::BadSignature))
    }

    /// The first half of a verification: checks `s` and the key, hashes the message and
    /// computes `R' = [s]B - [k]A`. [`finish_verify_batch`] completes many of these with one
    /// field inversion between them.
    pub fn start_verify(
        &self,
        parts: &[&[u8]],
        signature: &Signature,
    ) -> Result<PendingSignature, CryptoError> {
        let mut r = [0u8; 32];
        r.copy_from_slice(&signature.0[..32]);
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(&signature.0[32..]);
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
            return Err(CryptoError::BadSignature);
        };
        if self.small_order {
            return Err(CryptoError::BadSignature);
        }
        let mut h = Sha512::new();
        h.update(r);
        h.update(self.bytes);
        for part in parts {
            h.update(part);
        }
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let expected: EdwardsPoint = self.tables.vartime_multiscalar_mul([s, k]);
        Ok(PendingSignature { expected, r })
    }
}

/// A verification started by [`PreparedKey::start_verify`]: the recomputed `R'` and the
/// signature's `R` bytes.
#[derive(Clone, Copy, Debug)]
pub struct PendingSignature {
    expected: EdwardsPoint,
    r: [u8; 32],
}

/// The canonical encodings of the eight points of small order.
fn small_order_encodings() -> &'static [[u8; 32]; 8] {
    static ENCODINGS: OnceLock<[[u8; 32]; 8]> = OnceLock::new();
    ENCODINGS.get_or_init(|| {
        let mut out = [[0u8; 32]; 8];
        for (slot, point) in out.iter_mut().zip(&curve25519_dalek::constants::EIGHT_TORSION) {
            *slot = point.compress().to_bytes();
        }
        out
    })
}

/// Completes verifications, one verdict per item, in order: `R'` is compressed (all of them
/// with one batch inversion) and must equal the signature's `R` bytes, which must not encode a
/// point of small order.
///
/// This is `verify_strict`'s verdict: it rejects unless `R` decompresses, is not of small order
/// and `compress(R') == R`. Compression yields only canonical encodings, and a canonical
/// encoding decompresses to the point it encodes, so `compress(R') == R` already implies that
/// `R` decompresses (to `R'`), and `R` is of small order exactly when its bytes are one of the
/// eight canonical small-order encodings. No square root per signature is needed.
pub fn finish_verify_batch(pending: &[PendingSignature]) -> Vec<Result<(), CryptoError>> {
    let points: Vec<EdwardsPoint> = pending.iter().map(|p| p.expected).collect();
    let compressed = EdwardsPoint::compress_batch_alloc(&points);
    let small = small_order_encodings();
    pending
        .iter()
        .zip(compressed)
        .map(|(p, c)| {
            if c.0 == p.r && !small.contains(&p.r) {
                Ok(())
            } else {
                Err(CryptoError::BadSignature)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::SigningKey;

    fn strict(key: &PublicKey, msg: &[u8], sig: &Signature) -> bool {
        key.verify(msg, sig).is_ok()
    }

    #[test]
    fn small_order_r_and_non_canonical_encodings_agree_with_strict() {
        let key = SigningKey::from_seed_label("prepared");
        let pk = key.public_key();
        let prepared = PreparedKey::new(&pk);
        let msg = b"m";
        let good = key.sign(msg);
        assert!(prepared.verify_parts(&[msg], &good).is_ok());
        // R = identity (small order), R = a non-canonical y, s = l (non-canonical).
        let mut cases = Vec::new();
        let mut identity = good;
        identity.0[..32].copy_from_slice(&[
            1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0,
        ]);
        cases.push(identity);
        let mut noncanon = good;
        let mut y = [0xffu8; 32];
        y[31] = 0x7f;
        y[0] = 0xee; // y = p + 1 ≡ 1
        noncanon.0[..32].copy_from_slice(&y);
        cases.push(noncanon);
        let mut big_s = good;
        // l = 2^252 + 27742317777372353535851937790883648493, little-endian.
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        big_s.0[32..].copy_from_slice(&l);
        cases.push(big_s);
        // s + l: the malleated twin of a valid signature.
        let s = Scalar::from_canonical_bytes(good.0[32..].try_into().unwrap()).unwrap();
        let mut twin = good;
        let sum = add_le(s.as_bytes(), &l);
        twin.0[32..].copy_from_slice(&sum);
        cases.push(twin);
        // R plus a point of order 8: cofactored verification would accept it, strict must not.
        let r = CompressedEdwardsY(good.0[..32].try_into().unwrap()).decompress().unwrap();
        for torsion in &curve25519_dalek::constants::EIGHT_TORSION[1..] {
            let mut mixed = good;
            mixed.0[..32].copy_from_slice((r + torsion).compress().as_bytes());
            cases.push(mixed);
        }
        for sig in cases {
            assert_eq!(prepared.verify_parts(&[msg], &sig).is_ok(), strict(&pk, msg, &sig));
            assert!(prepared.verify_parts(&[msg], &sig).is_err());
        }
    }

    #[test]
    fn small_order_keys_never_verify() {
        for torsion in &curve25519_dalek::constants::EIGHT_TORSION {
            let Ok(pk) = PublicKey::from_bytes(torsion.compress().to_bytes()) else { continue };
            let prepared = PreparedKey::new(&pk);
            // With A of small order, R = [s]B verifies under the cofactorless equation for
            // some k; strict verification refuses the key outright, and so do we.
            let s = Scalar::from(7u8);
            let r = curve25519_dalek::constants::ED25519_BASEPOINT_POINT * s;
            let mut sig = Signature([0; 64]);
            sig.0[..32].copy_from_slice(r.compress().as_bytes());
            sig.0[32..].copy_from_slice(s.as_bytes());
            assert!(prepared.verify_parts(&[b"m"], &sig).is_err());
            assert!(!strict(&pk, b"m", &sig));
        }
    }

    /// A key with a torsion component (`A = [a]B + T`, `T` of order 8; `verify_strict` accepts
    /// such keys) lets a forger make the cofactorless equation hold with `R` = the identity:
    /// with `k = H(R || A || M)` a multiple of 8 (grind `M`) and `s = k a`, `[s]B - [k]A =
    /// -[k]T` = the identity. `verify_strict` refuses it because `R` is of small order; so must
    /// the batch, which never decompresses `R`.
    #[test]
    fn small_order_r_with_a_holding_equation_is_refused() {
        let torsion = curve25519_dalek::constants::EIGHT_TORSION[1];
        let a = Scalar::from(123_456_789u64);
        let a_point = curve25519_dalek::constants::ED25519_BASEPOINT_POINT * a + torsion;
        let pk = PublicKey::from_bytes(a_point.compress().to_bytes()).unwrap();
        let prepared = PreparedKey::new(&pk);
        let identity = EdwardsPoint::default().compress().to_bytes();
        let mut found = 0;
        for n in 0u32..200 {
            let msg = n.to_be_bytes();
            let mut h = Sha512::new();
            h.update(identity);
            h.update(pk.as_bytes());
            h.update(msg);
            let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
            if !k.as_bytes()[0].is_multiple_of(8) {
                continue;
            }
            let mut sig = Signature([0; 64]);
            sig.0[..32].copy_from_slice(&identity);
            sig.0[32..].copy_from_slice((k * a).as_bytes());
            // The equation itself holds...
            let expected: EdwardsPoint = prepared.tables.vartime_multiscalar_mul([k * a, k]);
            assert_eq!(expected.compress().to_bytes(), identity);
            // ...and both verifiers refuse it.
            assert!(!strict(&pk, &msg, &sig));
            assert!(prepared.verify_parts(&[&msg], &sig).is_err());
            found += 1;
        }
        assert!(found > 5, "the grind found only {found} messages");
    }

    #[test]
    fn a_batch_gives_each_signature_its_own_verdict() {
        let keys: Vec<SigningKey> =
            (0..3).map(|i| SigningKey::from_seed_label(&format!("batch{i}"))).collect();
        let prepared: Vec<PreparedKey> =
            keys.iter().map(|k| PreparedKey::new(&k.public_key())).collect();
        let mut pending = Vec::new();
        let mut want = Vec::new();
        for i in 0..40usize {
            let msg = format!("message {i}");
            let key = i % 3;
            let mut sig = keys[key].sign(msg.as_bytes());
            // Every fifth signature is damaged; every seventh is checked under another key.
            if i % 5 == 0 {
                sig.0[i % 64] ^= 0x10;
            }
            let checked_by = if i % 7 == 0 { (key + 1) % 3 } else { key };
            let strict_ok = strict(&keys[checked_by].public_key(), msg.as_bytes(), &sig);
            want.push(strict_ok);
            match prepared[checked_by].start_verify(&[msg.as_bytes()], &sig) {
                Ok(p) => pending.push((i, p)),
                Err(_) => assert!(!strict_ok),
            }
        }
        let items: Vec<PendingSignature> = pending.iter().map(|(_, p)| *p).collect();
        let verdicts = finish_verify_batch(&items);
        assert_eq!(verdicts.len(), items.len());
        for ((i, _), verdict) in pending.iter().zip(verdicts) {
            assert_eq!(verdict.is_ok(), want[*i], "signature {i}");
        }
        assert!(want.iter().any(|&ok| ok) && want.iter().any(|&ok| !ok));
    }

    fn add_le(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(a[i]) + u16::from(b[i]) + carry;
            out[i] = (v & 0xff) as u8;
            carry = v >> 8;
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn same_verdict_as_verify_strict(
            seed in any::<u64>(),
            msg in proptest::collection::vec(any::<u8>(), 0..300),
            split in any::<prop::sample::Index>(),
            flip in proptest::option::of((0usize..64, 0u8..8)),
            other_msg in any::<bool>(),
        ) {
            let key = SigningKey::from_seed_label(&format!("p{seed}"));
            let pk = key.public_key();
            let prepared = PreparedKey::new(&pk);
            let mut sig = key.sign(&msg);
            if let Some((byte, bit)) = flip {
                sig.0[byte] ^= 1 << bit;
            }
            let mut checked = msg.clone();
            if other_msg {
                checked.push(0);
            }
            let at = split.index(checked.len() + 1);
            let ours = prepared.verify_parts(&[&checked[..at], &checked[at..]], &sig).is_ok();
            prop_assert_eq!(ours, strict(&pk, &checked, &sig));
            prop_assert_eq!(ours, flip.is_none() && !other_msg);
        }
    }
}
