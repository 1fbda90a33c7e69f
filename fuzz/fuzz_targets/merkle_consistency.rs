//! RFC 9162 consistency proofs (crypto/src/merkle.rs).
//!
//! The first byte picks the mode. Even: `verify_consistency` on fuzz-chosen sizes (any u64),
//! roots and proof; it must return, never panic. Odd: a tree of fuzz-chosen leaves (1 to 300)
//! and a fuzz-chosen old size; the proof `consistency_proof` produces must verify between the
//! two roots, and must not once one bit of one proof hash or of the old root is flipped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tradeloop_crypto::merkle::{consistency_proof, root, verify_consistency};
use tradeloop_crypto::Hash;
use tradeloop_fuzz::Bytes;

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    if input.u8() % 2 == 0 {
        let old_size = input.u64();
        let new_size = input.u64();
        let old_root = Hash(input.array32());
        let new_root = Hash(input.array32());
        let proof: Vec<Hash> = input
            .rest()
            .chunks(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h[..c.len()].copy_from_slice(c);
                Hash(h)
            })
            .collect();
        let _ = verify_consistency(old_size, new_size, &old_root, &new_root, &proof);
        return;
    }
    let count = 1 + usize::from(u16::from_be_bytes([input.u8(), input.u8()]) % 300);
    let old = 1 + usize::from(u16::from_be_bytes([input.u8(), input.u8()])) % count;
    let flip = (usize::from(input.u8()), input.u8() % 8);
    let leaf_len = 1 + usize::from(input.u8() % 7);
    let mut leaves: Vec<Vec<u8>> = Vec::with_capacity(count);
    for _ in 0..count {
        leaves.push(input.take(leaf_len).to_vec());
    }
    let new_root = root(&leaves);
    let old_root = root(&leaves[..old]);
    let (old_size, new_size) = (old as u64, count as u64);
    let Some(mut proof) = consistency_proof(&leaves, old) else {
        panic!("no consistency proof from {old} to {count}");
    };
    if let Err(e) = verify_consistency(old_size, new_size, &old_root, &new_root, &proof) {
        panic!("the proof from {old} to {count} leaves does not verify: {e}");
    }
    let mut bad_old = old_root;
    bad_old.0[flip.0 % 32] ^= 1 << flip.1;
    assert!(verify_consistency(old_size, new_size, &bad_old, &new_root, &proof).is_err());
    if !proof.is_empty() {
        let at = flip.0 % (proof.len() * 32);
        proof[at / 32].0[at % 32] ^= 1 << flip.1;
        assert!(
            verify_consistency(old_size, new_size, &old_root, &new_root, &proof).is_err(),
            "a proof with a flipped bit verifies"
        );
    }
});
