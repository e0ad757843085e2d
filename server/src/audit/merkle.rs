//! The Merkle tree over record hashes, exactly as RFC 6962 §2.1 (and RFC 9162 §2.1) defines
//! it, so that any Certificate Transparency tooling can check our proofs:
//!
//! - leaf = `SHA-256(0x00 || encoded record)`, node = `SHA-256(0x01 || left || right)`;
//! - a tree of `n > 1` leaves splits at `k`, the largest power of two smaller than `n`;
//! - the empty tree's root is `SHA-256("")`.
//!
//! Two ways in: [`CompactTree`] keeps only the O(log n) roots of the perfect subtrees, which
//! is all the writer and the verifier need to compute the root at any size while streaming
//! through the log; the proof functions take the full list of leaf hashes (proofs are an
//! auditor's request, read from disk on demand).

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || data)`: the hash of a leaf holding `data`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly smaller than `n` (for `n >= 2`).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The Merkle tree hash (root) of a list of leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The roots of the perfect subtrees that make up a tree of `size` leaves: enough to add
/// leaves and compute the root without keeping the leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactTree {
    /// Number of leaves.
    size: u64,
    /// One root per set bit of `size`, largest subtree first.
    peaks: Vec<Hash>,
}

impl CompactTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves added.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds a leaf (its leaf hash).
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut s = self.size;
        while s & 1 == 1 {
            // Each set low bit of the old size is a perfect subtree of the same height as `h`:
            // merge, exactly as the RFC tree would once the right half is complete.
            let left = self.peaks.pop().unwrap_or_else(empty_root);
            h = node_hash(&left, &h);
            s >>= 1;
        }
        self.peaks.push(h);
        self.size += 1;
    }

    /// The RFC 6962 root of the leaves added so far.
    ///
    /// For `n = 2^a + 2^b + … ` (a > b > …) the RFC splits off the `2^a` perfect subtree first,
    /// then `2^b` from the rest, so the root folds the peaks from the right.
    pub fn root(&self) -> Hash {
        let mut it = self.peaks.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// Proof that a leaf is in a tree of a given size (RFC 6962 §2.1.1 audit path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// Index of the leaf (the record's sequence number).
    pub leaf_index: u64,
    /// Size of the tree the proof is against.
    pub tree_size: u64,
    /// Sibling hashes from the leaf up.
    pub path: Vec<Hash>,
}

/// Proof that a tree of `old_size` leaves is a prefix of one of `new_size` leaves
/// (RFC 6962 §2.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// Size of the older tree.
    pub old_size: u64,
    /// Size of the newer tree.
    pub new_size: u64,
    /// The proof hashes.
    pub path: Vec<Hash>,
}

/// The inclusion proof of leaf `index` in the tree of all of `leaves`, or `None` when
/// `index` is out of range.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Option<InclusionProof> {
    let i = usize::try_from(index).ok()?;
    if i >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    audit_path(i, leaves, &mut path);
    Some(InclusionProof {
        leaf_index: index,
        tree_size: leaves.len() as u64,
        path,
    })
}

/// PATH(m, D[n]) of the RFC, appending bottom-up.
fn audit_path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        audit_path(m, &leaves[..k], out);
        out.push(root(&leaves[k..]));
    } else {
        audit_path(m - k, &leaves[k..], out);
        out.push(root(&leaves[..k]));
    }
}

/// The consistency proof from the tree of the first `old_size` leaves to the tree of all of
/// `leaves`, or `None` when `old_size` exceeds the number of leaves. The proof is empty when
/// `old_size` is 0 (every tree extends the empty one) or equals the number of leaves.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Option<ConsistencyProof> {
    let m = usize::try_from(old_size).ok()?;
    if m > leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    if m > 0 && m < leaves.len() {
        subproof(m, leaves, true, &mut path);
    }
    Some(ConsistencyProof {
        old_size,
        new_size: leaves.len() as u64,
        path,
    })
}

/// SUBPROOF(m, D[n], b) of the RFC, appending bottom-up.
fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k], complete, out);
        out.push(root(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(root(&leaves[..k]));
    }
}

impl InclusionProof {
    /// Whether this proof shows `leaf` at `leaf_index` in the tree of `tree_size` leaves
    /// whose root is `root` (the RFC 9162 §2.1.3.2 algorithm).
    pub fn verify(&self, leaf: &Hash, root: &Hash) -> bool {
        if self.leaf_index >= self.tree_size {
            return false;
        }
        let mut f = self.leaf_index;
        let mut s = self.tree_size - 1;
        let mut r = *leaf;
        for p in &self.path {
            if s == 0 {
                return false;
            }
            if f & 1 == 1 || f == s {
                r = node_hash(p, &r);
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            } else {
                r = node_hash(&r, p);
            }
            f >>= 1;
            s >>= 1;
        }
        s == 0 && r == *root
    }
}

impl ConsistencyProof {
    /// Whether this proof shows the tree of `old_size` leaves with root `old_root` to be a
    /// prefix of the tree of `new_size` leaves with root `new_root` (RFC 9162 §2.1.4.2).
    pub fn verify(&self, old_root: &Hash, new_root: &Hash) -> bool {
        let (first, second) = (self.old_size, self.new_size);
        if first > second {
            return false;
        }
        if first == second {
            return self.path.is_empty() && old_root == new_root;
        }
        if first == 0 {
            return self.path.is_empty() && *old_root == empty_root();
        }
        if self.path.is_empty() {
            return false;
        }
        let mut path: Vec<Hash> = Vec::with_capacity(self.path.len() + 1);
        if first.is_power_of_two() {
            path.push(*old_root);
        }
        path.extend_from_slice(&self.path);
        let mut f = first - 1;
        let mut s = second - 1;
        while f & 1 == 1 {
            f >>= 1;
            s >>= 1;
        }
        let mut fr = path[0];
        let mut sr = path[0];
        for c in &path[1..] {
            if s == 0 {
                return false;
            }
            if f & 1 == 1 || f == s {
                fr = node_hash(c, &fr);
                sr = node_hash(c, &sr);
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            } else {
                sr = node_hash(&sr, c);
            }
            f >>= 1;
            s >>= 1;
        }
        s == 0 && fr == *old_root && sr == *new_root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn compact_tree_matches_recursive_root() {
        let all = leaves(70);
        let mut t = CompactTree::new();
        assert_eq!(t.root(), empty_root());
        for n in 1..=all.len() {
            t.push(all[n - 1]);
            assert_eq!(t.size(), n as u64);
            assert_eq!(t.root(), root(&all[..n]), "size {n}");
        }
    }

    #[test]
    fn splits_at_largest_power_of_two_below() {
        assert_eq!(split(2), 1);
        assert_eq!(split(3), 2);
        assert_eq!(split(4), 2);
        assert_eq!(split(5), 4);
        assert_eq!(split(9), 8);
    }

    #[test]
    fn proofs_are_out_of_range_safe() {
        let l = leaves(3);
        assert!(inclusion_proof(&l, 3).is_none());
        assert!(consistency_proof(&l, 4).is_none());
        let p = consistency_proof(&l, 0).expect("empty prefix");
        assert!(p.verify(&empty_root(), &root(&l)));
    }
}
