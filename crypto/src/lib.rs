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

pub mod error;
pub mod hash;
mod hexstr;
pub mod keyfile;
pub mod keys;
pub mod merkle;
pub mod prepared;
pub mod verified;

pub use error::CryptoError;
pub use hash::{domain_hash, Hash, HashWriter};
pub use hexstr::{decode_hex_array, lower_hex};
pub use keys::{PublicKey, Signature, SigningKey};
pub use prepared::{finish_verify_batch, PendingSignature, PreparedKey};
pub use verified::{VerifiedSignatures, MAX_VERIFIED_SIGNATURES};
