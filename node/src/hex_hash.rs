//! A [`Hash`] as 64 lower-case hex characters in JSON (`#[serde(with = "hex_hash")]`).
//!
//! [`Hash`]'s own serde form is its 32 bytes, right for bincode but not for people reading JSON.

use serde::{Deserialize, Deserializer, Serializer};
use tradeloop_crypto::Hash;

/// Writes the hex form.
pub fn serialize<S: Serializer>(hash: &Hash, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hash.to_hex())
}

/// Reads the hex form.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Hash, D::Error> {
    let text = String::deserialize(deserializer)?;
    Hash::from_hex(&text).map_err(serde::de::Error::custom)
}

/// The same for an optional hash (`null` or absent is `None`).
pub mod option {
    use super::*;

    /// Writes the hex form or `null`.
    pub fn serialize<S: Serializer>(hash: &Option<Hash>, serializer: S) -> Result<S::Ok, S::Error> {
        match hash {
            Some(h) => serializer.serialize_some(&h.to_hex()),
            None => serializer.serialize_none(),
        }
    }

    /// Reads the hex form or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Hash>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        text.map(|t| Hash::from_hex(&t).map_err(serde::de::Error::custom)).transpose()
    }
}
