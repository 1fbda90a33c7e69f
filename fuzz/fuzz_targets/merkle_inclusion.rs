//! RFC 9162 inclusion proofs (crypto/src/merkle.rs).
//!
//! The first byte picks the mode. Even: `verify_inclusion` on a fuzz-chosen leaf, index, tree
//! size (any u64), path and root; it must return, never panic. Odd: a tree of fuzz-chosen leaves
//! (1 to 300 of them), a fuzz-chosen leaf index; the proof `inclusion_proof` produces must
//! verify against the tree's root, and must not once one bit of one proof hash is flipped or
//! the leaf is changed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tradeloop_crypto::merkle::{inclusion_proof, root, verify_inclusion};
use tradeloop_crypto::Hash;
use tradeloop_fuzz::Bytes;

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    if input.u8() % 2 == 0 {
        let leaf_len = usize::from(input.u8());
        let leaf = input.take(leaf_len);
        let index = input.u64();
        let tree_size = input.u64();
        let expected_root = Hash(input.array32());
        let path: Vec<Hash> = input
            .rest()
            .chunks(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h[..c.len()].copy_from_slice(c);
                Hash(h)
            })
            .collect();
        let _ = verify_inclusion(leaf, index, tree_size, &path, &expected_root);
        return;
    }
    let count = 1 + usize::from(u16::from_be_bytes([input.u8(), input.u8()]) % 300);
    let index = usize::from(u16::from_be_bytes([input.u8(), input.u8()])) % count;
    let flip = (usize::from(input.u8()), input.u8() % 8);
    // Leaves: fuzz bytes in chunks of up to 7 (short, so trees stay large), then empty leaves.
    let leaf_len = 1 + usize::from(input.u8() % 7);
    let mut leaves: Vec<Vec<u8>> = Vec::with_capacity(count);
    for _ in 0..count {
        leaves.push(input.take(leaf_len).to_vec());
    }
    let tree_root = root(&leaves);
    let size = count as u64;
    let Some(mut proof) = inclusion_proof(&leaves, index) else {
        panic!("no proof for leaf {index} of {count}");
    };
    let leaf = &leaves[index];
    if let Err(e) = verify_inclusion(leaf, index as u64, size, &proof, &tree_root) {
        panic!("a proof for leaf {index} of {count} does not verify: {e}");
    }
    let mut other_leaf = leaf.clone();
    other_leaf.push(0);
    assert!(verify_inclusion(&other_leaf, index as u64, size, &proof, &tree_root).is_err());
    // (A wrong tree size of the same shape is not caught by the path: the root, which the
    // verifier is given, is what binds the size. So no assertion about other sizes here.)
    assert!(verify_inclusion(leaf, size, size, &proof, &tree_root).is_err());
    if !proof.is_empty() {
        let at = flip.0 % (proof.len() * 32);
        proof[at / 32].0[at % 32] ^= 1 << flip.1;
        assert!(
            verify_inclusion(leaf, index as u64, size, &proof, &tree_root).is_err(),
            "a proof with a flipped bit verifies"
        );
    }
});
