//! ed25519 keys and signatures (ed25519-dalek, `verify_strict`).
//!
//! `verify_strict` rejects small-order public keys and non-canonical `R`/`s` encodings, so one
//! message has exactly one valid signature encoding per key and every node reaches the same
//! verdict on the same bytes.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hash::{deserialize_bytes, serialize_bytes};
use crate::{decode_hex_array, CryptoError};

/// An ed25519 public key (32 bytes). Its bytes are checked to be a valid point when parsed, and
/// the decompressed point is kept, so verifying with a key parsed once costs no decompression.
#[derive(Clone, Copy)]
pub struct PublicKey {
    bytes: [u8; 32],
    point: ed25519_dalek::VerifyingKey,
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}
impl Eq for PublicKey {}
impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes.cmp(&other.bytes)
    }
}
impl std::hash::Hash for PublicKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

/// An ed25519 signature (64 bytes). Ordered by its bytes (consensus engines keep signatures in
/// ordered sets).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signature(pub [u8; 64]);

/// An ed25519 signing key. The secret is zeroised on drop by ed25519-dalek.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl PublicKey {
    /// Parses 32 bytes, checking they decompress to a curve point.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<PublicKey, CryptoError> {
        let point = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| CryptoError::InvalidPublicKey)?;
        Ok(PublicKey { bytes, point })
    }

    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> Result<PublicKey, CryptoError> {
        PublicKey::from_bytes(decode_hex_array::<32>("public key", text)?)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        crate::lower_hex(&self.bytes)
    }

    /// Verifies `signature` over `message` with ed25519 `verify_strict`.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), CryptoError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.point.verify_strict(message, &sig).map_err(|_| CryptoError::BadSignature)
    }
}

impl Signature {
    /// Parses 128 hex characters.
    pub fn from_hex(text: &str) -> Result<Signature, CryptoError> {
        decode_hex_array::<64>("signature", text).map(Signature)
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        crate::lower_hex(&self.0)
    }
}

impl SigningKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<SigningKey, CryptoError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(CryptoError::Random)?;
        Ok(SigningKey::from_secret(secret))
    }

    /// A key from its 32-byte secret (seed).
    pub fn from_secret(secret: [u8; 32]) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(&secret))
    }

    /// A deterministic key for tests and simulations: SHA-256 of a label.
    pub fn from_seed_label(label: &str) -> SigningKey {
        SigningKey::from_secret(crate::Hash::sha256(label.as_bytes()).0)
    }

    /// The 32-byte secret (seed). Handle with care.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        let point = self.0.verifying_key();
        PublicKey { bytes: point.to_bytes(), point }
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        use ed25519_dalek::Signer;
        Signature(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public={})", self.public_key().to_hex())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_bytes(&self.bytes, serializer)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = deserialize_bytes::<D, 32>("public key", deserializer)?;
        PublicKey::from_bytes(bytes).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_bytes(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_bytes::<D, 64>("signature", deserializer).map(Signature)
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032 section 7.1, TEST 1 (empty message).
        let secret = decode_hex_array::<32>(
            "secret",
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        )
        .unwrap_or_default();
        let key = SigningKey::from_secret(secret);
        assert_eq!(
            key.public_key().to_hex(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = key.sign(b"");
        assert_eq!(
            sig.to_hex(),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        assert!(key.public_key().verify(b"", &sig).is_ok());
    }

    #[test]
    fn any_changed_byte_fails() {
        let key = SigningKey::from_seed_label("k");
        let sig = key.sign(b"message");
        assert!(key.public_key().verify(b"messagf", &sig).is_err());
        let mut bad = sig;
        bad.0[10] ^= 1;
        assert!(key.public_key().verify(b"message", &bad).is_err());
        let other = SigningKey::from_seed_label("other").public_key();
        assert!(other.verify(b"message", &sig).is_err());
    }

    #[test]
    fn strict_verification_rejects_non_canonical_s() {
        // s + L (the group order) is the classic malleated encoding; verify_strict refuses it.
        let key = SigningKey::from_seed_label("malleable");
        let sig = key.sign(b"m");
        let order: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut s = [0u8; 32];
        s.copy_from_slice(&sig.0[32..]);
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(s[i]) + u16::from(order[i]) + carry;
            s[i] = (sum & 0xff) as u8;
            carry = sum >> 8;
        }
        let mut malleated = sig;
        malleated.0[32..].copy_from_slice(&s);
        assert!(key.public_key().verify(b"m", &malleated).is_err());
    }

    #[test]
    fn small_order_public_key_is_rejected_by_strict_verify() {
        // The identity point encoded as a public key: a small-order key that accepts forgeries
        // under lax verification.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        if let Ok(key) = PublicKey::from_bytes(identity) {
            let mut forged = [0u8; 64];
            forged[0] = 1;
            assert!(key.verify(b"anything", &Signature(forged)).is_err());
        }
    }
}
