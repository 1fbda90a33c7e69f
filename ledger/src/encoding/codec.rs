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

/// Why a value could not be encoded (larger than [`MAX_DECODE_BYTES`]): bincode's error, kept as
/// the cause.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode: {0}")]
pub struct EncodeError(#[from] bincode::Error);

/// Why bytes do not decode to a value: bincode's error, kept as the cause.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DecodeError(#[from] bincode::Error);

/// Encodes a value. Fails (instead of returning an empty buffer that could then be stored or
/// hashed) when the value is larger than [`MAX_DECODE_BYTES`], since it could never be decoded.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    Ok(options().serialize(value)?)
}

/// Appends a value's encoding to `out` (as [`encode`] would return it), so that a caller
/// that frames it saves a copy.
pub fn encode_into<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), EncodeError> {
    let len = encoded_len(value)?;
    out.reserve(usize::try_from(len).map_err(|_| Box::new(bincode::ErrorKind::SizeLimit))?);
    Ok(options().serialize_into(out, value)?)
}

/// The encoded length of a value, without encoding it.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<u64, EncodeError> {
    Ok(options().serialized_size(value)?)
}

/// Encodes a fixed-size value of our own (a header, a tip, a location, a small record) whose
/// encoding cannot fail: it holds no collection and is far below the size limit.
pub(crate) fn encode_small<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // An error here would be a programming error (the type grew a collection); the empty
    // vector then fails every later decode loudly instead of panicking.
    debug_assert!(encoded_len(value).is_ok());
    options().serialize(value).unwrap_or_default()
}

/// Decodes a value at the start of `bytes`; the value and the bytes it took. For reading one
/// part of a larger encoding (one event of a stored block) without decoding the rest.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), DecodeError> {
    let mut cursor = std::io::Cursor::new(bytes);
    let value = options().allow_trailing_bytes().deserialize_from(&mut cursor)?;
    // The cursor is over `bytes`, so its position fits in a usize.
    let used = usize::try_from(cursor.position())
        .map_err(|_| DecodeError(Box::new(bincode::ErrorKind::SizeLimit)))?;
    Ok((value, used))
}

/// Decodes a value, refusing trailing bytes and sizes over [`MAX_DECODE_BYTES`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    Ok(options().deserialize(bytes)?)
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_fixed_width_big_endian() {
        assert_eq!(encode(&0x0102_0304u32).unwrap(), vec![1, 2, 3, 4]);
        assert_eq!(encode(&1u64).unwrap(), vec![0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(encode(&vec![7u8]).unwrap(), vec![0, 0, 0, 0, 0, 0, 0, 1, 7]);
        assert_eq!(encoded_len(&vec![7u8]).unwrap(), 9);
    }

    #[test]
    fn encode_into_appends_exactly_the_encoding() {
        let value = (0x0102u16, vec![7u8, 8], String::from("x"));
        let mut out = vec![0xAA];
        encode_into(&mut out, &value).unwrap();
        assert_eq!(out, [vec![0xAA], encode(&value).unwrap()].concat());
    }

    #[test]
    fn trailing_bytes_and_huge_lengths_are_refused() {
        assert!(decode::<u32>(&[0, 0, 0, 1, 9]).is_err());
        let huge = [0xffu8; 8];
        assert!(decode::<Vec<u8>>(&huge).is_err());
    }

    #[test]
    fn a_value_over_the_limit_is_an_error_not_an_empty_buffer() {
        let big = vec![0u8; usize::try_from(MAX_DECODE_BYTES).unwrap()];
        let err = encode(&big).unwrap_err();
        assert!(err.to_string().contains("cannot encode"), "{err}");
        assert!(encoded_len(&big).is_err());
        assert_eq!(encode(&big[..100]).unwrap().len(), 108);
    }
}
