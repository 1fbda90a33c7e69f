//! RFC 6962 Merkle trees (as restated in RFC 9162 §2.1): roots, inclusion proofs and
//! consistency proofs.
//!
//! * leaf hash  `= SHA-256(0x00 || leaf)`
//! * node hash  `= SHA-256(0x01 || left || right)`
//! * empty tree `= SHA-256("")`
//!
//! The 0x00/0x01 prefixes are the RFC's domain separation between leaves and interior nodes, so
//! no leaf can be passed off as a subtree (second-preimage resistance).

use sha2::{Digest, Sha256};

use crate::{CryptoError, Hash};

/// Hash of one leaf (RFC 9162 §2.1.1).
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    Hash(h.finalize().into())
}

/// Hash of an interior node (RFC 9162 §2.1.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// The Merkle Tree Hash of a list of leaves (RFC 9162 §2.1.1, MTH).
pub fn root<L: AsRef<[u8]>>(leaves: &[L]) -> Hash {
    let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l.as_ref())).collect();
    root_of_leaf_hashes(hashes)
}

/// The Merkle Tree Hash given already-hashed leaves.
///
/// Pairs nodes level by level and promotes an unpaired last node unchanged; this builds exactly
/// the RFC's tree, whose left subtree always holds the largest power of two of leaves.
pub fn root_of_leaf_hashes(mut level: Vec<Hash>) -> Hash {
    if level.is_empty() {
        return Hash::sha256(b"");
    }
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            match pair {
                [left, right] => next.push(node_hash(left, right)),
                [single] => next.push(*single),
                _ => unreachable!("chunks(2) yields one or two items"),
            }
        }
        level = next;
    }
    level[0]
}

