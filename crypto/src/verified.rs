//! Signatures this process has already verified, so that one signature is checked once.
//!
//! A consensus message reaches a member node's code in several places: its vote or proposal
//! signature is checked before gossip forwards it, the consensus core checks it again when it
//! takes the message, and the precommits come back a third time in the commit certificate the
//! ledger checks before it writes a block. [`VerifiedSignatures`] remembers the last
//! [`MAX_VERIFIED_SIGNATURES`] signatures that held, each by a digest of (public key,
//! signature, message) (docs/formats.md, "Verified-signature memo"); a later check of the same
//! three is answered from memory. Only signatures that verified are remembered, so a forged
//! one is checked (and refused) every time it is seen.
//!
//! The digest binds all three inputs with SHA-256, so a remembered entry answers for exactly
//! that key, signature and message. Nothing here is stored or sent; it lives as long as the
//! process.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use crate::{domain_hash, CryptoError, Hash, PublicKey, Signature};

/// Most signatures remembered (the oldest is forgotten first): about 40 heights of a
/// 7-validator network's votes, proposals and parts, 256 KiB at most.
pub const MAX_VERIFIED_SIGNATURES: usize = 4096;

const DOMAIN: &[u8] = b"tradeloop/verified-signature/v1\0";

/// A bounded memory of signatures that verified (see the module docs). Shared between
/// threads behind an `Arc`.
#[derive(Default)]
pub struct VerifiedSignatures {
    seen: Mutex<Seen>,
}

impl std::fmt::Debug for VerifiedSignatures {
    // The count only: a context holding the memo may be logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedSignatures").field("remembered", &self.len()).finish()
    }
}

#[derive(Debug, Default)]
struct Seen {
    set: HashSet<Hash>,
    order: VecDeque<Hash>,
}

impl VerifiedSignatures {
    /// An empty memory.
    pub fn new() -> VerifiedSignatures {
        VerifiedSignatures::default()
    }

    /// [`PublicKey::verify`], answered from memory when these exact key, message and
    /// signature verified before.
    pub fn verify(
        &self,
        key: &PublicKey,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), CryptoError> {
        let digest = domain_hash(DOMAIN, &[key.as_bytes(), &signature.0, message]);
        if self.lock().set.contains(&digest) {
            return Ok(());
        }
        key.verify(message, signature)?;
        let mut seen = self.lock();
        if seen.set.insert(digest) {
            seen.order.push_back(digest);
            if seen.order.len() > MAX_VERIFIED_SIGNATURES {
                if let Some(oldest) = seen.order.pop_front() {
                    seen.set.remove(&oldest);
                }
            }
        }
        Ok(())
    }

    /// How many signatures are remembered.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        // Every change completes under the lock without calling out, so a panic elsewhere
        // cannot leave the set and the queue disagreeing.
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SigningKey;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_secret([seed; 32])
    }

    #[test]
    fn a_good_signature_is_remembered_and_a_bad_one_refused_every_time() {
        let memo = VerifiedSignatures::new();
        let k = key(1);
        let sig = k.sign(b"prevote");
        assert!(memo.verify(&k.public_key(), b"prevote", &sig).is_ok());
        assert_eq!(memo.len(), 1);
        assert!(memo.verify(&k.public_key(), b"prevote", &sig).is_ok());
        assert_eq!(memo.len(), 1, "the second check is answered from memory");

        // The same signature over another message, by another key, or altered: refused,
        // and never remembered.
        assert!(memo.verify(&k.public_key(), b"precommit", &sig).is_err());
        assert!(memo.verify(&key(2).public_key(), b"prevote", &sig).is_err());
        let mut forged = sig;
        forged.0[5] ^= 1;
        assert!(memo.verify(&k.public_key(), b"prevote", &forged).is_err());
        assert!(memo.verify(&k.public_key(), b"prevote", &forged).is_err());
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn the_memory_is_bounded_and_forgets_the_oldest() {
        let memo = VerifiedSignatures::new();
        let k = key(3);
        let first = k.sign(&0u32.to_be_bytes());
        memo.verify(&k.public_key(), &0u32.to_be_bytes(), &first).unwrap();
        for i in 1..=u32::try_from(MAX_VERIFIED_SIGNATURES).unwrap() {
            let m = i.to_be_bytes();
            memo.verify(&k.public_key(), &m, &k.sign(&m)).unwrap();
        }
        assert_eq!(memo.len(), MAX_VERIFIED_SIGNATURES);
        // The first was forgotten; checking it again verifies it again (and it still holds).
        assert!(memo.verify(&k.public_key(), &0u32.to_be_bytes(), &first).is_ok());
        assert_eq!(memo.len(), MAX_VERIFIED_SIGNATURES);
    }
}
