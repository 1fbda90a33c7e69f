//! A verifier for one known key, with precomputed tables: the same verdict as
//! `verify_strict`, faster.
//!
//! A ledger verifies many signatures by few keys (the keys in its genesis). For each such key
//! this module precomputes width-8 NAF tables of both `B` and `-A` (about 20 KiB), so checking
//! `[s]B + [k](-A) == R` needs no per-signature table and fewer point additions. The equation is
//! checked on decompressed points rather than by compressing the result, which saves a field
//! inversion. The verdict is exactly `verify_strict`'s: `s` canonical (`< l`), `R` a canonical
//! encoding of a point that is not of small order, `A` not of small order, and
//! `R == [s]B - [k]A` with `k = SHA-512(R || A || M) mod l` (RFC 8032, cofactorless).
//! Property tests compare it with `verify_strict` on valid, mangled and crafted signatures.

use std::fmt;

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

/// Whether the 32 bytes encode `y` in canonical form (`y < p = 2^255 - 19`, sign bit ignored).
fn y_is_canonical(bytes: &[u8; 32]) -> bool {
    // y >= p only if bits 8..254 are all ones and the low byte is >= 0xed.
    let all_ones = bytes[31] & 0x7f == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff);
    !(all_ones && bytes[0] >= 0xed)
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
        let bad = Err(CryptoError::BadSignature);
        let mut r_bytes = [0u8; 32];
        r_bytes.copy_from_slice(&signature.0[..32]);
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(&signature.0[32..]);
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
            return bad;
        };
        if self.small_order || !y_is_canonical(&r_bytes) {
            return bad;
        }
        let Some(r) = CompressedEdwardsY(r_bytes).decompress() else {
            return bad;
        };
        if r.is_small_order() {
            return bad;
        }
        let mut h = Sha512::new();
        h.update(r_bytes);
        h.update(self.bytes);
        for part in parts {
            h.update(part);
        }
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let expected: EdwardsPoint = self.tables.vartime_multiscalar_mul([s, k]);
        if expected == r {
            Ok(())
        } else {
            bad
        }
    }
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
    fn canonical_y_boundary() {
        let mut p = [0xffu8; 32];
        p[31] = 0x7f;
        p[0] = 0xed;
        assert!(!y_is_canonical(&p));
        p[0] = 0xec;
        assert!(y_is_canonical(&p));
        p[31] = 0xff; // sign bit set: same y
        assert!(y_is_canonical(&p));
        p[0] = 0xee;
        assert!(!y_is_canonical(&p));
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
