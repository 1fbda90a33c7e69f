//! The crate's one error type, with a stable code per variant.

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
    /// Bytes of the wrong length for what they should hold.
    #[error("{what} is {expected} bytes, not {found}")]
    Length {
        /// What the bytes should hold, e.g. "a signature".
        what: &'static str,
        /// Its length in bytes.
        expected: usize,
        /// The length given.
        found: usize,
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
    Random(#[source] getrandom::Error),
    /// A Merkle proof was malformed or did not verify.
    #[error("merkle proof rejected: {0}")]
    BadProof(&'static str),
}

impl CryptoError {
    /// A stable machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            CryptoError::InvalidHex { .. } => "INVALID_HEX",
            CryptoError::Length { .. } => "BAD_LENGTH",
            CryptoError::InvalidPublicKey => "INVALID_PUBLIC_KEY",
            CryptoError::BadSignature => "BAD_SIGNATURE",
            CryptoError::KeyFile { .. } => "KEY_FILE",
            CryptoError::Random(_) => "RANDOM",
            CryptoError::BadProof(_) => "BAD_PROOF",
        }
    }
}
