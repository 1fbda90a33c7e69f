//! SHA-256 hashes with domain separation.
//!
//! Every hash that the ledger stores or signs starts with a domain tag such as
//! `"tradeloop/block/v1\0"`, so bytes hashed for one purpose can never be mistaken for another.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::{decode_hex_array, CryptoError};

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The all-zero hash, used as `prev_hash` of height 1 and as the initial app hash.
    pub const ZERO: Hash = Hash([0u8; 32]);

    /// SHA-256 of `data` with no domain tag. Prefer [`domain_hash`] for anything new.
    pub fn sha256(data: &[u8]) -> Hash {
        Hash(Sha256::digest(data).into())
    }

    /// Lower-case hex of the 32 bytes.
    pub fn to_hex(&self) -> String {
        crate::lower_hex(&self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> Result<Hash, CryptoError> {
        decode_hex_array::<32>("hash", text).map(Hash)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// SHA-256 of `domain || part_0 || part_1 || ...`. `domain` must end with a NUL byte so that no
/// domain is a prefix of another.
pub fn domain_hash(domain: &[u8], parts: &[&[u8]]) -> Hash {
    debug_assert_eq!(domain.last(), Some(&0u8), "domain tags end with NUL");
    let mut hasher = Sha256::new();
    hasher.update(domain);
    for part in parts {
        hasher.update(part);
    }
    Hash(hasher.finalize().into())
}

/// An incremental domain-separated hasher, for data written in pieces.
#[derive(Clone, Debug)]
pub struct HashWriter(Sha256);

impl HashWriter {
    /// Starts a hash with the given domain tag.
    pub fn new(domain: &[u8]) -> HashWriter {
        debug_assert_eq!(domain.last(), Some(&0u8), "domain tags end with NUL");
        let mut hasher = Sha256::new();
        hasher.update(domain);
        HashWriter(hasher)
    }

    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// Adds a length-prefixed byte string (u32 big-endian length), so that concatenations of
    /// variable-length items are unambiguous.
    pub fn update_prefixed(&mut self, data: &[u8]) {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        self.0.update(len.to_be_bytes());
        self.0.update(data);
    }

    /// Finishes the hash.
    pub fn finish(self) -> Hash {
        Hash(self.0.finalize().into())
    }
}

/// Serialises a fixed-size byte array as hex in human-readable formats (JSON) and as raw bytes
/// in binary ones (bincode: exactly `N` bytes, no length prefix).
pub(crate) fn serialize_bytes<S: Serializer, const N: usize>(
    bytes: &[u8; N],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.serialize_str(&hex::encode(bytes))
    } else {
        use serde::ser::SerializeTuple;
        let mut tuple = serializer.serialize_tuple(N)?;
        for byte in bytes {
            tuple.serialize_element(byte)?;
        }
        tuple.end()
    }
}

pub(crate) fn deserialize_bytes<'de, D: Deserializer<'de>, const N: usize>(
    what: &'static str,
    deserializer: D,
) -> Result<[u8; N], D::Error> {
    if deserializer.is_human_readable() {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        decode_hex_array::<N>(what, &text).map_err(serde::de::Error::custom)
    } else {
        struct ArrayVisitor<const M: usize>;
        impl<'de, const M: usize> serde::de::Visitor<'de> for ArrayVisitor<M> {
            type Value = [u8; M];
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{M} bytes")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = [0u8; M];
                for (index, slot) in out.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(index, &self))?;
                }
                Ok(out)
            }
        }
        deserializer.deserialize_tuple(N, ArrayVisitor::<N>)
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_bytes(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_bytes::<D, 32>("hash", deserializer).map(Hash)
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_matches_the_standard_vector() {
        assert_eq!(
            Hash::sha256(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn domain_hash_differs_by_domain() {
        assert_ne!(domain_hash(b"a\0", &[b"x"]), domain_hash(b"b\0", &[b"x"]));
        assert_eq!(domain_hash(b"a\0", &[b"x", b"y"]), domain_hash(b"a\0", &[b"xy"]));
    }

    #[test]
    fn hex_round_trip_and_json_form() {
        let h = Hash::sha256(b"abc");
        assert_eq!(Hash::from_hex(&h.to_hex()).ok(), Some(h));
        let json = serde_json::to_string(&h).unwrap_or_default();
        assert_eq!(json, format!("\"{}\"", h.to_hex()));
        assert!(Hash::from_hex("zz").is_err());
        assert!(Hash::from_hex(&"00".repeat(31)).is_err());
    }
}
