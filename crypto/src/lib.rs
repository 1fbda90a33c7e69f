//! Cryptographic building blocks of tradeloop.
//!
//! ```text
//!   bytes --domain tag--> sha256 ------------------> Hash
//!   signing bytes ------> ed25519 (verify_strict) -> Signature
//!   event ids ----------> RFC 6962 Merkle tree ----> events_root, inclusion / consistency proofs
//! ```
//!
//! Everything here is synchronous and deterministic; nothing does I/O except [`keyfile`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod hash;
pub mod keyfile;
pub mod keys;
pub mod merkle;
pub mod prepared;
pub mod verified;

pub use hash::{domain_hash, Hash, HashWriter};
pub use keys::{PublicKey, Signature, SigningKey};
pub use prepared::{finish_verify_batch, PendingSignature, PreparedKey};
pub use verified::{VerifiedSignatures, MAX_VERIFIED_SIGNATURES};

/// Errors of the crypto crate. Each has a stable code ([`CryptoError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A hex string could not be decoded or had the wrong length.
    #[error("invalid hex for {what}: expected {expected} bytes as hex ({detail})")]
    InvalidHex {
        /// What was being decoded, e.g. "public key".
        what: &'static str,
        /// Expected length in bytes.
        expected: usize,
        /// What went wrong.
        detail: String,
    },
    /// 32 bytes that are not a valid ed25519 public key.
    #[error("invalid ed25519 public key: the 32 bytes are not a point on the curve")]
    InvalidPublicKey,
    /// A signature failed `verify_strict`.
    #[error("signature does not verify under the given public key")]
    BadSignature,
    /// A key file could not be read or written.
    #[error("key file {path}: {detail}")]
    KeyFile {
        /// The file's path.
        path: String,
        /// What went wrong and what to do.
        detail: String,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    /// A Merkle proof was malformed or did not verify.
    #[error("merkle proof rejected: {0}")]
    BadProof(&'static str),
}

impl CryptoError {
    /// A stable machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            CryptoError::InvalidHex { .. } => "INVALID_HEX",
            CryptoError::InvalidPublicKey => "INVALID_PUBLIC_KEY",
            CryptoError::BadSignature => "BAD_SIGNATURE",
            CryptoError::KeyFile { .. } => "KEY_FILE",
            CryptoError::Random(_) => "RANDOM",
            CryptoError::BadProof(_) => "BAD_PROOF",
        }
    }
}

/// Decodes exactly `N` bytes from hex (upper or lower case).
pub fn decode_hex_array<const N: usize>(
    what: &'static str,
    text: &str,
) -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|e| CryptoError::InvalidHex {
        what,
        expected: N,
        detail: e.to_string(),
    })?;
    Ok(out)
}

/// Lower-case hex of `bytes`, two characters a byte from a table (`hex::encode` builds its
/// string a `char` at a time, which showed in the API's profiles).
pub fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod hex_tests {
    use super::*;

    #[test]
    fn lower_hex_is_hex_encode() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(lower_hex(&all), hex::encode(&all));
        assert_eq!(lower_hex(&[]), "");
        assert_eq!(
            decode_hex_array::<3>("x", &lower_hex(&[0, 0xab, 0xff])).unwrap(),
            [0, 0xab, 0xff]
        );
    }
}
