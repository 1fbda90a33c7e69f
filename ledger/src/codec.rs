//! The one place that configures bincode (=1.3.3).
//!
//! Everything the ledger stores or hashes in binary goes through [`encode`] / [`decode`]:
//! fixed-width big-endian integers, no trailing bytes, and a size limit on decoding so a hostile
//! length prefix cannot allocate unbounded memory. bincode 1.x is unmaintained upstream
//! (RUSTSEC-2025-0141; its authors call 1.3.3 complete); keeping it behind this module means it
//! can be replaced without touching anything else. `docs/formats.md` spells out the resulting
//! byte layouts.

use bincode::Options;
use serde::{de::DeserializeOwned, Serialize};

/// Largest value [`decode`] will materialise: 64 MiB (a block of at most
/// `MAX_BLOCK_EVENTS` events of at most `MAX_EVENT_BYTES` each, plus its certificate).
pub const MAX_DECODE_BYTES: u64 = 64 * 1024 * 1024;

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_big_endian()
        .with_fixint_encoding()
        .reject_trailing_bytes()
        .with_limit(MAX_DECODE_BYTES)
}

/// Encodes a value.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serialising our own types into a Vec cannot fail except past the size limit, which no
    // encoder input reaches (blocks are bounded well below it); an empty vector would then fail
    // every later check loudly.
    options().serialize(value).unwrap_or_default()
}

/// Decodes a value, refusing trailing bytes and sizes over [`MAX_DECODE_BYTES`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    options().deserialize(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_fixed_width_big_endian() {
        assert_eq!(encode(&0x0102_0304u32), vec![1, 2, 3, 4]);
        assert_eq!(encode(&1u64), vec![0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(encode(&vec![7u8]), vec![0, 0, 0, 0, 0, 0, 0, 1, 7]);
    }

    #[test]
    fn trailing_bytes_and_huge_lengths_are_refused() {
        assert!(decode::<u32>(&[0, 0, 0, 1, 9]).is_err());
        let huge = [0xffu8; 8];
        assert!(decode::<Vec<u8>>(&huge).is_err());
    }
}