/// Audit path for leaf `index` in a tree of `leaves` (RFC 9162 §2.1.3.1, PATH), bottom first.
pub fn inclusion_proof<L: AsRef<[u8]>>(leaves: &[L], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut level: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l.as_ref())).collect();
    let mut position = index;
    let mut path = Vec::new();
    while level.len() > 1 {
        let sibling = position ^ 1;
        if sibling < level.len() {
            path.push(level[sibling]);
        }
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            next.push(if let [l, r] = pair { node_hash(l, r) } else { pair[0] });
        }
        level = next;
        position /= 2;
    }
    Some(path)
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &[u8],
    index: u64,
    tree_size: u64,
    path: &[Hash],
    expected_root: &Hash,
) -> Result<(), CryptoError> {
    if index >= tree_size {
        return Err(CryptoError::BadProof("leaf index is not below the tree size"));
    }
    let mut fnode = index;
    let mut snode = tree_size - 1;
    let mut r = leaf_hash(leaf);
    for p in path {
        if snode == 0 {
            return Err(CryptoError::BadProof("inclusion path is longer than the tree"));
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(CryptoError::BadProof("inclusion path is shorter than the tree"));
    }
    if r != *expected_root {
        return Err(CryptoError::BadProof("inclusion path does not lead to the root"));
    }
    Ok(())
}

fn largest_power_of_two_below(n: usize) -> usize {
    debug_assert!(n > 1);
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// Consistency proof between the first `old_size` leaves and all `leaves` (RFC 9162 §2.1.4.1,
/// PROOF). `None` unless `0 < old_size <= leaves.len()`.
pub fn consistency_proof<L: AsRef<[u8]>>(leaves: &[L], old_size: usize) -> Option<Vec<Hash>> {
    if old_size == 0 || old_size > leaves.len() {
        return None;
    }
    let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l.as_ref())).collect();
    let mut proof = Vec::new();
    // SUBPROOF(m, D[n], b), unrolled: each step narrows the range [start, end).
    let (mut start, mut end, mut m, mut complete) = (0usize, hashes.len(), old_size, true);
    let mut tail = Vec::new();
    loop {
        let n = end - start;
        if m == n {
            if !complete {
                proof.push(root_of_leaf_hashes(hashes[start..end].to_vec()));
            }
            break;
        }
        let k = largest_power_of_two_below(n);
        if m <= k {
            tail.push(root_of_leaf_hashes(hashes[start + k..end].to_vec()));
            end = start + k;
        } else {
            tail.push(root_of_leaf_hashes(hashes[start..start + k].to_vec()));
            start += k;
            m -= k;
            complete = false;
        }
    }
    proof.extend(tail.into_iter().rev());
    Some(proof)
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2): the tree of `old_size` with `old_root` is a
/// prefix of the tree of `new_size` with `new_root`.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), CryptoError> {
    if old_size == 0 || old_size > new_size {
        return Err(CryptoError::BadProof("sizes must satisfy 0 < old_size <= new_size"));
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(CryptoError::BadProof("equal sizes take an empty proof"));
        }
        if old_root != new_root {
            return Err(CryptoError::BadProof("equal sizes but different roots"));
        }
        return Ok(());
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(CryptoError::BadProof("empty consistency proof"));
    };
    let mut fnode = old_size - 1;
    let mut snode = new_size - 1;
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut fr = *first;
    let mut sr = *first;
    for c in rest {
        if snode == 0 {
            return Err(CryptoError::BadProof("consistency proof is too long"));
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(CryptoError::BadProof("consistency proof is too short"));
    }
    if fr != *old_root || sr != *new_root {
        return Err(CryptoError::BadProof("consistency proof does not match the roots"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The leaves and roots used by the certificate-transparency and transparency-dev test
    /// suites for RFC 6962.
    fn ct_leaves() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|h| hex::decode(h).unwrap_or_default())
        .collect()
    }

    #[test]
    fn rfc6962_reference_roots() {
        let expected = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let leaves = ct_leaves();
        for (size, want) in expected.iter().enumerate() {
            assert_eq!(root(&leaves[..size + 1]).to_hex(), *want, "size {}", size + 1);
        }
        assert_eq!(
            root::<&[u8]>(&[]).to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn reference_inclusion_and_consistency_paths() {
        let leaves = ct_leaves();
        // RFC 6962 §2.1.3 example tree of 7 leaves: the path for d0 is [b, h, l] and the
        // consistency proof between 3 and 7 leaves is [c, d, g, l].
        let path = inclusion_proof(&leaves[..7], 0).unwrap_or_default();
        assert_eq!(path.len(), 3);
        let proof = consistency_proof(&leaves[..7], 3).unwrap_or_default();
        assert_eq!(proof.len(), 4);
        let proof = consistency_proof(&leaves[..7], 4).unwrap_or_default();
        assert_eq!(proof.len(), 1, "4 -> 7 needs only l");
        let proof = consistency_proof(&leaves[..7], 6).unwrap_or_default();
        assert_eq!(proof.len(), 3, "6 -> 7 needs i, j, k");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn distinct_leaf_lists_give_distinct_roots(
            a in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..12),
            b in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..12),
        ) {
            prop_assume!(a != b);
            prop_assert_ne!(root(&a), root(&b));
        }

        #[test]
        fn every_inclusion_proof_verifies_and_any_change_fails(
            leaves in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..8), 1..40),
            flip in any::<usize>(),
        ) {
            let r = root(&leaves);
            let n = leaves.len() as u64;
            for (i, leaf) in leaves.iter().enumerate() {
                let path = inclusion_proof(&leaves, i).unwrap_or_default();
                prop_assert!(verify_inclusion(leaf, i as u64, n, &path, &r).is_ok());
                // A changed leaf byte fails.
                let mut bad_leaf = leaf.clone();
                let at = flip % bad_leaf.len();
                bad_leaf[at] ^= 1;
                prop_assert!(verify_inclusion(&bad_leaf, i as u64, n, &path, &r).is_err());
                // A changed path byte fails.
                if !path.is_empty() {
                    let mut bad_path = path.clone();
                    let which = flip % bad_path.len();
                    bad_path[which].0[flip % 32] ^= 1;
                    prop_assert!(verify_inclusion(leaf, i as u64, n, &bad_path, &r).is_err());
                }
                // A wrong index or size fails (unless the tree is trivially small).
                if n > 1 {
                    let other = (i as u64 + 1) % n;
                    prop_assert!(verify_inclusion(leaf, other, n, &path, &r).is_err()
                        || leaves[other as usize] == *leaf);
                }
            }
        }

        #[test]
        fn every_consistency_proof_verifies_and_any_change_fails(
            leaves in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..8), 1..40),
            flip in any::<usize>(),
        ) {
            let n = leaves.len();
            let new_root = root(&leaves);
            for m in 1..=n {
                let old_root = root(&leaves[..m]);
                let proof = consistency_proof(&leaves, m).unwrap_or_default();
                prop_assert!(
                    verify_consistency(m as u64, n as u64, &old_root, &new_root, &proof).is_ok()
                );
                if !proof.is_empty() {
                    let mut bad = proof.clone();
                    let which = flip % bad.len();
                    bad[which].0[flip % 32] ^= 1;
                    prop_assert!(
                        verify_consistency(m as u64, n as u64, &old_root, &new_root, &bad).is_err()
                    );
                }
                let mut bad_old = old_root;
                bad_old.0[flip % 32] ^= 1;
                prop_assert!(
                    verify_consistency(m as u64, n as u64, &bad_old, &new_root, &proof).is_err()
                );
            }
        }
    }
}
